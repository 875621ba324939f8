//! Commands piped into a reader that stops early (`signgd inspect … | head`) end quietly, as
//! Unix filters do, instead of panicking on the closed pipe.

#![cfg(unix)]

use std::process::{Command, Stdio};

fn ends_quietly(args: &[&str]) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_signgd"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader is gone before the first line is written.
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "signgd {}: {stderr}", args.join(" "));
    assert_ne!(output.status.code(), Some(101), "signgd {} exited as a panic does", args.join(" "));
}

#[test]
fn inspect_into_a_closed_pipe() {
    ends_quietly(&["inspect", "--model", "fixtures/models/mlp.onnx"]);
}

#[test]
fn bench_into_a_closed_pipe() {
    ends_quietly(&[
        "bench",
        "--model",
        "fixtures/models/mlp.onnx",
        "--limit",
        "2",
        "--timesteps",
        "4",
        "--threads",
        "1",
    ]);
}

#[test]
fn theory_into_a_closed_pipe() {
    ends_quietly(&["theory", "--trials", "2", "--steps", "8"]);
}
