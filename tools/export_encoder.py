#!/usr/bin/python3
"""Exports a torchvision CNN trunk as a satcap TorchScript encoder: FILE.pt + FILE.json.

    /usr/bin/python3 tools/export_encoder.py OUT.pt [--arch resnet101] [--input-size 224]
        [--grid 14] [--weights none|PATH.pth]

The module maps a preprocessed batch [B, 3, H, W] to the last convolutional map (resnet*: layer4),
average-pooled adaptively to grid x grid: [B, D, grid, grid]. FILE.json records what satcap
needs to feed it: input size, mean, std (torchvision's ImageNet ones), channel order (RGB), grid,
dim and the trainable blocks in order (for --trainable-blocks). This machine cannot download
weights: `--weights none` (the default) exports an untrained architecture, `--weights FILE.pth`
loads a torchvision state dict you downloaded elsewhere.
"""
import argparse
import json
import os
import sys

import torch
import torchvision

FORMAT_VERSION = 1


class Trunk(torch.nn.Module):
    def __init__(self, net, grid):
        super().__init__()
        self.stem = torch.nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.pool = torch.nn.AdaptiveAvgPool2d((grid, grid))

    def forward(self, x):  # [B, 3, H, W] -> [B, D, grid, grid]
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.pool(x)


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
        net.load_state_dict(torch.load(a.weights, map_location="cpu"))
    trunk = Trunk(net, a.grid).eval()
    with torch.no_grad():
        dim = trunk(torch.zeros(1, 3, a.input_size, a.input_size)).shape[1]
    scripted = torch.jit.script(trunk)
    meta = {
        "format": "satcap-torchscript-encoder",
        "format_version": FORMAT_VERSION,
        "arch": a.arch,
        "weights": "none (untrained)" if a.weights == "none" else os.path.basename(a.weights),
        "input_size": [a.input_size, a.input_size],
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "channel_order": "RGB",
        "grid": [a.grid, a.grid],
        "dim": int(dim),
        "blocks": ["stem", "layer1", "layer2", "layer3", "layer4"],
        "torch_version": torch.__version__,
    }
    base = os.path.splitext(a.out)[0]
    for path, write in ((a.out, lambda p: scripted.save(p)),
                        (base + ".json", lambda p: open(p, "w").write(json.dumps(meta, indent=2) + "\n"))):
        tmp = f"{path}.tmp-{os.getpid()}"
        write(tmp)
        os.replace(tmp, path)
    print(f"{a.out}: {a.arch} at {a.input_size}x{a.input_size} -> [B, {dim}, {a.grid}, {a.grid}]")


if __name__ == "__main__":
    main()
