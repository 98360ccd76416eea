// What every layer shares: a display name and kind (as Keras prints them in model.summary()), and its parameters
// under short local names ("weight", "wx") that the model prefixes ("rnn.0.wx") for checkpoints and optimizers.

import { Tensor } from "../engine/tensor.js";

export abstract class Layer {
  /** Keras class name, e.g. "LSTM". */
  abstract readonly kind: string;
  /** Local parameter name -> tensor, in a fixed order. */
  readonly params = new Map<string, Tensor>();

  constructor(readonly name: string) {}

  /** Register a trainable parameter (a leaf tensor that requires a gradient). */
  protected param(local: string, data: Float32Array, shape: number[]): Tensor {
    const t = new Tensor(data, shape, true);
    t.name = `${this.name}.${local}`;
    this.params.set(local, t);
    return t;
  }

  /** Number of scalar parameters. */
  countParams(): number {
    let n = 0;
    for (const t of this.params.values()) n += t.size;
    return n;
  }
}
