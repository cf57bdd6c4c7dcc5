#!/usr/bin/python3
"""Writes a checkpoint in the format of sgrvinod's a-PyTorch-Tutorial-to-Image-Captioning, with
random weights, and its word map: test input for tools/import_tutorial.py.

    /usr/bin/python3 tools/tutorial/make_fixture.py OUT_DIR [--name NAME] [--arch tiny|tiny-basic|resnet101|...]
        [--embed-dim E] [--attention-dim A] [--decoder-dim H] [--words N] [--seed S]
        [--fine-tune-encoder] [--legacy] [--fake-cuda] [--random-bn] [--lively]

Writes OUT_DIR/BEST_checkpoint_NAME.pth.tar and OUT_DIR/WORDMAP_NAME.json as the tutorial does:
  - the word map: words 1..N in first-seen order, then <unk> = N+1, <start> = N+2, <end> = N+3,
    <pad> = 0 (utils.create_input_files);
  - the checkpoint: torch.save of {'epoch', 'epochs_since_improvement', 'bleu-4', 'encoder',
    'decoder', 'encoder_optimizer', 'decoder_optimizer'} with the pickled modules (models.Encoder,
    models.DecoderWithAttention, from tutorial_arch.py) and optimizers (torch.optim.Adam;
    encoder_optimizer None unless fine-tuning), as utils.save_checkpoint. One training step is
    taken first, so that Adam has state.
--legacy writes torch.save's pre-1.6 stream format; --fake-cuda marks every storage as saved from
cuda:0 (a checkpoint trained on a GPU); --random-bn randomises every BatchNorm's affine parameters
and running statistics (so that a wrong mapping of them shows). --lively (test only, not the
tutorial's) scales weights so that a random decoder writes captions of 2-7 words that differ between
photos, with peaked word distributions (float differences between implementations then do not flip
argmaxes); without it a random decoder repeats one word or ends at once.
"""
import argparse
import json
import os
import sys
import time
import zipfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tutorial_arch  # noqa: E402

models = tutorial_arch.register()

WORDS = ("a man woman dog cat on the in with of is sitting standing red blue green table street "
         "riding horse bike field grass two people next to front building plate food pizza giraffe "
         "kite sky flying eagle bird water boat white black small large tree holding car").split()


def word_map_for(n):
    words = list(WORDS) + [f"w{i}" for i in range(max(0, n - len(WORDS)))]
    word_map = {k: v + 1 for v, k in enumerate(words[:n])}
    for special in ("<unk>", "<start>", "<end>"):
        word_map[special] = len(word_map) + 1
    word_map["<pad>"] = 0
    return word_map


def fake_cuda(path):
    """Rewrites a zip checkpoint so that every storage says it was saved on cuda:0."""
    with zipfile.ZipFile(path) as z:
        entries = [(i, z.read(i.filename)) for i in z.infolist()]
    old, new = b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0"  # BINUNICODE 'cpu' -> 'cuda:0'
    tmp = path + ".tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
        for info, data in entries:
            if info.filename.endswith("/data.pkl"):
                assert old in data
                data = data.replace(old, new)
            z.writestr(info, data)
    os.replace(tmp, path)


def training_step(encoder, decoder, optimizers, word_map, words, fine_tune, enc_size):
    """One step of train.py: cross-entropy + alpha_c (1) * the doubly stochastic term."""
    B, L = 2, 6
    D = decoder.encoder_dim
    enc = encoder(torch.randn(B, 3, 256, 256)) if fine_tune else torch.randn(B, enc_size, enc_size, D)
    caps = torch.randint(1, words + 1, (B, L))
    caps[:, 0] = word_map["<start>"]
    caps[:, -1] = word_map["<end>"]
    caps[1, L - 2] = word_map["<end>"]
    caps[1, L - 1] = word_map["<pad>"]
    scores, caps_sorted, decode_lengths, alphas, _ = decoder(enc, caps, torch.tensor([[L], [L - 1]]))
    targets = caps_sorted[:, 1:1 + scores.size(1)]
    mask = torch.zeros_like(targets, dtype=torch.bool)
    for i, n in enumerate(decode_lengths):
        mask[i, :n] = True
    loss = torch.nn.functional.cross_entropy(scores[mask], targets[mask])
    loss = loss + 1.0 * ((1.0 - alphas.sum(dim=1)) ** 2).mean()
    for o in optimizers:
        o.zero_grad()
    loss.backward()
    for o in optimizers:
        o.step()


def make_fixture(out_dir, name="fixture", arch="tiny", enc_size=14, embed_dim=24, attention_dim=20, decoder_dim=28,
                 words=46, dropout=0.5, seed=0, fine_tune_encoder=False, legacy=False, cuda=False, random_bn=False,
                 lively=False):
    """Writes the checkpoint and word map; returns a summary (paths, sizes)."""
    torch.manual_seed(seed)
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.time()
    word_map = word_map_for(words)
    encoder = models.Encoder(encoded_image_size=enc_size, arch=arch)
    encoder.fine_tune(fine_tune_encoder)  # train.py: encoder.fine_tune(fine_tune_encoder)
    with torch.no_grad():
        D = encoder(torch.zeros(1, 3, 64, 64)).shape[-1]
    decoder = models.DecoderWithAttention(attention_dim=attention_dim, embed_dim=embed_dim, decoder_dim=decoder_dim,
                                          vocab_size=len(word_map), encoder_dim=D, dropout=dropout)
    trainable = lambda m: filter(lambda p: p.requires_grad, m.parameters())  # noqa: E731
    decoder_optimizer = torch.optim.Adam(params=trainable(decoder), lr=4e-4)
    encoder_optimizer = torch.optim.Adam(params=trainable(encoder), lr=1e-4) if fine_tune_encoder else None
    if random_bn:
        with torch.no_grad():
            for m in encoder.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)
                    m.running_mean.uniform_(-0.2, 0.2)
                    m.running_var.uniform_(0.5, 2.0)
    encoder.train()
    decoder.train()
    training_step(encoder, decoder, [o for o in (decoder_optimizer, encoder_optimizer) if o], word_map, words,
                  fine_tune_encoder, enc_size)
    if lively:  # values found by trying: captions of 2-7 words that differ between photos
        with torch.no_grad():
            decoder.fc.weight.mul_(15.0)
            decoder.embedding.weight.mul_(10.0)
            decoder.decode_step.weight_ih.mul_(3.0)
            decoder.decode_step.weight_hh.mul_(3.0)
            decoder.init_h.weight.mul_(20.0)
            decoder.init_c.weight.mul_(20.0)
            decoder.fc.bias[word_map["<end>"]] += 1.0
    encoder.eval()
    decoder.eval()

    state = {"epoch": 3, "epochs_since_improvement": 0, "bleu-4": 0.2345, "encoder": encoder, "decoder": decoder,
             "encoder_optimizer": encoder_optimizer, "decoder_optimizer": decoder_optimizer}
    ckpt = os.path.join(out_dir, f"BEST_checkpoint_{name}.pth.tar")
    torch.save(state, ckpt, _use_new_zipfile_serialization=not legacy)
    if cuda:
        if legacy:
            raise ValueError("make_fixture: cuda=True needs the zip format")
        fake_cuda(ckpt)
    wm = os.path.join(out_dir, f"WORDMAP_{name}.json")
    with open(wm, "w") as f:
        json.dump(word_map, f)
    return {"checkpoint": ckpt, "word_map": wm, "bytes": os.path.getsize(ckpt), "arch": arch,
            "encoder_params": sum(p.numel() for p in encoder.parameters()),
            "decoder_params": sum(p.numel() for p in decoder.parameters()), "V": len(word_map), "D": int(D),
            "E": embed_dim, "A": attention_dim, "H": decoder_dim, "seconds": round(time.time() - t0, 2)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir")
    ap.add_argument("--name", default="fixture")
    ap.add_argument("--arch", default="tiny", help="tiny, tiny-basic, resnet18/34/50/101/152 (tutorial_arch.py)")
    ap.add_argument("--enc-size", type=int, default=14, help="encoded_image_size")
    ap.add_argument("--embed-dim", type=int, default=24)
    ap.add_argument("--attention-dim", type=int, default=20)
    ap.add_argument("--decoder-dim", type=int, default=28)
    ap.add_argument("--words", type=int, default=46, help="words besides the 4 special tokens")
    ap.add_argument("--dropout", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fine-tune-encoder", action="store_true")
    ap.add_argument("--legacy", action="store_true")
    ap.add_argument("--fake-cuda", action="store_true")
    ap.add_argument("--random-bn", action="store_true")
    ap.add_argument("--lively", action="store_true")
    a = ap.parse_args()
    print(json.dumps(make_fixture(a.out_dir, a.name, a.arch, a.enc_size, a.embed_dim, a.attention_dim, a.decoder_dim,
                                  a.words, a.dropout, a.seed, a.fine_tune_encoder, a.legacy, a.fake_cuda,
                                  a.random_bn, a.lively)))


if __name__ == "__main__":
    main()
