//! `signgd run --report DIR` end to end on the MLP fixture: the JSON layout, the HTML (one SVG per
//! chart, nothing fetched from the network), the CSVs, `signgd report DIR`, and refusal to
//! overwrite without --force.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn signgd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_signgd"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .expect("run signgd")
}

fn run_report(dir: &Path, extra: &[&str]) -> Output {
    let dir = dir.to_str().unwrap();
    let mut args = vec![
        "run",
        "--model",
        "fixtures/models/mlp.onnx",
        "--limit",
        "8",
        "--timesteps",
        "8,16",
        "--threads",
        "2",
        "--report",
        dir,
    ];
    args.extend_from_slice(extra);
    signgd(&args)
}

fn text(o: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let body = std::fs::read_to_string(path).unwrap();
    let mut lines = body.lines();
    let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
    let rows: Vec<Vec<String>> = lines.map(|l| l.split(',').map(String::from).collect()).collect();
    for row in &rows {
        assert_eq!(row.len(), header.len(), "{}: {row:?}", path.display());
    }
    (header, rows)
}

#[test]
fn report_directory_end_to_end() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("report");
    let out = run_report(&dir, &[]);
    assert!(out.status.success(), "{}", text(&out));
    for file in signgd::report::FILES {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    // Nothing but the report is left beside it.
    let siblings: Vec<_> = std::fs::read_dir(scratch.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(siblings.len(), 1, "{siblings:?}");

    // JSON.
    let json: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["schema_version"], signgd::report::SCHEMA_VERSION);
    assert_eq!(json["inputs"], 8);
    assert_eq!(json["checkpoints"], serde_json::json!([8, 16]));
    let populations = json["populations"].as_array().unwrap();
    assert_eq!(populations.len(), 13, "12 populations (6 of them relays) and the readout");
    assert_eq!(populations.last().unwrap()["kind"], "readout");
    for p in populations {
        let checkpoints = p["checkpoints"].as_array().unwrap();
        assert_eq!(checkpoints.len(), 2);
        for (c, t) in checkpoints.iter().zip([8, 16]) {
            assert_eq!(c["timesteps"], t);
            for key in [
                "spikes",
                "synaptic_events",
                "dense_macs",
                "drive_additions",
                "neuron_updates",
                "nonlinearity_evaluations",
                "state_reads",
                "state_writes",
                "weight_reads",
            ] {
                assert!(c["total"][key].is_u64(), "{key} in {c}");
                assert!(c["per_input"][key].is_number(), "{key} in {c}");
            }
            let neurons = p["neurons"].as_u64().unwrap();
            if p["kind"] == "relay" || p["kind"] == "readout" {
                assert_eq!(neurons, 0);
                assert!(c["firing_rate"].is_null());
            } else {
                let rate = c["firing_rate"].as_f64().unwrap();
                assert!((0.0..=1.0).contains(&rate));
                assert_eq!(c["total"]["neuron_updates"].as_u64().unwrap(), neurons * t * 8);
            }
        }
    }
    // The first layer norm's populations read the real-valued encoder: dense MACs.
    assert!(populations[1]["checkpoints"][0]["total"]["dense_macs"].as_u64().unwrap() > 0);
    // ANN MACs of the MLP: 784·256 + 256·128 + 128·10.
    assert_eq!(json["ann"]["total"]["macs"], 784 * 256 + 256 * 128 + 128 * 10);
    let energy = &json["energy"];
    assert_eq!(energy["model"]["name"], "45nm-fp32");
    assert!(energy["model"]["costs"]["mac"]["source"].as_str().unwrap().contains("Horowitz"));
    assert!(!energy["assumptions"].as_array().unwrap().is_empty());
    for row in energy["checkpoints"].as_array().unwrap() {
        for side in ["snn", "ann"] {
            let compute = row[side]["compute_pj"].as_f64().unwrap();
            let inclusive = row[side]["memory_inclusive_pj"].as_f64().unwrap();
            assert!(compute > 0.0 && inclusive >= compute, "{row}");
        }
    }
    assert_eq!(energy["presets"].as_array().unwrap().len(), signgd::stats::energy::PRESETS.len());
    // Conventions: the defaults, each with its alternative and flag, stated in the assumptions.
    assert_eq!(energy["conventions"]["encoder"], "once");
    assert_eq!(energy["conventions"]["shared"], "per-receiver");
    assert_eq!(energy["conventions"]["addressing"], "on");
    assert_eq!(energy["conventions"]["ann_memory"], "reuse");
    assert_eq!(energy["conventions"]["memory"], "levels");
    let table = energy["convention_table"].as_array().unwrap();
    assert_eq!(table.len(), 5);
    let assumptions = energy["assumptions"].to_string();
    for row in table {
        assert!(assumptions.contains(row["flag"].as_str().unwrap()), "{row}");
    }
    // Both ANN memory bounds, the reuse one no larger.
    let bounds = &energy["ann_memory_bounds"];
    assert!(
        bounds["reuse"]["memory_inclusive_pj"].as_f64().unwrap()
            <= bounds["no_reuse"]["memory_inclusive_pj"].as_f64().unwrap()
    );
    // Every row has a range holding its own figure, and the per-step energy.
    for row in energy["checkpoints"].as_array().unwrap() {
        let range = &row["range"];
        for (value, span) in [
            (row["snn"]["compute_pj"].as_f64().unwrap(), &range["snn_compute_pj"]),
            (row["snn"]["memory_inclusive_pj"].as_f64().unwrap(), &range["snn_memory_inclusive_pj"]),
            (row["ratio_compute"].as_f64().unwrap(), &range["ratio_compute"]),
            (row["ratio_memory_inclusive"].as_f64().unwrap(), &range["ratio_memory_inclusive"]),
        ] {
            let (lo, hi) = (span["min"].as_f64().unwrap(), span["max"].as_f64().unwrap());
            assert!(lo <= value * (1.0 + 1e-12) && value <= hi * (1.0 + 1e-12), "{value} outside {span}");
        }
        assert!(row["marginal_per_step"]["compute_pj"].as_f64().unwrap() > 0.0);
    }
    // Break-even: the key is there for both figures (null when not reached).
    let break_even = &energy["break_even_timestep"];
    assert!(break_even.get("compute").is_some() && break_even.get("memory_inclusive").is_some());
    if let Some(t) = break_even["compute"]["timesteps"].as_u64() {
        assert!([8, 16].contains(&t));
    }
    assert!(json["accuracy"]["ann"].is_number());
    assert_eq!(json["accuracy"]["checkpoints"].as_array().unwrap().len(), 2);
    let observation = &json["observation"];
    assert_eq!(observation["input"], 0);
    assert_eq!(observation["raster"]["steps"], 16);
    let errors = observation["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 6, "one trace per population with neurons");
    for e in errors {
        assert_eq!(e["mean_abs_error"].as_array().unwrap().len(), 16);
    }

    // HTML: one SVG per chart, self-contained.
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), signgd::report::html::CHARTS, "one <svg> per chart");
    for chart in [
        "Accuracy against timesteps",
        "Firing rate per population",
        "Energy per input by population",
        "Energy per input in total",
        "Energy per input against timesteps",
        "Spikes of",
        "Mean |SNN estimate",
    ] {
        assert!(html.contains(chart), "chart `{chart}` missing");
    }
    assert!(!html.contains("http"), "the report must not reference external URLs");
    assert!(!html.contains("<script"));

    // CSVs.
    let (header, rows) = csv(&dir.join("populations.csv"));
    assert_eq!(&header[..6], ["index", "name", "kind", "neurons", "size", "timesteps"]);
    assert!(header.contains(&"synaptic_events".to_string()) && header.contains(&"firing_rate".to_string()));
    assert_eq!(rows.len(), 13 * 2);
    let (header, rows) = csv(&dir.join("accuracy.csv"));
    assert_eq!(&header[..5], ["timesteps", "snn_accuracy", "ann_accuracy", "agreement", "mean_abs_diff"]);
    assert!(header.contains(&"snn_ci95_low".to_string()) && header.contains(&"mcnemar_p".to_string()));
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1][0], "16");
    let (header, rows) = csv(&dir.join("layers.csv"));
    assert_eq!(&header[..3], ["ann_node", "op", "timesteps"]);
    assert!(header.contains(&"snn_synaptic_events_per_input".to_string()));
    let gemm: Vec<&Vec<String>> = rows.iter().filter(|r| r[1] == "Gemm").collect();
    assert_eq!(gemm.len(), 3 * 2, "three Gemm layers, two checkpoints");
    assert!(gemm.iter().all(|r| !r[6].is_empty()), "every Gemm has SNN populations: {gemm:?}");

    // `signgd report DIR` prints the summary again.
    let out = signgd(&["report", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let summary = String::from_utf8(out.stdout).unwrap();
    assert!(summary.contains("node_gelu") && summary.contains("energy per input") && summary.contains("assumptions"));
    assert!(std::fs::read_to_string(dir.join("report.md")).unwrap().contains(summary.lines().next().unwrap()));

    // A second run into the same directory is refused and leaves the report intact.
    let before = std::fs::read(dir.join("report.json")).unwrap();
    let out = run_report(&dir, &["--energy-model", "45nm-int8"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"), "{}", text(&out));
    assert_eq!(std::fs::read(dir.join("report.json")).unwrap(), before);

    // With --force it is replaced, here with another cost model and raster population.
    let out = run_report(
        &dir,
        &["--force", "--energy-model", "loihi", "--raster-population", "node_gelu", "--raster-input", "3"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let json: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["energy"]["model"]["name"], "loihi");
    assert_eq!(json["observation"]["raster"]["name"], "node_gelu");
    assert_eq!(json["observation"]["input"], 3);
    let siblings: Vec<_> = std::fs::read_dir(scratch.path()).unwrap().collect();
    assert_eq!(siblings.len(), 1, "no temporary or old directory left behind");
}

#[test]
fn bad_report_options_are_refused_before_any_work() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("r");
    for (extra, message) in [
        (&["--energy-model", "no-such-chip"][..], "presets"),
        (&["--raster-population", "node_layer_norm.mean.relay"][..], "relay"),
        (&["--raster-population", "99"][..], "populations"),
        (&["--raster-input", "8"][..], "--raster-input"),
    ] {
        let out = run_report(&dir, extra);
        assert!(!out.status.success(), "{extra:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(message), "{extra:?}: {}", text(&out));
        assert!(!dir.exists());
    }
    let out = signgd(&["report", scratch.path().to_str().unwrap()]);
    assert!(!out.status.success());
}
