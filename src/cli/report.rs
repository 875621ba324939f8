//! `signgd report DIR`: print the summary of a saved report again.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use signgd::report::ReportData;

/// Options of `signgd report`.
#[derive(Args)]
pub struct ReportArgs {
    /// A directory written by `signgd run --report DIR`.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Print report.json instead of the summary.
    #[arg(long)]
    json: bool,
}

/// Runs the command.
pub fn run(args: ReportArgs) -> Result<ExitCode> {
    let report = ReportData::read(&args.dir)?;
    let text = if args.json { serde_json::to_string_pretty(&report)? + "\n" } else { report.summary() };
    super::run::print_out(&text)?;
    Ok(ExitCode::SUCCESS)
}
