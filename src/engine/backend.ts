// The kernel interface every backend implements. Kernels work on plain Float32Arrays (row-major, contiguous;
// pass `subarray` views for offsets) and never allocate their outputs: the caller owns every buffer.
//
// Legend: M, K, N matrix sizes; B batch; T time steps; H hidden units; G gate width (4H for LSTM, 3H for GRU).
// Sequences are time-major: x[t] is the (B, ·) slab starting at t * B * width.
//
// The recurrent kernels run a whole sequence in one call: the input projection of all time steps (x @ Wx + b) is
// done beforehand as one big matmul by the caller, and handed in as `xw`; the kernel does the recurrence
// (h_{t-1} @ Wh, the gate nonlinearities) and keeps what the backward pass needs.
//
// Gate orders follow PyTorch (and Keras, which uses the same order):
//   LSTM  gates (i, f, g, o):  i=σ(a_i) f=σ(a_f) g=tanh(a_g) o=σ(a_o); c_t = f*c_{t-1} + i*g; h_t = o*tanh(c_t)
//   GRU   gates (r, z, n):     r=σ(xw_r + h W_hr + b_hr) z=σ(xw_z + h W_hz + b_hz)
//                              n=tanh(xw_n + r*(h W_hn + b_hn)); h_t = (1-z)*n + z*h_{t-1}
//         (the "reset after" form of PyTorch and Keras 2+: the recurrent bias bh sits inside r*(...))
//   RNN   h_t = tanh(xw_t + h_{t-1} @ Wh)

export interface MatmulOptions {
  /** A is stored (K, M) and used transposed. */
  transA?: boolean;
  /** B is stored (N, K) and used transposed. */
  transB?: boolean;
  /** C += A·B instead of C = A·B. */
  accumulate?: boolean;
}

export interface LstmForwardArgs {
  T: number;
  B: number;
  H: number;
  xw: Float32Array; // (T, B, 4H) input projections including bias
  wh: Float32Array; // (H, 4H)
  h0: Float32Array; // (B, H)
  c0: Float32Array; // (B, H)
  hs: Float32Array; // out (T, B, H) hidden states
  cs: Float32Array; // out (T, B, H) cell states
  gates: Float32Array; // out (T, B, 4H) gate activations after σ/tanh, kept for backward
}

export interface LstmBackwardArgs extends LstmForwardArgs {
  dhs: Float32Array; // (T, B, H) gradient of the loss w.r.t. every h_t (zeros where unused)
  dhT: Float32Array | null; // (B, H) extra gradient on the final h (carried state), or null
  dcT: Float32Array | null; // (B, H) extra gradient on the final c, or null
  dxw: Float32Array; // out (T, B, 4H), overwritten
  dwh: Float32Array; // out (H, 4H), accumulated (+=)
  dh0: Float32Array; // out (B, H), overwritten
  dc0: Float32Array; // out (B, H), overwritten
}

export interface GruForwardArgs {
  T: number;
  B: number;
  H: number;
  xw: Float32Array; // (T, B, 3H) input projections including input bias
  wh: Float32Array; // (H, 3H)
  bh: Float32Array; // (3H) recurrent bias
  h0: Float32Array; // (B, H)
  hs: Float32Array; // out (T, B, H)
  gates: Float32Array; // out (T, B, 3H): r, z, n after activation
  hn: Float32Array; // out (T, B, H): h_{t-1} @ W_hn + b_hn, needed for dr
}

export interface GruBackwardArgs extends GruForwardArgs {
  dhs: Float32Array; // (T, B, H)
  dhT: Float32Array | null; // (B, H)
  dxw: Float32Array; // out (T, B, 3H), overwritten
  dwh: Float32Array; // out (H, 3H), accumulated
  dbh: Float32Array; // out (3H), accumulated
  dh0: Float32Array; // out (B, H), overwritten
}

export interface RnnForwardArgs {
  T: number;
  B: number;
  H: number;
  xw: Float32Array; // (T, B, H) input projections including bias
  wh: Float32Array; // (H, H)
  h0: Float32Array; // (B, H)
  hs: Float32Array; // out (T, B, H)
}

export interface RnnBackwardArgs extends RnnForwardArgs {
  dhs: Float32Array; // (T, B, H)
  dhT: Float32Array | null; // (B, H)
  dxw: Float32Array; // out (T, B, H), overwritten
  dwh: Float32Array; // out (H, H), accumulated
  dh0: Float32Array; // out (B, H), overwritten
}

export interface Backend {
  readonly name: string;
  /** C(M,N) = op(A)(M,K) · op(B)(K,N), or C += ... with accumulate. */
  matmul(
    a: Float32Array,
    b: Float32Array,
    c: Float32Array,
    M: number,
    K: number,
    N: number,
    opts?: MatmulOptions,
  ): void;
  lstmForward(args: LstmForwardArgs): void;
  lstmBackward(args: LstmBackwardArgs): void;
  gruForward(args: GruForwardArgs): void;
  gruBackward(args: GruBackwardArgs): void;
  rnnForward(args: RnnForwardArgs): void;
  rnnBackward(args: RnnBackwardArgs): void;
}
