// A vanilla character-level RNN written out by hand, after Karpathy's min-char-rnn: no tensors, no autograd, no
// engine; Float64Arrays and loops, so every multiply of the forward pass and every line of the chain rule can be
// read here, top to bottom.
//
// Legend: V vocabulary size, H hidden size, T steps unrolled (the sequence length).
// Matrices are row-major Float64Arrays: M[i, j] is at M[i * columns + j].
//
//   x_t = one_hot(input_t)                        (V)
//   h_t = tanh(Wxh x_t + Whh h_{t-1} + bh)        (H)     Wxh (H, V), Whh (H, H), bh (H)
//   y_t = Why h_t + by                            (V)     Why (V, H), by (V)
//   p_t = softmax(y_t)                            (V)
//   loss = -sum_t log p_t[target_t]               summed (not averaged) over the T unrolled steps
//
// Because x_t is one-hot, Wxh x_t is just column input_t of Wxh; we read that column instead of multiplying.

import type { Rng } from "../util/rng.js";

// ---------------------------------------------------------------------------------------------------------------
// Parameters

export const PARAM_NAMES = ["Wxh", "Whh", "Why", "bh", "by"] as const;
export type ParamName = (typeof PARAM_NAMES)[number];
export type Params = Record<ParamName, Float64Array>;

/** Shapes of the parameters, for checkpoints and error messages. */
export function paramShapes(V: number, H: number): Record<ParamName, number[]> {
  return { Wxh: [H, V], Whh: [H, H], Why: [V, H], bh: [H], by: [V] };
}

function zeroParams(V: number, H: number): Params {
  const s = paramShapes(V, H);
  const z = (shape: number[]) => new Float64Array(shape.reduce((a, b) => a * b, 1));
  return { Wxh: z(s.Wxh), Whh: z(s.Whh), Why: z(s.Why), bh: z(s.bh), by: z(s.by) };
}

/** Gradients of the summed loss: one array per parameter, and dh0, the gradient with respect to hprev. */
export type Grads = Params & { dh0: Float64Array };

// ---------------------------------------------------------------------------------------------------------------
// The model

export class ScratchRNN {
  readonly params: Params;
  /** Adagrad's running sum of squared gradients, one per parameter. */
  readonly memory: Params;
  /** Filled by lossFun. */
  readonly grads: Grads;

  // Scratch space reused by every lossFun call, so training allocates nothing per step. Sized for T steps and
  // made again when the sequence length changes.
  private T = -1;
  private hs = new Float64Array(0); // (T+1, H): hs[0] = hprev, hs[t+1] = h_t
  private ps = new Float64Array(0); // (T, V)
  private hsT = new Float64Array(0); // (H, T+1)
  private dys = new Float64Array(0); // (V, T)
  private das = new Float64Array(0); // (H, T)
  private readonly WhyT: Float64Array; // (H, V)
  private readonly WhhT: Float64Array; // (H, H)
  private readonly dh: Float64Array; // (H)
  private readonly dhnext: Float64Array; // (H)
  private readonly dy: Float64Array; // (V)

  /** Weights randn * scale (0.01 in min-char-rnn), biases zero. */
  constructor(
    readonly V: number,
    readonly H: number,
    rng: Rng,
    scale = 0.01,
  ) {
    this.params = zeroParams(V, H);
    for (const w of [this.params.Wxh, this.params.Whh, this.params.Why]) {
      for (let i = 0; i < w.length; i++) w[i] = rng.normal() * scale;
    }
    this.memory = zeroParams(V, H);
    this.grads = { ...zeroParams(V, H), dh0: new Float64Array(H) };
    this.dh = new Float64Array(H);
    this.dhnext = new Float64Array(H);
    this.dy = new Float64Array(V);
    this.WhyT = new Float64Array(H * V);
    this.WhhT = new Float64Array(H * H);
  }

  /**
   * One step of the recurrence: from hPrev and input character x, write h (H) and the softmax probabilities p (V).
   * Shared by training, sampling and evaluation, so they cannot disagree.
   */
  step(hPrev: Float64Array, x: number, h: Float64Array, p: Float64Array): void {
    const { V, H } = this;
    const { Wxh, Whh, Why, bh, by } = this.params;
    // h = tanh(Wxh[:, x] + Whh hPrev + bh)
    for (let i = 0; i < H; i++) {
      h[i] = Math.tanh(Wxh[i * V + x] + bh[i] + dot(Whh, i * H, hPrev, 0, H));
    }
    // y = Why h + by, then p = softmax(y). Subtracting max(y) first changes nothing mathematically and keeps exp
    // from overflowing once the logits grow.
    let max = -Infinity;
    for (let k = 0; k < V; k++) {
      const a = by[k] + dot(Why, k * H, h, 0, H);
      p[k] = a;
      if (a > max) max = a;
    }
    let sum = 0;
    for (let k = 0; k < V; k++) {
      p[k] = Math.exp(p[k] - max);
      sum += p[k];
    }
    for (let k = 0; k < V; k++) p[k] /= sum;
  }

  /**
   * Forward through T = inputs.length steps from hprev, then backward through time. Fills this.grads (clipped
   * element-wise to [-clip, clip]; pass Infinity to turn clipping off, as the gradient check does) and returns the
   * summed cross-entropy and the last hidden state (a fresh array, to carry into the next chunk).
   */
  lossFun(
    inputs: ArrayLike<number>,
    targets: ArrayLike<number>,
    hprev: Float64Array,
    clip = 5,
  ): { loss: number; h: Float64Array } {
    const { V, H } = this;
    const T = inputs.length;
    if (this.T !== T) {
      this.T = T;
      this.hs = new Float64Array((T + 1) * H);
      this.ps = new Float64Array(T * V);
      this.hsT = new Float64Array((T + 1) * H);
      this.dys = new Float64Array(V * T);
      this.das = new Float64Array(H * T);
    }
    const { hs, ps } = this;
    const hAt = (t: number) => hs.subarray((t + 1) * H, (t + 2) * H); // h_t; hAt(-1) is hprev
    const pAt = (t: number) => ps.subarray(t * V, (t + 1) * V);

    // ---- forward
    hs.set(hprev, 0);
    let loss = 0;
    for (let t = 0; t < T; t++) {
      this.step(hAt(t - 1), inputs[t], hAt(t), pAt(t));
      loss -= Math.log(pAt(t)[targets[t]]);
    }

    // ---- backward
    // Walk back through time carrying dhnext, the gradient reaching h_t from step t+1, and keep every step's
    // dy_t = dloss/dy_t and da_t = dloss/da_t (a_t being the pre-tanh sum). The weight gradients are sums over t of
    // outer products, formed after the walk:
    //   dWhy = sum_t dy_t h_t^T      dby = sum_t dy_t      dWhh = sum_t da_t h_{t-1}^T      dbh = sum_t da_t
    //   dWxh[:, x_t] += da_t
    // min-char-rnn adds each outer product inside the loop; the sums are the same, but collecting dy and da first
    // turns every inner loop into a contiguous dot product, which makes the whole update about 1.3x faster in V8.
    const { Whh, Why } = this.params;
    const g = this.grads;
    const { Wxh: dWxh, Whh: dWhh, Why: dWhy, bh: dbh, by: dby } = g;
    const { dh, dhnext, dy } = this;
    const WhyT = transpose(Why, V, H, this.WhyT); // (H, V)
    const WhhT = transpose(Whh, H, H, this.WhhT); // (H, H)
    const dys = this.dys; // (V, T): column t is dy_t
    const das = this.das; // (H, T): column t is da_t
    dhnext.fill(0); // nothing flows back from beyond the last step
    for (let t = T - 1; t >= 0; t--) {
      const h = hAt(t);
      // dloss/dy = p - one_hot(target): the softmax and the cross-entropy differentiated together.
      dy.set(pAt(t));
      dy[targets[t]] -= 1;
      for (let k = 0; k < V; k++) dys[k * T + t] = dy[k];
      // y = Why h + by  ->  dh = Why^T dy, plus what came back from step t+1.
      // h = tanh(a)     ->  da = (1 - h^2) dh; dh's array holds da from here on ("dhraw" in min-char-rnn).
      for (let i = 0; i < H; i++) {
        dh[i] = (dhnext[i] + dot(WhyT, i * V, dy, 0, V)) * (1 - h[i] * h[i]);
        das[i * T + t] = dh[i];
      }
      // a = Wxh[:, x] + Whh h_{t-1} + bh  ->  dh_{t-1} = Whh^T da
      for (let j = 0; j < H; j++) dhnext[j] = dot(WhhT, j * H, dh, 0, H);
    }
    g.dh0.set(dhnext);

    const hsT = transpose(hs, T + 1, H, this.hsT); // (H, T+1): column t is h_{t-1}, column t+1 is h_t
    for (let k = 0; k < V; k++) {
      dby[k] = sum(dys, k * T, T);
      for (let i = 0; i < H; i++) dWhy[k * H + i] = dot(dys, k * T, hsT, i * (T + 1) + 1, T);
    }
    dWxh.fill(0);
    for (let i = 0; i < H; i++) {
      dbh[i] = sum(das, i * T, T);
      for (let j = 0; j < H; j++) dWhh[i * H + j] = dot(das, i * T, hsT, j * (T + 1), T);
      for (let t = 0; t < T; t++) dWxh[i * V + inputs[t]] += das[i * T + t];
    }

    // Clip every gradient entry to [-clip, clip] to keep an exploding step from wrecking the weights.
    if (clip !== Infinity) for (const d of [dWxh, dWhh, dWhy, dbh, dby]) clipInPlace(d, clip);
    return { loss, h: hAt(T - 1).slice() };
  }

  /** Adagrad: mem += g^2; param -= lr * g / (sqrt(mem) + eps), using the gradients lossFun left in this.grads. */
  adagrad(learningRate: number, eps = 1e-8): void {
    for (const name of PARAM_NAMES) {
      const w = this.params[name];
      const d = this.grads[name];
      const m = this.memory[name];
      for (let i = 0; i < w.length; i++) {
        m[i] += d[i] * d[i];
        w[i] -= (learningRate * d[i]) / (Math.sqrt(m[i]) + eps);
      }
    }
  }

  /**
   * Sample n character ids, starting from hidden state h (not modified) and feeding seedIndex first, each drawn
   * character becoming the next input. temperature divides the logits (1 = the model's own distribution); 0 takes
   * the most likely character every time (greedy).
   */
  sample(h: Float64Array, seedIndex: number, n: number, rng: Rng, temperature = 1): number[] {
    const { V, H } = this;
    let hPrev = Float64Array.from(h);
    let hNext = new Float64Array(H);
    const p = new Float64Array(V);
    const out: number[] = [];
    let x = seedIndex;
    for (let t = 0; t < n; t++) {
      this.step(hPrev, x, hNext, p);
      [hPrev, hNext] = [hNext, hPrev];
      x = temperature === 0 ? argmax(p) : rng.categorical(temperature === 1 ? p : sharpen(p, temperature));
      out.push(x);
    }
    return out;
  }

  /**
   * Run the ids through the model (from h, zero by default) and return the hidden state after the last one: used to
   * prime sampling with a text.
   */
  feed(ids: ArrayLike<number>, h: Float64Array = new Float64Array(this.H)): Float64Array {
    let hPrev = Float64Array.from(h);
    let hNext = new Float64Array(this.H);
    const p = new Float64Array(this.V);
    for (let t = 0; t < ids.length; t++) {
      this.step(hPrev, ids[t], hNext, p);
      [hPrev, hNext] = [hNext, hPrev];
    }
    return hPrev;
  }

  /**
   * Mean cross-entropy per predicted character over a whole split, in nats: the hidden state starts at zero and is
   * carried through the text, predicting ids[t+1] from ids[0..t].
   */
  evaluate(ids: ArrayLike<number>): number {
    if (ids.length < 2) return NaN;
    let hPrev = new Float64Array(this.H);
    let hNext = new Float64Array(this.H);
    const p = new Float64Array(this.V);
    let sum = 0;
    for (let t = 0; t + 1 < ids.length; t++) {
      this.step(hPrev, ids[t], hNext, p);
      [hPrev, hNext] = [hNext, hPrev];
      sum -= Math.log(p[ids[t + 1]]);
    }
    return sum / (ids.length - 1);
  }
}

/**
 * sum_j a[ai + j] * b[bi + j] for j < n. Four running sums instead of one: a single sum waits for each addition
 * to finish before the next can start, four independent ones keep the floating-point unit busy (the forward step
 * ran about 1.5x faster with it). The order of the additions differs from a plain loop only in rounding.
 */
function dot(a: Float64Array, ai: number, b: Float64Array, bi: number, n: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let j = 0;
  for (; j + 3 < n; j += 4) {
    s0 += a[ai + j] * b[bi + j];
    s1 += a[ai + j + 1] * b[bi + j + 1];
    s2 += a[ai + j + 2] * b[bi + j + 2];
    s3 += a[ai + j + 3] * b[bi + j + 3];
  }
  for (; j < n; j++) s0 += a[ai + j] * b[bi + j];
  return s0 + s1 + (s2 + s3);
}

function sum(a: Float64Array, ai: number, n: number): number {
  let s = 0;
  for (let j = 0; j < n; j++) s += a[ai + j];
  return s;
}

/** out (C, R) = a (R, C) transposed. */
function transpose(a: Float64Array, R: number, C: number, out: Float64Array): Float64Array {
  for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) out[c * R + r] = a[r * C + c];
  return out;
}

function clipInPlace(d: Float64Array, clip: number): void {
  const lo = -clip;
  for (let i = 0; i < d.length; i++) d[i] = Math.min(clip, Math.max(lo, d[i]));
}

function argmax(p: Float64Array): number {
  let best = 0;
  for (let k = 1; k < p.length; k++) if (p[k] > p[best]) best = k;
  return best;
}

/** p^(1/temperature), i.e. softmax(y / temperature) up to normalisation (categorical normalises). */
function sharpen(p: Float64Array, temperature: number): Float64Array {
  const q = new Float64Array(p.length);
  let max = 0;
  for (let k = 0; k < p.length; k++) max = Math.max(max, p[k]);
  for (let k = 0; k < p.length; k++) q[k] = Math.pow(p[k] / max, 1 / temperature);
  return q;
}
