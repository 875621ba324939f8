//! nengo-loihi's accounting of Loihi synaptic memory (`nengo_loihi/block.py`,
//! `SynapseConfig.bits_per_axon` and `Synapse.bits`; `nengo_loihi/conv.py`,
//! `conv2d_loihi_weights`).
//!
//! The weights an input axon reaches are stored in groups of 64 (`n_synapses = 63`); each weight
//! takes its weight bits plus, in the sparse encoding (compression 0), its index bits; each group
//! adds a 4-bit synapse index and a 6-bit count, and is rounded up to a 64-bit word. A
//! convolution's weights are stored once per distinct (row taps, column taps, index offset) of an
//! input pixel and shared by every axon with the same one (`axon_to_weight_map`), each entry
//! holding `c_in · taps · c_out` weights.

use crate::snn::ConvBlock;

/// Weights per synapse group (nengo-loihi's `n_synapses + 1`).
const GROUP: u64 = 64;
/// Header bits of a synapse group: synapse index (4) and synapse count (6).
const GROUP_HEADER_BITS: u64 = 10;
/// One synaptic memory word.
const WORD_BITS: u64 = 64;
/// The index widths the synapse encoding offers (`SynapseConfig.INDEX_BITS_MAP`).
const INDEX_BITS: [u64; 7] = [6, 7, 8, 9, 10, 11, 12];

/// Bits of one axon's `n` weights at `bits_per_weight` each.
pub fn bits_per_axon(n: u64, bits_per_weight: u64) -> u64 {
    let full = n / GROUP;
    let rest = n % GROUP;
    let group = |k: u64| (k * bits_per_weight + GROUP_HEADER_BITS).div_ceil(WORD_BITS) * WORD_BITS;
    full * group(GROUP) + if rest > 0 { group(rest) } else { 0 }
}

/// The index bits of a weight addressing one of `compartments` compartments: the smallest
/// width the encoding offers that holds `⌈log2 compartments⌉` bits (12 at most).
pub fn index_bits(compartments: u64) -> u64 {
    let needed = u64::from(64 - compartments.saturating_sub(1).leading_zeros());
    INDEX_BITS.iter().copied().find(|&b| b >= needed).unwrap_or(12)
}

/// Bits of a convolution's shared weights as nengo-loihi stores them, at `bits_per_weight` each.
pub fn conv_bits(conv: &ConvBlock, bits_per_weight: u64) -> u64 {
    let [c_in, in_h, in_w] = conv.in_shape;
    let [c_out, out_h, out_w] = conv.out_shape;
    let c_in = c_in / conv.groups.max(1);
    // Per input row (column): the kernel taps that reach an output, and the first output.
    let taps = |axis: usize, size: usize, out: usize, k: usize| -> Vec<(u64, Option<usize>)> {
        (0..size)
            .map(|i| {
                let (mut mask, mut first) = (0u64, None);
                for tap in 0..k {
                    let Some(at) = (i + conv.pads[axis]).checked_sub(tap * conv.dilations[axis]) else { continue };
                    if at % conv.strides[axis] == 0 && at / conv.strides[axis] < out {
                        mask |= 1 << tap.min(63);
                        let o = at / conv.strides[axis];
                        first = Some(first.map_or(o, |f: usize| f.min(o)));
                    }
                }
                (mask, first)
            })
            .collect()
    };
    let rows = taps(0, in_h, out_h, conv.kernel_size[0]);
    let cols = taps(1, in_w, out_w, conv.kernel_size[1]);
    let mut entries: Vec<(u64, u64, usize)> = Vec::new();
    for &(row_mask, first_row) in &rows {
        for &(col_mask, first_col) in &cols {
            let (Some(y), Some(x)) = (first_row, first_col) else { continue };
            let offset = y * out_w + x;
            entries.push((row_mask, col_mask, offset - offset % 256));
        }
    }
    entries.sort_unstable();
    entries.dedup();
    let per_weight = bits_per_weight + index_bits((c_out * out_h * out_w) as u64);
    entries
        .iter()
        .map(|&(r, c, _)| {
            let taps = u64::from(r.count_ones()) * u64::from(c.count_ones());
            bits_per_axon(c_in as u64 * taps * c_out as u64, per_weight)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_of_64_with_a_header_in_words() {
        // 1 weight of 18 bits + 10 header bits = 28 → one word.
        assert_eq!(bits_per_axon(1, 18), 64);
        // 64 weights: 64·18 + 10 = 1162 → 19 words.
        assert_eq!(bits_per_axon(64, 18), 19 * 64);
        // 65 weights: a full group and a group of 1.
        assert_eq!(bits_per_axon(65, 18), 19 * 64 + 64);
        assert_eq!(bits_per_axon(0, 18), 0);
    }

    #[test]
    fn index_widths() {
        assert_eq!(index_bits(1), 6);
        assert_eq!(index_bits(64), 6);
        assert_eq!(index_bits(65), 7);
        assert_eq!(index_bits(1024), 10);
        assert_eq!(index_bits(1 << 20), 12);
    }
}
