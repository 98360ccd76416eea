// The recurrent step kernels alone on the GPU, across their settings: which rows, slices, units a thread, tile width
// and prefetching run an LSTM's time steps fastest on the GPU at hand, for W1's and W2's shapes (LSTM 256 and 512 at
// batch 64 and 256, sequence 100); the weight gradients' product at each split-K target; and the large products
// with 64- and 128-wide tiles. A few seconds per
// shape on an H200, where bench/gpu.ts's whole training steps take ~20 s per setting, so that one GPU session can
// try every combination and the training bench then times the fastest (its "tuned" variant).
//
//   node .gpu/app/gpu_kernels.mjs [--table FILE] [--json FILE]     on the GPU machine (bench/gpu_machine.sh runs it)
//   npx tsx bench/gpu_kernels.ts --tiny                           here on SwiftShader: the plumbing, not the speed
//
// Per shape it prints microseconds per time step (wall time of REPS whole sequences after a warm-up, the GPU
// waited for at the end: GPU-bound here, ~5 us of host encoding per step against 18-220 us of GPU time at stop 5),
// forward (lstmForward) and backward (lstmBackward without the weight gradient: Wh transposed once, the steps,
// dh0), the default rule's choice first, then the fastest settings, and each setting's relative difference from
// the default's output (float rounding: sums in another order; a wrong kernel shows as ~1). --table FILE writes the
// fastest settings per kernel and shape as CHARLM_WEBGPU_KERNELS takes them (src/engine/backends/webgpu/kernels/
// recurrent.ts): export CHARLM_WEBGPU_KERNELS="$(cat FILE)".

import { writeFileSync } from "node:fs";

import { createWebgpuBackend, type GpuStorage } from "../src/engine/backends/webgpu/index.js";
import { lstmStepSettings, type StepSettings } from "../src/engine/backends/webgpu/kernels/recurrent.js";
import { Rng } from "../src/util/rng.js";

const tiny = process.argv.includes("--tiny");
const arg = (name: string) => {
  const at = process.argv.indexOf(name);
  return at > 0 ? process.argv[at + 1] : undefined;
};
const T = tiny ? 6 : 100;
const REPS = tiny ? 1 : 3;
const shapes = tiny
  ? [{ H: 24, B: 8 }]
  : [
      // furthest from 0.5 of cuDNN first (stop 5: W2 0.31 and 0.33, W1 at batch 256 0.49, at 64 0.88), so that a run
      // cut short by its time box has measured those
      { H: 512, B: 64 },
      { H: 512, B: 256 },
      { H: 256, B: 256 },
      { H: 256, B: 64 },
    ];
const SETTINGS = ["CHARLM_WEBGPU_ROWS", "CHARLM_WEBGPU_SPLIT", "CHARLM_WEBGPU_UNITS", "CHARLM_WEBGPU_WIDE"];
const ALL = [...SETTINGS, "CHARLM_WEBGPU_PREFETCH", "CHARLM_WEBGPU_RECURRENT", "CHARLM_WEBGPU_KERNELS"];
for (const k of ALL) delete process.env[k]; // the defaults are the rules', whatever the shell set

/**
 * Every combination of 2, 4 and 8 slices (1, the slowest in every shape at stop 5, left out), 1, 2 and 4 rows (and 8
 * from batch 128: stop 9's LSTM 512 at batch 256 ran fastest with the most rows then tried), units (where they apply:
 * the backward step), wide tiles and prefetching.
 */
function grid(backward: boolean, B: number): StepSettings[] {
  const out: StepSettings[] = [];
  const pick = <X>(full: X[], small: X[]) => (tiny ? small : full);
  const rowCounts = B >= 128 ? ([1, 2, 4, 8] as const) : ([1, 2, 4] as const);
  for (const rows of pick([...rowCounts], [1, 8] as const))
    for (const slices of pick([2, 4, 8] as const, [2, 8] as const))
      for (const units of backward ? pick([1, 2, 4] as const, [1, 4] as const) : ([1] as const))
        for (const wide of [false, true])
          for (const prefetch of [false, true])
            if (!(wide && rows === 8)) out.push({ rows, slices, units, wide, prefetch }); // 8 rows: 64 wide anyway
  return out;
}

const label = (s: StepSettings) =>
  `${s.rows} row${s.rows > 1 ? "s" : ""}, ${s.slices} slice${s.slices > 1 ? "s" : ""}, ${s.units} unit${s.units > 1 ? "s" : ""}` +
  `${s.wide ? ", wide" : ""}${s.prefetch ? ", prefetch" : ""}`;

function setEnv(s: StepSettings | null): void {
  for (const k of ALL) delete process.env[k];
  if (!s) return;
  Object.assign(process.env, {
    CHARLM_WEBGPU_ROWS: `${s.rows}`,
    CHARLM_WEBGPU_SPLIT: `${s.slices}`,
    CHARLM_WEBGPU_UNITS: `${s.units}`,
    CHARLM_WEBGPU_WIDE: s.wide ? "1" : "0",
    CHARLM_WEBGPU_PREFETCH: s.prefetch ? "1" : "0",
  });
}

async function main(): Promise<void> {
  const t00 = performance.now();
  const gpu = await createWebgpuBackend();
  console.log(`charlm webgpu step kernels on ${gpu.device}${tiny ? " (tiny: the plumbing, not the speed)" : ""}`);
  if (!tiny && /swiftshader/i.test(gpu.device)) {
    console.log("the adapter is SwiftShader (a CPU Vulkan), not a GPU: stopping; use --tiny to check the plumbing");
    process.exit(1);
  }
  console.log(`LSTM, sequence ${T}, float32; us per time step, the median of 3 timings of ${REPS} sequences each\n`);
  const rng = new Rng(0);
  const up = (n: number, scale: number) => {
    const s = gpu.alloc(n);
    gpu.write(
      s,
      Float32Array.from({ length: n }, () => (rng.random() * 2 - 1) * scale),
    );
    return s;
  };
  const sq = gpu.alloc(2);
  /** ‖a - b‖ / ‖b‖ over n values, on the GPU (one float read back). */
  const relDiff = async (a: GpuStorage, b: GpuStorage, n: number, scratch: GpuStorage) => {
    gpu.binary("sub", a, [1], b, [1], scratch, [n]);
    gpu.sumSquares(scratch, n, sq, 0);
    gpu.sumSquares(b, n, sq, 1);
    const [d, r] = await gpu.read(sq);
    return Math.sqrt(d / r);
  };
  /** Median us per call of `run` over `per` (REPS calls, the GPU waited for), after one warm-up (compiles). */
  const time = async (run: () => void, per = T) => {
    run();
    await gpu.flush();
    const us: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      for (let r = 0; r < REPS; r++) run();
      await gpu.flush();
      us.push(((performance.now() - t0) * 1000) / (REPS * per));
    }
    return us.sort((a, b) => a - b)[1];
  };
  const table: Record<string, StepSettings> = {};
  const results: Record<string, unknown>[] = [];
  const tablePath = arg("--table");
  const jsonPath = arg("--json");
  const save = () => {
    if (tablePath) writeFileSync(tablePath, JSON.stringify(table, null, 1));
    if (jsonPath) writeFileSync(jsonPath, JSON.stringify({ device: gpu.device, T, reps: REPS, results }, null, 1));
  };

  for (const { H, B } of shapes) {
    const G = 4 * H;
    const n = T * B * H;
    const f = {
      T,
      B,
      H,
      xw: up(T * B * G, 1),
      wh: up(H * G, 1 / Math.sqrt(H)),
      h0: up(B * H, 0.5),
      c0: up(B * H, 0.5),
    };
    const out = { hs: gpu.alloc(n), cs: gpu.alloc(n), gates: gpu.alloc(T * B * G) };
    const bw = { dhs: up(n, 0.1), dxw: gpu.alloc(T * B * G), dh0: gpu.alloc(B * H), dc0: gpu.alloc(B * H) };
    const refs = { hs: gpu.alloc(n), dxw: gpu.alloc(T * B * G) };
    const scratch = gpu.alloc(T * B * G);
    const forward = () => gpu.lstmForward({ ...f, ...out });
    const backward = () =>
      gpu.lstmBackward({ ...f, ...out, ...bw, dhT: null, dcT: null, dwh: null } as Parameters<
        typeof gpu.lstmBackward
      >[0]);
    for (const [dir, run, result, ref, size] of [
      ["lstmForward", forward, out.hs, refs.hs, n],
      ["lstmBackward", backward, bw.dxw, refs.dxw, T * B * G],
    ] as const) {
      const isBackward = dir === "lstmBackward";
      setEnv(null);
      const d = lstmStepSettings(isBackward, B, H);
      await time(run); // the reference output; its time is taken after the grid (a shape's first timing ran slow)
      gpu.copy(result, 0, ref, 0, size);
      const rows: { s: StepSettings; us: number; diff: number }[] = [];
      const t0 = performance.now();
      for (const s of grid(isBackward, B)) {
        setEnv(s);
        // 8 rows with too few slices would pass WebGPU's 16 KiB of workgroup memory: the backend takes 4 rows then
        if (lstmStepSettings(isBackward, B, H).R !== s.rows) continue;
        const us = await time(run);
        rows.push({ s, us, diff: await relDiff(result, ref, size, scratch) });
        results.push({ kernel: dir, H, B, ...s, us, diff: rows[rows.length - 1].diff });
      }
      setEnv(null);
      // On the H200 at stop 9 the first timing of each shape, taken before the grid, ran up to 4.6x slower than the
      // same settings timed within it (LSTM 512's forward at batch 256: 293.9 us, then 63.6): the default is timed
      // here, warm, like every setting of the grid.
      const defaultUs = await time(run);
      rows.sort((a, b) => a.us - b.us);
      const best = rows.find((r) => r.diff < 1e-3) ?? rows[0];
      table[`${dir} H${H} B${B}`] = best.s;
      const chosen = `${d.R} row${d.R > 1 ? "s" : ""}, ${d.S} slices, ${d.U} unit${d.U > 1 ? "s" : ""}, tile ${d.W}${d.P ? ", prefetch" : ""}`;
      console.log(
        `${dir} H=${H} B=${B}: default (${chosen}) ${defaultUs.toFixed(1)} us/step; fastest ${best.us.toFixed(1)} ` +
          `(${label(best.s)}), ${(defaultUs / best.us).toFixed(2)}x the default; ${rows.length} settings in ` +
          `${((performance.now() - t0) / 1000).toFixed(1)} s`,
      );
      for (const r of rows.slice(0, tiny ? 3 : 8))
        console.log(`    ${r.us.toFixed(1).padStart(8)} us  ${label(r.s).padEnd(44)} diff ${r.diff.toExponential(1)}`);
      const broken = rows.filter((r) => !(r.diff < 1e-3));
      if (broken.length)
        console.log(`    DIFFERENT from the default's output: ${broken.map((r) => label(r.s)).join("; ")}`);
      save();
    }

    // The weight gradient dWh += [h0; h..]ᵀ (H, T·B) · da (T·B, G), and an embedding's dWx (64, T·B) · da, at each
    // split-K target (CHARLM_WEBGPU_SPLITK; 2,048 by default since stop 9, 512 at stops 7-8, 128 before).
    const hp = up(T * B * H, 1);
    const dw = gpu.alloc(H * G);
    for (const [what, M, a] of [
      ["dWh", H, hp],
      ["dWx, embedding 64", 64, hp],
    ] as const) {
      const line: string[] = [];
      for (const target of [64, 128, 256, 512, 1024, 2048]) {
        process.env.CHARLM_WEBGPU_SPLITK = `${target}`;
        const opts = { transA: true, accumulate: true };
        const us = await time(() => gpu.matmul(a, bw.dxw, dw, M, T * B, G, opts), 1);
        const tflops = (2 * M * T * B * G) / us / 1e6;
        line.push(`${target}: ${(us / 1000).toFixed(3)} ms (${tflops.toFixed(1)} TFLOP/s)`);
        results.push({ kernel: `matmulTN ${what}`, H, B, splitK: target, ms: us / 1000, tflops });
      }
      delete process.env.CHARLM_WEBGPU_SPLITK;
      console.log(`  ${what} (${M} x ${T * B} x ${G}) by split-K target: ${line.join(", ")}`);
    }
    // The step's other large products with 64 x 64 and 128 x 128 tiles (CHARLM_WEBGPU_MATMUL): the input projection
    // of a layer fed H values (T·B, H)·(H, G), its input gradient (T·B, G)·(H, G)ᵀ, and dWh at the default split-K;
    // each 128 result compared with the 64 one (the same fma chains: 0 expected).
    const xs = up(T * B * H, 1);
    const gOut = gpu.alloc(T * B * G);
    const [ref64, got] = [gpu.alloc(T * B * G), gpu.alloc(T * B * G)];
    for (const [what, M, K, N, a, b, c, opts] of [
      ["x·Wx", T * B, H, G, xs, f.wh, gOut, {}],
      ["dx = da·Wxᵀ", T * B, G, H, bw.dxw, f.wh, xs, { transB: true }],
      ["dWh", H, T * B, G, hp, bw.dxw, dw, { transA: true }],
    ] as const) {
      const line: string[] = [];
      for (const tile of ["64", "128"]) {
        process.env.CHARLM_WEBGPU_MATMUL = tile;
        const us = await time(() => gpu.matmul(a, b, c, M, K, N, opts), 1);
        const tflops = (2 * M * K * N) / us / 1e6;
        gpu.copy(c, 0, tile === "64" ? ref64 : got, 0, M * N);
        const diff = tile === "64" ? 0 : await relDiff(got, ref64, M * N, scratch);
        line.push(
          `${tile}: ${(us / 1000).toFixed(3)} ms (${tflops.toFixed(1)} TFLOP/s${tile === "64" ? "" : `, diff ${diff.toExponential(1)}`})`,
        );
        results.push({ kernel: `matmul ${what}`, H, B, tile: Number(tile), ms: us / 1000, tflops, diff });
      }
      delete process.env.CHARLM_WEBGPU_MATMUL;
      console.log(`  ${what} (${M} x ${K} x ${N}) by tile: ${line.join(", ")}`);
    }
    for (const st of [xs, gOut, ref64, got]) gpu.free(st);
    console.log("");
    save();
    for (const s of [...Object.values(f), ...Object.values(out), ...Object.values(bw), ...Object.values(refs)])
      if (typeof s === "object") gpu.free(s);
    gpu.free(scratch);
    gpu.free(hp);
    gpu.free(dw);
  }
  if (tablePath) console.log(`the fastest settings per kernel and shape: ${tablePath} (CHARLM_WEBGPU_KERNELS)`);
  gpu.destroy?.();
  console.log(`total ${((performance.now() - t00) / 1000).toFixed(0)} s`);
}

await main();
process.exit(0);
