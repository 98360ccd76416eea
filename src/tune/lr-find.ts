// The learning-rate range test: train a fresh model for a few hundred steps while the learning rate grows
// exponentially from very small to very large, and watch the training loss. At first it barely moves (the rate
// is too small to matter), then it falls, then it turns and climbs (the rate is too large). The suggestion is a
// tenth of the rate at the lowest point (suggestRate says why not the steepest fall). It costs one short run instead of
// the several runs a search (./search.ts) trains, but it only speaks to the rate, at the start of training, and
// for the schedule's peak: warm-up, decay and early stopping are the run's business.
//
// Each step draws its batch, dropout and initialisation exactly as `charlm train` would with the same config and
// seed (the same batcher, Rngs and optimizer), so the curve is that run's first steps at other rates.

import { createBatcher } from "../data/batching.js";
import type { Tokenizer } from "../data/tokenizer.js";
import { disposeReplaced } from "../engine/scope.js";
import type { LanguageModel, State } from "../models/contract.js";
import type { TrainConfig } from "../train/config.js";
import { dataRngFor, modelRngFor, optimizerFor, trainingStep } from "../train/loop.js";
import { CharlmError } from "../util/errors.js";

export interface LrFindOptions {
  /** The rate of the first step (default 1e-5). */
  minLr?: number;
  /** The rate of the last step (default 1). */
  maxLr?: number;
  /** Steps from minLr to maxLr (default 200). */
  steps?: number;
  /** The moving average that smooths the loss: weight of the past (default 0.9). */
  smoothing?: number;
  /** Stop once the smoothed loss is this many times its lowest (default 4): the rate is far too large by then. */
  divergeFactor?: number;
  /** Called after every step. */
  onStep?: (p: LrPoint, step: number, steps: number) => void;
}

export interface LrPoint {
  lr: number;
  loss: number; // the step's training loss
  smoothed: number; // its moving average (bias-corrected)
}

export interface LrFindResult {
  points: LrPoint[];
  /** A tenth of the rate at the lowest smoothed loss; null if the loss never fell. */
  suggested: number | null;
  /** The rate where the smoothed loss fell fastest per factor of rate, before its lowest point; null if it never fell. */
  steepest: number | null;
  /** The rate at the lowest smoothed loss. */
  lowestAt: number;
  /** Why the test ended: "diverged" (the loss passed divergeFactor x its lowest, or was not finite) or "done". */
  ended: "diverged" | "done";
}

/** Checks the range test's own settings; a one-line CharlmError naming the flag and the fix. */
export function checkLrFindOptions(o: LrFindOptions): Required<Omit<LrFindOptions, "onStep">> {
  const r = {
    minLr: o.minLr ?? 1e-5,
    maxLr: o.maxLr ?? 1,
    steps: o.steps ?? 200,
    smoothing: o.smoothing ?? 0.9,
    divergeFactor: o.divergeFactor ?? 4,
  };
  if (!(r.minLr > 0 && Number.isFinite(r.minLr)))
    throw new CharlmError(`--min-lr ${r.minLr}: must be above 0; use e.g. 1e-5`);
  if (!(r.maxLr > r.minLr && Number.isFinite(r.maxLr)))
    throw new CharlmError(`--max-lr ${r.maxLr}: must be above --min-lr ${r.minLr}; use e.g. 1`);
  if (!(Number.isInteger(r.steps) && r.steps >= 10))
    throw new CharlmError(`--steps ${r.steps}: the range test needs at least 10 steps; use e.g. 200`);
  if (!(r.smoothing >= 0 && r.smoothing < 1)) throw new CharlmError(`smoothing ${r.smoothing}: must be in [0, 1)`);
  if (!(r.divergeFactor > 1)) throw new CharlmError(`divergeFactor ${r.divergeFactor}: must be above 1`);
  return r;
}

/** The rate of step i of n (0-based), from lo to hi, each a constant factor above the one before. */
export function rangeRate(i: number, n: number, lo: number, hi: number): number {
  return lo * (hi / lo) ** (i / (n - 1));
}

/**
 * What a curve suggests: a tenth of the rate at the lowest smoothed loss (past it the rate is already too large to
 * train with; a tenth of it still learns fast: on the cpu preset this beat both the steepest fall's rate and the
 * preset's own after 300 steps and after 4 epochs, though not over the preset's whole run, docs/tuning.md), and,
 * for reference, the rate where the smoothed loss fell fastest per factor of rate (over a span of a tenth of the
 * points, at least 2, before the lowest point). Both null when the loss never fell below its start.
 */
export function suggestRate(points: LrPoint[]): {
  suggested: number | null;
  steepest: number | null;
  lowestAt: number;
} {
  let low = 0;
  points.forEach((p, i) => {
    if (p.smoothed < points[low].smoothed) low = i;
  });
  const span = Math.max(2, Math.round(points.length / 10));
  let steepest: number | null = null;
  let bestSlope = 0;
  for (let i = span; i <= low; i++) {
    const a = points[i - span];
    const b = points[i];
    const slope = (b.smoothed - a.smoothed) / Math.log(b.lr / a.lr);
    if (slope < bestSlope) {
      bestSlope = slope;
      steepest = Math.sqrt(a.lr * b.lr); // the middle of the span, on the log scale
    }
  }
  const fell = low > 0 && points[low].smoothed < points[0].smoothed;
  return { suggested: fell ? points[low].lr / 10 : null, steepest: fell ? steepest : null, lowestAt: points[low].lr };
}

/**
 * Run the range test on a fresh model with the run's config (its batch, sequence length, optimizer, clipping,
 * dropout, batching and seed; its learning rate and schedule are replaced by the sweep). The model's weights are
 * changed: build a new one to train afterwards.
 */
export async function lrRangeTest(
  run: { config: TrainConfig; model: LanguageModel; vocab: Tokenizer; splits: { train: string } },
  options: LrFindOptions = {},
): Promise<LrFindResult> {
  const o = checkLrFindOptions(options);
  const cfg = run.config;
  const ids = run.vocab.encode(run.splits.train, run.vocab.unk >= 0 ? "unk" : "error");
  const batcher = createBatcher(cfg.batching, ids, cfg.batchSize, cfg.seqLength, dataRngFor(cfg.seed));
  const params = run.model.parameters();
  const optimizer = optimizerFor(cfg, params);
  const modelRng = modelRngFor(cfg.seed);
  const stream = cfg.batching === "stream";
  let carried: State | null = null;
  let inEpoch = batcher.batchesPerEpoch;
  const points: LrPoint[] = [];
  let avg = 0;
  let lowest = Infinity;
  let ended: LrFindResult["ended"] = "done";
  try {
    for (let i = 0; i < o.steps; i++) {
      if (inEpoch === batcher.batchesPerEpoch) {
        batcher.startEpoch(0);
        inEpoch = 0;
      }
      const batch = batcher.next();
      inEpoch++;
      if (batch.reset) {
        disposeReplaced(carried, null);
        carried = null;
      }
      const lr = rangeRate(i, o.steps, o.minLr, o.maxLr);
      const state = carried;
      const out = trainingStep(run.model, params, optimizer, batch, { state, lr, cfg, rng: modelRng });
      out.norm.dispose();
      if (stream) {
        disposeReplaced(state, out.state);
        carried = out.state;
      }
      const loss = await out.loss.value();
      out.loss.dispose();
      avg = o.smoothing * avg + (1 - o.smoothing) * loss;
      const smoothed = avg / (1 - o.smoothing ** (i + 1));
      const p = { lr, loss, smoothed };
      points.push(p);
      options.onStep?.(p, i + 1, o.steps);
      lowest = Math.min(lowest, smoothed);
      if (!Number.isFinite(loss) || smoothed > o.divergeFactor * lowest) {
        ended = "diverged";
        break;
      }
    }
  } finally {
    disposeReplaced(carried, null);
    optimizer.dispose();
  }
  // A non-finite last point says where it broke; the suggestion comes from the finite ones.
  const finite = points.filter((p) => Number.isFinite(p.smoothed));
  return { points, ended, ...suggestRate(finite.length ? finite : points) };
}
