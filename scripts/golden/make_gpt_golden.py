#!/usr/bin/python3
"""Golden numbers for charlm's GPT model (src/models/gpt.ts), computed by PyTorch.

Builds a tiny pre-LayerNorm decoder-only transformer out of torch.nn pieces (nn.Embedding, nn.LayerNorm, nn.Linear,
F.scaled-dot-product written out with a causal mask, F.gelu(approximate="tanh")) with fixed random weights, runs it
in float64 on fixed tokens, and writes test/fixtures/golden_gpt.json:

  config    the charlm GptModelConfig (bias true, dropout 0)
  weights   every parameter under its charlm name and in charlm's layout (see docs/models.md)
  tokens, targets   (B, T) int, batch-major
  logits    (B, T, V);  loss: mean cross-entropy in nats
  grads     d loss / d parameter, charlm names and layouts

Layout mapping (PyTorch -> charlm), which test/models_gpt.test.ts relies on:
  wte                        = tok_emb.weight                 (V, C)
  wpe                        = pos_emb.weight                 (blockSize, C)
  h.{l}.ln1.gamma / .beta    = blocks[l].ln1.weight / .bias   (C)
  h.{l}.attn.wqkv / .bqkv    = blocks[l].qkv.weight^T / .bias (C, 3C) / (3C), columns q | k | v, head h at h*hd
  h.{l}.attn.wo / .bo        = blocks[l].proj.weight^T / .bias
  h.{l}.ln2.gamma / .beta    = blocks[l].ln2.weight / .bias
  h.{l}.mlp.wfc / .bfc       = blocks[l].fc.weight^T / .bias  (C, 4C)
  h.{l}.mlp.wproj / .bproj   = blocks[l].fc_proj.weight^T / .bias  (4C, C)
  lnf.gamma / .beta          = ln_f.weight / .bias
  head.weight                = lm_head.weight^T               (C, V), no bias

Run: /usr/bin/python3 scripts/golden/make_gpt_golden.py   (deterministic; rewrites the fixture)
"""

import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

V, BLOCK, C, NH, L = 11, 8, 12, 2, 2
B, T = 3, 8
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "test", "fixtures", "golden_gpt.json")


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = torch.nn.LayerNorm(C)
        self.qkv = torch.nn.Linear(C, 3 * C)
        self.proj = torch.nn.Linear(C, C)
        self.ln2 = torch.nn.LayerNorm(C)
        self.fc = torch.nn.Linear(C, 4 * C)
        self.fc_proj = torch.nn.Linear(4 * C, C)

    def attn(self, x):
        b, t, c = x.shape
        hd = c // NH
        q, k, v = self.qkv(x).split(c, dim=2)
        q, k, v = (z.view(b, t, NH, hd).transpose(1, 2) for z in (q, k, v))  # (B, nH, T, hd)
        scores = q @ k.transpose(-2, -1) / math.sqrt(hd)
        mask = torch.ones(t, t, dtype=torch.bool).tril()
        att = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, c)
        return self.proj(y)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.fc_proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class Gpt(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.tok_emb = torch.nn.Embedding(V, C)
        self.pos_emb = torch.nn.Embedding(BLOCK, C)
        self.blocks = torch.nn.ModuleList(Block() for _ in range(L))
        self.ln_f = torch.nn.LayerNorm(C)
        self.lm_head = torch.nn.Linear(C, V, bias=False)

    def forward(self, idx):
        t = idx.shape[1]
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(t))
        for blk in self.blocks:
            x = blk(x)
        return self.lm_head(self.ln_f(x))


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def main():
    torch.manual_seed(0)
    rng = np.random.default_rng(2024)
    model = Gpt().to(torch.float64)
    # Weights large enough that GELU, softmax and the LayerNorms leave their linear regions; LayerNorm gains near 1
    # but not 1, so their gradients matter.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("ln1.weight", "ln2.weight", "ln_f.weight")):
                p.copy_(torch.from_numpy(rng.uniform(0.7, 1.3, size=tuple(p.shape))))
            else:
                p.copy_(torch.from_numpy(rng.uniform(-0.5, 0.5, size=tuple(p.shape))))

    tokens = rng.integers(0, V, size=(B, T))
    targets = rng.integers(0, V, size=(B, T))
    logits = model(torch.from_numpy(tokens))  # (B, T, V)
    loss = F.cross_entropy(logits.reshape(B * T, V), torch.from_numpy(targets.reshape(-1)))
    loss.backward()

    weights, grads = {}, {}

    def put(name, value, grad):
        weights[name] = {"shape": list(value.shape), "data": flat(value)}
        grads[name] = {"shape": list(grad.shape), "data": flat(grad)}

    def linear(name_w, name_b, lin):
        put(name_w, lin.weight.T, lin.weight.grad.T)
        put(name_b, lin.bias, lin.bias.grad)

    def norm(name, ln):
        put(f"{name}.gamma", ln.weight, ln.weight.grad)
        put(f"{name}.beta", ln.bias, ln.bias.grad)

    put("wte", model.tok_emb.weight, model.tok_emb.weight.grad)
    put("wpe", model.pos_emb.weight, model.pos_emb.weight.grad)
    for l, blk in enumerate(model.blocks):
        norm(f"h.{l}.ln1", blk.ln1)
        linear(f"h.{l}.attn.wqkv", f"h.{l}.attn.bqkv", blk.qkv)
        linear(f"h.{l}.attn.wo", f"h.{l}.attn.bo", blk.proj)
        norm(f"h.{l}.ln2", blk.ln2)
        linear(f"h.{l}.mlp.wfc", f"h.{l}.mlp.bfc", blk.fc)
        linear(f"h.{l}.mlp.wproj", f"h.{l}.mlp.bproj", blk.fc_proj)
    norm("lnf", model.ln_f)
    put("head.weight", model.lm_head.weight.T, model.lm_head.weight.grad.T)

    golden = {
        "generator": "scripts/golden/make_gpt_golden.py",
        "torch": torch.__version__,
        "config": {
            "type": "gpt",
            "vocabSize": V,
            "blockSize": BLOCK,
            "nLayer": L,
            "nHead": NH,
            "nEmbd": C,
            "dropout": 0,
            "bias": True,
        },
        "B": B,
        "T": T,
        "tokens": [int(v) for v in tokens.reshape(-1)],
        "targets": [int(v) for v in targets.reshape(-1)],
        "weights": weights,
        "logits": flat(logits),
        "loss": float(loss),
        "grads": grads,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(golden, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {os.path.relpath(OUT)}: loss {float(loss):.6f}, {len(weights)} parameters")


if __name__ == "__main__":
    main()
