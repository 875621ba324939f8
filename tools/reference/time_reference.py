#!/usr/bin/env python3
"""Time the reference implementation of signGD conversion (snuhcs/snn_signgd) and `signgd bench`
side by side, on the same seeded torchvision models and the same inputs, on CPU.

    python tools/reference/time_reference.py --reference DIR [--scale DIR] [--signgd BIN]
        [--only NAME ...] [--threads 2] [--repeats 1] [--json FILE]

Needs a Python with the reference's own dependencies: PyTorch 2.0.1 (CPU is enough),
torchvision 0.15, spikingjelly 0.0.0.0.14, loguru, munch, tqdm and numpy (all from PyPI). DIR is
a checkout of https://github.com/snuhcs/snn_signgd (nothing of it is copied here); `--scale` is
the directory `tools/scale/export.py` wrote the ONNX exports to (default `target/scale`), and
`--signgd` the binary (default `target/release/signgd`, from `cargo build --release`).

For each case (resnet18 with 10 classes at 32×32, resnet18 and vgg16 at 224×224):

1. The torchvision model is built as `tools/scale/export.py` builds it (`torch.manual_seed(0)`,
   default initialisation, eval mode, BatchNorm running statistics drawn from a generator seeded
   with 0) and checked against the export: its logits on the export's saved input must equal the
   saved logits, so both programs run the same weights.
2. Inputs are drawn uniformly in [0, 1) from a generator seeded with 0: two calibration batches,
   then the timed batch.
3. The reference converts the model with its own default configuration,
   `examples/signgd_dynamics.py` (signGD dynamics, SGD with η0 = 0.15, exponential schedule
   γ = 0.95, float encoder, ReLU normalisation on the maximum activation, here measured on the
   two calibration batches), in float32. Its SNN runs one warm-up step, then `steps` steps of the
   timed batch are timed (wall clock).
4. `signgd bench --model M --data X --limit N --timesteps T --threads THREADS --json` runs on the
   export with the first N inputs of the same timed batch (signgd calibrates on the inputs of X,
   as `signgd run` does without `--calibration`). Its simulation time excludes conversion and
   preparation, like the reference's.

Both figures are wall-clock milliseconds per image and step with THREADS threads
(`1000 / (images/s × T)` for signgd); the ratio is reference ÷ signgd, above 1 when signgd is
faster. Both programs' speed depends on what else runs on the machine (PyTorch's OpenMP workers
slow down many times over when another process takes a core), so the one-minute load average is
recorded before the reference, between the two and after signgd, with the CPU time other
processes took while each ran (in cores, from /proc/stat); `--repeats` runs every case again to
show the spread.
"""

import argparse
import contextlib
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from importlib import metadata

os.environ.setdefault("TQDM_DISABLE", "1")  # the reference shows a progress bar per step

REPO = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SEED = 0
CALIBRATION_BATCHES = 2
REQUIRED = ("torch", "torchvision", "spikingjelly", "loguru", "munch", "tqdm", "numpy")

# name: (torchvision builder, its keyword arguments, input side,
#        reference batch, reference steps timed, signgd inputs, signgd timesteps)
CASES = {
    "resnet18_cifar": ("resnet18", {"num_classes": 10}, 32, 64, 64, 64, 64),
    "resnet18": ("resnet18", {}, 224, 16, 8, 16, 8),
    "vgg16": ("vgg16", {}, 224, 8, 4, 8, 4),
}

# The targets of the real-size engine work: signgd's speed as a multiple of the reference's.
TARGET_RATIO = {"resnet18_cifar": 2.0, "resnet18": 4.0, "vgg16": 4.0}


def fail(message):
    sys.exit(f"time_reference.py: {message}")


def check_packages():
    missing = [p for p in REQUIRED if importlib.util.find_spec(p) is None]
    if missing:
        fail(f"missing Python packages {missing} in {sys.executable}; install the reference's environment with "
             "`pip install torch==2.0.1 torchvision==0.15.2 spikingjelly==0.0.0.0.14 loguru munch tqdm numpy` "
             "(add `--index-url https://download.pytorch.org/whl/cpu` for the CPU-only build)")
    torch_version = metadata.version("torch")
    if not torch_version.startswith("2.0."):
        print(f"warning: the reference is written for PyTorch 2.0.1, this is {torch_version}", file=sys.stderr)


def check_reference(reference):
    dynamics = os.path.join(reference, "examples", "signgd_dynamics.py")
    package = os.path.join(reference, "src", "packages", "snn_signgd", "__init__.py")
    for path in (dynamics, package):
        if not os.path.isfile(path):
            fail(f"{path} not found: --reference must be a checkout of https://github.com/snuhcs/snn_signgd "
                 "(`git clone https://github.com/snuhcs/snn_signgd`)")


def export_files(scale, name):
    files = {kind: os.path.join(scale, f"{name}.{kind}") for kind in ("onnx", "input.npy", "logits.npy")}
    for path in files.values():
        if not os.path.isfile(path):
            fail(f"{path} not found: export the model with "
                 f"`python tools/scale/export.py --out {scale} --only {name}` (or give --scale DIR)")
    return files


def build(builder, kwargs):
    """The model of tools/scale/export.py: seeded default initialisation, random BatchNorm stats."""
    import torch
    import torchvision

    torch.manual_seed(SEED)
    model = getattr(torchvision.models, builder)(weights=None, **kwargs).eval()
    generator = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
    return model


def check_same_weights(model, name, files):
    """Fails unless `model` gives the export's saved logits on the export's saved input."""
    import numpy as np
    import torch

    x = torch.from_numpy(np.load(files["input.npy"]))
    expected = np.load(files["logits.npy"])
    with torch.no_grad():
        logits = model(x).numpy()
    if logits.shape != expected.shape:
        fail(f"{files['logits.npy']}: shape {expected.shape}, but the seeded {name} gives {logits.shape}")
    difference = float(np.abs(logits - expected).max())
    scale = float(np.abs(expected).max())
    if difference > 1e-4 * max(scale, 1e-6):
        fail(f"{files['onnx']}: the seeded {name} gives logits {difference:.3g} away from the export's "
             f"(largest logit {scale:.3g}); the export was made from other weights, export it again with "
             f"tools/scale/export.py")
    return difference


def load_dynamics(reference):
    """The reference's default signGD configuration, from its own file."""
    path = os.path.join(reference, "examples", "signgd_dynamics.py")
    spec = importlib.util.spec_from_file_location("signgd_dynamics", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.config


def inputs(side, batch):
    """Two calibration batches and the timed batch, uniform in [0, 1), seeded."""
    import torch

    generator = torch.Generator().manual_seed(SEED)
    calibration = [(torch.rand(batch, 3, side, side, generator=generator), torch.zeros(batch))
                   for _ in range(CALIBRATION_BATCHES)]
    return calibration, torch.rand(batch, 3, side, side, generator=generator)


def time_reference(model, dynamics, calibration, x, steps):
    """Converts `model` with the reference; returns (conversion s, ms per image and step)."""
    import torch
    from snn_signgd import convert

    with torch.no_grad(), contextlib.redirect_stdout(sys.stderr):  # the reference prints its stages
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
    return conversion, elapsed * 1000.0 / (steps * x.shape[0])


def time_signgd(binary, onnx, x, limit, timesteps, threads):
    """Runs `signgd bench` on the first `limit` inputs of `x`; returns its JSON report."""
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "inputs.npy")
        np.save(data, x.numpy())
        command = [binary, "bench", "--model", onnx, "--data", data, "--limit", str(limit),
                   "--timesteps", str(timesteps), "--threads", str(threads), "--json"]
        done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        fail(f"`{' '.join(command)}` failed with exit code {done.returncode}:\n{done.stderr.strip()}")
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError as error:
        fail(f"`{' '.join(command)}` printed no JSON report ({error}):\n{done.stdout[:2000]}")
    report["command"] = " ".join(["signgd"] + command[1:])
    return report


def load():
    return round(os.getloadavg()[0], 2)


class OtherCpu:
    """Cores' worth of CPU time that other processes used while the block ran (from /proc/stat,
    minus this process's and its children's own time); None where /proc/stat is missing."""

    def __enter__(self):
        self.start = self._sample()
        return self

    def __exit__(self, *exc):
        end = self._sample()
        self.cores = None
        if self.start is not None and end is not None:
            busy, own, wall = (b - a for a, b in zip(self.start, end))
            self.cores = round(max(busy - own, 0.0) / wall, 2) if wall > 0 else None
        return False

    @staticmethod
    def _sample():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        busy = (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle, iowait
        t = os.times()
        own = t.user + t.system + t.children_user + t.children_system
        return busy, own, time.perf_counter()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", required=True, metavar="DIR", help="checkout of snuhcs/snn_signgd")
    parser.add_argument("--scale", default=os.path.join(REPO, "target", "scale"), metavar="DIR",
                        help="the ONNX exports of tools/scale/export.py (default: target/scale)")
    parser.add_argument("--signgd", default=os.path.join(REPO, "target", "release", "signgd"), metavar="BIN",
                        help="the signgd binary (default: target/release/signgd)")
    parser.add_argument("--only", nargs="*", choices=list(CASES), help="time only these cases")
    parser.add_argument("--threads", type=int, default=2, help="threads for both programs (default 2)")
    parser.add_argument("--repeats", type=int, default=1, help="run every case this many times (default 1)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()
    if args.threads < 1 or args.repeats < 1:
        fail("--threads and --repeats must be at least 1")

    check_packages()
    reference = os.path.abspath(args.reference)
    check_reference(reference)
    if not os.access(args.signgd, os.X_OK):
        fail(f"{args.signgd} not found or not executable: run `cargo build --release` or give --signgd BIN")
    names = args.only or list(CASES)
    files = {name: export_files(args.scale, name) for name in names}

    import torch

    sys.path.insert(0, os.path.join(reference, "src", "packages"))
    from loguru import logger

    logger.remove()  # the reference logs every graph rewrite
    torch.set_num_threads(args.threads)
    dynamics = load_dynamics(reference)
    relu = dynamics.neuronal_dynamics.relu.submodules
    settings = {"dynamics": dynamics.dynamics_type, "eta0": relu.optimizer_input.lr,
                "gamma": relu.lr_scheduler_input.gamma, "encoder": dynamics.neuronal_dynamics.codec.choice,
                "dtype": str(torch.get_default_dtype()), "threads": args.threads}
    versions = {p: metadata.version(p) for p in ("torch", "torchvision", "spikingjelly")}
    print(f"reference settings {settings}; {versions}", flush=True)

    rows = []
    for repeat in range(args.repeats):
        for name in names:
            builder, kwargs, side, batch, steps, limit, timesteps = CASES[name]
            model = build(builder, kwargs)
            difference = check_same_weights(model, name, files[name])
            calibration, x = inputs(side, batch)
            load_before = load()
            with OtherCpu() as reference_other:
                conversion, reference_ms = time_reference(model, dynamics, calibration, x, steps)
            load_between = load()
            with OtherCpu() as signgd_other:
                bench = time_signgd(args.signgd, files[name]["onnx"], x, limit, timesteps, args.threads)
            load_after = load()
            signgd_ms = 1000.0 / (bench["snn_images_per_s"] * timesteps)
            row = {"model": name, "repeat": repeat, "input": [3, side, side],
                   "logits_max_abs_difference": difference,
                   "reference": {"batch": batch, "steps": steps, "ms_per_image_step": reference_ms,
                                 "conversion_s": conversion},
                   "signgd": {"inputs": limit, "timesteps": timesteps, "ms_per_image_step": signgd_ms,
                              "bench": bench},
                   "ratio": reference_ms / signgd_ms, "target_ratio": TARGET_RATIO[name],
                   "load": [load_before, load_between, load_after],
                   "other_cpu_cores": [reference_other.cores, signgd_other.cores]}
            rows.append(row)
            print(f"{name}: reference {reference_ms:.3f} ms per image and step (batch {batch}, {steps} steps), "
                  f"signgd {signgd_ms:.3f} ({limit} inputs, T = {timesteps}), reference ÷ signgd "
                  f"{row['ratio']:.2f} (target {TARGET_RATIO[name]:g}); load {load_before} → {load_between} → "
                  f"{load_after}; other processes {reference_other.cores} and {signgd_other.cores} cores",
                  flush=True)

    print()
    print("| model | input | reference: batch × steps | reference ms per image and step | signgd: inputs × T "
          "| signgd ms per image and step | reference ÷ signgd (target) | load average (before, between, after) "
          "| other processes' cores (reference, signgd) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        side = r["input"][-1]
        ref, sgd = r["reference"], r["signgd"]
        print(f"| {r['model']} | {side}×{side} | {ref['batch']} × {ref['steps']} | {ref['ms_per_image_step']:.2f} "
              f"| {sgd['inputs']} × {sgd['timesteps']} | {sgd['ms_per_image_step']:.2f} "
              f"| {r['ratio']:.2f} (≥ {r['target_ratio']:g}) | {' / '.join(f'{v:.2f}' for v in r['load'])} "
              f"| {' / '.join(str(v) for v in r['other_cpu_cores'])} |")
    if args.json:
        partial = args.json + ".partial"
        with open(partial, "w") as f:
            json.dump({"settings": settings, "versions": versions, "cases": rows}, f, indent=1)
            f.write("\n")
        os.replace(partial, args.json)


if __name__ == "__main__":
    main()
