#!/usr/bin/python3
"""Golden numbers for charlm's recurrent models, computed by PyTorch.

Builds a tiny Embedding -> 2 x (LSTM | GRU | RNN) -> Linear model with fixed random weights, runs it in float64 on
fixed tokens from a fixed non-zero initial state, and writes to test/fixtures/golden_<cell>.json:

  weights   every parameter under its charlm name and in charlm's layout (see docs/models.md)
  tokens, targets   (B, T) int, batch-major
  h0, c0    per layer (B, H) initial state
  logits    (B, T, V);  loss: mean cross-entropy in nats
  hT, cT    per layer final state
  grads     d loss / d parameter, charlm names and layouts

Layout mapping (PyTorch -> charlm), which test/models_golden.test.ts relies on:
  embedding.weight            = embedding.weight                     (V, E)
  rnn.{l}.wx                  = weight_ih_l{l}^T                     (D, G*H)
  rnn.{l}.wh                  = weight_hh_l{l}^T                     (H, G*H)
  rnn.{l}.b   (LSTM, RNN)     = bias_ih_l{l} + bias_hh_l{l}          (G*H)
  rnn.{l}.bx, rnn.{l}.bh (GRU) = bias_ih_l{l}, bias_hh_l{l}           (3H each; the reset gate multiplies bh_n)
  dense.weight                = Linear.weight^T                      (H, V)
  dense.bias                  = Linear.bias                          (V)
Gradient of the LSTM/RNN combined bias b equals the gradient of either PyTorch bias (they enter the sum alike).

Run: /usr/bin/python3 scripts/golden/make_rnn_golden.py   (deterministic; rewrites the three fixtures)
"""

import json
import os

import numpy as np
import torch

V, E, H, L, T, B = 11, 5, 7, 2, 6, 3
GATES = {"lstm": 4, "gru": 3, "rnn": 1}
OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "test", "fixtures")


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def make(cell, seed):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dtype = torch.float64
    emb = torch.nn.Embedding(V, E).to(dtype)
    rnn_cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell]
    rnn = rnn_cls(E, H, num_layers=L).to(dtype)  # time-major (T, B, ·), tanh for nn.RNN
    dense = torch.nn.Linear(H, V).to(dtype)
    # Weights large enough that the nonlinearities leave their linear region, so the test sees real curvature.
    with torch.no_grad():
        for p in list(emb.parameters()) + list(rnn.parameters()) + list(dense.parameters()):
            p.copy_(torch.from_numpy(rng.uniform(-0.6, 0.6, size=tuple(p.shape))))

    tokens = rng.integers(0, V, size=(B, T))
    targets = rng.integers(0, V, size=(B, T))
    h0 = torch.from_numpy(rng.uniform(-0.5, 0.5, size=(L, B, H)))
    c0 = torch.from_numpy(rng.uniform(-0.5, 0.5, size=(L, B, H)))

    x = emb(torch.from_numpy(tokens.T.copy()))  # (T, B, E)
    if cell == "lstm":
        hs, (hT, cT) = rnn(x, (h0, c0))
    else:
        hs, hT = rnn(x, h0)
        cT = None
    logits = dense(hs).transpose(0, 1)  # (B, T, V)
    loss = torch.nn.functional.cross_entropy(logits.reshape(B * T, V), torch.from_numpy(targets.reshape(-1)))
    loss.backward()

    weights, grads = {}, {}

    def put(name, value, grad):
        weights[name] = {"shape": list(value.shape), "data": flat(value)}
        grads[name] = {"shape": list(grad.shape), "data": flat(grad)}

    put("embedding.weight", emb.weight, emb.weight.grad)
    for l in range(L):
        wih, whh = getattr(rnn, f"weight_ih_l{l}"), getattr(rnn, f"weight_hh_l{l}")
        bih, bhh = getattr(rnn, f"bias_ih_l{l}"), getattr(rnn, f"bias_hh_l{l}")
        put(f"rnn.{l}.wx", wih.T, wih.grad.T)
        put(f"rnn.{l}.wh", whh.T, whh.grad.T)
        if cell == "gru":
            put(f"rnn.{l}.bx", bih, bih.grad)
            put(f"rnn.{l}.bh", bhh, bhh.grad)
        else:
            assert torch.allclose(bih.grad, bhh.grad)
            put(f"rnn.{l}.b", bih + bhh, bih.grad)
    put("dense.weight", dense.weight.T, dense.weight.grad.T)
    put("dense.bias", dense.bias, dense.bias.grad)

    return {
        "generator": "scripts/golden/make_rnn_golden.py",
        "torch": torch.__version__,
        "cell": cell,
        "config": {"vocabSize": V, "embedding": E, "units": H, "layers": L},
        "B": B,
        "T": T,
        "tokens": [int(v) for v in tokens.reshape(-1)],
        "targets": [int(v) for v in targets.reshape(-1)],
        "h0": [flat(h0[l]) for l in range(L)],
        "c0": [flat(c0[l]) for l in range(L)] if cell == "lstm" else [],
        "weights": weights,
        "logits": flat(logits),
        "loss": float(loss),
        "hT": [flat(hT[l]) for l in range(L)],
        "cT": [flat(cT[l]) for l in range(L)] if cT is not None else [],
        "grads": grads,
    }


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    for seed, cell in enumerate(GATES):
        path = os.path.join(OUT_DIR, f"golden_{cell}.json")
        with open(path, "w") as f:
            json.dump(make(cell, 1234 + seed), f, separators=(",", ":"))
            f.write("\n")
        print(f"wrote {os.path.relpath(path)}")


if __name__ == "__main__":
    main()
