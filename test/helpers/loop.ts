// A training config small enough for the loop tests: the tiny preset with an 8-wide embedding, 12 units, batches
// of 4 x 16, 3 epochs of 6 steps, every step logged, no samples.

import { resolveTrainConfig, type TrainConfig } from "../../src/train/config.js";

export function tinyLoopConfig(over: Partial<TrainConfig> = {}): TrainConfig {
  return resolveTrainConfig({
    preset: "tiny",
    overrides: {
      embedding: 8,
      units: 12,
      seqLength: 16,
      batchSize: 4,
      epochs: 3,
      stepsPerEpoch: 6,
      evalChars: 0,
      sampleLength: 0,
      logEvery: 1,
      dropout: 0.2,
      ...over,
    },
  });
}
