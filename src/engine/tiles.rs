//! Column tiles: a sparse block cut into groups of consecutive sources whose fan-outs cover the
//! same target runs, each group's weights stored densely `[source][run targets]`. Events are
//! still delivered one by one along their contiguous fan-out, but a chunk of targets is held in
//! registers across all the events of a group, so each target is loaded and stored once per
//! group rather than once per event.
//!
//! Every target sums its events in an order fixed by the active sources alone, whatever the
//! thread count or the CPU: no fused multiply-add is used, so the vector paths give the same
//! bits as the scalar one.

use hashbrown::HashMap;
use sprs::CsMat;

use super::isa::{Isa, Level};
use crate::real::Real;

/// Gaps of at most this many targets inside a fan-out are stored as zero weights, so the runs on
/// either side merge (adding zero leaves a sum unchanged).
const MAX_GAP: usize = 4;

/// Below this many sources per group on average, plain scattering is faster than tiles, unless
/// the fan-outs are at least [`MIN_WIDTH`] long on average (a broadcast, say).
const MIN_MEAN_GROUP: usize = 3;

/// Mean fan-out from which tiles pay even for groups of one source.
const MIN_WIDTH: usize = 16;

/// Sources sharing the same target runs.
#[derive(Clone, Debug)]
struct Group {
    /// One past the group's last member.
    end_source: u32,
    first_run: u32,
    end_run: u32,
    /// Targets per source (the runs' lengths summed): the row length of the weights.
    width: u32,
    /// The row every member has, when they all have the same (an average, say): the group then
    /// adds that row times the number of events (or the sum of the values).
    shared_row: Option<usize>,
}

/// A run of `len` targets `start, start + stride, …`, at `column` within its group's rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct TargetRun {
    start: u32,
    len: u32,
    stride: u32,
    column: u32,
}

impl TargetRun {
    /// The position of `target` in the run.
    fn position(&self, target: u32) -> Option<u32> {
        let offset = target.checked_sub(self.start)?;
        (offset % self.stride == 0 && offset / self.stride < self.len).then_some(offset / self.stride)
    }
}

/// A sparse `[targets × sources]` block laid out for event delivery: register tiles where many
/// sources share their fan-out's shape, plain scattering along each fan-out otherwise.
pub struct ColumnTiles<F> {
    targets: usize,
    sources: usize,
    layout: Layout<F>,
    isa: Isa,
}

enum Layout<F> {
    Tiled {
        group_of: Vec<u32>,
        /// The offset of each source's weight row (sources with equal rows share one).
        row_of: Vec<usize>,
        groups: Vec<Group>,
        runs: Vec<TargetRun>,
        weights: Vec<F>,
        /// Every group is a range of consecutive sources, so the events of a group are
        /// consecutive in an ascending event list.
        consecutive: bool,
    },
    Scatter {
        indptr: Vec<usize>,
        indices: Vec<u32>,
        weights: Vec<F>,
    },
    /// Every source reaches at most one target (a selection, as in max pooling). A source
    /// without a target adds a zero weight to some target (its index modulo the targets), which
    /// leaves that sum unchanged and spares a branch per event.
    Single {
        target_of: Vec<u32>,
        weights: Vec<F>,
    },
}

/// Working space of [`ColumnTiles`], one per worker.
#[derive(Default)]
pub struct TileScratch<F> {
    members: Vec<u32>,
    starts: Vec<u32>,
    /// Per event of the group being delivered: the offset of its weight row, and its factor.
    rows: Vec<usize>,
    factors: Vec<F>,
}

/// How an event's weight enters its targets: as it is (a binary spike) or times the source's
/// real value.
trait Term<F>: Copy {
    /// Whether sources carry factors (real values) at all.
    const VALUED: bool;
    /// The factor of source `j`.
    fn factor(self, j: usize) -> F;
    /// The contribution of `weight` from a source with factor `factor`.
    fn term(weight: F, factor: F) -> F;
}

#[derive(Clone, Copy)]
struct Spike;

impl<F: Real> Term<F> for Spike {
    const VALUED: bool = false;
    #[inline(always)]
    fn factor(self, _: usize) -> F {
        F::one()
    }
    #[inline(always)]
    fn term(weight: F, _: F) -> F {
        weight
    }
}

#[derive(Clone, Copy)]
struct Valued<'a, F>(&'a [F]);

impl<F: Real> Term<F> for Valued<'_, F> {
    const VALUED: bool = true;
    #[inline(always)]
    fn factor(self, j: usize) -> F {
        self.0[j]
    }
    #[inline(always)]
    fn term(weight: F, factor: F) -> F {
        weight * factor
    }
}

/// The target runs of one column: one strided run when its targets are evenly spaced, else
/// contiguous runs with gaps of up to [`MAX_GAP`] merged.
fn column_runs(rows: &[usize], runs: &mut Vec<TargetRun>) {
    runs.clear();
    if let [first, second, ..] = rows {
        let stride = second - first;
        if stride > 1 && rows.windows(2).all(|w| w[1] - w[0] == stride) {
            runs.push(TargetRun { start: *first as u32, len: rows.len() as u32, stride: stride as u32, column: 0 });
            return;
        }
    }
    for &row in rows {
        match runs.last_mut() {
            Some(run) if row <= (run.start + run.len) as usize + MAX_GAP => run.len = row as u32 + 1 - run.start,
            _ => {
                let column = runs.last().map_or(0, |r| r.column + r.len);
                runs.push(TargetRun { start: row as u32, len: 1, stride: 1, column });
            }
        }
    }
}

/// Per group, its target runs; and per group, its member sources.
type Grouping = (Vec<Vec<TargetRun>>, Vec<Vec<u32>>);

/// Groups of the sources whose fan-outs have exactly the same runs.
fn exact_groups<F>(matrix: &CsMat<F>) -> Grouping {
    let mut group_by_runs: HashMap<Vec<TargetRun>, usize> = HashMap::new();
    let (mut shapes, mut members): (Vec<Vec<TargetRun>>, Vec<Vec<u32>>) = (Vec::new(), Vec::new());
    let mut runs = Vec::new();
    for (j, column) in matrix.outer_iterator().enumerate() {
        column_runs(column.indices(), &mut runs);
        let group = *group_by_runs.entry(runs.clone()).or_insert_with(|| {
            shapes.push(runs.clone());
            members.push(Vec::new());
            shapes.len() - 1
        });
        members[group].push(j as u32);
    }
    (shapes, members)
}

/// Groups of the sources whose targets lie on the same residue class `start mod stride`, each
/// covering the span of its members' targets with zero weights where a member has no synapse:
/// the shape of a convolution composed with a layout change (a depthwise convolution over a
/// channels-last map, say), where no two fan-outs are alike. `None` unless the zero weights stay
/// below half of those stored.
fn residue_groups<F>(matrix: &CsMat<F>) -> Option<Grouping> {
    // Keyed by (stride, residue); sources without synapses form the group of stride 0.
    let mut group_by_class: HashMap<(usize, usize), usize> = HashMap::new();
    let mut spans: Vec<(usize, usize, usize)> = Vec::new();
    let mut members: Vec<Vec<u32>> = Vec::new();
    for (j, column) in matrix.outer_iterator().enumerate() {
        let rows = column.indices();
        let (first, last) = (rows.first().copied().unwrap_or(0), rows.last().copied().unwrap_or(0));
        let stride = rows.windows(2).fold(0, |g, w| gcd(g, w[1] - w[0])).max(1);
        let stride = if rows.is_empty() { 0 } else { stride };
        let group = *group_by_class.entry((stride, first.checked_rem(stride).unwrap_or(0))).or_insert_with(|| {
            spans.push((stride, first, last));
            members.push(Vec::new());
            spans.len() - 1
        });
        let span = &mut spans[group];
        (span.1, span.2) = (span.1.min(first), span.2.max(last));
        members[group].push(j as u32);
    }
    let runs = |&(stride, first, last): &(usize, usize, usize)| match stride {
        0 => vec![],
        _ => vec![TargetRun {
            start: first as u32,
            len: ((last - first) / stride + 1) as u32,
            stride: stride as u32,
            column: 0,
        }],
    };
    let shapes: Vec<Vec<TargetRun>> = spans.iter().map(runs).collect();
    let stored: usize =
        shapes.iter().zip(&members).map(|(s, m)| s.iter().map(|r| r.len as usize).sum::<usize>() * m.len()).sum();
    (stored <= 2 * matrix.nnz()).then_some((shapes, members))
}

/// A hash of a row of weights, to find the rows that repeat (a linear map applied to every token,
/// say, or followed by an average: one copy serves them all).
fn hash_weights<F: Real>(weights: &[F]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    weights.len().hash(&mut hasher);
    weights.iter().for_each(|w| w.to_f64_lossless().to_bits().hash(&mut hasher));
    hasher.finish()
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl<F: Real> ColumnTiles<F> {
    /// Lays out a `[targets × sources]` matrix.
    pub fn new(matrix: &CsMat<F>) -> Self {
        let matrix = matrix.to_csc();
        let (targets, sources) = (matrix.rows(), matrix.cols());
        // Whatever the share of sources without a target: a branch per event on whether it has
        // one costs more (mispredicted half of the time) than adding a zero.
        let selection = matrix.outer_iterator().all(|column| column.nnz() <= 1);
        if targets > 0 && selection {
            let single = |column: sprs::CsVecView<F>| column.iter().next().map(|(t, &w)| (t as u32, w));
            let (target_of, weights) = matrix
                .outer_iterator()
                .enumerate()
                .map(|(j, c)| single(c).unwrap_or(((j % targets) as u32, F::zero())))
                .unzip();
            return ColumnTiles { targets, sources, layout: Layout::Single { target_of, weights }, isa: Isa::detect() };
        }
        let (mut shapes, mut members) = exact_groups(&matrix);
        if shapes.len() * MIN_MEAN_GROUP > sources {
            if let Some((residue_shapes, residue_members)) = residue_groups(&matrix) {
                (shapes, members) = (residue_shapes, residue_members);
            }
        }
        let wide = matrix.nnz() >= MIN_WIDTH * sources;
        if shapes.len() * MIN_MEAN_GROUP > sources && !wide {
            return ColumnTiles {
                targets,
                sources,
                layout: Layout::Scatter {
                    indptr: matrix.indptr().raw_storage().to_vec(),
                    indices: matrix.indices().iter().map(|&r| r as u32).collect(),
                    weights: matrix.data().to_vec(),
                },
                isa: Isa::detect(),
            };
        }
        let consecutive = members.iter().all(|m| m.windows(2).all(|w| w[1] == w[0] + 1));
        let (mut groups, mut all_runs, mut weights, mut row_of) =
            (Vec::new(), Vec::new(), Vec::new(), vec![0; sources]);
        let mut group_of = vec![0; sources];
        let mut rows_by_hash: HashMap<u64, Vec<usize>> = HashMap::new();
        let mut row = Vec::new();
        for (g, (shape, members)) in shapes.iter().zip(&members).enumerate() {
            let width: u32 = shape.iter().map(|r| r.len).sum();
            groups.push(Group {
                end_source: members.last().map_or(0, |&j| j + 1),
                first_run: all_runs.len() as u32,
                end_run: (all_runs.len() + shape.len()) as u32,
                width,
                shared_row: None,
            });
            all_runs.extend_from_slice(shape);
            for &j in members {
                group_of[j as usize] = g as u32;
                row.clear();
                row.resize(width as usize, F::zero());
                let column = matrix.outer_view(j as usize).expect("a column of the matrix");
                for (target, &w) in column.iter() {
                    let (run, position) = shape
                        .iter()
                        .find_map(|r| Some((r, r.position(target as u32)?)))
                        .expect("every target lies in a run");
                    row[(run.column + position) as usize] = w;
                }
                let same = rows_by_hash.entry(hash_weights(&row)).or_default();
                row_of[j as usize] = match same.iter().find(|&&at| weights.get(at..at + row.len()) == Some(&row[..])) {
                    Some(&at) => at,
                    None => {
                        same.push(weights.len());
                        weights.extend_from_slice(&row);
                        weights.len() - row.len()
                    }
                };
            }
        }
        for (group, members) in groups.iter_mut().zip(&members) {
            let first = members.first().map(|&j| row_of[j as usize]);
            if members.iter().all(|&j| Some(row_of[j as usize]) == first) {
                group.shared_row = first;
            }
        }
        let row_fits = |j: usize| row_of[j] + groups[group_of[j] as usize].width as usize <= weights.len();
        assert!((0..sources).all(row_fits), "every weight row lies inside the weights");
        ColumnTiles {
            targets,
            sources,
            layout: Layout::Tiled { group_of, row_of, groups, runs: all_runs, weights, consecutive },
            isa: Isa::detect(),
        }
    }

    /// Number of targets.
    pub fn targets(&self) -> usize {
        self.targets
    }

    /// Number of sources.
    pub fn sources(&self) -> usize {
        self.sources
    }

    /// Bytes the layout holds (weights and indices).
    pub fn bytes(&self) -> usize {
        let f = std::mem::size_of::<F>();
        match &self.layout {
            Layout::Tiled { group_of, row_of, groups, runs, weights, .. } => {
                group_of.len() * 4
                    + row_of.len() * 8
                    + groups.len() * std::mem::size_of::<Group>()
                    + runs.len() * std::mem::size_of::<TargetRun>()
                    + weights.len() * f
            }
            Layout::Scatter { indptr, indices, weights } => indptr.len() * 8 + indices.len() * 4 + weights.len() * f,
            Layout::Single { target_of, weights } => target_of.len() * 4 + weights.len() * f,
        }
    }

    /// Adds the weights of every fired source (ascending indices) to `acc`.
    pub fn add_spikes(&self, fired: &[u32], scratch: &mut TileScratch<F>, acc: &mut [F]) {
        self.dispatch(fired, Spike, scratch, acc)
    }

    /// Adds `A u` over the listed sources (ascending indices; the others are taken as zero).
    pub fn add_values(&self, sources: &[u32], values: &[F], scratch: &mut TileScratch<F>, acc: &mut [F]) {
        self.dispatch(sources, Valued(values), scratch, acc)
    }

    fn dispatch<T: Term<F>>(&self, events: &[u32], term: T, scratch: &mut TileScratch<F>, acc: &mut [F]) {
        match self.isa.level() {
            Level::Baseline => self.deliver(events, term, scratch, acc),
            // SAFETY: `Isa::detect` found the feature on this CPU.
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => unsafe { self.deliver_avx512(events, term, scratch, acc) },
            // SAFETY: as above.
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => unsafe { self.deliver_avx2(events, term, scratch, acc) },
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn deliver_avx512<T: Term<F>>(&self, events: &[u32], term: T, scratch: &mut TileScratch<F>, acc: &mut [F]) {
        self.deliver(events, term, scratch, acc)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn deliver_avx2<T: Term<F>>(&self, events: &[u32], term: T, scratch: &mut TileScratch<F>, acc: &mut [F]) {
        self.deliver(events, term, scratch, acc)
    }

    #[inline(always)]
    fn deliver<T: Term<F>>(&self, events: &[u32], term: T, scratch: &mut TileScratch<F>, acc: &mut [F]) {
        let (group_of, row_of, groups, runs, weights, consecutive) = match &self.layout {
            Layout::Scatter { indptr, indices, weights } => {
                for &j in events {
                    let range = indptr[j as usize]..indptr[j as usize + 1];
                    for (&target, &w) in indices[range.clone()].iter().zip(&weights[range]) {
                        acc[target as usize] += T::term(w, term.factor(j as usize));
                    }
                }
                return;
            }
            Layout::Single { target_of, weights } => {
                for &j in events {
                    acc[target_of[j as usize] as usize] += T::term(weights[j as usize], term.factor(j as usize));
                }
                return;
            }
            Layout::Tiled { group_of, row_of, groups, runs, weights, consecutive } => {
                (group_of, row_of, groups, runs, weights, *consecutive)
            }
        };
        let TileScratch { members, starts, rows, factors } = scratch;
        let mut tiles = Tiles { weights, row_of, runs, term, rows, factors };
        if consecutive {
            let mut i = 0;
            while i < events.len() {
                let g = group_of[events[i] as usize];
                let group = &groups[g as usize];
                let end = i + events[i..].iter().take_while(|&&j| j < group.end_source).count();
                tiles.add_group(group, &events[i..end], acc);
                i = end;
            }
            return;
        }
        starts.clear();
        starts.resize(groups.len() + 1, 0);
        for &j in events {
            starts[group_of[j as usize] as usize + 1] += 1;
        }
        for g in 0..groups.len() {
            starts[g + 1] += starts[g];
        }
        members.resize(events.len(), 0);
        for &j in events {
            let slot = &mut starts[group_of[j as usize] as usize];
            members[*slot as usize] = j;
            *slot += 1;
        }
        let mut begin = 0;
        for (group, &end) in groups.iter().zip(starts.iter()) {
            if end > begin {
                tiles.add_group(group, &members[begin as usize..end as usize], acc);
            }
            begin = end;
        }
    }
}

/// The tiled layout's parts that every group reads, and the rows of the group being delivered.
struct Tiles<'a, F, T> {
    weights: &'a [F],
    row_of: &'a [usize],
    runs: &'a [TargetRun],
    term: T,
    rows: &'a mut Vec<usize>,
    factors: &'a mut Vec<F>,
}

impl<F: Real, T: Term<F>> Tiles<'_, F, T> {
    /// Delivers the events of some members of one group, run by run, in register-sized chunks.
    #[inline(always)]
    fn add_group(&mut self, group: &Group, members: &[u32], acc: &mut [F]) {
        if let Some(row) = group.shared_row {
            let total = match T::VALUED {
                true => self.sum_of_factors(members),
                false => F::of(members.len() as f64),
            };
            for run in &self.runs[group.first_run as usize..group.end_run as usize] {
                let weights = &self.weights[row + run.column as usize..row + (run.column + run.len) as usize];
                if run.stride == 1 {
                    let targets = &mut acc[run.start as usize..run.start as usize + weights.len()];
                    for (a, &w) in targets.iter_mut().zip(weights) {
                        *a += w * total;
                    }
                } else {
                    for (k, &w) in weights.iter().enumerate() {
                        acc[run.start as usize + k * run.stride as usize] += w * total;
                    }
                }
            }
            return;
        }
        self.rows.clear();
        self.rows.extend(members.iter().map(|&j| self.row_of[j as usize]));
        self.factors.clear();
        if T::VALUED {
            self.factors.extend(members.iter().map(|&j| self.term.factor(j as usize)));
        }
        for run in &self.runs[group.first_run as usize..group.end_run as usize] {
            let (mut column, mut start, mut left) = (run.column as usize, run.start as usize, run.len as usize);
            let stride = run.stride as usize;
            for n in [64, 32, 16, 8, 4, 1] {
                while left >= n {
                    match n {
                        64 => self.add_chunk::<64, 1>(column, acc, start, stride),
                        32 => self.add_chunk::<32, 2>(column, acc, start, stride),
                        16 => self.add_chunk::<16, 4>(column, acc, start, stride),
                        8 => self.add_chunk::<8, 4>(column, acc, start, stride),
                        4 => self.add_chunk::<4, 4>(column, acc, start, stride),
                        _ => self.add_chunk::<1, 4>(column, acc, start, stride),
                    }
                    column += n;
                    start += n * stride;
                    left -= n;
                }
            }
        }
    }

    /// The members' factors summed in eight interleaved partial sums (member `m` into partial
    /// `m mod 8`, combined in order), so the additions do not wait on each other.
    #[inline(always)]
    fn sum_of_factors(&self, members: &[u32]) -> F {
        let mut partials = [F::zero(); 8];
        let whole = members.len() / 8 * 8;
        for chunk in members[..whole].chunks_exact(8) {
            for p in 0..8 {
                partials[p] += self.term.factor(chunk[p] as usize);
            }
        }
        for (p, &j) in members[whole..].iter().enumerate() {
            partials[p] += self.term.factor(j as usize);
        }
        partials.iter().fold(F::zero(), |sum, &p| sum + p)
    }

    /// Sums the weights at `column..column + N` of the rows in registers, then adds the sums to
    /// the targets `start, start + stride, …` of `acc`. `column + N` lies within the group's width.
    /// Narrow chunks keep `P` partial sums (row `r` goes to partial `r mod P`, combined in order)
    /// so the additions do not wait on each other.
    #[inline(always)]
    fn add_chunk<const N: usize, const P: usize>(&self, column: usize, acc: &mut [F], start: usize, stride: usize) {
        let mut partials = [[F::zero(); N]; P];
        let add = |partial: &mut [F; N], row: usize, factor: F| {
            // SAFETY: `ColumnTiles::new` checked that every source's row of its group's width lies
            // inside `weights`, and the runs place `column + N` within that width.
            let weights = unsafe { &*(self.weights.as_ptr().add(row + column) as *const [F; N]) };
            for k in 0..N {
                partial[k] += T::term(weights[k], factor);
            }
        };
        let factor = |i: usize| if T::VALUED { self.factors[i] } else { F::one() };
        let full = self.rows.len() / P * P;
        for (c, rows) in self.rows[..full].chunks_exact(P).enumerate() {
            let rows: &[usize; P] = rows.try_into().expect("P rows");
            for p in 0..P {
                add(&mut partials[p], rows[p], factor(c * P + p));
            }
        }
        for (p, &row) in self.rows[full..].iter().enumerate() {
            add(&mut partials[p], row, factor(full + p));
        }
        let mut sums = partials[0];
        for partial in &partials[1..] {
            for k in 0..N {
                sums[k] += partial[k];
            }
        }
        if stride == 1 {
            let acc: &mut [F; N] = (&mut acc[start..start + N]).try_into().expect("a chunk of N targets");
            for k in 0..N {
                acc[k] += sums[k];
            }
        } else {
            for (k, sum) in sums.into_iter().enumerate() {
                acc[start + k * stride] += sum;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sprs::TriMat;

    fn matrix(targets: usize, sources: usize, keep: impl Fn(usize, usize) -> bool) -> CsMat<f64> {
        let mut tri = TriMat::new((targets, sources));
        for c in 0..sources {
            for r in 0..targets {
                if keep(r, c) {
                    tri.add_triplet(r, c, ((r * 7 + c * 3) as f64).sin());
                }
            }
        }
        tri.to_csc()
    }

    /// One 32×16 matrix applied to each of 4 tokens: the same weights in every group.
    fn pooled() -> CsMat<f64> {
        let mut tri = TriMat::new((10, 64));
        for c in 0..64 {
            for r in 0..10 {
                tri.add_triplet(r, c, ((r * 3 + c % 8) as f64).cos() / 8.0);
            }
        }
        tri.to_csc()
    }

    fn per_token() -> CsMat<f64> {
        let mut tri = TriMat::new((128, 64));
        for c in 0..64 {
            for r in (c / 16) * 32..(c / 16 + 1) * 32 {
                tri.add_triplet(r, c, ((r % 32) as f64 * 0.3 + (c % 16) as f64).sin());
            }
        }
        tri.to_csc()
    }

    fn reference(m: &CsMat<f64>, values: &[f64], sources: &[u32]) -> Vec<f64> {
        let mut out = vec![0.0; m.rows()];
        for &j in sources {
            for (r, &w) in m.outer_view(j as usize).expect("a column").iter() {
                out[r] += w * values[j as usize];
            }
        }
        out
    }

    #[test]
    fn every_layout_delivers_the_same_sums() {
        let cases = [
            matrix(150, 90, |_, _| true),
            matrix(128, 64, |r, c| r / 32 == c / 16),
            matrix(128, 64, |r, c| r / 32 == c % 4 && r % 5 != 2),
            matrix(70, 40, |r, c| (r + c) % 3 != 0),
            matrix(33, 50, |r, c| r == c % 33),
            matrix(90, 30, |r, c| r % 10 == c % 10 || r < 2),
            matrix(96, 40, |r, c| r % 8 == c % 8),
            matrix(392, 392, |r, c| r % 8 == c % 8 && (r / 8).abs_diff(c / 8) <= 6),
            matrix(1024, 64, |r, c| r % 16 == c % 16),
            matrix(20, 10, |_, c| c % 2 == 0),
            matrix(392, 400, |r, c| c < 392 && r % 8 == c % 8 && (r / 8).abs_diff(c / 8) <= 6),
            per_token(),
            pooled(),
            matrix(3, 40, |_, _| true).map(|_| 1.0 / 7.0),
            matrix(40, 50, |r, c| r == (c * 7) % 40 && c % 5 != 0),
        ];
        for m in cases {
            let tiles = ColumnTiles::new(&m);
            let values: Vec<f64> = (0..m.cols()).map(|j| (j as f64 * 0.37).cos()).collect();
            let ones = vec![1.0; m.cols()];
            let mut scratch = TileScratch::default();
            for sources in [
                (0..m.cols() as u32).collect::<Vec<_>>(),
                (0..m.cols() as u32).filter(|j| j % 3 != 1).collect(),
                vec![],
            ] {
                let mut spikes = vec![0.0; m.rows()];
                tiles.add_spikes(&sources, &mut scratch, &mut spikes);
                let mut valued = vec![0.0; m.rows()];
                tiles.add_values(&sources, &values, &mut scratch, &mut valued);
                let (expected_spikes, expected_values) =
                    (reference(&m, &ones, &sources), reference(&m, &values, &sources));
                for r in 0..m.rows() {
                    assert!((spikes[r] - expected_spikes[r]).abs() < 1e-12, "spikes, target {r}");
                    assert!((valued[r] - expected_values[r]).abs() < 1e-12, "values, target {r}");
                }
            }
        }
    }

    fn group_count(tiles: &ColumnTiles<f64>) -> Option<usize> {
        match &tiles.layout {
            Layout::Tiled { groups, .. } => Some(groups.len()),
            Layout::Scatter { .. } | Layout::Single { .. } => None,
        }
    }

    #[test]
    fn identical_fan_outs_share_one_group() {
        assert_eq!(group_count(&ColumnTiles::new(&matrix(100, 80, |_, _| true))), Some(1));
        assert_eq!(group_count(&ColumnTiles::new(&matrix(128, 64, |r, c| r / 32 == c / 16))), Some(4));
        let per_token = ColumnTiles::new(&per_token());
        assert!(matches!(&per_token.layout, Layout::Tiled { weights, .. } if weights.len() == 16 * 32));
        let pooled = ColumnTiles::new(&pooled());
        assert!(matches!(&pooled.layout, Layout::Tiled { weights, .. } if weights.len() == 80));
        assert_eq!(group_count(&ColumnTiles::new(&matrix(128, 64, |r, c| r / 32 == c % 4))), Some(4));
        assert_eq!(group_count(&ColumnTiles::new(&matrix(33, 50, |r, c| r == c % 33))), None);
        let windows = matrix(392, 392, |r, c| r % 8 == c % 8 && (r / 8).abs_diff(c / 8) <= 30);
        assert_eq!(group_count(&ColumnTiles::new(&windows)), Some(8));
    }

    #[test]
    fn every_instruction_set_gives_the_same_bits() {
        for m in [matrix(150, 90, |_, _| true), per_token(), matrix(392, 392, |r, c| r % 8 == c % 8)] {
            let m = m.map(|&w| w as f32);
            let tiles = ColumnTiles::new(&m);
            let fired: Vec<u32> = (0..m.cols() as u32).filter(|j| j % 3 != 1).collect();
            let values: Vec<f32> = (0..m.cols()).map(|j| (j as f32 * 0.37).cos()).collect();
            let mut scratch = TileScratch::default();
            let (mut dispatched, mut portable) = (vec![0.0f32; m.rows()], vec![0.0f32; m.rows()]);
            tiles.add_spikes(&fired, &mut scratch, &mut dispatched);
            tiles.deliver(&fired, Spike, &mut scratch, &mut portable);
            tiles.add_values(&fired, &values, &mut scratch, &mut dispatched);
            tiles.deliver(&fired, Valued(&values), &mut scratch, &mut portable);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&dispatched), bits(&portable));
        }
    }
}
