#!/usr/bin/env python3
"""Measure signgd on the real-size exports of export.py: conversion (time, peak memory, structure),
the reconstruction identity, and a one-input simulation. Prints Markdown tables for the README.

    cargo build --release
    python3 tools/scale/measure.py --models target/scale              # every model in the manifest
    python3 tools/scale/measure.py --models target/scale --only resnet18 vgg16

Needs only the Python standard library. Peak memory is the resident set size of each signgd
process (from wait4), and the bound the issue asks for is 2 × the ONNX file + 1 GiB.
"""

import argparse
import json
import os
import sys
import time

GIB = 1 << 30


def measured(command):
    """Runs `command[:-1]` with its output in the file `command[-1]`; returns (exit code, output,
    seconds, peak resident bytes of that process)."""
    started = time.time()
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_WRONLY)
        out = os.open(command[-1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, 1)
        os.dup2(devnull, 2)
        os.execv(command[0], command[:-1])
    _, status, usage = os.wait4(pid, 0)
    seconds = time.time() - started
    with open(command[-1]) as f:
        text = f.read()
    os.unlink(command[-1])
    return os.waitstatus_to_exitcode(status), text, seconds, usage.ru_maxrss * 1024


def mib(n):
    return f"{n / (1 << 20):,.0f} MiB"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="target/scale", help="directory written by export.py")
    parser.add_argument("--signgd", default="target/release/signgd", help="the signgd binary")
    parser.add_argument("--only", nargs="*", help="measure only these models")
    parser.add_argument("--timesteps", type=int, default=8, help="steps of the one-input simulation")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-run", action="store_true", help="skip the simulation")
    args = parser.parse_args()
    with open(os.path.join(args.models, "manifest.json")) as f:
        manifest = json.load(f)
    names = args.only or list(manifest)
    binary = os.path.abspath(args.signgd)
    scratch = os.path.join(args.models, ".measure.out")
    rows = []
    for name in names:
        model = os.path.join(args.models, f"{name}.onnx")
        data = os.path.join(args.models, f"{name}.input.npy")
        size = os.path.getsize(model)
        bound = 2 * size + GIB
        code, text, seconds, peak = measured([binary, "inspect", "--model", model, "--json", scratch])
        if code != 0:
            print(f"{name}: inspect failed ({code})", file=sys.stderr)
            continue
        network = json.loads(text)["network"]
        checks = {}
        for precision in ("f32", "f64"):
            command = [binary, "inspect", "--model", model, "--json", "--verify", "--data", data]
            code, text, _, _ = measured(command + ["--precision", precision, scratch])
            worst = max(json.loads(text)["reconstruction"]["operands"], key=lambda o: o["relative_error"])
            checks[precision] = worst
        row = {
            "name": name,
            "parameters": manifest[name]["parameters"],
            "file": size,
            "bound": bound,
            "populations": len(network["populations"]),
            "relays": network["relays"],
            "neurons": network["neurons"],
            "synapses": network["synapses"],
            "stored": network["stored_weights"],
            "convert_s": seconds,
            "convert_peak": peak,
            "check": checks,
        }
        if not args.skip_run:
            command = [binary, "run", "--model", model, "--data", data, "--timesteps", str(args.timesteps),
                       "--threads", str(args.threads), "--json", scratch]
            code, text, seconds, peak = measured(command)
            if code == 0:
                result = json.loads(text)
                snn = result["time_s"]["snn"]
                row["run_s"] = seconds
                row["run_peak"] = peak
                row["ms_per_step"] = 1000 * snn / args.timesteps if snn is not None else None
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)

    print("| model | parameters | ONNX file | populations (relays) | neurons | synapses | stored weights | "
          "conversion | peak memory (bound) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ok = "✓" if r["convert_peak"] <= r["bound"] else "✗"
        print(f"| {r['name']} | {r['parameters']:,} | {mib(r['file'])} | {r['populations']} ({r['relays']}) | "
              f"{r['neurons']:,} | {r['synapses'] / 1e9:.2f} G | {r['stored']:,} | {r['convert_s']:.1f} s | "
              f"{mib(r['convert_peak'])} ({mib(r['bound'])}) {ok} |")
    print()
    print("| model | worst operand, float32: error / (|c| + Σ|A||u|) | max |error|, max |value| | "
          "float64: same measure |")
    print("|---|---|---|---|")
    for r in rows:
        f32, f64 = r["check"]["f32"], r["check"]["f64"]
        print(f"| {r['name']} | {f32['relative_error']:.1e} (`{f32['population']}` operand {f32['operand']}) | "
              f"{f32['max_error']:.1e}, {f32['max_value']:.2f} | {f64['relative_error']:.1e} |")
    if not args.skip_run:
        print()
        print(f"| model | one input, T = {args.timesteps}: ms per step | whole run | peak memory (bound) |")
        print("|---|---|---|---|")
        for r in rows:
            if "run_peak" not in r:
                print(f"| {r['name']} | failed | | |")
                continue
            ok = "✓" if r["run_peak"] <= r["bound"] else "✗"
            step = f"{r['ms_per_step']:,.0f}" if r.get("ms_per_step") is not None else "-"
            print(f"| {r['name']} | {step} | {r['run_s']:.0f} s | {mib(r['run_peak'])} ({mib(r['bound'])}) {ok} |")


if __name__ == "__main__":
    main()
