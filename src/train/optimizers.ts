// Optimizers over named parameters. Each parameter is a flat Float32Array `data` with a same-sized `grad`; the
// optimizer keeps its per-parameter buffers ("slots": Adam's m and v, RMSprop's mean square, ...) under the same
// names, so its whole state is a few numbers plus named tensors that a checkpoint can store and restore exactly.
//
// The update rules follow PyTorch's (torch.optim) so that charlm and a PyTorch reference trained with the same
// hyperparameters take the same steps. g is the gradient, lr the learning rate of this step, t the step count from 1.
// Arithmetic is done in float64 per element and stored back in float32, in a fixed order: same inputs, same bits.

import { CharlmError } from "../util/errors.js";

export interface Param {
  data: Float32Array;
  grad: Float32Array | null;
}

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
  protected readonly slots = new Map<string, Float32Array>();

  constructor(
    type: OptimizerName,
    protected readonly params: Map<string, Param>,
    hyper: OptimizerHyper = {},
  ) {
    this.type = type;
    this.hyper = { ...DEFAULTS[type], ...stripUndefined(hyper) };
    for (const slot of SLOTS[type]) {
      for (const [name, p] of params) this.slots.set(`${slot}.${name}`, new Float32Array(p.data.length));
    }
  }

  /** Apply one update with learning rate `lr`. Parameters without a gradient are left alone. */
  step(lr: number): void {
    this.t++;
    for (const [name, p] of this.params) {
      if (!p.grad) continue;
      this.update(name, p.data, p.grad, lr);
    }
  }

  protected abstract update(name: string, w: Float32Array, g: Float32Array, lr: number): void;

  protected slot(slot: string, name: string): Float32Array {
    return this.slots.get(`${slot}.${name}`)!;
  }

  /** Gradient with weight decay folded in, element i. */
  protected g(w: Float32Array, g: Float32Array, i: number): number {
    return this.hyper.weightDecay ? g[i] + this.hyper.weightDecay * w[i] : g[i];
  }

  getState(): OptimizerState {
    const slots = new Map<string, Float32Array>();
    for (const [k, v] of this.slots) slots.set(k, v.slice());
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
      if (!saved || saved.length !== v.length) {
        throw new CharlmError(
          `the checkpoint's optimizer state has no matching buffer ${k}; the model changed since it was saved, start a new run`,
        );
      }
    }
    for (const [k, v] of this.slots) v.set(state.slots.get(k)!);
    this.t = state.t;
    Object.assign(this.hyper, state.hyper);
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
  protected update(name: string, w: Float32Array, grad: Float32Array, lr: number): void {
    const { beta1, beta2, eps } = this.hyper;
    const m = this.slot("m", name);
    const v = this.slot("v", name);
    const bc1 = 1 - beta1 ** this.t;
    const bc2 = 1 - beta2 ** this.t;
    for (let i = 0; i < w.length; i++) {
      const g = this.g(w, grad, i);
      m[i] = beta1 * m[i] + (1 - beta1) * g;
      v[i] = beta2 * v[i] + (1 - beta2) * g * g;
      w[i] -= (lr * (m[i] / bc1)) / (Math.sqrt(v[i] / bc2) + eps);
    }
  }
}

/** RMSprop (Hinton):  s = ρ s + (1-ρ) g²;  w -= lr · g / (sqrt(s) + ε) */
export class RMSprop extends Optimizer {
  constructor(params: Map<string, Param>, hyper: OptimizerHyper = {}) {
    super("rmsprop", params, hyper);
  }
  protected update(name: string, w: Float32Array, grad: Float32Array, lr: number): void {
    const { rho, eps } = this.hyper;
    const s = this.slot("sq", name);
    for (let i = 0; i < w.length; i++) {
      const g = this.g(w, grad, i);
      s[i] = rho * s[i] + (1 - rho) * g * g;
      w[i] -= (lr * g) / (Math.sqrt(s[i]) + eps);
    }
  }
}

/** Adagrad (Duchi et al.):  G += g²;  w -= lr · g / (sqrt(G) + ε) */
export class Adagrad extends Optimizer {
  constructor(params: Map<string, Param>, hyper: OptimizerHyper = {}) {
    super("adagrad", params, hyper);
  }
  protected update(name: string, w: Float32Array, grad: Float32Array, lr: number): void {
    const { eps } = this.hyper;
    const G = this.slot("sum", name);
    for (let i = 0; i < w.length; i++) {
      const g = this.g(w, grad, i);
      G[i] += g * g;
      w[i] -= (lr * g) / (Math.sqrt(G[i]) + eps);
    }
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
  protected update(name: string, w: Float32Array, grad: Float32Array, lr: number): void {
    const { momentum: mu, nesterov } = this.hyper;
    const b = this.slot("buf", name);
    const first = this.t === 1;
    for (let i = 0; i < w.length; i++) {
      const g = this.g(w, grad, i);
      if (mu === 0) {
        w[i] -= lr * g;
        continue;
      }
      b[i] = first ? g : mu * b[i] + g;
      w[i] -= lr * (nesterov ? g + mu * b[i] : b[i]);
    }
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
 * maxNorm / ‖g‖. Returns the norm before clipping (NaN or Infinity if a gradient is not finite; nothing is scaled then).
 */
export function clipGradNorm(params: Iterable<Param>, maxNorm: number): number {
  let sumSq = 0;
  const list = [...params];
  for (const p of list) {
    if (!p.grad) continue;
    const g = p.grad;
    for (let i = 0; i < g.length; i++) sumSq += g[i] * g[i];
  }
  const norm = Math.sqrt(sumSq);
  if (!Number.isFinite(norm) || !(maxNorm > 0) || norm <= maxNorm) return norm;
  const scale = maxNorm / (norm + 1e-6);
  for (const p of list) {
    if (!p.grad) continue;
    const g = p.grad;
    for (let i = 0; i < g.length; i++) g[i] *= scale;
  }
  return norm;
}
