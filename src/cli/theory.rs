//! `signgd theory`: IF neurons against the subgradient method on random inputs.

use std::process::ExitCode;

use anyhow::{ensure, Result};
use clap::Args;
use signgd::theory::{check_if_equivalence, TheoryConfig};

/// Options of `signgd theory`.
#[derive(Args)]
pub struct TheoryArgs {
    /// Number of random neurons (threshold, initial membrane, input currents).
    #[arg(long, default_value_t = 2000)]
    trials: usize,
    /// Steps per trial.
    #[arg(long, default_value_t = 200)]
    steps: usize,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs the check and prints the verdict; exit code 2 when some spike trains differ.
pub fn run(args: TheoryArgs) -> Result<ExitCode> {
    ensure!(args.trials > 0, "--trials must be at least 1");
    ensure!(args.steps > 0, "--steps must be at least 1");
    let report = check_if_equivalence(TheoryConfig { trials: args.trials, steps: args.steps, seed: args.seed });
    if args.json {
        let mut value = serde_json::to_value(&report)?;
        value["identical"] = report.all_identical().into();
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        println!("IF neuron (reset by subtraction) vs subgradient method, step 1/(t+1)");
        println!("trials {}, steps {}, seed {}", args.trials, args.steps, args.seed);
        println!("spikes: IF {}, subgradient {}", report.if_spikes, report.subgradient_spikes);
        match report.first_mismatch {
            None => println!("identical spike trains in all {} trials", report.identical_trials),
            Some((trial, step)) => println!(
                "spike trains differ in {} of {} trials (first: trial {trial}, step {step})",
                args.trials - report.identical_trials,
                args.trials
            ),
        }
    }
    Ok(if report.all_identical() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}
