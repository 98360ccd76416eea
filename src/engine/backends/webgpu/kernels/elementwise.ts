// One thread per element: activations and their gradients, scaling, broadcasting binary ops and their reduction,
// fills and block copies, axis sums and broadcasts, axis swaps, the causal mask, and the optimizer updates.
// Every kernel here is the loop of the js backend with the loop index turned into the thread index.

import type { AdagradStep, AdamStep, BinaryOp, RmspropStep, SgdStep, Strides, UnaryOp } from "../../../backend.js";
import { CharlmError } from "../../../../util/errors.js";
import { type Buf, type GpuRuntime, fbits, gridFor, WG } from "../runtime.js";

/** A kernel body run for i < pu(0) (the element count), after `decls` (its bindings and helpers). */
function eachCode(decls: string, body: string): string {
  return /* wgsl */ `
${decls}
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = gindex(gid, nwg);
  if (i >= pu(0u)) { return; }
  ${body}
}`;
}

/** Run `body` for every i < n; params[0] must be n. */
export function each(
  rt: GpuRuntime,
  key: string,
  decls: string,
  body: string,
  reads: Buf[],
  writes: Buf[],
  params: number[],
): void {
  rt.run(key, () => eachCode(decls, body), reads, writes, params, gridFor(params[0]));
}

/**
 * Run `body` in a workgroup of `wg` threads (a power of two) per row i < rows, params[0] = rows (past 65,535 rows
 * the workgroups spread over a second grid dimension), with `lid` the thread; maxTree and sumTree (treeFn) combine
 * a value of each thread.
 */
export function byRow(
  rt: GpuRuntime,
  key: string,
  decls: string,
  body: string,
  reads: Buf[],
  writes: Buf[],
  params: number[],
  wg = 64,
): void {
  const code = () => /* wgsl */ `${decls}
var<workgroup> red: array<f32, ${wg}>;
${treeFn("maxTree", "max(a, b)", wg)}
${treeFn("sumTree", "a + b", wg)}
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
  let i = wid.x + wid.y * nwg.x;
  if (i >= pu(0u)) { return; }
  ${body}
}`;
  const rows = params[0];
  const gx = Math.min(rows, 65535);
  rt.run(key, code, reads, writes, params, [gx, Math.ceil(rows / gx)]);
}

/**
 * WGSL: `acc += value(q)` for q from the var `q` up to `end`, `lanes` values loaded before they are added (in q's
 * order, so the same sum as one at a time): a thread that loads one value after another waits on memory for each.
 * `value` gets q as a parenthesised expression.
 */
export function addInOrder(acc: string, q: string, end: string, value: (q: string) => string, lanes = 4): string {
  const ls = Array.from({ length: lanes }, (_, e) => e);
  return /* wgsl */ `for (; ${q} + ${lanes}u <= ${end}; ${q} += ${lanes}u) {
    ${ls.map((e) => `let v${e} = ${value(e === 0 ? `(${q})` : `(${q} + ${e}u)`)};`).join(" ")}
    ${ls.map((e) => `${acc} += v${e};`).join(" ")}
  }
  for (; ${q} < ${end}; ${q}++) { ${acc} += ${value(`(${q})`)}; }`;
}

/**
 * WGSL: fn name(lid, v) -> the values v of a workgroup's `wg` threads (a power of two) combined, `combine` of a
 * and b, as a tree (red[lid] with red[lid + k], k halving: the same order every run); every thread gets the result.
 * The kernel declares `var<workgroup> red: array<f32, wg>`; calls must be workgroup-uniform (barriers).
 */
export function treeFn(name: string, combine: string, wg: number): string {
  return /* wgsl */ `
fn ${name}(lid: u32, v: f32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var k = ${wg / 2}u; k > 0u; k = k >> 1u) {
    if (lid < k) { let a = red[lid]; let b = red[lid + k]; red[lid] = ${combine}; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}`;
}

const RW1 = /* wgsl */ `
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;`;

const GELU_C = Math.sqrt(2 / Math.PI);

// y = f(v), v = x[i]
const UNARY: Record<UnaryOp, string> = {
  sigmoid: "sigmoid_(v)",
  tanh: "tanh_(v)",
  exp: "exp(v)",
  log: "log(v)",
  relu: "select(0.0, v, v > 0.0)",
  gelu: `0.5 * v * (1.0 + tanh_(${GELU_C} * (v + 0.044715 * v * v * v)))`,
};

// f'(v) from the input v = x[i] or the output w = y[i], whichever the rule needs
const UNARY_GRAD: Record<UnaryOp, string> = {
  sigmoid: "w * (1.0 - w)",
  tanh: "1.0 - w * w",
  exp: "w",
  log: "1.0 / v",
  relu: "select(0.0, 1.0, v > 0.0)",
  // d/dv ½v(1 + tanh u), u = c(v + 0.044715v³): ½(1 + t) + ½v(1 - t²)·c(1 + 3·0.044715v²)
  gelu: `geluGrad(v)`,
};

const GELU_GRAD_FN = /* wgsl */ `
fn geluGrad(v: f32) -> f32 {
  let t = tanh_(${GELU_C} * (v + 0.044715 * v * v * v));
  return 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * ${GELU_C} * (1.0 + 3.0 * 0.044715 * v * v);
}`;

export function unary(rt: GpuRuntime, op: UnaryOp, x: Buf, y: Buf, n: number): void {
  each(rt, `unary.${op}`, RW1, `let v = x[i]; y[i] = ${UNARY[op]};`, [x], [y], [n]);
}

export function unaryBackward(rt: GpuRuntime, op: UnaryOp, x: Buf, y: Buf, g: Buf, dx: Buf, n: number): void {
  // Only the operand the rule reads is bound (WGSL drops unused bindings from the layout).
  const usesX = /\bv\b/.test(UNARY_GRAD[op]) || op === "gelu";
  const decls = /* wgsl */ `
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> g: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;
${op === "gelu" ? GELU_GRAD_FN : ""}`;
  const body = `let ${usesX ? "v" : "w"} = src[i]; dx[i] = dx[i] + g[i] * (${UNARY_GRAD[op]});`;
  each(rt, `unaryBackward.${op}`, decls, body, [usesX ? x : y, g], [dx], [n]);
}

export function scale(rt: GpuRuntime, x: Buf, y: Buf, n: number, s: number, accumulate: boolean): void {
  const body = accumulate ? "y[i] = y[i] + pf(1u) * x[i];" : "y[i] = pf(1u) * x[i];";
  each(rt, `scale.${accumulate}`, RW1, body, [x], [y], [n, fbits(s)]);
}

const MAX_RANK = 8;

function checkRank(what: string, shape: readonly number[]): void {
  if (shape.length > MAX_RANK) {
    throw new CharlmError(`backend webgpu: ${what} of rank ${shape.length}; at most ${MAX_RANK} axes are supported`);
  }
}

/** Parameters n, rank, shape[8], then each stride list [8]. */
function shapeParams(shape: readonly number[], ...strides: Strides[]): number[] {
  const n = shape.reduce((p, d) => p * d, 1);
  const pad = (xs: readonly number[]) => [...xs, ...new Array<number>(MAX_RANK - xs.length).fill(0)];
  return [n, shape.length, ...pad(shape), ...strides.flatMap(pad)];
}

const BINARY: Record<BinaryOp, string> = { add: "+", sub: "-", mul: "*" };

export function binary(
  rt: GpuRuntime,
  op: BinaryOp,
  a: Buf,
  aStrides: Strides,
  b: Buf,
  bStrides: Strides,
  out: Buf,
  shape: readonly number[],
): void {
  checkRank("binary op", shape);
  // out === a (a bias added in place): a is contiguous, so element i reads a[i] and writes out[i]; binding it once,
  // read_write, avoids the snapshot copy an aliased read would otherwise take
  const inPlace = out === a;
  const decls = inPlace
    ? /* wgsl */ `
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> o: array<f32>;`
    : /* wgsl */ `
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> o: array<f32>;`;
  // shape at 2.., a's strides at 10.., b's at 18..
  const body = /* wgsl */ `
  var r = i; var ia = 0u; var ib = 0u;
  for (var d = pu(1u); d > 0u; d--) {
    let s = pu(1u + d); let idx = r % s; r = r / s;
    ia += idx * pu(9u + d); ib += idx * pu(17u + d);
  }
  o[i] = ${inPlace ? "o[i]" : "a[ia]"} ${BINARY[op]} b[ib];`;
  const key = `binary.${op}${inPlace ? ".inPlace" : ""}`;
  each(rt, key, decls, body, inPlace ? [b] : [a, b], [out], shapeParams(shape, aStrides, bStrides));
}

/** Reductions longer than this are split into chunks summed in parallel, then the chunks' sums in order. */
const REDUCE_CHUNK = 256;

/**
 * dst[Σ idx·dstStrides] += s·g[i]. One thread per dst element reached (the axes where dstStrides is non-zero),
 * summing over the broadcast axes (stride 0) in row-major order: the order of the js loop, so equal results. Long
 * reductions (a bias's gradient over T·B rows) would leave a few threads looping over thousands of rows, so past
 * REDUCE_CHUNK the rows are cut into chunks: one thread per (dst element, chunk), then one per dst element adding
 * its chunks' sums in order (deterministic; rounding differs from the js loop by ~1e-7 relative). Over one axis a
 * chunk's thread loads four rows before adding them, so that four loads are in flight at a time.
 */
export function reduceTo(
  rt: GpuRuntime,
  g: Buf,
  shape: readonly number[],
  dst: Buf,
  dstStrides: Strides,
  s: number,
): void {
  checkRank("reduceTo", shape);
  const gStrides: number[] = [];
  for (let d = shape.length - 1, st = 1; d >= 0; st *= shape[d], d--) gStrides[d] = st;
  const kept = shape.map((_, d) => d).filter((d) => dstStrides[d] !== 0);
  const red = shape.map((_, d) => d).filter((d) => dstStrides[d] === 0);
  const nKept = kept.reduce((p, d) => p * shape[d], 1);
  const nRed = red.reduce((p, d) => p * shape[d], 1);
  if (nKept === 0 || nRed === 0) return;
  const chunks = nRed > 4 * REDUCE_CHUNK ? Math.ceil(nRed / REDUCE_CHUNK) : 1;
  const chunk = Math.ceil(nRed / chunks);
  const pad = (xs: number[]) => [...xs, ...new Array<number>(MAX_RANK - xs.length).fill(0)];
  const params = [
    ...[nKept * chunks, nRed, kept.length, red.length, fbits(s)],
    ...pad(kept.map((d) => shape[d])), // 5..
    ...pad(kept.map((d) => gStrides[d])), // 13..
    ...pad(kept.map((d) => dstStrides[d])), // 21..
    ...pad(red.map((d) => shape[d])), // 29..
    ...pad(red.map((d) => gStrides[d])), // 37..
    ...[nKept, chunk, chunks], // 45, 46, 47
  ];
  // thread i: dst element e = i % nKept (neighbouring threads read neighbouring columns), chunk c = i / nKept
  const locate = /* wgsl */ `
  let e = i % pu(45u); let c = i / pu(45u);
  var r = e; var gb = 0u; var db = 0u;
  for (var d = pu(2u); d > 0u; d--) {
    let sz = pu(4u + d); let idx = r % sz; r = r / sz;
    gb += idx * pu(12u + d); db += idx * pu(20u + d);
  }`;
  const sum = (init: string) => /* wgsl */ `
  var acc = ${init};
  let q1 = min((c + 1u) * pu(46u), pu(1u));
  for (var q = c * pu(46u); q < q1; q++) {
    var rr = q; var go = gb;
    for (var d = pu(3u); d > 0u; d--) {
      let sz = pu(28u + d); go += (rr % sz) * pu(36u + d); rr = rr / sz;
    }
    acc += ${init === "0.0" ? "g[go]" : "pf(4u) * g[go]"};
  }`;
  const decls = (out: string) => /* wgsl */ `
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> ${out}: array<f32>;`;
  if (chunks === 1) {
    each(rt, "reduceTo", decls("dst"), `${locate}${sum("dst[db]")}\n  dst[db] = acc;`, [g], [dst], params);
    return;
  }
  // One reduced axis (a bias's gradient over rows): the rows of a chunk are g[gb + q·stride], loaded four at a time
  // and added in order (the same sums as the general loop, bit for bit). A loop with one load at a time and the
  // index arithmetic of several axes left each thread waiting on memory: the stop-5 profile on an H200 read LSTM
  // 256's (25,600 x 1,024) gradient at 0.69 TB/s, as latency allows with one load in flight per warp.
  const rows = /* wgsl */ `
  let q1 = min((c + 1u) * pu(46u), pu(1u)); let st = pu(37u);
  var acc = 0.0;
  var q = c * pu(46u);
  ${addInOrder("acc", "q", "q1", (q) => `g[gb + ${q} * st]`)}`;
  const part = rt.scratch(nKept * chunks); // (chunks, nKept)
  const oneAxis = red.length === 1;
  each(
    rt,
    `reduceTo.chunks${oneAxis ? ".rows" : ""}`,
    decls("part"),
    `${locate}${oneAxis ? rows : sum("0.0")}\n  part[i] = acc;`,
    [g],
    [part],
    params,
  );
  const total = /* wgsl */ `${locate}
  var acc = 0.0;
  let n = pu(45u);
  var k = 0u;
  ${addInOrder("acc", "k", "pu(47u)", (k) => `g[${k} * n + e]`)}
  dst[db] = dst[db] + pf(4u) * acc;`;
  each(rt, "reduceTo.total", decls("dst"), total, [part], [dst], [nKept, ...params.slice(1)]);
  rt.free(part);
}

export function fill(rt: GpuRuntime, dst: Buf, value: number, offset: number, n: number): void {
  const decls = "@group(0) @binding(1) var<storage, read_write> y: array<f32>;";
  each(rt, "fill", decls, "y[pu(1u) + i] = pf(2u);", [], [dst], [n, offset, fbits(value)]);
}

export function copyBlocks(
  rt: GpuRuntime,
  src: Buf,
  srcOff: number,
  srcStride: number,
  dst: Buf,
  dstOff: number,
  dstStride: number,
  block: number,
  count: number,
  accumulate: boolean,
): void {
  if (block === 0) return;
  const body = /* wgsl */ `
  let o = i / pu(1u); let j = i % pu(1u);
  let s = x[pu(2u) + o * pu(3u) + j];
  let d = pu(4u) + o * pu(5u) + j;
  ${accumulate ? "y[d] = y[d] + s;" : "y[d] = s;"}`;
  each(
    rt,
    `copyBlocks.${accumulate}`,
    RW1,
    body,
    [src],
    [dst],
    [block * count, block, srcOff, srcStride, dstOff, dstStride],
  );
}

/** y[a, j] = s·Σ_i x[a, i, j]: zeros, then the broadcast-gradient reduction (chunked when n is long). */
export function reduceAxis(rt: GpuRuntime, x: Buf, y: Buf, outer: number, n: number, inner: number, s: number): void {
  fill(rt, y, 0, 0, outer * inner);
  reduceTo(rt, x, [outer, n, inner], y, [inner, 0, 1], s);
}

export function broadcastAxis(
  rt: GpuRuntime,
  g: Buf,
  dx: Buf,
  outer: number,
  n: number,
  inner: number,
  s: number,
): void {
  const body = /* wgsl */ `
  let j = i % pu(2u); let a = i / (pu(1u) * pu(2u));
  y[i] = y[i] + pf(3u) * x[a * pu(2u) + j];`;
  each(rt, "broadcastAxis", RW1, body, [g], [dx], [outer * n * inner, n, inner, fbits(s)]);
}

export function swapAxes(
  rt: GpuRuntime,
  x: Buf,
  shape: readonly number[],
  a0: number,
  a1: number,
  y: Buf,
  accumulate: boolean,
): void {
  // x viewed as (A, d0, Bm, d1, C) -> y (A, d1, Bm, d0, C)
  const prod = (lo: number, hi: number) => shape.slice(lo, hi).reduce((p, d) => p * d, 1);
  const [A, d0, Bm, d1, C] = [prod(0, a0), shape[a0], prod(a0 + 1, a1), shape[a1], prod(a1 + 1, shape.length)];
  const body = /* wgsl */ `
  var r = i;
  let c = r % pu(5u); r = r / pu(5u);
  let i0 = r % pu(2u); r = r / pu(2u);
  let bm = r % pu(3u); r = r / pu(3u);
  let i1 = r % pu(4u); let a = r / pu(4u);
  let s = x[(((a * pu(2u) + i0) * pu(3u) + bm) * pu(4u) + i1) * pu(5u) + c];
  ${accumulate ? "y[i] = y[i] + s;" : "y[i] = s;"}`;
  each(rt, `swapAxes.${accumulate}`, RW1, body, [x], [y], [A * d0 * Bm * d1 * C, A, d0, Bm, d1, C]);
}

export function causalMask(rt: GpuRuntime, x: Buf, y: Buf, count: number, T: number): void {
  const body = /* wgsl */ `
  let e = i % (pu(1u) * pu(1u));
  y[i] = select(x[i], negInf(), e % pu(1u) > e / pu(1u));`;
  each(rt, "causalMask", RW1, body, [x], [y], [count * T * T, T]);
}

export function causalMaskBackward(rt: GpuRuntime, g: Buf, dx: Buf, count: number, T: number): void {
  const body = /* wgsl */ `
  let e = i % (pu(1u) * pu(1u));
  if (e % pu(1u) <= e / pu(1u)) { y[i] = y[i] + x[i]; }`;
  each(rt, "causalMaskBackward", RW1, body, [g], [dx], [count * T * T, T]);
}

export function scaleBy(rt: GpuRuntime, x: Buf, n: number, f: Buf, fOff: number): void {
  const decls = /* wgsl */ `
@group(0) @binding(1) var<storage, read> f: array<f32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;`;
  each(rt, "scaleBy", decls, "x[i] = x[i] * f[pu(1u)];", [f], [x], [n, fOff]);
}

// ---- optimizers: w, slots read_write; g read. g' = g + wd·w (pf(wdIndex))

const OPT_DECLS = (slots: string[]) => /* wgsl */ `
@group(0) @binding(1) var<storage, read> g: array<f32>;
@group(0) @binding(2) var<storage, read_write> w: array<f32>;
${slots.map((s, k) => `@group(0) @binding(${3 + k}) var<storage, read_write> ${s}: array<f32>;`).join("\n")}`;

export function adam(rt: GpuRuntime, w: Buf, g: Buf, m: Buf, v: Buf, n: number, h: AdamStep): void {
  // params: n, lr, β1, β2, eps, wd, bc1, bc2
  const body = /* wgsl */ `
  let gi = g[i] + pf(5u) * w[i];
  let mi = pf(2u) * m[i] + (1.0 - pf(2u)) * gi;
  let vi = pf(3u) * v[i] + (1.0 - pf(3u)) * gi * gi;
  m[i] = mi; v[i] = vi;
  w[i] = w[i] - pf(1u) * (mi / pf(6u)) / (sqrt(vi / pf(7u)) + pf(4u));`;
  const p = [h.lr, h.beta1, h.beta2, h.eps, h.weightDecay, h.bc1, h.bc2].map(fbits);
  each(rt, "adam", OPT_DECLS(["m", "v"]), body, [g], [w, m, v], [n, ...p]);
}

export function rmsprop(rt: GpuRuntime, w: Buf, g: Buf, s: Buf, n: number, h: RmspropStep): void {
  // params: n, lr, ρ, eps, wd
  const body = /* wgsl */ `
  let gi = g[i] + pf(4u) * w[i];
  let si = pf(2u) * s[i] + (1.0 - pf(2u)) * gi * gi;
  s[i] = si;
  w[i] = w[i] - pf(1u) * gi / (sqrt(si) + pf(3u));`;
  each(rt, "rmsprop", OPT_DECLS(["s"]), body, [g], [w, s], [n, ...[h.lr, h.rho, h.eps, h.weightDecay].map(fbits)]);
}

export function adagrad(rt: GpuRuntime, w: Buf, g: Buf, sum: Buf, n: number, h: AdagradStep): void {
  // params: n, lr, eps, wd
  const body = /* wgsl */ `
  let gi = g[i] + pf(3u) * w[i];
  let si = s[i] + gi * gi;
  s[i] = si;
  w[i] = w[i] - pf(1u) * gi / (sqrt(si) + pf(2u));`;
  each(rt, "adagrad", OPT_DECLS(["s"]), body, [g], [w, sum], [n, ...[h.lr, h.eps, h.weightDecay].map(fbits)]);
}

export function sgd(rt: GpuRuntime, w: Buf, g: Buf, buf: Buf, n: number, h: SgdStep): void {
  // params: n, lr, μ, wd; the branches (momentum, first, nesterov) are per pipeline
  const mom = h.momentum !== 0;
  const body = mom
    ? /* wgsl */ `
  let gi = g[i] + pf(3u) * w[i];
  let bi = ${h.first ? "gi" : "pf(2u) * b[i] + gi"};
  b[i] = bi;
  w[i] = w[i] - pf(1u) * ${h.nesterov ? "(gi + pf(2u) * bi)" : "bi"};`
    : /* wgsl */ `
  w[i] = w[i] - pf(1u) * (g[i] + pf(3u) * w[i]);`;
  const key = `sgd.${mom}.${mom && h.first}.${mom && h.nesterov}`;
  each(rt, key, OPT_DECLS(mom ? ["b"] : []), body, [g], mom ? [w, buf] : [w], [
    n,
    ...[h.lr, h.momentum, h.weightDecay].map(fbits),
  ]);
}

// ---- norms

/** Elements one workgroup sums in sumAll's first stage (256 threads x 64 each). */
const SUM_CHUNK = 256 * 64;

/**
 * out[off] = (Σ_i x[i] or x[i]²) / div, i < n. One workgroup per SUM_CHUNK elements: each thread sums a strided
 * share, then a tree; past one chunk the workgroups' sums go to a scratch and are summed the same way. Deterministic
 * (fixed shares and trees), unlike atomics; a large weight's squared norm no longer waits on one workgroup.
 */
export function sumAll(rt: GpuRuntime, x: Buf, n: number, out: Buf, off: number, square: boolean, div: number): void {
  const groups = Math.ceil(n / SUM_CHUNK);
  // params: n, off, div, chunk; workgroup w sums [w·chunk, min(n, (w+1)·chunk)) into out[off + w]
  const code = () => /* wgsl */ `
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
var<workgroup> red: array<f32, 256>;
${treeFn("sumTree", "a + b", 256)}
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let end = min(pu(0u), (wid.x + 1u) * pu(3u));
  var s = 0.0;
  for (var i = wid.x * pu(3u) + lid.x; i < end; i += 256u) { let v = x[i]; s += ${square ? "v * v" : "v"}; }
  let total = sumTree(lid.x, s);
  if (lid.x == 0u) { out[pu(1u) + wid.x] = total / pf(2u); }
}`;
  if (groups <= 1) {
    rt.run(`sumAll.${square}`, code, [x], [out], [n, off, fbits(div), Math.max(n, 1)], [1]);
    return;
  }
  const partial = rt.scratch(groups);
  rt.run(`sumAll.${square}`, code, [x], [partial], [n, 0, fbits(1), SUM_CHUNK], [groups]);
  sumAll(rt, partial, groups, out, off, false, div);
  rt.free(partial);
}

/** Dropout's mask: the WGSL copy of dropHash in ../../js-ops.ts (u32 arithmetic wraps as Math.imul does). */
export function dropoutMask(rt: GpuRuntime, out: Buf, n: number, seed: number, threshold: number, keep: number): void {
  const decls = /* wgsl */ `
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
fn lowbias32(v: u32) -> u32 {
  var x = v;
  x ^= x >> 16u; x *= 0x7feb352du; x ^= x >> 15u; x *= 0x846ca68bu; x ^= x >> 16u;
  return x;
}`;
  const body = /* wgsl */ `
  let seed = pu(1u);
  var h = i * 0x9e3779b9u + seed;
  h = lowbias32(h);
  h = lowbias32(h ^ seed);
  y[i] = select(pf(3u), 0.0, h < pu(2u));`;
  each(rt, "dropoutMask", decls, body, [], [out], [n, seed >>> 0, threshold >>> 0, fbits(keep)]);
}

export function clipFactor(rt: GpuRuntime, sq: Buf, count: number, maxNorm: number, out: Buf): void {
  const code = () => /* wgsl */ `
@group(0) @binding(1) var<storage, read> sq: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(1)
fn main() {
  var s = 0.0;
  for (var i = 0u; i < pu(0u); i++) { s += sq[i]; }
  let norm = sqrt(s);
  let maxNorm = pf(1u);
  out[0] = norm;
  // norm <= 3.4e38 is false for Infinity and NaN: a diverged gradient is left unscaled for the caller to see
  out[1] = select(1.0, maxNorm / (norm + 1e-6), norm > maxNorm && norm <= 3.4e38);
}`;
  rt.run("clipFactor", code, [sq], [out], [count, fbits(maxNorm)], [1]);
}
