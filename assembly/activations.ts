// Vectorised exp, sigmoid and tanh on f32x4, for the gate nonlinearities of the recurrent kernels.
//
// exp(x): range reduction x = n·ln2 + r with n = round(x·log2 e), |r| <= ln2/2, ln2 split in a high part exact in
// float32 and a low correction (Cody-Waite) so that r is computed without cancellation; e^r by its Taylor series to
// degree 6 (truncation < 0.3466^7/7! = 1.2e-7 relative); 2^n built directly in the exponent bits.
// sigmoid(x) = 1 / (1 + e^-x): relative error stays ~2e-7 for every x.
// tanh(|x|) = u/(u + 2) with u = e^{2|x|} - 1 (then the sign of x), u taken through the same range reduction as
// exp: 2|x| = n·ln2 + r, u = 2^n(e^r - 1) + (2^n - 1), e^r - 1 from its Taylor series with no leading 1 (degree 7:
// truncation < 0.3466^7/8! = 1.5e-8 relative), so nothing cancels near 0 and one formula holds for every x (until
// stop 24, two: the far form 1 - 2/(e^{2|x|} + 1) and a series near 0, both computed for every lane).

const LOG2E: f32 = 1.4426950408889634;
const LN2_HI: f32 = 0.693359375; // 355/512, exact in float32
const LN2_LO: f32 = -2.1219444005469057e-4; // ln 2 - LN2_HI
const EXP_MAX: f32 = 88.3; // e^88.3 < FLT_MAX and n = 127 at most
const EXP_MIN: f32 = -87.3; // n >= -126 keeps 2^n a normal float
const TANH_YMAX: f32 = 40; // 2|x| past it changes nothing: tanh is 1 in float32 from |x| = 9.01 on
const ROUNDER: f32 = 12582912; // 1.5·2^23
const ROUNDER_BITS: i32 = 0x4b400000; // its bits: ROUNDER + n has the bits ROUNDER_BITS + n for |n| < 2^22

// x·log2 e + 1.5·2^23: x·log2 e rounded to the nearest integer n (ties to even) sits in the sum's last mantissa bits
// (|n| < 2^22), the same n as f32x4.nearest gives, in one add; vreduce and vpow2 read it from there.
// @ts-ignore: decorator
@inline
function vroundLog2(x: v128): v128 {
  return f32x4.add(f32x4.mul(x, f32x4.splat(LOG2E)), f32x4.splat(ROUNDER));
}

// r = x - n·ln2 for vroundLog2's t, ln 2 in two parts (Cody-Waite) so that r is exact.
// @ts-ignore: decorator
@inline
function vreduce(x: v128, t: v128): v128 {
  const n = f32x4.sub(t, f32x4.splat(ROUNDER));
  const r = f32x4.sub(x, f32x4.mul(n, f32x4.splat(LN2_HI)));
  return f32x4.sub(r, f32x4.mul(n, f32x4.splat(LN2_LO)));
}

// 2^n for vroundLog2's t: n plus the exponent bias, shifted into the exponent bits.
// @ts-ignore: decorator
@inline
function vpow2(t: v128): v128 {
  return i32x4.shl(i32x4.add(i32x4.sub(t, i32x4.splat(ROUNDER_BITS)), i32x4.splat(127)), 23);
}

// 1 + (r·k)·p: a step of vexpm1Taylor's Horner scheme (k = 1/j).
// @ts-ignore: decorator
@inline
function vhorner(r: v128, k: f32, p: v128): v128 {
  return f32x4.add(f32x4.splat(1), f32x4.mul(f32x4.mul(r, f32x4.splat(k)), p));
}

// e^r - 1 by its Taylor series to `degree` (6 or 7, a compile-time constant), r(1 + r/2(1 + r/3(... (1 + r/degree)))),
// with no leading 1 (nothing to cancel for small r).
// @ts-ignore: decorator
@inline
function vexpm1Taylor(r: v128, degree: i32): v128 {
  let p = f32x4.add(f32x4.splat(1), f32x4.mul(r, f32x4.splat(degree == 7 ? <f32>(1.0 / 7) : <f32>(1.0 / 6))));
  if (degree == 7) p = vhorner(r, <f32>(1.0 / 6), p);
  p = vhorner(r, <f32>(1.0 / 5), p);
  p = vhorner(r, <f32>(1.0 / 4), p);
  p = vhorner(r, <f32>(1.0 / 3), p);
  p = vhorner(r, <f32>(1.0 / 2), p);
  return f32x4.mul(r, p);
}

// @ts-ignore: decorator
@inline
export function vexp(x: v128): v128 {
  // pmax/pmin (one instruction each on x86, where wasm's min/max take several to order NaN and -0): a NaN x stays NaN
  x = f32x4.pmin(f32x4.pmax(x, f32x4.splat(EXP_MIN)), f32x4.splat(EXP_MAX));
  const t = vroundLog2(x);
  const r = vreduce(x, t);
  // e^r = 1 + (e^r - 1), the series to degree 6
  return f32x4.mul(f32x4.add(f32x4.splat(1), vexpm1Taylor(r, 6)), vpow2(t));
}

// @ts-ignore: decorator
@inline
export function vsigmoid(x: v128): v128 {
  return f32x4.div(f32x4.splat(1), f32x4.add(f32x4.splat(1), vexp(f32x4.neg(x))));
}

// @ts-ignore: decorator
@inline
export function vtanh(x: v128): v128 {
  const sign = v128.and(x, i32x4.splat(0x80000000));
  const ax = f32x4.abs(x);
  // y = 2|x|, at most TANH_YMAX; a NaN stays NaN (pmin keeps its first operand unless the second is smaller)
  const y = f32x4.pmin(f32x4.add(ax, ax), f32x4.splat(TANH_YMAX));
  // y = n·ln2 + r as in vexp, then e^r - 1 to degree 7, with no leading 1 to cancel
  const t = vroundLog2(y);
  const q = vexpm1Taylor(vreduce(y, t), 7);
  // u = e^y - 1 = 2^n·(e^r - 1) + (2^n - 1): 2^n - 1 >= 0 and exact; at n = 0, u = e^r - 1 itself
  const s = vpow2(t);
  const u = f32x4.add(f32x4.mul(s, q), f32x4.sub(s, f32x4.splat(1)));
  // tanh|x| = (e^y - 1)/(e^y + 1)
  return v128.or(f32x4.div(u, f32x4.add(u, f32x4.splat(2))), sign);
}

/** Scalar versions through the same vector code, so the tail of a row rounds exactly like its body. */
export function sigmoid1(x: f32): f32 {
  return f32x4.extract_lane(vsigmoid(f32x4.splat(x)), 0);
}

export function tanh1(x: f32): f32 {
  return f32x4.extract_lane(vtanh(f32x4.splat(x)), 0);
}

/** Test hooks: apply to n floats in place (used by test/wasm.test.ts to check accuracy over a sweep). */
export function sigmoidInPlace(p: usize, n: i32): void {
  for (let i = 0; i < n; i++) store<f32>(p + (<usize>i) * 4, sigmoid1(load<f32>(p + (<usize>i) * 4)));
}

export function tanhInPlace(p: usize, n: i32): void {
  for (let i = 0; i < n; i++) store<f32>(p + (<usize>i) * 4, tanh1(load<f32>(p + (<usize>i) * 4)));
}
