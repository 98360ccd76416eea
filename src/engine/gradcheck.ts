// Finite-difference gradient checks for the engine's ops and anything built from them.
//
// The method: f maps tensors to one or more output tensors. The scalar checked is a fixed random projection of
// the outputs, L = Σ_o Σ_i r_oi · out_oi, accumulated in float64 (so the reduction adds no float32 rounding).
// The analytic gradient comes from one backward pass seeded with r. The numerical gradient of every input entry
// is the central difference (L(x + h) - L(x - h)) / (x₊ - x₋), in float64, where x₊ and x₋ are the perturbed
// values as actually stored in float32 (dividing by them rather than by 2h removes the rounding of the step).
// The forward itself still runs in float32, so each L carries ~1e-7 relative noise; a step of 1e-2 keeps that
// noise near 1e-5 of the gradient while the O(h²) truncation error stays below ~1e-4 for smooth ops.
// An entry passes when |analytic - numeric| <= atol + rtol · max(|analytic|, |numeric|).

import { backward, noGrad } from "./autograd.js";
import { Tensor } from "./tensor.js";
import { Rng } from "../util/rng.js";

export interface GradcheckOptions {
  /** Finite-difference step (default 1e-2). */
  eps?: number;
  /** Relative tolerance (default 1e-2). */
  rtol?: number;
  /** Absolute tolerance (default 1e-4). */
  atol?: number;
  /** Seed of the projection weights (default 0). */
  seed?: number;
  /** Check at most this many entries per input, spread evenly (default: all). */
  maxPerInput?: number;
}

export interface GradcheckResult {
  ok: boolean;
  /** Largest |a - n| / max(|a|, |n|, atol/rtol) over all checked entries. */
  maxRelError: number;
  /** Per input: the largest relative error, as above. */
  perInput: number[];
  /** The worst entry. */
  worst: { input: number; index: number; analytic: number; numeric: number } | null;
}

/**
 * Compare the backward pass of f with central finite differences at `inputs` (only those with requiresGrad).
 * f must be deterministic (reseed any Rng inside it). Input data are restored afterwards; input grads are reset.
 */
export function gradcheck(
  f: (...xs: Tensor[]) => Tensor | Tensor[] | Record<string, Tensor>,
  inputs: Tensor[],
  opts: GradcheckOptions = {},
): GradcheckResult {
  const eps = opts.eps ?? 1e-2;
  const rtol = opts.rtol ?? 1e-2;
  const atol = opts.atol ?? 1e-4;
  const rng = new Rng(opts.seed ?? 0);
  const run = (): Tensor[] => {
    const r = f(...inputs);
    return Array.isArray(r) ? r : r instanceof Tensor ? [r] : Object.values(r);
  };

  const outs = run();
  const weights = outs.map((o) => {
    const w = new Float32Array(o.size);
    for (let i = 0; i < w.length; i++) w[i] = rng.random() * 2 - 1;
    return w;
  });
  const project = (ts: Tensor[]): number => {
    let s = 0;
    ts.forEach((t, k) => {
      const w = weights[k];
      for (let i = 0; i < w.length; i++) s += w[i] * t.data[i];
    });
    return s;
  };

  for (const x of inputs) x.gradStorage = null;
  const roots = outs.filter((o) => o.requiresGrad);
  backward(
    roots,
    outs.flatMap((o, k) => (o.requiresGrad ? [weights[k]] : [])),
  );
  const analytic = inputs.map((x) => (x.grad ? x.grad.slice() : new Float32Array(x.size)));

  const floor = atol / rtol;
  let ok = true;
  let maxRel = 0;
  let worst: GradcheckResult["worst"] = null;
  const perInput: number[] = [];
  inputs.forEach((x, xi) => {
    let inputMax = 0;
    if (!x.requiresGrad) {
      perInput.push(0);
      return;
    }
    const stride = opts.maxPerInput ? Math.max(1, Math.floor(x.size / opts.maxPerInput)) : 1;
    for (let i = 0; i < x.size; i += stride) {
      const orig = x.data[i];
      x.data[i] = orig + eps;
      const up = x.data[i];
      const lp = project(noGrad(run));
      x.data[i] = orig - eps;
      const dn = x.data[i];
      const lm = project(noGrad(run));
      x.data[i] = orig;
      const num = (lp - lm) / (up - dn);
      const a = analytic[xi][i];
      const err = Math.abs(a - num);
      const rel = err / Math.max(Math.abs(a), Math.abs(num), floor);
      if (err > atol + rtol * Math.max(Math.abs(a), Math.abs(num))) ok = false;
      if (rel > inputMax) inputMax = rel;
      if (!worst || rel > maxRel) {
        maxRel = rel;
        worst = { input: xi, index: i, analytic: a, numeric: num };
      }
    }
    perInput.push(inputMax);
  });
  for (const x of inputs) x.gradStorage = null;
  return { ok, maxRelError: maxRel, perInput, worst };
}
