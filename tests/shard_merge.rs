//! `signgd run --shard K/N` and `signgd merge`: shards merged give the report the unsharded run
//! writes (every count, accuracy, interval, test and energy figure), on 1 and 2 threads; merges of
//! shards that do not make up one run are refused, naming the problem.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// Inputs of the runs: 31, so that the three shards hold 11, 10 and 10.
const LIMIT: &str = "31";

fn fixture(relative: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative).display().to_string()
}

/// `signgd ARGS` in `dir`, without any job-array variables of the environment.
fn signgd(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_signgd"));
    command.args(args).current_dir(dir);
    for var in [
        "SLURM_ARRAY_TASK_ID",
        "SLURM_ARRAY_TASK_MIN",
        "SLURM_ARRAY_TASK_MAX",
        "SLURM_ARRAY_TASK_COUNT",
        "JOB_COMPLETION_INDEX",
    ] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    command.output().unwrap()
}

fn ok(output: Output) -> Output {
    assert!(
        output.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn refused(output: Output) -> String {
    assert!(!output.status.success(), "succeeded: {}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `signgd run` on the MLP fixture with `extra` options, writing the report `report`.
fn run(dir: &Path, report: &str, extra: &[&str]) -> Output {
    run_env(dir, report, extra, &[])
}

fn run_env(dir: &Path, report: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let model = fixture("fixtures/models/mlp.onnx");
    let mut args = vec!["run", "--limit", LIMIT, "--raster-input", "15"];
    for (option, default) in [("--model", model.as_str()), ("--timesteps", "2,4,6")] {
        if !extra.contains(&option) {
            args.extend([option, default]);
        }
    }
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--report", report]);
    signgd(dir, &args, env)
}

/// `report.json` without what differs between runs of the same result: timings, where the
/// report went, the shard fields.
fn comparable(dir: &Path) -> Value {
    let mut report: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    let run = report["run"].as_object_mut().unwrap();
    for key in ["time_s", "images_per_s", "report", "merged_from", "shard"] {
        run.remove(key);
    }
    report
}

/// `report.html` without the rows of the settings table that hold timings or the merged shards.
fn html_without_timings(dir: &Path) -> String {
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    html.lines()
        .filter(|l| !["time_s.", "images_per_s", "merged_from"].iter().any(|k| l.contains(&format!(">{k}"))))
        .collect::<Vec<_>>()
        .join("\n")
}

fn read_json(path: PathBuf) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn three_shards_merge_into_the_unsharded_report_on_one_and_two_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut merged_reports = Vec::new();
    for threads in ["1", "2"] {
        let whole = format!("whole-{threads}");
        ok(run(dir, &whole, &["--threads", threads]));
        for k in 1..=3 {
            ok(run(dir, &format!("shard{k}-{threads}"), &["--threads", threads, "--shard", &format!("{k}/3")]));
        }
        let merged = format!("merged-{threads}");
        let shards: Vec<String> = [3, 1, 2].iter().map(|k| format!("shard{k}-{threads}")).collect();
        let mut args = vec!["merge"];
        args.extend(shards.iter().map(String::as_str));
        args.extend(["--report", &merged]);
        let output = ok(signgd(dir, &args, &[]));
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains(&format!("3 shards: shard1-{threads}, shard2-{threads}, shard3-{threads}")), "{text}");

        // The shards: 11, 10 and 10 of the 31 inputs, in order.
        let slices: Vec<(u64, u64, u64)> = (1..=3)
            .map(|k| {
                let record = read_json(dir.join(format!("shard{k}-{threads}/shard.json")));
                let s = &record["shard"];
                (s["start"].as_u64().unwrap(), s["end"].as_u64().unwrap(), s["inputs"].as_u64().unwrap())
            })
            .collect();
        assert_eq!(slices, vec![(0, 11, 31), (11, 21, 31), (21, 31, 31)]);
        let shard_reports: Vec<Value> =
            (1..=3).map(|k| read_json(dir.join(format!("shard{k}-{threads}/report.json")))).collect();
        assert_eq!(shard_reports.iter().map(|r| r["inputs"].as_u64().unwrap()).collect::<Vec<_>>(), vec![11, 10, 10]);

        let (whole, merged) = (dir.join(&whole), dir.join(&merged));
        let merged_report = comparable(&merged);
        assert_eq!(comparable(&whole), merged_report, "report.json on {threads} threads");
        // The counts are the shards' sums, checkpoint by checkpoint.
        for k in 0..3 {
            let sum =
                |key: &str| shard_reports.iter().map(|r| r["totals"][k]["total"][key].as_u64().unwrap()).sum::<u64>();
            for key in ["spikes", "synaptic_events", "dense_macs", "neuron_updates"] {
                assert_eq!(
                    merged_report["totals"][k]["total"][key].as_u64().unwrap(),
                    sum(key),
                    "{key} at checkpoint {k}"
                );
            }
        }
        // The ANN's accuracy is the shards' correct inputs over all inputs.
        let correct: f64 =
            shard_reports.iter().map(|r| r["accuracy"]["ann"].as_f64().unwrap() * r["inputs"].as_f64().unwrap()).sum();
        assert_eq!(merged_report["accuracy"]["ann"].as_f64().unwrap(), correct.round() / 31.0);
        assert_eq!(merged_report["observation"]["input"], 15);
        for file in ["populations.csv", "accuracy.csv", "layers.csv", "report.md"] {
            let read = |d: &Path| std::fs::read_to_string(d.join(file)).unwrap();
            assert_eq!(read(&whole), read(&merged), "{file} on {threads} threads");
        }
        assert_eq!(html_without_timings(&whole), html_without_timings(&merged), "report.html on {threads} threads");

        // `signgd report` prints a merged report as the unsharded one.
        let summary = |d: &Path| ok(signgd(dir, &["report", d.to_str().unwrap()], &[])).stdout;
        assert_eq!(summary(&whole), summary(&merged));
        merged_reports.push(merged_report);
    }
    // And the thread count changes nothing but itself.
    merged_reports[1]["run"]["settings"]["threads"] = 1.into();
    assert_eq!(merged_reports[0], merged_reports[1]);
}

#[test]
fn shards_that_do_not_make_up_one_run_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for k in 1..=3 {
        ok(run(dir, &format!("s{k}"), &["--threads", "1", "--shard", &format!("{k}/3")]));
    }
    ok(run(dir, "t2", &["--threads", "1", "--shard", "2/3", "--timesteps", "2,4,8"]));
    ok(run(dir, "half", &["--threads", "1", "--shard", "2/2"]));
    ok(run(dir, "whole", &["--threads", "1"]));
    let vgg = fixture("fixtures/models/vgg.onnx");
    ok(run(dir, "vgg", &["--threads", "1", "--shard", "2/3", "--model", &vgg]));

    let merge = |shards: &[&str]| {
        let mut args = vec!["merge"];
        args.extend_from_slice(shards);
        args.extend(["--report", "out"]);
        let error = refused(signgd(dir, &args, &[]));
        assert!(!dir.join("out").exists(), "a refused merge wrote its report");
        error
    };
    let error = merge(&["s1", "s2", "s2", "s3"]);
    assert!(error.contains("shard 2/3 is given twice, as s2 and s2") && error.contains("overlap"), "{error}");
    let error = merge(&["s1", "s3"]);
    assert!(error.contains("shard 2 of 3 is missing"), "{error}");
    let error = merge(&["s1"]);
    assert!(error.contains("shards 2, 3 of 3 are missing"), "{error}");
    let error = merge(&["s1", "t2", "s3"]);
    assert!(
        error.contains("t2 and s1 ran with different settings") && error.contains("timesteps: \"2,4,8\""),
        "{error}"
    );
    let error = merge(&["s1", "vgg", "s3"]);
    assert!(error.contains("vgg and s1 differ in the model") && error.contains("vgg.onnx"), "{error}");
    let error = merge(&["s1", "half", "s3"]);
    assert!(error.contains("half is shard 2/2 but s1 is shard 1/3"), "{error}");
    let error = merge(&["s1", "whole", "s3"]);
    assert!(error.contains("whole is not a shard's report") && error.contains("--shard K/N"), "{error}");
    let error = merge(&["s1", "missing-dir", "s3"]);
    assert!(error.contains("missing-dir is not a directory"), "{error}");

    // A shard whose outputs were replaced by another's is refused by shape.
    std::fs::copy(dir.join("s1/snn.npy"), dir.join("s2/snn.npy")).unwrap();
    let error = merge(&["s1", "s2", "s3"]);
    assert!(error.contains("s2/snn.npy has shape [3, 11, 10] but the shard holds [3, 10, 10]"), "{error}");
}

#[test]
fn auto_shards_come_from_slurm_and_kubernetes_job_arrays() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let slurm = [
        ("SLURM_ARRAY_TASK_ID", "3"),
        ("SLURM_ARRAY_TASK_MIN", "1"),
        ("SLURM_ARRAY_TASK_MAX", "4"),
        ("SLURM_ARRAY_TASK_COUNT", "4"),
    ];
    ok(run_env(dir, "slurm", &["--shard", "auto"], &slurm));
    let shard = read_json(dir.join("slurm/shard.json"))["shard"].clone();
    assert_eq!((shard["index"].as_u64(), shard["count"].as_u64()), (Some(3), Some(4)));
    // 31 inputs in 4 shards: 8, 8, 8, 7.
    assert_eq!((shard["start"].as_u64(), shard["end"].as_u64()), (Some(16), Some(24)));

    ok(run_env(dir, "k8s", &["--shard", "auto/3"], &[("JOB_COMPLETION_INDEX", "0")]));
    let shard = read_json(dir.join("k8s/shard.json"))["shard"].clone();
    assert_eq!((shard["index"].as_u64(), shard["start"].as_u64(), shard["end"].as_u64()), (Some(1), Some(0), Some(11)));

    let error = refused(run_env(dir, "none", &["--shard", "auto"], &[]));
    assert!(error.contains("SLURM_ARRAY_TASK_ID") && error.contains("JOB_COMPLETION_INDEX"), "{error}");
    let error = refused(run_env(dir, "k8s-no-count", &["--shard", "auto"], &[("JOB_COMPLETION_INDEX", "1")]));
    assert!(error.contains("--shard auto/N"), "{error}");
    let error = refused(run_env(dir, "zero", &["--shard", "0/3"], &[]));
    assert!(error.contains("numbered from 1"), "{error}");
    let error = refused(run_env(dir, "many", &["--shard", "1/40"], &[]));
    assert!(error.contains("40 shards of 31 inputs") && error.contains("at most 31"), "{error}");
    for name in ["none", "k8s-no-count", "zero", "many"] {
        assert!(!dir.join(name).exists(), "{name} was written");
    }
    let error = refused(signgd(dir, &["run", "--shard", "1/3"], &[]));
    assert!(error.contains("--report"), "{error}");
}

#[test]
fn relative_paths_of_the_shards_are_taken_from_where_they_ran() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::copy(fixture("fixtures/models/mlp.onnx"), work.join("model.onnx")).unwrap();
    for k in 1..=2 {
        ok(run(&work, &format!("s{k}"), &["--model", "model.onnx", "--shard", &format!("{k}/2")]));
    }
    ok(run(&work, "whole", &["--model", "model.onnx"]));
    ok(signgd(tmp.path(), &["merge", "work/s1", "work/s2", "--report", "merged"], &[]));
    let (mut whole, mut merged) = (comparable(&work.join("whole")), comparable(&tmp.path().join("merged")));
    let model = work.join("model.onnx").display().to_string();
    assert_eq!(merged["run"]["model"], Value::from(model.clone()));
    for report in [&mut whole, &mut merged] {
        report["run"]["model"] = Value::Null;
        report["run"]["provenance"]["files"]["model"]["path"] = Value::Null;
    }
    assert_eq!(whole, merged);
}
