// Single-precision matrix product on wasm SIMD (f32x4), in the Goto/BLIS layout.
//
// Legend: C(M,N) = op(A)(M,K) · op(B)(K,N). All pointers are byte addresses in linear memory, matrices row-major.
//
// Why this shape: V8 allocates 15 vector registers on x86-64 and wasm has no fused multiply-add (relaxed SIMD is not
// on in Node 20), so each k step of the micro-kernel costs one multiply and one add per accumulator. A 4x8 tile keeps
// 8 accumulators, 2 vectors of B and 1 broadcast of A live (11 registers: no spills). Both operands are packed:
//   - B into panels of NR columns, k-major: panel p holds B[k, p*NR .. p*NR+NR) for the k of the block, zero-padded
//     past N. `gemm` packs a (KC x NC) block at a time; `packB` packs a whole B once for `gemmPacked`, which the
//     recurrent kernels use to multiply by the same Wh at every step.
//   - A, per (MC x KC) block, into panels of MR rows, k-major: panel q holds A[q*MR .. q*MR+MR, k], zero-padded.
// Transposes are absorbed by the packing routines, so one micro-kernel serves all four variants. Padding means the
// kernel always computes whole tiles; edge tiles go through a small buffer and only the valid part reaches C.
// With fewer than MR rows (sampling, batch 1) packing costs as much as the product, so `gemmFewRows` streams B once.
//
// Blocking for the cache: a KC x NR panel of B (8 KiB) stays in L1 while it meets every MR-row panel of the packed
// MC x KC block of A (128 KiB, in L2); the KC x NC block of B (1 MiB) is read from L3.

export const MR: i32 = 4;
export const NR: i32 = 8;
const KC: i32 = 256;
const MC: i32 = 128;
const NC: i32 = 1024; // multiple of NR

// Scratch tile for edge tiles (MR x NR floats), in the static data segment. A global, not a constant: in the
// shared-memory build (scripts/build-wasm.mjs) several instances, one per thread, run on one memory, and each
// worker's instance points its own copy at a scratch of its own with `setTileScratch` (globals are per instance).
let tile: usize = memory.data(MR * NR * 4, 16);

/** Points this instance's edge-tile scratch at p (MR·NR floats, 16-byte aligned); used by worker threads. */
export function setTileScratch(p: usize): void {
  tile = p;
}

/** Floats of the edge-tile scratch each extra thread needs. */
export function tileScratchFloats(): i32 {
  return MR * NR;
}

/** Floats needed to hold B (K x N) packed into NR-column panels. */
export function packedBFloats(K: i32, N: i32): i32 {
  return K * ((N + NR - 1) / NR) * NR;
}

/** Floats of workspace `gemmPacked` needs for packing blocks of A. */
export function packAFloats(): i32 {
  return MC * KC;
}

/** Floats of workspace `gemm` needs: one packed (KC x NC) block of B, then one (MC x KC) block of A. */
export function gemmWorkspaceFloats(): i32 {
  return KC * NC + MC * KC;
}

/** Packs op(B) (K x N; stored (N, K) when transB) into NR-wide k-major panels at dst (panel stride K·NR). */
export function packB(b: usize, K: i32, N: i32, transB: bool, dst: usize): void {
  packBBlock(b, K, N, transB, 0, K, 0, N, dst);
}

// Packs rows k0..k0+kc, columns j0..j0+nc of op(B) into NR-wide k-major panels (panel stride kc·NR), zero-padded.
function packBBlock(b: usize, K: i32, N: i32, transB: bool, k0: i32, kc: i32, j0: i32, nc: i32, dst: usize): void {
  const np = (nc + NR - 1) / NR;
  for (let p = 0; p < np; p++) {
    const c0 = j0 + p * NR;
    const nr = min(NR, j0 + nc - c0);
    const out = dst + <usize>p * kc * NR * 4;
    if (!transB) {
      if (nr == NR) {
        for (let k = 0; k < kc; k++) {
          const src = b + (<usize>(k0 + k) * N + c0) * 4;
          const o = out + <usize>k * NR * 4;
          v128.store(o, v128.load(src));
          v128.store(o, v128.load(src, 16), 16);
        }
      } else {
        for (let k = 0; k < kc; k++) {
          const src = b + (<usize>(k0 + k) * N + c0) * 4;
          const o = out + <usize>k * NR * 4;
          for (let j = 0; j < NR; j++) store<f32>(o + j * 4, j < nr ? load<f32>(src + j * 4) : 0);
        }
      }
    } else {
      // B stored (N, K): column j of op(B) is row j of storage, contiguous in k.
      for (let j = 0; j < NR; j++) {
        const o = out + j * 4;
        if (j < nr) {
          const src = b + (<usize>(c0 + j) * K + k0) * 4;
          for (let k = 0; k < kc; k++) store<f32>(o + <usize>k * NR * 4, load<f32>(src + <usize>k * 4));
        } else {
          for (let k = 0; k < kc; k++) store<f32>(o + <usize>k * NR * 4, 0);
        }
      }
    }
  }
}

// Packs rows i0..i0+mc, columns k0..k0+kc of op(A) (stored (K, M) when transA) into MR-row k-major panels.
function packA(a: usize, M: i32, K: i32, transA: bool, i0: i32, mc: i32, k0: i32, kc: i32, dst: usize): void {
  const nq = (mc + MR - 1) / MR;
  for (let q = 0; q < nq; q++) {
    const r0 = i0 + q * MR;
    const mr = min(MR, i0 + mc - r0);
    const out = dst + (<usize>q * kc * MR) * 4;
    if (transA) {
      if (mr == MR) {
        for (let k = 0; k < kc; k++) {
          v128.store(out + (<usize>k * MR) * 4, v128.load(a + (<usize>(k0 + k) * M + r0) * 4));
        }
      } else {
        for (let k = 0; k < kc; k++) {
          const src = a + (<usize>(k0 + k) * M + r0) * 4;
          const o = out + (<usize>k * MR) * 4;
          for (let i = 0; i < MR; i++) store<f32>(o + i * 4, i < mr ? load<f32>(src + i * 4) : 0);
        }
      }
    } else if (mr == MR) {
      // Four rows of A, four k at a time: load a 4x4 block, transpose it in registers, store 4 k-columns.
      const s0 = a + (<usize>r0 * K + k0) * 4;
      const s1 = s0 + <usize>K * 4;
      const s2 = s1 + <usize>K * 4;
      const s3 = s2 + <usize>K * 4;
      const kb = kc & ~3;
      for (let k = 0; k < kb; k += 4) {
        const o = <usize>k * 4;
        const x0 = v128.load(s0 + o);
        const x1 = v128.load(s1 + o);
        const x2 = v128.load(s2 + o);
        const x3 = v128.load(s3 + o);
        const t0 = f32x4.shuffle(x0, x1, 0, 4, 1, 5); // a0k0 a1k0 a0k1 a1k1
        const t1 = f32x4.shuffle(x0, x1, 2, 6, 3, 7); // a0k2 a1k2 a0k3 a1k3
        const t2 = f32x4.shuffle(x2, x3, 0, 4, 1, 5);
        const t3 = f32x4.shuffle(x2, x3, 2, 6, 3, 7);
        const d = out + <usize>k * MR * 4;
        v128.store(d, f32x4.shuffle(t0, t2, 0, 1, 4, 5));
        v128.store(d, f32x4.shuffle(t0, t2, 2, 3, 6, 7), 16);
        v128.store(d, f32x4.shuffle(t1, t3, 0, 1, 4, 5), 32);
        v128.store(d, f32x4.shuffle(t1, t3, 2, 3, 6, 7), 48);
      }
      for (let k = kb; k < kc; k++) {
        const o = <usize>k * 4;
        const d = out + <usize>k * MR * 4;
        store<f32>(d, load<f32>(s0 + o));
        store<f32>(d, load<f32>(s1 + o), 4);
        store<f32>(d, load<f32>(s2 + o), 8);
        store<f32>(d, load<f32>(s3 + o), 12);
      }
    } else {
      for (let i = 0; i < MR; i++) {
        const o = out + i * 4;
        if (i < mr) {
          const src = a + (<usize>(r0 + i) * K + k0) * 4;
          for (let k = 0; k < kc; k++) store<f32>(o + (<usize>k * MR) * 4, load<f32>(src + (<usize>k) * 4));
        } else {
          for (let k = 0; k < kc; k++) store<f32>(o + (<usize>k * MR) * 4, 0);
        }
      }
    }
  }
}

// c + a·b. The build makes two modules from this source (scripts/build-wasm.mjs): with relaxed SIMD enabled this is
// one fused multiply-add (f32x4.relaxed_madd: fused where the CPU has FMA, so results can differ from the other
// build in the last bit), otherwise a multiply and an add. The constant is resolved at compile time.
// @ts-ignore: decorator
@inline
export function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(c, f32x4.mul(a, b));
}

// The 4x8 micro-kernel: C[0..4, 0..8] (+)= Apanel(kc x 4)^T · Bpanel(kc x 8). ldc in bytes.
// @inline so that the accumulators stay in registers of the caller's loop.
// @ts-ignore: decorator
@inline
function kernel4x8(kc: i32, ap: usize, bp: usize, c: usize, ldc: usize, acc: bool): void {
  let c00 = f32x4.splat(0);
  let c01 = f32x4.splat(0);
  let c10 = f32x4.splat(0);
  let c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0);
  let c21 = f32x4.splat(0);
  let c30 = f32x4.splat(0);
  let c31 = f32x4.splat(0);
  // Addresses are written `ap + 4`, not as the load's offset immediate (`load32_splat(ap, 4)`): with the immediate,
  // V8 kept a base register per offset alive across the loop and spilled them (3 reloads from the stack per step);
  // with explicit adds it recomputes each address with one `lea` and nothing spills: ~9% faster (Node 20, Zen 3).
  // Unrolling by two was slower (more live registers).
  for (let k = 0; k < kc; k++) {
    const b0 = v128.load(bp);
    const b1 = v128.load(bp + 16);
    let a = v128.load32_splat(ap);
    c00 = madd(a, b0, c00);
    c01 = madd(a, b1, c01);
    a = v128.load32_splat(ap + 4);
    c10 = madd(a, b0, c10);
    c11 = madd(a, b1, c11);
    a = v128.load32_splat(ap + 8);
    c20 = madd(a, b0, c20);
    c21 = madd(a, b1, c21);
    a = v128.load32_splat(ap + 12);
    c30 = madd(a, b0, c30);
    c31 = madd(a, b1, c31);
    ap += 16;
    bp += 32;
  }
  if (acc) {
    c00 = f32x4.add(c00, v128.load(c));
    c01 = f32x4.add(c01, v128.load(c, 16));
    c10 = f32x4.add(c10, v128.load(c + ldc));
    c11 = f32x4.add(c11, v128.load(c + ldc, 16));
    c20 = f32x4.add(c20, v128.load(c + 2 * ldc));
    c21 = f32x4.add(c21, v128.load(c + 2 * ldc, 16));
    c30 = f32x4.add(c30, v128.load(c + 3 * ldc));
    c31 = f32x4.add(c31, v128.load(c + 3 * ldc, 16));
  }
  v128.store(c, c00);
  v128.store(c, c01, 16);
  v128.store(c + ldc, c10);
  v128.store(c + ldc, c11, 16);
  v128.store(c + 2 * ldc, c20);
  v128.store(c + 2 * ldc, c21, 16);
  v128.store(c + 3 * ldc, c30);
  v128.store(c + 3 * ldc, c31, 16);
}

// One (mc x kc) block of packed A against nc columns of packed B (panels bp0 + p·pstride bytes), into C at c
// (row stride ldc bytes); mEdge/nEdge: rows/columns of C that exist from here on.
function macroKernel(
  kc: i32,
  mc: i32,
  nc: i32,
  ap0: usize,
  bp0: usize,
  pstride: usize,
  c: usize,
  ldc: usize,
  acc: bool,
): void {
  const np = (nc + NR - 1) / NR;
  const nq = (mc + MR - 1) / MR;
  for (let p = 0; p < np; p++) {
    const nr = min(NR, nc - p * NR);
    const bp = bp0 + <usize>p * pstride;
    for (let q = 0; q < nq; q++) {
      const mr = min(MR, mc - q * MR);
      const ap = ap0 + <usize>q * kc * MR * 4;
      const cp = c + <usize>q * MR * ldc + <usize>p * NR * 4;
      if (mr == MR && nr == NR) {
        kernel4x8(kc, ap, bp, cp, ldc, acc);
      } else {
        kernel4x8(kc, ap, bp, tile, NR * 4, false);
        for (let i = 0; i < mr; i++) {
          for (let j = 0; j < nr; j++) {
            const dst = cp + <usize>i * ldc + j * 4;
            const v = load<f32>(tile + (i * NR + j) * 4);
            store<f32>(dst, acc ? load<f32>(dst) + v : v);
          }
        }
      }
    }
  }
}

/**
 * C(M,N) (+)= op(A) · Bpacked, where Bpacked came from `packB(_, K, N, ...)`. ws: `packAFloats()` floats.
 * C has row stride N. Used by the recurrent kernels, which pack Wh once and multiply by it every step.
 */
export function gemmPacked(
  a: usize,
  transA: bool,
  bpk: usize,
  c: usize,
  M: i32,
  K: i32,
  N: i32,
  accumulate: bool,
  ws: usize,
): void {
  gemmPackedCols(a, transA, bpk, c, M, K, N, accumulate, ws, 0, N);
}

/**
 * Columns j0..j1 of the product `gemmPacked` computes (j0 a multiple of NR), so that threads can each take a block
 * of columns; every element is computed exactly as `gemmPacked` computes it, whatever the block.
 */
export function gemmPackedCols(
  a: usize,
  transA: bool,
  bpk: usize,
  c: usize,
  M: i32,
  K: i32,
  N: i32,
  accumulate: bool,
  ws: usize,
  j0: i32,
  j1: i32,
): void {
  if (M <= 0 || j1 <= j0) return;
  const ldc = <usize>N * 4;
  if (K <= 0) {
    if (!accumulate) {
      for (let i = 0; i < M; i++) memory.fill(c + <usize>i * ldc + <usize>j0 * 4, 0, <usize>(j1 - j0) * 4);
    }
    return;
  }
  const panels = bpk + <usize>(j0 / NR) * K * NR * 4; // the packed panels of columns j0..
  for (let k0 = 0; k0 < K; k0 += KC) {
    const kc = min(KC, K - k0);
    for (let i0 = 0; i0 < M; i0 += MC) {
      const mc = min(MC, M - i0);
      packA(a, M, K, transA, i0, mc, k0, kc, ws);
      const bp0 = panels + <usize>k0 * NR * 4;
      const cp = c + <usize>i0 * ldc + <usize>j0 * 4;
      macroKernel(kc, mc, j1 - j0, ws, bp0, <usize>K * NR * 4, cp, ldc, accumulate || k0 > 0);
    }
  }
}

/**
 * C(M,N) (+)= op(A)(M,K) · op(B)(K,N). ws: `gemmWorkspaceFloats()` floats.
 * B is packed a (KC x NC) block at a time (Goto's loop order: columns, then k, then rows), so the workspace stays
 * small and the packed block is still in cache when the micro-kernels read it.
 */
export function gemm(
  a: usize,
  b: usize,
  c: usize,
  M: i32,
  K: i32,
  N: i32,
  transA: bool,
  transB: bool,
  accumulate: bool,
  ws: usize,
): void {
  gemmBlock(a, b, c, M, K, N, transA, transB, accumulate, ws, 0, M, 0, N);
}

/**
 * Rows i0..i1 and columns j0..j1 of the product `gemm` computes (operands addressed as the whole matrices), so
 * threads can each take a block of C. Every element is computed exactly as `gemm` computes it (the same K blocks
 * in the same order, the same micro-kernel), whatever the block: a split result is bit-identical to an unsplit one.
 */
export function gemmBlock(
  a: usize,
  b: usize,
  c: usize,
  M: i32,
  K: i32,
  N: i32,
  transA: bool,
  transB: bool,
  accumulate: bool,
  ws: usize,
  i0: i32,
  i1: i32,
  j0: i32,
  j1: i32,
): void {
  if (i1 <= i0 || j1 <= j0) return;
  const ldc = <usize>N * 4;
  if (K <= 0) {
    if (!accumulate) {
      for (let i = i0; i < i1; i++) memory.fill(c + <usize>i * ldc + <usize>j0 * 4, 0, <usize>(j1 - j0) * 4);
    }
    return;
  }
  const wsA = ws + <usize>KC * NC * 4;
  for (let jb = j0; jb < j1; jb += NC) {
    const nc = min(NC, j1 - jb);
    for (let k0 = 0; k0 < K; k0 += KC) {
      const kc = min(KC, K - k0);
      packBBlock(b, K, N, transB, k0, kc, jb, nc, ws);
      for (let ib = i0; ib < i1; ib += MC) {
        const mc = min(MC, i1 - ib);
        packA(a, M, K, transA, ib, mc, k0, kc, wsA);
        const cp = c + <usize>ib * ldc + <usize>jb * 4;
        macroKernel(kc, mc, nc, wsA, ws, <usize>kc * NR * 4, cp, ldc, accumulate || k0 > 0);
      }
    }
  }
}

/**
 * C(M,N) (+)= A(M,K) · B(K,N), neither transposed, for a handful of rows (sampling: M = batch = 1).
 * Packing B would cost as much as the product itself here, so B is streamed once, row by row, in i-k-j order:
 * c[i, :] += a[i, k] · b[k, :] with the row of C (N floats) staying in L1. Four rows of B per pass over the row of C
 * (one load and one store of C per four multiply-adds, not per one): the loads and stores of C, not the arithmetic,
 * bounded the one-row-at-a-time loop. Each element still sums its k in order.
 */
export function gemmFewRows(a: usize, b: usize, c: usize, M: i32, K: i32, N: i32, accumulate: bool): void {
  const body = N & ~7;
  const ldc = <usize>N * 4;
  if (!accumulate) memory.fill(c, 0, <usize>M * ldc);
  const K4 = K & ~3;
  for (let i = 0; i < M; i++) {
    const ci = c + <usize>i * ldc;
    const ai = a + <usize>i * K * 4;
    for (let k = 0; k < K4; k += 4) {
      const s0 = load<f32>(ai + <usize>k * 4);
      const s1 = load<f32>(ai + <usize>k * 4, 4);
      const s2 = load<f32>(ai + <usize>k * 4, 8);
      const s3 = load<f32>(ai + <usize>k * 4, 12);
      const v0 = f32x4.splat(s0);
      const v1 = f32x4.splat(s1);
      const v2 = f32x4.splat(s2);
      const v3 = f32x4.splat(s3);
      const b0 = b + <usize>k * ldc;
      const b1 = b0 + ldc;
      const b2 = b1 + ldc;
      const b3 = b2 + ldc;
      for (let j = 0; j < body; j += 8) {
        const o = <usize>j * 4;
        let x = v128.load(ci + o);
        let y = v128.load(ci + o, 16);
        x = madd(v0, v128.load(b0 + o), x);
        y = madd(v0, v128.load(b0 + o, 16), y);
        x = madd(v1, v128.load(b1 + o), x);
        y = madd(v1, v128.load(b1 + o, 16), y);
        x = madd(v2, v128.load(b2 + o), x);
        y = madd(v2, v128.load(b2 + o, 16), y);
        x = madd(v3, v128.load(b3 + o), x);
        y = madd(v3, v128.load(b3 + o, 16), y);
        v128.store(ci + o, x);
        v128.store(ci + o, y, 16);
      }
      for (let j = body; j < N; j++) {
        const o = <usize>j * 4;
        let x = load<f32>(ci + o);
        x += s0 * load<f32>(b0 + o);
        x += s1 * load<f32>(b1 + o);
        x += s2 * load<f32>(b2 + o);
        x += s3 * load<f32>(b3 + o);
        store<f32>(ci + o, x);
      }
    }
    for (let k = K4; k < K; k++) {
      const s = load<f32>(ai + <usize>k * 4);
      const v = f32x4.splat(s);
      const bk = b + <usize>k * ldc;
      for (let j = 0; j < body; j += 8) {
        const o = <usize>j * 4;
        v128.store(ci + o, madd(v, v128.load(bk + o), v128.load(ci + o)));
        v128.store(ci + o, madd(v, v128.load(bk + o, 16), v128.load(ci + o, 16)), 16);
      }
      for (let j = body; j < N; j++) {
        const o = <usize>j * 4;
        store<f32>(ci + o, load<f32>(ci + o) + s * load<f32>(bk + o));
      }
    }
  }
}
