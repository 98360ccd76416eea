// charlm models as ONNX graphs (opset 17), for onnxruntime on servers and onnxruntime-web in browsers.
//
// Recurrent stack: one graph serves both whole sequences and generation, since the state goes in and comes out:
//
//   inputs   tokens int64 (B, T)      h0 float (L, B, H)      c0 float (L, B, H)  (LSTM only)
//   outputs  logits float (B, T, V)   hN float (L, B, H)      cN float (L, B, H)  (LSTM only)
//
// Zeros for h0/c0 and T = the whole text give `forward`; T = 1 with the previous hN/cN fed back gives `step`.
// Gather (embedding) -> per layer ONNX's LSTM / GRU (linear_before_reset = 1, charlm's reset-after) / RNN (tanh)
// -> MatMul + Add (dense). ONNX orders the gates i o f c (LSTM) and z r h (GRU) where charlm has i f g o and
// r z n, and wants W (G·H, D), R (G·H, H) and B = [input biases, recurrent biases]; the blocks are reordered here.
//
// GPT, with a key/value cache going in and out:
//
//   inputs   tokens int64 (B, T)   past_k, past_v float (L, B, nH, P, hd): the cached keys and values of the P
//            tokens before these (P = 0, an empty tensor, to start)
//   outputs  logits float (B, T, V)   present_k, present_v (L, B, nH, P + T, hd): feed them back as past_*
//
// P + T must stay within blockSize (the positions are learned and absolute). Once the window is full, generation
// starts again from an empty cache on the last blockSize tokens, as charlm's step() does.
//
// Legend: B batch, T time, V vocabulary, E embedding width, H units, L layers, C channels, nH heads, hd = C / nH.

import type { GptModelConfig, ModelConfig, RnnModelConfig } from "../models/config.js";
import { FLOAT, INT64, model as modelProto, node, tensor, valueInfo, type Message } from "./onnx-proto.js";
import type { Weights } from "./torch-names.js";

export const ONNX_OPSET = 17;

/** The ONNX model file for a charlm model with these weights (names and layouts of model.parameters()). */
export function onnxModel(config: ModelConfig, weights: Weights): Uint8Array {
  const g = new Graph(weights);
  if (config.type === "rnn") rnnGraph(g, config);
  else gptGraph(g, config);
  return modelProto(`charlm-${config.type}`, g.nodes, g.inits, g.inputs, g.outputs, ONNX_OPSET);
}

/** Nodes, constants and names being collected; `w` reads a charlm parameter. */
class Graph {
  nodes: Message[] = [];
  inits: Message[] = [];
  inputs: Message[] = [];
  outputs: Message[] = [];
  private n = 0;
  constructor(private readonly weights: Weights) {}

  w(name: string): Float32Array {
    const t = this.weights.get(name);
    if (!t) throw new Error(`parameter ${name} is missing from the model`);
    return t.data;
  }
  /** A float constant under `name`. */
  constF(name: string, dims: number[], data: Float32Array): string {
    this.inits.push(tensor(name, dims, data));
    return name;
  }
  /** An int64 constant (shapes, axes, indices; a number gives a scalar), named automatically. */
  constI(data: number[] | number): string {
    const name = `i64_${this.n++}`;
    this.inits.push(typeof data === "number" ? tensor(name, [], [data]) : tensor(name, [data.length], data));
    return name;
  }
  /** Add a node and return its (first) output, named `out` or automatically. */
  op(type: string, inputs: string[], attrs: Parameters<typeof node>[3] = {}, out?: string): string {
    const name = out ?? `${type.toLowerCase()}_${this.n++}`;
    this.nodes.push(node(type, inputs, [name], attrs));
    return name;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Recurrent stack

/** Gate order: ONNX's block k is charlm's block ORDER[k]. */
const ORDER = { lstm: [0, 3, 1, 2], gru: [1, 0, 2], rnn: [0] } as const;

/** charlm's (D, G·H) kernel -> ONNX's (1, G·H, D), gate blocks reordered. */
function kernel(w: Float32Array, D: number, H: number, order: readonly number[]): Float32Array {
  const G = order.length;
  const out = new Float32Array(G * H * D);
  for (let k = 0; k < G; k++)
    for (let j = 0; j < H; j++) for (let d = 0; d < D; d++) out[(k * H + j) * D + d] = w[d * G * H + order[k] * H + j];
  return out;
}

/** Reorder a (G·H) bias; null gives zeros. */
function bias(b: Float32Array | null, H: number, order: readonly number[]): Float32Array {
  const out = new Float32Array(order.length * H);
  if (b) order.forEach((src, k) => out.set(b.subarray(src * H, (src + 1) * H), k * H));
  return out;
}

function rnnGraph(g: Graph, c: RnnModelConfig): void {
  const { cell, vocabSize: V, embedding: E, units: H, layers: L } = c;
  const order = ORDER[cell];
  const G = order.length;
  const lstm = cell === "lstm";
  g.inputs.push(valueInfo("tokens", INT64, ["batch", "time"]));
  g.inputs.push(valueInfo("h0", FLOAT, [L, "batch", H]));
  if (lstm) g.inputs.push(valueInfo("c0", FLOAT, [L, "batch", H]));

  const emb = g.constF("embedding.weight", [V, E], g.w("embedding.weight"));
  let x = g.op("Gather", [emb, g.op("Transpose", ["tokens"], { perm: [1, 0] })]); // (T, B, E)
  const hs: string[] = [];
  const cs: string[] = [];
  for (let l = 0; l < L; l++) {
    const D = l === 0 ? E : H;
    const p = `rnn.${l}`;
    const W = g.constF(`${p}.W`, [1, G * H, D], kernel(g.w(`${p}.wx`), D, H, order));
    const R = g.constF(`${p}.R`, [1, G * H, H], kernel(g.w(`${p}.wh`), H, H, order));
    const bx = cell === "gru" ? g.w(`${p}.bx`) : g.w(`${p}.b`);
    const bh = cell === "gru" ? g.w(`${p}.bh`) : null;
    const Bias = new Float32Array(2 * G * H);
    Bias.set(bias(bx, H, order), 0);
    Bias.set(bias(bh, H, order), G * H);
    const B = g.constF(`${p}.B`, [1, 2 * G * H], Bias);
    const at = g.constI([l]);
    const h0 = g.op("Gather", ["h0", at]); // (1, B, H)
    const inputs = [x, W, R, B, "", h0];
    if (lstm) inputs.push(g.op("Gather", ["c0", at]));
    const y = `${p}.Y`;
    const outs = [y, `${p}.Y_h`, ...(lstm ? [`${p}.Y_c`] : [])];
    const attrs: Record<string, number> = { hidden_size: H };
    if (cell === "gru") attrs.linear_before_reset = 1;
    g.nodes.push(node(cell === "lstm" ? "LSTM" : cell === "gru" ? "GRU" : "RNN", inputs, outs, attrs));
    hs.push(`${p}.Y_h`);
    if (lstm) cs.push(`${p}.Y_c`);
    x = g.op("Squeeze", [y, g.constI([1])]); // (T, 1, B, H) -> (T, B, H)
  }
  g.op("Concat", hs, { axis: 0 }, "hN");
  if (lstm) g.op("Concat", cs, { axis: 0 }, "cN");
  const dense = g.op("Add", [
    g.op("MatMul", [x, g.constF("dense.weight", [H, V], g.w("dense.weight"))]),
    g.constF("dense.bias", [V], g.w("dense.bias")),
  ]); // (T, B, V)
  g.op("Transpose", [dense], { perm: [1, 0, 2] }, "logits");
  g.outputs.push(valueInfo("logits", FLOAT, ["batch", "time", V]));
  g.outputs.push(valueInfo("hN", FLOAT, [L, "batch", H]));
  if (lstm) g.outputs.push(valueInfo("cN", FLOAT, [L, "batch", H]));
}

// ---------------------------------------------------------------------------------------------------------------
// GPT

function gptGraph(g: Graph, c: GptModelConfig): void {
  const { vocabSize: V, blockSize: N, nLayer: L, nHead: nH, nEmbd: C, bias: hasBias } = c;
  const hd = C / nH;
  g.inputs.push(valueInfo("tokens", INT64, ["batch", "time"]));
  g.inputs.push(valueInfo("past_k", FLOAT, [L, "batch", nH, "past", hd]));
  g.inputs.push(valueInfo("past_v", FLOAT, [L, "batch", nH, "past", hd]));
  const param = (name: string, dims: number[]) => g.constF(name, dims, g.w(name));
  const linear = (x: string, w: string, b: string, din: number, dout: number) => {
    const y = g.op("MatMul", [x, param(w, [din, dout])]);
    return hasBias ? g.op("Add", [y, param(b, [dout])]) : y;
  };
  const norm = (x: string, p: string) =>
    g.op("LayerNormalization", [x, param(`${p}.gamma`, [C]), ...(hasBias ? [param(`${p}.beta`, [C])] : [])], {
      epsilon: { float: 1e-5 },
    });
  const scalar = (name: string, v: number) => g.constF(name, [], Float32Array.of(v));
  const dim = (input: string, axis: number) =>
    g.op("Slice", [g.op("Shape", [input]), g.constI([axis]), g.constI([axis + 1])]); // (1,) int64

  // The new tokens sit at positions P .. E-1 (P cached, E = P + T); they see the causal mask's rows P .. E-1,
  // columns 0 .. E-1.
  const P1 = dim("past_k", 3);
  const E1 = g.op("Add", [P1, dim("tokens", 1)]);
  const [P, E] = [P1, E1].map((d) => g.op("Squeeze", [d, g.constI([0])]));
  const pos = g.op("Range", [P, E, g.constI(1)]); // (T,)
  const mask = new Float32Array(N * N);
  for (let i = 0; i < N; i++) for (let j = i + 1; j < N; j++) mask[i * N + j] = -Infinity;
  const starts = g.op("Concat", [P1, g.constI([0])], { axis: 0 });
  const ends = g.op("Concat", [E1, E1], { axis: 0 });
  const causal = g.op("Slice", [g.constF("causal_mask", [N, N], mask), starts, ends]); // (T, E)

  let x = g.op("Add", [g.op("Gather", [param("wte", [V, C]), "tokens"]), g.op("Gather", [param("wpe", [N, C]), pos])]);
  const heads = g.constI([0, 0, nH, hd]);
  const joined = g.constI([0, 0, C]);
  const split = g.constI([C, C, C]);
  const scale = scalar("attn_scale", 1 / Math.sqrt(hd));
  const half = scalar("half", 0.5);
  const one = scalar("one", 1);
  const cube = scalar("gelu_c", 0.044715);
  const root = scalar("gelu_s", Math.sqrt(2 / Math.PI));
  const presentK: string[] = [];
  const presentV: string[] = [];
  for (let l = 0; l < L; l++) {
    const p = `h.${l}`;
    // attention: (B, T, C) -> q, k, v (B, nH, T, hd); keys and values after the cached ones (B, nH, E, hd);
    // softmax(q kᵀ / √hd + mask) v -> (B, T, C)
    const qkv = linear(norm(x, `${p}.ln1`), `${p}.attn.wqkv`, `${p}.attn.bqkv`, C, 3 * C);
    const [q, k, v] = [0, 1, 2].map((i) => `${p}.${"qkv"[i]}`);
    g.nodes.push(node("Split", [qkv, split], [q, k, v], { axis: 2 }));
    const perHead = (t: string) => g.op("Transpose", [g.op("Reshape", [t, heads])], { perm: [0, 2, 1, 3] });
    const at = g.constI(l);
    const K = g.op("Concat", [g.op("Gather", ["past_k", at]), perHead(k)], { axis: 2 });
    const Vv = g.op("Concat", [g.op("Gather", ["past_v", at]), perHead(v)], { axis: 2 });
    presentK.push(g.op("Unsqueeze", [K, g.constI([0])]));
    presentV.push(g.op("Unsqueeze", [Vv, g.constI([0])]));
    const kT = g.op("Transpose", [K], { perm: [0, 1, 3, 2] });
    const scores = g.op("Mul", [g.op("MatMul", [perHead(q), kT]), scale]); // (B, nH, T, E)
    const att = g.op("Softmax", [g.op("Add", [scores, causal])], { axis: 3 });
    const y = g.op("Reshape", [g.op("Transpose", [g.op("MatMul", [att, Vv])], { perm: [0, 2, 1, 3] }), joined]);
    x = g.op("Add", [x, linear(y, `${p}.attn.wo`, `${p}.attn.bo`, C, C)]);
    // MLP with GPT-2's tanh GELU: 0.5 u (1 + tanh(√(2/π) (u + 0.044715 u³)))
    const u = linear(norm(x, `${p}.ln2`), `${p}.mlp.wfc`, `${p}.mlp.bfc`, C, 4 * C);
    const u3 = g.op("Mul", [g.op("Mul", [g.op("Mul", [u, u]), u]), cube]);
    const t = g.op("Tanh", [g.op("Mul", [g.op("Add", [u, u3]), root])]);
    const gelu = g.op("Mul", [g.op("Mul", [u, half]), g.op("Add", [t, one])]);
    x = g.op("Add", [x, linear(gelu, `${p}.mlp.wproj`, `${p}.mlp.bproj`, 4 * C, C)]);
  }
  g.op("MatMul", [norm(x, "lnf"), param("head.weight", [C, V])], {}, "logits");
  g.op("Concat", presentK, { axis: 0 }, "present_k");
  g.op("Concat", presentV, { axis: 0 }, "present_v");
  g.outputs.push(valueInfo("logits", FLOAT, ["batch", "time", V]));
  g.outputs.push(valueInfo("present_k", FLOAT, [L, "batch", nH, "total", hd]));
  g.outputs.push(valueInfo("present_v", FLOAT, [L, "batch", nH, "total", hd]));
}
