// LayerNorm over the last axis: y = (x - mean) / sqrt(var + eps) * gamma + beta; gamma starts at 1, beta at 0.

import { layerNorm } from "../engine/ops.js";
import type { Tensor } from "../engine/tensor.js";
import { ones, zeros } from "./init.js";
import { Layer } from "./layer.js";

export class LayerNorm extends Layer {
  readonly kind = "LayerNormalization";
  readonly gamma: Tensor; // (C)
  readonly beta: Tensor; // (C)

  constructor(
    readonly dim: number,
    readonly eps = 1e-5,
    name = "layer_norm",
  ) {
    super(name);
    this.gamma = this.param("gamma", ones(dim), [dim]);
    this.beta = this.param("beta", zeros(dim), [dim]);
  }

  /** x (..., C) -> (..., C). */
  forward(x: Tensor): Tensor {
    return layerNorm(x, this.gamma, this.beta, this.eps);
  }
}
