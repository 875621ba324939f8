//! `signgd ops`: every supported ONNX operator and what the conversion makes of it.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use serde_json::json;
use signgd::model::operators::OPERATORS;

/// Options of `signgd ops`.
#[derive(Args)]
pub struct OpsArgs {
    /// Print the list as JSON.
    #[arg(long)]
    json: bool,
}

/// Prints the supported operators.
pub fn run(args: OpsArgs) -> Result<ExitCode> {
    let text = if args.json {
        let list: Vec<_> = OPERATORS.iter().map(|o| json!({"operator": o.name, "becomes": o.becomes})).collect();
        serde_json::to_string_pretty(&list)? + "\n"
    } else {
        let width = OPERATORS.iter().map(|o| o.name.len()).max().unwrap_or(0);
        let mut text = format!("{} ONNX operators of the default domain (`ai.onnx`):\n", OPERATORS.len());
        for o in OPERATORS {
            let _ = writeln!(text, "  {:width$}  {}", o.name, o.becomes);
        }
        text
    };
    super::run::print_out(&text)?;
    Ok(ExitCode::SUCCESS)
}
