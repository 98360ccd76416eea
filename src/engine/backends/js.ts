// The reference backend: plain loops, written to be read. Every other backend is tested against this one.
//
// Legend: M, K, N matrix sizes; B batch; T time; H hidden; G gate width (4H LSTM, 3H GRU, H RNN).
// Gate formulas are those in ../backend.ts; each kernel below follows them line by line.
//
// The matrix product uses the i-k-j loop order (the inner loop walks rows of B and C contiguously), cache tiles and
// four rows of C per load of B; docs/engine.md has the GFLOP/s measured.

import type {
  Backend,
  GruBackwardArgs as GruBackwardArgsOf,
  GruForwardArgs as GruForwardArgsOf,
  LstmBackwardArgs as LstmBackwardArgsOf,
  LstmForwardArgs as LstmForwardArgsOf,
  MatmulOptions,
  RnnBackwardArgs as RnnBackwardArgsOf,
  RnnForwardArgs as RnnForwardArgsOf,
} from "../backend.js";
import { checkMatmulBias } from "../backend.js";
import * as ops from "./js-ops.js";

// The js backend's storage is the Float32Array itself: alloc is `new Float32Array(n)`, a view is the array.
type LstmForwardArgs = LstmForwardArgsOf<Float32Array>;
type LstmBackwardArgs = LstmBackwardArgsOf<Float32Array>;
type GruForwardArgs = GruForwardArgsOf<Float32Array>;
type GruBackwardArgs = GruBackwardArgsOf<Float32Array>;
type RnnForwardArgs = RnnForwardArgsOf<Float32Array>;
type RnnBackwardArgs = RnnBackwardArgsOf<Float32Array>;

const KB = 128; // rows of B per tile
const JB = 256; // columns of B and C per tile

function matmul1(
  a: Float32Array,
  b: Float32Array,
  c: Float32Array,
  M: number,
  K: number,
  N: number,
  opts?: MatmulOptions,
): void {
  const transA = opts?.transA ?? false;
  const transB = opts?.transB ?? false;
  if (!opts?.accumulate) c.fill(0, 0, M * N);
  if (!transB) {
    // C[i, j0:j1] += A[i, k] * B[k, j0:j1]: the i-k-j order, so the inner loop walks a row of B and rows of C
    // contiguously. Tiled over k and j so that the tile of B (KB x JB floats, 128 KiB) stays in cache while the
    // rows of A pass over it, and four rows of C at a time share every load of B (twice the speed of one row).
    const sa = transA ? 1 : K; // A[i, k] = a[i * sa + k * sk]
    const sk = transA ? M : 1;
    for (let j0 = 0; j0 < N; j0 += JB) {
      const j1 = Math.min(N, j0 + JB);
      for (let k0 = 0; k0 < K; k0 += KB) {
        const k1 = Math.min(K, k0 + KB);
        let i = 0;
        for (; i + 4 <= M; i += 4) {
          const c0 = i * N;
          const c1 = c0 + N;
          const c2 = c1 + N;
          const c3 = c2 + N;
          for (let k = k0; k < k1; k++) {
            const ak = i * sa + k * sk;
            const a0 = a[ak];
            const a1 = a[ak + sa];
            const a2 = a[ak + 2 * sa];
            const a3 = a[ak + 3 * sa];
            const bk = k * N;
            for (let j = j0; j < j1; j++) {
              const bv = b[bk + j];
              c[c0 + j] += a0 * bv;
              c[c1 + j] += a1 * bv;
              c[c2 + j] += a2 * bv;
              c[c3 + j] += a3 * bv;
            }
          }
        }
        for (; i < M; i++) {
          const ci = i * N;
          for (let k = k0; k < k1; k++) {
            const aik = a[i * sa + k * sk];
            const bk = k * N;
            for (let j = j0; j < j1; j++) c[ci + j] += aik * b[bk + j];
          }
        }
      }
    }
  } else if (!transA) {
    // C[i, j] += dot(A[i, :], B[j, :])   (B stored (N, K): both rows contiguous; four rows of A share each row of B)
    let i = 0;
    for (; i + 4 <= M; i += 4) {
      const a0 = i * K;
      const a1 = a0 + K;
      const a2 = a1 + K;
      const a3 = a2 + K;
      for (let j = 0; j < N; j++) {
        const bj = j * K;
        let s0 = 0;
        let s1 = 0;
        let s2 = 0;
        let s3 = 0;
        for (let k = 0; k < K; k++) {
          const bv = b[bj + k];
          s0 += a[a0 + k] * bv;
          s1 += a[a1 + k] * bv;
          s2 += a[a2 + k] * bv;
          s3 += a[a3 + k] * bv;
        }
        c[i * N + j] += s0;
        c[(i + 1) * N + j] += s1;
        c[(i + 2) * N + j] += s2;
        c[(i + 3) * N + j] += s3;
      }
    }
    for (; i < M; i++) {
      const ai = i * K;
      const ci = i * N;
      for (let j = 0; j < N; j++) {
        const bj = j * K;
        let s = 0;
        for (let k = 0; k < K; k++) s += a[ai + k] * b[bj + k];
        c[ci + j] += s;
      }
    }
  } else {
    // C[i, j] += sum_k A[k, i] * B[j, k]   (both transposed; rare, kept simple)
    for (let k = 0; k < K; k++) {
      const ak = k * M;
      for (let i = 0; i < M; i++) {
        const aki = a[ak + i];
        if (aki === 0) continue;
        const ci = i * N;
        for (let j = 0; j < N; j++) c[ci + j] += aki * b[j * K + k];
      }
    }
  }
}

/** The batched form of the interface: `batch` triples one after another, from the given offsets. */
function matmul(
  a: Float32Array,
  b: Float32Array,
  c: Float32Array,
  M: number,
  K: number,
  N: number,
  opts: MatmulOptions = {},
): void {
  const batch = opts.batch ?? 1;
  const oa = opts.offsetA ?? 0;
  const ob = opts.offsetB ?? 0;
  const oc = opts.offsetC ?? 0;
  checkMatmulBias(N, opts);
  if (opts.bias) {
    // the product, then the same broadcast add as the backend's binary op
    matmul1(oa === 0 ? a : a.subarray(oa), ob === 0 ? b : b.subarray(ob), c, M, K, N, opts);
    ops.binary("add", c, [N, 1], opts.bias as Float32Array, [0, 1], c, [M, N]);
    return;
  }
  if (batch === 1 && oa === 0 && ob === 0 && oc === 0) return matmul1(a, b, c, M, K, N, opts);
  for (let p = 0; p < batch; p++) {
    matmul1(
      a.subarray(oa + p * M * K, oa + (p + 1) * M * K),
      b.subarray(ob + p * K * N, ob + (p + 1) * K * N),
      c.subarray(oc + p * M * N, oc + (p + 1) * M * N),
      M,
      K,
      N,
      opts,
    );
  }
}

function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

// ---------------------------------------------------------------------------------------------------------------
// LSTM

function lstmForward(p: LstmForwardArgs): void {
  const { T, B, H, xw, wh, h0, c0, hs, cs, gates } = p;
  const G = 4 * H;
  const BH = B * H;
  for (let t = 0; t < T; t++) {
    const hPrev = t === 0 ? h0 : hs.subarray((t - 1) * BH, t * BH);
    const cPrev = t === 0 ? c0 : cs.subarray((t - 1) * BH, t * BH);
    const a = gates.subarray(t * B * G, (t + 1) * B * G); // (B, 4H) pre-activations, then activations in place
    a.set(xw.subarray(t * B * G, (t + 1) * B * G));
    matmul1(hPrev, wh, a, B, H, G, { accumulate: true }); // a = xw_t + h_{t-1} Wh
    for (let bi = 0; bi < B; bi++) {
      const r = bi * G;
      const o = t * BH + bi * H;
      for (let j = 0; j < H; j++) {
        const ig = sigmoid(a[r + j]);
        const fg = sigmoid(a[r + H + j]);
        const gg = Math.tanh(a[r + 2 * H + j]);
        const og = sigmoid(a[r + 3 * H + j]);
        a[r + j] = ig;
        a[r + H + j] = fg;
        a[r + 2 * H + j] = gg;
        a[r + 3 * H + j] = og;
        const c = fg * cPrev[bi * H + j] + ig * gg; // c_t = f*c_{t-1} + i*g
        cs[o + j] = c;
        hs[o + j] = og * Math.tanh(c); // h_t = o*tanh(c_t)
      }
    }
  }
}

function lstmBackward(p: LstmBackwardArgs): void {
  const { T, B, H, wh, h0, c0, hs, cs, gates, dhs, dhT, dcT, dxw, dwh, dh0, dc0 } = p;
  const G = 4 * H;
  const BH = B * H;
  const dh = new Float32Array(BH); // dL/dh_t flowing back through the recurrence
  const dc = new Float32Array(BH); // dL/dc_t
  if (dhT) dh.set(dhT);
  if (dcT) dc.set(dcT);
  for (let t = T - 1; t >= 0; t--) {
    const cPrev = t === 0 ? c0 : cs.subarray((t - 1) * BH, t * BH);
    const a = gates.subarray(t * B * G, (t + 1) * B * G);
    const da = dxw.subarray(t * B * G, (t + 1) * B * G);
    for (let bi = 0; bi < B; bi++) {
      const r = bi * G;
      for (let j = 0; j < H; j++) {
        const k = bi * H + j;
        const ig = a[r + j];
        const fg = a[r + H + j];
        const gg = a[r + 2 * H + j];
        const og = a[r + 3 * H + j];
        const tc = Math.tanh(cs[t * BH + k]);
        const dht = dh[k] + dhs[t * BH + k];
        // h = o*tanh(c): do = dh*tanh(c); dc += dh*o*(1 - tanh²c)
        const dct = dc[k] + dht * og * (1 - tc * tc);
        // c = f*c_prev + i*g; gate pre-activations through σ' = s(1-s) and tanh' = 1-g²
        da[r + j] = dct * gg * ig * (1 - ig);
        da[r + H + j] = dct * cPrev[k] * fg * (1 - fg);
        da[r + 2 * H + j] = dct * ig * (1 - gg * gg);
        da[r + 3 * H + j] = dht * tc * og * (1 - og);
        dc[k] = dct * fg; // dc_{t-1}
      }
    }
    matmul1(da, wh, dh, B, G, H, { transB: true }); // dh_{t-1} = da Whᵀ
  }
  dh0.set(dh);
  dc0.set(dc);
  // dWh = Σ_t h_{t-1}ᵀ da_t, done as two big products: h0ᵀ da_0 + hs[0..T-2]ᵀ da[1..T-1]
  if (dwh) {
    matmul1(h0, dxw, dwh, H, B, G, { transA: true, accumulate: true });
    if (T > 1) matmul1(hs, dxw.subarray(B * G), dwh, H, (T - 1) * B, G, { transA: true, accumulate: true });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// GRU (reset-after form)

function gruForward(p: GruForwardArgs): void {
  const { T, B, H, xw, wh, bh, h0, hs, gates, hn } = p;
  const G = 3 * H;
  const BH = B * H;
  const hw = new Float32Array(B * G); // h_{t-1} Wh + bh, (B, 3H)
  for (let t = 0; t < T; t++) {
    const hPrev = t === 0 ? h0 : hs.subarray((t - 1) * BH, t * BH);
    for (let bi = 0; bi < B; bi++) hw.set(bh, bi * G);
    matmul1(hPrev, wh, hw, B, H, G, { accumulate: true });
    for (let bi = 0; bi < B; bi++) {
      const r0 = t * B * G + bi * G;
      const w0 = bi * G;
      for (let j = 0; j < H; j++) {
        const r = sigmoid(xw[r0 + j] + hw[w0 + j]); // r = σ(xw_r + h W_hr + b_hr)
        const z = sigmoid(xw[r0 + H + j] + hw[w0 + H + j]); // z = σ(xw_z + h W_hz + b_hz)
        const hnj = hw[w0 + 2 * H + j]; // h W_hn + b_hn
        const n = Math.tanh(xw[r0 + 2 * H + j] + r * hnj); // n = tanh(xw_n + r*(h W_hn + b_hn))
        gates[r0 + j] = r;
        gates[r0 + H + j] = z;
        gates[r0 + 2 * H + j] = n;
        hn[t * BH + bi * H + j] = hnj;
        hs[t * BH + bi * H + j] = (1 - z) * n + z * hPrev[bi * H + j]; // h = (1-z)*n + z*h_{t-1}
      }
    }
  }
}

function gruBackward(p: GruBackwardArgs): void {
  const { T, B, H, wh, h0, hs, gates, hn, dhs, dhT, dxw, dwh, dbh, dh0 } = p;
  const G = 3 * H;
  const BH = B * H;
  const dh = new Float32Array(BH);
  if (dhT) dh.set(dhT);
  const dhw = new Float32Array(T * B * G); // dL/d(h_{t-1} Wh + bh) for every t
  for (let t = T - 1; t >= 0; t--) {
    const hPrev = t === 0 ? h0 : hs.subarray((t - 1) * BH, t * BH);
    for (let bi = 0; bi < B; bi++) {
      const r0 = t * B * G + bi * G;
      for (let j = 0; j < H; j++) {
        const k = bi * H + j;
        const r = gates[r0 + j];
        const z = gates[r0 + H + j];
        const n = gates[r0 + 2 * H + j];
        const dht = dh[k] + dhs[t * BH + k];
        const dan = dht * (1 - z) * (1 - n * n); // through h = (1-z)n + z h_prev, n = tanh(·)
        const daz = dht * (hPrev[k] - n) * z * (1 - z);
        const dar = dan * hn[t * BH + k] * r * (1 - r);
        dxw[r0 + j] = dar;
        dxw[r0 + H + j] = daz;
        dxw[r0 + 2 * H + j] = dan;
        dhw[r0 + j] = dar;
        dhw[r0 + H + j] = daz;
        dhw[r0 + 2 * H + j] = dan * r; // n sees r*(h W_hn + b_hn)
        dh[k] = dht * z; // direct path of h_{t-1}; the Wh path is added below
      }
    }
    matmul1(dhw.subarray(t * B * G, (t + 1) * B * G), wh, dh, B, G, H, { transB: true, accumulate: true });
  }
  dh0.set(dh);
  // dWh = Σ_t h_{t-1}ᵀ dhw_t; dbh = Σ_{t,b} dhw
  if (dwh) {
    matmul1(h0, dhw, dwh, H, B, G, { transA: true, accumulate: true });
    if (T > 1) matmul1(hs, dhw.subarray(B * G), dwh, H, (T - 1) * B, G, { transA: true, accumulate: true });
  }
  for (let row = 0; row < T * B; row++) {
    if (dbh) for (let j = 0; j < G; j++) dbh[j] += dhw[row * G + j];
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Simple RNN (tanh)

function rnnForward(p: RnnForwardArgs): void {
  const { T, B, H, xw, wh, h0, hs } = p;
  const BH = B * H;
  for (let t = 0; t < T; t++) {
    const hPrev = t === 0 ? h0 : hs.subarray((t - 1) * BH, t * BH);
    const h = hs.subarray(t * BH, (t + 1) * BH);
    h.set(xw.subarray(t * BH, (t + 1) * BH));
    matmul1(hPrev, wh, h, B, H, H, { accumulate: true }); // xw_t + h_{t-1} Wh
    for (let k = 0; k < BH; k++) h[k] = Math.tanh(h[k]);
  }
}

function rnnBackward(p: RnnBackwardArgs): void {
  const { T, B, H, wh, h0, hs, dhs, dhT, dxw, dwh, dh0 } = p;
  const BH = B * H;
  const dh = new Float32Array(BH);
  if (dhT) dh.set(dhT);
  for (let t = T - 1; t >= 0; t--) {
    const da = dxw.subarray(t * BH, (t + 1) * BH);
    for (let k = 0; k < BH; k++) {
      const h = hs[t * BH + k];
      da[k] = (dh[k] + dhs[t * BH + k]) * (1 - h * h); // tanh' = 1 - h²
    }
    matmul1(da, wh, dh, B, H, H, { transB: true }); // dh_{t-1} = da Whᵀ
  }
  dh0.set(dh);
  if (dwh) {
    matmul1(h0, dxw, dwh, H, B, H, { transA: true, accumulate: true });
    if (T > 1) matmul1(hs, dxw.subarray(BH), dwh, H, (T - 1) * B, H, { transA: true, accumulate: true });
  }
}

/** The reference backend. Its storage is plain Float32Arrays, so `view` is the array itself and `free` leaves it to
 * the garbage collector. */
export const jsBackend: Backend<Float32Array> = {
  name: "js",
  sync: true,
  alloc: (n) => new Float32Array(n),
  // NaN, so that a kernel reading a value it did not write shows in every test that runs on js
  allocUninit: (n) => new Float32Array(n).fill(NaN),
  free: () => {},
  adopt: (data) => data,
  write: (dst, src, offset = 0) => dst.set(src, offset),
  read: (src, offset = 0, n = src.length - offset) => Promise.resolve(src.slice(offset, offset + n)),
  view: (s) => s,
  copy: (src, srcOff, dst, dstOff, n) => dst.set(src.subarray(srcOff, srcOff + n), dstOff),
  fill: (dst, value, offset = 0, n = dst.length - offset) => void dst.fill(value, offset, offset + n),
  flush: () => Promise.resolve(),
  matmul,
  ...ops,
  lstmForward,
  lstmBackward,
  gruForward,
  gruBackward,
  rnnForward,
  rnnBackward,
};
