//! `signgd tune`: the schedule chosen on held-out calibration inputs, the file it writes, and
//! `signgd run --tuned` reading it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use signgd::convert::{Preset, ReluNorm};
use signgd::data::{open_inputs, InputSource, LoadLimits};
use signgd::model::read_onnx;
use signgd::snn::{EncoderKind, GeluTarget};
use signgd::tune::{tune, TuneError, TuneOptions, TunedSettings};

fn fixture(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(relative)
}

fn signgd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_signgd")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

fn images(count: usize) -> Arc<dyn InputSource> {
    let limit = LoadLimits { max_samples: Some(count), ..LoadLimits::default() };
    Arc::from(open_inputs(&fixture("data/fashion-mnist-test-1000-images-idx3-ubyte.gz"), limit).unwrap())
}

fn options(schedules: &[&str], threads: usize) -> TuneOptions {
    TuneOptions {
        checkpoints: vec![4, 8],
        preset: Preset::Calibrated,
        relu_norm: ReluNorm::Element,
        encoder: EncoderKind::Exact,
        schedules: schedules.iter().map(|s| s.to_string()).collect(),
        gelu: vec![GeluTarget::Sigmoid, GeluTarget::Erf],
        held_out: 24,
        threads,
    }
}

#[test]
fn tuning_ranks_a_schedule_that_cannot_move_last_and_does_not_depend_on_threads() {
    let graph = read_onnx(&fixture("models/mlp.onnx"), None).unwrap();
    // `constant:0.0001` cannot take any estimate far from 0 in 8 steps: its outputs are the
    // readout's biases, so it agrees least with the ANN.
    let schedules = ["constant:0.0001", "exp:0.3:0.9", "exp:0.6:0.8"];
    let one_target = |threads| TuneOptions { gelu: vec![GeluTarget::Sigmoid], ..options(&schedules, threads) };
    let one = tune::<f32>(&graph, images(96), &one_target(1), &|_| {}).unwrap();
    let two = tune::<f32>(&graph, images(96), &one_target(2), &|_| {}).unwrap();
    assert_eq!(one.trials, two.trials);
    assert_eq!((one.fitted, one.held_out), (72, 24));
    // One GELU target: one conversion, one trial per schedule.
    assert_eq!(one.trials.len(), 3);
    assert_eq!(one.trials.last().unwrap().schedule, "constant:0.0001");
    // The best agrees with the ANN within one input's worth of the best agreement seen.
    let best = one.trials.iter().map(|t| t.score()).fold(0.0, f64::max);
    assert!(one.trials[0].score() >= best - 1.0 / 24.0 - 1e-12);
    assert!(one.trials[0].score() > one.trials[2].score());
    for trial in &one.trials {
        assert_eq!(trial.agreement.len(), 2);
        assert!(trial.agreement.iter().all(|a| (0.0..=1.0).contains(a)));
    }
}

#[test]
fn tuning_refuses_a_split_that_leaves_nothing_to_judge_or_calibrate() {
    let graph = read_onnx(&fixture("models/mlp.onnx"), None).unwrap();
    let mut all = options(&["exp:0.3:0.9"], 1);
    all.held_out = 16;
    let error = tune::<f32>(&graph, images(16), &all, &|_| {}).unwrap_err();
    assert!(matches!(error, TuneError::Options(_)), "{error}");
    assert!(error.to_string().contains("16 held-out input(s) out of 16"), "{error}");
    let mut vanishing = options(&["exp:0.1:0.01"], 1);
    vanishing.checkpoints = vec![64];
    let error = tune::<f32>(&graph, images(32), &vanishing, &|_| {}).unwrap_err();
    assert!(error.to_string().contains("underflows"), "{error}");
}

#[test]
fn run_reads_the_settings_tune_writes() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tuned.json");
    let out_arg = out.display().to_string();
    let model = fixture("models/mlp.onnx").display().to_string();
    let tuned = signgd(&[
        "tune",
        "--model",
        &model,
        "--timesteps",
        "8",
        "--schedules",
        "exp:0.3:0.9,exp:0.6:0.85,constant:0.0001",
        "--held-out",
        "32",
        "--threads",
        "2",
        "--out",
        &out_arg,
    ]);
    assert!(tuned.status.success(), "{}", String::from_utf8_lossy(&tuned.stderr));
    let stdout = String::from_utf8_lossy(&tuned.stdout);
    assert!(stdout.contains("224 inputs calibrate the conversion, the last 32 judge 6 candidate(s)"), "{stdout}");
    let settings = TunedSettings::read(&out).unwrap();
    assert_eq!(settings.preset, "calibrated");
    assert_eq!(settings.timesteps, [8]);
    // The MLP fixture has GELU neurons: both targets are tried with every schedule.
    assert_eq!(settings.trials.len(), 6);
    assert_eq!(settings.schedule, settings.trials[0].schedule);
    assert_ne!(settings.schedule, "constant:0.0001");
    assert_eq!(settings.model.sha256.len(), 64);

    let report = dir.path().join("report");
    let report_arg = report.display().to_string();
    let run = signgd(&[
        "run",
        "--model",
        &model,
        "--tuned",
        &out_arg,
        "--limit",
        "8",
        "--timesteps",
        "8",
        "--json",
        "--report",
        &report_arg,
    ]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let outcome: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(outcome["settings"]["schedule"], settings.schedule.as_str());
    assert_eq!(outcome["settings"]["preset"], "calibrated");
    assert_eq!(outcome["settings"]["encoder"], "exact");
    assert_eq!(outcome["settings"]["gelu"], settings.gelu.as_str());
    assert_eq!(outcome["settings"]["tuned"], out_arg.as_str());
    // The report names the dynamics and, per population, its scale and saturation.
    let markdown = std::fs::read_to_string(report.join("report.md")).unwrap();
    let dynamics = format!("preset `calibrated`, schedule `{}`, encoder `exact`", settings.schedule);
    assert!(markdown.contains(&dynamics), "{markdown}");
    assert!(markdown.contains("tuned by `signgd tune`"), "{markdown}");
    assert!(markdown.contains("| population | scaled | scale | saturated |"), "{markdown}");
    // GELU is scaled too: a neuron computing gelu(x) / m.
    assert!(markdown.contains("| node_gelu.unit | yes |"), "{markdown}");

    let both = signgd(&["run", "--model", &model, "--tuned", &out_arg, "--schedule", "exp:0.3:0.9"]);
    assert!(!both.status.success());
    assert!(String::from_utf8_lossy(&both.stderr).contains("cannot be used with"));
}

#[test]
fn a_file_that_is_not_tuned_settings_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("settings.json");
    std::fs::write(&bad, "{\"schedule\": \"exp:0.3:0.9\"}").unwrap();
    let model = fixture("models/mlp.onnx").display().to_string();
    let run = signgd(&["run", "--model", &model, "--tuned", &bad.display().to_string(), "--limit", "2"]);
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("settings.json is not a settings file written by `signgd tune`"), "{stderr}");
}

#[test]
fn a_failed_tuning_writes_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tuned.json");
    let model = fixture("models/mlp.onnx").display().to_string();
    let tuned = signgd(&[
        "tune",
        "--model",
        &model,
        "--timesteps",
        "8",
        "--schedules",
        "exp:0.3:oops",
        "--out",
        &out.display().to_string(),
    ]);
    assert!(!tuned.status.success());
    assert!(String::from_utf8_lossy(&tuned.stderr).contains("schedule `exp:0.3:oops`"));
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "a file was left behind");
}

#[test]
fn a_calibration_file_is_all_tuning_reads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tuned.json");
    let model = fixture("models/mlp.onnx").display().to_string();
    let calibration = fixture("data/fashion-mnist-train-1024-images-idx3-ubyte.gz").display().to_string();
    let missing = dir.path().join("no-such-data.npy").display().to_string();
    let tuned = signgd(&[
        "tune",
        "--model",
        &model,
        "--calibration",
        &calibration,
        "--data",
        &missing,
        "--limit",
        "64",
        "--held-out",
        "16",
        "--timesteps",
        "8",
        "--schedules",
        "exp:0.3:0.9",
        "--out",
        &out.display().to_string(),
    ]);
    assert!(tuned.status.success(), "{}", String::from_utf8_lossy(&tuned.stderr));
    let settings = TunedSettings::read(&out).unwrap();
    assert_eq!((settings.fitted, settings.held_out), (48, 16));
    assert!(settings.calibration.starts_with("first 64 of "), "{}", settings.calibration);
}

#[test]
fn the_bundled_tuned_settings_belong_to_the_bundled_models() {
    let files = [
        ("convnext", "convnext", &[32, 64][..]),
        ("mixer", "mixer", &[32, 64]),
        ("resmlp", "resmlp", &[32, 64]),
        ("attention", "attention", &[32, 64]),
        ("resnet-t32", "resnet", &[32]),
    ];
    for (name, model, timesteps) in files {
        let settings = TunedSettings::read(&fixture(&format!("tuned/{name}.json"))).unwrap();
        let model = signgd::provenance::digest(&fixture(&format!("models/{model}.onnx"))).unwrap();
        assert_eq!(settings.model.sha256, model.sha256, "{name}: tuned for another model");
        assert_eq!(settings.timesteps, timesteps, "{name}");
        assert_eq!(settings.preset, "calibrated", "{name}");
        assert_eq!(settings.schedule, settings.trials[0].schedule, "{name}");
    }
}
