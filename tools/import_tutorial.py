#!/usr/bin/python3
"""Imports a model trained with sgrvinod's a-PyTorch-Tutorial-to-Image-Captioning as a satcap bundle.

    python3 tools/import_tutorial.py CHECKPOINT WORDMAP --out BUNDLE_DIR

CHECKPOINT is the tutorial's BEST_checkpoint_*.pth.tar (utils.save_checkpoint: a torch.save'd dict
holding the pickled nn.Module objects models.Encoder and models.DecoderWithAttention), WORDMAP its
WORDMAP_*.json. Then `satcap caption --model BUNDLE_DIR photos/` captions with it (docs/import.md).

Why a Python tool, and no `satcap import`: the checkpoint is a Python pickle of module objects, and
the encoder must become TorchScript, which only Python's torch.jit writes; whoever holds such a
checkpoint has PyTorch. A `satcap import` subcommand would only start this script, and would have to
guess which Python has the user's torch (a virtual environment, conda, Debian's /usr/bin/python3);
the user knows, so the README names this file and `satcap caption` points here when given a
checkpoint.

The tutorial's code is not needed, and no code from the checkpoint runs: the pickle is read by a
restricted unpickler (not torch.load, whose handling of a custom pickle_module differs between torch
versions) that maps the tutorial's classes (models.Encoder, models.DecoderWithAttention,
models.Attention) and the optimizers onto stand-ins that only receive their state, lets through
torch.nn modules, torchvision's ResNet blocks, tensors and plain containers, and refuses anything
else. Tensors saved on a GPU load on the CPU. Both torch.save formats are read (zip since torch 1.6,
and the older stream).

BUNDLE_DIR receives a satcap model bundle (docs/model-format.md), format 3:
  config.json    the decoder's options (soft attention, vector gate, ReLU attention, no deep output,
                 init_state "linear": h_0 = init_h(mean a_i) without tanh), the encoder's
                 description (identity, preprocessing), where the model came from, and "files": the
                 sha256 and size of every other file of the bundle;
  vocab.json     <pad> <start> <end> <unk> (satcap's ids 0-3), then the tutorial's words in the order
                 of their ids; the rows of the embedding and of fc are permuted to match;
  weights.pt     the decoder's tensors under satcap's names, in the archive format LibTorch's
                 torch::serialize::InputArchive reads;
  encoder.pt     the checkpoint's own (possibly fine-tuned) ResNet + its 14x14 adaptive pooling as
  encoder.json   TorchScript, and its preprocessing: 256x256 RGB, /255, ImageNet mean and std.
An existing BUNDLE_DIR is replaced only when it is a satcap bundle (it holds config.json).
Exit status 0 on success; 2 with a message naming the file for a checkpoint or word map that is not
of this format or does not fit the other; 1 when the bundle cannot be written.
"""
import argparse
import hashlib
import io
import json
import os
import pickle
import shutil
import sys
import time
import zipfile

import numpy as np
import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from export_encoder import Trunk, export  # noqa: E402

IMPORTER = "tools/import_tutorial.py 1"
BUNDLE_FORMAT = 3  # a linear initial state needs format 3 (lib/include/satcap/model/bundle.h)
TUTORIAL = "https://github.com/sgrvinod/a-PyTorch-Tutorial-to-Image-Captioning"
ENCODER_FILE = "encoder.pt"
INPUT_SIZE = 256
SATCAP_SPECIALS = ["<pad>", "<start>", "<end>", "<unk>"]  # satcap's ids 0..3 (satcap/model/vocab.h)


class Refusal(Exception):
    """A refusal: the message names the file; exit status `code`."""

    def __init__(self, message, code=2):
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------------------------
# Reading the checkpoint without the tutorial's code

class StandIn:
    """Receives a pickled object's state and nothing else (no code of the tutorial runs)."""
    pickled_as = "?"

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots)
            state = {**(state[0] or {}), **(state[1] or {})}
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"{self.pickled_as}: unexpected pickled state of type {type(state).__name__}")
        self.__dict__.update(state)


TUTORIAL_CLASSES = ("Encoder", "DecoderWithAttention", "Attention")
_stand_ins = {}


def stand_in(qualified):
    if qualified not in _stand_ins:
        _stand_ins[qualified] = type(qualified.rsplit(".", 1)[-1], (StandIn,), {"pickled_as": qualified})
    return _stand_ins[qualified]


STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}


class StorageTag:
    """Stands for torch.FloatStorage & co. in a pickle: only its element type is used."""

    def __init__(self, name):
        self.name, self.dtype = name, STORAGE_DTYPES[name]


def rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    # A view of the flat storage tensor (the legacy format fills the storages after the pickle).
    if not len(size) and not storage.numel():
        return torch.empty((), dtype=storage.dtype)
    return torch.as_strided(storage, tuple(size), tuple(stride), storage_offset)


def rebuild_parameter(data, requires_grad, backward_hooks, state=None):
    return torch.nn.Parameter(data.detach(), requires_grad=bool(requires_grad) and data.is_floating_point())


REBUILDERS = {"_rebuild_tensor_v2": rebuild_tensor, "_rebuild_tensor": rebuild_tensor,
              "_rebuild_parameter": rebuild_parameter, "_rebuild_parameter_with_state": rebuild_parameter}


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only what a tutorial checkpoint holds; tensors are rebuilt by this file's own
    functions from flat storages."""

    def find_class(self, module, name):
        q = f"{module}.{name}"
        if name in TUTORIAL_CLASSES and (module in ("models", "__main__") or module.endswith(".models")):
            return stand_in(q)
        if module.startswith("torch.optim"):  # optimizers: their state is not needed
            return stand_in(q)
        if module.startswith("torch.nn.modules."):
            cls = getattr(sys.modules.get(module) or __import__(module, fromlist=[name]), name, None)
            if isinstance(cls, type) and issubclass(cls, torch.nn.Module):
                return cls
        if module == "torchvision.models.resnet" and name in ("Bottleneck", "BasicBlock"):
            return getattr(torchvision.models.resnet, name)
        if module == "collections" and name in ("OrderedDict", "defaultdict"):
            return getattr(__import__("collections"), name)
        if module in ("builtins", "__builtin__") and name in ("dict", "set", "frozenset", "list", "tuple", "slice"):
            return getattr(__import__("builtins"), name)
        if module == "torch._utils" and name in REBUILDERS:
            return REBUILDERS[name]
        if module == "torch" and name in STORAGE_DTYPES:
            return StorageTag(name)
        if module == "torch" and (isinstance(getattr(torch, name, None), torch.dtype) or name in ("Size", "device")):
            return getattr(torch, name)
        raise pickle.UnpicklingError(f"the pickle references {q}, which a tutorial checkpoint does not")


def unpickler(f, storages, new_storage):
    u = RestrictedUnpickler(f, encoding="utf-8")

    def persistent_load(pid):
        if not isinstance(pid, tuple) or not pid:
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        if pid[0] == "module" and len(pid) >= 2:  # the legacy format pickles module classes with their source
            return pid[1]
        if pid[0] != "storage" or len(pid) < 5 or not isinstance(pid[1], StorageTag):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid[:2]!r}")
        tag, key, numel = pid[1], str(pid[2]), int(pid[4])  # pid[3], the device, is not used: all on the CPU
        if key not in storages:
            storages[key] = new_storage(key, tag, numel)
        view = pid[5] if len(pid) > 5 else None
        if view is None:
            return storages[key]
        view_key, offset, size = view  # pre-0.4 storage views
        if view_key not in storages:
            storages[view_key] = storages[key][int(offset):int(offset) + int(size)]
        return storages[view_key]

    u.persistent_load = persistent_load
    return u


LEGACY_MAGIC = 0x1950a86a20f9469cfc6c


def storage_from_bytes(raw, dtype, numel, key):
    size = torch.tensor([], dtype=dtype).element_size()
    if len(raw) < numel * size:
        raise pickle.UnpicklingError(f"storage {key} is truncated")
    return torch.frombuffer(bytearray(raw[:numel * size]), dtype=dtype) if numel else torch.empty(0, dtype=dtype)


def torch_load(path):
    """torch.save's two formats (zip since torch 1.6; the legacy stream before), read with
    RestrictedUnpickler; every tensor ends on the CPU whatever device it was saved from."""
    storages = {}
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            pkls = [n for n in z.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pkls) != 1:
                raise pickle.UnpicklingError("a zip file without the single <name>/data.pkl of torch.save")
            prefix = pkls[0][:-len("data.pkl")]
            return unpickler(io.BytesIO(z.read(pkls[0])), storages,
                            lambda key, tag, numel: storage_from_bytes(z.read(prefix + "data/" + key), tag.dtype,
                                                                       numel, key)).load()
    with open(path, "rb") as f:
        if f.read(4) == b"PK\x03\x04":
            raise pickle.UnpicklingError("a zip file without its directory (truncated or corrupt)")
        f.seek(0)
        try:
            magic = RestrictedUnpickler(f).load()
        except Exception:
            magic = None
        if magic != LEGACY_MAGIC:
            raise pickle.UnpicklingError("not torch.save's format")
        if RestrictedUnpickler(f).load() != 1001:
            raise pickle.UnpicklingError("an unknown torch.save protocol version")
        RestrictedUnpickler(f).load()  # sys_info
        legacy = {}

        def empty(key, tag, numel):
            legacy[key] = torch.empty(numel, dtype=tag.dtype)
            return legacy[key]

        result = unpickler(f, storages, empty).load()
        for key in RestrictedUnpickler(f).load():  # each storage: int64 element count, then the elements
            numel = int.from_bytes(f.read(8), "little")
            t = legacy.get(str(key))
            if t is None or t.numel() != numel:
                raise pickle.UnpicklingError(f"storage {key} does not match its record")
            if numel:
                t.copy_(storage_from_bytes(f.read(numel * t.element_size()), t.dtype, numel, key))
        return result


def module_state(obj, prefix=""):
    """The state dict of a stand-in or real nn.Module, from its pickled _parameters/_buffers/_modules."""
    out = {}
    d = getattr(obj, "__dict__", {})
    for key in ("_parameters", "_buffers"):
        for name, t in (d.get(key) or {}).items():
            if t is not None:
                out[prefix + name] = t.detach() if isinstance(t, torch.Tensor) else t
    for name, m in (d.get("_modules") or {}).items():
        if m is not None:
            out.update(module_state(m, prefix + name + "."))
    return out


def submodule(obj, name):
    return (getattr(obj, "__dict__", {}).get("_modules") or {}).get(name)


def children(obj):
    return list((getattr(obj, "__dict__", {}).get("_modules") or {}).values())


def tutorial_class(obj):
    return type(obj).__name__ if isinstance(obj, StandIn) else None


def read_checkpoint(path):
    if not os.path.isfile(path):
        raise Refusal(f"{path}: no such file")
    try:
        ckpt = torch_load(path)
    except pickle.UnpicklingError as e:
        raise Refusal(f"{path}: not a checkpoint of the tutorial ({e})")
    except Exception as e:  # zipfile, EOF, ... on a damaged file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise Refusal(f"{path}: not a readable PyTorch checkpoint ({first[:200]})")
    if not isinstance(ckpt, dict) or "decoder" not in ckpt or "encoder" not in ckpt:
        what = f"a dict with keys {sorted(map(str, ckpt))[:8]}" if isinstance(ckpt, dict) else type(ckpt).__name__
        raise Refusal(f"{path}: not a checkpoint of the tutorial: expected utils.save_checkpoint's dict with "
                      f"'encoder' and 'decoder' (pickled models.Encoder / models.DecoderWithAttention), got {what}")
    if tutorial_class(ckpt["decoder"]) != "DecoderWithAttention":
        raise Refusal(f"{path}: 'decoder' is {type(ckpt['decoder']).__name__}, not the tutorial's "
                      "models.DecoderWithAttention (a state dict alone is not enough: the tutorial saves modules)")
    if tutorial_class(ckpt["encoder"]) != "Encoder":
        raise Refusal(f"{path}: 'encoder' is {type(ckpt['encoder']).__name__}, not the tutorial's models.Encoder")
    return ckpt


# ---------------------------------------------------------------------------------------------
# The decoder

def decoder_tensors(path, dec):
    """The tutorial decoder's tensors, checked against each other: returns (state, dims)."""
    s = module_state(dec)
    V, E = s["embedding.weight"].shape if "embedding.weight" in s else (0, 0)
    A, D = s["attention.encoder_att.weight"].shape if "attention.encoder_att.weight" in s else (0, 0)
    H = s["decode_step.weight_hh"].shape[1] if "decode_step.weight_hh" in s else 0
    expect = {"embedding.weight": [V, E],
              "attention.encoder_att.weight": [A, D], "attention.encoder_att.bias": [A],
              "attention.decoder_att.weight": [A, H], "attention.decoder_att.bias": [A],
              "attention.full_att.weight": [1, A], "attention.full_att.bias": [1],
              "decode_step.weight_ih": [4 * H, E + D], "decode_step.weight_hh": [4 * H, H],
              "decode_step.bias_ih": [4 * H], "decode_step.bias_hh": [4 * H],
              "init_h.weight": [H, D], "init_h.bias": [H], "init_c.weight": [H, D], "init_c.bias": [H],
              "f_beta.weight": [D, H], "f_beta.bias": [D], "fc.weight": [V, H], "fc.bias": [V]}
    missing = [k for k in expect if k not in s]
    if missing:
        raise Refusal(f"{path}: the decoder lacks {', '.join(missing)}; not the tutorial's DecoderWithAttention")
    for k, want in expect.items():
        if list(s[k].shape) != want:
            raise Refusal(f"{path}: decoder tensor {k} has shape {list(s[k].shape)}, expected {want} "
                          f"(V={V}, E={E}, A={A}, H={H}, D={D} from the embedding, attention and LSTM)")
        if not torch.isfinite(s[k]).all():
            raise Refusal(f"{path}: decoder tensor {k} holds NaN or infinite values")
    drop = submodule(dec, "dropout")
    p = float(getattr(drop, "p", 0.5)) if drop is not None else 0.5
    return s, {"V": int(V), "E": int(E), "A": int(A), "H": int(H), "D": int(D), "dropout": p}


def read_word_map(path, V):
    """The word map's words in satcap's order and perm: satcap id -> tutorial id."""
    if not os.path.isfile(path):
        raise Refusal(f"{path}: no such file")
    try:
        with open(path, encoding="utf-8") as f:
            wm = json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise Refusal(f"{path}: not a JSON word map ({e})")
    if not isinstance(wm, dict) or not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
                                           for k, v in wm.items()):
        raise Refusal(f"{path}: not a tutorial word map (expected a JSON object word -> integer id)")
    missing = [t for t in SATCAP_SPECIALS if t not in wm]
    if missing:
        raise Refusal(f"{path}: the word map lacks {', '.join(missing)}")
    if len(wm) != V:
        raise Refusal(f"{path}: {len(wm)} words, but the checkpoint's embedding and fc have {V} rows; "
                      "the word map does not belong to this checkpoint")
    if sorted(wm.values()) != list(range(V)):
        raise Refusal(f"{path}: the ids are not 0..{V - 1}, each once")
    words = sorted((w for w in wm if w not in SATCAP_SPECIALS), key=lambda w: wm[w])
    bad = [w for w in words if not w or any(c.isspace() for c in w)]
    if bad:
        raise Refusal(f"{path}: words must be non-empty and without spaces (got {bad[0]!r})")
    return wm, SATCAP_SPECIALS + words, [wm[t] for t in SATCAP_SPECIALS] + [wm[w] for w in words]


def satcap_decoder_tensors(s, perm):
    """satcap's decoder tensor names (satcap/model/decoder.h) -> tensors, rows in satcap's vocabulary order."""
    p = torch.tensor(perm, dtype=torch.long)

    def f(k):
        return s[k].to(torch.float32).contiguous()

    params = {
        "embed.weight": f("embedding.weight").index_select(0, p).contiguous(),
        "att_features.weight": f("attention.encoder_att.weight"),
        # satcap's U_a has no bias: the tutorial's decoder_att bias is folded into W_a's (both are
        # added before the ReLU, for every region and step alike).
        "att_features.bias": (f("attention.encoder_att.bias") + f("attention.decoder_att.bias")).contiguous(),
        "att_hidden.weight": f("attention.decoder_att.weight"),
        # full_att's bias is dropped: a constant added to every score cancels in the softmax.
        "att_score.weight": f("attention.full_att.weight"),
        "f_beta.weight": f("f_beta.weight"),
        "f_beta.bias": f("f_beta.bias"),
        "lstm.weight_ih": f("decode_step.weight_ih"),  # [4H, E + D]: input [embedding; context] in both
        "lstm.weight_hh": f("decode_step.weight_hh"),
        "lstm.bias_ih": f("decode_step.bias_ih"),
        "lstm.bias_hh": f("decode_step.bias_hh"),
        "init_h.weight": f("init_h.weight"),
        "init_h.bias": f("init_h.bias"),
        "init_c.weight": f("init_c.weight"),
        "init_c.bias": f("init_c.bias"),
        "out_vocab.weight": f("fc.weight").index_select(0, p).contiguous(),  # deep_output false: fc(h)
        "out_vocab.bias": f("fc.bias").index_select(0, p).contiguous(),
    }
    return params, {"reinforce_baseline": torch.zeros((), dtype=torch.float32)}


class _ArchiveModule(torch.nn.Module):
    """Only gives the archive's TorchScript class its name, __torch__.Module, as LibTorch's."""


_ArchiveModule.__name__ = _ArchiveModule.__qualname__ = "Module"
_ArchiveModule.__module__ = "__main__"


def write_archive(path, params, buffers):
    """A file torch::serialize::InputArchive reads: a TorchScript module whose attributes are the
    tensors (dotted names as flat attribute names), registered as parameters and buffers as
    OutputArchive::write(key, tensor, is_buffer) does. Uses torch._C's module builder (what
    torch.jit's own scripting uses), present from torch 1.x to 2.x."""
    b = torch._C.ConcreteModuleTypeBuilder(_ArchiveModule)
    for k in params:
        b.add_attribute(k, torch._C.TensorType.get(), True, False)
    for k in buffers:
        b.add_attribute(k, torch._C.TensorType.get(), False, True)
    m = torch._C._create_module_with_type(b.build().jit_type)
    for k, t in {**params, **buffers}.items():
        m.setattr(k, t)
    m.save(path)


# ---------------------------------------------------------------------------------------------
# The encoder

STANDARD = {("Bottleneck", (3, 4, 6, 3), 64, 1): "resnet50", ("Bottleneck", (3, 4, 23, 3), 64, 1): "resnet101",
            ("Bottleneck", (3, 8, 36, 3), 64, 1): "resnet152", ("BasicBlock", (2, 2, 2, 2), 64, 1): "resnet18",
            ("BasicBlock", (3, 4, 6, 3), 64, 1): "resnet34"}


def encoder_trunk(path, enc):
    """Rebuilds the checkpoint's ResNet trunk with current torchvision classes from its tensors
    (strict), checks it against the unpickled modules, and returns (trunk, arch, grid)."""
    seq = submodule(enc, "resnet")
    layers_ = children(seq)
    kinds = [type(c).__name__ for c in layers_]
    if kinds[:4] != ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"] or len(layers_) != 8 or \
            any(k != "Sequential" for k in kinds[4:]):
        raise Refusal(f"{path}: the encoder's 'resnet' is not a ResNet trunk without avgpool and fc "
                      f"(children: {kinds})")
    R = torchvision.models.resnet
    block_names = {type(b).__name__ for layer in layers_[4:] for b in children(layer)}
    if len(block_names) != 1 or not block_names <= {"Bottleneck", "BasicBlock"}:
        raise Refusal(f"{path}: the encoder's ResNet blocks are {sorted(block_names)}, "
                      "not torchvision's Bottleneck or BasicBlock")
    block = block_names.pop()
    layers = tuple(len(children(layer)) for layer in layers_[4:])
    groups, width_per_group = 1, 64
    if block == "Bottleneck":
        w2 = module_state(children(layers_[4])[0])["conv2.weight"]  # [width, width / groups, 3, 3]
        width, groups = int(w2.shape[0]), int(w2.shape[0] // w2.shape[1])
        width_per_group = width // groups
    net = R.ResNet(getattr(R, block), list(layers), groups=groups, width_per_group=width_per_group)
    names = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
    state = {names[k.split(".", 1)[0]] + "." + k.split(".", 1)[1]: t for k, t in module_state(seq).items()}
    own = {k for k in net.state_dict() if not k.startswith("fc.")}
    if set(state) != own:
        extra, lacking = sorted(set(state) - own)[:5], sorted(own - set(state))[:5]
        raise Refusal(f"{path}: the encoder's tensors do not fit a torchvision {block} ResNet {list(layers)}"
                      f" (unexpected {extra}, missing {lacking})")
    try:
        net.load_state_dict({**state, "fc.weight": net.fc.weight, "fc.bias": net.fc.bias}, strict=True)
    except RuntimeError as e:
        raise Refusal(f"{path}: the encoder's tensors do not fit a torchvision {block} ResNet {list(layers)}: "
                      f"{str(e).splitlines()[0][:300]}")
    pool = submodule(enc, "adaptive_pool")
    size = getattr(pool, "output_size", None) or enc.__dict__.get("enc_image_size", 14)
    size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    if size[0] != size[1] or not (1 <= int(size[0]) <= 64):
        raise Refusal(f"{path}: the encoder pools to {size}; satcap needs a square grid of 1..64")
    grid = int(size[0])
    trunk = Trunk(net, grid).eval()
    arch = STANDARD.get((block, layers, width_per_group, groups)) or \
        f"resnet-{block.lower()}-{'-'.join(map(str, layers))}-g{groups}w{width_per_group}"
    # The rebuilt trunk must compute what the pickled modules compute (when they can run here).
    try:
        with torch.no_grad():
            x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
            ref = torch.nn.functional.adaptive_avg_pool2d(seq.eval()(x), (grid, grid))
            got = trunk(x)
        ok = torch.allclose(ref, got, rtol=1e-4, atol=1e-5)
    except Exception as e:  # pickled modules of an old torch may not run here; the tensors were checked
        print(f"import_tutorial: note: the pickled encoder could not be run for a check ({e})", file=sys.stderr)
        ok = True
    if not ok:
        raise Refusal(f"{path}: the rebuilt encoder differs from the pickled one "
                      f"(max |diff| {float((ref - got).abs().max()):.3g})")
    return trunk, arch, grid


# ---------------------------------------------------------------------------------------------
# Digests

# satcap's FNV-1a starts from 1469598103934665603, not the published offset basis 14695981039346656037
# (a digit short); identities of existing bundles hold it, so it stays.
FNV_OFFSET, FNV_PRIME, M64 = 1469598103934665603, 1099511628211, (1 << 64) - 1
_fnv_powers = {}


def _prefix_xor(bits):
    """out[k] = bits[0] ^ ... ^ bits[k-1] for a 0/1 uint8 array, 64 bits at a time."""
    n = bits.size
    packed = np.packbits(bits, bitorder="little")
    x = np.concatenate([packed, np.zeros((-packed.size) % 8, np.uint8)]).view("<u8").copy()
    for s in (1, 2, 4, 8, 16, 32):  # inclusive prefix XOR inside each 64-bit word
        x ^= x << np.uint64(s)
    parity = (x >> np.uint64(63)).astype(np.uint8)
    x ^= (np.bitwise_xor.accumulate(parity) ^ parity).astype(np.uint64) * np.uint64(M64)  # the words before
    out = np.zeros(n, np.uint8)
    out[1:] = np.unpackbits(x.view(np.uint8), bitorder="little")[:n - 1]
    return out


def _fnv1a64_chunk(h, b):
    """FNV-1a 64 (h = (h ^ byte) * P mod 2^64) over the uint8 array b from state h, vectorised. The
    state's low byte s evolves on its own (s' = ((s ^ byte) * P) mod 256), and bit j of s' is bit j
    of s ^ byte ^ bit j of ((s ^ byte) mod 2^j) * P: with the lower bits known, each bit of the low
    byte over the whole chunk is a prefix XOR. Then, with d_k = (s_k ^ b_k) - s_k,
    h_n = h_0 P^n + sum_k d_k P^(n-k) mod 2^64."""
    n = b.size
    if n == 0:
        return h
    if n not in _fnv_powers:
        with np.errstate(over="ignore"):
            _fnv_powers[n] = np.cumprod(np.full(n, FNV_PRIME, np.uint64), dtype=np.uint64)[::-1].copy()
    low = np.zeros(n, np.uint8)
    with np.errstate(over="ignore"):
        for j in range(8):
            x = (low ^ b) & np.uint8((1 << j) - 1)
            e = (((x * np.uint8(FNV_PRIME & 0xFF)) ^ b) >> np.uint8(j)) & np.uint8(1)
            bits = _prefix_xor(e) ^ np.uint8((h >> j) & 1)
            low |= bits << np.uint8(j)
        d = (low ^ b).astype(np.int64) - low.astype(np.int64)
        acc = int(np.sum(d.view(np.uint64) * _fnv_powers[n], dtype=np.uint64))
    return (h * pow(FNV_PRIME, n, 1 << 64) + acc) & M64


def fnv1a64(data, chunk=1 << 22):
    h = FNV_OFFSET
    a = np.frombuffer(data, np.uint8)
    for i in range(0, a.size, chunk):
        h = _fnv1a64_chunk(h, a[i:i + chunk])
    return h


def fnv1a64_file(path):
    """satcap's file_digest (satcap/model/tfjs_model.h), which a TorchScript encoder's identity holds."""
    with open(path, "rb") as f:
        return f"fnv1a64:{fnv1a64(f.read()):016x}"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------
# The bundle

def plain(x):
    """A checkpoint's bookkeeping value as JSON (numbers and strings as they are, others as text)."""
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    try:
        return float(x) if not isinstance(x, torch.Tensor) or x.numel() == 1 else str(x)
    except (TypeError, ValueError):
        return str(x)


def write_json(path, obj, indent=2):
    with open(path, "w", encoding="utf-8") as f:
        f.write(json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def decoder_options(dims, D, regions):
    """config.json's "decoder": every field of satcap's DecoderOptions, format 3's names."""
    return {
        "vocab_size": dims["V"], "feature_dim": D, "regions": regions,
        "embed_dim": dims["E"], "attention_dim": dims["A"], "hidden_dim": dims["H"],
        "dropout": dims["dropout"], "attention": "soft", "beta": "vector", "deep_output": False,
        "init_state": "linear", "attention_activation": "relu",
        "alpha_c": 1.0,  # the tutorial's default alpha_c
        "lambda_r": 0.1, "lambda_e": 0.002, "baseline_decay": 0.9, "semi_sampling_p": 0.5,
    }


def write_bundle(dir_, a, ckpt, dims, vocab, tensors, encoder):
    """Writes every file of the bundle into the folder dir_ (config.json last); returns D.
    vocab: (word map, satcap's words); tensors: (parameters, buffers); encoder: (trunk, arch, grid)."""
    (wm, words), (params, buffers), (trunk, arch, grid) = vocab, tensors, encoder
    enc_pt = os.path.join(dir_, ENCODER_FILE)
    weights = f"{os.path.basename(a.checkpoint)} (tutorial checkpoint, epoch {plain(ckpt.get('epoch'))})"
    meta, fmap = export(trunk, enc_pt, arch, weights, INPUT_SIZE, grid)
    D = meta["dim"]
    if D != dims["D"]:
        raise Refusal(f"{a.checkpoint}: the encoder gives {D}-dimensional features, the decoder takes {dims['D']}")
    digest = fnv1a64_file(enc_pt)
    # As satcap's TorchScript encoder describes itself (lib/src/model/torchscript_encoder.cpp); satcap
    # compares the identity with the encoder it loads.
    encoder_json = {
        "identity": f"torchscript/{arch}:{ENCODER_FILE}@{INPUT_SIZE}x{INPUT_SIZE}:grid{grid}:{digest}",
        "source": "torchscript", "file": ENCODER_FILE, "arch": arch, "weights": weights,
        "feature_map": fmap[1:], "pooling": "none" if fmap[1:] == [grid, grid] else "adaptive_avg",
        "preprocessing": {"input_size": [INPUT_SIZE, INPUT_SIZE], "resize": "bilinear", "channel_order": "RGB",
                          "scale": "pixel / 255", "mean": meta["mean"], "std": meta["std"]},
        "grid": [grid, grid], "regions": grid * grid, "dim": D, "weights_digest": digest,
        "blocks": meta["blocks"], "trainable_blocks": 0,
    }
    write_archive(os.path.join(dir_, "weights.pt"), params, buffers)
    write_json(os.path.join(dir_, "vocab.json"),
               {"format": "satcap-vocabulary", "format_version": 1, "min_count": 5, "max_length": 50,
                "specials": {"pad": 0, "start": 1, "end": 2, "unk": 3}, "words": words, "counts": [0] * len(words)},
               indent=1)
    files = {n: {"sha256": sha256_file(os.path.join(dir_, n)), "bytes": os.path.getsize(os.path.join(dir_, n))}
             for n in sorted(os.listdir(dir_))}
    config = {
        "format_version": BUNDLE_FORMAT,
        "satcap_version": IMPORTER,
        "encoder": encoder_json,
        "decoder": decoder_options(dims, D, grid * grid),
        "training": {"imported": {
            "from": TUTORIAL, "checkpoint": os.path.abspath(a.checkpoint),
            "checkpoint_sha256": sha256_file(a.checkpoint), "word_map": os.path.abspath(a.word_map),
            "epoch": plain(ckpt.get("epoch")), "epochs_since_improvement": plain(ckpt.get("epochs_since_improvement")),
            "bleu-4": plain(ckpt.get("bleu-4")),
            "vocabulary": "satcap ids 0..3 = <pad> <start> <end> <unk> (tutorial ids " +
                          ", ".join(str(wm[t]) for t in SATCAP_SPECIALS) +
                          "), then the tutorial's words in id order; embedding and fc rows permuted",
            "folded": "attention.decoder_att.bias added to att_features.bias; attention.full_att.bias dropped "
                      "(it cancels in the softmax)",
            "preprocessing": "the tutorial resizes with scipy.misc.imresize (PIL bilinear, antialiased, rounded to "
                             "uint8); satcap resizes bilinear in float without antialiasing (docs/import.md)",
            "importer": IMPORTER, "torch": torch.__version__, "torchvision": torchvision.__version__,
        }},
        "weights": "weights.pt",
        "vocab": "vocab.json",
        "files": files,
    }
    write_json(os.path.join(dir_, "config.json"), config)  # last, as satcap's save_bundle
    return D


def put_in_place(tmp, out):
    """Renames tmp to out; a previous bundle at out is moved aside first and removed once replaced."""
    old = f"{out}.old-{os.getpid()}"
    had_old = os.path.exists(out)
    if had_old:
        os.rename(out, old)
    try:
        os.rename(tmp, out)
    except OSError:
        if had_old:
            os.rename(old, out)
        raise
    if had_old:
        shutil.rmtree(old, ignore_errors=True)


def run(a):
    t0 = time.time()
    out = os.path.abspath(a.out).rstrip("/")
    if os.path.exists(out) and not (os.path.isdir(out) and (not os.listdir(out) or
                                                           os.path.isfile(os.path.join(out, "config.json")))):
        raise Refusal(f"{out}: exists and is not a satcap bundle; choose a new folder for --out", code=1)
    ckpt = read_checkpoint(a.checkpoint)
    s, dims = decoder_tensors(a.checkpoint, ckpt["decoder"])
    wm, words, perm = read_word_map(a.word_map, dims["V"])
    trunk, arch, grid = encoder_trunk(a.checkpoint, ckpt["encoder"])
    tensors = satcap_decoder_tensors(s, perm)
    tmp = f"{out}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        os.makedirs(tmp)
        D = write_bundle(tmp, a, ckpt, dims, (wm, words), tensors, (trunk, arch, grid))
        put_in_place(tmp, out)
    except Refusal:
        raise
    except OSError as e:
        raise Refusal(f"{out}: cannot write the bundle ({e})", code=1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{out}: tutorial model (V={dims['V']}, E={dims['E']}, A={dims['A']}, H={dims['H']}, D={D}, "
          f"encoder {arch} -> {grid}x{grid}) imported in {time.time() - t0:.1f} s", file=sys.stderr)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", help="the tutorial's checkpoint (BEST_checkpoint_*.pth.tar)")
    ap.add_argument("word_map", help="its WORDMAP_*.json")
    ap.add_argument("--out", required=True, help="bundle folder to write (a previous bundle there is replaced)")
    a = ap.parse_args(argv)
    try:
        run(a)
    except Refusal as e:
        print(f"import_tutorial: {e}", file=sys.stderr)
        return e.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
