// The reference kernels of every op besides the matrix product and the recurrent layers (those are in js.ts):
// plain loops over Float32Arrays, written to be read. Each follows the formula in ../backend.ts line by line; the
// wasm and WebGPU backends are tested against these.
//
// Legend: n elements; V classes per row; C channels per row; N rows (positions); B batch; T time; hd head size.
// Reductions that feed a single number (the loss, squared norms) accumulate in float64.

import { drawIndex } from "../../util/rng.js";
import { samplingWeights } from "../sampling.js";
import { contiguousStrides } from "../shape.js";
import type { AdagradStep, AdamStep, BinaryOp, RmspropStep, Sampling, SgdStep, Strides, UnaryOp } from "../backend.js";

type F = Float32Array;

export const GELU_C = Math.sqrt(2 / Math.PI);

// ---------------------------------------------------------------------------------------------------------------
// Elementwise

export function unary(op: UnaryOp, x: F, y: F, n: number): void {
  switch (op) {
    case "sigmoid":
      for (let i = 0; i < n; i++) y[i] = 1 / (1 + Math.exp(-x[i]));
      return;
    case "tanh":
      for (let i = 0; i < n; i++) y[i] = Math.tanh(x[i]);
      return;
    case "exp":
      for (let i = 0; i < n; i++) y[i] = Math.exp(x[i]);
      return;
    case "log":
      for (let i = 0; i < n; i++) y[i] = Math.log(x[i]);
      return;
    case "relu":
      for (let i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0;
      return;
    case "gelu":
      // ½x(1 + tanh(√(2/π)(x + 0.044715x³))), GPT-2's tanh approximation
      for (let i = 0; i < n; i++) {
        const v = x[i];
        y[i] = 0.5 * v * (1 + Math.tanh(GELU_C * (v + 0.044715 * v * v * v)));
      }
      return;
  }
}

export function unaryBackward(op: UnaryOp, x: F, y: F, g: F, dx: F, n: number): void {
  switch (op) {
    case "sigmoid": // σ' = y(1 - y)
      for (let i = 0; i < n; i++) dx[i] += g[i] * y[i] * (1 - y[i]);
      return;
    case "tanh": // tanh' = 1 - y²
      for (let i = 0; i < n; i++) dx[i] += g[i] * (1 - y[i] * y[i]);
      return;
    case "exp": // (e^x)' = y
      for (let i = 0; i < n; i++) dx[i] += g[i] * y[i];
      return;
    case "log": // (ln x)' = 1/x
      for (let i = 0; i < n; i++) dx[i] += g[i] / x[i];
      return;
    case "relu":
      for (let i = 0; i < n; i++) if (x[i] > 0) dx[i] += g[i];
      return;
    case "gelu": {
      // u = c(x + 0.044715x³): dy/dx = ½(1 + tanh u) + ½x(1 - tanh²u) c (1 + 3·0.044715x²)
      const c = GELU_C;
      for (let i = 0; i < n; i++) {
        const v = x[i];
        const th = Math.tanh(c * (v + 0.044715 * v * v * v));
        dx[i] += g[i] * (0.5 * (1 + th) + 0.5 * v * (1 - th * th) * c * (1 + 3 * 0.044715 * v * v));
      }
      return;
    }
  }
}

export function scale(x: F, y: F, n: number, s: number, accumulate: boolean): void {
  if (accumulate) for (let i = 0; i < n; i++) y[i] += s * x[i];
  else for (let i = 0; i < n; i++) y[i] = s * x[i];
}

function isContiguous(strides: Strides, shape: readonly number[]): boolean {
  const c = contiguousStrides(shape);
  for (let d = 0; d < shape.length; d++) if (shape[d] > 1 && strides[d] !== c[d]) return false;
  return true;
}

/**
 * Calls visit(i, ia, ib) for every flat output index i of `shape` in row-major order, with the operands' indices
 * kept in step like an odometer (no division per element).
 */
function walk(
  shape: readonly number[],
  sa: Strides,
  sb: Strides,
  visit: (i: number, ia: number, ib: number) => void,
): void {
  const nd = shape.length;
  let size = 1;
  for (const d of shape) size *= d;
  if (size === 0) return;
  const ctr = new Array<number>(nd).fill(0);
  let ia = 0;
  let ib = 0;
  for (let i = 0; i < size; i++) {
    visit(i, ia, ib);
    for (let d = nd - 1; d >= 0; d--) {
      ctr[d]++;
      ia += sa[d];
      ib += sb[d];
      if (ctr[d] < shape[d]) break;
      ia -= sa[d] * shape[d];
      ib -= sb[d] * shape[d];
      ctr[d] = 0;
    }
  }
}

/**
 * The length n of the trailing block that `strides` repeat over the leading axes (a bias over the last axes: index
 * i -> i mod n), or 0 when the layout is anything else.
 */
function trailingBlock(strides: Strides, shape: readonly number[]): number {
  let d = shape.length - 1;
  let n = 1;
  while (d >= 0 && (strides[d] === n || shape[d] === 1)) n *= shape[d--];
  for (; d >= 0; d--) if (strides[d] !== 0 && shape[d] > 1) return 0;
  return n;
}

export function binary(op: BinaryOp, a: F, sa: Strides, b: F, sb: Strides, out: F, shape: readonly number[]): void {
  let size = 1;
  for (const d of shape) size *= d;
  const aFull = isContiguous(sa, shape);
  const bFull = isContiguous(sb, shape);
  if (aFull && bFull) {
    if (op === "add") for (let i = 0; i < size; i++) out[i] = a[i] + b[i];
    else if (op === "sub") for (let i = 0; i < size; i++) out[i] = a[i] - b[i];
    else for (let i = 0; i < size; i++) out[i] = a[i] * b[i];
    return;
  }
  const m = aFull ? trailingBlock(sb, shape) : 0;
  if (m > 0) {
    // The common bias case: a full, b a block repeated over rows. Row loops, no odometer.
    for (let r = 0; r < size; r += m) {
      if (op === "add") for (let j = 0; j < m; j++) out[r + j] = a[r + j] + b[j];
      else if (op === "sub") for (let j = 0; j < m; j++) out[r + j] = a[r + j] - b[j];
      else for (let j = 0; j < m; j++) out[r + j] = a[r + j] * b[j];
    }
    return;
  }
  if (op === "add") walk(shape, sa, sb, (i, ia, ib) => (out[i] = a[ia] + b[ib]));
  else if (op === "sub") walk(shape, sa, sb, (i, ia, ib) => (out[i] = a[ia] - b[ib]));
  else walk(shape, sa, sb, (i, ia, ib) => (out[i] = a[ia] * b[ib]));
}

export function reduceTo(g: F, shape: readonly number[], dst: F, sd: Strides, s: number): void {
  let size = 1;
  for (const d of shape) size *= d;
  if (isContiguous(sd, shape)) {
    for (let i = 0; i < size; i++) dst[i] += s * g[i];
    return;
  }
  const m = trailingBlock(sd, shape);
  if (m > 0) {
    for (let r = 0; r < size; r += m) for (let j = 0; j < m; j++) dst[j] += s * g[r + j];
    return;
  }
  walk(shape, sd, sd, (i, id) => (dst[id] += s * g[i]));
}

// ---------------------------------------------------------------------------------------------------------------
// Rows: softmax, cross-entropy, layer norm

export function softmax(x: F, y: F, rows: number, V: number): void {
  for (let r = 0; r < rows * V; r += V) {
    let m = -Infinity;
    for (let j = 0; j < V; j++) if (x[r + j] > m) m = x[r + j];
    let s = 0;
    for (let j = 0; j < V; j++) {
      const e = Math.exp(x[r + j] - m);
      y[r + j] = e;
      s += e;
    }
    const inv = 1 / s;
    for (let j = 0; j < V; j++) y[r + j] *= inv;
  }
}

export function softmaxBackward(y: F, g: F, dx: F, rows: number, V: number): void {
  for (let r = 0; r < rows * V; r += V) {
    let dot = 0;
    for (let j = 0; j < V; j++) dot += g[r + j] * y[r + j];
    for (let j = 0; j < V; j++) dx[r + j] += y[r + j] * (g[r + j] - dot);
  }
}

export function crossEntropy(x: F, targets: Int32Array, loss: F, probs: F | null, N: number, V: number): void {
  let total = 0;
  for (let n = 0; n < N; n++) {
    const r = n * V;
    let m = -Infinity;
    for (let j = 0; j < V; j++) if (x[r + j] > m) m = x[r + j];
    let s = 0;
    if (probs) {
      // keep e^(x - max) and normalise it afterwards: one exp per logit
      for (let j = 0; j < V; j++) s += probs[r + j] = Math.exp(x[r + j] - m);
      const inv = 1 / s;
      for (let j = 0; j < V; j++) probs[r + j] *= inv;
    } else {
      for (let j = 0; j < V; j++) s += Math.exp(x[r + j] - m);
    }
    total += m + Math.log(s) - x[r + targets[n]];
  }
  loss[0] = total / N;
}

export function crossEntropyBackward(probs: F, targets: Int32Array, g: F, dx: F, N: number, V: number): void {
  const s = g[0] / N;
  for (let n = 0; n < N; n++) {
    const r = n * V;
    for (let j = 0; j < V; j++) dx[r + j] += s * probs[r + j];
    dx[r + targets[n]] -= s;
  }
}

export function layerNorm(x: F, gamma: F, beta: F, y: F, xhat: F, rstd: F, rows: number, C: number, eps: number): void {
  for (let r = 0; r < rows; r++) {
    const o = r * C;
    let mu = 0;
    for (let j = 0; j < C; j++) mu += x[o + j];
    mu /= C;
    let v = 0;
    for (let j = 0; j < C; j++) v += (x[o + j] - mu) * (x[o + j] - mu);
    const rs = 1 / Math.sqrt(v / C + eps);
    rstd[r] = rs;
    for (let j = 0; j < C; j++) {
      const h = (x[o + j] - mu) * rs;
      xhat[o + j] = h;
      y[o + j] = gamma[j] * h + beta[j];
    }
  }
}

export function layerNormBackward(
  g: F,
  gamma: F,
  xhat: F,
  rstd: F,
  dx: F | null,
  dg: F | null,
  db: F | null,
  rows: number,
  C: number,
): void {
  for (let r = 0; r < rows; r++) {
    const o = r * C;
    let md = 0;
    let mdx = 0;
    for (let j = 0; j < C; j++) {
      const d = g[o + j] * gamma[j];
      md += d;
      mdx += d * xhat[o + j];
      if (dg) dg[j] += g[o + j] * xhat[o + j];
      if (db) db[j] += g[o + j];
    }
    md /= C;
    mdx /= C;
    if (dx) for (let j = 0; j < C; j++) dx[o + j] += rstd[r] * (g[o + j] * gamma[j] - md - xhat[o + j] * mdx);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Gather and scatter

export function embedding(w: F, ids: Int32Array, out: F, D: number): void {
  for (let n = 0; n < ids.length; n++) out.set(w.subarray(ids[n] * D, (ids[n] + 1) * D), n * D);
}

export function embeddingBackward(g: F, ids: Int32Array, dw: F, D: number): void {
  for (let n = 0; n < ids.length; n++) {
    const w0 = ids[n] * D;
    const g0 = n * D;
    for (let d = 0; d < D; d++) dw[w0 + d] += g[g0 + d];
  }
}

export function embeddingFrom(w: F, ids: F, idsOff: number, out: F, count: number, D: number): void {
  for (let n = 0; n < count; n++) {
    const id = ids[idsOff + n];
    out.set(w.subarray(id * D, (id + 1) * D), n * D);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Sampling

export function sampleRows(
  logits: F,
  u: F,
  uOff: number,
  ids: F,
  idsOff: number,
  rows: number,
  V: number,
  how: Sampling,
): void {
  const weights = new Float64Array(V);
  for (let r = 0; r < rows; r++) {
    samplingWeights(logits.subarray(r * V, (r + 1) * V), how.temperature, how.topK, how.topP, weights);
    ids[idsOff + r] = drawIndex(weights, u[uOff + r]);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Layout

export function copyBlocks(
  src: F,
  srcOff: number,
  srcStride: number,
  dst: F,
  dstOff: number,
  dstStride: number,
  block: number,
  count: number,
  accumulate: boolean,
): void {
  for (let o = 0; o < count; o++) {
    const s = srcOff + o * srcStride;
    const d = dstOff + o * dstStride;
    if (accumulate) for (let j = 0; j < block; j++) dst[d + j] += src[s + j];
    else dst.set(src.subarray(s, s + block), d);
  }
}

export function reduceAxis(x: F, y: F, outer: number, n: number, inner: number, s: number): void {
  if (inner === 1) {
    // one sum per output: in float64
    for (let a = 0; a < outer; a++) {
      let t = 0;
      for (let i = 0; i < n; i++) t += x[a * n + i];
      y[a] = t * s;
    }
    return;
  }
  y.fill(0, 0, outer * inner);
  for (let a = 0; a < outer; a++) {
    for (let i = 0; i < n; i++) {
      const o = (a * n + i) * inner;
      for (let j = 0; j < inner; j++) y[a * inner + j] += x[o + j];
    }
  }
  if (s !== 1) for (let i = 0; i < outer * inner; i++) y[i] *= s;
}

export function broadcastAxis(g: F, dx: F, outer: number, n: number, inner: number, s: number): void {
  for (let a = 0; a < outer; a++) {
    for (let i = 0; i < n; i++) {
      const d = (a * n + i) * inner;
      for (let j = 0; j < inner; j++) dx[d + j] += s * g[a * inner + j];
    }
  }
}

/** Shape [P, N0, Q, N1, R] -> [P, N1, Q, N0, R]. */
export function swapAxes(x: F, shape: readonly number[], a0: number, a1: number, y: F, accumulate: boolean): void {
  let P = 1;
  for (let i = 0; i < a0; i++) P *= shape[i];
  const N0 = shape[a0];
  const N1 = shape[a1];
  let Q = 1;
  for (let i = a0 + 1; i < a1; i++) Q *= shape[i];
  let R = 1;
  for (let i = a1 + 1; i < shape.length; i++) R *= shape[i];
  for (let p = 0; p < P; p++) {
    for (let i0 = 0; i0 < N0; i0++) {
      for (let q = 0; q < Q; q++) {
        for (let i1 = 0; i1 < N1; i1++) {
          const s = (((p * N0 + i0) * Q + q) * N1 + i1) * R;
          const d = (((p * N1 + i1) * Q + q) * N0 + i0) * R;
          if (accumulate) for (let r = 0; r < R; r++) y[d + r] += x[s + r];
          else for (let r = 0; r < R; r++) y[d + r] = x[s + r];
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Attention

export function causalMask(x: F, y: F, count: number, T: number): void {
  y.set(x.subarray(0, count * T * T));
  for (let m = 0; m < count * T * T; m += T * T) {
    for (let i = 0; i < T; i++) y.fill(-Infinity, m + i * T + i + 1, m + (i + 1) * T);
  }
}

export function causalMaskBackward(g: F, dx: F, count: number, T: number): void {
  for (let m = 0; m < count * T * T; m += T * T) {
    for (let i = 0; i < T; i++) for (let j = 0; j <= i; j++) dx[m + i * T + j] += g[m + i * T + j];
  }
}

export function attention(q: F, k: F, v: F, out: F, att: F, B: number, T: number, C: number, nHead: number): void {
  const hd = C / nHead;
  const sc = 1 / Math.sqrt(hd);
  out.fill(0, 0, B * T * C);
  att.fill(0, 0, B * nHead * T * T);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < nHead; h++) {
      const a0 = (b * nHead + h) * T * T;
      for (let i = 0; i < T; i++) {
        const qi = (b * T + i) * C + h * hd;
        const row = a0 + i * T;
        let m = -Infinity;
        for (let j = 0; j <= i; j++) {
          const kj = (b * T + j) * C + h * hd;
          let s = 0;
          for (let d = 0; d < hd; d++) s += q[qi + d] * k[kj + d];
          s *= sc;
          att[row + j] = s;
          if (s > m) m = s;
        }
        let z = 0;
        for (let j = 0; j <= i; j++) {
          const e = Math.exp(att[row + j] - m);
          att[row + j] = e;
          z += e;
        }
        for (let j = 0; j <= i; j++) {
          const p = att[row + j] / z;
          att[row + j] = p;
          const vj = (b * T + j) * C + h * hd;
          for (let d = 0; d < hd; d++) out[qi + d] += p * v[vj + d];
        }
      }
    }
  }
}

export function attentionBackward(
  q: F,
  k: F,
  v: F,
  att: F,
  g: F,
  dq: F | null,
  dk: F | null,
  dv: F | null,
  B: number,
  T: number,
  C: number,
  nHead: number,
): void {
  const hd = C / nHead;
  const sc = 1 / Math.sqrt(hd);
  const dp = new Float32Array(T);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < nHead; h++) {
      const a0 = (b * nHead + h) * T * T;
      for (let i = 0; i < T; i++) {
        const gi = (b * T + i) * C + h * hd;
        const row = a0 + i * T;
        let dot = 0;
        for (let j = 0; j <= i; j++) {
          const vj = (b * T + j) * C + h * hd;
          let s = 0;
          for (let d = 0; d < hd; d++) s += g[gi + d] * v[vj + d];
          dp[j] = s;
          dot += s * att[row + j];
          if (dv) for (let d = 0; d < hd; d++) dv[vj + d] += att[row + j] * g[gi + d];
        }
        for (let j = 0; j <= i; j++) {
          const ds = att[row + j] * (dp[j] - dot) * sc;
          const kj = (b * T + j) * C + h * hd;
          if (dq) for (let d = 0; d < hd; d++) dq[gi + d] += ds * k[kj + d];
          if (dk) for (let d = 0; d < hd; d++) dk[kj + d] += ds * q[gi + d];
        }
      }
    }
  }
}

export function attentionCached(
  qkv: F,
  K: F,
  Vc: F,
  out: F,
  B: number,
  T: number,
  C: number,
  nHead: number,
  N: number,
  pos0: number,
): void {
  const hd = C / nHead;
  const sc = 1 / Math.sqrt(hd);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const r = (b * T + t) * 3 * C;
      const c = (b * N + pos0 + t) * C;
      K.set(qkv.subarray(r + C, r + 2 * C), c);
      Vc.set(qkv.subarray(r + 2 * C, r + 3 * C), c);
    }
  }
  out.fill(0, 0, B * T * C);
  const w = new Float64Array(pos0 + T); // attention weights of one query
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < nHead; h++) {
      for (let t = 0; t < T; t++) {
        const qi = (b * T + t) * 3 * C + h * hd;
        const P = pos0 + t + 1; // keys this query sees
        let m = -Infinity;
        for (let j = 0; j < P; j++) {
          const kj = (b * N + j) * C + h * hd;
          let s = 0;
          for (let d = 0; d < hd; d++) s += qkv[qi + d] * K[kj + d];
          w[j] = s * sc;
          if (w[j] > m) m = w[j];
        }
        let z = 0;
        for (let j = 0; j < P; j++) z += w[j] = Math.exp(w[j] - m);
        const oi = (b * T + t) * C + h * hd;
        for (let j = 0; j < P; j++) {
          const p = w[j] / z;
          const vj = (b * N + j) * C + h * hd;
          for (let d = 0; d < hd; d++) out[oi + d] += p * Vc[vj + d];
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Optimizers: float64 per element, stored back in float32, in a fixed order (same inputs, same bits).

export function adam(w: F, g: F, m: F, v: F, n: number, h: AdamStep): void {
  const { lr, beta1, beta2, eps, weightDecay: wd, bc1, bc2 } = h;
  for (let i = 0; i < n; i++) {
    const gi = wd ? g[i] + wd * w[i] : g[i];
    m[i] = beta1 * m[i] + (1 - beta1) * gi;
    v[i] = beta2 * v[i] + (1 - beta2) * gi * gi;
    w[i] -= (lr * (m[i] / bc1)) / (Math.sqrt(v[i] / bc2) + eps);
  }
}

export function rmsprop(w: F, g: F, s: F, n: number, h: RmspropStep): void {
  const { lr, rho, eps, weightDecay: wd } = h;
  for (let i = 0; i < n; i++) {
    const gi = wd ? g[i] + wd * w[i] : g[i];
    s[i] = rho * s[i] + (1 - rho) * gi * gi;
    w[i] -= (lr * gi) / (Math.sqrt(s[i]) + eps);
  }
}

export function adagrad(w: F, g: F, sum: F, n: number, h: AdagradStep): void {
  const { lr, eps, weightDecay: wd } = h;
  for (let i = 0; i < n; i++) {
    const gi = wd ? g[i] + wd * w[i] : g[i];
    sum[i] += gi * gi;
    w[i] -= (lr * gi) / (Math.sqrt(sum[i]) + eps);
  }
}

export function sgd(w: F, g: F, buf: F, n: number, h: SgdStep): void {
  const { lr, momentum: mu, nesterov, weightDecay: wd, first } = h;
  for (let i = 0; i < n; i++) {
    const gi = wd ? g[i] + wd * w[i] : g[i];
    if (mu === 0) {
      w[i] -= lr * gi;
      continue;
    }
    buf[i] = first ? gi : mu * buf[i] + gi;
    w[i] -= lr * (nesterov ? gi + mu * buf[i] : buf[i]);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Norms

export function sumSquares(x: F, n: number, out: F, outOff: number): void {
  let s = 0;
  for (let i = 0; i < n; i++) s += x[i] * x[i];
  out[outOff] = s;
}

export function clipFactor(sq: F, count: number, maxNorm: number, out: F): void {
  let s = 0;
  for (let i = 0; i < count; i++) s += sq[i];
  const norm = Math.sqrt(s);
  out[0] = norm;
  out[1] = Number.isFinite(norm) && maxNorm > 0 && norm > maxNorm ? maxNorm / (norm + 1e-6) : 1;
}

export function scaleBy(x: F, n: number, f: F, fOff: number): void {
  const s = f[fOff];
  for (let i = 0; i < n; i++) x[i] *= s;
}

// ---------------------------------------------------------------------------------------------------------------
// Random numbers

/**
 * 32 well-mixed bits from (seed, i), in uint32 arithmetic only, so the wasm (assembly/random.ts) and WGSL
 * (webgpu/kernels/elementwise.ts) copies give the same bits: i spread by the golden ratio and the seed added, then
 * Wellons' lowbias32 finalizer, the seed mixed in again, and the finalizer once more (two rounds: neighbouring i
 * and neighbouring seeds give unrelated words).
 */
export function dropHash(seed: number, i: number): number {
  let h = (Math.imul(i, 0x9e3779b9) + seed) >>> 0;
  h = lowbias32(h);
  h = lowbias32((h ^ seed) >>> 0);
  return h;
}

function lowbias32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

export function dropoutMask(out: F, n: number, seed: number, threshold: number, keep: number): void {
  for (let i = 0; i < n; i++) out[i] = dropHash(seed, i) < threshold ? 0 : keep;
}
