// charlm's parameters <-> a PyTorch state_dict (names and layouts), for both model families. Pure: no Node APIs.
//
// Recurrent stack (python/charlm_torch.py's CharRNN: nn.Embedding, one multi-layer nn.LSTM/GRU/RNN, nn.Linear):
//
//   embedding.weight          (V, E)     = embedding.weight
//   rnn.weight_ih_l{l}        (G·H, D)   = rnn.{l}.wx ᵀ            gate order as charlm (LSTM i f g o, GRU r z n)
//   rnn.weight_hh_l{l}        (G·H, H)   = rnn.{l}.wh ᵀ
//   rnn.bias_ih_l{l}          (G·H)      = rnn.{l}.b  (LSTM, RNN)  or rnn.{l}.bx (GRU)
//   rnn.bias_hh_l{l}          (G·H)      = zeros      (LSTM, RNN)  or rnn.{l}.bh (GRU)
//   dense.weight              (V, H)     = dense.weight ᵀ
//   dense.bias                (V)        = dense.bias
//
// charlm's LSTM and SimpleRNN have one bias where torch has two that are only ever added, so export puts it in
// bias_ih with bias_hh zero, and import adds them back (exact while bias_hh stays zero, as the Python trainer keeps it).
//
// GPT (nanoGPT's model.py names; every Linear weight is (out, in), charlm's (in, out), so transposed):
//
//   transformer.wte.weight, transformer.wpe.weight                 = wte, wpe
//   transformer.h.{l}.ln_1.weight / .bias                          = h.{l}.ln1.gamma / .beta
//   transformer.h.{l}.attn.c_attn.weight / .bias  (3C, C) / (3C)   = h.{l}.attn.wqkv ᵀ / .bqkv
//   transformer.h.{l}.attn.c_proj.weight / .bias                   = h.{l}.attn.wo ᵀ / .bo
//   transformer.h.{l}.ln_2.weight / .bias                          = h.{l}.ln2.gamma / .beta
//   transformer.h.{l}.mlp.c_fc.weight / .bias     (4C, C) / (4C)   = h.{l}.mlp.wfc ᵀ / .bfc
//   transformer.h.{l}.mlp.c_proj.weight / .bias   (C, 4C) / (C)    = h.{l}.mlp.wproj ᵀ / .bproj
//   transformer.ln_f.weight / .bias                                = lnf.gamma / .beta
//   lm_head.weight                                (V, C)           = head.weight ᵀ   (untied: charlm keeps its own)
//
// With bias false the GPT has no ".bias" entries at all (nanoGPT's bias=False).

import type { ModelConfig } from "../models/config.js";
import { CharlmError } from "../util/errors.js";

export interface NamedTensor {
  shape: number[];
  data: Float32Array;
}
export type Weights = Map<string, NamedTensor>;

/** One parameter's correspondence. `kind` says how the data moves between the two layouts. */
interface Rule {
  charlm: string;
  torch: string;
  kind: "copy" | "transpose" | "biasPair"; // biasPair: charlm's b <-> torch's bias_ih (+ bias_hh, zero on export)
  pair?: string; // biasPair: the torch name of the second bias
}

function rules(config: ModelConfig): Rule[] {
  const out: Rule[] = [];
  const copy = (charlm: string, torch: string) => out.push({ charlm, torch, kind: "copy" });
  const tr = (charlm: string, torch: string) => out.push({ charlm, torch, kind: "transpose" });
  if (config.type === "rnn") {
    copy("embedding.weight", "embedding.weight");
    for (let l = 0; l < config.layers; l++) {
      tr(`rnn.${l}.wx`, `rnn.weight_ih_l${l}`);
      tr(`rnn.${l}.wh`, `rnn.weight_hh_l${l}`);
      if (config.cell === "gru") {
        copy(`rnn.${l}.bx`, `rnn.bias_ih_l${l}`);
        copy(`rnn.${l}.bh`, `rnn.bias_hh_l${l}`);
      } else {
        out.push({ charlm: `rnn.${l}.b`, torch: `rnn.bias_ih_l${l}`, kind: "biasPair", pair: `rnn.bias_hh_l${l}` });
      }
    }
    tr("dense.weight", "dense.weight");
    copy("dense.bias", "dense.bias");
    return out;
  }
  const bias = config.bias;
  const norm = (charlm: string, torch: string) => {
    copy(`${charlm}.gamma`, `${torch}.weight`);
    if (bias) copy(`${charlm}.beta`, `${torch}.bias`);
  };
  const linear = (w: string, b: string, torch: string) => {
    tr(w, `${torch}.weight`);
    if (bias) copy(b, `${torch}.bias`);
  };
  copy("wte", "transformer.wte.weight");
  copy("wpe", "transformer.wpe.weight");
  for (let l = 0; l < config.nLayer; l++) {
    const c = `h.${l}`;
    const t = `transformer.h.${l}`;
    norm(`${c}.ln1`, `${t}.ln_1`);
    linear(`${c}.attn.wqkv`, `${c}.attn.bqkv`, `${t}.attn.c_attn`);
    linear(`${c}.attn.wo`, `${c}.attn.bo`, `${t}.attn.c_proj`);
    norm(`${c}.ln2`, `${t}.ln_2`);
    linear(`${c}.mlp.wfc`, `${c}.mlp.bfc`, `${t}.mlp.c_fc`);
    linear(`${c}.mlp.wproj`, `${c}.mlp.bproj`, `${t}.mlp.c_proj`);
  }
  norm("lnf", "transformer.ln_f");
  tr("head.weight", "lm_head.weight");
  return out;
}

/** (R, C) row-major -> (C, R) row-major. */
function transpose2d(t: NamedTensor): NamedTensor {
  const [R, C] = t.shape;
  const out = new Float32Array(R * C);
  for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) out[c * R + r] = t.data[r * C + c];
  return { shape: [C, R], data: out };
}

/** charlm parameters (names and layouts of model.parameters()) -> a PyTorch state_dict, in module order. */
export function toTorchStateDict(config: ModelConfig, weights: Weights): Weights {
  const out: Weights = new Map();
  for (const r of rules(config)) {
    const w = weights.get(r.charlm);
    if (!w) throw new Error(`parameter ${r.charlm} is missing from the model`); // a charlm bug, not user input
    out.set(r.torch, r.kind === "transpose" ? transpose2d(w) : { shape: w.shape.slice(), data: w.data.slice() });
    if (r.kind === "biasPair") out.set(r.pair!, { shape: w.shape.slice(), data: new Float32Array(w.data.length) });
  }
  return out;
}

/**
 * A PyTorch state_dict -> charlm parameters. `expected` gives charlm's shapes (from a model built with the
 * config); `where` names the file in errors. Every tensor must be present with its exact shape and nothing else
 * may be there, so a state_dict from another architecture is refused by name rather than loaded wrongly.
 */
export function fromTorchStateDict(
  config: ModelConfig,
  stateDict: Weights,
  expected: Map<string, number[]>,
  where: string,
): Weights {
  const out: Weights = new Map();
  const used = new Set<string>();
  const take = (name: string, shape: number[]): NamedTensor => {
    const t = stateDict.get(name);
    if (!t) {
      throw new CharlmError(
        `${where}: tensor ${name} is missing, but a ${describeModel(config)} needs it; export the model again`,
      );
    }
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new CharlmError(
        `${where}: tensor ${name} has shape [${t.shape}] but a ${describeModel(config)} needs [${shape}]; the weights belong to another model`,
      );
    }
    used.add(name);
    return t;
  };
  for (const r of rules(config)) {
    const shape = expected.get(r.charlm)!;
    if (r.kind === "transpose") {
      out.set(r.charlm, transpose2d(take(r.torch, [shape[1], shape[0]])));
    } else if (r.kind === "biasPair") {
      const a = take(r.torch, shape).data;
      const b = take(r.pair!, shape).data;
      out.set(r.charlm, { shape: shape.slice(), data: a.map((x, i) => x + b[i]) });
    } else {
      out.set(r.charlm, { shape: shape.slice(), data: take(r.torch, shape).data.slice() });
    }
  }
  const extra = [...stateDict.keys()].filter((k) => !used.has(k));
  if (extra.length) {
    throw new CharlmError(
      `${where}: tensor ${extra[0]}${extra.length > 1 ? ` (and ${extra.length - 1} more)` : ""} is not part of a ${describeModel(config)}; the weights belong to another model`,
    );
  }
  return out;
}

/** "2-layer lstm (E 16, H 32, V 20)" or "gpt (4 layers, C 64, V 20, bias)": for messages. */
export function describeModel(config: ModelConfig): string {
  if (config.type === "rnn") {
    return `${config.layers}-layer ${config.cell} (E ${config.embedding}, H ${config.units}, V ${config.vocabSize})`;
  }
  return `gpt (${config.nLayer} layers, C ${config.nEmbd}, V ${config.vocabSize}, ${config.bias ? "bias" : "no bias"})`;
}
