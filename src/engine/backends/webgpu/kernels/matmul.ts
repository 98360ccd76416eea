// The matrix product: C(M,N) = op(A)(M,K) · op(B)(K,N), or +=, for `batch` matrix triples at element offsets.
//
// Tiled: a workgroup of 16 x 16 threads owns a 64 x 64 tile of C, each thread 4 x 4 outputs spaced 16 apart (so
// that neighbouring threads write neighbouring columns). K is walked 16 at a time through workgroup memory; tiles
// are loaded so that neighbouring threads read neighbouring addresses whichever way A and B are stored. Each
// transpose combination is its own pipeline (the branches fold away). Edges are zero-padded in the tiles. Products
// with few output tiles and a long K are split along K (see matmul below). Products of at most THIN_ROWS rows take a
// thread per output instead (thinCode, stop 18), with the same arithmetic.
//
// 128 x 128 tiles: each thread 8 x 8 outputs, K walked 8 at a time (the same 8 KiB of workgroup memory): each value a
// thread reads from workgroup memory then serves 8 multiply-adds instead of 4. By default (CHARLM_WEBGPU_MATMUL unset
// or "auto") a product takes them, as vec4s (128v below, since stop 23), where both its sides span a tile and it fills
// the GPU with them: 256 workgroups or more, or split along K (see pickVariant). On an H200 at stop 13
// (bench/results/h200-stop13/) a recurrent step's large products ran 1.2-1.7x as fast with 128 tiles as with 64 (x·Wx,
// 25,600 x 512 x 2,048: 27.3 TFLOP/s against 18.7; its gradient dx 23.6 against 13.9; dWh 27.5 against 23.2), those of
// five shapes in 13.2-13.6 ms against 18.9, and whole training steps with these defaults against 64 tiles everywhere
// (and stop 9's step table), three rounds in turn: W2 at batch 256 710.6 k against 644.4 k char/s, the GPT 202.4 k
// against 169.2 k. With 128 tiles everywhere (the output layer's 65 columns too) W1 ran slower in a first call.
//
// CHARLM_WEBGPU_MATMUL=64 or 128 forces one size. 64v or 128v hold the tiles in workgroup memory as vec4s, each
// thread's outputs in runs of 4 neighbours, so that one read of workgroup memory brings 4 values. 64p or 128p load
// the next tiles' values from memory into registers before multiplying the current ones, so that those loads are in
// flight during the products. On the H200 128v and 128p came out on top in the second call's sweep of the large
// products (11.6 and 12.1 ms against 128's 13.2), 128v behind 128 in the first (14.7 against 13.6): the two calls
// disagree by more than the variants differ. 64d or 128d (stop 15) do both and hold two of each tile (16 KiB of
// workgroup memory for either size, WebGPU's default limit): the next tiles are stored into one while the products
// read the other, so one barrier separates the steps along K instead of two, and no thread waits at a barrier for
// the next tiles' loads. auto-128, auto-128v, auto-128p or auto-128d keeps auto's choice with that variant for the
// large products. Since stop 23 auto's large products take 128v: on the H200 (bench/results/h200-stop23) the large
// products of five shapes took 13.6 ms in 128v against 14.9 in 128 (128p 13.8, 128d 17.0), and whole training steps
// in three rounds in turn ran W2 at batch 256 at 741.4 k char/s against 728.7 k (0.52 of PyTorch's cuDNN against
// 0.51) and the GPT at 211.2 k against 202.4 k; W1 at batch 256 3.97 M against 3.95 M, at batch 64 1.69 M against
// 1.76 M, within that workload's spread of rounds (0.72-1.96 M). Every output is the same fma chain in k order in
// every variant, so they all give the same bits (tested).
//
// A bias (MatmulOptions.bias, the recurrent layers' input projections) is added to each output after its product.

import { checkMatmulBias, type MatmulOptions } from "../../../backend.js";
import { CharlmError } from "../../../../util/errors.js";
import { envSetting as env, type Buf, type GpuRuntime, type GpuStorage } from "../runtime.js";
import { addInOrder, each } from "./elementwise.js";

const VARIANTS = ["64", "128", "64v", "128v", "64p", "128p", "64d", "128d"];
const LARGE = ["128", "128v", "128p", "128d"];

/** The choices `charlm tune-gpu` times for this GPU's products (see tuneProducts): 64 everywhere, or auto's. */
export const TUNED_VARIANTS = ["64", "auto", "auto-128", "auto-128p", "auto-128d"] as const;
export type TunedVariant = (typeof TUNED_VARIANTS)[number];

let tunedVariant: TunedVariant | null = null;

/**
 * The products' variant for this process when CHARLM_WEBGPU_MATMUL is unset, as `charlm tune-gpu` measured it for
 * this GPU (the CLI loads its file), or null for the default (auto). Returns the one it replaces.
 */
export function useMatmulVariant(v: TunedVariant | null): TunedVariant | null {
  const before = tunedVariant;
  tunedVariant = v;
  return before;
}

interface Variant {
  T: 64 | 128;
  vec: boolean;
  prefetch: boolean;
  /** two buffers of workgroup memory: one barrier per step along K (implies vec and prefetch) */
  double: boolean;
  key: string;
}

/**
 * The product kernel's variant for a product of M x N outputs, `batch` of them, K long, with the transposes ta and
 * tb: its tile, whether it reads vec4s, whether it prefetches, whether it double-buffers, and its pipeline's key.
 * CHARLM_WEBGPU_MATMUL=64, 128, 64v, 128v, 64p, 128p, 64d or 128d forces one; "auto" (the default) takes 128 x 128
 * tiles where both M and N are at least 128 and the product then has 256 workgroups or more, or will be split along
 * K (batch 1, K at least 1,024: the split makes the workgroups); else 64 x 64. The 256: about two workgroups per
 * core of an H200 (132); with fewer, 64 x 64 tiles keep more cores busy. Those 128 x 128 tiles are 128v (vec4s)
 * since stop 23; "auto-128", "auto-128p" or "auto-128d": the same choice, with that variant for the large products
 * ("auto-128v" is auto). Exported for the tests and the benches.
 */
export function pickVariant(ta: boolean, tb: boolean, M: number, N: number, batch = 1, K = 0): Variant {
  let v = env("CHARLM_WEBGPU_MATMUL") || tunedVariant || "auto";
  const large = v === "auto" ? "128v" : v.startsWith("auto-") ? v.slice(5) : null;
  if (large ? !LARGE.includes(large) : !VARIANTS.includes(v))
    throw new CharlmError(
      `CHARLM_WEBGPU_MATMUL is "${v}"; use auto, 64, 128, 64v, 128v, 64p, 128p, 64d, 128d, auto-128, auto-128v, auto-128p or auto-128d, or unset it (auto)`,
    );
  if (large) {
    const wide = M >= 128 && N >= 128;
    const groups = Math.ceil(M / 128) * Math.ceil(N / 128) * batch;
    v = wide && (groups >= 256 || (batch === 1 && K >= 1024)) ? large : "64";
  }
  const T = v.startsWith("128") ? 128 : 64;
  const double = v.endsWith("d");
  const vec = v.endsWith("v") || double;
  const prefetch = v.endsWith("p") || double;
  const kind = double ? ".d" : `${vec ? ".v" : ""}${prefetch ? ".p" : ""}`;
  const key = `matmul${ta ? "T" : "N"}${tb ? "T" : "N"}${T === 64 ? "" : ".128"}${kind}`;
  return { T, vec, prefetch, double, key };
}

/**
 * WGSL: a product kernel's parameters (M, K, N, the offsets of A, B and C, accumulate, k per split) and what
 * workgroup z of its grid takes: batch entry z, or with split-K (pu(7) = k per split, batch 1) k in
 * [z·KS, (z+1)·KS), written to its own C (M, N).
 */
const PRODUCT_LETS = /* wgsl */ `let M = pu(0u); let K = pu(1u); let N = pu(2u);
  let accumulate = pu(6u) == 1u;
  let KS = pu(7u);
  let split = KS > 0u;
  let zb = select(wid.z, 0u, split);
  let aBase = pu(3u) + zb * M * K;
  let bBase = pu(4u) + zb * K * N;
  let cBase = pu(5u) + wid.z * M * N;
  let kBegin = select(0u, wid.z * KS, split);
  let kEnd = select(K, min(K, kBegin + KS), split);`;

/** The bindings from `first` on: the bias (when there is one), then the output c. */
function biasAndC(first: number, bias: boolean): string {
  const c = `var<storage, read_write> c: array<f32>;`;
  return bias
    ? `@group(0) @binding(${first}) var<storage, read> bias: array<f32>;\n@group(0) @binding(${first + 1}) ${c}`
    : `@group(0) @binding(${first}) ${c}`;
}

function code(
  transA: boolean,
  transB: boolean,
  T: 64 | 128,
  bias = false,
  vec = false,
  prefetch = false,
  double = false,
): string {
  // A(m, k) is a[m*K + k], or a[k*M + m] when stored transposed; B(k, n) is b[k*N + n] or b[n*K + k].
  // T x T outputs a workgroup, P x P a thread, K walked KB at a time: each thread loads 4 values of each tile.
  const P = T / 16;
  const KB = T === 64 ? 16 : 8;
  // vec: the tiles held as vec4 (4 neighbouring m, or n), a thread's outputs in runs of 4 (m = m0 + 4·(lid.y + 16i)
  // + r, likewise n), so that one read of workgroup memory brings 4 values; the same fma chains, as vec4 fmas.
  const V = P / 4; // vec4 runs per thread and dimension
  // double: two of each tile (16 KiB for either size), the next tiles stored into one while the products read the
  // other, so that one barrier per step along K separates them instead of two (`cur` the one read)
  const half = (KB * T) / 4; // vec4s in one tile
  const tiles = vec
    ? `var<workgroup> As: array<vec4<f32>, ${double ? 2 * half : half}>; // ${double ? "[2]" : ""}[k][m / 4], ${KB} x ${T / 4}
var<workgroup> Bs: array<vec4<f32>, ${double ? 2 * half : half}>; // ${double ? "[2]" : ""}[k][n / 4], ${KB} x ${T / 4}`
    : `var<workgroup> As: array<f32, ${KB * T}>; // [k][m], ${KB} x ${T}
var<workgroup> Bs: array<f32, ${KB * T}>; // [k][n], ${KB} x ${T}`;
  const put = (tile: string, k: string, i: string, v: string, at = "") =>
    vec ? `${tile}[${at}${k} * ${T / 4}u + ${i} / 4u][${i} % 4u] = ${v};` : `${tile}[${k} * ${T}u + ${i}] = ${v};`;
  const base = double ? `cur * ${half}u + ` : "";
  const products = vec
    ? `var ar: array<vec4<f32>, ${V}>;
      var br: array<vec4<f32>, ${V}>;
      for (var i = 0u; i < ${V}u; i++) {
        ar[i] = As[${base}kk * ${T / 4}u + lid.y + 16u * i];
        br[i] = Bs[${base}kk * ${T / 4}u + lid.x + 16u * i];
      }
      for (var i = 0u; i < ${V}u; i++) {
        for (var r = 0u; r < 4u; r++) {
          let av = vec4<f32>(ar[i][r]);
          for (var j = 0u; j < ${V}u; j++) { acc[(i * 4u + r) * ${V}u + j] = fma(av, br[j], acc[(i * 4u + r) * ${V}u + j]); }
        }
      }`
    : `var ar: array<f32, ${P}>;
      var br: array<f32, ${P}>;
      for (var i = 0u; i < ${P}u; i++) {
        ar[i] = As[kk * ${T}u + lid.y + 16u * i];
        br[i] = Bs[kk * ${T}u + lid.x + 16u * i];
      }
      for (var i = 0u; i < ${P}u; i++) {
        for (var j = 0u; j < ${P}u; j++) { acc[i * ${P}u + j] = fma(ar[i], br[j], acc[i * ${P}u + j]); }
      }`;
  // output (i, j) of the thread: its row and column, and its accumulator
  const mOf = vec ? `m0 + 4u * (lid.y + 16u * (i / 4u)) + i % 4u` : `m0 + lid.y + 16u * i`;
  const nOf = vec ? `n0 + 4u * (lid.x + 16u * (j / 4u)) + j % 4u` : `n0 + lid.x + 16u * j`;
  const out = vec ? `acc[i * ${V}u + j / 4u][j % 4u]` : `acc[i * ${P}u + j]`;
  // Thread tid's 4 slots l of each tile, e = tid + 256l: (ka, mm) in A's, (kb, nn) in B's, so that neighbouring
  // threads read neighbouring addresses whichever way A and B are stored
  const slots = `var mm: u32; var ka: u32;
      if (TA) { mm = e % ${T}u; ka = e / ${T}u; } else { ka = e % ${KB}u; mm = e / ${KB}u; }
      var nn: u32; var kb: u32;
      if (TB) { kb = e % ${KB}u; nn = e / ${KB}u; } else { nn = e % ${T}u; kb = e / ${T}u; }`;
  // The values of the tiles at k0 (zero past the edges), each slot's handed to keepA and keepB
  const loads = (k0: string, keepA: string, keepB: string) => `for (var l = 0u; l < 4u; l++) {
      let e = tid + l * 256u;
      ${slots}
      var av = 0.0;
      if (m0 + mm < M && ${k0} + ka < kEnd) {
        if (TA) { av = a[aBase + (${k0} + ka) * M + m0 + mm]; } else { av = a[aBase + (m0 + mm) * K + ${k0} + ka]; }
      }
      ${keepA}
      var bv = 0.0;
      if (n0 + nn < N && ${k0} + kb < kEnd) {
        if (TB) { bv = b[bBase + (n0 + nn) * K + ${k0} + kb]; } else { bv = b[bBase + (${k0} + kb) * N + n0 + nn]; }
      }
      ${keepB}
    }`;
  // The prefetched values (pa, pb) stored into the tiles, at element `at` of them (the double buffer's half)
  const store = (at = "") => `for (var l = 0u; l < 4u; l++) {
      let e = tid + l * 256u;
      ${slots}
      ${put("As", "ka", "mm", "pa[l]", at)}
      ${put("Bs", "kb", "nn", "pb[l]", at)}
    }`;
  // One buffer: at each step along K the tiles stored (loaded now, or a step ahead with prefetch), a barrier, the
  // products, a barrier
  function singleLoop(): string {
    return `for (var k0 = kBegin; k0 < kEnd; k0 += ${KB}u) {
    ${prefetch ? store() : loads("k0", put("As", "ka", "mm", "av"), put("Bs", "kb", "nn", "bv"))}
    workgroupBarrier();
    ${prefetch ? `if (k0 + ${KB}u < kEnd) {\n      ${loads(`k0 + ${KB}u`, "pa[l] = av;", "pb[l] = bv;")}\n    }` : ""}
    for (var kk = 0u; kk < ${KB}u; kk++) {
      ${products}
    }
    workgroupBarrier();
  }`;
  }
  // The double-buffered loop: the first tiles stored and a barrier; then at each step along K the next tiles'
  // values loaded into registers, the products of the current tiles, those values stored into the other buffer and
  // one barrier (a thread reaching the next step's stores has passed the barrier after everyone's last reads of
  // that buffer). The same products in the same order as the other variants.
  function doubleLoop(): string {
    return `var cur = 0u;
  ${store()}
  workgroupBarrier();
  for (var k0 = kBegin; k0 < kEnd; k0 += ${KB}u) {
    let more = k0 + ${KB}u < kEnd;
    if (more) {
      ${loads(`k0 + ${KB}u`, "pa[l] = av;", "pb[l] = bv;")}
    }
    for (var kk = 0u; kk < ${KB}u; kk++) {
      ${products}
    }
    if (more) {
      ${store(`(1u - cur) * ${half}u + `)}
    }
    workgroupBarrier();
    cur = 1u - cur;
  }`;
  }
  return /* wgsl */ `
const TA = ${transA};
const TB = ${transB};
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
${biasAndC(3, bias)}
${tiles}

@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  ${PRODUCT_LETS}
  let m0 = wid.y * ${T}u;
  let n0 = wid.x * ${T}u;
  let tid = lid.y * 16u + lid.x;
  var acc: array<${vec ? `vec4<f32>, ${P * V}` : `f32, ${P * P}`}>;
  ${prefetch ? `var pa: array<f32, 4>;\n  var pb: array<f32, 4>;\n  ${loads("kBegin", "pa[l] = av;", "pb[l] = bv;")}` : ""}
  ${double ? doubleLoop() : singleLoop()}
  for (var i = 0u; i < ${P}u; i++) {
    let m = ${mOf};
    for (var j = 0u; j < ${P}u; j++) {
      let n = ${nOf};
      if (m < M && n < N) {
        let idx = cBase + m * N + n;
        ${
          bias
            ? `c[idx] = ${out} + bias[n];`
            : `if (accumulate) { c[idx] = c[idx] + ${out}; } else { c[idx] = ${out}; }`
        }
      }
    }
  }
}`;
}

/**
 * Products with at most this many rows (M) take a thread per output (thinCode) instead of tiles: at batch 1 (a
 * generated character's products, a recurrent step's) a 64 x 64 tile computes 64 rows of which one is wanted.
 */
export const THIN_ROWS = 8;

/** Threads per workgroup of the thread-per-output kernel: more workgroups for the few outputs of a batch-1 product. */
const THIN_WG = 64;

/**
 * Whether an M x N product takes the thread-per-output kernel: M <= THIN_ROWS (and its threads within one row of
 * workgroups), unless CHARLM_WEBGPU_THIN=0.
 */
export function takesThin(M: number, N: number): boolean {
  return M <= THIN_ROWS && M * N <= 65535 * THIN_WG && env("CHARLM_WEBGPU_THIN") !== "0";
}

/**
 * A thread per output (m, n) of a product with few rows: the tile kernel's parameters, grid z (batch or split-K
 * part) and arithmetic, the fma chain in k order over the same k range, so the same bits as every tile variant. The
 * loads run 8 ahead of the fmas, so that a thread waits on memory once per 8 values of k rather than every one.
 */
function thinCode(transA: boolean, transB: boolean, bias: boolean): string {
  const A = (k: string) => (transA ? `a[aBase + (${k}) * M + m]` : `a[aBase + m * K + ${k}]`);
  const B = (k: string) => (transB ? `b[bBase + n * K + ${k}]` : `b[bBase + (${k}) * N + n]`);
  const lanes = Array.from({ length: 8 }, (_, e) => e);
  return /* wgsl */ `
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
${biasAndC(3, bias)}

@compute @workgroup_size(${THIN_WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  ${PRODUCT_LETS}
  let i = gid.x;
  if (i >= M * N) { return; }
  let m = i / N; let n = i % N;
  var k = kBegin;
  var acc = 0.0;
  for (; k + 8u <= kEnd; k += 8u) {
    ${lanes.map((e) => `let a${e} = ${A(`k + ${e}u`)}; let b${e} = ${B(`k + ${e}u`)};`).join("\n    ")}
    ${lanes.map((e) => `acc = fma(a${e}, b${e}, acc);`).join(" ")}
  }
  for (; k < kEnd; k++) { acc = fma(${A("k")}, ${B("k")}, acc); }
  let idx = cBase + m * N + n;
  ${bias ? "c[idx] = acc + bias[n];" : "if (accumulate) { c[idx] = c[idx] + acc; } else { c[idx] = acc; }"}
}`;
}

/** The product's pipeline key and code, and its workgroups along x and y: a thread per output or tiles. */
function productKernel(
  ta: boolean,
  tb: boolean,
  M: number,
  K: number,
  N: number,
  batch: number,
  bias: boolean,
): { key: string; code: () => string; groups: [number, number] } {
  if (takesThin(M, N)) {
    const key = `matmul${ta ? "T" : "N"}${tb ? "T" : "N"}.thin${bias ? ".bias" : ""}`;
    return { key, code: () => thinCode(ta, tb, bias), groups: [Math.ceil((M * N) / THIN_WG), 1] };
  }
  const { T, vec, prefetch, double, key } = pickVariant(ta, tb, M, N, batch, K);
  return {
    key: bias ? `${key}.bias` : key,
    code: () => code(ta, tb, T, bias, vec, prefetch, double),
    groups: [Math.ceil(N / T), Math.ceil(M / T)],
  };
}

/**
 * A product (batch 1) split along K into about `S` parts: part z = A[:, z·KS ..]·B[z·KS .., :] into a scratch
 * (parts, M, N), KS a multiple of 16. The caller adds the parts (in order, for the same bits run to run) and frees
 * the scratch. `matmul` splits this way; a recurrent step's product adds them in its gate kernel.
 */
export function matmulParts(
  rt: GpuRuntime,
  a: Buf,
  b: Buf,
  M: number,
  K: number,
  N: number,
  S: number,
  o?: Pick<MatmulOptions, "transA" | "transB" | "offsetA" | "offsetB">,
): { partial: GpuStorage; parts: number } {
  const ta = o?.transA ?? false;
  const tb = o?.transB ?? false;
  const { key, code, groups } = productKernel(ta, tb, M, K, N, 1, false);
  const KS = Math.max(16, Math.ceil(K / S / 16) * 16);
  const parts = Math.ceil(K / KS);
  const partial = rt.scratch(parts * M * N);
  rt.run(
    key,
    code,
    [a, b],
    [partial],
    [M, K, N, o?.offsetA ?? 0, o?.offsetB ?? 0, 0, 0, KS],
    [...groups, parts],
    () => `${M}x${K}x${N}`,
  );
  return { partial, parts };
}

/** A product's output tiles (of the size its variant takes, K long): how many workgroups it has unsplit. */
export function matmulTiles(M: number, N: number, K: number): number {
  const { T } = pickVariant(false, false, M, N, 1, K);
  return Math.ceil(N / T) * Math.ceil(M / T);
}

/**
 * The workgroups a product with few output tiles and a long K is split along K to reach. The stop-5 profile on an
 * H200 (bench/results/h200-stop5/run2-profile.txt) timed this kernel at ~10.5 TFLOP/s on 128 workgroups (LSTM 256's
 * weight gradients at batch 256, then split in 2 and 8), ~19.5 on 256 (LSTM 512's, unsplit) and 33.5 on 12,800 (a
 * forward projection): at ~128 workgroups most of the GPU's 132 cores hold one workgroup each, too few threads to
 * hide memory latency. The stop-9 sweep on the H200 (bench/gpu_kernels.ts) timed LSTM 256's and 512's weight
 * gradients at batch 64 and 256 at targets 64 to 2,048: 2,048 took 4.61 ms for all eight products, 1,024 4.70, 512
 * (the default at stops 7 and 8) 5.75 and 128 (before) 6.53; it is the default. CHARLM_WEBGPU_SPLITK=N sets it (1:
 * never split).
 */
function splitTarget(): number {
  const forced = Number(env("CHARLM_WEBGPU_SPLITK"));
  return Number.isInteger(forced) && forced >= 1 ? forced : 2048;
}

export function matmul(
  rt: GpuRuntime,
  a: Buf,
  b: Buf,
  c: Buf,
  M: number,
  K: number,
  N: number,
  o?: MatmulOptions,
): void {
  const ta = o?.transA ?? false;
  const tb = o?.transB ?? false;
  const batch = o?.batch ?? 1;
  if (M === 0 || N === 0 || batch === 0) return;
  checkMatmulBias(N, o);
  const bias = (o?.bias as Buf | undefined) ?? null;
  const { T: TILE } = pickVariant(ta, tb, M, N, batch, K);
  const tiles = Math.ceil(N / TILE) * Math.ceil(M / TILE);
  const offs = [o?.offsetA ?? 0, o?.offsetB ?? 0];
  // A weight gradient (H, T·B)·(T·B, G) has few output tiles and a long K: a few workgroups would walk thousands of
  // k each. Split K instead into S parts summed into a scratch (S, M, N), then add the parts in order (deterministic;
  // four parts loaded at a time, so that the adding threads do not wait on one load after another).
  const target = splitTarget();
  const S = batch === 1 && tiles < target && K >= 1024 ? Math.min(Math.ceil(target / tiles), Math.floor(K / 256)) : 1;
  if (S > 1) {
    const { partial, parts } = matmulParts(rt, a, b, M, K, N, S, o);
    // the parts added in order, then the bias (as the unsplit kernel: the product, then + bias)
    const decls = /* wgsl */ `
@group(0) @binding(1) var<storage, read> p: array<f32>;
${biasAndC(2, bias !== null)}`;
    const body = /* wgsl */ `
  var s = 0.0;
  var q = 0u;
  let n = pu(0u);
  ${addInOrder("s", "q", "pu(1u)", (q) => `p[${q} * n + i]`)}
  let at = pu(2u) + i;
  ${bias ? "c[at] = s + bias[i % pu(3u)];" : o?.accumulate ? "c[at] = c[at] + s;" : "c[at] = s;"}`;
    const partsKey = `matmul.parts.${bias ? "bias" : (o?.accumulate ?? false)}`;
    const partsReads = bias ? [partial, bias] : [partial];
    each(rt, partsKey, decls, body, partsReads, [c], [M * N, parts, o?.offsetC ?? 0, N]);
    rt.free(partial);
    return;
  }
  const kernel = productKernel(ta, tb, M, K, N, batch, bias !== null);
  rt.run(
    kernel.key,
    kernel.code,
    bias ? [a, b, bias] : [a, b],
    [c],
    [M, K, N, ...offs, o?.offsetC ?? 0, o?.accumulate ? 1 : 0, 0],
    [...kernel.groups, batch],
    () => `${M}x${K}x${N}`,
  );
}
