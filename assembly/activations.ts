// Vectorised exp, sigmoid and tanh on f32x4, for the gate nonlinearities of the recurrent kernels.
//
// exp(x): range reduction x = n·ln2 + r with n = round(x·log2 e), |r| <= ln2/2, ln2 split in a high part exact in
// float32 and a low correction (Cody-Waite) so that r is computed without cancellation; e^r by its Taylor series to
// degree 6 (truncation < 0.3466^7/7! = 1.2e-7 relative); 2^n built directly in the exponent bits.
// sigmoid(x) = 1 / (1 + e^-x): relative error stays ~2e-7 for every x.
// tanh(x): for |x| >= 0.35, sign(x)·(1 - 2/(e^{2|x|} + 1)) (|tanh| > 0.33 there, so the absolute error ~1e-7 is
// also small relative); near 0 that form cancels, so there tanh = u/(u + 2) with u = e^{2x} - 1 from its own Taylor
// series to degree 9 (|2x| < 0.7: truncation < 0.7^9/10! = 1.1e-8 relative).

const LOG2E: f32 = 1.4426950408889634;
const LN2_HI: f32 = 0.693359375; // 355/512, exact in float32
const LN2_LO: f32 = -2.1219444005469057e-4; // ln 2 - LN2_HI
const EXP_MAX: f32 = 88.3; // e^88.3 < FLT_MAX and n = 127 at most
const EXP_MIN: f32 = -87.3; // n >= -126 keeps 2^n a normal float
const TANH_SMALL: f32 = 0.35;
const ROUNDER: f32 = 12582912; // 1.5·2^23
const ROUNDER_BITS: i32 = 0x4b400000; // its bits: ROUNDER + n has the bits ROUNDER_BITS + n for |n| < 2^22

// @ts-ignore: decorator
@inline
export function vexp(x: v128): v128 {
  // pmax/pmin (one instruction each on x86, where wasm's min/max take several to order NaN and -0): a NaN x stays NaN
  x = f32x4.pmin(f32x4.pmax(x, f32x4.splat(EXP_MIN)), f32x4.splat(EXP_MAX));
  // n = x·log2 e rounded to the nearest integer, ties to even, by adding 1.5·2^23: the sum's last mantissa bits are
  // then n itself (|n| <= 128 here), read back as an integer below; the same n as f32x4.nearest, in one add
  const t = f32x4.add(f32x4.mul(x, f32x4.splat(LOG2E)), f32x4.splat(ROUNDER));
  const n = f32x4.sub(t, f32x4.splat(ROUNDER));
  let r = f32x4.sub(x, f32x4.mul(n, f32x4.splat(LN2_HI)));
  r = f32x4.sub(r, f32x4.mul(n, f32x4.splat(LN2_LO)));
  // 1 + r(1 + r/2(1 + r/3(1 + r/4(1 + r/5(1 + r/6)))))
  let p = f32x4.add(f32x4.splat(1), f32x4.mul(r, f32x4.splat(<f32>(1.0 / 6))));
  p = f32x4.add(f32x4.splat(1), f32x4.mul(f32x4.mul(r, f32x4.splat(<f32>(1.0 / 5))), p));
  p = f32x4.add(f32x4.splat(1), f32x4.mul(f32x4.mul(r, f32x4.splat(<f32>(1.0 / 4))), p));
  p = f32x4.add(f32x4.splat(1), f32x4.mul(f32x4.mul(r, f32x4.splat(<f32>(1.0 / 3))), p));
  p = f32x4.add(f32x4.splat(1), f32x4.mul(f32x4.mul(r, f32x4.splat(<f32>(1.0 / 2))), p));
  p = f32x4.add(f32x4.splat(1), f32x4.mul(r, p));
  const scale = i32x4.shl(i32x4.add(i32x4.sub(t, i32x4.splat(ROUNDER_BITS)), i32x4.splat(127)), 23);
  return f32x4.mul(p, scale);
}

// @ts-ignore: decorator
@inline
export function vsigmoid(x: v128): v128 {
  return f32x4.div(f32x4.splat(1), f32x4.add(f32x4.splat(1), vexp(f32x4.neg(x))));
}

// @ts-ignore: decorator
@inline
export function vtanh(x: v128): v128 {
  const ax = f32x4.abs(x);
  const sign = v128.and(x, i32x4.splat(0x80000000));
  // far from 0
  const e = vexp(f32x4.add(ax, ax));
  const far = f32x4.sub(f32x4.splat(1), f32x4.div(f32x4.splat(2), f32x4.add(e, f32x4.splat(1))));
  // near 0: u = expm1(2x) = v(1 + v/2(1 + v/3(... (1 + v/9))))
  const v = f32x4.add(x, x);
  let q = f32x4.add(f32x4.splat(1), f32x4.mul(v, f32x4.splat(<f32>(1.0 / 9))));
  q = f32x4.add(f32x4.splat(1), f32x4.mul(f32x4.mul(v, f32x4.splat(<f32>(1.0 / 8))), q));
  q = f32x4.add(f32x4.splat(1), f32x4.mul(f32x4.mul(v, f32x4.splat(<f32>(1.0 / 7))), q));
  q = f32x4.add(f32x4.splat(1), f32x4.mul(f32x4.mul(v, f32x4.splat(<f32>(1.0 / 6))), q));
  q = f32x4.add(f32x4.splat(1), f32x4.mul(f32x4.mul(v, f32x4.splat(<f32>(1.0 / 5))), q));
  q = f32x4.add(f32x4.splat(1), f32x4.mul(f32x4.mul(v, f32x4.splat(<f32>(1.0 / 4))), q));
  q = f32x4.add(f32x4.splat(1), f32x4.mul(f32x4.mul(v, f32x4.splat(<f32>(1.0 / 3))), q));
  q = f32x4.add(f32x4.splat(1), f32x4.mul(f32x4.mul(v, f32x4.splat(<f32>(1.0 / 2))), q));
  const u = f32x4.mul(v, q);
  const near = f32x4.div(u, f32x4.add(u, f32x4.splat(2)));
  return v128.bitselect(near, v128.or(far, sign), f32x4.lt(ax, f32x4.splat(TANH_SMALL)));
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
