// `npm run bench -- gemm_threads [--threads 2,4] [--seconds S] [--no-products] [--no-sweep] [--no-train] [--steps N]`
//
// Does splitting the wasm matrix products over worker threads (CHARLM_THREADS, docs/wasm.md) pay off here?
//   1. The products of an LSTM training step (batch B=64, T=100 steps, embedding D=64, H=256 and 512, the shapes of
//      bench/gemm.ts) and 1024^3, through `backend.matmul` (operands resident in wasm memory, as the engine keeps them), on
//      1 thread and on each count of --threads (default 2).
//   2. A sweep of product sizes with the size threshold turned off, to see where a split starts to pay: that is how
//      THREAD_MIN_MACS in src/engine/backends/wasm/kernels.ts was chosen.
//   3. Whole training steps (Embedding 64 -> LSTM 256 -> Dense 65, batch 64, sequence 100, Adam), characters/s.
// Threads only help in wall-clock time, so this bench reports wall time (median and best), unlike bench/gemm.ts,
// plus the process's CPU time over wall time ("cores busy": about 1 means one core did all the work, about 2 that
// two threads really ran at once). On a machine whose cores are taken by other jobs, more threads cannot help.

import { availableParallelism, loadavg } from "node:os";
import type { MatmulOptions } from "../src/engine/backend.js";
import { type WasmBackendInfo, type WasmStorage, createWasmBackend } from "../src/engine/backends/wasm.js";
import { withBackend } from "../src/engine/index.js";
import { scope } from "../src/engine/scope.js";
import { buildModel } from "../src/models/registry.js";
import { Adam } from "../src/train/optimizers.js";
import { Rng } from "../src/util/rng.js";

interface Shape {
  name: string;
  M: number;
  K: number;
  N: number;
  opts: MatmulOptions;
}

const [B, T, D] = [64, 100, 64];

function lstmShapes(H: number): Shape[] {
  const G = 4 * H;
  const s = (name: string, M: number, K: number, N: number, transA = false, transB = false): Shape => ({
    name: `lstm${H} ${name}`,
    M,
    K,
    N,
    opts: { transA, transB },
  });
  return [
    s("h@Wh    (per step)", B, H, G),
    s("x@Wx    (all steps)", T * B, D, G),
    s("dg@Wh^T (per step)", B, G, H, false, true),
    s("h^T@dg  (dWh)", H, T * B, G, true),
    s("x^T@dg  (dWx)", D, T * B, G, true),
    s("dg@Wx^T (dx)", T * B, G, D, false, true),
  ];
}

interface WallTiming {
  median: number; // seconds per call
  best: number;
  cores: number; // process CPU time / wall time over the whole measurement
}

function wallTimes(fn: () => void, seconds: number): WallTiming {
  for (let i = 0; i < 3; i++) fn(); // warm-up: V8 swaps in the optimised wasm code after a few calls
  const ts: number[] = [];
  const start = performance.now();
  const cpu0 = process.cpuUsage();
  while (ts.length < 5 || performance.now() - start < seconds * 1000) {
    const t0 = performance.now();
    fn();
    ts.push((performance.now() - t0) / 1000);
  }
  const cpu = process.cpuUsage(cpu0);
  const cores = (cpu.user + cpu.system) / 1000 / (performance.now() - start);
  ts.sort((x, y) => x - y);
  return { median: ts[ts.length >> 1], best: ts[0], cores };
}

function rand(rng: Rng, n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.random() * 2 - 1;
  return a;
}

// Values in the backend's own (wasm) memory: the products run where the engine keeps its tensors.
function stored(be: WasmBackendInfo, values: Float32Array): WasmStorage {
  const st = be.alloc(values.length);
  be.write(st, values);
  return st;
}

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

const pad = (s: string, n: number) => s.padEnd(n);
const gflops = (M: number, K: number, N: number, t: number) => ((2 * M * K * N) / t / 1e9).toFixed(1);

function products(backends: WasmBackendInfo[], seconds: number): void {
  console.log("\n1. products, wall-clock GFLOP/s: median (best); speedup of medians over 1 thread; cores busy");
  const rng = new Rng(1);
  for (const s of [...lstmShapes(256), ...lstmShapes(512), { name: "1024^3", M: 1024, K: 1024, N: 1024, opts: {} }]) {
    const av = rand(rng, s.M * s.K);
    const bv = rand(rng, s.K * s.N);
    const cells: string[] = [];
    let base = 0;
    for (const be of backends) {
      const [a, b, c] = [stored(be, av), stored(be, bv), be.alloc(s.M * s.N)];
      const t = wallTimes(() => be.matmul(a, b, c, s.M, s.K, s.N, s.opts), seconds);
      for (const st of [a, b, c]) be.free(st);
      if (be.threads === 1) base = t.median;
      const speed = be.threads === 1 ? "" : ` x${(base / t.median).toFixed(2)}`;
      cells.push(
        `${be.threads}t ${gflops(s.M, s.K, s.N, t.median)} (${gflops(s.M, s.K, s.N, t.best)})${speed} ${t.cores.toFixed(2)}c`,
      );
    }
    console.log(`  ${pad(`${s.name} ${s.M}x${s.K}x${s.N}`, 40)} ${cells.map((x) => pad(x, 30)).join(" ")}`);
  }
}

async function sweep(threads: number[], seconds: number): Promise<void> {
  console.log("\n2. where a split starts to pay (threshold off): median wall time per call and speedup over 1 thread");
  const unlimited = await Promise.all(
    threads.map((t) => createWasmBackend(undefined, { threads: t, threadMinMacs: 0 })),
  );
  const one = await createWasmBackend(undefined, { threads: 1 });
  const rng = new Rng(2);
  const shapes: [number, number, number][] = [];
  for (const n of [48, 64, 96, 128, 160, 192, 256]) shapes.push([n, n, n]);
  for (const m of [64, 128, 256, 512, 1024]) shapes.push([m, 64, 256]); // input projections of a small model
  for (const [M, K, N] of shapes) {
    const av = rand(rng, M * K);
    const bv = rand(rng, K * N);
    const time = (be: WasmBackendInfo) => {
      const [a, b, c] = [stored(be, av), stored(be, bv), be.alloc(M * N)];
      const t = wallTimes(() => be.matmul(a, b, c, M, K, N), seconds / 2).median;
      for (const st of [a, b, c]) be.free(st);
      return t;
    };
    const t1 = time(one);
    const cells = unlimited.map((be) => `${be.threads}t x${(t1 / time(be)).toFixed(2)}`);
    const macs = ((M * K * N) / 2 ** 20).toFixed(2);
    console.log(
      `  ${pad(`${M}x${K}x${N}`, 14)} ${pad(`${macs}M MACs`, 14)} 1t ${(t1 * 1e6).toFixed(0)} us  ${cells.join("  ")}`,
    );
  }
  await Promise.all(unlimited.map((be) => be.close()));
}

function training(backends: WasmBackendInfo[], steps: number): void {
  console.log(`\n3. training steps (Embedding 64 -> LSTM 256 -> Dense 65, B=${B}, T=${T}, Adam), wall clock`);
  const V = 65;
  let base = 0;
  for (const be of backends) {
    const rng = new Rng(3);
    const config = {
      type: "rnn",
      cell: "lstm",
      vocabSize: V,
      embedding: 64,
      units: 256,
      layers: 1,
      dropout: 0,
    } as const;
    withBackend(be, () => {
      // The model's tensors live on the backend current when it is built: this one.
      const model = buildModel(config, rng);
      const opt = new Adam(model.parameters());
      const x = Int32Array.from({ length: B * T }, () => rng.int(V));
      const y = Int32Array.from({ length: B * T }, () => rng.int(V));
      const step = () =>
        scope(() => {
          const { loss } = model.forward(x, B, T, { targets: y, training: true });
          for (const t of model.parameters().values()) t.zeroGrad();
          loss!.backward();
          opt.step(2e-3);
        });
      step(); // warm-up
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      for (let s = 0; s < steps; s++) step();
      const sec = (performance.now() - t0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      if (be.threads === 1) base = sec;
      const speed = be.threads === 1 ? "" : `, x${(base / sec).toFixed(2)}`;
      const cores = ((cpu.user + cpu.system) / 1e6 / sec).toFixed(2);
      console.log(
        `  ${be.threads} thread(s): ${((B * T * steps) / sec).toFixed(0)} chars/s${speed} (cores busy ${cores})`,
      );
    });
  }
}

export async function main(args: string[]): Promise<void> {
  const seconds = Number(flag(args, "--seconds") ?? 0.4);
  const steps = Number(flag(args, "--steps") ?? 3);
  const threads = (flag(args, "--threads") ?? "2").split(",").map(Number);
  const backends = [1, ...threads].map((t) => createWasmBackend(undefined, { threads: t }));
  const all = await Promise.all(backends);
  const load = loadavg().map((x) => x.toFixed(1));
  console.log(
    `wasm build ${all[0].build}; ${availableParallelism()} cores, load average ${load.join(" ")} at start; ` +
      `${seconds}s per configuration`,
  );
  if (!args.includes("--no-products")) products(all, seconds);
  if (!args.includes("--no-sweep")) await sweep(threads, seconds);
  if (!args.includes("--no-train")) training(all, steps);
  console.log(`\nload average ${loadavg()[0].toFixed(1)} at the end`);
  await Promise.all(all.map((be) => be.close()));
}
