#!/usr/bin/python3
"""PyTorch side of bench/attention.ts: causal multi-head self-attention, forward and backward, as a GPT block runs it.

  attention_torch.py --batch B --block T --channels C --heads NH --reps R [--threads N]

q, k and v are (B, T, C) with head h in columns h*hd .. h*hd + hd, as in charlm. Forward: softmax(mask(q k^T /
sqrt(hd))) v per head, with autograd on; backward: the gradients of q, k and v for a given output gradient. Each
is timed R times after a warm-up; the best time of each is printed in milliseconds as one JSON object on the last line.
"""

import argparse
import json
import math
import time

import torch


def main():
    p = argparse.ArgumentParser()
    for name in ("batch", "block", "channels", "heads", "reps"):
        p.add_argument(f"--{name}", type=int, required=True)
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    B, T, C, nH = a.batch, a.block, a.channels, a.heads
    hd = C // nH
    g = torch.Generator().manual_seed(1)
    q, k, v, dy = (torch.randn(B, T, C, generator=g) for _ in range(4))
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)

    def forward(q, k, v):
        heads = [x.view(B, T, nH, hd).transpose(1, 2) for x in (q, k, v)]
        s = (heads[0] @ heads[1].transpose(-2, -1)) * (1.0 / math.sqrt(hd))
        att = torch.softmax(s.masked_fill(mask, float("-inf")), dim=-1)
        return (att @ heads[2]).transpose(1, 2).reshape(B, T, C)

    best_f = best_b = float("inf")
    for r in range(a.reps + 2):
        leaves = [x.clone().requires_grad_() for x in (q, k, v)]
        t0 = time.perf_counter()
        y = forward(*leaves)
        t1 = time.perf_counter()
        y.backward(dy)
        t2 = time.perf_counter()
        if r >= 2:
            best_f = min(best_f, t1 - t0)
            best_b = min(best_b, t2 - t1)
    print(
        json.dumps(
            {
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "forwardMs": best_f * 1e3,
                "backwardMs": best_b * 1e3,
            }
        )
    )


if __name__ == "__main__":
    main()
