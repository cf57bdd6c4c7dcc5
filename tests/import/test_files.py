#!/usr/bin/python3
"""Inputs of tests/test_import.cpp, made at test time (nothing large is committed):

    test_files.py parity OUT     OUT/img/*.png: 20 photographs at 256x256 (crops of Debian's darknet
                                 photos, so that satcap and the reference preprocess them identically);
                                 OUT/fx/: tutorial checkpoints with random weights (tools/tutorial/
                                 make_fixture.py): "tiny" (E, A, H = 24, 20, 28; D = 2048), the same
                                 weights saved in torch.save's legacy format ("legacy") and as if
                                 trained on a GPU ("cuda"), both imported into OUT/out/NAME, and "ft"
                                 (BasicBlock encoder with its fine-tuning optimizer; D = 512,
                                 E, A, H = 32, 18, 26, V = 64).
    test_files.py refusals OUT   a tutorial checkpoint and inputs the importer must refuse; runs
                                 tools/import_tutorial.py's main() on each (one Python start for
                                 all) and prints [{"case", "checkpoint", "word_map", "out", "code",
                                 "message", "files" (in out, null if none), "evil_ran"}].
    test_files.py photos OUT     OUT/*.png: the 20 photographs only (tools/tutorial/speed.sh).
    test_files.py resnet OUT     OUT/r18.pth: a torchvision resnet18 state dict with random weights
                                 (BatchNorm statistics too), OUT/photo.png, and OUT/r18_regions.pt:
                                 torchvision's layer4 map of that photo pooled to 7x7, [1, 49, 512].
"""
import contextlib
import glob
import io
import json
import os
import sys

import torch
import torchvision
from PIL import Image, ImageOps

here = os.path.dirname(os.path.abspath(__file__))
tools = os.path.join(here, "..", "..", "tools")
sys.path.insert(0, os.path.join(tools, "tutorial"))
sys.path.insert(0, tools)
from make_fixture import make_fixture  # noqa: E402

PHOTOS = "/usr/share/darknet/data"
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def photos(out, count=20):
    """count 256x256 PNGs: three square crops (centre, mirrored corner, rotated corner) per photo."""
    os.makedirs(out, exist_ok=True)
    paths = sorted(glob.glob(os.path.join(PHOTOS, "*.jpg")))
    if len(paths) * 3 < count:
        sys.exit(f"test_files: {PHOTOS}: {len(paths)} photographs, {count} crops wanted (Debian package darknet)")
    written = []
    for p in paths:
        im = Image.open(p).convert("RGB")
        w, h = im.size
        s = min(w, h)
        crops = [im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)),
                 ImageOps.mirror(im).crop((0, 0, s, s)), im.crop((w - s, h - s, w, h)).rotate(90)]
        for j, c in enumerate(crops):
            if len(written) < count:
                name = os.path.join(out, f"{os.path.basename(p)[:-4]}_{j}.png")
                c.resize((256, 256), Image.BILINEAR).save(name)
                written.append(name)
    return written


TINY = dict(arch="tiny", seed=1, embed_dim=24, attention_dim=20, decoder_dim=28, random_bn=True, lively=True)


def parity(out):
    import import_tutorial
    photos(os.path.join(out, "img"), 20)
    fx = os.path.join(out, "fx")
    make_fixture(fx, "tiny", **TINY)
    make_fixture(fx, "ft", arch="tiny-basic", seed=4, embed_dim=32, attention_dim=18, decoder_dim=26, words=60,
                 fine_tune_encoder=True, random_bn=True, lively=True)
    # tiny's weights in the other two forms, imported here (one Python start) into out/NAME.
    for name, kw in (("legacy", {"legacy": True}), ("cuda", {"cuda": True})):
        make_fixture(fx, name, **TINY, **kw)
        code = import_tutorial.main([os.path.join(fx, f"BEST_checkpoint_{name}.pth.tar"),
                                     os.path.join(fx, f"WORDMAP_{name}.json"), "--out", os.path.join(out, "out", name)])
        if code:
            sys.exit(f"test_files: importing the {name} fixture failed ({code})")


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {os.path.abspath('bad/EVIL_RAN')}",))


def refusals(out):
    import import_tutorial
    os.makedirs(out, exist_ok=True)
    os.chdir(out)
    make_fixture("fx", "tiny", **TINY)
    make_fixture("fx", "other", arch="tiny-basic", seed=2, words=60)
    os.makedirs("bad", exist_ok=True)
    with open("bad/random.bin", "wb") as f:
        f.write(bytes(range(256)) * 20)
    torch.save({"x": torch.zeros(3)}, "bad/state_dict.pth")
    torch.save({"encoder": Evil(), "decoder": 1}, "bad/evil.pth")
    data = open("fx/BEST_checkpoint_tiny.pth.tar", "rb").read()
    with open("bad/truncated.pth", "wb") as f:
        f.write(data[:len(data) // 2])
    tampered = torch.load("fx/BEST_checkpoint_tiny.pth.tar", weights_only=False)  # tutorial_arch is `models`
    tampered["decoder"].fc = torch.nn.Linear(28, 51)  # a vocabulary one word larger than the embedding's
    torch.save(tampered, "bad/inconsistent.pth")
    wm = json.load(open("fx/WORDMAP_tiny.json"))
    short = dict(wm)
    del short["kite"]
    nostart = dict(wm)
    nostart["zzz"] = nostart.pop("<start>")
    for name, m in (("wm_short", short), ("wm_nostart", nostart)):
        json.dump(m, open(f"bad/{name}.json", "w"))
    ckpt, words = "fx/BEST_checkpoint_tiny.pth.tar", "fx/WORDMAP_tiny.json"
    cases = [("missing", "missing.pth", words), ("random", "bad/random.bin", words),
             ("state_dict", "bad/state_dict.pth", words), ("evil", "bad/evil.pth", words),
             ("truncated", "bad/truncated.pth", words), ("short_word_map", ckpt, "bad/wm_short.json"),
             ("no_start", ckpt, "bad/wm_nostart.json"), ("other_word_map", ckpt, "fx/WORDMAP_other.json"),
             ("inconsistent", "bad/inconsistent.pth", words)]
    os.makedirs("out/not_a_bundle")
    with open("out/not_a_bundle/keep.txt", "w") as f:
        f.write("the user's file\n")
    cases.append(("not_a_bundle", ckpt, words))
    results = []
    for case, c, w in cases:
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = import_tutorial.main([c, w, "--out", f"out/{case}"])
        results.append({"case": case, "checkpoint": c, "word_map": w, "out": os.path.abspath(f"out/{case}"),
                        "code": code, "message": err.getvalue(), "files": sorted(os.listdir(f"out/{case}"))
                        if os.path.isdir(f"out/{case}") else None, "evil_ran": os.path.exists("bad/EVIL_RAN")})
    print(json.dumps(results, indent=1))


def resnet(out):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(3)
    net = torchvision.models.resnet18()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    torch.save(net.state_dict(), os.path.join(out, "r18.pth"))
    (photo,) = photos(os.path.join(out, "img"), 1)
    net.eval()
    x = torch.frombuffer(bytearray(Image.open(photo).convert("RGB").tobytes()), dtype=torch.uint8)
    x = (x.view(1, 256, 256, 3).permute(0, 3, 1, 2).float() / 255.0 - MEAN) / STD
    with torch.no_grad():
        trunk = torch.nn.Sequential(*list(net.children())[:-2])  # the tutorial's way of cutting a ResNet
        regions = torch.nn.functional.adaptive_avg_pool2d(trunk(x), (7, 7))  # [1, 512, 7, 7]
    torch.save(regions.flatten(2).transpose(1, 2).contiguous(), os.path.join(out, "r18_regions.pt"))
    print(json.dumps({"photo": photo}))


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("parity", "refusals", "resnet", "photos"):
        sys.exit(__doc__)
    globals()[sys.argv[1]](os.path.abspath(sys.argv[2]))
