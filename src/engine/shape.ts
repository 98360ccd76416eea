// Shape helpers shared by the ops and their gradient rules: broadcasting plans and axis arithmetic.
//
// Broadcasting follows NumPy: shapes are aligned on the right, a dimension of 1 (or a missing one) stretches.
// A `Plan` says how an input's flat index follows from the output's flat index:
//   same  the input has the output's shape (index i -> i)
//   mod   the input is a trailing block repeated over the leading axes, like a bias (i -> i mod n)
//   map   anything else: an explicit index table (rare; costs one Int32Array of the output's size)

export type Plan = { kind: "same" } | { kind: "mod"; n: number } | { kind: "map"; idx: Int32Array };

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function fmtShape(s: readonly number[]): string {
  return `[${s.join(", ")}]`;
}

export function broadcastShape(a: readonly number[], b: readonly number[], op: string): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new Error(`${op}: shapes ${fmtShape(a)} and ${fmtShape(b)} do not broadcast`);
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/** How `inShape` is read when broadcast to `outShape`. */
export function broadcastPlan(outShape: readonly number[], inShape: readonly number[]): Plan {
  if (sameShape(outShape, inShape)) return { kind: "same" };
  const off = outShape.length - inShape.length;
  // mod: after dropping leading 1s the input equals the trailing dims of the output
  let first = 0;
  while (first < inShape.length && inShape[first] === 1) first++;
  let trailing = true;
  for (let i = first; i < inShape.length; i++) if (inShape[i] !== outShape[off + i]) trailing = false;
  if (trailing) {
    let n = 1;
    for (let i = first; i < inShape.length; i++) n *= inShape[i];
    return { kind: "mod", n };
  }
  // map: walk the output index like an odometer, keeping the input index in step
  const nd = outShape.length;
  const inStride = new Array<number>(nd).fill(0);
  let s = 1;
  for (let i = inShape.length - 1; i >= 0; i--) {
    inStride[off + i] = inShape[i] === 1 ? 0 : s;
    s *= inShape[i];
  }
  let size = 1;
  for (const d of outShape) size *= d;
  const idx = new Int32Array(size);
  const counter = new Array<number>(nd).fill(0);
  let j = 0;
  for (let i = 0; i < size; i++) {
    idx[i] = j;
    for (let d = nd - 1; d >= 0; d--) {
      counter[d]++;
      j += inStride[d];
      if (counter[d] < outShape[d]) break;
      j -= inStride[d] * outShape[d];
      counter[d] = 0;
    }
  }
  return { kind: "map", idx };
}

/** The input read at every output position (a copy unless the plan is `same`). */
export function expand(plan: Plan, data: Float32Array, outSize: number): Float32Array {
  if (plan.kind === "same") return data;
  const out = new Float32Array(outSize);
  if (plan.kind === "mod") {
    for (let i = 0; i < outSize; i += plan.n) out.set(data.subarray(0, plan.n), i);
  } else {
    const idx = plan.idx;
    for (let i = 0; i < outSize; i++) out[i] = data[idx[i]];
  }
  return out;
}

/** dst += src summed over the broadcast axes (the adjoint of expand). */
export function reduceInto(plan: Plan, src: Float32Array, dst: Float32Array, factor = 1): void {
  const size = src.length;
  if (plan.kind === "same") {
    for (let i = 0; i < size; i++) dst[i] += factor * src[i];
  } else if (plan.kind === "mod") {
    const n = plan.n;
    for (let r = 0; r < size; r += n) {
      for (let j = 0; j < n; j++) dst[j] += factor * src[r + j];
    }
  } else {
    const idx = plan.idx;
    for (let i = 0; i < size; i++) dst[idx[i]] += factor * src[i];
  }
}

/** Normalise a possibly negative axis. */
export function normAxis(axis: number, ndim: number, op: string): number {
  const a = axis < 0 ? axis + ndim : axis;
  if (!Number.isInteger(a) || a < 0 || a >= ndim) throw new Error(`${op}: axis ${axis} is out of range for ${ndim}-d`);
  return a;
}

/** [outer, n, inner]: the sizes before, at and after `axis` (so index = (o * n + i) * inner + j). */
export function axisSplit(shape: readonly number[], axis: number): [number, number, number] {
  let outer = 1;
  let inner = 1;
  for (let i = 0; i < axis; i++) outer *= shape[i];
  for (let i = axis + 1; i < shape.length; i++) inner *= shape[i];
  return [outer, shape[axis], inner];
}

/**
 * Swap axes a0 < a1 of a row-major array: shape [P, N0, Q, N1, R] -> [P, N1, Q, N0, R].
 * With accumulate, dst += the swapped src.
 */
export function swapAxes(
  src: Float32Array,
  shape: readonly number[],
  a0: number,
  a1: number,
  dst: Float32Array,
  accumulate: boolean,
): void {
  const [P] = axisSplit(shape, a0);
  const N0 = shape[a0];
  const N1 = shape[a1];
  let Q = 1;
  for (let i = a0 + 1; i < a1; i++) Q *= shape[i];
  const [, , R] = axisSplit(shape, a1);
  for (let p = 0; p < P; p++) {
    for (let i0 = 0; i0 < N0; i0++) {
      for (let q = 0; q < Q; q++) {
        for (let i1 = 0; i1 < N1; i1++) {
          const s = ((((p * N0 + i0) * Q + q) * N1 + i1) * R) | 0;
          const d = ((((p * N1 + i1) * Q + q) * N0 + i0) * R) | 0;
          if (accumulate) for (let r = 0; r < R; r++) dst[d + r] += src[s + r];
          else for (let r = 0; r < R; r++) dst[d + r] = src[s + r];
        }
      }
    }
  }
}
