// Generation of a recurrent model at batch 1, a burst of n tokens in ONE dispatch of one workgroup (Backend.rnnBurst).
//
// The step-by-step route (src/sample/generate.ts: sampleTokens, then the model's stepFrom) encodes ~11 dispatches and
// a few copies per token for a 2-layer model; at batch 1 each does a few microseconds of work and waits a launch
// for it, so generation is bound by launches (5,966 characters/s for an LSTM 256 on an H200, stop 13). Here one
// workgroup of 256 threads walks the whole burst itself: for each token it draws the next id from the logits (the
// sampleRows kernel's code and order of operations), reads that id's embedding row, runs every layer's step (its
// input projection and recurrent product, then the gate math, a thread per unit), then the dense layer's logits.
// One workgroup needs no barrier across the GPU; the price is that one core does the work: the weights are read
// once per token from memory (1.4 MB for an LSTM 256 with embedding 64, in the L2 cache of any discrete GPU).
//
// Buffers: W, the weights packed one after another (burstLayout), and S, the state: h of every layer, c of every
// LSTM layer, then the logits; both are made once per generation (src/sample/generate.ts). The products add in k
// order and the biases after them, as the matmul and step kernels do: the same values within float rounding.
//
// Legend: L layers, E embedding width, H units, G gate width (4H LSTM, 3H GRU, H RNN), V vocabulary, D a layer's
// input width (E, then H).

import type { BurstShape, RnnBurst } from "../../../backend.js";
import { CharlmError } from "../../../../util/errors.js";
import { envSetting, fbits, type GpuRuntime, type GpuStorage } from "../runtime.js";
import { drawCode } from "./rows.js";

type BurstCell = BurstShape["cell"];

/** Where each weight sits in the packed buffer (float offsets), and the sizes of both buffers. */
export interface BurstLayout {
  /** (V, E) embedding table. */
  embedding: number;
  /** Per layer: wx (D, G), wh (H, G), b (G; GRU: bx), bh (G; GRU only, else -1), D. */
  layers: { wx: number; wh: number; b: number; bh: number; D: number }[];
  /** (H, V) dense weight and (V) bias. */
  dense: number;
  denseBias: number;
  /** Floats of W. */
  weights: number;
  /** Floats of S: h (L, H), c (L, H) for LSTM, logits (V). */
  state: number;
  /** Offsets in S. */
  c: number;
  logits: number;
}

const gatesOf = (cell: BurstCell): number => (cell === "lstm" ? 4 : cell === "gru" ? 3 : 1);

/**
 * The packed order: embedding, then per layer wx, wh, b (GRU: bx, bh), then the dense weight and bias; the model
 * packs its tensors in this order (RnnModel.burstWeights).
 */
export function burstLayout(s: BurstShape): BurstLayout {
  const G = gatesOf(s.cell) * s.H;
  let at = s.V * s.E;
  const layers: BurstLayout["layers"] = [];
  for (let l = 0; l < s.L; l++) {
    const D = l === 0 ? s.E : s.H;
    const wx = at;
    const wh = wx + D * G;
    const b = wh + s.H * G;
    const bh = s.cell === "gru" ? b + G : -1;
    at = b + G * (s.cell === "gru" ? 2 : 1);
    layers.push({ wx, wh, b, bh, D });
  }
  const dense = at;
  const denseBias = dense + s.H * s.V;
  const c = s.L * s.H;
  const logits = c + (s.cell === "lstm" ? s.L * s.H : 0);
  return { embedding: 0, layers, dense, denseBias, weights: denseBias + s.V, state: logits + s.V, c, logits };
}

/**
 * Weight bytes one dispatch may read (its tokens times the model's weights): a long dispatch holds the GPU, and
 * operating systems and browsers reset a GPU whose work runs past a limit (two seconds on Windows). 64 MiB is a few
 * milliseconds for one core of a discrete GPU; W1's 1.4 MB of weights take 47 tokens a dispatch, W2's 13.3 MB 5.
 */
export const BURST_BYTES = 64 * 2 ** 20;

/** Tokens of a burst per dispatch for a model of `weightBytes`: as many as `budget` covers, at least one. */
export function tokensPerDispatch(weightBytes: number, budget = BURST_BYTES): number {
  return Math.max(1, Math.floor(budget / weightBytes));
}

/** Bytes of workgroup memory the kernel takes: the layer input, the previous h, the reduction's 256 parts, the id. */
export function burstWorkgroupBytes(s: BurstShape): number {
  return 4 * (Math.max(s.E, s.H) + s.H + 256 + 1);
}

/**
 * n tokens: for k < n, ids[idsOff + k] = the id drawn from S's logits with u[uOff + k], then S advanced by that
 * token (every layer's h and c, then the logits). S holds the state after the n-th token when it ends.
 */
export function rnnBurst(rt: GpuRuntime, a: RnnBurst<GpuStorage>): void {
  const { shape: s, how } = a;
  const { V } = s;
  const lay = burstLayout(s);
  if (a.weights.length !== lay.weights || a.state.length !== lay.state) {
    throw new CharlmError(
      `rnnBurst: weights of ${a.weights.length} and state of ${a.state.length} floats; ` +
        `a ${s.L} x ${s.cell} ${s.H} with embedding ${s.E} and vocabulary ${V} packs ${lay.weights} and ${lay.state}`,
    );
  }
  if (burstWorkgroupBytes(s) > rt.device.limits.maxComputeWorkgroupStorageSize) {
    throw new CharlmError(`rnnBurst: ${s.H} units with embedding ${s.E} need more workgroup memory than the GPU has`);
  }
  const filter = (how.topK > 0 && how.topK < V) || how.topP < 1;
  const w = rt.scratch(V);
  const order = filter ? rt.scratch(V) : null;
  const key = `rnnBurst.${s.cell}.L${s.L}.E${s.E}.H${s.H}.V${V}.${filter}`;
  const writes = order ? [a.state, a.ids, w, order] : [a.state, a.ids, w];
  // a dispatch reads the weights once a token: a few tokens each where they are large (see tokensPerDispatch)
  const per = tokensPerDispatch(lay.weights * 4, Number(envSetting("CHARLM_WEBGPU_BURST_BYTES")) || BURST_BYTES);
  for (let k0 = 0; k0 < a.n; k0 += per) {
    const n = Math.min(per, a.n - k0);
    const params = [n, a.uOff + k0, a.idsOff + k0, fbits(how.temperature), how.topK, fbits(how.topP)];
    rt.run(key, () => burstCode(s, filter), [a.weights, a.u], writes, params, [1]);
  }
  rt.free(w);
  if (order) rt.free(order);
}

/** The WGSL of the burst kernel for shape `s` (offsets and sizes are constants of the code). */
function burstCode(s: BurstShape, filter: boolean): string {
  const lay = burstLayout(s);
  const { E, H, V } = s;
  const G = gatesOf(s.cell) * H;
  const layers = lay.layers.map((l, i) => layerCode(s, l, i, lay, G)).join("\n");
  const draw = drawCode(filter, {
    x: (j) => `S[LOGITS + ${j}]`,
    w: (j) => `w[${j}]`,
    order: (q) => `order[${q}]`,
    temperature: "pf(3u)",
    topK: "pu(4u)",
    topP: "pf(5u)",
    u: "u[pu(1u) + k]",
  });
  return /* wgsl */ `
@group(0) @binding(1) var<storage, read> W: array<f32>;
@group(0) @binding(2) var<storage, read> u: array<f32>;
@group(0) @binding(3) var<storage, read_write> S: array<f32>;
@group(0) @binding(4) var<storage, read_write> ids: array<f32>;
@group(0) @binding(5) var<storage, read_write> w: array<f32>;
${filter ? "@group(0) @binding(6) var<storage, read_write> order: array<u32>;" : ""}
const V = ${V}u;
const H = ${H}u;
const LOGITS = ${lay.logits}u;
var<workgroup> vin: array<f32, ${Math.max(E, H)}>;
var<workgroup> hp: array<f32, ${H}>;
var<workgroup> part: array<f32, 256>;
var<workgroup> picked: u32;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
  let t = lid.x;
  for (var k = 0u; k < pu(0u); k++) {
    // ---- the next id, drawn from the logits as sampleRows draws it (rows.ts)
${draw.weights}
    if (t == 0u) {
${draw.pick}
      ids[pu(2u) + k] = f32(pick);
      picked = pick;
    }
    workgroupBarrier();
    let id = picked;
    // ---- its embedding row, the first layer's input
    for (var i = t; i < ${E}u; i += 256u) { vin[i] = W[${lay.embedding}u + id * ${E}u + i]; }
${layers}
    // ---- the logits: h W + b, each a sum in k order, then the bias
    for (var v = t; v < V; v += 256u) {
      var acc = 0.0;
      for (var q = 0u; q < H; q++) { acc += vin[q] * W[${lay.dense}u + q * V + v]; }
      S[LOGITS + v] = acc + W[${lay.denseBias}u + v];
    }
    storageBarrier();
    workgroupBarrier();
  }
}`;
}

/** One layer's step: h (and c) of layer `i` in S advanced from the input in `vin`, which then holds the new h. */
function layerCode(s: BurstShape, l: BurstLayout["layers"][number], i: number, lay: BurstLayout, G: number): string {
  const { H } = s;
  const n = gatesOf(s.cell);
  const h = i * H; // this layer's h in S
  const gate = (a: number, src: string, at: string) => `${src}${a} += v * W[${at} + ${a * H}u];`;
  const sums = (src: string, base: string, len: string, from: string) => `
      for (var q = 0u; q < ${len}; q++) {
        let v = ${from}[q];
        let r = ${base}u + q * ${G}u + j;
        ${Array.from({ length: n }, (_, a) => gate(a, src, "r")).join(" ")}
      }`;
  const decl = (p: string) => Array.from({ length: n }, (_, a) => `var ${p}${a} = 0.0;`).join(" ");
  const bias = Array.from({ length: n }, (_, a) => `x${a} += W[${l.b}u + ${a * H}u + j];`).join(" ");
  let cellMath: string;
  if (s.cell === "lstm") {
    const c = lay.c + i * H;
    cellMath = /* wgsl */ `
      let ig = sigmoid_(x0 + a0);
      let fg = sigmoid_(x1 + a1);
      let gg = tanh_(x2 + a2);
      let og = sigmoid_(x3 + a3);
      let c = fg * S[${c}u + j] + ig * gg;
      S[${c}u + j] = c;
      S[${h}u + j] = og * tanh_(c);`;
  } else if (s.cell === "gru") {
    cellMath = /* wgsl */ `
      let hnv = a2 + W[${l.bh}u + ${2 * H}u + j];
      let rg = sigmoid_(x0 + (a0 + W[${l.bh}u + j]));
      let zg = sigmoid_(x1 + (a1 + W[${l.bh}u + ${H}u + j]));
      let ng = tanh_(x2 + rg * hnv);
      S[${h}u + j] = (1.0 - zg) * ng + zg * hp[j];`;
  } else {
    cellMath = `
      S[${h}u + j] = tanh_(x0 + a0);`;
  }
  return /* wgsl */ `
    // ---- layer ${i}
    for (var q = t; q < H; q += 256u) { hp[q] = S[${h}u + q]; }
    workgroupBarrier();
    for (var j = t; j < H; j += 256u) {
      ${decl("x")}${sums("x", String(l.wx), `${l.D}u`, "vin")}
      ${bias}
      ${decl("a")}${sums("a", String(l.wh), "H", "hp")}${cellMath}
    }
    storageBarrier();
    workgroupBarrier();
    for (var q = t; q < H; q += 256u) { vin[q] = S[${h}u + q]; }
    workgroupBarrier();`;
}
