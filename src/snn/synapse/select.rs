//! Elementwise blocks with addressing: every target reads at most one source, times a factor.
//! Residual connections, broadcasts (a per-token value to every feature), slices, transposes,
//! padding and concatenation of populations are all of this kind.

use serde::{Deserialize, Serialize};

use super::index::Index;
use super::scale::Scale;
use crate::real::Real;
use crate::snn::NetworkError;

/// Target `t` receives `scale[t]` times physical source `source(t)` (nothing where the index
/// has a hole).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SelectBlock<W = f64> {
    /// Number of targets.
    pub targets: usize,
    /// Number of physical source elements.
    pub sources: usize,
    /// The source of each target.
    pub source: Index,
    /// A factor per target.
    pub scale: Scale<W>,
}

impl<W: Real> SelectBlock<W> {
    /// Synapses leaving each physical source.
    pub fn fan_out(&self) -> Vec<u32> {
        let mut out = vec![0u32; self.sources];
        self.source.for_each(self.targets, |_, p| {
            if let Some(p) = p {
                out[p] += 1;
            }
        });
        out
    }

    /// Synapses reaching each target (0 or 1).
    pub fn fan_in(&self) -> Vec<u32> {
        let mut out = vec![0u32; self.targets];
        self.source.for_each(self.targets, |t, p| out[t] = p.is_some() as u32);
        out
    }

    /// Number of synapses.
    pub fn synapses(&self) -> u64 {
        if !self.source.has_holes() {
            return self.targets as u64;
        }
        let mut count = 0;
        self.source.for_each(self.targets, |_, p| count += p.is_some() as u64);
        count
    }

    /// Adds `A u` for a dense vector `u` of source values to `acc`.
    pub fn multiply_add(&self, u: &[W], acc: &mut [W]) {
        self.source.for_each(self.targets, |t, p| {
            if let Some(p) = p {
                acc[t] += u[p] * self.scale.get(t);
            }
        });
    }

    /// The same block with its factors in another precision.
    pub fn cast<T: Real>(&self) -> SelectBlock<T> {
        SelectBlock {
            targets: self.targets,
            sources: self.sources,
            source: self.source.clone(),
            scale: self.scale.cast(),
        }
    }

    /// Checks the index map and the factors.
    pub fn validate(&self) -> Result<(), NetworkError> {
        let bad = |what: String| Err(NetworkError::Block(format!("select block: {what}")));
        if let Scale::Each(values) = &self.scale {
            if values.len() != self.targets {
                return bad(format!("{} factors for {} targets", values.len(), self.targets));
            }
        }
        if let Some((i, w)) = self.scale.non_finite() {
            return bad(format!("factor {i} is {w}"));
        }
        super::validate_index(&self.source, self.targets, self.sources, "source").or_else(bad)
    }
}
