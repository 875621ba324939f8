//! `signgd feasibility`: will the converted network fit Loihi, Loihi 2, TrueNorth, SpiNNaker or
//! Speck? Places every population on cores, lists the limits no split cures and the method's
//! needs each chip does not give, and with `--weight-bits N` simulates the network with weights
//! quantised to N bits beside full precision.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use clap::{Args, ValueEnum};

use super::plan::{Labels, Sources};
use super::run::ReluNormArg;
use serde_json::json;
use signgd::data::InputSource;
use signgd::feasibility::quantize::{quantize_network, quantize_network_on_grid, GridStats, QuantizeStats};
use signgd::feasibility::{MapOptions, Mapper, Profile, TargetReport};
use signgd::pipeline::{event_rates, fingerprint, prepare, Neuron, NoProgress, Progress, Settings};
use signgd::runner;
use signgd::snn::{EncoderKind, Network, Schedule};

const CHECKPOINTS: [usize; 4] = [32, 64, 128, 256];
/// Inputs simulated for the spike rates when no --weight-bits simulation gives them.
const RATE_INPUTS: usize = 16;

/// Options of `signgd feasibility`.
#[derive(Args)]
pub struct FeasibilityArgs {
    /// The ONNX model.
    #[arg(long, value_name = "FILE.onnx")]
    model: PathBuf,
    /// Chip: loihi, loihi2, truenorth, spinnaker, spinnaker2, speck or all.
    #[arg(long, value_name = "TARGET", default_value = "all")]
    target: String,
    /// A hardware profile of your own (JSON with the fields of hardware/*.json); replaces --target.
    #[arg(long, value_name = "FILE")]
    profile: Option<PathBuf>,
    /// Input encoder the chip would receive: float (real values) or spike (binary).
    #[arg(long, value_enum, default_value_t = EncoderArg::Float)]
    encoder: EncoderArg,
    /// Quantise every synapse block to N bits (symmetric, per block) and report the accuracy at
    /// T = 32, 64, 128, 256 against full precision; `chip`: each target's own weight bits.
    #[arg(long, value_name = "N|chip")]
    weight_bits: Option<WeightBits>,
    /// ReLU normalisation's maxima in the conversion: per element, per channel (kernels stay
    /// shared over positions) or per layer (one threshold per layer).
    #[arg(long, value_enum, default_value_t = ReluNormArg::Element)]
    relu_norm: ReluNormArg,
    /// Input samples for calibration and --weight-bits (default: the bundled Fashion-MNIST subset).
    #[arg(long, value_name = "FILE")]
    data: Option<PathBuf>,
    /// Class labels (default: the Fashion-MNIST labels when --data is defaulted).
    #[arg(long, value_name = "FILE")]
    labels: Option<PathBuf>,
    /// Inputs simulated for --weight-bits.
    #[arg(long, value_name = "N", default_value_t = 200)]
    limit: usize,
    /// Worker threads (default: the available parallelism).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Also give the SHA-256 fingerprint of the converted network (as `signgd run --fingerprint`).
    #[arg(long)]
    fingerprint: bool,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

/// `--weight-bits`: a number of bits, or each chip's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WeightBits {
    Bits(u32),
    Chip,
}

impl std::str::FromStr for WeightBits {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("chip") {
            return Ok(WeightBits::Chip);
        }
        s.parse::<u32>()
            .map(WeightBits::Bits)
            .map_err(|_| format!("`{s}` is neither a number of bits nor `chip` (each target's own weight bits)"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum EncoderArg {
    Float,
    Spike,
}

/// The accuracy of quantised against full-precision weights.
struct Quantized {
    bits: u32,
    /// Neuron state bits (0 for an explicit --weight-bits N).
    state_bits: u32,
    /// The targets whose weight bits these are (empty for an explicit --weight-bits N).
    targets: Vec<String>,
    inputs: usize,
    /// Per-block symmetric rounding (explicit --weight-bits N).
    stats: Option<QuantizeStats>,
    /// The chip's grid (--weight-bits chip).
    grid: Option<GridStats>,
    ann: Option<f64>,
    /// (T, full precision, quantised, agreement of the two predictions).
    rows: Vec<(usize, Option<f64>, Option<f64>, f64)>,
}

/// Runs the command.
pub fn run(args: FeasibilityArgs) -> Result<ExitCode> {
    // Everything that needs no file first.
    let threads = super::worker_threads(args.threads)?;
    ensure!(args.limit > 0, "--limit 0: give at least 1 input");
    if let Some(WeightBits::Bits(bits)) = args.weight_bits {
        ensure!((2..=32).contains(&bits), "--weight-bits {bits}: give 2 to 32 bits (a sign and at least one level)");
    }
    let profiles = match &args.profile {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read profile {}", path.display()))?;
            vec![Profile::parse(&text, &path.display().to_string())?]
        }
        None if args.target.eq_ignore_ascii_case("all") => Profile::all_bundled()?,
        None => vec![Profile::bundled(&args.target)?],
    };

    // Model, data, conversion: the plan `run` makes of the same arguments. The inputs simulated:
    // --limit for quantisation, a few for the rates alone.
    let inputs_wanted = if args.weight_bits.is_some() { args.limit } else { args.limit.min(RATE_INPUTS) };
    let encoder = match args.encoder {
        EncoderArg::Float => EncoderKind::Float,
        EncoderArg::Spike => EncoderKind::Spike,
    };
    let settings = Settings {
        checkpoints: CHECKPOINTS.to_vec(),
        neuron: Neuron::SignGd { schedule: Schedule::default(), schedule_text: "exp:0.15:0.95".into(), encoder },
        relu_norm: args.relu_norm.into(),
        threads,
        ..Settings::default()
    };
    let sources = Sources {
        model: Some(&args.model),
        data: args.data.as_deref(),
        labels: args.labels.as_deref(),
        limit: Some(inputs_wanted),
        ..Sources::default()
    };
    let labels_wanted = if args.weight_bits.is_some() { Labels::Wanted } else { Labels::Unused };
    let plan = sources.plan(labels_wanted, settings)?;
    let no_progress: Arc<dyn Progress> = Arc::new(NoProgress);
    let prepared = prepare(&plan, &no_progress).map_err(flat)?;
    let (graph, network) = (&prepared.graph, prepared.network());
    let output_size = prepared.output_size();

    // (bits, targets) to simulate: one explicit width, or each distinct width of the targets.
    // (weight bits, state bits, targets) to simulate: one explicit width, or each distinct pair
    // of the targets.
    let widths: Vec<(u32, u32, Vec<String>)> = match args.weight_bits {
        None => Vec::new(),
        Some(WeightBits::Bits(bits)) => vec![(bits, 0, Vec::new())],
        Some(WeightBits::Chip) => {
            let mut widths: Vec<(u32, u32, Vec<String>)> = Vec::new();
            for p in &profiles {
                let (bits, state) = (p.weight_bits.min(32) as u32, p.state_bits.min(63) as u32);
                match widths.iter_mut().find(|(b, s, _)| (*b, *s) == (bits, state)) {
                    Some((_, _, targets)) => targets.push(p.name.clone()),
                    None => widths.push((bits, state, vec![p.name.clone()])),
                }
            }
            widths
        }
    };
    let needs_rates = profiles.iter().any(|p| p.synaptic_events_per_ms_per_core.is_some());
    let inputs = prepared.samples();
    let load = |i: usize, buffer: &mut [f32]| {
        let mut values = vec![0.0; buffer.len()];
        prepared.data.read(i, &mut values)?;
        for (b, v) in buffer.iter_mut().zip(values) {
            *b = v as f32;
        }
        Ok(())
    };
    let config = plan.settings.sim_config();
    let simulate = |net: &Network| {
        runner::simulate::<f32, _>(net, &config, inputs, load, threads, &|_| {}).context("simulating the SNN")
    };
    let full = if needs_rates || !widths.is_empty() { Some(simulate(network)?) } else { None };
    let rates = full.as_ref().filter(|_| needs_rates).map(|full| event_rates(network, full));

    let map_options = MapOptions { real_valued_input: args.encoder == EncoderArg::Float, rates };
    let reports: Vec<TargetReport> = {
        let mapper = Mapper::new(network);
        profiles.iter().map(|p| mapper.map(p, &map_options)).collect()
    };

    let quantized: Vec<Quantized> = match (&full, widths.is_empty()) {
        (Some(full), false) => {
            let labels = &prepared.labels;
            let ann = match &labels {
                Some(l) => {
                    let outputs = runner::evaluate_ann::<f32, _>(graph, inputs, load, threads, &|_| {})
                        .context("evaluating the ANN")?;
                    Some(runner::accuracy(&outputs, output_size, l))
                }
                None => None,
            };
            let mut quantized = Vec::new();
            for (bits, state_bits, targets) in widths {
                let (q_network, stats, grid) = if targets.is_empty() {
                    let (q, stats) = quantize_network(network, bits);
                    (q, Some(stats), None)
                } else {
                    let (q, grid) = quantize_network_on_grid(network, bits, state_bits);
                    (q, None, Some(grid))
                };
                let quant = simulate(&q_network)?;
                let rows = CHECKPOINTS
                    .iter()
                    .enumerate()
                    .map(|(k, &t)| {
                        let (f, q) = (full.at_checkpoint(k), quant.at_checkpoint(k));
                        let acc = |o: &[f32]| labels.as_ref().map(|l| runner::accuracy(o, output_size, l));
                        (t, acc(f), acc(q), runner::agreement(f, q, output_size))
                    })
                    .collect();
                quantized.push(Quantized { bits, state_bits, targets, inputs, stats, grid, ann, rows });
            }
            quantized
        }
        _ => Vec::new(),
    };

    let text = if args.json {
        let mut json = report_json(&args, network, &reports, &quantized);
        if args.fingerprint {
            json["network"]["fingerprint"] = json!(fingerprint(network));
        }
        serde_json::to_string_pretty(&json)? + "\n"
    } else if args.fingerprint {
        report_text(&args, network, &reports, &quantized) + &format!("\nfingerprint sha256 {}\n", fingerprint(network))
    } else {
        report_text(&args, network, &reports, &quantized)
    };
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(anyhow::Error::new(e).context("cannot write to stdout"))
        }
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}

fn report_json(
    args: &FeasibilityArgs,
    network: &Network,
    reports: &[TargetReport],
    quantized: &[Quantized],
) -> serde_json::Value {
    json!({
        "schema_version": 1,
        "model": args.model.display().to_string(),
        "encoder": if args.encoder == EncoderArg::Float { "float" } else { "spike" },
        "network": {
            "populations": network.populations.len() - network.relays(),
            "neurons": network.neurons(),
            "relays": network.relays(),
        },
        "targets": reports,
        "relu_norm": args.relu_norm.to_possible_value().map(|v| v.get_name().to_string()),
        "weight_bits": quantized.iter().find(|q| q.targets.is_empty()).map(quantized_json),
        "chip_weight_bits": quantized.iter().filter(|q| !q.targets.is_empty()).map(quantized_json).collect::<Vec<_>>(),
    })
}

fn quantized_json(q: &Quantized) -> serde_json::Value {
    json!({
            "bits": q.bits,
            "state_bits": (q.state_bits > 0).then_some(q.state_bits),
            "targets": q.targets,
            "inputs": q.inputs,
            "blocks": q.stats.as_ref().map(|s| s.blocks),
            "weights": q.stats.as_ref().map(|s| s.weights),
            "zeroed": q.stats.as_ref().map(|s| s.zeroed),
            "max_relative_error": q.stats.as_ref().map(|s| s.max_relative_error),
            "grid_operands": q.grid.as_ref().map(|g| g.operands),
            "grid_values": q.grid.as_ref().map(|g| g.values),
            "unfolded_blocks": q.grid.as_ref().map(|g| g.unfolded_blocks),
            "ann_accuracy": q.ann,
            "checkpoints": q.rows.iter().map(|&(t, f, qa, agree)| json!({
                "timesteps": t, "full_precision": f, "quantized": qa, "agreement": agree,
            })).collect::<Vec<_>>(),
    })
}

fn report_text(args: &FeasibilityArgs, network: &Network, reports: &[TargetReport], quantized: &[Quantized]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "model    {}: {} neuron populations, {} neurons, {} relays (encoder {})",
        args.model.display(),
        network.populations.len() - network.relays(),
        network.neurons(),
        network.relays(),
        if args.encoder == EncoderArg::Float { "float" } else { "spike" }
    );
    for r in reports {
        let _ = writeln!(out, "\n== {} ({}) ==", r.chip, r.target);
        let _ = writeln!(out, "source   {}", r.source);
        let _ = writeln!(
            out,
            "capacity {}: {} cores on {} chip(s) of {} cores",
            if r.fits { "fits" } else { "does NOT fit" },
            r.cores,
            r.chips,
            r.cores_per_chip
        );
        let layers = r.populations.iter().any(|p| p.layer_memory.is_some());
        let _ = write!(
            out,
            "  {:<34} {:>10} {:>8} {:>6} {:>7} {:>10} {:>10} {:>6}",
            "population", "kind", "neurons", "cores", "fan-in", "synapses", "memory B", "util"
        );
        let events = r.populations.iter().any(|p| p.events_per_ms_per_core.is_some());
        if events {
            let _ = write!(out, " {:>10}", "events/ms");
        }
        if layers {
            let _ = write!(out, " {:>4} {:>8} {:>8} {:>5}", "core", "kernel", "neuron", "bias");
        }
        let _ = writeln!(out);
        for p in &r.populations {
            let _ = write!(
                out,
                "  {:<34} {:>10} {:>8} {:>6} {:>7} {:>10} {:>10} {:>5.1}%",
                ellipsis(&p.name, 34),
                p.kind,
                p.neurons,
                if p.splitter_cores > 0 { format!("{}+{}", p.cores, p.splitter_cores) } else { p.cores.to_string() },
                p.max_fan_in,
                p.synapses,
                p.memory_bytes,
                100.0 * p.memory_utilisation
            );
            if let Some(e) = p.events_per_ms_per_core {
                let _ = write!(out, " {:>10.0}", e);
            }
            if let Some(m) = &p.layer_memory {
                let core = p.core.map_or("-".to_string(), |c| c.to_string());
                let _ = write!(out, " {:>4} {:>8} {:>8} {:>5}", core, m.kernel_memory, m.neuron_memory, m.bias_memory);
            }
            let _ = writeln!(out);
        }
        if events {
            let _ = writeln!(
                out,
                "  (events/ms: synaptic events per 1 ms step on the busiest core, from the simulated spike rates)"
            );
        }
        if r.populations.iter().any(|p| p.splitter_cores > 0) {
            let _ = writeln!(
                out,
                "  (cores a+b: a cores of its neurons, b cores of splitter neurons copying their spikes)"
            );
        }
        if layers {
            let _ = writeln!(
                out,
                "  (kernel, neuron, bias: sinabs's memory entries; util: kernel entries over the core's kernel memory)"
            );
        }
        if !r.violations.is_empty() {
            let _ = writeln!(out, "violations (no split cures these):");
            for v in &r.violations {
                let _ = writeln!(
                    out,
                    "  - `{}`: {} — limit {}, needs {} ({} neuron(s))\n      → {}",
                    v.population, v.limit, v.limit_value, v.value, v.neurons, v.suggestion
                );
            }
        }
        let _ = writeln!(out, "method needs:");
        for q in &r.requirements {
            let _ = writeln!(
                out,
                "  [{}] {} ({}): {}",
                if q.met { "ok" } else { "NO" },
                q.need,
                population_list(&q.populations),
                q.how
            );
        }
    }
    if reports.len() > 1 {
        let _ = writeln!(out, "\nsummary");
        let _ = writeln!(
            out,
            "  {:<10} {:<5} {:>7} {:>6}  {:<60} unmet needs",
            "target", "fits", "cores", "chips", "main violation"
        );
        for r in reports {
            let main = r.main_violation().map_or("-".to_string(), |v| {
                format!("{}: {} {} > {}", ellipsis(&v.population, 22), short_limit(&v.limit), v.value, v.limit_value)
            });
            let unmet: Vec<&str> = r.requirements.iter().filter(|q| !q.met).map(|q| q.need.as_str()).collect();
            let _ = writeln!(
                out,
                "  {:<10} {:<5} {:>7} {:>6}  {:<60} {}",
                r.target,
                if r.fits { "yes" } else { "no" },
                r.cores,
                r.chips,
                main,
                if unmet.is_empty() { "-".to_string() } else { unmet.join(", ") }
            );
        }
    }
    for q in quantized {
        let how = match (&q.stats, &q.grid) {
            (Some(s), _) => format!(
                "symmetric, per block; {} blocks, {} weights, {} rounded to 0, max error {:.2}% of a block's max |w|",
                s.blocks,
                s.weights,
                s.zeroed,
                100.0 * s.max_relative_error
            ),
            (None, Some(g)) => format!(
                "the chip's arithmetic: one grid per operand holding weights with their per-channel factors and factors at {} bits, constants at {} bits, and the unit threshold; {} operands, {} values, {} block(s) with per-element factors left unfolded",
                q.bits, q.state_bits, g.operands, g.values, g.unfolded_blocks
            ),
            (None, None) => String::new(),
        };
        let _ = writeln!(
            out,
            "\nweights quantised to {} bits{} ({how}), {} inputs{}",
            q.bits,
            if q.targets.is_empty() { String::new() } else { format!(" ({})", q.targets.join(", ")) },
            q.inputs,
            q.ann.map_or(String::new(), |a| format!(", ANN accuracy {:.2}%", 100.0 * a))
        );
        let _ =
            writeln!(out, "  {:>5} | {:>14} | {:>10} | {:>16}", "T", "full precision", "quantised", "same prediction");
        for &(t, f, qa, agree) in &q.rows {
            let pct = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{:.2}%", 100.0 * x));
            let _ = writeln!(out, "  {:>5} | {:>14} | {:>10} | {:>15.2}%", t, pct(f), pct(qa), 100.0 * agree);
        }
    }
    out
}

/// A few words for a limit, for the summary table.
fn short_limit(limit: &str) -> &'static str {
    let table = [
        ("kernel memory", "kernel mem."),
        ("neuron memory", "neuron mem."),
        ("bias memory", "bias mem."),
        ("max pooling", "max pooling"),
        ("factors per output channel", "per-position factors"),
        ("distinct weights", "weights/neuron"),
        ("kernel size", "kernel size"),
        ("stride", "stride"),
        ("channels per layer", "channels"),
        ("input axons", "fan-in"),
        ("synaptic memory", "memory (B)"),
        ("output axons", "output axons"),
        ("destination cores per neuron", "dest. cores/neuron"),
        ("destination cores per core", "dest. cores/core"),
        ("neurons", "neurons/core"),
        ("chips", "chips"),
    ];
    table.iter().find(|(k, _)| limit.contains(k)).map_or("limit", |(_, v)| v)
}

fn population_list(names: &[String]) -> String {
    match names.len() {
        0 => "none".into(),
        1..=2 => names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "),
        n => format!("`{}` and {} more", names[0], n - 1),
    }
}

fn ellipsis(s: &str, n: usize) -> String {
    let count = s.chars().count();
    if count <= n {
        s.to_string()
    } else {
        let tail: String = s.chars().skip(count - (n - 1)).collect();
        format!("…{tail}")
    }
}

/// An error whose message already includes its sources, as one line.
fn flat(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("{error}")
}
