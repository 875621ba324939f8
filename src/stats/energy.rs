//! Energy cost tables (the JSON files of `energy/`, built into the binary; a user may pass their
//! own) and the energy of counted operations.
//!
//! Formulas: E_ANN = E_MAC × MACs (+ E_elementwise × other ops); the usual SNN convention is
//! E_SNN = E_MAC × dense MACs + E_AC × synaptic events; signGD adds per-step drive additions,
//! nonlinearity evaluations and neuron updates, which the compute-only figure includes (and an
//! addressing cost per synaptic event when that convention is on). The memory-inclusive figure
//! adds state, constant and weight memory traffic.
//!
//! Where studies differ, the choice is a named setting ([`Conventions`]) with a default and one
//! alternative: the encoder layer charged once per input or every step, a product shared by
//! several receivers charged once or per receiver, addressing per synaptic event on or off, the
//! ANN's memory with per-layer reuse or without, and memory priced by level (each population's
//! and layer's weights and state in the smallest memory level that holds them, per bit of the
//! word moved) or flat (the table's `memory_read` per word).

use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{AnnLayer, Counts, PopulationInfo};

/// The cost tables shipped in `energy/`, by name.
pub const PRESETS: [(&str, &str); 8] = [
    ("45nm-fp32", include_str!("../../energy/45nm-fp32.json")),
    ("45nm-fp16", include_str!("../../energy/45nm-fp16.json")),
    ("45nm-int8", include_str!("../../energy/45nm-int8.json")),
    ("loihi", include_str!("../../energy/loihi.json")),
    ("loihi-routing", include_str!("../../energy/loihi-routing.json")),
    ("spinnaker", include_str!("../../energy/spinnaker.json")),
    ("spinnaker2", include_str!("../../energy/spinnaker2.json")),
    ("spinnaker2-2021", include_str!("../../energy/spinnaker2-2021.json")),
];

/// The preset used when none is chosen.
pub const DEFAULT_PRESET: &str = "45nm-fp32";

/// Why a cost table cannot be used.
#[derive(Debug, Error)]
pub enum EnergyError {
    /// The file could not be read.
    #[error("cannot read energy model {path}: {detail}")]
    Read {
        /// Path.
        path: String,
        /// What went wrong.
        detail: String,
    },
    /// The JSON does not describe a cost table.
    #[error("energy model {origin}: {detail}")]
    Invalid {
        /// Preset name or path.
        origin: String,
        /// What is wrong.
        detail: String,
    },
}

/// One cost with its source.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cost {
    /// Picojoules per operation.
    pub pj: f64,
    /// Where the figure comes from.
    pub source: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CostsFile {
    mac: Option<Cost>,
    ac: Option<Cost>,
    drive_addition: Option<Cost>,
    nonlinearity: Option<Cost>,
    neuron_update: Option<Cost>,
    elementwise: Option<Cost>,
    memory_read: Option<Cost>,
    memory_write: Option<Cost>,
    ann_memory_read: Option<Cost>,
    ann_memory_write: Option<Cost>,
    address: Option<Cost>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFile {
    name: Option<String>,
    title: Option<String>,
    unit: Option<String>,
    costs: CostsFile,
    memory: Option<Memory>,
    static_power: Option<StaticPower>,
    #[serde(default)]
    notes: Vec<String>,
}

/// One level of the memory hierarchy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryLevel {
    /// Its name (`8 KB SRAM`).
    pub name: String,
    /// The most bytes it holds (`None`: unbounded, the last level).
    pub max_bytes: Option<u64>,
    /// Picojoules per 64 bits read or written.
    pub pj_per_64_bits: f64,
    /// Where the figure comes from.
    pub source: String,
}

/// Memory priced by level: each population's and layer's weights and state live in the smallest
/// level that holds them, and each word access costs its level's energy per bit times the word's
/// bits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Memory {
    /// Bits of a weight, state or activation word (32 for fp32, 16 for fp16, 8 for int8).
    pub word_bits: u32,
    /// Why this word width.
    pub word_bits_source: String,
    /// Levels, smallest first; the last may be unbounded.
    pub levels: Vec<MemoryLevel>,
    /// When given: the SNN's memory traffic is part of the chip's per-operation figures, so it
    /// costs nothing on top (the text says why).
    #[serde(default)]
    pub snn_in_operations: Option<String>,
}

impl Memory {
    /// The smallest level holding `bytes` (the last level when none does).
    pub fn level_for(&self, bytes: u64) -> &MemoryLevel {
        self.levels
            .iter()
            .find(|l| l.max_bytes.is_none_or(|m| bytes <= m))
            .or(self.levels.last())
            .expect("a memory has at least one level")
    }

    /// Picojoules of one word access at `level`.
    pub fn word_pj(&self, level: &MemoryLevel) -> f64 {
        level.pj_per_64_bits * self.word_bits as f64 / 64.0
    }

    /// Bytes of `words` words.
    pub fn bytes(&self, words: u64) -> u64 {
        words * self.word_bits.div_ceil(8) as u64
    }
}

/// A chip's static (leakage) power, charged for the cores a network occupies while it runs:
/// cores used (from the feasibility mapping onto `target`) × `mw_per_core` × `us_per_step` × steps.
/// A separate term: the per-operation figures are dynamic energy only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticPower {
    /// The bundled hardware profile (`signgd feasibility --target`) whose mapping counts the cores.
    pub target: String,
    /// Leakage power of one core, in milliwatts.
    pub mw_per_core: f64,
    /// Where that figure comes from.
    pub mw_per_core_source: String,
    /// Wall-clock time of one timestep, in microseconds.
    pub us_per_step: f64,
    /// Where that figure comes from.
    pub us_per_step_source: String,
}

impl StaticPower {
    /// Picojoules leaked by `cores` cores over `steps` steps (1 mW × 1 µs = 1 nJ = 1,000 pJ).
    pub fn pj(&self, cores: u64, steps: u64) -> f64 {
        cores as f64 * self.mw_per_core * self.us_per_step * steps as f64 * 1000.0
    }
}

/// Every cost of a model, defaults resolved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Costs {
    /// Real-valued multiply-accumulate (SNN dense MACs, ANN MACs).
    pub mac: Cost,
    /// Accumulate of a binary spike (one synaptic event).
    pub ac: Cost,
    /// signGD charge of one operand of one neuron in one step.
    pub drive_addition: Cost,
    /// Spike function and update of one neuron in one step.
    pub nonlinearity: Cost,
    /// Fixed cost per neuron update.
    pub neuron_update: Cost,
    /// ANN elementwise operation.
    pub elementwise: Cost,
    /// SNN memory word read.
    pub memory_read: Cost,
    /// SNN memory word written.
    pub memory_write: Cost,
    /// ANN memory word read.
    pub ann_memory_read: Cost,
    /// ANN memory word written.
    pub ann_memory_write: Cost,
    /// Addressing of one synaptic event (charged when the addressing convention is on).
    #[serde(default = "zero_cost")]
    pub address: Cost,
}

fn zero_cost() -> Cost {
    Cost { pj: 0.0, source: "not given".into() }
}

/// A cost table: per-operation energies with their sources.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnergyModel {
    /// Short name (the preset name, or the file's `name`).
    pub name: String,
    /// What it models.
    pub title: String,
    /// Where it came from: `preset` or the file path.
    pub origin: String,
    /// The costs.
    pub costs: Costs,
    /// Memory levels (`None`: memory is priced flat, by `memory_read` and `memory_write`).
    #[serde(default)]
    pub memory: Option<Memory>,
    /// Static power (`None`: the table gives no cited figure, and no static term is shown).
    #[serde(default)]
    pub static_power: Option<StaticPower>,
    /// Notes of the file, then every default applied.
    pub notes: Vec<String>,
}

impl EnergyModel {
    /// The shipped preset `name`.
    pub fn preset(name: &str) -> Result<Self, EnergyError> {
        let (_, text) = PRESETS.iter().find(|(n, _)| *n == name).ok_or_else(|| EnergyError::Invalid {
            origin: name.into(),
            detail: format!(
                "no such preset; the presets are {} (or give a path to a JSON file)",
                PRESETS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ),
        })?;
        Self::parse(text, name, "preset")
    }

    /// A preset name, or else a path to a JSON cost table.
    pub fn load(spec: &str) -> Result<Self, EnergyError> {
        if PRESETS.iter().any(|(n, _)| *n == spec) {
            return Self::preset(spec);
        }
        let path = Path::new(spec);
        if !path.exists() && !spec.contains('/') && !spec.ends_with(".json") {
            return Self::preset(spec);
        }
        Self::from_file(path)
    }

    /// Reads a JSON cost table.
    pub fn from_file(path: &Path) -> Result<Self, EnergyError> {
        let meta = std::fs::metadata(path)
            .map_err(|e| EnergyError::Read { path: path.display().to_string(), detail: e.to_string() })?;
        if meta.len() > 1 << 20 {
            return Err(EnergyError::Read {
                path: path.display().to_string(),
                detail: format!("{} bytes is too large for a cost table", meta.len()),
            });
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| EnergyError::Read { path: path.display().to_string(), detail: e.to_string() })?;
        let fallback = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        Self::parse(&text, &fallback, &path.display().to_string())
    }

    /// Parses a cost table; `fallback_name` is used when the file has no `name`.
    pub fn parse(text: &str, fallback_name: &str, origin: &str) -> Result<Self, EnergyError> {
        let invalid = |detail: String| EnergyError::Invalid { origin: origin.into(), detail };
        let file: ModelFile = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if let Some(unit) = &file.unit {
            if unit != "pJ" {
                return Err(invalid(format!("unit `{unit}`: costs must be given in pJ")));
            }
        }
        let mut notes = file.notes.clone();
        let c = file.costs;
        let mac = c.mac.ok_or_else(|| invalid("costs.mac is missing (pJ per multiply-accumulate)".into()))?;
        let ac = c.ac.ok_or_else(|| invalid("costs.ac is missing (pJ per synaptic event)".into()))?;
        let mut default = |entry: Option<Cost>, name: &str, from: &Cost, what: &str| -> Cost {
            entry.unwrap_or_else(|| {
                notes.push(format!("{name} not given: {what}"));
                Cost { pj: from.pj, source: format!("default: {what}") }
            })
        };
        let zero = Cost { pj: 0.0, source: String::new() };
        let drive_addition = default(c.drive_addition, "drive_addition", &ac, "priced as one ac");
        let nonlinearity = default(c.nonlinearity, "nonlinearity", &mac, "priced as one mac");
        let neuron_update = default(c.neuron_update, "neuron_update", &zero, "no fixed cost per neuron update");
        let elementwise = default(c.elementwise, "elementwise", &ac, "ANN elementwise op priced as one ac");
        let memory_read = default(c.memory_read, "memory_read", &zero, "memory reads cost nothing");
        let memory_write = default(c.memory_write, "memory_write", &memory_read, "priced as a memory_read");
        let ann_memory_read =
            default(c.ann_memory_read, "ann_memory_read", &memory_read, "ANN reads priced as memory_read");
        let ann_memory_write =
            default(c.ann_memory_write, "ann_memory_write", &memory_write, "ANN writes priced as memory_write");
        let address = default(c.address, "address", &zero, "addressing a synaptic event costs nothing");
        let costs = Costs {
            mac,
            ac,
            drive_addition,
            nonlinearity,
            neuron_update,
            elementwise,
            memory_read,
            memory_write,
            ann_memory_read,
            ann_memory_write,
            address,
        };
        for (name, cost) in costs.entries() {
            if !(cost.pj.is_finite() && cost.pj >= 0.0) {
                return Err(invalid(format!("costs.{name}: {} pJ is not a finite, non-negative energy", cost.pj)));
            }
        }
        if let Some(memory) = &file.memory {
            if !(1..=1024).contains(&memory.word_bits) {
                return Err(invalid(format!("memory.word_bits: {} is not a word width", memory.word_bits)));
            }
            if memory.levels.is_empty() {
                return Err(invalid("memory.levels is empty: give at least one level".into()));
            }
            let mut previous = 0u64;
            for (i, level) in memory.levels.iter().enumerate() {
                if !(level.pj_per_64_bits.is_finite() && level.pj_per_64_bits >= 0.0) {
                    return Err(invalid(format!(
                        "memory.levels[{i}] ({}): {} pJ is not a finite, non-negative energy",
                        level.name, level.pj_per_64_bits
                    )));
                }
                match level.max_bytes {
                    Some(m) if m <= previous && i > 0 => {
                        return Err(invalid(format!(
                            "memory.levels[{i}] ({}): levels must grow, smallest first",
                            level.name
                        )))
                    }
                    Some(m) => previous = m,
                    None if i + 1 < memory.levels.len() => {
                        return Err(invalid(format!(
                            "memory.levels[{i}] ({}): only the last level may be unbounded",
                            level.name
                        )))
                    }
                    None => {}
                }
            }
        } else {
            notes.push(
                "no memory levels given: memory is priced flat (memory_read per word) under every convention".into(),
            );
        }
        if let Some(s) = &file.static_power {
            if !crate::feasibility::profile::BUNDLED.iter().any(|(name, _)| *name == s.target) {
                let targets: Vec<&str> = crate::feasibility::profile::BUNDLED.iter().map(|(n, _)| *n).collect();
                return Err(invalid(format!(
                    "static_power.target: `{}` is not a bundled hardware profile; choose one of {}",
                    s.target,
                    targets.join(", ")
                )));
            }
            for (field, value) in [("mw_per_core", s.mw_per_core), ("us_per_step", s.us_per_step)] {
                if !(value.is_finite() && value > 0.0) {
                    return Err(invalid(format!("static_power.{field}: {value} is not a finite, positive figure")));
                }
            }
            for (field, source) in
                [("mw_per_core_source", &s.mw_per_core_source), ("us_per_step_source", &s.us_per_step_source)]
            {
                if source.trim().is_empty() {
                    return Err(invalid(format!("static_power.{field} is empty: say where the figure comes from")));
                }
            }
        }
        Ok(EnergyModel {
            name: file.name.unwrap_or_else(|| fallback_name.to_string()),
            title: file.title.unwrap_or_default(),
            origin: origin.to_string(),
            costs,
            memory: file.memory,
            static_power: file.static_power,
            notes,
        })
    }

    /// The energy of SNN counts as counted: the encoder's MACs every step, shared products per
    /// receiver, no addressing cost, memory priced flat per word.
    pub fn snn(&self, counts: &Counts) -> Energy {
        self.snn_counts(counts, 1, &Conventions::AS_COUNTED, None)
    }

    /// The energy of one population's (or the readout's) counts after `steps` steps under
    /// `conventions`; memory priced by level places the population's weights and state by their
    /// size.
    pub fn snn_with(&self, info: &PopulationInfo, counts: &Counts, steps: u64, conventions: &Conventions) -> Energy {
        let levels = match (conventions.memory, &self.memory) {
            (MemoryPricing::Levels, Some(memory)) => {
                let weights = memory.level_for(memory.bytes(info.stored_weights));
                let state = memory.level_for(memory.bytes(info.state_words));
                Some((memory.word_pj(weights), memory.word_pj(state)))
            }
            _ => None,
        };
        self.snn_counts(counts, steps, conventions, levels)
    }

    /// `levels`: picojoules per weight word and per state word (None: flat).
    fn snn_counts(&self, counts: &Counts, steps: u64, conventions: &Conventions, levels: Option<(f64, f64)>) -> Energy {
        let c = &self.costs;
        let n = |x: u64| x as f64;
        let encoder_every = n(counts.encoder_macs);
        let encoder = match conventions.encoder {
            EncoderCharge::EveryStep => encoder_every,
            EncoderCharge::Once => encoder_every / steps.max(1) as f64,
        };
        let saved = encoder_every - encoder;
        let (shared_events, shared_macs) = match conventions.shared {
            SharedCharge::PerReceiver => (0.0, 0.0),
            SharedCharge::Once => (n(counts.shared_events), n(counts.shared_macs)),
        };
        let dense = n(counts.dense_macs) - saved - shared_macs;
        let events = n(counts.synaptic_events) - shared_events;
        let weight_reads = n(counts.weight_reads) - saved - shared_events - shared_macs;
        let state_reads = n(counts.state_reads) - saved - shared_macs;
        let convention = c.mac.pj * dense + c.ac.pj * events;
        let addressing = match conventions.addressing {
            Addressing::On => c.address.pj * events,
            Addressing::Off => 0.0,
        };
        let compute = convention
            + addressing
            + c.drive_addition.pj * n(counts.drive_additions)
            + c.nonlinearity.pj * n(counts.nonlinearity_evaluations)
            + c.neuron_update.pj * n(counts.neuron_updates);
        let state = state_reads + n(counts.constant_reads);
        let memory = if self.memory.as_ref().is_some_and(|m| m.snn_in_operations.is_some()) {
            0.0
        } else {
            match levels {
                Some((weight_pj, state_pj)) => weight_pj * weight_reads + state_pj * (state + n(counts.state_writes)),
                None => c.memory_read.pj * (weight_reads + state) + c.memory_write.pj * n(counts.state_writes),
            }
        };
        Energy::new(convention, compute, memory)
    }

    /// The energy of an ANN layer (or total) for one inference as counted before conventions: no
    /// reuse (a weight and an activation read per MAC), memory priced flat.
    pub fn ann(&self, layer: &AnnLayer) -> Energy {
        self.ann_with(layer, &Conventions::AS_COUNTED)
    }

    /// The energy of an ANN layer for one inference under `conventions`. Memory priced by level
    /// places the layer's weights and its activations by their size (for a sum of layers, by the
    /// sums: price totals as sums of layers instead).
    pub fn ann_with(&self, layer: &AnnLayer, conventions: &Conventions) -> Energy {
        let c = &self.costs;
        let convention = c.mac.pj * layer.macs as f64;
        let compute = convention + c.elementwise.pj * layer.elementwise_ops as f64;
        let (weight_reads, activation_reads) = match conventions.ann_memory {
            AnnMemory::Reuse => (layer.reuse_weight_reads, layer.reuse_activation_reads),
            AnnMemory::NoReuse => (layer.weight_reads, layer.activation_reads),
        };
        let (w, a, writes) = (weight_reads as f64, activation_reads as f64, layer.activation_writes as f64);
        let memory = match (conventions.memory, &self.memory) {
            (MemoryPricing::Levels, Some(memory)) => {
                let weights = memory.word_pj(memory.level_for(memory.bytes(layer.weights)));
                let activations = memory.word_pj(memory.level_for(memory.bytes(layer.activations)));
                weights * w + activations * (a + writes)
            }
            _ => c.ann_memory_read.pj * (w + a) + c.ann_memory_write.pj * writes,
        };
        Energy::new(convention, compute, memory)
    }

    /// The memory level names a population's weights and state are placed in (None: flat).
    pub fn placement(&self, weight_words: u64, state_words: u64) -> Option<(String, String)> {
        let m = self.memory.as_ref()?;
        Some((m.level_for(m.bytes(weight_words)).name.clone(), m.level_for(m.bytes(state_words)).name.clone()))
    }

    /// The assumptions behind the figures, one sentence each (printed with every report).
    pub fn assumptions(&self, conventions: &Conventions) -> Vec<String> {
        let c = &self.costs;
        let mut out = vec![
            format!("cost model `{}` ({}), from {}", self.name, self.title, self.origin),
            "E_ANN (convention) = E_MAC × MACs; E_SNN (convention) = E_MAC × dense MACs + E_AC × synaptic events"
                .to_string(),
            format!(
                "compute-only adds for the SNN drive additions ({} pJ), nonlinearity evaluations ({} pJ), neuron updates ({} pJ) and, with addressing on, one address computation per synaptic event ({} pJ); for the ANN elementwise ops ({} pJ)",
                c.drive_addition.pj, c.nonlinearity.pj, c.neuron_update.pj, c.address.pj, c.elementwise.pj
            ),
        ];
        for row in conventions.describe() {
            out.push(format!(
                "{}: {} — {} (default {}; alternative {} with `{}`)",
                row.name, row.setting, row.meaning, row.default, row.alternative, row.flag
            ));
        }
        let snn_in_operations = self.memory.as_ref().and_then(|m| m.snn_in_operations.clone());
        match (conventions.memory, &self.memory) {
            (MemoryPricing::Levels, Some(m)) => {
                let levels: Vec<String> = m
                    .levels
                    .iter()
                    .map(|l| match l.max_bytes {
                        Some(b) => format!("{} (up to {} B, {} pJ per 64 bits)", l.name, b, l.pj_per_64_bits),
                        None => format!("{} ({} pJ per 64 bits)", l.name, l.pj_per_64_bits),
                    })
                    .collect();
                out.push(format!(
                    "memory by level: each population's (and ANN layer's) weights and state (activations) sit in the smallest level that holds them: {}; a {}-bit word access costs the level's energy × {}/64; writes cost as reads",
                    levels.join(", "),
                    m.word_bits,
                    m.word_bits
                ));
            }
            _ => out.push(format!(
                "memory flat: SNN words read {} pJ, written {} pJ; ANN words read {} pJ, written {} pJ, whatever the word width and memory size",
                c.memory_read.pj, c.memory_write.pj, c.ann_memory_read.pj, c.ann_memory_write.pj
            )),
        }
        if let Some(why) = snn_in_operations {
            out.push(format!("SNN memory traffic costs nothing on top of the per-operation figures: {why}"));
        }
        out.extend([
            "SNN memory: a neuron update reads and writes its operand estimates and v and reads the constants c and o of each operand; a dense MAC reads a real value and a weight; a synaptic event reads a weight; accumulators are registers".to_string(),
            "ANN memory with reuse: each weight and each input activation read once per layer, each output written once; without reuse: one weight and one activation read per MAC (one per operand of an elementwise op); convolution MACs on zero padding are not counted".to_string(),
            "SNN figures are per input for the stated number of timesteps; the ANN figure is one forward pass".to_string(),
            "signGD populations update every neuron every step (dense drive); counts are exact, not estimated".to_string(),
        ]);
        out.push(match &self.static_power {
            Some(s) => format!(
                "static (leakage) power is a separate term, not in the figures above: cores used on `{}` (its feasibility mapping) × {} mW per core × {} µs per step × steps; the ANN has none",
                s.target, s.mw_per_core, s.us_per_step
            ),
            None => "no static (leakage) power is modelled: every figure is dynamic energy per operation (the table gives no cited static figure)".to_string(),
        });
        out.extend(self.notes.iter().cloned());
        out
    }
}

/// How the encoder layer (the synapses from a real-valued encoder) is charged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EncoderCharge {
    /// Once per input: `A x` is computed once (as the engine does, Spikformer's convention).
    #[default]
    Once,
    /// Every step, as dense MACs on the encoder's real-valued output.
    EveryStep,
}

/// How a product that several operands receive (the same block from the same source) is charged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SharedCharge {
    /// Each receiver pays (two synapse sets in hardware).
    #[default]
    PerReceiver,
    /// Paid once per step (a shared dendrite; as the engine computes it).
    Once,
}

/// Whether each synaptic event also pays an address computation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Addressing {
    /// One address computation per synaptic event (`address` cost).
    #[default]
    On,
    /// None.
    Off,
}

/// How the ANN's memory traffic is counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnnMemory {
    /// Each weight and input activation read once per layer (a lower bound).
    #[default]
    Reuse,
    /// One weight and one activation read per MAC (an upper bound).
    NoReuse,
}

/// How memory accesses are priced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemoryPricing {
    /// By memory level and word width (the model's `memory` section).
    #[default]
    Levels,
    /// The model's `memory_read` / `memory_write` per word, whatever the size.
    Flat,
}

/// Every choice on which energy studies differ, with its setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Conventions {
    /// The encoder layer.
    pub encoder: EncoderCharge,
    /// Shared products.
    pub shared: SharedCharge,
    /// Addressing per synaptic event.
    pub addressing: Addressing,
    /// ANN memory reuse.
    pub ann_memory: AnnMemory,
    /// Memory pricing.
    pub memory: MemoryPricing,
}

/// One convention as the report states it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConventionRow {
    /// Its name.
    pub name: String,
    /// The setting used.
    pub setting: String,
    /// The default.
    pub default: String,
    /// The other choice.
    pub alternative: String,
    /// The flag that selects it.
    pub flag: String,
    /// What the setting used means.
    pub meaning: String,
}

impl Conventions {
    /// Every count charged as the engine counted it (the figures before conventions existed).
    pub const AS_COUNTED: Conventions = Conventions {
        encoder: EncoderCharge::EveryStep,
        shared: SharedCharge::PerReceiver,
        addressing: Addressing::Off,
        ann_memory: AnnMemory::NoReuse,
        memory: MemoryPricing::Flat,
    };

    /// Every combination of settings (32): the alternatives a range spans.
    pub fn all() -> Vec<Conventions> {
        let mut out = Vec::new();
        for encoder in [EncoderCharge::Once, EncoderCharge::EveryStep] {
            for shared in [SharedCharge::PerReceiver, SharedCharge::Once] {
                for addressing in [Addressing::On, Addressing::Off] {
                    for ann_memory in [AnnMemory::Reuse, AnnMemory::NoReuse] {
                        for memory in [MemoryPricing::Levels, MemoryPricing::Flat] {
                            out.push(Conventions { encoder, shared, addressing, ann_memory, memory });
                        }
                    }
                }
            }
        }
        out
    }

    /// Each setting with its default, alternative, flag and meaning.
    pub fn describe(&self) -> Vec<ConventionRow> {
        let row =
            |name: &str, setting: &str, default: &str, alternative: &str, flag: &str, meaning: &str| ConventionRow {
                name: name.into(),
                setting: setting.into(),
                default: default.into(),
                alternative: alternative.into(),
                flag: flag.into(),
                meaning: meaning.into(),
            };
        let other = |setting: &str, a: &str, b: &str| if setting == a { b.to_string() } else { a.to_string() };
        let mut rows = Vec::new();
        let (s, meaning) = match self.encoder {
            EncoderCharge::Once => ("once", "the encoder layer's synapses are charged once per input (A·x, as the engine computes it; Spikformer's convention)"),
            EncoderCharge::EveryStep => ("every-step", "the encoder layer's synapses are charged as dense MACs at every step"),
        };
        rows.push(row(
            "encoder layer",
            s,
            "once",
            &other(s, "once", "every-step"),
            &format!("--energy-encoder {}", other(s, "once", "every-step")),
            meaning,
        ));
        let (s, meaning) = match self.shared {
            SharedCharge::PerReceiver => ("per-receiver", "a product several operands receive (same block, same source) is charged to each receiver: two synapse sets"),
            SharedCharge::Once => ("once", "a product several operands receive is charged once per step: one shared dendrite"),
        };
        rows.push(row(
            "shared products",
            s,
            "per-receiver",
            &other(s, "per-receiver", "once"),
            &format!("--energy-shared {}", other(s, "per-receiver", "once")),
            meaning,
        ));
        let (s, meaning) = match self.addressing {
            Addressing::On => ("on", "each synaptic event also pays one address computation (Lemaire et al.'s model)"),
            Addressing::Off => ("off", "synaptic events pay no address computation"),
        };
        rows.push(row(
            "addressing",
            s,
            "on",
            &other(s, "on", "off"),
            &format!("--energy-addressing {}", other(s, "on", "off")),
            meaning,
        ));
        let (s, meaning) = match self.ann_memory {
            AnnMemory::Reuse => (
                "reuse",
                "the ANN reads each weight and input activation once per layer (a lower bound on its memory traffic)",
            ),
            AnnMemory::NoReuse => (
                "no-reuse",
                "the ANN reads one weight and one activation per MAC (an upper bound on its memory traffic)",
            ),
        };
        rows.push(row(
            "ANN memory",
            s,
            "reuse",
            &other(s, "reuse", "no-reuse"),
            &format!("--energy-ann-memory {}", other(s, "reuse", "no-reuse")),
            meaning,
        ));
        let (s, meaning) = match self.memory {
            MemoryPricing::Levels => ("levels", "memory priced by level (smallest SRAM that holds the weights or state, else DRAM) per bit of the word moved"),
            MemoryPricing::Flat => ("flat", "every word access priced at the table's memory_read / memory_write, whatever its width and memory size"),
        };
        rows.push(row(
            "memory pricing",
            s,
            "levels",
            &other(s, "levels", "flat"),
            &format!("--energy-memory {}", other(s, "levels", "flat")),
            meaning,
        ));
        rows
    }
}

impl Costs {
    /// Every entry by name.
    pub fn entries(&self) -> [(&'static str, &Cost); 11] {
        [
            ("mac", &self.mac),
            ("ac", &self.ac),
            ("drive_addition", &self.drive_addition),
            ("nonlinearity", &self.nonlinearity),
            ("neuron_update", &self.neuron_update),
            ("elementwise", &self.elementwise),
            ("memory_read", &self.memory_read),
            ("memory_write", &self.memory_write),
            ("ann_memory_read", &self.ann_memory_read),
            ("ann_memory_write", &self.ann_memory_write),
            ("address", &self.address),
        ]
    }
}

/// Energy in picojoules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Energy {
    /// The usual SNN-paper convention (MACs and synaptic events only).
    pub convention_pj: f64,
    /// Every counted operation, without memory.
    pub compute_pj: f64,
    /// Memory traffic only.
    pub memory_pj: f64,
    /// Compute plus memory.
    pub memory_inclusive_pj: f64,
}

impl Energy {
    /// From the convention, compute-only and memory parts.
    pub fn new(convention: f64, compute: f64, memory: f64) -> Self {
        Energy {
            convention_pj: convention,
            compute_pj: compute,
            memory_pj: memory,
            memory_inclusive_pj: compute + memory,
        }
    }

    /// Divided by `n`.
    pub fn scaled(&self, factor: f64) -> Self {
        Energy::new(self.convention_pj * factor, self.compute_pj * factor, self.memory_pj * factor)
    }

    /// Sum.
    pub fn add(&self, o: &Energy) -> Self {
        Energy::new(self.convention_pj + o.convention_pj, self.compute_pj + o.compute_pj, self.memory_pj + o.memory_pj)
    }
}

/// A human-readable energy: `12.3 µJ`.
pub fn format_pj(pj: f64) -> String {
    let units = [(1e12, "J"), (1e9, "mJ"), (1e6, "µJ"), (1e3, "nJ"), (1.0, "pJ")];
    for (scale, unit) in units {
        if pj.abs() >= scale {
            return format!("{:.3} {unit}", pj / scale);
        }
    }
    format!("{pj:.3} pJ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_load_with_sources() {
        for (name, _) in PRESETS {
            let m = EnergyModel::preset(name).unwrap();
            assert_eq!(m.name, name);
            for (entry, cost) in m.costs.entries() {
                assert!(!cost.source.is_empty(), "{name}.{entry} has no source");
            }
        }
        assert!(EnergyModel::load("nonsense").is_err());
    }

    #[test]
    fn defaults_are_noted() {
        let m = EnergyModel::parse(
            r#"{"costs": {"mac": {"pj": 2, "source": "x"}, "ac": {"pj": 1, "source": "y"}}}"#,
            "mine",
            "test",
        )
        .unwrap();
        assert_eq!(m.costs.drive_addition.pj, 1.0);
        assert_eq!(m.costs.nonlinearity.pj, 2.0);
        assert!(m.notes.iter().any(|n| n.contains("drive_addition")));
        assert!(EnergyModel::parse(
            r#"{"costs": {"mac": {"pj": -2, "source": "x"}, "ac": {"pj": 1, "source": "y"}}}"#,
            "m",
            "t"
        )
        .is_err());
        assert!(EnergyModel::parse(r#"{"costs": {"ac": {"pj": 1, "source": "y"}}}"#, "m", "t").is_err());
    }
}
