// Dropout: in training, zero each element with probability `rate` and scale the rest by 1/(1-rate) (inverted
// dropout, as Keras and PyTorch do), so inference needs no rescaling. Outside training it is the identity.

import { dropout } from "../engine/ops.js";
import type { Tensor } from "../engine/tensor.js";
import type { Rng } from "../util/rng.js";
import { Layer } from "./layer.js";

export class Dropout extends Layer {
  readonly kind = "Dropout";

  constructor(
    readonly rate: number,
    name = "dropout",
  ) {
    super(name);
  }

  forward(x: Tensor, rng: Rng, training: boolean): Tensor {
    if (!training || this.rate === 0) return x;
    return dropout(x, this.rate, rng, training);
  }
}
