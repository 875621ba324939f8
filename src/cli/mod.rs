//! Command-line parsing and dispatch.

mod bench;
mod feasibility;
mod inspect;
mod merge;
mod ops;
mod plan;
mod report;
mod run;
mod shard;
mod theory;
mod tune;

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
    Run(Box<run::RunArgs>),
    /// List every supported ONNX operator and what the conversion makes of it.
    Ops(ops::OpsArgs),
    /// Combine the report directories of `signgd run --shard K/N` into the report of the whole run.
    Merge(merge::MergeArgs),
    /// Print the summary of a report directory written by `signgd run --report DIR`.
    Report(report::ReportArgs),
    /// Choose the schedule (and GELU target) for a target number of timesteps on held-out
    /// calibration inputs, and write the settings `run --tuned` reads.
    Tune(tune::TuneArgs),
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
        Command::Run(args) => run::run(*args),
        Command::Inspect(args) => inspect::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Feasibility(args) => feasibility::run(args),
        Command::Report(args) => report::run(args),
        Command::Merge(args) => merge::run(args),
        Command::Ops(args) => ops::run(args),
        Command::Tune(args) => tune::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}

/// `--threads`: the number asked for (at least 1), or the available parallelism.
fn worker_threads(requested: Option<usize>) -> anyhow::Result<usize> {
    match requested {
        Some(0) => anyhow::bail!("--threads 0: give at least 1 worker thread"),
        Some(n) => Ok(n),
        None => Ok(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)),
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

/// Warnings go to stderr as `WARN message`; `RUST_LOG=info` adds the phases with their durations,
/// `RUST_LOG=debug` every conversion pass and population, with the time since start.
fn init_logging() {
    use std::io::IsTerminal as _;
    let ansi = std::io::stderr().is_terminal();
    match tracing_subscriber::EnvFilter::try_from_default_env() {
        Ok(filter) => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_timer(tracing_subscriber::fmt::time::uptime())
            .init(),
        Err(_) => tracing_subscriber::fmt()
            .with_env_filter("warn")
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
            .with_target(false)
            .without_time()
            .init(),
    }
}

/// A bundled fixture (`relative` to the source tree): found in the working directory, else
/// beside the executable (a build inside the source tree) or in the tree it was built from; else
/// an error saying to pass `option`.
fn bundled(relative: &str, option: &str) -> anyhow::Result<std::path::PathBuf> {
    let here = std::path::Path::new(relative);
    if here.exists() {
        return Ok(here.to_path_buf());
    }
    let beside_executable = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().skip(1).map(|dir| dir.join(relative)).find(|p| p.exists()));
    let source_tree = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    beside_executable.or_else(|| source_tree.exists().then_some(source_tree)).ok_or_else(|| {
        anyhow::anyhow!(
            "no {option} given, and the bundled default {relative} is neither in the working directory nor beside the signgd executable; pass {option}"
        )
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_missing_bundled_file_names_the_option_to_pass() {
        let error = super::bundled("fixtures/no-such-model.onnx", "--model FILE.onnx").unwrap_err().to_string();
        assert!(error.contains("pass --model FILE.onnx") && error.contains("fixtures/no-such-model.onnx"), "{error}");
        assert!(super::bundled("fixtures/models/mlp.onnx", "--model FILE.onnx").unwrap().exists());
    }
}
