// The recurrent layers over whole sequences: LSTM, GRU, RNN forward and backward.
//
// Legend: T time steps, B batch, H hidden units, G gate width (4H LSTM, 3H GRU, H RNN); sequences time-major.
//
// Each time step fuses the step's recurrent product with the gate math: a thread owns one (b, j) hidden unit and
// accumulates its gates' dot products (h_{t-1}[b, :] · Wh[:, gate j]) while the workgroup shares the slice of h_{t-1}
// it walks through workgroup memory; then it applies the nonlinearities and writes h_t, c_t and the gates. The
// backward step likewise fuses dh_t = dhs_t + da_{t+1} · Whᵀ with the gate derivatives (reading a transposed copy of
// Wh made once per call, so that neighbouring threads read neighbouring weights). The weight gradient is then one
// large product over all steps, dWh += [h0; h_0..h_{T-2}]ᵀ (H, T·B) · da (T·B, G), instead of T small ones, and dh0
// one more product.
//
// The time loop is encoded in one of three layouts (see Layout): a dispatch per step (the default), whose workgroups
// split the units, the batch rows and the dot products' length of that step; one dispatch for the whole sequence,
// whose workgroups each own a few batch rows and walk every step themselves (no launch per step, but each workgroup
// reads all of Wh at every step); or, per step, the product as a tiled matrix product (split along K) and then the
// gate math in a kernel of its own, which adds the product's parts.
//
// Formulas and gate orders are those of ../../backend.ts.

import type {
  GruBackwardArgs,
  GruForwardArgs,
  LstmBackwardArgs,
  LstmForwardArgs,
  RnnBackwardArgs,
  RnnForwardArgs,
} from "../../../backend.js";
import { CharlmError } from "../../../../util/errors.js";
import { envSetting as env, gridFor, WG, type Buf, type GpuRuntime, type GpuStorage } from "../runtime.js";
import { addInOrder, reduceTo, swapAxes } from "./elementwise.js";
import { matmul, matmulParts, matmulTiles } from "./matmul.js";

interface StepKernel {
  /** Bindings and helpers; must define fn src(t, b, k) -> f32, the row vector step t multiplies. */
  decls: string;
  /** Number of dot products per thread (gates sharing the row vector). */
  accs: number;
  /** Weight index for product `a` (0 ..) at row k for unit j, as WGSL. */
  w: (a: number) => string;
  /** After the products: acc[0 ..] hold them; b, j, bj = b·H + j, ho = (t·B + b)·H + j, t, T, B, H in scope. */
  epilogue: string;
}

/**
 * The epilogue of kernel `k` for unit `j` and batch row `b` (WGSL expressions), its acc[a] read from the thread's
 * acc[index(a)]; nothing past B or H is written.
 */
function epilogueAt(k: StepKernel, j: string, b: string, index: (a: number) => number): string {
  const e = k.epilogue.replace(/acc\[(\d+)\]/g, (_, a: string) => `acc[${index(Number(a))}]`);
  return `{
    let j = ${j};
    let b = ${b};
    if (b < B && j < H) {
      let bj = b * H + j;
      let ho = t * B * H + bj;
      ${e}
    }
  }`;
}

/**
 * How a kernel lays its threads out. "step": one dispatch per time step (params t, T, B, H, K; K = 0 skips the
 * product); a workgroup is 64/S threads along the units by 4 along the batch rows by S slices of the product's length
 * (S = 1, 2, 4, 8); each thread owns R rows (b = b0 + lid.y + 4r), so that every weight it loads serves R rows, and U
 * units (j0, j0 + 64/S, ...), whose weights share each row value it reads. "sequence": one dispatch for the whole
 * sequence (params -, T, B, H, K, skip the product at the last step, backward); a workgroup owns R batch rows and
 * every unit of them (j0 = jb + lid.x in blocks of 256) and walks the time steps itself, with a storage barrier
 * between steps: batch rows never meet, so no workgroup waits on another, and launch latency is paid once per layer
 * instead of once per step. "products": two dispatches per step, the step's product by the tiled matrix product
 * (kernels/matmul.ts; each thread 4 x 4 outputs, both operands staged in workgroup memory) split along K into S
 * parts, then a thread per (b, j) that adds the parts in order and runs the gate math (productGates); in one part,
 * one dispatch whose tiled product ends in the gate math (fusedProductCode).
 */
type Layout = "step" | "sequence" | "products";

/**
 * A fused kernel for one product + gate math. The k loop is unrolled by 4; a kernel with one product (the backward
 * steps, K = G) keeps 4 partial sums so that its multiply-adds do not wait on each other. Rows and partials are
 * unrolled at code generation (constant indices keep the accumulators in registers). The tile is zero past K and so
 * are the weights read there.
 */
function kernelCode(
  k: StepKernel,
  R: number,
  layout: Layout,
  S = 1,
  U = 1,
  stepWidth = 64,
  prefetch = false,
  ahead = false,
  vecTile = false,
): string {
  const seq = layout === "sequence";
  const pf = prefetch && !seq; // the prefetching step (step layout only)
  const W = seq ? 256 : stepWidth; // tile width in k (the step layout's: tileWidth)
  const X = 64 / S; // threads along the units ("step"; S slices of the product's length share the other threads)
  const rowOf = (r: number | string) => (seq ? `${r}` : `lid.y + 4u * ${r}`);
  const A = k.accs * U; // dot products per thread and row: accs for each of U units j0, j0 + X, ...
  const P = A === 1 ? 4 : 1; // partial sums per product
  const at = (p: number, r: number, a: number) => (p * R + r) * A + a;
  const range = (n: number) => Array.from({ length: n }, (_, i) => i);
  const guard = U > 1 ? " || j >= pu(3u)" : ""; // a thread's later units can lie past H
  // The prefetching step reads its weights without a branch (SwiftShader's compiler stalled on 32 guarded loads a
  // tile ahead): the index kept inside the array, then a select that zeros a weight past K (a pooled buffer's tail
  // holds whatever its last user left, NaN or infinities too, and fma(0, NaN, acc) is NaN). A unit past H reads
  // another unit's weights and is computed but never written.
  const branchFree = (a: number) => {
    const [, name, index] = /^(\w+)\[(.*)\]$/.exec(k.w(a))!;
    return `return select(0.0, ${name}[min(${index}, arrayLength(&${name}) - 1u)], k < pu(4u));`;
  };
  const weightFns = range(k.accs)
    .map((a) =>
      pf
        ? `fn weight${a}(k: u32, j: u32) -> f32 { ${branchFree(a)} }`
        : `fn weight${a}(k: u32, j: u32) -> f32 { if (k >= pu(4u)${guard}) { return 0.0; } return ${k.w(a)}; }`,
    )
    .join("\n");
  // Four values of k (kk + 0 .. 3) for every row, unit and product: the weights from `weightAt` (a load, or a
  // register the prefetching kernel filled before the tile's barrier), the row values from the tile.
  // vecTile: the tile held as vec4s of 4 neighbouring values of k, each row's 4 read at once (a uniform 128-bit read
  // of workgroup memory instead of four 32-bit ones); writes go to a vec4's component
  const put = (index: string, value: string) =>
    vecTile ? `tile[(${index}) / 4u][(${index}) % 4u] = ${value};` : `tile[${index}] = ${value};`;
  const fourK = (kk: string, weightAt: (a: number, v: number, u: number) => string) => {
    const blocks = range(4)
      .map((u) => {
        const loads = range(U).flatMap((v) => range(k.accs).map((a) => `let w${a}_${v} = ${weightAt(a, v, u)};`));
        const fmas = range(R).flatMap((r) => {
          const hv = vecTile ? `tv${r}.${"xyzw"[u]}` : `tile[(${rowOf(`${r}u`)}) * ${W}u + ${kk} + ${u}u]`;
          return range(U).flatMap((v) =>
            range(k.accs).map((a) => {
              const i = at(u % P, r, v * k.accs + a);
              return `acc[${i}] = fma(${hv}, w${a}_${v}, acc[${i}]);`;
            }),
          );
        });
        return `{ ${loads.join(" ")}\n          ${fmas.join("\n          ")} }`;
      })
      .join("\n        ");
    if (!vecTile) return blocks;
    // each row's 4 values of k read at once, in a block of their own (several of these follow one another)
    const rows = range(R).map((r) => `let tv${r} = tile[((${rowOf(`${r}u`)}) * ${W}u + ${kk}) / 4u];`);
    return `{ ${rows.join(" ")}\n        ${blocks} }`;
  };
  const body = fourK("kk", (a, v, u) => `weight${a}(k0 + kk + ${u}u, j0 + ${v * X}u)`);
  const combine =
    P === 1
      ? ""
      : range(R)
          .flatMap((r) =>
            range(A).map(
              (a) =>
                `acc[${at(0, r, a)}] += ${range(P - 1)
                  .map((p) => `acc[${at(p + 1, r, a)}]`)
                  .join(" + ")};`,
            ),
          )
          .join(" ");
  const epilogues = range(R)
    .flatMap((r) =>
      range(U).map((v) => epilogueAt(k, `j0 + ${v * X}u`, `b0 + ${rowOf(`${r}u`)}`, (a) => at(0, r, v * k.accs + a))),
    )
    .join("\n  ");
  // The product of the R rows' vectors with the weights of unit j, then the gate math: the body of one step. With S
  // slices (step layout), the threads of slice z = lid.z take k0 + [z, z + 1) · W/S of each tile; slices 1 .. S-1
  // then hand their partial sums to slice 0 through workgroup memory, in a fixed order (same bits run to run), and
  // slice 0 applies the gate math.
  const accN = A * R * P;
  const loadTile = seq
    ? `for (var r = 0u; r < ${R}u; r++) {
      let row = ${rowOf("r")};
      var sv = 0.0;
      if (b0 + row < B && k0 + lid.x < KD) { sv = src(t, b0 + row, k0 + lid.x); }
      ${put(`row * ${W}u + lid.x`, "sv")}
    }`
    : `let col = lid.z * ${X}u + lid.x;
    for (var r = 0u; r < ${R}u; r++) {
      let row = ${rowOf("r")};
      for (var cc = col; cc < ${W}u; cc += 64u) {
        var sv = 0.0;
        if (b0 + row < B && k0 + cc < KD) { sv = src(t, b0 + row, k0 + cc); }
        ${put(`row * ${W}u + cc`, "sv")}
      }
    }`;
  const kRange =
    S === 1
      ? `var kk = 0u; kk < ${W}u; kk += 4u`
      : `var kk = lid.z * ${W / S}u; kk < (lid.z + 1u) * ${W / S}u; kk += 4u`;
  const reduce =
    S === 1
      ? ""
      : `
  let slot = (lid.y * ${X}u + lid.x) * ${accN}u;
  for (var z = 1u; z < ${S}u; z++) {
    if (lid.z == z) {
      for (var i = 0u; i < ${accN}u; i++) {
        if (z == 1u) { part[slot + i] = acc[i]; } else { part[slot + i] += acc[i]; }
      }
    }
    workgroupBarrier();
  }
  if (lid.z == 0u) {
    for (var i = 0u; i < ${accN}u; i++) { acc[i] += part[slot + i]; }
  }`;
  // After the k loop: the slices' parts added, then the gate math of slice 0
  const finish = /* wgsl */ `${reduce}
  if (j0 < H${S === 1 ? "" : " && lid.z == 0u"}) {
  ${combine}
  ${epilogues}
  }`;
  const stepBody = pf
    ? prefetchBody()
    : /* wgsl */ `
  var acc = array<f32, ${accN}>();
  for (var k0 = 0u; k0 < KD; k0 += ${W}u) {
    ${loadTile}
    workgroupBarrier();
    if (j0 < H) {
      for (${kRange}) {
        ${body}
      }
    }
    workgroupBarrier();
  }${finish}`;
  // The prefetching step (CHARLM_WEBGPU_PREFETCH=1): a thread loads its share of the next tile of row values into
  // registers before it multiplies the current one, so that those loads are in flight during the products instead
  // of between two barriers; where the slice's weights for a tile fit 32 registers, it loads them likewise, a tile
  // ahead (the k loop then unrolled at code generation, so that they stay registers). Same products, same order.
  function prefetchBody(): string {
    const per = W / 64; // values of one row a thread loads per tile
    const NV = R * per;
    const span = W / S; // values of k one slice walks per tile
    const NW = span * A;
    const weightsAhead = NW <= 32;
    // ahead: where the tile's weights do not fit 32 registers, chunks of C values of k whose weights do (8 for
    // four products a unit), each chunk's loaded while the one before is multiplied
    const C = Math.min(span, 4 * Math.max(1, Math.floor(32 / (4 * A))));
    const chunked = ahead && !weightsAhead;
    const wIdx = (i: number, u: number, v: number, a: number) => ((i * 4 + u) * U + v) * k.accs + a;
    const fillTile = (k1: string) =>
      range(R)
        .flatMap((r) =>
          range(per).map(
            (c) => `nv[${r * per + c}] = tileValue(t, b0 + ${rowOf(`${r}u`)}, ${k1} + col + ${64 * c}u, B, KD);`,
          ),
        )
        .join(" ");
    const storeTile = range(R)
      .flatMap((r) =>
        range(per).map((c) => put(`(${rowOf(`${r}u`)}) * ${W}u + col + ${64 * c}u`, `nv[${r * per + c}]`)),
      )
      .join(" ");
    const fillWeights = (k1: string) =>
      range(span / 4)
        .flatMap((i) =>
          range(4).flatMap((u) =>
            range(U).flatMap((v) =>
              range(k.accs).map(
                (a) => `wn[${wIdx(i, u, v, a)}] = weight${a}(${k1} + kb + ${4 * i + u}u, j0 + ${v * X}u);`,
              ),
            ),
          ),
        )
        .join(" ");
    // the weights of C values of k from k = `at` on, into wn
    const fillChunk = (at: string) =>
      range(C / 4)
        .flatMap((i) =>
          range(4).flatMap((u) =>
            range(U).flatMap((v) =>
              range(k.accs).map((a) => `wn[${wIdx(i, u, v, a)}] = weight${a}(${at} + ${4 * i + u}u, j0 + ${v * X}u);`),
            ),
          ),
        )
        .join(" ");
    const products = weightsAhead
      ? range(span / 4)
          .map((i) => fourK(`kb + ${4 * i}u`, (a, v, u) => `wc${wIdx(i, u, v, a)}`))
          .join("\n        ")
      : chunked
        ? `for (var c = 0u; c < ${span}u; c += ${C}u) {
        let wc = wn;
        // the next chunk's weights: the rest of this tile's slice, then the next tile's first
        var kn = k1 + kb;
        if (c + ${C}u < ${span}u) { kn = k0 + kb + c + ${C}u; }
        ${fillChunk("kn")}
        ${range(C / 4)
          .map((i) => fourK(`kb + c + ${4 * i}u`, (a, v, u) => `wc[${wIdx(i, u, v, a)}]`))
          .join("\n        ")}
      }`
        : `for (${kRange}) {
        ${body}
      }`;
    return /* wgsl */ `
  var acc = array<f32, ${accN}>();
  let col = lid.z * ${X}u + lid.x;
  let kb = lid.z * ${span}u;
  var nv = array<f32, ${NV}>(); // this thread's share of the next tile
  ${fillTile("0u")}${
    weightsAhead
      ? `
  var wn = array<f32, ${NW}>(); // its weights for the next tile
  if (j0 < H) { ${fillWeights("0u")} }`
      : chunked
        ? `
  var wn = array<f32, ${C * A}>(); // its weights for the next chunk of k
  if (j0 < H) { ${fillChunk("kb")} }`
        : ""
  }
  for (var k0 = 0u; k0 < KD; k0 += ${W}u) {
    ${storeTile}${
      weightsAhead
        ? `\n    ${range(NW)
            .map((i) => `let wc${i} = wn[${i}];`)
            .join(" ")}`
        : ""
    }
    workgroupBarrier();
    let k1 = k0 + ${W}u;
    if (k1 < KD) {
      ${fillTile("k1")}${weightsAhead ? `\n      if (j0 < H) { ${fillWeights("k1")} }` : ""}
    }
    if (j0 < H) {
      ${products}
    }
    workgroupBarrier();
  }${finish}`;
  }
  const head = /* wgsl */ `
${k.decls}${
    pf
      ? `
fn tileValue(t: u32, b: u32, k: u32, B: u32, KD: u32) -> f32 { if (b < B && k < KD) { return src(t, b, k); } return 0.0; }`
      : ""
  }
${weightFns}
var<workgroup> tile: ${vecTile ? `array<vec4<f32>, ${((seq ? 1 : 4) * W * R) / 4}>` : `array<f32, ${(seq ? 1 : 4) * W * R}>`}; // [batch rows][${W} k]${
    S > 1 ? `\nvar<workgroup> part: array<f32, ${4 * X * accN}>; // [threads of one slice][partial sums]` : ""
  }`;
  if (!seq) {
    return /* wgsl */ `${head}
@compute @workgroup_size(${X}, 4, ${S})
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let t = pu(0u); let T = pu(1u); let B = pu(2u); let H = pu(3u); let KD = pu(4u);
  let j0 = wid.x * ${X * U}u + lid.x;
  let b0 = wid.y * ${4 * R}u;
  ${stepBody}
}`;
  }
  return /* wgsl */ `${head}
@compute @workgroup_size(256)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let T = pu(1u); let B = pu(2u); let H = pu(3u);
  let b0 = wid.x * ${R}u;
  for (var s = 0u; s < T; s++) {
    var t = s;
    if (pu(6u) == 1u) { t = T - 1u - s; }
    var KD = pu(4u);
    if (pu(5u) == 1u && t == T - 1u) { KD = 0u; }
    for (var jb = 0u; jb < H; jb += 256u) {
      let j0 = jb + lid.x;
      ${stepBody}
    }
    // this step's writes (h_t, or da_t) are the next step's row vectors, read by other threads of the workgroup
    storageBarrier();
  }
}`;
}

/**
 * The width in k of the step layout's tile of row vectors (the sequence layout's is 256): 64, of which each of the
 * S slices walks 64/S between two barriers. Wide tiles (see wideTiles) are 64·f wide, f the largest power of
 * two up to S whose tile (4R rows) fits 8 KiB of workgroup memory and that K fills past its half: each slice then
 * walks up to 64 k between barriers, and a step of K = 2,048 (an LSTM 512's backward) takes 4 tiles instead of 32,
 * so 8 barriers instead of 64 and more loads in flight between them. On the H200, LSTM 512's forward step at batch
 * 64 (2 rows, 4 slices) took 30.1 us with wide tiles and 35.8 without.
 */
function tileWidth(R: number, S: number, wide: boolean, K: number): number {
  let f = wide ? S : 1;
  // within 8 KiB, and no wider than K needs (a tile past K is zeros that every slice still walks)
  while (f > 1 && (4 * R * 64 * f > 2048 || 64 * (f / 2) >= K)) f /= 2;
  return 64 * f;
}

/** One step-layout kernel's settings, as CHARLM_WEBGPU_KERNELS gives them per kernel and shape. */
export interface StepSettings {
  rows: 1 | 2 | 4 | 8;
  slices: 1 | 2 | 4 | 8;
  units: 1 | 2 | 4;
  wide: boolean;
  prefetch: boolean;
  /**
   * With prefetch, where a tile's weights do not fit 32 registers (four products a unit over a slice of more than 8
   * values of k, as LSTM 512's forward step at batch 256): its weights in chunks that do, each chunk's loaded while
   * the one before is multiplied, instead of as the products go. Off where absent.
   */
  ahead?: boolean;
  /**
   * The "products" layout for this kernel and shape: the step's product as a tiled matrix product in `slices` parts
   * along K, then the gate math; in one part, rows 2 or 4 a thread of the fused kernel (units, wide and prefetch do
   * not apply).
   */
  products?: boolean;
}

let tuned: { text: string; table: Record<string, Partial<StepSettings>> } | null = null;

/**
 * CHARLM_WEBGPU_KERNELS: a JSON object from "lstmBackward H512 B64" (the kernel, its hidden units and batch) to the
 * settings its step kernels run with, the fastest measured on the GPU at hand (`bench/gpu_kernels.ts --table FILE`
 * writes it; export CHARLM_WEBGPU_KERNELS="$(cat FILE)"). The single settings (CHARLM_WEBGPU_ROWS, _SPLIT, _UNITS,
 * _WIDE, _PREFETCH) still win over it, and a shape it does not name takes useKernelTable's (charlm tune-gpu's), else
 * the H200's table below, else the rules.
 */
function tunedStep(key: string, B: number, H: number): Partial<StepSettings> {
  const shape = stepKey(key, H, B);
  const text = env("CHARLM_WEBGPU_KERNELS");
  if (!text) return loaded?.[shape] ?? MEASURED[shape] ?? {};
  if (tuned?.text !== text) {
    let table: unknown;
    try {
      table = JSON.parse(text);
    } catch {
      table = null;
    }
    if (typeof table !== "object" || table === null || Array.isArray(table))
      throw new CharlmError(
        'CHARLM_WEBGPU_KERNELS is not a JSON object of step settings; set it to what bench/gpu_kernels.ts --table wrote (export CHARLM_WEBGPU_KERNELS="$(cat FILE)") or unset it',
      );
    tuned = { text, table: table as Record<string, Partial<StepSettings>> };
  }
  return tuned.table[shape] ?? loaded?.[shape] ?? MEASURED[shape] ?? {};
}

/** A step kernel's key in a table of settings: "lstmBackward H512 B64". */
export function stepKey(kernel: string, H: number, B: number): string {
  return `${kernel} H${H} B${B}`;
}

let loaded: Record<string, Partial<StepSettings>> | null = null;

/**
 * Step settings per kernel and shape for this process, as CHARLM_WEBGPU_KERNELS takes them but set from code: what
 * `charlm tune-gpu` measured for this GPU (the CLI loads its file), or null to drop them. CHARLM_WEBGPU_KERNELS and
 * the single settings win over them; they win over the H200's table and the rules. Returns the table they replace.
 */
export function useKernelTable(
  table: Record<string, Partial<StepSettings>> | null,
): Record<string, Partial<StepSettings>> | null {
  const before = loaded;
  loaded = table;
  return before;
}

/** The environment variables that override a table of step settings (tuning refuses to run under them). */
export const STEP_SETTING_ENV = [
  "CHARLM_WEBGPU_ROWS",
  "CHARLM_WEBGPU_SPLIT",
  "CHARLM_WEBGPU_UNITS",
  "CHARLM_WEBGPU_WIDE",
  "CHARLM_WEBGPU_PREFETCH",
  "CHARLM_WEBGPU_AHEAD",
  "CHARLM_WEBGPU_VEC4",
  "CHARLM_WEBGPU_KERNELS",
];

/**
 * The fastest settings the H200 sweeps measured (bench/gpu_kernels.ts) for the shapes they timed: stop 9's
 * (bench/results/h200-stop9/kernels.json), with stop 13's (bench/results/h200-stop13) where its settings also ran
 * faster inside whole training steps (the profile: LSTM 256's backward step at batch 256 30.7 us against 32.5, at
 * batch 64 19.7 against 21.4) or were new (LSTM 512 at batch 32, the gpu preset's: forward 21.9 us against the
 * rules' 24.8, backward 29.0 against 38.3). Where a model has one of these shapes they win over the rules below,
 * which come within 8-9% of stop 9's on average but 19% off for LSTM 512's backward at batch 256. Stop 13's sweep
 * put the products layout first for LSTM 512's forward at batch 256 (59.4 us against 62.2), but inside whole steps
 * its two dispatches a step took 76.3 us against the step layout's 59.0: not taken. CHARLM_WEBGPU_KERNELS and the
 * single settings win over this table; run the sweep to tune another GPU or shape.
 */
const MEASURED: Record<string, StepSettings> = {
  "lstmForward H512 B64": { rows: 2, slices: 4, units: 1, wide: true, prefetch: true },
  "lstmBackward H512 B64": { rows: 4, slices: 4, units: 1, wide: true, prefetch: true },
  "lstmForward H512 B256": { rows: 4, slices: 2, units: 1, wide: true, prefetch: true },
  "lstmBackward H512 B256": { rows: 4, slices: 2, units: 1, wide: false, prefetch: true },
  "lstmForward H256 B256": { rows: 2, slices: 4, units: 1, wide: true, prefetch: true },
  "lstmBackward H256 B256": { rows: 4, slices: 4, units: 1, wide: true, prefetch: true },
  "lstmForward H256 B64": { rows: 2, slices: 8, units: 1, wide: false, prefetch: true },
  "lstmBackward H256 B64": { rows: 2, slices: 8, units: 1, wide: true, prefetch: true },
  "lstmForward H512 B32": { rows: 2, slices: 8, units: 1, wide: false, prefetch: true },
  "lstmBackward H512 B32": { rows: 2, slices: 8, units: 1, wide: true, prefetch: true },
};

// The step layout's rules, refitted at stop 9 to a sweep of every combination of settings on an NVIDIA H200
// (bench/gpu_kernels.ts; bench/results/h200-stop9/kernels.txt) for LSTM 256 and 512 at batch 64 and 256. They
// tell two kinds of step kernel apart. An LSTM's or GRU's forward step ("several products": each unit's four or
// three gates share the row value read) runs best with 128 workgroups' worth of rows per thread, slices up to 1,024
// (row, unit, slice) triples, wide tiles and no prefetching: its settings ran at 1.09x the fastest measured per
// shape on average (the rules before: 1.16x). The kernels with one product per unit (the backward steps, the
// RNN's forward) run best with 64 workgroups' worth of rows, slices up to 4,096, 2 units a thread, prefetching and
// narrow tiles: 1.08x the fastest (before: 1.67x, 1.9x slower at LSTM 512 batch 256). The RNN's forward is fitted
// by its kind, not measured. A table (CHARLM_WEBGPU_KERNELS) or a single setting overrides any of them.

/** One product per unit (a backward step, the RNN's forward) rather than several sharing a row value. */
const oneProduct = (k: StepKernel): boolean => k.accs === 1;

/** Wide tiles in the step layout (see tileWidth): the several-product kernels'; CHARLM_WEBGPU_WIDE=0|1 forces. */
function wideTiles(k: StepKernel, t: Partial<StepSettings>): boolean {
  const forced = env("CHARLM_WEBGPU_WIDE");
  if (forced) return forced === "1";
  return t.wide ?? !oneProduct(k);
}

/**
 * Prefetching: the step layout's kernels load the next tile (and, where they fit 32 registers, its weights) while
 * they multiply the current one. Between two barriers a step-layout thread otherwise waits for its tile's loads,
 * then for its weights' loads, then multiplies a few values: an LSTM 512's backward step does that 32 times per
 * dispatch at 8 slices. The one-product kernels' default (LSTM 512's backward at batch 256: 68.7 us a step with it,
 * 133.7 without, on the H200); CHARLM_WEBGPU_PREFETCH=0|1 forces.
 */
function prefetchTiles(k: StepKernel, t: Partial<StepSettings>): boolean {
  const forced = env("CHARLM_WEBGPU_PREFETCH");
  if (forced) return forced === "1";
  return t.prefetch ?? oneProduct(k);
}

/**
 * The prefetching kernels' weights a chunk of k ahead where a tile's do not fit 32 registers (StepSettings.ahead):
 * only where a table says so (not yet timed on a GPU); CHARLM_WEBGPU_AHEAD=0|1 forces.
 */
function weightsAhead(t: Partial<StepSettings>): boolean {
  const forced = env("CHARLM_WEBGPU_AHEAD");
  if (forced) return forced === "1";
  return t.ahead ?? false;
}

/**
 * The step and sequence layouts' tile of row values held as vec4s, so that a thread reads 4 values of k of a row at
 * once: a uniform read of workgroup memory (every thread of a warp reads the same row value) returns 32 bits a
 * thread per cycle on NVIDIA GPUs and 128 bits in two, so the backward steps, which read one row value per
 * multiply-add, read at twice the rate. The same products in the same order (the same bits). The default since stop
 * 23: on the H200 (bench/results/h200-stop23, three rounds in turn) whole training steps ran faster with it for W1
 * at batch 64 and 256 (1.94 M against 1.76 M char/s, 4.06 M against 3.95 M) and W2 at batch 64 (438.3 k against
 * 357.2 k), and the same for W2 at batch 256 (728.8 k against 728.7 k). CHARLM_WEBGPU_VEC4=0 turns it off.
 */
function vecTiles(): boolean {
  return env("CHARLM_WEBGPU_VEC4") !== "0";
}

/**
 * Rows per thread: the most (1, 2 or 4) that still leaves 128 workgroups of 64 units (64 for the one-product
 * kernels) to spread over the GPU's cores ("step"), or 1 ("sequence": the fastest of 1, 2, 4 and 8 on an H200).
 * CHARLM_WEBGPU_ROWS=1|2|4|8 forces it (tests cover every variant on small shapes). 8 rows in the step layout (not
 * yet timed on a GPU: the H200 sweep's LSTM 512 at batch 256 ran 1.8x as fast with 4 rows as with 1, 1.3x as with 2)
 * need 4 slices or more in the forward step, 2 or more in a backward step with 2 units: with fewer, their tile and
 * partial sums pass WebGPU's 16 KiB of workgroup memory and the kernel takes 4 (see stepSettings).
 */
function rowsPerThread(
  B: number,
  H: number,
  layout: Layout,
  t: Partial<StepSettings> = {},
  k: StepKernel | null = null,
): number {
  const forced = Number(env("CHARLM_WEBGPU_ROWS"));
  if (forced === 1 || forced === 2 || forced === 4 || forced === 8) return forced;
  if (layout === "sequence") return 1;
  if (t.rows === 1 || t.rows === 2 || t.rows === 4 || t.rows === 8) return t.rows;
  const groups = k && oneProduct(k) ? 64 : 128;
  let R = 4;
  while (R > 1 && Math.ceil(H / 64) * Math.ceil(B / (4 * R)) < groups) R /= 2;
  return R;
}

/**
 * Slices of the product's length per step-layout workgroup (1, 2, 4 or 8): each slice's threads sum a part of every
 * dot product and the workgroup adds the parts, so that a step of a small batch still fills the GPU with threads
 * (the step's product is B x H outputs, too few to hide memory latency with one thread each). The most slices that
 * keep the step's (row, unit, slice) triples, workgroups x 64/S units x R rows x U units, at most 1,024 (4,096 for
 * the one-product kernels). CHARLM_WEBGPU_SPLIT forces it.
 */
function slicesPerStep(k: StepKernel, B: number, H: number, R: number, U: number, t: Partial<StepSettings>): number {
  const forced = Number(env("CHARLM_WEBGPU_SPLIT")) || t.slices;
  if (forced === 1 || forced === 2 || forced === 4 || forced === 8) return forced;
  const most = oneProduct(k) ? 4096 : 1024;
  let S = 8;
  while (S > 1 && Math.ceil(H / ((64 / S) * U)) * Math.ceil(B / (4 * R)) * R * U > most) S /= 2;
  return S;
}

/**
 * Hidden units per thread in a step-layout kernel with one dot product per unit (the backward steps, whose product
 * runs over K = G, and the RNN's forward): 2 by default, so that each value of the row vector a thread reads from
 * workgroup memory serves 2 multiply-adds, as the four gates of an LSTM's forward step share theirs;
 * CHARLM_WEBGPU_UNITS=1|2|4 forces it. The kernels with several products per unit keep 1.
 */
function unitsPerThread(k: StepKernel, t: Partial<StepSettings>): number {
  if (!oneProduct(k)) return 1;
  const forced = Number(env("CHARLM_WEBGPU_UNITS")) || t.units;
  return forced === 1 || forced === 2 || forced === 4 ? forced : 2;
}

/**
 * How the time loop is encoded: CHARLM_WEBGPU_RECURRENT=step|sequence|products forces a layout (see Layout); unset
 * or "auto", the step layout, or the products layout where the table of step settings says so for the kernel and
 * shape (see timeLoop). On an H200 the step layout with sliced products trained LSTM 256 1.2x (batch 256) to 2.1x (batch
 * 64) as fast as the sequence layout, and 2 x LSTM 512 1.7x to 2.9x (docs/webgpu.md): a sequence-layout workgroup
 * walks every step on one core and reads all of Wh at each, while a step's dispatch spreads its product over the
 * whole GPU, and its launch (~5 us of host encoding per dispatch there) is not what bounds it. The sequence layout
 * stays for GPUs where launches cost more (untested: a browser's integrated GPU, say). A sequence of one step is
 * always a step.
 */
export function recurrentLayout(T: number): Layout {
  const v = env("CHARLM_WEBGPU_RECURRENT");
  if (v && !["auto", "step", "sequence", "products"].includes(v))
    throw new CharlmError(`CHARLM_WEBGPU_RECURRENT is "${v}"; use step, sequence, products or auto, or unset it`);
  if (v === "products") return "products";
  if (T <= 1) return "step";
  return v === "sequence" ? "sequence" : "step";
}

/** The step's product for the products layout: its row vectors (a buffer and the element offset of step t's) and weights. */
interface StepProduct {
  rows: (t: number) => [Buf, number];
  /** (K, accs·H): h_{t-1}·wh forward, da_{t+1}·whᵀ backward (whT stored (G, H)) */
  w: Buf;
}

/**
 * The time loop of one recurrent kernel: T dispatches of the step layout, one of the sequence layout, or T (one
 * part) or 2T of the products layout, whose product `product` describes. `K` is the
 * product's length; `backward` walks t from T-1 down and skips the product at the last step (nothing comes after it).
 */
function timeLoop(
  rt: GpuRuntime,
  key: string,
  k: StepKernel,
  reads: Buf[],
  writes: Buf[],
  dims: { T: number; B: number; H: number; K: number; backward: boolean },
  product: StepProduct,
): void {
  const { T, B, H, K, backward } = dims;
  const layout = recurrentLayout(T);
  const tuned = tunedStep(key, B, H);
  if (layout === "products" || (layout === "step" && productsByTable(tuned))) {
    const S = productParts(B, H, K, k.accs, tuned);
    productsLoop(rt, { key, k, reads, writes, ...dims }, product, S, productRows(tuned));
    return;
  }
  if (layout === "sequence") {
    const R = rowsPerThread(B, H, layout);
    const params = [0, T, B, H, K, backward ? 1 : 0, backward ? 1 : 0];
    const V = vecTiles();
    const seqKey = `${key}.seq.R${R}${V ? ".V" : ""}`;
    const code = () => kernelCode(k, R, layout, 1, 1, 64, false, false, V);
    rt.run(seqKey, code, reads, writes, params, [Math.ceil(B / R)]);
    return;
  }
  const { R, S, U, W, P, ahead } = stepSettings(k, B, H, K, tuned);
  const V = vecTiles();
  const groups = [Math.ceil(H / ((64 / S) * U)), Math.ceil(B / (4 * R))];
  const name = `${key}.R${R}${S > 1 ? `.S${S}` : ""}${U > 1 ? `.U${U}` : ""}${W > 64 ? `.W${W}` : ""}${P ? ".P" : ""}${ahead ? ".C" : ""}${V ? ".V" : ""}`;
  for (let s = 0; s < T; s++) {
    const t = backward ? T - 1 - s : s;
    const KD = backward && t === T - 1 ? 0 : K;
    rt.run(name, () => kernelCode(k, R, layout, S, U, W, P, ahead, V), reads, writes, [t, T, B, H, KD], groups);
  }
}

/** The products layout by a table's choice (CHARLM_WEBGPU_RECURRENT unset or auto; "step" keeps the step layout). */
function productsByTable(t: Partial<StepSettings>): boolean {
  const v = env("CHARLM_WEBGPU_RECURRENT");
  return t.products === true && (!v || v === "auto");
}

/**
 * The fused products kernel's rows per thread (one part only): 4 (64-row tiles), or 2 (32-row tiles, twice the
 * workgroups) where CHARLM_WEBGPU_ROWS or a products entry's rows say so.
 */
function productRows(t: Partial<StepSettings>): number {
  const forced = Number(env("CHARLM_WEBGPU_ROWS")) || (t.products ? t.rows : undefined);
  return forced === 2 ? 2 : 4;
}

/**
 * The products layout's parts along K (CHARLM_WEBGPU_SPLIT or a products entry's slices, else the rule): the fewest of 1,
 * 2, 4 and 8 that give the product 256 workgroups, each part at least 128 long. LSTM 512's forward at batch 256 has
 * 128 output tiles of 64 x 64 and takes 2 parts; its backward (K = 2,048, 32 tiles) takes 8.
 */
function productParts(B: number, H: number, K: number, accs: number, t: Partial<StepSettings>): number {
  // a table's slices are parts only in its products entries (elsewhere they are the step layout's)
  const forced = Number(env("CHARLM_WEBGPU_SPLIT")) || (t.products ? t.slices : undefined);
  if (forced === 1 || forced === 2 || forced === 4 || forced === 8) return forced;
  const tiles = matmulTiles(B, accs * H, K);
  let S = 1;
  while (S < 8 && tiles * S < 256 && K / (2 * S) >= 128) S *= 2;
  return S;
}

/** One recurrent kernel's call: its step kernel and key, bindings, sizes and direction. */
interface RecurrentCall {
  key: string;
  k: StepKernel;
  reads: Buf[];
  writes: Buf[];
  T: number;
  B: number;
  H: number;
  K: number;
  backward: boolean;
}

/**
 * The products layout (see Layout): per step, the product of its row vectors with the weights in S parts along K
 * (matmulParts: a scratch (S, B, accs·H) per step, from the pool), then productGates; in one part, fusedProductCode
 * alone, and so at the backward's last step, which has no product (K = 0: the fused kernel's k loop never runs).
 */
function productsLoop(rt: GpuRuntime, l: RecurrentCall, product: StepProduct, S: number, R: number): void {
  const { key, k, reads, writes, T, B, H, K, backward } = l;
  const NZ = k.accs * H;
  const fused = [Math.ceil(H / (oneProduct(k) ? 64 : 16)), Math.ceil(B / (16 * R))];
  for (let s = 0; s < T; s++) {
    const t = backward ? T - 1 - s : s;
    const KD = backward && t === T - 1 ? 0 : K;
    if (S === 1 || KD === 0) {
      // one part, or no product (its k loop then never runs): the product and the gates in one kernel
      rt.run(`${key}.fused.R${R}`, () => fusedProductCode(k, R), reads, writes, [t, T, B, H, KD], fused);
      continue;
    }
    const [a, offsetA] = product.rows(t);
    const { partial, parts } = matmulParts(rt, a, product.w, B, K, NZ, S, { offsetA });
    const zBinding = reads.length + writes.length + 1;
    const params = [t, T, B, H, KD, parts, NZ];
    rt.run(`${key}.gates`, () => productGates(k, zBinding), reads, [...writes, partial], params, gridFor(B * H));
    rt.free(partial);
  }
}

/**
 * The products layout in one part: the tiled product and the gate math in one kernel. A workgroup of 16 x 16
 * threads owns 16R batch rows (R = 4, or 2 for twice the workgroups) and 16 units' gates (64 units of a one-product
 * kernel); K is walked 16 at a time through workgroup memory as in kernels/matmul.ts, the row values from
 * src(t, b, k) and the weights from the step kernel's. A thread's outputs are R rows (b0 + y + 16i) by C columns: the accs gates of unit j0 + x, or (one
 * product) the units j0 + x + 16c, c < 4; then the epilogue for each of its (row, unit) pairs. Each thread loads
 * its share of the next tiles into registers before it multiplies the current ones (prefetching: on the H200 the
 * step layout's backward ran 1.9x as fast with it), so that those loads are in flight during the products.
 */
function fusedProductCode(k: StepKernel, R: number): string {
  const one = oneProduct(k);
  const TM = 16 * R; // batch rows a workgroup
  const C = one ? 4 : k.accs; // columns a thread
  const NC = 16 * C; // columns a workgroup: column c is gate c / 16 of unit j0 + c % 16, or unit j0 + c
  const AS = TM + 1; // the row tile's stride in k: 16 threads storing 16 values of k write 16 banks, not one
  const range = (n: number) => Array.from({ length: n }, (_, i) => i);
  const weightFns = range(k.accs)
    .map(
      (a) =>
        `fn weight${a}(k: u32, j: u32) -> f32 { if (k >= pu(4u) || j >= pu(3u)) { return 0.0; } return ${k.w(a)}; }`,
    )
    .join("\n");
  const column = one
    ? "return weight0(kg, j0 + c);"
    : `let j = j0 + c % 16u;
  ${range(k.accs)
    .map((a) => `if (c / 16u == ${a}u) { return weight${a}(kg, j); }`)
    .join("\n  ")}
  return 0.0;`;
  const epilogues = range(R)
    .flatMap((i) =>
      range(one ? C : 1).map((v) =>
        epilogueAt(k, `j0 + lid.x + ${16 * v}u`, `b0 + lid.y + ${16 * i}u`, (a) => i * C + (one ? v : a)),
      ),
    )
    .join("\n  ");
  return /* wgsl */ `
${k.decls}
${weightFns}
fn wcol(kg: u32, c: u32, j0: u32) -> f32 {
  ${column}
}
// value e of a tile of row vectors: row b0 + e / 16, k0 + e % 16 (neighbouring threads read neighbouring k)
fn rowValue(t: u32, b0: u32, k0: u32, e: u32, B: u32, KD: u32) -> f32 {
  let b = b0 + e / 16u;
  let k = k0 + e % 16u;
  if (b < B && k < KD) { return src(t, b, k); }
  return 0.0;
}
var<workgroup> As: array<f32, ${16 * AS}>; // [k][row], 16 x ${TM}, rows ${AS} apart (so that a tile's stores do not collide)
var<workgroup> Bs: array<f32, ${16 * NC}>; // [k][column], 16 x ${NC}
@compute @workgroup_size(16, 16)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
  let t = pu(0u); let T = pu(1u); let B = pu(2u); let H = pu(3u); let KD = pu(4u);
  let j0 = wid.x * ${one ? 64 : 16}u;
  let b0 = wid.y * ${TM}u;
  let tid = lid.y * 16u + lid.x;
  var acc: array<f32, ${R * C}>; // [row i][column c]
  // this thread's share of the next tiles, loaded before the current ones are multiplied (prefetching)
  var na: array<f32, ${R}>;
  var nb: array<f32, ${C}>;
  for (var l = 0u; l < ${R}u; l++) { na[l] = rowValue(t, b0, 0u, tid + l * 256u, B, KD); }
  for (var l = 0u; l < ${C}u; l++) {
    let e = tid + l * 256u;
    nb[l] = wcol(e / ${NC}u, e % ${NC}u, j0);
  }
  for (var k0 = 0u; k0 < KD; k0 += 16u) {
    for (var l = 0u; l < ${R}u; l++) {
      let e = tid + l * 256u;
      As[(e % 16u) * ${AS}u + e / 16u] = na[l];
    }
    for (var l = 0u; l < ${C}u; l++) { Bs[tid + l * 256u] = nb[l]; }
    workgroupBarrier();
    let k1 = k0 + 16u;
    if (k1 < KD) {
      for (var l = 0u; l < ${R}u; l++) { na[l] = rowValue(t, b0, k1, tid + l * 256u, B, KD); }
      for (var l = 0u; l < ${C}u; l++) {
        let e = tid + l * 256u;
        nb[l] = wcol(k1 + e / ${NC}u, e % ${NC}u, j0);
      }
    }
    for (var kk = 0u; kk < 16u; kk++) {
      var ar: array<f32, ${R}>;
      var br: array<f32, ${C}>;
      for (var i = 0u; i < ${R}u; i++) { ar[i] = As[kk * ${AS}u + lid.y + 16u * i]; }
      for (var c = 0u; c < ${C}u; c++) { br[c] = Bs[kk * ${NC}u + c * 16u + lid.x]; }
      for (var i = 0u; i < ${R}u; i++) {
        for (var c = 0u; c < ${C}u; c++) { acc[i * ${C}u + c] = fma(ar[i], br[c], acc[i * ${C}u + c]); }
      }
    }
    workgroupBarrier();
  }
  ${epilogues}
}`;
}

/**
 * The products layout's gate kernel: a thread per (b, j) adds the product's parts for each of its gates in order,
 * then runs the step kernel's epilogue. The parts come in as binding `zBinding` (bound
 * read_write after the kernel's own, so that their numbers do not move; only read).
 */
function productGates(k: StepKernel, zBinding: number): string {
  const sums = Array.from(
    { length: k.accs },
    (_, a) => `{
      var s = 0.0;
      var q = 0u;
      ${addInOrder("s", "q", "parts", (q) => `zp[${q} * B * NZ + b * NZ + ${a}u * H + j]`)}
      acc[${a}] = s;
    }`,
  ).join("\n    ");
  return /* wgsl */ `
${k.decls}
@group(0) @binding(${zBinding}) var<storage, read_write> zp: array<f32>; // (parts, B, accs·H)
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
  let t = pu(0u); let T = pu(1u); let B = pu(2u); let H = pu(3u);
  let parts = pu(5u); let NZ = pu(6u);
  let i = gindex(gid, nwg);
  if (i >= B * H) { return; }
  let b = i / H;
  let j = i % H;
  let bj = b * H + j;
  let ho = t * B * H + bj;
  var acc = array<f32, ${k.accs}>();
  ${sums}
  ${k.epilogue}
}`;
}

/** The step layout's settings for kernel `k` at batch B over H units with a product of length K. */
function stepSettings(k: StepKernel, B: number, H: number, K: number, tuned: Partial<StepSettings>) {
  let R = rowsPerThread(B, H, "step", tuned, k);
  const U = unitsPerThread(k, tuned);
  const S = slicesPerStep(k, B, H, R, U, tuned);
  const wide = wideTiles(k, tuned);
  // 8 rows take more workgroup memory than WebGPU guarantees with some slice counts: then 4
  while (R > 1 && stepMemory(k, R, S, U, tileWidth(R, S, wide, K)) > WORKGROUP_MEMORY) R /= 2;
  const W = tileWidth(R, S, wide, K);
  const P = prefetchTiles(k, tuned);
  // chunks of weights ahead: only where prefetching and a tile's weights (W/S values of k, accs·U products) do not
  // fit 32 registers (where they do, the whole tile's are loaded ahead anyway)
  const ahead = P && weightsAhead(tuned) && (W / S) * k.accs * U > 32;
  return { R, S, U, W, P, ahead };
}

/** The workgroup memory every adapter offers (WebGPU's minimum of maxComputeWorkgroupStorageSize), in bytes. */
const WORKGROUP_MEMORY = 16384;

/** Bytes of workgroup memory a step-layout kernel takes: its tile of row values, and the slices' partial sums. */
function stepMemory(k: StepKernel, R: number, S: number, U: number, W: number): number {
  const A = k.accs * U;
  const accN = A * R * (A === 1 ? 4 : 1);
  return 4 * (4 * W * R + (S > 1 ? 4 * (64 / S) * accN : 0));
}

/** The step kernels by their key in a table of settings. */
export type StepKernelName =
  "lstmForward" | "lstmBackward" | "gruForward" | "gruBackward" | "rnnForward" | "rnnBackward";

/**
 * What a recurrent step kernel runs with (rows, slices, units a thread, tile width, prefetching) at batch B over H
 * units under the current settings, a sequence longer than one step: for the tuner and the benches, which print what
 * the defaults chose. In the products layout (products: true) S is the product's parts along K and the rest is moot.
 */
export function stepSettingsOf(name: StepKernelName, B: number, H: number) {
  // each kernel, and its product's length: h_{t-1} (H) forward, the gates' gradients (gates x H) backward
  const kernels: Record<StepKernelName, [StepKernel, number]> = {
    lstmForward: [LSTM_FORWARD, H],
    lstmBackward: [LSTM_BACKWARD, 4 * H],
    gruForward: [GRU_FORWARD, H],
    gruBackward: [GRU_BACKWARD, 3 * H],
    rnnForward: [RNN_FORWARD, H],
    rnnBackward: [RNN_BACKWARD, H],
  };
  const [k, K] = kernels[name];
  const tuned = tunedStep(name, B, H);
  if (recurrentLayout(2) === "products" || productsByTable(tuned)) {
    const S = productParts(B, H, K, k.accs, tuned);
    return { R: productRows(tuned), S, U: 1, W: 64, P: false, ahead: false, products: true, oneProduct: oneProduct(k) };
  }
  return { ...stepSettings(k, B, H, K, tuned), products: false, oneProduct: oneProduct(k) };
}

/** stepSettingsOf for an LSTM's forward or backward step. */
export function lstmStepSettings(backward: boolean, B: number, H: number) {
  const { R, S, U, W, P } = stepSettingsOf(backward ? "lstmBackward" : "lstmForward", B, H);
  return { R, S, U, W, P };
}

/** h_{t-1} as the step's row vector: h0 at t = 0, else hs[t-1]. */
const PREV_H = /* wgsl */ `
fn src(t: u32, b: u32, k: u32) -> f32 {
  let H = pu(3u);
  if (t == 0u) { return h0[b * H + k]; }
  return hs[(t - 1u) * pu(2u) * H + b * H + k];
}`;

/** The step's row vector in backward: the pre-activation gradient of step t+1 in `name`, rows of G. */
const NEXT_DA = (name: string, G: string) => /* wgsl */ `
fn src(t: u32, b: u32, k: u32) -> f32 {
  let G = ${G};
  return ${name}[(t + 1u) * pu(2u) * G + b * G + k];
}`;

/** The products layout's forward product: h_{t-1} (h0 at t = 0, else hs[t-1]) times wh (H, accs·H). */
function previousH(h0: Buf, hs: Buf, B: number, H: number, wh: Buf): StepProduct {
  return { rows: (t) => (t === 0 ? [h0, 0] : [hs, (t - 1) * B * H]), w: wh };
}

/** The products layout's backward product: the pre-activation gradient of step t+1 in `da` (rows of G) times whT. */
function nextDa(da: Buf, B: number, G: number, whT: Buf): StepProduct {
  return { rows: (t) => [da, (t + 1) * B * G], w: whT };
}

/** [h0; hs[0 .. T-2]] (T·B, H): the h_{t-1} of every step, for the weight gradient product. */
function previousStates(rt: GpuRuntime, h0: GpuStorage, hs: GpuStorage, T: number, B: number, H: number): GpuStorage {
  const hp = rt.scratch(T * B * H);
  rt.copyBuffer(h0.buffer, 0, hp.buffer, 0, B * H * 4);
  rt.copyBuffer(hs.buffer, 0, hp.buffer, B * H * 4, (T - 1) * B * H * 4);
  return hp;
}

function transposed(rt: GpuRuntime, wh: GpuStorage, H: number, G: number): GpuStorage {
  const whT = rt.scratch(G * H);
  swapAxes(rt, wh, [H, G], 0, 1, whT, false);
  return whT;
}

/** dst = src (B·H values) or zeros when src is null: the carried gradients' starting values. */
function start(rt: GpuRuntime, src: GpuStorage | null, dst: GpuStorage, n: number): void {
  if (src) rt.copyBuffer(src.buffer, 0, dst.buffer, 0, n * 4);
  else rt.clear(dst.buffer, 0, n * 4);
}

// ---- LSTM

const LSTM_FORWARD: StepKernel = {
  decls: /* wgsl */ `
@group(0) @binding(1) var<storage, read> xw: array<f32>;
@group(0) @binding(2) var<storage, read> wh: array<f32>;
@group(0) @binding(3) var<storage, read> h0: array<f32>;
@group(0) @binding(4) var<storage, read> c0: array<f32>;
@group(0) @binding(5) var<storage, read_write> hs: array<f32>;
@group(0) @binding(6) var<storage, read_write> cs: array<f32>;
@group(0) @binding(7) var<storage, read_write> gates: array<f32>;
${PREV_H}`,
  accs: 4,
  w: (a) => `wh[k * 4u * pu(3u) + ${a}u * pu(3u) + j]`,
  epilogue: /* wgsl */ `
  let xo = (t * B + b) * 4u * H;
  let ig = sigmoid_(xw[xo + j] + acc[0]);
  let fg = sigmoid_(xw[xo + H + j] + acc[1]);
  let gg = tanh_(xw[xo + 2u * H + j] + acc[2]);
  let og = sigmoid_(xw[xo + 3u * H + j] + acc[3]);
  var cp: f32;
  if (t == 0u) { cp = c0[bj]; } else { cp = cs[ho - B * H]; }
  let c = fg * cp + ig * gg;
  cs[ho] = c;
  hs[ho] = og * tanh_(c);
  gates[xo + j] = ig; gates[xo + H + j] = fg; gates[xo + 2u * H + j] = gg; gates[xo + 3u * H + j] = og;`,
};

const LSTM_BACKWARD: StepKernel = {
  decls: /* wgsl */ `
@group(0) @binding(1) var<storage, read> gates: array<f32>;
@group(0) @binding(2) var<storage, read> cs: array<f32>;
@group(0) @binding(3) var<storage, read> c0: array<f32>;
@group(0) @binding(4) var<storage, read> dhs: array<f32>;
@group(0) @binding(5) var<storage, read> whT: array<f32>;
@group(0) @binding(6) var<storage, read_write> dxw: array<f32>;
@group(0) @binding(7) var<storage, read_write> dh: array<f32>;
@group(0) @binding(8) var<storage, read_write> dc: array<f32>;
${NEXT_DA("dxw", "4u * pu(3u)")}`,
  accs: 1,
  w: () => "whT[k * pu(3u) + j]",
  // dh = dhs_t + da_{t+1} Whᵀ (+ dhT at the last step); dc = dh o (1 - tanh²c) + dc_{t+1} f_{t+1}
  epilogue: /* wgsl */ `
  let xo = (t * B + b) * 4u * H;
  var dhv = dhs[ho] + acc[0];
  if (t == T - 1u) { dhv += dh[bj]; }
  let ig = gates[xo + j]; let fg = gates[xo + H + j]; let gg = gates[xo + 2u * H + j]; let og = gates[xo + 3u * H + j];
  let tc = tanh_(cs[ho]);
  var cp: f32;
  if (t == 0u) { cp = c0[bj]; } else { cp = cs[ho - B * H]; }
  let dcv = dhv * og * (1.0 - tc * tc) + dc[bj];
  dxw[xo + j] = dcv * gg * ig * (1.0 - ig);
  dxw[xo + H + j] = dcv * cp * fg * (1.0 - fg);
  dxw[xo + 2u * H + j] = dcv * ig * (1.0 - gg * gg);
  dxw[xo + 3u * H + j] = dhv * tc * og * (1.0 - og);
  dc[bj] = dcv * fg;`,
};

export function lstmForward(rt: GpuRuntime, a: LstmForwardArgs<GpuStorage>): void {
  const { T, B, H } = a;
  const [reads, writes] = [
    [a.xw, a.wh, a.h0, a.c0],
    [a.hs, a.cs, a.gates],
  ];
  const dims = { T, B, H, K: H, backward: false };
  timeLoop(rt, "lstmForward", LSTM_FORWARD, reads, writes, dims, previousH(a.h0, a.hs, B, H, a.wh));
}

export function lstmBackward(rt: GpuRuntime, a: LstmBackwardArgs<GpuStorage>): void {
  const { T, B, H } = a;
  const G = 4 * H;
  // dh0 carries dhT into the last step; dc0 carries dc from step to step and ends as dc0.
  start(rt, a.dhT, a.dh0, B * H);
  start(rt, a.dcT, a.dc0, B * H);
  if (T === 0) return;
  const whT = transposed(rt, a.wh, H, G);
  const reads = [a.gates, a.cs, a.c0, a.dhs, whT];
  const dims = { T, B, H, K: G, backward: true };
  timeLoop(rt, "lstmBackward", LSTM_BACKWARD, reads, [a.dxw, a.dh0, a.dc0], dims, nextDa(a.dxw, B, G, whT));
  rt.free(whT);
  // dh0 = da_0 · Whᵀ
  matmul(rt, a.dxw, a.wh, a.dh0, B, G, H, { transB: true });
  if (a.dwh) {
    const hp = previousStates(rt, a.h0, a.hs, T, B, H);
    matmul(rt, hp, a.dxw, a.dwh, H, T * B, G, { transA: true, accumulate: true });
    rt.free(hp);
  }
}

// ---- GRU

const GRU_FORWARD: StepKernel = {
  decls: /* wgsl */ `
@group(0) @binding(1) var<storage, read> xw: array<f32>;
@group(0) @binding(2) var<storage, read> wh: array<f32>;
@group(0) @binding(3) var<storage, read> bh: array<f32>;
@group(0) @binding(4) var<storage, read> h0: array<f32>;
@group(0) @binding(5) var<storage, read_write> hs: array<f32>;
@group(0) @binding(6) var<storage, read_write> gates: array<f32>;
@group(0) @binding(7) var<storage, read_write> hn: array<f32>;
${PREV_H}`,
  accs: 3,
  w: (a) => `wh[k * 3u * pu(3u) + ${a}u * pu(3u) + j]`,
  epilogue: /* wgsl */ `
  let xo = (t * B + b) * 3u * H;
  var hp: f32;
  if (t == 0u) { hp = h0[bj]; } else { hp = hs[ho - B * H]; }
  let hnv = acc[2] + bh[2u * H + j];
  let r = sigmoid_(xw[xo + j] + (acc[0] + bh[j]));
  let z = sigmoid_(xw[xo + H + j] + (acc[1] + bh[H + j]));
  let n = tanh_(xw[xo + 2u * H + j] + r * hnv);
  hs[ho] = (1.0 - z) * n + z * hp;
  gates[xo + j] = r; gates[xo + H + j] = z; gates[xo + 2u * H + j] = n;
  hn[ho] = hnv;`,
};

const GRU_BACKWARD: StepKernel = {
  decls: /* wgsl */ `
@group(0) @binding(1) var<storage, read> gates: array<f32>;
@group(0) @binding(2) var<storage, read> hn: array<f32>;
@group(0) @binding(3) var<storage, read> hprev: array<f32>;
@group(0) @binding(4) var<storage, read> dhs: array<f32>;
@group(0) @binding(5) var<storage, read> whT: array<f32>;
@group(0) @binding(6) var<storage, read_write> dxw: array<f32>;
@group(0) @binding(7) var<storage, read_write> dah: array<f32>;
@group(0) @binding(8) var<storage, read_write> dhc: array<f32>;
${NEXT_DA("dah", "3u * pu(3u)")}`,
  accs: 1,
  w: () => "whT[k * pu(3u) + j]",
  // dh = dhs_t + z_{t+1} dh_{t+1} (carried in dhc) + dah_{t+1} Whᵀ; dah = the gradient of h W_h + b_h
  // (r, z, and r·dn for the n gate), dxw that of the input projection (r, z, dn)
  epilogue: /* wgsl */ `
  let xo = (t * B + b) * 3u * H;
  let dhv = dhs[ho] + dhc[bj] + acc[0];
  let r = gates[xo + j]; let z = gates[xo + H + j]; let n = gates[xo + 2u * H + j];
  let dn = dhv * (1.0 - z);
  let dz = dhv * (hprev[ho] - n);
  let dan = dn * (1.0 - n * n);
  let dar = dan * hn[ho] * r * (1.0 - r);
  let daz = dz * z * (1.0 - z);
  dxw[xo + j] = dar; dxw[xo + H + j] = daz; dxw[xo + 2u * H + j] = dan;
  dah[xo + j] = dar; dah[xo + H + j] = daz; dah[xo + 2u * H + j] = dan * r;
  dhc[bj] = dhv * z;`,
};

export function gruForward(rt: GpuRuntime, a: GruForwardArgs<GpuStorage>): void {
  const { T, B, H } = a;
  const [reads, writes] = [
    [a.xw, a.wh, a.bh, a.h0],
    [a.hs, a.gates, a.hn],
  ];
  const dims = { T, B, H, K: H, backward: false };
  timeLoop(rt, "gruForward", GRU_FORWARD, reads, writes, dims, previousH(a.h0, a.hs, B, H, a.wh));
}

export function gruBackward(rt: GpuRuntime, a: GruBackwardArgs<GpuStorage>): void {
  const { T, B, H } = a;
  const G = 3 * H;
  start(rt, a.dhT, a.dh0, B * H);
  if (T === 0) return;
  const whT = transposed(rt, a.wh, H, G);
  const hp = previousStates(rt, a.h0, a.hs, T, B, H);
  const dah = rt.scratch(T * B * G); // (T, B, 3H)
  const reads = [a.gates, a.hn, hp, a.dhs, whT];
  const dims = { T, B, H, K: G, backward: true };
  timeLoop(rt, "gruBackward", GRU_BACKWARD, reads, [a.dxw, dah, a.dh0], dims, nextDa(dah, B, G, whT));
  rt.free(whT);
  // dh0 = z_0 dh_0 (already there) + dah_0 · Whᵀ
  matmul(rt, dah, a.wh, a.dh0, B, G, H, { transB: true, accumulate: true });
  if (a.dwh) matmul(rt, hp, dah, a.dwh, H, T * B, G, { transA: true, accumulate: true });
  if (a.dbh) reduceTo(rt, dah, [T * B, G], a.dbh, [0, 1], 1); // dbh += Σ over the T·B rows
  rt.free(hp);
  rt.free(dah);
}

// ---- RNN

const RNN_FORWARD: StepKernel = {
  decls: /* wgsl */ `
@group(0) @binding(1) var<storage, read> xw: array<f32>;
@group(0) @binding(2) var<storage, read> wh: array<f32>;
@group(0) @binding(3) var<storage, read> h0: array<f32>;
@group(0) @binding(4) var<storage, read_write> hs: array<f32>;
${PREV_H}`,
  accs: 1,
  w: () => "wh[k * pu(3u) + j]",
  epilogue: "hs[ho] = tanh_(xw[ho] + acc[0]);",
};

const RNN_BACKWARD: StepKernel = {
  decls: /* wgsl */ `
@group(0) @binding(1) var<storage, read> hs: array<f32>;
@group(0) @binding(2) var<storage, read> dhs: array<f32>;
@group(0) @binding(3) var<storage, read> whT: array<f32>;
@group(0) @binding(4) var<storage, read_write> dxw: array<f32>;
@group(0) @binding(5) var<storage, read_write> dh: array<f32>;
${NEXT_DA("dxw", "pu(3u)")}`,
  accs: 1,
  w: () => "whT[k * pu(3u) + j]",
  epilogue: /* wgsl */ `
  var dhv = dhs[ho] + acc[0];
  if (t == T - 1u) { dhv += dh[bj]; }
  let h = hs[ho];
  dxw[ho] = dhv * (1.0 - h * h);`,
};

export function rnnForward(rt: GpuRuntime, a: RnnForwardArgs<GpuStorage>): void {
  const { T, B, H } = a;
  const dims = { T, B, H, K: H, backward: false };
  timeLoop(rt, "rnnForward", RNN_FORWARD, [a.xw, a.wh, a.h0], [a.hs], dims, previousH(a.h0, a.hs, B, H, a.wh));
}

export function rnnBackward(rt: GpuRuntime, a: RnnBackwardArgs<GpuStorage>): void {
  const { T, B, H } = a;
  start(rt, a.dhT, a.dh0, B * H);
  if (T === 0) return;
  const whT = transposed(rt, a.wh, H, H);
  const dims = { T, B, H, K: H, backward: true };
  timeLoop(rt, "rnnBackward", RNN_BACKWARD, [a.hs, a.dhs, whT], [a.dxw, a.dh0], dims, nextDa(a.dxw, B, H, whT));
  rt.free(whT);
  matmul(rt, a.dxw, a.wh, a.dh0, B, H, H, { transB: true });
  if (a.dwh) {
    const hp = previousStates(rt, a.h0, a.hs, T, B, H);
    matmul(rt, hp, a.dxw, a.dwh, H, T * B, H, { transA: true, accumulate: true });
    rt.free(hp);
  }
}
