// The Keras-style sequential recurrent model:
//
//   Embedding(V, E) -> N x (LSTM | GRU | SimpleRNN)(H) [-> Dropout after each] -> Dense(V)
//
// Tokens arrive batch-major (B, T) as the contract says, but the recurrent ops run time-major (T, B, ·), where each
// step reads one contiguous (B, ·) slab. So the ids are transposed on the way in (cheap: integers) and the logits
// on the way out (the (T, B, V) logits are smaller than the (T, B, H) hidden states whenever V < H).
//
// Dropout (training only) follows every recurrent layer, including the last, as in char-rnn: with one layer it
// still regularises the Dense input. Set dropout 0 for none.
//
// The embedding folded into the first layer. The first layer's input projections are x Wx + b for x a row of the
// embedding table, so they are rows of one (V, G) table, E Wx + b. A batch of N tokens then gathers N rows of that
// table instead of multiplying N rows by Wx, and its backward adds the N rows' gradients into the table's rows (a
// scatter) and takes dE and dWx as (V, ·) products instead of (N, ·) ones: three products of N x D x G become three of
// V x D x G. The same model and the same values up to float rounding; taken when a batch holds at least twice as many
// tokens as the vocabulary (training and evaluation batches of a character model; not generation's one token a row,
// nor a word vocabulary larger than the batch). For an LSTM 256 with embedding 64 it is a fifth of the arithmetic of
// a training step. CHARLM_FOLD_EMBEDDING=0 turns it off (benchmarks of the unfolded form).
//
// Legend: B batch, T time, V vocabulary, E embedding width, H units, L layers, G gate width, N = B*T tokens.

import { noGrad } from "../engine/autograd.js";
import type { BurstShape } from "../engine/backend.js";
import { embedding, embeddingFrom, reshape, slice, softmaxCrossEntropy, transpose } from "../engine/ops.js";
import { disposeReplaced, scope } from "../engine/scope.js";
import { Tensor } from "../engine/tensor.js";
import { Dense } from "../nn/dense.js";
import { Dropout } from "../nn/dropout.js";
import { Embedding } from "../nn/embedding.js";
import type { InitScheme } from "../nn/init.js";
import type { Layer } from "../nn/layer.js";
import { recurrentLayer, type RecurrentLayer } from "../nn/recurrent.js";
import { CharlmError } from "../util/errors.js";
import { Rng } from "../util/rng.js";
import type { RnnModelConfig } from "./config.js";
import type { ForwardResult, LanguageModel, State } from "./contract.js";

/** Steps a recurrent model's prefill runs through at once: a longer prime goes through in chunks of this many. */
export const PREFILL_CHUNK = 1024;

/** Recurrent state of the whole stack: one entry per layer; c only for LSTM. Tensors are (B, H), detached. */
export interface RnnState {
  h: Tensor[];
  c: Tensor[];
}

export interface RnnForwardOptions {
  targets?: Int32Array; // (B, T): with them, forward also returns the mean cross-entropy
  state?: State; // an RnnState from initialState() or a previous forward/step; zeros when absent
  training?: boolean; // enables dropout
  rng?: Rng; // dropout draws; pass the training loop's Rng so a resumed run repeats them (default: the model's own)
  fold?: boolean; // fold the embedding into the first layer's input projection (default: foldsEmbedding's rule)
}

/** Whether a batch of N tokens over a vocabulary of V folds the embedding into the first layer (see above). */
export function foldsEmbedding(V: number, N: number): boolean {
  const off = typeof process !== "undefined" && process.env?.CHARLM_FOLD_EMBEDDING === "0";
  return !off && N >= 2 * V;
}

/** The first recurrent layer's input: the embedded tokens (T, B, E), or their input projections (T, B, G). */
type FirstInput = { x: Tensor } | { xw: Tensor };

export class RnnModel implements LanguageModel {
  readonly config: RnnModelConfig & Record<string, unknown>;
  readonly embedding: Embedding;
  readonly recurrent: RecurrentLayer[];
  readonly dropout: Dropout;
  readonly dense: Dense;
  /** Dropout draws when the caller passes no rng. */
  private readonly ownRng: Rng;

  /**
   * rng null: all parameters zero, for a model whose weights are loaded next (skips the O(H³) init). `init` picks
   * Keras' or PyTorch's initialisers (see InitScheme in nn/init.ts).
   */
  constructor(config: RnnModelConfig, rng: Rng | null, init: InitScheme = "keras") {
    this.config = { ...config };
    const { vocabSize: V, embedding: E, units: H, layers: L, cell } = config;
    // Draw order is part of the determinism contract: embedding, each recurrent layer (wx, wh), dense.
    this.embedding = new Embedding(V, E, rng, "embedding", init);
    this.recurrent = [];
    for (let l = 0; l < L; l++) this.recurrent.push(recurrentLayer(cell, l === 0 ? E : H, H, rng, `rnn.${l}`, init));
    this.dropout = new Dropout(config.dropout, "dropout");
    this.dense = new Dense(H, V, rng, "dense", init);
    this.ownRng = new Rng(rng ? rng.nextU32() : 0);
  }

  /** Layers in order, for summary(). */
  layers(): Layer[] {
    return [this.embedding, ...this.recurrent, this.dense];
  }

  parameters(): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    for (const layer of this.layers()) {
      for (const [local, t] of layer.params) out.set(`${layer.name}.${local}`, t);
    }
    return out;
  }

  initialState(B: number): RnnState {
    const h: Tensor[] = [];
    const c: Tensor[] = [];
    for (const layer of this.recurrent) {
      const s = layer.initialState(B);
      h.push(s.h);
      if (s.c) c.push(s.c);
    }
    return { h, c };
  }

  forward(tokens: Int32Array, B: number, T: number, opts: RnnForwardOptions = {}): ForwardResult {
    const state = this.checkState(opts.state ?? this.initialState(B), B);
    const training = opts.training ?? false;
    const rng = opts.rng ?? this.ownRng;
    const first = this.firstInput(tokens, B, T, opts.fold);
    const { logits, state: next } = this.stack(first, state, training, rng);
    const result: ForwardResult = { logits, state: next };
    if (opts.targets) {
      if (opts.targets.length !== B * T) {
        throw new CharlmError(`model targets: ${opts.targets.length} ids do not fill a (${B}, ${T}) batch`);
      }
      result.loss = softmaxCrossEntropy(logits, opts.targets);
    }
    return result;
  }

  /** One token per batch row (B) -> logits (B, V) and the next state; no graph is recorded. */
  step(tokens: Int32Array, state: State): { logits: Tensor; state: RnnState } {
    const B = tokens.length;
    return noGrad(() => {
      const { logits, state: next } = this.forward(tokens, B, 1, { state });
      return { logits: reshape(logits, [B, this.config.vocabSize]), state: next as RnnState };
    });
  }

  /**
   * T tokens per batch row (tokens (B, T)) in one pass: the recurrent layers' whole-sequence forward (in chunks of
   * PREFILL_CHUNK steps, so that a long prime's activations never all exist at once) instead of T calls of step().
   * -> the logits after the last token (B, V) and the state, as those calls give them up to float rounding.
   */
  prefill(tokens: Int32Array, B: number, T: number, state: State): { logits: Tensor; state: RnnState } {
    if (!(Number.isInteger(T) && T >= 1)) {
      throw new CharlmError(`model input: prefill takes at least 1 token per row, not ${T}; pass 1 or more`);
    }
    checkBatch(tokens, B, T);
    const V = this.config.vocabSize;
    let s = this.checkState(state, B);
    let logits: Tensor | null = null;
    for (let t0 = 0; t0 < T; t0 += PREFILL_CHUNK) {
      const n = Math.min(PREFILL_CHUNK, T - t0);
      const chunk = new Int32Array(B * n);
      for (let b = 0; b < B; b++) chunk.set(tokens.subarray(b * T + t0, b * T + t0 + n), b * n);
      const from = s;
      const out = scope(() =>
        noGrad(() => {
          // the output layer on the chunk's last step alone: (1, B, V)
          const r = this.stack(this.firstInput(chunk, B, n), from, false, this.ownRng, true);
          return { logits: reshape(r.logits, [B, V]), state: r.state };
        }),
      );
      if (from !== state) disposeReplaced(from, out.state); // a chunk's state before the last: ours to free
      logits?.dispose();
      [logits, s] = [out.logits, out.state];
    }
    return { logits: logits!, state: s };
  }

  /** step() with the B tokens read on the backend from ids[at .. at + B) (sampleTokens' output). */
  stepFrom(ids: Tensor, at: number, B: number, state: State): { logits: Tensor; state: RnnState } {
    const s = this.checkState(state, B);
    return noGrad(() => {
      const x = embeddingFrom(this.embedding.weight, ids, at, [1, B]); // (1, B, E)
      const { logits, state: next } = this.stack({ x }, s, false, this.ownRng);
      return { logits: reshape(logits, [B, this.config.vocabSize]), state: next };
    });
  }

  /** Its shape and tensors for Backend.rnnBurst: parameters() lists them in the packed order (kernels/generate.ts). */
  burstWeights(): { shape: BurstShape; tensors: Tensor[] } {
    const { cell, layers: L, embedding: E, units: H, vocabSize: V } = this.config;
    return { shape: { cell, L, E, H, V }, tensors: [...this.parameters().values()] };
  }

  /**
   * tokens (B, T) as the first layer's input, time-major: their embeddings (T, B, E), or their rows of the first
   * layer's projected table (T, B, G) where the embedding folds into it (`fold`, default: foldsEmbedding).
   */
  private firstInput(tokens: Int32Array, B: number, T: number, fold?: boolean): FirstInput {
    checkBatch(tokens, B, T);
    const V = this.config.vocabSize;
    const idsTB = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const id = tokens[b * T + t];
        if (!(id >= 0 && id < V)) {
          throw new CharlmError(`model input: token id ${id} at (${b}, ${t}) is outside the vocabulary [0, ${V})`);
        }
        idsTB[t * B + b] = id;
      }
    }
    return (fold ?? foldsEmbedding(V, B * T))
      ? { xw: embedding(this.recurrent[0].project(this.embedding.weight), idsTB, [T, B]) }
      : { x: this.embedding.forward(idsTB, [T, B]) };
  }

  /**
   * The stack above the embedding -> logits (B, T, V) and the state after the last step; with `lastOnly`, the
   * logits of the last step alone (B, 1, V), the output layer run on that step only.
   */
  private stack(
    first: FirstInput,
    state: RnnState,
    training: boolean,
    rng: Rng,
    lastOnly = false,
  ): { logits: Tensor; state: RnnState } {
    let x: Tensor | null = "x" in first ? first.x : null; // the layer's input, null: the first one's projections
    const next: RnnState = { h: [], c: [] };
    this.recurrent.forEach((layer, l) => {
      const st = { h: state.h[l], c: state.c[l] };
      const out = x ? layer.forward(x, st) : layer.forwardProjected((first as { xw: Tensor }).xw, st);
      x = this.dropout.forward(out.hs, rng, training); // (T, B, H)
      // The carried state leaves the graph: truncated BPTT stops at the batch boundary.
      next.h.push(out.state.h.detach());
      if (out.state.c) next.c.push(out.state.c.detach());
    });

    if (!x) throw new CharlmError("model: a recurrent model needs at least one recurrent layer");
    if (lastOnly) x = slice(x, 0, x.shape[0] - 1, x.shape[0]); // (1, B, H)
    return { logits: transpose(this.dense.forward(x), 0, 1), state: next }; // (T, B, V) -> (B, T, V)
  }

  private checkState(state: State, B: number): RnnState {
    const s = state as RnnState;
    const L = this.recurrent.length;
    const H = this.config.units;
    const wantC = this.config.cell === "lstm" ? L : 0;
    const ok =
      s !== null &&
      typeof s === "object" &&
      Array.isArray(s.h) &&
      Array.isArray(s.c) &&
      s.h.length === L &&
      s.c.length === wantC &&
      [...s.h, ...s.c].every((t) => t instanceof Tensor && t.size === B * H);
    if (!ok) {
      throw new CharlmError(
        `model state: expected ${L} layer state(s) of shape (${B}, ${H}) from initialState(${B}); pass that or none`,
      );
    }
    return s;
  }
}

/** tokens fill a (B, T) batch, else a one-line CharlmError. */
function checkBatch(tokens: Int32Array, B: number, T: number): void {
  if (tokens.length !== B * T) {
    throw new CharlmError(`model input: ${tokens.length} tokens do not fill a (${B}, ${T}) batch; pass B*T ids`);
  }
}
