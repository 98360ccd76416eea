// Tuning the recurrent step kernels for the GPU at hand: every combination of their settings (rows and units a
// thread, slices, wide tiles, prefetching) timed on a cell's forward and backward time steps of a given shape, and
// the fastest kept, as a table of step settings (kernels/recurrent.ts: useKernelTable, CHARLM_WEBGPU_KERNELS). The
// settings give the same products up to float rounding; each one's output is compared with the defaults' on the GPU,
// and one that differs is never kept. `charlm tune-gpu` runs this and saves the table; bench/gpu_kernels.ts prints
// every timing. The defaults (the H200's table and the rules fitted to it) suit an H200; another GPU can differ.

import { CharlmError } from "../../../util/errors.js";
import { Rng } from "../../../util/rng.js";
import type { WebgpuBackend } from "./index.js";
import {
  STEP_SETTING_ENV,
  stepKey,
  stepSettingsOf,
  useKernelTable,
  type StepKernelName,
  type StepSettings,
} from "./kernels/recurrent.js";
import { TUNED_VARIANTS, useMatmulVariant, type TunedVariant } from "./kernels/matmul.js";
import { envSetting, type GpuStorage } from "./runtime.js";

/** The recurrent cells whose step kernels can be tuned. */
export type TuneCell = "lstm" | "gru" | "rnn";

export interface TuneShape {
  /** hidden units of the recurrent layers */
  H: number;
  /** batch rows */
  B: number;
}

export interface TuneOptions {
  /** time steps per timed sequence (default 100) */
  T?: number;
  /** sequences per timing; each setting is timed 3 times and the median kept (default 3) */
  reps?: number;
  /** a smaller grid (1 and 8 or 4 rows, 2 and 8 slices, 1 and 4 units): for a quick look or a test */
  small?: boolean;
  /** after each kernel and shape: what was measured (for progress lines, or saving a table as it grows) */
  onKernel?: (k: TunedKernel) => void;
}

export interface SettingTiming {
  settings: StepSettings;
  /** microseconds per time step */
  us: number;
  /** ‖output - the defaults' output‖ / ‖the defaults' output‖: float rounding (~1e-7), or ~1 for a wrong kernel */
  diff: number;
}

export interface TunedKernel {
  kernel: StepKernelName;
  H: number;
  B: number;
  /** the table's key: "lstmForward H512 B64" */
  key: string;
  /** what the defaults run with, and their time (taken after the grid's, warm) */
  defaults: { R: number; S: number; U: number; W: number; P: boolean; ahead: boolean; products: boolean; us: number };
  /** the fastest setting whose output matches the defaults' */
  best: SettingTiming;
  /** every setting timed, fastest first */
  timings: SettingTiming[];
}

/**
 * Every combination of 2, 4 and 8 slices, 1, 2 and 4 rows (and 8 from batch 128), units (where they apply: the
 * kernels with one product per unit, as the backward steps), wide tiles and prefetching, prefetching with and
 * without its weights a chunk ahead; then the products layout with its product in 1, 2, 4 and 8 parts along K.
 * `small` takes fewer of each, and no chunks ahead.
 */
export function stepGrid(oneProduct: boolean, B: number, small = false): StepSettings[] {
  const out: StepSettings[] = [];
  const rowCounts = small ? ([1, 8] as const) : B >= 128 ? ([1, 2, 4, 8] as const) : ([1, 2, 4] as const);
  for (const rows of rowCounts)
    for (const slices of small ? ([2, 8] as const) : ([2, 4, 8] as const))
      for (const units of oneProduct ? (small ? ([1, 4] as const) : ([1, 2, 4] as const)) : ([1] as const))
        for (const wide of [false, true])
          for (const prefetch of [false, true]) {
            if (wide && rows === 8) continue; // 8 rows: 64 wide anyway
            out.push({ rows, slices, units, wide, prefetch });
            // prefetching with the weights a chunk ahead (tuneSteps skips it where a tile's weights are ahead anyway)
            if (prefetch && !small) out.push({ rows, slices, units, wide, prefetch, ahead: true });
          }
  // the products layout: in one part the fused kernel's 64-row or 32-row tiles (4 or 2 rows a thread), else parts
  if (!small) out.push({ rows: 2, slices: 1, units: 1, wide: false, prefetch: false, products: true });
  for (const slices of small ? ([2, 8] as const) : ([1, 2, 4, 8] as const))
    out.push({ rows: 4, slices, units: 1, wide: false, prefetch: false, products: true });
  return out;
}

/** ‖a - b‖ / ‖b‖ over n values, computed on the GPU (scratch: n values; sq: 2), one read back. */
export async function relDiff(
  gpu: WebgpuBackend,
  a: GpuStorage,
  b: GpuStorage,
  n: number,
  scratch: GpuStorage,
  sq: GpuStorage,
): Promise<number> {
  gpu.binary("sub", a, [1], b, [1], scratch, [n]);
  gpu.sumSquares(scratch, n, sq, 0);
  gpu.sumSquares(b, n, sq, 1);
  const [d, r] = await gpu.read(sq);
  return Math.sqrt(d / r);
}

/**
 * The median of 3 timings of `reps` calls of `run` (the GPU waited for after each timing), in microseconds per call
 * divided by `per`, after one warm-up call (which compiles the kernels).
 */
export async function medianUs(gpu: WebgpuBackend, run: () => void, reps: number, per = 1): Promise<number> {
  run();
  await gpu.flush();
  const us: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    for (let r = 0; r < reps; r++) run();
    await gpu.flush();
    us.push(((performance.now() - t0) * 1000) / (reps * per));
  }
  return us.sort((a, b) => a - b)[1];
}

/** Storage on `gpu` kept in `owned` (for the caller to free): alloc(n) zeroed, up(n, scale) uniform in ±scale. */
function buffers(gpu: WebgpuBackend, seed: number) {
  const rng = new Rng(seed);
  const owned: GpuStorage[] = [];
  const alloc = (n: number) => {
    const s = gpu.alloc(n);
    owned.push(s);
    return s;
  };
  const up = (n: number, scale: number) => {
    const s = alloc(n);
    gpu.write(
      s,
      Float32Array.from({ length: n }, () => (rng.random() * 2 - 1) * scale),
    );
    return s;
  };
  return { owned, alloc, up };
}

/** "2 rows, 4 slices, 1 unit, wide, prefetch" */
export function stepLabel(s: StepSettings): string {
  const n = (v: number, what: string) => `${v} ${what}${v > 1 ? "s" : ""}`;
  if (s.products)
    return s.slices === 1
      ? `products: one fused kernel, ${n(s.rows, "row")}`
      : `products: the product in ${n(s.slices, "part")}, then the gates`;
  return `${n(s.rows, "row")}, ${n(s.slices, "slice")}, ${n(s.units, "unit")}${s.wide ? ", wide" : ""}${s.prefetch ? ", prefetch" : ""}${s.ahead ? ", weights ahead" : ""}`;
}

/** tuneSteps for the LSTM. */
export function tuneLstmSteps(
  gpu: WebgpuBackend,
  shapes: TuneShape[],
  o: TuneOptions = {},
): Promise<{ table: Record<string, StepSettings>; kernels: TunedKernel[] }> {
  return tuneSteps(gpu, "lstm", shapes, o);
}

/**
 * Time the step kernels of `cell` for each shape in every setting of the grid on `gpu` and return the fastest per
 * kernel and shape, as a table of step settings. Refuses while an environment variable overrides the settings it
 * tries.
 */
export async function tuneSteps(
  gpu: WebgpuBackend,
  cell: TuneCell,
  shapes: TuneShape[],
  o: TuneOptions = {},
): Promise<{ table: Record<string, StepSettings>; kernels: TunedKernel[] }> {
  for (const name of STEP_SETTING_ENV)
    if (envSetting(name)) throw new CharlmError(`tuning: ${name} is set and overrides the settings tried; unset it`);
  // the products layout's parts are tiled products in the variant CHARLM_WEBGPU_MATMUL would force
  if (envSetting("CHARLM_WEBGPU_MATMUL"))
    throw new CharlmError("tuning: CHARLM_WEBGPU_MATMUL is set and overrides the variants tried; unset it");
  const layout = envSetting("CHARLM_WEBGPU_RECURRENT");
  if (layout === "sequence" || layout === "products")
    throw new CharlmError(`tuning: CHARLM_WEBGPU_RECURRENT=${layout} overrides the layouts tried; unset it`);
  for (const { H, B } of shapes)
    if (!(Number.isInteger(H) && H >= 1 && Number.isInteger(B) && B >= 1))
      throw new CharlmError(`tuning: units ${H} and batch ${B} must be whole numbers of at least 1`);
  const T = o.T ?? 100;
  const reps = o.reps ?? 3;
  const { owned, alloc, up } = buffers(gpu, 0);
  const sq = alloc(2);
  const time = (run: () => void) => medianUs(gpu, run, reps, T);
  const table: Record<string, StepSettings> = {};
  const kernels: TunedKernel[] = [];
  const outer = useKernelTable(null); // the defaults are the H200's table and the rules, not a loaded table
  try {
    for (const { H, B } of shapes) {
      const G = { lstm: 4, gru: 3, rnn: 1 }[cell] * H;
      const n = T * B * H;
      const f = {
        T,
        B,
        H,
        xw: up(T * B * G, 1),
        wh: up(H * G, 1 / Math.sqrt(H)),
        h0: up(B * H, 0.5),
        hs: alloc(n),
      };
      const bw = { dhs: up(n, 0.1), dhT: null, dxw: alloc(T * B * G), dwh: null, dh0: alloc(B * H) };
      const refs = { hs: alloc(n), dxw: alloc(T * B * G) };
      const scratch = alloc(T * B * G);
      let forward: () => void;
      let backward: () => void;
      if (cell === "lstm") {
        const more = { c0: up(B * H, 0.5), cs: alloc(n), gates: alloc(T * B * G) };
        const dc0 = alloc(B * H);
        forward = () => gpu.lstmForward({ ...f, ...more });
        backward = () => gpu.lstmBackward({ ...f, ...more, ...bw, dcT: null, dc0 });
      } else if (cell === "gru") {
        const more = { bh: up(G, 0.1), gates: alloc(T * B * G), hn: alloc(n) };
        forward = () => gpu.gruForward({ ...f, ...more });
        backward = () => gpu.gruBackward({ ...f, ...more, ...bw, dbh: null });
      } else {
        forward = () => gpu.rnnForward(f);
        backward = () => gpu.rnnBackward({ ...f, ...bw });
      }
      for (const [kernel, run, result, ref, size] of [
        [`${cell}Forward`, forward, f.hs, refs.hs, n],
        [`${cell}Backward`, backward, bw.dxw, refs.dxw, T * B * G],
      ] as const) {
        const key = stepKey(kernel, H, B);
        const { oneProduct, ...chosen } = stepSettingsOf(kernel, B, H);
        await time(run); // the defaults' output, the reference
        gpu.copy(result, 0, ref, 0, size);
        const timings: SettingTiming[] = [];
        for (const settings of stepGrid(oneProduct, B, o.small)) {
          useKernelTable({ [key]: settings });
          // 8 rows with too few slices would pass WebGPU's 16 KiB of workgroup memory: the backend takes 4 then
          const runs = stepSettingsOf(kernel, B, H);
          if (runs.R !== settings.rows) continue;
          // weights a chunk ahead where a tile's are ahead anyway: the same kernel as without
          if (settings.ahead && !runs.ahead) continue;
          const us = await time(run);
          timings.push({ settings, us, diff: await relDiff(gpu, result, ref, size, scratch, sq) });
        }
        useKernelTable(null);
        // timed after the grid, warm like every setting in it (on the H200 a shape's first timing ran up to 4.6x slow)
        const defaultUs = await time(run);
        timings.sort((a, b) => a.us - b.us);
        const best = timings.find((t) => t.diff < 1e-3);
        if (!best) throw new CharlmError(`tuning: no setting of ${key} matched the defaults' output; report this GPU`);
        table[key] = best.settings;
        const k: TunedKernel = { kernel, H, B, key, defaults: { ...chosen, us: defaultUs }, best, timings };
        kernels.push(k);
        o.onKernel?.(k);
      }
      for (const s of owned.splice(1)) gpu.free(s); // all but sq
    }
  } finally {
    useKernelTable(outer);
    for (const s of owned) gpu.free(s);
  }
  return { table, kernels };
}

export interface ProductTiming {
  variant: TunedVariant;
  /** microseconds for the shape's three large products together */
  us: number;
  /** the largest of the three products' ‖output - 64's‖ / ‖64's‖ (0: every variant takes the same fma chains) */
  diff: number;
}

/**
 * Time the large products of a training step of `cell` at one shape (the input projection of a layer fed H values,
 * (T·B, H)·(H, G); its input gradient, (T·B, G)·(H, G)ᵀ; the weight gradient, (H, T·B)·(T·B, G)) under each choice
 * `charlm tune-gpu` offers for the products' tiles (TUNED_VARIANTS: 64 x 64 everywhere, or auto's 128 x 128 for the
 * large products, read as floats, as vec4s, prefetched, or both with two buffers), and return them fastest first.
 * Refuses while CHARLM_WEBGPU_MATMUL is set.
 */
export async function tuneProducts(
  gpu: WebgpuBackend,
  cell: TuneCell,
  { H, B }: TuneShape,
  o: Pick<TuneOptions, "T" | "reps"> = {},
): Promise<ProductTiming[]> {
  if (envSetting("CHARLM_WEBGPU_MATMUL"))
    throw new CharlmError("tuning: CHARLM_WEBGPU_MATMUL is set and overrides the variants tried; unset it");
  const T = o.T ?? 100;
  const reps = o.reps ?? 3;
  const G = { lstm: 4, gru: 3, rnn: 1 }[cell] * H;
  const { owned, alloc, up } = buffers(gpu, 1);
  const R = T * B;
  const [x, da, w] = [up(R * H, 1), up(R * G, 0.1), up(H * G, 1 / Math.sqrt(H))];
  const products = [
    { run: (c: GpuStorage) => gpu.matmul(x, w, c, R, H, G), size: R * G },
    { run: (c: GpuStorage) => gpu.matmul(da, w, c, R, G, H, { transB: true }), size: R * H },
    { run: (c: GpuStorage) => gpu.matmul(x, da, c, H, R, G, { transA: true }), size: H * G },
  ];
  const outs = products.map((p) => alloc(p.size));
  const refs = products.map((p) => alloc(p.size));
  const scratch = alloc(R * G);
  const sq = alloc(2);
  const outer = useMatmulVariant(null);
  const timings: ProductTiming[] = [];
  try {
    for (const variant of TUNED_VARIANTS) {
      useMatmulVariant(variant);
      let us = 0;
      let diff = 0;
      for (const [i, p] of products.entries()) {
        us += await medianUs(gpu, () => p.run(outs[i]), reps);
        if (variant === TUNED_VARIANTS[0]) gpu.copy(outs[i], 0, refs[i], 0, p.size);
        else diff = Math.max(diff, await relDiff(gpu, outs[i], refs[i], p.size, scratch, sq));
      }
      timings.push({ variant, us, diff });
    }
  } finally {
    useMatmulVariant(outer);
    for (const s of owned) gpu.free(s);
  }
  return timings.sort((a, b) => a.us - b.us);
}
