//! The spiking network as plain data: populations of neurons, synapse blocks between them, and
//! the readout. Built by the converter, run by the [`crate::engine`], inspected by reports.

pub mod codec;
pub mod constants;
pub mod neuron;
pub mod schedule;
pub mod summary;
pub mod synapse;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use codec::EncoderKind;
pub use constants::{Constants, Repetition};
pub use neuron::{Elementwise, GeluTarget, NeuronKind};
pub use schedule::Schedule;
pub use synapse::{ConvBlock, DenseBlock, Index, Matrix, Run, Scale, SelectBlock, SynapseBlock, Weights};

/// A structural problem with a spiking network, a schedule or a simulation setting.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum NetworkError {
    /// A population or readout does not fit its operands, sources or blocks.
    #[error("population `{population}`: {problem}")]
    Population {
        /// Name of the population (or `readout`).
        population: String,
        /// What is wrong.
        problem: String,
    },
    /// A synapse block is inconsistent in itself.
    #[error("{0}")]
    Block(String),
    /// The step-size schedule is unusable.
    #[error("schedule: {0}")]
    Schedule(String),
    /// A simulation setting is unusable.
    #[error("{0}")]
    Setting(String),
}

/// Where a projection's events come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "index", rename_all = "snake_case")]
pub enum Source {
    /// The encoder of the network's input.
    Input,
    /// The population with this index.
    Population(usize),
}

/// Synapses from one source into one operand.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Projection {
    /// Who sends.
    pub source: Source,
    /// The weights.
    pub block: SynapseBlock,
    /// Every synapse of this block joins a source and a target that another projection of the
    /// same operand from the same source already joins (a residual connection next to a token
    /// mixing matrix): its weights add to those synapses, which are counted once, there.
    #[serde(default)]
    pub overlap: bool,
}

/// One operand of a population: `z = Σ_projections A_p u_p + c`, the ANN's own affine map.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Operand {
    /// The constant c (the map's value when every source emits 0), one per neuron.
    pub bias: Constants,
    /// The sources and their blocks of A.
    pub projections: Vec<Projection>,
}

impl Operand {
    /// An operand with bias `bias` and no projections yet.
    pub fn new(bias: impl Into<Constants>) -> Self {
        Operand { bias: bias.into(), projections: Vec::new() }
    }

    /// Adds a projection from `source` through `block`.
    pub fn with(mut self, source: Source, block: SynapseBlock) -> Self {
        self.projections.push(Projection { source, block, overlap: false });
        self
    }

    /// Number of target neurons.
    pub fn len(&self) -> usize {
        self.bias.len()
    }

    /// Whether the operand has no neurons.
    pub fn is_empty(&self) -> bool {
        self.bias.is_empty()
    }

    /// `A 1`: the map's response when every source emits 1, minus c.
    pub fn response_to_ones(&self) -> Vec<f64> {
        let mut total = vec![0.0; self.len()];
        for projection in &self.projections {
            for (t, r) in total.iter_mut().zip(projection.block.response_to_ones()) {
                *t += r;
            }
        }
        total
    }

    /// The constant offset `o = A 1 + 2 c` of SPEC.md §2, for an operand whose sources all
    /// emit 0/1 spikes (no relay among them; [`Network::operand_offset`] handles relays).
    pub fn offset(&self) -> Vec<f64> {
        self.response_to_ones().iter().enumerate().map(|(t, a)| a + 2.0 * self.bias.get(t)).collect()
    }
}

/// A population of neurons of one kind, one neuron per element of an ANN activation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Population {
    /// Name (usually the ANN node it replaces).
    pub name: String,
    /// The nonlinearity.
    pub kind: NeuronKind,
    /// Shape of the activation (its product is the number of neurons).
    pub shape: Vec<usize>,
    /// One operand per argument of the nonlinearity.
    pub operands: Vec<Operand>,
}

impl Population {
    /// Number of neurons.
    pub fn size(&self) -> usize {
        self.shape.iter().product()
    }
}

/// What every source emits when every neuron and the encoder emit 1 (see
/// [`Network::unit_outputs`]).
pub struct UnitOutputs {
    /// Per population, a relay's response (`None` for neurons, which emit 1).
    relays: Vec<Option<Vec<f64>>>,
    /// Ones, as many as the largest source has elements.
    ones: Vec<f64>,
}

impl UnitOutputs {
    /// The output of `source` (at least as long as the source; ones for neurons and the input).
    pub fn of(&self, source: Source) -> &[f64] {
        match source {
            Source::Population(p) => self.relays.get(p).and_then(Option::as_deref).unwrap_or(&self.ones),
            Source::Input => &self.ones,
        }
    }
}

/// A spiking network: encoder input, populations in topological order, and the readout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Network {
    /// Shape of one input (without a batch dimension).
    pub input_shape: Vec<usize>,
    /// Populations; a population reads only the input and populations before it.
    pub populations: Vec<Population>,
    /// The network's final affine map, decoded into the output estimate y.
    pub readout: Operand,
    /// Shape of the output.
    pub output_shape: Vec<usize>,
}

impl Network {
    /// Number of neurons; relays (real-valued accumulators) are not neurons.
    pub fn neurons(&self) -> usize {
        self.populations.iter().filter(|p| !p.kind.is_relay()).map(|p| p.size()).sum()
    }

    /// Number of relay populations.
    pub fn relays(&self) -> usize {
        self.populations.iter().filter(|p| p.kind.is_relay()).count()
    }

    /// Number of input elements.
    pub fn input_size(&self) -> usize {
        self.input_shape.iter().product()
    }

    /// Number of output elements.
    pub fn output_size(&self) -> usize {
        self.output_shape.iter().product()
    }

    /// Size of a source's output vector.
    pub fn source_size(&self, source: Source) -> Option<usize> {
        match source {
            Source::Input => Some(self.input_size()),
            Source::Population(i) => self.populations.get(i).map(Population::size),
        }
    }

    /// What each source emits when every neuron and the encoder emit 1: ones for neurons and
    /// the input, and for a relay its linear response to those ones.
    pub fn unit_outputs(&self) -> UnitOutputs {
        let largest = self.populations.iter().map(Population::size).chain([self.input_size()]).max().unwrap_or(0);
        let mut units = UnitOutputs { relays: Vec::with_capacity(self.populations.len()), ones: vec![1.0; largest] };
        for population in &self.populations {
            let unit = population.kind.is_relay().then(|| {
                let mut acc = vec![0.0; population.size()];
                for projection in population.operands.iter().flat_map(|o| &o.projections) {
                    let source = &units.of(projection.source)[..projection.block.sources()];
                    projection.block.multiply_add(source, &mut acc);
                }
                acc
            });
            units.relays.push(unit);
        }
        units
    }

    /// The constant offset `o = A 1 + 2 c` of an operand, with `units` from
    /// [`Network::unit_outputs`] standing for "every source emits 1".
    pub fn operand_offset(&self, operand: &Operand, units: &UnitOutputs) -> Vec<f64> {
        let mut response = vec![0.0; operand.len()];
        for projection in &operand.projections {
            projection.block.multiply_add(&units.of(projection.source)[..projection.block.sources()], &mut response);
        }
        response.iter().enumerate().map(|(t, a)| a + 2.0 * operand.bias.get(t)).collect()
    }

    /// Checks that every population has the operands its kind needs, that every block fits its
    /// source and target, and that populations read only earlier ones.
    pub fn validate(&self) -> Result<(), NetworkError> {
        if self.input_size() == 0 {
            return Err(NetworkError::Setting("the network has an empty input".into()));
        }
        for (index, population) in self.populations.iter().enumerate() {
            let fail = |problem: String| NetworkError::Population { population: population.name.clone(), problem };
            if population.size() == 0 {
                return Err(fail("has no neurons".into()));
            }
            let arity = population.kind.arity();
            if population.operands.len() != arity {
                return Err(fail(format!(
                    "a {} neuron takes {arity} operand(s), the population has {}",
                    population.kind.name(),
                    population.operands.len()
                )));
            }
            if let NeuronKind::LeakyRelu { slope } = population.kind {
                if !slope.is_finite() {
                    return Err(fail(format!("LeakyReLU slope is {slope}")));
                }
            }
            for (j, operand) in population.operands.iter().enumerate() {
                self.validate_operand(operand, population.size(), index, &format!("operand {}", j + 1))
                    .map_err(fail)?;
            }
        }
        self.validate_operand(&self.readout, self.output_size(), self.populations.len(), "readout")
            .map_err(|problem| NetworkError::Population { population: "readout".into(), problem })
    }

    fn validate_operand(&self, operand: &Operand, size: usize, index: usize, what: &str) -> Result<(), String> {
        if operand.len() != size {
            return Err(format!("{what} has {} constants for {size} neurons", operand.len()));
        }
        let (values, map) = operand.bias.parts();
        if map.span(size) > values.len() || map.has_holes() {
            return Err(format!("{what}: the constants' map reaches beyond its {} values", values.len()));
        }
        if let Some((i, c)) = operand.bias.non_finite() {
            return Err(format!("{what}: constant {i} is {c}"));
        }
        for projection in &operand.projections {
            let name = match projection.source {
                Source::Input => "the input".to_string(),
                Source::Population(p) => match self.populations.get(p) {
                    Some(pop) if p < index => format!("population `{}`", pop.name),
                    Some(pop) => {
                        return Err(format!(
                            "{what} reads population `{}` which does not come before it (populations must be in topological order)",
                            pop.name
                        ))
                    }
                    None => return Err(format!("{what} reads population {p}, which does not exist")),
                },
            };
            let source_size = self.source_size(projection.source).unwrap_or(0);
            let block = &projection.block;
            if block.sources() != source_size || block.targets() != size {
                return Err(format!(
                    "{what}: a {} block from {name} maps {} sources to {} targets, but {name} has {source_size} elements and the operand {size}",
                    block.kind_name(),
                    block.sources(),
                    block.targets()
                ));
            }
            block.validate().map_err(|e| format!("{what}: {e}"))?;
        }
        Ok(())
    }
}
