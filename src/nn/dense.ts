// Dense (fully connected): y = x @ W + b on the last axis. Keras defaults: glorot_uniform kernel, zero bias;
// PyTorch's nn.Linear: kernel and bias U(±1/√in).
// The kernel is stored (in, out), as Keras stores it (PyTorch's nn.Linear stores the transpose).

import { linear } from "../engine/ops.js";
import type { Tensor } from "../engine/tensor.js";
import type { Rng } from "../util/rng.js";
import { glorotUniform, uniform, zeros, type InitScheme } from "./init.js";
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
    init: InitScheme = "keras",
  ) {
    super(name);
    const n = inFeatures * units;
    const k = 1 / Math.sqrt(inFeatures);
    const torch = rng && init === "torch";
    const w = !rng ? zeros(n) : torch ? uniform(n, k, rng) : glorotUniform(inFeatures, units, rng);
    this.weight = this.param("weight", w, [inFeatures, units]);
    this.bias = this.param("bias", torch ? uniform(units, k, rng) : zeros(units), [units]);
  }

  /** x (..., in) -> (..., out). */
  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias);
  }
}
