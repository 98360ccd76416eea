// Dense (fully connected): y = x @ W + b on the last axis. Keras defaults: glorot_uniform kernel, zero bias.
// The kernel is stored (in, out), as Keras stores it (PyTorch's nn.Linear stores the transpose).

import { add, matmul } from "../engine/ops.js";
import type { Tensor } from "../engine/tensor.js";
import type { Rng } from "../util/rng.js";
import { glorotUniform, zeros } from "./init.js";
import { Layer } from "./layer.js";

export class Dense extends Layer {
  readonly kind = "Dense";
  readonly weight: Tensor; // (in, out)
  readonly bias: Tensor; // (out)

  constructor(
    readonly inFeatures: number,
    readonly units: number,
    rng: Rng | null,
    name = "dense",
  ) {
    super(name);
    this.weight = this.param("weight", rng ? glorotUniform(inFeatures, units, rng) : zeros(inFeatures * units), [
      inFeatures,
      units,
    ]);
    this.bias = this.param("bias", zeros(units), [units]);
  }

  /** x (..., in) -> (..., out). */
  forward(x: Tensor): Tensor {
    return add(matmul(x, this.weight), this.bias);
  }
}
