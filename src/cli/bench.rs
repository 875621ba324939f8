//! `signgd bench`: how fast the engine simulates a model, against the ANN on the same machine.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Result};
use clap::Args;
use signgd::data::{fit_shape, open_inputs, InputSource, LoadLimits};
use signgd::engine::Simulator;
use signgd::model::reader::read_onnx_with_limits;
use signgd::model::{Evaluator, Graph};
use signgd::pipeline::{fingerprint, prepare, NoProgress, Progress, Settings};
use signgd::runner::{evaluate_ann_prepared, simulate_prepared};

use super::plan::{Labels, Sources};

/// Options of `signgd bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// The ONNX model (default: the bundled ConvNeXt fixture, fixtures/models/convnext.onnx).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Inputs (.npy, .npz, IDX); the first --limit are simulated (default: the bundled
    /// Fashion-MNIST test subset).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Number of inputs to simulate.
    #[arg(long, default_value_t = 32)]
    limit: usize,
    /// Steps per input.
    #[arg(long, default_value_t = 256)]
    timesteps: usize,
    /// Worker threads (default: the available parallelism).
    #[arg(long)]
    threads: Option<usize>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Also give the SHA-256 fingerprint of the converted network (as `signgd run --fingerprint`).
    #[arg(long)]
    fingerprint: bool,
    /// Time only the ANN (no conversion, no simulation).
    #[arg(long)]
    ann_only: bool,
    /// Clock in GHz for the machine's accumulate peak (default: the CPU's base frequency as the
    /// system reports it).
    #[arg(long)]
    clock_ghz: Option<f64>,
}

/// Converts the model, times the SNN (float32, reference settings) and the ANN, and prints
/// images per second, synaptic events per second, milliseconds per step and peak memory.
pub fn run(args: BenchArgs) -> Result<ExitCode> {
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    ensure!(threads > 0, "--threads must be at least 1");
    ensure!(args.limit > 0, "--limit must be at least 1");
    ensure!(args.timesteps > 0, "--timesteps must be at least 1");
    if let Some(ghz) = args.clock_ghz {
        ensure!(ghz.is_finite() && ghz > 0.0, "--clock-ghz must be a positive number of GHz, not {ghz}");
    }
    let plan = Sources {
        model: args.model.as_deref(),
        data: args.data.as_deref(),
        limit: Some(args.limit),
        ..Sources::default()
    }
    .plan(Labels::Unused, Settings { checkpoints: vec![args.timesteps], threads, ..Settings::default() })?;
    let model = plan.model.path.clone();
    if args.ann_only {
        let graph = read_onnx_with_limits(&model, None, plan.model.limits).map_err(flat)?;
        let sample_shape = graph.values[graph.input].shape.get(1..).unwrap_or(&[]).to_vec();
        let data = open_inputs(&plan.data.path, LoadLimits { max_samples: Some(args.limit), ..LoadLimits::default() })
            .map_err(flat)?;
        fit_shape(data.shape(), &sample_shape, &plan.data.path).map_err(flat)?;
        let inputs = read_f32(&*data)?;
        let ann_images_per_s = inputs.len() as f64 / ann_seconds(&graph, &inputs, threads)?;
        if args.json {
            let report = serde_json::json!({
                "schema_version": 1,
                "model": model.display().to_string(),
                "inputs": inputs.len(),
                "threads": threads,
                "precision": "f32",
                "ann_images_per_s": ann_images_per_s,
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!("model            {} ({} inputs, f32, {threads} threads)", model.display(), inputs.len());
            println!("ANN              {ann_images_per_s:.1} images/s (reference evaluator)");
        }
        return Ok(ExitCode::SUCCESS);
    }
    // Converted as `run` converts (the same plan: calibrated on the first inputs of the data,
    // however few are timed), so both time the same network.
    let no_progress: Arc<dyn Progress> = Arc::new(NoProgress);
    let prepared = prepare(&plan, &no_progress).map_err(flat)?;
    let (graph, network) = (&prepared.graph, prepared.network());
    let inputs = read_f32(&*prepared.data)?;

    let start = Instant::now();
    let simulator = Simulator::<f32>::new(network, &plan.settings.sim_config())?;
    let prepare_seconds = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let load = |i: usize, buffer: &mut [f32]| {
        buffer.copy_from_slice(&inputs[i]);
        Ok(())
    };
    let result = simulate_prepared(&simulator, inputs.len(), load, threads, &|_| {})?;
    let snn_seconds = start.elapsed().as_secs_f64();
    let ann_seconds = ann_seconds(graph, &inputs, threads)?;

    let totals = result.counters.at_checkpoints.last().cloned().unwrap_or_default();
    let events: u64 = totals.iter().map(|c| c.synaptic_events).sum();
    let macs: u64 = totals.iter().map(|c| c.dense_macs).sum();
    let work = result.work;
    let accumulates = (work.product_macs + work.delivered_events + work.real_macs) as f64 / snn_seconds;
    let images = inputs.len() as f64;
    let (network_bytes, worker_bytes) = (simulator.network_bytes(), simulator.workspace().bytes());
    let lanes = simulator.batch_lanes(inputs.len(), threads);
    let peak_bytes = peak_memory_bytes();
    let peak = AccumulatePeak::of_this_machine(threads, args.clock_ghz);
    let report = serde_json::json!({
        "schema_version": 1,
        "model": model.display().to_string(),
        "inputs": inputs.len(),
        "timesteps": args.timesteps,
        "threads": threads,
        "precision": "f32",
        "calibration_inputs": prepared.calibration.len(),
        "neurons": network.neurons(),
        "synaptic_events": events,
        "snn_images_per_s": images / snn_seconds,
        "synaptic_events_per_s": events as f64 / snn_seconds,
        "dense_macs_per_s": macs as f64 / snn_seconds,
        "product_macs_per_s": work.product_macs as f64 / snn_seconds,
        "delivered_events_per_s": work.delivered_events as f64 / snn_seconds,
        "real_macs_per_s": work.real_macs as f64 / snn_seconds,
        "kernel_accumulates_per_s": accumulates,
        "instruction_set": signgd::engine::instruction_set(),
        "accumulate_peak_per_s": peak.as_ref().map(|p| p.per_second),
        "accumulate_peak_basis": peak.as_ref().map(|p| p.basis.clone()),
        "fraction_of_accumulate_peak": peak.as_ref().map(|p| accumulates / p.per_second),
        "ms_per_step": snn_seconds * 1e3 * threads as f64 / (images * args.timesteps as f64),
        "prepare_ms": prepare_seconds * 1e3,
        "network_bytes": network_bytes,
        "worker_state_bytes": worker_bytes,
        "inputs_per_worker_batch": lanes,
        "ann_images_per_s": images / ann_seconds,
        "peak_memory_bytes": peak_bytes,
    });
    let mut report = report;
    if args.fingerprint {
        report["network_fingerprint"] = serde_json::json!(fingerprint(network));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "model            {} ({} inputs, T = {}, f32, {threads} threads)",
            model.display(),
            inputs.len(),
            args.timesteps
        );
        println!("SNN              {:.2} images/s", images / snn_seconds);
        println!("synaptic events  {:.3e} /s (binary spikes × fan-out)", events as f64 / snn_seconds);
        println!("dense MACs       {:.3e} /s (real-valued encoder and relays)", macs as f64 / snn_seconds);
        println!(
            "kernel work      {:.3e} accumulates/s ({:.3e} in batched 0/1 products, {:.3e} delivered events, \
             {:.3e} real-valued multiply-accumulates)",
            accumulates,
            work.product_macs as f64 / snn_seconds,
            work.delivered_events as f64 / snn_seconds,
            work.real_macs as f64 / snn_seconds,
        );
        match &peak {
            Some(peak) => println!(
                "                 {:.1} % of this machine's peak, {:.2e}/s ({})",
                100.0 * accumulates / peak.per_second,
                peak.per_second,
                peak.basis
            ),
            None => println!("                 this machine's clock is unknown: give --clock-ghz for its peak"),
        }
        println!("per step         {:.3} ms per image per worker", report["ms_per_step"].as_f64().unwrap_or(0.0));
        println!(
            "preparation      {:.1} ms (kernel layouts, once per run; not in the figures above)",
            prepare_seconds * 1e3
        );
        println!("ANN              {:.0} images/s (reference evaluator, same machine)", images / ann_seconds);
        println!(
            "engine memory    {:.2} MiB prepared network (shared) + {:.2} MiB state per input, \
             {lanes} inputs simulated together per worker",
            network_bytes as f64 / (1024.0 * 1024.0),
            worker_bytes as f64 / (1024.0 * 1024.0)
        );
        match peak_bytes {
            Some(bytes) => println!(
                "peak memory      {:.1} MiB (whole process: model, conversion, ANN evaluation included)",
                bytes as f64 / (1024.0 * 1024.0)
            ),
            None => println!("peak memory      unknown on this system"),
        }
        if let Some(fingerprint) = report["network_fingerprint"].as_str() {
            println!("fingerprint      sha256 {fingerprint}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The float32 accumulate peak of the cores a run uses: one fused multiply-add per lane on each
/// of two vector pipes per cycle (AMD Zen 2 to 5 and Intel's server cores since Skylake-SP have
/// two), with the vectors the engine's kernels use on this CPU. AMD Zen 4's pipes are 256 bits
/// wide and take a 512-bit multiply-add in two halves, so there one 16-lane vector completes per
/// cycle, not two.
struct AccumulatePeak {
    per_second: f64,
    /// How the figure was made, e.g. "2 cores × 2 FMA pipes × 8 lanes (AVX2+FMA) × 2.45 GHz".
    basis: String,
}

/// Vector pipes doing fused multiply-adds per core and cycle.
const FMA_PIPES: usize = 2;

impl AccumulatePeak {
    /// The peak of `threads` workers (at most the available cores) at `clock_ghz`, or at the base
    /// clock the system reports; `None` when neither is known.
    fn of_this_machine(threads: usize, clock_ghz: Option<f64>) -> Option<Self> {
        let cores = threads.min(std::thread::available_parallelism().map_or(threads, |n| n.get()));
        let ghz = clock_ghz.or_else(reported_clock_ghz)?;
        let lanes = signgd::engine::float32_lanes();
        let isa = signgd::engine::instruction_set();
        // Per pipe and cycle: the lanes of one vector, or half of them where it runs in two halves.
        let (lanes_per_cycle, pipes, how) = if lanes == 16 && amd_cpu_family() == Some(ZEN_3_AND_4_FAMILY) {
            (lanes / 2, " of 256 bits", " in two halves, AMD Zen 4")
        } else {
            (lanes, "", "")
        };
        Some(AccumulatePeak {
            per_second: (cores * FMA_PIPES * lanes_per_cycle) as f64 * ghz * 1e9,
            basis: format!(
                "{cores} cores × {FMA_PIPES} FMA pipes{pipes} × {lanes_per_cycle} lanes ({isa}{how}) × {ghz:.2} GHz"
            ),
        })
    }
}

/// AMD's processor family of Zen 3 and Zen 4 (19h); of these only Zen 4 has AVX-512.
const ZEN_3_AND_4_FAMILY: u32 = 25;

/// The processor family of an AMD CPU, from /proc/cpuinfo (Linux); `None` for other vendors.
fn amd_cpu_family() -> Option<u32> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let field =
        |name: &str| cpuinfo.lines().find(|l| l.starts_with(name)).and_then(|l| l.split(':').nth(1)).map(str::trim);
    if field("vendor_id")? != "AuthenticAMD" {
        return None;
    }
    field("cpu family")?.parse().ok()
}

/// The CPU's base clock in GHz: cpufreq's base frequency where the system has it, otherwise the
/// first clock /proc/cpuinfo reports (Linux).
fn reported_clock_ghz() -> Option<f64> {
    let base = std::fs::read_to_string("/sys/devices/system/cpu/cpu0/cpufreq/base_frequency").ok();
    if let Some(khz) = base.and_then(|s| s.trim().parse::<f64>().ok()) {
        return Some(khz / 1e6);
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let mhz = cpuinfo.lines().find(|l| l.starts_with("cpu MHz"))?.split(':').nth(1)?.trim().parse::<f64>().ok()?;
    (mhz > 0.0).then_some(mhz / 1e3)
}

/// Seconds the ANN takes over all `inputs` on `threads` workers: the mean over repeated passes
/// (at least half a second of them) after one untimed pass; the weights' preparation is not timed.
fn ann_seconds(graph: &Graph, inputs: &[Vec<f32>], threads: usize) -> Result<f64> {
    let expected: usize = graph.values[graph.input].shape.iter().product();
    ensure!(inputs.iter().all(|x| x.len() == expected), "the inputs do not fit the model's input");
    let evaluator = Evaluator::<f32>::new(graph);
    let load = |i: usize, buffer: &mut [f32]| {
        buffer.copy_from_slice(&inputs[i]);
        Ok(())
    };
    evaluate_ann_prepared(&evaluator, inputs.len(), load, threads, &|_| {})?;
    let start = Instant::now();
    let mut runs = 0usize;
    while runs == 0 || start.elapsed().as_secs_f64() < 0.5 {
        evaluate_ann_prepared(&evaluator, inputs.len(), load, threads, &|_| {})?;
        runs += 1;
    }
    Ok(start.elapsed().as_secs_f64() / runs as f64)
}

/// The process's peak resident memory, from /proc (Linux).
fn peak_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Every input of `source`, in single precision.
fn read_f32(source: &dyn InputSource) -> Result<Vec<Vec<f32>>> {
    let mut values = vec![0.0; source.shape().iter().product()];
    (0..source.len())
        .map(|i| {
            source.read(i, &mut values).map_err(flat)?;
            Ok(values.iter().map(|&v| v as f32).collect())
        })
        .collect()
}

/// An error whose message already includes its sources, as one line.
fn flat(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{error}")
}
