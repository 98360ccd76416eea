// The tensor: a shape over float32 storage that the current backend owns (a Float32Array for js, a range of wasm
// memory, a GPU buffer), row-major and contiguous. A scalar has shape [] and size 1.
//
// Values reach JavaScript only when asked: `await t.read()` on every backend; on backends whose memory JavaScript can
// see (js, wasm), `t.data` is a live view and `t.item()` a synchronous read, for tests and host-side code.
// Ops never modify their inputs; optimizers update parameters in place, which is fine because parameters are leaves.

import type { Backend, Storage } from "./backend.js";
import { getBackend } from "./backends/index.js";
import { allocate, allocateUninit, release, trackLike } from "./scope.js";
import { backward as runBackward } from "./autograd.js";
import type { Node } from "./node.js";
import type { Rng } from "../util/rng.js";
import { CharlmError } from "../util/errors.js";

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

/** Host values as storage of backend be: the array itself where the backend adopts it (js), else a copy. */
function upload(be: Backend, data: Float32Array): Storage {
  if (be.adopt) return be.adopt(data);
  const s = allocate(be, data.length);
  be.write(s, data);
  return s;
}

export class Tensor {
  readonly storage: Storage;
  readonly backend: Backend;
  shape: number[];
  size: number;
  /** Gradient storage of the last backward pass (accumulated for leaves until zeroGrad). */
  gradStorage: Storage | null = null;
  requiresGrad: boolean;
  /** The op that produced this tensor, while its graph is alive; null for leaves and after backward. */
  node: Node | null = null;
  /** Optional label (parameter name) for error messages and debugging. */
  name?: string;

  /**
   * A tensor over `data`: a Storage of `backend` (default: the current one), or host values (a Float32Array, which
   * the js backend adopts as its storage and other backends copy).
   */
  constructor(data: Storage | Float32Array, shape: number[], requiresGrad = false, backend: Backend = getBackend()) {
    checkShape(shape);
    const size = shapeSize(shape);
    if (data.length !== size) {
      throw new Error(`tensor data has ${data.length} values but shape [${shape.join(", ")}] needs ${size}`);
    }
    this.backend = backend;
    this.storage = data instanceof Float32Array ? upload(backend, data) : data;
    this.shape = shape.slice();
    this.size = size;
    this.requiresGrad = requiresGrad;
  }

  static zeros(shape: number[], requiresGrad = false): Tensor {
    const be = getBackend();
    return new Tensor(allocate(be, shapeSize(shape)), shape, requiresGrad, be);
  }

  static full(shape: number[], value: number, requiresGrad = false): Tensor {
    const t = Tensor.zeros(shape, requiresGrad);
    if (value !== 0) t.backend.fill(t.storage, value);
    return t;
  }

  static fromArray(data: ArrayLike<number>, shape: number[], requiresGrad = false): Tensor {
    return new Tensor(Float32Array.from(data), shape, requiresGrad);
  }

  static scalar(value: number, requiresGrad = false): Tensor {
    return new Tensor(Float32Array.of(value), [], requiresGrad);
  }

  /** Normal(0, std²) entries drawn from rng. */
  static randn(shape: number[], rng: Rng, std = 1, requiresGrad = false): Tensor {
    const d = new Float32Array(shapeSize(shape));
    for (let i = 0; i < d.length; i++) d[i] = rng.normal() * std;
    return new Tensor(d, shape, requiresGrad);
  }

  /** Uniform(lo, hi) entries drawn from rng. */
  static uniform(shape: number[], rng: Rng, lo = 0, hi = 1, requiresGrad = false): Tensor {
    const d = new Float32Array(shapeSize(shape));
    for (let i = 0; i < d.length; i++) d[i] = lo + (hi - lo) * rng.random();
    return new Tensor(d, shape, requiresGrad);
  }

  get ndim(): number {
    return this.shape.length;
  }

  /** A live view of the values (js and wasm backends only; a GPU backend's values are read with `await read()`). */
  get data(): Float32Array {
    if (!this.backend.sync) throw notSync(this.backend);
    return this.backend.view(this.storage);
  }

  /** A live view of the gradient, or null (js and wasm backends only). */
  get grad(): Float32Array | null {
    if (!this.gradStorage) return null;
    if (!this.backend.sync) throw notSync(this.backend);
    return this.backend.view(this.gradStorage);
  }

  /** A copy of the values, on any backend. */
  read(): Promise<Float32Array> {
    return this.backend.read(this.storage);
  }

  /** A copy of the gradient (zeros when there is none), on any backend. */
  async readGrad(): Promise<Float32Array> {
    return this.gradStorage ? this.backend.read(this.gradStorage) : new Float32Array(this.size);
  }

  /** Overwrite the values from the host. */
  write(values: Float32Array): void {
    if (values.length !== this.size) {
      throw new Error(`tensor write: ${values.length} values for shape [${this.shape.join(", ")}]`);
    }
    this.backend.write(this.storage, values);
  }

  /** The value of a one-element tensor (js and wasm backends; use `await value()` anywhere). */
  item(): number {
    if (this.size !== 1) throw new Error(`item() needs a one-element tensor, got shape [${this.shape.join(", ")}]`);
    return this.data[0];
  }

  /** The value of a one-element tensor, on any backend. */
  async value(): Promise<number> {
    if (this.size !== 1) throw new Error(`value() needs a one-element tensor, got shape [${this.shape.join(", ")}]`);
    return (await this.read())[0];
  }

  /** The gradient storage, made as zeros on first use (in the same scope as the tensor's own storage). */
  gradOf(): Storage {
    if (!this.gradStorage) {
      this.gradStorage = this.backend.alloc(this.size);
      trackLike(this.storage, this.backend, this.gradStorage);
    }
    return this.gradStorage;
  }

  /**
   * For a rule whose kernel overwrites a whole gradient: the gradient storage, made without zeroing
   * (Backend.allocUninit), when this tensor has none yet; null when it has one (the rule then adds into gradOf()).
   */
  freshGrad(): Storage | null {
    if (this.gradStorage) return null;
    const be = this.backend;
    this.gradStorage = be.allocUninit ? be.allocUninit(this.size) : be.alloc(this.size);
    trackLike(this.storage, be, this.gradStorage);
    return this.gradStorage;
  }

  /** Backpropagate from this tensor. Without a seed it must be a scalar (d loss / d loss = 1). */
  backward(seed?: Float32Array): void {
    if (!seed && this.size !== 1) {
      throw new Error(`backward() without a seed needs a scalar, got shape [${this.shape.join(", ")}]`);
    }
    runBackward([this], [seed ?? null]);
  }

  /** Same storage, no history, no gradient. */
  detach(): Tensor {
    return new Tensor(this.storage, this.shape, false, this.backend);
  }

  /** A copy of the values in new storage (no history). */
  clone(): Tensor {
    const t = new Tensor(allocate(this.backend, this.size), this.shape, false, this.backend);
    this.backend.copy(this.storage, 0, t.storage, 0, this.size);
    return t;
  }

  zeroGrad(): void {
    if (this.gradStorage) this.backend.fill(this.gradStorage, 0);
  }

  /** Free the storage (and gradient) now. Views sharing the storage (reshape, detach) must not be used after. */
  dispose(): void {
    if (this.gradStorage) release(this.backend, this.gradStorage);
    this.gradStorage = null;
    release(this.backend, this.storage);
  }

  toArray(): number[] {
    return Array.from(this.data);
  }

  toString(): string {
    return `Tensor(shape=[${this.shape.join(", ")}]${this.requiresGrad ? ", requiresGrad" : ""})`;
  }
}

/** The one backend all of an op's inputs live on. */
export function backendOf(op: string, ...ts: Tensor[]): Backend {
  const be = ts[0].backend;
  for (const t of ts) {
    if (t.backend !== be)
      throw new Error(`${op}: inputs live on different backends (${be.name} and ${t.backend.name})`);
  }
  return be;
}

/** A new tensor of this shape on be (zeros), owned by the current scope. */
export function empty(be: Backend, shape: number[]): Tensor {
  return new Tensor(allocate(be, shapeSize(shape)), shape, false, be);
}

/** A new tensor of this shape on be for an op's kernel to overwrite entirely (not zeros: Backend.allocUninit). */
export function uninit(be: Backend, shape: number[]): Tensor {
  return new Tensor(allocateUninit(be, shapeSize(shape)), shape, false, be);
}

function notSync(be: Backend): CharlmError {
  return new CharlmError(
    `the ${be.name} backend keeps tensor values on its device; read them with \`await tensor.read()\` (or \`await tensor.value()\` for one number)`,
  );
}
