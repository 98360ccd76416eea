// Generation: feed a priming text, then draw one token at a time (a character for a char model) from the model's
// next-token distribution, shaped by temperature, top-k and top-p (nucleus) filtering, with a seeded Rng so the same seed
// gives the same text. Recurrent models advance with `step` (one step per token); a model without `step` is
// rerun over a sliding window of recent context. The tokenizer turns the prime into ids and the sampled ids back
// into text, streaming (a byte-level token may end inside a character: it is held back until the character is
// whole); stop strings are matched on that text.
//
//   p_i ∝ exp(z_i / temperature)                   (temperature < 1 sharpens, > 1 flattens)
//   top-k: keep the k largest p_i                  (0 = off)
//   top-p: keep the smallest set of largest p_i whose total reaches p   (1 = off)
//
// Legend: V vocabulary size.

import type { Tokenizer } from "../data/tokenizer.js";
import { describe } from "../data/vocab.js";
import { noGrad } from "../engine/autograd.js";
import { slice } from "../engine/ops.js";
import { disposeReplaced, scope } from "../engine/scope.js";
import type { Tensor } from "../engine/tensor.js";
import type { LanguageModel, State } from "../models/contract.js";
import { CharlmError } from "../util/errors.js";
import { Rng } from "../util/rng.js";

export interface GenerateOptions {
  prime: string; // text the model reads before generating ("" = start from a newline, or the first symbol)
  length: number; // tokens to generate, not counting the prime (characters for a char model)
  temperature?: number; // > 0, default 1
  topK?: number; // keep the k most likely characters (0 or undefined = all)
  topP?: number; // nucleus: keep the most likely characters up to this total probability, in (0, 1]; default 1
  seed?: number; // same seed, same text; default: a fresh random seed
  stop?: string[]; // end as soon as one of these appears in the generated text (it is not emitted)
  signal?: AbortSignal; // stop early when aborted
  onStop?: () => void; // called when a stop string ends the text (not when the length runs out or on abort)
  maxContext?: number; // models without step(): tokens of context rerun per token (default: the model's blockSize, else 256)
}

/** Check options the way every caller (CLI, server, library) needs; throws a one-line CharlmError. */
export function checkGenerateOptions(vocab: Tokenizer, opts: GenerateOptions): void {
  const { temperature = 1, topK = 0, topP = 1, length } = opts;
  if (!Number.isFinite(temperature) || temperature <= 0) {
    throw new CharlmError(
      `temperature must be above 0, got ${temperature}; use e.g. 0.8 (lower = safer, higher = wilder)`,
    );
  }
  if (!(topP > 0 && topP <= 1))
    throw new CharlmError(`top-p must be in (0, 1], got ${topP}; use e.g. 0.9, or 1 to turn it off`);
  if (!Number.isInteger(topK) || topK < 0)
    throw new CharlmError(`top-k must be a whole number >= 0, got ${topK}; 0 turns it off`);
  if (!Number.isInteger(length) || length < 0)
    throw new CharlmError(`length must be a whole number >= 0, got ${length}`);
  if (opts.stop?.some((s) => s === "")) throw new CharlmError("a stop string is empty; give at least one character");
  const unknown = vocab.unknownChars(opts.prime);
  if (unknown.length) {
    const shown =
      unknown.slice(0, 5).map(describe).join(", ") + (unknown.length > 5 ? ` and ${unknown.length - 5} more` : "");
    throw new CharlmError(
      `the prime text has characters the model does not know: ${shown}; remove them or pick another prime`,
    );
  }
}

/**
 * Turn logits into sampling weights in place (unnormalised probabilities; filtered entries set to 0).
 * Exported for tests and for callers that sample batches themselves.
 */
export function samplingWeights(
  logits: ArrayLike<number>,
  temperature: number,
  topK: number,
  topP: number,
  out = new Float64Array(logits.length),
): Float64Array {
  const V = logits.length;
  let max = -Infinity;
  for (let i = 0; i < V; i++) if (logits[i] > max) max = logits[i];
  let total = 0;
  for (let i = 0; i < V; i++) {
    out[i] = Math.exp((logits[i] - max) / temperature);
    total += out[i];
  }
  if ((topK > 0 && topK < V) || topP < 1) {
    // Rank once, largest first; ties broken by index so the result does not depend on the sort's stability.
    const order = Array.from({ length: V }, (_, i) => i).sort((a, b) => out[b] - out[a] || a - b);
    let keep = topK > 0 ? Math.min(topK, V) : V;
    if (topP < 1) {
      // The nucleus is measured on the whole (temperature-scaled) distribution; with top-k too, the smaller set wins.
      let kept = 0;
      let mass = 0;
      for (let rank = 0; rank < keep; rank++) {
        mass += out[order[rank]];
        kept++;
        if (mass >= topP * total) break;
      }
      keep = kept;
    }
    for (let rank = keep; rank < V; rank++) out[order[rank]] = 0;
  }
  return out;
}

/** A random 32-bit seed from the platform's cryptographic generator (used when no seed is given). */
export function freshSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}

/**
 * Generate `opts.length` characters after `opts.prime`, yielding one character at a time. Stops early at a stop
 * string (not yielded) or when `opts.signal` aborts. Characters that might begin a stop string are held back until
 * it is clear they do not, so the stop string itself never appears in the output.
 */
export async function* generate(model: LanguageModel, vocab: Tokenizer, opts: GenerateOptions): AsyncGenerator<string> {
  checkGenerateOptions(vocab, opts);
  const rng = new Rng(opts.seed ?? freshSeed());
  const { next, close, prime } = nextLogits(model, vocab, opts);
  try {
    yield* sampleLoop(next, vocab, prime, opts, rng);
  } finally {
    close();
  }
}

async function* sampleLoop(
  next: (id: number | null) => Promise<ArrayLike<number>>,
  vocab: Tokenizer,
  prime: number[],
  opts: GenerateOptions,
  rng: Rng,
): AsyncGenerator<string> {
  const { temperature = 1, topK = 0, topP = 1, stop = [], signal } = opts;
  const weights = new Float64Array(vocab.size);
  const maxStop = Math.max(0, ...stop.map((s) => s.length));
  let pending = ""; // generated but not yet yielded (could be the start of a stop string)
  // The decoder reads the prime first (its text is not yielded) so that spacing and partial characters continue it.
  const decoder = vocab.decoder();
  for (const id of prime) decoder.push(id);
  // The word tokenizer restores spacing itself: after a prime that ends in a space, its first space is one too many.
  let trimSpace = vocab.kind === "word" && /\s$/u.test(opts.prime);
  let logits = await next(null);
  let lastYield = performance.now();
  for (let i = 0; i < opts.length; i++) {
    if (signal?.aborted) return;
    samplingWeights(logits, temperature, topK, topP, weights);
    const id = rng.categorical(weights);
    let piece = decoder.push(id);
    if (trimSpace && piece) {
      piece = piece.replace(/^ /, "");
      trimSpace = false;
    }
    pending += piece;
    if (maxStop > 0) {
      const hit = firstStop(pending, stop);
      if (hit >= 0) {
        opts.onStop?.();
        if (hit > 0) yield* pending.slice(0, hit);
        return;
      }
      const hold = heldSuffix(pending, stop);
      const ready = pending.slice(0, pending.length - hold);
      pending = pending.slice(pending.length - hold);
      if (ready) yield* ready;
    } else {
      if (pending) yield pending;
      pending = "";
    }
    if (i + 1 < opts.length) logits = await next(id);
    // Let timers and sockets run (an abort from a client hanging up, a redraw) during long generations: give the
    // event loop a turn whenever ~15 ms have passed since the last one.
    if (i % 16 === 15 && performance.now() - lastYield > 15) {
      await new Promise((resolve) => setTimeout(resolve, 0));
      lastYield = performance.now();
    }
  }
  pending += decoder.flush();
  const hit = maxStop > 0 ? firstStop(pending, stop) : -1;
  if (hit >= 0) {
    opts.onStop?.();
    pending = pending.slice(0, hit);
  }
  if (pending) yield* pending;
}

/** Index in `text` where the first stop string occurs, or -1. */
function firstStop(text: string, stop: string[]): number {
  let best = -1;
  for (const s of stop) {
    const at = text.indexOf(s);
    if (at >= 0 && (best < 0 || at < best)) best = at;
  }
  return best;
}

/** Length of the longest suffix of `text` that is a proper prefix of some stop string. */
function heldSuffix(text: string, stop: string[]): number {
  let hold = 0;
  for (const s of stop) {
    for (let n = Math.min(s.length - 1, text.length); n > hold; n--) {
      if (text.endsWith(s.slice(0, n))) {
        hold = n;
        break;
      }
    }
  }
  return hold;
}

/**
 * The next-character logits after feeding the prime, then after each sampled id: a closure over the model's
 * recurrent state (or the context window for models without step()). Each step runs in a scope; the logits are read
 * back (asynchronously, so a GPU backend works the same way) and the step's storage is freed. `close` frees the state.
 */
function nextLogits(
  model: LanguageModel,
  vocab: Tokenizer,
  opts: GenerateOptions,
): { next: (id: number | null) => Promise<ArrayLike<number>>; close: () => void; prime: number[] } {
  let prime = Array.from(vocab.encode(opts.prime, "unk"));
  if (prime.length === 0) {
    // Nothing to condition on: start as if after a line break, the most neutral place in most texts.
    prime = vocab.startIds();
  }
  const V = vocab.size;
  if (model.step && model.initialState) {
    const step = model.step.bind(model);
    let state: State = model.initialState(1);
    let logits: Tensor | null = null;
    const advance = (id: number): void => {
      const out = scope(() => step(Int32Array.of(id), state));
      disposeReplaced(state, out.state);
      logits?.dispose();
      state = out.state;
      logits = out.logits;
    };
    for (const id of prime) advance(id);
    return {
      next: (id) => {
        if (id !== null) advance(id);
        return logits!.read();
      },
      close: () => {
        logits?.dispose();
        disposeReplaced(state, null);
      },
      prime,
    };
  }
  // A model with a fixed context (a transformer's blockSize) sees at most that many positions.
  const blockSize = (model.config as { blockSize?: unknown }).blockSize;
  const maxContext = opts.maxContext ?? (typeof blockSize === "number" ? blockSize : 256);
  const context = prime.slice(-maxContext);
  return {
    next: async (id) => {
      if (id !== null) {
        context.push(id);
        if (context.length > maxContext) context.shift();
      }
      const T = context.length;
      const last = scope(() => noGrad(() => slice(model.forward(Int32Array.from(context), 1, T).logits, 1, T - 1, T))); // (1, 1, V) at the last position
      const values = await last.read();
      last.dispose();
      return values.subarray(0, V);
    },
    close: () => {},
    prime,
  };
}

/** Collect a whole generation into a string (convenience for callers that do not stream). */
export async function generateText(model: LanguageModel, vocab: Tokenizer, opts: GenerateOptions): Promise<string> {
  let s = "";
  for await (const ch of generate(model, vocab, opts)) s += ch;
  return s;
}
