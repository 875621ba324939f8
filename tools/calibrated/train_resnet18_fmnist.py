#!/usr/bin/env python3
"""Train torchvision's ResNet-18 on Fashion-MNIST at 32x32 with 3 channels and export it to ONNX.

    python tools/calibrated/train_resnet18_fmnist.py --out DIR [--epochs 3] [--train-limit N]

The network is `torchvision.models.resnet18(num_classes=10)` unchanged (7x7 stride-2 stem, max
pooling, four residual stages, global average pooling). Images are the Fashion-MNIST pixels / 255,
resized bilinearly from 28x28 to 32x32 and repeated over 3 channels (no other normalisation).

Written into --out:
    resnet18_fmnist.onnx        dynamo exporter, opset 20, batch 1, doc strings and metadata removed
    test-1000-x.npy             float32 [1000, 3, 32, 32]: the first 1,000 test images, as the model sees them
    test-1000-y.npy             int64 [1000]: their labels
    calibration-1024-x.npy      float32 [1024, 3, 32, 32]: the last 1,024 training images (never trained
                                on; the calibration and tuning set of `signgd tune` and `signgd run`)
    logits.npy                  float32 [1000, 10]: PyTorch logits on test-1000-x.npy
    manifest.json               epochs, training images, seed, accuracy, time

Evaluate the SNN with, e.g.:

    signgd run --model DIR/resnet18_fmnist.onnx --data DIR/test-1000-x.npy --labels DIR/test-1000-y.npy \\
        --calibration DIR/calibration-1024-x.npy --timesteps 8,16,32,64,256 --preset calibrated

The data come from the Debian package dataset-fashion-mnist (`apt-get install dataset-fashion-mnist`,
IDX files in /usr/share/datasets/fashion-mnist); --data overrides the location. Seeds are fixed; CPU only.
"""

import argparse
import gzip
import json
import struct
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnx.inliner
import torch
import torch.nn.functional as F
import torchvision

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"
SEED = 20241201
TEST_SUBSET = 1000
CALIBRATION = 1024


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic = struct.unpack(">I", raw[:4])[0]
    ndim = magic & 0xFF
    if magic >> 8 != 0x08:
        raise SystemExit(f"{path}: not a uint8 IDX file (magic {magic:#010x})")
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def to_model_input(pixels):
    """uint8 [N, 28, 28] -> float32 [N, 3, 32, 32]: / 255, bilinear resize, 3 channels."""
    x = torch.from_numpy(pixels.astype(np.float32) / 255.0).unsqueeze(1)
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
    return x.repeat(1, 3, 1, 1).contiguous()


def scrub(msg):
    """Clear doc_string and metadata_props in every protobuf message."""
    for field, value in msg.ListFields():
        if field.name in ("doc_string", "metadata_props"):
            msg.ClearField(field.name)
        elif field.type == field.TYPE_MESSAGE:
            repeated = field.is_repeated if hasattr(field, "is_repeated") else field.label == field.LABEL_REPEATED
            for item in value if repeated else [value]:
                scrub(item)


def export(model, path):
    example = torch.zeros(1, 3, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), dynamo=True, opset_version=20, external_data=False,
                          input_names=["input"], output_names=["logits"], verbose=False)
    m = onnx.load(str(path))
    if len(m.functions) > 0:
        m = onnx.inliner.inline_local_functions(m)
        del m.functions[:]
    scrub(m)
    used = {n.domain for n in m.graph.node}
    keep = [o for o in m.opset_import if o.domain in ("", "ai.onnx") or o.domain in used]
    del m.opset_import[:]
    m.opset_import.extend(keep)
    onnx.checker.check_model(m, full_check=True)
    path.write_bytes(m.SerializeToString())


def evaluate(model, x, batch=250):
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[i : i + batch]) for i in range(0, len(x), batch)])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--data", default=DEFAULT_DATA, type=Path)
    parser.add_argument("--epochs", default=3, type=int)
    parser.add_argument("--train-limit", default=None, type=int,
                        help="train on the first N training images only (default: all but the calibration set)")
    parser.add_argument("--batch", default=128, type=int)
    parser.add_argument("--threads", default=2, type=int)
    args = parser.parse_args()

    torch.manual_seed(SEED)
    np.random.seed(SEED)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    train_x = read_idx(args.data / "train-images-idx3-ubyte.gz")
    train_y = read_idx(args.data / "train-labels-idx1-ubyte.gz").astype(np.int64)
    test_x = read_idx(args.data / "t10k-images-idx3-ubyte.gz")[:TEST_SUBSET]
    test_y = read_idx(args.data / "t10k-labels-idx1-ubyte.gz")[:TEST_SUBSET].astype(np.int64)

    calibration = to_model_input(train_x[-CALIBRATION:])
    available = len(train_x) - CALIBRATION
    used = available if args.train_limit is None else min(args.train_limit, available)
    xs = to_model_input(train_x[:used])
    ys = torch.from_numpy(train_y[:used])
    test = to_model_input(test_x)

    model = torchvision.models.resnet18(num_classes=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, nesterov=True)
    steps = args.epochs * ((used + args.batch - 1) // args.batch)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=0.05, total_steps=steps)
    generator = torch.Generator().manual_seed(SEED)
    start = time.time()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(used, generator=generator)
        total, correct, loss_sum = 0, 0, 0.0
        for i in range(0, used, args.batch):
            idx = order[i : i + args.batch]
            logits = model(xs[idx])
            loss = F.cross_entropy(logits, ys[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += len(idx)
            correct += (logits.argmax(1) == ys[idx]).sum().item()
            loss_sum += loss.item() * len(idx)
            if (i // args.batch) % 50 == 0:
                print(f"epoch {epoch + 1} step {i // args.batch} loss {loss_sum / total:.4f} "
                      f"train acc {correct / total:.4f} {time.time() - start:.0f}s", flush=True)
        test_acc = (evaluate(model, test).argmax(1).numpy() == test_y).mean()
        print(f"epoch {epoch + 1} done: train acc {correct / total:.4f}, test-1000 acc {test_acc:.4f}, "
              f"{time.time() - start:.0f}s", flush=True)

    logits = evaluate(model, test).numpy().astype(np.float32)
    accuracy = float((logits.argmax(1) == test_y).mean())
    np.save(args.out / "test-1000-x.npy", test.numpy().astype(np.float32))
    np.save(args.out / "test-1000-y.npy", test_y)
    np.save(args.out / f"calibration-{CALIBRATION}-x.npy", calibration.numpy().astype(np.float32))
    np.save(args.out / "logits.npy", logits)
    export(model.eval(), args.out / "resnet18_fmnist.onnx")
    manifest = {
        "model": "torchvision.models.resnet18(num_classes=10)",
        "input": "[1, 3, 32, 32] float32, Fashion-MNIST pixel / 255, bilinear 28->32, grey repeated",
        "epochs": args.epochs,
        "training_images": used,
        "seed": SEED,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "test_1000_accuracy": accuracy,
        "train_seconds": round(time.time() - start),
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps(manifest, indent=2))


if __name__ == "__main__":
    main()
