// The fused recurrent ops: LSTM, GRU and simple RNN over a whole sequence, time-major (T, B, ·).
//
// Legend: T time, B batch, D input features, H hidden units, G gate width (4H LSTM, 3H GRU, H RNN).
//
// The input projection of all T steps is ONE backend matmul (T*B, D) @ (D, G) plus the bias; the backend kernel
// runs the recurrence (h_{t-1} Wh and the gates) and keeps what its backward needs. The gradient rules (grad.ts)
// call the backward kernel and then do dx, dWx and db as single products over all steps as well.

import { record } from "./autograd.js";
import { getBackend } from "./backends/index.js";
import { fmtShape, sameShape } from "./shape.js";
import { Tensor } from "./tensor.js";

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

/** xw (T*B, G) = x (T*B, D) @ wx (D, G) + bias, as one backend matmul. */
function inputProjection(x: Tensor, wx: Tensor, bias: Tensor, rows: number, D: number, G: number): Float32Array {
  const xw = new Float32Array(rows * G);
  getBackend().matmul(x.data, wx.data, xw, rows, D, G);
  const b = bias.data;
  for (let r = 0; r < rows * G; r += G) for (let j = 0; j < G; j++) xw[r + j] += b[j];
  return xw;
}

/** A state tensor's data, or zeros when it is omitted. */
function stateData(s: Tensor | null | undefined, n: number): Float32Array {
  return s ? s.data : new Float32Array(n);
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
  const G = 4 * H;
  const xw = inputProjection(x, wx, b, T * B, D, G); // (T, B, 4H)
  const hs = Tensor.zeros([T, B, H]);
  const cs = new Float32Array(T * B * H);
  const gates = new Float32Array(T * B * G);
  const h0d = stateData(h0, B * H);
  const c0d = stateData(c0, B * H);
  getBackend().lstmForward({ T, B, H, xw, wh: wh.data, h0: h0d, c0: c0d, hs: hs.data, cs, gates });
  const last = (T - 1) * B * H;
  const hT = T > 0 ? new Tensor(hs.data.slice(last), [B, H]) : new Tensor(h0d.slice(), [B, H]);
  const cT = T > 0 ? new Tensor(cs.slice(last), [B, H]) : new Tensor(c0d.slice(), [B, H]);
  const inputs = [x, wx, wh, b, h0 ?? Tensor.zeros([B, H]), c0 ?? Tensor.zeros([B, H])];
  record("lstm", inputs, [hs, hT, cT], { T, B, D, H, xw, gates, cs, h0: h0d, c0: c0d });
  return { hs, hT, cT };
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
  const G = 3 * H;
  const xw = inputProjection(x, wx, bx, T * B, D, G); // (T, B, 3H)
  const hs = Tensor.zeros([T, B, H]);
  const gates = new Float32Array(T * B * G);
  const hn = new Float32Array(T * B * H);
  const h0d = stateData(h0, B * H);
  getBackend().gruForward({ T, B, H, xw, wh: wh.data, bh: bh.data, h0: h0d, hs: hs.data, gates, hn });
  const hT = new Tensor(T > 0 ? hs.data.slice((T - 1) * B * H) : h0d.slice(), [B, H]);
  const inputs = [x, wx, wh, bx, bh, h0 ?? Tensor.zeros([B, H])];
  record("gru", inputs, [hs, hT], { T, B, D, H, xw, gates, hn, h0: h0d });
  return { hs, hT };
}

export interface RnnResult {
  hs: Tensor; // (T, B, H)
  hT: Tensor; // (B, H)
}

/** Simple (Elman) RNN over a whole sequence: h_t = tanh(x_t Wx + b + h_{t-1} Wh). wx (D, H), wh (H, H), b (H). */
export function rnn(x: Tensor, wx: Tensor, wh: Tensor, b: Tensor, h0: Tensor | null = null): RnnResult {
  const { T, B, D, H } = checkRecurrent("rnn", x, wx, wh, 1, [b], [h0]);
  const xw = inputProjection(x, wx, b, T * B, D, H); // (T, B, H)
  const hs = Tensor.zeros([T, B, H]);
  const h0d = stateData(h0, B * H);
  getBackend().rnnForward({ T, B, H, xw, wh: wh.data, h0: h0d, hs: hs.data });
  const hT = new Tensor(T > 0 ? hs.data.slice((T - 1) * B * H) : h0d.slice(), [B, H]);
  const inputs = [x, wx, wh, b, h0 ?? Tensor.zeros([B, H])];
  record("rnn", inputs, [hs, hT], { T, B, D, H, xw, h0: h0d });
  return { hs, hT };
}
