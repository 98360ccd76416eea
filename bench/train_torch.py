#!/usr/bin/python3
"""PyTorch side of bench/train.ts: the same character model trained by torch.nn.LSTM/GRU/RNN.

Modes (bench/train.ts runs this as a child process and reads the last line of stdout, one JSON object):

  throughput  --embedding E --units H --layers L --vocab V --batch B --seq T --steps N --warmup W [--threads N]
              [--device cpu|cuda] [--cell lstm|gru|rnn|gpt --heads NH]
              random tokens; times N full training steps (forward, loss, backward, Adam) after W warm-up steps.
              On CUDA: float32 with TF32 off (as charlm computes), the loss read once at the end (as bench/gpu.ts
              reads charlm's), the clock stopped after torch.cuda.synchronize().
  compare     --spec FILE   a JSON spec written by bench/train.ts: the corpus path and vocabulary, the initial
              weights (charlm names and layouts, raw float32 file), the batch offsets of every step, Adam's
              hyperparameters and the validation windows; trains and prints the validation loss.

Layout mapping from charlm to PyTorch is the one in docs/models.md (weight_ih = wx^T, weight_hh = wh^T, the LSTM
and RNN bias b goes to bias_ih with bias_hh = 0 and frozen, GRU bx/bh go to bias_ih/bias_hh).
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch


def blas_info():
    """The BLAS library actually mapped into this process (Debian's torch links libblas.so.3 via alternatives)."""
    torch.ones(64, 64) @ torch.ones(64, 64)
    libs = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1]
                if "blas" in path.lower() or "mkl" in path.lower():
                    libs.add(os.path.realpath(path))
    except OSError:
        pass
    return sorted(libs)


class CharModel(torch.nn.Module):
    def __init__(self, cell, vocab, embedding, units, layers):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, embedding)
        cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
        self.rnn = cls(embedding, units, num_layers=layers)  # time-major
        self.dense = torch.nn.Linear(units, vocab)

    def forward(self, tokens_tb):  # (T, B) -> logits (T, B, V)
        hs, _ = self.rnn(self.emb(tokens_tb))
        return self.dense(hs)


def causal_attention(q, k, v):  # (B, nH, T, hd)
    """PyTorch's fused attention where it has one (2.0 on), else written out (Debian's 1.13)."""
    sdpa = getattr(torch.nn.functional, "scaled_dot_product_attention", None)
    if sdpa is not None:
        return sdpa(q, k, v, is_causal=True)
    t = q.shape[2]
    scores = q @ k.transpose(-2, -1) / q.shape[-1] ** 0.5
    mask = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
    return scores.masked_fill(~mask, float("-inf")).softmax(dim=-1) @ v


class GptBlock(torch.nn.Module):
    def __init__(self, c, heads):
        super().__init__()
        self.heads = heads
        self.ln1 = torch.nn.LayerNorm(c)
        self.qkv = torch.nn.Linear(c, 3 * c)
        self.proj = torch.nn.Linear(c, c)
        self.ln2 = torch.nn.LayerNorm(c)
        self.fc = torch.nn.Linear(c, 4 * c)
        self.fc_proj = torch.nn.Linear(4 * c, c)

    def forward(self, x):  # (B, T, C)
        b, t, c = x.shape
        q, k, v = (z.view(b, t, self.heads, c // self.heads).transpose(1, 2) for z in self.qkv(self.ln1(x)).split(c, 2))
        y = causal_attention(q, k, v)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.fc_proj(torch.nn.functional.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GptModel(torch.nn.Module):
    """charlm's GPT (src/models/gpt.ts): pre-LayerNorm blocks, learned positions, GELU (tanh), no head bias."""

    def __init__(self, vocab, block, c, heads, layers):
        super().__init__()
        self.tok_emb = torch.nn.Embedding(vocab, c)
        self.pos_emb = torch.nn.Embedding(block, c)
        self.blocks = torch.nn.ModuleList(GptBlock(c, heads) for _ in range(layers))
        self.ln_f = torch.nn.LayerNorm(c)
        self.lm_head = torch.nn.Linear(c, vocab, bias=False)

    def forward(self, tokens_tb):  # (T, B) -> logits (T, B, V), as CharModel
        idx = tokens_tb.T
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(idx.shape[1], device=idx.device))
        for blk in self.blocks:
            x = blk(x)
        return self.lm_head(self.ln_f(x)).transpose(0, 1)


def load_charlm_weights(model, cell, layers, weights_file, entries):
    raw = np.fromfile(weights_file, dtype="<f4")
    w = {}
    for e in entries:
        w[e["name"]] = torch.from_numpy(raw[e["offset"] : e["offset"] + int(np.prod(e["shape"]))].reshape(e["shape"]))
    with torch.no_grad():
        model.emb.weight.copy_(w["embedding.weight"])
        for l in range(layers):
            getattr(model.rnn, f"weight_ih_l{l}").copy_(w[f"rnn.{l}.wx"].T)
            getattr(model.rnn, f"weight_hh_l{l}").copy_(w[f"rnn.{l}.wh"].T)
            if cell == "gru":
                getattr(model.rnn, f"bias_ih_l{l}").copy_(w[f"rnn.{l}.bx"])
                getattr(model.rnn, f"bias_hh_l{l}").copy_(w[f"rnn.{l}.bh"])
            else:
                # charlm has one bias b = bias_ih + bias_hh. Training both PyTorch biases would move their sum
                # twice as far per Adam step (each gets the same gradient and a step of about lr), so bias_hh stays
                # frozen at zero and the two models take the same steps.
                getattr(model.rnn, f"bias_ih_l{l}").copy_(w[f"rnn.{l}.b"])
                getattr(model.rnn, f"bias_hh_l{l}").zero_()
                getattr(model.rnn, f"bias_hh_l{l}").requires_grad_(False)
        model.dense.weight.copy_(w["dense.weight"].T)
        model.dense.bias.copy_(w["dense.bias"])


def train_step(model, opt, inputs_tb, targets_tb, vocab, clip, read=True):
    opt.zero_grad(set_to_none=True)
    logits = model(inputs_tb)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), targets_tb.reshape(-1))
    loss.backward()
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    return float(loss) if read else loss.detach()


def throughput(a):
    cuda = a.device == "cuda"
    if cuda:
        if not torch.cuda.is_available():
            raise SystemExit("train_torch.py: --device cuda but torch.cuda.is_available() is False")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    if a.cell == "gpt":
        model = GptModel(a.vocab, a.seq, a.units, a.heads, a.layers).to(a.device)
    else:
        model = CharModel(a.cell, a.vocab, a.embedding, a.units, a.layers).to(a.device)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, a.vocab, (a.seq, a.batch), generator=g).to(a.device)
    y = torch.randint(0, a.vocab, (a.seq, a.batch), generator=g).to(a.device)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(a.warmup):
        train_step(model, opt, x, y, a.vocab, 0, read=not cuda)
    sync()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        loss = train_step(model, opt, x, y, a.vocab, 0, read=not cuda)
    loss = float(loss)
    sync()
    dt = time.perf_counter() - t0
    out = {"charsPerSec": a.batch * a.seq * a.steps / dt, "seconds": dt, "steps": a.steps, "loss": loss}
    if cuda:
        out["device"] = torch.cuda.get_device_name()
    return out


def compare(a):
    with open(a.spec) as f:
        spec = json.load(f)
    with open(spec["corpus"], encoding="utf-8") as f:
        text = f.read()
    index = {ch: i for i, ch in enumerate(spec["vocab"])}
    ids = torch.tensor([index[ch] for ch in text], dtype=torch.long)
    lo, hi = spec["train"]
    train = ids[lo:hi]
    vlo, vhi = spec["validation"]
    val = ids[vlo:vhi]
    m = spec["model"]
    model = CharModel(m["cell"], m["vocabSize"], m["embedding"], m["units"], m["layers"])
    load_charlm_weights(model, m["cell"], m["layers"], spec["weightsFile"], spec["weights"])
    o = spec["adam"]
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=o["lr"], betas=(o["beta1"], o["beta2"]), eps=o["eps"])
    B, T = spec["batch"], spec["seq"]
    offsets = np.fromfile(spec["offsetsFile"], dtype="<i4").reshape(spec["steps"], B)
    ar = torch.arange(T + 1)
    t0 = time.perf_counter()
    losses = []
    for step in range(spec["steps"]):
        win = train[torch.from_numpy(offsets[step].astype(np.int64))[:, None] + ar]  # (B, T+1)
        losses.append(train_step(model, opt, win[:, :-1].T, win[:, 1:].T, m["vocabSize"], spec["clip"]))
    dt = time.perf_counter() - t0
    # Validation: non-overlapping (T+1)-windows from the start of the split, zero initial state, mean over positions.
    n = spec["valWindows"]
    win = val[: n * (T + 1)].reshape(n, T + 1)
    with torch.no_grad():
        total, count = 0.0, 0
        for s in range(0, n, B):
            w = win[s : s + B]
            logits = model(w[:, :-1].T)
            total += float(
                torch.nn.functional.cross_entropy(logits.reshape(-1, m["vocabSize"]), w[:, 1:].T.reshape(-1), reduction="sum")
            )
            count += w.shape[0] * T
    return {"valLoss": total / count, "trainLosses": losses, "seconds": dt}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["throughput", "compare"])
    p.add_argument("--cell", default="lstm", help="lstm, gru, rnn, or gpt (--units is then the width, --seq the block)")
    p.add_argument("--heads", type=int, default=6, help="attention heads (gpt)")
    p.add_argument("--embedding", type=int, default=64)
    p.add_argument("--units", type=int, default=256)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--vocab", type=int, default=65)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seq", type=int, default=100)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: PyTorch's default)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--spec")
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    info = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "openblasThreads": os.environ.get("OPENBLAS_NUM_THREADS", "(default)"),
        "blas": blas_info(),
    }
    result = throughput(a) if a.mode == "throughput" else compare(a)
    sys.stdout.write(json.dumps({**info, **result}) + "\n")


if __name__ == "__main__":
    main()
