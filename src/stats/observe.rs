//! What one input's simulation looked like: a spike raster of one population and, per
//! population and step, the mean |SNN estimate − ANN value|.

use serde::{Deserialize, Serialize};

use crate::engine::Observer;
use crate::real::Real;

/// Largest number of neurons a raster shows (the first ones of the population).
pub const MAX_RASTER_NEURONS: usize = 64;

/// Spikes of one population for one input.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Raster {
    /// Population index.
    pub population: usize,
    /// Population name.
    pub name: String,
    /// Neurons of the population.
    pub neurons: usize,
    /// Neurons shown: the first `shown` of them.
    pub shown: usize,
    /// Steps recorded.
    pub steps: usize,
    /// Per step (index 0 is step 1), the shown neurons that fired.
    pub spikes: Vec<Vec<u32>>,
}

/// Error of one population's output estimate against the ANN over time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ErrorTrace {
    /// Population index.
    pub population: usize,
    /// Population name.
    pub name: String,
    /// Per step (index 0 is step 1): mean over neurons of |v − ANN value|.
    pub mean_abs_error: Vec<f64>,
}

/// Records a raster and error traces while one input is simulated.
pub struct Recorder {
    raster: Raster,
    /// Per population: the ANN values (flattened), when the population has neurons and a graph node.
    reference: Vec<Option<Vec<f64>>>,
    names: Vec<String>,
    errors: Vec<Vec<f64>>,
}

impl Recorder {
    /// A recorder for `names.len()` populations; `raster` is the population whose spikes are kept
    /// (`raster_size` neurons); `reference[p]` the ANN values of population `p` (None: no error
    /// trace).
    pub fn new(names: Vec<String>, raster: usize, raster_size: usize, reference: Vec<Option<Vec<f64>>>) -> Self {
        let count = names.len();
        Recorder {
            raster: Raster {
                population: raster,
                name: names.get(raster).cloned().unwrap_or_default(),
                neurons: raster_size,
                shown: raster_size.min(MAX_RASTER_NEURONS),
                steps: 0,
                spikes: Vec::new(),
            },
            reference,
            names,
            errors: vec![Vec::new(); count],
        }
    }

    /// The raster and the error traces of the populations with a reference.
    pub fn finish(self) -> (Raster, Vec<ErrorTrace>) {
        let traces = self
            .errors
            .into_iter()
            .enumerate()
            .filter(|(p, _)| self.reference.get(*p).is_some_and(Option::is_some))
            .map(|(p, e)| ErrorTrace { population: p, name: self.names[p].clone(), mean_abs_error: e })
            .collect();
        (self.raster, traces)
    }
}

impl<F: Real> Observer<F> for Recorder {
    fn population(&mut self, t: usize, index: usize, _operands: &[Vec<F>], fired: &[u32], v: &[F]) {
        if index == self.raster.population {
            let shown = self.raster.shown as u32;
            self.raster.spikes.push(fired.iter().copied().filter(|&i| i < shown).collect());
            self.raster.steps = t;
        }
        if let Some(Some(reference)) = self.reference.get(index) {
            let n = reference.len().min(v.len()).max(1);
            let sum: f64 = v.iter().zip(reference).map(|(a, b)| (a.to_f64_lossless() - b).abs()).sum();
            self.errors[index].push(sum / n as f64);
        }
    }
}
