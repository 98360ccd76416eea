// Shape helpers shared by the ops and their gradient rules: broadcasting (as strides) and axis arithmetic.

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

/** Row-major strides of a contiguous array of this shape. */
export function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let k = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    s[d] = k;
    k *= shape[d];
  }
  return s;
}

/**
 * How `inShape` is read when broadcast to `outShape` (NumPy rules: aligned on the right, a 1 or a missing axis
 * stretches): for each output axis, the input's element stride, 0 where it is broadcast.
 */
export function broadcastStrides(outShape: readonly number[], inShape: readonly number[]): number[] {
  const off = outShape.length - inShape.length;
  const own = contiguousStrides(inShape);
  const s = new Array<number>(outShape.length).fill(0);
  for (let i = 0; i < inShape.length; i++) s[off + i] = inShape[i] === 1 ? 0 : own[i];
  return s;
}
