// The one model contract. Every model (the Keras-style recurrent stack, later a transformer) answers forward with
// logits and, given targets, the mean cross-entropy; recurrent models also step one token at a time so that
// generating a character costs one step, not a rerun over the whole prefix. One training loop and one sampler
// serve every model.
//
// Legend: B batch, T time, V vocabulary.

import type { BurstShape } from "../engine/backend.js";
import type { Tensor } from "../engine/tensor.js";

/** Opaque per-model recurrent state (hidden and cell states per layer). */
export type State = unknown;

export interface ForwardResult {
  logits: Tensor; // (B, T, V)
  loss?: Tensor; // scalar: mean cross-entropy in nats over B*T positions
  state?: State; // the state after the last time step (for truncated BPTT across batches)
}

export interface LanguageModel {
  readonly config: Record<string, unknown>;
  /** Named parameters, in a fixed order (checkpoints and optimizers rely on it). */
  parameters(): Map<string, Tensor>;
  /** tokens: (B, T) int32, time-minor. targets the same shape. */
  forward(
    tokens: Int32Array,
    B: number,
    T: number,
    opts?: { targets?: Int32Array; state?: State; training?: boolean },
  ): ForwardResult;
  /**
   * The state before the first step. windowStride (models with a fixed window, the GPT): once the window is full,
   * how many of its oldest positions a step drops at once (1, the default: every step sees the whole window).
   */
  initialState?(B: number, opts?: { windowStride?: number }): State;
  /**
   * One token per batch row -> logits (B, V) and the next state; no gradients. The logits stay on the model's
   * backend (read them with `await logits.read()`); run it in a `scope` and dispose the state it replaces.
   */
  step?(tokens: Int32Array, state: State): { logits: Tensor; state: State };
  /**
   * step() over T tokens per batch row at once (tokens (B, T), time-minor, any T >= 1) -> the logits after the last
   * of them (B, V) and the state: what T calls of step() give, in one pass (a GPT's prime: the window those steps
   * would end with, in one forward pass through the cache). Optional; the sampler falls back to step().
   */
  prefill?(tokens: Int32Array, B: number, T: number, state: State): { logits: Tensor; state: State };
  /**
   * step() with the B tokens already on the model's backend, as float values ids[at .. at + B) (what sampleTokens
   * writes): a GPU generates without reading each token back. Optional; the sampler falls back to step().
   */
  stepFrom?(ids: Tensor, at: number, B: number, state: State): { logits: Tensor; state: State };
  /**
   * For Backend.rnnBurst (a backend that generates whole bursts of tokens in one kernel): the model's shape and its
   * tensors in the order the backend packs them. Optional; recurrent models have it.
   */
  burstWeights?(): { shape: BurstShape; tensors: Tensor[] };
}
