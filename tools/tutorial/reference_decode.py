#!/usr/bin/python3
"""Reference captioning for checkpoints of sgrvinod's a-PyTorch-Tutorial-to-Image-Captioning, in
plain PyTorch from the model's equations (neither satcap's code nor the tutorial's caption.py):

    python3 tools/tutorial/reference_decode.py CHECKPOINT WORDMAP IMAGE... [--search tutorial-beam,greedy,...]
        [--beam 5] [--max-steps 51] [--resize pil|torch|none] [--jpeg-draft] [--ban-satcap]
        [--features-out FILE.pt] [--threads N]

Prints one JSON object: for each search, a list with one object per image (image, caption, words,
tutorial_ids, log_prob, finished, encode_seconds, search_seconds), and "seconds" per search.

The checkpoint is loaded the tutorial's way (torch.load of the pickled modules, with tutorial_arch.py
installed as the module `models`); the encoder is the checkpoint's own module; the decoder runs
from its tensors with the equations:
  h0 = init_h(mean_i a_i), c0 = init_c(mean_i a_i)
  e_i = full_att(relu(encoder_att(a_i) + decoder_att(h))); alpha = softmax(e); z = sum_i alpha_i a_i
  z *= sigmoid(f_beta(h)); h, c = LSTMCell([emb(y_prev); z], (h, c)); log p = log_softmax(fc(h))
Searches (--search, comma-separated; each runs on every image):
  tutorial-beam  caption.py's caption_image_beam_search, per image (with '//' for the beam index):
                 k hypotheses; at step 1 top-k of the first row, then top-k of the flattened k x V
                 scores; a hypothesis that emits <end> is completed and leaves the beam (k shrinks);
                 stop when k = 0 or after step 51 (`if step > 50: break`); the answer is the completed
                 hypothesis of largest total log-probability (not length-normalised). caption.py
                 crashes when none completed (max of an empty list); here the best live one is
                 returned with finished = false.
  greedy         argmax each step until <end> or --max-steps.
  satcap-beam    satcap's beam search (lib/src/decode/search.cpp) per image: K live hypotheses kept
                 from the best 2K candidates (ties: lower beam, then lower token), <end> among the
                 best K finishes one; stop when the best live score cannot beat the best finished
                 one, or at --max-steps.
Preprocessing (--resize): pil = the tutorial's scipy.misc.imresize(img, (256, 256)) (PIL bilinear,
which antialiases when shrinking, rounded to uint8), then /255 and ImageNet mean/std; torch =
satcap's: /255 in float, then bilinear without antialiasing (align_corners false); none = the image
must already be 256x256 (both sides then preprocess it identically). --jpeg-draft decodes JPEGs at
libjpeg's reduced DCT scale as satcap does (the largest of 1/2, 1/4, 1/8 keeping the shorter side
>= 256). --ban-satcap never emits <pad>, <start>, <unk> (what `satcap caption` bans).
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tutorial_arch  # noqa: E402

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
SIZE = 256


def load(checkpoint):
    tutorial_arch.register()
    try:
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except TypeError:  # a torch without weights_only
        ckpt = torch.load(checkpoint, map_location="cpu")
    return ckpt["encoder"].eval(), ckpt["decoder"].eval()


def read_image(path, resize, jpeg_draft):
    from PIL import Image
    im = Image.open(path)
    if jpeg_draft and im.format == "JPEG":
        w, h = im.size
        scale = next((d for d in (8, 4, 2) if (min(w, h) + d - 1) // d >= SIZE), 1)
        if scale > 1:  # PIL picks the largest scale s with w // s >= the requested width (and for h)
            im.draft("RGB", (w // scale, h // scale))
    im = im.convert("RGB")  # imread + the tutorial's grey -> 3 channels
    if resize == "pil":  # scipy.misc.imresize(img, (256, 256)): PIL resize, bilinear, uint8
        im = im.resize((SIZE, SIZE), Image.BILINEAR)
    x = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(im.size[1], im.size[0], 3)
    x = x.permute(2, 0, 1).unsqueeze(0).float() / 255.0
    if resize == "torch" and tuple(x.shape[2:]) != (SIZE, SIZE):
        x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    if tuple(x.shape[2:]) != (SIZE, SIZE):
        sys.exit(f"reference_decode: {path}: {x.shape[3]}x{x.shape[2]}, expected 256x256 with --resize none")
    return (x - MEAN) / STD


class Decoder:
    """The tutorial decoder's equations over its tensors."""

    def __init__(self, dec):
        self.s = {k: v.detach().float() for k, v in dec.state_dict().items()}
        self.V = self.s["fc.weight"].shape[0]

    def init(self, enc):  # [B, n, D] -> h, c
        s, mean = self.s, enc.mean(1)
        return F.linear(mean, s["init_h.weight"], s["init_h.bias"]), F.linear(mean, s["init_c.weight"], s["init_c.bias"])

    def att1(self, enc):
        return F.linear(enc, self.s["attention.encoder_att.weight"], self.s["attention.encoder_att.bias"])

    def step(self, prev, h, c, enc, att1):
        """prev [R], h/c [R, H], enc [R, n, D], att1 [R, n, A] -> log_probs [R, V], h, c"""
        s = self.s
        att2 = F.linear(h, s["attention.decoder_att.weight"], s["attention.decoder_att.bias"])
        e = F.linear(F.relu(att1 + att2.unsqueeze(1)), s["attention.full_att.weight"],
                     s["attention.full_att.bias"]).squeeze(2)
        z = (enc * F.softmax(e, dim=1).unsqueeze(2)).sum(1)
        z = torch.sigmoid(F.linear(h, s["f_beta.weight"], s["f_beta.bias"])) * z
        x = torch.cat([F.embedding(prev, s["embedding.weight"]), z], dim=1)
        gates = F.linear(x, s["decode_step.weight_ih"], s["decode_step.bias_ih"]) + \
            F.linear(h, s["decode_step.weight_hh"], s["decode_step.bias_hh"])
        i, f, g, o = gates.chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return F.log_softmax(F.linear(h, s["fc.weight"], s["fc.bias"]), dim=1), h, c  # dropout: eval


def greedy(dec, enc, wm, max_steps, ban, _beam):
    h, c = dec.init(enc)
    att1 = dec.att1(enc)
    prev = torch.tensor([wm["<start>"]])
    words, total = [], 0.0
    for _ in range(max_steps):
        lp, h, c = dec.step(prev, h, c, enc, att1)
        lp = lp.masked_fill(ban, float("-inf"))
        tok = int(lp[0].argmax())
        total += float(lp[0, tok])
        if tok == wm["<end>"]:
            return words, total, True
        words.append(tok)
        prev = torch.tensor([tok])
    return words, total, False


def tutorial_beam(dec, enc, wm, max_steps, ban, k):
    """caption.py's caption_image_beam_search, from step 1 to step max_steps (51 in caption.py)."""
    V, n, D = dec.V, enc.shape[1], enc.shape[2]
    encoder_out = enc.expand(k, n, D)
    k_prev_words = torch.tensor([[wm["<start>"]]] * k)
    seqs = k_prev_words
    top_k_scores = torch.zeros(k, 1)
    complete_seqs, complete_scores = [], []
    h, c = dec.init(encoder_out)
    att1 = dec.att1(encoder_out)
    step = 1
    while True:
        scores, h, c = dec.step(k_prev_words.squeeze(1), h, c, encoder_out, att1)
        scores = top_k_scores.expand_as(scores) + scores.masked_fill(ban, float("-inf"))
        if step == 1:
            top_k_scores, top_k_words = scores[0].topk(k, 0, True, True)
        else:
            top_k_scores, top_k_words = scores.view(-1).topk(k, 0, True, True)
        prev_word_inds = top_k_words // V  # caption.py has '/', which newer torch makes a float
        next_word_inds = top_k_words % V
        seqs = torch.cat([seqs[prev_word_inds], next_word_inds.unsqueeze(1)], dim=1)
        incomplete = [i for i, w in enumerate(next_word_inds) if w != wm["<end>"]]
        complete = list(set(range(len(next_word_inds))) - set(incomplete))
        if complete:
            complete_seqs.extend(seqs[complete].tolist())
            complete_scores.extend(top_k_scores[complete].tolist())
        k -= len(complete)
        if k == 0:
            break
        seqs = seqs[incomplete]
        h = h[prev_word_inds[incomplete]]
        c = c[prev_word_inds[incomplete]]
        encoder_out = encoder_out[prev_word_inds[incomplete]]
        att1 = att1[prev_word_inds[incomplete]]
        top_k_scores = top_k_scores[incomplete].unsqueeze(1)
        k_prev_words = next_word_inds[incomplete].unsqueeze(1)
        if step >= max_steps:  # caption.py: `if step > 50: break` after step 51
            break
        step += 1
    if complete_scores:
        i = complete_scores.index(max(complete_scores))
        return complete_seqs[i][1:-1], complete_scores[i], True  # without <start> and <end>
    i = int(top_k_scores.view(-1).argmax())  # caption.py would crash here
    return seqs[i].tolist()[1:], float(top_k_scores.view(-1)[i]), False


def satcap_beam(dec, enc, wm, max_steps, ban, K):
    """satcap's beam search (lib/src/decode/search.cpp) for one image, one caption."""
    V, end, n, D = dec.V, wm["<end>"], enc.shape[1], enc.shape[2]
    encoder_out = enc.expand(K, n, D)
    att1 = dec.att1(encoder_out)
    h, c = dec.init(encoder_out)
    C = min(2 * K, K * V)
    alive = [([], 0.0)] + [(None, float("-inf"))] * (K - 1)
    prev = torch.full((K,), wm["<start>"], dtype=torch.long)
    finished, cut = [], []
    for t in range(max_steps):
        lp, h, c = dec.step(prev, h, c, encoder_out, att1)
        lp = lp.masked_fill(ban, float("-inf"))
        lp = lp.masked_fill(lp.isnan(), float("-inf"))
        total = (torch.tensor([a[1] for a in alive], dtype=torch.float32).unsqueeze(1) + lp).view(-1)
        vals, idx = torch.sort(total, descending=True, stable=True)
        chosen = []
        for ci, (v, i) in enumerate(zip(vals[:C].double().tolist(), idx[:C].tolist())):
            if v == float("-inf"):
                break
            slot, tok = divmod(i, V)
            if tok == end:
                if ci < K:
                    finished.append((alive[slot][0], v))
                continue
            chosen.append((slot, alive[slot][0] + [tok], v))
            if len(chosen) == K:
                break
        finished.sort(key=lambda x: -x[1])  # stable
        done = not chosen or t + 1 == max_steps or (finished and chosen[0][2] <= finished[0][1])
        if done:
            cut = [(toks, v) for _, toks, v in chosen]
            break
        chosen += [(0, None, float("-inf"))] * (K - len(chosen))
        rows = torch.tensor([s for s, _, _ in chosen])
        h, c = h[rows], c[rows]
        alive = [(toks, v) for _, toks, v in chosen]
        prev = torch.tensor([toks[-1] if toks else wm["<start>"] for toks, _ in alive])
    if finished:
        return finished[0][0], finished[0][1], True
    cut.sort(key=lambda x: -x[1])
    return cut[0][0], cut[0][1], False


SEARCHES = {"tutorial-beam": tutorial_beam, "greedy": greedy, "satcap-beam": satcap_beam}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("word_map")
    ap.add_argument("images", nargs="+")
    ap.add_argument("--search", default="tutorial-beam", help="comma-separated: " + ", ".join(SEARCHES))
    ap.add_argument("--beam", type=int, default=5)
    ap.add_argument("--max-steps", type=int, default=51, help="decoding steps, <end> included (caption.py: 51)")
    ap.add_argument("--resize", default="pil", choices=["pil", "torch", "none"])
    ap.add_argument("--jpeg-draft", action="store_true")
    ap.add_argument("--ban-satcap", action="store_true")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--features-out", help="torch.save the encoder's regions [N, n, D] of the images here")
    a = ap.parse_args()
    searches = a.search.split(",")
    for s in searches:
        if s not in SEARCHES:
            sys.exit(f"reference_decode: --search {s}: not one of {', '.join(SEARCHES)}")
    if a.threads:
        torch.set_num_threads(a.threads)
    t0 = time.time()
    with open(a.word_map) as f:
        wm = json.load(f)
    rev = {v: k for k, v in wm.items()}
    encoder, decoder = load(a.checkpoint)
    dec = Decoder(decoder)
    ban = torch.zeros(dec.V, dtype=torch.bool)
    if a.ban_satcap:
        ban[[wm["<pad>"], wm["<start>"], wm["<unk>"]]] = True
    load_s = time.time() - t0
    out = {s: [] for s in searches}
    feats = []
    with torch.no_grad():
        for path in a.images:  # per image, as caption.py
            t1 = time.time()
            regions = encoder(read_image(path, a.resize, a.jpeg_draft))  # [1, s, s, D]
            enc = regions.view(1, -1, regions.size(-1))
            feats.append(enc)
            encode_s = time.time() - t1
            for s in searches:
                t2 = time.time()
                seq, score, fin = SEARCHES[s](dec, enc, wm, a.max_steps, ban, a.beam)
                words = [rev[i] for i in seq]
                out[s].append({"image": path, "caption": " ".join(words), "words": words, "tutorial_ids": seq,
                               "log_prob": score, "finished": fin, "encode_seconds": round(encode_s, 4),
                               "search_seconds": round(time.time() - t2, 4)})
    if a.features_out:
        torch.save(torch.cat(feats, 0), a.features_out)
    enc_s = sum(r["encode_seconds"] for r in out[searches[0]])
    out["seconds"] = {s: round(sum(r["search_seconds"] for r in out[s]), 3) for s in searches}
    out["seconds"].update({"read_and_encode": round(enc_s, 3), "model_load": round(load_s, 3)})
    print(json.dumps(out, indent=1))
    print(f"reference_decode: {len(a.images)} images: read + encoder {enc_s:.2f} s; " +
          ", ".join(f"{s} {out['seconds'][s]:.2f} s" for s in searches) + f"; model load {load_s:.2f} s",
          file=sys.stderr)


if __name__ == "__main__":
    main()
