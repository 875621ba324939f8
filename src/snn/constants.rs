//! The constants `c` of an operand, one per neuron, each distinct value stored once where a
//! broadcast repeats it: an operand of a product neuron in attention repeats its source's
//! constants along the other matrix's axis, millions of times, and a layer applied per token
//! repeats its bias once per token.

use serde::{Deserialize, Serialize};

use super::synapse::Index;

/// One constant per neuron: neuron `t` has `values[index(t)]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Constants {
    values: Vec<f64>,
    index: Index,
    len: usize,
}

impl Constants {
    /// One value per neuron.
    pub fn new(values: Vec<f64>) -> Self {
        let len = values.len();
        Constants { values, index: Index::Identity, len }
    }

    /// One value per neuron, stored once per repetition when the values repeat with a period or
    /// in runs (see [`Repetition`]).
    pub fn compact(values: Vec<f64>) -> Self {
        let len = values.len();
        match Repetition::of(&values) {
            Repetition::None => Constants::new(values),
            repetition => Constants::broadcast(repetition.compact(&values), repetition.index(len), len),
        }
    }

    /// `len` constants, neuron `t` reading `values[index(t)]` (`index` has no holes).
    pub fn broadcast(values: Vec<f64>, index: Index, len: usize) -> Self {
        if index.is_identity() && values.len() == len {
            return Constants::new(values);
        }
        Constants { values, index, len }
    }

    /// Number of neurons.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no neurons.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The constant of neuron `t`.
    #[inline]
    pub fn get(&self, t: usize) -> f64 {
        match self.index {
            Index::Identity => self.values[t],
            _ => self.values[self.index.get(t).expect("constants are read through a map without holes")],
        }
    }

    /// The distinct stored values and the map from neurons to them.
    pub fn parts(&self) -> (&[f64], &Index) {
        (&self.values, &self.index)
    }

    /// Every neuron's constant, in order.
    pub fn to_vec(&self) -> Vec<f64> {
        match self.index {
            Index::Identity => self.values.clone(),
            _ => {
                let mut out = vec![0.0; self.len];
                self.index.for_each(self.len, |t, p| out[t] = p.map_or(0.0, |p| self.values[p]));
                out
            }
        }
    }

    /// The first constant that is not finite, with its neuron.
    pub fn non_finite(&self) -> Option<(usize, f64)> {
        let bad = self.values.iter().position(|c| !c.is_finite())?;
        let mut neuron = None;
        self.index.for_each(self.len, |t, p| {
            if neuron.is_none() && p == Some(bad) {
                neuron = Some(t);
            }
        });
        neuron.map(|t| (t, self.values[bad]))
    }

    /// Number of values stored.
    pub fn stored(&self) -> usize {
        self.values.len()
    }
}

/// How a vector of per-neuron values repeats itself (compared bit for bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repetition {
    /// No repetition: every value is stored.
    None,
    /// `values[t] == values[t % period]`, as a bias per feature repeated for every token.
    Periodic(usize),
    /// `values[t] == values[t - t % run]`, as a bias per channel repeated over a feature map.
    Runs(usize),
}

impl Repetition {
    /// The repetition of `values` that stores the fewest of them (a period when a period and
    /// runs store as few).
    pub fn of(values: &[f64]) -> Self {
        let len = values.len();
        let divisors = divisors(len);
        let periodic = divisors.iter().map(|&p| Repetition::Periodic(p)).find(|r| r.fits(values));
        let runs = divisors.iter().rev().filter(|&&r| r > 1).map(|&r| Repetition::Runs(r)).find(|r| r.fits(values));
        match (periodic, runs) {
            (Some(p), Some(r)) if r.stored(len) < p.stored(len) => r,
            (Some(p), _) => p,
            (None, Some(r)) => r,
            (None, None) => Repetition::None,
        }
    }

    /// Whether `values` repeat this way.
    pub fn fits(self, values: &[f64]) -> bool {
        let same = |a: f64, b: f64| a.to_bits() == b.to_bits();
        match self {
            Repetition::None => true,
            Repetition::Periodic(p) => {
                p > 0
                    && values.len().is_multiple_of(p)
                    && values.iter().zip(&values[p.min(values.len())..]).all(|(&a, &b)| same(a, b))
            }
            Repetition::Runs(r) => {
                r > 0
                    && values.len().is_multiple_of(r)
                    && values.chunks_exact(r).all(|run| run.iter().all(|&v| same(v, run[0])))
            }
        }
    }

    /// Values stored for `len` neurons.
    pub fn stored(self, len: usize) -> usize {
        match self {
            Repetition::None => len,
            Repetition::Periodic(p) => p,
            Repetition::Runs(r) => len / r,
        }
    }

    /// The values stored for `values` (which fit this repetition).
    pub fn compact<T: Copy>(self, values: &[T]) -> Vec<T> {
        match self {
            Repetition::None => values.to_vec(),
            Repetition::Periodic(p) => values[..p.min(values.len())].to_vec(),
            Repetition::Runs(r) => values.iter().step_by(r).copied().collect(),
        }
    }

    /// The map from each of `len` neurons to its stored value.
    pub fn index(self, len: usize) -> Index {
        match self {
            Repetition::None => Index::Identity,
            Repetition::Periodic(p) => Index::Strided { shape: vec![len / p, p], strides: vec![0, 1], offset: 0 },
            Repetition::Runs(r) => Index::Strided { shape: vec![len / r, r], strides: vec![1, 0], offset: 0 },
        }
    }
}

/// The divisors of `n` below `n`, in increasing order.
fn divisors(n: usize) -> Vec<usize> {
    let (mut small, mut large) = (Vec::new(), Vec::new());
    let mut d = 1;
    while d * d <= n {
        if n.is_multiple_of(d) {
            small.push(d);
            if d * d != n {
                large.push(n / d);
            }
        }
        d += 1;
    }
    small.extend(large.into_iter().rev());
    small.retain(|&d| d < n);
    small
}

impl From<Vec<f64>> for Constants {
    fn from(values: Vec<f64>) -> Self {
        Constants::new(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bias_per_feature_repeated_per_token_is_stored_once() {
        let values: Vec<f64> = (0..4).flat_map(|_| [1.0, 2.0, 3.0]).collect();
        let constants = Constants::compact(values.clone());
        assert_eq!(constants.stored(), 3);
        assert_eq!(constants.to_vec(), values);
    }

    #[test]
    fn a_bias_per_channel_over_a_feature_map_is_stored_once_per_channel() {
        let values: Vec<f64> = [1.0, -2.0].iter().flat_map(|&c| [c; 6]).collect();
        let constants = Constants::compact(values.clone());
        assert_eq!(constants.stored(), 2);
        assert_eq!((0..12).map(|t| constants.get(t)).collect::<Vec<_>>(), values);
    }

    #[test]
    fn values_without_repetition_and_signed_zeros_are_kept_exactly() {
        let values = vec![0.0, -0.0, 0.0, -0.0, 1.0, 1.0];
        assert_eq!(Repetition::of(&values), Repetition::None);
        assert_eq!(
            Constants::compact(values.clone()).to_vec().iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            values.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert_eq!(Repetition::of(&[]), Repetition::None);
        assert_eq!(Repetition::of(&[5.0]), Repetition::None);
        assert_eq!(Repetition::of(&[5.0, 5.0, 5.0]), Repetition::Periodic(1));
    }
}
