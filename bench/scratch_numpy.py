#!/usr/bin/env python3
"""The min-char-rnn recipe in NumPy, as the reference for bench/scratch.ts.

Same recipe as src/scratch: one-hot input, tanh hidden layer, softmax output; weights randn*0.01, zero biases;
cross-entropy summed over the unrolled steps; element-wise clipping to [-5, 5]; Adagrad (lr 0.1, eps 1e-8); hidden
state carried across chunks and reset when the next chunk would run off the end of the data. The vocabulary is the
sorted set of characters of the whole file (as charlm does); splits are character ranges of the file.

Prints one JSON line: {"seconds": training time, "iterations", "epochs", "smooth_loss", "val_loss" (nats/char),
"val_seconds"}. Run with OPENBLAS_NUM_THREADS=1 for a one-core comparison.
"""

import argparse
import json
import math
import sys
import time

import numpy as np


def parse_range(s):
    a, b = s.split(":")
    return int(a), int(b)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--file", required=True)
    ap.add_argument("--train", type=parse_range, required=True, help="START:END character range")
    ap.add_argument("--val", type=parse_range, required=True, help="START:END character range")
    ap.add_argument("--hidden", type=int, default=100)
    ap.add_argument("--seq-length", type=int, default=25)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--iterations", type=int, default=0, help="0: no limit")
    ap.add_argument("--epochs", type=int, default=0, help="0: no limit")
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    if args.iterations <= 0 and args.epochs <= 0:
        sys.exit("give --iterations or --epochs")

    with open(args.file, encoding="utf-8") as f:
        text = f.read()
    chars = sorted(set(text))
    ix = {c: i for i, c in enumerate(chars)}
    V, H, T, lr = len(chars), args.hidden, args.seq_length, args.lr
    train = np.array([ix[c] for c in text[args.train[0] : args.train[1]]], dtype=np.int64)
    val = np.array([ix[c] for c in text[args.val[0] : args.val[1]]], dtype=np.int64)
    N = len(train)

    rng = np.random.default_rng(args.seed)
    Wxh = rng.standard_normal((H, V)) * 0.01
    Whh = rng.standard_normal((H, H)) * 0.01
    Why = rng.standard_normal((V, H)) * 0.01
    bh = np.zeros((H, 1))
    by = np.zeros((V, 1))
    params = [Wxh, Whh, Why, bh, by]
    mems = [np.zeros_like(p) for p in params]

    def loss_and_grads(inputs, targets, hprev):
        n = len(inputs)
        hs = np.zeros((n + 1, H, 1))
        ps = np.zeros((n, V, 1))
        hs[0] = hprev
        loss = 0.0
        for t in range(n):
            # Wxh @ one_hot(x) is column x of Wxh.
            hs[t + 1] = np.tanh(Wxh[:, inputs[t] : inputs[t] + 1] + Whh @ hs[t] + bh)
            y = Why @ hs[t + 1] + by
            e = np.exp(y - y.max())
            ps[t] = e / e.sum()
            loss -= math.log(ps[t][targets[t], 0])
        grads = [np.zeros_like(p) for p in params]
        dWxh, dWhh, dWhy, dbh, dby = grads
        dhnext = np.zeros((H, 1))
        for t in reversed(range(n)):
            dy = ps[t].copy()
            dy[targets[t]] -= 1
            dWhy += dy @ hs[t + 1].T
            dby += dy
            dh = Why.T @ dy + dhnext
            draw = (1 - hs[t + 1] * hs[t + 1]) * dh
            dbh += draw
            dWxh[:, inputs[t] : inputs[t] + 1] += draw
            dWhh += draw @ hs[t].T
            dhnext = Whh.T @ draw
        for g in grads:
            np.clip(g, -5, 5, out=g)
        return loss, grads, hs[n]

    n, p, epoch = 0, 0, 0
    hprev = np.zeros((H, 1))
    smooth = -math.log(1.0 / V) * T
    max_iter = args.iterations if args.iterations > 0 else float("inf")
    max_epochs = args.epochs if args.epochs > 0 else float("inf")
    start = time.perf_counter()
    while n < max_iter:
        if p + T + 1 > N:  # the next chunk would run off the end: back to the start, zero memory
            epoch += 1
            if epoch >= max_epochs:
                break
            p = 0
            hprev = np.zeros((H, 1))
        inputs = train[p : p + T]
        targets = train[p + 1 : p + T + 1]
        loss, grads, hprev = loss_and_grads(inputs, targets, hprev)
        smooth = smooth * 0.999 + loss * 0.001
        for w, g, m in zip(params, grads, mems):
            m += g * g
            w -= lr * g / (np.sqrt(m) + 1e-8)
        p += T
        n += 1
        if n % 10000 == 0:
            print(f"numpy iter {n} smooth loss {smooth:.3f} ({time.perf_counter() - start:.0f}s)", file=sys.stderr)
    seconds = time.perf_counter() - start
    if p + T + 1 > N:
        epoch += 1  # the last pass ended exactly
    epoch = min(epoch, max_epochs)

    # Validation: mean cross-entropy per predicted character, hidden state carried through the whole split.
    t0 = time.perf_counter()
    h = np.zeros((H, 1))
    total = 0.0
    for t in range(len(val) - 1):
        h = np.tanh(Wxh[:, val[t] : val[t] + 1] + Whh @ h + bh)
        y = Why @ h + by
        y = y - y.max()
        total -= y[val[t + 1], 0] - math.log(np.exp(y).sum())
    val_loss = total / (len(val) - 1)
    out = {
        "seconds": seconds,
        "iterations": n,
        "epochs": epoch,
        "smooth_loss": smooth,
        "val_loss": val_loss,
        "val_seconds": time.perf_counter() - t0,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
