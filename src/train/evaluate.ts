// Loss on held-out text, without gradients: mean cross-entropy in nats per token, and the same in bits
// (nats / ln 2) and as perplexity (e^nats). Given where each token ends in the text (Tokenizer.measure), also the
// loss per character of the original text, which compares across tokenizers:
//
//   nats/char = (Σ nats over predicted tokens + Σ charges for "<unk>" targets) / characters those tokens cover
//
// (for a char model, nats/char = nats/token).
//
// Two ways to cut the text, matching the two ways of training:
//   windows  independent sequences of T characters, each from a zero state (what a Keras-style model was trained on)
//   carry    B contiguous streams read T characters at a time, the hidden state carried along (long context)
// Every token after the first is predicted once (carry drops the < B characters that do not fill a stream).
//
// Legend: B batch, T time.

import { noGrad } from "../engine/autograd.js";
import { disposeReplaced, scope } from "../engine/scope.js";
import type { Tensor } from "../engine/tensor.js";
import type { LanguageModel, State } from "../models/contract.js";

export interface EvalResult {
  nats: number; // mean nats per predicted token
  bits: number; // nats / ln 2
  perplexity: number; // e^nats
  chars: number; // tokens predicted (characters for a char model)
  natsPerChar: number; // per character of the original text covered, "<unk>" charges included (= nats without `text`)
  bitsPerChar: number; // natsPerChar / ln 2
  textChars: number; // characters of the original text the predicted tokens cover
  unknownShare: number; // fraction of the predicted tokens that are "<unk>"
}

export interface EvalOptions {
  B: number;
  T: number;
  carry?: boolean; // carry state across windows (needs initialState); default false
  maxChars?: number; // evaluate only the first maxChars + 1 ids (0 or undefined = all)
  text?: { ends: Float64Array; extra: Float64Array | null; unk: number }; // Tokenizer.measure of the ids, and "<unk>"
}

export async function evaluate(model: LanguageModel, ids: Int32Array, opts: EvalOptions): Promise<EvalResult> {
  const { T } = opts;
  const use = opts.maxChars ? ids.subarray(0, Math.min(ids.length, opts.maxChars + 1)) : ids;
  let count = 0;
  let covered = 0; // characters of the text the targets cover
  let charged = 0; // Σ extra nats for "<unk>" targets
  let unknown = 0;
  // Targets use[s + 1 .. s + len]: what they cover in the text and what their "<unk>"s cost.
  const cover = (s: number, len: number): void => {
    const t = opts.text;
    if (!t) return;
    covered += t.ends[s + len] - t.ends[s];
    for (let i = s + 1; i <= s + len; i++) {
      if (use[i] === t.unk) unknown++;
      if (t.extra) charged += t.extra[i];
    }
  };
  // Each batch runs in a scope that keeps only its loss (and the carried state); the losses are read back at the
  // end, in order, so a GPU backend is not waited on per batch.
  const losses: { loss: Tensor; n: number }[] = [];
  const run = (inputs: Int32Array, targets: Int32Array, B: number, len: number, state?: State): State | undefined => {
    const r = scope(() => {
      const f = model.forward(inputs, B, len, { targets, training: false, state });
      return { loss: f.loss!, state: f.state };
    });
    if (state !== undefined) disposeReplaced(state, r.state);
    losses.push({ loss: r.loss, n: B * len });
    count += B * len;
    return r.state;
  };
  let last: State | undefined;
  noGrad(() => {
    if (opts.carry && model.initialState) {
      const B = Math.max(1, Math.min(opts.B, Math.floor((use.length - 1) / T)));
      const span = Math.floor((use.length - 1) / B);
      let state: State | undefined = model.initialState(B);
      for (let pos = 0; pos < span; pos += T) {
        const len = Math.min(T, span - pos);
        const inputs = new Int32Array(B * len);
        const targets = new Int32Array(B * len);
        for (let b = 0; b < B; b++) {
          const s = b * span + pos;
          inputs.set(use.subarray(s, s + len), b * len);
          targets.set(use.subarray(s + 1, s + len + 1), b * len);
          cover(s, len);
        }
        state = run(inputs, targets, B, len, state);
      }
      last = state;
      return;
    }
    const windows = Math.floor((use.length - 1) / T);
    for (let w0 = 0; w0 < windows; w0 += opts.B) {
      const B = Math.min(opts.B, windows - w0);
      const inputs = new Int32Array(B * T);
      const targets = new Int32Array(B * T);
      for (let b = 0; b < B; b++) {
        const s = (w0 + b) * T;
        inputs.set(use.subarray(s, s + T), b * T);
        targets.set(use.subarray(s + 1, s + T + 1), b * T);
        cover(s, T);
      }
      run(inputs, targets, B, T);
    }
    const rest = use.length - 1 - windows * T; // the tail shorter than T
    if (rest > 0) {
      const s = windows * T;
      run(use.slice(s, s + rest), use.slice(s + 1, s + rest + 1), 1, rest);
      cover(s, rest);
    }
  });
  disposeReplaced(last, null);
  let total = 0; // Σ nats over predicted characters (float64)
  for (const { loss, n } of losses) {
    total += (await loss.value()) * n;
    loss.dispose();
  }
  const nats = count ? total / count : NaN;
  const natsPerChar = opts.text ? (covered ? (total + charged) / covered : NaN) : nats;
  return {
    nats,
    bits: nats / Math.LN2,
    perplexity: Math.exp(nats),
    chars: count,
    natsPerChar,
    bitsPerChar: natsPerChar / Math.LN2,
    textChars: opts.text ? covered : count,
    unknownShare: count ? unknown / count : 0,
  };
}
