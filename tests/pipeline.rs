//! The library's pipeline and the commands over it: `run`, `bench` and `feasibility` convert the
//! same network from the same arguments, and `signgd run --json` prints the library's outcome.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use signgd::pipeline::{execute, DataSpec, ModelSpec, NoProgress, Plan, Progress, Settings, SCHEMA_VERSION};

fn signgd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_signgd")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

fn json(args: &[&str]) -> serde_json::Value {
    let out = signgd(args);
    assert!(out.status.success(), "signgd {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn fixture(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(relative)
}

/// The fingerprints of the networks `run`, `bench` and `feasibility` convert from `common`.
fn fingerprints(common: &[&str], feasibility_only: &[&str]) -> [String; 3] {
    let run = json(&[&["run", "--timesteps", "4", "--json", "--fingerprint"][..], common].concat());
    let bench = json(&[&["bench", "--timesteps", "4", "--json", "--fingerprint"][..], common].concat());
    let feasibility = json(
        &[&["feasibility", "--target", "loihi", "--json", "--fingerprint"][..], common, feasibility_only].concat(),
    );
    [&run["network"]["fingerprint"], &bench["network_fingerprint"], &feasibility["network"]["fingerprint"]]
        .map(|f| f.as_str().expect("a fingerprint").to_string())
}

#[test]
fn run_bench_and_feasibility_convert_the_same_network() {
    // A ReLU network: its thresholds come from the calibration inputs, the first 256 of the data
    // for every command, however few inputs each evaluates.
    let common = ["--model", "fixtures/models/resnet.onnx", "--limit", "3", "--threads", "2"];
    let [run, bench, feasibility] = fingerprints(&common, &[]);
    assert_eq!(run.len(), 64, "{run}");
    assert_eq!(run, bench, "bench times another network than run converts");
    assert_eq!(run, feasibility, "feasibility maps another network than run converts");

    // Calibrated on other inputs (the last 300 of the data set), the network differs: the
    // fingerprint sees it.
    let dir = tempfile::tempdir().unwrap();
    let images = signgd::data::read_inputs(
        &fixture("data/fashion-mnist-test-1000-images-idx3-ubyte.gz"),
        signgd::data::LoadLimits::default(),
    )
    .unwrap();
    let tail = ndarray::Array3::from_shape_vec((300, 28, 28), images.values[700 * 784..].to_vec()).unwrap();
    let data = dir.path().join("tail.npy");
    ndarray_npy::write_npy(&data, &tail).unwrap();
    let data = data.display().to_string();
    let other = [&common[..], &["--data", &data]].concat();
    let [run_other, bench_other, feasibility_other] = fingerprints(&other, &[]);
    assert_ne!(run_other, run);
    assert_eq!((&bench_other, &feasibility_other), (&run_other, &run_other));
}

#[test]
fn run_and_feasibility_share_the_relu_normalisation() {
    let common = ["--model", "fixtures/models/resnet.onnx", "--limit", "2", "--threads", "1", "--relu-norm", "layer"];
    let run = json(&[&["run", "--timesteps", "4", "--json", "--fingerprint"][..], &common[..]].concat());
    let feasibility =
        json(&[&["feasibility", "--target", "speck", "--json", "--fingerprint"][..], &common[..]].concat());
    let model = ["--model", "fixtures/models/resnet.onnx", "--limit", "2", "--timesteps", "4"];
    let element = json(&[&["run", "--json", "--fingerprint"][..], &model[..]].concat());
    // Without the flag no fingerprint is computed.
    let plain = json(&[&["run", "--json"][..], &model[..]].concat());
    assert!(plain["network"].get("fingerprint").is_none(), "{}", plain["network"]);
    assert_eq!(run["network"]["fingerprint"], feasibility["network"]["fingerprint"]);
    assert_ne!(run["network"]["fingerprint"], element["network"]["fingerprint"]);
}

#[test]
fn run_prints_the_outcome_of_the_library_pipeline() {
    let model = fixture("models/mlp.onnx");
    let data = fixture("data/fashion-mnist-test-1000-images-idx3-ubyte.gz");
    let labels = fixture("data/fashion-mnist-test-1000-labels-idx1-ubyte.gz");
    let plan = Plan {
        model: ModelSpec::new(&model),
        data: DataSpec { labels: Some(labels.clone()), limit: Some(12), ..DataSpec::new(&data) },
        calibration: Default::default(),
        settings: Settings { checkpoints: vec![8, 16], threads: 3, ..Settings::default() },
    };
    let progress: Arc<dyn Progress> = Arc::new(NoProgress);
    let outcome = execute::<f32>(&plan, &progress, &mut ()).unwrap();
    // Through text as the command's output goes (serde_json's parser may round the last digit).
    let mut library: serde_json::Value =
        serde_json::from_str(&serde_json::to_string_pretty(&outcome).unwrap()).unwrap();
    let path = |p: &Path| p.display().to_string();
    let (model, data, labels) = (path(&model), path(&data), path(&labels));
    let args = ["run", "--model", &model, "--data", &data, "--labels", &labels, "--limit", "12"];
    let mut command = json(&[&args[..], &["--timesteps", "8,16", "--threads", "3", "--json"]].concat());
    assert_eq!(command["schema_version"], SCHEMA_VERSION);
    for timing in [&mut library, &mut command] {
        let object = timing.as_object_mut().unwrap();
        assert!(object.remove("time_s").is_some() && object.remove("images_per_s").is_some());
    }
    assert_eq!(library, command);
    // Accuracy from the labels, spikes from the simulation: a real run, not an empty record.
    assert_eq!(outcome.data.inputs, 12);
    assert!(outcome.ann_accuracy.unwrap() > 0.5 && outcome.checkpoints[1].spikes > 0, "{outcome:?}");
}

/// Counts the inputs each phase reports done.
#[derive(Default)]
struct Counting(std::sync::Mutex<Vec<(signgd::pipeline::Phase, usize, usize)>>);

impl Progress for Counting {
    fn start(&self, phase: signgd::pipeline::Phase, total: usize) {
        self.0.lock().unwrap().push((phase, total, 0));
    }
    fn advance(&self, phase: signgd::pipeline::Phase, done: usize) {
        let mut phases = self.0.lock().unwrap();
        let entry = phases.iter_mut().rev().find(|(p, _, _)| *p == phase).expect("advance after start");
        entry.2 += done;
    }
}

#[test]
fn progress_counts_every_input_of_every_phase() {
    use signgd::pipeline::Phase;
    let plan = Plan {
        model: ModelSpec::new(fixture("models/resnet.onnx")),
        data: DataSpec {
            limit: Some(5),
            ..DataSpec::new(fixture("data/fashion-mnist-test-1000-images-idx3-ubyte.gz"))
        },
        calibration: Default::default(),
        settings: Settings { checkpoints: vec![4], threads: 2, ..Settings::default() },
    };
    let counting = Arc::new(Counting::default());
    let progress: Arc<dyn Progress> = counting.clone();
    let outcome = execute::<f64>(&plan, &progress, &mut ()).unwrap();
    // Calibrated on the first 256 inputs however few are evaluated; 5 through the ANN and the SNN.
    let phases = counting.0.lock().unwrap().clone();
    assert_eq!(phases, vec![(Phase::Calibration, 256, 256), (Phase::Ann, 5, 5), (Phase::Snn, 5, 5)]);
    assert_eq!((outcome.settings.precision.as_str(), outcome.data.inputs), ("f64", 5));
    assert!(outcome.calibration.contains("first 256 inputs"), "{}", outcome.calibration);
}

#[test]
fn errors_name_the_file() {
    let missing = fixture("models/no-such-model.onnx");
    let plan = Plan {
        model: ModelSpec::new(&missing),
        data: DataSpec::new(fixture("data/fashion-mnist-test-1000-images-idx3-ubyte.gz")),
        calibration: Default::default(),
        settings: Settings::default(),
    };
    let progress: Arc<dyn Progress> = Arc::new(NoProgress);
    let error = execute::<f32>(&plan, &progress, &mut ()).unwrap_err().to_string();
    assert!(error.contains("no-such-model.onnx"), "{error}");
    // Labels that do not match the data: both files and both counts named.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("four.npy");
    ndarray_npy::write_npy(&data, &ndarray::Array3::<f64>::zeros((4, 28, 28))).unwrap();
    let labels = fixture("data/fashion-mnist-test-1000-labels-idx1-ubyte.gz");
    let plan = Plan {
        model: ModelSpec::new(fixture("models/mlp.onnx")),
        data: DataSpec { labels: Some(labels), ..DataSpec::new(&data) },
        ..plan
    };
    let error = execute::<f32>(&plan, &progress, &mut ()).unwrap_err().to_string();
    assert!(
        error.contains("1000 labels") && error.contains("four.npy holds 4 inputs") && error.contains("labels-idx1"),
        "{error}"
    );
}

#[test]
fn bench_counts_the_real_valued_products_as_kernel_work() {
    // ResMLP's relays carry real values: their products are multiply-accumulates the kernels do.
    let common = ["--model", "fixtures/models/resmlp.onnx", "--limit", "2", "--threads", "2"];
    let report = json(&[&["bench", "--timesteps", "4", "--json"][..], &common[..]].concat());
    let rate = |key: &str| report[key].as_f64().unwrap_or_else(|| panic!("{key} in {report}"));
    assert!(rate("real_macs_per_s") > 0.0, "{report}");
    let parts = rate("product_macs_per_s") + rate("delivered_events_per_s") + rate("real_macs_per_s");
    let total = rate("kernel_accumulates_per_s");
    assert!((parts - total).abs() <= 1e-9 * total, "{parts} vs {total}");
}
