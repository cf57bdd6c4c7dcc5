#!/usr/bin/env python3
"""Independent reference for `satcap score`: the scoring logic of the official COCO caption
evaluation (pycocoevalcap: bleu/bleu_scorer.py with option "closest", rouge/rouge.py,
cider/cider_scorer.py), re-written from reading those sources, in plain Python (no numpy).

Usage: metrics_reference.py RESULTS.json ANNOTATIONS.json  -> JSON on stdout
{"corpus": {...}, "per_image": {image_id: {...}}}

Tokenisation here is NOT the Stanford PTB tokenizer: captions are lowercased and split on
whitespace, and tokens in ptbtokenizer.py's PUNCTUATIONS are dropped. Feed it captions made of
plain lowercase words (as the tests do), for which both tokenisations agree.
"""
import json
import math
import sys
from collections import defaultdict

PUNCTUATIONS = {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-",
                ".", "?", "!", ",", ":", "-", "--", "...", ";"}
TINY, SMALL = 1e-15, 1e-9


def tokenize(caption):
    return " ".join(w for w in caption.lower().split() if w not in PUNCTUATIONS)


def ngram_counts(sentence, n=4):
    words = sentence.split()
    counts = defaultdict(int)
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            counts[tuple(words[i:i + k])] += 1
    return len(words), counts


def bleu(gts, res, ids):
    totals = {"testlen": 0, "reflen": 0, "guess": [0] * 4, "correct": [0] * 4}
    per_image = {}
    for i in ids:
        testlen, counts = ngram_counts(res[i])
        reflens, maxcounts = [], {}
        for ref in gts[i]:
            rl, rc = ngram_counts(ref)
            reflens.append(rl)
            for g, c in rc.items():
                maxcounts[g] = max(maxcounts.get(g, 0), c)
        # closest reference length, ties to the shorter one
        reflen = min((abs(l - testlen), l) for l in reflens)[1]
        guess = [max(0, testlen - k + 1) for k in range(1, 5)]
        correct = [0] * 4
        for g, c in counts.items():
            correct[len(g) - 1] += min(maxcounts.get(g, 0), c)
        totals["testlen"] += testlen
        totals["reflen"] += reflen
        for k in range(4):
            totals["guess"][k] += guess[k]
            totals["correct"][k] += correct[k]
        per_image[i] = [((correct[k] + TINY) / (guess[k] + SMALL)) ** (1.0 / (k + 1)) for k in range(4)]
    scores = []
    for nn in range(1, 5):
        b = 1.0
        for k in range(nn):
            b *= (totals["correct"][k] + TINY) / (totals["guess"][k] + SMALL)
        b = b ** (1.0 / nn)
        ratio = (totals["testlen"] + TINY) / (totals["reflen"] + SMALL)
        if ratio < 1:
            b *= math.exp(1 - 1 / ratio)
        scores.append(b)
    return scores, per_image


def lcs_length(a, b):
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for x in range(1, len(a) + 1):
        for y in range(1, len(b) + 1):
            if a[x - 1] == b[y - 1]:
                table[x][y] = table[x - 1][y - 1] + 1
            else:
                table[x][y] = max(table[x - 1][y], table[x][y - 1])
    return table[len(a)][len(b)]


def rouge_l(candidate, refs, beta=1.2):
    cand = candidate.split(" ")
    precisions, recalls = [], []
    for ref in refs:
        r = ref.split(" ")
        l = lcs_length(r, cand)
        precisions.append(l / float(len(cand)))
        recalls.append(l / float(len(r)))
    p, r = max(precisions), max(recalls)
    if p != 0 and r != 0:
        return ((1 + beta ** 2) * p * r) / float(r + beta ** 2 * p)
    return 0.0


def cider(gts, res, ids, sigma=6.0):
    doc_freq = defaultdict(float)
    for i in ids:
        grams = set()
        for ref in gts[i]:
            grams.update(ngram_counts(ref)[1].keys())
        for g in grams:
            doc_freq[g] += 1
    log_n = math.log(float(len(ids)))

    def to_vec(counts):
        vec = [dict() for _ in range(4)]
        norm = [0.0] * 4
        length = 0
        for g, tf in counts.items():
            k = len(g) - 1
            vec[k][g] = float(tf) * (log_n - math.log(max(1.0, doc_freq.get(g, 0.0))))
            norm[k] += vec[k][g] ** 2
            if k == 1:
                length += tf
        return vec, [math.sqrt(x) for x in norm], length

    per_image = {}
    for i in ids:
        hv, hn, hl = to_vec(ngram_counts(res[i])[1])
        total = [0.0] * 4
        for ref in gts[i]:
            rv, rn, rl = to_vec(ngram_counts(ref)[1])
            delta = float(hl - rl)
            for k in range(4):
                val = sum(min(v, rv[k].get(g, 0.0)) * rv[k].get(g, 0.0) for g, v in hv[k].items())
                if hn[k] != 0 and rn[k] != 0:
                    val /= hn[k] * rn[k]
                val *= math.e ** (-(delta ** 2) / (2 * sigma ** 2))
                total[k] += val
        per_image[i] = sum(total) / 4.0 / len(gts[i]) * 10.0
    return per_image


def main():
    results = json.load(open(sys.argv[1]))
    annotations = json.load(open(sys.argv[2]))
    gts = defaultdict(list)
    for a in annotations["annotations"]:
        gts[str(a["image_id"])].append(tokenize(a["caption"]))
    res = {str(r["image_id"]): tokenize(r["caption"]) for r in results}
    ids = sorted(i for i in res if i in gts)
    b, b_img = bleu(gts, res, ids)
    c_img = cider(gts, res, ids)
    per_image = {}
    for i in ids:
        per_image[i] = {"BLEU-%d" % (k + 1): b_img[i][k] for k in range(4)}
        per_image[i]["ROUGE-L"] = rouge_l(res[i], gts[i])
        per_image[i]["CIDEr"] = c_img[i]
    corpus = {"BLEU-%d" % (k + 1): b[k] for k in range(4)}
    corpus["ROUGE-L"] = sum(per_image[i]["ROUGE-L"] for i in ids) / len(ids)
    corpus["CIDEr"] = sum(c_img[i] for i in ids) / len(ids)
    json.dump({"corpus": corpus, "per_image": per_image}, sys.stdout)


if __name__ == "__main__":
    main()
