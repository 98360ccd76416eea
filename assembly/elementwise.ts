// Elementwise kernels, broadcasting and layout moves, on wasm SIMD (f32x4).
//
// Legend: n elements; `shape`/`strides` arrays are i32 in linear memory (rank entries each); x, y, g, dx byte
// addresses of float32 buffers. Ranged kernels take [i0, i1) so that threads can each take a part (threads.ts);
// every element is computed by the same operations whatever the range, so a split result is bit-identical to an
// unsplit one. Row tails (fewer than 4 elements) go through the same vector code on a splat, never a separate scalar
// formula, for the same reason.

import { vexp, vsigmoid, vtanh } from "./activations";

// unary op codes (the order of UnaryOp in src/engine/backend.ts; src/engine/backends/wasm/kernels.ts maps names)
export const U_SIGMOID: i32 = 0;
export const U_TANH: i32 = 1;
export const U_EXP: i32 = 2;
export const U_LOG: i32 = 3;
export const U_RELU: i32 = 4;
export const U_GELU: i32 = 5;

const GELU_C: f32 = 0.7978845608028654; // sqrt(2/π)
const GELU_A: f32 = 0.044715;
const EXP_MIN: f32 = -87.3;

/** e^x, 0 below e^-87.3 (vexp clamps there; a masked -Infinity logit must give exactly 0). */
// @ts-ignore: decorator
@inline
export function vexpz(x: v128): v128 {
  return v128.andnot(vexp(x), f32x4.lt(x, f32x4.splat(EXP_MIN)));
}

// log through float64 per lane: correctly rounded to float32, as the js backend's Math.log.
// @ts-ignore: decorator
@inline
function vlog(x: v128): v128 {
  let r = f32x4.splat(0);
  r = f32x4.replace_lane(r, 0, <f32>Math.log(<f64>f32x4.extract_lane(x, 0)));
  r = f32x4.replace_lane(r, 1, <f32>Math.log(<f64>f32x4.extract_lane(x, 1)));
  r = f32x4.replace_lane(r, 2, <f32>Math.log(<f64>f32x4.extract_lane(x, 2)));
  r = f32x4.replace_lane(r, 3, <f32>Math.log(<f64>f32x4.extract_lane(x, 3)));
  return r;
}

// gelu(x) = ½x(1 + tanh(u)), u = c(x + a x³), taken as x·sigmoid(2u) (the same function: ½(1 + tanh u) = sigmoid(2u)),
// one exp and one division, and no cancellation anywhere (1 + tanh u near -1 would cancel; the sigmoid does not).
// vgeluSigmoid(x, x²) is that sigmoid(2u), for the forward and the gradient.
// @ts-ignore: decorator
@inline
function vgeluSigmoid(x: v128, x2: v128): v128 {
  const u = f32x4.mul(f32x4.splat(GELU_C), f32x4.add(x, f32x4.mul(f32x4.splat(GELU_A), f32x4.mul(x2, x))));
  return vsigmoid(f32x4.add(u, u));
}

// @ts-ignore: decorator
@inline
function vgelu(x: v128): v128 {
  return f32x4.mul(x, vgeluSigmoid(x, f32x4.mul(x, x)));
}

// @ts-ignore: decorator
@inline
function vunary(op: i32, x: v128): v128 {
  switch (op) {
    case U_SIGMOID:
      return vsigmoid(x);
    case U_TANH:
      return vtanh(x);
    case U_EXP:
      return vexpz(x);
    case U_LOG:
      return vlog(x);
    case U_RELU:
      return f32x4.max(x, f32x4.splat(0));
    default:
      return vgelu(x);
  }
}

// g·f'(x), from whichever of x and y = f(x) is cheaper.
// @ts-ignore: decorator
@inline
function vunaryGrad(op: i32, x: v128, y: v128, g: v128): v128 {
  const one = f32x4.splat(1);
  switch (op) {
    case U_SIGMOID:
      return f32x4.mul(g, f32x4.mul(y, f32x4.sub(one, y)));
    case U_TANH:
      return f32x4.mul(g, f32x4.sub(one, f32x4.mul(y, y)));
    case U_EXP:
      return f32x4.mul(g, y);
    case U_LOG:
      return f32x4.div(g, x);
    case U_RELU:
      return v128.and(g, f32x4.gt(x, f32x4.splat(0)));
    default: {
      // d/dx x·s(2u) = s + x·2s(1 - s)·u', s = sigmoid(2u), u' = c(1 + 3a x²)
      const x2 = f32x4.mul(x, x);
      const sg = vgeluSigmoid(x, x2);
      const du = f32x4.mul(f32x4.splat(GELU_C), f32x4.add(one, f32x4.mul(f32x4.splat(3 * GELU_A), x2)));
      const xs = f32x4.mul(f32x4.add(x, x), f32x4.mul(sg, f32x4.sub(one, sg)));
      const d = f32x4.add(sg, f32x4.mul(xs, du));
      return f32x4.mul(g, d);
    }
  }
}

// Loads the rem (< 4) floats at p into lanes 0..rem-1 of a vector (zeros above).
// @ts-ignore: decorator
@inline
function loadTail(p: usize, rem: i32): v128 {
  let v = f32x4.splat(0);
  v = f32x4.replace_lane(v, 0, load<f32>(p));
  if (rem > 1) v = f32x4.replace_lane(v, 1, load<f32>(p, 4));
  if (rem > 2) v = f32x4.replace_lane(v, 2, load<f32>(p, 8));
  return v;
}

// @ts-ignore: decorator
@inline
function storeTail(p: usize, v: v128, rem: i32): void {
  store<f32>(p, f32x4.extract_lane(v, 0));
  if (rem > 1) store<f32>(p, f32x4.extract_lane(v, 1), 4);
  if (rem > 2) store<f32>(p, f32x4.extract_lane(v, 2), 8);
}

/** y[i] = f(x[i]), i0 <= i < i1. */
export function unary(op: i32, x: usize, y: usize, i0: i32, i1: i32): void {
  let i = i0;
  for (; i + 4 <= i1; i += 4) {
    const o = <usize>i * 4;
    v128.store(y + o, vunary(op, v128.load(x + o)));
  }
  if (i < i1) {
    const o = <usize>i * 4;
    storeTail(y + o, vunary(op, loadTail(x + o, i1 - i)), i1 - i);
  }
}

/** dx[i] += g[i]·f'(x[i]), i0 <= i < i1. */
export function unaryBackward(op: i32, x: usize, y: usize, g: usize, dx: usize, i0: i32, i1: i32): void {
  let i = i0;
  for (; i + 4 <= i1; i += 4) {
    const o = <usize>i * 4;
    const d = vunaryGrad(op, v128.load(x + o), v128.load(y + o), v128.load(g + o));
    v128.store(dx + o, f32x4.add(v128.load(dx + o), d));
  }
  if (i < i1) {
    const o = <usize>i * 4;
    const rem = i1 - i;
    const d = vunaryGrad(op, loadTail(x + o, rem), loadTail(y + o, rem), loadTail(g + o, rem));
    storeTail(dx + o, f32x4.add(loadTail(dx + o, rem), d), rem);
  }
}

/** y[i] = s·x[i] (or += with acc), i0 <= i < i1. Plain multiply and add: scalar and vector lanes round alike. */
export function scale(x: usize, y: usize, s: f32, acc: bool, i0: i32, i1: i32): void {
  const sv = f32x4.splat(s);
  let i = i0;
  for (; i + 4 <= i1; i += 4) {
    const o = <usize>i * 4;
    const v = f32x4.mul(sv, v128.load(x + o));
    v128.store(y + o, acc ? f32x4.add(v128.load(y + o), v) : v);
  }
  for (; i < i1; i++) {
    const o = <usize>i * 4;
    const v = s * load<f32>(x + o);
    store<f32>(y + o, acc ? load<f32>(y + o) + v : v);
  }
}

/** p[i] = value, i0 <= i < i1 (zeroing and filling large storage, split over threads). */
export function fillRange(p: usize, value: f32, i0: i32, i1: i32): void {
  if (i1 <= i0) return;
  if (reinterpret<u32>(value) == 0) {
    // +0 only: -0 has its sign bit set
    memory.fill(p + <usize>i0 * 4, 0, <usize>(i1 - i0) * 4);
    return;
  }
  const v = f32x4.splat(value);
  let i = i0;
  for (; i + 4 <= i1; i += 4) v128.store(p + <usize>i * 4, v);
  for (; i < i1; i++) store<f32>(p + <usize>i * 4, value);
}

/** dst[i] = src[i], i0 <= i < i1 (the ranges do not overlap). */
export function copyRange(src: usize, dst: usize, i0: i32, i1: i32): void {
  if (i1 > i0) memory.copy(dst + <usize>i0 * 4, src + <usize>i0 * 4, <usize>(i1 - i0) * 4);
}

/** x[i] *= f, i < n, f = the float at fp (global-norm clipping's factor, computed in memory). */
export function scaleBy(x: usize, n: i32, fp: usize): void {
  const f = load<f32>(fp);
  scale(x, x, f, false, 0, n);
}

// ---------------------------------------------------------------------------------------------------------------
// Broadcasting: out[i] = a[ia] op b[ib], ia = Σ idx_d·aStrides[d]. Rows are the last axis; the outer index is
// carried as a counter over the other axes.

export const B_ADD: i32 = 0;
export const B_SUB: i32 = 1;
export const B_MUL: i32 = 2;

// @ts-ignore: decorator
@inline
function vbin(op: i32, a: v128, b: v128): v128 {
  return op == B_ADD ? f32x4.add(a, b) : op == B_SUB ? f32x4.sub(a, b) : f32x4.mul(a, b);
}

// @ts-ignore: decorator
@inline
function sbin(op: i32, a: f32, b: f32): f32 {
  return op == B_ADD ? a + b : op == B_SUB ? a - b : a * b;
}

// Offset (in elements) of outer row r of an operand: r decomposed over axes 0..rank-2 of shape.
function rowOffset(r: i32, shape: usize, strides: usize, rank: i32): i32 {
  let off = 0;
  for (let d = rank - 2; d >= 0; d--) {
    const n = load<i32>(shape + <usize>d * 4);
    off += (r % n) * load<i32>(strides + <usize>d * 4);
    r /= n;
  }
  return off;
}

/** Rows r0 <= r < r1 (a row: the last axis of shape) of the broadcasting binary op. */
export function binary(
  op: i32,
  a: usize,
  aStrides: usize,
  b: usize,
  bStrides: usize,
  out: usize,
  shape: usize,
  rank: i32,
  r0: i32,
  r1: i32,
): void {
  const L = rank > 0 ? load<i32>(shape + <usize>(rank - 1) * 4) : 1;
  const sa = rank > 0 ? load<i32>(aStrides + <usize>(rank - 1) * 4) : 0;
  const sb = rank > 0 ? load<i32>(bStrides + <usize>(rank - 1) * 4) : 0;
  for (let r = r0; r < r1; r++) {
    const pa = a + <usize>rowOffset(r, shape, aStrides, rank) * 4;
    const pb = b + <usize>rowOffset(r, shape, bStrides, rank) * 4;
    const po = out + <usize>r * L * 4;
    let j = 0;
    if (sa == 1 && sb == 1) {
      for (; j + 4 <= L; j += 4) {
        const o = <usize>j * 4;
        v128.store(po + o, vbin(op, v128.load(pa + o), v128.load(pb + o)));
      }
    } else if (sa == 1 && sb == 0) {
      const bv = f32x4.splat(load<f32>(pb));
      for (; j + 4 <= L; j += 4) {
        const o = <usize>j * 4;
        v128.store(po + o, vbin(op, v128.load(pa + o), bv));
      }
    } else if (sa == 0 && sb == 1) {
      const av = f32x4.splat(load<f32>(pa));
      for (; j + 4 <= L; j += 4) {
        const o = <usize>j * 4;
        v128.store(po + o, vbin(op, av, v128.load(pb + o)));
      }
    }
    for (; j < L; j++) {
      const va = load<f32>(pa + <usize>(j * sa) * 4);
      const vb = load<f32>(pb + <usize>(j * sb) * 4);
      store<f32>(po + <usize>j * 4, sbin(op, va, vb));
    }
  }
}

/** dst[Σ idx_d·dstStrides[d]] += s·g[i] over every index of shape, in row-major order (one thread: targets collide). */
export function reduceTo(g: usize, shape: usize, rank: i32, dst: usize, dstStrides: usize, s: f32): void {
  const L = rank > 0 ? load<i32>(shape + <usize>(rank - 1) * 4) : 1;
  const sd = rank > 0 ? load<i32>(dstStrides + <usize>(rank - 1) * 4) : 0;
  let rows = 1;
  for (let d = 0; d < rank - 1; d++) rows *= load<i32>(shape + <usize>d * 4);
  const sv = f32x4.splat(s);
  for (let r = 0; r < rows; r++) {
    const pd = dst + <usize>rowOffset(r, shape, dstStrides, rank) * 4;
    const pg = g + <usize>r * L * 4;
    let j = 0;
    if (sd == 1) {
      for (; j + 4 <= L; j += 4) {
        const o = <usize>j * 4;
        v128.store(pd + o, f32x4.add(v128.load(pd + o), f32x4.mul(sv, v128.load(pg + o))));
      }
      for (; j < L; j++) {
        const o = <usize>j * 4;
        store<f32>(pd + o, load<f32>(pd + o) + s * load<f32>(pg + o));
      }
    } else if (sd == 0) {
      let acc: f32 = 0;
      for (; j < L; j++) acc += load<f32>(pg + <usize>j * 4);
      store<f32>(pd, load<f32>(pd) + s * acc);
    } else {
      for (; j < L; j++) {
        const q = pd + <usize>(j * sd) * 4;
        store<f32>(q, load<f32>(q) + s * load<f32>(pg + <usize>j * 4));
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Layout

// dst[0..n) (+)= src[0..n)
// @ts-ignore: decorator
@inline
function moveRow(src: usize, dst: usize, n: i32, acc: bool): void {
  if (!acc) {
    memory.copy(dst, src, <usize>n * 4);
    return;
  }
  let j = 0;
  for (; j + 4 <= n; j += 4) {
    const o = <usize>j * 4;
    v128.store(dst + o, f32x4.add(v128.load(dst + o), v128.load(src + o)));
  }
  for (; j < n; j++) {
    const o = <usize>j * 4;
    store<f32>(dst + o, load<f32>(dst + o) + load<f32>(src + o));
  }
}

/** count blocks of `block` floats: dst[dstOff + o·dstStride + j] (+)= src[srcOff + o·srcStride + j]. */
export function copyBlocks(
  src: usize,
  srcStride: i32,
  dst: usize,
  dstStride: i32,
  block: i32,
  count: i32,
  acc: bool,
): void {
  for (let o = 0; o < count; o++) {
    moveRow(src + <usize>o * srcStride * 4, dst + <usize>o * dstStride * 4, block, acc);
  }
}

/** y[a, j] = s·Σ_i x[a, i, j], x viewed as (outer, n, inner); the sum runs over i in order, then one multiply. */
export function reduceAxis(x: usize, y: usize, outer: i32, n: i32, inner: i32, s64: f64): void {
  const s = <f32>s64;
  if (inner == 1) {
    // one sum per output: in float64, as the js backend
    for (let a = 0; a < outer; a++) {
      let t: f64 = 0;
      for (let i = 0; i < n; i++) t += load<f32>(x + (<usize>a * n + i) * 4);
      store<f32>(y + <usize>a * 4, <f32>(t * s64));
    }
    return;
  }
  const sv = f32x4.splat(s);
  for (let a = 0; a < outer; a++) {
    const py = y + <usize>a * inner * 4;
    const px = x + <usize>a * n * inner * 4;
    memory.fill(py, 0, <usize>inner * 4);
    for (let i = 0; i < n; i++) moveRow(px + <usize>i * inner * 4, py, inner, true);
    let j = 0;
    for (; j + 4 <= inner; j += 4) v128.store(py + <usize>j * 4, f32x4.mul(sv, v128.load(py + <usize>j * 4)));
    for (; j < inner; j++) store<f32>(py + <usize>j * 4, s * load<f32>(py + <usize>j * 4));
  }
}

/** dx[a, i, j] += s·g[a, j], dx viewed as (outer, n, inner). */
export function broadcastAxis(g: usize, dx: usize, outer: i32, n: i32, inner: i32, s: f32): void {
  for (let a = 0; a < outer; a++) {
    const pg = g + <usize>a * inner * 4;
    for (let i = 0; i < n; i++) scale(pg, dx + <usize>(a * n + i) * inner * 4, s, true, 0, inner);
  }
}

/**
 * y = x with two axes swapped, x viewed as (P, n0, M, n1, Q) and y as (P, n1, M, n0, Q):
 * y[p, j, m, i, q] (+)= x[p, i, m, j, q]. Whole Q-runs move at once (Q is the head width in attention).
 */
export function swapAxes(x: usize, y: usize, P: i32, n0: i32, M: i32, n1: i32, Q: i32, acc: bool): void {
  for (let p = 0; p < P; p++) {
    for (let i = 0; i < n0; i++) {
      for (let m = 0; m < M; m++) {
        for (let j = 0; j < n1; j++) {
          const xo = ((((<usize>p * n0 + i) * M + m) * n1 + j) * Q) * 4;
          const yo = ((((<usize>p * n1 + j) * M + m) * n0 + i) * Q) * 4;
          moveRow(x + xo, y + yo, Q, acc);
        }
      }
    }
  }
}

/** For count (T, T) matrices: y = x, entries above the diagonal -Infinity. */
export function causalMask(x: usize, y: usize, count: i32, T: i32): void {
  for (let c = 0; c < count; c++) {
    for (let i = 0; i < T; i++) {
      const row = (<usize>c * T + i) * T * 4;
      memory.copy(y + row, x + row, <usize>(i + 1) * 4);
      for (let j = i + 1; j < T; j++) store<f32>(y + row + <usize>j * 4, -Infinity);
    }
  }
}

/** dx += g on and below the diagonal. */
export function causalMaskBackward(g: usize, dx: usize, count: i32, T: i32): void {
  for (let c = 0; c < count; c++) {
    for (let i = 0; i < T; i++) {
      const row = (<usize>c * T + i) * T * 4;
      moveRow(g + row, dx + row, i + 1, true);
    }
  }
}
