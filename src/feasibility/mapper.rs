//! Places every population of a spiking network onto the cores of a chip profile.
//!
//! Each population (and the readout, a real-valued accumulator like a relay) is cut, in element
//! order, into consecutive slices, one per core, each as large as the core's limits allow:
//! neurons (compartments) per core, distinct source neurons per core (input axons), synaptic
//! memory (the synapses reaching the slice × bits per synapse), and output axons (for each
//! neuron, one per distinct destination core). Output axons depend on where the consumers went,
//! so a second pass, from the last population back to the first, re-cuts each population with
//! its consumers' placement known. A limit that one neuron alone exceeds cannot be cured by any
//! cut: it becomes a [`Violation`] with a suggestion, and the neuron is placed on a core of its
//! own so the count of cores stays meaningful.
//!
//! Chips that hold one layer per core (`split_populations: false`, Speck) get each population on
//! one core instead, best fit among cores of different sizes.

use std::collections::HashSet;

use super::profile::{MemoryModel, Profile, SpikeKind, TwoOperand};
use super::{PopulationPlacement, Requirement, TargetReport, Violation};
use crate::snn::{Network, NeuronKind, Operand, Source, SynapseBlock};

/// Settings of a mapping.
#[derive(Clone, Debug)]
pub struct MapOptions {
    /// Whether the encoder sends real values (`--encoder float`) rather than binary spikes.
    pub real_valued_input: bool,
}

impl Default for MapOptions {
    fn default() -> Self {
        MapOptions { real_valued_input: true }
    }
}

/// One thing to place: a population or the readout.
struct Unit<'a> {
    name: String,
    kind: String,
    neurons: usize,
    /// Compartments one neuron takes.
    cost: u64,
    operands: &'a [Operand],
    /// Target → global source ids (CSR), one entry per synapse.
    ptr: Vec<usize>,
    sources: Vec<u32>,
    /// Distinct sources per target.
    distinct: Vec<u32>,
    stored_weights: u64,
    /// Input channels and kernel of the widest convolution feeding it, for suggestions.
    conv: Option<(usize, usize, usize)>,
}

/// Maps `network` onto `profile`.
pub fn map(network: &Network, profile: &Profile, options: &MapOptions) -> TargetReport {
    // Global source ids: the input first, then each population's neurons.
    let mut offsets = Vec::with_capacity(network.populations.len() + 1);
    let mut next = network.input_size();
    for p in &network.populations {
        offsets.push(next);
        next += p.size();
    }
    let total_sources = next;
    let global = |s: Source| match s {
        Source::Input => 0,
        Source::Population(p) => offsets[p],
    };

    let readout = std::slice::from_ref(&network.readout);
    let mut units: Vec<Unit<'_>> = network
        .populations
        .iter()
        .map(|p| {
            let cost =
                if p.kind.arity() == 2 && profile.two_operand_neurons == TwoOperand::MultiCompartment { 2 } else { 1 };
            build_unit(p.name.clone(), p.kind.name(), p.size(), cost, &p.operands, &global)
        })
        .collect();
    units.push(build_unit("readout".into(), "decoder".into(), network.output_size(), 1, readout, &global));
    // Unit of each global source id (None for the input).
    let unit_of_source = |id: usize| -> Option<usize> {
        if id < network.input_size() {
            None
        } else {
            Some(offsets.partition_point(|&o| o <= id) - 1)
        }
    };

    let mut violations = Vec::new();
    let mut placements: Vec<Placement> = Vec::with_capacity(units.len());
    let chips;
    let total_cores;
    if profile.split_populations {
        // Pass 1: inputs only.
        for unit in &units {
            placements.push(place_split(unit, profile, total_sources, None, &mut Vec::new()));
        }
        // Pass 2: from the back, with destination cores known.
        let mut fan_cores: Vec<Vec<u32>> = vec![Vec::new(); units.len()];
        for u in (0..units.len()).rev() {
            let dest = destination_cores(u, &units, &placements, &offsets);
            let mut notes = Vec::new();
            placements[u] = place_split(&units[u], profile, total_sources, Some(&dest), &mut notes);
            violations.extend(notes);
            fan_cores[u] = dest;
        }
        for (u, unit) in units.iter().enumerate() {
            check_neuron_fan_out(unit, &fan_cores[u], profile, &mut violations);
        }
        total_cores = placements.iter().map(|p| p.cores as u64).sum::<u64>();
        chips = total_cores.div_ceil(profile.cores_per_chip).max(1);
    } else {
        let (p, c) = place_whole(&units, profile, &mut violations);
        placements = p;
        chips = c;
        total_cores = placements.iter().map(|p| p.cores as u64).sum();
    }
    if let Some(limit) = profile.max_destination_cores_per_core {
        check_core_fan_out(&units, &placements, &offsets, &unit_of_source, total_sources, limit, &mut violations);
    }
    if let Some(max) = profile.max_chips {
        if chips > max {
            violations.push(Violation {
                population: "(whole network)".into(),
                limit: "chips".into(),
                limit_value: max,
                value: chips,
                neurons: 0,
                suggestion: format!(
                    "the network needs {total_cores} cores, {chips} chips of {} cores, and the {} works alone; use a smaller model or another chip",
                    profile.cores_per_chip, profile.chip
                ),
            });
        }
    }

    let populations = units
        .iter()
        .zip(&placements)
        .map(|(unit, placement)| PopulationPlacement {
            name: unit.name.clone(),
            kind: unit.kind.clone(),
            neurons: unit.neurons,
            compartments_per_neuron: unit.cost,
            cores: placement.cores,
            max_fan_in: unit.distinct.iter().copied().max().unwrap_or(0),
            max_synapses_per_neuron: (0..unit.neurons).map(|t| unit.ptr[t + 1] - unit.ptr[t]).max().unwrap_or(0) as u64,
            synapses: unit.sources.len() as u64,
        })
        .collect();
    let requirements = requirements(network, profile, options);
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

fn build_unit<'a>(
    name: String,
    kind: String,
    neurons: usize,
    cost: u64,
    operands: &'a [Operand],
    global: &dyn Fn(Source) -> usize,
) -> Unit<'a> {
    let mut counts = vec![0usize; neurons + 1];
    let mut stored_weights = 0u64;
    let mut conv = None;
    for projection in operands.iter().flat_map(|o| &o.projections).filter(|p| !p.overlap) {
        for_each_edge(&projection.block, |t, _| counts[t + 1] += 1);
        stored_weights += projection.block.stored_weights() as u64;
        if let SynapseBlock::Conv(c) = &projection.block {
            let per_group = c.in_shape[0] / c.groups.max(1);
            if conv.is_none_or(|(ci, kh, kw): (usize, usize, usize)| {
                per_group * c.kernel_size[0] * c.kernel_size[1] > ci * kh * kw
            }) {
                conv = Some((per_group, c.kernel_size[0], c.kernel_size[1]));
            }
        }
    }
    for t in 0..neurons {
        counts[t + 1] += counts[t];
    }
    let ptr = counts;
    let mut fill = ptr.clone();
    let mut sources = vec![0u32; ptr[neurons]];
    for projection in operands.iter().flat_map(|o| &o.projections).filter(|p| !p.overlap) {
        let base = global(projection.source);
        for_each_edge(&projection.block, |t, s| {
            sources[fill[t]] = (base + s) as u32;
            fill[t] += 1;
        });
    }
    let mut distinct = vec![0u32; neurons];
    let mut scratch: Vec<u32> = Vec::new();
    for t in 0..neurons {
        scratch.clear();
        scratch.extend_from_slice(&sources[ptr[t]..ptr[t + 1]]);
        scratch.sort_unstable();
        scratch.dedup();
        distinct[t] = scratch.len() as u32;
    }
    Unit { name, kind, neurons, cost, operands, ptr, sources, distinct, stored_weights, conv }
}

/// Calls `visit(target, source)` for every synapse of a block.
fn for_each_edge(block: &SynapseBlock, mut visit: impl FnMut(usize, usize)) {
    block.for_each_synapse(|t, s, _| visit(t, s));
}

/// Where a unit went.
#[derive(Clone, Debug, Default)]
struct Placement {
    cores: usize,
    /// Local core of each neuron.
    core_of: Vec<u32>,
}

/// Cuts a unit into consecutive slices within the core limits. With `dest` (destination cores
/// per neuron) the output-axon limit is enforced too. Per-neuron violations go to `notes`.
fn place_split(
    unit: &Unit<'_>,
    profile: &Profile,
    total_sources: usize,
    dest: Option<&[u32]>,
    notes: &mut Vec<Violation>,
) -> Placement {
    let neuron_cap = profile.neurons_per_core;
    let axon_cap = profile.input_axons_per_core.unwrap_or(u64::MAX);
    let out_cap = profile.output_axons_per_core.unwrap_or(u64::MAX);
    let memory_cap = profile.synapses_in(profile.synaptic_memory_bytes_per_core);
    let shared_memory = profile.memory_model == MemoryModel::PerStoredWeight;
    let mut core_of = vec![0u32; unit.neurons];
    let mut stamp: Vec<u32> = vec![u32::MAX; total_sources];
    let mut trials = 0u32;
    let (mut core, mut neurons, mut axons, mut memory, mut outputs) = (0u32, 0u64, 0u64, 0u64, 0u64);
    let mut empty = true;
    let mut worst: [Option<(u64, usize)>; 4] = [None; 4]; // fan-in, memory, output axons, neurons
    let mut bump = |slot: usize, value: u64| {
        let entry = worst[slot].get_or_insert((0, 0));
        entry.0 = entry.0.max(value);
        entry.1 += 1;
    };
    if unit.cost > neuron_cap && unit.neurons > 0 {
        bump(3, unit.cost);
    }
    for t in 0..unit.neurons {
        let synapses = (unit.ptr[t + 1] - unit.ptr[t]) as u64;
        let own_memory = if shared_memory { unit.stored_weights } else { synapses };
        let own_out = dest.map_or(0, |d| d[t] as u64);
        let fan_in = unit.distinct[t] as u64;
        if fan_in > axon_cap {
            bump(0, fan_in);
        }
        if own_memory > memory_cap {
            bump(1, own_memory);
        }
        if own_out > out_cap {
            bump(2, own_out);
        }
        loop {
            // Sources not yet on this core.
            // Trial marks have the high bit set and never equal the initial u32::MAX.
            trials = (trials + 1) % 0x7FFF_FFFE;
            let trial = 0x8000_0000 | trials;
            let mut new = 0u64;
            for &s in &unit.sources[unit.ptr[t]..unit.ptr[t + 1]] {
                let mark = &mut stamp[s as usize];
                if *mark != core && *mark != trial {
                    *mark = trial;
                    new += 1;
                }
            }
            let fits = neurons + unit.cost <= neuron_cap
                && axons + new <= axon_cap
                && (shared_memory || memory + own_memory <= memory_cap)
                && outputs + own_out <= out_cap;
            if fits || empty {
                for &s in &unit.sources[unit.ptr[t]..unit.ptr[t + 1]] {
                    stamp[s as usize] = core;
                }
                neurons += unit.cost;
                axons += new;
                memory += own_memory;
                outputs += own_out;
                core_of[t] = core;
                empty = false;
                // A neuron that broke a limit alone gets its core to itself.
                if !fits {
                    core += 1;
                    (neurons, axons, memory, outputs, empty) = (0, 0, 0, 0, true);
                }
                break;
            }
            core += 1;
            (neurons, axons, memory, outputs, empty) = (0, 0, 0, 0, true);
        }
    }
    let cores = if unit.neurons == 0 { 0 } else { core as usize + usize::from(!empty) };
    if dest.is_some() {
        let limits = [
            ("input axons per core (distinct source neurons of one neuron)", profile.input_axons_per_core),
            ("synaptic memory per core (synapses of one neuron)", Some(memory_cap)),
            ("output axons per core (destination cores of one neuron)", profile.output_axons_per_core),
            ("neurons (compartments) per core", Some(neuron_cap)),
        ];
        for (slot, (limit, cap)) in limits.into_iter().enumerate() {
            if let (Some((value, count)), Some(cap)) = (worst[slot], cap) {
                let (limit_value, value) = if slot == 1 {
                    (profile.synaptic_memory_bytes_per_core, value * profile.bits_per_synapse / 8)
                } else {
                    (cap, value)
                };
                notes.push(Violation {
                    population: unit.name.clone(),
                    limit: if slot == 1 && shared_memory {
                        "synaptic memory per core (stored weights, bytes)".into()
                    } else if slot == 1 {
                        "synaptic memory per core (bytes, synapses of one neuron)".into()
                    } else {
                        limit.into()
                    },
                    limit_value,
                    value,
                    neurons: count,
                    suggestion: suggestion(slot, unit, profile, cap),
                });
            }
        }
    }
    Placement { cores, core_of }
}

fn suggestion(slot: usize, unit: &Unit<'_>, profile: &Profile, cap: u64) -> String {
    match slot {
        0 => match unit.conv {
            Some((ci, kh, kw)) if (kh * kw) as u64 <= cap => format!(
                "split the {ci}×{kh}×{kw} convolution's input channels into groups of ≤ {} (partial sums in intermediate populations, added by the next layer)",
                cap / (kh * kw) as u64
            ),
            _ => {
                let fan_in = unit.distinct.iter().copied().max().unwrap_or(0) as u64;
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
        _ => format!(
            "a neuron of this kind takes {} compartments, more than a core's {cap}",
            unit.cost
        ),
    }
}

/// For every neuron of unit `u`, the number of distinct cores its synapses reach.
fn destination_cores(u: usize, units: &[Unit<'_>], placements: &[Placement], offsets: &[usize]) -> Vec<u32> {
    let mut dest = vec![0u32; units[u].neurons];
    if u >= offsets.len() {
        return dest; // the readout sends nothing
    }
    let base = offsets[u];
    let end = base + units[u].neurons;
    let mut last = vec![u64::MAX; units[u].neurons];
    for (c, consumer) in units.iter().enumerate().skip(u + 1) {
        if !reads(consumer, u) {
            continue;
        }
        for t in 0..consumer.neurons {
            let core = ((c as u64) << 32) | placements[c].core_of[t] as u64;
            for &s in &consumer.sources[consumer.ptr[t]..consumer.ptr[t + 1]] {
                let s = s as usize;
                if (base..end).contains(&s) {
                    let i = s - base;
                    if last[i] != core {
                        last[i] = core;
                        dest[i] += 1;
                    }
                }
            }
        }
    }
    dest
}

/// Whether `consumer` has a projection from population `u`.
fn reads(consumer: &Unit<'_>, u: usize) -> bool {
    consumer.operands.iter().flat_map(|o| &o.projections).any(|p| p.source == Source::Population(u))
}

/// One neuron sending to more cores than it may (TrueNorth: one).
fn check_neuron_fan_out(unit: &Unit<'_>, dest: &[u32], profile: &Profile, violations: &mut Vec<Violation>) {
    let Some(limit) = profile.max_destination_cores_per_neuron else { return };
    let over: Vec<u64> = dest.iter().map(|&d| d as u64).filter(|&d| d > limit).collect();
    if let Some(&worst) = over.iter().max() {
        let copies: u64 = over.iter().map(|d| d.div_ceil(limit) - 1).sum();
        violations.push(Violation {
            population: unit.name.clone(),
            limit: "destination cores per neuron".into(),
            limit_value: limit,
            value: worst,
            neurons: over.len(),
            suggestion: format!(
                "one {} neuron sends to at most {limit} core(s): copy each such neuron with splitter neurons ({copies} extra neurons, about {} more cores)",
                profile.chip,
                copies.div_ceil(profile.neurons_per_core)
            ),
        });
    }
}

/// Speck's rule: each core feeds at most `limit` other cores.
fn check_core_fan_out(
    units: &[Unit<'_>],
    placements: &[Placement],
    offsets: &[usize],
    unit_of_source: &dyn Fn(usize) -> Option<usize>,
    _total: usize,
    limit: u64,
    violations: &mut Vec<Violation>,
) {
    for u in 0..offsets.len() {
        let mut pairs: HashSet<(u32, usize, u32)> = HashSet::new();
        let mut consumers: HashSet<&str> = HashSet::new();
        for (c, consumer) in units.iter().enumerate().skip(u + 1) {
            if !reads(consumer, u) {
                continue;
            }
            for t in 0..consumer.neurons {
                for &s in &consumer.sources[consumer.ptr[t]..consumer.ptr[t + 1]] {
                    if unit_of_source(s as usize) == Some(u) {
                        let from = placements[u].core_of[s as usize - offsets[u]];
                        pairs.insert((from, c, placements[c].core_of[t]));
                        consumers.insert(&consumer.name);
                    }
                }
            }
        }
        let mut per_core = vec![0u64; placements[u].cores.max(1)];
        for &(from, _, _) in &pairs {
            per_core[from as usize] += 1;
        }
        let worst = per_core.iter().copied().max().unwrap_or(0);
        if worst > limit {
            let mut names: Vec<&str> = consumers.into_iter().collect();
            names.sort_unstable();
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

/// One population per core, best fit among free cores of possibly different sizes.
fn place_whole(units: &[Unit<'_>], profile: &Profile, violations: &mut Vec<Violation>) -> (Vec<Placement>, u64) {
    let per_chip = profile.cores_per_chip as usize;
    let mut free: Vec<bool> = Vec::new(); // over all chips opened so far
    let mut placements = vec![Placement::default(); units.len()];
    let mut order: Vec<usize> = (0..units.len()).collect();
    order.sort_by_key(|&u| std::cmp::Reverse(units[u].neurons as u64 * units[u].cost));
    let memory_of = |u: &Unit<'_>| match profile.memory_model {
        MemoryModel::PerStoredWeight => u.stored_weights,
        MemoryModel::PerSynapse => u.sources.len() as u64,
    };
    for u in order {
        let unit = &units[u];
        let neurons = unit.neurons as u64 * unit.cost;
        let memory = memory_of(unit);
        let fits = |k: usize| {
            neurons <= profile.core_neuron_capacity(k % per_chip)
                && memory <= profile.synapses_in(profile.core_memory_bytes(k % per_chip))
        };
        placements[u].core_of = vec![0; unit.neurons];
        if !(0..per_chip).any(fits) {
            let (limit, limit_value, value) = if neurons > profile.max_core_neurons() {
                ("neurons per core (one population per core)", profile.max_core_neurons(), neurons)
            } else {
                (
                    "synaptic memory per core (bytes, one population per core)",
                    profile.max_core_memory_bytes(),
                    memory * profile.bits_per_synapse / 8,
                )
            };
            violations.push(Violation {
                population: unit.name.clone(),
                limit: limit.into(),
                limit_value,
                value,
                neurons: unit.neurons,
                suggestion: format!(
                    "a population cannot be split over cores on the {}: shrink the layer (fewer channels or a smaller map){}",
                    profile.chip,
                    if limit.starts_with("synaptic") { ", or share weights (a convolution stores its kernel once)" } else { "" }
                ),
            });
            placements[u].cores = 1;
            continue;
        }
        let best = (0..free.len())
            .filter(|&k| free[k] && fits(k))
            .min_by_key(|&k| (profile.core_neuron_capacity(k % per_chip), profile.core_memory_bytes(k % per_chip), k));
        let k = match best {
            Some(k) => k,
            None => {
                let start = free.len();
                free.extend(std::iter::repeat_n(true, per_chip));
                (start..free.len())
                    .filter(|&k| fits(k))
                    .min_by_key(|&k| {
                        (profile.core_neuron_capacity(k % per_chip), profile.core_memory_bytes(k % per_chip), k)
                    })
                    .expect("a core of a fresh chip fits")
            }
        };
        free[k] = false;
        placements[u].cores = 1;
    }
    let chips = (free.len() / per_chip.max(1)).max(1) as u64;
    (placements, chips)
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
