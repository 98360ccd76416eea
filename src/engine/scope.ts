// Deterministic memory: storages made inside `scope(fn)` are freed when fn returns, except those of the tensors fn
// returns (they move to the enclosing scope, or become the caller's to dispose). A training step, an evaluation
// batch and a generation step each run in one scope, so the backend gets the same sizes back every step and a run's
// memory is flat after warm-up, whatever the garbage collector does. Storage made outside any scope (parameters,
// optimizer state, a GPT's key/value cache) lives until it is disposed explicitly.
//
// Scopes are synchronous on purpose: an `await` inside one would let another task (a second request in the server)
// allocate into it. Async work reads the kept results after the scope has closed.
//
// CHARLM_POISON=1 (Node) fills freed storage with NaN first, so a use after free shows up as NaN in the next loss
// instead of as plausible numbers; the test suite runs a training loop that way.

import type { Backend, Storage } from "./backend.js";

type Owned = Map<Storage, Backend>;

const stack: Owned[] = [];
const poison = typeof process !== "undefined" && process.env?.CHARLM_POISON === "1";

/** Record that `s` (of backend `be`) was made now: it belongs to the innermost scope, if any. */
export function track(be: Backend, s: Storage): void {
  if (stack.length > 0) stack[stack.length - 1].set(s, be);
}

/** n fresh zeros on backend be, owned by the innermost scope. */
export function allocate(be: Backend, n: number): Storage {
  const s = be.alloc(n);
  track(be, s);
  return s;
}

/** n values an op's kernel overwrites entirely (Backend.allocUninit, else zeros), owned by the innermost scope. */
export function allocateUninit(be: Backend, n: number): Storage {
  const s = be.allocUninit ? be.allocUninit(n) : be.alloc(n);
  track(be, s);
  return s;
}

/** Record `s` next to `like`: in the scope that owns `like`, or nowhere (kept) when `like` is not in a scope. */
export function trackLike(like: Storage, be: Backend, s: Storage): void {
  for (let i = stack.length - 1; i >= 0; i--) {
    if (stack[i].has(like)) {
      stack[i].set(s, be);
      return;
    }
  }
}

/** Free `s` now (and forget it in whichever scope holds it). */
export function release(be: Backend, s: Storage): void {
  for (let i = stack.length - 1; i >= 0; i--) if (stack[i].delete(s)) break;
  if (poison && be.sync) be.fill(s, NaN);
  be.free(s);
}

/** What scopes need of a tensor (tensor.ts imports this file, so it is not imported back). */
interface TensorLike {
  storage: Storage;
  gradStorage: Storage | null;
  shape: number[];
  dispose(): void;
}

/** The tensors a value holds: itself, or inside arrays, maps and plain objects (a model state, a step's result). */
export function tensorsIn(v: unknown, out: TensorLike[] = [], depth = 0): TensorLike[] {
  if (v === null || typeof v !== "object" || depth > 4) return out;
  const t = v as Partial<TensorLike>;
  if (t.storage && Array.isArray(t.shape) && typeof t.dispose === "function") out.push(t as TensorLike);
  else if (Array.isArray(v)) for (const x of v) tensorsIn(x, out, depth + 1);
  else if (v instanceof Map) for (const x of v.values()) tensorsIn(x, out, depth + 1);
  else if (Object.getPrototypeOf(v) === Object.prototype)
    for (const x of Object.values(v)) tensorsIn(x, out, depth + 1);
  return out;
}

function collect(v: unknown, out: Set<Storage>): void {
  for (const t of tensorsIn(v)) {
    out.add(t.storage);
    if (t.gradStorage) out.add(t.gradStorage);
  }
}

/**
 * Dispose the tensors of `old` (a state that a step replaced) except those `current` still holds (a state updated
 * in place, like a GPT's key/value cache, comes back as the same tensors).
 */
export function disposeReplaced(old: unknown, current: unknown): void {
  const keep = new Set<Storage>();
  collect(current, keep);
  const done = new Set<Storage>();
  for (const t of tensorsIn(old)) {
    if (keep.has(t.storage) || done.has(t.storage)) continue;
    done.add(t.storage);
    t.dispose();
  }
}

/**
 * Run fn; free every storage made inside it except those of the tensors in its result (a tensor, or arrays, maps
 * and plain objects holding tensors), which pass to the enclosing scope.
 */
export function scope<T>(fn: () => T): T {
  const owned: Owned = new Map();
  stack.push(owned);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    stack.pop();
    for (const [s, be] of owned) be.free(s);
    throw e;
  }
  stack.pop();
  const keep = new Set<Storage>();
  collect(result, keep);
  const parent = stack.length > 0 ? stack[stack.length - 1] : null;
  for (const [s, be] of owned) {
    if (keep.has(s)) parent?.set(s, be);
    else {
      if (poison && be.sync) be.fill(s, NaN);
      be.free(s);
    }
  }
  return result;
}

/** Storages made and not yet freed in the open scopes (for tests). */
export function scopedCount(): number {
  let n = 0;
  for (const o of stack) n += o.size;
  return n;
}
