// Generation: feed a priming text, then draw one token at a time (a character for a char model) from the model's
// next-token distribution, shaped by temperature, top-k and top-p (nucleus) filtering (../engine/sampling.ts), with
// a seeded Rng so the same seed gives the same text. Recurrent models advance with `step` (one step per token); a
// model without `step` is rerun over a sliding window of recent context. On a GPU backend a model with `stepFrom`
// (the recurrent ones, and the GPT with its key/value cache) draws its tokens on the device, a burst at a time, so
// that only the ids come back (GenerateOptions.onDevice). The
// tokenizer turns the prime into ids and the sampled ids back into text, streaming (a byte-level token may end
// inside a character: it is held back until the character is whole); stop strings are matched on that text.
//
// Legend: V vocabulary size.

import type { Tokenizer } from "../data/tokenizer.js";
import { describe } from "../data/vocab.js";
import { noGrad } from "../engine/autograd.js";
import type { Backend, Sampling } from "../engine/backend.js";
import { getBackend } from "../engine/backends/index.js";
import { concat, reshape, sampleTokens, slice } from "../engine/ops.js";
import { samplingWeights } from "../engine/sampling.js";
import { disposeReplaced, scope } from "../engine/scope.js";
import { Tensor, uninit } from "../engine/tensor.js";
import type { LanguageModel, State } from "../models/contract.js";
import { checkStrideFits } from "../models/gpt.js";
import { CharlmError } from "../util/errors.js";
import { Rng } from "../util/rng.js";

export { samplingWeights } from "../engine/sampling.js";

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
  // A GPT's window, once full: how many of its oldest tokens a step drops at once (1 .. blockSize). 1 (the default)
  // keeps every character's context the whole window and reruns it for every character; S reruns it once every S
  // characters (about S times as fast past the window), each seeing between blockSize - S + 1 and blockSize tokens.
  windowStride?: number;
  // Draw the tokens on the model's backend, in bursts, reading back only the ids (models with stepFrom: recurrent
  // ones and the GPT; vocabularies up to DEVICE_SAMPLING_MAX_V). Default: on a backend that keeps values on a device (webgpu), where reading the
  // logits back after every token would cost a round trip each; off on js and wasm, where the host draws directly.
  onDevice?: boolean;
  // On the device, a recurrent model on a backend with rnnBurst (webgpu): each burst in one call (a dispatch per
  // layer a token, or one kernel) instead of a sampling kernel and a step's kernels per token. Default: where the
  // backend takes the model's shape, unless CHARLM_WEBGPU_BURST=0.
  fused?: boolean;
  // With fused: true (or by default), webgpu's wide route (a dispatch per layer a token, spread over the GPU: true)
  // or one workgroup for the whole burst (false); unset: CHARLM_WEBGPU_BURST=wide or fused, else what `charlm
  // tune-gpu` measured, else the wide route.
  wide?: boolean;
}

/** Largest vocabulary sampled on the device (its top-k/top-p ranking is quadratic in V); larger ones draw on the host. */
export const DEVICE_SAMPLING_MAX_V = 4096;

// Tokens per burst on the device: small at first so that the first characters stream at once, then larger.
const FIRST_BURST = 8;
const MAX_BURST = 64;

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
  const stride = opts.windowStride;
  if (stride !== undefined && !(Number.isInteger(stride) && stride >= 1)) {
    throw new CharlmError(`window stride must be a whole number >= 1, got ${stride}; 1 keeps the whole window`);
  }
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
 * GenerateOptions.windowStride against the model (checkGenerateOptions checks it alone): only a GPT (a model that
 * steps over a fixed window) takes one, of at most its blockSize. Throws a one-line CharlmError.
 */
export function checkWindowStride(model: LanguageModel, opts: Pick<GenerateOptions, "windowStride">): void {
  const stride = opts.windowStride;
  if (stride === undefined) return;
  const blockSize = (model.config as { blockSize?: unknown }).blockSize;
  if (!model.step || typeof blockSize !== "number") {
    throw new CharlmError(
      `a window stride applies to a GPT (a model with a fixed window); this model is ${String(model.config.type)}: leave it unset`,
    );
  }
  checkStrideFits(stride, blockSize);
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
  const { draw, close, prime } = tokenSource(model, vocab, opts, rng);
  try {
    yield* sampleLoop(draw, vocab, prime, opts);
  } finally {
    close();
  }
}

async function* sampleLoop(
  draw: () => Promise<number>,
  vocab: Tokenizer,
  prime: number[],
  opts: GenerateOptions,
): AsyncGenerator<string> {
  const { stop = [], signal } = opts;
  const maxStop = Math.max(0, ...stop.map((s) => s.length));
  let pending = ""; // generated but not yet yielded (could be the start of a stop string)
  // The decoder reads the prime first (its text is not yielded) so that spacing and partial characters continue it.
  const decoder = vocab.decoder();
  for (const id of prime) decoder.push(id);
  // The word tokenizer restores spacing itself: after a prime that ends in a space, its first space is one too many.
  let trimSpace = vocab.kind === "word" && /\s$/u.test(opts.prime);
  let lastYield = performance.now();
  for (let i = 0; i < opts.length; i++) {
    if (signal?.aborted) return;
    const id = await draw();
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
 * The sampled ids, one per call of `draw`, after feeding the prime; `close` frees what the model holds. Three ways:
 *
 * - a model with step (recurrent, or a GPT's cached step) on the host: after each token, one step; its logits are read back (asynchronously, so
 *   any backend works) and the token drawn from them with one uniform draw of rng;
 * - the same model on the device (stepFrom, see GenerateOptions.onDevice): a burst of n tokens is encoded at once,
 *   each drawn on the backend from the last logits with the next of n uniform draws of rng (the same draws, in the
 *   same order, as on the host) and fed to the next step there; only the n ids are read back. A recurrent model on
 *   a backend with rnnBurst runs the whole burst in one call (one kernel on webgpu), from its weights and state
 *   packed once after the prime (fusedBursts);
 * - a model without step(): its forward pass rerun over a sliding window of context for each token.
 */
function tokenSource(
  model: LanguageModel,
  vocab: Tokenizer,
  opts: GenerateOptions,
  rng: Rng,
): { draw: () => Promise<number>; close: () => void; prime: number[] } {
  let prime = Array.from(vocab.encode(opts.prime, "unk"));
  if (prime.length === 0) {
    // Nothing to condition on: start as if after a line break, the most neutral place in most texts.
    prime = vocab.startIds();
  }
  const V = vocab.size;
  const { temperature = 1, topK = 0, topP = 1 } = opts;
  const weights = new Float64Array(V);
  const fromLogits = (logits: ArrayLike<number>): number =>
    rng.categorical(samplingWeights(logits, temperature, topK, topP, weights));

  checkWindowStride(model, opts);
  if (model.step && model.initialState) {
    const step = model.step.bind(model);
    let state: State = model.initialState(1, { windowStride: opts.windowStride });
    let logits: Tensor | null = null;
    const took = (out: { logits: Tensor; state: State }): void => {
      disposeReplaced(state, out.state);
      logits?.dispose();
      state = out.state;
      logits = out.logits;
    };
    if (model.prefill && prime.length > 1) {
      // in one pass (a GPT: the window its steps would end with, through the cache at once)
      const prefill = model.prefill.bind(model);
      took(scope(() => prefill(Int32Array.from(prime), 1, prime.length, state)));
    } else for (const id of prime) took(scope(() => step(Int32Array.of(id), state)));
    const close = (): void => {
      logits?.dispose();
      disposeReplaced(state, null);
    };
    // The backend the model runs on: its logits' (generation continues after awaits, outside any withBackend).
    const be = (logits as Tensor | null)?.backend ?? getBackend();
    const onDevice = (opts.onDevice ?? !be.sync) && model.stepFrom !== undefined && V <= DEVICE_SAMPLING_MAX_V;
    if (!onDevice) {
      let last: number | null = null;
      const draw = async (): Promise<number> => {
        if (last !== null) took(scope(() => step(Int32Array.of(last!), state)));
        last = fromLogits(await logits!.read());
        return last;
      };
      return { draw, close, prime };
    }
    const sampling = { temperature, topK, topP };
    const fused = fusedBursts(model, be, opts, state, logits!);
    const stepFrom = model.stepFrom!.bind(model);
    /** The ids of a burst drawn with the uniform draws u: in one kernel, or a draw and a step per token. */
    const burstOf = async (u: Float32Array): Promise<Float32Array> => {
      if (fused) return fused.run(u, sampling);
      const n = u.length;
      const draws = new Tensor(u, [n], false, be);
      const ids = new Tensor(new Float32Array(n), [n], false, be);
      try {
        for (let k = 0; k < n; k++) {
          sampleTokens(logits!, draws, k, ids, k, sampling);
          took(scope(() => stepFrom(ids, k, 1, state)));
        }
        return await ids.read();
      } finally {
        draws.dispose();
        ids.dispose();
      }
    };
    const queue: number[] = [];
    let drawn = 0;
    let burst = FIRST_BURST;
    const draw = async (): Promise<number> => {
      if (queue.length === 0) {
        const n = Math.max(1, Math.min(burst, opts.length - drawn));
        burst = Math.min(2 * burst, MAX_BURST);
        const u = new Float32Array(n);
        for (let k = 0; k < n; k++) u[k] = rng.random();
        for (const id of await burstOf(u)) queue.push(id);
      }
      drawn++;
      return queue.shift()!;
    };
    return {
      draw,
      close: () => {
        fused?.close();
        close();
      },
      prime,
    };
  }
  // A model with a fixed context (a transformer's blockSize) sees at most that many positions.
  const blockSize = (model.config as { blockSize?: unknown }).blockSize;
  const maxContext = opts.maxContext ?? (typeof blockSize === "number" ? blockSize : 256);
  const context = prime.slice(-maxContext);
  let last: number | null = null;
  const draw = async (): Promise<number> => {
    if (last !== null) {
      context.push(last);
      if (context.length > maxContext) context.shift();
    }
    const T = context.length;
    const out = scope(() => noGrad(() => slice(model.forward(Int32Array.from(context), 1, T).logits, 1, T - 1, T))); // (1, 1, V) at the last position
    const values = await out.read();
    out.dispose();
    last = fromLogits(values.subarray(0, V));
    return last;
  };
  return { draw, close: () => {}, prime };
}

/**
 * Whether generation on `be` takes Backend.rnnBurst (a burst of tokens in one kernel): where the backend has it and
 * takes the model's shape, unless `opts.fused` or CHARLM_WEBGPU_BURST=0 says no.
 */
export function takesFusedBursts(
  model: LanguageModel,
  be: Backend,
  opts: Pick<GenerateOptions, "fused"> = {},
): boolean {
  return burstWeightsFor(model, be, opts) !== null;
}

/** The model's shape and tensors for Backend.rnnBurst where generation on `be` takes it (takesFusedBursts), else null. */
function burstWeightsFor(
  model: LanguageModel,
  be: Backend,
  opts: Pick<GenerateOptions, "fused">,
): ReturnType<NonNullable<LanguageModel["burstWeights"]>> | null {
  const env = typeof process !== "undefined" ? process.env?.CHARLM_WEBGPU_BURST : undefined;
  const wanted = opts.fused ?? env !== "0";
  if (!wanted || !be.rnnBurst || !model.burstWeights) return null;
  const weights = model.burstWeights();
  return (be.takesBurst?.(weights.shape) ?? true) ? weights : null;
}

/**
 * The fused route after the prime: the model's tensors packed once, its state and last logits copied beside each
 * other, then each burst one Backend.rnnBurst call and one read of its ids.
 */
function fusedBursts(
  model: LanguageModel,
  be: Backend,
  opts: GenerateOptions,
  state: State,
  logits: Tensor,
): { run(u: Float32Array, how: Sampling): Promise<Float32Array>; close(): void } | null {
  const taken = burstWeightsFor(model, be, opts);
  if (!taken) return null;
  const { shape, tensors } = taken;
  const pack = (parts: Tensor[]): Tensor =>
    noGrad(() =>
      concat(
        parts.map((t) => reshape(t, [t.size])),
        0,
      ),
    );
  const s = state as { h: Tensor[]; c: Tensor[] };
  const weights = pack(tensors);
  const packed = pack([...s.h, ...s.c, logits]);
  return {
    async run(u, how) {
      const n = u.length;
      const draws = new Tensor(u, [n], false, be);
      const ids = uninit(be, [n]);
      try {
        be.rnnBurst!({
          shape,
          weights: weights.storage,
          state: packed.storage,
          u: draws.storage,
          uOff: 0,
          ids: ids.storage,
          idsOff: 0,
          n,
          how,
          ...(opts.wide === undefined ? {} : { wide: opts.wide }),
        });
        return await ids.read();
      } finally {
        draws.dispose();
        ids.dispose();
      }
    },
    close() {
      weights.dispose();
      packed.dispose();
    },
  };
}

/**
 * Characters a second of the generation `run(length)` makes: `warm` characters first (kernels compiled, bursts
 * sized), then `chars` timed; and the timed text. The page's auto mode, `charlm tune-gpu` and the GPU bench time
 * generation with it.
 */
export async function generationRate(
  run: (length: number) => AsyncIterable<string>,
  chars: number,
  warm = 24,
): Promise<{ perSecond: number; text: string }> {
  for await (const _ of run(warm));
  const t0 = performance.now();
  let text = "";
  for await (const piece of run(chars)) text += piece;
  return { perSecond: Array.from(text).length / Math.max((performance.now() - t0) / 1000, 1e-6), text };
}

/** Collect a whole generation into a string (convenience for callers that do not stream). */
export async function generateText(model: LanguageModel, vocab: Tokenizer, opts: GenerateOptions): Promise<string> {
  let s = "";
  for await (const ch of generate(model, vocab, opts)) s += ch;
  return s;
}
