//! `signgd merge`: combine the report directories of shards (`signgd run --shard K/N --report
//! DIR`) into the report the whole run would have written.
//!
//! The shards are checked to be the N slices of one run (same model, data, labels, calibration
//! and settings; every K once). The run is then replayed with the first shard's options: the model
//! is read and converted again, the ANN and SNN outputs and the counters come from the shards in
//! input order, and the report is derived and written by the code of `signgd run`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Result};
use clap::{Args, Parser};
use ndarray_npy::ReadableElement;
use signgd::engine::Counters;
use signgd::real::Real;
use signgd::runner::SimulationResult;
use signgd::shard::Shard;

use super::run::RunArgs;
use super::shard::Record;

/// Options of `signgd merge`.
#[derive(Args)]
pub struct MergeArgs {
    /// The --report directories of the shards, in any order.
    #[arg(value_name = "DIR", required = true)]
    shards: Vec<PathBuf>,
    /// The merged report directory (written atomically; see also --force).
    #[arg(long, value_name = "DIR")]
    report: PathBuf,
    /// Replace an existing --report directory.
    #[arg(long)]
    force: bool,
    /// Worker threads for converting the model again (default: the shards' --threads).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

/// The options of `signgd run` as a shard recorded them.
#[derive(Parser)]
#[command(no_binary_name = true)]
struct Replay {
    #[command(flatten)]
    args: RunArgs,
}

/// Runs the command.
pub fn run(args: MergeArgs) -> Result<ExitCode> {
    let (plan, mut run_args) = Plan::read(&args.shards)?;
    run_args.report = Some(args.report);
    run_args.force = args.force;
    run_args.json = args.json;
    run_args.threads = args.threads.or(run_args.threads);
    (run_args.shard, run_args.dump_outputs, run_args.dump_ann) = (None, None, None);
    run_args.merge = Some(Arc::new(plan));
    super::run::run(run_args)
}

/// Shards checked to be the slices of one run, in input order.
#[derive(Debug)]
pub(crate) struct Plan {
    shards: Vec<(PathBuf, Record)>,
}

impl Plan {
    /// Reads and checks the shards in `dirs`; returns them with the options of `signgd run` that
    /// replay the whole run (paths made relative to the working directory the shards ran in).
    fn read(dirs: &[PathBuf]) -> Result<(Self, RunArgs)> {
        let mut shards = Vec::new();
        for dir in dirs {
            shards.push((dir.clone(), Record::read(dir)?));
        }
        let (first_dir, first) = &shards[0];
        let first_args = replay(first_dir, first)?;
        let first_identity = identity(&first_args);
        for (dir, record) in &shards[1..] {
            let (a, b) = (&record.shard, &first.shard);
            ensure!(
                a.count == b.count,
                "{} is shard {}/{} but {} is shard {}/{}: the shards of one run have the same N",
                dir.display(),
                a.index,
                a.count,
                first_dir.display(),
                b.index,
                b.count
            );
            ensure!(
                a.inputs == b.inputs,
                "{} is a shard of {} inputs but {} of {}: the shards of one run share --data and --limit",
                dir.display(),
                a.inputs,
                first_dir.display(),
                b.inputs
            );
            same_files(&first.provenance, &record.provenance)
                .map_err(|why| anyhow::anyhow!("{} and {} {why}", dir.display(), first_dir.display()))?;
            let args = replay(dir, record)?;
            if let Some((mine, theirs)) = first_difference(&identity(&args), &first_identity) {
                bail!(
                    "{} and {} ran with different settings: `{mine}` against `{theirs}`; merge only the shards of one run",
                    dir.display(),
                    first_dir.display()
                );
            }
        }
        let count = first.shard.count;
        let total = first.shard.inputs;
        let mut by_index: BTreeMap<usize, &Path> = BTreeMap::new();
        for (dir, record) in &shards {
            let s = &record.shard;
            if let Some(other) = by_index.insert(s.index, dir) {
                bail!(
                    "shard {}/{count} is given twice, as {} and {}: their inputs overlap; give each shard once",
                    s.index,
                    other.display(),
                    dir.display()
                );
            }
            let expected = Shard::new(s.index, count)
                .and_then(|shard| shard.range(total))
                .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?;
            ensure!(
                expected == (s.start..s.end),
                "{} holds inputs {}..{}, but shard {}/{count} of {total} inputs is {}..{}; its record was changed, run the shard again",
                dir.display(),
                s.start,
                s.end,
                s.index,
                expected.start,
                expected.end
            );
        }
        let missing: Vec<String> = (1..=count).filter(|k| !by_index.contains_key(k)).map(|k| k.to_string()).collect();
        ensure!(
            missing.is_empty(),
            "shard{} {} of {count} {} missing: the merge needs every shard 1 to {count} of the run",
            if missing.len() > 1 { "s" } else { "" },
            missing.join(", "),
            if missing.len() > 1 { "are" } else { "is" }
        );
        shards.sort_by_key(|(_, record)| record.shard.index);
        Ok((Plan { shards }, first_args))
    }

    /// The shards' directories, in input order.
    pub fn directories(&self) -> Vec<String> {
        self.shards.iter().map(|(dir, _)| dir.display().to_string()).collect()
    }

    /// Refuses a merge whose model, data, labels or calibration files are not the shards'.
    pub fn check_provenance(&self, provenance: &serde_json::Value) -> Result<()> {
        let (dir, first) = &self.shards[0];
        same_files(&first.provenance, provenance).map_err(|why| {
            anyhow::anyhow!(
                "the files given now and the shards' files differ: {} {why}; merge with the files the shards ran on",
                dir.display()
            )
        })
    }

    /// The outputs and counters of the whole run, in input order, from the shards; with the ANN
    /// and SNN time summed over them. `inputs`, `labels`, `output_size` and `checkpoints` are the
    /// replayed run's, which the shards must match.
    pub fn results<F: Real + ReadableElement>(
        &self,
        inputs: usize,
        labels: Option<&[usize]>,
        output_size: usize,
        checkpoints: &[usize],
    ) -> Result<Merged<F>> {
        let total = self.shards[0].1.shard.inputs;
        ensure!(
            inputs == total,
            "the data given now holds {inputs} inputs, the shards {total}; merge with the data and --limit the shards ran on"
        );
        let populations = self.shards[0].1.counters.populations.len();
        let mut counters = Counters::new(populations, checkpoints.len());
        let mut ann = Vec::with_capacity(total * output_size);
        let mut outputs = vec![F::zero(); checkpoints.len() * total * output_size];
        let (mut ann_time, mut snn_time) = (0.0, 0.0);
        for (dir, record) in &self.shards {
            let s = &record.shard;
            ensure!(
                record.output_size == output_size && record.checkpoints == checkpoints,
                "{} holds {} outputs at checkpoints {:?}; the model converted now gives {output_size} at {checkpoints:?}",
                dir.display(),
                record.output_size,
                record.checkpoints
            );
            if let Some(labels) = labels {
                ensure!(
                    record.labels.as_deref() == Some(&labels[s.start..s.end]),
                    "{}: the labels of inputs {} to {} are not those the labels file gives now",
                    dir.display(),
                    s.start,
                    s.end - 1
                );
            }
            let c = &record.counters;
            ensure!(
                c.populations.len() == populations
                    && c.at_checkpoints.len() == checkpoints.len()
                    && c.at_checkpoints.iter().all(|k| k.len() == populations + 1),
                "{}: its counters are not of the network's {populations} populations at {} checkpoints",
                dir.display(),
                checkpoints.len()
            );
            counters.merge(c);
            let (shard_ann, shard_snn) = record.outputs::<F>(dir)?;
            ann.extend_from_slice(&shard_ann);
            let block = s.len() * output_size;
            for (k, values) in shard_snn.chunks_exact(block.max(1)).enumerate().take(checkpoints.len()) {
                let at = (k * total + s.start) * output_size;
                outputs[at..at + block].copy_from_slice(values);
            }
            ann_time += record.time_s.ann;
            snn_time += record.time_s.snn;
        }
        let seconds = |s: f64| Duration::try_from_secs_f64(s).unwrap_or_default();
        Ok(Merged {
            ann,
            ann_time: seconds(ann_time),
            result: SimulationResult {
                checkpoints: checkpoints.to_vec(),
                outputs,
                counters,
                inputs: total,
                output_size,
                work: Default::default(),
            },
            snn_time: seconds(snn_time),
        })
    }
}

/// The whole run's results put together from its shards.
pub(crate) struct Merged<F> {
    /// ANN outputs `[input][output]`.
    pub ann: Vec<F>,
    /// The shards' ANN time, summed.
    pub ann_time: Duration,
    /// SNN outputs and counters.
    pub result: SimulationResult<F>,
    /// The shards' SNN time, summed.
    pub snn_time: Duration,
}

/// The options a shard ran with, its relative paths taken from the shard's working directory
/// when that is not the current one.
fn replay(dir: &Path, record: &Record) -> Result<RunArgs> {
    let mut args = Replay::try_parse_from(&record.arguments)
        .map_err(|e| anyhow::anyhow!("{}: its options cannot be read again: {}", dir.display(), e.render()))?
        .args;
    let here = std::env::current_dir().ok().and_then(|d| d.canonicalize().ok());
    let there = record.working_directory.canonicalize().ok();
    if here.is_none() || here != there {
        for path in [&mut args.model, &mut args.data, &mut args.labels, &mut args.calibration].into_iter().flatten() {
            if path.is_relative() {
                *path = record.working_directory.join(&*path);
            }
        }
        let energy_file = record.working_directory.join(&args.energy_model);
        if Path::new(&args.energy_model).is_relative() && energy_file.is_file() {
            args.energy_model = energy_file.display().to_string();
        }
    }
    Ok(args)
}

/// The options that change results, one per line: everything but the input files (compared by
/// digest), the threads and what is written where.
fn identity(args: &RunArgs) -> String {
    let mut args = args.clone();
    (args.model, args.data, args.labels, args.calibration) = (None, None, None, None);
    (args.threads, args.json, args.force) = (None, false, false);
    (args.dump_outputs, args.dump_ann, args.report, args.shard, args.merge) = (None, None, None, None, None);
    format!("{args:#?}")
}

/// The first line where two identities differ, trimmed.
fn first_difference<'a>(a: &'a str, b: &'a str) -> Option<(&'a str, &'a str)> {
    let clean = |line: &'a str| line.trim().trim_end_matches(',');
    a.lines().zip(b.lines()).find(|(x, y)| x != y).map(|(x, y)| (clean(x), clean(y)))
}

/// Why two provenance records do not describe the same files (None: they do). Paths may differ;
/// sizes, digests and array names may not.
fn same_files(a: &serde_json::Value, b: &serde_json::Value) -> std::result::Result<(), String> {
    let (va, vb) = (&a["signgd_version"], &b["signgd_version"]);
    if va != vb {
        return Err(format!("were written by signgd {va} and {vb}"));
    }
    let empty = serde_json::Map::new();
    let files = |v: &serde_json::Value| v["files"].as_object().cloned().unwrap_or_else(|| empty.clone());
    let (fa, fb) = (files(a), files(b));
    for role in ["model", "data", "labels", "calibration"] {
        let key = |f: &serde_json::Map<String, serde_json::Value>| {
            f.get(role).map(|e| (e["sha256"].clone(), e["bytes"].clone(), e["array"].clone()))
        };
        let short = |f: &serde_json::Map<String, serde_json::Value>| {
            f.get(role)
                .and_then(|e| {
                    e["sha256"]
                        .as_str()
                        .map(|h| format!("{} (sha256 {}…)", e["path"].as_str().unwrap_or("?"), &h[..h.len().min(12)]))
                })
                .unwrap_or_else(|| format!("no {role} file"))
        };
        if key(&fa) != key(&fb) {
            return Err(format!("differ in the {role}: {} against {}", short(&fa), short(&fb)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_different_setting_is_named() {
        let a = "RunArgs {\n    timesteps: \"4\",\n    schedule: \"exp\",\n}";
        let b = "RunArgs {\n    timesteps: \"8\",\n    schedule: \"exp\",\n}";
        assert_eq!(first_difference(a, b), Some(("timesteps: \"4\"", "timesteps: \"8\"")));
        assert_eq!(first_difference(a, a), None);
    }

    #[test]
    fn files_are_compared_by_digest_not_path() {
        let entry = |path: &str, sha: &str| serde_json::json!({ "path": path, "bytes": 3, "sha256": sha });
        let record = |model| serde_json::json!({ "signgd_version": "1", "files": { "model": model } });
        assert!(same_files(&record(entry("a.onnx", "aa")), &record(entry("b/a.onnx", "aa"))).is_ok());
        let why = same_files(&record(entry("a.onnx", "aa")), &record(entry("a.onnx", "bb"))).unwrap_err();
        assert!(why.contains("differ in the model"), "{why}");
        let none = serde_json::json!({ "signgd_version": "1", "files": {} });
        let why = same_files(&record(entry("a.onnx", "aa")), &none).unwrap_err();
        assert!(why.contains("no model file"), "{why}");
    }
}
