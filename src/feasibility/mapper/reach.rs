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
//! their keys are the physical sources themselves, visited once per synapse (a sparse matrix is
//! bounded by the conversion's budget; the others are elementwise selections in practice).

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

    /// Whether a neuron may visit the same key twice.
    pub fn repeats(&self) -> bool {
        self.expanded
    }

    /// Size of the key space.
    pub fn keys(&self) -> usize {
        if self.expanded {
            self.sources
        } else {
            self.reaches[0].keys()
        }
    }

    /// Calls `visit(key, live sources behind it)` for every key physical target `t` reads.
    #[inline]
    pub fn for_each_key(&self, t: usize, mut visit: impl FnMut(usize, u32)) {
        if !self.expanded {
            return self.reaches[0].for_each_key(t, visit);
        }
        for reach in &self.reaches {
            reach.for_each_key(t, |key, _| reach.for_each_source(key, |p| visit(p, 1)));
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
    fn for_each_key(&self, t: usize, mut visit: impl FnMut(usize, u32)) {
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
                if let Some(p) = (t < select.targets).then(|| select.source.get(t)).flatten() {
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
