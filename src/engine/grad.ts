// The gradient table: one rule per op, keyed by op name. `gradRules` is typed `{ [K in OpName]: GradRule<K> }`,
// so adding an op name to OpSaved without writing its rule is a compile error.
//
// A rule reads the gradients of the node's outputs (`out.grad`, null for an output the loss did not use) and
// ACCUMULATES (+=) into the gradients of the inputs that require one; inputs that were broadcast get the output
// gradient summed over the broadcast axes. g denotes dL/d(output), ⊙ the elementwise product.
//
// Legend: as in ops.ts (B batch, T time, D input, H hidden, G gate width, V vocabulary, C channels).

import type { Node } from "./autograd.js";
import { gradOf } from "./autograd.js";
import { getBackend } from "./backends/index.js";
import { axisSplit, expand, reduceInto, swapAxes, type Plan } from "./shape.js";
import type { Tensor } from "./tensor.js";

/** What each op keeps for its rule (beyond its inputs and outputs). */
export interface OpSaved {
  matmul: { transA: boolean; transB: boolean; M: number; K: number; N: number; batch: number };
  add: { pa: Plan; pb: Plan };
  sub: { pa: Plan; pb: Plan };
  mul: { pa: Plan; pb: Plan };
  scale: { s: number };
  sigmoid: null;
  tanh: null;
  exp: null;
  log: null;
  relu: null;
  gelu: null;
  softmax: { V: number };
  softmaxCrossEntropy: { probs: Float32Array; targets: Int32Array; V: number; N: number };
  embedding: { ids: Int32Array; D: number };
  concat: { axis: number; sizes: number[] };
  slice: { axis: number; start: number; end: number };
  sum: { axis: number | null };
  mean: { axis: number | null };
  reshape: null;
  transpose: { a0: number; a1: number };
  layerNorm: { xhat: Float32Array; rstd: Float32Array; C: number };
  dropout: { mask: Float32Array };
  causalMask: { T: number };
  causalSelfAttention: { att: Float32Array; nHead: number };
  lstm: {
    T: number;
    B: number;
    D: number;
    H: number;
    xw: Float32Array;
    gates: Float32Array;
    cs: Float32Array;
    h0: Float32Array;
    c0: Float32Array;
  };
  gru: {
    T: number;
    B: number;
    D: number;
    H: number;
    xw: Float32Array;
    gates: Float32Array;
    hn: Float32Array;
    h0: Float32Array;
  };
  rnn: { T: number; B: number; D: number; H: number; xw: Float32Array; h0: Float32Array };
}

export type OpName = keyof OpSaved;
export type GradRule<K extends OpName> = (node: Node<K>) => void;

/** The gradient of input t if it needs one, else null (the rule then skips that input). */
function want(t: Tensor): Float32Array | null {
  return t.requiresGrad ? gradOf(t) : null;
}

/** The gradient arriving at output i, or zeros if the loss did not use that output. */
function outGrad(node: Node, i = 0): Float32Array {
  return node.outputs[i].grad ?? new Float32Array(node.outputs[i].size);
}

/** Elementwise rule helper: dx += g ⊙ f'(·) where `deriv` already holds f'(·) evaluated per element. */
function addProduct(dst: Float32Array, g: Float32Array, deriv: Float32Array): void {
  for (let i = 0; i < dst.length; i++) dst[i] += g[i] * deriv[i];
}

/** dst += column sums of src viewed as (rows, n). */
function addColumnSums(dst: Float32Array, src: Float32Array, n: number): void {
  for (let r = 0; r < src.length; r += n) for (let j = 0; j < n; j++) dst[j] += src[r + j];
}

/** dst += src */
function addInto(dst: Float32Array, src: Float32Array): void {
  for (let i = 0; i < dst.length; i++) dst[i] += src[i];
}

export const gradRules: { [K in OpName]: GradRule<K> } = {
  // C = op(A) op(B).  dA = g op(B)ᵀ (stored transposed when transA), dB = op(A)ᵀ g (likewise); per batch matrix.
  matmul(node) {
    const [a, b] = node.inputs;
    const { transA, transB, M, K, N, batch } = node.saved;
    const g = outGrad(node);
    const da = want(a);
    const db = want(b);
    const be = getBackend();
    for (let p = 0; p < batch; p++) {
      const ap = a.data.subarray(p * M * K, (p + 1) * M * K);
      const bp = b.data.subarray(p * K * N, (p + 1) * K * N);
      const gp = g.subarray(p * M * N, (p + 1) * M * N);
      if (da) {
        const dap = da.subarray(p * M * K, (p + 1) * M * K);
        if (!transA)
          be.matmul(gp, bp, dap, M, N, K, { transB: !transB, accumulate: true }); // (M,K) = g op(B)ᵀ
        else be.matmul(bp, gp, dap, K, N, M, { transA: transB, transB: true, accumulate: true }); // (K,M) = op(B) gᵀ
      }
      if (db) {
        const dbp = db.subarray(p * K * N, (p + 1) * K * N);
        if (!transB)
          be.matmul(ap, gp, dbp, K, M, N, { transA: !transA, accumulate: true }); // (K,N) = op(A)ᵀ g
        else be.matmul(gp, ap, dbp, N, M, K, { transA: true, transB: transA, accumulate: true }); // (N,K) = gᵀ op(A)
      }
    }
  },

  // y = a + b.  da += Σ_broadcast g, db += Σ_broadcast g
  add(node) {
    const [a, b] = node.inputs;
    const g = outGrad(node);
    const da = want(a);
    const db = want(b);
    if (da) reduceInto(node.saved.pa, g, da);
    if (db) reduceInto(node.saved.pb, g, db);
  },

  // y = a - b.  da += Σ g, db -= Σ g
  sub(node) {
    const [a, b] = node.inputs;
    const g = outGrad(node);
    const da = want(a);
    const db = want(b);
    if (da) reduceInto(node.saved.pa, g, da);
    if (db) reduceInto(node.saved.pb, g, db, -1);
  },

  // y = a ⊙ b.  da += Σ_broadcast g ⊙ b, db += Σ_broadcast g ⊙ a
  mul(node) {
    const [a, b] = node.inputs;
    const { pa, pb } = node.saved;
    const g = outGrad(node);
    const n = g.length;
    const da = want(a);
    const db = want(b);
    if (da) {
      const bx = expand(pb, b.data, n);
      const t = new Float32Array(n);
      for (let i = 0; i < n; i++) t[i] = g[i] * bx[i];
      reduceInto(pa, t, da);
    }
    if (db) {
      const ax = expand(pa, a.data, n);
      const t = new Float32Array(n);
      for (let i = 0; i < n; i++) t[i] = g[i] * ax[i];
      reduceInto(pb, t, db);
    }
  },

  // y = s a.  da += s g
  scale(node) {
    const da = want(node.inputs[0]);
    if (!da) return;
    const g = outGrad(node);
    const s = node.saved.s;
    for (let i = 0; i < da.length; i++) da[i] += s * g[i];
  },

  // y = σ(x).  dx += g ⊙ y(1 - y)
  sigmoid(node) {
    const dx = want(node.inputs[0]);
    if (!dx) return;
    const g = outGrad(node);
    const y = node.outputs[0].data;
    for (let i = 0; i < dx.length; i++) dx[i] += g[i] * y[i] * (1 - y[i]);
  },

  // y = tanh(x).  dx += g ⊙ (1 - y²)
  tanh(node) {
    const dx = want(node.inputs[0]);
    if (!dx) return;
    const g = outGrad(node);
    const y = node.outputs[0].data;
    for (let i = 0; i < dx.length; i++) dx[i] += g[i] * (1 - y[i] * y[i]);
  },

  // y = e^x.  dx += g ⊙ y
  exp(node) {
    const dx = want(node.inputs[0]);
    if (dx) addProduct(dx, outGrad(node), node.outputs[0].data);
  },

  // y = ln x.  dx += g / x
  log(node) {
    const dx = want(node.inputs[0]);
    if (!dx) return;
    const g = outGrad(node);
    const x = node.inputs[0].data;
    for (let i = 0; i < dx.length; i++) dx[i] += g[i] / x[i];
  },

  // y = max(x, 0).  dx += g ⊙ [x > 0]
  relu(node) {
    const dx = want(node.inputs[0]);
    if (!dx) return;
    const g = outGrad(node);
    const x = node.inputs[0].data;
    for (let i = 0; i < dx.length; i++) if (x[i] > 0) dx[i] += g[i];
  },

  // y = ½x(1 + tanh u), u = c(x + 0.044715x³), c = √(2/π).
  // dy/dx = ½(1 + tanh u) + ½x(1 - tanh²u) c (1 + 3·0.044715x²)
  gelu(node) {
    const dx = want(node.inputs[0]);
    if (!dx) return;
    const g = outGrad(node);
    const x = node.inputs[0].data;
    const c = Math.sqrt(2 / Math.PI);
    for (let i = 0; i < dx.length; i++) {
      const v = x[i];
      const th = Math.tanh(c * (v + 0.044715 * v * v * v));
      dx[i] += g[i] * (0.5 * (1 + th) + 0.5 * v * (1 - th * th) * c * (1 + 3 * 0.044715 * v * v));
    }
  },

  // y = softmax(x) per row.  dx += y ⊙ (g - Σ_j g_j y_j)
  softmax(node) {
    const dx = want(node.inputs[0]);
    if (!dx) return;
    const g = outGrad(node);
    const y = node.outputs[0].data;
    const V = node.saved.V;
    for (let r = 0; r < y.length; r += V) {
      let dot = 0;
      for (let j = 0; j < V; j++) dot += g[r + j] * y[r + j];
      for (let j = 0; j < V; j++) dx[r + j] += y[r + j] * (g[r + j] - dot);
    }
  },

  // L = (1/N) Σ_n [lse(x_n) - x_n[t_n]].  dx_n += (g/N)(softmax(x_n) - onehot(t_n))
  softmaxCrossEntropy(node) {
    const dx = want(node.inputs[0]);
    if (!dx) return;
    const { probs, targets, V, N } = node.saved;
    const s = outGrad(node)[0] / N;
    for (let n = 0; n < N; n++) {
      const r = n * V;
      for (let j = 0; j < V; j++) dx[r + j] += s * probs[r + j];
      dx[r + targets[n]] -= s;
    }
  },

  // y[n] = W[id_n].  dW[id_n] += g[n]  (scatter-add: repeated ids accumulate)
  embedding(node) {
    const dw = want(node.inputs[0]);
    if (!dw) return;
    const g = outGrad(node);
    const { ids, D } = node.saved;
    for (let n = 0; n < ids.length; n++) {
      const w0 = ids[n] * D;
      const g0 = n * D;
      for (let d = 0; d < D; d++) dw[w0 + d] += g[g0 + d];
    }
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
      if (dx) {
        for (let o = 0; o < outer; o++) {
          const s = (o * total + offset) * inner;
          const d = o * block;
          for (let j = 0; j < block; j++) dx[d + j] += g[s + j];
        }
      }
      offset += sizes[i];
    });
  },

  // y = x[.., start:end, ..].  dx[.., start:end, ..] += g
  slice(node) {
    const x = node.inputs[0];
    const dx = want(x);
    if (!dx) return;
    const { axis, start, end } = node.saved;
    const g = outGrad(node);
    const [outer, n, inner] = axisSplit(x.shape, axis);
    const block = (end - start) * inner;
    for (let o = 0; o < outer; o++) {
      const d = (o * n + start) * inner;
      const s = o * block;
      for (let j = 0; j < block; j++) dx[d + j] += g[s + j];
    }
  },

  // y = Σ_axis x.  dx += g broadcast back along axis
  sum(node) {
    reduceRule(node.inputs[0], outGrad(node), node.saved.axis, false);
  },

  // y = (1/n) Σ_axis x.  dx += g/n broadcast back along axis
  mean(node) {
    reduceRule(node.inputs[0], outGrad(node), node.saved.axis, true);
  },

  // y = x viewed with another shape.  dx += g (same flat order)
  reshape(node) {
    const dx = want(node.inputs[0]);
    if (dx) addInto(dx, outGrad(node));
  },

  // y = x with axes a0, a1 swapped.  dx += g with the same axes swapped back
  transpose(node) {
    const dx = want(node.inputs[0]);
    if (!dx) return;
    const { a0, a1 } = node.saved;
    if (a0 === a1) addInto(dx, outGrad(node));
    else swapAxes(outGrad(node), node.outputs[0].shape, a0, a1, dx, true);
  },

  // y = γ x̂ + β, x̂ = (x - μ) r, r = 1/sqrt(σ² + eps), per row of C.
  // dγ += Σ_rows g x̂; dβ += Σ_rows g; with d = g γ: dx += r (d - mean(d) - x̂ mean(d x̂))
  layerNorm(node) {
    const [x, gamma, beta] = node.inputs;
    const { xhat, rstd, C } = node.saved;
    const g = outGrad(node);
    const dx = want(x);
    const dg = want(gamma);
    const db = want(beta);
    const gm = gamma.data;
    for (let r = 0; r < rstd.length; r++) {
      const o = r * C;
      let md = 0;
      let mdx = 0;
      for (let j = 0; j < C; j++) {
        const d = g[o + j] * gm[j];
        md += d;
        mdx += d * xhat[o + j];
        if (dg) dg[j] += g[o + j] * xhat[o + j];
        if (db) db[j] += g[o + j];
      }
      md /= C;
      mdx /= C;
      if (dx) {
        for (let j = 0; j < C; j++) dx[o + j] += rstd[r] * (g[o + j] * gm[j] - md - xhat[o + j] * mdx);
      }
    }
  },

  // y = x ⊙ m (m ∈ {0, 1/(1-p)}).  dx += g ⊙ m
  dropout(node) {
    const dx = want(node.inputs[0]);
    if (dx) addProduct(dx, outGrad(node), node.saved.mask);
  },

  // y_ij = x_ij for j <= i, -∞ above.  dx_ij += g_ij for j <= i only
  causalMask(node) {
    const dx = want(node.inputs[0]);
    if (!dx) return;
    const g = outGrad(node);
    const T = node.saved.T;
    for (let m = 0; m < dx.length; m += T * T) {
      for (let i = 0; i < T; i++) for (let j = 0; j <= i; j++) dx[m + i * T + j] += g[m + i * T + j];
    }
  },

  // Per head: s = q kᵀ/√hd (causal), p = softmax(s), y = p v.
  // dv_j += Σ_i p_ij g_i; dp_ij = g_i·v_j; ds_ij = p_ij (dp_ij - Σ_k p_ik dp_ik);
  // dq_i += Σ_j ds_ij k_j / √hd; dk_j += Σ_i ds_ij q_i / √hd
  causalSelfAttention(node) {
    const [q, k, v] = node.inputs;
    const { att, nHead } = node.saved;
    const [B, T, C] = q.shape;
    const hd = C / nHead;
    const sc = 1 / Math.sqrt(hd);
    const g = outGrad(node);
    const dq = want(q);
    const dk = want(k);
    const dv = want(v);
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
            for (let d = 0; d < hd; d++) s += g[gi + d] * v.data[vj + d];
            dp[j] = s;
            dot += s * att[row + j];
            if (dv) for (let d = 0; d < hd; d++) dv[vj + d] += att[row + j] * g[gi + d];
          }
          for (let j = 0; j <= i; j++) {
            const ds = att[row + j] * (dp[j] - dot) * sc;
            const kj = (b * T + j) * C + h * hd;
            if (dq) for (let d = 0; d < hd; d++) dq[gi + d] += ds * k.data[kj + d];
            if (dk) for (let d = 0; d < hd; d++) dk[kj + d] += ds * q.data[gi + d];
          }
        }
      }
    }
  },

  // Inputs (x, wx, wh, b, h0, c0); outputs (hs, hT, cT). The kernel backpropagates the recurrence into
  // dxw = dL/d(x Wx + b) (T*B, 4H), dWh (+=), dh0, dc0. Then, as single products over all time steps:
  // dx += dxw Wxᵀ; dWx += xᵀ dxw; db += Σ_rows dxw.
  lstm(node) {
    const [x, wx, wh, b, h0, c0] = node.inputs;
    const { T, B, D, H, xw, gates, cs } = node.saved;
    const G = 4 * H;
    const dxw = new Float32Array(T * B * G);
    const dh0 = new Float32Array(B * H);
    const dc0 = new Float32Array(B * H);
    getBackend().lstmBackward({
      T,
      B,
      H,
      xw,
      wh: wh.data,
      h0: node.saved.h0,
      c0: node.saved.c0,
      hs: node.outputs[0].data,
      cs,
      gates,
      dhs: outGrad(node, 0),
      dhT: node.outputs[1].grad,
      dcT: node.outputs[2].grad,
      dxw,
      dwh: want(wh) ?? new Float32Array(H * G),
      dh0,
      dc0,
    });
    inputProjectionBackward(x, wx, b, dxw, T * B, D, G);
    const dh = want(h0);
    if (dh) addInto(dh, dh0);
    const dc = want(c0);
    if (dc) addInto(dc, dc0);
  },

  // Inputs (x, wx, wh, bx, bh, h0); outputs (hs, hT). Like lstm; the kernel also accumulates dbh.
  gru(node) {
    const [x, wx, wh, bx, bh, h0] = node.inputs;
    const { T, B, D, H, xw, gates, hn } = node.saved;
    const G = 3 * H;
    const dxw = new Float32Array(T * B * G);
    const dh0 = new Float32Array(B * H);
    getBackend().gruBackward({
      T,
      B,
      H,
      xw,
      wh: wh.data,
      bh: bh.data,
      h0: node.saved.h0,
      hs: node.outputs[0].data,
      gates,
      hn,
      dhs: outGrad(node, 0),
      dhT: node.outputs[1].grad,
      dxw,
      dwh: want(wh) ?? new Float32Array(H * G),
      dbh: want(bh) ?? new Float32Array(G),
      dh0,
    });
    inputProjectionBackward(x, wx, bx, dxw, T * B, D, G);
    const dh = want(h0);
    if (dh) addInto(dh, dh0);
  },

  // Inputs (x, wx, wh, b, h0); outputs (hs, hT). h_t = tanh(x Wx + b + h_{t-1} Wh).
  rnn(node) {
    const [x, wx, wh, b, h0] = node.inputs;
    const { T, B, D, H, xw } = node.saved;
    const dxw = new Float32Array(T * B * H);
    const dh0 = new Float32Array(B * H);
    getBackend().rnnBackward({
      T,
      B,
      H,
      xw,
      wh: wh.data,
      h0: node.saved.h0,
      hs: node.outputs[0].data,
      dhs: outGrad(node, 0),
      dhT: node.outputs[1].grad,
      dxw,
      dwh: want(wh) ?? new Float32Array(H * H),
      dh0,
    });
    inputProjectionBackward(x, wx, b, dxw, T * B, D, H);
    const dh = want(h0);
    if (dh) addInto(dh, dh0);
  },
};

/** Backward of xw = x Wx + b over all rows: dx += dxw Wxᵀ, dWx += xᵀ dxw, db += column sums of dxw. */
function inputProjectionBackward(
  x: Tensor,
  wx: Tensor,
  b: Tensor,
  dxw: Float32Array,
  rows: number,
  D: number,
  G: number,
): void {
  const be = getBackend();
  const dx = want(x);
  if (dx) be.matmul(dxw, wx.data, dx, rows, G, D, { transB: true, accumulate: true });
  const dwx = want(wx);
  if (dwx) be.matmul(x.data, dxw, dwx, D, rows, G, { transA: true, accumulate: true });
  const db = want(b);
  if (db) addColumnSums(db, dxw, G);
}

function reduceRule(x: Tensor, g: Float32Array, axis: number | null, isMean: boolean): void {
  const dx = want(x);
  if (!dx) return;
  if (axis === null) {
    const v = isMean ? g[0] / x.size : g[0];
    for (let i = 0; i < dx.length; i++) dx[i] += v;
    return;
  }
  const [outer, n, inner] = axisSplit(x.shape, axis);
  const f = isMean ? 1 / n : 1;
  for (let a = 0; a < outer; a++) {
    for (let i = 0; i < n; i++) {
      const d = (a * n + i) * inner;
      for (let j = 0; j < inner; j++) dx[d + j] += f * g[a * inner + j];
    }
  }
}
