// Generation of a recurrent model at batch 1, a burst of n tokens in ONE dispatch of one workgroup (a few where the
// weights are large: tokensPerDispatch) (Backend.rnnBurst), or in the wide route below (a dispatch per layer a
// token, over many workgroups), which is the default since stop 23: it was the faster on the H200 for both models.
//
// The step-by-step route (src/sample/generate.ts: sampleTokens, then the model's stepFrom) encodes ~11 dispatches and
// a few copies per token for a 2-layer model; at batch 1 each does a few microseconds of work and waits a launch
// for it, so generation is bound by launches (5,966 characters/s for an LSTM 256 on an H200, stop 13). Here one
// workgroup of 256 threads walks the whole burst itself: for each token it draws the next id from the logits (the
// sampleRows kernel's code and order of operations), reads that id's embedding row, runs every layer's step (its
// input projection and recurrent product, then the gate math, H / 256 units a thread), then the dense layer's logits.
// One workgroup needs no barrier across the GPU; the price is that one core does the work: the weights are read
// once per token from memory (1.4 MB for an LSTM 256 with embedding 64, in the L2 cache of any discrete GPU).
//
// Buffers: W, the weights packed one after another (burstLayout), and S, the state: h of every layer, c of every
// LSTM layer, then the logits; both are made once per generation (src/sample/generate.ts). The layers' products add
// in k order and their biases after them, as the matmul and step kernels do; the logits of a small vocabulary add a
// few parts along k in order (denseCode): the same values within float rounding.
//
// One core has to hide the memory's latency by itself: a thread takes H / 256 units, and each walks k 4 values at a
// time, so that 4 x units x gates loads are in flight (an LSTM 512's thread: 32); with one value of k and one unit at
// a time it would have 4, and wait for memory at every step.
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

/** How generation runs on this GPU, as `charlm tune-gpu` measured it (tuned-kernels.ts); null: not measured. */
export const BURST_ROUTES = ["fused", "wide", "steps"] as const;
export type BurstRoute = (typeof BURST_ROUTES)[number];
/** How the CLI names each route. */
export const ROUTE_NAMES: Record<BurstRoute, string> = {
  fused: "in one kernel a burst",
  wide: "in a kernel per layer a character",
  steps: "step by step",
};
let route: BurstRoute | null = null;

/** Set the measured route (null: none, the default: bursts in one kernel); returns the one before. */
export function useBurstRoute(r: BurstRoute | null): BurstRoute | null {
  const before = route;
  route = r;
  return before;
}

export function burstRoute(): BurstRoute | null {
  return route;
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
  const filter = (how.topK > 0 && how.topK < V) || how.topP < 1;
  // the wide route (the default since stop 23) unless one kernel a burst is asked for or measured faster here; the
  // other route where the chosen one's workgroup memory cannot hold the model
  const limit = rt.device.limits.maxComputeWorkgroupStorageSize;
  const forced = envSetting("CHARLM_WEBGPU_BURST");
  if (forced && !["wide", "fused", "1", "0"].includes(forced)) {
    throw new CharlmError(`CHARLM_WEBGPU_BURST is "${forced}"; use wide, fused or 0, or unset it (wide)`);
  }
  const chosen = a.wide ?? (forced === "wide" || (forced !== "fused" && route !== "fused"));
  const fits = { wide: wideWorkgroupBytes(s) <= limit, fused: burstWorkgroupBytes(s) <= limit };
  if ((chosen && fits.wide) || !fits.fused) {
    if (!fits.wide) {
      throw new CharlmError(`rnnBurst: ${s.H} units need more workgroup memory than the GPU has`);
    }
    return rnnBurstWide(rt, a, lay, filter);
  }
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

/**
 * Both burst kernels' draw of token k from the logits in S (sampleRows' code): the temperature, top-k and top-p in
 * params 3-5, the uniform draw at u[params[1] + k].
 */
function burstDraw(filter: boolean): ReturnType<typeof drawCode> {
  return drawCode(filter, {
    x: (j) => `S[LOGITS + ${j}]`,
    w: (j) => `w[${j}]`,
    order: (q) => `order[${q}]`,
    temperature: "pf(3u)",
    topK: "pu(4u)",
    topP: "pf(5u)",
    u: "u[pu(1u) + k]",
  });
}

/** The WGSL of the burst kernel for shape `s` (offsets and sizes are constants of the code). */
function burstCode(s: BurstShape, filter: boolean): string {
  const lay = burstLayout(s);
  const { E, H, V } = s;
  const G = gatesOf(s.cell) * H;
  const layers = lay.layers.map((l, i) => layerCode(s, l, i, lay, G)).join("\n");
  const draw = burstDraw(filter);
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
${denseCode(s, lay)}
    storageBarrier();
    workgroupBarrier();
  }
}`;
}

/** Products walk k 4 at a time (each thread then has 4 x units x gates loads in flight: one core must hide latency). */
const UNROLL = 4;

/** A loop over q from `from` to `to` running step(q), UNROLL values of q at a time, then the rest one by one. */
function kLoop(from: string, to: string, step: (q: string) => string, sep = "\n          "): string {
  const unrolled = Array.from({ length: UNROLL }, (_, r) => step(`q + ${r}u`)).join(sep);
  return `
        var q = ${from};
        for (; q + ${UNROLL}u <= ${to}; q += ${UNROLL}u) {
          ${unrolled}
        }
        for (; q < ${to}; q++) { ${step("q")} }`;
}

/**
 * The products of one value of k (q) of a layer's input v = `from(q)` with the weights (rows of G from `base`) of
 * the thread's units in columns `cols` (WGSL expressions), added to acc(gate, unit).
 */
function gateSums(
  n: number,
  H: number,
  G: number,
  acc: (a: number, u: number) => string,
  base: number,
  cols: string[],
  from: (q: string) => string,
) {
  return (q: string): string => {
    const lines = [`{ let v = ${from(q)}; let r = ${base}u + (${q}) * ${G}u;`];
    cols.forEach((c, u) => {
      for (let a = 0; a < n; a++) lines.push(`${acc(a, u)} += v * W[r + ${a * H}u + ${c}];`);
    });
    return lines.join(" ") + " }";
  };
}

/**
 * `acc(u, a) += v * W[...]` over k < len for every unit u and gate a of a thread, v = from[k]: the loads of UNROLL
 * values of k issued together, each sum still in k order.
 */
function sumsCode(n: number, U: number, G: number, H: number, acc: string, base: number, len: string, from: string) {
  const cols = Array.from({ length: U }, (_, u) => `c${u}`);
  const sums = gateSums(
    n,
    H,
    G,
    (a, u) => `${acc}${a}_${u}`,
    base,
    cols,
    (q) => `${from}[${q}]`,
  );
  return `
      {${kLoop("0u", len, sums)}
      }`;
}

/**
 * The gate math of a recurrent cell for unit `j` (WGSL): x(g) the input's sums of gate g with their bias, a(g) the
 * recurrent ones; the LSTM's cell state at `c` (read and written), the new h written to `h`, the GRU's previous h
 * read from `hPrev`, its recurrent biases from the layer's `bh`.
 */
function cellCode(
  s: BurstShape,
  l: BurstLayout["layers"][number],
  at: { x: (g: number) => string; a: (g: number) => string; j: string; c: string; h: string; hPrev: string },
): string {
  const { x, a, j } = at;
  const H = s.H;
  if (s.cell === "lstm") {
    return /* wgsl */ `
        let ig = sigmoid_(${x(0)} + ${a(0)});
        let fg = sigmoid_(${x(1)} + ${a(1)});
        let gg = tanh_(${x(2)} + ${a(2)});
        let og = sigmoid_(${x(3)} + ${a(3)});
        let cn = fg * ${at.c} + ig * gg;
        ${at.c} = cn;
        ${at.h} = og * tanh_(cn);`;
  }
  if (s.cell === "gru") {
    return /* wgsl */ `
        let hnv = ${a(2)} + W[${l.bh}u + ${2 * H}u + ${j}];
        let rg = sigmoid_(${x(0)} + (${a(0)} + W[${l.bh}u + ${j}]));
        let zg = sigmoid_(${x(1)} + (${a(1)} + W[${l.bh}u + ${H}u + ${j}]));
        let ng = tanh_(${x(2)} + rg * hnv);
        ${at.h} = (1.0 - zg) * ng + zg * ${at.hPrev};`;
  }
  return `
        ${at.h} = tanh_(${x(0)} + ${a(0)});`;
}

/**
 * One layer's step: h (and c) of layer `i` in S advanced from the input in `vin`, which then holds the new h. A
 * thread takes units t, t + 256, ... (U of them, the last ones past H only where 256 does not divide H: their
 * loads read the last unit's column and their results are dropped).
 */
function layerCode(s: BurstShape, l: BurstLayout["layers"][number], i: number, lay: BurstLayout, G: number): string {
  const { H } = s;
  const n = gatesOf(s.cell);
  const U = Math.ceil(H / 256);
  const h = i * H; // this layer's h in S
  const units = Array.from({ length: U }, (_, u) => u);
  const decl = (p: string) =>
    units.map((u) => Array.from({ length: n }, (_, a) => `var ${p}${a}_${u} = 0.0;`).join(" ")).join(" ");
  const cols = units.map((u) => `let j${u} = t + ${u * 256}u; let c${u} = min(j${u}, H - 1u);`).join(" ");
  const bias = units
    .map((u) => Array.from({ length: n }, (_, a) => `x${a}_${u} += W[${l.b}u + ${a * H}u + c${u}];`).join(" "))
    .join(" ");
  const cellMath = (u: number): string => {
    const j = `j${u}`;
    const math = cellCode(s, l, {
      x: (g) => `x${g}_${u}`,
      a: (g) => `a${g}_${u}`,
      j,
      c: `S[${lay.c + i * H}u + ${j}]`,
      h: `S[${h}u + ${j}]`,
      hPrev: `hp[${j}]`,
    });
    return (u + 1) * 256 > H ? `\n      if (${j} < H) {${math}\n      }` : `\n      {${math}\n      }`;
  };
  return /* wgsl */ `
    // ---- layer ${i}
    for (var q = t; q < H; q += 256u) { hp[q] = S[${h}u + q]; }
    workgroupBarrier();
    {
      ${cols}
      ${decl("x")}${sumsCode(n, U, G, H, "x", l.wx, `${l.D}u`, "vin")}
      ${bias}
      ${decl("a")}${sumsCode(n, U, G, H, "a", l.wh, "H", "hp")}${units.map(cellMath).join("")}
    }
    storageBarrier();
    workgroupBarrier();
    for (var q = t; q < H; q += 256u) { vin[q] = S[${h}u + q]; }
    workgroupBarrier();`;
}

/**
 * The logits, h W + b. With fewer than 256 outputs (a character vocabulary) each output's sum is cut into P parts
 * along k, a thread each (65 outputs: 3 parts of H / 3), added in part order; else a thread per output. The bias
 * comes last, as in the matmul kernels.
 */
function denseCode(s: BurstShape, lay: BurstLayout): string {
  const { H, V } = s;
  const P = Math.max(1, Math.floor(256 / V));
  const chunk = Math.ceil(H / P);
  const dot = (from: string, to: string, v: string) =>
    kLoop(from, to, (q) => `acc += vin[${q}] * W[${lay.dense}u + (${q}) * V + ${v}];`, " ");
  if (P === 1) {
    return /* wgsl */ `
    // ---- the logits: a thread per output, its sum in k order, then the bias
    for (var v = t; v < V; v += 256u) {
      var acc = 0.0;${dot("0u", "H", "v")}
      S[LOGITS + v] = acc + W[${lay.denseBias}u + v];
    }`;
  }
  return /* wgsl */ `
    // ---- the logits: ${P} threads per output, each a part of ${chunk} values of k; the parts in order, then the bias
    {
      let v = t / ${P}u;
      var acc = 0.0;
      if (v < V) {
        let k1 = min((t % ${P}u + 1u) * ${chunk}u, H);${dot(`(t % ${P}u) * ${chunk}u`, "k1", "v")}
      }
      part[t] = acc;
    }
    workgroupBarrier();
    if (t < V) {
      var sum = part[t * ${P}u];
      for (var p = 1u; p < ${P}u; p++) { sum += part[t * ${P}u + p]; }
      S[LOGITS + t] = sum + W[${lay.denseBias}u + t];
    }`;
}

// ---- The wide route: a kernel per layer a token, over many workgroups
//
// One workgroup reads every weight once a token, through one core. For a model whose weights are large (W2's 13.3
// MB) that can be slower than dispatches that spread each layer over the GPU, whose launches then cost more than
// their work. Here a token takes L + 1 dispatches, all in one pass with no copy between them: a dispatch per layer
// (WIDE_UNITS units a workgroup, each unit's sums cut in WIDE_SLICES slices along k, a thread each, added in slice
// order; the first layer reads the embedding row of the token drawn just before), then one workgroup that makes
// the logits from the last layer's new h and draws the next token from them (the single-workgroup kernel's code for
// both). A layer's step reads every unit's previous h while other workgroups write theirs, so h lives in two
// scratch buffers that swap roles each token; the state's h is copied in before the burst and back after it.
// The default since stop 23: on the H200 (bench/results/h200-stop23/gpu-gen.txt) W1 drew 11,896 char/s this way
// against 5,595 in one kernel a burst and 3,326 step by step, W2 5,762 against 1,851 and 2,209. One kernel a burst:
// CHARLM_WEBGPU_BURST=fused or GenerateOptions.wide = false; `charlm tune-gpu` times the routes on the GPU at hand.

/** Units of one layer a workgroup takes in the wide route; its 256 threads cut each unit's sums along k. */
export const WIDE_UNITS = 16;
const WIDE_SLICES = 256 / WIDE_UNITS;

/** Slice z's share of `len` values of k, UNROLL at a time, into acc{a} for the thread's unit (its column c). */
function sliceSums(
  n: number,
  H: number,
  G: number,
  acc: string,
  base: number,
  len: number,
  from: (q: string) => string,
) {
  const chunk = Math.ceil(len / WIDE_SLICES);
  return `
      {
        let q1 = min((z + 1u) * ${chunk}u, ${len}u);${kLoop(
          `z * ${chunk}u`,
          "q1",
          gateSums(n, H, G, (a) => `${acc}${a}`, base, ["c"], from),
        )}
      }`;
}

/** The wide route's kernel for layer `i`: hNew's layer i from hOld's and the layer's input, c in S (LSTM). */
function wideLayerCode(s: BurstShape, l: BurstLayout["layers"][number], i: number, lay: BurstLayout): string {
  const { H, E } = s;
  const n = gatesOf(s.cell);
  const G = n * H;
  const gates = Array.from({ length: n }, (_, a) => a);
  const input = (q: string) => (i === 0 ? `W[${lay.embedding}u + id * ${E}u + ${q}]` : `hNew[${(i - 1) * H}u + ${q}]`);
  const hAt = i * H;
  // the slices' sums of this unit, added in slice order; the input's sums then take the bias (as in the matmuls)
  const total = (p: string, off: number) =>
    gates
      .map(
        (a) =>
          `var ${p}${a} = part[t * ${2 * n}u + ${off + a}u];\n      ` +
          `for (var y = 1u; y < ${WIDE_SLICES}u; y++) { ${p}${a} += part[(y * ${WIDE_UNITS}u + t) * ${2 * n}u + ${off + a}u]; }`,
      )
      .join("\n      ");
  const math = cellCode(s, l, {
    x: (g) => `x${g}`,
    a: (g) => `a${g}`,
    j: "j",
    c: `S[${lay.c + i * H}u + j]`,
    h: `hNew[${hAt}u + j]`,
    hPrev: `hOld[${hAt}u + j]`,
  });
  return /* wgsl */ `
@group(0) @binding(1) var<storage, read> W: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<f32>;
@group(0) @binding(3) var<storage, read> hOld: array<f32>;
@group(0) @binding(4) var<storage, read_write> hNew: array<f32>;
${s.cell === "lstm" ? "@group(0) @binding(5) var<storage, read_write> S: array<f32>;" : ""}
const H = ${H}u;
var<workgroup> part: array<f32, ${256 * 2 * n}>; // [slice][unit][the input's sums, then the recurrent ones]

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let t = lid.x;
  let z = t / ${WIDE_UNITS}u; // the slice of k
  let j = wid.x * ${WIDE_UNITS}u + t % ${WIDE_UNITS}u; // the unit (past H: computed on the last unit's column, dropped)
  let c = min(j, H - 1u);
  let id = u32(ids[pu(0u)]);
  ${gates.map((a) => `var x${a} = 0.0; var a${a} = 0.0;`).join(" ")}
  ${sliceSums(n, H, G, "x", l.wx, l.D, input)}
  ${sliceSums(n, H, G, "a", l.wh, H, (q) => `hOld[${hAt}u + ${q}]`)}
  ${gates.map((a) => `part[t * ${2 * n}u + ${a}u] = x${a}; part[t * ${2 * n}u + ${n + a}u] = a${a};`).join(" ")}
  workgroupBarrier();
  if (z == 0u && j < H) {
      ${total("x_", 0)}
      ${total("a_", n)}
      ${gates.map((a) => `let x${a} = x_${a} + W[${l.b}u + ${a * H}u + j]; let a${a} = a_${a};`).join(" ")}
      ${math}
  }
}`;
}

/**
 * The wide route's last kernel, one workgroup: the logits from the last layer's new h (params[6] = 1), then the
 * draw of the token k = params[0] from them (params[7] = 1), as the single-workgroup kernel does both.
 */
function wideOutCode(s: BurstShape, lay: BurstLayout, filter: boolean): string {
  const { H, L } = s;
  const draw = burstDraw(filter);
  return /* wgsl */ `
@group(0) @binding(1) var<storage, read> W: array<f32>;
@group(0) @binding(2) var<storage, read> u: array<f32>;
@group(0) @binding(3) var<storage, read> hNew: array<f32>;
@group(0) @binding(4) var<storage, read_write> S: array<f32>;
@group(0) @binding(5) var<storage, read_write> ids: array<f32>;
@group(0) @binding(6) var<storage, read_write> w: array<f32>;
${filter ? "@group(0) @binding(7) var<storage, read_write> order: array<u32>;" : ""}
const V = ${s.V}u;
const H = ${H}u;
const LOGITS = ${lay.logits}u;
var<workgroup> vin: array<f32, ${H}>;
var<workgroup> part: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
  let t = lid.x;
  let k = pu(0u);
  if (pu(6u) == 1u) {
    for (var q = t; q < H; q += 256u) { vin[q] = hNew[${(L - 1) * H}u + q]; }
    workgroupBarrier();
${denseCode(s, lay)}
    storageBarrier();
    workgroupBarrier();
  }
  if (pu(7u) == 1u) {
${draw.weights}
    if (t == 0u) {
${draw.pick}
      ids[pu(2u) + k] = f32(pick);
    }
  }
}`;
}

/** Bytes of workgroup memory the wide route's kernels take at most: the logits kernel's h and parts, or a layer's sums. */
export function wideWorkgroupBytes(s: BurstShape): number {
  return 4 * Math.max(s.H + 256, 256 * 2 * gatesOf(s.cell));
}

/** rnnBurst in the wide route (see above): the same ids and state as the single-workgroup kernel, within rounding. */
function rnnBurstWide(rt: GpuRuntime, a: RnnBurst<GpuStorage>, lay: BurstLayout, filter: boolean): void {
  const { shape: s, how } = a;
  const { L, H, V } = s;
  const w = rt.scratch(V);
  const order = filter ? rt.scratch(V) : null;
  const hs = [rt.scratch(L * H), rt.scratch(L * H)];
  rt.copyBuffer(a.state.buffer, 0, hs[0].buffer, 0, L * H * 4);
  const outKey = `rnnBurstWide.out.${s.cell}.L${L}.E${s.E}.H${H}.V${V}.${filter}`; // offsets are in its code
  const outWrites = order ? [a.state, a.ids, w, order] : [a.state, a.ids, w];
  const out = (k: number, h: GpuStorage, logits: boolean, draw: boolean) =>
    rt.run(
      outKey,
      () => wideOutCode(s, lay, filter),
      [a.weights, a.u, h],
      outWrites,
      [k, a.uOff, a.idsOff, fbits(how.temperature), how.topK, fbits(how.topP), logits ? 1 : 0, draw ? 1 : 0],
      [1],
    );
  out(0, hs[0], false, true);
  for (let k = 0; k < a.n; k++) {
    const [old, now] = [hs[k % 2], hs[(k + 1) % 2]];
    lay.layers.forEach((l, i) =>
      rt.run(
        `rnnBurstWide.layer.${s.cell}.L${s.L}.E${s.E}.H${H}.V${V}.${i}`,
        () => wideLayerCode(s, l, i, lay),
        [a.weights, a.ids, old],
        s.cell === "lstm" ? [now, a.state] : [now],
        [a.idsOff + k],
        [Math.ceil(H / WIDE_UNITS)],
      ),
    );
    out(k + 1, now, true, k + 1 < a.n);
  }
  rt.copyBuffer(hs[a.n % 2].buffer, 0, a.state.buffer, 0, L * H * 4);
  for (const x of [w, ...hs]) rt.free(x);
  if (order) rt.free(order);
}
