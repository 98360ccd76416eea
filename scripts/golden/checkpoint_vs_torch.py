#!/usr/bin/python3
"""Load a charlm checkpoint into PyTorch and check that nn.Embedding/nn.LSTM|GRU|RNN/nn.Linear give charlm's logits.

Usage (normally run by checkpoint_vs_torch.ts, which writes LOGITS_JSON with charlm's own forward pass):
  /usr/bin/python3 scripts/golden/checkpoint_vs_torch.py CHECKPOINT_DIR LOGITS_JSON

Reads CHECKPOINT_DIR/charlm.json (model config) and CHECKPOINT_DIR/model.safetensors (parsed here with NumPy: an
8-byte little-endian header length, a JSON header of {name: {dtype, shape, data_offsets}}, then the raw data), maps
the charlm names and layouts onto PyTorch's (docs/models.md), runs the tokens from LOGITS_JSON and prints the
largest logit difference. Exit status 1 if it exceeds 1e-4.
"""

import json
import struct
import sys

import numpy as np
import torch


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    body = raw[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            sys.exit(f"{path}: {name} has dtype {info['dtype']}; this script reads F32 checkpoints")
        lo, hi = info["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(body[lo:hi], dtype="<f4").reshape(info["shape"]).copy())
    return out


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: checkpoint_vs_torch.py CHECKPOINT_DIR LOGITS_JSON")
    ckpt, logits_json = sys.argv[1], sys.argv[2]
    with open(f"{ckpt}/charlm.json") as f:
        cfg = json.load(f)["model"]
    w = read_safetensors(f"{ckpt}/model.safetensors")
    V, E, H, L, cell = cfg["vocabSize"], cfg["embedding"], cfg["units"], cfg["layers"], cfg["cell"]
    emb = torch.nn.Embedding(V, E)
    rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell](E, H, num_layers=L)
    dense = torch.nn.Linear(H, V)
    with torch.no_grad():
        emb.weight.copy_(w["embedding.weight"])
        for l in range(L):
            getattr(rnn, f"weight_ih_l{l}").copy_(w[f"rnn.{l}.wx"].T)
            getattr(rnn, f"weight_hh_l{l}").copy_(w[f"rnn.{l}.wh"].T)
            if cell == "gru":
                getattr(rnn, f"bias_ih_l{l}").copy_(w[f"rnn.{l}.bx"])
                getattr(rnn, f"bias_hh_l{l}").copy_(w[f"rnn.{l}.bh"])
            else:
                getattr(rnn, f"bias_ih_l{l}").copy_(w[f"rnn.{l}.b"])
                getattr(rnn, f"bias_hh_l{l}").zero_()
        dense.weight.copy_(w["dense.weight"].T)
        dense.bias.copy_(w["dense.bias"])
    with open(logits_json) as f:
        ref = json.load(f)
    B, T = ref["B"], ref["T"]
    tokens = torch.tensor(ref["tokens"], dtype=torch.long).reshape(B, T)
    with torch.no_grad():
        hs, _ = rnn(emb(tokens.T))
        logits = dense(hs).transpose(0, 1)  # (B, T, V)
    diff = float((logits.reshape(-1) - torch.tensor(ref["logits"])).abs().max())
    ok = diff <= 1e-4
    print(f"{cell} E={E} H={H} L={L} V={V}, {B}x{T} tokens: max |logit difference| {diff:.2e} ({'PASS' if ok else 'FAIL'}, tolerance 1e-4)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
