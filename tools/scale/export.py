#!/usr/bin/env python3
"""Export the paper's real-size networks (and a CIFAR-size ResNet-18) to ONNX with random weights.

Not committed: the files are large (45 MB to 550 MB each). Run by hand:

    python tools/scale/export.py --out target/scale            # every model
    python tools/scale/export.py --out target/scale --only resnet18 vit_tiny

Every model is built with `torch.manual_seed(0)` and default initialisation (no pretrained
weights can be downloaded here), put in eval() mode, exported with the dynamo exporter (opset 20,
batch 1, weights inside the file) and cleaned like the fixtures (doc strings and metadata
removed, local functions inlined). `--small DIR` instead writes the small models of the same
architectures that the tests use (see `small_models`).
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures"))
from train import FORBIDDEN, _scrub  # noqa: E402

SEED = 0


def torchvision_model(name, **kwargs):
    import torchvision

    return getattr(torchvision.models, name)(weights=None, **kwargs)


def timm_model(name, **kwargs):
    import timm

    return timm.create_model(name, pretrained=False, **kwargs)


# name: (builder, input side)
MODELS = {
    "resnet18": (lambda: torchvision_model("resnet18"), 224),
    "resnet34": (lambda: torchvision_model("resnet34"), 224),
    "vgg16": (lambda: torchvision_model("vgg16"), 224),
    "regnet_x_3_2gf": (lambda: torchvision_model("regnet_x_3_2gf"), 224),
    "convnext_tiny": (lambda: torchvision_model("convnext_tiny"), 224),
    "convnext_base": (lambda: torchvision_model("convnext_base"), 224),
    "mixer_b32_224": (lambda: timm_model("mixer_b32_224"), 224),
    "resmlp_24_224": (lambda: timm_model("resmlp_24_224"), 224),
    "vit_tiny_patch16_224": (lambda: timm_model("vit_tiny_patch16_224"), 224),
    # The CIFAR-size network most conversion papers use: 10 classes at 32x32.
    "resnet18_cifar": (lambda: torchvision_model("resnet18", num_classes=10), 32),
}


def small_resnet():
    """torchvision's BasicBlock and Bottleneck in a ResNet of 8-32 channels (max pooling stem)."""
    from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1

    def down(cin, cout, stride):
        return nn.Sequential(conv1x1(cin, cout, stride), nn.BatchNorm2d(cout))

    return nn.Sequential(
        nn.Conv2d(3, 8, 3, 1, 1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
        BasicBlock(8, 8),
        BasicBlock(8, 16, stride=2, downsample=down(8, 16, 2)),
        Bottleneck(16, 8, stride=2, downsample=down(16, 32, 2)),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )


def small_regnet():
    from torchvision.models.regnet import BlockParams, RegNet

    params = BlockParams(depths=[1, 1], widths=[16, 32], group_widths=[8, 8], bottleneck_multipliers=[1.0, 1.0],
                         strides=[2, 2])
    return RegNet(params, num_classes=10, stem_width=8)


def small_vgg():
    from torchvision.models.vgg import VGG, make_layers

    model = VGG(make_layers([8, "M", 16, 16, "M", 32, "M"], batch_norm=True), num_classes=10, init_weights=True)
    model.avgpool = nn.AdaptiveAvgPool2d((2, 2))
    model.classifier = nn.Sequential(nn.Linear(32 * 4, 64), nn.ReLU(True), nn.Dropout(), nn.Linear(64, 10))
    return model


def small_convnext():
    from torchvision.models.convnext import CNBlockConfig, ConvNeXt

    return ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, None, 1)], num_classes=10)


def small_mixer():
    import timm.models.mlp_mixer as mm

    return mm.MlpMixer(num_classes=10, img_size=32, patch_size=8, embed_dim=32, num_blocks=2)


def small_resmlp():
    import timm.models.mlp_mixer as mm

    return mm.MlpMixer(num_classes=10, img_size=32, patch_size=8, embed_dim=32, num_blocks=2, mlp_ratio=4,
                       block_layer=mm.ResBlock, norm_layer=mm.Affine)


def small_vit():
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer(img_size=32, patch_size=8, num_classes=10, embed_dim=32, depth=2, num_heads=2)


SMALL = {
    "resnet": (small_resnet, 32),
    "regnet": (small_regnet, 32),
    "vgg": (small_vgg, 32),
    "convnext": (small_convnext, 32),
    "mixer": (small_mixer, 32),
    "resmlp": (small_resmlp, 32),
    "vit": (small_vit, 32),
}


def export_dynamo(model, example, path):
    """The fixtures' export: dynamo exporter, opset 20, weights inside the file, doc strings and
    metadata removed. Only the graph is searched for file paths: in hundreds of megabytes of
    random weights a short byte string such as b".py" occurs by chance."""
    import warnings

    import onnx
    import onnx.inliner

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), path, dynamo=True, opset_version=20, external_data=False,
                          input_names=["input"], output_names=["logits"], verbose=False)
    m = onnx.load(path)
    if len(m.functions) > 0:
        m = onnx.inliner.inline_local_functions(m)
        del m.functions[:]
    _scrub(m)
    used = {n.domain for n in m.graph.node}
    keep = [o for o in m.opset_import if o.domain in ("", "ai.onnx") or o.domain in used]
    del m.opset_import[:]
    m.opset_import.extend(keep)
    onnx.checker.check_model(m)
    structure = onnx.ModelProto()
    structure.CopyFrom(m)
    del structure.graph.initializer[:]
    text = structure.SerializeToString()
    for bad in FORBIDDEN:
        assert bad not in text, f"{path}: contains {bad!r}"
    with open(path, "wb") as f:
        f.write(m.SerializeToString())
    return sorted({n.op_type for n in m.graph.node})


def randomise_batchnorm(model, generator):
    """Fresh BatchNorm layers hold mean 0 and variance 1; give them running statistics so that
    folding them is not the identity."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=generator) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)


def export(name, builder, side, out_dir):
    torch.manual_seed(SEED)
    model = builder().eval()
    with torch.no_grad():
        randomise_batchnorm(model, torch.Generator().manual_seed(SEED))
    params = sum(p.numel() for p in model.parameters())
    example = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(SEED))
    path = os.path.join(out_dir, f"{name}.onnx")
    started = time.time()
    with torch.no_grad():
        logits = model(example).numpy()
        ops = export_dynamo(model, example, path)
    np.save(os.path.join(out_dir, f"{name}.input.npy"), example.numpy())
    np.save(os.path.join(out_dir, f"{name}.logits.npy"), logits)
    size = os.path.getsize(path)
    print(f"{name}: {params:,} parameters, {size / 2**20:.1f} MiB, {time.time() - started:.0f} s, ops {ops}",
          flush=True)
    return {"parameters": params, "bytes": size, "input": [1, 3, side, side], "ops": ops}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="target/scale", help="directory for the real-size exports")
    parser.add_argument("--only", nargs="*", help="export only these models")
    parser.add_argument("--small", metavar="DIR", help="write the small test models to DIR instead")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table = SMALL if args.small else MODELS
    out_dir = args.small or args.out
    os.makedirs(out_dir, exist_ok=True)
    names = args.only or list(table)
    manifest = {}
    for name in names:
        builder, side = table[name]
        manifest[name] = export(name, builder, side, out_dir)
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
