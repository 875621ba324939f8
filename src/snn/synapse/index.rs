//! Index maps: where each logical element of a block reads or writes its physical element.
//! Layout changes (transposes, slices, reshapes, broadcasts, padding, concatenation) become index
//! maps of the blocks that read or write through them, never matrices. Strided maps take no memory
//! beyond their shape; tables take one `u32` per logical element (neurons, never synapses).

use serde::{Deserialize, Serialize};

/// The table entry of a logical element that reads or writes nothing (padding, a dropped output).
pub const NONE: u32 = u32::MAX;

/// Consecutive logical elements mapped to `base`, `base + stride`, `base + 2 stride`, …
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Run {
    /// The physical element of the run's first logical element.
    pub base: usize,
    /// The physical distance between consecutive logical elements (0 repeats one element).
    pub stride: usize,
}

/// A map from logical elements `0..n` (row-major over a logical shape) to physical elements.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Index {
    /// Logical element `i` is physical element `i`.
    Identity,
    /// Logical multi-index `j` over `shape` is physical element `offset + Σ j[a] · strides[a]`
    /// (a stride of 0 repeats an element: a broadcast).
    Strided {
        /// Logical shape (its product is the number of logical elements).
        shape: Vec<usize>,
        /// Physical step per logical axis.
        strides: Vec<usize>,
        /// Physical element of logical element 0.
        offset: usize,
    },
    /// One physical element per logical element, [`NONE`] for none.
    Table {
        /// The physical elements.
        entries: Vec<u32>,
    },
}

impl Index {
    /// Builds the map `logical element → map(logical)` over `shape` in its most compact form:
    /// the identity, a strided map (checked on every element), or a table.
    pub fn fit(shape: &[usize], map: impl Fn(usize) -> Option<usize>) -> Index {
        let count: usize = shape.iter().product();
        let entries: Vec<u32> = (0..count).map(|i| map(i).map_or(NONE, |p| p as u32)).collect();
        Index::from_entries(shape, entries)
    }

    /// The most compact form of a table over `shape`.
    pub fn from_entries(shape: &[usize], entries: Vec<u32>) -> Index {
        if entries.iter().enumerate().all(|(i, &p)| p as usize == i) {
            return Index::Identity;
        }
        match strided_fit(shape, &entries) {
            Some(strided) => strided,
            None => Index::Table { entries },
        }
    }

    /// A strided map, reduced to the identity where it is one.
    pub fn strided(shape: Vec<usize>, strides: Vec<usize>, offset: usize) -> Index {
        let index = Index::Strided { shape, strides, offset };
        if index.is_identity() {
            Index::Identity
        } else {
            index
        }
    }

    /// Whether logical element `i` is physical element `i` for every `i`.
    pub fn is_identity(&self) -> bool {
        match self {
            Index::Identity => true,
            Index::Strided { shape, strides, offset } => {
                *offset == 0 && {
                    let mut expected = 1;
                    shape.iter().zip(strides).rev().all(|(&n, &s)| {
                        let ok = n == 1 || s == expected;
                        expected *= n;
                        ok
                    })
                }
            }
            Index::Table { entries } => entries.iter().enumerate().all(|(i, &p)| p as usize == i),
        }
    }

    /// The physical element of logical element `i` (`None` where it reads or writes nothing).
    pub fn get(&self, i: usize) -> Option<usize> {
        match self {
            Index::Identity => Some(i),
            Index::Strided { shape, strides, offset } => {
                let mut rest = i;
                let mut physical = *offset;
                for (&n, &s) in shape.iter().zip(strides).rev() {
                    physical += (rest % n) * s;
                    rest /= n;
                }
                Some(physical)
            }
            Index::Table { entries } => entries.get(i).and_then(|&p| (p != NONE).then_some(p as usize)),
        }
    }

    /// The same map with adjacent axes that step through memory as one merged into one, so that
    /// its runs are as long as they can be (a strided map whose axis `a` steps by the whole
    /// extent of axis `a + 1`; axes of one element dropped).
    pub fn with_merged_axes(&self) -> Index {
        let Index::Strided { shape, strides, offset } = self else {
            return self.clone();
        };
        let (mut merged_shape, mut merged_strides): (Vec<usize>, Vec<usize>) = (Vec::new(), Vec::new());
        for (&n, &s) in shape.iter().zip(strides).filter(|(&n, _)| n != 1) {
            match (merged_shape.last_mut(), merged_strides.last_mut()) {
                (Some(outer), Some(outer_stride)) if *outer_stride == n * s => {
                    *outer *= n;
                    *outer_stride = s;
                }
                _ => {
                    merged_shape.push(n);
                    merged_strides.push(s);
                }
            }
        }
        if merged_shape.is_empty() {
            (merged_shape, merged_strides) = (vec![1], vec![1]);
        }
        Index::strided(merged_shape, merged_strides, *offset)
    }

    /// The first physical element of the logical elements `start..end` where they map to
    /// consecutive physical elements, in order; `None` otherwise.
    pub fn contiguous_from(&self, start: usize, end: usize) -> Option<usize> {
        match self {
            Index::Identity => Some(start),
            Index::Strided { shape, strides, .. } => {
                let inner = *shape.last()?;
                let one_run = strides.last() == Some(&1) && start / inner == (end.max(start + 1) - 1) / inner;
                one_run.then(|| self.get(start)).flatten()
            }
            Index::Table { entries } => {
                let first = *entries.get(start)?;
                let consecutive =
                    entries[start..end].iter().enumerate().all(|(i, &p)| p != NONE && p == first + i as u32);
                (first != NONE && consecutive).then_some(first as usize)
            }
        }
    }

    /// Whether the map's runs are long enough to be worth handling a run at a time (a table, or a
    /// strided map whose innermost axis holds fewer than 16 elements, is faster element by element).
    pub fn has_long_runs(&self) -> bool {
        match self {
            Index::Identity => true,
            Index::Strided { shape, .. } => shape.last().is_some_and(|&inner| inner >= 16),
            Index::Table { .. } => false,
        }
    }

    /// Calls `visit(logical, physical)` for the first `count` logical elements, in order.
    #[inline]
    pub fn for_each(&self, count: usize, visit: impl FnMut(usize, Option<usize>)) {
        self.for_each_in(0, count, visit)
    }

    /// Calls `visit(logical, physical)` for the logical elements `start..end`, in order.
    #[inline]
    pub fn for_each_in(&self, start: usize, end: usize, mut visit: impl FnMut(usize, Option<usize>)) {
        match self {
            Index::Identity => (start..end).for_each(|i| visit(i, Some(i))),
            Index::Table { entries } => {
                for (i, &p) in entries[start..end].iter().enumerate() {
                    visit(start + i, (p != NONE).then_some(p as usize));
                }
            }
            Index::Strided { .. } => self.for_each_run_in(start, end, |first, len, run| match run {
                Some(Run { base, stride }) => (0..len).for_each(|k| visit(first + k, Some(base + k * stride))),
                None => (first..first + len).for_each(|i| visit(i, None)),
            }),
        }
    }

    /// Calls `visit(first, len, run)` over the logical elements `start..end` in order, in runs:
    /// the elements `first..first + len` map to the physical elements of `run`, or are holes
    /// (`None`). A strided map gives runs as long as its innermost axis, a table runs of one.
    #[inline]
    pub fn for_each_run_in(&self, start: usize, end: usize, mut visit: impl FnMut(usize, usize, Option<Run>)) {
        match self {
            Index::Identity => {
                if start < end {
                    visit(start, end - start, Some(Run { base: start, stride: 1 }))
                }
            }
            Index::Table { entries } => {
                for (i, &p) in entries[start..end].iter().enumerate() {
                    visit(start + i, 1, (p != NONE).then_some(Run { base: p as usize, stride: 1 }));
                }
            }
            Index::Strided { shape, strides, offset } => {
                let rank = shape.len();
                if rank == 0 {
                    if start == 0 && end > 0 {
                        visit(0, 1, Some(Run { base: *offset, stride: 1 }));
                    }
                    return;
                }
                let (inner, inner_stride) = (shape[rank - 1], strides[rank - 1]);
                // The multi-index of the first element of `start`'s innermost run.
                let mut counter = vec![0usize; rank];
                let mut rest = start / inner;
                let mut base = *offset;
                for axis in (0..rank - 1).rev() {
                    counter[axis] = rest % shape[axis];
                    base += counter[axis] * strides[axis];
                    rest /= shape[axis];
                }
                let mut i = start - start % inner;
                let mut skip = start % inner;
                while i < end {
                    let len = inner.min(end - i) - skip;
                    visit(i + skip, len, Some(Run { base: base + skip * inner_stride, stride: inner_stride }));
                    skip = 0;
                    i += inner;
                    // Advance the outer axes like an odometer.
                    let mut axis = rank - 1;
                    while axis > 0 {
                        axis -= 1;
                        counter[axis] += 1;
                        base += strides[axis];
                        if counter[axis] < shape[axis] {
                            break;
                        }
                        base -= strides[axis] * shape[axis];
                        counter[axis] = 0;
                    }
                }
            }
        }
    }

    /// The map as a table of `count` entries.
    pub fn to_entries(&self, count: usize) -> Vec<u32> {
        let mut entries = vec![NONE; count];
        self.for_each(count, |i, p| entries[i] = p.map_or(NONE, |p| p as u32));
        entries
    }

    /// `self ∘ inner` over `shape`: logical element `j` of the result is `self(inner(j))`.
    pub fn after(&self, inner: &Index, shape: &[usize]) -> Index {
        match (self, inner) {
            (Index::Identity, _) => inner.clone(),
            (_, Index::Identity) if matches!(self, Index::Strided { shape: s, .. } if s.as_slice() == shape) => {
                self.clone()
            }
            _ => {
                let count: usize = shape.iter().product();
                let mut entries = inner.to_entries(count);
                for p in entries.iter_mut().filter(|p| **p != NONE) {
                    *p = self.get(*p as usize).map_or(NONE, |q| q as u32);
                }
                Index::from_entries(shape, entries)
            }
        }
    }

    /// The inverse of an injective map from `count` logical elements into `physical` elements:
    /// for each physical element, the logical element that maps to it. `None` when two logical
    /// elements share a physical one (the map is not injective).
    pub fn inverse(&self, count: usize, physical: usize) -> Option<Vec<u32>> {
        let mut inverse = vec![NONE; physical];
        let mut injective = true;
        self.for_each(count, |i, p| {
            if let Some(p) = p {
                match inverse.get_mut(p) {
                    Some(slot) if *slot == NONE => *slot = i as u32,
                    _ => injective = false,
                }
            }
        });
        injective.then_some(inverse)
    }

    /// Whether some logical element reads or writes nothing.
    pub fn has_holes(&self) -> bool {
        matches!(self, Index::Table { entries } if entries.contains(&NONE))
    }

    /// Number of `u32` entries the map stores.
    pub fn stored_entries(&self) -> usize {
        match self {
            Index::Table { entries } => entries.len(),
            _ => 0,
        }
    }

    /// The largest physical element the first `count` logical elements reach, plus one (0 for
    /// none): the physical size the map needs.
    pub fn span(&self, count: usize) -> usize {
        match self {
            Index::Identity => count,
            Index::Strided { shape, strides, offset } => {
                if count == 0 || shape.contains(&0) {
                    return 0;
                }
                offset + shape.iter().zip(strides).map(|(&n, &s)| (n - 1) * s).sum::<usize>() + 1
            }
            Index::Table { entries } => {
                entries[..count].iter().filter(|&&p| p != NONE).map(|&p| p as usize + 1).max().unwrap_or(0)
            }
        }
    }
}

/// The strided map over `shape` that equals `entries` everywhere, if there is one.
fn strided_fit(shape: &[usize], entries: &[u32]) -> Option<Index> {
    let count: usize = shape.iter().product();
    if count != entries.len() || count == 0 || entries.contains(&NONE) {
        return None;
    }
    let offset = entries[0] as usize;
    let mut strides = vec![0usize; shape.len()];
    let mut unit = 1;
    for axis in (0..shape.len()).rev() {
        if shape[axis] > 1 {
            strides[axis] = (entries[unit] as usize).checked_sub(offset)?;
        }
        unit *= shape[axis];
    }
    let candidate = Index::Strided { shape: shape.to_vec(), strides, offset };
    let mut matches = true;
    candidate.for_each(count, |i, p| matches &= p == Some(entries[i] as usize));
    matches.then_some(candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(index: &Index, count: usize) -> Vec<Option<usize>> {
        (0..count).map(|i| index.get(i)).collect()
    }

    #[test]
    fn merged_axes_map_every_element_alike_in_longer_runs() {
        // Attention's second operand: [heads 3][i 5][k 4][j 6] reading [heads][k][j], broadcast
        // over i; (k, j) are one run of 24.
        let index = Index::strided(vec![3, 5, 4, 6], vec![24, 0, 6, 1], 7);
        let merged = index.with_merged_axes();
        assert_eq!(merged, Index::Strided { shape: vec![3, 5, 24], strides: vec![24, 0, 1], offset: 7 });
        assert_eq!(all(&merged, 360), all(&index, 360));
        let broadcast = Index::strided(vec![2, 1, 3, 4], vec![3, 9, 1, 0], 0);
        assert_eq!(all(&broadcast.with_merged_axes(), 24), all(&broadcast, 24));
        assert_eq!(Index::strided(vec![2, 3], vec![3, 1], 0).with_merged_axes(), Index::Identity);
    }

    #[test]
    fn a_contiguous_range_is_found_only_where_it_is_one() {
        let index = Index::strided(vec![3, 5, 24], vec![24, 0, 1], 7);
        assert_eq!(index.contiguous_from(24, 48), Some(7), "the second i reads the same k, j");
        assert_eq!(index.contiguous_from(26, 40), Some(9));
        assert_eq!(index.contiguous_from(20, 30), None, "across two runs");
        assert_eq!(Index::strided(vec![4, 6], vec![1, 4], 0).contiguous_from(0, 2), None, "a transpose");
        assert_eq!(Index::Identity.contiguous_from(5, 9), Some(5));
        let table = Index::Table { entries: vec![4, 5, 6, NONE, 9] };
        assert_eq!(table.contiguous_from(0, 3), Some(4));
        assert_eq!(table.contiguous_from(1, 4), None, "a hole");
    }

    #[test]
    fn a_transpose_fits_a_strided_map() {
        // [2, 3] → transposed [3, 2]: logical (j0, j1) reads physical j1 * 3 + j0.
        let index = Index::fit(&[3, 2], |i| Some((i % 2) * 3 + i / 2));
        assert_eq!(index, Index::Strided { shape: vec![3, 2], strides: vec![1, 3], offset: 0 });
        assert_eq!(all(&index, 6), [0, 3, 1, 4, 2, 5].map(Some));
        let mut seen = Vec::new();
        index.for_each(6, |i, p| seen.push((i, p.unwrap())));
        assert_eq!(seen, vec![(0, 0), (1, 3), (2, 1), (3, 4), (4, 2), (5, 5)]);
        let mut part = Vec::new();
        index.for_each_in(1, 4, |i, p| part.push((i, p.unwrap())));
        assert_eq!(part, vec![(1, 3), (2, 1), (3, 4)]);
        let cube = Index::Strided { shape: vec![3, 4, 5], strides: vec![1, 3, 12], offset: 7 };
        for (a, b) in [(0, 60), (7, 8), (13, 41), (55, 60)] {
            let mut got = Vec::new();
            cube.for_each_in(a, b, |i, p| got.push((i, p)));
            assert_eq!(got, (a..b).map(|i| (i, cube.get(i))).collect::<Vec<_>>(), "{a}..{b}");
        }
        assert_eq!(index.inverse(6, 6).unwrap(), vec![0, 2, 4, 1, 3, 5]);
    }

    #[test]
    fn broadcasts_slices_and_holes() {
        let broadcast = Index::fit(&[2, 3], |i| Some(i / 3));
        assert_eq!(broadcast, Index::Strided { shape: vec![2, 3], strides: vec![1, 0], offset: 0 });
        assert!(broadcast.inverse(6, 2).is_none());
        let slice = Index::fit(&[2, 2], |i| Some(5 + (i / 2) * 4 + (i % 2) * 2));
        assert_eq!(slice.get(3), Some(11));
        assert_eq!(slice.span(4), 12);
        let padded = Index::fit(&[4], |i| (i > 0 && i < 3).then_some(i - 1));
        assert_eq!(padded, Index::Table { entries: vec![NONE, 0, 1, NONE] });
        assert_eq!(Index::fit(&[5], Some), Index::Identity);
        assert!(Index::strided(vec![2, 1, 3], vec![3, 7, 1], 0).is_identity());
    }

    #[test]
    fn composition_reads_through_both_maps() {
        let transpose = Index::fit(&[3, 2], |i| Some((i % 2) * 3 + i / 2));
        let back = Index::fit(&[2, 3], |i| Some((i % 3) * 2 + i / 3));
        assert_eq!(transpose.after(&back, &[2, 3]), Index::Identity);
        let table = Index::Table { entries: vec![2, NONE, 0] };
        assert_eq!(all(&transpose.after(&table, &[3]), 3), vec![Some(1), None, Some(0)]);
    }
}
