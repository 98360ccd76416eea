// The fused recurrent ops: LSTM, GRU and simple RNN over a whole sequence, time-major (T, B, ·).
//
// Legend: T time, B batch, D input features, H hidden units, G gate width (4H LSTM, 3H GRU, H RNN).
//
// The input projection of all T steps is ONE backend matmul (T*B, D) @ (D, G) plus the bias; the backend kernel
// runs the recurrence (h_{t-1} Wh and the gates) and keeps what its backward needs. The gradient rules (grad.ts)
// call the backward kernel and then do dx, dWx and db as single products over all steps as well.
//
// lstmProjected, gruProjected and rnnProjected take the input projections xw (T, B, G) as a tensor instead: the
// recurrent model computes them for its first layer from the embedding table (see models/rnn.ts), and their
// gradient then flows back through whatever made xw.

import type { Backend, Storage } from "./backend.js";
import { record } from "./node.js";
import { allocateUninit } from "./scope.js";
import { fmtShape, sameShape } from "./shape.js";
import { backendOf, empty, type Tensor, uninit } from "./tensor.js";

function fail(op: string, msg: string): never {
  throw new Error(`${op}: ${msg}`);
}

function checkRecurrent(
  op: string,
  x: Tensor,
  wx: Tensor,
  wh: Tensor,
  gates: number,
  biases: Tensor[],
  states: (Tensor | null | undefined)[],
): { T: number; B: number; D: number; H: number } {
  if (x.ndim !== 3) fail(op, `x must be (T, B, D), got ${fmtShape(x.shape)}`);
  const [T, B, D] = x.shape;
  if (wx.ndim !== 2 || wx.shape[0] !== D || wx.shape[1] % gates !== 0) {
    fail(op, `wx must be (${D}, ${gates}H), got ${fmtShape(wx.shape)}`);
  }
  const H = wx.shape[1] / gates;
  if (!sameShape(wh.shape, [H, gates * H])) fail(op, `wh must be (${H}, ${gates * H}), got ${fmtShape(wh.shape)}`);
  for (const b of biases)
    if (b.size !== gates * H) fail(op, `bias ${fmtShape(b.shape)} must have ${gates * H} entries`);
  for (const s of states) if (s && s.size !== B * H) fail(op, `state ${fmtShape(s.shape)} must be (${B}, ${H})`);
  return { T, B, D, H };
}

function checkProjected(
  op: string,
  xw: Tensor,
  wh: Tensor,
  gates: number,
  biases: Tensor[],
  states: (Tensor | null | undefined)[],
): { T: number; B: number; H: number } {
  if (xw.ndim !== 3 || xw.shape[2] % gates !== 0) fail(op, `xw must be (T, B, ${gates}H), got ${fmtShape(xw.shape)}`);
  const [T, B, G] = xw.shape;
  const H = G / gates;
  if (!sameShape(wh.shape, [H, G])) fail(op, `wh must be (${H}, ${G}), got ${fmtShape(wh.shape)}`);
  for (const b of biases) if (b.size !== G) fail(op, `bias ${fmtShape(b.shape)} must have ${G} entries`);
  for (const s of states) if (s && s.size !== B * H) fail(op, `state ${fmtShape(s.shape)} must be (${B}, ${H})`);
  return { T, B, H };
}

/**
 * xw (T*B, G) = x (T*B, D) @ wx (D, G) + bias, as one backend matmul with the bias added to its output (on the GPU
 * inside the product's kernel: at 2 x LSTM 512, batch 256, a separate add took 0.6 ms of a 42.7 ms step on an H200).
 */
function inputProjection(
  be: Backend,
  x: Tensor,
  wx: Tensor,
  bias: Tensor,
  rows: number,
  D: number,
  G: number,
): Storage {
  const xw = allocateUninit(be, rows * G);
  be.matmul(x.storage, wx.storage, xw, rows, D, G, { bias: bias.storage });
  return xw;
}

/** A state tensor, or zeros (B, H) in this step's scope when it is omitted. */
function stateOr(be: Backend, s: Tensor | null | undefined, B: number, H: number): Tensor {
  return s ?? empty(be, [B, H]);
}

/** The last time step of a (T, B, H) sequence as a (B, H) tensor (h0 when T = 0). */
function last(be: Backend, seq: Storage, T: number, B: number, H: number, first: Tensor): Tensor {
  const out = uninit(be, [B, H]);
  if (T > 0) be.copy(seq, (T - 1) * B * H, out.storage, 0, B * H);
  else be.copy(first.storage, 0, out.storage, 0, B * H);
  return out;
}

export interface LstmResult {
  hs: Tensor; // (T, B, H)
  hT: Tensor; // (B, H)
  cT: Tensor; // (B, H)
}

/**
 * LSTM over a whole sequence, gate order (i, f, g, o) as in PyTorch and Keras:
 * a_t = x_t Wx + b + h_{t-1} Wh; i, f, o = σ(a); g = tanh(a); c_t = f c_{t-1} + i g; h_t = o tanh(c_t).
 * x (T, B, D), wx (D, 4H), wh (H, 4H), b (4H), h0 and c0 (B, H) or null for zeros.
 */
export function lstm(
  x: Tensor,
  wx: Tensor,
  wh: Tensor,
  b: Tensor,
  h0: Tensor | null = null,
  c0: Tensor | null = null,
): LstmResult {
  const { T, B, D, H } = checkRecurrent("lstm", x, wx, wh, 4, [b], [h0, c0]);
  const be = backendOf("lstm", x, wx, wh, b, ...[h0, c0].filter((s) => s !== null));
  const xw = inputProjection(be, x, wx, b, T * B, D, 4 * H); // (T, B, 4H)
  const { hs, hT, cT, h, c, gates, cs } = lstmRun(be, xw, wh, h0, c0, T, B, H);
  record("lstm", [x, wx, wh, b, h, c], [hs, hT, cT], { T, B, D, H, xw, gates, cs });
  return { hs, hT, cT };
}

/** lstm() from the input projections xw (T, B, 4H) = x Wx + b, made by the caller. */
export function lstmProjected(xw: Tensor, wh: Tensor, h0: Tensor | null = null, c0: Tensor | null = null): LstmResult {
  const { T, B, H } = checkProjected("lstmProjected", xw, wh, 4, [], [h0, c0]);
  const be = backendOf("lstmProjected", xw, wh, ...[h0, c0].filter((s) => s !== null));
  const { hs, hT, cT, h, c, gates, cs } = lstmRun(be, xw.storage, wh, h0, c0, T, B, H);
  record("lstmProjected", [xw, wh, h, c], [hs, hT, cT], { T, B, H, gates, cs });
  return { hs, hT, cT };
}

function lstmRun(
  be: Backend,
  xw: Storage,
  wh: Tensor,
  h0: Tensor | null,
  c0: Tensor | null,
  T: number,
  B: number,
  H: number,
) {
  const hs = uninit(be, [T, B, H]);
  const cs = allocateUninit(be, T * B * H);
  const gates = allocateUninit(be, T * B * 4 * H);
  const h = stateOr(be, h0, B, H);
  const c = stateOr(be, c0, B, H);
  be.lstmForward({ T, B, H, xw, wh: wh.storage, h0: h.storage, c0: c.storage, hs: hs.storage, cs, gates });
  const hT = last(be, hs.storage, T, B, H, h);
  const cT = last(be, cs, T, B, H, c);
  return { hs, hT, cT, h, c, gates, cs };
}

export interface GruResult {
  hs: Tensor; // (T, B, H)
  hT: Tensor; // (B, H)
}

/**
 * GRU over a whole sequence, gate order (r, z, n), reset-after form (PyTorch, Keras 2+ reset_after=True):
 * r = σ(x Wx_r + bx_r + h Wh_r + bh_r); z likewise; n = tanh(x Wx_n + bx_n + r (h Wh_n + bh_n));
 * h_t = (1 - z) n + z h_{t-1}. x (T, B, D), wx (D, 3H), wh (H, 3H), bx and bh (3H), h0 (B, H) or null.
 */
export function gru(x: Tensor, wx: Tensor, wh: Tensor, bx: Tensor, bh: Tensor, h0: Tensor | null = null): GruResult {
  const { T, B, D, H } = checkRecurrent("gru", x, wx, wh, 3, [bx, bh], [h0]);
  const be = backendOf("gru", x, wx, wh, bx, bh, ...[h0].filter((s) => s !== null));
  const xw = inputProjection(be, x, wx, bx, T * B, D, 3 * H); // (T, B, 3H)
  const { hs, hT, h, gates, hn } = gruRun(be, xw, wh, bh, h0, T, B, H);
  record("gru", [x, wx, wh, bx, bh, h], [hs, hT], { T, B, D, H, xw, gates, hn });
  return { hs, hT };
}

/** gru() from the input projections xw (T, B, 3H) = x Wx + bx, made by the caller. */
export function gruProjected(xw: Tensor, wh: Tensor, bh: Tensor, h0: Tensor | null = null): GruResult {
  const { T, B, H } = checkProjected("gruProjected", xw, wh, 3, [bh], [h0]);
  const be = backendOf("gruProjected", xw, wh, bh, ...[h0].filter((s) => s !== null));
  const { hs, hT, h, gates, hn } = gruRun(be, xw.storage, wh, bh, h0, T, B, H);
  record("gruProjected", [xw, wh, bh, h], [hs, hT], { T, B, H, gates, hn });
  return { hs, hT };
}

function gruRun(be: Backend, xw: Storage, wh: Tensor, bh: Tensor, h0: Tensor | null, T: number, B: number, H: number) {
  const hs = uninit(be, [T, B, H]);
  const gates = allocateUninit(be, T * B * 3 * H);
  const hn = allocateUninit(be, T * B * H);
  const h = stateOr(be, h0, B, H);
  be.gruForward({ T, B, H, xw, wh: wh.storage, bh: bh.storage, h0: h.storage, hs: hs.storage, gates, hn });
  const hT = last(be, hs.storage, T, B, H, h);
  return { hs, hT, h, gates, hn };
}

export interface RnnResult {
  hs: Tensor; // (T, B, H)
  hT: Tensor; // (B, H)
}

/** Simple (Elman) RNN over a whole sequence: h_t = tanh(x_t Wx + b + h_{t-1} Wh). wx (D, H), wh (H, H), b (H). */
export function rnn(x: Tensor, wx: Tensor, wh: Tensor, b: Tensor, h0: Tensor | null = null): RnnResult {
  const { T, B, D, H } = checkRecurrent("rnn", x, wx, wh, 1, [b], [h0]);
  const be = backendOf("rnn", x, wx, wh, b, ...[h0].filter((s) => s !== null));
  const xw = inputProjection(be, x, wx, b, T * B, D, H); // (T, B, H)
  const { hs, hT, h } = rnnRun(be, xw, wh, h0, T, B, H);
  record("rnn", [x, wx, wh, b, h], [hs, hT], { T, B, D, H, xw });
  return { hs, hT };
}

/** rnn() from the input projections xw (T, B, H) = x Wx + b, made by the caller. */
export function rnnProjected(xw: Tensor, wh: Tensor, h0: Tensor | null = null): RnnResult {
  const { T, B, H } = checkProjected("rnnProjected", xw, wh, 1, [], [h0]);
  const be = backendOf("rnnProjected", xw, wh, ...[h0].filter((s) => s !== null));
  const { hs, hT, h } = rnnRun(be, xw.storage, wh, h0, T, B, H);
  record("rnnProjected", [xw, wh, h], [hs, hT], { T, B, H });
  return { hs, hT };
}

function rnnRun(be: Backend, xw: Storage, wh: Tensor, h0: Tensor | null, T: number, B: number, H: number) {
  const hs = uninit(be, [T, B, H]);
  const h = stateOr(be, h0, B, H);
  be.rnnForward({ T, B, H, xw, wh: wh.storage, h0: h.storage, hs: hs.storage });
  const hT = last(be, hs.storage, T, B, H, h);
  return { hs, hT, h };
}
