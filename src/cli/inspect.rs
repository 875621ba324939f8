//! `signgd inspect`: the graph as read, the populations and synapse blocks made from it, and
//! anything refused.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::model_limits;
use clap::Args;
use ndarray::{ArrayD, IxDyn};
use signgd::convert::{convert, ConvertOptions};
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
}

/// Reads, converts and describes the model; exit code 1 with the reason when it is refused.
pub fn run(args: InspectArgs) -> Result<ExitCode> {
    let graph = read_onnx_with_limits(&args.model, None, model_limits(args.max_model_elements))
        .with_context(|| format!("cannot read {}", args.model.display()))?;
    let input_shape = graph.values[graph.input].shape.clone();
    // Structure does not depend on calibration: one zero input gives every ReLU scale 1.
    let options = ConvertOptions { gelu: GeluTarget::Sigmoid, calibration: vec![ArrayD::zeros(IxDyn(&input_shape))] };
    let conversion = convert(&graph, &options);
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
                "passes": c.notes,
                "network": NetworkSummary::of(&c.network),
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
            Ok(c) => print_network(&c.notes, &NetworkSummary::of(&c.network)),
            Err(e) => println!("\nrefused: {e}"),
        }
    }
    Ok(if conversion.is_ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
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
