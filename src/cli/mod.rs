//! Command-line parsing and dispatch.

mod bench;
mod feasibility;
mod inspect;
mod report;
mod run;
mod theory;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Converts trained neural networks into spiking networks with sign-gradient-descent neurons and
/// simulates them event by event.
#[derive(Parser)]
#[command(name = "signgd", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check whether the converted network fits Loihi, Loihi 2, TrueNorth, SpiNNaker or Speck.
    Feasibility(feasibility::FeasibilityArgs),
    /// Measure simulation speed: images/s, synaptic events/s, ms per step, peak memory.
    Bench(bench::BenchArgs),
    /// Show the graph as read, the spiking network made from it, and anything refused.
    Inspect(inspect::InspectArgs),
    /// Convert a model, simulate it, and print accuracy against timesteps
    Run(run::RunArgs),
    /// Print the summary of a report directory written by `signgd run --report DIR`.
    Report(report::ReportArgs),
    /// Check that IF neurons and the subgradient method give identical spike trains (SPEC §1).
    Theory(theory::TheoryArgs),
}

/// Parses the command line, runs the command, and turns errors into a message and exit code 1.
pub fn main() -> ExitCode {
    end_quietly_on_closed_pipe();
    init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Theory(args) => theory::run(args),
        Command::Run(args) => run::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Feasibility(args) => feasibility::run(args),
        Command::Report(args) => report::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}

/// The reader's limits with both bounds at `elements`.
fn model_limits(elements: usize) -> signgd::model::reader::ReadLimits {
    signgd::model::reader::ReadLimits { max_elements: elements, max_total_elements: elements }
}

/// Restores the default action of SIGPIPE, which the Rust runtime ignores: a command whose reader
/// has gone (`signgd inspect … | head`) then ends quietly, as Unix filters do, instead of
/// panicking on its next write. Output files are written atomically, so none is left half written.
fn end_quietly_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in main, before any other thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}
