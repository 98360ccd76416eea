"""charlm's models in plain PyTorch, and the export directory that carries them between charlm and PyTorch.

An export (written by `charlm export DIR --to torch OUT` or by train.py here) is a directory of two files:

  charlm-torch.json   {"format": "charlm-torch-export", "version": 1, "model": charlm's model config,
                       "vocab": {"chars": [...], "unk": index or -1}, "train": charlm's training config or null,
                       "step": optimizer steps so far, "files": {"model.safetensors": {"bytes", "sha256"}}, ...}
  model.safetensors   the state_dict of CharRNN or GPT below, float32
  optimizer.safetensors  when the run used Adam: "exp_avg.<name>", "exp_avg_sq.<name>" per state_dict entry
                      (its scalars, step included, under "optimizer" in the JSON)

Requirements: torch (1.13 or later). The `safetensors` package is used when it is installed; without it the format
(8-byte little-endian header length, a JSON header, raw little-endian data) is read and written here.

Legend: B batch, T time, V vocabulary, E embedding width, H units, C channels, L layers.

Run as a script, it serves charlm's tests: `python3 charlm_torch.py logits JOB.json` (see logits_job).
"""

import array
import datetime
import hashlib
import json
import math
import os
import struct
import sys
import tempfile

import torch
import torch.nn as nn
import torch.nn.functional as F

FORMAT, VERSION = "charlm-torch-export", 1
MANIFEST, WEIGHTS, OPTIMIZER = "charlm-torch.json", "model.safetensors", "optimizer.safetensors"


class ExportError(Exception):
    """Bad input: one sentence naming the file, what was wrong and what to do."""


# ----------------------------------------------------------------------------------------------------------------
# The recurrent stack: Embedding(V, E) -> L x LSTM | GRU | RNN(tanh) (H) -> Dropout -> Linear(H, V)


class CharRNN(nn.Module):
    def __init__(self, cell, vocabSize, embedding, units, layers, dropout, **_):
        super().__init__()
        self.embedding = nn.Embedding(vocabSize, embedding)
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
        # torch drops out between layers; self.drop adds charlm's dropout after the last one too.
        self.rnn = rnn(embedding, units, num_layers=layers, dropout=dropout if layers > 1 else 0.0, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.dense = nn.Linear(units, vocabSize)
        if cell != "gru":
            # charlm's LSTM and SimpleRNN have one bias; torch's bias_ih + bias_hh is it. Training both would move
            # the sum twice as far per Adam step, so bias_hh stays zero and frozen: the model trains as charlm's.
            for l in range(layers):
                b = getattr(self.rnn, f"bias_hh_l{l}")
                b.requires_grad_(False)

    def forward(self, idx, state=None):  # idx (B, T) -> logits (B, T, V), state
        y, state = self.rnn(self.embedding(idx), state)  # (B, T, H)
        return self.dense(self.drop(y)), state


# ----------------------------------------------------------------------------------------------------------------
# The GPT: nanoGPT's module names, pre-LayerNorm blocks, tanh GELU, untied head without bias


class LayerNorm(nn.Module):
    """LayerNorm whose bias can be left out (torch 1.13's nn.LayerNorm has both or neither)."""

    def __init__(self, n, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))
        self.bias = nn.Parameter(torch.zeros(n)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, C, nHead, bias, dropout):
        super().__init__()
        self.n_head = nHead
        self.c_attn = nn.Linear(C, 3 * C, bias=bias)  # q | k | v, head h at h*hd in each
        self.c_proj = nn.Linear(C, C, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x):
        B, T, C = x.shape
        hd = C // self.n_head
        q, k, v = (z.view(B, T, self.n_head, hd).transpose(1, 2) for z in self.c_attn(x).split(C, dim=2))
        if hasattr(F, "scaled_dot_product_attention"):  # torch >= 2.0: the fused kernel
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)  # (B, nH, T, T)
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            y = att.masked_fill(~mask, float("-inf")).softmax(dim=-1) @ v
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(B, T, C)))


class MLP(nn.Module):
    def __init__(self, C, bias, dropout):
        super().__init__()
        self.c_fc = nn.Linear(C, 4 * C, bias=bias)
        self.c_proj = nn.Linear(4 * C, C, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, C, nHead, bias, dropout):
        super().__init__()
        self.ln_1 = LayerNorm(C, bias)
        self.attn = CausalSelfAttention(C, nHead, bias, dropout)
        self.ln_2 = LayerNorm(C, bias)
        self.mlp = MLP(C, bias, dropout)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocabSize, blockSize, nLayer, nHead, nEmbd, dropout, bias, **_):
        super().__init__()
        self.block_size = blockSize
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(vocabSize, nEmbd),
                wpe=nn.Embedding(blockSize, nEmbd),
                drop=nn.Dropout(dropout),
                h=nn.ModuleList(Block(nEmbd, nHead, bias, dropout) for _ in range(nLayer)),
                ln_f=LayerNorm(nEmbd, bias),
            )
        )
        self.lm_head = nn.Linear(nEmbd, vocabSize, bias=False)  # untied from wte, as charlm

    def forward(self, idx, state=None):  # idx (B, T), T <= blockSize -> logits (B, T, V); no state
        t = self.transformer
        x = t.drop(t.wte(idx) + t.wpe(torch.arange(idx.shape[1], device=idx.device)))  # (B, T, C)
        for block in t.h:
            x = block(x)
        return self.lm_head(t.ln_f(x)), None


def build_model(config):
    return CharRNN(**config) if config["type"] == "rnn" else GPT(**config)


# ----------------------------------------------------------------------------------------------------------------
# safetensors, float32 only

try:
    import safetensors.torch as _st
except ImportError:
    _st = None


def safetensors_bytes(tensors):
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in tensors.items()}
    if _st is not None:
        return _st.save(tensors, metadata={"format": "pt"})
    header, parts, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, t in tensors.items():
        data = _le_bytes(t)
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        parts.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)  # the data starts 8-byte aligned
    return struct.pack("<Q", len(text)) + text + b"".join(parts)


def _le_bytes(t):
    """A float32 tensor's bytes in native order (little-endian on the machines torch runs on); NumPy when present."""
    try:
        return t.numpy().tobytes()
    except RuntimeError:  # torch built or installed without NumPy
        return array.array("f", t.reshape(-1).tolist()).tobytes()


def tensors_from_safetensors(raw, where):
    if _st is not None:
        return _st.load(raw)
    bad = lambda what: ExportError(f"{where}: {what}; the file is damaged, export the model again")
    if len(raw) < 8:
        raise bad("too short for a safetensors header")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise bad(f"header of {n} bytes runs past the end of the file")
    try:
        header = json.loads(raw[8 : 8 + n])
    except ValueError:
        raise bad("the header is not JSON") from None
    body, out = raw[8 + n :], {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info.get("dtype") != "F32":
            raise ExportError(f"{where}: tensor {name} is {info.get('dtype')}; save the state_dict as float32")
        lo, hi = info["data_offsets"]
        if hi > len(body) or hi - lo != 4 * math.prod(info["shape"]):
            raise bad(f"tensor {name} does not fit its offsets")
        out[name] = torch.frombuffer(bytearray(body[lo:hi]), dtype=torch.float32).reshape(info["shape"]).clone()
    return out


def write_atomic(path, data):
    """Temp file beside the target, fsync, rename, fsync the directory: readers see the old file or the new one."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dfd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


# ----------------------------------------------------------------------------------------------------------------
# Exports


def _read_listed(folder, m, name):
    """One data file of an export, checked against the size and SHA-256 its JSON lists."""
    path, entry = os.path.join(folder, name), m.get("files", {}).get(name)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ExportError(f"{path}: missing; copy the whole export directory") from None
    if entry is None or len(raw) != entry["bytes"] or hashlib.sha256(raw).hexdigest() != entry["sha256"]:
        raise ExportError(
            f"{path}: size or SHA-256 differs from {MANIFEST} (truncated or edited); export the model again"
        )
    return tensors_from_safetensors(raw, path)


def read_export(folder):
    """-> (manifest dict, model with the export's weights on the CPU, Adam's moments {name: tensor} or None).
    Damaged or foreign files are refused."""
    mfile = os.path.join(folder, MANIFEST)
    if not os.path.isfile(mfile):
        raise ExportError(
            f"{folder}: no {MANIFEST}, so it is not a charlm PyTorch export; run charlm export DIR --to torch {folder}"
        )
    try:
        with open(mfile, encoding="utf-8") as f:
            m = json.load(f)
    except ValueError:
        raise ExportError(f"{mfile}: not valid JSON; the export is damaged, export the model again") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT or m.get("version") != VERSION:
        raise ExportError(
            f"{mfile}: expected format {FORMAT} version {VERSION}; export the model again with this charlm"
        )
    model = build_model(m["model"])
    state = _read_listed(folder, m, WEIGHTS)
    want, got = set(model.state_dict()), set(state)
    if want != got:
        diff = sorted(want ^ got)[0]
        what = "is missing" if diff in want else "is not part of this model"
        raise ExportError(f"{folder}/{WEIGHTS}: tensor {diff} {what}; export the model again")
    model.load_state_dict(state)
    moments = _read_listed(folder, m, OPTIMIZER) if m.get("optimizer") else None
    return m, model, moments


def make_adam(model, manifest, moments, lr):
    """torch.optim.Adam over the trainable parameters, with the export's moments and step count when it has them
    (charlm's Adam is the same update: m / (1 - b1^t) over sqrt(v / (1 - b2^t)) + eps)."""
    o, saved = manifest.get("optimizer") or {}, manifest.get("train") or {}
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    opt = torch.optim.Adam(
        [p for _, p in named],
        lr=lr,
        betas=(o.get("beta1", saved.get("beta1", 0.9)), o.get("beta2", saved.get("beta2", 0.999))),
        eps=o.get("eps", 1e-8),
        weight_decay=o.get("weightDecay", saved.get("weightDecay", 0.0)),
    )
    if moments is not None:
        sd = opt.state_dict()
        step = torch.tensor(float(o["step"]))
        sd["state"] = {
            i: {"step": step.clone(), "exp_avg": moments[f"exp_avg.{n}"], "exp_avg_sq": moments[f"exp_avg_sq.{n}"]}
            for i, (n, _) in enumerate(named)
        }
        opt.load_state_dict(sd)  # moves the moments to the parameters' device
    return opt


def write_export(folder, manifest, model, step, writer, opt=None):
    """Write `model` (unwrapped from DDP) and Adam's state as an export: data files first, then the JSON, each
    atomically. Interrupted while overwriting an export, it leaves a JSON whose SHA-256 does not match: refused."""
    os.makedirs(folder, exist_ok=True)
    files, m = {}, dict(manifest)

    def put(name, raw):
        write_atomic(os.path.join(folder, name), raw)
        files[name] = {"bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}

    state = model.state_dict()
    put(WEIGHTS, safetensors_bytes(state))
    m["optimizer"] = None
    if opt is not None:
        by_param = {id(p): opt.state.get(p, {}) for group in opt.param_groups for p in group["params"]}
        moments, t = {}, 0
        for n, p in model.named_parameters():  # frozen entries (no state) hold zeros, as charlm writes them
            s = by_param.get(id(p), {})
            t = max(t, int(s.get("step", 0)))
            for key in ("exp_avg", "exp_avg_sq"):
                moments[f"{key}.{n}"] = s[key] if key in s else torch.zeros_like(p)
        put(OPTIMIZER, safetensors_bytes(moments))
        g = opt.param_groups[0]
        m["optimizer"] = dict(
            type="adam", step=t, beta1=g["betas"][0], beta2=g["betas"][1], eps=g["eps"], weightDecay=g["weight_decay"]
        )
    elif os.path.exists(os.path.join(folder, OPTIMIZER)):
        os.unlink(os.path.join(folder, OPTIMIZER))  # an earlier export's, now stale
    m.update(
        savedAt=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        writer=writer,
        step=step,
        files=files,
    )
    write_atomic(os.path.join(folder, MANIFEST), (json.dumps(m, indent=2, ensure_ascii=False) + "\n").encode())


# ----------------------------------------------------------------------------------------------------------------
# Tokenizer and corpus, as charlm reads them


class Tokenizer:
    """Characters (code points) -> ids through the export's vocabulary; unknown ones map to "<unk>" if it has one."""

    def __init__(self, vocab):
        self.chars, self.unk = vocab["chars"], vocab.get("unk", -1)
        self.ids = {c: i for i, c in enumerate(self.chars) if i != self.unk}

    def encode(self, text, where):
        unk, ids = self.unk, self.ids
        if unk < 0:
            missing = sorted({c for c in set(text) if c not in ids})
            if missing:
                shown = ", ".join(f"U+{ord(c):04X}" for c in missing[:5])
                raise ExportError(
                    f"{where}: characters outside the model's vocabulary ({shown}); use the model's own corpus"
                )
        return torch.tensor([ids.get(c, unk) for c in text], dtype=torch.long)


TINY_SHAKESPEARE_SPLITS = {"train": (0, 1003854), "validation": (1003854, 1059624), "test": (1059624, 1115394)}


def read_utf8(path):
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ExportError(f"{path}: {e.strerror.lower()}; check the path") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ExportError(f"{path}: invalid UTF-8 at byte {e.start}; re-encode the file as UTF-8") from None
    return text[1:] if text.startswith("\ufeff") else text


def load_splits(data, validation_fraction=0.1):
    """charlm's data spec -> (train text, validation text): "tinyshakespeare:FILE" (the TFDS split points), or a
    text file or a folder of .txt files whose tail fraction is the validation split."""
    if data.startswith("tinyshakespeare"):
        path = data.partition(":")[2] or os.environ.get("CHARLM_TINYSHAKESPEARE", "")
        if not path:
            raise ExportError(f"{data}: name the local copy as tinyshakespeare:/path/to/input.txt")
        text = read_utf8(path)
        return tuple(text[a:b] for a, b in (TINY_SHAKESPEARE_SPLITS["train"], TINY_SHAKESPEARE_SPLITS["validation"]))
    files = [data]
    if os.path.isdir(data):
        files = sorted(
            os.path.join(d, f)
            for d, dirs, names in os.walk(data)
            for f in names
            if f.lower().endswith(".txt") and not f.startswith(".")
        )
    text = ""
    for f in files:
        part = read_utf8(f)
        if text and part and not text.endswith("\n"):
            text += "\n"
        text += part
    cut = len(text) - math.ceil(len(text) * validation_fraction)  # code points, as charlm counts
    return text[:cut], text[cut:]


# ----------------------------------------------------------------------------------------------------------------
# For charlm's tests: logits of exports on given tokens, and a round trip through torch's own state_dict


def logits_job(job_file):
    """JOB.json: {"out": FILE, "items": [{"export": DIR, "tokens": [...], "B": b, "T": t, "resave": DIR?}]}.
    Writes {"items": [{"logits": [...]}]} to FILE; "resave" writes the loaded model's state_dict (and Adam's, loaded
    into torch.optim.Adam and read back out) as a new export."""
    with open(job_file) as f:
        job = json.load(f)
    results = []
    for item in job["items"]:
        m, model, moments = read_export(item["export"])
        model.eval()
        with torch.no_grad():
            logits, _ = model(torch.tensor(item["tokens"], dtype=torch.long).reshape(item["B"], item["T"]))
        results.append({"logits": logits.reshape(-1).tolist()})
        if item.get("resave"):
            opt = make_adam(model, m, moments, 1e-3) if moments is not None else None  # through torch's Adam state
            write_export(item["resave"], m, model, m.get("step", 0), "python/charlm_torch.py", opt)
    with open(job["out"], "w") as f:
        json.dump({"torch": torch.__version__, "items": results}, f)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "logits":
        sys.exit("usage: charlm_torch.py logits JOB.json")
    try:
        logits_job(sys.argv[2])
    except ExportError as e:
        sys.exit(f"charlm_torch: {e}")
