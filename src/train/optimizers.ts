// Optimizers over named parameters. Each parameter is a tensor with a same-sized gradient after backward; the
// optimizer keeps its per-parameter buffers ("slots": Adam's m and v, RMSprop's mean square, ...) on the same backend
// under the same names, so its whole state is a few numbers plus named tensors that a checkpoint can store and
// restore exactly. An update is one backend kernel per parameter: nothing is read back to JavaScript.
//
// The update rules follow PyTorch's (torch.optim) so that charlm and a PyTorch reference trained with the same
// hyperparameters take the same steps. g is the gradient, lr the learning rate of this step, t the step count from 1.
// The js and wasm kernels compute in float64 per element and store float32, in a fixed order: same inputs, same bits.

import type { Backend, Storage } from "../engine/backend.js";
import { getBackend } from "../engine/backends/index.js";
import { allocate } from "../engine/scope.js";
import { empty, type Tensor } from "../engine/tensor.js";
import { CharlmError } from "../util/errors.js";

/** What an optimizer updates: a tensor (on any backend) and its gradient storage after backward. */
export type Param = Tensor;

export type OptimizerName = "adam" | "rmsprop" | "adagrad" | "sgd";

export interface OptimizerHyper {
  /** Adam β1 (first-moment decay). */
  beta1?: number;
  /** Adam β2 (second-moment decay). */
  beta2?: number;
  /** RMSprop ρ (decay of the running mean square). */
  rho?: number;
  /** SGD momentum μ (0 = plain SGD). */
  momentum?: number;
  /** SGD: use Nesterov momentum. */
  nesterov?: boolean;
  /** Added to the denominator for numerical safety. */
  eps?: number;
  /** L2 penalty added to the gradient (g += wd * p), as torch.optim does; 0 = off. */
  weightDecay?: number;
}

/** What a checkpoint stores: JSON-able scalars, and the slot tensors stored separately by name. */
export interface OptimizerState {
  type: OptimizerName;
  /** Number of updates taken so far. */
  t: number;
  hyper: Required<Omit<OptimizerHyper, "nesterov">> & { nesterov: boolean };
  /** Slot buffers keyed "<slot>.<parameter name>", e.g. "m.lstm.0.wx". */
  slots: Map<string, Float32Array>;
}

const DEFAULTS: Record<OptimizerName, Required<OptimizerHyper>> = {
  adam: { beta1: 0.9, beta2: 0.999, rho: 0, momentum: 0, nesterov: false, eps: 1e-8, weightDecay: 0 },
  rmsprop: { beta1: 0, beta2: 0, rho: 0.99, momentum: 0, nesterov: false, eps: 1e-8, weightDecay: 0 },
  adagrad: { beta1: 0, beta2: 0, rho: 0, momentum: 0, nesterov: false, eps: 1e-10, weightDecay: 0 },
  sgd: { beta1: 0, beta2: 0, rho: 0, momentum: 0.9, nesterov: false, eps: 0, weightDecay: 0 },
};

const SLOTS: Record<OptimizerName, string[]> = {
  adam: ["m", "v"],
  rmsprop: ["sq"],
  adagrad: ["sum"],
  sgd: ["buf"],
};

export abstract class Optimizer {
  readonly type: OptimizerName;
  readonly hyper: Required<OptimizerHyper>;
  /** Updates taken so far. */
  t = 0;
  /** Slot storage on the parameters' backend, made outside any scope: it lives as long as the optimizer. */
  protected readonly slots = new Map<string, { be: Backend; s: Storage }>();

  constructor(
    type: OptimizerName,
    protected readonly params: Map<string, Param>,
    hyper: OptimizerHyper = {},
  ) {
    this.type = type;
    this.hyper = { ...DEFAULTS[type], ...stripUndefined(hyper) };
    for (const slot of SLOTS[type]) {
      for (const [name, p] of params) this.slots.set(`${slot}.${name}`, { be: p.backend, s: p.backend.alloc(p.size) });
    }
  }

  /** Apply one update with learning rate `lr` (one backend kernel per parameter). Parameters without a gradient are left alone. */
  step(lr: number): void {
    this.t++;
    for (const [name, p] of this.params) {
      if (!p.gradStorage) continue;
      this.update(name, p, p.gradStorage, lr);
    }
  }

  protected abstract update(name: string, w: Param, g: Storage, lr: number): void;

  protected slot(slot: string, name: string): Storage {
    return this.slots.get(`${slot}.${name}`)!.s;
  }

  /** The state, slots read back from the backend (for a checkpoint). */
  async getState(): Promise<OptimizerState> {
    const slots = new Map<string, Float32Array>();
    for (const [k, v] of this.slots) slots.set(k, await v.be.read(v.s));
    return { type: this.type, t: this.t, hyper: { ...this.hyper }, slots };
  }

  /** Restore a saved state; the optimizer type and every slot's name and size must match. */
  setState(state: OptimizerState): void {
    if (state.type !== this.type) {
      throw new CharlmError(
        `the checkpoint's optimizer is ${state.type} but this run uses ${this.type}; resume with --optimizer ${state.type}`,
      );
    }
    for (const [k, v] of this.slots) {
      const saved = state.slots.get(k);
      if (!saved || saved.length !== v.s.length) {
        throw new CharlmError(
          `the checkpoint's optimizer state has no matching buffer ${k}; the model changed since it was saved, start a new run`,
        );
      }
    }
    for (const [k, v] of this.slots) v.be.write(v.s, state.slots.get(k)!);
    this.t = state.t;
    Object.assign(this.hyper, state.hyper);
  }

  /** Give the slot storage back to the backend. */
  dispose(): void {
    for (const v of this.slots.values()) v.be.free(v.s);
    this.slots.clear();
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/**
 * Adam (Kingma & Ba):  m = β1 m + (1-β1) g;  v = β2 v + (1-β2) g²;
 *   w -= lr · (m / (1-β1^t)) / (sqrt(v / (1-β2^t)) + ε)
 */
export class Adam extends Optimizer {
  constructor(params: Map<string, Param>, hyper: OptimizerHyper = {}) {
    super("adam", params, hyper);
  }

  protected update(name: string, w: Param, g: Storage, lr: number): void {
    const { beta1, beta2, eps, weightDecay } = this.hyper;
    const bc1 = 1 - beta1 ** this.t;
    const bc2 = 1 - beta2 ** this.t;
    w.backend.adam(w.storage, g, this.slot("m", name), this.slot("v", name), w.size, {
      lr,
      beta1,
      beta2,
      eps,
      weightDecay,
      bc1,
      bc2,
    });
  }
}

/** RMSprop (Hinton):  s = ρ s + (1-ρ) g²;  w -= lr · g / (sqrt(s) + ε) */
export class RMSprop extends Optimizer {
  constructor(params: Map<string, Param>, hyper: OptimizerHyper = {}) {
    super("rmsprop", params, hyper);
  }

  protected update(name: string, w: Param, g: Storage, lr: number): void {
    const { rho, eps, weightDecay } = this.hyper;
    w.backend.rmsprop(w.storage, g, this.slot("sq", name), w.size, { lr, rho, eps, weightDecay });
  }
}

/** Adagrad (Duchi et al.):  G += g²;  w -= lr · g / (sqrt(G) + ε) */
export class Adagrad extends Optimizer {
  constructor(params: Map<string, Param>, hyper: OptimizerHyper = {}) {
    super("adagrad", params, hyper);
  }

  protected update(name: string, w: Param, g: Storage, lr: number): void {
    const { eps, weightDecay } = this.hyper;
    w.backend.adagrad(w.storage, g, this.slot("sum", name), w.size, { lr, eps, weightDecay });
  }
}

/**
 * SGD with momentum, PyTorch's form:  b = g on the first step, then b = μ b + g;  w -= lr · b
 * (Nesterov: w -= lr · (g + μ b)). With μ = 0 it is plain SGD.
 */
export class SGD extends Optimizer {
  constructor(params: Map<string, Param>, hyper: OptimizerHyper = {}) {
    super("sgd", params, hyper);
  }

  protected update(name: string, w: Param, g: Storage, lr: number): void {
    const { momentum, nesterov, weightDecay } = this.hyper;
    w.backend.sgd(w.storage, g, this.slot("buf", name), w.size, {
      lr,
      momentum,
      nesterov,
      weightDecay,
      first: this.t === 1,
    });
  }
}

export function createOptimizer(
  type: OptimizerName,
  params: Map<string, Param>,
  hyper: OptimizerHyper = {},
): Optimizer {
  switch (type) {
    case "adam":
      return new Adam(params, hyper);
    case "rmsprop":
      return new RMSprop(params, hyper);
    case "adagrad":
      return new Adagrad(params, hyper);
    case "sgd":
      return new SGD(params, hyper);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Gradient clipping

/**
 * Clip by global norm: if ‖g‖ = sqrt(Σ over all parameters of Σ g²) exceeds maxNorm, scale every gradient by
 * maxNorm / (‖g‖ + 1e-6). Runs on the parameters' backend without reading anything back: returns a 2-element tensor
 * [‖g‖ before clipping, the factor applied] to read when logging (‖g‖ NaN or Infinity if a gradient is not finite;
 * nothing is scaled then). Made in the caller's scope.
 */
export function clipGradNorm(params: Iterable<Param>, maxNorm: number): Tensor {
  const list = [...params].filter((p) => p.gradStorage);
  const be = list.length > 0 ? list[0].backend : getBackend();
  const sq = allocate(be, Math.max(1, list.length));
  list.forEach((p, i) => be.sumSquares(p.gradStorage!, p.size, sq, i));
  const out = empty(be, [2]);
  be.clipFactor(sq, list.length, maxNorm > 0 ? maxNorm : Infinity, out.storage);
  if (maxNorm > 0 && Number.isFinite(maxNorm)) for (const p of list) be.scaleBy(p.gradStorage!, p.size, out.storage, 1);
  return out;
}
