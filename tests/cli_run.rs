//! `signgd run` end to end: a tiny ONNX model built in the test, small data files, the error
//! cases, thread-count independence of the dumped outputs, and the JSON report.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ndarray::{Array1, Array2, Array3};
use ndarray_npy::{read_npy, write_npy};
use signgd::model::onnx::builder::{attr_i, encode, graph, model, node, tensor_f32, value_info_fixed};

const INPUTS: usize = 8;

/// `x [1,4] → Gemm → ReLU → Gemm → y [1,3]`.
fn tiny_model(path: &Path) {
    let w1: Vec<f32> = (0..20).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.15).collect();
    let b1: Vec<f32> = (0..5).map(|i| 0.05 * i as f32 - 0.1).collect();
    let w2: Vec<f32> = (0..15).map(|i| ((i * 5 % 7) as f32 - 3.0) * 0.2).collect();
    let b2 = vec![0.1f32, -0.05, 0.0];
    let g = graph(
        vec![
            node("Gemm", &["x", "w1", "b1"], &["h"], vec![attr_i("transB", 1)]),
            node("Relu", &["h"], &["r"], vec![]),
            node("Gemm", &["r", "w2", "b2"], &["y"], vec![attr_i("transB", 1)]),
        ],
        vec![value_info_fixed("x", &[1, 4])],
        vec![value_info_fixed("y", &[1, 3])],
        vec![
            tensor_f32("w1", &[5, 4], &w1),
            tensor_f32("b1", &[5], &b1),
            tensor_f32("w2", &[3, 5], &w2),
            tensor_f32("b2", &[3], &b2),
        ],
    );
    std::fs::write(path, encode(&model(g, 13))).unwrap();
}

/// A scratch directory with `model.onnx`, `data.npy` ([8, 4]) and `labels.npy` ([8]).
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        tiny_model(&dir.path().join("model.onnx"));
        let data = Array2::from_shape_fn((INPUTS, 4), |(i, j)| ((i * 3 + j * 5) % 9) as f64 / 9.0);
        write_npy(dir.path().join("data.npy"), &data).unwrap();
        let labels = Array1::from_shape_fn(INPUTS, |i| (i % 3) as i64);
        write_npy(dir.path().join("labels.npy"), &labels).unwrap();
        Fixture { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `signgd run` with the fixture's model, data and labels plus `extra`, which may
    /// override any of them (a later option replaces the earlier one only where clap allows; so
    /// the defaults are only added when `extra` does not name the option).
    fn run(&self, extra: &[&str]) -> Output {
        let mut args: Vec<String> = vec!["run".into()];
        for (option, file) in [("--model", "model.onnx"), ("--data", "data.npy"), ("--labels", "labels.npy")] {
            if !extra.contains(&option) {
                args.push(option.into());
                args.push(self.path(file).display().to_string());
            }
        }
        if !extra.contains(&"--timesteps") {
            args.extend(["--timesteps".into(), "1-3,8".into()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        Command::new(env!("CARGO_BIN_EXE_signgd")).args(&args).current_dir(self.dir.path()).output().unwrap()
    }

    /// Names of every file in the directory.
    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs with `extra` plus both dump options and checks: non-zero exit, a one-line message
/// containing every one of `needles`, no panic, and no file written.
fn assert_refused(f: &Fixture, extra: &[&str], needles: &[&str]) {
    let before = f.files();
    let out_path = f.path("out.npy").display().to_string();
    let ann_path = f.path("ann.npy").display().to_string();
    let mut args = extra.to_vec();
    args.extend(["--dump-outputs", &out_path, "--dump-ann", &ann_path]);
    let output = f.run(&args);
    let message = stderr(&output);
    assert!(!output.status.success(), "{extra:?} succeeded: {}", String::from_utf8_lossy(&output.stdout));
    assert_eq!(output.status.code(), Some(1), "{extra:?}: {message}");
    assert!(!message.contains("panicked"), "{extra:?}: {message}");
    assert_eq!(message.trim_end().lines().count(), 1, "{extra:?}: not one line: {message}");
    for needle in needles {
        assert!(message.contains(needle), "{extra:?}: `{needle}` not in: {message}");
    }
    assert_eq!(f.files(), before, "{extra:?} wrote files");
}

#[test]
fn refuses_missing_files() {
    let f = Fixture::new();
    assert_refused(&f, &["--model", "no-such-model.onnx"], &["no-such-model.onnx"]);
    assert_refused(&f, &["--data", "no-such-data.npy"], &["no-such-data.npy"]);
    assert_refused(&f, &["--labels", "no-such-labels.npy"], &["no-such-labels.npy"]);
    assert_refused(&f, &["--calibration", "no-such-calibration.npy"], &["no-such-calibration.npy"]);
}

#[test]
fn refuses_a_model_beyond_the_size_limit() {
    let f = Fixture::new();
    assert_refused(&f, &["--max-model-elements", "10"], &["limit of 10 elements", "--max-model-elements"]);
}

#[test]
fn refuses_data_of_the_wrong_shape() {
    let f = Fixture::new();
    write_npy(f.path("wide.npy"), &Array2::<f64>::zeros((INPUTS, 5))).unwrap();
    let wide = f.path("wide.npy").display().to_string();
    assert_refused(&f, &["--data", &wide], &["wide.npy", "does not fit"]);
    assert_refused(&f, &["--calibration", &wide], &["wide.npy", "does not fit"]);
}

#[test]
fn refuses_a_label_count_mismatch() {
    let f = Fixture::new();
    write_npy(f.path("seven.npy"), &Array1::<i64>::zeros(7)).unwrap();
    let seven = f.path("seven.npy").display().to_string();
    assert_refused(&f, &["--labels", &seven], &["seven.npy", "7 labels", "8 inputs"]);
    // After --limit the counts agree.
    let output = f.run(&["--labels", &seven, "--limit", "7"]);
    assert!(output.status.success(), "{}", stderr(&output));
    // A label beyond the model's classes.
    write_npy(f.path("big.npy"), &Array1::from_elem(INPUTS, 3i64)).unwrap();
    let big = f.path("big.npy").display().to_string();
    assert_refused(&f, &["--labels", &big], &["big.npy", "label 3"]);
}

#[test]
fn refuses_bad_settings() {
    let f = Fixture::new();
    assert_refused(&f, &["--threads", "0"], &["--threads"]);
    for bad in ["0", "5-2", "abc", "1,,2"] {
        assert_refused(&f, &["--timesteps", bad], &["--timesteps", bad]);
    }
    // The step size of exp:0.15:0.5 underflows to 0 in f32 at step 149.
    assert_refused(&f, &["--schedule", "exp:0.15:0.5", "--timesteps", "200"], &["checkpoint 200", "beyond"]);
    assert_refused(&f, &["--schedule", "nonsense"], &["--schedule", "nonsense"]);
    assert_refused(&f, &["--schedule", "exp:0.15:1.5"], &["--schedule"]);
    assert_refused(&f, &["--limit", "0"], &["--limit"]);
}

#[test]
fn refuses_dumps_into_a_missing_directory() {
    let f = Fixture::new();
    let output = f.run(&["--dump-outputs", "missing-dir/out.npy"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("missing-dir"), "{}", stderr(&output));
}

#[test]
fn thread_count_does_not_change_the_outputs() {
    let f = Fixture::new();
    let mut dumps = Vec::new();
    for threads in ["1", "2", "3"] {
        let out = format!("out{threads}.npy");
        let ann = format!("ann{threads}.npy");
        let output = f.run(&["--threads", threads, "--dump-outputs", &out, "--dump-ann", &ann]);
        assert!(output.status.success(), "{}", stderr(&output));
        dumps.push((std::fs::read(f.path(&out)).unwrap(), std::fs::read(f.path(&ann)).unwrap()));
    }
    assert_eq!(dumps[0], dumps[1]);
    assert_eq!(dumps[0], dumps[2]);
    // No temporary files are left behind.
    assert!(f.files().iter().all(|n| !n.contains("tmp")), "{:?}", f.files());

    let outputs: Array3<f32> = read_npy(f.path("out1.npy")).unwrap();
    assert_eq!(outputs.shape(), &[4, INPUTS, 3]);
    let ann: Array2<f32> = read_npy(f.path("ann1.npy")).unwrap();
    assert_eq!(ann.shape(), &[INPUTS, 3]);

    // f64 dumps are f64.
    let output = f.run(&["--precision", "f64", "--dump-outputs", "out64.npy", "--timesteps", "4"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let outputs: Array3<f64> = read_npy(f.path("out64.npy")).unwrap();
    assert_eq!(outputs.shape(), &[1, INPUTS, 3]);
}

#[test]
fn json_report_has_the_fields() {
    let f = Fixture::new();
    let output = f.run(&["--json", "--threads", "2"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("stdout is one JSON object");
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["data"]["inputs"], INPUTS);
    assert_eq!(report["data"]["scaled_from_u8"], false);
    assert_eq!(report["settings"]["threads"], 2);
    assert_eq!(report["settings"]["schedule"], "exp:0.15:0.95");
    assert_eq!(report["settings"]["encoder"], "float");
    assert_eq!(report["settings"]["neuron"], "signgd");
    assert_eq!(report["settings"]["precision"], "f32");
    assert_eq!(report["network"]["populations"], 1);
    assert_eq!(report["network"]["neurons"], 5);
    assert!(report["calibration"].as_str().unwrap().contains("first 8 inputs"));
    assert!(report["ann_accuracy"].is_number());
    let rows = report["checkpoints"].as_array().unwrap();
    let steps: Vec<u64> = rows.iter().map(|r| r["timesteps"].as_u64().unwrap()).collect();
    assert_eq!(steps, vec![1, 2, 3, 8]);
    for row in rows {
        for field in ["snn_accuracy", "agreement", "mean_abs_diff"] {
            let x = row[field].as_f64().unwrap();
            assert!((0.0..=100.0).contains(&x), "{field} = {x}");
        }
        assert!(row["spikes"].is_u64());
    }
    for field in ["conversion", "ann", "snn"] {
        assert!(report["time_s"][field].is_number());
    }
}

#[test]
fn text_report_and_variants() {
    let f = Fixture::new();
    // Without labels: no accuracy, but agreement with the ANN. Paths relative to the directory.
    let args = ["run", "--model", "model.onnx", "--data", "data.npy", "--timesteps", "2,16"];
    let output = Command::new(env!("CARGO_BIN_EXE_signgd")).args(args).current_dir(f.dir.path()).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8(output.stdout.clone()).unwrap();
    assert!(text.contains("ANN accuracy -"), "{text}");
    assert!(text.contains("agree w/ ANN"), "{text}");
    assert!(text.contains("images/s"), "{text}");
    // Only warnings (here: calibration on the evaluated data), no progress bar when stderr is piped.
    assert!(
        stderr(&output).lines().all(|l| l.trim_start().starts_with("WARN")),
        "no progress bar when stderr is piped: {}",
        stderr(&output)
    );

    // IF neurons on a ReLU network, the other encoders, a calibration file, f64.
    let calibration = f.path("data.npy").display().to_string();
    for extra in [
        vec!["--neuron", "if"],
        vec!["--encoder", "spike"],
        vec!["--encoder", "exact", "--schedule", "inverse:0.5"],
        vec!["--calibration", &calibration, "--precision", "f64", "--gelu", "erf"],
    ] {
        let output = f.run(&extra);
        assert!(output.status.success(), "{extra:?}: {}", stderr(&output));
        let text = String::from_utf8(output.stdout).unwrap();
        assert!(text.contains("SNN acc"), "{text}");
    }
}

/// With the repository's fixtures: the default data (uint8 IDX) and a GELU network that IF
/// neurons refuse, naming the populations.
#[test]
fn fixture_model() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = root.join("fixtures/models/mlp.onnx");
    let data = root.join("fixtures/data/fashion-mnist-test-1000-images-idx3-ubyte.gz");
    assert!(
        model.exists() && data.exists(),
        "fixtures/models/mlp.onnx and the Fashion-MNIST subset are part of the repository"
    );
    let run = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_signgd"))
            .args(["run", "--model", "fixtures/models/mlp.onnx", "--limit", "4", "--timesteps", "2,4"])
            .args(extra)
            .current_dir(root)
            .output()
            .unwrap()
    };
    let output = run(&["--json", "--threads", "2"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["data"]["scaled_from_u8"], true);
    assert!(report["data"]["labels"].as_str().unwrap().contains("labels"));
    assert!(report["ann_accuracy"].is_number());

    let output = run(&["--neuron", "if"]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("--neuron if") && message.contains("not ReLU"), "{message}");
}
