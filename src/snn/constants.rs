//! The constants `c` of an operand, one per neuron, each distinct value stored once where a
//! broadcast repeats it: an operand of a product neuron in attention repeats its source's
//! constants along the other matrix's axis, millions of times.

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

impl From<Vec<f64>> for Constants {
    fn from(values: Vec<f64>) -> Self {
        Constants::new(values)
    }
}
