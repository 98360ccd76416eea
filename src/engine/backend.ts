// The kernel interface every backend implements, and the storage it owns.
//
// A backend owns the memory of every tensor made while it is current: `alloc` hands out a `Storage` (n float32
// values, zero-filled), kernels read and write storages, and nothing leaves the backend unless asked: `read` copies
// values out (asynchronously: a GPU backend answers when its queue has run), `write` copies values in, and backends
// whose memory JavaScript can see (`sync`: js, wasm) also give a live `view`. Weights, gradients, optimizer state
// and activations therefore stay where the backend keeps them between calls (wasm memory, GPU buffers); only token
// ids and targets (Int32Array, made on the host by the batcher) travel in with each call.
//
// Kernels never allocate their outputs: the caller passes every buffer, and `free` returns one to the backend
// (the engine frees deterministically, see ../engine/scope.ts; a backend may pool freed storage for reuse).
// Every offset and count is in float32 elements. A kernel that "accumulates" adds (+=) into its output.
//
// Legend: M, K, N matrix sizes; B batch; T time steps; H hidden units; G gate width (4H LSTM, 3H GRU, H RNN);
// V classes (vocabulary); C channels; N rows (positions). Sequences are time-major: x[t] is the (B, ·) slab at t*B*width.
//
// The recurrent kernels run a whole sequence in one call: the input projection of all time steps (x @ Wx + b) is
// done beforehand as one big matmul by the caller and handed in as `xw`; the kernel does the recurrence
// (h_{t-1} @ Wh, the gate nonlinearities) and keeps what the backward pass needs.
//
// Gate orders follow PyTorch (and Keras, which uses the same order):
//   LSTM  gates (i, f, g, o):  i=σ(a_i) f=σ(a_f) g=tanh(a_g) o=σ(a_o); c_t = f*c_{t-1} + i*g; h_t = o*tanh(c_t)
//   GRU   gates (r, z, n):     r=σ(xw_r + h W_hr + b_hr) z=σ(xw_z + h W_hz + b_hz)
//                              n=tanh(xw_n + r*(h W_hn + b_hn)); h_t = (1-z)*n + z*h_{t-1}
//         (the "reset after" form of PyTorch and Keras 2+: the recurrent bias bh sits inside r*(...))
//   RNN   h_t = tanh(xw_t + h_{t-1} @ Wh)

/** n float32 values owned by one backend. Opaque outside it: pass it back to the same backend's kernels. */
export interface Storage {
  /** Number of float32 values. */
  readonly length: number;
}

export interface MatmulOptions {
  /** A is stored (K, M) and used transposed. */
  transA?: boolean;
  /** B is stored (N, K) and used transposed. */
  transB?: boolean;
  /** C += A·B instead of C = A·B. */
  accumulate?: boolean;
  /** Number of matrix pairs, stored one after another (A: batch × M*K, B: batch × K*N, C: batch × M*N); default 1. */
  batch?: number;
  /** Element offsets of the first matrix in a, b and c (default 0). */
  offsetA?: number;
  offsetB?: number;
  offsetC?: number;
  /**
   * N values added to every row of the product: C = A·B + bias, summed after the product (the same bits as the
   * product then a broadcast add). Only with batch 1, no accumulate and no offset of C (see checkMatmulBias).
   */
  bias?: Storage;
}

/** Refuses a bias with options it does not combine with (every backend's matmul calls this). */
export function checkMatmulBias(N: number, opts: MatmulOptions | undefined): void {
  if (!opts?.bias) return;
  if ((opts.batch ?? 1) !== 1 || opts.accumulate || (opts.offsetC ?? 0) !== 0)
    throw new Error("matmul: a bias needs batch 1, no accumulate and no offsetC; add it separately instead");
  if (opts.bias.length < N)
    throw new Error(`matmul: the bias has ${opts.bias.length} values, the product ${N} columns`);
}

/** How the sampler shapes the next-token distribution (see ../engine/sampling.ts). */
export interface Sampling {
  temperature: number; // > 0
  topK: number; // keep the k most likely (0 = all)
  topP: number; // keep the most likely up to this total probability, in (0, 1]; 1 = all
}

/** Elementwise functions with a gradient rule. */
export type UnaryOp = "sigmoid" | "tanh" | "exp" | "log" | "relu" | "gelu";

/** Broadcasting binary ops. */
export type BinaryOp = "add" | "sub" | "mul";

/**
 * How an operand is laid over the output of a broadcasting op: for each output axis (same rank as `shape`), the
 * element stride in the operand's storage, 0 where the operand is broadcast along that axis.
 */
export type Strides = readonly number[];

export interface LstmForwardArgs<S extends Storage = Storage> {
  T: number;
  B: number;
  H: number;
  xw: S; // (T, B, 4H) input projections including bias
  wh: S; // (H, 4H)
  h0: S; // (B, H)
  c0: S; // (B, H)
  hs: S; // out (T, B, H) hidden states
  cs: S; // out (T, B, H) cell states
  gates: S; // out (T, B, 4H) gate activations after σ/tanh, kept for backward
}

export interface LstmBackwardArgs<S extends Storage = Storage> extends LstmForwardArgs<S> {
  dhs: S; // (T, B, H) gradient of the loss w.r.t. every h_t (zeros where unused)
  dhT: S | null; // (B, H) extra gradient on the final h (carried state), or null
  dcT: S | null; // (B, H) extra gradient on the final c, or null
  dxw: S; // out (T, B, 4H), overwritten
  dwh: S | null; // out (H, 4H), accumulated (+=); null: not wanted
  dh0: S; // out (B, H), overwritten
  dc0: S; // out (B, H), overwritten
}

export interface GruForwardArgs<S extends Storage = Storage> {
  T: number;
  B: number;
  H: number;
  xw: S; // (T, B, 3H) input projections including input bias
  wh: S; // (H, 3H)
  bh: S; // (3H) recurrent bias
  h0: S; // (B, H)
  hs: S; // out (T, B, H)
  gates: S; // out (T, B, 3H): r, z, n after activation
  hn: S; // out (T, B, H): h_{t-1} @ W_hn + b_hn, needed for dr
}

export interface GruBackwardArgs<S extends Storage = Storage> extends GruForwardArgs<S> {
  dhs: S; // (T, B, H)
  dhT: S | null; // (B, H)
  dxw: S; // out (T, B, 3H), overwritten
  dwh: S | null; // out (H, 3H), accumulated; null: not wanted
  dbh: S | null; // out (3H), accumulated; null: not wanted
  dh0: S; // out (B, H), overwritten
}

export interface RnnForwardArgs<S extends Storage = Storage> {
  T: number;
  B: number;
  H: number;
  xw: S; // (T, B, H) input projections including bias
  wh: S; // (H, H)
  h0: S; // (B, H)
  hs: S; // out (T, B, H)
}

export interface RnnBackwardArgs<S extends Storage = Storage> extends RnnForwardArgs<S> {
  dhs: S; // (T, B, H)
  dhT: S | null; // (B, H)
  dxw: S; // out (T, B, H), overwritten
  dwh: S | null; // out (H, H), accumulated; null: not wanted
  dh0: S; // out (B, H), overwritten
}

/** Hyperparameters of one optimizer update, resolved on the host (lr from the schedule, bias corrections from t). */
export interface AdamStep {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1 - β1^t and 1 - β2^t */
  bc1: number;
  bc2: number;
}
export interface RmspropStep {
  lr: number;
  rho: number;
  eps: number;
  weightDecay: number;
}
export interface AdagradStep {
  lr: number;
  eps: number;
  weightDecay: number;
}
export interface SgdStep {
  lr: number;
  momentum: number;
  nesterov: boolean;
  weightDecay: number;
  /** The first update (t = 1): the momentum buffer starts as the gradient itself, as torch.optim does. */
  first: boolean;
}

/**
 * Every op of the engine, on storages of one backend. The js backend (backends/js.ts) is the readable reference:
 * each kernel's exact semantics are the loops written there.
 */
/** A recurrent model as Backend.rnnBurst runs it: cell, layers, embedding width, units, vocabulary. */
export interface BurstShape {
  cell: "lstm" | "gru" | "rnn";
  L: number;
  E: number;
  H: number;
  V: number;
}

export interface RnnBurst<S extends Storage = Storage> {
  shape: BurstShape;
  weights: S;
  state: S;
  u: S;
  uOff: number;
  ids: S;
  idsOff: number;
  n: number;
  how: Sampling;
  /**
   * webgpu: the wide route (a dispatch per layer a token over many workgroups) rather than one workgroup for the
   * whole burst (false); unset: CHARLM_WEBGPU_BURST=wide or fused, else what `charlm tune-gpu` measured, else
   * the wide route.
   */
  wide?: boolean;
}

export interface Backend<S extends Storage = Storage> {
  readonly name: string;
  /** True when `view` works (values in memory JavaScript can see); false for a GPU backend. */
  readonly sync: boolean;

  // ---- memory
  /** n zeros. */
  alloc(n: number): S;
  /**
   * n values for an op's output that its kernel overwrites entirely before anything reads them: not zeros (js fills
   * them with NaN, so that a kernel that reads one, or leaves one unwritten, shows it in every test; webgpu hands out
   * a pooled buffer without clearing it). Without it, alloc.
   */
  allocUninit?(n: number): S;
  /** Give s back; it must not be used again (a backend may hand its memory out again). */
  free(s: S): void;
  /** dst[offset .. offset + src.length) = src */
  write(dst: S, src: Float32Array, offset?: number): void;
  /** A copy of src[offset .. offset + n) (default: all of it), once every kernel queued before has run. */
  read(src: S, offset?: number, n?: number): Promise<Float32Array>;
  /** Backends whose storage is a Float32Array (js) take host arrays as they are, without a copy. */
  adopt?(data: Float32Array): S;
  /** Sync backends only: a live view of s (writes go through). Valid until the next alloc. */
  view(s: S): Float32Array;
  /** dst[dstOff + i] = src[srcOff + i], i < n (the ranges may be in the same storage but must not overlap). */
  copy(src: S, srcOff: number, dst: S, dstOff: number, n: number): void;
  /** dst[offset .. offset + n) = value (default: all of dst). */
  fill(dst: S, value: number, offset?: number, n?: number): void;
  /** Resolves once every kernel queued so far has run (at once on sync backends). */
  flush(): Promise<void>;
  /** Release the backend's device and memory (a GPU device keeps Node alive until destroyed). */
  destroy?(): void;

  // ---- products
  /** C(M,N) = op(A)(M,K) · op(B)(K,N) (or += with accumulate), for each of `batch` matrix triples. */
  matmul(a: S, b: S, c: S, M: number, K: number, N: number, opts?: MatmulOptions): void;

  // ---- elementwise
  /** y = f(x), n elements. */
  unary(op: UnaryOp, x: S, y: S, n: number): void;
  /** dx += g ⊙ f'(x), n elements; x is the op's input and y = f(x) its output (rules use whichever is cheaper). */
  unaryBackward(op: UnaryOp, x: S, y: S, g: S, dx: S, n: number): void;
  /** y = s·x, or y += s·x with accumulate; n elements. */
  scale(x: S, y: S, n: number, s: number, accumulate: boolean): void;
  /**
   * out[i] = a[ia] op b[ib] over every index i of `shape` (row-major), where ia = Σ_d idx_d · aStrides[d] and
   * likewise ib: broadcasting is a zero stride. `out` may be `a` itself when a is contiguous (in place: a bias added
   * to a product); otherwise outputs never alias inputs, in this and every other kernel.
   */
  binary(op: BinaryOp, a: S, aStrides: Strides, b: S, bStrides: Strides, out: S, shape: readonly number[]): void;
  /**
   * The gradient of a broadcast operand: dst[Σ_d idx_d · dstStrides[d]] += s · g[i] over every index i of `shape`
   * (entries of g that map to one dst element are summed: the sum over broadcast axes).
   */
  reduceTo(g: S, shape: readonly number[], dst: S, dstStrides: Strides, s: number): void;

  // ---- rows (softmax over the last axis, length V; layer norm over C)
  /** y = softmax(x) per row of V. */
  softmax(x: S, y: S, rows: number, V: number): void;
  /** dx += y ⊙ (g - Σ_j g_j y_j) per row. */
  softmaxBackward(y: S, g: S, dx: S, rows: number, V: number): void;
  /**
   * loss[0] = (1/N) Σ_n [logsumexp(x_n) - x_n[t_n]] over N rows of V logits (stable: max + log Σ e^(x - max));
   * probs, when given, receives softmax(x) per row for the backward pass. Targets are in [0, V) (checked by the op).
   */
  crossEntropy(logits: S, targets: Int32Array, loss: S, probs: S | null, N: number, V: number): void;
  /** dx_n += (g[0] / N) (probs_n - onehot(t_n)), g the loss's gradient (1 element). */
  crossEntropyBackward(probs: S, targets: Int32Array, g: S, dx: S, N: number, V: number): void;
  /** y = γ (x - μ) r + β, r = 1/sqrt(σ² + eps) per row of C; keeps x̂ = (x - μ) r (rows × C) and r (rows). */
  layerNorm(x: S, gamma: S, beta: S, y: S, xhat: S, rstd: S, rows: number, C: number, eps: number): void;
  /** With d = g γ: dx += r (d - mean(d) - x̂ mean(d x̂)); dγ += Σ_rows g x̂; dβ += Σ_rows g. */
  layerNormBackward(
    g: S,
    gamma: S,
    xhat: S,
    rstd: S,
    dx: S | null,
    dgamma: S | null,
    dbeta: S | null,
    rows: number,
    C: number,
  ): void;

  // ---- gather and scatter
  /** out[n] = w[ids[n]] (rows of D). ids are in range (checked by the op). */
  embedding(w: S, ids: Int32Array, out: S, D: number): void;
  /** dw[ids[n]] += g[n] (repeated ids accumulate). */
  embeddingBackward(g: S, ids: Int32Array, dw: S, D: number): void;
  /**
   * out[n] = w[ids[idsOff + n]] for n < count, the ids held on the backend as float values (written by sampleRows):
   * generation feeds a sampled token back without reading it. No gradient.
   */
  embeddingFrom(w: S, ids: S, idsOff: number, out: S, count: number, D: number): void;

  // ---- sampling
  /**
   * One token per row of logits (rows, V): ids[idsOff + r] = the index drawn, as a float, from the weights of
   * ../engine/sampling.ts (temperature, top-k, top-p) with the uniform draw u[uOff + r] (drawIndex's rule). f32
   * arithmetic on a GPU: a draw within rounding of a boundary between two tokens may fall the other way.
   */
  sampleRows(logits: S, u: S, uOff: number, ids: S, idsOff: number, rows: number, V: number, how: Sampling): void;
  /**
   * Optional (webgpu): a recurrent model's generation at batch 1, n tokens at once (one kernel there). For k < n:
   * ids[idsOff + k] = the id sampleRows would draw from the logits in `state` with u[uOff + k], then `state`
   * advanced by that token. `weights` holds the model's tensors one after another in RnnModel.burstWeights' order;
   * `state` the h of every layer, the c of every LSTM layer, then the logits (V).
   */
  rnnBurst?(a: RnnBurst<S>): void;
  /**
   * Whether rnnBurst should run a model of this shape here: the GPU's workgroup memory holds what one of its
   * kernels needs (webgpu: two of its vectors for one workgroup a burst, one for the wide route), and `charlm
   * tune-gpu` did not find the step route faster on this GPU.
   */
  takesBurst?(shape: BurstShape): boolean;

  // ---- layout
  /**
   * count blocks of `block` elements: dst[dstOff + o·dstStride + j] = (or += with accumulate)
   * src[srcOff + o·srcStride + j], o < count, j < block. Concat, slice and their gradients.
   */
  copyBlocks(
    src: S,
    srcOff: number,
    srcStride: number,
    dst: S,
    dstOff: number,
    dstStride: number,
    block: number,
    count: number,
    accumulate: boolean,
  ): void;
  /** y[a, j] = s · Σ_i x[a, i, j] for x viewed as (outer, n, inner). */
  reduceAxis(x: S, y: S, outer: number, n: number, inner: number, s: number): void;
  /** dx[a, i, j] += s · g[a, j] for dx viewed as (outer, n, inner). */
  broadcastAxis(g: S, dx: S, outer: number, n: number, inner: number, s: number): void;
  /** y = x with axes a0 < a1 of `shape` swapped (y has the swapped shape); += with accumulate. */
  swapAxes(x: S, shape: readonly number[], a0: number, a1: number, y: S, accumulate: boolean): void;

  // ---- attention
  /** For `count` matrices of (T, T): y = x with entries above the diagonal set to -Infinity. */
  causalMask(x: S, y: S, count: number, T: number): void;
  /** dx += g below and on the diagonal. */
  causalMaskBackward(g: S, dx: S, count: number, T: number): void;
  /**
   * Multi-head causal self-attention on q, k, v (B, T, C), nHead heads of hd = C / nHead:
   * out_h = softmax(mask(q_h k_hᵀ / √hd)) v_h into out (B, T, C); att (B, nHead, T, T) keeps the softmax weights
   * (zeros above the diagonal).
   */
  attention(q: S, k: S, v: S, out: S, att: S, B: number, T: number, C: number, nHead: number): void;
  /**
   * Per head: dv_j += Σ_i p_ij g_i; dp_ij = g_i·v_j; ds_ij = p_ij (dp_ij - Σ_k p_ik dp_ik);
   * dq_i += Σ_j ds_ij k_j / √hd; dk_j += Σ_i ds_ij q_i / √hd. Null gradients are not wanted.
   */
  attentionBackward(
    q: S,
    k: S,
    v: S,
    att: S,
    g: S,
    dq: S | null,
    dk: S | null,
    dv: S | null,
    B: number,
    T: number,
    C: number,
    nHead: number,
  ): void;
  /**
   * Attention of T new positions pos0 .. pos0+T-1 against a key/value cache (the GPT's generation step).
   * qkv (B, T, 3C) holds [q | k | v] per position; the k and v of the new positions are first written into
   * kCache and vCache (B, N, C) at pos0 + t, then query t attends to cached positions 0 .. pos0 + t.
   * out (B, T, C), heads concatenated.
   */
  attentionCached(
    qkv: S,
    kCache: S,
    vCache: S,
    out: S,
    B: number,
    T: number,
    C: number,
    nHead: number,
    N: number,
    pos0: number,
  ): void;

  // ---- recurrent layers (whole sequences)
  lstmForward(args: LstmForwardArgs<S>): void;
  lstmBackward(args: LstmBackwardArgs<S>): void;
  gruForward(args: GruForwardArgs<S>): void;
  gruBackward(args: GruBackwardArgs<S>): void;
  rnnForward(args: RnnForwardArgs<S>): void;
  rnnBackward(args: RnnBackwardArgs<S>): void;

  // ---- optimizers (n elements; w updated in place, slots likewise; g read only). Rules as in torch.optim.
  /** m = β1 m + (1-β1) g'; v = β2 v + (1-β2) g'²; w -= lr (m/bc1) / (sqrt(v/bc2) + eps); g' = g + wd·w */
  adam(w: S, g: S, m: S, v: S, n: number, h: AdamStep): void;
  /** s = ρ s + (1-ρ) g'²; w -= lr g' / (sqrt(s) + eps) */
  rmsprop(w: S, g: S, s: S, n: number, h: RmspropStep): void;
  /** G += g'²; w -= lr g' / (sqrt(G) + eps) */
  adagrad(w: S, g: S, sum: S, n: number, h: AdagradStep): void;
  /** buf = g' (first) or μ buf + g'; step = nesterov ? g' + μ buf : buf (plain SGD when μ = 0: step = g'); w -= lr step */
  sgd(w: S, g: S, buf: S, n: number, h: SgdStep): void;

  // ---- norms (global-norm clipping without a round trip to the host)
  /** out[outOff] = Σ_i x[i]², i < n. */
  sumSquares(x: S, n: number, out: S, outOff: number): void;
  /**
   * From per-tensor squared norms sq[0 .. count): out[0] = the total norm ‖g‖ = √Σ sq (summed in order), out[1] =
   * the clip factor: maxNorm / (‖g‖ + 1e-6) when ‖g‖ > maxNorm, else 1 (also when ‖g‖ is not finite, so that a
   * diverged gradient is left for the caller to see, or maxNorm is Infinity).
   */
  clipFactor(sq: S, count: number, maxNorm: number, out: S): void;
  /** x[i] *= f[fOff], i < n. */
  scaleBy(x: S, n: number, f: S, fOff: number): void;

  // ---- random numbers made where the values live (nothing uploaded per step)
  /**
   * Dropout's mask from a counter-based hash, bit for bit the same on every backend: out[i] = 0 when
   * dropHash(seed, i) < threshold, else keep, i < n (dropHash in js-ops.ts; threshold = ⌊rate·2³²⌋ as a uint32,
   * keep = 1/(1 - rate) rounded to f32). The caller draws `seed` from its seeded generator, one per mask.
   */
  dropoutMask(out: S, n: number, seed: number, threshold: number, keep: number): void;
}
