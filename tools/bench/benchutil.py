"""Shared pieces of the Python benchmarks (tools/bench/*.py) that `satcap bench` runs as subprocesses.

The caption lengths, sizes and step counts here must match lib/src/bench.cpp exactly: both sides
draw the same lengths from the same integer generator, so both train on the same number of words.
Each script prints one JSON line with its measurement on stdout.
"""
import argparse
import json
import sys
import time

# COCO-like caption lengths in words, 8..22 (Karpathy train split, shape of the histogram with the
# short and long tails cut): weights in per mille for lengths 8, 9, ..., 22. Mean about 11.1 words.
LENGTH_WEIGHTS = [100, 220, 200, 150, 100, 70, 50, 35, 25, 17, 12, 8, 6, 4, 3]
MIN_LENGTH = 8
MASK64 = (1 << 64) - 1

# Special tokens, as satcap's vocabulary numbers them.
PAD, START, END, UNK = 0, 1, 2, 3


def caption_lengths(batch_index, batch_size):
    """Words per caption for batch `batch_index` (<end> not included). Same generator as
    satcap::bench_caption_lengths: a 64-bit LCG seeded by the batch index."""
    state = (batch_index * 0x9E3779B97F4A7C15 + 12345) & MASK64
    lengths = []
    for _ in range(batch_size):
        state = (state * 6364136223846793005 + 1442695040888963407) & MASK64
        u = (state >> 33) % 1000
        acc = 0
        for i, w in enumerate(LENGTH_WEIGHTS):
            acc += w
            if u < acc:
                lengths.append(MIN_LENGTH + i)
                break
    return lengths


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = leave as is)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--quick", action="store_true", help="small sizes (seconds)")
    p.add_argument("--regions", type=int, default=196)
    p.add_argument("--encoder-dim", type=int, default=2048)
    p.add_argument("--attention-dim", type=int, default=512)
    p.add_argument("--embed-dim", type=int, default=512)
    p.add_argument("--decoder-dim", type=int, default=512)
    p.add_argument("--vocab", type=int, default=10000)
    p.add_argument("--seed", type=int, default=1)
    return p


def setup_torch(args):
    import torch
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    return torch


def sync(torch, device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def now():
    return time.perf_counter()


def cpu_now():
    """CPU seconds of this process, all threads (steadier than wall time on a busy machine)."""
    return time.process_time()


def emit(record):
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()
