#!/usr/bin/python3
"""PyTorch side of bench/generate.ts: characters per second generating at batch 1 with a stateful loop.

  generate --model lstm --embedding E --units H --layers L --vocab V --chars N [--threads N]
  generate --model gpt --embedding C --layers L --heads NH --block S --vocab V --chars N [--threads N]
           [--past --stride K]

Random weights (speed does not depend on their values). Each character: one step of the network on the last
sampled id with the carried state (the LSTM's (h, c); the GPT's key/value cache, as charlm's step() does), softmax
at temperature 1, one multinomial draw. Prints one JSON object on its last line.

--past (the GPT): generation past the window, as charlm's GPT does it. The window starts full; once full, a step
drops the window's K oldest tokens (--stride, default 1), reruns the tokens left and the new one in one causal
forward pass that refills the cache, and the next K - 1 steps are cached ones. K = 1 is nanoGPT's generate (the
last block tokens rerun for every character).
"""

import argparse
import json
import math
import time

import torch
import torch.nn.functional as F


class Lstm(torch.nn.Module):
    def __init__(self, V, E, H, L):
        super().__init__()
        self.emb = torch.nn.Embedding(V, E)
        self.rnn = torch.nn.LSTM(E, H, L)
        self.out = torch.nn.Linear(H, V)

    def step(self, ids, state):
        y, state = self.rnn(self.emb(ids).view(1, 1, -1), state)
        return self.out(y.view(1, -1)), state

    def initial(self):
        return None


class Ln(torch.nn.Module):
    """LayerNorm with a gain and no bias (torch 1.13's LayerNorm has no bias=False)."""

    def __init__(self, C):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(C))

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, None, 1e-5)


class Gpt(torch.nn.Module):
    """Pre-LayerNorm decoder blocks without biases, with a key/value cache for one new position per step."""

    def __init__(self, V, C, L, NH, S):
        super().__init__()
        self.C, self.NH, self.S = C, NH, S
        self.wte = torch.nn.Embedding(V, C)
        self.wpe = torch.nn.Embedding(S, C)
        self.blocks = torch.nn.ModuleList()
        for _ in range(L):
            b = torch.nn.Module()
            b.ln1 = Ln(C)
            b.qkv = torch.nn.Linear(C, 3 * C, bias=False)
            b.proj = torch.nn.Linear(C, C, bias=False)
            b.ln2 = Ln(C)
            b.fc = torch.nn.Linear(C, 4 * C, bias=False)
            b.fc2 = torch.nn.Linear(4 * C, C, bias=False)
            self.blocks.append(b)
        self.lnf = Ln(C)
        self.head = torch.nn.Linear(C, V, bias=False)

    def initial(self):
        return {"pos": 0, "k": [None] * len(self.blocks), "v": [None] * len(self.blocks)}

    def prefill(self, ids):
        """The causal forward pass over ids (T,) from position 0: the last position's logits and a cache of T."""
        C, NH = self.C, self.NH
        hd = C // NH
        T = ids.shape[0]
        st = self.initial()
        x = self.wte(ids) + self.wpe.weight[:T]  # (T, C)
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        for i, b in enumerate(self.blocks):
            q, k, v = (t.view(T, NH, hd).transpose(0, 1) for t in b.qkv(b.ln1(x)).split(C, dim=1))  # (NH, T, hd)
            st["k"][i], st["v"][i] = k, v
            att = (q @ k.transpose(1, 2)) / math.sqrt(hd)
            y = att.masked_fill(~mask, float("-inf")).softmax(-1) @ v  # (NH, T, hd)
            x = x + b.proj(y.transpose(0, 1).reshape(T, C))
            x = x + b.fc2(F.gelu(b.fc(b.ln2(x)), approximate="tanh"))
        st["pos"] = T
        return self.head(self.lnf(x[-1:])), st

    def step(self, ids, st):
        if st["pos"] >= self.S:  # window full: start again (charlm slides; the cost per character is what counts)
            st = self.initial()
        C, NH = self.C, self.NH
        hd = C // NH
        x = self.wte(ids) + self.wpe.weight[st["pos"]]  # (1, C)
        for i, b in enumerate(self.blocks):
            q, k, v = b.qkv(b.ln1(x)).split(C, dim=1)
            k = k.view(NH, 1, hd)
            v = v.view(NH, 1, hd)
            st["k"][i] = k if st["k"][i] is None else torch.cat([st["k"][i], k], dim=1)
            st["v"][i] = v if st["v"][i] is None else torch.cat([st["v"][i], v], dim=1)
            att = (q.view(NH, 1, hd) @ st["k"][i].transpose(1, 2)) / math.sqrt(hd)  # (NH, 1, P)
            y = (att.softmax(-1) @ st["v"][i]).view(1, C)
            x = x + b.proj(y)
            x = x + b.fc2(F.gelu(b.fc(b.ln2(x)), approximate="tanh"))
        st["pos"] += 1
        return self.head(self.lnf(x)), st


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["generate"])
    p.add_argument("--model", choices=["lstm", "gpt"], required=True)
    p.add_argument("--embedding", type=int, default=64)
    p.add_argument("--units", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--block", type=int, default=128)
    p.add_argument("--vocab", type=int, default=65)
    p.add_argument("--chars", type=int, default=2000)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--warmup", type=int, default=20, help="steps taken before timing")
    p.add_argument("--past", action="store_true", help="the GPT past its window (see above)")
    p.add_argument("--stride", type=int, default=1, help="--past: the window's oldest tokens dropped at once")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.model == "lstm":
        m = Lstm(a.vocab, a.embedding, a.units, a.layers)
    else:
        m = Gpt(a.vocab, a.embedding, a.layers, a.heads, a.block)
    m.eval()
    gen = torch.Generator().manual_seed(1)
    if a.past:
        with torch.inference_mode():
            hist = [0] * a.block
            logits, st = m.prefill(torch.tensor(hist))

            def one(logits, st):
                nxt = int(torch.multinomial(logits.softmax(-1), 1, generator=gen))
                hist.append(nxt)
                if st["pos"] >= a.block:
                    keep = a.block - a.stride
                    return m.prefill(torch.tensor(hist[len(hist) - keep - 1 :]))
                return m.step(torch.tensor([nxt]), st)

            for _ in range(a.warmup):
                logits, st = one(logits, st)
            t0 = time.perf_counter()
            for _ in range(a.chars):
                logits, st = one(logits, st)
            sec = time.perf_counter() - t0
        out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "charsPerSec": a.chars / sec}
        print(json.dumps(out))
        return
    with torch.inference_mode():
        ids = torch.zeros(1, dtype=torch.long)
        st = m.initial()
        for _ in range(a.warmup):  # warm-up
            logits, st = m.step(ids, st)
            if a.model == "gpt" and st["pos"] >= m.S:
                st = m.initial()
        st = m.initial()
        t0 = time.perf_counter()
        for _ in range(a.chars):
            logits, st = m.step(ids, st)
            ids = torch.multinomial(logits.softmax(-1), 1, generator=gen).view(1)
        sec = time.perf_counter() - t0
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "charsPerSec": a.chars / sec}))


if __name__ == "__main__":
    main()
