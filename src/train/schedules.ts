// Learning-rate schedules: a pure function of the step number, so a resumed run gets exactly the rates it would
// have had (nothing to save but the step).
//
//   warm-up     steps s < W:  lr · (s + 1) / W      (linear from lr/W up to lr)
//   constant    lr
//   step        lr · γ^floor((s - W) / every)       (multiply by γ every `every` steps)
//   cosine      lrMin + (lr - lrMin) · (1 + cos(π · p)) / 2,  p = (s - W) / (total - W) clamped to [0, 1]

export type ScheduleName = "constant" | "step" | "cosine";

export interface ScheduleConfig {
  schedule: ScheduleName;
  /** Peak learning rate. */
  lr: number;
  /** Linear warm-up steps (0 = none). */
  warmup: number;
  /** Step decay: multiply by `decayRate` every `decayEvery` steps. */
  decayEvery: number;
  decayRate: number;
  /** Cosine: the floor the rate decays to, as a fraction of lr. */
  minLrFraction: number;
  /** Cosine: total number of steps of the run. */
  totalSteps: number;
}

/** Learning rate for step s (0-based). */
export function learningRate(s: number, c: ScheduleConfig): number {
  if (s < c.warmup) return (c.lr * (s + 1)) / c.warmup;
  const after = s - c.warmup;
  switch (c.schedule) {
    case "constant":
      return c.lr;
    case "step":
      return c.lr * c.decayRate ** Math.floor(after / Math.max(1, c.decayEvery));
    case "cosine": {
      const span = Math.max(1, c.totalSteps - c.warmup);
      const p = Math.min(1, after / span);
      const lrMin = c.lr * c.minLrFraction;
      return lrMin + ((c.lr - lrMin) * (1 + Math.cos(Math.PI * p))) / 2;
    }
  }
}
