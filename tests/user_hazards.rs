//! The hazards a new user meets: nothing of theirs is deleted, nothing silently wrong is
//! accepted, and every refusal says what to do.

use std::path::Path;
use std::process::{Command, Output};

fn signgd_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_signgd")).current_dir(dir).args(args).output().expect("run signgd")
}

fn signgd(args: &[&str]) -> Output {
    signgd_in(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

fn text(o: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn run_mlp(extra: &[&str]) -> Output {
    let mut args =
        vec!["run", "--model", "fixtures/models/mlp.onnx", "--limit", "8", "--timesteps", "8", "--threads", "2"];
    args.extend_from_slice(extra);
    signgd(&args)
}

#[test]
fn force_never_deletes_a_directory_that_is_not_a_report() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("thesis");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("draft.tex"), "chapter one").unwrap();
    let out = run_mlp(&["--report", dir.to_str().unwrap(), "--force"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(stderr(&out).contains("draft.tex"), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(dir.join("draft.tex")).unwrap(), "chapter one");

    // An empty directory is no report either.
    let empty = scratch.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = run_mlp(&["--report", empty.to_str().unwrap(), "--force"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("report.json"), "{}", text(&out));

    // A previous report is replaced; once a foreign file joins it, it is not.
    let report = scratch.path().join("report");
    assert!(run_mlp(&["--report", report.to_str().unwrap()]).status.success());
    assert!(run_mlp(&["--report", report.to_str().unwrap(), "--force"]).status.success());
    std::fs::write(report.join("notes.txt"), "mine").unwrap();
    let out = run_mlp(&["--report", report.to_str().unwrap(), "--force"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("notes.txt"), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(report.join("notes.txt")).unwrap(), "mine");
    assert!(report.join("report.json").is_file());
}

/// `n` Fashion-MNIST images from the bundled subset, as float32 values times `factor`, in a
/// .npy file of shape [n, 1, 28, 28].
fn fixture_images_npy(dir: &Path, name: &str, n: usize, factor: f64) -> std::path::PathBuf {
    use ndarray_npy::WriteNpyExt;
    let images = signgd::data::read_inputs(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/data/fashion-mnist-test-1000-images-idx3-ubyte.gz"),
        signgd::data::LoadLimits { max_samples: Some(n), ..Default::default() },
    )
    .unwrap();
    // Times 255 the values are the stored bytes again: whole numbers.
    let values: Vec<f32> =
        images.values.iter().map(|&v| if factor == 255.0 { (v * factor).round() } else { v * factor } as f32).collect();
    let array = ndarray::Array4::from_shape_vec((n, 1, 28, 28), values).unwrap();
    let path = dir.join(name);
    array.write_npy(std::fs::File::create(&path).unwrap()).unwrap();
    path
}

#[test]
fn unscaled_pixels_and_out_of_range_inputs_are_warned() {
    let scratch = tempfile::tempdir().unwrap();
    let raw = fixture_images_npy(scratch.path(), "raw.npy", 8, 255.0);
    let out = run_mlp(&["--data", raw.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stderr(&out).contains("0–255 pixel values") && stderr(&out).contains("raw.npy"), "{}", text(&out));

    // Calibrated on [0, 1] data, evaluated on ten times larger inputs.
    let unit = fixture_images_npy(scratch.path(), "unit.npy", 8, 1.0);
    let large = fixture_images_npy(scratch.path(), "large.npy", 8, 10.0);
    let out = run_mlp(&["--data", large.to_str().unwrap(), "--calibration", unit.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stderr(&out).contains("the largest calibration input"), "{}", text(&out));

    // Data scaled like the calibration set draw no warning.
    let out = run_mlp(&["--data", unit.to_str().unwrap(), "--calibration", unit.to_str().unwrap()]);
    assert!(!stderr(&out).contains("WARN"), "{}", text(&out));
}

#[test]
fn calibration_on_the_evaluated_data_and_a_short_data_set_are_said() {
    let scratch = tempfile::tempdir().unwrap();
    let resnet = ["run", "--model", "fixtures/models/resnet.onnx", "--timesteps", "4", "--threads", "2"];
    let out = signgd(&[&resnet[..], &["--limit", "8"]].concat());
    assert!(out.status.success(), "{}", text(&out));
    assert!(stderr(&out).contains("leaks") && stderr(&out).contains("--calibration FILE"), "{}", text(&out));
    let unit = fixture_images_npy(scratch.path(), "unit.npy", 8, 1.0);
    let out =
        signgd(&[&resnet[..], &["--data", unit.to_str().unwrap(), "--calibration", unit.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{}", text(&out));
    assert!(!stderr(&out).contains("leaks"), "{}", text(&out));

    let out = signgd(&[&resnet[..], &["--data", unit.to_str().unwrap(), "--limit", "9999"]].concat());
    assert!(out.status.success(), "{}", text(&out));
    assert!(stderr(&out).contains("--limit 9999") && stderr(&out).contains("holds only 8 inputs"), "{}", text(&out));
}

#[test]
fn defaults_are_found_from_any_directory() {
    let elsewhere = tempfile::tempdir().unwrap();
    let out = signgd_in(elsewhere.path(), &["run", "--limit", "2", "--timesteps", "2", "--threads", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("convnext.onnx"), "{}", text(&out));
    let out = signgd_in(elsewhere.path(), &["bench", "--limit", "1", "--timesteps", "2", "--threads", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    let mlp = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/models/mlp.onnx");
    let out = signgd_in(elsewhere.path(), &["feasibility", "--model", mlp.to_str().unwrap(), "--target", "loihi"]);
    assert!(out.status.success(), "{}", text(&out));
    // A missing file is named once, with the reason once.
    let out = signgd_in(elsewhere.path(), &["bench", "--data", "missing.npy"]);
    assert!(!out.status.success());
    assert_eq!(stderr(&out).matches("No such file").count(), 1, "{}", text(&out));
}

#[test]
fn log_levels_show_phases_and_passes() {
    let out = Command::new(env!("CARGO_BIN_EXE_signgd"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "--model", "fixtures/models/mlp.onnx", "--limit", "4", "--timesteps", "4", "--threads", "2"])
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let log = stderr(&out);
    for needle in [
        "read fixtures/models/mlp.onnx",
        "pass layer normalisation",
        "population",
        "conversion",
        "ANN evaluation",
        "SNN simulation",
        "seconds=",
    ] {
        assert!(log.contains(needle), "`{needle}` missing from the debug log:\n{log}");
    }
    let quiet = run_mlp(&[]);
    assert!(!stderr(&quiet).contains("pass layer"), "{}", text(&quiet));
}

#[test]
fn results_carry_digests_intervals_and_a_test_against_the_ann() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("report");
    let out = signgd(&[
        "run",
        "--model",
        "fixtures/models/mlp.onnx",
        "--limit",
        "40",
        "--timesteps",
        "4,16",
        "--threads",
        "2",
        "--json",
        "--report",
        dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let provenance = &json["provenance"];
    assert_eq!(provenance["signgd_version"], env!("CARGO_PKG_VERSION"));
    for (role, file) in [
        ("model", "fixtures/models/mlp.onnx"),
        ("data", "fixtures/data/fashion-mnist-test-1000-images-idx3-ubyte.gz"),
        ("labels", "fixtures/data/fashion-mnist-test-1000-labels-idx1-ubyte.gz"),
    ] {
        let expected = signgd::provenance::digest(&root.join(file)).unwrap();
        assert_eq!(provenance["files"][role]["sha256"], expected.sha256.as_str(), "{role}");
        assert_eq!(provenance["files"][role]["bytes"], expected.bytes, "{role}");
    }
    let ann = json["ann_accuracy"].as_f64().unwrap();
    let ann_ci = &json["ann_accuracy_ci95"];
    assert!(ann_ci["low"].as_f64().unwrap() < ann && ann < ann_ci["high"].as_f64().unwrap(), "{ann_ci}");
    for row in json["checkpoints"].as_array().unwrap() {
        let snn = row["snn_accuracy"].as_f64().unwrap();
        let ci = &row["snn_accuracy_ci95"];
        assert!(ci["low"].as_f64().unwrap() <= snn && snn <= ci["high"].as_f64().unwrap(), "{row}");
        // The discordant counts of McNemar's test make up the difference in correct inputs.
        let test = &row["mcnemar_vs_ann"];
        let difference = test["first_only"].as_i64().unwrap() - test["second_only"].as_i64().unwrap();
        assert_eq!(difference, ((snn - ann) * 40.0).round() as i64, "{row}");
        let p = test["p_value"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p), "{row}");
    }
    // The report holds the same, in JSON and HTML.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(report["run"]["provenance"], *provenance);
    assert_eq!(report["accuracy"]["checkpoints"][1]["mcnemar_vs_ann"], json["checkpoints"][1]["mcnemar_vs_ann"]);
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(
        html.contains("95% CI")
            && html.contains("McNemar")
            && html.contains(provenance["files"]["model"]["sha256"].as_str().unwrap())
    );
    // And the text output.
    let out = run_mlp(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("95% CI") && stdout.contains("McNemar p") && stdout.contains("provenance"), "{stdout}");
}

#[test]
fn inspect_without_data_does_not_claim_a_calibration() {
    let out = signgd(&["inspect", "--model", "fixtures/models/resnet.onnx"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("calibration input(s)") && stdout.contains("no calibration data"), "{stdout}");
}

#[test]
fn ops_lists_every_supported_operator() {
    let out = signgd(&["ops"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for op in signgd::model::operators::OPERATORS {
        assert!(stdout.lines().any(|l| l.split_whitespace().next() == Some(op.name)), "{} missing:\n{stdout}", op.name);
    }
    assert!(stdout.contains("HardSwish") && stdout.contains("Clip"));
}

#[test]
fn bench_times_the_network_run_converts() {
    // Both calibrate on the first 256 inputs of the data, however few they simulate.
    let common =
        ["--model", "fixtures/models/resnet.onnx", "--limit", "4", "--timesteps", "8", "--threads", "2", "--json"];
    let bench = signgd(&[&["bench"][..], &common[..]].concat());
    let run = signgd(&[&["run"][..], &common[..]].concat());
    assert!(bench.status.success() && run.status.success(), "{}\n{}", text(&bench), text(&run));
    let bench: serde_json::Value = serde_json::from_slice(&bench.stdout).unwrap();
    let run: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(bench["calibration_inputs"], 256);
    assert_eq!(bench["synaptic_events"], run["checkpoints"][0]["synaptic_events"]);
}

#[test]
fn feasibility_and_run_count_the_same_neurons() {
    let feasibility = signgd(&["feasibility", "--model", "fixtures/models/mlp.onnx", "--target", "loihi", "--json"]);
    let run = run_mlp(&["--json"]);
    assert!(feasibility.status.success() && run.status.success(), "{}\n{}", text(&feasibility), text(&run));
    let feasibility: serde_json::Value = serde_json::from_slice(&feasibility.stdout).unwrap();
    let run: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    // The MLP fixture has relays; neither counts them as neurons.
    assert!(run["network"]["relays"].as_u64().unwrap() > 0);
    for key in ["neurons", "relays", "populations"] {
        assert_eq!(feasibility["network"][key], run["network"][key], "{key}");
    }
}
