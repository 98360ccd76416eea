// The differentiable ops. Each op checks its shapes on the host, asks the inputs' backend for its output storage and
// runs the backend's kernel; when a gradient is needed, it records a node whose rule (grad.ts, same name) computes
// the input gradients later. Ops never modify their inputs and never read values back to JavaScript.
//
// Legend: B batch, T time, D input features, H hidden units, V vocabulary, C channels, N rows, M/K/N matmul sizes.
// Recurrent sequences are time-major: (T, B, ·).

import type { BinaryOp, Sampling, UnaryOp } from "./backend.js";
import { needsGrad, record } from "./node.js";
import { allocateUninit } from "./scope.js";
import {
  axisSplit,
  broadcastShape,
  broadcastStrides,
  contiguousStrides,
  fmtShape,
  normAxis,
  sameShape,
} from "./shape.js";
import { backendOf, shapeSize, Tensor, uninit } from "./tensor.js";
import type { Rng } from "../util/rng.js";

export { isGradEnabled, noGrad } from "./node.js";

export const GELU_C = Math.sqrt(2 / Math.PI);

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
  const be = backendOf("matmul", a, b);
  const out = uninit(be, outShape);
  be.matmul(a.storage, b.storage, out.storage, M, K, N, { transA, transB, batch });
  record("matmul", [a, b], [out], { transA, transB, M, K, N, batch });
  return out;
}

/**
 * x · w + b, a dense layer: x (..., K), w (K, N), b (N) -> (..., N). The bias is added inside the product (one
 * kernel on webgpu instead of a product and an add; the same bits as matmul then add on every backend).
 */
export function linear(x: Tensor, w: Tensor, b: Tensor): Tensor {
  if (w.ndim !== 2) fail("linear", `w must be 2-d, got ${fmtShape(w.shape)}`);
  const [K, N] = w.shape;
  if (x.ndim < 1 || x.shape[x.ndim - 1] !== K)
    fail("linear", `x ${fmtShape(x.shape)} and w ${fmtShape(w.shape)} do not chain`);
  if (b.ndim !== 1 || b.shape[0] !== N) fail("linear", `the bias is ${fmtShape(b.shape)}, w has ${N} columns`);
  const M = x.size / K;
  const be = backendOf("linear", x, w, b);
  const out = uninit(be, [...x.shape.slice(0, -1), N]);
  be.matmul(x.storage, w.storage, out.storage, M, K, N, { bias: b.storage });
  record("linear", [x, w, b], [out], { M, K, N });
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Broadcasting arithmetic

function binary(op: BinaryOp, a: Tensor, b: Tensor): Tensor {
  const shape = broadcastShape(a.shape, b.shape, op);
  const be = backendOf(op, a, b);
  const out = uninit(be, shape);
  const sa = broadcastStrides(shape, a.shape);
  const sb = broadcastStrides(shape, b.shape);
  be.binary(op, a.storage, sa, b.storage, sb, out.storage, shape);
  record(op, [a, b], [out], { sa, sb });
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
  const out = uninit(a.backend, a.shape);
  a.backend.scale(a.storage, out.storage, a.size, s, false);
  record("scale", [a], [out], { s });
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Elementwise nonlinearities

function unary(op: UnaryOp, a: Tensor): Tensor {
  const out = uninit(a.backend, a.shape);
  a.backend.unary(op, a.storage, out.storage, a.size);
  record("unary", [a], [out], { op });
  return out;
}

/** σ(x) = 1 / (1 + e^-x) */
export function sigmoid(a: Tensor): Tensor {
  return unary("sigmoid", a);
}

export function tanh(a: Tensor): Tensor {
  return unary("tanh", a);
}

export function exp(a: Tensor): Tensor {
  return unary("exp", a);
}

/** Natural logarithm. */
export function log(a: Tensor): Tensor {
  return unary("log", a);
}

/** max(x, 0) */
export function relu(a: Tensor): Tensor {
  return unary("relu", a);
}

/** GELU, tanh approximation (as GPT-2 and PyTorch's approximate="tanh"): ½x(1 + tanh(√(2/π)(x + 0.044715x³))). */
export function gelu(a: Tensor): Tensor {
  return unary("gelu", a);
}

// ---------------------------------------------------------------------------------------------------------------
// Softmax and the fused cross-entropy

/** softmax over the last axis: y_j = e^(x_j - max) / Σ_k e^(x_k - max). */
export function softmax(a: Tensor): Tensor {
  if (a.ndim < 1) fail("softmax", "needs at least 1-d input");
  const V = a.shape[a.ndim - 1];
  const out = uninit(a.backend, a.shape);
  a.backend.softmax(a.storage, out.storage, a.size / V, V);
  record("softmax", [a], [out], { V });
  return out;
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
  for (let n = 0; n < N; n++) {
    const t = targets[n];
    if (!(t >= 0 && t < V)) fail("softmaxCrossEntropy", `target ${t} at position ${n} is outside [0, ${V})`);
  }
  const be = logits.backend;
  const keep = needsGrad([logits]);
  const probs = keep ? allocateUninit(be, logits.size) : null;
  const out = uninit(be, []);
  be.crossEntropy(logits.storage, targets, out.storage, probs, N, V);
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
  for (let n = 0; n < ids.length; n++) {
    const id = ids[n];
    if (!(id >= 0 && id < V)) fail("embedding", `id ${id} at position ${n} is outside [0, ${V})`);
  }
  const out = uninit(weight.backend, [...shape, D]);
  weight.backend.embedding(weight.storage, ids, out.storage, D);
  record("embedding", [weight], [out], { ids: ids.slice(), D });
  return out;
}

/**
 * Rows of weight (V, D) gathered at the ids held in `ids` (float values, on the weight's backend) from position `at`:
 * the result has shape (...shape, D). Generation feeds sampleTokens' output back through it without reading the ids.
 * No gradient: run it under noGrad.
 */
export function embeddingFrom(weight: Tensor, ids: Tensor, at: number, shape: number[]): Tensor {
  const be = backendOf("embeddingFrom", weight, ids);
  if (weight.ndim !== 2) fail("embeddingFrom", `weight must be (V, D), got ${fmtShape(weight.shape)}`);
  const n = shapeSize(shape);
  if (!(Number.isInteger(at) && at >= 0 && at + n <= ids.size)) {
    fail("embeddingFrom", `${n} ids from position ${at} do not fit in ${ids.size}`);
  }
  if (needsGrad([weight])) fail("embeddingFrom", "has no gradient; run it under noGrad");
  const out = uninit(be, [...shape, weight.shape[1]]);
  be.embeddingFrom(weight.storage, ids.storage, at, out.storage, n, weight.shape[1]);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Sampling

/**
 * One token per row of logits (rows, V), drawn on their backend (../engine/sampling.ts's weights) with the uniform
 * draws u[uAt + r], written as float values to ids[at + r]. Nothing is read back: embeddingFrom takes them from there.
 */
export function sampleTokens(logits: Tensor, u: Tensor, uAt: number, ids: Tensor, at: number, how: Sampling): void {
  const be = backendOf("sampleTokens", logits, u, ids);
  if (logits.ndim !== 2) fail("sampleTokens", `logits must be (rows, V), got ${fmtShape(logits.shape)}`);
  const [rows, V] = logits.shape;
  if (!(Number.isInteger(uAt) && uAt >= 0 && uAt + rows <= u.size)) {
    fail("sampleTokens", `${rows} uniform draws from position ${uAt} do not fit in ${u.size}`);
  }
  if (!(Number.isInteger(at) && at >= 0 && at + rows <= ids.size)) {
    fail("sampleTokens", `${rows} ids from position ${at} do not fit in ${ids.size}`);
  }
  const { temperature, topK, topP } = how;
  if (!(temperature > 0) || !(topP > 0 && topP <= 1) || !(Number.isInteger(topK) && topK >= 0)) {
    fail(
      "sampleTokens",
      `temperature ${temperature} must be > 0, topP ${topP} in (0, 1], topK ${topK} a whole number >= 0`,
    );
  }
  be.sampleRows(logits.storage, u.storage, uAt, ids.storage, at, rows, V, how);
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
  const be = backendOf("concat", ...ts);
  const out = uninit(be, shape);
  const [outer, total, inner] = axisSplit(shape, ax);
  let offset = 0;
  for (let i = 0; i < ts.length; i++) {
    const block = sizes[i] * inner;
    be.copyBlocks(ts[i].storage, 0, block, out.storage, offset * inner, total * inner, block, outer, false);
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
  const out = uninit(t.backend, shape);
  const [outer, , inner] = axisSplit(t.shape, ax);
  const block = (end - start) * inner;
  t.backend.copyBlocks(t.storage, start * inner, n * inner, out.storage, 0, block, block, outer, false);
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
  // Everything is the axis of a (1, size, 1) view.
  const [outer, n, inner] = axis === undefined ? [1, t.size, 1] : axisSplit(t.shape, normAxis(axis, t.ndim, op));
  const ax = axis === undefined ? null : normAxis(axis, t.ndim, op);
  let shape: number[];
  if (ax === null) shape = keepDims ? t.shape.map(() => 1) : [];
  else {
    shape = t.shape.slice();
    if (keepDims) shape[ax] = 1;
    else shape.splice(ax, 1);
  }
  const out = uninit(t.backend, shape);
  t.backend.reduceAxis(t.storage, out.storage, outer, n, inner, op === "mean" ? 1 / n : 1);
  record("reduce", [t], [out], { outer, n, inner, s: op === "mean" ? 1 / n : 1 });
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
  const out = new Tensor(t.storage, s, false, t.backend);
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
  const out = uninit(t.backend, shape);
  if (x === y) t.backend.copy(t.storage, 0, out.storage, 0, t.size);
  else t.backend.swapAxes(t.storage, t.shape, x, y, out.storage, false);
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
  const be = backendOf("layerNorm", x, gamma, beta);
  const out = uninit(be, x.shape);
  const xhat = allocateUninit(be, x.size);
  const rstd = allocateUninit(be, rows);
  be.layerNorm(x.storage, gamma.storage, beta.storage, out.storage, xhat, rstd, rows, C, eps);
  record("layerNorm", [x, gamma, beta], [out], { xhat, rstd, C });
  return out;
}

/**
 * Inverted dropout: in training, zero each entry with probability `rate` and scale survivors by 1/(1 - rate), so
 * evaluation needs no rescaling. Not training (or rate 0): x itself. The mask is made on the backend from a
 * counter-based hash of one seed drawn from the seeded generator (the same mask on every backend, nothing uploaded)
 * and multiplied in there.
 */
export function dropout(x: Tensor, rate: number, rng: Rng, training: boolean): Tensor {
  if (!(rate >= 0 && rate < 1)) fail("dropout", `rate ${rate} must be in [0, 1)`);
  if (!training || rate === 0) return x;
  const be = x.backend;
  const mask = allocateUninit(be, x.size);
  // Dropped when the hash's 32 bits fall below rate·2³² (the rate to within 2⁻³²).
  const threshold = Math.min(0xffffffff, Math.floor(rate * 4294967296));
  be.dropoutMask(mask, x.size, rng.nextU32(), threshold, Math.fround(1 / (1 - rate)));
  const out = uninit(be, x.shape);
  const s = contiguousStrides(x.shape);
  be.binary("mul", x.storage, s, mask, s, out.storage, x.shape);
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
  const out = uninit(scores.backend, scores.shape);
  scores.backend.causalMask(scores.storage, out.storage, scores.size / (T * T), T);
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
  const be = backendOf("causalSelfAttention", q, k, v);
  const att = allocateUninit(be, B * nHead * T * T); // (B, nH, T, T) softmax weights, kept for backward
  const out = uninit(be, [B, T, C]);
  be.attention(q.storage, k.storage, v.storage, out.storage, att, B, T, C, nHead);
  record("causalSelfAttention", [q, k, v], [out], { att, nHead });
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Fused recurrent layers (recurrent.ts), re-exported so every op is importable from here.

export {
  lstm,
  gru,
  rnn,
  lstmProjected,
  gruProjected,
  rnnProjected,
  type LstmResult,
  type GruResult,
  type RnnResult,
} from "./recurrent.js";
