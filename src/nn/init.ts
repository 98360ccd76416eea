// Weight initialisers, with the Keras names and formulas so a model built here starts where the same Keras model
// would (in distribution; the draws come from charlm's own seeded Rng). A second scheme, "torch", starts where the
// same PyTorch modules would with their own defaults (see InitScheme).
//
// Shapes are (fanIn, fanOut) for kernels: a Dense kernel is (in, out), an LSTM input kernel (D, 4H), its
// recurrent kernel (H, 4H). Keras computes fans from the whole kernel, gates included, and so do we.

import type { MatmulOptions } from "../engine/backend.js";
import { getBackend } from "../engine/backends/index.js";
import { jsBackend } from "../engine/backends/js.js";
import type { Rng } from "../util/rng.js";

/**
 * How a new model's weights are drawn (the `init` training config field):
 *   keras: Embedding U(±0.05); Dense and recurrent input kernels glorot_uniform; recurrent kernels orthogonal;
 *          biases zero, except the LSTM forget gate's 1.
 *   torch: PyTorch's defaults. nn.Embedding N(0, 1); nn.LSTM/GRU/RNN every weight and bias U(±1/√H); nn.Linear
 *          weight and bias U(±1/√fan_in). PyTorch's LSTM and RNN have two bias vectors (b_ih, b_hh) where charlm has
 *          one, so charlm's is their sum (a triangular distribution on ±2/√H), as an imported PyTorch model's is.
 * The GPT model has one initialisation for both (nanoGPT's N(0, 0.02), residual projections scaled down).
 */
export type InitScheme = "keras" | "torch";
export const INIT_SCHEMES = ["keras", "torch"] as const;

/** zeros: all 0. */
export function zeros(size: number): Float32Array {
  return new Float32Array(size);
}

/** ones: all 1 (LayerNorm gain). */
export function ones(size: number): Float32Array {
  return new Float32Array(size).fill(1);
}

/** uniform(-limit, limit): Keras' Embedding default is RandomUniform(-0.05, 0.05). */
export function uniform(size: number, limit: number, rng: Rng): Float32Array {
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) out[i] = (2 * rng.random() - 1) * limit;
  return out;
}

/** normal: N(0, std²) (PyTorch's nn.Embedding default with std 1). */
export function normal(size: number, std: number, rng: Rng): Float32Array {
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) out[i] = std * rng.normal();
  return out;
}

/** The sum of two U(-limit, limit) vectors: one bias standing for PyTorch's b_ih + b_hh. */
export function uniformPair(size: number, limit: number, rng: Rng): Float32Array {
  const out = uniform(size, limit, rng);
  const second = uniform(size, limit, rng);
  for (let i = 0; i < size; i++) out[i] += second[i];
  return out;
}

/** glorot_uniform: U(-l, l) with l = sqrt(6 / (fanIn + fanOut)), for a (fanIn, fanOut) kernel. */
export function glorotUniform(fanIn: number, fanOut: number, rng: Rng): Float32Array {
  return uniform(fanIn * fanOut, Math.sqrt(6 / (fanIn + fanOut)), rng);
}

/**
 * orthogonal: a (rows, cols) matrix whose rows (if rows <= cols) or columns (otherwise) are orthonormal, times
 * `gain`. Keras draws a normal matrix and takes Q of its QR decomposition with signs fixed by diag(R); Gram-Schmidt
 * on the same draws gives that Q directly (its R has a positive diagonal). For an LSTM recurrent kernel (H, 4H) the
 * H rows are orthonormal vectors of length 4H.
 *
 * The work is O(n k²) (k = min, n = max of rows and cols): 4·10⁹ multiply-adds for a 1024-unit LSTM, 19 s in plain
 * JavaScript. So it is blocked: each block of 64 vectors is projected off all earlier ones with two matrix products
 * on the current backend (classical Gram-Schmidt, done twice: "twice is enough" for float32 orthogonality), then
 * orthonormalised within the block in float64. The backend's float32 products mean the last bits of the result
 * can differ between backends (same seed, same backend: same weights).
 */
export function orthogonal(rows: number, cols: number, rng: Rng, gain = 1): Float32Array {
  const k = Math.min(rows, cols);
  const n = Math.max(rows, cols);
  const v = new Float32Array(k * n); // vector j is v[j*n .. j*n+n)
  for (let i = 0; i < v.length; i++) v[i] = rng.normal();
  const BS = 64;
  const coef = new Float32Array(BS * k);
  const blk = new Float64Array(BS * n);
  for (let j0 = 0; j0 < k; j0 += BS) {
    const m = Math.min(BS, k - j0);
    const vj = v.subarray(j0 * n, (j0 + m) * n); // (m, n)
    if (j0 > 0) {
      const q = v.subarray(0, j0 * n); // (j0, n), orthonormal rows
      const c = coef.subarray(0, m * j0); // (m, j0)
      for (let pass = 0; pass < 2; pass++) {
        hostMatmul(vj, q, c, m, n, j0, { transB: true }); // c = vj qᵀ
        for (let i = 0; i < c.length; i++) c[i] = -c[i];
        hostMatmul(c, q, vj, m, j0, n, { accumulate: true }); // vj -= c q
      }
    }
    // Modified Gram-Schmidt inside the block, twice, in float64.
    for (let i = 0; i < m * n; i++) blk[i] = vj[i];
    for (let a = 0; a < m; a++) {
      const va = blk.subarray(a * n, (a + 1) * n);
      for (let pass = 0; pass < 2; pass++) {
        for (let p = 0; p < a; p++) {
          const vp = blk.subarray(p * n, (p + 1) * n);
          let dot = 0;
          for (let i = 0; i < n; i++) dot += va[i] * vp[i];
          for (let i = 0; i < n; i++) va[i] -= dot * vp[i];
        }
      }
      let norm = 0;
      for (let i = 0; i < n; i++) norm += va[i] * va[i];
      norm = Math.sqrt(norm);
      for (let i = 0; i < n; i++) va[i] /= norm;
    }
    for (let i = 0; i < m * n; i++) vj[i] = blk[i];
  }
  const out = new Float32Array(rows * cols);
  if (rows <= cols) {
    // Vectors are the rows.
    for (let i = 0; i < v.length; i++) out[i] = gain * v[i];
  } else {
    // Vectors are the columns: out[r][c] = v[c][r].
    for (let c = 0; c < cols; c++) for (let r = 0; r < rows; r++) out[r * cols + c] = gain * v[c * n + r];
  }
  return out;
}

/**
 * c (+)= op(a) op(b) on host arrays, on the current backend where its memory is in reach (wasm: fast for a 1024-unit
 * kernel), else with the js reference (a GPU backend: the weights then start as the js backend's would).
 */
function hostMatmul(
  a: Float32Array,
  b: Float32Array,
  c: Float32Array,
  M: number,
  K: number,
  N: number,
  o: MatmulOptions,
): void {
  const be = getBackend();
  if (!be.sync || be.adopt) return jsBackend.matmul(a, b, c, M, K, N, o);
  const [sa, sb, sc] = [be.alloc(a.length), be.alloc(b.length), be.alloc(M * N)];
  be.write(sa, a);
  be.write(sb, b);
  if (o.accumulate) be.write(sc, c.subarray(0, M * N));
  be.matmul(sa, sb, sc, M, K, N, o);
  c.set(be.view(sc));
  for (const s of [sa, sb, sc]) be.free(s);
}

/**
 * LSTM bias with Keras' unit_forget_bias: zeros except the forget-gate block (gate order i, f, g, o) set to 1, so
 * that early in training the cell keeps its memory instead of forgetting it (Jozefowicz et al., 2015).
 */
export function lstmBias(H: number): Float32Array {
  const b = new Float32Array(4 * H);
  b.fill(1, H, 2 * H);
  return b;
}
