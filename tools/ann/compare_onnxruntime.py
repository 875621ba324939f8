#!/usr/bin/env python3
"""Time signgd's ANN evaluator against onnxruntime on the same ONNX models, in one run, and check
its float32 outputs against PyTorch's logits. Prints a Markdown table.

    cargo build --release
    python tools/ann/compare_onnxruntime.py                  # the fixtures
    python tools/ann/compare_onnxruntime.py --scale DIR      # and DIR's exports

onnxruntime runs batch 1, sequential execution, --threads intra-op threads; signgd runs
`signgd bench --ann-only` with --threads workers, each evaluating its own inputs (in groups, see
the README).
Both are timed after warm-up runs. The fixtures are fed the Fashion-MNIST test images; an export
NAME.onnx of --scale is fed NAME.input.npy (repeated 64 times, as a data set would give every
worker whole groups of inputs), and its
outputs are compared with NAME.logits.npy (`signgd run --dump-ann`, float32).

Needs numpy and onnxruntime.
"""

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnxruntime as ort

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FASHION = os.path.join(REPO, "fixtures/data/fashion-mnist-test-1000-images-idx3-ubyte.gz")
SCALE_MODELS = ["resnet18_cifar", "resnet18", "vit_tiny_patch16_224"]
# Copies of an export's input signgd evaluates per pass (onnxruntime runs batch 1 for
# --seconds): enough for every worker to take whole groups of inputs, as it does on a data set.
SCALE_COPIES = 64


def fashion_images():
    """The 1000 Fashion-MNIST test images as float32 [N, 1, 28, 28] in [0, 1]."""
    with gzip.open(FASHION, "rb") as f:
        data = f.read()
    count, rows, cols = (int.from_bytes(data[i : i + 4], "big") for i in (4, 8, 12))
    images = np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, 1, rows, cols)
    return images.astype(np.float32) / 255.0


def onnxruntime_rate(model, inputs, threads, seconds):
    """Images per second of onnxruntime, batch 1, cycling through `inputs`."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    shape = [d if isinstance(d, int) else 1 for d in session.get_inputs()[0].shape]
    batches = [x.reshape(shape) for x in inputs]
    for x in batches[:3]:
        session.run(None, {name: x})
    runs, started = 0, time.perf_counter()
    while runs < 10 or time.perf_counter() - started < seconds:
        session.run(None, {name: batches[runs % len(batches)]})
        runs += 1
    return runs / (time.perf_counter() - started)


def signgd_rate(signgd, model, data, limit, threads):
    """Images per second of `signgd bench --ann-only` on the first `limit` inputs of `data`."""
    command = [signgd, "bench", "--ann-only", "--json", "--model", model, "--data", data]
    command += ["--limit", str(limit), "--threads", str(threads)]
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["ann_images_per_s"]


def signgd_logits(signgd, model, data, threads, scratch):
    """signgd's float32 ANN outputs on `data` (`signgd run --dump-ann`)."""
    path = os.path.join(scratch, "ann.npy")
    command = [signgd, "run", "--json", "--model", model, "--data", data, "--timesteps", "1"]
    command += ["--threads", str(threads), "--dump-ann", path]
    subprocess.run(command, check=True, capture_output=True, text=True)
    return np.load(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", help="directory of the real-size exports (NAME.onnx, NAME.input.npy, NAME.logits.npy)")
    parser.add_argument("--signgd", default=os.path.join(REPO, "target/release/signgd"), help="the signgd binary")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.0, help="least time onnxruntime is timed per model")
    parser.add_argument("--no-fixtures", action="store_true", help="only the exports of --scale")
    args = parser.parse_args()
    with open(os.path.join(REPO, "fixtures/models/manifest.json")) as f:
        manifest = json.load(f)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        if not args.no_fixtures:
            images = fashion_images()
            for entry in manifest["models"]:
                model = os.path.join(REPO, entry["files"][0])
                limit = 256
                ours = signgd_rate(args.signgd, model, FASHION, limit, args.threads)
                theirs = onnxruntime_rate(model, images[:limit], args.threads, args.seconds)
                want = np.load(os.path.join(REPO, entry["logits"]))
                got = signgd_logits(args.signgd, model, FASHION, args.threads, scratch)
                rows.append((entry["name"], "1×28×28", theirs, ours, want, got))
                print(f"{entry['name']}: onnxruntime {theirs:.1f}/s, signgd {ours:.1f}/s", file=sys.stderr)
        if args.scale:
            for name in SCALE_MODELS:
                model = os.path.join(args.scale, name + ".onnx")
                if not os.path.exists(model):
                    print(f"{model}: missing, skipped", file=sys.stderr)
                    continue
                x = np.load(os.path.join(args.scale, name + ".input.npy")).astype(np.float32)
                repeated = os.path.join(scratch, name + ".inputs.npy")
                copies = max(SCALE_COPIES, 4 * args.threads)
                np.save(repeated, np.repeat(x[:1], copies, axis=0))
                ours = signgd_rate(args.signgd, model, repeated, copies, args.threads)
                theirs = onnxruntime_rate(model, x[:1], args.threads, args.seconds)
                want = np.load(os.path.join(args.scale, name + ".logits.npy"))
                single = os.path.join(scratch, name + ".input.npy")
                np.save(single, x[:1])
                got = signgd_logits(args.signgd, model, single, args.threads, scratch)
                size = "×".join(str(d) for d in x.shape[1:])
                rows.append((name, size, theirs, ours, want, got))
                print(f"{name}: onnxruntime {theirs:.1f}/s, signgd {ours:.1f}/s", file=sys.stderr)
    print(f"| model | input | onnxruntime images/s ({args.threads} threads, batch 1) | signgd ANN images/s ({args.threads} workers) | signgd ÷ onnxruntime | max abs. difference to PyTorch's logits (f32) | relative to max abs. logit |")
    print("|---|---|---|---|---|---|---|")
    for name, size, theirs, ours, want, got in rows:
        want = want.reshape(got.shape)
        diff = float(np.abs(got.astype(np.float64) - want).max())
        scale = float(np.abs(want).max())
        print(f"| {name} | {size} | {theirs:,.1f} | {ours:,.1f} | {ours / theirs:.2f} | {diff:.1e} | {diff / scale:.1e} |")


if __name__ == "__main__":
    main()
