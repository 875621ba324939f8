#!/usr/bin/env python3
"""Time the reference implementation of signGD conversion (snuhcs/snn_signgd, MIT) on CPU.

    python tools/reference/time_reference.py --reference DIR [--json FILE] [--only NAME ...]

DIR is a checkout of the reference repository; nothing of it is copied here. For each case the
torchvision model is built with random weights as tools/scale/export.py builds it
(`torch.manual_seed(0)`, weights=None, eval mode, BatchNorm running statistics drawn from a
generator seeded with 0), then:

- the ANN is exported to ONNX (batch 1, in a temporary directory) and timed with onnxruntime:
  images/s at batch 1;
- the reference converts it with its own defaults: the neuronal dynamics of
  `examples/signgd_dynamics.py` (SGD with η0 = 0.15, exponential schedule γ = 0.95, float
  encoder), ReLU normalisation calibrated on a few batches of random inputs, float32;
- the reference's SNN runs one warm-up step, then `steps` steps are timed (wall clock) on one
  batch of random inputs: milliseconds per image per step.

Both run with `--threads` threads (2 by default). The load average before and after each case is
recorded, since other work on the machine slows both.
"""

import argparse
import contextlib
import importlib.util
import json
import os
import sys
import tempfile
import time
from importlib import metadata

import torch
import torch.nn as nn

SEED = 0
CALIBRATION_BATCHES = 2

# name: (torchvision builder, its keyword arguments, input side, batch, SNN steps timed)
CASES = {
    "resnet18_cifar": ("resnet18", {"num_classes": 10}, 32, 64, 64),
    "resnet18": ("resnet18", {}, 224, 16, 8),
    "vgg16": ("vgg16", {}, 224, 16, 8),
}


def build(builder, kwargs):
    """The model of tools/scale/export.py: seeded default initialisation, random BatchNorm stats."""
    import torchvision

    torch.manual_seed(SEED)
    model = getattr(torchvision.models, builder)(weights=None, **kwargs).eval()
    generator = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
    return model


def load_dynamics(reference):
    """The reference's default signGD configuration, from its own file."""
    path = os.path.join(reference, "examples", "signgd_dynamics.py")
    spec = importlib.util.spec_from_file_location("signgd_dynamics", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.config


def onnxruntime_images_per_s(model, side, threads, seconds=3.0):
    """Exports `model` at batch 1 and runs it with onnxruntime until `seconds` have passed."""
    import onnxruntime as ort

    example = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(SEED))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        with torch.no_grad(), contextlib.redirect_stdout(sys.stderr):  # the exporter prints a banner
            torch.onnx.export(model, (example,), path, opset_version=17, input_names=["input"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    feed = {"input": example.numpy()}
    for _ in range(3):
        session.run(None, feed)
    runs, started = 0, time.perf_counter()
    while runs < 10 or time.perf_counter() - started < seconds:
        session.run(None, feed)
        runs += 1
    return runs / (time.perf_counter() - started)


def time_reference(model, dynamics, side, batch, steps):
    """Converts `model` with the reference and returns (conversion s, ms per image per step)."""
    from snn_signgd import convert

    generator = torch.Generator().manual_seed(SEED)
    calibration = [(torch.rand(batch, 3, side, side, generator=generator), torch.zeros(batch))
                   for _ in range(CALIBRATION_BATCHES)]
    x = torch.rand(batch, 3, side, side, generator=generator)
    with torch.no_grad():
        started = time.perf_counter()
        snn, _, _ = convert(
            model,
            neuronal_dynamics=dynamics.neuronal_dynamics,
            dynamics_type=dynamics.dynamics_type,
            default_simulation_length=steps,
            activation_scale_dataloader=calibration,
            max_activation_scale_iterations=CALIBRATION_BATCHES,
            scale_relu_with_max_activation=dynamics.scale_relu_with_max_activation,
        )
        conversion = time.perf_counter() - started
        snn(x, [1])
        started = time.perf_counter()
        snn(x, [steps])
        elapsed = time.perf_counter() - started
    return conversion, elapsed * 1000.0 / (steps * batch)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", required=True, metavar="DIR", help="checkout of snuhcs/snn_signgd")
    parser.add_argument("--only", nargs="*", choices=list(CASES), help="time only these cases")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()

    sys.path.insert(0, os.path.join(os.path.abspath(args.reference), "src", "packages"))
    from loguru import logger

    logger.remove()  # the reference logs every graph rewrite
    torch.set_num_threads(args.threads)
    dynamics = load_dynamics(args.reference)
    relu = dynamics.neuronal_dynamics.relu.submodules
    settings = {"eta0": relu.optimizer_input.lr, "gamma": relu.lr_scheduler_input.gamma,
                "encoder": dynamics.neuronal_dynamics.codec.choice, "dtype": str(torch.get_default_dtype())}
    versions = {p: metadata.version(p) for p in ("torch", "torchvision", "spikingjelly", "onnxruntime")}
    print(f"reference settings: {settings}; {versions}; {args.threads} threads", flush=True)

    rows = []
    for name in args.only or list(CASES):
        builder, kwargs, side, batch, steps = CASES[name]
        load_before = os.getloadavg()[0]
        model = build(builder, kwargs)
        ort_rate = onnxruntime_images_per_s(model, side, args.threads)
        conversion, ms = time_reference(model, dynamics, side, batch, steps)
        row = {"model": name, "input": [3, side, side], "batch": batch, "steps": steps,
               "reference_ms_per_image_step": ms, "reference_conversion_s": conversion,
               "onnxruntime_images_per_s": ort_rate, "load": [load_before, os.getloadavg()[0]]}
        rows.append(row)
        print(f"{name}: {ms:.3f} ms per image per step, conversion {conversion:.1f} s, "
              f"onnxruntime {ort_rate:.1f} images/s (load {row['load'][0]:.2f} -> {row['load'][1]:.2f})", flush=True)

    print()
    print("| model | input | batch | steps timed | reference ms per image per step | onnxruntime images/s, batch 1 "
          "| reference conversion s | load before → after |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        side = r["input"][-1]
        print(f"| {r['model']} | {side}×{side} | {r['batch']} | {r['steps']} | {r['reference_ms_per_image_step']:.2f} "
              f"| {r['onnxruntime_images_per_s']:.1f} | {r['reference_conversion_s']:.1f} "
              f"| {r['load'][0]:.2f} → {r['load'][1]:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"settings": settings, "threads": args.threads, "versions": versions, "cases": rows},
                      f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
