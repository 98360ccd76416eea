// The gradient table: one rule per op, keyed by op name. `gradRules` is typed `{ [K in OpName]: GradRule<K> }`,
// so adding an op name to OpSaved without writing its rule is a compile error.
//
// A rule reads the gradients of the node's outputs (`out.gradStorage`, null for an output the loss did not use) and
// ACCUMULATES (+=) into the gradients of the inputs that require one; inputs that were broadcast get the output
// gradient summed over the broadcast axes. Every rule runs on the inputs' backend through its kernels, so gradients
// stay where the values are. g denotes dL/d(output), ⊙ the elementwise product.
//
// Legend: as in ops.ts (B batch, T time, D input, H hidden, G gate width, V vocabulary, C channels).

import type { Backend, RnnBackwardArgs, Storage, Strides, UnaryOp } from "./backend.js";
import type { Node } from "./node.js";
import { allocate } from "./scope.js";
import { axisSplit, contiguousStrides } from "./shape.js";
import type { Tensor } from "./tensor.js";

/** What each op keeps for its rule (beyond its inputs and outputs). */
export interface OpSaved {
  matmul: { transA: boolean; transB: boolean; M: number; K: number; N: number; batch: number };
  linear: { M: number; K: number; N: number };
  add: { sa: Strides; sb: Strides };
  sub: { sa: Strides; sb: Strides };
  mul: { sa: Strides; sb: Strides };
  scale: { s: number };
  unary: { op: UnaryOp };
  softmax: { V: number };
  softmaxCrossEntropy: { probs: Storage; targets: Int32Array; V: number; N: number };
  embedding: { ids: Int32Array; D: number };
  concat: { axis: number; sizes: number[] };
  slice: { axis: number; start: number; end: number };
  reduce: { outer: number; n: number; inner: number; s: number };
  reshape: null;
  transpose: { a0: number; a1: number };
  layerNorm: { xhat: Storage; rstd: Storage; C: number };
  dropout: { mask: Storage };
  causalMask: { T: number };
  causalSelfAttention: { att: Storage; nHead: number };
  lstm: { T: number; B: number; D: number; H: number; xw: Storage; gates: Storage; cs: Storage };
  gru: { T: number; B: number; D: number; H: number; xw: Storage; gates: Storage; hn: Storage };
  rnn: { T: number; B: number; D: number; H: number; xw: Storage };
  lstmProjected: { T: number; B: number; H: number; gates: Storage; cs: Storage };
  gruProjected: { T: number; B: number; H: number; gates: Storage; hn: Storage };
  rnnProjected: { T: number; B: number; H: number };
}

export type OpName = keyof OpSaved;
export type GradRule<K extends OpName> = (node: Node<K>) => void;

/** The gradient of input t if it needs one, else null (the rule then skips that input). */
function want(t: Tensor): Storage | null {
  return t.requiresGrad ? t.gradOf() : null;
}

/** The gradient arriving at output i, or zeros (in the step's scope) if the loss did not use that output. */
function outGrad(node: Node, i = 0): Storage {
  const o = node.outputs[i];
  return o.gradStorage ?? allocate(o.backend, o.size);
}

/** dx += g for same-shaped x and g. */
function addInto(be: Backend, dx: Storage, g: Storage, n: number): void {
  be.scale(g, dx, n, 1, true);
}

export const gradRules: { [K in OpName]: GradRule<K> } = {
  // C = op(A) op(B).  dA = g op(B)ᵀ (stored transposed when transA), dB = op(A)ᵀ g (likewise); per batch matrix.
  matmul(node) {
    const [a, b] = node.inputs;
    const { transA, transB, M, K, N, batch } = node.saved;
    const be = a.backend;
    const g = outGrad(node);
    const da = want(a);
    const db = want(b);
    if (da) {
      if (!transA)
        be.matmul(g, b.storage, da, M, N, K, { transB: !transB, accumulate: true, batch }); // (M,K) = g op(B)ᵀ
      else be.matmul(b.storage, g, da, K, N, M, { transA: transB, transB: true, accumulate: true, batch }); // (K,M) = op(B) gᵀ
    }
    if (db) {
      if (!transB)
        be.matmul(a.storage, g, db, K, M, N, { transA: !transA, accumulate: true, batch }); // (K,N) = op(A)ᵀ g
      else be.matmul(g, a.storage, db, N, M, K, { transA: true, transB: transA, accumulate: true, batch }); // (N,K) = gᵀ op(A)
    }
  },

  // y = x·w + b (rows of x: M).  dx += g wᵀ, dw += xᵀ g, db += Σ_rows g
  linear(node) {
    const [x, w, b] = node.inputs;
    const { M, K, N } = node.saved;
    const be = x.backend;
    const g = outGrad(node);
    const dx = want(x);
    const dw = want(w);
    const db = want(b);
    if (dx) be.matmul(g, w.storage, dx, M, N, K, { transB: true, accumulate: true });
    if (dw) be.matmul(x.storage, g, dw, K, M, N, { transA: true, accumulate: true });
    if (db) be.reduceTo(g, [M, N], db, [0, 1], 1);
  },

  // y = a + b.  da += Σ_broadcast g, db += Σ_broadcast g
  add(node) {
    const [a, b] = node.inputs;
    const shape = node.outputs[0].shape;
    const g = outGrad(node);
    const da = want(a);
    const db = want(b);
    if (da) a.backend.reduceTo(g, shape, da, node.saved.sa, 1);
    if (db) b.backend.reduceTo(g, shape, db, node.saved.sb, 1);
  },

  // y = a - b.  da += Σ g, db -= Σ g
  sub(node) {
    const [a, b] = node.inputs;
    const shape = node.outputs[0].shape;
    const g = outGrad(node);
    const da = want(a);
    const db = want(b);
    if (da) a.backend.reduceTo(g, shape, da, node.saved.sa, 1);
    if (db) b.backend.reduceTo(g, shape, db, node.saved.sb, -1);
  },

  // y = a ⊙ b.  da += Σ_broadcast g ⊙ b, db += Σ_broadcast g ⊙ a
  mul(node) {
    const [a, b] = node.inputs;
    const { sa, sb } = node.saved;
    const out = node.outputs[0];
    const be = a.backend;
    const shape = out.shape;
    const full = contiguousStrides(shape);
    const g = outGrad(node);
    const da = want(a);
    const db = want(b);
    if (da) {
      const t = allocate(be, out.size);
      be.binary("mul", g, full, b.storage, sb, t, shape);
      be.reduceTo(t, shape, da, sa, 1);
    }
    if (db) {
      const t = allocate(be, out.size);
      be.binary("mul", g, full, a.storage, sa, t, shape);
      be.reduceTo(t, shape, db, sb, 1);
    }
  },

  // y = s a.  da += s g
  scale(node) {
    const a = node.inputs[0];
    const da = want(a);
    if (da) a.backend.scale(outGrad(node), da, a.size, node.saved.s, true);
  },

  // y = f(x).  dx += g ⊙ f'(x)  (f' per op in the backend: σ' = y(1-y), tanh' = 1-y², exp' = y, ln' = 1/x, ...)
  unary(node) {
    const x = node.inputs[0];
    const dx = want(x);
    if (dx) x.backend.unaryBackward(node.saved.op, x.storage, node.outputs[0].storage, outGrad(node), dx, x.size);
  },

  // y = softmax(x) per row.  dx += y ⊙ (g - Σ_j g_j y_j)
  softmax(node) {
    const x = node.inputs[0];
    const dx = want(x);
    const V = node.saved.V;
    if (dx) x.backend.softmaxBackward(node.outputs[0].storage, outGrad(node), dx, x.size / V, V);
  },

  // L = (1/N) Σ_n [lse(x_n) - x_n[t_n]].  dx_n += (g/N)(softmax(x_n) - onehot(t_n))
  softmaxCrossEntropy(node) {
    const x = node.inputs[0];
    const dx = want(x);
    const { probs, targets, V, N } = node.saved;
    if (dx) x.backend.crossEntropyBackward(probs, targets, outGrad(node), dx, N, V);
  },

  // y[n] = W[id_n].  dW[id_n] += g[n]  (scatter-add: repeated ids accumulate)
  embedding(node) {
    const w = node.inputs[0];
    const dw = want(w);
    if (dw) w.backend.embeddingBackward(outGrad(node), node.saved.ids, dw, node.saved.D);
  },

  // y = [x_1 | x_2 | ...] along axis.  dx_i += the block of g that x_i filled
  concat(node) {
    const { axis, sizes } = node.saved;
    const g = outGrad(node);
    const [outer, total, inner] = axisSplit(node.outputs[0].shape, axis);
    let offset = 0;
    node.inputs.forEach((t, i) => {
      const dx = want(t);
      const block = sizes[i] * inner;
      if (dx) t.backend.copyBlocks(g, offset * inner, total * inner, dx, 0, block, block, outer, true);
      offset += sizes[i];
    });
  },

  // y = x[.., start:end, ..].  dx[.., start:end, ..] += g
  slice(node) {
    const x = node.inputs[0];
    const dx = want(x);
    if (!dx) return;
    const { axis, start, end } = node.saved;
    const [outer, n, inner] = axisSplit(x.shape, axis);
    const block = (end - start) * inner;
    x.backend.copyBlocks(outGrad(node), 0, block, dx, start * inner, n * inner, block, outer, true);
  },

  // y = s Σ_axis x (s = 1 for sum, 1/n for mean).  dx += s g broadcast back along the axis
  reduce(node) {
    const x = node.inputs[0];
    const dx = want(x);
    const { outer, n, inner, s } = node.saved;
    if (dx) x.backend.broadcastAxis(outGrad(node), dx, outer, n, inner, s);
  },

  // y = x viewed with another shape.  dx += g (same flat order)
  reshape(node) {
    const x = node.inputs[0];
    const dx = want(x);
    if (dx) addInto(x.backend, dx, outGrad(node), x.size);
  },

  // y = x with axes a0, a1 swapped.  dx += g with the same axes swapped back
  transpose(node) {
    const x = node.inputs[0];
    const dx = want(x);
    if (!dx) return;
    const { a0, a1 } = node.saved;
    if (a0 === a1) addInto(x.backend, dx, outGrad(node), x.size);
    else x.backend.swapAxes(outGrad(node), node.outputs[0].shape, a0, a1, dx, true);
  },

  // y = γ x̂ + β, x̂ = (x - μ) r, r = 1/sqrt(σ² + eps), per row of C.
  // dγ += Σ_rows g x̂; dβ += Σ_rows g; with d = g γ: dx += r (d - mean(d) - x̂ mean(d x̂))
  layerNorm(node) {
    const [x, gamma, beta] = node.inputs;
    const { xhat, rstd, C } = node.saved;
    x.backend.layerNormBackward(
      outGrad(node),
      gamma.storage,
      xhat,
      rstd,
      want(x),
      want(gamma),
      want(beta),
      x.size / C,
      C,
    );
  },

  // y = x ⊙ m (m ∈ {0, 1/(1-p)}).  dx += g ⊙ m
  dropout(node) {
    const x = node.inputs[0];
    const dx = want(x);
    if (!dx) return;
    const be = x.backend;
    const full = contiguousStrides(x.shape);
    const t = allocate(be, x.size);
    be.binary("mul", outGrad(node), full, node.saved.mask, full, t, x.shape);
    addInto(be, dx, t, x.size);
  },

  // y_ij = x_ij for j <= i, -∞ above.  dx_ij += g_ij for j <= i only
  causalMask(node) {
    const x = node.inputs[0];
    const dx = want(x);
    const T = node.saved.T;
    if (dx) x.backend.causalMaskBackward(outGrad(node), dx, x.size / (T * T), T);
  },

  // Per head: s = q kᵀ/√hd (causal), p = softmax(s), y = p v.
  // dv_j += Σ_i p_ij g_i; dp_ij = g_i·v_j; ds_ij = p_ij (dp_ij - Σ_k p_ik dp_ik);
  // dq_i += Σ_j ds_ij k_j / √hd; dk_j += Σ_i ds_ij q_i / √hd
  causalSelfAttention(node) {
    const [q, k, v] = node.inputs;
    const [B, T, C] = q.shape;
    q.backend.attentionBackward(
      q.storage,
      k.storage,
      v.storage,
      node.saved.att,
      outGrad(node),
      want(q),
      want(k),
      want(v),
      B,
      T,
      C,
      node.saved.nHead,
    );
  },

  // Inputs (x, wx, wh, b, h0, c0); outputs (hs, hT, cT). The kernel backpropagates the recurrence into
  // dxw = dL/d(x Wx + b) (T*B, 4H), dWh (+=), dh0, dc0. Then, as single products over all time steps:
  // dx += dxw Wxᵀ; dWx += xᵀ dxw; db += Σ_rows dxw.
  lstm(node) {
    const [x, wx, wh, b, h0, c0] = node.inputs;
    throughProjection(node, x, wx, b, (dxw) => lstmKernelBackward(node, node.saved.xw, { wh, h0, c0 }, dxw));
  },

  // Inputs (xw, wh, h0, c0); outputs (hs, hT, cT). As lstm, dxw going to xw's gradient (written there directly when
  // xw has none yet).
  lstmProjected(node) {
    const [xw, wh, h0, c0] = node.inputs;
    projectedInto(xw, (dxw) => lstmKernelBackward(node, xw.storage, { wh, h0, c0 }, dxw));
  },

  // Inputs (x, wx, wh, bx, bh, h0); outputs (hs, hT). Like lstm; the kernel also accumulates dbh.
  gru(node) {
    const [x, wx, wh, bx, bh, h0] = node.inputs;
    throughProjection(node, x, wx, bx, (dxw) => gruKernelBackward(node, node.saved.xw, { wh, bh, h0 }, dxw));
  },

  // Inputs (xw, wh, bh, h0); outputs (hs, hT).
  gruProjected(node) {
    const [xw, wh, bh, h0] = node.inputs;
    projectedInto(xw, (dxw) => gruKernelBackward(node, xw.storage, { wh, bh, h0 }, dxw));
  },

  // Inputs (x, wx, wh, b, h0); outputs (hs, hT). h_t = tanh(x Wx + b + h_{t-1} Wh).
  rnn(node) {
    const [x, wx, wh, b, h0] = node.inputs;
    throughProjection(node, x, wx, b, (dxw) => rnnKernelBackward(node, node.saved.xw, { wh, h0 }, dxw));
  },

  // Inputs (xw, wh, h0); outputs (hs, hT).
  rnnProjected(node) {
    const [xw, wh, h0] = node.inputs;
    projectedInto(xw, (dxw) => rnnKernelBackward(node, xw.storage, { wh, h0 }, dxw));
  },
};

/** Runs a recurrent backward kernel (which overwrites its dxw) into a scratch, then the input projection's backward. */
function throughProjection(
  node: Node<"lstm" | "gru" | "rnn">,
  x: Tensor,
  wx: Tensor,
  b: Tensor,
  kernel: (dxw: Storage) => void,
): void {
  const { T, B, D } = node.saved;
  const G = wx.shape[1];
  const dxw = allocate(x.backend, T * B * G);
  kernel(dxw);
  inputProjectionBackward(x.backend, x, wx, b, dxw, T * B, D, G);
}

/**
 * Runs a recurrent backward kernel (which overwrites its dxw) for a layer given its input projections xw: into xw's
 * gradient itself when xw has none yet, else into a scratch then added.
 */
function projectedInto(xw: Tensor, kernel: (dxw: Storage) => void): void {
  const fresh = xw.requiresGrad ? xw.freshGrad() : null;
  if (fresh) return kernel(fresh);
  const be = xw.backend;
  const dxw = allocate(be, xw.size);
  kernel(dxw);
  if (xw.requiresGrad) addInto(be, xw.gradOf(), dxw, xw.size);
}

/**
 * The arguments every recurrent backward kernel takes, for a node whose outputs start (hs, hT): the kernel is run
 * with them, then the dh0 it overwrote is added into h0's gradient.
 */
function recurrentBackward(
  node: Node<"lstm" | "lstmProjected" | "gru" | "gruProjected" | "rnn" | "rnnProjected">,
  xw: Storage,
  wh: Tensor,
  h0: Tensor,
  dxw: Storage,
  kernel: (args: RnnBackwardArgs) => void,
): void {
  const [hs, hT] = node.outputs;
  const { T, B, H } = node.saved;
  const be = wh.backend;
  const dh0 = allocate(be, B * H);
  const dhs = outGrad(node, 0);
  kernel({
    T,
    B,
    H,
    xw,
    wh: wh.storage,
    h0: h0.storage,
    hs: hs.storage,
    dhs,
    dhT: hT.gradStorage,
    dxw,
    dwh: want(wh),
    dh0,
  });
  const dh = want(h0);
  if (dh) addInto(be, dh, dh0, B * H);
}

/** The LSTM backward kernel for a node whose outputs are (hs, hT, cT): dxw overwritten, dWh, dh0, dc0 added. */
function lstmKernelBackward(
  node: Node<"lstm" | "lstmProjected">,
  xw: Storage,
  { wh, h0, c0 }: { wh: Tensor; h0: Tensor; c0: Tensor },
  dxw: Storage,
): void {
  const { B, H, gates, cs } = node.saved;
  const be = wh.backend;
  const dc0 = allocate(be, B * H);
  const dcT = node.outputs[2].gradStorage;
  recurrentBackward(node, xw, wh, h0, dxw, (a) => be.lstmBackward({ ...a, c0: c0.storage, cs, gates, dcT, dc0 }));
  const dc = want(c0);
  if (dc) addInto(be, dc, dc0, B * H);
}

/** The GRU backward kernel for a node whose outputs are (hs, hT): dxw overwritten, dWh, dbh, dh0 added. */
function gruKernelBackward(
  node: Node<"gru" | "gruProjected">,
  xw: Storage,
  { wh, bh, h0 }: { wh: Tensor; bh: Tensor; h0: Tensor },
  dxw: Storage,
): void {
  const { gates, hn } = node.saved;
  const be = wh.backend;
  recurrentBackward(node, xw, wh, h0, dxw, (a) => be.gruBackward({ ...a, bh: bh.storage, gates, hn, dbh: want(bh) }));
}

/** The simple RNN's backward kernel for a node whose outputs are (hs, hT): dxw overwritten, dWh, dh0 added. */
function rnnKernelBackward(
  node: Node<"rnn" | "rnnProjected">,
  xw: Storage,
  { wh, h0 }: { wh: Tensor; h0: Tensor },
  dxw: Storage,
): void {
  recurrentBackward(node, xw, wh, h0, dxw, (a) => wh.backend.rnnBackward(a));
}

/** Backward of xw = x Wx + b over all rows: dx += dxw Wxᵀ, dWx += xᵀ dxw, db += column sums of dxw. */
function inputProjectionBackward(
  be: Backend,
  x: Tensor,
  wx: Tensor,
  b: Tensor,
  dxw: Storage,
  rows: number,
  D: number,
  G: number,
): void {
  const dx = want(x);
  if (dx) be.matmul(dxw, wx.storage, dx, rows, G, D, { transB: true, accumulate: true });
  const dwx = want(wx);
  if (dwx) be.matmul(x.storage, dxw, dwx, D, rows, G, { transA: true, accumulate: true });
  const db = want(b);
  if (db) be.reduceTo(dxw, [rows, G], db, [0, 1], 1);
}
