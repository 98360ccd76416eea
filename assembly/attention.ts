// Multi-head causal self-attention: forward, backward, and the cached step of generation.
//
// Legend: B batch, T positions, C channels, nH heads of hd = C / nH, N cache length. q, k, v, out are (B, T, C)
// with head h in columns h·hd .. h·hd + hd; att is (B, nH, T, T). Ranged kernels take (batch, head) pairs
// [p0, p1), p = b·nH + h, so that threads can each take some heads: each pair writes only its own slice of the
// outputs, and every element is computed by the same operations whatever the range (bit-identical across threads).

import { vexpz } from "./elementwise";

// Σ_d a[d]·b[d], d < n: four lanes, then across, then the tail in order.
// @ts-ignore: decorator
@inline
function dot(a: usize, b: usize, n: i32): f32 {
  let s = f32x4.splat(0);
  let d = 0;
  for (; d + 4 <= n; d += 4) s = f32x4.add(s, f32x4.mul(v128.load(a + <usize>d * 4), v128.load(b + <usize>d * 4)));
  let r = f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1) + (f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3));
  for (; d < n; d++) r += load<f32>(a + <usize>d * 4) * load<f32>(b + <usize>d * 4);
  return r;
}

// y[d] += s·x[d], d < n
// @ts-ignore: decorator
@inline
function axpy(s: f32, x: usize, y: usize, n: i32): void {
  const sv = f32x4.splat(s);
  let d = 0;
  for (; d + 4 <= n; d += 4) {
    const o = <usize>d * 4;
    v128.store(y + o, f32x4.add(v128.load(y + o), f32x4.mul(sv, v128.load(x + o))));
  }
  for (; d < n; d++) store<f32>(y + <usize>d * 4, load<f32>(y + <usize>d * 4) + s * load<f32>(x + <usize>d * 4));
}

// p[0..n) = softmax(p[0..n)) in place.
function softmaxInPlace(p: usize, n: i32): void {
  let m: f32 = -Infinity;
  for (let j = 0; j < n; j++) m = max(m, load<f32>(p + <usize>j * 4));
  const mv = f32x4.splat(m);
  let s = f32x4.splat(0);
  let j = 0;
  for (; j + 4 <= n; j += 4) {
    const e = vexpz(f32x4.sub(v128.load(p + <usize>j * 4), mv));
    v128.store(p + <usize>j * 4, e);
    s = f32x4.add(s, e);
  }
  let z = f32x4.extract_lane(s, 0) + f32x4.extract_lane(s, 1) + (f32x4.extract_lane(s, 2) + f32x4.extract_lane(s, 3));
  for (; j < n; j++) {
    const e = f32x4.extract_lane(vexpz(f32x4.splat(load<f32>(p + <usize>j * 4) - m)), 0);
    store<f32>(p + <usize>j * 4, e);
    z += e;
  }
  const inv: f32 = 1 / z;
  for (j = 0; j < n; j++) store<f32>(p + <usize>j * 4, load<f32>(p + <usize>j * 4) * inv);
}

/** Pairs p0 <= p < p1 (p = b·nH + h) of out_h = softmax(mask(q_h k_hᵀ/√hd)) v_h; att keeps the weights. */
export function attention(
  q: usize,
  k: usize,
  v: usize,
  out: usize,
  att: usize,
  T: i32,
  C: i32,
  nH: i32,
  p0: i32,
  p1: i32,
): void {
  const hd = C / nH;
  const sc = <f32>(1 / Math.sqrt(<f64>hd));
  for (let p = p0; p < p1; p++) {
    const b = p / nH;
    const h = p % nH;
    const base = (<usize>b * T * C + <usize>h * hd) * 4;
    for (let i = 0; i < T; i++) {
      const row = att + (<usize>p * T + i) * T * 4;
      const qi = q + base + <usize>i * C * 4;
      for (let j = 0; j <= i; j++) store<f32>(row + <usize>j * 4, dot(qi, k + base + <usize>j * C * 4, hd) * sc);
      softmaxInPlace(row, i + 1);
      if (i + 1 < T) memory.fill(row + <usize>(i + 1) * 4, 0, <usize>(T - i - 1) * 4);
      const oi = out + base + <usize>i * C * 4;
      memory.fill(oi, 0, <usize>hd * 4);
      for (let j = 0; j <= i; j++) axpy(load<f32>(row + <usize>j * 4), v + base + <usize>j * C * 4, oi, hd);
    }
  }
}

/**
 * Pairs p0 <= p < p1 of the backward pass: dv_j += Σ_i p_ij g_i; dp_ij = g_i·v_j; ds_ij = p_ij (dp_ij - Σ_k p_ik dp_ik);
 * dq_i += Σ_j ds_ij k_j/√hd; dk_j += Σ_i ds_ij q_i/√hd (pointers 0: not wanted). scratch: T floats of this job's own.
 */
export function attentionBackward(
  q: usize,
  k: usize,
  v: usize,
  att: usize,
  g: usize,
  dq: usize,
  dk: usize,
  dv: usize,
  T: i32,
  C: i32,
  nH: i32,
  scratch: usize,
  p0: i32,
  p1: i32,
): void {
  const hd = C / nH;
  const sc = <f32>(1 / Math.sqrt(<f64>hd));
  for (let p = p0; p < p1; p++) {
    const b = p / nH;
    const h = p % nH;
    const base = (<usize>b * T * C + <usize>h * hd) * 4;
    for (let i = 0; i < T; i++) {
      const row = att + (<usize>p * T + i) * T * 4;
      const gi = g + base + <usize>i * C * 4;
      let s: f32 = 0;
      for (let j = 0; j <= i; j++) {
        const dp = dot(gi, v + base + <usize>j * C * 4, hd);
        store<f32>(scratch + <usize>j * 4, dp);
        s += load<f32>(row + <usize>j * 4) * dp;
      }
      for (let j = 0; j <= i; j++) {
        const pij = load<f32>(row + <usize>j * 4);
        const ds = pij * (load<f32>(scratch + <usize>j * 4) - s) * sc;
        const off = base + <usize>j * C * 4;
        if (dv) axpy(pij, gi, dv + off, hd);
        if (dq) axpy(ds, k + off, dq + base + <usize>i * C * 4, hd);
        if (dk) axpy(ds, q + base + <usize>i * C * 4, dk + off, hd);
      }
    }
  }
}

/**
 * T new positions pos0 .. pos0+T-1 against the key/value cache (B, N, C): their k and v (from qkv (B, T, 3C)) are
 * written into the caches first, then query t attends to positions 0 .. pos0+t. out (B, T, C). scratch: N floats.
 */
export function attentionCached(
  qkv: usize,
  kc: usize,
  vc: usize,
  out: usize,
  B: i32,
  T: i32,
  C: i32,
  nH: i32,
  N: i32,
  pos0: i32,
  scratch: usize,
): void {
  const hd = C / nH;
  const sc = <f32>(1 / Math.sqrt(<f64>hd));
  const row = <usize>C * 4;
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const src = qkv + (<usize>b * T + t) * 3 * row;
      const dst = (<usize>b * N + pos0 + t) * row;
      memory.copy(kc + dst, src + row, row);
      memory.copy(vc + dst, src + 2 * row, row);
    }
  }
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < nH; h++) {
      const ho = <usize>h * hd * 4;
      for (let t = 0; t < T; t++) {
        const qi = qkv + (<usize>b * T + t) * 3 * row + ho;
        const n = pos0 + t + 1;
        for (let j = 0; j < n; j++) store<f32>(scratch + <usize>j * 4, dot(qi, kc + (<usize>b * N + j) * row + ho, hd) * sc);
        softmaxInPlace(scratch, n);
        const oi = out + (<usize>b * T + t) * row + ho;
        memory.fill(oi, 0, <usize>hd * 4);
        for (let j = 0; j < n; j++) axpy(load<f32>(scratch + <usize>j * 4), vc + (<usize>b * N + j) * row + ho, oi, hd);
      }
    }
  }
}
