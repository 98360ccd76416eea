// Row kernels: softmax, the fused softmax cross-entropy, layer norm, and the embedding gather/scatter.
//
// Legend: rows × V (softmax, classes), rows × C (layer norm channels), N positions, D embedding width.
// Ranged kernels take rows [r0, r1) so that threads can each take a block of rows; every row is computed by the
// same operations whatever the block (bit-identical across thread counts). Sums that the js reference backend takes
// in float64 (layer norm's mean and variance, the loss) are taken in float64 here too; softmax sums run in f32x4
// lanes (their rounding is far inside the tests' 1e-5).

import { vexpz } from "./elementwise";

// The rem (< 4) floats at p in the low lanes, `fill` above.
// @ts-ignore: decorator
@inline
function loadFill(p: usize, rem: i32, fill: f32): v128 {
  let v = f32x4.splat(fill);
  v = f32x4.replace_lane(v, 0, load<f32>(p));
  if (rem > 1) v = f32x4.replace_lane(v, 1, load<f32>(p, 4));
  if (rem > 2) v = f32x4.replace_lane(v, 2, load<f32>(p, 8));
  return v;
}

// @ts-ignore: decorator
@inline
function storeLow(p: usize, v: v128, rem: i32): void {
  store<f32>(p, f32x4.extract_lane(v, 0));
  if (rem > 1) store<f32>(p, f32x4.extract_lane(v, 1), 4);
  if (rem > 2) store<f32>(p, f32x4.extract_lane(v, 2), 8);
}

// @ts-ignore: decorator
@inline
function hsum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

// @ts-ignore: decorator
@inline
function hmax(v: v128): f32 {
  return max(max(f32x4.extract_lane(v, 0), f32x4.extract_lane(v, 1)), max(f32x4.extract_lane(v, 2), f32x4.extract_lane(v, 3)));
}

function rowMax(x: usize, V: i32): f32 {
  let m = f32x4.splat(-Infinity);
  let j = 0;
  for (; j + 4 <= V; j += 4) m = f32x4.max(m, v128.load(x + <usize>j * 4));
  if (j < V) m = f32x4.max(m, loadFill(x + <usize>j * 4, V - j, -Infinity));
  return hmax(m);
}

// e[j] = exp(x[j] - m) written to e (may be null: 0), returns Σ e (lanes, then across).
function rowExpSum(x: usize, e: usize, V: i32, m: f32): f32 {
  const mv = f32x4.splat(m);
  let s = f32x4.splat(0);
  let j = 0;
  for (; j + 4 <= V; j += 4) {
    const v = vexpz(f32x4.sub(v128.load(x + <usize>j * 4), mv));
    if (e) v128.store(e + <usize>j * 4, v);
    s = f32x4.add(s, v);
  }
  if (j < V) {
    const v = vexpz(f32x4.sub(loadFill(x + <usize>j * 4, V - j, -Infinity), mv));
    if (e) storeLow(e + <usize>j * 4, v, V - j);
    s = f32x4.add(s, v);
  }
  return hsum(s);
}

function rowScale(y: usize, V: i32, f: f32): void {
  const fv = f32x4.splat(f);
  let j = 0;
  for (; j + 4 <= V; j += 4) v128.store(y + <usize>j * 4, f32x4.mul(fv, v128.load(y + <usize>j * 4)));
  for (; j < V; j++) store<f32>(y + <usize>j * 4, f * load<f32>(y + <usize>j * 4));
}

/** y = softmax(x) for rows r0 <= r < r1 of V. */
export function softmax(x: usize, y: usize, V: i32, r0: i32, r1: i32): void {
  for (let r = r0; r < r1; r++) {
    const o = <usize>r * V * 4;
    const m = rowMax(x + o, V);
    const s = rowExpSum(x + o, y + o, V, m);
    rowScale(y + o, V, 1 / s);
  }
}

/** dx += y ⊙ (g - Σ_j g_j y_j) per row of V. */
export function softmaxBackward(y: usize, g: usize, dx: usize, rows: i32, V: i32): void {
  for (let r = 0; r < rows; r++) {
    const o = <usize>r * V * 4;
    let dot: f64 = 0;
    for (let j = 0; j < V; j++) dot += <f64>load<f32>(g + o + <usize>j * 4) * load<f32>(y + o + <usize>j * 4);
    const dv = f32x4.splat(<f32>dot);
    let j = 0;
    for (; j + 4 <= V; j += 4) {
      const p = o + <usize>j * 4;
      const d = f32x4.mul(v128.load(y + p), f32x4.sub(v128.load(g + p), dv));
      v128.store(dx + p, f32x4.add(v128.load(dx + p), d));
    }
    for (; j < V; j++) {
      const p = o + <usize>j * 4;
      store<f32>(dx + p, load<f32>(dx + p) + load<f32>(y + p) * (load<f32>(g + p) - <f32>dot));
    }
  }
}

/**
 * loss[0] = (1/N) Σ_n [m_n + log Σ e^(x_n - m_n) - x_n[t_n]]; probs (0: none) = softmax per row.
 * targets: N i32 at tp, in [0, V) (the op checks them).
 */
export function crossEntropy(x: usize, tp: usize, loss: usize, probs: usize, N: i32, V: i32): void {
  let total: f64 = 0;
  for (let n = 0; n < N; n++) {
    const o = <usize>n * V * 4;
    const m = rowMax(x + o, V);
    const s = rowExpSum(x + o, probs ? probs + o : 0, V, m);
    if (probs) rowScale(probs + o, V, 1 / s);
    const t = load<i32>(tp + <usize>n * 4);
    total += <f64>m + Math.log(<f64>s) - <f64>load<f32>(x + o + <usize>t * 4);
  }
  store<f32>(loss, <f32>(total / N));
}

/** dx_n += (g[0]/N)(probs_n - onehot(t_n)). */
export function crossEntropyBackward(probs: usize, tp: usize, g: usize, dx: usize, N: i32, V: i32): void {
  const s = <f32>(<f64>load<f32>(g) / N);
  const sv = f32x4.splat(s);
  for (let n = 0; n < N; n++) {
    const o = <usize>n * V * 4;
    let j = 0;
    for (; j + 4 <= V; j += 4) {
      const p = o + <usize>j * 4;
      v128.store(dx + p, f32x4.add(v128.load(dx + p), f32x4.mul(sv, v128.load(probs + p))));
    }
    for (; j < V; j++) {
      const p = o + <usize>j * 4;
      store<f32>(dx + p, load<f32>(dx + p) + s * load<f32>(probs + p));
    }
    const pt = dx + o + <usize>load<i32>(tp + <usize>n * 4) * 4;
    store<f32>(pt, load<f32>(pt) - s);
  }
}

// Layer norm in float64 as the js backend takes it, two channels at a time in f64x2 lanes: each channel's values are
// the js loop's operations (the same bits), the row sums (mean, variance; the backward's two means) run in two
// lanes of two accumulators, a different order than js's, far inside the tests' 2e-5. Odd channels: scalar tails.

// The 2 floats at p as f64x2.
// @ts-ignore: decorator
@inline
function load2(p: usize): v128 {
  return f64x2.promote_low_f32x4(v128.load64_zero(p));
}

// The f64x2 v stored as 2 floats at p.
// @ts-ignore: decorator
@inline
function store2(p: usize, v: v128): void {
  v128.store64_lane(p, f32x4.demote_f64x2_zero(v), 0);
}

// @ts-ignore: decorator
@inline
function hsum2(v: v128): f64 {
  return f64x2.extract_lane(v, 0) + f64x2.extract_lane(v, 1);
}

/** Rows r0 <= r < r1 of y = γ (x - μ) r + β, r = 1/sqrt(σ² + eps); keeps x̂ and r. Statistics in float64. */
export function layerNorm(
  x: usize,
  gamma: usize,
  beta: usize,
  y: usize,
  xhat: usize,
  rstd: usize,
  C: i32,
  eps: f32,
  r0: i32,
  r1: i32,
): void {
  const C4 = C & ~3;
  const C2 = C & ~1;
  for (let r = r0; r < r1; r++) {
    const o = <usize>r * C * 4;
    const px = x + o;
    let a0 = f64x2.splat(0);
    let a1 = f64x2.splat(0);
    let j = 0;
    for (; j < C4; j += 4) {
      a0 = f64x2.add(a0, load2(px + <usize>j * 4));
      a1 = f64x2.add(a1, load2(px + <usize>j * 4 + 8));
    }
    let mu = hsum2(f64x2.add(a0, a1));
    for (; j < C; j++) mu += load<f32>(px + <usize>j * 4);
    mu /= C;
    const m2 = f64x2.splat(mu);
    a0 = f64x2.splat(0);
    a1 = f64x2.splat(0);
    for (j = 0; j < C4; j += 4) {
      const d0 = f64x2.sub(load2(px + <usize>j * 4), m2);
      const d1 = f64x2.sub(load2(px + <usize>j * 4 + 8), m2);
      a0 = f64x2.add(a0, f64x2.mul(d0, d0));
      a1 = f64x2.add(a1, f64x2.mul(d1, d1));
    }
    let v = hsum2(f64x2.add(a0, a1));
    for (; j < C; j++) {
      const d = <f64>load<f32>(px + <usize>j * 4) - mu;
      v += d * d;
    }
    const rs = 1 / Math.sqrt(v / C + <f64>eps);
    store<f32>(rstd + <usize>r * 4, <f32>rs);
    const r2 = f64x2.splat(rs);
    for (j = 0; j < C2; j += 2) {
      const p = o + <usize>j * 4;
      const q = <usize>j * 4;
      const h = f64x2.mul(f64x2.sub(load2(x + p), m2), r2);
      store2(xhat + p, h);
      store2(y + p, f64x2.add(f64x2.mul(load2(gamma + q), h), load2(beta + q)));
    }
    if (j < C) {
      const p = o + <usize>j * 4;
      const h = (<f64>load<f32>(x + p) - mu) * rs;
      store<f32>(xhat + p, <f32>h);
      store<f32>(y + p, <f32>(<f64>load<f32>(gamma + <usize>j * 4) * h + <f64>load<f32>(beta + <usize>j * 4)));
    }
  }
}

/** With d = g γ: dx += r (d - mean(d) - x̂ mean(d x̂)); dγ += Σ_rows g x̂; dβ += Σ_rows g (pointers 0: not wanted). */
export function layerNormBackward(
  g: usize,
  gamma: usize,
  xhat: usize,
  rstd: usize,
  dx: usize,
  dgamma: usize,
  dbeta: usize,
  rows: i32,
  C: i32,
): void {
  const C2 = C & ~1;
  for (let r = 0; r < rows; r++) {
    const o = <usize>r * C * 4;
    if (dx) {
      let a = f64x2.splat(0);
      let b = f64x2.splat(0);
      let j = 0;
      for (; j < C2; j += 2) {
        const p = o + <usize>j * 4;
        const d = f64x2.mul(load2(g + p), load2(gamma + <usize>j * 4));
        a = f64x2.add(a, d);
        b = f64x2.add(b, f64x2.mul(d, load2(xhat + p)));
      }
      let md = hsum2(a);
      let mdx = hsum2(b);
      if (j < C) {
        const p = o + <usize>j * 4;
        const d = <f64>load<f32>(g + p) * load<f32>(gamma + <usize>j * 4);
        md += d;
        mdx += d * load<f32>(xhat + p);
      }
      md /= C;
      mdx /= C;
      const rs = <f64>load<f32>(rstd + <usize>r * 4);
      const rs2 = f64x2.splat(rs);
      const md2 = f64x2.splat(md);
      const mdx2 = f64x2.splat(mdx);
      for (j = 0; j < C2; j += 2) {
        const p = o + <usize>j * 4;
        const d = f64x2.mul(load2(g + p), load2(gamma + <usize>j * 4));
        const t = f64x2.sub(f64x2.sub(d, md2), f64x2.mul(load2(xhat + p), mdx2));
        store2(dx + p, f64x2.add(load2(dx + p), f64x2.mul(rs2, t)));
      }
      if (j < C) {
        const p = o + <usize>j * 4;
        const d = <f64>load<f32>(g + p) * load<f32>(gamma + <usize>j * 4);
        store<f32>(dx + p, <f32>(<f64>load<f32>(dx + p) + rs * (d - md - <f64>load<f32>(xhat + p) * mdx)));
      }
    }
    // dγ, dβ: the product in float64, one rounding, as the js backend
    let j = 0;
    for (; j < C2; j += 2) {
      const p = o + <usize>j * 4;
      const q = <usize>j * 4;
      if (dgamma) store2(dgamma + q, f64x2.add(load2(dgamma + q), f64x2.mul(load2(g + p), load2(xhat + p))));
      if (dbeta) v128.store64_lane(dbeta + q, f32x4.add(v128.load64_zero(dbeta + q), v128.load64_zero(g + p)), 0);
    }
    if (j < C) {
      const p = o + <usize>j * 4;
      const q = <usize>j * 4;
      const gs = <f64>load<f32>(g + p);
      if (dgamma) store<f32>(dgamma + q, <f32>(<f64>load<f32>(dgamma + q) + gs * <f64>load<f32>(xhat + p)));
      if (dbeta) store<f32>(dbeta + q, load<f32>(dbeta + q) + <f32>gs);
    }
  }
}

/** out[n] = w[ids[n]], rows of D; ids: N i32 at ip (the op checks the range). */
export function embedding(w: usize, ip: usize, out: usize, N: i32, D: i32): void {
  const row = <usize>D * 4;
  for (let n = 0; n < N; n++) memory.copy(out + <usize>n * row, w + <usize>load<i32>(ip + <usize>n * 4) * row, row);
}

/** dw[ids[n]] += g[n] (repeated ids accumulate, in order of n). */
export function embeddingBackward(g: usize, ip: usize, dw: usize, N: i32, D: i32): void {
  const row = <usize>D * 4;
  for (let n = 0; n < N; n++) {
    const dst = dw + <usize>load<i32>(ip + <usize>n * 4) * row;
    const src = g + <usize>n * row;
    let j = 0;
    for (; j + 4 <= D; j += 4) v128.store(dst + <usize>j * 4, f32x4.add(v128.load(dst + <usize>j * 4), v128.load(src + <usize>j * 4)));
    for (; j < D; j++) store<f32>(dst + <usize>j * 4, load<f32>(dst + <usize>j * 4) + load<f32>(src + <usize>j * 4));
  }
}
