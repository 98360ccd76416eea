// Batches of (input, target) token id sequences, target = input shifted by one token. Two styles, both seeded:
//   - random windows / WindowEpoch: independent fixed-length sequences (the Keras tutorial's recipe); the model
//     starts every sequence from a zero state.
//   - StreamBatcher: B contiguous streams through the text, each batch continuing where the last one stopped, so
//     the hidden state can be carried between batches (truncated backpropagation through time).
//
// Legend: B batch (sequences per batch), T time (tokens per sequence). Batches are batch-major:
// element (b, t) is at b*T + t.

import { CharlmError } from "../util/errors.js";
import type { Rng } from "../util/rng.js";

export interface Batch {
  inputs: Int32Array; // (B, T)
  targets: Int32Array; // (B, T), targets[b, t] = the token after inputs[b, t]
  B: number;
  T: number;
}

function checkSizes(B: number, T: number): void {
  if (!Number.isInteger(B) || B < 1) throw new CharlmError(`batch size must be a whole number of at least 1, got ${B}`);
  if (!Number.isInteger(T) || T < 1) {
    throw new CharlmError(`sequence length must be a whole number of at least 1, got ${T}`);
  }
}

function tooShort(n: number, need: number, what: string): CharlmError {
  return new CharlmError(
    `the corpus has ${n} tokens (characters, for a char model), fewer than the ${need} needed for ${what}; use a shorter sequence length, a smaller batch or a longer corpus`,
  );
}

/** B windows of T+1 characters at uniformly random starts (they may overlap). */
export function randomWindows(ids: Int32Array, B: number, T: number, rng: Rng): Batch {
  checkSizes(B, T);
  if (ids.length < T + 1) throw tooShort(ids.length, T + 1, "one sequence");
  const inputs = new Int32Array(B * T);
  const targets = new Int32Array(B * T);
  const starts = ids.length - T; // start in [0, n - T - 1]
  for (let b = 0; b < B; b++) {
    const s = rng.int(starts);
    inputs.set(ids.subarray(s, s + T), b * T);
    targets.set(ids.subarray(s + 1, s + T + 1), b * T);
  }
  return { inputs, targets, B, T };
}

/**
 * Keras style: cut the ids into non-overlapping chunks of T+1, shuffle the chunks each epoch, and yield full
 * batches of B chunks (the remainder that does not fill a batch is dropped, as `drop_remainder=True` does).
 */
export class WindowEpoch {
  readonly chunks: number;
  readonly batchesPerEpoch: number;
  private readonly order: Int32Array;

  constructor(
    private readonly ids: Int32Array,
    readonly B: number,
    readonly T: number,
    private readonly rng: Rng,
  ) {
    checkSizes(B, T);
    this.chunks = Math.floor(ids.length / (T + 1));
    this.batchesPerEpoch = Math.floor(this.chunks / B);
    if (this.batchesPerEpoch === 0) throw tooShort(ids.length, B * (T + 1), `one batch of ${B}x${T + 1}`);
    this.order = Int32Array.from({ length: this.chunks }, (_, i) => i);
  }

  /** One epoch: a fresh shuffle, then batchesPerEpoch batches. */
  *batches(): Generator<Batch> {
    const { B, T, ids, order } = this;
    this.rng.shuffle(order);
    for (let k = 0; k < this.batchesPerEpoch; k++) {
      const inputs = new Int32Array(B * T);
      const targets = new Int32Array(B * T);
      for (let b = 0; b < B; b++) {
        const s = order[k * B + b] * (T + 1);
        inputs.set(ids.subarray(s, s + T), b * T);
        targets.set(ids.subarray(s + 1, s + T + 1), b * T);
      }
      yield { inputs, targets, B, T };
    }
  }

  [Symbol.iterator](): Generator<Batch> {
    return this.batches();
  }
}

export interface StreamState {
  B: number;
  T: number;
  length: number;
  /** Offset within each stream of the next batch. */
  pos: number;
  /** Completed passes over the data. */
  epoch: number;
}

/**
 * B contiguous streams for truncated BPTT. The ids are divided into B equal spans of L = floor((n-1)/B)
 * characters; stream b reads span b from left to right, T characters per batch. When the spans are used up the
 * streams start again from their beginnings and the batch says `reset: true` (zero the carried hidden state).
 * The first batch is a reset too.
 */
export class StreamBatcher {
  readonly span: number;
  readonly batchesPerEpoch: number;
  private pos = 0;
  private epoch = 0;

  constructor(
    private readonly ids: Int32Array,
    readonly B: number,
    readonly T: number,
  ) {
    checkSizes(B, T);
    this.span = Math.floor((ids.length - 1) / B);
    this.batchesPerEpoch = Math.floor(this.span / T);
    if (this.batchesPerEpoch === 0) throw tooShort(ids.length, B * T + 1, `${B} streams of ${T}`);
  }

  next(): Batch & { reset: boolean } {
    const { B, T, ids, span } = this;
    let reset = this.pos === 0;
    if (this.pos + T > span) {
      this.pos = 0;
      this.epoch++;
      reset = true;
    }
    const inputs = new Int32Array(B * T);
    const targets = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      const s = b * span + this.pos;
      inputs.set(ids.subarray(s, s + T), b * T);
      targets.set(ids.subarray(s + 1, s + T + 1), b * T);
    }
    this.pos += T;
    return { inputs, targets, B, T, reset };
  }

  /** Completed passes over the data so far. */
  get epochs(): number {
    return this.epoch;
  }

  getState(): StreamState {
    return { B: this.B, T: this.T, length: this.ids.length, pos: this.pos, epoch: this.epoch };
  }

  /** Resume from getState(); the state must come from a batcher over the same data and sizes. */
  setState(s: StreamState): void {
    if (s.B !== this.B || s.T !== this.T || s.length !== this.ids.length) {
      throw new CharlmError(
        `cannot resume batching: saved for B=${s.B}, T=${s.T}, ${s.length} chars but now B=${this.B}, T=${this.T}, ${this.ids.length} chars; resume with the same data and sizes`,
      );
    }
    if (!Number.isInteger(s.pos) || s.pos < 0 || s.pos > this.span || !Number.isInteger(s.epoch) || s.epoch < 0) {
      throw new CharlmError(`cannot resume batching: saved position ${s.pos} / epoch ${s.epoch} is out of range`);
    }
    this.pos = s.pos;
    this.epoch = s.epoch;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// One interface for the training loop

/** How the training loop draws batches, whichever the style; a checkpoint records where it stands. */
export interface Batcher {
  readonly batchesPerEpoch: number;
  /** Continue a run that had completed `epochs` epochs and saved `state` (getState's value, or null). */
  restore(epochs: number, state: StreamState | null): void;
  /** Begin an epoch, skipping its first `skip` batches (those a resumed run had already taken). */
  startEpoch(skip: number): void;
  /** The next batch; `reset` says the carried hidden state no longer applies (streams starting over). */
  next(): Batch & { reset: boolean };
  /** What a checkpoint needs to continue: the streams' position; windows need nothing (the rng replays them). */
  getState(): StreamState | null;
}

/**
 * Windows behind the Batcher interface. Every epoch draws one shuffle from `rng`, which serves nothing else, so a
 * resumed run gets back to the same order by replaying the shuffles of the epochs before it.
 */
class WindowBatcher implements Batcher {
  private readonly windows: WindowEpoch;
  private epoch: Generator<Batch> | null = null;
  readonly batchesPerEpoch: number;

  constructor(ids: Int32Array, B: number, T: number, rng: Rng) {
    this.windows = new WindowEpoch(ids, B, T, rng);
    this.batchesPerEpoch = this.windows.batchesPerEpoch;
  }

  restore(epochs: number): void {
    for (let e = 0; e < epochs; e++) this.windows.batches().next(); // each epoch shuffles on its first batch
  }

  startEpoch(skip: number): void {
    this.epoch = this.windows.batches();
    for (let k = 0; k < skip; k++) this.epoch.next();
  }

  next(): Batch & { reset: boolean } {
    const b = this.epoch?.next();
    if (!b || b.done) throw new Error("WindowBatcher.next: no batches left in this epoch; call startEpoch first");
    return { ...b.value, reset: false };
  }

  getState(): null {
    return null;
  }
}

/** Streams behind the Batcher interface: the position carries over epochs and is saved in the checkpoint. */
class StreamBatcherAdapter implements Batcher {
  readonly batchesPerEpoch: number;
  constructor(private readonly streams: StreamBatcher) {
    this.batchesPerEpoch = streams.batchesPerEpoch;
  }
  restore(_epochs: number, state: StreamState | null): void {
    if (state) this.streams.setState(state);
  }
  startEpoch(): void {}
  next(): Batch & { reset: boolean } {
    return this.streams.next();
  }
  getState(): StreamState {
    return this.streams.getState();
  }
}

/** The batcher for a training config's `batching`: shuffled windows (drawing from `rng`) or contiguous streams. */
export function createBatcher(kind: "windows" | "stream", ids: Int32Array, B: number, T: number, rng: Rng): Batcher {
  return kind === "stream" ? new StreamBatcherAdapter(new StreamBatcher(ids, B, T)) : new WindowBatcher(ids, B, T, rng);
}
