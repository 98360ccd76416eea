// Causal multi-head self-attention: forward (keeping the softmax weights), backward, and the cached generation step.
//
// Legend: B batch, T positions, C channels, nH heads of hd = C / nH, N cache length. q, k, v, out are (B, T, C)
// with head h in columns h·hd .. (h+1)·hd; att is (B, nH, T, T).
//
// Two routes, both without atomics. "matmul" (the default): the heads copied out to (B, nH, T, hd), the scores, the
// weighted sums and every backward product as batched tiled matrix products (./matmul.ts, sums in k order), full
// T x T rows with the causal mask applied by the softmax kernel (entries above the diagonal are exact zeros, so the
// products add nothing for them). "rows" (CHARLM_WEBGPU_ATTENTION=rows): a thread per score row (softmax) or per
// output value (the weighted sums), each sum in the js loop's order. On an H200 (stop 9) a 6 x 384 GPT with block
// 256 trained at 146.2 k char/s with products and 97.2 k with rows (PyTorch: 517.9 k).
//
// The cached step (generation): a workgroup per (b, head, new position) since stop 18, its positions' scores a
// thread each and their max and sum as trees; before, and now where a row's weights do not fit workgroup memory, a
// thread per output value (one new position) or per row and per value (several).

import { CharlmError } from "../../../../util/errors.js";
import { type Buf, type GpuRuntime, type GpuStorage, envSetting, fbits } from "../runtime.js";
import { byRow, each, swapAxes } from "./elementwise.js";
import { matmul } from "./matmul.js";

const viaMatmul = (): boolean => envSetting("CHARLM_WEBGPU_ATTENTION") !== "rows";

/**
 * Whether the product route's score rows (the softmax forward, its gradient's rows) take a workgroup per row (the
 * default since stop 23) instead of a thread per row (CHARLM_WEBGPU_SOFTMAX=thread). A thread per row walks its row
 * alone, so a warp's loads touch 32 rows T floats apart; a workgroup's threads load neighbouring values of one row,
 * and its max and sums are trees (the same order every run). On the H200 at stop 23 (bench/results/h200-stop23) the
 * GPT's training steps ran at 219.2 k char/s with it against 202.4 k, 252.9 k with layer norm by row too.
 */
export function softmaxByWorkgroup(): boolean {
  const forced = envSetting("CHARLM_WEBGPU_SOFTMAX");
  if (forced && forced !== "row" && forced !== "thread") {
    throw new CharlmError(`CHARLM_WEBGPU_SOFTMAX is "${forced}"; use row or thread, or unset it`);
  }
  return forced !== "thread";
}

/** WGSL: `body` for byRow's row i, a (b, h, i) score row of att (rows of T), with qi = i % T and ao = i · T. */
const scoreRow = (body: string): string => /* wgsl */ `${HEAD_LETS}
  let qi = i % T;
  let ao = i * T;
  ${body}`;

/** (B, T, C) as (B, nH, T, hd), into a scratch the caller frees. */
function heads(rt: GpuRuntime, x: Buf, B: number, T: number, C: number, nHead: number): GpuStorage {
  const y = rt.scratch(B * T * C);
  swapAxes(rt, x, [B, T, nHead, C / nHead], 1, 2, y, false);
  return y;
}

/** (B, nH, T, hd) back to (B, T, C), written or added. */
function unheads(rt: GpuRuntime, x: Buf, y: Buf, B: number, T: number, C: number, nHead: number, add: boolean): void {
  swapAxes(rt, x, [B, nHead, T, C / nHead], 1, 2, y, add);
}

function free(rt: GpuRuntime, ...bufs: GpuStorage[]): void {
  for (const b of bufs) rt.free(b);
}

/** params: n, T, C, nH, hd, sc = 1/√hd (f32) */
function headParams(n: number, T: number, C: number, nHead: number): number[] {
  const hd = C / nHead;
  return [n, T, C, nHead, hd, fbits(1 / Math.sqrt(hd))];
}

/** Threads per workgroup of the cached attention's row kernel (a power of two: its trees halve it). */
const ROW_WG = 64;

/** Workgroup memory of the cached attention's row kernel for a cache of N positions, in bytes. */
export function cachedRowBytes(N: number): number {
  return 4 * (N + ROW_WG);
}

/**
 * Whether the cached attention takes its workgroup-per-row kernel for a cache of N positions: where the row's
 * weights fit the adapter's workgroup memory (`limit` bytes), unless CHARLM_WEBGPU_CACHED=thread forces the
 * thread-per-row and thread-per-value kernels (the only ones before stop 18; "row" or unset: the default).
 */
export function cachedByRow(N: number, limit: number): boolean {
  const forced = envSetting("CHARLM_WEBGPU_CACHED");
  if (forced && forced !== "row" && forced !== "thread") {
    throw new CharlmError(`CHARLM_WEBGPU_CACHED is "${forced}"; use row or thread, or unset it`);
  }
  return forced !== "thread" && cachedRowBytes(N) <= limit;
}

const HEAD_LETS = /* wgsl */ `
  let T = pu(1u); let C = pu(2u); let nH = pu(3u); let hd = pu(4u); let sc = pf(5u);`;

export function attention(
  rt: GpuRuntime,
  q: Buf,
  k: Buf,
  v: Buf,
  out: Buf,
  att: Buf,
  B: number,
  T: number,
  C: number,
  nHead: number,
): void {
  if (viaMatmul()) {
    const [qh, kh, vh] = [q, k, v].map((x) => heads(rt, x, B, T, C, nHead));
    const hd = C / nHead;
    const batch = B * nHead;
    matmul(rt, qh, kh, att, T, hd, T, { transB: true, batch }); // raw scores q_i · k_j, every (i, j)
    // scale, causal mask and softmax in place: one thread per (b, h, i) row, or a workgroup
    const decls = /* wgsl */ `
@group(0) @binding(1) var<storage, read_write> att: array<f32>;`;
    if (softmaxByWorkgroup()) {
      const rowBody = /* wgsl */ `
  var m = negInf();
  for (var j = lid; j <= qi; j += ${ROW_WG}u) { m = max(m, att[ao + j] * sc); }
  m = maxTree(lid, m);
  var z = 0.0;
  for (var j = lid; j <= qi; j += ${ROW_WG}u) { z += exp(att[ao + j] * sc - m); }
  z = sumTree(lid, z);
  for (var j = lid; j < T; j += ${ROW_WG}u) { att[ao + j] = select(0.0, exp(att[ao + j] * sc - m) / z, j <= qi); }`;
      byRow(
        rt,
        "attention.softmax.row",
        decls,
        scoreRow(rowBody),
        [],
        [att],
        headParams(batch * T, T, C, nHead),
        ROW_WG,
      );
    } else {
      const body = /* wgsl */ `${HEAD_LETS}
  let qi = i % T;
  let ao = i * T;
  var m = negInf();
  for (var j = 0u; j <= qi; j++) { let s = att[ao + j] * sc; att[ao + j] = s; m = max(m, s); }
  var z = 0.0;
  for (var j = 0u; j <= qi; j++) { let e = exp(att[ao + j] - m); att[ao + j] = e; z += e; }
  for (var j = 0u; j <= qi; j++) { att[ao + j] = att[ao + j] / z; }
  for (var j = qi + 1u; j < T; j++) { att[ao + j] = 0.0; }`;
      each(rt, "attention.softmax", decls, body, [], [att], headParams(batch * T, T, C, nHead));
    }
    matmul(rt, att, vh, qh, T, T, hd, { batch }); // Σ_j p_ij v_j, into qh (read only by the scores, encoded before)
    unheads(rt, qh, out, B, T, C, nHead, false);
    free(rt, qh, kh, vh);
    return;
  }
  // scores and softmax: one thread per (b, h, i) row of att
  const rowDecls = /* wgsl */ `
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read_write> att: array<f32>;`;
  const rowBody = /* wgsl */ `${HEAD_LETS}
  let qi = i % T; let bh = i / T; let h = bh % nH; let b = bh / nH;
  let ao = i * T;
  let qo = (b * T + qi) * C + h * hd;
  var m = negInf();
  for (var j = 0u; j <= qi; j++) {
    let ko = (b * T + j) * C + h * hd;
    var s = 0.0;
    for (var d = 0u; d < hd; d++) { s += q[qo + d] * k[ko + d]; }
    s = s * sc;
    att[ao + j] = s;
    m = max(m, s);
  }
  var z = 0.0;
  for (var j = 0u; j <= qi; j++) { let e = exp(att[ao + j] - m); att[ao + j] = e; z += e; }
  for (var j = 0u; j <= qi; j++) { att[ao + j] = att[ao + j] / z; }
  for (var j = qi + 1u; j < T; j++) { att[ao + j] = 0.0; }`;
  each(rt, "attention.scores", rowDecls, rowBody, [q, k], [att], headParams(B * nHead * T, T, C, nHead));
  // out[b, i, c] = Σ_{j <= i} att[b, h, i, j] v[b, j, c], h = c / hd
  const outDecls = /* wgsl */ `
@group(0) @binding(1) var<storage, read> att: array<f32>;
@group(0) @binding(2) var<storage, read> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> o: array<f32>;`;
  const outBody = /* wgsl */ `${HEAD_LETS}
  let c = i % C; let bi = i / C; let qi = bi % T; let b = bi / T;
  let ao = ((b * nH + c / hd) * T + qi) * T;
  var s = 0.0;
  for (var j = 0u; j <= qi; j++) { s += att[ao + j] * v[(b * T + j) * C + c]; }
  o[i] = s;`;
  each(rt, "attention.out", outDecls, outBody, [att, v], [out], headParams(B * T * C, T, C, nHead));
}

type BackwardArgs = [
  rt: GpuRuntime,
  q: Buf,
  k: Buf,
  v: Buf,
  att: Buf,
  g: Buf,
  dq: Buf | null,
  dk: Buf | null,
  dv: Buf | null,
  B: number,
  T: number,
  C: number,
  nHead: number,
];

/** dq, dk, dv += the gradients through attention (each may be null: not wanted). */
export function attentionBackward(...a: BackwardArgs): void {
  if (viaMatmul()) attentionBackwardMatmul(...a);
  else attentionBackwardRows(...a);
}

function attentionBackwardRows(...[rt, q, k, v, att, g, dq, dk, dv, B, T, C, nHead]: BackwardArgs): void {
  const n = B * T * C;
  if (dv) {
    // dv_j += Σ_{i >= j} p_ij g_i
    const decls = /* wgsl */ `
@group(0) @binding(1) var<storage, read> att: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> dv: array<f32>;`;
    const body = /* wgsl */ `${HEAD_LETS}
  let c = i % C; let bj = i / C; let kj = bj % T; let b = bj / T;
  let ao = (b * nH + c / hd) * T * T;
  var s = dv[i];
  for (var qi = kj; qi < T; qi++) { s += att[ao + qi * T + kj] * g[(b * T + qi) * C + c]; }
  dv[i] = s;`;
    each(rt, "attentionBackward.dv", decls, body, [att, g], [dv], headParams(n, T, C, nHead));
  }
  if (!dq && !dk) return;
  // ds_ij = p_ij (dp_ij - Σ_k p_ik dp_ik) / √hd, dp_ij = g_i · v_j: one thread per (b, h, i) row, into a scratch (B, nH, T, T)
  const ds = rt.scratch(B * nHead * T * T); // only its lower triangle is written and read
  const dsDecls = /* wgsl */ `
@group(0) @binding(1) var<storage, read> att: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> ds: array<f32>;`;
  const dsBody = /* wgsl */ `${HEAD_LETS}
  let qi = i % T; let bh = i / T; let h = bh % nH; let b = bh / nH;
  let ao = i * T;
  let go = (b * T + qi) * C + h * hd;
  var dot = 0.0;
  for (var j = 0u; j <= qi; j++) {
    let vo = (b * T + j) * C + h * hd;
    var dp = 0.0;
    for (var d = 0u; d < hd; d++) { dp += g[go + d] * v[vo + d]; }
    ds[ao + j] = dp;
    dot += att[ao + j] * dp;
  }
  for (var j = 0u; j <= qi; j++) { ds[ao + j] = att[ao + j] * (ds[ao + j] - dot) * sc; }`;
  each(rt, "attentionBackward.ds", dsDecls, dsBody, [att, g, v], [ds], headParams(B * nHead * T, T, C, nHead));
  const decls = (x: string, y: string) => /* wgsl */ `
@group(0) @binding(1) var<storage, read> ds: array<f32>;
@group(0) @binding(2) var<storage, read> ${x}: array<f32>;
@group(0) @binding(3) var<storage, read_write> ${y}: array<f32>;`;
  if (dq) {
    // dq_i += Σ_{j <= i} ds_ij k_j
    const body = /* wgsl */ `${HEAD_LETS}
  let c = i % C; let bi = i / C; let qi = bi % T; let b = bi / T;
  let ao = ((b * nH + c / hd) * T + qi) * T;
  var s = 0.0;
  for (var j = 0u; j <= qi; j++) { s += ds[ao + j] * k[(b * T + j) * C + c]; }
  dq[i] = dq[i] + s;`;
    each(rt, "attentionBackward.dq", decls("k", "dq"), body, [ds, k], [dq], headParams(n, T, C, nHead));
  }
  if (dk) {
    // dk_j += Σ_{i >= j} ds_ij q_i
    const body = /* wgsl */ `${HEAD_LETS}
  let c = i % C; let bj = i / C; let kj = bj % T; let b = bj / T;
  let ao = (b * nH + c / hd) * T * T;
  var s = 0.0;
  for (var qi = kj; qi < T; qi++) { s += ds[ao + qi * T + kj] * q[(b * T + qi) * C + c]; }
  dk[i] = dk[i] + s;`;
    each(rt, "attentionBackward.dk", decls("q", "dk"), body, [ds, q], [dk], headParams(n, T, C, nHead));
  }
  rt.free(ds);
}

function attentionBackwardMatmul(...[rt, q, k, v, att, g, dq, dk, dv, B, T, C, nHead]: BackwardArgs): void {
  const hd = C / nHead;
  const batch = B * nHead;
  const gh = heads(rt, g, B, T, C, nHead);
  const part = rt.scratch(B * T * C); // one head-major gradient at a time
  if (dv) {
    matmul(rt, att, gh, part, T, T, hd, { transA: true, batch }); // dv_j = Σ_i p_ij g_i
    unheads(rt, part, dv, B, T, C, nHead, true);
  }
  if (dq || dk) {
    const vh = heads(rt, v, B, T, C, nHead);
    const ds = rt.scratch(batch * T * T);
    matmul(rt, gh, vh, ds, T, hd, T, { transB: true, batch }); // dp_ij = g_i · v_j
    // ds_ij = p_ij (dp_ij - Σ_k p_ik dp_ik) / √hd below the diagonal, 0 above: one thread per (b, h, i) row, or a
    // workgroup
    const decls = /* wgsl */ `
@group(0) @binding(1) var<storage, read> att: array<f32>;
@group(0) @binding(2) var<storage, read_write> ds: array<f32>;`;
    if (softmaxByWorkgroup()) {
      const rowBody = /* wgsl */ `
  var dot = 0.0;
  for (var j = lid; j <= qi; j += ${ROW_WG}u) { dot += att[ao + j] * ds[ao + j]; }
  dot = sumTree(lid, dot);
  for (var j = lid; j < T; j += ${ROW_WG}u) {
    ds[ao + j] = select(0.0, att[ao + j] * (ds[ao + j] - dot) * sc, j <= qi);
  }`;
      const params = headParams(batch * T, T, C, nHead);
      byRow(rt, "attentionBackward.dsRows.row", decls, scoreRow(rowBody), [att], [ds], params, ROW_WG);
    } else {
      const body = /* wgsl */ `${HEAD_LETS}
  let qi = i % T;
  let ao = i * T;
  var dot = 0.0;
  for (var j = 0u; j <= qi; j++) { dot += att[ao + j] * ds[ao + j]; }
  for (var j = 0u; j <= qi; j++) { ds[ao + j] = att[ao + j] * (ds[ao + j] - dot) * sc; }
  for (var j = qi + 1u; j < T; j++) { ds[ao + j] = 0.0; }`;
      each(rt, "attentionBackward.dsRows", decls, body, [att], [ds], headParams(batch * T, T, C, nHead));
    }
    if (dq) {
      const kh = heads(rt, k, B, T, C, nHead);
      matmul(rt, ds, kh, part, T, T, hd, { batch }); // dq_i = Σ_j ds_ij k_j
      unheads(rt, part, dq, B, T, C, nHead, true);
      free(rt, kh);
    }
    if (dk) {
      const qh = heads(rt, q, B, T, C, nHead);
      matmul(rt, ds, qh, part, T, T, hd, { transA: true, batch }); // dk_j = Σ_i ds_ij q_i
      unheads(rt, part, dk, B, T, C, nHead, true);
      free(rt, qh);
    }
    free(rt, vh, ds);
  }
  free(rt, gh, part);
}

export function attentionCached(
  rt: GpuRuntime,
  qkv: Buf,
  kCache: Buf,
  vCache: Buf,
  out: Buf,
  B: number,
  T: number,
  C: number,
  nHead: number,
  N: number,
  pos0: number,
): void {
  // params: n, T, C, nH, hd, √hd, N, pos0
  const params = (n: number) => [...headParams(n, T, C, nHead), N, pos0];
  // the new positions' k and v into the caches
  const putDecls = /* wgsl */ `
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read_write> kc: array<f32>;
@group(0) @binding(3) var<storage, read_write> vc: array<f32>;`;
  const putBody = /* wgsl */ `${HEAD_LETS}
  let N = pu(6u); let pos0 = pu(7u);
  let c = i % C; let bt = i / C; let t = bt % T; let b = bt / T;
  let at = (b * N + pos0 + t) * C + c;
  kc[at] = qkv[bt * 3u * C + C + c];
  vc[at] = qkv[bt * 3u * C + 2u * C + c];`;
  each(rt, "attentionCached.put", putDecls, putBody, [qkv], [kCache, vCache], params(B * T * C));
  const scoreFn = /* wgsl */ `
fn score(qo: u32, ko: u32, hd: u32, sc: f32) -> f32 {
  var s = 0.0;
  for (var d = 0u; d < hd; d++) { s += qkv[qo + d] * kc[ko + d]; }
  return s * sc;
}`;
  if (cachedByRow(N, rt.device.limits.maxComputeWorkgroupStorageSize)) {
    // A workgroup per (b, h, t) row: its scores against positions 0 .. pos0 + t a thread each (position j by
    // thread j % ROW_WG), into workgroup memory; their max and the sum of their exps as trees over the threads;
    // then a thread per output value of the head sums weight · value in position order. At batch 1 the kernels
    // below run a thread per row or per value, each walking every position (the one-position kernel hd times over):
    // a few workgroups of long serial loops, bound by memory latency.
    const decls = /* wgsl */ `
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> kc: array<f32>;
@group(0) @binding(3) var<storage, read> vc: array<f32>;
@group(0) @binding(4) var<storage, read_write> o: array<f32>;
var<workgroup> w: array<f32, ${N}>; // the row's scores, then its weights (positions up to the cache's N)${scoreFn}`;
    const body = /* wgsl */ `${HEAD_LETS}
  let N = pu(6u); let pos0 = pu(7u);
  let t = i % T; let bh = i / T; let h = bh % nH; let b = bh / nH; // row i: (b, h, t)
  let qo = (b * T + t) * 3u * C + h * hd;
  let P = pos0 + t + 1u;
  var m = negInf();
  for (var j = lid; j < P; j += ${ROW_WG}u) {
    let s = score(qo, (b * N + j) * C + h * hd, hd, sc);
    w[j] = s;
    m = max(m, s);
  }
  m = maxTree(lid, m);
  var z = 0.0;
  for (var j = lid; j < P; j += ${ROW_WG}u) { let e = exp(w[j] - m); w[j] = e; z += e; }
  z = sumTree(lid, z);
  for (var j = lid; j < P; j += ${ROW_WG}u) { w[j] = w[j] / z; }
  workgroupBarrier();
  let oo = (b * T + t) * C + h * hd;
  for (var c = lid; c < hd; c += ${ROW_WG}u) {
    var s = 0.0;
    for (var j = 0u; j < P; j++) { s += w[j] * vc[(b * N + j) * C + h * hd + c]; }
    o[oo + c] = s;
  }`;
    const reads = [qkv, kCache, vCache];
    byRow(rt, `attentionCached.row.${N}`, decls, body, reads, [out], params(B * nHead * T), ROW_WG);
    return;
  }
  // Caches too long for workgroup memory (or CHARLM_WEBGPU_CACHED=thread):
  if (T === 1) {
    // One new position (a generated character): a thread per output value, its head's scores against positions
    // 0 .. pos0 recomputed in it (hd-fold work, but one dispatch fewer), max, then Σ e^(s - max) v / Σ e^(s - max).
    const decls = /* wgsl */ `
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> kc: array<f32>;
@group(0) @binding(3) var<storage, read> vc: array<f32>;
@group(0) @binding(4) var<storage, read_write> o: array<f32>;${scoreFn}`;
    const body = /* wgsl */ `${HEAD_LETS}
  let N = pu(6u); let pos0 = pu(7u);
  let c = i % C; let b = i / C;
  let h = c / hd;
  let qo = b * 3u * C + h * hd;
  let L = pos0 + 1u;
  var m = negInf();
  for (var j = 0u; j < L; j++) { m = max(m, score(qo, (b * N + j) * C + h * hd, hd, sc)); }
  var z = 0.0; var s = 0.0;
  for (var j = 0u; j < L; j++) {
    let e = exp(score(qo, (b * N + j) * C + h * hd, hd, sc) - m);
    z += e;
    s += e * vc[(b * N + j) * C + c];
  }
  o[i] = s / z;`;
    each(rt, "attentionCached.out", decls, body, [qkv, kCache, vCache], [out], params(B * C));
    return;
  }
  const L = pos0 + T;
  // Several new positions (a prime, or the whole window recomputed once it slides): the weights of each
  // (b, h, t) row once, into a scratch of (B, nH, T, L) with L = pos0 + T, then a thread per output value sums
  // them against the cached values. Recomputing the scores per value, as above, would cost hd times the work:
  // a whole 256-position window of a 6-layer GPT took ~23 ms per character on an H200 that way.
  const att = rt.scratch(B * nHead * T * L);
  const rowDecls = /* wgsl */ `
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> kc: array<f32>;
@group(0) @binding(3) var<storage, read_write> att: array<f32>;${scoreFn}`;
  const rowBody = /* wgsl */ `${HEAD_LETS}
  let N = pu(6u); let pos0 = pu(7u); let L = pu(8u);
  let t = i % T; let bh = i / T; let h = bh % nH; let b = bh / nH;
  let ao = i * L;
  let qo = (b * T + t) * 3u * C + h * hd;
  let P = pos0 + t + 1u;
  var m = negInf();
  for (var j = 0u; j < P; j++) {
    let s = score(qo, (b * N + j) * C + h * hd, hd, sc);
    att[ao + j] = s;
    m = max(m, s);
  }
  var z = 0.0;
  for (var j = 0u; j < P; j++) { let e = exp(att[ao + j] - m); att[ao + j] = e; z += e; }
  for (var j = 0u; j < P; j++) { att[ao + j] = att[ao + j] / z; }`;
  each(rt, "attentionCached.rows", rowDecls, rowBody, [qkv, kCache], [att], [...params(B * nHead * T), L]);
  const outDecls = /* wgsl */ `
@group(0) @binding(1) var<storage, read> att: array<f32>;
@group(0) @binding(2) var<storage, read> vc: array<f32>;
@group(0) @binding(3) var<storage, read_write> o: array<f32>;`;
  const outBody = /* wgsl */ `${HEAD_LETS}
  let N = pu(6u); let pos0 = pu(7u); let L = pu(8u);
  let c = i % C; let bt = i / C; let t = bt % T; let b = bt / T;
  let ao = ((b * nH + c / hd) * T + t) * L;
  let P = pos0 + t + 1u;
  var s = 0.0;
  for (var j = 0u; j < P; j++) { s += att[ao + j] * vc[(b * N + j) * C + c]; }
  o[i] = s;`;
  each(rt, "attentionCached.sum", outDecls, outBody, [att, vCache], [out], [...params(B * T * C), L]);
  free(rt, att);
}
