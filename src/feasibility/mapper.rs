//! Places every population of a spiking network onto the cores of a chip profile.
//!
//! Each population (and the readout, a real-valued accumulator like a relay) is cut, in element
//! order, into consecutive slices, one per core, each as large as the core's limits allow:
//! neurons (compartments) per core, distinct source neurons per core (input axons), synaptic
//! memory under the chip's rule (bits per synapse; nengo-loihi's accounting, see `bits`; synapses
//! and state in one memory), synaptic events per step from measured rates, and output axons (for
//! each neuron, one per distinct destination core). On chips with an input-axon limit a
//! convolution's outputs are also cut in spatial tiles of pixels with all their channels, and the
//! cut with fewer cores is kept. Neurons that reach more destination cores than one neuron may
//! are copied by splitter neurons, whose cores are counted. Output axons depend on where the consumers went,
//! so populations are cut from the last to the first, each with its consumers' placement known.
//! A limit that one neuron alone exceeds cannot be cured by any cut: it becomes a [`Violation`]
//! with a suggestion, and the neuron is placed on a core of its own so the count of cores stays
//! meaningful.
//!
//! Everything is counted from the structure of the synapse blocks (see `reach`), in memory
//! proportional to the neurons and time proportional to the neurons times the kernel taps of a
//! convolution, not to the synapses. Two counts take longer: blocks that `reach` reads synapse
//! by synapse (explicit sparse matrices, bounded by the conversion's budget), and a per-core
//! destination limit on a chip that splits populations (no bundled profile), which expands the
//! sources reaching each consumer core.
//!
//! Chips that hold one layer per core (`split_populations: false`, Speck) get each population on
//! one core instead, assigned by a matching of layers to the cores whose memories hold them (as
//! sinabs assigns DYNAP-CNN layers); a layer that fits no core still counts as one. Under
//! sinabs's memory rule (see `layer`) a max pooling takes no core: it is reported as unsupported.

mod bits;
mod layer;
mod levels;
mod reach;

pub use layer::{kernel_memory, neuron_memory, LayerMemory};
use layer::{layer_view, LayerView};
use reach::{Footprint, Reader};

use super::profile::{MemoryModel, Profile, SpikeKind, TwoOperand};
use super::{PopulationPlacement, Requirement, TargetReport, Violation};
use crate::snn::{Network, NeuronKind, Operand, Source, SynapseBlock};

/// Settings of a mapping.
#[derive(Clone, Debug)]
pub struct MapOptions {
    /// Whether the encoder sends real values (`--encoder float`) rather than binary spikes.
    pub real_valued_input: bool,
    /// Measured events per neuron per step of every population, in network order (from a
    /// simulation), for chips with a limit of synaptic events per core per step; the encoder's
    /// elements count as one event per step.
    pub rates: Option<Vec<f64>>,
}

impl Default for MapOptions {
    fn default() -> Self {
        MapOptions { real_valued_input: true, rates: None }
    }
}

/// Maps `network` onto `profile`.
pub fn map(network: &Network, profile: &Profile, options: &MapOptions) -> TargetReport {
    Mapper::new(network).map(profile, options)
}

/// A network prepared for mapping: what every population reads and its synapse counts, worked
/// out once for any number of profiles.
pub struct Mapper<'a> {
    network: &'a Network,
    /// The populations in order, then the readout.
    units: Vec<Unit<'a>>,
}

impl<'a> Mapper<'a> {
    /// Prepares `network`.
    pub fn new(network: &'a Network) -> Self {
        let mut units: Vec<Unit<'a>> = network
            .populations
            .iter()
            .map(|p| Unit::new(p.name.clone(), p.kind.name(), &p.shape, p.kind.arity() == 2, &p.operands))
            .collect();
        let readout = std::slice::from_ref(&network.readout);
        units.push(Unit::new("readout".into(), "decoder".into(), &network.output_shape, false, readout));
        Mapper { network, units }
    }

    /// Maps the network onto `profile`.
    pub fn map(&self, profile: &Profile, options: &MapOptions) -> TargetReport {
        let units = &self.units;
        let costs: Vec<u64> = units.iter().map(|unit| unit.cost(profile)).collect();
        let layers: Vec<Option<LayerView>> = units
            .iter()
            .map(|u| {
                (profile.memory_model == MemoryModel::Sinabs)
                    .then(|| layer_view(self.network, &u.name, &u.kind, &u.shape, u.operands, profile))
            })
            .collect();
        let mut violations = Vec::new();
        // Per unit and reader: events per step of one source neuron.
        let rates: Option<Vec<Vec<f64>>> =
            options.rates.as_ref().filter(|_| profile.synaptic_events_per_ms_per_core.is_some()).map(|rates| {
                units
                    .iter()
                    .map(|u| {
                        u.readers
                            .iter()
                            .map(|r| match r.source {
                                Source::Input => 1.0,
                                Source::Population(p) => rates.get(p).copied().unwrap_or(1.0),
                            })
                            .collect()
                    })
                    .collect()
            });
        let (placements, chips) = if profile.split_populations {
            let placements = place_all_split(units, &costs, profile, rates.as_deref(), &mut violations);
            let cores = placements.iter().map(|p| (p.cores + p.splitter_cores) as u64).sum::<u64>();
            (placements, cores.div_ceil(profile.cores_per_chip).max(1))
        } else {
            place_whole(units, &costs, &layers, profile, &mut violations)
        };
        for (unit, layer) in units.iter().zip(&layers) {
            for problem in layer.iter().flat_map(|l| &l.problems) {
                violations.push(Violation {
                    population: unit.name.clone(),
                    limit: problem.limit.clone(),
                    limit_value: problem.limit_value,
                    value: problem.value,
                    neurons: unit.neurons,
                    suggestion: problem.suggestion.clone(),
                });
            }
        }
        if let Some(limit) = profile.distinct_weights_per_neuron {
            let bits = profile.weight_bits.min(32) as u32;
            for unit in units {
                let needed = levels::max_distinct_weights(unit.operands, bits);
                if needed > limit {
                    violations.push(Violation {
                        population: unit.name.clone(),
                        limit: "distinct weights per neuron".into(),
                        limit_value: limit,
                        value: needed,
                        neurons: unit.neurons,
                        suggestion: format!(
                            "one {} neuron applies at most {limit} distinct weights (one per axon type, shared by the core): train with at most {limit} weight levels per output channel (for example ternary weights), or copy the population once per group of {limit} levels and add the copies",
                            profile.chip
                        ),
                    });
                }
            }
        }
        let total_cores = placements.iter().map(|p| (p.cores + p.splitter_cores) as u64).sum::<u64>();
        if let Some(limit) = profile.max_destination_cores_per_core {
            check_core_fan_out(units, &placements, limit, &mut violations);
        }
        if let Some(max) = profile.max_chips {
            if chips > max {
                let matched = chips > total_cores.div_ceil(profile.cores_per_chip);
                violations.push(Violation {
                    population: "(whole network)".into(),
                    limit: "chips".into(),
                    limit_value: max,
                    value: chips,
                    neurons: 0,
                    suggestion: format!(
                        "the network needs {total_cores} cores, {chips} chips of {} cores{}, and the {} works alone; use a smaller model or another chip",
                        profile.cores_per_chip,
                        if matched { " (its layers fit only some of a chip's cores)" } else { "" },
                        profile.chip
                    ),
                });
            }
        }

        let populations = units
            .iter()
            .zip(&placements)
            .zip(&costs)
            .zip(&layers)
            .map(|(((unit, placement), &cost), layer)| PopulationPlacement {
                name: unit.name.clone(),
                kind: unit.kind.clone(),
                neurons: unit.neurons,
                compartments_per_neuron: cost,
                cores: placement.cores,
                splitter_cores: placement.splitter_cores,
                events_per_ms_per_core: placement.busiest_events,
                max_fan_in: unit.max_fan_in as u32,
                max_synapses_per_neuron: unit.max_synapses,
                synapses: unit.total_synapses,
                memory_bytes: placement.memory_bits.div_ceil(8),
                memory_utilisation: if placement.capacity_bits == 0 {
                    0.0
                } else {
                    placement.fullest_bits as f64 / placement.capacity_bits as f64
                },
                core: placement.core,
                layer_memory: layer.as_ref().map(|l| l.memory),
            })
            .collect();
        let requirements = requirements(self.network, profile, options);
        TargetReport {
            target: profile.name.clone(),
            chip: profile.chip.clone(),
            source: profile.source.clone(),
            fits: violations.is_empty(),
            method_supported: requirements.iter().all(|r| r.met),
            cores: total_cores,
            chips,
            cores_per_chip: profile.cores_per_chip,
            populations,
            violations,
            requirements,
        }
    }
}

/// One thing to place: a population or the readout.
struct Unit<'a> {
    name: String,
    kind: String,
    /// Activation shape.
    shape: Vec<usize>,
    operands: &'a [Operand],
    neurons: usize,
    /// Whether a neuron holds two operands (two compartments where a chip joins compartments).
    two_operands: bool,
    /// What the neurons read, one reader per source.
    readers: Vec<Reader<'a>>,
    /// Per reader: whether it brings any synapse.
    feeds: Vec<bool>,
    total_synapses: u64,
    max_synapses: u64,
    max_fan_in: u64,
    stored_weights: u64,
    /// Input channels and kernel of the widest convolution feeding it, for suggestions.
    conv: Option<(usize, usize, usize)>,
}

impl<'a> Unit<'a> {
    fn new(name: String, kind: String, shape: &[usize], two_operands: bool, operands: &'a [Operand]) -> Self {
        let neurons = shape.iter().product();
        let readers = Reader::of(operands);
        let mut feeds = vec![false; readers.len()];
        let (mut total_synapses, mut max_synapses, mut max_fan_in) = (0, 0, 0);
        let mut footprint = Footprint::new(&readers);
        for t in 0..neurons {
            footprint.read(&readers, t);
            total_synapses += footprint.synapses;
            max_synapses = max_synapses.max(footprint.synapses);
            max_fan_in = max_fan_in.max(footprint.distinct);
            footprint.keys.iter().for_each(|&(r, _, live)| feeds[r as usize] |= live > 0);
        }
        Unit {
            name,
            kind,
            shape: shape.to_vec(),
            operands,
            neurons,
            two_operands,
            readers,
            feeds,
            total_synapses,
            max_synapses,
            max_fan_in,
            stored_weights: operands
                .iter()
                .flat_map(|o| &o.projections)
                .filter(|p| !p.overlap)
                .map(|p| p.block.stored_weights() as u64)
                .sum(),
            conv: widest_conv(operands),
        }
    }

    /// Compartments one neuron takes on `profile`.
    fn cost(&self, profile: &Profile) -> u64 {
        if self.two_operands && profile.two_operand_neurons == TwoOperand::MultiCompartment {
            2
        } else {
            1
        }
    }
}

/// Input channels per group and kernel of the convolution with the most taps per neuron.
fn widest_conv(operands: &[Operand]) -> Option<(usize, usize, usize)> {
    let mut widest = None;
    for projection in operands.iter().flat_map(|o| &o.projections).filter(|p| !p.overlap) {
        if let SynapseBlock::Conv(c) = &projection.block {
            let per_group = c.in_shape[0] / c.groups.max(1);
            if widest.is_none_or(|(ci, kh, kw): (usize, usize, usize)| {
                per_group * c.kernel_size[0] * c.kernel_size[1] > ci * kh * kw
            }) {
                widest = Some((per_group, c.kernel_size[0], c.kernel_size[1]));
            }
        }
    }
    widest
}

/// Where a unit went.
#[derive(Clone, Debug, Default)]
struct Placement {
    cores: usize,
    /// First neuron of each core.
    starts: Vec<u32>,
    /// Synaptic memory over all its cores, in bits.
    memory_bits: u64,
    /// Synaptic memory of its fullest core, in bits.
    fullest_bits: u64,
    /// Synaptic memory of that core, in bits.
    capacity_bits: u64,
    /// The core of its chip (one population per core).
    core: Option<usize>,
    /// Per neuron, its local core, when its cores do not hold consecutive neurons (spatial
    /// tiles); `starts` is empty then.
    neuron_cores: Option<Vec<u32>>,
    /// Cores of splitter neurons copying its spikes to more cores than one neuron may reach.
    splitter_cores: usize,
    /// Synaptic events per step of its busiest core (when rates are known).
    busiest_events: Option<f64>,
}

impl Placement {
    /// Local core of neuron `t`.
    fn core_of(&self, t: usize) -> usize {
        match &self.neuron_cores {
            Some(cores) => cores[t] as usize,
            None => self.starts.partition_point(|&s| s as usize <= t).saturating_sub(1),
        }
    }
}

/// Cuts every unit into slices, from the last to the first so that each unit's consumers are
/// placed before it and its neurons' destination cores are known.
fn place_all_split(
    units: &[Unit<'_>],
    costs: &[u64],
    profile: &Profile,
    rates: Option<&[Vec<f64>]>,
    violations: &mut Vec<Violation>,
) -> Vec<Placement> {
    let mut placements = vec![Placement::default(); units.len()];
    // Destination cores of each neuron, per unit, gathered from its consumers' placements.
    let mut dest: Vec<Vec<u32>> = vec![Vec::new(); units.len()];
    for u in (0..units.len()).rev() {
        let mut own = std::mem::take(&mut dest[u]);
        own.resize(units[u].neurons, 0);
        let mut notes = Vec::new();
        let rates = rates.map(|r| r[u].as_slice());
        let (mut placement, mut reached) = place_split(&units[u], costs[u], profile, &own, None, rates, &mut notes);
        for order in tile_orders(&units[u], profile) {
            let mut tiled_notes = Vec::new();
            let (tiled, tiled_reached) =
                place_split(&units[u], costs[u], profile, &own, Some(&order), rates, &mut tiled_notes);
            if tiled.cores < placement.cores {
                (placement, reached, notes) = (tiled, tiled_reached, tiled_notes);
            }
        }
        violations.extend(notes);
        if counts_destinations(profile) {
            add_destinations(&units[u], &reached, &mut dest);
        }
        placement.splitter_cores = splitter_cores(&own, profile);
        placements[u] = placement;
    }
    placements
}

/// Orders of a population's neurons in spatial tiles of `s × s` pixels with all their channels
/// (s = 1, 2, 4, 8 below the map's size), for chips with an input-axon limit: a tile of a
/// convolution's outputs reads a small window of all input channels, where a cut in element
/// (channel-major) order reads whole rows of every channel.
fn tile_orders(unit: &Unit<'_>, profile: &Profile) -> Vec<Vec<u32>> {
    let [c, h, w] = match unit.shape.as_slice() {
        [.., c, h, w] => [*c, *h, *w],
        _ => return Vec::new(),
    };
    if profile.input_axons_per_core.is_none() || unit.conv.is_none() || h * w <= 1 || c * h * w != unit.neurons {
        return Vec::new();
    }
    [1usize, 2, 4, 8]
        .into_iter()
        .filter(|&s| s < h.max(w))
        .map(|s| {
            let mut order = Vec::with_capacity(unit.neurons);
            for ty in (0..h).step_by(s) {
                for tx in (0..w).step_by(s) {
                    for y in ty..(ty + s).min(h) {
                        for x in tx..(tx + s).min(w) {
                            order.extend((0..c).map(|ch| ((ch * h + y) * w + x) as u32));
                        }
                    }
                }
            }
            order
        })
        .collect()
}

/// Which keys of a unit's readers are on the core being filled, and how many cores read each.
struct Marks {
    /// Per reader and key: the last core that read the key.
    stamps: Vec<Vec<u32>>,
    /// Per reader and key: the cores that read it.
    reached: Vec<Vec<u32>>,
    /// Per reader and key: the neurons of the last core that read it.
    readers: Vec<Vec<u32>>,
}

impl Marks {
    /// Marks for the keys of `unit`'s readers (none unless `used`).
    fn new(unit: &Unit<'_>, used: bool) -> Self {
        let keys = |r: &Reader<'_>| if used { r.keys() } else { 0 };
        Marks {
            stamps: unit.readers.iter().map(|r| vec![u32::MAX; keys(r)]).collect(),
            reached: unit.readers.iter().map(|r| vec![0; keys(r)]).collect(),
            readers: unit.readers.iter().map(|r| vec![0; keys(r)]).collect(),
        }
    }

    /// nengo-loihi's bits that the neuron read into `footprint` adds to `core`: each source
    /// behind a key is an input axon whose weights to the core grow by one (keys of readers that
    /// share a convolution's kernel excepted: `shared`).
    fn new_bits(&self, footprint: &Footprint, core: u32, shared: &[bool], bits_per_weight: u64) -> u64 {
        footprint
            .keys
            .iter()
            .filter(|&&(r, _, _)| !shared[r as usize])
            .map(|&(r, key, live)| {
                let (r, key) = (r as usize, key as usize);
                let n = if self.stamps[r][key] == core { self.readers[r][key] as u64 } else { 0 };
                live as u64 * (bits::bits_per_axon(n + 1, bits_per_weight) - bits::bits_per_axon(n, bits_per_weight))
            })
            .sum()
    }

    /// Source neurons of the neuron read into `footprint` not yet on `core`.
    fn new_sources(&self, footprint: &Footprint, core: u32) -> u64 {
        let off_core = |&&(r, key, _): &&(u32, u32, u32)| self.stamps[r as usize][key as usize] != core;
        footprint.keys.iter().filter(off_core).map(|&(_, _, live)| live as u64).sum()
    }

    /// Puts the source neurons of the neuron read into `footprint` on `core`.
    fn commit(&mut self, footprint: &Footprint, core: u32) {
        for &(r, key, _) in &footprint.keys {
            let stamp = &mut self.stamps[r as usize][key as usize];
            if *stamp != core {
                *stamp = core;
                self.reached[r as usize][key as usize] += 1;
                self.readers[r as usize][key as usize] = 0;
            }
            self.readers[r as usize][key as usize] += 1;
        }
    }
}

/// Cuts a unit into consecutive slices within the core limits, `dest` giving the destination
/// cores of each neuron (its output axons). Per-neuron violations go to `notes`. Returns the
/// placement and, per reader and key, the cores that read the key.
fn place_split(
    unit: &Unit<'_>,
    cost: u64,
    profile: &Profile,
    dest: &[u32],
    order: Option<&[u32]>,
    rates: Option<&[f64]>,
    notes: &mut Vec<Violation>,
) -> (Placement, Vec<Vec<u32>>) {
    let events_cap = rates.and(profile.synaptic_events_per_ms_per_core).map_or(f64::INFINITY, |e| e as f64);
    let (mut events, mut busiest) = (0f64, 0f64);
    let neuron_cap = profile.neurons_per_core;
    let axon_cap = profile.input_axons_per_core.unwrap_or(u64::MAX);
    let out_cap = profile.output_axons_per_core.unwrap_or(u64::MAX);
    let memory_cap = profile.synaptic_memory_bytes_per_core.saturating_mul(8);
    let model = profile.memory_model;
    let nengo = model == MemoryModel::NengoLoihi;
    // Kernels shared over a core's neurons: stored once per core that holds any of them.
    let shared: Vec<bool> = unit.readers.iter().map(|r| nengo && r.conv().is_some()).collect();
    let bits_per_weight = profile.weight_bits + bits::index_bits(profile.neurons_per_core);
    let base = match model {
        MemoryModel::PerStoredWeight => unit.stored_weights * profile.bits_per_synapse,
        MemoryModel::NengoLoihi => {
            unit.readers.iter().filter_map(|r| r.conv()).map(|c| bits::conv_bits(c, profile.weight_bits)).sum()
        }
        _ => 0,
    };
    let (counts_axons, counts_destinations) = (profile.input_axons_per_core.is_some(), counts_destinations(profile));
    let mut marks = Marks::new(unit, counts_axons || counts_destinations || nengo);
    let (mut memory_bits, mut fullest_bits) = (0u64, 0u64);
    let mut footprint = Footprint::new(&unit.readers);
    let mut starts = Vec::new();
    let (mut core, mut neurons, mut axons, mut memory, mut outputs) = (0u32, 0u64, 0u64, 0u64, 0u64);
    let mut empty = true;
    let mut worst: [Option<(u64, usize)>; 4] = [None; 4]; // fan-in, memory, output axons, neurons
    let mut bump = |slot: usize, value: u64| {
        let entry = worst[slot].get_or_insert((0, 0));
        entry.0 = entry.0.max(value);
        entry.1 += 1;
    };
    if cost > neuron_cap && unit.neurons > 0 {
        bump(3, cost);
    }
    let mut neuron_cores = order.map(|_| vec![0u32; dest.len()]);
    for i in 0..dest.len() {
        let t = order.map_or(i, |o| o[i] as usize);
        let own_out = dest[t];
        footprint.read(&unit.readers, t);
        let own_out = own_out as u64;
        let fan_in = footprint.distinct;
        if fan_in > axon_cap {
            bump(0, fan_in);
        }
        let alone = base + own_bits(model, profile, &footprint, cost, &marks, u32::MAX, &shared, bits_per_weight);
        if alone > memory_cap {
            bump(1, alone);
        }
        if own_out > out_cap {
            bump(2, own_out);
        }
        loop {
            let new = if counts_axons { marks.new_sources(&footprint, core) } else { 0 };
            let own_memory = own_bits(model, profile, &footprint, cost, &marks, core, &shared, bits_per_weight);
            let memory_before = if empty { base } else { memory };
            let own_events = rates.map_or(0.0, |rates| {
                footprint.keys.iter().map(|&(r, _, live)| live as f64 * rates[r as usize]).sum::<f64>()
            });
            let fits = neurons + cost <= neuron_cap
                && events + own_events <= events_cap
                && axons + new <= axon_cap
                && memory_before + own_memory <= memory_cap
                && outputs + own_out <= out_cap;
            if fits || empty {
                if counts_axons || counts_destinations || nengo {
                    marks.commit(&footprint, core);
                }
                if empty {
                    memory = base;
                    memory_bits += base;
                }
                memory_bits += own_memory;
                fullest_bits = fullest_bits.max(memory + own_memory);
                events += own_events;
                busiest = busiest.max(events);
                if empty && order.is_none() {
                    starts.push(t as u32);
                }
                if let Some(cores) = &mut neuron_cores {
                    cores[t] = core;
                }
                neurons += cost;
                axons += new;
                memory += own_memory;
                outputs += own_out;
                empty = false;
                // A neuron that broke a limit alone gets its core to itself.
                if !fits {
                    core += 1;
                    (neurons, axons, memory, outputs, empty) = (0, 0, 0, 0, true);
                    events = 0.0;
                }
                break;
            }
            core += 1;
            (neurons, axons, memory, outputs, empty) = (0, 0, 0, 0, true);
            events = 0.0;
        }
    }
    let cores = if unit.neurons == 0 { 0 } else { core as usize + usize::from(!empty) };
    notes.extend(limit_violations(unit, cost, profile, worst));
    let capacity_bits = memory_cap;
    let placement = Placement {
        cores,
        starts,
        memory_bits,
        fullest_bits,
        capacity_bits,
        core: None,
        neuron_cores,
        splitter_cores: 0,
        busiest_events: rates.map(|_| busiest),
    };
    (placement, marks.reached)
}

/// Synaptic memory, in bits, that the neuron read into `footprint` adds to `core` under the
/// chip's memory rule (`u32::MAX`: a core of its own).
#[allow(clippy::too_many_arguments)]
fn own_bits(
    model: MemoryModel,
    profile: &Profile,
    footprint: &Footprint,
    cost: u64,
    marks: &Marks,
    core: u32,
    shared: &[bool],
    bits_per_weight: u64,
) -> u64 {
    match model {
        MemoryModel::PerSynapse | MemoryModel::Sinabs => footprint.synapses * profile.bits_per_synapse,
        MemoryModel::PerStoredWeight => 0,
        MemoryModel::SharedWithState => footprint.synapses * profile.bits_per_synapse + profile.state_bits * cost,
        MemoryModel::NengoLoihi => marks.new_bits(footprint, core, shared, bits_per_weight),
    }
}

/// Whether `profile` limits what depends on the destination cores of a neuron.
fn counts_destinations(profile: &Profile) -> bool {
    profile.output_axons_per_core.is_some() || profile.max_destination_cores_per_neuron.is_some()
}

/// The violations of the per-neuron limits: the largest value and the number of neurons that
/// broke each limit (fan-in, memory, output axons, compartments).
fn limit_violations(unit: &Unit<'_>, cost: u64, profile: &Profile, worst: [Option<(u64, usize)>; 4]) -> Vec<Violation> {
    let memory_cap = profile.synapses_in(profile.synaptic_memory_bytes_per_core);
    let shared_memory = profile.memory_model == MemoryModel::PerStoredWeight;
    let rule = match profile.memory_model {
        MemoryModel::NengoLoihi => {
            "synaptic memory per core (bytes, nengo-loihi's bits of one neuron's synapses and the shared kernels)"
        }
        MemoryModel::SharedWithState => "synaptic memory per core (bytes, one neuron's synapses and state)",
        _ => "synaptic memory per core (bytes, synapses of one neuron)",
    };
    let limits = [
        ("input axons per core (distinct source neurons of one neuron)", profile.input_axons_per_core),
        ("synaptic memory per core (synapses of one neuron)", Some(memory_cap)),
        ("output axons per core (destination cores of one neuron)", profile.output_axons_per_core),
        ("neurons (compartments) per core", Some(profile.neurons_per_core)),
    ];
    let mut violations = Vec::new();
    for (slot, (limit, cap)) in limits.into_iter().enumerate() {
        if let (Some((value, count)), Some(cap)) = (worst[slot], cap) {
            let (limit_value, value) =
                if slot == 1 { (profile.synaptic_memory_bytes_per_core, value.div_ceil(8)) } else { (cap, value) };
            violations.push(Violation {
                population: unit.name.clone(),
                limit: if slot == 1 && shared_memory {
                    "synaptic memory per core (stored weights, bytes)".into()
                } else if slot == 1 {
                    rule.into()
                } else {
                    limit.into()
                },
                limit_value,
                value,
                neurons: count,
                suggestion: suggestion(slot, unit, cost, profile, cap),
            });
        }
    }
    violations
}

fn suggestion(slot: usize, unit: &Unit<'_>, cost: u64, profile: &Profile, cap: u64) -> String {
    match slot {
        0 => match unit.conv {
            Some((ci, kh, kw)) if (kh * kw) as u64 <= cap => format!(
                "split the {ci}×{kh}×{kw} convolution's input channels into groups of ≤ {} (partial sums in intermediate populations, added by the next layer)",
                cap / (kh * kw) as u64
            ),
            _ => {
                let fan_in = unit.max_fan_in;
                format!(
                    "split each neuron's {fan_in} inputs into {} groups of ≤ {cap} (partial-sum populations whose outputs the neuron adds)",
                    fan_in.div_ceil(cap)
                )
            }
        },
        1 => format!(
            "split each neuron's synapses into groups of ≤ {cap} ({} bytes at {} bits each; partial-sum populations), or store fewer bits per synapse",
            profile.synaptic_memory_bytes_per_core, profile.bits_per_synapse
        ),
        2 => format!(
            "its neurons reach more than {cap} destination cores: copy them with relay/splitter neurons so that each copy serves ≤ {cap} cores"
        ),
        _ => format!("a neuron of this kind takes {cost} compartments, more than a core's {cap}"),
    }
}

/// Adds to `dest` (per unit, per neuron) the cores of `unit` that each neuron it reads reaches:
/// every source behind a key reaches the cores that read the key.
fn add_destinations(unit: &Unit<'_>, reached: &[Vec<u32>], dest: &mut [Vec<u32>]) {
    for (reader, reached) in unit.readers.iter().zip(reached) {
        let Source::Population(s) = reader.source else { continue };
        let dest = &mut dest[s];
        if dest.is_empty() {
            dest.resize(reader.sources, 0);
        }
        for (key, &cores) in reached.iter().enumerate().filter(|&(_, &cores)| cores > 0) {
            reader.for_each_source(key, |p| dest[p] += cores);
        }
    }
}

/// Cores of splitter neurons for the neurons that send to more cores than one neuron may
/// (TrueNorth: one). A splitter core receives each such neuron on one axon and copies its spike
/// with `⌈d / limit⌉` neurons, one per group of destination cores, so the count is the larger of
/// the copies over the neurons per core and the copied neurons over the axons per core.
fn splitter_cores(dest: &[u32], profile: &Profile) -> usize {
    let Some(limit) = profile.max_destination_cores_per_neuron else { return 0 };
    let (mut copies, mut sources) = (0u64, 0u64);
    for &d in dest.iter().filter(|&&d| d as u64 > limit) {
        copies += (d as u64).div_ceil(limit);
        sources += 1;
    }
    let by_axons = profile.input_axons_per_core.map_or(0, |a| sources.div_ceil(a));
    copies.div_ceil(profile.neurons_per_core).max(by_axons) as usize
}

/// The destination cores of every core of every population: per consumer core, the distinct
/// keys its neurons read, each expanded to its sources' cores. Time proportional to the sources
/// reaching each consumer core; a consumer on one core reading a population on one core makes
/// one pair if any synapse joins them.
struct CoreFanOut {
    /// Per population and core: distinct (consumer, core) pairs it feeds.
    pairs: Vec<Vec<u64>>,
    /// Per population and core: the last (consumer, core) pair counted.
    last: Vec<Vec<u64>>,
    /// Per population: the consumers it has synapses to.
    consumers: Vec<Vec<usize>>,
}

/// The unit whose core sends unit `u`'s output: `u` itself, or, for a unit without a core of
/// its own (a pooling merged into the core before it), the first population it reads, followed
/// back.
fn host_core_unit(units: &[Unit<'_>], placements: &[Placement], mut u: usize) -> usize {
    for _ in 0..units.len() {
        if placements[u].cores > 0 {
            break;
        }
        match units[u].readers.iter().find_map(|r| match r.source {
            Source::Population(p) => Some(p),
            Source::Input => None,
        }) {
            Some(p) => u = p,
            None => break,
        }
    }
    u
}

impl CoreFanOut {
    fn count(units: &[Unit<'_>], placements: &[Placement]) -> Self {
        let populations = units.len() - 1;
        let per_core = |fill: u64| -> Vec<Vec<u64>> {
            placements[..populations].iter().map(|p| vec![fill; p.cores.max(1)]).collect()
        };
        let mut fan_out =
            CoreFanOut { pairs: per_core(0), last: per_core(u64::MAX), consumers: vec![Vec::new(); populations] };
        for (c, consumer) in units.iter().enumerate() {
            let sources = |r: usize| match consumer.readers[r].source {
                Source::Population(u) => Some(u),
                Source::Input => None,
            };
            let whole = placements[c].cores <= 1
                && (0..consumer.readers.len()).filter_map(sources).all(|u| placements[u].cores <= 1);
            if whole {
                // A unit without a core of its own (a pooling inside its producer's core) sends
                // from its producer's core.
                if placements[c].cores == 0 {
                    continue;
                }
                let mut hosts = Vec::new();
                for (r, u) in (0..consumer.readers.len()).filter_map(|r| Some((r, sources(r)?))) {
                    if consumer.feeds[r] {
                        let host = host_core_unit(units, placements, u);
                        if !hosts.contains(&host) {
                            hosts.push(host);
                            fan_out.pairs[host][0] += 1;
                            fan_out.consumers[host].push(c);
                        }
                    }
                }
            } else {
                fan_out.add(c, consumer, placements);
            }
        }
        fan_out
    }

    /// Adds the pairs that consumer `c`'s cores make with the populations it reads.
    fn add(&mut self, c: usize, consumer: &Unit<'_>, placements: &[Placement]) {
        let mut stamps: Vec<Vec<u32>> = consumer.readers.iter().map(|r| vec![u32::MAX; r.keys()]).collect();
        let mut footprint = Footprint::new(&consumer.readers);
        for t in 0..consumer.neurons {
            let core = placements[c].core_of(t) as u32;
            let pair = ((c as u64) << 32) | core as u64;
            footprint.read(&consumer.readers, t);
            for &(r, key, _) in &footprint.keys {
                let reader = &consumer.readers[r as usize];
                let Source::Population(u) = reader.source else { continue };
                let stamp = &mut stamps[r as usize][key as usize];
                if *stamp == core {
                    continue;
                }
                *stamp = core;
                let (pairs, last) = (&mut self.pairs[u], &mut self.last[u]);
                reader.for_each_source(key as usize, |p| {
                    let source_core = placements[u].core_of(p);
                    if last[source_core] != pair {
                        last[source_core] = pair;
                        pairs[source_core] += 1;
                    }
                });
            }
        }
        for (r, reader) in consumer.readers.iter().enumerate() {
            if let (Source::Population(u), true) = (reader.source, consumer.feeds[r]) {
                self.consumers[u].push(c);
            }
        }
    }
}

/// Speck's rule: each core feeds at most `limit` other cores.
fn check_core_fan_out(units: &[Unit<'_>], placements: &[Placement], limit: u64, violations: &mut Vec<Violation>) {
    let fan_out = CoreFanOut::count(units, placements);
    for (u, pairs) in fan_out.pairs.iter().enumerate() {
        let worst = pairs.iter().copied().max().unwrap_or(0);
        if worst > limit {
            let mut names: Vec<&str> = fan_out.consumers[u].iter().map(|&c| units[c].name.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            violations.push(Violation {
                population: units[u].name.clone(),
                limit: "destination cores per core".into(),
                limit_value: limit,
                value: worst,
                neurons: units[u].neurons,
                suggestion: format!(
                    "its output feeds {} ({}); a core feeds at most {limit}: merge consumers or chain copies of the layer (an identity population that forwards its spikes)",
                    names.len(),
                    short_list(&names, 4)
                ),
            });
        }
    }
}

/// What one unit needs of a core, on a chip that holds one population per core: neurons (or
/// neuron memory entries), synaptic memory in units of `bits_per_synapse`, bias entries.
#[derive(Clone, Copy)]
struct Demand {
    neurons: u64,
    memory: u64,
    bias: u64,
}

/// One population per core: layers matched to the cores whose memories hold them (a maximum
/// bipartite matching, as sinabs assigns DYNAP-CNN layers), smallest cores tried first; chips are
/// added until every layer that fits some core has one. A layer that fits no core is a violation
/// and still counts as a core; a max pooling under sinabs's rule takes none.
fn place_whole(
    units: &[Unit<'_>],
    costs: &[u64],
    layers: &[Option<LayerView>],
    profile: &Profile,
    violations: &mut Vec<Violation>,
) -> (Vec<Placement>, u64) {
    let per_chip = profile.cores_per_chip as usize;
    let demand = |u: usize| match &layers[u] {
        Some(l) => {
            Demand { neurons: l.memory.neuron_memory, memory: l.memory.kernel_memory, bias: l.memory.bias_memory }
        }
        None => Demand {
            neurons: units[u].neurons as u64 * costs[u],
            memory: match profile.memory_model {
                MemoryModel::PerStoredWeight => units[u].stored_weights,
                _ => units[u].total_synapses,
            },
            bias: 0,
        },
    };
    let memory_cap = |k: usize| profile.synapses_in(profile.core_memory_bytes(k % per_chip));
    let fits = |d: Demand, k: usize| {
        d.neurons <= profile.core_neuron_capacity(k % per_chip)
            && d.memory <= memory_cap(k)
            && profile.bias_entries_per_core.is_none_or(|b| d.bias <= b)
    };
    let sinabs = profile.memory_model == MemoryModel::Sinabs;
    let mut placements = vec![Placement::default(); units.len()];
    let mut layered = Vec::new();
    let mut failed = 0usize;
    for (u, unit) in units.iter().enumerate() {
        if layers[u].as_ref().is_some_and(|l| l.max_pooling) {
            continue;
        }
        let d = demand(u);
        placements[u] = Placement {
            cores: 1,
            starts: vec![0],
            memory_bits: d.memory * profile.bits_per_synapse,
            ..Placement::default()
        };
        if (0..per_chip).any(|k| fits(d, k)) {
            layered.push(u);
            continue;
        }
        failed += 1;
        let bias_cap = profile.bias_entries_per_core.unwrap_or(u64::MAX);
        let (limit, limit_value, value) = if d.neurons > profile.max_core_neurons() {
            let what = if sinabs {
                "neuron memory per core (entries, sinabs's rule)"
            } else {
                "neurons per core (one population per core)"
            };
            (what, profile.max_core_neurons(), d.neurons)
        } else if d.bias > bias_cap {
            ("bias memory per core (entries)", bias_cap, d.bias)
        } else if sinabs {
            (
                "kernel memory per core (entries, sinabs's rule)",
                profile.synapses_in(profile.max_core_memory_bytes()),
                d.memory,
            )
        } else {
            (
                "synaptic memory per core (bytes, one population per core)",
                profile.max_core_memory_bytes(),
                d.memory * profile.bits_per_synapse / 8,
            )
        };
        violations.push(Violation {
            population: unit.name.clone(),
            limit: limit.into(),
            limit_value,
            value,
            neurons: unit.neurons,
            suggestion: whole_suggestion(layers[u].as_ref(), limit, limit_value, profile),
        });
        let placement = &mut placements[u];
        placement.fullest_bits = placement.memory_bits;
        placement.capacity_bits = profile.max_core_memory_bytes() * 8;
    }
    let mut chips = (layered.len() + failed).div_ceil(per_chip).max(1);
    let assignment = loop {
        let slots = chips * per_chip;
        let mut order: Vec<usize> = (0..slots).collect();
        order.sort_by_key(|&k| (profile.core_neuron_capacity(k % per_chip), memory_cap(k), k));
        if let Some(assignment) = match_cores(&layered, &order, |u, k| fits(demand(u), k)) {
            break assignment;
        }
        chips += 1;
    };
    for (&u, &k) in layered.iter().zip(&assignment) {
        let placement = &mut placements[u];
        placement.core = Some(k % per_chip);
        placement.fullest_bits = placement.memory_bits;
        placement.capacity_bits = memory_cap(k) * profile.bits_per_synapse;
    }
    (placements, chips as u64)
}

/// A maximum matching of `units` to cores (Kuhn's augmenting paths), cores tried in `order`:
/// the core of each unit, or `None` if some unit gets none.
fn match_cores(units: &[usize], order: &[usize], fits: impl Fn(usize, usize) -> bool) -> Option<Vec<usize>> {
    fn augment(
        i: usize,
        units: &[usize],
        order: &[usize],
        fits: &dyn Fn(usize, usize) -> bool,
        owner: &mut [Option<usize>],
        seen: &mut [bool],
    ) -> bool {
        for &k in order {
            if seen[k] || !fits(units[i], k) {
                continue;
            }
            seen[k] = true;
            if owner[k].is_none_or(|j| augment(j, units, order, fits, owner, seen)) {
                owner[k] = Some(i);
                return true;
            }
        }
        false
    }
    let mut owner = vec![None; order.len()];
    for i in 0..units.len() {
        let mut seen = vec![false; order.len()];
        if !augment(i, units, order, &fits, &mut owner, &mut seen) {
            return None;
        }
    }
    let mut core = vec![0; units.len()];
    for (k, o) in owner.iter().enumerate() {
        if let Some(i) = o {
            core[*i] = k;
        }
    }
    Some(core)
}

/// What would make a layer that fits no core fit: computed from its structure.
fn whole_suggestion(layer: Option<&LayerView>, limit: &str, cap: u64, profile: &Profile) -> String {
    let chip = &profile.chip;
    let Some(layer) = layer else {
        return format!(
            "a population cannot be split over cores on the {chip}: shrink the layer (fewer channels or a smaller map){}",
            if limit.starts_with("synaptic") { ", or share weights (a convolution stores its kernel once)" } else { "" }
        );
    };
    let m = layer.memory;
    if limit.starts_with("neuron memory") {
        // neuron memory = c_out · 2^(⌈log2 H⌉ + ⌈log2 W⌉): the channels that fit, or the pooling.
        let [c_out, h, w] = layer.map;
        let entries = |h: usize, w: usize| neuron_memory(1, h, w);
        let channels = cap / entries(h, w);
        let pool = (1..=6)
            .map(|k| 1usize << k)
            .find(|&p| c_out as u64 * entries(h.div_ceil(p), w.div_ceil(p)) <= cap)
            .map_or("no pooling".to_string(), |p| format!("a stride or pooling of {p} on its input"));
        format!(
            "at most {channels} output channels fit a core's {cap} neuron entries at this {h}×{w} map; or keep {c_out} channels with {pool} (sinabs rounds each side up to a power of 2)"
        )
    } else if limit.starts_with("kernel memory") {
        // kernel memory = c_in · 2^(⌈log2 kxky⌉ + ⌈log2 c_out⌉): the input channels that fit.
        let per_input = m.kernel_memory / (layer.c_in as u64).max(1);
        format!(
            "at most {} input channels fit a core's {cap} kernel entries with this kernel and output channel count ({per_input} entries per input channel); split the input channels into groups on separate cores, or pool the input map before a linear layer",
            cap / per_input.max(1)
        )
    } else {
        format!("at most {cap} output channels have a bias on one core of the {chip}")
    }
}

fn short_list(names: &[&str], n: usize) -> String {
    if names.len() <= n {
        names.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
    } else {
        let head: Vec<String> = names[..n].iter().map(|s| format!("`{s}`")).collect();
        format!("{} and {} more", head.join(", "), names.len() - n)
    }
}

/// What the method needs from a chip, and whether this one gives it.
fn requirements(network: &Network, profile: &Profile, options: &MapOptions) -> Vec<Requirement> {
    let names = |f: &dyn Fn(usize) -> bool| -> Vec<String> {
        network.populations.iter().enumerate().filter(|&(i, _)| f(i)).map(|(_, p)| p.name.clone()).collect()
    };
    let pops = &network.populations;
    let mut out = Vec::new();

    let reads_input =
        |i: usize| pops[i].operands.iter().flat_map(|o| &o.projections).any(|p| p.source == Source::Input);
    let encoder_fed = names(&reads_input);
    if options.real_valued_input && !encoder_fed.is_empty() {
        out.push(Requirement {
            need: "real-valued input".into(),
            populations: encoder_fed,
            met: profile.real_valued_input,
            how: if profile.real_valued_input {
                "the float encoder's values arrive as multi-bit payloads".into()
            } else {
                "the float encoder sends real values (1 + g_t)/2 every step, the chip takes binary spikes only: use --encoder spike for a binary encoder".into()
            },
        });
    }

    let two = names(&|i| pops[i].kind.arity() == 2);
    if !two.is_empty() {
        let kinds: Vec<String> = {
            let mut k: Vec<String> = pops.iter().filter(|p| p.kind.arity() == 2).map(|p| p.kind.name()).collect();
            k.sort();
            k.dedup();
            k
        };
        let how = match profile.two_operand_neurons {
            TwoOperand::Native => "the neuron model holds both operands".to_string(),
            TwoOperand::MultiCompartment => {
                "two compartments joined in a dendritic tree, one per operand (counted as 2 compartments per neuron)"
                    .into()
            }
            TwoOperand::None => {
                let mut ways = Vec::new();
                for kind in &kinds {
                    ways.push(match kind.as_str() {
                        "max" => "max(a, b) = a + relu(b − a) (a ReLU population and an affine sum)".to_string(),
                        "product" => "a·b = ((a + b)² − (a − b)²)/4 (two square populations and an affine difference)".into(),
                        "division" => "a/b has no one-operand form: exp/log (a·exp(−log b)) needs log neurons and still a product".into(),
                        "div_sqrt" => "x1/√x2 (LayerNorm) has no one-operand form: fold a fixed variance (a calibrated constant) into the weights".into(),
                        other => format!("{other}: no one-operand decomposition"),
                    });
                }
                format!(
                    "two-operand neurons ({}) need two input compartments: Loihi's multi-compartment dendrites or programmable neurons; or decompose: {}",
                    kinds.join(", "),
                    ways.join("; ")
                )
            }
        };
        out.push(Requirement {
            need: "two-operand neurons".into(),
            populations: two,
            met: profile.two_operand_neurons != TwoOperand::None,
            how,
        });
    }

    let neurons = names(&|i| !pops[i].kind.is_relay());
    if !neurons.is_empty() {
        out.push(Requirement {
            need: "per-step constant drive".into(),
            populations: neurons.clone(),
            met: profile.per_step_drive,
            how: if profile.per_step_drive {
                "each neuron keeps its own step size η_t and applies η_t(o − 2c) and the η_t-scaled synaptic input itself".into()
            } else {
                "η_t scales each operand's constant drive η_t(o − 2c) and every synaptic event, so the bias changes every step; the chip's bias is constant: use a constant schedule (--schedule constant:ETA0 in signgd run) so drive and weights are scaled once, or rewrite biases from the host every step".into()
            },
        });
        let nonlinear = names(&|i| {
            !pops[i].kind.is_relay() && !matches!(pops[i].kind, NeuronKind::Relu | NeuronKind::Max | NeuronKind::Abs)
        });
        out.push(Requirement {
            need: "signGD neuron update".into(),
            populations: neurons,
            met: profile.programmable_neurons,
            how: if profile.programmable_neurons {
                "programmable neurons run v ← v − η_t(2s − 1) and the spike function [v vs f(x)]".into()
            } else {
                format!(
                    "the neuron dynamics are fixed (LIF/IF): v ← v − η_t(2s − 1) compared with f(x) is not an IF neuron; only the rate-coded IF baseline (signgd run --neuron if, ReLU networks) runs natively{}",
                    if nonlinear.is_empty() {
                        String::new()
                    } else {
                        format!("; {} population(s) also need a nonlinear spike function (exp, square, GELU, product, division, …)", nonlinear.len())
                    }
                )
            },
        });
    }

    let relays = names(&|i| pops[i].kind.is_relay());
    if !relays.is_empty() {
        let graded = profile.spikes == SpikeKind::Graded;
        out.push(Requirement {
            need: "relays (real-valued accumulators)".into(),
            populations: relays,
            met: graded,
            how: if graded {
                "a relay sends its accumulated value each step as a graded-spike payload".into()
            } else {
                "a relay forwards a real value every step, binary spikes cannot carry it: fold each relay into its consumers (compose the two maps: more synapses) or replace it by a signGD identity population".into()
            },
        });
    }
    out
}
