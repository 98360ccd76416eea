// Embedding: token ids -> rows of a (V, E) table. Keras initialises it with RandomUniform(-0.05, 0.05), PyTorch
// with N(0, 1).
//
// Legend: V vocabulary, E embedding width.

import { embedding } from "../engine/ops.js";
import type { Tensor } from "../engine/tensor.js";
import type { Rng } from "../util/rng.js";
import { normal, uniform, zeros, type InitScheme } from "./init.js";
import { Layer } from "./layer.js";

export class Embedding extends Layer {
  readonly kind = "Embedding";
  readonly weight: Tensor; // (V, E)

  constructor(
    readonly vocabSize: number,
    readonly dim: number,
    rng: Rng | null,
    name = "embedding",
    init: InitScheme = "keras",
  ) {
    super(name);
    const n = vocabSize * dim;
    const w = !rng ? zeros(n) : init === "torch" ? normal(n, 1, rng) : uniform(n, 0.05, rng);
    this.weight = this.param("weight", w, [vocabSize, dim]);
  }

  /** ids laid out with `shape` (e.g. [T, B]) -> (...shape, E). */
  forward(ids: Int32Array, shape: number[]): Tensor {
    return embedding(this.weight, ids, shape);
  }
}
