// Embedding: token ids -> rows of a (V, E) table. Keras initialises it with RandomUniform(-0.05, 0.05).
//
// Legend: V vocabulary, E embedding width.

import { embedding } from "../engine/ops.js";
import type { Tensor } from "../engine/tensor.js";
import type { Rng } from "../util/rng.js";
import { uniform, zeros } from "./init.js";
import { Layer } from "./layer.js";

export class Embedding extends Layer {
  readonly kind = "Embedding";
  readonly weight: Tensor; // (V, E)

  constructor(
    readonly vocabSize: number,
    readonly dim: number,
    rng: Rng | null,
    name = "embedding",
  ) {
    super(name);
    this.weight = this.param("weight", rng ? uniform(vocabSize * dim, 0.05, rng) : zeros(vocabSize * dim), [
      vocabSize,
      dim,
    ]);
  }

  /** ids laid out with `shape` (e.g. [T, B]) -> (...shape, E). */
  forward(ids: Int32Array, shape: number[]): Tensor {
    return embedding(this.weight, ids, shape);
  }
}
