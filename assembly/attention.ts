// Multi-head causal self-attention: forward, backward, and the cached step of generation.
//
// Legend: B batch, T positions, C channels, nH heads of hd = C / nH, N cache length. q, k, v, out are (B, T, C)
// with head h in columns h·hd .. h·hd + hd; att is (B, nH, T, T). Ranged kernels take (batch, head) pairs
// [p0, p1), p = b·nH + h, so that threads can each take some heads: each pair writes only its own slice of the
// outputs, and every element is computed by the same operations whatever the range (bit-identical across threads).
// Their vector sums take madd (gemm.ts): a fused multiply-add in the relaxed-SIMD build, a multiply and an
// add in the plain one (the same bits there as before stop 23).

import { vexpz } from "./elementwise";
import { madd } from "./gemm";

// Σ_d a[d]·b[d], d < n: four lanes, then across, then the tail in order.
// @ts-ignore: decorator
@inline
function dot(a: usize, b: usize, n: i32): f32 {
  let s = f32x4.splat(0);
  let d = 0;
  for (; d + 4 <= n; d += 4) s = madd(v128.load(a + <usize>d * 4), v128.load(b + <usize>d * 4), s);
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

// yT[d·T + j] = y[j·C + d], j < T, d < hd: one head's keys (or values) transposed, so that a row's scores against
// them are four at a time.
function transposeHead(y: usize, yT: usize, T: i32, C: i32, hd: i32): void {
  for (let j = 0; j < T; j++) {
    const src = y + <usize>j * C * 4;
    for (let d = 0; d < hd; d++) store<f32>(yT + (<usize>d * T + j) * 4, load<f32>(src + <usize>d * 4));
  }
}

// out[j] = sc·Σ_d x[d]·yT[d·T + j], j < n: each sum in d order, sixteen (then four, then one) j at a time. A block
// that fits in the row's T also runs past n: out[n .. n + 15) may be written too, with scores the caller ignores.
function scores(x: usize, yT: usize, T: i32, n: i32, hd: i32, sc: f32, out: usize): void {
  const rs = <usize>T * 4;
  const scv = f32x4.splat(sc);
  let j = 0;
  for (; j < n && j + 16 <= T; j += 16) {
    let a0 = f32x4.splat(0);
    let a1 = a0;
    let a2 = a0;
    let a3 = a0;
    let y = yT + <usize>j * 4;
    for (let d = 0; d < hd; d++) {
      const w = f32x4.splat(load<f32>(x + <usize>d * 4));
      a0 = madd(w, v128.load(y), a0);
      a1 = madd(w, v128.load(y, 16), a1);
      a2 = madd(w, v128.load(y, 32), a2);
      a3 = madd(w, v128.load(y, 48), a3);
      y += rs;
    }
    const o = out + <usize>j * 4;
    v128.store(o, f32x4.mul(a0, scv));
    v128.store(o, f32x4.mul(a1, scv), 16);
    v128.store(o, f32x4.mul(a2, scv), 32);
    v128.store(o, f32x4.mul(a3, scv), 48);
  }
  for (; j < n && j + 4 <= T; j += 4) {
    let a = f32x4.splat(0);
    let y = yT + <usize>j * 4;
    for (let d = 0; d < hd; d++) {
      a = madd(f32x4.splat(load<f32>(x + <usize>d * 4)), v128.load(y), a);
      y += rs;
    }
    v128.store(out + <usize>j * 4, f32x4.mul(a, scv));
  }
  for (; j < n; j++) {
    let r: f32 = 0;
    for (let d = 0; d < hd; d++) r += load<f32>(x + <usize>d * 4) * load<f32>(yT + (<usize>d * T + j) * 4);
    store<f32>(out + <usize>j * 4, r * sc);
  }
}

// Sixteen floats at o from four vectors.
// @ts-ignore: decorator
@inline
function store16(o: usize, a0: v128, a1: v128, a2: v128, a3: v128): void {
  v128.store(o, a0);
  v128.store(o, a1, 16);
  v128.store(o, a2, 32);
  v128.store(o, a3, 48);
}

// dst[d] += Σ_t coef[t·cs]·src[t·ss + d], t < n, d < hd (strides in bytes): each sum in t order, sixteen (then four,
// then one) columns held in registers across t.
function combine(coef: usize, cs: usize, src: usize, ss: usize, n: i32, dst: usize, hd: i32): void {
  let d = 0;
  for (; d + 16 <= hd; d += 16) {
    const o = dst + <usize>d * 4;
    let a0 = v128.load(o);
    let a1 = v128.load(o, 16);
    let a2 = v128.load(o, 32);
    let a3 = v128.load(o, 48);
    let c = coef;
    let x = src + <usize>d * 4;
    for (let t = 0; t < n; t++) {
      const w = f32x4.splat(load<f32>(c));
      a0 = madd(w, v128.load(x), a0);
      a1 = madd(w, v128.load(x, 16), a1);
      a2 = madd(w, v128.load(x, 32), a2);
      a3 = madd(w, v128.load(x, 48), a3);
      c += cs;
      x += ss;
    }
    store16(o, a0, a1, a2, a3);
  }
  for (; d + 4 <= hd; d += 4) {
    const o = dst + <usize>d * 4;
    let a = v128.load(o);
    let c = coef;
    let x = src + <usize>d * 4;
    for (let t = 0; t < n; t++) {
      a = madd(f32x4.splat(load<f32>(c)), v128.load(x), a);
      c += cs;
      x += ss;
    }
    v128.store(o, a);
  }
  for (; d < hd; d++) {
    const o = dst + <usize>d * 4;
    let a = load<f32>(o);
    let c = coef;
    let x = src + <usize>d * 4;
    for (let t = 0; t < n; t++) {
      a += load<f32>(c) * load<f32>(x);
      c += cs;
      x += ss;
    }
    store<f32>(o, a);
  }
}

// combine for two outputs at once over the same n source rows: dst0[d] += Σ_t coef0[t·cs]·src[t·ss + d] and dst1
// likewise with coef1, each sum in t order (the same bits as two combine calls), sixteen columns of both in registers
// (then four, then one), so that each source row loaded serves both and the two sums' additions interleave.
function combine2(
  coef0: usize,
  coef1: usize,
  cs: usize,
  src: usize,
  ss: usize,
  n: i32,
  dst0: usize,
  dst1: usize,
  hd: i32,
): void {
  let d = 0;
  for (; d + 16 <= hd; d += 16) {
    const o0 = dst0 + <usize>d * 4;
    const o1 = dst1 + <usize>d * 4;
    let a0 = v128.load(o0);
    let a1 = v128.load(o0, 16);
    let a2 = v128.load(o0, 32);
    let a3 = v128.load(o0, 48);
    let b0 = v128.load(o1);
    let b1 = v128.load(o1, 16);
    let b2 = v128.load(o1, 32);
    let b3 = v128.load(o1, 48);
    let c = <usize>0;
    let x = src + <usize>d * 4;
    for (let t = 0; t < n; t++) {
      const w = f32x4.splat(load<f32>(coef0 + c));
      const u = f32x4.splat(load<f32>(coef1 + c));
      const x0 = v128.load(x);
      const x1 = v128.load(x, 16);
      const x2 = v128.load(x, 32);
      const x3 = v128.load(x, 48);
      a0 = madd(w, x0, a0);
      b0 = madd(u, x0, b0);
      a1 = madd(w, x1, a1);
      b1 = madd(u, x1, b1);
      a2 = madd(w, x2, a2);
      b2 = madd(u, x2, b2);
      a3 = madd(w, x3, a3);
      b3 = madd(u, x3, b3);
      c += cs;
      x += ss;
    }
    store16(o0, a0, a1, a2, a3);
    store16(o1, b0, b1, b2, b3);
  }
  if (d < hd) {
    // the columns past the last block of sixteen: combine's own blocks of four, then one, for each output
    const rest = hd - d;
    combine(coef0, cs, src + <usize>d * 4, ss, n, dst0 + <usize>d * 4, rest);
    combine(coef1, cs, src + <usize>d * 4, ss, n, dst1 + <usize>d * 4, rest);
  }
}

/**
 * Pairs p0 <= p < p1 (p = b·nH + h) of out_h = softmax(mask(q_h k_hᵀ/√hd)) v_h; att keeps the weights. scratch:
 * hd·T floats of this job's own (the head's keys transposed).
 */
export function attention(
  q: usize,
  k: usize,
  v: usize,
  out: usize,
  att: usize,
  T: i32,
  C: i32,
  nH: i32,
  scratch: usize,
  p0: i32,
  p1: i32,
): void {
  const hd = C / nH;
  const sc = <f32>(1 / Math.sqrt(<f64>hd));
  const rowC = <usize>C * 4;
  for (let p = p0; p < p1; p++) {
    const b = p / nH;
    const h = p % nH;
    const base = (<usize>b * T * C + <usize>h * hd) * 4;
    transposeHead(k + base, scratch, T, C, hd);
    for (let i = 0; i < T; i++) {
      const row = att + (<usize>p * T + i) * T * 4;
      scores(q + base + <usize>i * rowC, scratch, T, i + 1, hd, sc, row);
      softmaxInPlace(row, i + 1);
      if (i + 1 < T) memory.fill(row + <usize>(i + 1) * 4, 0, <usize>(T - i - 1) * 4);
      memory.fill(out + base + <usize>i * rowC, 0, <usize>hd * 4);
    }
    // out_i = Σ_{j<=i} p_ij v_j, rows two at a time: rows i and i+1 share j <= i, then row i+1 adds j = i+1
    const P = att + <usize>p * T * T * 4;
    let i = 0;
    for (; i + 2 <= T; i += 2) {
      const r0 = P + <usize>i * T * 4;
      const o0 = out + base + <usize>i * rowC;
      combine2(r0, r0 + <usize>T * 4, 4, v + base, rowC, i + 1, o0, o0 + rowC, hd);
      combine(r0 + <usize>(T + i + 1) * 4, 4, v + base + <usize>(i + 1) * rowC, rowC, 1, o0 + rowC, hd);
    }
    if (i < T) combine(P + <usize>i * T * 4, 4, v + base, rowC, i + 1, out + base + <usize>i * rowC, hd);
  }
}

/**
 * Pairs p0 <= p < p1 of the backward pass: dp_ij = g_i·v_j; ds_ij = p_ij (dp_ij - Σ_k p_ik dp_ik)/√hd;
 * dq_i += Σ_j ds_ij k_j; dv_j += Σ_i p_ij g_i; dk_j += Σ_i ds_ij q_i (pointers 0: not wanted). scratch: hd·T + T·T
 * floats of this job's own (the head's values transposed, then ds).
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
  const rowC = <usize>C * 4;
  const rowT = <usize>T * 4;
  const ds = scratch + <usize>hd * rowT;
  for (let p = p0; p < p1; p++) {
    const b = p / nH;
    const h = p % nH;
    const base = (<usize>b * T * C + <usize>h * hd) * 4;
    const P = att + <usize>p * T * rowT;
    transposeHead(v + base, scratch, T, C, hd);
    for (let i = 0; i < T; i++) {
      const row = P + <usize>i * rowT;
      const dsi = ds + <usize>i * rowT;
      scores(g + base + <usize>i * rowC, scratch, T, i + 1, hd, 1, dsi); // dp_ij, then ds_ij in place
      let s: f32 = 0;
      for (let j = 0; j <= i; j++) s += load<f32>(row + <usize>j * 4) * load<f32>(dsi + <usize>j * 4);
      for (let j = 0; j <= i; j++) {
        const o = <usize>j * 4;
        store<f32>(dsi + o, load<f32>(row + o) * (load<f32>(dsi + o) - s) * sc);
      }
    }
    // dq_i += Σ_{j<=i} ds_ij k_j, rows two at a time (as the forward's out)
    let i = 0;
    if (dq) {
      for (; i + 2 <= T; i += 2) {
        const r0 = ds + <usize>i * rowT;
        const o0 = dq + base + <usize>i * rowC;
        combine2(r0, r0 + rowT, 4, k + base, rowC, i + 1, o0, o0 + rowC, hd);
        combine(r0 + rowT + <usize>(i + 1) * 4, 4, k + base + <usize>(i + 1) * rowC, rowC, 1, o0 + rowC, hd);
      }
      if (i < T) combine(ds + <usize>i * rowT, 4, k + base, rowC, i + 1, dq + base + <usize>i * rowC, hd);
    }
    // Column j of P and of ds, rows i >= j, two columns at a time: column j takes row j first, then columns j and
    // j+1 share rows j+1 ..
    let j = 0;
    for (; j + 2 <= T; j += 2) {
      const o = base + <usize>j * rowC;
      const down = (<usize>j * T + j) * 4;
      const next = down + rowT + 4; // (j+1, j+1)
      if (dv) {
        combine(P + down, rowT, g + o, rowC, 1, dv + o, hd);
        combine2(P + down + rowT, P + next, rowT, g + o + rowC, rowC, T - j - 1, dv + o, dv + o + rowC, hd);
      }
      if (dk) {
        combine(ds + down, rowT, q + o, rowC, 1, dk + o, hd);
        combine2(ds + down + rowT, ds + next, rowT, q + o + rowC, rowC, T - j - 1, dk + o, dk + o + rowC, hd);
      }
    }
    if (j < T) {
      const o = base + <usize>j * rowC;
      const down = (<usize>j * T + j) * 4;
      if (dv) combine(P + down, rowT, g + o, rowC, T - j, dv + o, hd);
      if (dk) combine(ds + down, rowT, q + o, rowC, T - j, dk + o, hd);
    }
  }
}

// Row b's k and v of T new positions (from qkv (B, T, 3C), bytes ho .. ho + width of each C-wide row of `row` bytes)
// into the caches (B, N, C) at positions pos0 ..
// @ts-ignore: decorator
@inline
function putKV(qkv: usize, kc: usize, vc: usize, b: i32, T: i32, N: i32, pos0: i32, row: usize, ho: usize, width: usize): void {
  for (let t = 0; t < T; t++) {
    const src = qkv + (<usize>b * T + t) * 3 * row + ho;
    const dst = (<usize>b * N + pos0 + t) * row + ho;
    memory.copy(kc + dst, src + row, width);
    memory.copy(vc + dst, src + 2 * row, width);
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
  for (let b = 0; b < B; b++) putKV(qkv, kc, vc, b, T, N, pos0, row, 0, row);
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

/**
 * attentionCached for several new positions (T > 1: a prime, a window rerun) over (batch, head) pairs p0 <= p < p1
 * (p = b·nH + h), each from its head's cached keys transposed, so that a row's scores come sixteen at a time as in
 * attention(): pair p writes head h's k and v of row b's T new positions into the caches (its columns alone), then
 * query t attends to positions 0 .. pos0+t. scratch: hd·L + L floats of this job's own (L = pos0 + T: the keys
 * transposed, then a row of weights). The same values as attentionCached up to float rounding (the scores' sums in
 * another order); bit-identical whatever the range.
 */
export function attentionCachedPairs(
  qkv: usize,
  kc: usize,
  vc: usize,
  out: usize,
  T: i32,
  C: i32,
  nH: i32,
  N: i32,
  pos0: i32,
  scratch: usize,
  p0: i32,
  p1: i32,
): void {
  const hd = C / nH;
  const sc = <f32>(1 / Math.sqrt(<f64>hd));
  const row = <usize>C * 4;
  const L = pos0 + T;
  const kT = scratch;
  const w = scratch + <usize>hd * L * 4;
  for (let p = p0; p < p1; p++) {
    const b = p / nH;
    const ho = <usize>(p % nH) * hd * 4;
    const cache = <usize>b * N * row + ho; // row b's position 0, head h
    putKV(qkv, kc, vc, b, T, N, pos0, row, ho, <usize>hd * 4);
    transposeHead(kc + cache, kT, L, C, hd);
    for (let t = 0; t < T; t++) {
      const n = pos0 + t + 1;
      scores(qkv + (<usize>b * T + t) * 3 * row + ho, kT, L, n, hd, sc, w);
      softmaxInPlace(w, n);
      const oi = out + (<usize>b * T + t) * row + ho;
      memory.fill(oi, 0, <usize>hd * 4);
      combine(w, 4, vc + cache, row, n, oi, hd);
    }
  }
}
