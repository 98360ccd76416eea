// Row kernels (one thread per row of V or C values: softmax, cross-entropy, layer norm) and the embedding gather
// and its scatter-add gradient. Rows here are short (a vocabulary of ~65, channels of a few hundred), so a thread
// per row keeps the js loop's order of summation; the many rows of a batch fill the GPU.
//
// Legend: N rows (positions), V classes, C channels, D embedding width, U distinct ids in a batch.

import { CharlmError } from "../../../../util/errors.js";
import { type Buf, type GpuRuntime, fbits } from "../runtime.js";
import { binary, each, reduceTo, sumAll } from "./elementwise.js";

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

/**
 * dw[ids[n]] += g[n]. The ids are on the host, so the scatter is turned into a gather there: for each distinct id
 * (rows, U of them) the positions holding it, in increasing n (a CSR list). One thread per (distinct id, column)
 * then adds its positions' rows in the js loop's order: no atomics, deterministic, equal to the js result.
 */
export function embeddingBackward(rt: GpuRuntime, g: Buf, ids: Int32Array, dw: Buf, D: number, V: number): void {
  checkIds("embeddingBackward ids", ids, ids.length, V);
  const N = ids.length;
  const counts = new Uint32Array(V);
  for (let n = 0; n < N; n++) counts[ids[n]]++;
  const rows: number[] = [];
  for (let v = 0; v < V; v++) if (counts[v] > 0) rows.push(v);
  const U = rows.length;
  // csr = [rows (U) | starts (U + 1) | positions (N)]
  const csr = new Uint32Array(2 * U + 1 + N);
  const next = new Uint32Array(V);
  let at = 0;
  rows.forEach((v, u) => {
    csr[u] = v;
    csr[U + u] = at;
    next[v] = at;
    at += counts[v];
  });
  csr[2 * U] = N;
  for (let n = 0; n < N; n++) csr[2 * U + 1 + next[ids[n]]++] = n;
  const decls = /* wgsl */ `
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read> csr: array<u32>;
@group(0) @binding(3) var<storage, read_write> dw: array<f32>;`;
  const body = /* wgsl */ `
  let D = pu(1u); let U = pu(2u);
  let u = i / D; let j = i % D;
  let k = csr[u] * D + j;
  var acc = dw[k];
  for (var q = csr[U + u]; q < csr[U + u + 1u]; q++) { acc += g[csr[2u * U + 1u + q] * D + j]; }
  dw[k] = acc;`;
  each(rt, "embeddingBackward", decls, body, [g, rt.upload(csr)], [dw], [U * D, D, U]);
}
