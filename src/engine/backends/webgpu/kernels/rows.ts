// Row kernels (one thread per row of V or C values: softmax, cross-entropy, layer norm) and the embedding gather
// and its scatter-add gradient. Rows here are short (a vocabulary of ~65, channels of a few hundred), so a thread
// per row keeps the js loop's order of summation; the many rows of a batch fill the GPU. Layer norm takes a
// workgroup per row instead (normByWorkgroup), measured faster on few rows and on a training batch's many.
//
// Legend: N rows (positions), V classes, C channels, D embedding width, U distinct ids in a batch.

import { CharlmError } from "../../../../util/errors.js";
import type { Sampling } from "../../../backend.js";
import { type Buf, type GpuRuntime, envSetting, fbits } from "../runtime.js";
import { addInOrder, binary, byRow, each, reduceTo, sumAll } from "./elementwise.js";

export function softmax(rt: GpuRuntime, x: Buf, y: Buf, rows: number, V: number): void {
  const decls = /* wgsl */ `
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;`;
  const body = /* wgsl */ `
  let V = pu(1u); let o = i * V;
  var m = x[o];
  for (var j = 1u; j < V; j++) { m = max(m, x[o + j]); }
  var s = 0.0;
  for (var j = 0u; j < V; j++) { let e = exp(x[o + j] - m); y[o + j] = e; s += e; }
  for (var j = 0u; j < V; j++) { y[o + j] = y[o + j] / s; }`;
  each(rt, "softmax", decls, body, [x], [y], [rows, V]);
}

export function softmaxBackward(rt: GpuRuntime, y: Buf, g: Buf, dx: Buf, rows: number, V: number): void {
  const decls = /* wgsl */ `
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;`;
  const body = /* wgsl */ `
  let V = pu(1u); let o = i * V;
  var d = 0.0;
  for (var j = 0u; j < V; j++) { d += g[o + j] * y[o + j]; }
  for (var j = 0u; j < V; j++) { dx[o + j] = dx[o + j] + y[o + j] * (g[o + j] - d); }`;
  each(rt, "softmaxBackward", decls, body, [y, g], [dx], [rows, V]);
}

function checkIds(what: string, ids: Int32Array, n: number, limit: number): void {
  if (ids.length < n) throw new CharlmError(`${what}: ${ids.length} ids for ${n} rows`);
  for (let i = 0; i < n; i++) {
    const t = ids[i];
    if (!(t >= 0 && t < limit)) throw new CharlmError(`${what}: id ${t} at ${i} is outside [0, ${limit})`);
  }
}

export function crossEntropy(
  rt: GpuRuntime,
  logits: Buf,
  targets: Int32Array,
  loss: Buf,
  probs: Buf | null,
  N: number,
  V: number,
): void {
  checkIds("crossEntropy targets", targets, N, V);
  // Per row: l_n = log Σ e^(x - max) + max - x[t_n] (and the softmax row when wanted); then the mean, in one
  // workgroup (a fixed order: deterministic).
  const rowLoss = rt.scratch(N);
  const decls = /* wgsl */ `
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> t: array<i32>;
@group(0) @binding(3) var<storage, read_write> l: array<f32>;
${probs ? "@group(0) @binding(4) var<storage, read_write> p: array<f32>;" : ""}`;
  const body = /* wgsl */ `
  let V = pu(1u); let o = i * V;
  var m = x[o];
  for (var j = 1u; j < V; j++) { m = max(m, x[o + j]); }
  var s = 0.0;
  for (var j = 0u; j < V; j++) { s += exp(x[o + j] - m); }
  l[i] = log(s) + m - x[o + u32(t[i])];
  ${probs ? "for (var j = 0u; j < V; j++) { p[o + j] = exp(x[o + j] - m) / s; }" : ""}`;
  const t = rt.upload(targets.subarray(0, N));
  each(rt, `crossEntropy.${probs !== null}`, decls, body, [logits, t], probs ? [rowLoss, probs] : [rowLoss], [N, V]);
  sumAll(rt, rowLoss, N, loss, 0, false, N);
  rt.free(rowLoss);
}

export function crossEntropyBackward(
  rt: GpuRuntime,
  probs: Buf,
  targets: Int32Array,
  g: Buf,
  dx: Buf,
  N: number,
  V: number,
): void {
  checkIds("crossEntropyBackward targets", targets, N, V);
  const decls = /* wgsl */ `
@group(0) @binding(1) var<storage, read> p: array<f32>;
@group(0) @binding(2) var<storage, read> t: array<i32>;
@group(0) @binding(3) var<storage, read> g: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;`;
  const body = /* wgsl */ `
  let V = pu(1u); let n = i / V; let j = i % V;
  let onehot = select(0.0, 1.0, u32(t[n]) == j);
  dx[i] = dx[i] + (g[0] / f32(pu(2u))) * (p[i] - onehot);`;
  const t = rt.upload(targets.subarray(0, N));
  each(rt, "crossEntropyBackward", decls, body, [probs, t, g], [dx], [N * V, V, N]);
}

/** Threads per workgroup of layerNorm's workgroup-per-row kernel (a power of two: its trees halve it). */
const NORM_WG = 64;

/**
 * Whether layerNorm (and its backward's dx) takes a workgroup per row, whose threads read neighbouring values of one
 * row and add them in trees (the same order every run), rather than a thread per row: the default for every row
 * count since stop 23. Stop 18 made it the default for a generated character's rows (up to 2,048); on the H200 at
 * stop 23 (bench/results/h200-stop23, three rounds in turn) the GPT's training steps (16,384 rows a layer) ran at
 * 232.2 k char/s with it against 202.4 k with a thread per row, and at 252.9 k with the attention's score rows a
 * workgroup each too (softmaxByWorkgroup). CHARLM_WEBGPU_LAYERNORM=thread takes a thread per row.
 */
export function normByWorkgroup(): boolean {
  const forced = envSetting("CHARLM_WEBGPU_LAYERNORM");
  if (forced && forced !== "row" && forced !== "thread") {
    throw new CharlmError(`CHARLM_WEBGPU_LAYERNORM is "${forced}"; use row or thread, or unset it`);
  }
  return forced !== "thread";
}

export function layerNorm(
  rt: GpuRuntime,
  x: Buf,
  gamma: Buf,
  beta: Buf,
  y: Buf,
  xhat: Buf,
  rstd: Buf,
  rows: number,
  C: number,
  eps: number,
): void {
  const decls = /* wgsl */ `
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> xh: array<f32>;
@group(0) @binding(6) var<storage, read_write> rs: array<f32>;`;
  if (normByWorkgroup()) {
    // A workgroup per row: the row's sum and its squared deviations' sum as trees over the threads (each thread's
    // values j = lid, lid + NORM_WG, ... in order first). A thread per row walks C values three times: at batch 1
    // one thread of one workgroup does the whole op.
    const body = /* wgsl */ `
  let C = pu(1u); let o = i * C;
  var s = 0.0;
  for (var j = lid; j < C; j += ${NORM_WG}u) { s += x[o + j]; }
  let mu = sumTree(lid, s) / f32(C);
  var v = 0.0;
  for (var j = lid; j < C; j += ${NORM_WG}u) { let d = x[o + j] - mu; v += d * d; }
  let r = 1.0 / sqrt(sumTree(lid, v) / f32(C) + pf(2u));
  if (lid == 0u) { rs[i] = r; }
  for (var j = lid; j < C; j += ${NORM_WG}u) {
    let h = (x[o + j] - mu) * r;
    xh[o + j] = h;
    y[o + j] = gamma[j] * h + beta[j];
  }`;
    byRow(rt, "layerNorm.row", decls, body, [x, gamma, beta], [y, xhat, rstd], [rows, C, fbits(eps)], NORM_WG);
    return;
  }
  const body = /* wgsl */ `
  let C = pu(1u); let o = i * C;
  var mu = 0.0;
  for (var j = 0u; j < C; j++) { mu += x[o + j]; }
  mu = mu / f32(C);
  var v = 0.0;
  for (var j = 0u; j < C; j++) { let d = x[o + j] - mu; v += d * d; }
  v = v / f32(C);
  let r = 1.0 / sqrt(v + pf(2u));
  rs[i] = r;
  for (var j = 0u; j < C; j++) {
    let h = (x[o + j] - mu) * r;
    xh[o + j] = h;
    y[o + j] = gamma[j] * h + beta[j];
  }`;
  each(rt, "layerNorm", decls, body, [x, gamma, beta], [y, xhat, rstd], [rows, C, fbits(eps)]);
}

export function layerNormBackward(
  rt: GpuRuntime,
  g: Buf,
  gamma: Buf,
  xhat: Buf,
  rstd: Buf,
  dx: Buf | null,
  dgamma: Buf | null,
  dbeta: Buf | null,
  rows: number,
  C: number,
): void {
  if (dx) {
    // per row: d = g γ; dx += r (d - mean(d) - x̂ mean(d x̂))
    const decls = /* wgsl */ `
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> xh: array<f32>;
@group(0) @binding(4) var<storage, read> rs: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;`;
    if (normByWorkgroup()) {
      // a workgroup per row, as the forward: both means as trees over the threads
      const body = /* wgsl */ `
  let C = pu(1u); let o = i * C;
  var md = 0.0; var mdx = 0.0;
  for (var j = lid; j < C; j += ${NORM_WG}u) { let d = g[o + j] * gamma[j]; md += d; mdx += d * xh[o + j]; }
  md = sumTree(lid, md) / f32(C);
  mdx = sumTree(lid, mdx) / f32(C);
  let r = rs[i];
  for (var j = lid; j < C; j += ${NORM_WG}u) {
    let d = g[o + j] * gamma[j];
    dx[o + j] = dx[o + j] + r * (d - md - xh[o + j] * mdx);
  }`;
      byRow(rt, "layerNormBackward.row", decls, body, [g, gamma, xhat, rstd], [dx], [rows, C], NORM_WG);
    } else {
      const body = /* wgsl */ `
  let C = pu(1u); let o = i * C;
  var md = 0.0; var mdx = 0.0;
  for (var j = 0u; j < C; j++) { let d = g[o + j] * gamma[j]; md += d; mdx += d * xh[o + j]; }
  md = md / f32(C); mdx = mdx / f32(C);
  let r = rs[i];
  for (var j = 0u; j < C; j++) {
    let d = g[o + j] * gamma[j];
    dx[o + j] = dx[o + j] + r * (d - md - xh[o + j] * mdx);
  }`;
      each(rt, "layerNormBackward.dx", decls, body, [g, gamma, xhat, rstd], [dx], [rows, C]);
    }
  }
  // per channel: dγ += Σ_rows g x̂, dβ += Σ_rows g, as reductions over the rows (chunked when there are many)
  if (dgamma) {
    const gx = rt.scratch(rows * C);
    binary(rt, "mul", g, [C, 1], xhat, [C, 1], gx, [rows, C]);
    reduceTo(rt, gx, [rows, C], dgamma, [0, 1], 1);
    rt.free(gx);
  }
  if (dbeta) reduceTo(rt, g, [rows, C], dbeta, [0, 1], 1);
}

export function embedding(rt: GpuRuntime, w: Buf, ids: Int32Array, out: Buf, D: number, V: number): void {
  checkIds("embedding ids", ids, ids.length, V);
  const decls = /* wgsl */ `
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<i32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;`;
  const body = "let D = pu(1u); y[i] = w[u32(ids[i / D]) * D + i % D];";
  each(rt, "embedding", decls, body, [w, rt.upload(ids)], [out], [ids.length * D, D]);
}

/** Positions a thread of embeddingBackward adds at most; an id with more takes a thread per run of this many. */
export const EMBEDDING_RUN = 64;

/**
 * dw[ids[n]] += g[n]. The ids are on the host, so the scatter is turned into a gather there: for each distinct id
 * (rows, U of them) the positions holding it, in increasing n (a CSR list). When no id holds more than
 * EMBEDDING_RUN positions, one thread per (distinct id, column) adds its positions' rows in the js loop's order
 * (eight loaded at a time): no atomics, deterministic, equal to the js result. Otherwise the lists are cut into runs
 * of at most EMBEDDING_RUN positions: a thread per (run, column) sums its run, then a thread per (distinct id,
 * column) adds its runs' sums in order: as deterministic, the same sum up to float rounding. A character model
 * folded into its first layer (models/rnn.ts) scatters N positions of width G over ~65 ids, a space ~15% of them:
 * one thread per (id, column) would walk ~4,000 positions one after another.
 */
export function embeddingBackward(rt: GpuRuntime, g: Buf, ids: Int32Array, dw: Buf, D: number, V: number): void {
  checkIds("embeddingBackward ids", ids, ids.length, V);
  const N = ids.length;
  const counts = new Uint32Array(V);
  for (let n = 0; n < N; n++) counts[ids[n]]++;
  const rows: number[] = [];
  let longest = 0;
  for (let v = 0; v < V; v++) {
    if (counts[v] > 0) rows.push(v);
    longest = Math.max(longest, counts[v]);
  }
  const U = rows.length;
  const runs = longest > EMBEDDING_RUN;
  // runs: how many each id's list is cut into, and where each run starts in the positions
  const runStarts: number[] = [];
  const idRuns = new Uint32Array(U + 1);
  // csr = [rows (U) | starts (U + 1) | positions (N) | the ids' first runs (U + 1) | the runs' starts (R + 1)]
  const next = new Uint32Array(V);
  const head = new Uint32Array(2 * U + 1);
  let at = 0;
  rows.forEach((v, u) => {
    head[u] = v;
    head[U + u] = at;
    next[v] = at;
    idRuns[u] = runStarts.length;
    for (let q = at; q < at + counts[v]; q += EMBEDDING_RUN) runStarts.push(q);
    at += counts[v];
  });
  head[2 * U] = N;
  idRuns[U] = runStarts.length;
  runStarts.push(N);
  const R = runStarts.length - 1;
  const csr = new Uint32Array(2 * U + 1 + N + (runs ? U + 1 + R + 1 : 0));
  csr.set(head);
  for (let n = 0; n < N; n++) csr[2 * U + 1 + next[ids[n]]++] = n;
  if (runs) {
    csr.set(idRuns, 2 * U + 1 + N);
    csr.set(runStarts, 2 * U + 1 + N + U + 1);
  }
  const list = rt.upload(csr);
  const decls = (out: string) => /* wgsl */ `
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> csr: array<u32>;
@group(0) @binding(3) var<storage, read_write> ${out}: array<f32>;`;
  // Eight positions' rows are loaded before they are added (in order): one load in flight a thread left them
  // waiting on memory (LSTM 256 at batch 256, 4,160 threads for 25,600 positions: 212 us on an H200 at stop 5).
  const gather = (q0: string, q1: string) => /* wgsl */ `
  let P = 2u * U + 1u;
  var q = ${q0};
  let q1 = ${q1};
  ${addInOrder("acc", "q", "q1", (q) => `g[csr[P + ${q}] * D + j]`, 8)}`;
  if (!runs) {
    const body = /* wgsl */ `
  let D = pu(1u); let U = pu(2u);
  let u = i / D; let j = i % D;
  let k = csr[u] * D + j;
  var acc = dw[k];
  ${gather("csr[U + u]", "csr[U + u + 1u]")}
  dw[k] = acc;`;
    each(rt, "embeddingBackward", decls("dw"), body, [g, list], [dw], [U * D, D, U]);
    return;
  }
  const sums = rt.scratch(R * D);
  const runBody = /* wgsl */ `
  let D = pu(1u); let U = pu(2u); let N = pu(3u);
  let r = i / D; let j = i % D;
  let S = 2u * U + 1u + N + U + 1u;
  var acc = 0.0;
  ${gather("csr[S + r]", "csr[S + r + 1u]")}
  sums[i] = acc;`;
  each(rt, "embeddingRuns", decls("sums"), runBody, [g, list], [sums], [R * D, D, U, N]);
  const addDecls = /* wgsl */ `
@group(0) @binding(1) var<storage, read> sums: array<f32>;
@group(0) @binding(2) var<storage, read> csr: array<u32>;
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;`;
  const addBody = /* wgsl */ `
  let D = pu(1u); let U = pu(2u); let N = pu(3u);
  let u = i / D; let j = i % D;
  let k = csr[u] * D + j;
  let F = 2u * U + 1u + N;
  var acc = dw[k];
  var q = csr[F + u];
  let q1 = csr[F + u + 1u];
  ${addInOrder("acc", "q", "q1", (q) => `sums[${q} * D + j]`, 8)}
  dw[k] = acc;`;
  each(rt, "embeddingRunsAdd", addDecls, addBody, [sums, list], [dw], [U * D, D, U, N]);
  rt.free(sums);
}

/** out[n] = w[ids[idsOff + n]], the ids on the GPU as float values (sampleRows's output). */
export function embeddingFrom(
  rt: GpuRuntime,
  w: Buf,
  ids: Buf,
  idsOff: number,
  out: Buf,
  count: number,
  D: number,
  V: number,
): void {
  const decls = /* wgsl */ `
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;`;
  // A sampled id is always in range; the clamp keeps a stray value inside the table all the same.
  const body = "let D = pu(1u); let id = min(u32(ids[pu(2u) + i / D]), pu(3u) - 1u); y[i] = w[id * D + i % D];";
  each(rt, "embeddingFrom", decls, body, [w, ids], [out], [count * D, D, idsOff, V]);
}

/**
 * One token per row of logits (rows, V), drawn as ../../../sampling.ts and drawIndex (util/rng.ts) do, in f32: one
 * workgroup per row. Its threads share the elementwise work (the maximum, the weights, each weight's rank when top-k
 * or top-p filters); the sums that decide the token run in one thread in index (or rank) order, as the host's do.
 * The weights and the ranked order live in scratch storage, so V has no workgroup-memory limit.
 */
export function sampleRows(
  rt: GpuRuntime,
  logits: Buf,
  u: Buf,
  uOff: number,
  ids: Buf,
  idsOff: number,
  rows: number,
  V: number,
  how: Sampling,
): void {
  const { temperature, topK, topP } = how;
  const filter = (topK > 0 && topK < V) || topP < 1;
  const w = rt.scratch(rows * V);
  const order = filter ? rt.scratch(rows * V) : null;
  // params: V, temperature, topK (0 = V), topP, uOff, idsOff, the first row
  const draw = drawCode(filter, {
    x: (j) => `x[o + ${j}]`,
    w: (j) => `w[o + ${j}]`,
    order: (q) => `order[o + ${q}]`,
    temperature: "pf(1u)",
    topK: "pu(2u)",
    topP: "pf(3u)",
    u: "u[pu(4u) + row]",
  });
  const code = () => /* wgsl */ `
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> u: array<f32>;
@group(0) @binding(3) var<storage, read_write> ids: array<f32>;
@group(0) @binding(4) var<storage, read_write> w: array<f32>;
${filter ? "@group(0) @binding(5) var<storage, read_write> order: array<u32>;" : ""}
var<workgroup> part: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let V = pu(0u); let t = lid.x; let row = pu(6u) + wid.x; let o = row * V;
${draw.weights}
  if (t != 0u) { return; }
${draw.pick}
  ids[pu(5u) + row] = f32(pick);
}`;
  const writes = order ? [ids, w, order] : [ids, w];
  // one workgroup per row, at most 65,535 in a dispatch: more rows take several (params[6]: the first row)
  for (let r0 = 0; r0 < rows; r0 += 65535) {
    const params = [V, fbits(temperature), topK, fbits(topP), uOff, idsOff, r0];
    rt.run(`sampleRows.${filter}`, code, [logits, u], writes, params, [Math.min(65535, rows - r0)]);
  }
  rt.free(w);
  if (order) rt.free(order);
}

/**
 * The WGSL of one draw, as ../../../sampling.ts orders it, by a workgroup of 256 threads (`t`, with `part` its
 * array<f32, 256> in workgroup memory and `V` the vocabulary): `weights`, run by every thread, leaves the
 * temperature-scaled weights in w (and their ranking in order, filtering); `pick`, run by one thread, filters them,
 * draws with u and leaves the index in `pick`. Shared by sampleRows and the fused generation (generate.ts).
 */
export function drawCode(
  filter: boolean,
  at: {
    x: (j: string) => string;
    w: (j: string) => string;
    order: (q: string) => string;
    temperature: string;
    topK: string;
    topP: string;
    u: string;
  },
): { weights: string; pick: string } {
  const weights = /* wgsl */ `
  var m = ${at.x("0u")};
  for (var j = t; j < V; j += 256u) { m = max(m, ${at.x("j")}); }
  part[t] = m;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s >>= 1u) {
    if (t < s) { part[t] = max(part[t], part[t + s]); }
    workgroupBarrier();
  }
  m = part[0];
  for (var j = t; j < V; j += 256u) { ${at.w("j")} = exp((${at.x("j")} - m) / ${at.temperature}); }
  storageBarrier();${
    filter
      ? /* wgsl */ `
  // rank: how many weights come before j, largest first, ties by index; order[rank] = j
  for (var j = t; j < V; j += 256u) {
    let wj = ${at.w("j")};
    var rank = 0u;
    for (var i = 0u; i < V; i++) {
      let wi = ${at.w("i")};
      rank += select(0u, 1u, wi > wj || (wi == wj && i < j));
    }
    ${at.order("rank")} = j;
  }
  storageBarrier();`
      : ""
  }`;
  const pick = /* wgsl */ `
  var total = 0.0;
  for (var j = 0u; j < V; j++) { total += ${at.w("j")}; }${
    filter
      ? /* wgsl */ `
  var keep = V;
  if (${at.topK} > 0u) { keep = min(${at.topK}, V); }
  if (${at.topP} < 1.0) {
    var mass = 0.0;
    var kept = 0u;
    for (var q = 0u; q < keep; q++) {
      mass += ${at.w(at.order("q"))};
      kept++;
      if (mass >= ${at.topP} * total) { break; }
    }
    keep = kept;
  }
  for (var q = keep; q < V; q++) { ${at.w(at.order("q"))} = 0.0; }
  total = 0.0;
  for (var j = 0u; j < V; j++) { total += ${at.w("j")}; }`
      : ""
  }
  var r = ${at.u} * total;
  var pick = V;
  for (var j = 0u; j < V; j++) {
    r -= ${at.w("j")};
    if (r < 0.0) { pick = j; break; }
  }
  if (pick == V) {
    // rounding left r a hair above zero: the last index with a non-zero weight
    pick = V - 1u;
    for (var j = V; j > 0u; j--) { if (${at.w("j - 1u")} > 0.0) { pick = j - 1u; break; } }
  }`;
  return { weights, pick };
}
