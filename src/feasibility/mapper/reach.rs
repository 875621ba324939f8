//! What the neurons of a population read, from the structure of its synapse blocks, never from
//! a list of synapses.
//!
//! Each physical target of a block reads a few *keys*, each key a set of physical sources that
//! every target reading the key reads whole: a convolution's key is an input position of a
//! channel group (the group's channels at that position), a dense block's a token (its inputs
//! along the contracted axis), a selection's its one source. Where a block's source map is
//! injective the keys of one block are disjoint, so the distinct sources of a neuron, or of a
//! slice of consecutive neurons, are the live sources of the distinct keys it reads: counted in
//! time proportional to the neurons times the keys of one neuron (the kernel taps of a
//! convolution, one for the other blocks).
//!
//! A block whose source map reads an element twice (a broadcast), an explicit sparse matrix, and
//! several blocks from the same source into one population are read source by source instead:
//! their keys are the physical sources themselves, visited once per synapse. A sparse matrix is
//! bounded by the conversion's budget; several blocks from one source are, in the converted
//! models, the two selections of a max pooling; no converted model has the first case.

use crate::snn::{ConvBlock, DenseBlock, Index, Operand, SelectBlock, Source, SynapseBlock};

/// The table entry of a physical target that no logical target writes.
const NONE: u32 = crate::snn::synapse::NONE;

/// Everything one population reads from one source.
pub(super) struct Reader<'a> {
    /// Who sends.
    pub source: Source,
    /// Number of physical source elements.
    pub sources: usize,
    reaches: Vec<Reach<'a>>,
    /// Whether the keys are the physical sources, visited once per synapse (so a neuron may
    /// visit one twice).
    expanded: bool,
}

impl<'a> Reader<'a> {
    /// One reader per source of the non-overlapping projections of `operands`, in order of first
    /// appearance.
    pub fn of(operands: &'a [Operand]) -> Vec<Reader<'a>> {
        let mut groups: Vec<(Source, Vec<&'a SynapseBlock>)> = Vec::new();
        for projection in operands.iter().flat_map(|o| &o.projections).filter(|p| !p.overlap) {
            match groups.iter_mut().find(|(source, _)| *source == projection.source) {
                Some((_, blocks)) => blocks.push(&projection.block),
                None => groups.push((projection.source, vec![&projection.block])),
            }
        }
        groups.into_iter().map(|(source, blocks)| Reader::new(source, &blocks)).collect()
    }

    fn new(source: Source, blocks: &[&'a SynapseBlock]) -> Self {
        let reaches: Vec<Reach<'a>> = blocks.iter().map(|block| Reach::new(block)).collect();
        let expanded = reaches.len() > 1 || !reaches[0].disjoint();
        Reader { source, sources: blocks[0].sources(), reaches, expanded }
    }

    /// The convolution this reader reads through, when it reads nothing else and its keys are
    /// input positions (its kernel can be stored once and shared).
    pub fn conv(&self) -> Option<&'a ConvBlock> {
        match self.reaches.as_slice() {
            [Reach::Conv { block, .. }] if !self.expanded => Some(block),
            _ => None,
        }
    }

    /// Size of the key space.
    pub fn keys(&self) -> usize {
        if self.expanded {
            self.sources
        } else {
            self.reaches[0].keys()
        }
    }

    /// Calls `visit(key, live sources behind it)` for every key physical target `t` reads (a key
    /// twice where the reader is expanded and two synapses join the same pair).
    #[inline]
    fn for_each_key(&self, t: usize, cursors: &mut [Cursor], mut visit: impl FnMut(usize, u32)) {
        if !self.expanded {
            return self.reaches[0].for_each_key(t, &mut cursors[0], visit);
        }
        for (reach, cursor) in self.reaches.iter().zip(cursors) {
            reach.for_each_key(t, cursor, |key, _| reach.for_each_source(key, |p| visit(p, 1)));
        }
    }

    /// Calls `visit(physical source)` for every source behind `key`.
    pub fn for_each_source(&self, key: usize, mut visit: impl FnMut(usize)) {
        if self.expanded {
            visit(key);
        } else {
            self.reaches[0].for_each_source(key, visit);
        }
    }
}

/// The keys of one block.
enum Reach<'a> {
    /// Key: (group, input row, input column).
    Conv { block: &'a ConvBlock, logical: Logical, live: Live },
    /// Key: token (outer, inner).
    Dense { block: &'a DenseBlock, logical: Logical, live: Live },
    /// Key: the physical source.
    Select(&'a SelectBlock),
    /// Key: the physical source, which is the target.
    Diagonal(usize),
    /// Key: the physical source, from the matrix's rows.
    Sparse(Rows),
}

impl<'a> Reach<'a> {
    fn new(block: &'a SynapseBlock) -> Self {
        match block {
            SynapseBlock::Conv(conv) => Reach::Conv {
                block: conv,
                logical: Logical::new(&conv.target, conv.logical_targets(), conv.targets),
                live: Live::conv(conv),
            },
            SynapseBlock::Dense(dense) => Reach::Dense {
                block: dense,
                logical: Logical::new(&dense.target, dense.logical_targets(), dense.targets),
                live: Live::dense(dense),
            },
            SynapseBlock::Select(select) => Reach::Select(select),
            SynapseBlock::Diagonal { scale } => Reach::Diagonal(scale.len()),
            SynapseBlock::Sparse { .. } => Reach::Sparse(Rows::of(block)),
        }
    }

    /// Whether different keys stand for disjoint sources and the keys of one target are distinct.
    fn disjoint(&self) -> bool {
        match self {
            Reach::Conv { block, .. } => injective(&block.source, block.logical_sources(), block.sources),
            Reach::Dense { block, .. } => injective(&block.source, block.logical_sources(), block.sources),
            Reach::Select(_) | Reach::Diagonal(_) => true,
            Reach::Sparse(_) => false,
        }
    }

    fn keys(&self) -> usize {
        match self {
            Reach::Conv { block, .. } => block.groups * block.in_shape[1] * block.in_shape[2],
            Reach::Dense { block, .. } => block.outer * block.inner,
            Reach::Select(select) => select.sources,
            Reach::Diagonal(n) => *n,
            Reach::Sparse(rows) => rows.sources,
        }
    }

    #[inline]
    fn for_each_key(&self, t: usize, cursor: &mut Cursor, mut visit: impl FnMut(usize, u32)) {
        match self {
            Reach::Conv { block, logical, live } => {
                if let Some(l) = logical.get(t) {
                    conv_keys(block, l, |key| visit(key, live.get(key)));
                }
            }
            Reach::Dense { block, logical, live } => {
                if let Some(l) = logical.get(t) {
                    let key = l / (block.outputs * block.inner) * block.inner + l % block.inner;
                    visit(key, live.get(key));
                }
            }
            Reach::Select(select) => {
                if let Some(p) = (t < select.targets).then(|| cursor.get(&select.source, t)).flatten() {
                    visit(p, 1);
                }
            }
            Reach::Diagonal(n) => {
                if t < *n {
                    visit(t, 1);
                }
            }
            Reach::Sparse(rows) => rows.row(t).iter().for_each(|&p| visit(p as usize, 1)),
        }
    }

    fn for_each_source(&self, key: usize, mut visit: impl FnMut(usize)) {
        match self {
            Reach::Conv { block, .. } => {
                let [in_c, in_h, in_w] = block.in_shape;
                let per_group = in_c / block.groups;
                let (group, position) = (key / (in_h * in_w), key % (in_h * in_w));
                for ci in group * per_group..(group + 1) * per_group {
                    if let Some(p) = block.source.get(ci * in_h * in_w + position) {
                        visit(p);
                    }
                }
            }
            Reach::Dense { block, .. } => {
                let (o, i) = (key / block.inner, key % block.inner);
                for k in 0..block.inputs {
                    if let Some(p) = block.source.get((o * block.inputs + k) * block.inner + i) {
                        visit(p);
                    }
                }
            }
            Reach::Select(_) | Reach::Diagonal(_) | Reach::Sparse(_) => visit(key),
        }
    }
}

/// The keys one neuron reads from every reader of its population, each key once, with the
/// neuron's synapse and distinct-source counts. Neurons are best read in increasing order: a
/// strided selection then steps from one neuron to the next without a division per axis.
pub(super) struct Footprint {
    /// (reader, key, live sources behind the key) of the neuron last read.
    pub keys: Vec<(u32, u32, u32)>,
    /// Synapses reaching the neuron last read.
    pub synapses: u64,
    /// Distinct source neurons of the neuron last read.
    pub distinct: u64,
    /// Per expanded reader and key: the read that last saw the key (u32::MAX: none).
    seen: Vec<Vec<u32>>,
    reads: u32,
    /// Per reader and block.
    cursors: Vec<Vec<Cursor>>,
}

impl Footprint {
    /// A footprint for the neurons that read through `readers`.
    pub fn new(readers: &[Reader<'_>]) -> Self {
        Footprint {
            keys: Vec::new(),
            synapses: 0,
            distinct: 0,
            seen: readers.iter().map(|r| if r.expanded { vec![u32::MAX; r.sources] } else { Vec::new() }).collect(),
            reads: 0,
            cursors: readers.iter().map(|r| r.reaches.iter().map(|_| Cursor::default()).collect()).collect(),
        }
    }

    /// Reads physical target `t`.
    pub fn read(&mut self, readers: &[Reader<'_>], t: usize) {
        let Footprint { keys, synapses, distinct, seen, reads, cursors } = self;
        keys.clear();
        (*synapses, *distinct) = (0, 0);
        // Fewer reads than neurons, and a population has fewer than u32::MAX neurons.
        *reads += 1;
        for (r, reader) in readers.iter().enumerate() {
            let seen = &mut seen[r];
            reader.for_each_key(t, &mut cursors[r], |key, live| {
                *synapses += live as u64;
                if reader.expanded {
                    if seen[key] == *reads {
                        return;
                    }
                    seen[key] = *reads;
                }
                *distinct += live as u64;
                keys.push((r as u32, key as u32, live));
            });
        }
    }
}

/// The last element a strided map was read at, to step to the next like an odometer.
#[derive(Default)]
struct Cursor {
    /// Logical element, plus one (0: none yet).
    next: usize,
    counter: Vec<usize>,
    physical: usize,
}

impl Cursor {
    /// `index.get(i)`, in constant time when `i` follows the element read last.
    #[inline]
    fn get(&mut self, index: &Index, i: usize) -> Option<usize> {
        let Index::Strided { shape, strides, offset } = index else { return index.get(i) };
        if self.next != i || self.counter.len() != shape.len() || shape.is_empty() {
            return Some(self.seek(shape, strides, *offset, i));
        }
        for axis in (0..shape.len()).rev() {
            self.counter[axis] += 1;
            self.physical += strides[axis];
            if self.counter[axis] < shape[axis] {
                break;
            }
            self.physical -= strides[axis] * shape[axis];
            self.counter[axis] = 0;
        }
        self.next = i + 1;
        Some(self.physical)
    }

    /// Moves to logical element `i`, one division per axis.
    #[cold]
    fn seek(&mut self, shape: &[usize], strides: &[usize], offset: usize, i: usize) -> usize {
        self.counter = vec![0; shape.len()];
        let mut rest = i;
        for (axis, &n) in shape.iter().enumerate().rev() {
            self.counter[axis] = rest % n;
            rest /= n;
        }
        self.physical = offset + self.counter.iter().zip(strides).map(|(&j, &s)| j * s).sum::<usize>();
        self.next = i + 1;
        self.physical
    }
}

/// Calls `visit(key)` for the input positions (of its channel group) that logical target `l` of
/// a convolution reads: the kernel window, without the padding.
#[inline]
fn conv_keys(block: &ConvBlock, l: usize, mut visit: impl FnMut(usize)) {
    let [_, in_h, in_w] = block.in_shape;
    let [out_c, out_h, out_w] = block.out_shape;
    let [kh, kw] = block.kernel_size;
    let (co, position) = (l / (out_h * out_w), l % (out_h * out_w));
    let (oy, ox) = (position / out_w, position % out_w);
    let base = co / (out_c / block.groups) * in_h;
    for ky in 0..kh {
        let Some(iy) = input_index(oy, ky, block, 0, in_h) else { continue };
        for kx in 0..kw {
            if let Some(ix) = input_index(ox, kx, block, 1, in_w) {
                visit((base + iy) * in_w + ix);
            }
        }
    }
}

/// The input row (`axis` 0) or column (1) that output position `out` reads through tap `k`.
#[inline]
fn input_index(out: usize, k: usize, block: &ConvBlock, axis: usize, size: usize) -> Option<usize> {
    (out * block.strides[axis] + k * block.dilations[axis]).checked_sub(block.pads[axis]).filter(|&i| i < size)
}

/// Whether no two of the first `count` logical elements of `index` share a physical element.
fn injective(index: &Index, count: usize, physical: usize) -> bool {
    matches!(index, Index::Identity) || index.inverse(count, physical).is_some()
}

/// The logical target of each physical target of a block.
enum Logical {
    /// Physical target `t` is logical target `t`, for the first `count`.
    Identity(usize),
    /// One entry per physical target, [`NONE`] where no logical target writes it.
    Table(Vec<u32>),
}

impl Logical {
    fn new(target: &Index, count: usize, physical: usize) -> Self {
        match target {
            Index::Identity => Logical::Identity(count),
            _ => Logical::Table(
                target.inverse(count, physical).expect("a valid block writes every physical target at most once"),
            ),
        }
    }

    #[inline]
    fn get(&self, t: usize) -> Option<usize> {
        match self {
            Logical::Identity(count) => (t < *count).then_some(t),
            Logical::Table(entries) => entries.get(t).filter(|&&l| l != NONE).map(|&l| l as usize),
        }
    }
}

/// The live sources (those the source map reads) behind each key.
enum Live {
    /// Every key has as many.
    Uniform(u32),
    /// One count per key.
    Each(Vec<u32>),
}

impl Live {
    fn conv(block: &ConvBlock) -> Self {
        let [in_c, in_h, in_w] = block.in_shape;
        let per_group = in_c / block.groups;
        if !block.source.has_holes() {
            return Live::Uniform(per_group as u32);
        }
        let plane = in_h * in_w;
        let mut live = vec![0u32; block.groups * plane];
        block.source.for_each(block.logical_sources(), |l, p| {
            if p.is_some() {
                live[l / plane / per_group * plane + l % plane] += 1;
            }
        });
        Live::Each(live)
    }

    fn dense(block: &DenseBlock) -> Self {
        if !block.source.has_holes() {
            return Live::Uniform(block.inputs as u32);
        }
        let mut live = vec![0u32; block.outer * block.inner];
        block.source.for_each(block.logical_sources(), |l, p| {
            if p.is_some() {
                live[l / (block.inputs * block.inner) * block.inner + l % block.inner] += 1;
            }
        });
        Live::Each(live)
    }

    #[inline]
    fn get(&self, key: usize) -> u32 {
        match self {
            Live::Uniform(n) => *n,
            Live::Each(live) => live[key],
        }
    }
}

/// The sources of each target of an explicit sparse matrix (its transpose, by rows).
struct Rows {
    ptr: Vec<usize>,
    columns: Vec<u32>,
    sources: usize,
}

impl Rows {
    fn of(block: &SynapseBlock) -> Self {
        let mut ptr = vec![0usize; block.targets() + 1];
        block.for_each_synapse(|t, _, _| ptr[t + 1] += 1);
        for t in 0..block.targets() {
            ptr[t + 1] += ptr[t];
        }
        let mut fill = ptr.clone();
        let mut columns = vec![0u32; ptr[block.targets()]];
        block.for_each_synapse(|t, s, _| {
            columns[fill[t]] = s as u32;
            fill[t] += 1;
        });
        Rows { ptr, columns, sources: block.sources() }
    }

    fn row(&self, t: usize) -> &[u32] {
        self.ptr.get(t + 1).map_or(&[], |&end| &self.columns[self.ptr[t]..end])
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use sprs::CsMat;

    use super::*;
    use crate::snn::{Matrix, Scale};

    /// Checks every neuron's footprint and every slice's keys against the synapses enumerated.
    fn check(operands: &[Operand], targets: usize) {
        for operand in operands {
            for projection in &operand.projections {
                projection.block.validate().unwrap();
            }
        }
        let mut synapses: Vec<(usize, Source, usize)> = Vec::new();
        for projection in operands.iter().flat_map(|o| &o.projections).filter(|p| !p.overlap) {
            projection.block.for_each_synapse(|t, s, _| synapses.push((t, projection.source, s)));
        }
        let sources_of = |range: std::ops::Range<usize>| -> HashSet<(Source, usize)> {
            synapses.iter().filter(|s| range.contains(&s.0)).map(|s| (s.1, s.2)).collect()
        };
        let mut fan_in = vec![0u64; targets];
        for projection in operands.iter().flat_map(|o| &o.projections).filter(|p| !p.overlap) {
            fan_in.iter_mut().zip(projection.block.fan_in()).for_each(|(f, n)| *f += n as u64);
        }
        let readers = Reader::of(operands);
        let mut footprint = Footprint::new(&readers);
        let mut keys = Vec::new();
        for (t, &fan_in) in fan_in.iter().enumerate() {
            footprint.read(&readers, t);
            assert_eq!(footprint.synapses, synapses.iter().filter(|s| s.0 == t).count() as u64, "target {t}");
            assert_eq!(footprint.synapses, fan_in, "target {t}");
            let distinct = sources_of(t..t + 1);
            assert_eq!(footprint.distinct, distinct.len() as u64, "target {t}");
            let mut behind = HashSet::new();
            for &(r, key, live) in &footprint.keys {
                let reader = &readers[r as usize];
                let mut count = 0;
                reader.for_each_source(key as usize, |p| {
                    behind.insert((reader.source, p));
                    count += 1;
                });
                assert_eq!(count, live, "target {t}, key {key}");
            }
            assert_eq!(behind, distinct, "target {t}");
            keys.push(footprint.keys.clone());
        }
        for start in 0..targets {
            for end in start + 1..=targets {
                let union: HashSet<(u32, u32, u32)> = keys[start..end].iter().flatten().copied().collect();
                let live: u64 = union.iter().map(|&(_, _, live)| live as u64).sum();
                assert_eq!(live, sources_of(start..end).len() as u64, "slice {start}..{end}");
            }
        }
    }

    fn operand(targets: usize, blocks: Vec<(Source, SynapseBlock)>) -> Vec<Operand> {
        let operand = blocks.into_iter().fold(Operand::new(vec![0.0; targets]), |o, (s, b)| o.with(s, b));
        vec![operand]
    }

    /// A grouped, strided, padded convolution reading through a table with holes and writing
    /// in reverse order.
    fn conv() -> SynapseBlock {
        let mut conv = ConvBlock::new(vec![0.5; 72], [4, 5, 5], [4, 3, 3], [3, 3], [2, 2], [1, 1], [1, 1], 2);
        conv.source = Index::Table { entries: (0..100).map(|l| if l % 7 == 0 { NONE } else { l + 10 }).collect() };
        conv.sources = 110;
        conv.target = Index::Table { entries: (0..36).rev().collect() };
        SynapseBlock::Conv(conv)
    }

    /// A matrix over `[2, 3, 2] → [2, 2, 2]` reading a transposed layout, writing through a
    /// table that drops some targets; with `holes`, some sources read nothing.
    fn dense(holes: bool) -> SynapseBlock {
        let matrix = Matrix::owned(2, 3, vec![1.0; 6]);
        let mut dense = DenseBlock::new(2, 3, 2, 2, matrix);
        dense.source = if holes {
            Index::Table { entries: (0..12).map(|l| if l % 5 == 1 { NONE } else { 11 - l }).collect() }
        } else {
            Index::Strided { shape: vec![2, 3, 2], strides: vec![1, 4, 2], offset: 0 }
        };
        dense.target = Index::Table { entries: vec![0, 1, NONE, 3, 4, 5, 6, NONE] };
        dense.targets = 8;
        SynapseBlock::Dense(dense)
    }

    #[test]
    fn convolution_keys_are_input_positions_of_a_group() {
        check(&operand(36, vec![(Source::Input, conv())]), 36);
    }

    #[test]
    fn a_convolution_after_a_broadcast_is_read_source_by_source() {
        let mut conv = ConvBlock::new(vec![1.0; 54], [2, 4, 4], [3, 4, 4], [3, 3], [1, 1], [1, 1], [1, 1], 1);
        conv.source = Index::Strided { shape: vec![2, 4, 4], strides: vec![0, 4, 1], offset: 0 };
        conv.sources = 16;
        let operands = operand(48, vec![(Source::Input, SynapseBlock::Conv(conv))]);
        assert!(Reader::of(&operands)[0].expanded);
        check(&operands, 48);
    }

    #[test]
    fn dense_keys_are_tokens() {
        check(&operand(8, vec![(Source::Input, dense(false))]), 8);
        check(&operand(8, vec![(Source::Input, dense(true))]), 8);
    }

    #[test]
    fn selections_sparse_matrices_and_blocks_sharing_a_source() {
        let broadcast = SynapseBlock::Select(SelectBlock {
            targets: 8,
            sources: 12,
            source: Index::Strided { shape: vec![2, 4], strides: vec![5, 0], offset: 1 },
            scale: Scale::One,
        });
        let gather = SynapseBlock::Select(SelectBlock {
            targets: 8,
            sources: 12,
            source: Index::Table { entries: vec![3, 3, 5, 7, 11, NONE, 2, 9] },
            scale: Scale::Uniform(0.5),
        });
        let sparse = CsMat::new_csc((8, 3), vec![0, 2, 2, 5], vec![1, 6, 0, 1, 7], vec![1.0; 5]);
        let operands = vec![
            Operand::new(vec![0.0; 8])
                .with(Source::Population(0), broadcast)
                .with(Source::Population(1), SynapseBlock::Sparse { matrix: sparse })
                .with(Source::Population(2), dense(false)),
            Operand::new(vec![0.0; 8])
                .with(Source::Population(2), gather)
                .with(Source::Input, SynapseBlock::Diagonal { scale: vec![2.0; 8] }),
        ];
        let readers = Reader::of(&operands);
        assert_eq!(readers.iter().map(|r| r.expanded).collect::<Vec<_>>(), [false, true, true, false]);
        check(&operands, 8);
    }

    #[test]
    fn a_cursor_reads_a_strided_map_like_get() {
        let index = Index::Strided { shape: vec![3, 2, 4], strides: vec![9, 0, 2], offset: 5 };
        let mut cursor = Cursor::default();
        for i in (0..24).chain([7, 7, 3, 4, 23, 0, 1]) {
            assert_eq!(cursor.get(&index, i), index.get(i), "element {i}");
        }
    }
}
