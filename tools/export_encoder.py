#!/usr/bin/python3
"""Exports a torchvision CNN trunk as a satcap TorchScript encoder: FILE.pt + FILE.json.

    /usr/bin/python3 tools/export_encoder.py OUT.pt [--arch resnet101] [--input-size 224]
        [--grid 14] [--weights none|PATH.pth]

The module maps a preprocessed batch [B, 3, H, W] to the last convolutional map (resnet*: layer4),
average-pooled adaptively to grid x grid: [B, D, grid, grid]. FILE.json records what satcap
needs to feed it: input size, mean, std (torchvision's ImageNet ones), channel order (RGB), grid,
dim and the trainable blocks in order (for --trainable-blocks). This machine cannot download
weights: `--weights none` (the default) exports an untrained architecture, `--weights FILE.pth`
loads a torchvision state dict you downloaded elsewhere (e.g. resnet101-63fe2227.pth; a dict
holding it under "state_dict", or keys prefixed "module." by DataParallel, are accepted too).
docs/import.md shows the whole path: download, export, prepare, train, caption.

Any Python with torch and torchvision runs it. satcap loads the file with its own LibTorch, which
reads TorchScript written by the same or an older torch version (Debian's python3-torch matches
Debian's libtorch-dev). tools/import_tutorial.py exports the tutorial's encoders with export() below.
"""
import argparse
import json
import os
import sys

import torch
import torchvision

FORMAT_VERSION = 1
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
BLOCKS = ["stem", "layer1", "layer2", "layer3", "layer4"]


class Trunk(torch.nn.Module):
    """A torchvision ResNet without avgpool and fc, pooled to grid x grid."""

    def __init__(self, net, grid):
        super().__init__()
        self.stem = torch.nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.pool = torch.nn.AdaptiveAvgPool2d((grid, grid))

    def forward(self, x):  # [B, 3, H, W] -> [B, D, grid, grid]
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.pool(x)


def write_atomic(path, write):
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def export(trunk, out_pt, arch, weights, input_size, grid):
    """Writes trunk (eval mode) as TorchScript to out_pt and its description beside it (.json);
    returns the description and the feature map's shape [D, h, w] on a blank input."""
    trunk = trunk.eval()
    with torch.no_grad():
        fmap = trunk(torch.zeros(1, 3, input_size, input_size))
    meta = {
        "format": "satcap-torchscript-encoder",
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "weights": weights,
        "input_size": [input_size, input_size],
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "channel_order": "RGB",
        "grid": [grid, grid],
        "dim": int(fmap.shape[1]),
        "blocks": BLOCKS,
        "torch_version": torch.__version__,
    }
    scripted = torch.jit.script(trunk)
    write_atomic(out_pt, scripted.save)
    write_atomic(os.path.splitext(out_pt)[0] + ".json",
                 lambda p: open(p, "w").write(json.dumps(meta, indent=2) + "\n"))
    return meta, list(fmap.shape[1:])


def read_state_dict(path):
    """A torchvision state dict from PATH: plain, under "state_dict", or with "module." prefixes."""
    try:
        sd = torch.load(path, map_location="cpu")
    except Exception as e:  # not a torch.save file, truncated, ...
        sys.exit(f"export_encoder: {path}: not a readable PyTorch state dict ({str(e).splitlines()[0][:200]})")
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        sys.exit(f"export_encoder: {path}: not a state dict (expected a dict of tensors, got {type(sd).__name__})")
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="output .pt file (the .json is written beside it)")
    ap.add_argument("--arch", default="resnet101", help="torchvision ResNet: resnet18/34/50/101/152")
    ap.add_argument("--input-size", type=int, default=224, help="square input size in pixels")
    ap.add_argument("--grid", type=int, default=14, help="regions per side")
    ap.add_argument("--weights", default="none", help="'none' (untrained) or a torchvision state dict .pth")
    a = ap.parse_args()
    if not a.arch.startswith("resnet") or not hasattr(torchvision.models, a.arch):
        sys.exit(f"export_encoder: --arch {a.arch}: only torchvision ResNets are supported")
    if a.grid < 1 or a.input_size < 32:
        sys.exit("export_encoder: --grid must be >= 1 and --input-size >= 32")
    net = getattr(torchvision.models, a.arch)()
    if a.weights != "none":
        try:
            net.load_state_dict(read_state_dict(a.weights))
        except RuntimeError as e:  # missing or unexpected keys, shapes of another network
            sys.exit(f"export_encoder: {a.weights}: not the weights of a torchvision {a.arch}: "
                     f"{' '.join(str(e).split())[:400]}")
    weights = "none (untrained)" if a.weights == "none" else os.path.basename(a.weights)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    except OSError as e:
        sys.exit(f"export_encoder: {a.out}: cannot make its folder: {e.strerror}")
    meta, _ = export(Trunk(net, a.grid), a.out, a.arch, weights, a.input_size, a.grid)
    print(f"{a.out}: {a.arch} at {a.input_size}x{a.input_size} -> [B, {meta['dim']}, {a.grid}, {a.grid}]")


if __name__ == "__main__":
    main()
