// The recurrent step kernels alone on the GPU, across their settings: which rows, slices, units a thread, tile width
// and prefetching, or the products layout (a tiled product in parts, then the gates), run an LSTM's time steps
// fastest on the GPU at hand, for W1's and W2's shapes (LSTM 256 and 512 at
// batch 64 and 256, sequence 100); the weight gradients' product at each split-K target; the large products
// in every tile variant; and, first, what a wavefront across a stack's layers could save. A few seconds per
// shape on an H200, where bench/gpu.ts's whole training steps take ~20 s per setting, so that one GPU session can
// try every combination and the training bench then times the fastest (its "tuned" variant).
//
//   node .gpu/app/gpu_kernels.mjs [--table FILE] [--json FILE] [--matmul FILE]
//                                       on the GPU machine (bench/gpu_machine.sh runs it)
//   npx tsx bench/gpu_kernels.ts --tiny here on SwiftShader: the plumbing, not the speed
//   --products-only                     the large products alone (seconds), no wavefront estimate nor step kernels
//
// The step kernels' part is src/engine/backends/webgpu/tune.ts (what `charlm tune-gpu` runs), printed in full here.
// Per shape it prints microseconds per time step (wall time of REPS whole sequences after a warm-up, the GPU
// waited for at the end: GPU-bound here, ~5 us of host encoding per step against 18-220 us of GPU time at stop 5),
// forward (lstmForward) and backward (lstmBackward without the weight gradient: Wh transposed once, the steps,
// dh0), the default rule's choice first, then the fastest settings, and each setting's relative difference from
// the default's output (float rounding: sums in another order; a wrong kernel shows as ~1). --table FILE writes the
// fastest settings per kernel and shape as CHARLM_WEBGPU_KERNELS takes them (src/engine/backends/webgpu/kernels/
// recurrent.ts): export CHARLM_WEBGPU_KERNELS="$(cat FILE)".

import { writeFileSync } from "node:fs";

import { createWebgpuBackend } from "../src/engine/backends/webgpu/index.js";
import { STEP_SETTING_ENV, type StepSettings } from "../src/engine/backends/webgpu/kernels/recurrent.js";
import { medianUs, relDiff, stepLabel, tuneLstmSteps } from "../src/engine/backends/webgpu/tune.js";
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
      // furthest from 0.5 of cuDNN first (stop 9: W2 at batch 256 0.44, at 64 0.66), so that a run cut short by its
      // time box has measured those
      { H: 512, B: 256 },
      { H: 512, B: 64 },
      { H: 256, B: 256 },
      { H: 256, B: 64 },
      { H: 512, B: 32 }, // the gpu preset's: its quality runs take the table too
    ];
const ALL = [...STEP_SETTING_ENV, "CHARLM_WEBGPU_RECURRENT"];
for (const k of ALL) delete process.env[k]; // the defaults are the backend's, whatever the shell set

async function main(): Promise<void> {
  const t00 = performance.now();
  const gpu = await createWebgpuBackend();
  console.log(`charlm webgpu step kernels on ${gpu.device}${tiny ? " (tiny: the plumbing, not the speed)" : ""}`);
  if (!tiny && /swiftshader/i.test(gpu.device)) {
    console.log("the adapter is SwiftShader (a CPU Vulkan), not a GPU: stopping; use --tiny to check the plumbing");
    process.exit(1);
  }
  console.log(`LSTM, sequence ${T}, float32; us per time step, the median of 3 timings of ${REPS} sequences each\n`);
  const table: Record<string, StepSettings> = {};
  const results: Record<string, unknown>[] = [];
  const tablePath = arg("--table");
  const jsonPath = arg("--json");
  const save = () => {
    if (tablePath) writeFileSync(tablePath, JSON.stringify(table, null, 1));
    if (jsonPath) writeFileSync(jsonPath, JSON.stringify({ device: gpu.device, T, reps: REPS, results }, null, 1));
  };

  // first, as it takes seconds: what a wavefront across layers could save
  const rng = new Rng(0);
  const up = (n: number, scale: number) => {
    const s = gpu.alloc(n);
    gpu.write(
      s,
      Float32Array.from({ length: n }, () => (rng.random() * 2 - 1) * scale),
    );
    return s;
  };
  const productsOnly = process.argv.includes("--products-only");
  if (!productsOnly) await wavefrontEstimate(gpu, up, results);
  save();

  // the step kernels, every setting (saved after each kernel and shape, so that a run cut short keeps them)
  let t0 = performance.now();
  await tuneLstmSteps(gpu, productsOnly ? [] : shapes, {
    T,
    reps: REPS,
    small: tiny,
    onKernel: (k) => {
      const d = k.defaults;
      const chosen = d.products
        ? `products, ${d.S} parts`
        : `${d.R} row${d.R > 1 ? "s" : ""}, ${d.S} slices, ${d.U} unit${d.U > 1 ? "s" : ""}, tile ${d.W}${d.P ? ", prefetch" : ""}${d.ahead ? ", weights ahead" : ""}`;
      console.log(
        `${k.kernel} H=${k.H} B=${k.B}: default (${chosen}) ${d.us.toFixed(1)} us/step; fastest ` +
          `${k.best.us.toFixed(1)} (${stepLabel(k.best.settings)}), ${(d.us / k.best.us).toFixed(2)}x the default; ` +
          `${k.timings.length} settings in ${((performance.now() - t0) / 1000).toFixed(1)} s`,
      );
      for (const r of k.timings.slice(0, tiny ? 3 : 8))
        console.log(
          `    ${r.us.toFixed(1).padStart(8)} us  ${stepLabel(r.settings).padEnd(44)} diff ${r.diff.toExponential(1)}`,
        );
      const broken = k.timings.filter((r) => !(r.diff < 1e-3));
      if (broken.length)
        console.log(`    DIFFERENT from the default's output: ${broken.map((r) => stepLabel(r.settings)).join("; ")}`);
      for (const r of k.timings)
        results.push({ kernel: k.kernel, H: k.H, B: k.B, ...r.settings, us: r.us, diff: r.diff });
      table[k.key] = k.best.settings;
      save();
      t0 = performance.now();
    },
  });
  console.log("");

  // the large products per shape; their total per tile variant (CHARLM_WEBGPU_MATMUL) over every shape
  const productUs: Record<string, number> = {};
  const sq = gpu.alloc(2);
  const time = (run: () => void) => medianUs(gpu, run, REPS);
  for (const { H, B } of shapes) {
    const G = 4 * H;
    console.log(`LSTM ${H} at batch ${B}, sequence ${T}: the large products`);
    const hp = up(T * B * H, 1); // [h0; h..] (T·B, H), and an input of H values
    const da = up(T * B * G, 0.1); // the pre-activation gradients (T·B, G)
    const wh = up(H * G, 1 / Math.sqrt(H));
    const dw = gpu.alloc(H * G);
    const scratch = gpu.alloc(T * B * G);
    // The weight gradient dWh += [h0; h..]ᵀ (H, T·B) · da (T·B, G), and an embedding's dWx (64, T·B) · da, at each
    // split-K target (CHARLM_WEBGPU_SPLITK; 2,048 by default since stop 9, 512 at stops 7-8, 128 before).
    for (const [what, M] of [
      ["dWh", H],
      ["dWx, embedding 64", 64],
    ] as const) {
      const line: string[] = [];
      for (const target of [64, 128, 256, 512, 1024, 2048]) {
        process.env.CHARLM_WEBGPU_SPLITK = `${target}`;
        const opts = { transA: true, accumulate: true };
        const us = await time(() => gpu.matmul(hp, da, dw, M, T * B, G, opts));
        const tflops = (2 * M * T * B * G) / us / 1e6;
        line.push(`${target}: ${(us / 1000).toFixed(3)} ms (${tflops.toFixed(1)} TFLOP/s)`);
        results.push({ kernel: `matmulTN ${what}`, H, B, splitK: target, ms: us / 1000, tflops });
      }
      delete process.env.CHARLM_WEBGPU_SPLITK;
      console.log(`  ${what} (${M} x ${T * B} x ${G}) by split-K target: ${line.join(", ")}`);
    }
    // The step's other large products in every tile variant (CHARLM_WEBGPU_MATMUL: 64 x 64 or 128 x 128 tiles,
    // read as floats or as vec4s, prefetching or not, or both with two buffers): the input projection of a layer
    // fed H values (T·B, H)·(H, G), its input gradient (T·B, G)·(H, G)ᵀ, and dWh at the default split-K; each
    // result compared with the 64 one (the same fma chains: 0 expected). --matmul FILE writes the variant fastest
    // over every shape (bench/gpu.ts's "tuned, matmul ...", or with --compare "matmul ... everywhere").
    const xs = gpu.alloc(T * B * H);
    const TILES = ["64", "128", "64v", "128v", "64p", "128p", "64d", "128d"];
    const gOut = gpu.alloc(T * B * G);
    const [ref64, got] = [gpu.alloc(T * B * G), gpu.alloc(T * B * G)];
    for (const [what, M, K, N, a, b, c, opts] of [
      ["x·Wx", T * B, H, G, hp, wh, gOut, {}],
      ["dx = da·Wxᵀ", T * B, G, H, da, wh, xs, { transB: true }],
      ["dWh", H, T * B, G, hp, da, dw, { transA: true }],
    ] as const) {
      const line: string[] = [];
      for (const tile of TILES) {
        process.env.CHARLM_WEBGPU_MATMUL = tile;
        const us = await time(() => gpu.matmul(a, b, c, M, K, N, opts));
        productUs[tile] = (productUs[tile] ?? 0) + us;
        const tflops = (2 * M * K * N) / us / 1e6;
        gpu.copy(c, 0, tile === "64" ? ref64 : got, 0, M * N);
        const diff = tile === "64" ? 0 : await relDiff(gpu, got, ref64, M * N, scratch, sq);
        line.push(
          `${tile}: ${(us / 1000).toFixed(3)} ms (${tflops.toFixed(1)} TFLOP/s${tile === "64" ? "" : `, diff ${diff.toExponential(1)}`})`,
        );
        results.push({ kernel: `matmul ${what}`, H, B, tile, ms: us / 1000, tflops, diff }); // "64v": not a number
      }
      delete process.env.CHARLM_WEBGPU_MATMUL;
      console.log(`  ${what} (${M} x ${K} x ${N}) by tile: ${line.join(", ")}`);
    }
    for (const st of [hp, da, wh, dw, scratch, xs, gOut, ref64, got]) gpu.free(st);
    console.log("");
    save();
  }
  const [fastest] = Object.entries(productUs).sort((x, y) => x[1] - y[1]);
  console.log(
    `the large products of every shape by tile: ${Object.entries(productUs)
      .map(([tile, us]) => `${tile}: ${(us / 1000).toFixed(3)} ms`)
      .join(", ")}; fastest ${fastest[0]}`,
  );
  const matmulPath = arg("--matmul");
  if (matmulPath) writeFileSync(matmulPath, fastest[0]);
  if (tablePath) console.log(`the fastest settings per kernel and shape: ${tablePath} (CHARLM_WEBGPU_KERNELS)`);
  gpu.destroy?.();
  console.log(`total ${((performance.now() - t00) / 1000).toFixed(0)} s`);
}

/**
 * What a wavefront across a stack's layers could save (not built yet: it needs a multi-layer recurrent op). Two
 * layers' time steps are two dependent dispatches per step today; a wavefront runs layer 1's step t and layer 2's
 * step t - 1 in one dispatch of twice the workgroups. Its cost at best is that of one layer's step at twice the
 * batch (the same work in one dispatch), so for W2's shapes this prints t(2B) against 2·t(B), forward and backward,
 * with the defaults' settings; and the floor of a dependent dispatch on this GPU (a chain of one-value kernels).
 */
async function wavefrontEstimate(
  gpu: Awaited<ReturnType<typeof createWebgpuBackend>>,
  up: (n: number, scale: number) => ReturnType<typeof gpu.alloc>,
  results: Record<string, unknown>[],
): Promise<void> {
  const one = gpu.alloc(1);
  const floor = await medianUs(gpu, () => gpu.scale(one, one, 1, 1, true), REPS * T);
  gpu.free(one);
  console.log(`a dependent dispatch (one value, ${REPS * T} in a row): ${floor.toFixed(1)} us each`);
  results.push({ kernel: "dependent dispatch", us: floor });
  for (const { H, B } of shapes.filter((s) => s.H === (tiny ? 24 : 512) && s.B !== 32)) {
    const us: Record<string, number> = {};
    for (const b of [B, 2 * B]) {
      const G = 4 * H;
      const n = T * b * H;
      const bufs = {
        xw: up(T * b * G, 1),
        wh: up(H * G, 1 / Math.sqrt(H)),
        h0: up(b * H, 0.5),
        c0: up(b * H, 0.5),
        hs: gpu.alloc(n),
        cs: gpu.alloc(n),
        gates: gpu.alloc(T * b * G),
        dhs: up(n, 0.1),
        dxw: gpu.alloc(T * b * G),
        dh0: gpu.alloc(b * H),
        dc0: gpu.alloc(b * H),
      };
      const f = { T, B: b, H, ...bufs };
      us[`forward ${b}`] = await medianUs(gpu, () => gpu.lstmForward(f), REPS, T);
      const bw = { ...f, dhT: null, dcT: null, dwh: null };
      us[`backward ${b}`] = await medianUs(gpu, () => gpu.lstmBackward(bw), REPS, T);
      for (const st of Object.values(bufs)) gpu.free(st);
    }
    for (const dir of ["forward", "backward"]) {
      const [single, doubled] = [us[`${dir} ${B}`], us[`${dir} ${2 * B}`]];
      console.log(
        `LSTM ${H} ${dir} at batch ${B}: two layers' steps as two dispatches ${(2 * single).toFixed(1)} us, as one ` +
          `of batch ${2 * B} ${doubled.toFixed(1)} us: a wavefront could take ${(doubled / (2 * single)).toFixed(2)}x`,
      );
      results.push({ kernel: `wavefront ${dir}`, H, B, twoDispatchesUs: 2 * single, oneDispatchUs: doubled });
    }
  }
  console.log("");
}

await main();
process.exit(0);
