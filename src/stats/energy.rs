//! Energy cost tables (the JSON files of `energy/`, built into the binary; a user may pass their
//! own) and the energy of counted operations.
//!
//! Conventions: E_ANN = E_MAC × MACs (+ E_elementwise × other ops); the usual SNN convention is
//! E_SNN = E_MAC × dense MACs + E_AC × synaptic events; signGD adds per-step drive additions,
//! nonlinearity evaluations and neuron updates, which the compute-only figure includes. The
//! memory-inclusive figure adds state and weight memory traffic.

use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::{AnnLayer, Counts};

/// The cost tables shipped in `energy/`, by name.
pub const PRESETS: [(&str, &str); 6] = [
    ("45nm-fp32", include_str!("../../energy/45nm-fp32.json")),
    ("45nm-fp16", include_str!("../../energy/45nm-fp16.json")),
    ("45nm-int8", include_str!("../../energy/45nm-int8.json")),
    ("loihi", include_str!("../../energy/loihi.json")),
    ("spinnaker", include_str!("../../energy/spinnaker.json")),
    ("spinnaker2", include_str!("../../energy/spinnaker2.json")),
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
}

#[derive(Deserialize)]
struct ModelFile {
    name: Option<String>,
    title: Option<String>,
    unit: Option<String>,
    costs: CostsFile,
    #[serde(default)]
    notes: Vec<String>,
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
        };
        for (name, cost) in costs.entries() {
            if !(cost.pj.is_finite() && cost.pj >= 0.0) {
                return Err(invalid(format!("costs.{name}: {} pJ is not a finite, non-negative energy", cost.pj)));
            }
        }
        Ok(EnergyModel {
            name: file.name.unwrap_or_else(|| fallback_name.to_string()),
            title: file.title.unwrap_or_default(),
            origin: origin.to_string(),
            costs,
            notes,
        })
    }

    /// The energy of SNN counts.
    pub fn snn(&self, counts: &Counts) -> Energy {
        let c = &self.costs;
        let convention = c.mac.pj * counts.dense_macs as f64 + c.ac.pj * counts.synaptic_events as f64;
        let compute = convention
            + c.drive_addition.pj * counts.drive_additions as f64
            + c.nonlinearity.pj * counts.nonlinearity_evaluations as f64
            + c.neuron_update.pj * counts.neuron_updates as f64;
        let memory = c.memory_read.pj * counts.memory_reads() as f64 + c.memory_write.pj * counts.state_writes as f64;
        Energy::new(convention, compute, memory)
    }

    /// The energy of an ANN layer (or total) for one inference.
    pub fn ann(&self, layer: &AnnLayer) -> Energy {
        let c = &self.costs;
        let convention = c.mac.pj * layer.macs as f64;
        let compute = convention + c.elementwise.pj * layer.elementwise_ops as f64;
        let memory = c.ann_memory_read.pj * (layer.weight_reads + layer.activation_reads) as f64
            + c.ann_memory_write.pj * layer.activation_writes as f64;
        Energy::new(convention, compute, memory)
    }

    /// The assumptions behind the figures, one sentence each (printed with every report).
    pub fn assumptions(&self) -> Vec<String> {
        let c = &self.costs;
        let mut out = vec![
            format!("cost model `{}` ({}), from {}", self.name, self.title, self.origin),
            "E_ANN (convention) = E_MAC × MACs; E_SNN (convention) = E_MAC × dense MACs + E_AC × synaptic events"
                .to_string(),
            format!(
                "compute-only adds for the SNN drive additions ({} pJ), nonlinearity evaluations ({} pJ) and neuron updates ({} pJ); for the ANN elementwise ops ({} pJ)",
                c.drive_addition.pj, c.nonlinearity.pj, c.neuron_update.pj, c.elementwise.pj
            ),
            format!(
                "memory-inclusive adds SNN state and weight words read ({} pJ) and written ({} pJ), ANN weight and activation words read ({} pJ) and written ({} pJ); accumulators are registers; no data reuse or caching is modelled",
                c.memory_read.pj, c.memory_write.pj, c.ann_memory_read.pj, c.ann_memory_write.pj
            ),
            "SNN figures are per input for the stated number of timesteps; the ANN figure is one forward pass".to_string(),
            "signGD populations update every neuron every step (dense drive); counts are exact, not estimated"
                .to_string(),
        ];
        out.extend(self.notes.iter().cloned());
        out
    }
}

impl Costs {
    /// Every entry by name.
    pub fn entries(&self) -> [(&'static str, &Cost); 10] {
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
    fn new(convention: f64, compute: f64, memory: f64) -> Self {
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
