// Float64 reference implementations for the engine tests: the obvious, slow formulas on plain number arrays.
// Inputs are read from the engine's float32 tensors, so engine and reference see the same values.
//
// Legend: B batch, T time, D input, H hidden, V vocabulary, C channels.

import assert from "node:assert/strict";
import { Tensor } from "../src/engine/index.js";
import type { Rng } from "../src/util/rng.js";

export type F64 = number[];

export function f64(t: Tensor | Float32Array): F64 {
  return Array.from(t instanceof Tensor ? t.data : t);
}

/** Random tensor with entries uniform in [lo, hi). */
export function rand(rng: Rng, shape: number[], lo = -1, hi = 1, requiresGrad = true): Tensor {
  return Tensor.uniform(shape, rng, lo, hi, requiresGrad);
}

/** Assert |actual - expected| <= atol + rtol |expected| elementwise, naming the first bad index. */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  rtol = 1e-5,
  atol = 1e-6,
  what = "",
) {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i];
    const e = expected[i];
    if (e === -Infinity && a === -Infinity) continue;
    if (!(Math.abs(a - e) <= atol + rtol * Math.abs(e))) {
      assert.fail(`${what}: index ${i}: got ${a}, expected ${e}`);
    }
  }
}

export function refMatmul(a: F64, b: F64, M: number, K: number, N: number, transA = false, transB = false): F64 {
  const c = new Array<number>(M * N).fill(0);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += (transA ? a[k * M + i] : a[i * K + k]) * (transB ? b[j * K + k] : b[k * N + j]);
      c[i * N + j] = s;
    }
  }
  return c;
}

/** Elementwise binary op with NumPy broadcasting, by unravelling every output index. */
export function refBroadcast(
  a: Tensor,
  b: Tensor,
  f: (x: number, y: number) => number,
): { data: F64; shape: number[] } {
  const nd = Math.max(a.ndim, b.ndim);
  const pad = (s: number[]) => [...new Array<number>(nd - s.length).fill(1), ...s];
  const sa = pad(a.shape);
  const sb = pad(b.shape);
  const shape = sa.map((d, i) => Math.max(d, sb[i]));
  const size = shape.reduce((x, y) => x * y, 1);
  const data: F64 = [];
  for (let flat = 0; flat < size; flat++) {
    let rem = flat;
    const idx = new Array<number>(nd);
    for (let d = nd - 1; d >= 0; d--) {
      idx[d] = rem % shape[d];
      rem = Math.floor(rem / shape[d]);
    }
    let ia = 0;
    let ib = 0;
    for (let d = 0; d < nd; d++) {
      ia = ia * sa[d] + (sa[d] === 1 ? 0 : idx[d]);
      ib = ib * sb[d] + (sb[d] === 1 ? 0 : idx[d]);
    }
    data.push(f(a.data[ia], b.data[ib]));
  }
  return { data, shape };
}

export function refSoftmaxRows(x: F64, V: number): F64 {
  const y: F64 = [];
  for (let r = 0; r < x.length; r += V) {
    const row = x.slice(r, r + V);
    const m = Math.max(...row);
    const e = row.map((v) => Math.exp(v - m));
    const s = e.reduce((p, q) => p + q, 0);
    for (const v of e) y.push(v / s);
  }
  return y;
}

export function refCrossEntropy(x: F64, targets: Int32Array, V: number): number {
  let total = 0;
  for (let n = 0; n < targets.length; n++) {
    const row = x.slice(n * V, (n + 1) * V);
    const m = Math.max(...row);
    const lse = m + Math.log(row.reduce((s, v) => s + Math.exp(v - m), 0));
    total += lse - row[targets[n]];
  }
  return total / targets.length;
}

export function refLayerNorm(x: F64, g: F64, b: F64, C: number, eps: number): F64 {
  const y: F64 = [];
  for (let r = 0; r < x.length; r += C) {
    const row = x.slice(r, r + C);
    const mu = row.reduce((s, v) => s + v, 0) / C;
    const v = row.reduce((s, q) => s + (q - mu) ** 2, 0) / C;
    row.forEach((q, j) => y.push((g[j] * (q - mu)) / Math.sqrt(v + eps) + b[j]));
  }
  return y;
}

export function refAttention(q: F64, k: F64, v: F64, B: number, T: number, C: number, nH: number): F64 {
  const hd = C / nH;
  const out = new Array<number>(B * T * C).fill(0);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < nH; h++) {
      for (let i = 0; i < T; i++) {
        const s: F64 = [];
        for (let j = 0; j <= i; j++) {
          let d = 0;
          for (let e = 0; e < hd; e++) d += q[(b * T + i) * C + h * hd + e] * k[(b * T + j) * C + h * hd + e];
          s.push(d / Math.sqrt(hd));
        }
        const p = refSoftmaxRows(s, s.length);
        for (let j = 0; j <= i; j++) {
          for (let e = 0; e < hd; e++) out[(b * T + i) * C + h * hd + e] += p[j] * v[(b * T + j) * C + h * hd + e];
        }
      }
    }
  }
  return out;
}

const sig = (x: number) => 1 / (1 + Math.exp(-x));

/** x (T, B, D) @ wx (D, G) + bias, per time step. */
function refProject(x: F64, wx: F64, bias: F64, T: number, B: number, D: number, G: number): F64 {
  const xw = refMatmul(x, wx, T * B, D, G);
  return xw.map((v, i) => v + bias[i % G]);
}

export function refLstm(
  x: F64,
  wx: F64,
  wh: F64,
  b: F64,
  h0: F64,
  c0: F64,
  T: number,
  B: number,
  D: number,
  H: number,
): { hs: F64; hT: F64; cT: F64 } {
  const G = 4 * H;
  const xw = refProject(x, wx, b, T, B, D, G);
  let h = h0.slice();
  let c = c0.slice();
  const hs: F64 = [];
  for (let t = 0; t < T; t++) {
    const a = refMatmul(h, wh, B, H, G).map((v, i) => v + xw[t * B * G + i]);
    const hn: F64 = [];
    const cn: F64 = [];
    for (let bi = 0; bi < B; bi++) {
      for (let j = 0; j < H; j++) {
        const r = bi * G;
        const i_ = sig(a[r + j]);
        const f = sig(a[r + H + j]);
        const g = Math.tanh(a[r + 2 * H + j]);
        const o = sig(a[r + 3 * H + j]);
        const cc = f * c[bi * H + j] + i_ * g;
        cn.push(cc);
        hn.push(o * Math.tanh(cc));
      }
    }
    h = hn;
    c = cn;
    hs.push(...h);
  }
  return { hs, hT: h, cT: c };
}

export function refGru(
  x: F64,
  wx: F64,
  wh: F64,
  bx: F64,
  bh: F64,
  h0: F64,
  T: number,
  B: number,
  D: number,
  H: number,
): { hs: F64; hT: F64 } {
  const G = 3 * H;
  const xw = refProject(x, wx, bx, T, B, D, G);
  let h = h0.slice();
  const hs: F64 = [];
  for (let t = 0; t < T; t++) {
    const hw = refMatmul(h, wh, B, H, G).map((v, i) => v + bh[i % G]);
    const hn: F64 = [];
    for (let bi = 0; bi < B; bi++) {
      for (let j = 0; j < H; j++) {
        const r0 = t * B * G + bi * G;
        const w0 = bi * G;
        const r = sig(xw[r0 + j] + hw[w0 + j]);
        const z = sig(xw[r0 + H + j] + hw[w0 + H + j]);
        const n = Math.tanh(xw[r0 + 2 * H + j] + r * hw[w0 + 2 * H + j]);
        hn.push((1 - z) * n + z * h[bi * H + j]);
      }
    }
    h = hn;
    hs.push(...h);
  }
  return { hs, hT: h };
}

export function refRnn(
  x: F64,
  wx: F64,
  wh: F64,
  b: F64,
  h0: F64,
  T: number,
  B: number,
  D: number,
  H: number,
): { hs: F64; hT: F64 } {
  const xw = refProject(x, wx, b, T, B, D, H);
  let h = h0.slice();
  const hs: F64 = [];
  for (let t = 0; t < T; t++) {
    h = refMatmul(h, wh, B, H, H).map((v, i) => Math.tanh(v + xw[t * B * H + i]));
    hs.push(...h);
  }
  return { hs, hT: h };
}
