//! Reports a person can read: `report.json` (with a schema version), `populations.csv`,
//! `accuracy.csv`, `layers.csv` (SNN and ANN figures per ANN node), `report.md` and a
//! self-contained `report.html` with inline SVG charts.
//! Everything here reads observations; nothing simulates.
//!
//! A report directory is written atomically: every file goes into a temporary sibling directory
//! that is renamed to the target only when complete.

pub mod html;
pub mod svg;

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::Counters;
use crate::model::Graph;
use crate::snn::Network;
use crate::stats::energy::{format_pj, ConventionRow, Conventions, EncoderCharge, Energy, EnergyModel, PRESETS};
use crate::stats::observe::{ErrorTrace, Raster};
use crate::stats::significance::{Interval, McNemar};
use crate::stats::static_power::StaticEnergy;
use crate::stats::{self, AnnLayer, Counts, CountsPerInput, PopulationInfo};

/// Version of the layout of `report.json`. Version 2 added the energy conventions, ranges,
/// energy against T and break-even timesteps, and changed the default ANN memory figure to
/// per-layer reuse; version 1 reports are still read (the new fields empty).
pub const SCHEMA_VERSION: u32 = 2;

/// The files of a report directory.
pub const FILES: [&str; 6] =
    ["report.json", "populations.csv", "accuracy.csv", "layers.csv", "report.md", "report.html"];

/// The files a shard's report directory holds besides [`FILES`]: what merging the shards needs.
pub const SHARD_FILES: [&str; 3] = ["shard.json", "ann.npy", "snn.npy"];

/// Accuracy at one checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccuracyRow {
    /// Timesteps.
    pub timesteps: usize,
    /// Fraction of inputs the SNN classifies correctly (None without labels).
    pub snn_accuracy: Option<f64>,
    /// Fraction of inputs where SNN and ANN predict the same class.
    pub agreement: f64,
    /// Mean |SNN output − ANN output| over all outputs (None when not finite).
    pub mean_abs_diff: Option<f64>,
    /// 95 % Wilson interval of the SNN's accuracy (None without labels).
    #[serde(default)]
    pub snn_accuracy_ci95: Option<Interval>,
    /// McNemar's exact test of the SNN (first) against the ANN (second) on the same inputs
    /// (None without labels).
    #[serde(default)]
    pub mcnemar_vs_ann: Option<McNemar>,
}

/// Accuracy of both networks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    /// The ANN's accuracy (None without labels).
    pub ann: Option<f64>,
    /// 95 % Wilson interval of the ANN's accuracy (None without labels).
    #[serde(default)]
    pub ann_ci95: Option<Interval>,
    /// The SNN at every checkpoint.
    pub checkpoints: Vec<AccuracyRow>,
}

/// Counts of one population (or all) at one checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointCounts {
    /// Timesteps.
    pub timesteps: usize,
    /// Summed over the inputs.
    pub total: Counts,
    /// Averaged over the inputs.
    pub per_input: CountsPerInput,
    /// Spikes per neuron per step (None without neurons).
    pub firing_rate: Option<f64>,
    /// Energy per input under the report's cost model.
    pub energy_per_input: Energy,
}

/// One population's structure and counts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PopulationReport {
    /// Structure.
    #[serde(flatten)]
    pub info: PopulationInfo,
    /// The ANN node whose activation this population computes (or helps compute).
    #[serde(default)]
    pub ann_node: Option<String>,
    /// Memory levels its weights and its state are placed in (None: memory priced flat).
    #[serde(default)]
    pub memory_levels: Option<MemoryLevels>,
    /// Per checkpoint.
    pub checkpoints: Vec<CheckpointCounts>,
}

/// Where a population's or a layer's words live.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryLevels {
    /// The level of its weights.
    pub weights: String,
    /// The level of its state (for an ANN layer: its activations).
    pub state: String,
}

/// One ANN layer with its energy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnnLayerReport {
    /// Operation counts for one inference.
    #[serde(flatten)]
    pub layer: AnnLayer,
    /// Energy of one inference.
    pub energy: Energy,
    /// Memory levels of its weights and activations (None: memory priced flat).
    #[serde(default)]
    pub memory_levels: Option<MemoryLevels>,
}

/// The ANN side.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnnReport {
    /// Layers in evaluation order.
    pub layers: Vec<AnnLayerReport>,
    /// Their sum.
    pub total: AnnLayerReport,
}

/// SNN against ANN at one checkpoint, per input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnergyRow {
    /// Timesteps.
    pub timesteps: usize,
    /// SNN energy per input.
    pub snn: Energy,
    /// ANN energy per input.
    pub ann: Energy,
    /// SNN / ANN, compute-only.
    pub ratio_compute: Option<f64>,
    /// SNN / ANN, memory-inclusive.
    pub ratio_memory_inclusive: Option<f64>,
    /// SNN energy per step added since the previous checkpoint (since T = 0, after the part
    /// charged once per input, for the first).
    #[serde(default)]
    pub marginal_per_step: Energy,
    /// Every figure's range over the documented alternatives.
    #[serde(default)]
    pub range: Option<Ranges>,
}

/// Smallest and largest value of a figure over every combination of conventions
/// ([`Conventions::all`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Span {
    fn of(values: impl Iterator<Item = f64>) -> Option<Span> {
        values.filter(|v| v.is_finite()).fold(None, |acc: Option<Span>, v| match acc {
            None => Some(Span { min: v, max: v }),
            Some(s) => Some(Span { min: s.min.min(v), max: s.max.max(v) }),
        })
    }
}

/// Ranges of one comparison over the alternatives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ranges {
    /// SNN compute-only energy per input.
    pub snn_compute_pj: Option<Span>,
    /// SNN memory-inclusive energy per input.
    pub snn_memory_inclusive_pj: Option<Span>,
    /// ANN compute-only energy per inference.
    pub ann_compute_pj: Option<Span>,
    /// ANN memory-inclusive energy per inference.
    pub ann_memory_inclusive_pj: Option<Span>,
    /// SNN / ANN, compute-only.
    pub ratio_compute: Option<Span>,
    /// SNN / ANN, memory-inclusive.
    pub ratio_memory_inclusive: Option<Span>,
}

/// Where the SNN's cumulative energy first reaches the ANN's energy per inference.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BreakEvenPoint {
    /// The first checkpoint at which SNN ≥ ANN.
    pub timesteps: usize,
    /// The checkpoint before it, where SNN < ANN (0: before the first step).
    pub previous_checkpoint: usize,
    /// Whether the two are consecutive steps (then `timesteps` is exact).
    pub exact: bool,
    /// Linear interpolation between the two checkpoints: the fractional step of break-even.
    pub interpolated: f64,
}

/// Break-even timesteps against the ANN (None: the SNN stays below the ANN up to the last
/// checkpoint, or there is no checkpoint).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BreakEven {
    /// Compute-only.
    pub compute: Option<BreakEvenPoint>,
    /// Memory-inclusive.
    pub memory_inclusive: Option<BreakEvenPoint>,
}

/// The first checkpoint whose accuracy is within one point of the ANN's, with its energy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccuracyMatch {
    /// Timesteps.
    pub timesteps: usize,
    /// SNN accuracy there.
    pub snn_accuracy: f64,
    /// ANN accuracy.
    pub ann_accuracy: f64,
    /// The comparison at that checkpoint.
    pub energy: EnergyRow,
}

/// The ANN's energy per inference with and without per-layer reuse (both bounds shown).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AnnMemoryBounds {
    /// Each weight and input activation read once per layer: the lower bound.
    pub reuse: Energy,
    /// One weight and one activation read per MAC: the upper bound.
    pub no_reuse: Energy,
}

/// The same comparison under another cost model (at the last checkpoint).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PresetRow {
    /// Preset name.
    pub name: String,
    /// Its title.
    pub title: String,
    /// SNN energy per input.
    pub snn: Energy,
    /// ANN energy per input.
    pub ann: Energy,
}

/// Energy estimates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnergyReport {
    /// The cost model with every entry's source.
    pub model: EnergyModel,
    /// The conventions the figures use.
    #[serde(default)]
    pub conventions: Conventions,
    /// Each convention with its default, its alternative and the flag that selects it.
    #[serde(default)]
    pub convention_table: Vec<ConventionRow>,
    /// The assumptions behind the figures.
    pub assumptions: Vec<String>,
    /// SNN energy per input charged once whatever T (the encoder layer under `once`).
    #[serde(default)]
    pub once_per_input: Energy,
    /// SNN against ANN per checkpoint.
    pub checkpoints: Vec<EnergyRow>,
    /// The ANN with and without per-layer memory reuse (the other conventions as chosen).
    #[serde(default)]
    pub ann_memory_bounds: AnnMemoryBounds,
    /// The timesteps at which the SNN's energy reaches the ANN's.
    #[serde(default)]
    pub break_even_timestep: BreakEven,
    /// The first checkpoint within one accuracy point of the ANN (None without labels or when
    /// no checkpoint gets there).
    #[serde(default)]
    pub at_ann_accuracy: Option<AccuracyMatch>,
    /// Every shipped preset at the last checkpoint.
    pub presets: Vec<PresetRow>,
    /// The chip's static (leakage) energy, a separate term (None: the cost model gives no cited
    /// static figure).
    #[serde(default)]
    pub static_power: Option<StaticEnergy>,
}

/// One input's simulation seen up close.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Index of the input in the data set.
    pub input: usize,
    /// Spike raster of one population.
    pub raster: Raster,
    /// Mean |SNN estimate − ANN value| per population with neurons, per step.
    pub errors: Vec<ErrorTrace>,
}

/// Everything `report.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportData {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Program and version that wrote the report.
    pub generator: String,
    /// The run: model, data, settings, timings (free-form).
    pub run: serde_json::Value,
    /// Inputs simulated.
    pub inputs: u64,
    /// Checkpoints (timesteps).
    pub checkpoints: Vec<usize>,
    /// Accuracy.
    pub accuracy: Accuracy,
    /// Per population (the readout last), per checkpoint.
    pub populations: Vec<PopulationReport>,
    /// Sum over populations per checkpoint.
    pub totals: Vec<CheckpointCounts>,
    /// The ANN's operations and energy per inference.
    pub ann: AnnReport,
    /// Energy estimates.
    pub energy: EnergyReport,
    /// One input up close.
    pub observation: Option<Observation>,
}

/// What a report is built from.
pub struct Sources<'a> {
    /// Free-form description of the run.
    pub run: serde_json::Value,
    /// The spiking network.
    pub network: &'a Network,
    /// The engine's counters summed over the inputs.
    pub counters: &'a Counters,
    /// Checkpoints of the counters.
    pub checkpoints: &'a [usize],
    /// Inputs simulated.
    pub inputs: u64,
    /// The ANN that was evaluated (for MACs per layer).
    pub ann_graph: &'a Graph,
    /// Accuracy.
    pub accuracy: Accuracy,
    /// The cost model.
    pub energy_model: EnergyModel,
    /// The energy conventions.
    pub conventions: Conventions,
    /// One input up close.
    pub observation: Option<Observation>,
}

impl ReportData {
    /// Derives every statistic and energy figure.
    pub fn build(s: Sources<'_>) -> Self {
        let infos = stats::population_infos(s.network);
        let counts = stats::derive_all(&infos, s.counters, s.checkpoints, s.inputs);
        let model = s.energy_model;
        let conventions = s.conventions;
        let per_input = 1.0 / s.inputs.max(1) as f64;
        let inputs = s.inputs;
        let steps_of = |k: usize| s.checkpoints[k] as u64;
        // Energy per input of population p at checkpoint k.
        let population_energy = |m: &EnergyModel, conv: &Conventions, k: usize, p: usize| {
            m.snn_with(&infos[p], &counts[k][p], steps_of(k), conv).scaled(per_input)
        };
        let snn_total = |m: &EnergyModel, conv: &Conventions, k: usize| {
            (0..infos.len()).fold(Energy::default(), |acc, p| acc.add(&population_energy(m, conv, k, p)))
        };
        let firing = |info: Option<&PopulationInfo>, c: &Counts, steps: usize| match info {
            Some(info) => stats::firing_rate(info, c, steps as u64, inputs),
            None => {
                let neurons: u64 = infos.iter().filter(|i| i.has_neurons()).map(|i| i.neurons).sum();
                let slots = neurons * steps as u64 * inputs;
                (slots > 0).then(|| c.spikes as f64 / slots as f64)
            }
        };
        let graph = s.ann_graph;
        let populations = infos
            .iter()
            .enumerate()
            .map(|(p, info)| PopulationReport {
                info: info.clone(),
                ann_node: ann_node_of(&info.name, graph),
                memory_levels: levels(&model, &conventions, info.stored_weights, info.state_words),
                checkpoints: s
                    .checkpoints
                    .iter()
                    .enumerate()
                    .map(|(k, &steps)| {
                        let c = &counts[k][p];
                        CheckpointCounts {
                            timesteps: steps,
                            total: *c,
                            per_input: c.per_input(inputs),
                            firing_rate: firing(Some(info), c, steps),
                            energy_per_input: population_energy(&model, &conventions, k, p),
                        }
                    })
                    .collect(),
            })
            .collect();
        let totals: Vec<CheckpointCounts> = s
            .checkpoints
            .iter()
            .enumerate()
            .map(|(k, &steps)| {
                let c = stats::total(&counts[k]);
                CheckpointCounts {
                    timesteps: steps,
                    total: c,
                    per_input: c.per_input(inputs),
                    firing_rate: firing(None, &c, steps),
                    energy_per_input: snn_total(&model, &conventions, k),
                }
            })
            .collect();
        let layers = stats::ann_layers(graph);
        let ann_energy = |m: &EnergyModel, conv: &Conventions| {
            layers.iter().fold(Energy::default(), |acc, l| acc.add(&m.ann_with(l, conv)))
        };
        let ann_for = |m: &EnergyModel, conv: &Conventions| {
            let total = stats::ann_total(&layers);
            AnnReport {
                layers: layers
                    .iter()
                    .map(|l| AnnLayerReport {
                        layer: l.clone(),
                        energy: m.ann_with(l, conv),
                        memory_levels: levels(m, conv, l.weights, l.activations),
                    })
                    .collect(),
                total: AnnLayerReport { energy: ann_energy(m, conv), layer: total, memory_levels: None },
            }
        };
        let ann = ann_for(&model, &conventions);
        // The part charged once per input: the encoder layer's synapses under `once`.
        let once_per_input = match (conventions.encoder, s.checkpoints.first()) {
            (EncoderCharge::Once, Some(&steps)) => {
                infos.iter().enumerate().fold(Energy::default(), |acc, (p, info)| {
                    let e = counts[0][p].encoder_macs / steps.max(1) as u64;
                    let once =
                        Counts { dense_macs: e, encoder_macs: e, weight_reads: e, state_reads: e, ..Counts::default() };
                    acc.add(&model.snn_with(info, &once, 1, &conventions).scaled(per_input))
                })
            }
            _ => Energy::default(),
        };
        let all = Conventions::all();
        let ranges = |k: usize| {
            let pairs: Vec<(Energy, Energy)> =
                all.iter().map(|conv| (snn_total(&model, conv, k), ann_energy(&model, conv))).collect();
            let span = |f: &dyn Fn(&(Energy, Energy)) -> Option<f64>| Span::of(pairs.iter().filter_map(f));
            Ranges {
                snn_compute_pj: span(&|(a, _)| Some(a.compute_pj)),
                snn_memory_inclusive_pj: span(&|(a, _)| Some(a.memory_inclusive_pj)),
                ann_compute_pj: span(&|(_, b)| Some(b.compute_pj)),
                ann_memory_inclusive_pj: span(&|(_, b)| Some(b.memory_inclusive_pj)),
                ratio_compute: span(&|(a, b)| ratio(a.compute_pj, b.compute_pj)),
                ratio_memory_inclusive: span(&|(a, b)| ratio(a.memory_inclusive_pj, b.memory_inclusive_pj)),
            }
        };
        let rows: Vec<EnergyRow> = totals
            .iter()
            .enumerate()
            .map(|(k, t)| {
                let (previous_steps, previous) = match k {
                    0 => (0, once_per_input),
                    _ => (totals[k - 1].timesteps, totals[k - 1].energy_per_input),
                };
                let dt = (t.timesteps - previous_steps).max(1) as f64;
                let e = t.energy_per_input;
                EnergyRow {
                    timesteps: t.timesteps,
                    snn: e,
                    ann: ann.total.energy,
                    ratio_compute: ratio(e.compute_pj, ann.total.energy.compute_pj),
                    ratio_memory_inclusive: ratio(e.memory_inclusive_pj, ann.total.energy.memory_inclusive_pj),
                    marginal_per_step: Energy::new(
                        (e.convention_pj - previous.convention_pj) / dt,
                        (e.compute_pj - previous.compute_pj) / dt,
                        (e.memory_pj - previous.memory_pj) / dt,
                    ),
                    range: Some(ranges(k)),
                }
            })
            .collect();
        let break_even = |pick: fn(&Energy) -> f64| {
            let target = pick(&ann.total.energy);
            let mut before = (0usize, pick(&once_per_input));
            for r in &rows {
                let value = pick(&r.snn);
                if value >= target {
                    let (t0, e0) = before;
                    let fraction = if value > e0 { (target - e0) / (value - e0) } else { 1.0 };
                    return Some(BreakEvenPoint {
                        timesteps: r.timesteps,
                        previous_checkpoint: t0,
                        exact: r.timesteps == t0 + 1,
                        interpolated: t0 as f64 + fraction.clamp(0.0, 1.0) * (r.timesteps - t0) as f64,
                    });
                }
                before = (r.timesteps, value);
            }
            None
        };
        let break_even_timestep = BreakEven {
            compute: break_even(|e| e.compute_pj),
            memory_inclusive: break_even(|e| e.memory_inclusive_pj),
        };
        let at_ann_accuracy = s.accuracy.ann.and_then(|ann_accuracy| {
            let (k, row) = s
                .accuracy
                .checkpoints
                .iter()
                .enumerate()
                .find(|(_, r)| r.snn_accuracy.is_some_and(|a| a >= ann_accuracy - 0.01 - 1e-12))?;
            Some(AccuracyMatch {
                timesteps: row.timesteps,
                snn_accuracy: row.snn_accuracy?,
                ann_accuracy,
                energy: rows.get(k)?.clone(),
            })
        });
        let last = s.checkpoints.len().checked_sub(1);
        let presets = PRESETS
            .iter()
            .filter_map(|(name, _)| EnergyModel::preset(name).ok())
            .map(|m| PresetRow {
                name: m.name.clone(),
                title: m.title.clone(),
                snn: last.map_or(Energy::default(), |k| snn_total(&m, &conventions, k)),
                ann: ann_energy(&m, &conventions),
            })
            .collect();
        let ann_memory_bounds = AnnMemoryBounds {
            reuse: ann_energy(
                &model,
                &Conventions { ann_memory: crate::stats::energy::AnnMemory::Reuse, ..conventions },
            ),
            no_reuse: ann_energy(
                &model,
                &Conventions { ann_memory: crate::stats::energy::AnnMemory::NoReuse, ..conventions },
            ),
        };
        let static_power = crate::stats::static_power::static_energy(&model, s.network, s.checkpoints);
        ReportData {
            schema_version: SCHEMA_VERSION,
            generator: format!("signgd {}", env!("CARGO_PKG_VERSION")),
            run: s.run,
            inputs: s.inputs,
            checkpoints: s.checkpoints.to_vec(),
            accuracy: s.accuracy,
            populations,
            totals,
            ann,
            energy: EnergyReport {
                assumptions: model.assumptions(&conventions),
                convention_table: conventions.describe(),
                conventions,
                model,
                once_per_input,
                checkpoints: rows,
                ann_memory_bounds,
                break_even_timestep,
                at_ann_accuracy,
                presets,
                static_power,
            },
            observation: s.observation,
        }
    }

    /// Reads `report.json` of a report directory.
    pub fn read(dir: &Path) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let path = dir.join("report.json");
        let text = fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
        match value.get("schema_version").and_then(|v| v.as_u64()) {
            Some(v) if (1..=SCHEMA_VERSION as u64).contains(&v) => {}
            Some(v) => {
                anyhow::bail!("{} has schema version {v}; this signgd reads version {SCHEMA_VERSION}", path.display())
            }
            None => anyhow::bail!("{} has no schema_version: not a signgd report", path.display()),
        }
        serde_json::from_value(value).with_context(|| format!("{} is not a signgd report", path.display()))
    }

    /// The last checkpoint's timesteps.
    pub fn last_timesteps(&self) -> usize {
        self.checkpoints.last().copied().unwrap_or(0)
    }

    /// The rendered files, in [`FILES`] order.
    pub fn render(&self) -> anyhow::Result<Vec<(&'static str, String)>> {
        Ok(vec![
            ("report.json", serde_json::to_string_pretty(self)? + "\n"),
            ("populations.csv", self.populations_csv()),
            ("accuracy.csv", self.accuracy_csv()),
            ("layers.csv", self.layers_csv()),
            ("report.md", self.markdown()),
            ("report.html", html::render(self)),
        ])
    }

    /// `populations.csv`: one row per population and checkpoint; counts summed over the inputs.
    pub fn populations_csv(&self) -> String {
        let mut out = String::from(
            "index,name,kind,neurons,size,timesteps,inputs,spikes,firing_rate,synaptic_events,dense_macs,drive_additions,neuron_updates,nonlinearity_evaluations,state_reads,state_writes,weight_reads,energy_compute_pj_per_input,energy_memory_inclusive_pj_per_input\n",
        );
        for p in &self.populations {
            for c in &p.checkpoints {
                let t = &c.total;
                let _ = writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                    p.info.index.map_or(String::new(), |i| i.to_string()),
                    csv_field(&p.info.name),
                    csv_field(&p.info.kind),
                    p.info.neurons,
                    p.info.size,
                    c.timesteps,
                    self.inputs,
                    t.spikes,
                    c.firing_rate.map_or(String::new(), |r| format!("{r}")),
                    t.synaptic_events,
                    t.dense_macs,
                    t.drive_additions,
                    t.neuron_updates,
                    t.nonlinearity_evaluations,
                    t.state_reads,
                    t.state_writes,
                    t.weight_reads,
                    c.energy_per_input.compute_pj,
                    c.energy_per_input.memory_inclusive_pj
                );
            }
        }
        out
    }

    /// `layers.csv`: per ANN node (graph order) and checkpoint, the ANN's MACs and energy per
    /// inference beside the SNN populations that compute that node's activation: their synaptic
    /// operations, dense MACs and energy per input. Populations no node matches come last, under
    /// an empty node name.
    pub fn layers_csv(&self) -> String {
        let mut out = String::from(
            "ann_node,op,timesteps,ann_macs,ann_energy_compute_pj,ann_energy_memory_inclusive_pj,snn_populations,snn_neurons,snn_synaptic_events_per_input,snn_dense_macs_per_input,snn_energy_compute_pj_per_input,snn_energy_memory_inclusive_pj_per_input\n",
        );
        let mut keys: Vec<(Option<String>, Option<&AnnLayerReport>)> =
            self.ann.layers.iter().map(|l| (Some(l.layer.name.clone()), Some(l))).collect();
        if self.populations.iter().any(|p| p.ann_node.is_none()) {
            keys.push((None, None));
        }
        for (node, layer) in keys {
            let members: Vec<&PopulationReport> = self.populations.iter().filter(|p| p.ann_node == node).collect();
            let ann_cost = layer.is_some_and(|l| l.energy.memory_inclusive_pj > 0.0 || l.layer.macs > 0);
            if members.is_empty() && !ann_cost {
                continue;
            }
            let names: Vec<&str> = members.iter().map(|p| p.info.name.as_str()).collect();
            let neurons: u64 = members.iter().map(|p| p.info.neurons).sum();
            for (k, &steps) in self.checkpoints.iter().enumerate() {
                let mut events = 0.0;
                let mut macs = 0.0;
                let mut energy = Energy::default();
                for p in &members {
                    if let Some(c) = p.checkpoints.get(k) {
                        events += c.per_input.synaptic_events;
                        macs += c.per_input.dense_macs;
                        energy = energy.add(&c.energy_per_input);
                    }
                }
                let _ = writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{},{},{},{}",
                    csv_field(node.as_deref().unwrap_or("")),
                    csv_field(layer.map_or("", |l| l.layer.op.as_str())),
                    steps,
                    layer.map_or(0, |l| l.layer.macs),
                    layer.map_or(0.0, |l| l.energy.compute_pj),
                    layer.map_or(0.0, |l| l.energy.memory_inclusive_pj),
                    csv_field(&names.join(";")),
                    neurons,
                    events,
                    macs,
                    energy.compute_pj,
                    energy.memory_inclusive_pj
                );
            }
        }
        out
    }

    /// `accuracy.csv`: one row per checkpoint.
    pub fn accuracy_csv(&self) -> String {
        let mut out = String::from("timesteps,snn_accuracy,ann_accuracy,agreement,mean_abs_diff,snn_ci95_low,snn_ci95_high,ann_ci95_low,ann_ci95_high,mcnemar_snn_only,mcnemar_ann_only,mcnemar_p\n");
        let opt = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v}"));
        let count = |x: Option<usize>| x.map_or(String::new(), |v| v.to_string());
        let ann_ci = self.accuracy.ann_ci95;
        for r in &self.accuracy.checkpoints {
            let test = r.mcnemar_vs_ann;
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{}",
                r.timesteps,
                opt(r.snn_accuracy),
                opt(self.accuracy.ann),
                r.agreement,
                opt(r.mean_abs_diff),
                opt(r.snn_accuracy_ci95.map(|i| i.low)),
                opt(r.snn_accuracy_ci95.map(|i| i.high)),
                opt(ann_ci.map(|i| i.low)),
                opt(ann_ci.map(|i| i.high)),
                count(test.map(|t| t.first_only)),
                count(test.map(|t| t.second_only)),
                opt(test.map(|t| t.p_value)),
            );
        }
        out
    }

    /// The summary `signgd report DIR` prints: accuracy, firing rates, energy, assumptions.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let model = self.run.get("model").and_then(|m| m.as_str()).unwrap_or("?");
        let t_last = self.last_timesteps();
        let _ = writeln!(out, "report of {model}: {} inputs, checkpoints {:?}", self.inputs, self.checkpoints);
        let _ = writeln!(out);
        let _ = writeln!(out, "accuracy");
        let pct = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{:.2}%", 100.0 * v));
        let _ = writeln!(out, "  ANN            {}{}", pct(self.accuracy.ann), interval_text(self.accuracy.ann_ci95));
        for r in &self.accuracy.checkpoints {
            let _ = writeln!(
                out,
                "  SNN T={:<7}  {}{}  (agrees with the ANN on {:.2}%{})",
                r.timesteps,
                pct(r.snn_accuracy),
                interval_text(r.snn_accuracy_ci95),
                100.0 * r.agreement,
                r.mcnemar_vs_ann.map_or(String::new(), |t| format!("; McNemar p = {}", p_value_text(t.p_value)))
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "populations at T={t_last}, per input");
        let _ = writeln!(
            out,
            "  {:<34} {:<9} {:>7} {:>7} {:>12} {:>11} {:>11}",
            "population", "kind", "neurons", "rate", "syn. events", "dense MACs", "energy"
        );
        for p in &self.populations {
            if let Some(c) = p.checkpoints.last() {
                let _ = writeln!(
                    out,
                    "  {:<34} {:<9} {:>7} {:>7} {:>12} {:>11} {:>11}",
                    shorten(&p.info.name, 34),
                    p.info.kind,
                    if p.info.has_neurons() { p.info.neurons.to_string() } else { "-".into() },
                    c.firing_rate.map_or("-".to_string(), |r| format!("{r:.3}")),
                    human(c.per_input.synaptic_events),
                    human(c.per_input.dense_macs),
                    format_pj(c.energy_per_input.memory_inclusive_pj)
                );
            }
        }
        if let Some(t) = self.totals.last() {
            let _ = writeln!(
                out,
                "  {:<34} {:<9} {:>7} {:>7} {:>12} {:>11} {:>11}",
                "total",
                "",
                self.populations.iter().map(|p| p.info.neurons).sum::<u64>(),
                t.firing_rate.map_or("-".to_string(), |r| format!("{r:.3}")),
                human(t.per_input.synaptic_events),
                human(t.per_input.dense_macs),
                format_pj(t.energy_per_input.memory_inclusive_pj)
            );
            let p = &t.per_input;
            let _ = writeln!(
                out,
                "  per input: {} spikes, {} drive additions, {} nonlinearity evaluations, {} neuron updates, {} memory reads, {} writes",
                human(p.spikes),
                human(p.drive_additions),
                human(p.nonlinearity_evaluations),
                human(p.neuron_updates),
                human(p.state_reads + p.weight_reads),
                human(p.state_writes)
            );
        }
        let a = &self.ann.total.layer;
        let _ = writeln!(
            out,
            "  ANN per input: {} MACs, {} other ops, {} memory reads, {} writes",
            human(a.macs as f64),
            human(a.elementwise_ops as f64),
            human((a.weight_reads + a.activation_reads) as f64),
            human(a.activation_writes as f64)
        );
        let _ = writeln!(out);
        let e = &self.energy;
        let _ = writeln!(out, "energy per input, cost model `{}` ({})", e.model.name, e.model.title);
        let _ = writeln!(
            out,
            "  {:>7} {:>12} {:>12} {:>12} {:>12} {:>12} {:>9} {:>9}",
            "T", "SNN conv.", "SNN compute", "SNN +memory", "ANN compute", "ANN +memory", "compute", "+memory"
        );
        for r in &e.checkpoints {
            let _ = writeln!(
                out,
                "  {:>7} {:>12} {:>12} {:>12} {:>12} {:>12} {:>9} {:>9}",
                r.timesteps,
                format_pj(r.snn.convention_pj),
                format_pj(r.snn.compute_pj),
                format_pj(r.snn.memory_inclusive_pj),
                format_pj(r.ann.compute_pj),
                format_pj(r.ann.memory_inclusive_pj),
                ratio_text(r.ratio_compute),
                ratio_text(r.ratio_memory_inclusive)
            );
        }
        let _ = writeln!(
            out,
            "  (last two columns: SNN / ANN; ANN convention E_MAC × MACs = {})",
            format_pj(self.ann.total.energy.convention_pj)
        );
        out += &self.energy_details();
        out += &self.static_details();
        let _ = writeln!(out);
        let _ = writeln!(out, "every shipped cost model at T={t_last}, per input");
        let _ = writeln!(
            out,
            "  {:<12} {:>12} {:>12} {:>12} {:>12}",
            "model", "SNN compute", "SNN +memory", "ANN compute", "ANN +memory"
        );
        for p in &e.presets {
            let _ = writeln!(
                out,
                "  {:<12} {:>12} {:>12} {:>12} {:>12}",
                p.name,
                format_pj(p.snn.compute_pj),
                format_pj(p.snn.memory_inclusive_pj),
                format_pj(p.ann.compute_pj),
                format_pj(p.ann.memory_inclusive_pj)
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(out, "assumptions");
        for a in &e.assumptions {
            let _ = writeln!(out, "  - {a}");
        }
        out
    }

    /// The conventions, the ANN's memory bounds, break-even, the accuracy-matched checkpoint and
    /// the ranges, as the summary prints them.
    fn energy_details(&self) -> String {
        let mut out = String::new();
        let e = &self.energy;
        if e.convention_table.is_empty() {
            return out;
        }
        let settings: Vec<String> = e.convention_table.iter().map(|r| format!("{} {}", r.name, r.setting)).collect();
        let _ = writeln!(out, "  conventions: {} (alternatives under assumptions)", settings.join(", "));
        let b = &e.ann_memory_bounds;
        let _ = writeln!(
            out,
            "  ANN + memory per inference: {} with per-layer reuse (lower bound), {} without reuse (upper bound)",
            format_pj(b.reuse.memory_inclusive_pj),
            format_pj(b.no_reuse.memory_inclusive_pj)
        );
        if e.once_per_input.memory_inclusive_pj > 0.0 {
            let _ = writeln!(
                out,
                "  SNN charged once per input (encoder layer): {} compute, {} + memory",
                format_pj(e.once_per_input.compute_pj),
                format_pj(e.once_per_input.memory_inclusive_pj)
            );
        }
        let last = self.last_timesteps();
        let point = |p: &Option<BreakEvenPoint>| match p {
            Some(p) if p.exact => format!("T = {} (interpolated {:.2})", p.timesteps, p.interpolated),
            Some(p) => format!(
                "between T = {} and T = {} (interpolated {:.2}; checkpoints are not consecutive)",
                p.previous_checkpoint, p.timesteps, p.interpolated
            ),
            None => format!("not reached up to T = {last}"),
        };
        let _ = writeln!(
            out,
            "  break-even (SNN reaches the ANN): compute {}; memory-inclusive {}",
            point(&e.break_even_timestep.compute),
            point(&e.break_even_timestep.memory_inclusive)
        );
        let span = |s: Option<Span>, f: &dyn Fn(f64) -> String| span_text(s, f, "–");
        let times = |x: f64| format!("{x:.2}×");
        match (&e.at_ann_accuracy, self.accuracy.ann) {
            (Some(m), _) => {
                let r = m.energy.range.unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  first checkpoint within 1 point of the ANN's accuracy: T = {} ({:.2}% against {:.2}%): SNN {} compute, {} + memory; SNN / ANN {} compute (range {}), {} + memory (range {})",
                    m.timesteps,
                    100.0 * m.snn_accuracy,
                    100.0 * m.ann_accuracy,
                    format_pj(m.energy.snn.compute_pj),
                    format_pj(m.energy.snn.memory_inclusive_pj),
                    ratio_text(m.energy.ratio_compute),
                    span(r.ratio_compute, &times),
                    ratio_text(m.energy.ratio_memory_inclusive),
                    span(r.ratio_memory_inclusive, &times)
                );
            }
            (None, Some(_)) => {
                let _ = writeln!(out, "  no checkpoint comes within 1 point of the ANN's accuracy");
            }
            (None, None) => {}
        }
        let _ =
            writeln!(out, "  per step and ranges over the {} combinations of conventions:", Conventions::all().len());
        let _ = writeln!(
            out,
            "  {:>7} {:>12} {:>12} {:>25} {:>25} {:>17} {:>17}",
            "T", "Δcompute/T", "Δ+memory/T", "SNN compute range", "SNN +memory range", "compute ratio", "+memory ratio"
        );
        for r in &e.checkpoints {
            let g = r.range.unwrap_or_default();
            let _ = writeln!(
                out,
                "  {:>7} {:>12} {:>12} {:>25} {:>25} {:>17} {:>17}",
                r.timesteps,
                format_pj(r.marginal_per_step.compute_pj),
                format_pj(r.marginal_per_step.memory_inclusive_pj),
                span(g.snn_compute_pj, &format_pj),
                span(g.snn_memory_inclusive_pj, &format_pj),
                span(g.ratio_compute, &times),
                span(g.ratio_memory_inclusive, &times)
            );
        }
        if let Some(g) = e.checkpoints.first().and_then(|r| r.range) {
            let _ = writeln!(
                out,
                "  ANN ranges: compute {}, + memory {}",
                span(g.ann_compute_pj, &format_pj),
                span(g.ann_memory_inclusive_pj, &format_pj)
            );
        }
        out
    }

    /// The static (leakage) term, as the summary prints it (nothing when the model has none).
    fn static_details(&self) -> String {
        self.static_sentence().map_or(String::new(), |s| format!("  {s}\n"))
    }

    /// One sentence on the static term: its factors, per step, and at the first checkpoint
    /// within one point of the ANN's accuracy and the last (every checkpoint is in report.json).
    pub(crate) fn static_sentence(&self) -> Option<String> {
        let st = self.energy.static_power.as_ref()?;
        let p = &st.power;
        let at = |t: usize| {
            let row = st.checkpoints.iter().find(|r| r.timesteps == t)?;
            let dynamic = self.energy.checkpoints.iter().find(|r| r.timesteps == t)?;
            Some(format!(
                "at T = {t} {} (SNN + memory + static {})",
                format_pj(row.static_pj),
                format_pj(dynamic.snn.memory_inclusive_pj + row.static_pj)
            ))
        };
        let mut points: Vec<usize> = self.energy.at_ann_accuracy.iter().map(|m| m.timesteps).collect();
        points.extend(self.checkpoints.last());
        points.dedup();
        let points: Vec<String> = points.into_iter().filter_map(at).collect();
        Some(format!(
            "static (leakage) energy, a separate term not in the figures above (the ANN is charged none): {} cores of {} ({} chip(s) in the feasibility mapping{}) × {} mW per core × {} µs per step = {} per step per input; {}",
            st.cores,
            st.chip,
            st.chips,
            if st.fits { "" } else { "; the network breaks a limit of the chip, cores counted as placed" },
            p.mw_per_core,
            p.us_per_step,
            format_pj(p.pj(st.cores, 1)),
            points.join(", ")
        ))
    }

    /// `report.md`: the summary plus the cost table with sources.
    pub fn markdown(&self) -> String {
        let mut out = String::from("# signgd report\n\n```text\n");
        out += &self.summary();
        out += "```\n\n";
        out += &self.ranges_markdown();
        out += "## Conventions\n\n| convention | setting | default | alternative | flag |\n|---|---|---|---|---|\n";
        for r in &self.energy.convention_table {
            let _ = writeln!(out, "| {} | {} | {} | {} | `{}` |", r.name, r.setting, r.default, r.alternative, r.flag);
        }
        out += "\n## Cost model\n\n| entry | pJ | source |\n|---|---|---|\n";
        for (name, cost) in self.energy.model.costs.entries() {
            let _ = writeln!(out, "| {name} | {} | {} |", cost.pj, cost.source.replace('|', "/"));
        }
        if let Some(m) = &self.energy.model.memory {
            let _ = writeln!(
                out,
                "\nMemory levels ({}-bit words: {}):\n\n| level | up to | pJ per 64 bits | source |\n|---|---|---|---|",
                m.word_bits, m.word_bits_source
            );
            for l in &m.levels {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} |",
                    l.name,
                    l.max_bytes.map_or("-".to_string(), |b| format!("{b} B")),
                    l.pj_per_64_bits,
                    l.source.replace('|', "/")
                );
            }
        }
        if let Some(p) = self.energy.model.static_power.as_ref() {
            let _ = writeln!(
                out,
                "\nStatic power (a separate term; cores from the mapping onto `{}`):\n\n| figure | value | source |\n|---|---|---|\n| mW per core | {} | {} |\n| µs per step | {} | {} |",
                p.target,
                p.mw_per_core,
                p.mw_per_core_source.replace('|', "/"),
                p.us_per_step,
                p.us_per_step_source.replace('|', "/")
            );
        }
        out += "\n## Files\n\n- `report.json`: everything (schema version ";
        let _ = write!(out, "{SCHEMA_VERSION})\n- `populations.csv`: counts per population and checkpoint, summed over the inputs\n- `accuracy.csv`: accuracy per checkpoint\n- `layers.csv`: per ANN node and checkpoint, the ANN's MACs and energy beside the SNN populations computing that node (synaptic operations, dense MACs, energy per input)\n- `report.html`: charts\n");
        out
    }
}

impl ReportData {
    /// The settings of the dynamics and, for calibrated dynamics, each population's scale and
    /// saturation (from the run's `ranges`), as a Markdown section; empty without settings.
    fn ranges_markdown(&self) -> String {
        let mut out = String::new();
        let settings = &self.run["settings"];
        if let Some(preset) = settings["preset"].as_str() {
            let _ = writeln!(
                out,
                "## Dynamics\n\npreset `{preset}`, schedule `{}`, encoder `{}`, GELU target `{}`{}\n",
                settings["schedule"].as_str().unwrap_or("-"),
                settings["encoder"].as_str().unwrap_or("-"),
                settings["gelu"].as_str().unwrap_or("-"),
                settings["tuned"].as_str().map_or(String::new(), |f| format!(", tuned by `signgd tune` ({f})")),
            );
        }
        let ranges = &self.run["ranges"];
        let Some(populations) = ranges["populations"].as_array() else { return out };
        let _ = writeln!(
            out,
            "Per population, the scale of its calibrated range and the fraction of its neurons whose target on some calibration input lies beyond the bound Σ η_t = {:.3} of T = {} (saturated):\n\n| population | scaled | scale | saturated |\n|---|---|---|---|",
            ranges["bound"].as_f64().unwrap_or(f64::NAN),
            ranges["timesteps"].as_u64().unwrap_or(0)
        );
        for p in populations {
            let (low, high) =
                (p["scale_min"].as_f64().unwrap_or(f64::NAN), p["scale_max"].as_f64().unwrap_or(f64::NAN));
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.1}% |",
                p["population"].as_str().unwrap_or("-").replace('|', "/"),
                if p["scaled"].as_bool() == Some(true) { "yes" } else { "no" },
                if low == high { format!("{low:.4}") } else { format!("{low:.4}–{high:.4}") },
                100.0 * p["saturated_fraction"].as_f64().unwrap_or(f64::NAN)
            );
        }
        out.push('\n');
        out
    }
}

/// `low{dash}high` of a range, each end written by `f`; `-` without one.
pub(crate) fn span_text(span: Option<Span>, f: &dyn Fn(f64) -> String, dash: &str) -> String {
    span.map_or("-".to_string(), |s| format!("{}{dash}{}", f(s.min), f(s.max)))
}

/// `84.6–88.8%`, or `-` without an interval.
pub fn interval_range(interval: Option<Interval>) -> String {
    interval.map_or("-".to_string(), |i| format!("{:.1}–{:.1}%", 100.0 * i.low, 100.0 * i.high))
}

/// ` (95% CI 84.6–88.8%)`, or nothing without an interval.
pub fn interval_text(interval: Option<Interval>) -> String {
    interval.map_or(String::new(), |i| format!(" (95% CI {})", interval_range(Some(i))))
}

/// A p-value with the precision it deserves.
pub fn p_value_text(p: f64) -> String {
    if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

/// The memory levels a population's or layer's weights and state take (None: priced flat).
fn levels(model: &EnergyModel, conventions: &Conventions, weights: u64, state: u64) -> Option<MemoryLevels> {
    if conventions.memory != crate::stats::energy::MemoryPricing::Levels {
        return None;
    }
    model.placement(weights, state).map(|(weights, state)| MemoryLevels { weights, state })
}

/// The ANN node a population stands for: its name without `.relay` if that is a node, or the node
/// producing the value of that name, or the longest node name it starts with followed by `.`
/// (the converter's decompositions, `node_layer_norm.square`); the readout is the node producing
/// the graph's output.
pub fn ann_node_of(population: &str, graph: &Graph) -> Option<String> {
    if population == "readout" {
        return graph.nodes.iter().find(|n| n.output == graph.output).map(|n| n.name.clone());
    }
    let base = population.strip_suffix(".relay").unwrap_or(population);
    if let Some(n) = graph.nodes.iter().find(|n| n.name == base) {
        return Some(n.name.clone());
    }
    if let Some(n) = graph.nodes.iter().find(|n| graph.values.get(n.output).is_some_and(|v| v.name == base)) {
        return Some(n.name.clone());
    }
    graph
        .nodes
        .iter()
        .filter(|n| base.strip_prefix(n.name.as_str()).is_some_and(|rest| rest.starts_with('.')))
        .max_by_key(|n| n.name.len())
        .map(|n| n.name.clone())
}

fn ratio_text(r: Option<f64>) -> String {
    r.map_or("-".to_string(), |r| format!("{r:.2}×"))
}

/// `1.23e6`-style short numbers: 1.23 M.
pub fn human(x: f64) -> String {
    let a = x.abs();
    if a >= 1e12 {
        format!("{:.2} T", x / 1e12)
    } else if a >= 1e9 {
        format!("{:.2} G", x / 1e9)
    } else if a >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if a >= 1e4 {
        format!("{:.1} k", x / 1e3)
    } else if x.fract() == 0.0 {
        format!("{x}")
    } else {
        format!("{x:.1}")
    }
}

fn shorten(name: &str, width: usize) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() <= width {
        name.to_string()
    } else {
        let tail: String = chars[chars.len() - (width - 1)..].iter().collect();
        format!("…{tail}")
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Why a report directory cannot be written. With `force`, an existing `dir` may be replaced
/// only when it holds a previous report: its `report.json` and nothing but report files.
pub fn check_target(dir: &Path, force: bool) -> anyhow::Result<()> {
    if dir.exists() {
        if !force {
            anyhow::bail!(
                "{} already exists; pass --force to replace it, or choose another --report directory",
                dir.display()
            );
        }
        check_replaceable(dir)?;
    }
    let parent = parent_of(dir);
    anyhow::ensure!(
        parent.is_dir(),
        "cannot write the report {}: directory {} does not exist",
        dir.display(),
        parent.display()
    );
    Ok(())
}

/// Refuses to replace anything but a previous report directory, naming the first foreign entry.
fn check_replaceable(dir: &Path) -> anyhow::Result<()> {
    let refuse = |why: String| {
        anyhow::anyhow!(
            "{} {why}; --force replaces only a previous signgd report, so move it away or choose another --report directory",
            dir.display()
        )
    };
    let meta = fs::symlink_metadata(dir).map_err(|e| refuse(format!("cannot be inspected ({e})")))?;
    if !meta.is_dir() {
        return Err(refuse("is not a directory".into()));
    }
    let mut entries = fs::read_dir(dir)
        .and_then(|it| it.map(|e| e.map(|e| e.file_name())).collect::<Result<Vec<_>, _>>())
        .map_err(|e| refuse(format!("cannot be listed ({e})")))?;
    entries.sort();
    if let Some(foreign) = entries.iter().find(|name| !FILES.iter().chain(&SHARD_FILES).any(|f| name.as_os_str() == *f))
    {
        return Err(refuse(format!("holds {}, which is not a file of a report", foreign.to_string_lossy())));
    }
    let json = dir.join("report.json");
    let is_report = fs::symlink_metadata(&json).is_ok_and(|m| m.is_file())
        && fs::read_to_string(&json)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|v| v.get("schema_version").is_some());
    if !is_report {
        return Err(refuse("holds no report.json of a signgd report".into()));
    }
    for name in &entries {
        let is_file = fs::symlink_metadata(dir.join(name)).is_ok_and(|m| m.is_file());
        if !is_file {
            return Err(refuse(format!("holds {}, which is not a plain file", name.to_string_lossy())));
        }
    }
    Ok(())
}

fn parent_of(dir: &Path) -> PathBuf {
    match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes `files` into a temporary sibling of `dir`, then renames it to `dir` (replacing an
/// existing `dir` only with `force`). On failure nothing at `dir` changes.
pub fn write_dir(dir: &Path, files: &[(&str, impl AsRef<[u8]>)], force: bool) -> anyhow::Result<()> {
    use anyhow::Context as _;
    check_target(dir, force)?;
    let parent = parent_of(dir);
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| anyhow::anyhow!("{} does not name a directory", dir.display()))?;
    let unique = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
    );
    let tmp = parent.join(format!(".{name}.tmp-{unique}"));
    let result = (|| -> anyhow::Result<()> {
        fs::create_dir(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        for (file, text) in files {
            let path = tmp.join(file);
            let mut f = fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
            f.write_all(text.as_ref()).with_context(|| format!("cannot write {}", path.display()))?;
            f.sync_all()?;
        }
        if dir.exists() {
            anyhow::ensure!(force, "{} already exists; pass --force to replace it", dir.display());
            check_replaceable(dir)?;
            let old = parent.join(format!(".{name}.old-{unique}"));
            fs::rename(dir, &old).with_context(|| format!("cannot move the old {} aside", dir.display()))?;
            if let Err(e) = fs::rename(&tmp, dir) {
                let _ = fs::rename(&old, dir);
                return Err(anyhow::Error::new(e).context(format!("cannot write {}", dir.display())));
            }
            let removed = if old.is_dir() { fs::remove_dir_all(&old) } else { fs::remove_file(&old) };
            removed.with_context(|| format!("the report is written, but the old one remains at {}", old.display()))?;
        } else {
            fs::rename(&tmp, dir).with_context(|| format!("cannot write {}", dir.display()))?;
        }
        Ok(())
    })();
    if result.is_err() && tmp.exists() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result
}
