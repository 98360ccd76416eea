// The differentiable ops. Each op computes its output(s) and, when a gradient is needed, records a node whose rule
// (grad.ts, same name) computes the input gradients later. Ops never modify their inputs.
//
// Legend: B batch, T time, D input features, H hidden units, V vocabulary, C channels, N rows, M/K/N matmul sizes.
// Recurrent sequences are time-major: (T, B, ·).

import type { Rng } from "../util/rng.js";
import { needsGrad, record } from "./autograd.js";
import { getBackend } from "./backends/index.js";
import { axisSplit, broadcastPlan, broadcastShape, expand, fmtShape, normAxis, sameShape, swapAxes } from "./shape.js";
import { shapeSize, Tensor } from "./tensor.js";

export { isGradEnabled, noGrad } from "./autograd.js";

function fail(op: string, msg: string): never {
  throw new Error(`${op}: ${msg}`);
}

// ---------------------------------------------------------------------------------------------------------------
// Matrix product

export interface MatmulOpts {
  /** a is stored transposed: (K, M) (2-d a), or (..., K, M) in the batched form. */
  transA?: boolean;
  /** b is stored transposed: (N, K), or (..., N, K) in the batched form. */
  transB?: boolean;
}

/**
 * C = op(A) · op(B).
 * - b 2-d: a is (..., K) with its leading dims flattened into M rows (or (K, M) with transA), C is (..., N).
 * - b n-d (n > 2): batched; a and b share the leading dims, each pair of trailing matrices is multiplied.
 */
export function matmul(a: Tensor, b: Tensor, opts: MatmulOpts = {}): Tensor {
  const transA = opts.transA ?? false;
  const transB = opts.transB ?? false;
  if (b.ndim < 2) fail("matmul", `b must be at least 2-d, got ${fmtShape(b.shape)}`);
  if (a.ndim < 1) fail("matmul", "a must be at least 1-d");
  let batch = 1;
  let M: number, K: number, N: number;
  let outShape: number[];
  if (b.ndim === 2) {
    [K, N] = transB ? [b.shape[1], b.shape[0]] : [b.shape[0], b.shape[1]];
    if (transA) {
      if (a.ndim !== 2) fail("matmul", `transA needs a 2-d a, got ${fmtShape(a.shape)}`);
      if (a.shape[0] !== K) fail("matmul", `aᵀ ${fmtShape(a.shape)} and b ${fmtShape(b.shape)} do not chain`);
      M = a.shape[1];
      outShape = [M, N];
    } else {
      if (a.shape[a.ndim - 1] !== K) fail("matmul", `a ${fmtShape(a.shape)} and b ${fmtShape(b.shape)} do not chain`);
      M = a.size / K;
      outShape = [...a.shape.slice(0, -1), N];
    }
  } else {
    if (a.ndim !== b.ndim || !sameShape(a.shape.slice(0, -2), b.shape.slice(0, -2))) {
      fail("matmul", `batched shapes ${fmtShape(a.shape)} and ${fmtShape(b.shape)} must share leading dims`);
    }
    const nd = a.ndim;
    [M, K] = transA ? [a.shape[nd - 1], a.shape[nd - 2]] : [a.shape[nd - 2], a.shape[nd - 1]];
    const [Kb, Nb] = transB ? [b.shape[nd - 1], b.shape[nd - 2]] : [b.shape[nd - 2], b.shape[nd - 1]];
    if (Kb !== K) fail("matmul", `a ${fmtShape(a.shape)} and b ${fmtShape(b.shape)} do not chain`);
    N = Nb;
    batch = shapeSize(a.shape.slice(0, -2));
    outShape = [...a.shape.slice(0, -2), M, N];
  }
  const out = Tensor.zeros(outShape);
  const be = getBackend();
  for (let p = 0; p < batch; p++) {
    be.matmul(
      batch === 1 ? a.data : a.data.subarray(p * M * K, (p + 1) * M * K),
      batch === 1 ? b.data : b.data.subarray(p * K * N, (p + 1) * K * N),
      batch === 1 ? out.data : out.data.subarray(p * M * N, (p + 1) * M * N),
      M,
      K,
      N,
      { transA, transB },
    );
  }
  record("matmul", [a, b], [out], { transA, transB, M, K, N, batch });
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Broadcasting arithmetic

type BinOp = "add" | "sub" | "mul";

function binary(op: BinOp, a: Tensor, b: Tensor): Tensor {
  const shape = broadcastShape(a.shape, b.shape, op);
  const out = Tensor.zeros(shape);
  const n = out.size;
  const o = out.data;
  const pa = broadcastPlan(shape, a.shape);
  const pb = broadcastPlan(shape, b.shape);
  if (pa.kind === "same" && pb.kind === "mod") {
    // The common bias case: a full, b repeated over rows. Row loops, no index table.
    const x = a.data;
    const y = b.data;
    const m = pb.n;
    for (let r = 0; r < n; r += m) {
      if (op === "add") for (let j = 0; j < m; j++) o[r + j] = x[r + j] + y[j];
      else if (op === "sub") for (let j = 0; j < m; j++) o[r + j] = x[r + j] - y[j];
      else for (let j = 0; j < m; j++) o[r + j] = x[r + j] * y[j];
    }
  } else {
    const x = expand(pa, a.data, n);
    const y = expand(pb, b.data, n);
    if (op === "add") for (let i = 0; i < n; i++) o[i] = x[i] + y[i];
    else if (op === "sub") for (let i = 0; i < n; i++) o[i] = x[i] - y[i];
    else for (let i = 0; i < n; i++) o[i] = x[i] * y[i];
  }
  record(op, [a, b], [out], { pa, pb });
  return out;
}

/** a + b, broadcasting. */
export function add(a: Tensor, b: Tensor): Tensor {
  return binary("add", a, b);
}

/** a - b, broadcasting. */
export function sub(a: Tensor, b: Tensor): Tensor {
  return binary("sub", a, b);
}

/** a * b elementwise, broadcasting. */
export function mul(a: Tensor, b: Tensor): Tensor {
  return binary("mul", a, b);
}

/** s * a for a constant s. */
export function scale(a: Tensor, s: number): Tensor {
  const out = Tensor.zeros(a.shape);
  const x = a.data;
  const o = out.data;
  for (let i = 0; i < o.length; i++) o[i] = s * x[i];
  record("scale", [a], [out], { s });
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Elementwise nonlinearities (one loop each: no per-element callbacks on the hot path)

/** σ(x) = 1 / (1 + e^-x) */
export function sigmoid(a: Tensor): Tensor {
  const out = Tensor.zeros(a.shape);
  const x = a.data;
  const o = out.data;
  for (let i = 0; i < o.length; i++) o[i] = 1 / (1 + Math.exp(-x[i]));
  record("sigmoid", [a], [out], null);
  return out;
}

export function tanh(a: Tensor): Tensor {
  const out = Tensor.zeros(a.shape);
  const x = a.data;
  const o = out.data;
  for (let i = 0; i < o.length; i++) o[i] = Math.tanh(x[i]);
  record("tanh", [a], [out], null);
  return out;
}

export function exp(a: Tensor): Tensor {
  const out = Tensor.zeros(a.shape);
  const x = a.data;
  const o = out.data;
  for (let i = 0; i < o.length; i++) o[i] = Math.exp(x[i]);
  record("exp", [a], [out], null);
  return out;
}

/** Natural logarithm. */
export function log(a: Tensor): Tensor {
  const out = Tensor.zeros(a.shape);
  const x = a.data;
  const o = out.data;
  for (let i = 0; i < o.length; i++) o[i] = Math.log(x[i]);
  record("log", [a], [out], null);
  return out;
}

/** max(x, 0) */
export function relu(a: Tensor): Tensor {
  const out = Tensor.zeros(a.shape);
  const x = a.data;
  const o = out.data;
  for (let i = 0; i < o.length; i++) o[i] = x[i] > 0 ? x[i] : 0;
  record("relu", [a], [out], null);
  return out;
}

export const GELU_C = Math.sqrt(2 / Math.PI);

/** GELU, tanh approximation (as GPT-2 and PyTorch's approximate="tanh"): ½x(1 + tanh(√(2/π)(x + 0.044715x³))). */
export function gelu(a: Tensor): Tensor {
  const out = Tensor.zeros(a.shape);
  const x = a.data;
  const o = out.data;
  for (let i = 0; i < o.length; i++) {
    const v = x[i];
    o[i] = 0.5 * v * (1 + Math.tanh(GELU_C * (v + 0.044715 * v * v * v)));
  }
  record("gelu", [a], [out], null);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Softmax and the fused cross-entropy

/** softmax over the last axis: y_j = e^(x_j - max) / Σ_k e^(x_k - max). */
export function softmax(a: Tensor): Tensor {
  if (a.ndim < 1) fail("softmax", "needs at least 1-d input");
  const V = a.shape[a.ndim - 1];
  const out = Tensor.zeros(a.shape);
  softmaxRows(a.data, out.data, V);
  record("softmax", [a], [out], { V });
  return out;
}

function softmaxRows(x: Float32Array, y: Float32Array, V: number): void {
  for (let r = 0; r < x.length; r += V) {
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

/**
 * Mean cross-entropy in nats of softmax(logits) against integer targets, over all N = size / V positions:
 * L = (1/N) Σ_n [logsumexp(x_n) - x_n[t_n]], with logsumexp computed as max + log Σ e^(x - max) (stable).
 * logits (..., V); targets: N ints in [0, V). Returns a scalar.
 */
export function softmaxCrossEntropy(logits: Tensor, targets: Int32Array): Tensor {
  if (logits.ndim < 1) fail("softmaxCrossEntropy", "logits must be at least 1-d");
  const V = logits.shape[logits.ndim - 1];
  const N = logits.size / V;
  if (targets.length !== N) {
    fail("softmaxCrossEntropy", `logits ${fmtShape(logits.shape)} have ${N} positions but ${targets.length} targets`);
  }
  const x = logits.data;
  const keep = needsGrad([logits]);
  const probs = keep ? new Float32Array(logits.size) : null;
  let total = 0;
  for (let n = 0; n < N; n++) {
    const r = n * V;
    const t = targets[n];
    if (!(t >= 0 && t < V)) fail("softmaxCrossEntropy", `target ${t} at position ${n} is outside [0, ${V})`);
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
    total += m + Math.log(s) - x[r + t];
  }
  const out = Tensor.scalar(total / N);
  if (probs) record("softmaxCrossEntropy", [logits], [out], { probs, targets: targets.slice(), V, N });
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Embedding

/** Rows of weight (V, D) gathered at ids; the result has shape (...shape, D). */
export function embedding(weight: Tensor, ids: Int32Array, shape: number[] = [ids.length]): Tensor {
  if (weight.ndim !== 2) fail("embedding", `weight must be (V, D), got ${fmtShape(weight.shape)}`);
  if (shapeSize(shape) !== ids.length) fail("embedding", `${ids.length} ids do not fill shape ${fmtShape(shape)}`);
  const [V, D] = weight.shape;
  const out = Tensor.zeros([...shape, D]);
  const w = weight.data;
  for (let n = 0; n < ids.length; n++) {
    const id = ids[n];
    if (!(id >= 0 && id < V)) fail("embedding", `id ${id} at position ${n} is outside [0, ${V})`);
    out.data.set(w.subarray(id * D, (id + 1) * D), n * D);
  }
  record("embedding", [weight], [out], { ids: ids.slice(), D });
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Shape ops

/** Join tensors along `axis`; all other dims must agree. */
export function concat(ts: Tensor[], axis: number): Tensor {
  if (ts.length === 0) fail("concat", "needs at least one tensor");
  const nd = ts[0].ndim;
  const ax = normAxis(axis, nd, "concat");
  const shape = ts[0].shape.slice();
  const sizes: number[] = [];
  for (const t of ts) {
    const s = t.shape.slice();
    s[ax] = shape[ax];
    if (!sameShape(s, shape))
      fail("concat", `shapes ${fmtShape(ts[0].shape)} and ${fmtShape(t.shape)} differ off axis ${ax}`);
    sizes.push(t.shape[ax]);
  }
  shape[ax] = sizes.reduce((x, y) => x + y, 0);
  const out = Tensor.zeros(shape);
  const [outer, total, inner] = axisSplit(shape, ax);
  let offset = 0;
  for (let i = 0; i < ts.length; i++) {
    const block = sizes[i] * inner;
    const src = ts[i].data;
    for (let o = 0; o < outer; o++) {
      out.data.set(src.subarray(o * block, (o + 1) * block), (o * total + offset) * inner);
    }
    offset += sizes[i];
  }
  record("concat", ts, [out], { axis: ax, sizes });
  return out;
}

/** Indices [start, end) along `axis`. */
export function slice(t: Tensor, axis: number, start: number, end: number): Tensor {
  const ax = normAxis(axis, t.ndim, "slice");
  const n = t.shape[ax];
  if (!(Number.isInteger(start) && Number.isInteger(end) && 0 <= start && start <= end && end <= n)) {
    fail("slice", `range [${start}, ${end}) is outside axis ${ax} of length ${n}`);
  }
  const shape = t.shape.slice();
  shape[ax] = end - start;
  const out = Tensor.zeros(shape);
  const [outer, , inner] = axisSplit(t.shape, ax);
  const block = (end - start) * inner;
  for (let o = 0; o < outer; o++) {
    const s = (o * n + start) * inner;
    out.data.set(t.data.subarray(s, s + block), o * block);
  }
  record("slice", [t], [out], { axis: ax, start, end });
  return out;
}

/** Cut `axis` into consecutive pieces of the given sizes (they must add up to the axis length). */
export function split(t: Tensor, axis: number, sizes: number[]): Tensor[] {
  const ax = normAxis(axis, t.ndim, "split");
  const total = sizes.reduce((x, y) => x + y, 0);
  if (total !== t.shape[ax]) fail("split", `sizes add up to ${total} but axis ${ax} has length ${t.shape[ax]}`);
  const parts: Tensor[] = [];
  let start = 0;
  for (const s of sizes) {
    parts.push(slice(t, ax, start, start + s));
    start += s;
  }
  return parts;
}

/** Sum over `axis` (removed from the shape unless keepDims), or over everything into a scalar. */
export function sum(t: Tensor, axis?: number, keepDims = false): Tensor {
  return reduce("sum", t, axis, keepDims);
}

/** Mean over `axis`, or over everything. */
export function mean(t: Tensor, axis?: number, keepDims = false): Tensor {
  return reduce("mean", t, axis, keepDims);
}

function reduce(op: "sum" | "mean", t: Tensor, axis: number | undefined, keepDims: boolean): Tensor {
  if (axis === undefined) {
    let s = 0;
    for (let i = 0; i < t.size; i++) s += t.data[i];
    const out = new Tensor(Float32Array.of(op === "mean" ? s / t.size : s), keepDims ? t.shape.map(() => 1) : []);
    record(op, [t], [out], { axis: null });
    return out;
  }
  const ax = normAxis(axis, t.ndim, op);
  const [outer, n, inner] = axisSplit(t.shape, ax);
  const shape = t.shape.slice();
  if (keepDims) shape[ax] = 1;
  else shape.splice(ax, 1);
  const out = Tensor.zeros(shape);
  const x = t.data;
  const o = out.data;
  for (let a = 0; a < outer; a++) {
    for (let i = 0; i < n; i++) {
      const s = (a * n + i) * inner;
      for (let j = 0; j < inner; j++) o[a * inner + j] += x[s + j];
    }
  }
  if (op === "mean") for (let i = 0; i < o.length; i++) o[i] /= n;
  record(op, [t], [out], { axis: ax });
  return out;
}

/** Same data, new shape (one dim may be -1). Shares the storage: no copy. */
export function reshape(t: Tensor, shape: number[]): Tensor {
  const s = shape.slice();
  const free = s.indexOf(-1);
  if (free >= 0) {
    const known = shapeSize(s.filter((_, i) => i !== free));
    s[free] = known === 0 ? 0 : t.size / known;
  }
  if (shapeSize(s) !== t.size || s.some((d) => !Number.isInteger(d) || d < 0)) {
    fail("reshape", `cannot view ${fmtShape(t.shape)} as ${fmtShape(shape)}`);
  }
  const out = new Tensor(t.data, s);
  record("reshape", [t], [out], null);
  return out;
}

/** Swap two axes (a copy). */
export function transpose(t: Tensor, a0: number, a1: number): Tensor {
  let x = normAxis(a0, t.ndim, "transpose");
  let y = normAxis(a1, t.ndim, "transpose");
  if (x > y) [x, y] = [y, x];
  const shape = t.shape.slice();
  [shape[x], shape[y]] = [shape[y], shape[x]];
  const out = Tensor.zeros(shape);
  if (x === y) out.data.set(t.data);
  else swapAxes(t.data, t.shape, x, y, out.data, false);
  record("transpose", [t], [out], { a0: x, a1: y });
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Normalisation and regularisation

/**
 * Layer norm over the last axis (size C): y = γ * (x - μ) / sqrt(σ² + eps) + β, σ² the biased variance.
 * gamma and beta are (C).
 */
export function layerNorm(x: Tensor, gamma: Tensor, beta: Tensor, eps = 1e-5): Tensor {
  const C = x.shape[x.ndim - 1];
  if (gamma.size !== C || beta.size !== C) {
    fail("layerNorm", `gamma ${fmtShape(gamma.shape)} and beta ${fmtShape(beta.shape)} must have ${C} entries`);
  }
  const rows = x.size / C;
  const out = Tensor.zeros(x.shape);
  const xhat = new Float32Array(x.size);
  const rstd = new Float32Array(rows);
  const xd = x.data;
  const g = gamma.data;
  const b = beta.data;
  for (let r = 0; r < rows; r++) {
    const o = r * C;
    let mu = 0;
    for (let j = 0; j < C; j++) mu += xd[o + j];
    mu /= C;
    let v = 0;
    for (let j = 0; j < C; j++) v += (xd[o + j] - mu) * (xd[o + j] - mu);
    const rs = 1 / Math.sqrt(v / C + eps);
    rstd[r] = rs;
    for (let j = 0; j < C; j++) {
      const h = (xd[o + j] - mu) * rs;
      xhat[o + j] = h;
      out.data[o + j] = g[j] * h + b[j];
    }
  }
  record("layerNorm", [x, gamma, beta], [out], { xhat, rstd, C });
  return out;
}

/**
 * Inverted dropout: in training, zero each entry with probability `rate` and scale survivors by 1/(1 - rate), so
 * evaluation needs no rescaling. Not training (or rate 0): x itself.
 */
export function dropout(x: Tensor, rate: number, rng: Rng, training: boolean): Tensor {
  if (!(rate >= 0 && rate < 1)) fail("dropout", `rate ${rate} must be in [0, 1)`);
  if (!training || rate === 0) return x;
  const keep = 1 / (1 - rate);
  const mask = new Float32Array(x.size);
  for (let i = 0; i < mask.length; i++) mask[i] = rng.random() < rate ? 0 : keep;
  const out = Tensor.zeros(x.shape);
  for (let i = 0; i < mask.length; i++) out.data[i] = x.data[i] * mask[i];
  record("dropout", [x], [out], { mask });
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Attention pieces

/**
 * Causal mask on the last two axes (..., T, T): entries above the diagonal (key after query) become -Infinity, so
 * a following softmax gives them zero weight.
 */
export function causalMask(scores: Tensor): Tensor {
  const nd = scores.ndim;
  const T = scores.shape[nd - 1];
  if (nd < 2 || scores.shape[nd - 2] !== T) fail("causalMask", `needs (..., T, T), got ${fmtShape(scores.shape)}`);
  const out = new Tensor(scores.data.slice(), scores.shape);
  for (let m = 0; m < scores.size; m += T * T) {
    for (let i = 0; i < T; i++) out.data.fill(-Infinity, m + i * T + i + 1, m + (i + 1) * T);
  }
  record("causalMask", [scores], [out], { T });
  return out;
}

/**
 * Multi-head causal self-attention on q, k, v (B, T, C) with nHead heads of size C / nHead:
 * out_h = softmax(mask(q_h k_hᵀ / sqrt(hd))) v_h, heads concatenated back into (B, T, C).
 */
export function causalSelfAttention(q: Tensor, k: Tensor, v: Tensor, nHead: number): Tensor {
  if (q.ndim !== 3 || !sameShape(q.shape, k.shape) || !sameShape(q.shape, v.shape)) {
    fail("causalSelfAttention", `q, k, v must share one (B, T, C) shape, got ${fmtShape(q.shape)}`);
  }
  const [B, T, C] = q.shape;
  if (C % nHead !== 0) fail("causalSelfAttention", `${C} channels do not split into ${nHead} heads`);
  const hd = C / nHead;
  const sc = 1 / Math.sqrt(hd);
  const att = new Float32Array(B * nHead * T * T); // (B, nH, T, T) softmax weights, kept for backward
  const out = Tensor.zeros([B, T, C]);
  const Q = q.data;
  const K = k.data;
  const Vd = v.data;
  const O = out.data;
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
          for (let d = 0; d < hd; d++) s += Q[qi + d] * K[kj + d];
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
          for (let d = 0; d < hd; d++) O[qi + d] += p * Vd[vj + d];
        }
      }
    }
  }
  record("causalSelfAttention", [q, k, v], [out], { att, nHead });
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Fused recurrent layers (recurrent.ts), re-exported so every op is importable from here.

export { lstm, gru, rnn, type LstmResult, type GruResult, type RnnResult } from "./recurrent.js";
