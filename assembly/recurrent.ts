// Whole-sequence LSTM, GRU and simple-RNN kernels (forward and backward) on wasm SIMD.
//
// Legend: T time steps, B batch, H hidden, G gate width (4H LSTM, 3H GRU, H RNN). Sequences are time-major, so
// step t is the (B, ·) slab at t*B*width. The JS side lays out every buffer in linear memory and passes addresses.
//
// Memory layout the JS side prepares (all float32, row-major):
//   hall = [h0 | h_0 .. h_{T-1}]  ((T+1)·B·H): h0 sits right before the outputs, so h_{t-1} of step t is slab t of
//          hall, and all of h_{-1} .. h_{T-2} form one contiguous (T·B, H) matrix for the dWh product.
//   call = [c0 | c_0 .. c_{T-1}]  (LSTM only), same idea.
//   gates: on entry to a forward kernel it holds xw (the input projections); the kernel adds h_{t-1} @ Wh in place
//          and replaces the pre-activations by the activations.
//   whp / whtp: Wh packed by `packB` as the B operand of h @ Wh (Wh as stored when B < MR, see recurrentProduct),
//          and Wh^T packed for dh @ Wh^T (backward).
//
// Per step the recurrent product runs through gemmPacked (Wh is packed once per sequence). In the backward pass the
// pre-activation gradients of all steps are kept (they are dxw) and dWh comes from ONE product afterwards:
// dWh += [h_{-1} .. h_{T-2}]^T (H, T·B) @ dgates (T·B, G), which runs at full GEMM speed instead of T small ones; the
// JS side runs it (src/engine/backends/wasm/kernels.ts), split over the threads like any product.
//
// Threads: the rows of a batch never meet in a recurrence, so every kernel takes a block of batch rows [b0, b1) and
// runs the whole sequence for those rows only; the JS side hands one block to each thread, and they run without
// meeting until the end of the sequence. A call with the whole batch instead shares each step's product by columns
// (share.ts). A row's numbers depend on neither (the products compute each element with the same code whatever the
// block, and whole-batch B picks the product's path), so every split gives the same bits.
//
// The pointwise gate math is written once for 4 lanes (the *4 functions); row tails shorter than 4 are gathered
// into a small scratch, run through the same code, and scattered back, so H need not be a multiple of 4.

import { vsigmoid, vtanh } from "./activations";
import { MR, gemmFewRows, gemmPacked } from "./gemm";
import { gemmPackedShared } from "./share";

const SLOTS: i32 = 16;
// SLOTS vectors for row tails. A global, not a constant: each worker thread's instance points it at a scratch of its
// own (setTileScratch), as the static one would be shared by every thread.
let tmp: usize = memory.data(SLOTS * 16, 16);

/** Points this instance's row-tail scratch at p (SLOTS·4 floats, 16-byte aligned); used by worker threads. */
export function setRowScratch(p: usize): void {
  tmp = p;
}

/** Floats of the row-tail scratch each extra thread needs. */
export function rowScratchFloats(): i32 {
  return SLOTS * 4;
}

// @ts-ignore: decorator
@inline
function slot(k: i32): usize {
  return tmp + <usize>k * 16;
}

function gather(k: i32, src: usize, rem: i32): usize {
  const s = slot(k);
  v128.store(s, f32x4.splat(0));
  memory.copy(s, src, <usize>rem * 4);
  return s;
}

function scatter(k: i32, dst: usize, rem: i32): void {
  memory.copy(dst, slot(k), <usize>rem * 4);
}

// @ts-ignore: decorator
@inline
function one(): v128 {
  return f32x4.splat(1);
}

// rows of h (·, K) @ Wh (K, N) added onto out: Wh packed by `packB`, or, when the whole batch B has fewer than MR
// rows (sampling), Wh as stored, since packing it would cost as much as the product. The choice follows the whole
// batch, not the block of rows, so that a row's numbers do not depend on how the batch is split.
function recurrentProduct(h: usize, wh: usize, out: usize, B: i32, rows: i32, K: i32, N: i32, ws: usize): void {
  if (B < MR) gemmFewRows(h, wh, out, rows, K, N, true);
  else stepProduct(h, wh, out, B, rows, K, N, true, ws);
}

// A per-step product on packed Wh: split by columns over the worker threads (share.ts) when this call has the whole
// batch (then no other thread runs a block of rows), else on this thread.
// @ts-ignore: decorator
@inline
function stepProduct(a: usize, wp: usize, c: usize, B: i32, rows: i32, K: i32, N: i32, acc: bool, ws: usize): void {
  if (rows == B) gemmPackedShared(a, false, wp, c, rows, K, N, acc, ws);
  else gemmPacked(a, false, wp, c, rows, K, N, acc, ws);
}

// ---------------------------------------------------------------------------------------------------------------
// LSTM  gates (i, f, g, o): i=σ(a_i) f=σ(a_f) g=tanh(a_g) o=σ(a_o); c_t = f*c_{t-1} + i*g; h_t = o*tanh(c_t)

// @ts-ignore: decorator
@inline
function lstmFwd4(pi: usize, pf: usize, pg: usize, po: usize, pcp: usize, pc: usize, ph: usize): void {
  const i = vsigmoid(v128.load(pi));
  const f = vsigmoid(v128.load(pf));
  const g = vtanh(v128.load(pg));
  const o = vsigmoid(v128.load(po));
  const c = f32x4.add(f32x4.mul(f, v128.load(pcp)), f32x4.mul(i, g));
  v128.store(pi, i);
  v128.store(pf, f);
  v128.store(pg, g);
  v128.store(po, o);
  v128.store(pc, c);
  v128.store(ph, f32x4.mul(o, vtanh(c)));
}

/** Rows b0 <= b < b1 of the batch, all T steps. ws: packAFloats() floats of this thread's own. */
export function lstmForward(
  T: i32,
  B: i32,
  H: i32,
  whp: usize,
  hall: usize,
  call: usize,
  gates: usize,
  ws: usize,
  b0: i32,
  b1: i32,
): void {
  const G = 4 * H;
  const hslab = <usize>B * H * 4;
  const gslab = <usize>B * G * 4;
  const body = H & ~3;
  const rem = H - body;
  for (let t = 0; t < T; t++) {
    const hp = hall + <usize>t * hslab;
    const cp = call + <usize>t * hslab;
    const hn = hp + hslab;
    const cn = cp + hslab;
    const gt = gates + <usize>t * gslab;
    // gates_t = xw_t + h_{t-1} @ Wh, rows b0..b1
    recurrentProduct(hp + <usize>b0 * H * 4, whp, gt + <usize>b0 * G * 4, B, b1 - b0, H, G, ws);
    for (let b = b0; b < b1; b++) {
      const gr = gt + <usize>b * G * 4;
      const row = <usize>b * H * 4;
      const H4 = <usize>H * 4;
      for (let j = 0; j < body; j += 4) {
        const o = <usize>j * 4;
        lstmFwd4(gr + o, gr + H4 + o, gr + 2 * H4 + o, gr + 3 * H4 + o, cp + row + o, cn + row + o, hn + row + o);
      }
      if (rem > 0) {
        const o = <usize>body * 4;
        const si = gather(0, gr + o, rem);
        const sf = gather(1, gr + H4 + o, rem);
        const sg = gather(2, gr + 2 * H4 + o, rem);
        const so = gather(3, gr + 3 * H4 + o, rem);
        const sc = gather(4, cp + row + o, rem);
        lstmFwd4(si, sf, sg, so, sc, slot(5), slot(6));
        scatter(0, gr + o, rem);
        scatter(1, gr + H4 + o, rem);
        scatter(2, gr + 2 * H4 + o, rem);
        scatter(3, gr + 3 * H4 + o, rem);
        scatter(5, cn + row + o, rem);
        scatter(6, hn + row + o, rem);
      }
    }
  }
}

// Backward of one step, 4 lanes. dh holds dL/dh_t arriving from step t+1 and dc holds dL/dc_t from step t+1;
// on return dc holds dL/dc_{t-1} and the four pre-activation gradients are in dxw.
// With dh_t = dhs_t + dh and tc = tanh(c_t):
//   do = dh_t·tc              da_o = do·o(1-o)
//   dc_t = dc + dh_t·o·(1-tc²)
//   da_i = dc_t·g·i(1-i)      da_g = dc_t·i·(1-g²)     da_f = dc_t·c_{t-1}·f(1-f)     dc_{t-1} = dc_t·f
// @ts-ignore: decorator
@inline
function lstmBwd4(
  pi: usize,
  pf: usize,
  pg: usize,
  po: usize,
  pc: usize,
  pcp: usize,
  pdhs: usize,
  pdh: usize,
  pdc: usize,
  qi: usize,
  qf: usize,
  qg: usize,
  qo: usize,
): void {
  const i = v128.load(pi);
  const f = v128.load(pf);
  const g = v128.load(pg);
  const o = v128.load(po);
  const tc = vtanh(v128.load(pc));
  const dh = f32x4.add(v128.load(pdhs), v128.load(pdh));
  const dc = f32x4.add(v128.load(pdc), f32x4.mul(f32x4.mul(dh, o), f32x4.sub(one(), f32x4.mul(tc, tc))));
  v128.store(qo, f32x4.mul(f32x4.mul(dh, tc), f32x4.mul(o, f32x4.sub(one(), o))));
  v128.store(qi, f32x4.mul(f32x4.mul(dc, g), f32x4.mul(i, f32x4.sub(one(), i))));
  v128.store(qg, f32x4.mul(f32x4.mul(dc, i), f32x4.sub(one(), f32x4.mul(g, g))));
  v128.store(qf, f32x4.mul(f32x4.mul(dc, v128.load(pcp)), f32x4.mul(f, f32x4.sub(one(), f))));
  v128.store(pdc, f32x4.mul(dc, f));
}

/**
 * Rows b0 <= b < b1 of the batch. dh, dc: (B, H), on entry the gradient on the final h and c (zeros if none), on
 * return dL/dh0 and dL/dc0. dxw: out (T, B, 4H). ws: packAFloats() floats of this thread's own.
 */
export function lstmBackward(
  T: i32,
  B: i32,
  H: i32,
  whtp: usize,
  hall: usize,
  call: usize,
  gates: usize,
  dhs: usize,
  dh: usize,
  dc: usize,
  dxw: usize,
  ws: usize,
  b0: i32,
  b1: i32,
): void {
  const G = 4 * H;
  const hslab = <usize>B * H * 4;
  const gslab = <usize>B * G * 4;
  const body = H & ~3;
  const rem = H - body;
  const H4 = <usize>H * 4;
  for (let t = T - 1; t >= 0; t--) {
    const cp = call + <usize>t * hslab;
    const cn = cp + hslab;
    const dht = dhs + <usize>t * hslab;
    const gt = gates + <usize>t * gslab;
    const dgt = dxw + <usize>t * gslab;
    for (let b = b0; b < b1; b++) {
      const gr = gt + <usize>b * G * 4;
      const dr = dgt + <usize>b * G * 4;
      const row = <usize>b * H * 4;
      for (let j = 0; j < body; j += 4) {
        const o = <usize>j * 4;
        lstmBwd4(
          gr + o,
          gr + H4 + o,
          gr + 2 * H4 + o,
          gr + 3 * H4 + o,
          cn + row + o,
          cp + row + o,
          dht + row + o,
          dh + row + o,
          dc + row + o,
          dr + o,
          dr + H4 + o,
          dr + 2 * H4 + o,
          dr + 3 * H4 + o,
        );
      }
      if (rem > 0) {
        const o = <usize>body * 4;
        lstmBwd4(
          gather(0, gr + o, rem),
          gather(1, gr + H4 + o, rem),
          gather(2, gr + 2 * H4 + o, rem),
          gather(3, gr + 3 * H4 + o, rem),
          gather(4, cn + row + o, rem),
          gather(5, cp + row + o, rem),
          gather(6, dht + row + o, rem),
          gather(7, dh + row + o, rem),
          gather(8, dc + row + o, rem),
          slot(9),
          slot(10),
          slot(11),
          slot(12),
        );
        scatter(8, dc + row + o, rem);
        scatter(9, dr + o, rem);
        scatter(10, dr + H4 + o, rem);
        scatter(11, dr + 2 * H4 + o, rem);
        scatter(12, dr + 3 * H4 + o, rem);
      }
    }
    // dh_{t-1} = da_t @ Wh^T, rows b0..b1
    stepProduct(dgt + <usize>b0 * G * 4, whtp, dh + <usize>b0 * H * 4, B, b1 - b0, G, H, false, ws);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// GRU  (r, z, n), reset-after: r=σ(xw_r + hh_r) z=σ(xw_z + hh_z) n=tanh(xw_n + r*hh_n); h = (1-z)*n + z*h_{t-1}
// with hh = h_{t-1} @ Wh + bh.

// @ts-ignore: decorator
@inline
function gruFwd4(
  pr: usize,
  pz: usize,
  pn: usize,
  phr: usize,
  phz: usize,
  phn: usize,
  php: usize,
  ph: usize,
  pkeep: usize,
): void {
  const r = vsigmoid(f32x4.add(v128.load(pr), v128.load(phr)));
  const z = vsigmoid(f32x4.add(v128.load(pz), v128.load(phz)));
  const hn = v128.load(phn);
  const n = vtanh(f32x4.add(v128.load(pn), f32x4.mul(r, hn)));
  const hp = v128.load(php);
  v128.store(pr, r);
  v128.store(pz, z);
  v128.store(pn, n);
  v128.store(pkeep, hn);
  v128.store(ph, f32x4.add(n, f32x4.mul(z, f32x4.sub(hp, n)))); // (1-z)n + z h_{t-1}
}

/** Rows b0 <= b < b1. hh: (B, 3H) scratch. hn: out (T, B, H), h_{t-1} @ W_hn + b_hn per step. ws: packAFloats(). */
export function gruForward(
  T: i32,
  B: i32,
  H: i32,
  whp: usize,
  bh: usize,
  hall: usize,
  gates: usize,
  hn: usize,
  hh: usize,
  ws: usize,
  b0: i32,
  b1: i32,
): void {
  const G = 3 * H;
  const hslab = <usize>B * H * 4;
  const gslab = <usize>B * G * 4;
  const body = H & ~3;
  const rem = H - body;
  const H4 = <usize>H * 4;
  for (let t = 0; t < T; t++) {
    const hp = hall + <usize>t * hslab;
    const hnext = hp + hslab;
    const gt = gates + <usize>t * gslab;
    const hnt = hn + <usize>t * hslab;
    for (let b = b0; b < b1; b++) memory.copy(hh + <usize>b * G * 4, bh, <usize>G * 4);
    // hh = h_{t-1} @ Wh + bh, rows b0..b1
    recurrentProduct(hp + <usize>b0 * H * 4, whp, hh + <usize>b0 * G * 4, B, b1 - b0, H, G, ws);
    for (let b = b0; b < b1; b++) {
      const gr = gt + <usize>b * G * 4;
      const hr = hh + <usize>b * G * 4;
      const row = <usize>b * H * 4;
      for (let j = 0; j < body; j += 4) {
        const o = <usize>j * 4;
        gruFwd4(gr + o, gr + H4 + o, gr + 2 * H4 + o, hr + o, hr + H4 + o, hr + 2 * H4 + o, hp + row + o, hnext + row + o, hnt + row + o);
      }
      if (rem > 0) {
        const o = <usize>body * 4;
        gruFwd4(
          gather(0, gr + o, rem),
          gather(1, gr + H4 + o, rem),
          gather(2, gr + 2 * H4 + o, rem),
          gather(3, hr + o, rem),
          gather(4, hr + H4 + o, rem),
          gather(5, hr + 2 * H4 + o, rem),
          gather(6, hp + row + o, rem),
          slot(7),
          slot(8),
        );
        scatter(0, gr + o, rem);
        scatter(1, gr + H4 + o, rem);
        scatter(2, gr + 2 * H4 + o, rem);
        scatter(7, hnext + row + o, rem);
        scatter(8, hnt + row + o, rem);
      }
    }
  }
}

// One step back, 4 lanes. With dh_t = dhs_t + dh:
//   dn = dh_t(1-z)   dz = dh_t(h_{t-1} - n)   da_n = dn(1-n²)   da_z = dz·z(1-z)   da_r = da_n·hn·r(1-r)
//   dxw = (da_r, da_z, da_n); dhh = (da_r, da_z, da_n·r); dh_{t-1} = dh_t·z + dhh @ Wh^T (the product added later)
// @ts-ignore: decorator
@inline
function gruBwd4(
  pr: usize,
  pz: usize,
  pn: usize,
  phn: usize,
  php: usize,
  pdhs: usize,
  pdh: usize,
  qr: usize,
  qz: usize,
  qn: usize,
  sn: usize,
): void {
  const r = v128.load(pr);
  const z = v128.load(pz);
  const n = v128.load(pn);
  const dh = f32x4.add(v128.load(pdhs), v128.load(pdh));
  const dan = f32x4.mul(f32x4.mul(dh, f32x4.sub(one(), z)), f32x4.sub(one(), f32x4.mul(n, n)));
  const daz = f32x4.mul(f32x4.mul(dh, f32x4.sub(v128.load(php), n)), f32x4.mul(z, f32x4.sub(one(), z)));
  const dar = f32x4.mul(f32x4.mul(dan, v128.load(phn)), f32x4.mul(r, f32x4.sub(one(), r)));
  v128.store(qr, dar);
  v128.store(qz, daz);
  v128.store(qn, dan);
  v128.store(sn, f32x4.mul(dan, r));
  v128.store(pdh, f32x4.mul(dh, z));
}

/**
 * Rows b0 <= b < b1. dh: (B, H), in: gradient on the final h (zeros if none), out: dL/dh0. dxw: out (T, B, 3H).
 * dhh: out (T, B, 3H): the gradient w.r.t. h_{t-1} @ Wh + bh of every step (dWh and dbh follow from it, on the JS
 * side). ws: packAFloats() floats of this thread's own.
 */
export function gruBackward(
  T: i32,
  B: i32,
  H: i32,
  whtp: usize,
  hall: usize,
  gates: usize,
  hn: usize,
  dhs: usize,
  dh: usize,
  dxw: usize,
  dhh: usize,
  ws: usize,
  b0: i32,
  b1: i32,
): void {
  const G = 3 * H;
  const hslab = <usize>B * H * 4;
  const gslab = <usize>B * G * 4;
  const body = H & ~3;
  const rem = H - body;
  const H4 = <usize>H * 4;
  for (let t = T - 1; t >= 0; t--) {
    const hp = hall + <usize>t * hslab;
    const gt = gates + <usize>t * gslab;
    const dgt = dxw + <usize>t * gslab;
    const dst = dhh + <usize>t * gslab;
    const hnt = hn + <usize>t * hslab;
    const dht = dhs + <usize>t * hslab;
    for (let b = b0; b < b1; b++) {
      const gr = gt + <usize>b * G * 4;
      const dr = dgt + <usize>b * G * 4;
      const sr = dst + <usize>b * G * 4;
      const row = <usize>b * H * 4;
      for (let j = 0; j < body; j += 4) {
        const o = <usize>j * 4;
        gruBwd4(
          gr + o,
          gr + H4 + o,
          gr + 2 * H4 + o,
          hnt + row + o,
          hp + row + o,
          dht + row + o,
          dh + row + o,
          dr + o,
          dr + H4 + o,
          dr + 2 * H4 + o,
          sr + 2 * H4 + o,
        );
      }
      if (rem > 0) {
        const o = <usize>body * 4;
        gruBwd4(
          gather(0, gr + o, rem),
          gather(1, gr + H4 + o, rem),
          gather(2, gr + 2 * H4 + o, rem),
          gather(3, hnt + row + o, rem),
          gather(4, hp + row + o, rem),
          gather(5, dht + row + o, rem),
          gather(6, dh + row + o, rem),
          slot(7),
          slot(8),
          slot(9),
          slot(10),
        );
        scatter(6, dh + row + o, rem);
        scatter(7, dr + o, rem);
        scatter(8, dr + H4 + o, rem);
        scatter(9, dr + 2 * H4 + o, rem);
        scatter(10, sr + 2 * H4 + o, rem);
      }
      memory.copy(sr, dr, H4 * 2); // dhh_r, dhh_z equal dxw_r, dxw_z
    }
    // dh_{t-1} = dh_t·z + dhh_t @ Wh^T, rows b0..b1
    stepProduct(dst + <usize>b0 * G * 4, whtp, dh + <usize>b0 * H * 4, B, b1 - b0, G, H, true, ws);
  }
}

/** dst[j] += Σ_r src[r, j] over `rows` rows of G, in order of r (the GRU's dbh from dhh). */
export function addColumnSums(src: usize, rows: i32, G: i32, dst: usize): void {
  const gbody = G & ~3;
  for (let r = 0; r < rows; r++) {
    const row = src + <usize>r * G * 4;
    for (let j = 0; j < gbody; j += 4) {
      const o = <usize>j * 4;
      v128.store(dst + o, f32x4.add(v128.load(dst + o), v128.load(row + o)));
    }
    for (let j = gbody; j < G; j++) {
      const o = <usize>j * 4;
      store<f32>(dst + o, load<f32>(dst + o) + load<f32>(row + o));
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Simple RNN  h_t = tanh(xw_t + h_{t-1} @ Wh). On entry hall[1..T] holds xw.

/** Rows b0 <= b < b1 of the batch, all T steps. ws: packAFloats() floats of this thread's own. */
export function rnnForward(T: i32, B: i32, H: i32, whp: usize, hall: usize, ws: usize, b0: i32, b1: i32): void {
  const hslab = <usize>B * H * 4;
  const j0 = b0 * H; // the block's elements of a step's slab
  const j1 = b1 * H;
  const body = j0 + ((j1 - j0) & ~3);
  for (let t = 0; t < T; t++) {
    const hp = hall + <usize>t * hslab;
    const ht = hp + hslab;
    recurrentProduct(hp + <usize>j0 * 4, whp, ht + <usize>j0 * 4, B, b1 - b0, H, H, ws);
    for (let j = j0; j < body; j += 4) {
      const o = <usize>j * 4;
      v128.store(ht + o, vtanh(v128.load(ht + o)));
    }
    if (body < j1) {
      const o = <usize>body * 4;
      const s = gather(0, ht + o, j1 - body);
      v128.store(s, vtanh(v128.load(s)));
      scatter(0, ht + o, j1 - body);
    }
  }
}

/** Rows b0 <= b < b1. dh: in gradient on the final h (or zeros), out dL/dh0. dxw: out (T, B, H). ws: packAFloats(). */
export function rnnBackward(
  T: i32,
  B: i32,
  H: i32,
  whtp: usize,
  hall: usize,
  dhs: usize,
  dh: usize,
  dxw: usize,
  ws: usize,
  b0: i32,
  b1: i32,
): void {
  const hslab = <usize>B * H * 4;
  const j0 = b0 * H;
  const j1 = b1 * H;
  const body = j0 + ((j1 - j0) & ~3);
  for (let t = T - 1; t >= 0; t--) {
    const ht = hall + <usize>(t + 1) * hslab;
    const dht = dhs + <usize>t * hslab;
    const da = dxw + <usize>t * hslab;
    // da = (dhs_t + dh)(1 - h_t²)
    for (let j = j0; j < body; j += 4) {
      const o = <usize>j * 4;
      const h = v128.load(ht + o);
      const g = f32x4.add(v128.load(dht + o), v128.load(dh + o));
      v128.store(da + o, f32x4.mul(g, f32x4.sub(one(), f32x4.mul(h, h))));
    }
    for (let j = body; j < j1; j++) {
      const o = <usize>j * 4;
      const h = load<f32>(ht + o);
      store<f32>(da + o, (load<f32>(dht + o) + load<f32>(dh + o)) * (1 - h * h));
    }
    // dh_{t-1} = da_t @ Wh^T, rows b0..b1
    stepProduct(da + <usize>j0 * 4, whtp, dh + <usize>j0 * 4, B, b1 - b0, H, H, false, ws);
  }
}
