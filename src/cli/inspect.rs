//! `signgd inspect`: the graph as read, the populations and synapse blocks made from it, and
//! anything refused.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{ensure, Context, Result};
use rand::{Rng, SeedableRng};

use super::model_limits;
use clap::Args;
use ndarray::{ArrayD, IxDyn};
use signgd::convert::verify::{reconstruction, Reconstruction};
use signgd::convert::{convert, ConvertOptions};
use signgd::data::{read_inputs, LoadLimits};
use signgd::model::reader::read_onnx_with_limits;
use signgd::snn::summary::{NetworkSummary, ProjectionSummary};
use signgd::snn::GeluTarget;

/// Options of `signgd inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// The ONNX model.
    #[arg(long)]
    model: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Largest number of tensor elements the model may hold, per tensor and in total (refused
    /// before anything is allocated).
    #[arg(long, value_name = "N", default_value_t = signgd::model::reader::MAX_TOTAL_ELEMENTS)]
    max_model_elements: usize,
    /// Also check the reconstruction identity (SPEC §2): with every source at its ANN value, each
    /// operand's synapses and constants give the ANN's value at that node. Uses the first input
    /// of --data (also for ReLU calibration), or a fixed pseudo-random input in [0, 1).
    #[arg(long)]
    verify: bool,
    /// Input for --verify (.npy, .npz or IDX; the first sample is used).
    #[arg(long, value_name = "FILE", requires = "verify")]
    data: Option<PathBuf>,
    /// Precision of the network's products in --verify.
    #[arg(long, value_enum, default_value = "f32", requires = "verify")]
    precision: Precision,
}

/// Precision of the reconstruction check.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Precision {
    F32,
    F64,
}

/// Reads, converts and describes the model; exit code 1 with the reason when it is refused.
pub fn run(args: InspectArgs) -> Result<ExitCode> {
    let graph = read_onnx_with_limits(&args.model, None, model_limits(args.max_model_elements))
        .with_context(|| format!("cannot read {}", args.model.display()))?;
    let input_shape = graph.values[graph.input].shape.clone();
    let check_input = match args.verify {
        true => Some(verify_input(&args, &input_shape)?),
        false => None,
    };
    // Structure does not depend on calibration: one zero input gives every ReLU scale 1.
    let calibration = check_input.clone().unwrap_or_else(|| ArrayD::zeros(IxDyn(&input_shape)));
    let options = ConvertOptions {
        gelu: GeluTarget::Sigmoid,
        calibration: vec![calibration].into(),
        ..ConvertOptions::default()
    };
    let conversion = convert(&graph, &options);
    let check = match (&conversion, &check_input) {
        (Ok(c), Some(x)) => Some(
            match args.precision {
                Precision::F32 => reconstruction::<f32>(c, x),
                Precision::F64 => reconstruction::<f64>(c, x),
            }
            .context("checking the reconstruction identity")?,
        ),
        _ => None,
    };
    if args.json {
        let value = match &conversion {
            Ok(c) => serde_json::json!({
                "schema_version": 1,
                "model": args.model.display().to_string(),
                "graph": graph.nodes.iter().map(|n| serde_json::json!({
                    "name": n.name, "op": n.op.describe(),
                    "inputs": n.inputs.iter().map(|&v| &graph.values[v].shape).collect::<Vec<_>>(),
                    "output": graph.values[n.output].shape,
                })).collect::<Vec<_>>(),
                "passes": notes(c, check_input.is_some()),
                "network": NetworkSummary::of(&c.network),
                "reconstruction": check,
                "refused": null,
            }),
            Err(e) => {
                serde_json::json!({"schema_version": 1, "model": args.model.display().to_string(), "refused": e.to_string()})
            }
        };
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("model {}: {} nodes, input {:?}", args.model.display(), graph.nodes.len(), input_shape);
        print!("{}", graph.summary());
        match &conversion {
            Ok(c) => print_network(&notes(c, check_input.is_some()), &NetworkSummary::of(&c.network)),
            Err(e) => println!("\nrefused: {e}"),
        }
        if let Some(check) = &check {
            print_check(check);
        }
    }
    Ok(if conversion.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// The conversion's notes; without calibration data the ReLU scales were left at 1 (structure
/// does not depend on them), which the notes say instead of naming a calibration set.
fn notes(conversion: &signgd::convert::Conversion, calibrated: bool) -> Vec<String> {
    conversion
        .notes
        .iter()
        .map(|note| match note.starts_with("normalised ") && note.contains("calibration input") && !calibrated {
            true => "ReLU scales left at 1: no calibration data (the structure does not depend on them; `run` calibrates, and `inspect --verify --data FILE` uses the file's first input)".to_string(),
            false => note.clone(),
        })
        .collect()
}

fn print_network(notes: &[String], summary: &NetworkSummary) {
    println!("\nconversion passes:");
    for note in notes {
        println!("  {note}");
    }
    println!(
        "\nspiking network: {} populations ({} of them relays), {} neurons, {} synapses, {} stored weights",
        summary.populations.len(),
        summary.relays,
        summary.neurons,
        summary.synapses,
        summary.stored_weights
    );
    println!(
        "{:>3}  {:<32} {:<10} {:>8}  operands (source: block, synapses, max fan-in / fan-out)",
        "#", "population", "kind", "neurons"
    );
    for (i, p) in summary.populations.iter().enumerate() {
        let operands: Vec<String> = p.operands.iter().map(|o| describe(o)).collect();
        println!("{i:>3}  {:<32} {:<10} {:>8}  {}", truncate(&p.name, 32), p.kind, p.neurons, operands.join(" | "));
    }
    println!(
        "     {:<32} {:<10} {:>8}  {}",
        "readout",
        "decoder",
        summary.output_shape.iter().product::<usize>(),
        describe(&summary.readout)
    );
}

/// The input of `--verify`: the first sample of `--data`, or a fixed pseudo-random one.
fn verify_input(args: &InspectArgs, shape: &[usize]) -> Result<ArrayD<f64>> {
    let count: usize = shape.iter().product();
    let values = match &args.data {
        Some(path) => {
            let limits = LoadLimits { max_samples: Some(1), ..LoadLimits::default() };
            let data = read_inputs(path, limits).with_context(|| format!("cannot read {}", path.display()))?;
            ensure!(
                data.samples > 0 && data.sample_len() == count,
                "{}: --verify needs one input of {count} values (the model's input {shape:?}), the file has samples of {}",
                path.display(),
                data.sample_len()
            );
            data.sample(0).to_vec()
        }
        None => {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
            (0..count).map(|_| rng.gen::<f64>()).collect()
        }
    };
    Ok(ArrayD::from_shape_vec(IxDyn(shape), values)?)
}

fn print_check(check: &Reconstruction) {
    let Some(worst) = check.worst() else { return };
    println!(
        "\nreconstruction identity ({}): {} operands, worst error relative to |c| + Σ|A||u| {:.2e} at `{}` operand {} (max |error| {:.3e}, max |value| {:.3e})",
        check.precision,
        check.operands.len(),
        worst.relative_error,
        worst.population,
        worst.operand,
        worst.max_error,
        worst.max_value
    );
}

fn describe(projections: &[ProjectionSummary]) -> String {
    if projections.is_empty() {
        return "constant".into();
    }
    projections
        .iter()
        .map(|p| {
            format!("{}: {} {} ({}/{})", truncate(&p.source, 24), p.block, p.synapses, p.max_fan_in, p.max_fan_out)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let tail: String = text.chars().rev().take(width - 1).collect::<Vec<_>>().into_iter().rev().collect();
        format!("…{tail}")
    }
}
