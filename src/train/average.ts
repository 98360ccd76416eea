// An exponential moving average of the weights (Polyak averaging), kept beside the training weights on their
// backend. After each optimizer step t (from 1):
//
//   d = min(decay, (1 + t) / (10 + t))          the average follows the weights closely at first
//   avg = d · avg + (1 - d) · w                  (at t = 1, d = 2/11: mostly the weights themselves)
//
// Evaluation, early stopping, sampling and the checkpoint's model then use the average, which on a small corpus
// sits lower on the validation loss than the noisy last step of a high learning rate. One kernel pair per
// parameter and step, nothing read back: two buffers per parameter take turns as the old and new average (a kernel's
// output never aliases its input on a GPU backend); while the average is swapped in, the spare one keeps the
// training weights.

import type { Backend, Storage } from "../engine/backend.js";
import { CharlmError } from "../util/errors.js";
import type { Param } from "./optimizers.js";

/** A saved average: the updates counted so far and the average of each parameter. */
export interface AverageState {
  t: number;
  weights: Map<string, Float32Array>;
}

interface Slot {
  be: Backend;
  p: Param;
  avg: Storage; // the current average
  spare: Storage; // the next one is written here, then the two swap; the training weights while swapped in
}

export class WeightAverage {
  /** Updates taken so far. */
  t = 0;
  private readonly slots = new Map<string, Slot>();
  private swapped = false; // the average is in the parameters, the training weights in the spare buffers

  constructor(
    private readonly params: Map<string, Param>,
    readonly decay: number,
  ) {
    if (!(decay > 0 && decay < 1)) {
      throw new CharlmError(`weight average: decay ${decay} is not between 0 and 1; use e.g. 0.998 (0 = off)`);
    }
    for (const [name, p] of params) {
      const be = p.backend;
      this.slots.set(name, { be, p, avg: be.alloc(p.size), spare: be.alloc(p.size) });
    }
  }

  /** The decay of update t (from 1). */
  decayAt(t: number): number {
    return Math.min(this.decay, (1 + t) / (10 + t));
  }

  /** Fold the current weights into the average (after an optimizer step). */
  update(): void {
    if (this.swapped) throw new Error("WeightAverage.update while the average is swapped in");
    this.t++;
    const d = this.decayAt(this.t);
    for (const s of this.slots.values()) {
      const n = s.p.size;
      if (this.t === 1) s.be.copy(s.p.storage, 0, s.avg, 0, n);
      else {
        s.be.scale(s.avg, s.spare, n, d, false);
        s.be.scale(s.p.storage, s.spare, n, 1 - d, true);
        [s.avg, s.spare] = [s.spare, s.avg];
      }
    }
  }

  /**
   * Run `fn` with the average in the parameters (the training weights kept aside, put back after, even if it
   * throws). Before the first update the average is the weights themselves, so `fn` sees them unchanged.
   */
  async with<R>(fn: () => Promise<R>): Promise<R> {
    if (this.t === 0) return fn();
    this.swapIn();
    try {
      return await fn();
    } finally {
      this.swapOut();
    }
  }

  private swapIn(): void {
    for (const s of this.slots.values()) {
      s.be.copy(s.p.storage, 0, s.spare, 0, s.p.size);
      s.be.copy(s.avg, 0, s.p.storage, 0, s.p.size);
    }
    this.swapped = true;
  }

  private swapOut(): void {
    for (const s of this.slots.values()) s.be.copy(s.spare, 0, s.p.storage, 0, s.p.size);
    this.swapped = false;
  }

  /** The averages, read back (the training weights themselves before the first update). */
  async read(): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    for (const [name, s] of this.slots) out.set(name, await s.be.read(this.t === 0 ? s.p.storage : s.avg));
    return out;
  }

  /** Write the averages into the parameters for good (the end of a run). */
  commit(): void {
    if (this.t === 0) return;
    for (const s of this.slots.values()) s.be.copy(s.avg, 0, s.p.storage, 0, s.p.size);
  }

  /** Restore a saved state; every parameter's average must be there with its size. */
  setState(state: AverageState): void {
    for (const [name, s] of this.slots) {
      const w = state.weights.get(name);
      if (!w || w.length !== s.p.size) {
        throw new CharlmError(
          `the checkpoint's weight average has no matching tensor for ${name}; the model changed since it was saved, start a new run`,
        );
      }
    }
    for (const [name, s] of this.slots) s.be.write(s.avg, state.weights.get(name)!);
    this.t = state.t;
  }

  dispose(): void {
    for (const s of this.slots.values()) {
      s.be.free(s.avg);
      s.be.free(s.spare);
    }
    this.slots.clear();
  }
}
