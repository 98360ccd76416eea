// The tensor: float32 storage, row-major and contiguous, with a shape. A scalar has shape [] and size 1.
// Tensors are immutable as far as ops are concerned (ops always write new outputs); optimizers update parameter
// data in place, which is fine because parameters are leaves.

import { backward as runBackward, type Node } from "./autograd.js";
import type { Rng } from "../util/rng.js";

export function shapeSize(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function checkShape(shape: readonly number[], what = "shape"): void {
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`${what} [${shape.join(", ")}] has an invalid dimension ${d}`);
  }
}

export class Tensor {
  data: Float32Array;
  shape: number[];
  size: number;
  /** Gradient of the last backward pass (accumulated for leaves until zeroGrad). */
  grad: Float32Array | null = null;
  requiresGrad: boolean;
  /** The op that produced this tensor, while its graph is alive; null for leaves and after backward. */
  node: Node | null = null;
  /** Optional label (parameter name) for error messages and debugging. */
  name?: string;

  constructor(data: Float32Array, shape: number[], requiresGrad = false) {
    checkShape(shape);
    const size = shapeSize(shape);
    if (data.length !== size) {
      throw new Error(`tensor data has ${data.length} values but shape [${shape.join(", ")}] needs ${size}`);
    }
    this.data = data;
    this.shape = shape.slice();
    this.size = size;
    this.requiresGrad = requiresGrad;
  }

  static zeros(shape: number[], requiresGrad = false): Tensor {
    return new Tensor(new Float32Array(shapeSize(shape)), shape, requiresGrad);
  }

  static full(shape: number[], value: number, requiresGrad = false): Tensor {
    return new Tensor(new Float32Array(shapeSize(shape)).fill(value), shape, requiresGrad);
  }

  static fromArray(data: ArrayLike<number>, shape: number[], requiresGrad = false): Tensor {
    return new Tensor(Float32Array.from(data), shape, requiresGrad);
  }

  static scalar(value: number, requiresGrad = false): Tensor {
    return new Tensor(Float32Array.of(value), [], requiresGrad);
  }

  /** Normal(0, std²) entries drawn from rng. */
  static randn(shape: number[], rng: Rng, std = 1, requiresGrad = false): Tensor {
    const t = Tensor.zeros(shape, requiresGrad);
    for (let i = 0; i < t.size; i++) t.data[i] = rng.normal() * std;
    return t;
  }

  /** Uniform(lo, hi) entries drawn from rng. */
  static uniform(shape: number[], rng: Rng, lo = 0, hi = 1, requiresGrad = false): Tensor {
    const t = Tensor.zeros(shape, requiresGrad);
    for (let i = 0; i < t.size; i++) t.data[i] = lo + (hi - lo) * rng.random();
    return t;
  }

  get ndim(): number {
    return this.shape.length;
  }

  /** The value of a one-element tensor. */
  item(): number {
    if (this.size !== 1) throw new Error(`item() needs a one-element tensor, got shape [${this.shape.join(", ")}]`);
    return this.data[0];
  }

  /** Backpropagate from this tensor. Without a seed it must be a scalar (d loss / d loss = 1). */
  backward(seed?: Float32Array): void {
    if (!seed && this.size !== 1) {
      throw new Error(`backward() without a seed needs a scalar, got shape [${this.shape.join(", ")}]`);
    }
    runBackward([this], [seed ?? null]);
  }

  /** Same data, no history, no gradient. */
  detach(): Tensor {
    return new Tensor(this.data, this.shape);
  }

  /** A deep copy of the data (no history). */
  clone(): Tensor {
    return new Tensor(this.data.slice(), this.shape);
  }

  zeroGrad(): void {
    if (this.grad) this.grad.fill(0);
  }

  toArray(): number[] {
    return Array.from(this.data);
  }

  toString(): string {
    return `Tensor(shape=[${this.shape.join(", ")}]${this.requiresGrad ? ", requiresGrad" : ""})`;
  }
}
