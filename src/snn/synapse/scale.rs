//! Per-element factors of a block: ReLU normalisation's `m` and `1/m`, LayerNorm's γ, layer
//! scales. Stored once per element (neurons, never synapses), or not at all when uniform.

use serde::{Deserialize, Serialize};

use crate::real::Real;

/// A factor per logical element.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "values", rename_all = "snake_case")]
pub enum Scale<W = f64> {
    /// Every factor is 1.
    One,
    /// Every element has the same factor.
    Uniform(W),
    /// One factor per element.
    Each(Vec<W>),
}

impl<W: Real> Scale<W> {
    /// The most compact form of `values`.
    pub fn fit(values: Vec<W>) -> Self {
        match values.first() {
            None => Scale::One,
            Some(&first) if values.iter().all(|&v| v == first) => Scale::uniform(first),
            Some(_) => Scale::Each(values),
        }
    }

    /// A uniform factor (`One` for 1).
    pub fn uniform(value: W) -> Self {
        if value == W::one() {
            Scale::One
        } else {
            Scale::Uniform(value)
        }
    }

    /// The factor of element `i`.
    #[inline]
    pub fn get(&self, i: usize) -> W {
        match self {
            Scale::One => W::one(),
            Scale::Uniform(w) => *w,
            Scale::Each(values) => values[i],
        }
    }

    /// Whether every factor is 1.
    pub fn is_one(&self) -> bool {
        matches!(self, Scale::One)
    }

    /// The factors as a vector of `count` elements.
    pub fn to_vec(&self, count: usize) -> Vec<W> {
        match self {
            Scale::Each(values) => values.clone(),
            other => vec![other.get(0); count],
        }
    }

    /// The elementwise product with `other` over `count` elements.
    pub fn times(&self, other: &Scale<W>, count: usize) -> Self {
        match (self, other) {
            // An identity map may read only the first `count` of more elements (a class token
            // sliced from the tokens): the factors of the others do not belong to the result.
            (Scale::One, Scale::Each(values)) | (Scale::Each(values), Scale::One) if values.len() > count => {
                Scale::fit(values[..count].to_vec())
            }
            (Scale::One, s) | (s, Scale::One) => s.clone(),
            (Scale::Uniform(a), Scale::Uniform(b)) => Scale::uniform(*a * *b),
            _ => Scale::fit((0..count).map(|i| self.get(i) * other.get(i)).collect()),
        }
    }

    /// Factors stored.
    pub fn stored(&self) -> usize {
        match self {
            Scale::One => 0,
            Scale::Uniform(_) => 1,
            Scale::Each(values) => values.len(),
        }
    }

    /// The same factors in another precision.
    pub fn cast<T: Real>(&self) -> Scale<T> {
        match self {
            Scale::One => Scale::One,
            Scale::Uniform(w) => Scale::Uniform(T::of(w.to_f64_lossless())),
            Scale::Each(values) => Scale::Each(values.iter().map(|w| T::of(w.to_f64_lossless())).collect()),
        }
    }

    /// The factors, for quantisation or checks (empty for `One`).
    pub fn values_mut(&mut self) -> &mut [W] {
        match self {
            Scale::One => &mut [],
            Scale::Uniform(w) => std::slice::from_mut(w),
            Scale::Each(values) => values,
        }
    }

    /// The first factor that is not finite, with its element.
    pub fn non_finite(&self) -> Option<(usize, W)> {
        match self {
            Scale::One => None,
            Scale::Uniform(w) => (!w.is_finite()).then_some((0, *w)),
            Scale::Each(values) => values.iter().position(|w| !w.is_finite()).map(|i| (i, values[i])),
        }
    }
}
