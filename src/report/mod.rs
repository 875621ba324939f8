//! Reports a person can read: `report.json` (with a schema version), `populations.csv`,
//! `accuracy.csv`, `report.md` and a self-contained `report.html` with inline SVG charts.
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
use crate::stats::energy::{format_pj, Energy, EnergyModel, PRESETS};
use crate::stats::observe::{ErrorTrace, Raster};
use crate::stats::significance::{Interval, McNemar};
use crate::stats::{self, AnnLayer, Counts, CountsPerInput, PopulationInfo};

/// Version of the layout of `report.json`.
pub const SCHEMA_VERSION: u32 = 1;

/// The files of a report directory.
pub const FILES: [&str; 5] = ["report.json", "populations.csv", "accuracy.csv", "report.md", "report.html"];

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
    /// Per checkpoint.
    pub checkpoints: Vec<CheckpointCounts>,
}

/// One ANN layer with its energy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnnLayerReport {
    /// Operation counts for one inference.
    #[serde(flatten)]
    pub layer: AnnLayer,
    /// Energy of one inference.
    pub energy: Energy,
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
    /// The assumptions behind the figures.
    pub assumptions: Vec<String>,
    /// SNN against ANN per checkpoint.
    pub checkpoints: Vec<EnergyRow>,
    /// Every shipped preset at the last checkpoint.
    pub presets: Vec<PresetRow>,
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
    /// One input up close.
    pub observation: Option<Observation>,
}

impl ReportData {
    /// Derives every statistic and energy figure.
    pub fn build(s: Sources<'_>) -> Self {
        let infos = stats::population_infos(s.network);
        let counts = stats::derive_all(&infos, s.counters, s.checkpoints, s.inputs);
        let model = s.energy_model;
        let per_input = 1.0 / s.inputs.max(1) as f64;
        let checkpoint_counts =
            |info: Option<&PopulationInfo>, c: &Counts, steps: usize, model: &EnergyModel| CheckpointCounts {
                timesteps: steps,
                total: *c,
                per_input: c.per_input(s.inputs),
                firing_rate: match info {
                    Some(info) => stats::firing_rate(info, c, steps as u64, s.inputs),
                    None => {
                        let neurons: u64 = infos.iter().filter(|i| i.has_neurons()).map(|i| i.neurons).sum();
                        let slots = neurons * steps as u64 * s.inputs;
                        (slots > 0).then(|| c.spikes as f64 / slots as f64)
                    }
                },
                energy_per_input: model.snn(c).scaled(per_input),
            };
        let populations = infos
            .iter()
            .enumerate()
            .map(|(p, info)| PopulationReport {
                info: info.clone(),
                checkpoints: s
                    .checkpoints
                    .iter()
                    .zip(&counts)
                    .map(|(&steps, row)| checkpoint_counts(Some(info), &row[p], steps, &model))
                    .collect(),
            })
            .collect();
        let totals: Vec<CheckpointCounts> = s
            .checkpoints
            .iter()
            .zip(&counts)
            .map(|(&steps, row)| checkpoint_counts(None, &stats::total(row), steps, &model))
            .collect();
        let layers = stats::ann_layers(s.ann_graph);
        let ann_for = |m: &EnergyModel| {
            let total = stats::ann_total(&layers);
            AnnReport {
                layers: layers.iter().map(|l| AnnLayerReport { layer: l.clone(), energy: m.ann(l) }).collect(),
                total: AnnLayerReport { energy: m.ann(&total), layer: total },
            }
        };
        let ann = ann_for(&model);
        let ratio = |a: f64, b: f64| (b > 0.0).then(|| a / b);
        let rows = totals
            .iter()
            .map(|t| EnergyRow {
                timesteps: t.timesteps,
                snn: t.energy_per_input,
                ann: ann.total.energy,
                ratio_compute: ratio(t.energy_per_input.compute_pj, ann.total.energy.compute_pj),
                ratio_memory_inclusive: ratio(
                    t.energy_per_input.memory_inclusive_pj,
                    ann.total.energy.memory_inclusive_pj,
                ),
            })
            .collect();
        let last_total = counts.last().map(|row| stats::total(row)).unwrap_or_default();
        let presets = PRESETS
            .iter()
            .filter_map(|(name, _)| EnergyModel::preset(name).ok())
            .map(|m| PresetRow {
                name: m.name.clone(),
                title: m.title.clone(),
                snn: m.snn(&last_total).scaled(per_input),
                ann: ann_for(&m).total.energy,
            })
            .collect();
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
            energy: EnergyReport { assumptions: model.assumptions(), model, checkpoints: rows, presets },
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
            Some(v) if v == SCHEMA_VERSION as u64 => {}
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

    /// `report.md`: the summary plus the cost table with sources.
    pub fn markdown(&self) -> String {
        let mut out = String::from("# signgd report\n\n```text\n");
        out += &self.summary();
        out += "```\n\n## Cost model\n\n| entry | pJ | source |\n|---|---|---|\n";
        for (name, cost) in self.energy.model.costs.entries() {
            let _ = writeln!(out, "| {name} | {} | {} |", cost.pj, cost.source.replace('|', "/"));
        }
        out += "\n## Files\n\n- `report.json`: everything (schema version ";
        let _ = write!(out, "{SCHEMA_VERSION})\n- `populations.csv`: counts per population and checkpoint, summed over the inputs\n- `accuracy.csv`: accuracy per checkpoint\n- `report.html`: charts\n");
        out
    }
}

/// ` (95 % CI 84.6–88.8 %)`, or nothing without an interval.
pub fn interval_text(interval: Option<Interval>) -> String {
    interval.map_or(String::new(), |i| format!(" (95% CI {:.1}–{:.1}%)", 100.0 * i.low, 100.0 * i.high))
}

/// A p-value with the precision it deserves.
pub fn p_value_text(p: f64) -> String {
    if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
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
    if let Some(foreign) = entries.iter().find(|name| !FILES.iter().any(|f| name.as_os_str() == *f)) {
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
pub fn write_dir(dir: &Path, files: &[(&str, String)], force: bool) -> anyhow::Result<()> {
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
            f.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
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
