// Early stopping on the validation loss, Keras style: an epoch "improves" when its loss is below the best so far
// by more than minDelta; after `patience` epochs without improvement training stops, and the weights of the best
// epoch are put back (restore_best_weights). The best weights are copied when they happen, so restoring is exact.

import type { Param } from "./optimizers.js";

export interface EarlyStoppingState {
  best: number;
  bestEpoch: number;
  /** Epochs since the last improvement. */
  wait: number;
}

export class EarlyStopping {
  best = Infinity;
  bestEpoch = -1;
  wait = 0;
  /** Copies of the parameters at the best epoch (null until the first evaluation). */
  bestWeights: Map<string, Float32Array> | null = null;

  /** patience 0 = never stop early (the best weights are still tracked and can be restored). */
  constructor(
    readonly patience: number,
    readonly minDelta: number,
  ) {}

  /**
   * Record epoch `epoch`'s validation loss; returns whether it improved and whether training should stop. The best
   * weights are read back to the host (once per improving epoch), where the checkpoint needs them anyway.
   */
  async update(loss: number, epoch: number, params: Map<string, Param>): Promise<{ improved: boolean; stop: boolean }> {
    const improved = loss < this.best - this.minDelta;
    if (improved) {
      this.best = loss;
      this.bestEpoch = epoch;
      this.wait = 0;
      const copies = new Map<string, Float32Array>();
      for (const [k, p] of params) copies.set(k, await p.read());
      this.bestWeights = copies;
    } else {
      this.wait++;
    }
    return { improved, stop: this.patience > 0 && this.wait >= this.patience };
  }

  /** Copy the best weights back into the parameters; false if there are none yet. */
  restore(params: Map<string, Param>): boolean {
    if (!this.bestWeights) return false;
    for (const [k, p] of params) {
      const w = this.bestWeights.get(k);
      if (w) p.write(w);
    }
    return true;
  }

  getState(): EarlyStoppingState {
    return { best: this.best, bestEpoch: this.bestEpoch, wait: this.wait };
  }

  setState(s: EarlyStoppingState, bestWeights: Map<string, Float32Array> | null): void {
    this.best = s.best;
    this.bestEpoch = s.bestEpoch;
    this.wait = s.wait;
    this.bestWeights = bestWeights;
  }
}
