//! The event-driven simulator: per step, per population in topological order, deliver the
//! events of the sources that spiked, add the constant drive, fire, update.

mod batch;
mod batch_conv;
mod batch_dense;
mod batch_depthwise;
mod bit_select;
mod constants;
mod conv_kernel;
pub mod counters;
mod fire;
pub(crate) mod isa;
mod spike_values;
mod structured;
#[cfg(test)]
mod test_convs;
mod tiles;
mod token_group;

use serde::{Deserialize, Serialize};

pub use batch::BatchKernel;
pub use batch_conv::BatchConv;
pub use batch_dense::BatchDense;
pub use batch_depthwise::BatchDepthwise;
use bit_select::BitSelect;
use constants::OperandConstants;
use conv_kernel::{ConvGather, ConvScratch};
pub use counters::{ActivityCounts, Counters, KernelWork};
use fire::{fire_and_update, Firing, Spikes};
pub use isa::{float32_lanes, instruction_set};
use spike_values::spike_values;
use structured::{add_selected, gather_logical, scatter_logical};
pub use structured::{DenseKernel, StructuredScratch};
pub use tiles::{ColumnTiles, TileScratch};

use crate::real::Real;
use crate::snn::{
    ConvBlock, EncoderKind, Index, Network, NetworkError, NeuronKind, Operand, Scale, Schedule, SelectBlock, Source,
    SynapseBlock, UnitOutputs,
};

/// The neuronal dynamics a network is simulated with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dynamics {
    /// Sign gradient descent (SPEC.md §2): every population tracks its nonlinearity.
    SignGd,
    /// The subgradient method, i.e. rate-coded IF neurons (SPEC.md §1): ReLU networks only.
    Subgradient,
}

/// Settings of one simulation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimConfig {
    /// Step sizes.
    pub schedule: Schedule,
    /// Input encoder.
    pub encoder: EncoderKind,
    /// Neuronal dynamics.
    pub dynamics: Dynamics,
    /// Steps (1-based) at which the decoded output is read; the simulation runs to the last.
    pub checkpoints: Vec<usize>,
}

impl SimConfig {
    /// The reference implementation's settings: exponential 0.15/0.95, float encoder, signGD.
    pub fn reference(checkpoints: Vec<usize>) -> Self {
        SimConfig {
            schedule: Schedule::default(),
            encoder: EncoderKind::Float,
            dynamics: Dynamics::SignGd,
            checkpoints,
        }
    }

    /// The rate-coded IF baseline: step 1/(t+1), the input fed unchanged, subgradient dynamics.
    pub fn integrate_and_fire(checkpoints: Vec<usize>) -> Self {
        SimConfig {
            schedule: Schedule::IfMethod,
            encoder: EncoderKind::Direct,
            dynamics: Dynamics::Subgradient,
            checkpoints,
        }
    }
}

/// Sees the state of the simulation as it runs (for traces and diagnostics). Every method has
/// an empty default; `()` observes nothing at no cost.
pub trait Observer<F: Real> {
    /// Whether [`Observer::encoder`] is of interest (the encoder's own state is then computed
    /// even where the simulation does not need it).
    fn observes_encoder(&self) -> bool {
        true
    }
    /// Whether [`Observer::population`] is of interest (broadcast operands are then written out
    /// per neuron for it).
    fn observes_populations(&self) -> bool {
        true
    }
    /// After the encoder's step `t`: the emitted values `u` and the estimate `e`.
    fn encoder(&mut self, _t: usize, _emitted: &[F], _estimate: &[F]) {}
    /// After population `index` updated at step `t`: operand estimates, fired neurons, output
    /// estimates.
    fn population(&mut self, _t: usize, _index: usize, _operands: &[Vec<F>], _fired: &[u32], _v: &[F]) {}
    /// After the decoder's step `t`: the decoded output.
    fn readout(&mut self, _t: usize, _y: &[F]) {}
}

impl<F: Real> Observer<F> for () {
    fn observes_encoder(&self) -> bool {
        false
    }
    fn observes_populations(&self) -> bool {
        false
    }
}

/// How a projection's product is computed.
enum Kernel<F> {
    /// A sparse block in its register-tiled layout.
    Tiles(ColumnTiles<F>),
    /// A convolution: the rearranged kernel, the geometry and target factors (an empty kernel),
    /// and the index maps and source factors around it, if any.
    Conv { gather: ConvGather<F>, geometry: Box<ConvBlock<F>>, around: Option<Box<Around<F>>> },
    /// A matrix applied along an axis.
    Dense(Box<DenseKernel<F>>),
    /// Each target reads at most one source.
    Select(SelectBlock<F>),
    /// Each target reads at most one source, whose population's spike bits it reads.
    SelectBits(BitSelect<F>),
    /// Elementwise factors.
    Diagonal(Vec<F>),
    /// A product of spikes computed for every input of a batch at once.
    Batched(Box<dyn BatchKernel<F>>),
}

/// The index maps and source factors of a convolution that does not read and write its own
/// layout (the target factors are applied by the kernel itself).
struct Around<F> {
    source: Index,
    source_scale: Scale<F>,
    target: Index,
    logical_sources: usize,
    logical_targets: usize,
}

/// Most inputs one worker simulates together.
pub const MAX_LANES: usize = 32;

/// Most bytes of state one worker's batch holds.
pub const BATCH_BYTES: usize = 1 << 30;

/// Neurons charged and fired together where every input adds slices: their estimates,
/// inputs and states stay in the first-level cache between the passes.
const UPDATE_SLICE: usize = 2048;

/// Neurons fired together when some operand is kept per element and written out per neuron.
const FIRE_SLICE: usize = 4096;

/// Blocks of at most this many synapses (other than plain convolutions) are delivered from the
/// register-tiled layout of their explicit matrix: for small blocks it is the fastest kernel, and
/// its memory stays bounded.
const TILED_SYNAPSES: u64 = 1 << 21;

impl<F: Real> Kernel<F> {
    /// The kernel for `block`, whose source emits spikes (`spiking`) or real values; a
    /// population's spikes (`from_population`) may be computed for batches.
    fn new(block: &SynapseBlock, spiking: bool, from_population: bool, isa: isa::Isa) -> Self {
        if spiking && from_population {
            if let Some(kernel) = batch::kernel_for(block, isa) {
                return Kernel::Batched(kernel);
            }
            if let SynapseBlock::Select(select) = block {
                return Kernel::SelectBits(BitSelect::new(select, isa));
            }
        }
        let plain_conv = matches!(block, SynapseBlock::Conv(conv) if conv.is_plain() && conv.target.is_identity());
        // A selection through a strided map is as fast without an explicit matrix when it reads
        // real values or reads spikes in place; from spikes through a map, the tiles scatter the
        // events alone.
        let small = matches!(block, SynapseBlock::Dense(_) | SynapseBlock::Conv(_))
            || matches!(block, SynapseBlock::Select(select) if matches!(select.source, Index::Table { .. })
                || (spiking && !select.source.is_identity()));
        if small && !plain_conv && block.synapses() <= TILED_SYNAPSES {
            let mut triplets = sprs::TriMat::new((block.targets(), block.sources()));
            block.for_each_synapse(|target, source, w| triplets.add_triplet(target, source, F::of(w)));
            return Kernel::Tiles(ColumnTiles::new(&triplets.to_csc()));
        }
        match block {
            SynapseBlock::Sparse { matrix } => Kernel::Tiles(ColumnTiles::new(&matrix.map(|w| F::of(*w)))),
            SynapseBlock::Conv(conv) => {
                let mut geometry = conv.cast::<F>();
                let gather = ConvGather::new(&geometry);
                geometry.kernel = Vec::new();
                let around = (!conv.is_plain() || !conv.target.is_identity()).then(|| {
                    Box::new(Around {
                        source: std::mem::replace(&mut geometry.source, Index::Identity),
                        source_scale: std::mem::replace(&mut geometry.source_scale, Scale::One),
                        target: std::mem::replace(&mut geometry.target, Index::Identity),
                        logical_sources: conv.logical_sources(),
                        logical_targets: conv.logical_targets(),
                    })
                });
                Kernel::Conv { gather, geometry: Box::new(geometry), around }
            }
            SynapseBlock::Dense(dense) => Kernel::Dense(Box::new(DenseKernel::new(dense, isa))),
            SynapseBlock::Select(select) => Kernel::Select(select.cast()),
            SynapseBlock::Diagonal { scale } => Kernel::Diagonal(scale.iter().map(|&w| F::of(w)).collect()),
        }
    }

    /// Whether the kernel reads spikes as a dense 0/1 vector or as bits rather than as a list.
    fn reads_dense_spikes(&self) -> bool {
        match self {
            Kernel::Dense(_) | Kernel::Conv { around: Some(_), .. } | Kernel::SelectBits(_) => true,
            Kernel::Select(select) => !select.source.is_identity(),
            _ => false,
        }
    }

    /// Whether the kernel reads spikes as a dense 0/1 vector (written from the bits each step).
    fn reads_spike_values(&self) -> bool {
        match self {
            Kernel::Dense(dense) => !dense.reads_spike_bits(),
            Kernel::SelectBits(_) => false,
            _ => self.reads_dense_spikes(),
        }
    }

    /// Bytes of the prepared weights, index maps and factors.
    fn bytes(&self) -> usize {
        let f = std::mem::size_of::<F>();
        match self {
            Kernel::Tiles(tiles) => tiles.bytes(),
            Kernel::Conv { gather, geometry, around } => {
                gather.bytes()
                    + geometry.target_scale.stored() * f
                    + around.as_ref().map_or(0, |a| {
                        (a.source.stored_entries() + a.target.stored_entries()) * 4 + a.source_scale.stored() * f
                    })
            }
            Kernel::Dense(dense) => dense.bytes(),
            Kernel::Select(select) => select.source.stored_entries() * 4 + select.scale.stored() * f,
            Kernel::SelectBits(select) => select.bytes(),
            Kernel::Diagonal(scale) => scale.len() * f,
            Kernel::Batched(kernel) => kernel.bytes(),
        }
    }
}

struct CompiledProjection<F> {
    source: Source,
    /// The source emits real values (a real-valued encoder or a relay), read densely.
    dense: bool,
    kernel: Kernel<F>,
    /// Number of source elements.
    sources: usize,
    /// Number of target elements.
    targets: usize,
    /// The fan-out of each source, for a spiking source whose sources differ in fan-out.
    fan_out: Vec<u32>,
    /// The fan-out every source has, when they all have the same.
    uniform_fan_out: Option<u64>,
    synapses: u64,
    /// The slot of [`SharedProducts`] holding this projection's product when other operands
    /// receive the same block from the same source.
    shared: Option<usize>,
    /// For a batched kernel, the slot of [`BatchScratch::products`] holding its product.
    batch_slot: Option<usize>,
    /// For a batched kernel, its product's index in [`BatchScratch::computed_at`] (one per
    /// shared product; slots are reused, products are not).
    batch_product: Option<usize>,
}

struct CompiledOperand<F> {
    /// The constants c and offsets o = A u + 2c of its estimates.
    constants: OperandConstants<F>,
    projections: Vec<CompiledProjection<F>>,
    /// `A 1` over the projections from the input (empty when there are none).
    input_ones: Vec<F>,
    /// For an operand every neuron of which reads one element of a smaller vector (a broadcast,
    /// as in a product neuron of attention), the element each neuron reads: the estimates are
    /// kept once per element. `None`: one estimate per neuron.
    broadcast: Option<Index>,
}

impl<F> CompiledOperand<F> {
    /// Number of estimates the operand keeps.
    fn len(&self) -> usize {
        self.constants.len()
    }

    /// The batched kernel and product slot of an operand whose whole input is one batched
    /// product read by no other operand: its estimates are charged from the product in place.
    fn sole_batched(&self) -> Option<(&dyn BatchKernel<F>, usize, &CompiledProjection<F>)> {
        let [projection] = self.projections.as_slice() else { return None };
        match (&projection.kernel, projection.batch_slot) {
            (Kernel::Batched(kernel), Some(slot))
                if projection.shared.is_none() && self.input_ones.is_empty() && self.broadcast.is_none() =>
            {
                Some((kernel.as_ref(), slot, projection))
            }
            _ => None,
        }
    }
}

struct CompiledPopulation<F> {
    kind: NeuronKind,
    relay: bool,
    size: usize,
    operands: Vec<CompiledOperand<F>>,
    /// Some kernel reads this population's spikes as a dense 0/1 vector.
    dense_spikes: bool,
    /// Some kernel, or a fan-out count, reads this population's spikes as a list.
    listed_spikes: bool,
    /// Every projection into the population adds any slice of its targets alone (a batched
    /// product, a selection from spike bits, the encoder's closed form): a slice of neurons is
    /// charged and fired while its estimates are in cache.
    sliced: bool,
}

/// Whether every projection into a population (a relay or not, with `operands`) adds any slice
/// of its targets alone: see `CompiledPopulation::sliced`.
fn adds_slices<F>(relay: bool, operands: &[CompiledOperand<F>]) -> bool {
    !relay
        && operands.iter().all(|o| {
            o.broadcast.is_none()
                && o.projections.iter().all(|p| {
                    p.shared.is_none()
                        && match &p.kernel {
                            Kernel::Batched(_) => p.batch_slot.is_some(),
                            Kernel::SelectBits(_) => true,
                            _ => p.source == Source::Input && !o.input_ones.is_empty(),
                        }
                })
        })
}

/// A network prepared for simulation in precision `F`. Immutable and shared by all workers.
pub struct Simulator<F: Real> {
    populations: Vec<CompiledPopulation<F>>,
    readout: CompiledOperand<F>,
    etas: Vec<F>,
    encoder: EncoderKind,
    dynamics: Dynamics,
    checkpoints: Vec<usize>,
    input_size: usize,
    output_size: usize,
    /// Targets of each shared product.
    shared_sizes: Vec<usize>,
    /// Targets of each slot of batched products.
    batch_sizes: Vec<usize>,
    /// Number of distinct batched products.
    batch_products: usize,
    /// The instruction set of the firing loops.
    isa: isa::Isa,
}

/// Per-worker mutable state, allocated once and reused for every input.
pub struct Workspace<F: Real> {
    encoder_estimate: Vec<F>,
    encoder_emitted: Vec<F>,
    encoder_fired: Vec<u32>,
    populations: Vec<PopulationState<F>>,
    /// The accumulated input of one operand (shared by the populations, one at a time).
    acc: Vec<F>,
    /// The neurons that fired in the population just updated (shared, one population at a time).
    fired: Vec<u32>,
    /// Per operand, the estimates of a broadcast operand repeated for every neuron.
    expanded: Vec<Vec<F>>,
    readout_acc: Vec<F>,
    readout_input_product: Vec<F>,
    scratch: Scratch<F>,
    /// The float encoder's gain `1 − Π(1 − η_i)` after the previous step.
    encoder_gain: F,
    /// `(a, b)` with the encoder's emitted values `u = a + b x` this step, when it has that form.
    closed_form: Option<(F, F)>,
    /// The batched products of the inputs this workspace runs with, when it is the batch's first.
    batch: BatchScratch<F>,
    y: Vec<F>,
    /// Activity counters, summed over every input this workspace ran.
    pub counters: Counters,
}

impl<F: Real> Workspace<F> {
    /// Bytes of this worker's state (estimates, accumulators, spike lists, kernel scratch).
    pub fn bytes(&self) -> usize {
        let f = std::mem::size_of::<F>();
        let populations: usize = self
            .populations
            .iter()
            .map(|p| {
                let reals = p.x.iter().chain(&p.input_products).map(Vec::capacity).sum::<usize>() + p.v.capacity();
                reals * f + p.fired.capacity() * 4 + p.bits.capacity() * 8
            })
            .sum();
        let reals = self.encoder_estimate.capacity()
            + self.encoder_emitted.capacity()
            + self.readout_acc.capacity()
            + self.readout_input_product.capacity()
            + self.y.capacity()
            + self.acc.capacity()
            + self.expanded.iter().map(Vec::capacity).sum::<usize>()
            + self.scratch.spikes.capacity()
            + self.scratch.shared.iter().map(Vec::capacity).sum::<usize>();
        populations
            + reals * f
            + (self.encoder_fired.capacity() + self.fired.capacity() + self.scratch.every_source.capacity()) * 4
            + self.scratch.conv.bytes()
            + self.scratch.structured.bytes()
            + self.batch.bytes()
    }
}

impl<F: Real> Workspace<F> {
    /// The accumulates this workspace's kernels performed (the batched products of the batches
    /// it ran first in, the events it delivered, the real-valued products it computed).
    pub fn kernel_work(&self) -> KernelWork {
        KernelWork {
            product_macs: self.batch.macs,
            delivered_events: self.scratch.delivered_events,
            real_macs: self.scratch.real_macs,
        }
    }
}

/// Products of the batched kernels for every input of a batch.
struct BatchScratch<F> {
    /// The spikes of one source for every input, in a batched kernel's layout.
    spread: Vec<F>,
    /// One product as the kernel writes it, `[target][input]`.
    interleaved: Vec<F>,
    /// Per batched projection, its product `[input][target]`.
    products: Vec<Vec<F>>,
    /// The step each product was last computed at (0: not yet for these inputs).
    computed_at: Vec<usize>,
    /// Multiply-accumulates of the products computed so far.
    macs: u64,
}

impl<F> Default for BatchScratch<F> {
    fn default() -> Self {
        BatchScratch {
            spread: Vec::new(),
            interleaved: Vec::new(),
            products: Vec::new(),
            computed_at: Vec::new(),
            macs: 0,
        }
    }
}

impl<F: Real> BatchScratch<F> {
    /// Prepares the buffers for `lanes` inputs, slots of `sizes` targets and `products` products.
    fn start(&mut self, lanes: usize, sizes: &[usize], products: usize) {
        self.products.resize_with(sizes.len(), Vec::new);
        for (product, &size) in self.products.iter_mut().zip(sizes) {
            product.resize(size * lanes, F::zero());
        }
        self.computed_at.clear();
        self.computed_at.resize(products, 0);
    }

    fn bytes(&self) -> usize {
        let reals = self.spread.capacity() + self.interleaved.capacity();
        (reals + self.products.iter().map(Vec::capacity).sum::<usize>()) * std::mem::size_of::<F>()
            + self.computed_at.capacity() * 8
    }
}

/// Working space of the synapse kernels.
struct Scratch<F> {
    /// For the convolution kernels.
    conv: ConvScratch<F>,
    /// `0, 1, 2, …`: the sources of a real-valued projection, every one read (as the dense
    /// multiply-accumulates are counted).
    every_source: Vec<u32>,
    tiles: TileScratch<F>,
    /// For the dense, selection and mapped convolution kernels.
    structured: StructuredScratch<F>,
    /// A source's spikes as 0/1 values, for the kernels that read them so.
    spikes: Vec<F>,
    /// Products `A s` that several operands receive (the same block from the same source),
    /// computed once per step by the first operand that needs them.
    shared: Vec<Vec<F>>,
    /// The step each shared product was last computed at (0: not yet for this input).
    computed_at: Vec<usize>,
    /// Synaptic events the event-driven kernels delivered.
    delivered_events: u64,
    /// Multiply-accumulates of the real-valued products computed (not those of the encoder's
    /// closed form, nor a shared product's second reader).
    real_macs: u64,
}

struct PopulationState<F> {
    /// Per operand, its estimates (one per element of a broadcast operand).
    x: Vec<Vec<F>>,
    v: Vec<F>,
    /// The neurons that fired this step (kept only where a reader needs the list).
    fired: Vec<u32>,
    /// The spikes of this step, one bit per neuron (kept only where a kernel reads them densely).
    bits: Vec<u64>,
    /// How many neurons fired this step.
    count: usize,
    /// Per operand, `A x` over the projections from the input, for the current input.
    input_products: Vec<Vec<F>>,
}

impl<F: Real> Simulator<F> {
    /// Prepares `network` for simulation with `config`; refuses malformed networks and settings.
    pub fn new(network: &Network, config: &SimConfig) -> Result<Self, NetworkError> {
        network.validate()?;
        config.schedule.validate()?;
        let mut checkpoints = config.checkpoints.clone();
        checkpoints.sort_unstable();
        checkpoints.dedup();
        match checkpoints.first() {
            None => return Err(NetworkError::Setting("no checkpoint: give at least one number of timesteps".into())),
            Some(0) => {
                return Err(NetworkError::Setting("checkpoints count steps from 1; 0 is not a checkpoint".into()))
            }
            _ => {}
        }
        let steps = *checkpoints.last().unwrap_or(&0);
        if let Some(max) = config.schedule.max_steps() {
            if steps > max {
                return Err(NetworkError::Setting(format!(
                    "checkpoint {steps} lies beyond the {max} steps the schedule defines"
                )));
            }
        }
        if config.dynamics == Dynamics::Subgradient {
            let others: Vec<String> = network
                .populations
                .iter()
                .filter(|p| p.kind != NeuronKind::Relu && !p.kind.is_relay())
                .map(|p| format!("`{}` ({})", p.name, p.kind.name()))
                .collect();
            if !others.is_empty() {
                return Err(NetworkError::Setting(format!(
                    "IF neurons convert ReLU networks only; these populations are not ReLU: {}",
                    others.join(", ")
                )));
            }
        }
        let etas = config.schedule.steps(steps)?.into_iter().map(F::of).collect();
        let units = network.unit_outputs();
        let isa = isa::Isa::detect();
        let batching = batched_share(network, config.encoder) >= batch::BATCHED_SHARE;
        let compile = |operand, relay| compile_operand(network, operand, relay, &units, config.encoder, isa, batching);
        let mut populations: Vec<CompiledPopulation<F>> = network
            .populations
            .iter()
            .map(|p| {
                let relay = p.kind.is_relay();
                let operands: Vec<_> = p.operands.iter().map(|o| compile(o, relay)).collect();
                CompiledPopulation {
                    kind: p.kind,
                    relay,
                    size: p.size(),
                    sliced: adds_slices(relay, &operands),
                    operands,
                    dense_spikes: false,
                    listed_spikes: false,
                }
            })
            .collect();
        let readout = compile(&network.readout, false);
        let readers: Vec<(Source, bool, bool)> = populations
            .iter()
            .flat_map(|p| &p.operands)
            .chain([&readout])
            .flat_map(|o| &o.projections)
            .filter(|p| !p.dense)
            .map(|p| (p.source, p.kernel.reads_dense_spikes(), !p.kernel.reads_dense_spikes() || !p.fan_out.is_empty()))
            .collect();
        for (source, dense, listed) in readers {
            if let Source::Population(q) = source {
                populations[q].dense_spikes |= dense;
                populations[q].listed_spikes |= listed;
            }
        }
        let mut simulator = Simulator {
            populations,
            readout,
            etas,
            encoder: config.encoder,
            dynamics: config.dynamics,
            checkpoints,
            input_size: network.input_size(),
            output_size: network.output_size(),
            shared_sizes: Vec::new(),
            batch_sizes: Vec::new(),
            batch_products: 0,
            isa,
        };
        simulator.share_products(network);
        simulator.assign_batch_slots();
        Ok(simulator)
    }

    /// Gives the projections that carry the same block from the same source a common product slot.
    fn share_products(&mut self, network: &Network) {
        let operands = network.populations.iter().flat_map(|p| &p.operands).chain([&network.readout]);
        let blocks: Vec<_> = operands.flat_map(|o| &o.projections).collect();
        let mut slot_of: Vec<Option<usize>> = vec![None; blocks.len()];
        for (i, projection) in blocks.iter().enumerate() {
            if slot_of[i].is_some() {
                continue;
            }
            let same: Vec<usize> = (i + 1..blocks.len())
                .filter(|&k| slot_of[k].is_none() && blocks[k].source == projection.source)
                .filter(|&k| blocks[k].block == projection.block)
                .collect();
            if !same.is_empty() {
                let slot = self.shared_sizes.len();
                self.shared_sizes.push(projection.block.targets());
                for k in std::iter::once(i).chain(same) {
                    slot_of[k] = Some(slot);
                }
            }
        }
        let compiled = self.populations.iter_mut().flat_map(|p| &mut p.operands).chain([&mut self.readout]);
        for (projection, slot) in compiled.flat_map(|o| &mut o.projections).zip(slot_of) {
            projection.shared = slot;
        }
    }

    /// Gives every batched projection a product (one per shared product) and a slot to hold
    /// it. A product lives from the first population that reads it (when it is computed) to the
    /// last; products that do not live at once share a slot, so the slots in use stay few and
    /// their products are read while still in cache.
    fn assign_batch_slots(&mut self) {
        let mut product_of_shared: Vec<Option<usize>> = vec![None; self.shared_sizes.len()];
        // Per product: (first reader, last reader, targets); readers are population indices,
        // the readout after them.
        let mut lives: Vec<(usize, usize, usize)> = Vec::new();
        let readout = self.populations.len();
        let readers =
            self.populations.iter_mut().enumerate().flat_map(|(i, p)| p.operands.iter_mut().map(move |o| (i, o)));
        for (reader, operand) in readers.chain([(readout, &mut self.readout)]) {
            for projection in operand.projections.iter_mut().filter(|p| matches!(p.kernel, Kernel::Batched(_))) {
                let product = match projection.shared.and_then(|s| product_of_shared[s]) {
                    Some(product) => product,
                    None => {
                        lives.push((reader, reader, projection.targets));
                        lives.len() - 1
                    }
                };
                if let Some(shared) = projection.shared {
                    product_of_shared[shared] = Some(product);
                }
                lives[product].1 = reader;
                projection.batch_product = Some(product);
            }
        }
        // Products are numbered in the order they are computed; a slot is free for the next one
        // once every reader of the product it holds has been updated.
        let mut sizes: Vec<usize> = Vec::new();
        let mut busy_until: Vec<usize> = Vec::new();
        let mut slot_of = Vec::with_capacity(lives.len());
        for &(first, last, targets) in &lives {
            let slot = match (0..sizes.len()).find(|&s| busy_until[s] < first) {
                Some(slot) => slot,
                None => {
                    sizes.push(0);
                    busy_until.push(0);
                    sizes.len() - 1
                }
            };
            sizes[slot] = sizes[slot].max(targets);
            busy_until[slot] = last;
            slot_of.push(slot);
        }
        let compiled = self.populations.iter_mut().flat_map(|p| &mut p.operands).chain([&mut self.readout]);
        for projection in compiled.flat_map(|o| &mut o.projections) {
            projection.batch_slot = projection.batch_product.map(|product| slot_of[product]);
        }
        self.batch_sizes = sizes;
        self.batch_products = lives.len();
    }

    /// The largest number of elements a source of a real-valued tiled projection has.
    fn largest_source(&self) -> usize {
        self.projections().filter(|p| matches!(p.kernel, Kernel::Tiles(_))).map(|p| p.sources).max().unwrap_or(0)
    }

    /// The most spikes a projection reads as 0/1 values (see [`Kernel::reads_spike_values`]).
    fn largest_spike_values(&self) -> usize {
        let reads_values = |p: &&CompiledProjection<F>| {
            !p.dense && matches!(p.source, Source::Population(_)) && p.kernel.reads_spike_values()
        };
        self.projections().filter(reads_values).map(|p| p.sources).max().unwrap_or(0)
    }

    /// Every compiled projection, the readout's last.
    fn projections(&self) -> impl Iterator<Item = &CompiledProjection<F>> {
        self.populations.iter().flat_map(|p| &p.operands).chain([&self.readout]).flat_map(|o| &o.projections)
    }

    /// The sorted, deduplicated checkpoints.
    pub fn checkpoints(&self) -> &[usize] {
        &self.checkpoints
    }

    /// Number of steps simulated per input.
    pub fn steps(&self) -> usize {
        self.etas.len()
    }

    /// Number of output elements.
    pub fn output_size(&self) -> usize {
        self.output_size
    }

    /// Number of input elements.
    pub fn input_size(&self) -> usize {
        self.input_size
    }

    /// Bytes of the prepared network, shared by all workers: weights in every layout the kernels
    /// read, indices, constants.
    pub fn network_bytes(&self) -> usize {
        let f = std::mem::size_of::<F>();
        let operands = self.populations.iter().flat_map(|p| &p.operands).chain([&self.readout]);
        let operand_bytes = |o: &CompiledOperand<F>| o.constants.bytes() + o.input_ones.len() * f;
        let projection_bytes = |p: &CompiledProjection<F>| p.kernel.bytes() + p.fan_out.len() * 4;
        operands.map(|o| operand_bytes(o) + o.projections.iter().map(projection_bytes).sum::<usize>()).sum::<usize>()
            + self.etas.len() * f
    }

    /// Inputs one worker simulates together when `count` inputs run on `threads` workers: up to
    /// [`MAX_LANES`], as many as keep every worker busy to the end, within [`BATCH_BYTES`] of
    /// state per worker; 1 when no kernel gains from batches.
    pub fn batch_lanes(&self, count: usize, threads: usize) -> usize {
        if self.batch_sizes.is_empty() || count == 0 {
            return 1;
        }
        let per_lane = self.workspace().bytes() + self.batch_sizes.iter().sum::<usize>() * std::mem::size_of::<F>();
        let cap = MAX_LANES.min(BATCH_BYTES / per_lane.max(1)).max(1);
        let threads = threads.max(1);
        let rounds = count.div_ceil(threads * cap);
        count.div_ceil(threads * rounds).clamp(1, cap)
    }

    /// Number of populations (relays included).
    pub fn populations(&self) -> usize {
        self.populations.len()
    }

    /// Elements of scratch space the largest convolution block needs.
    fn scratch_len(&self) -> usize {
        self.projections()
            .map(|p| match &p.kernel {
                Kernel::Conv { geometry, .. } => ConvGather::scratch_len(geometry),
                _ => 0,
            })
            .max()
            .unwrap_or(0)
    }

    /// Fresh state for one worker.
    pub fn workspace(&self) -> Workspace<F> {
        Workspace {
            encoder_estimate: vec![F::zero(); self.input_size],
            encoder_emitted: vec![F::zero(); self.input_size],
            encoder_fired: Vec::with_capacity(self.input_size),
            populations: self
                .populations
                .iter()
                .map(|p| PopulationState {
                    x: if p.relay { Vec::new() } else { p.operands.iter().map(|o| vec![F::zero(); o.len()]).collect() },
                    v: vec![F::zero(); p.size],
                    fired: Vec::new(),
                    bits: vec![0; if p.dense_spikes { p.size.div_ceil(64) } else { 0 }],
                    count: 0,
                    input_products: p.operands.iter().map(|o| vec![F::zero(); o.input_ones.len()]).collect(),
                })
                .collect(),
            acc: vec![F::zero(); self.populations.iter().flat_map(|p| &p.operands).map(|o| o.len()).max().unwrap_or(0)],
            fired: Vec::with_capacity(self.populations.iter().map(|p| p.size).max().unwrap_or(0)),
            expanded: {
                let broadcast = self.populations.iter().any(|p| p.operands.iter().any(|o| o.broadcast.is_some()));
                vec![vec![F::zero(); if broadcast { FIRE_SLICE } else { 0 }]; 2]
            },
            readout_acc: vec![F::zero(); self.output_size],
            readout_input_product: vec![F::zero(); self.readout.input_ones.len()],
            scratch: Scratch {
                conv: ConvScratch::new(self.scratch_len()),
                every_source: (0..self.largest_source() as u32).collect(),
                tiles: TileScratch::default(),
                structured: StructuredScratch::default(),
                spikes: vec![F::zero(); self.largest_spike_values()],
                shared: self.shared_sizes.iter().map(|&n| vec![F::zero(); n]).collect(),
                computed_at: vec![0; self.shared_sizes.len()],
                delivered_events: 0,
                real_macs: 0,
            },
            encoder_gain: F::zero(),
            closed_form: None,
            batch: BatchScratch::default(),
            y: vec![F::zero(); self.output_size],
            counters: Counters::new(self.populations.len(), self.checkpoints.len()),
        }
    }

    /// Simulates one input and writes the decoded output at every checkpoint into `outputs`
    /// (`[checkpoint][output]`, row-major). Counts are added to `workspace.counters`.
    pub fn run<O: Observer<F>>(
        &self,
        workspace: &mut Workspace<F>,
        input: &[F],
        outputs: &mut [F],
        observer: &mut O,
    ) -> Result<(), NetworkError> {
        self.check_buffers(input, outputs)?;
        self.run_lanes(std::slice::from_mut(workspace), &[input], &mut [outputs], std::slice::from_mut(observer));
        Ok(())
    }

    /// Simulates `inputs` together, input `i` in `workspaces[i]`: each gets the outputs and counts
    /// [`Simulator::run`] gives it alone, bit for bit, while the batched kernels read their
    /// weights once per step for all of them. `workspaces` must hold at least one per input.
    pub fn run_batch(
        &self,
        workspaces: &mut [Workspace<F>],
        inputs: &[&[F]],
        outputs: &mut [&mut [F]],
    ) -> Result<(), NetworkError> {
        if inputs.len() != outputs.len() || workspaces.len() < inputs.len() {
            return Err(NetworkError::Setting(format!(
                "a batch of {} inputs needs as many output buffers (got {}) and workspaces (got {})",
                inputs.len(),
                outputs.len(),
                workspaces.len()
            )));
        }
        for (input, output) in inputs.iter().zip(outputs.iter()) {
            self.check_buffers(input, output)?;
        }
        if inputs.is_empty() {
            return Ok(());
        }
        for ((inputs, outputs), workspaces) in
            inputs.chunks(MAX_LANES).zip(outputs.chunks_mut(MAX_LANES)).zip(workspaces.chunks_mut(MAX_LANES))
        {
            let mut observers = vec![(); inputs.len()];
            self.run_lanes(&mut workspaces[..inputs.len()], inputs, outputs, &mut observers);
        }
        Ok(())
    }

    fn check_buffers(&self, input: &[F], outputs: &[F]) -> Result<(), NetworkError> {
        if input.len() != self.input_size {
            return Err(NetworkError::Setting(format!(
                "the input has {} elements, the network takes {}",
                input.len(),
                self.input_size
            )));
        }
        if outputs.len() != self.checkpoints.len() * self.output_size {
            return Err(NetworkError::Setting(format!(
                "the output buffer holds {} values, {} checkpoints of {} outputs need {}",
                outputs.len(),
                self.checkpoints.len(),
                self.output_size,
                self.checkpoints.len() * self.output_size
            )));
        }
        Ok(())
    }

    /// Simulates one input per lane, all lanes step by step and population by population.
    fn run_lanes<O: Observer<F>>(
        &self,
        lanes: &mut [Workspace<F>],
        inputs: &[&[F]],
        outputs: &mut [&mut [F]],
        observers: &mut [O],
    ) {
        let mut batch = std::mem::take(&mut lanes[0].batch);
        batch.start(lanes.len(), &self.batch_sizes, self.batch_products);
        for (ws, input) in lanes.iter_mut().zip(inputs) {
            self.reset(ws, input);
        }
        let mut next_checkpoint = 0;
        for (step, &eta) in self.etas.iter().enumerate() {
            let t = step + 1;
            for ((ws, input), observer) in lanes.iter_mut().zip(inputs).zip(observers.iter_mut()) {
                self.encode(ws, input, t, eta, observer);
            }
            for (index, population) in self.populations.iter().enumerate() {
                batch_products(&population.operands, lanes, &mut batch, t);
                for (lane, (ws, observer)) in lanes.iter_mut().zip(observers.iter_mut()).enumerate() {
                    self.update(ws, (&batch, lane), index, t, eta, observer);
                }
            }
            batch_products(std::slice::from_ref(&self.readout), lanes, &mut batch, t);
            for (lane, (ws, observer)) in lanes.iter_mut().zip(observers.iter_mut()).enumerate() {
                self.read_out(ws, (&batch, lane), t, eta, observer);
            }
            if self.checkpoints.get(next_checkpoint) == Some(&t) {
                for (ws, outputs) in lanes.iter_mut().zip(outputs.iter_mut()) {
                    let row =
                        &mut outputs[next_checkpoint * self.output_size..(next_checkpoint + 1) * self.output_size];
                    row.copy_from_slice(&ws.y);
                    ws.counters.snapshot(next_checkpoint);
                }
                next_checkpoint += 1;
            }
        }
        lanes[0].batch = batch;
    }

    fn reset(&self, ws: &mut Workspace<F>, input: &[F]) {
        ws.encoder_estimate.fill(F::zero());
        ws.encoder_fired.clear();
        ws.encoder_gain = F::zero();
        input_product(&self.readout, input, &mut ws.scratch, &mut ws.readout_input_product);
        for (population, state) in self.populations.iter().zip(&mut ws.populations) {
            for (j, operand) in population.operands.iter().enumerate() {
                if let Some(x) = state.x.get_mut(j) {
                    operand.constants.write_bias(x);
                }
                input_product(operand, input, &mut ws.scratch, &mut state.input_products[j]);
            }
            state.v.fill(F::zero());
            state.fired.clear();
            state.bits.fill(0);
            state.count = 0;
        }
        self.readout.constants.write_bias(&mut ws.y);
        ws.scratch.computed_at.fill(0);
        ws.counters.reset_running();
    }

    /// The encoder's step `t`.
    fn encode<O: Observer<F>>(&self, ws: &mut Workspace<F>, input: &[F], t: usize, eta: F, observer: &mut O) {
        ws.closed_form = self.encoder.affine_coefficients(t, eta, &mut ws.encoder_gain);
        // With the closed form no projection reads the encoder's outputs: they are computed only
        // for an observer that looks at them.
        if ws.closed_form.is_none() || observer.observes_encoder() {
            self.encoder.step(input, eta, t == 1, &mut ws.encoder_estimate, &mut ws.encoder_emitted);
            if self.encoder.is_binary() {
                ws.encoder_fired.clear();
                let fired = ws.encoder_emitted.iter().enumerate().filter(|(_, u)| **u > F::zero());
                ws.encoder_fired.extend(fired.map(|(i, _)| i as u32));
            }
            observer.encoder(t, &ws.encoder_emitted, &ws.encoder_estimate);
        }
    }

    /// Population `index`'s step `t` for the input of `ws`, lane `lane.1` of the batch.
    fn update<O: Observer<F>>(
        &self,
        ws: &mut Workspace<F>,
        lane: Lane<F>,
        index: usize,
        t: usize,
        eta: F,
        observer: &mut O,
    ) {
        let population = &self.populations[index];
        let inputs = Inputs {
            emitted: &ws.encoder_emitted,
            fired: &ws.encoder_fired,
            closed_form: ws.closed_form,
            t,
            lane,
            isa: self.isa,
        };
        let (earlier, rest) = ws.populations.split_at_mut(index);
        let state = &mut rest[0];
        let counts = &mut ws.counters.populations[index];
        if population.relay {
            let operand = &population.operands[0];
            let input_product = &state.input_products[0];
            let (v, scratch) = (&mut state.v, &mut ws.scratch);
            self.isa.vectorised(
                #[inline(always)]
                || gather(operand, &inputs, input_product, earlier, v, counts, scratch),
            );
            if observer.observes_populations() {
                observer.population(t, index, &state.x, &[], &state.v);
            }
            return;
        }
        // The spikes go straight into the population's list where a reader needs one, into a
        // scratch list for an observer, and are only counted otherwise.
        let fired = if population.listed_spikes { &mut state.fired } else { &mut ws.fired };
        fired.clear();
        let listing = population.listed_spikes || observer.observes_populations();
        let how = Firing { isa: self.isa, dynamics: self.dynamics, kind: population.kind, eta, first: 0 };
        let last = population.operands.len() - 1;
        if population.sliced
            && (inputs.closed_form.is_some() || population.operands.iter().all(|o| o.input_ones.is_empty()))
        {
            for projection in population.operands.iter().flat_map(|o| &o.projections) {
                count_input(projection, &inputs, earlier, counts, &mut ws.scratch);
            }
            let (x, v, bits, acc) = (&mut state.x, &mut state.v, &mut state.bits, &mut ws.acc);
            let input_products = &state.input_products;
            let dynamics = self.dynamics;
            state.count = self.isa.vectorised(
                #[inline(always)]
                || {
                    let mut count = 0;
                    for start in (0..population.size).step_by(UPDATE_SLICE) {
                        let end = (start + UPDATE_SLICE).min(population.size);
                        let acc = &mut acc[..end - start];
                        for (j, operand) in population.operands.iter().enumerate() {
                            let x = &mut x[j][start..end];
                            if !charge_from_sole_product(dynamics, operand, inputs.lane, start, eta, x) {
                                add_slice(operand, &inputs, &input_products[j], earlier, start, acc);
                                charge(dynamics, operand, start, acc, eta, x);
                            }
                        }
                        let how = Firing { first: start as u32, ..how };
                        let out = Spikes { fired: listing.then_some(&mut *fired), bits: &mut *bits };
                        count += fire_and_update(how, &x[0][start..end], &x[last][start..end], &mut v[start..end], out);
                    }
                    count
                },
            );
            return self.finish_update(ws, index, t, observer);
        }
        for (j, (operand, x)) in population.operands.iter().zip(state.x.iter_mut()).enumerate() {
            let dynamics = self.dynamics;
            if self.isa.vectorised(
                #[inline(always)]
                || charge_from_sole_product(dynamics, operand, lane, 0, eta, x),
            ) {
                count_input(&operand.projections[0], &inputs, earlier, counts, &mut ws.scratch);
                continue;
            }
            let acc = &mut ws.acc[..operand.len()];
            let input_product = &state.input_products[j];
            let scratch = &mut ws.scratch;
            self.isa.vectorised(
                #[inline(always)]
                || {
                    gather(operand, &inputs, input_product, earlier, acc, counts, scratch);
                    charge(self.dynamics, operand, 0, acc, eta, x);
                },
            );
        }
        let bits = &mut state.bits;
        let mut count = 0;
        if population.operands.iter().all(|o| o.broadcast.is_none()) {
            let out = Spikes { fired: listing.then_some(&mut *fired), bits };
            count = fire_and_update(how, &state.x[0], &state.x[last], &mut state.v, out);
        } else {
            // Operands kept per element are written out per neuron a slice at a time.
            for start in (0..population.size).step_by(FIRE_SLICE) {
                let end = (start + FIRE_SLICE).min(population.size);
                // An operand whose slice is one stretch of its estimates is read in place.
                let mut read_from = [None; 2];
                for (j, operand) in population.operands.iter().enumerate() {
                    let Some(index) = &operand.broadcast else {
                        read_from[j] = Some(start);
                        continue;
                    };
                    read_from[j] = index.contiguous_from(start, end);
                    if read_from[j].is_none() {
                        expand(index, &state.x[j], start, &mut ws.expanded[j][..end - start]);
                    }
                }
                let operand = |j: usize| match read_from[j] {
                    Some(from) => &state.x[j][from..from + end - start],
                    None => &ws.expanded[j][..end - start],
                };
                let how = Firing { first: start as u32, ..how };
                let (x1, x2) = (operand(0), operand(last));
                let out = Spikes { fired: listing.then_some(&mut *fired), bits: &mut *bits };
                count += fire_and_update(how, x1, x2, &mut state.v[start..end], out);
            }
        }
        state.count = count;
        self.finish_update(ws, index, t, observer)
    }

    /// Counts population `index`'s spikes and updates and shows its step `t` to the observer.
    fn finish_update<O: Observer<F>>(&self, ws: &mut Workspace<F>, index: usize, t: usize, observer: &mut O) {
        let population = &self.populations[index];
        let state = &ws.populations[index];
        let counts = &mut ws.counters.populations[index];
        counts.spikes += state.count as u64;
        counts.neuron_updates += population.size as u64;
        if observer.observes_populations() {
            let fired = if population.listed_spikes { &state.fired } else { &ws.fired };
            let estimates: Vec<Vec<F>> = population
                .operands
                .iter()
                .zip(&state.x)
                .map(|(operand, x)| match &operand.broadcast {
                    Some(index) => (0..population.size).map(|t| x[index.get(t).expect("no holes")]).collect(),
                    None => x.clone(),
                })
                .collect();
            observer.population(t, index, &estimates, fired, &state.v);
        }
    }

    /// The decoder's step `t` for the input of `ws`.
    fn read_out<O: Observer<F>>(&self, ws: &mut Workspace<F>, lane: Lane<F>, t: usize, eta: F, observer: &mut O) {
        let inputs = Inputs {
            emitted: &ws.encoder_emitted,
            fired: &ws.encoder_fired,
            closed_form: ws.closed_form,
            t,
            lane,
            isa: self.isa,
        };
        let readout_input = &ws.readout_input_product;
        let counts = &mut ws.counters.readout;
        let acc = &mut ws.readout_acc;
        gather(&self.readout, &inputs, readout_input, &ws.populations, acc, counts, &mut ws.scratch);
        charge(self.dynamics, &self.readout, 0, &ws.readout_acc, eta, &mut ws.y);
        observer.readout(t, &ws.y);
    }
}

/// Writes the estimates of a broadcast operand for the neurons `start..start + out.len()`,
/// read from its per-element estimates `x` through `index` (without holes: see `broadcast_form`),
/// a run at a time.
fn expand<F: Real>(index: &Index, x: &[F], start: usize, out: &mut [F]) {
    structured::combine_mapped(index, &Scale::One, x, start, out, structured::Combine::Assign);
}

/// The batch's products and the lane of the input being updated.
type Lane<'a, F> = (&'a BatchScratch<F>, usize);

/// Computes the batched products `operands` read this step, for every lane, once each.
fn batch_products<F: Real>(
    operands: &[CompiledOperand<F>],
    lanes: &[Workspace<F>],
    batch: &mut BatchScratch<F>,
    t: usize,
) {
    for projection in operands.iter().flat_map(|o| &o.projections) {
        let (Kernel::Batched(kernel), Some(slot), Some(product)) =
            (&projection.kernel, projection.batch_slot, projection.batch_product)
        else {
            continue;
        };
        if batch.computed_at[product] == t {
            continue;
        }
        let Source::Population(q) = projection.source else { unreachable!("a batched kernel reads a population") };
        let len = kernel.spread_len(lanes.len());
        if batch.spread.len() < len {
            batch.spread.resize(len, F::zero());
        }
        let fired: smallvec::SmallVec<[&[u32]; MAX_LANES]> =
            lanes.iter().map(|ws| ws.populations[q].fired.as_slice()).collect();
        kernel.spread_spikes(&fired, &mut batch.spread[..len]);
        batch.macs += {
            let out = &mut batch.products[slot][..projection.targets * lanes.len()];
            kernel.products(lanes.len(), &batch.spread[..len], &mut batch.interleaved, out)
        };
        batch.computed_at[product] = t;
    }
}

struct Inputs<'a, F> {
    emitted: &'a [F],
    fired: &'a [u32],
    /// `(a, b)` with the emitted values `u = a + b x` this step, when the encoder has that form.
    closed_form: Option<(F, F)>,
    /// The step (from 1).
    t: usize,
    /// The batch's products and this input's lane in it.
    lane: Lane<'a, F>,
    /// The instruction set of the kernels.
    isa: isa::Isa,
}

impl<F: Real> CompiledProjection<F> {
    /// Synaptic events of a spiking source's `count` spikes, `fired`.
    fn events(&self, fired: &[u32], count: usize) -> u64 {
        match self.uniform_fan_out {
            Some(fan_out) => count as u64 * fan_out,
            None => fired.iter().map(|&j| self.fan_out[j as usize] as u64).sum::<u64>(),
        }
    }

    /// Adds `A u` for a real-valued source vector `u`.
    fn add_dense(&self, values: &[F], scratch: &mut Scratch<F>, acc: &mut [F]) {
        match &self.kernel {
            Kernel::Tiles(tiles) => {
                tiles.add_values(&scratch.every_source[..values.len()], values, &mut scratch.tiles, acc)
            }
            Kernel::Conv { gather, geometry, around: None } => {
                gather.add_values(geometry, values, &mut scratch.conv, acc)
            }
            Kernel::Conv { gather, geometry, around: Some(around) } => {
                add_conv_around(gather, geometry, around, values, scratch, acc)
            }
            Kernel::Dense(dense) => dense.add(values, false, &mut scratch.structured, acc),
            Kernel::Select(select) => add_selected(select, values, acc),
            Kernel::Diagonal(scale) => acc.iter_mut().zip(values).zip(scale).for_each(|((a, &v), &d)| *a += v * d),
            Kernel::Batched(_) | Kernel::SelectBits(_) => {
                unreachable!("batched and bit kernels are built for spiking sources only")
            }
        }
    }

    /// Adds `A s` for binary spikes, given as the ascending list of the sources that fired and,
    /// for the kernels that read them so, as a dense 0/1 vector or as the source's bits.
    fn add_spikes(&self, fired: &[u32], spikes: &[F], bits: &[u64], scratch: &mut Scratch<F>, acc: &mut [F]) {
        match &self.kernel {
            Kernel::Tiles(tiles) => tiles.add_spikes(fired, &mut scratch.tiles, acc),
            Kernel::Conv { gather, geometry, around: None } => {
                gather.add_spikes(geometry, fired, &mut scratch.conv, acc)
            }
            Kernel::Conv { gather, geometry, around: Some(around) } => {
                add_conv_around(gather, geometry, around, spikes, scratch, acc)
            }
            // The encoder's binary spikes have no bits: they are read as values.
            Kernel::Dense(dense) if dense.reads_spike_bits() && !bits.is_empty() => {
                dense.add_spike_bits(bits, &mut scratch.structured, acc)
            }
            Kernel::Dense(dense) => dense.add(spikes, true, &mut scratch.structured, acc),
            Kernel::Select(select) if select.source.is_identity() => {
                // Target t reads source t: sources past the last target reach none.
                let reaching = fired.iter().map(|&j| j as usize).filter(|&j| j < select.targets);
                reaching.for_each(|j| acc[j] += select.scale.get(j))
            }
            Kernel::Select(select) => add_selected(select, spikes, acc),
            Kernel::SelectBits(select) => select.add(bits, 0, acc),
            Kernel::Diagonal(scale) => fired.iter().for_each(|&j| acc[j as usize] += scale[j as usize]),
            Kernel::Batched(_) => unreachable!("batched products are computed for the whole batch"),
        }
    }

    /// Adds this step's product of the projection to `acc`.
    fn add_product(&self, values: &[F], spiking: (&[u32], &[F], &[u64]), scratch: &mut Scratch<F>, acc: &mut [F]) {
        if self.dense {
            self.add_dense(values, scratch, acc)
        } else {
            let (fired, spikes, bits) = spiking;
            self.add_spikes(fired, spikes, bits, scratch, acc)
        }
    }
}

/// A convolution reading and writing through index maps: the logical sources are gathered
/// (with their factors), convolved, and the logical targets scattered.
fn add_conv_around<F: Real>(
    gather: &ConvGather<F>,
    geometry: &ConvBlock<F>,
    around: &Around<F>,
    values: &[F],
    scratch: &mut Scratch<F>,
    acc: &mut [F],
) {
    let mut logical_in = std::mem::take(&mut scratch.structured.logical_in);
    logical_in.resize(around.logical_sources, F::zero());
    gather_logical(&around.source, &around.source_scale, values, &mut logical_in);
    if around.target.is_identity() {
        gather.add_values(geometry, &logical_in, &mut scratch.conv, acc);
    } else {
        let mut logical_out = std::mem::take(&mut scratch.structured.logical_out);
        logical_out.clear();
        logical_out.resize(around.logical_targets, F::zero());
        gather.add_values(geometry, &logical_in, &mut scratch.conv, &mut logical_out);
        scatter_logical(&around.target, &Scale::One, &logical_out, acc);
        scratch.structured.logical_out = logical_out;
    }
    scratch.structured.logical_in = logical_in;
}

/// `A x` over the input projections of `operand`, once per input.
fn input_product<F: Real>(operand: &CompiledOperand<F>, input: &[F], scratch: &mut Scratch<F>, product: &mut [F]) {
    product.fill(F::zero());
    for projection in operand.projections.iter().filter(|p| p.source == Source::Input) {
        projection.add_dense(input, scratch, product);
    }
}

/// Whether `source` emits real values (a real-valued encoder or a relay) rather than spikes.
fn real_valued(network: &Network, source: Source, encoder: EncoderKind) -> bool {
    match source {
        Source::Input => !encoder.is_binary(),
        Source::Population(q) => network.populations[q].kind.is_relay(),
    }
}

/// The share of the network's synapses in blocks a batched kernel computes.
fn batched_share(network: &Network, encoder: EncoderKind) -> f64 {
    let projections = network.populations.iter().flat_map(|p| &p.operands).chain([&network.readout]);
    let (mut batched, mut all) = (0u64, 0u64);
    for projection in projections.flat_map(|o| &o.projections) {
        let synapses = projection.block.synapses();
        all += synapses;
        let from_spikes =
            matches!(projection.source, Source::Population(_)) && !real_valued(network, projection.source, encoder);
        if from_spikes && batch::batchable(&projection.block) {
            batched += synapses;
        }
    }
    batched as f64 / all.max(1) as f64
}

fn compile_operand<F: Real>(
    network: &Network,
    operand: &Operand,
    relay: bool,
    units: &UnitOutputs,
    encoder: EncoderKind,
    isa: isa::Isa,
    batching: bool,
) -> CompiledOperand<F> {
    let compact = broadcast_form(operand);
    let (blocks, bias, broadcast) = match &compact {
        Some((blocks, bias, index)) => (blocks.clone(), bias.clone(), Some(index.with_merged_axes())),
        None => (operand.projections.iter().map(|p| p.block.clone()).collect(), operand.bias.to_vec(), None),
    };
    let mut input_ones = Vec::new();
    if operand.projections.iter().any(|p| p.source == Source::Input) {
        input_ones = vec![0.0; bias.len()];
        for (block, _) in blocks.iter().zip(&operand.projections).filter(|(_, p)| p.source == Source::Input) {
            block.multiply_add(&vec![1.0; block.sources()], &mut input_ones);
        }
    }
    let constants = if relay {
        // A relay emits `A s` alone: its constants are folded into its readers'.
        OperandConstants::unread(bias.len())
    } else {
        let offset = match &compact {
            None => network.operand_offset(operand, units),
            Some(_) => {
                let mut response = vec![0.0; bias.len()];
                for (block, projection) in blocks.iter().zip(&operand.projections) {
                    block.multiply_add(&units.of(projection.source)[..block.sources()], &mut response);
                }
                response.iter().zip(&bias).map(|(a, c)| a + 2.0 * c).collect()
            }
        };
        OperandConstants::new(&bias, &offset)
    };
    CompiledOperand {
        input_ones: input_ones.into_iter().map(F::of).collect(),
        constants,
        broadcast,
        projections: operand
            .projections
            .iter()
            .zip(&blocks)
            .map(|(p, kernel_block)| {
                let dense = real_valued(network, p.source, encoder);
                // Counts are the network's: each neuron's synapses, whatever the kernel computes.
                // An overlapping block's synapses are counted with the block they overlap.
                let fan_out = if p.overlap { vec![0; p.block.sources()] } else { p.block.fan_out() };
                let synapses = fan_out.iter().map(|&f| f as u64).sum();
                let uniform_fan_out = match fan_out.first() {
                    Some(&first) if fan_out.iter().all(|&f| f == first) => Some(first as u64),
                    _ => None,
                };
                CompiledProjection {
                    source: p.source,
                    dense,
                    kernel: Kernel::new(kernel_block, !dense, batching && p.source != Source::Input, isa),
                    sources: p.block.sources(),
                    targets: p.block.targets(),
                    // Real-valued sources count every synapse every step; a uniform fan-out
                    // needs no table.
                    fan_out: if dense || uniform_fan_out.is_some() { Vec::new() } else { fan_out },
                    uniform_fan_out,
                    synapses,
                    shared: None,
                    batch_slot: None,
                    batch_product: None,
                }
            })
            .collect(),
    }
}

/// An operand whose neurons each read one element of smaller vectors through one broadcast map
/// (its constants and every projection a selection through that map, with one factor): the
/// blocks and constants per element, and the map. `None` for any other operand.
fn broadcast_form(operand: &Operand) -> Option<(Vec<SynapseBlock>, Vec<f64>, Index)> {
    let (values, index) = operand.bias.parts();
    // A hole would leave its neurons without an estimate: such operands stay per element.
    if index.is_identity() || index.has_holes() || operand.projections.is_empty() {
        return None;
    }
    let blocks = operand
        .projections
        .iter()
        .map(|p| match &p.block {
            SynapseBlock::Select(select)
                if &select.source == index
                    && select.sources == values.len()
                    && matches!(select.scale, Scale::One | Scale::Uniform(_)) =>
            {
                Some(SynapseBlock::Select(SelectBlock {
                    targets: values.len(),
                    sources: values.len(),
                    source: Index::Identity,
                    scale: select.scale.clone(),
                }))
            }
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Some((blocks, values.to_vec(), index.clone()))
}

/// Accumulates `A u` for one operand into `acc`: events from spiking sources, products from
/// real-valued ones, the closed form of an affine encoder.
#[inline(always)]
fn gather<F: Real>(
    operand: &CompiledOperand<F>,
    inputs: &Inputs<F>,
    input_product: &[F],
    populations: &[PopulationState<F>],
    acc: &mut [F],
    counts: &mut ActivityCounts,
    scratch: &mut Scratch<F>,
) {
    acc.fill(F::zero());
    if let Some((a, b)) = inputs.closed_form {
        // The encoder emits u = a + b x: A u = a (A 1) + b (A x), with A x computed once per input.
        for ((acc, &ones), &product) in acc.iter_mut().zip(&operand.input_ones).zip(input_product) {
            *acc = a * ones + b * product;
        }
    }
    for projection in &operand.projections {
        count_input(projection, inputs, populations, counts, scratch);
        if projection.source == Source::Input && inputs.closed_form.is_some() {
            continue;
        }
        let (values, fired): (&[F], &[u32]) = match projection.source {
            Source::Input => (inputs.emitted, inputs.fired),
            Source::Population(p) => (&populations[p].v, &populations[p].fired),
        };
        if let (Kernel::Batched(kernel), Some(slot)) = (&projection.kernel, projection.batch_slot) {
            add_batched(acc, lane_product(inputs.lane, slot, projection.targets), kernel.target_scale(), 0);
            if let Some(shared) = projection.shared {
                scratch.computed_at[shared] = inputs.t;
            }
            continue;
        }
        let mut spikes = std::mem::take(&mut scratch.spikes);
        let bits: &[u64] = match projection.source {
            Source::Population(p) => &populations[p].bits,
            Source::Input => &[],
        };
        let spike_values: &[F] = match projection.source {
            Source::Population(_) if !projection.dense && projection.kernel.reads_spike_values() => {
                let n = projection.sources;
                spike_values(inputs.isa, bits, &mut spikes[..n]);
                &spikes[..n]
            }
            _ => inputs.emitted,
        };
        let spiking = (fired, spike_values, bits);
        let Some(slot) = projection.shared else {
            projection.add_product(values, spiking, scratch, acc);
            scratch.spikes = spikes;
            continue;
        };
        let mut product = std::mem::take(&mut scratch.shared[slot]);
        if scratch.computed_at[slot] != inputs.t {
            product.fill(F::zero());
            projection.add_product(values, spiking, scratch, &mut product);
            scratch.computed_at[slot] = inputs.t;
        }
        acc.iter_mut().zip(&product).for_each(|(a, &p)| *a += p);
        scratch.shared[slot] = product;
        scratch.spikes = spikes;
    }
}

/// Counts the events or multiply-accumulates `projection` carries this step, and the kernel
/// work of those not already computed for another operand.
fn count_input<F: Real>(
    projection: &CompiledProjection<F>,
    inputs: &Inputs<F>,
    populations: &[PopulationState<F>],
    counts: &mut ActivityCounts,
    scratch: &mut Scratch<F>,
) {
    if projection.source == Source::Input && inputs.closed_form.is_some() {
        counts.dense_macs += projection.synapses;
        counts.encoder_macs += projection.synapses;
        return;
    }
    let (fired, count): (&[u32], usize) = match projection.source {
        Source::Input => (inputs.fired, inputs.fired.len()),
        Source::Population(p) => (&populations[p].fired, populations[p].count),
    };
    // Whether an operand updated earlier in this step already computed this shared product.
    let already_shared = projection.shared.is_some_and(|slot| scratch.computed_at[slot] == inputs.t);
    if projection.dense {
        counts.dense_macs += projection.synapses;
        if projection.source == Source::Input {
            counts.encoder_macs += projection.synapses;
        }
        if already_shared {
            counts.shared_macs += projection.synapses;
        } else {
            scratch.real_macs += projection.synapses;
        }
    } else {
        let events = projection.events(fired, count);
        counts.synaptic_events += events;
        if already_shared {
            counts.shared_events += events;
        } else if !matches!(projection.kernel, Kernel::Batched(_)) {
            scratch.delivered_events += events;
        }
    }
}

/// Writes into `acc` the input of `operand`'s estimates `start..start + acc.len()` this step, for
/// a population whose projections all add slices (see `CompiledPopulation::sliced`): the same
/// terms in the same order as [`gather`], so the same bits.
#[inline(always)]
fn add_slice<F: Real>(
    operand: &CompiledOperand<F>,
    inputs: &Inputs<F>,
    input_product: &[F],
    populations: &[PopulationState<F>],
    start: usize,
    acc: &mut [F],
) {
    let end = start + acc.len();
    match inputs.closed_form {
        Some((a, b)) if !operand.input_ones.is_empty() => {
            let terms = operand.input_ones[start..end].iter().zip(&input_product[start..end]);
            for (acc, (&ones, &product)) in acc.iter_mut().zip(terms) {
                *acc = a * ones + b * product;
            }
        }
        _ => acc.fill(F::zero()),
    }
    for projection in &operand.projections {
        match (&projection.kernel, projection.source, projection.batch_slot) {
            (_, Source::Input, _) => {}
            (Kernel::Batched(kernel), _, Some(slot)) => {
                let product = &lane_product(inputs.lane, slot, projection.targets)[start..end];
                add_batched(acc, product, kernel.target_scale(), start)
            }
            (Kernel::SelectBits(select), Source::Population(p), _) => select.add(&populations[p].bits, start, acc),
            _ => unreachable!("a sliced population reads batched products, spike bits and the closed form only"),
        }
    }
}

/// This lane's product in batch product slot `slot`, of `targets` elements.
fn lane_product<'a, F>(lane: Lane<'a, F>, slot: usize, targets: usize) -> &'a [F] {
    let (batch, lane) = lane;
    &batch.products[slot][lane * targets..][..targets]
}

/// Adds `product[i] · s` to `acc[i]`, `s` the factor of target `first + i` (the product alone
/// where every factor is one).
#[inline(always)]
fn add_batched<F: Real>(acc: &mut [F], product: &[F], scale: &Scale<F>, first: usize) {
    match scale {
        Scale::One => acc.iter_mut().zip(product).for_each(|(a, &p)| *a += p),
        &Scale::Uniform(s) => acc.iter_mut().zip(product).for_each(|(a, &p)| *a += p * s),
        Scale::Each(factors) => {
            let factors = &factors[first..first + product.len()];
            acc.iter_mut().zip(product).zip(factors).for_each(|((a, &p), &s)| *a += p * s)
        }
    }
}

/// Charges `x`, the estimates `start..start + x.len()` of `operand`, in place from its batched
/// product where that product is the operand's whole input and the dynamics are signGD (the
/// bits of accumulating `0 + p s` first); returns whether it did.
#[inline(always)]
fn charge_from_sole_product<F: Real>(
    dynamics: Dynamics,
    operand: &CompiledOperand<F>,
    lane: Lane<F>,
    start: usize,
    eta: F,
    x: &mut [F],
) -> bool {
    let (Some((kernel, slot, projection)), Dynamics::SignGd) = (operand.sole_batched(), dynamics) else {
        return false;
    };
    let product = &lane_product(lane, slot, projection.targets)[start..start + x.len()];
    operand.constants.charge_sign_gd_product(start, product, kernel.target_scale(), eta, x);
    true
}

/// Charge: the operand estimate moves by the affine map of this step's input.
#[inline(always)]
fn charge<F: Real>(dynamics: Dynamics, operand: &CompiledOperand<F>, first: usize, acc: &[F], eta: F, x: &mut [F]) {
    match dynamics {
        Dynamics::SignGd => operand.constants.charge_sign_gd(first, acc, eta, x),
        Dynamics::Subgradient => operand.constants.charge_subgradient(first, acc, eta, x),
    }
}
