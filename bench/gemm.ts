// `npm run bench -- gemm [--seconds S] [--quick] [--no-js] [--no-numpy] [--gpt]`
//
// --gpt: the products of a GPT training step (bench train --only 3's model) instead of the LSTM's, no fused-step part.
//
// GFLOP/s of the matrix products of an LSTM training step (batch B=64, T=100 steps, embedding D=64, hidden H=256
// and 512) and of 1024x1024x1024, on each backend (js, wasm) and on NumPy/OpenBLAS single-threaded, run as a child
// process on the same shapes in the same run. Then the fused wasm LSTM forward+backward over a whole sequence
// against the time of its matrix products alone.
//
// Timing on a shared machine: every call is timed by the wall clock and by the process's CPU time. Under load
// (other people's jobs on the 2 cores) a long call is preempted and its wall time measures the load, not the
// kernel; CPU time does not count the time spent waiting, so the GFLOP/s and ratios below use the median CPU time
// (both sides are timed the same way: Python's process_time), with the best wall-clock GFLOP/s in brackets.
// Every backend is warmed up first: V8 runs new wasm code on its baseline compiler and swaps in the optimised code
// after a few calls.

import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Backend, MatmulOptions, Storage } from "../src/engine/backend.js";
import { jsBackend } from "../src/engine/backends/js.js";
import { readFileSync } from "node:fs";
import { setFlagsFromString } from "node:v8";
import { WASM_RELAXED_URL, WASM_URL, createWasmBackend } from "../src/engine/backends/wasm.js";
import { Rng } from "../src/util/rng.js";

interface Shape {
  name: string;
  M: number;
  K: number;
  N: number;
  transA: boolean;
  transB: boolean;
}

interface Timing {
  median: number; // CPU seconds per call, median
  best: number; // wall-clock seconds, best call
  reps: number;
}

const B = 64;
const T = 100;
const D = 64;

function lstmShapes(H: number): Shape[] {
  const G = 4 * H;
  const s = (name: string, M: number, K: number, N: number, transA = false, transB = false): Shape => ({
    name: `lstm${H} ${name}`,
    M,
    K,
    N,
    transA,
    transB,
  });
  return [
    s("h@Wh      (fwd, per step)", B, H, G),
    s("x@Wx      (fwd, all steps)", T * B, D, G),
    s("dg@Wh^T   (bwd, per step)", B, G, H, false, true),
    s("h^T@dg    (bwd dWh)", H, T * B, G, true, false),
    s("x^T@dg    (bwd dWx)", D, T * B, G, true, false),
    s("dg@Wx^T   (bwd dx)", T * B, G, D, false, true),
  ];
}

/** The products of a training step of the GPT of `bench train --only 3` (4 x 128 channels, block 128, batch 32). */
function gptShapes(): Shape[] {
  const R = 32 * 128; // rows: batch x block
  const C = 128;
  const s = (name: string, M: number, K: number, N: number, transA = false, transB = false): Shape => ({
    name: `gpt128 ${name}`,
    M,
    K,
    N,
    transA,
    transB,
  });
  return [
    s("x@Wqkv    (fwd)", R, C, 3 * C),
    s("x@Wfc     (fwd)", R, C, 4 * C),
    s("h@Wproj   (fwd)", R, 4 * C, C),
    s("x@head    (fwd)", R, C, 65),
    s("dy@Wqkv^T (bwd dx)", R, 3 * C, C, false, true),
    s("dy@Wproj^T (bwd dx)", R, C, 4 * C, false, true),
    s("x^T@dy    (bwd dWqkv)", C, R, 3 * C, true, false),
    s("h^T@dy    (bwd dWproj)", 4 * C, R, C, true, false),
  ];
}

function rand(rng: Rng, n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.random() * 2 - 1;
  return a;
}

function timeIt(fn: () => void, seconds: number, minReps = 3, warmup = 3): Timing {
  for (let i = 0; i < warmup; i++) fn();
  const wall: number[] = [];
  const cpu: number[] = [];
  const start = performance.now();
  while (wall.length < minReps || performance.now() - start < seconds * 1000) {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    fn();
    const dc = process.cpuUsage(c0);
    wall.push((performance.now() - t0) / 1000);
    cpu.push((dc.user + dc.system) / 1e6);
  }
  wall.sort((x, y) => x - y);
  cpu.sort((x, y) => x - y);
  return { median: cpu[cpu.length >> 1], best: wall[0], reps: wall.length };
}

// Values in a backend's own storage (the backends keep operands where they compute: nothing is copied per call).
function stored(be: Backend, values: Float32Array): Storage {
  const st = be.alloc(values.length);
  be.write(st, values);
  return st;
}

function timeMatmul(be: Backend, s: Shape, seconds: number, rng: Rng, oneShot: boolean): Timing {
  const a = stored(be, rand(rng, s.M * s.K));
  const b = stored(be, rand(rng, s.K * s.N));
  const c = be.alloc(s.M * s.N);
  const opts: MatmulOptions = { transA: s.transA, transB: s.transB };
  const run = () => be.matmul(a, b, c, s.M, s.K, s.N, opts);
  const t = oneShot ? timeIt(run, 0, 1, 0) : timeIt(run, seconds);
  for (const st of [a, b, c]) be.free(st);
  return t;
}

const gflops = (s: Shape, t: number) => (2 * s.M * s.K * s.N) / t / 1e9;
const fmt = (x: number | undefined, w = 6) => (x === undefined ? "-".padStart(w) : x.toFixed(1).padStart(w));

interface NumpyResult {
  blas: Record<string, unknown> | null;
  times: Map<string, Timing>;
  error?: string;
}

function runNumpy(shapes: Shape[], seconds: number): NumpyResult {
  const script = join(dirname(fileURLToPath(import.meta.url)), "gemm_numpy.py");
  const env = { ...process.env, OPENBLAS_NUM_THREADS: "1", OMP_NUM_THREADS: "1", MKL_NUM_THREADS: "1" };
  try {
    const out = execFileSync("/usr/bin/python3", [script, JSON.stringify(shapes), String(seconds)], {
      env,
      encoding: "utf8",
      maxBuffer: 1 << 24,
    });
    const res: NumpyResult = { blas: null, times: new Map() };
    for (const line of out.split("\n").filter((l) => l.trim())) {
      const j = JSON.parse(line) as {
        blas?: Record<string, unknown>;
        name?: string;
        best_s: number;
        cpu_median_s: number;
        reps: number;
      };
      if (j.blas) res.blas = j.blas;
      else if (j.name) res.times.set(j.name, { median: j.cpu_median_s, best: j.best_s, reps: j.reps });
    }
    return res;
  } catch (e) {
    return { blas: null, times: new Map(), error: (e as Error).message.split("\n")[0] };
  }
}

function describeBlas(blas: Record<string, unknown> | null): string {
  if (!blas) return "unknown";
  const core = blas.openblas_core ? `, kernel ${String(blas.openblas_core)}` : "";
  const cfg = blas.openblas_config ? String(blas.openblas_config) : `libraries ${JSON.stringify(blas.libraries)}`;
  const env = `OPENBLAS_CORETYPE=${blas.coretype_env ?? "(unset)"}, threads=${String(blas.openblas_threads ?? blas.threads_env)}`;
  return `numpy ${String(blas.numpy)}: ${cfg}${core} (${env})`;
}

// The fused LSTM step: lstmForward + lstmBackward over T steps, against its matrix products alone
// (T products h@Wh, T products dg@Wh^T and one dWh product, each timed through the same wasm GEMM).
function lstmStep(be: Backend, label: string, H: number, seconds: number, rng: Rng): void {
  const G = 4 * H;
  const put = (v: Float32Array) => stored(be, v);
  const xw = put(rand(rng, T * B * G));
  const wh = put(rand(rng, H * G).map((v) => v * 0.05));
  const h0 = put(rand(rng, B * H));
  const c0 = put(rand(rng, B * H));
  const hs = be.alloc(T * B * H);
  const cs = be.alloc(T * B * H);
  const gates = be.alloc(T * B * G);
  const dhs = put(rand(rng, T * B * H));
  const dxw = be.alloc(T * B * G);
  const dwh = be.alloc(H * G);
  const dh0 = be.alloc(B * H);
  const dc0 = be.alloc(B * H);
  const fwd = { T, B, H, xw, wh, h0, c0, hs, cs, gates };
  const tf = timeIt(() => be.lstmForward(fwd), seconds, 3, 2);
  const tb = timeIt(() => be.lstmBackward({ ...fwd, dhs, dhT: null, dcT: null, dxw, dwh, dh0, dc0 }), seconds, 3, 2);
  const rec = timeMatmul(be, { name: "", M: B, K: H, N: G, transA: false, transB: false }, seconds / 2, rng, false);
  const recT = timeMatmul(be, { name: "", M: B, K: G, N: H, transA: false, transB: true }, seconds / 2, rng, false);
  const dW = timeMatmul(be, { name: "", M: H, K: T * B, N: G, transA: true, transB: false }, seconds / 2, rng, false);
  const fused = tf.median + tb.median;
  const products = T * rec.median + T * recT.median + dW.median;
  const flops = 3 * 2 * T * B * H * G;
  console.log(
    `${label} lstm${H} fused fwd+bwd (T=${T}, B=${B}): ${(fused * 1e3).toFixed(1)} CPU ms ` +
      `(fwd ${(tf.median * 1e3).toFixed(1)} + bwd ${(tb.median * 1e3).toFixed(1)}), ` +
      `${(flops / fused / 1e9).toFixed(1)} GFLOP/s of recurrent products; products alone ${(products * 1e3).toFixed(1)} ms`,
  );
  const r = fused / products;
  console.log(
    `  ratio fused/products ${label} lstm${H}: ${r.toFixed(2)}x (target <= 1.5x: ${r <= 1.5 ? "met" : "MISSED"})`,
  );
}

export async function main(args: string[]): Promise<void> {
  const flag = (name: string) => args.includes(name);
  const si = args.indexOf("--seconds");
  const seconds = si >= 0 ? Number(args[si + 1]) : 0.4;
  const quick = flag("--quick");
  const shapes: Shape[] = flag("--gpt") ? gptShapes() : [...lstmShapes(256), ...(quick ? [] : lstmShapes(512))];
  if (!flag("--gpt")) shapes.push({ name: "1024x1024x1024", M: 1024, K: 1024, N: 1024, transA: false, transB: false });

  // Both builds of the kernels, whatever this runtime would pick by default: the plain f32x4 one (what Node 20
  // runs) and the relaxed-SIMD one with fused multiply-add (what Node 22+ and current browsers run). On Node 20 the
  // latter needs V8's --experimental-wasm-relaxed-simd, which the bench (not the library) switches on here.
  const wasm = await createWasmBackend(readFileSync(WASM_URL));
  const relaxedBytes = readFileSync(WASM_RELAXED_URL);
  let fmaNote = "native";
  if (!WebAssembly.validate(relaxedBytes)) {
    setFlagsFromString("--experimental-wasm-relaxed-simd");
    fmaNote = "enabled here with V8's --experimental-wasm-relaxed-simd";
  }
  const fma = WebAssembly.validate(relaxedBytes) ? await createWasmBackend(relaxedBytes) : null;
  const rng = new Rng(1);
  const np = flag("--no-numpy") ? null : runNumpy(shapes, seconds);
  console.log(
    `reference: ${np ? (np.error ? `NumPy failed: ${np.error}` : describeBlas(np.blas)) : "skipped (--no-numpy)"}`,
  );
  console.log(
    "backends: js (plain loops, one call per shape: it is slow); wasm (build/kernels.wasm, f32x4 SIMD, 1 thread); " +
      `wasm-fma (build/kernels-relaxed.wasm, relaxed SIMD: ${fma ? fmaNote : "not supported by this runtime"})`,
  );
  console.log(
    `${"shape".padEnd(30)} ${"M".padStart(5)} ${"K".padStart(5)} ${"N".padStart(5)}` +
      "   GFLOP/s (CPU time, [best wall]): js   wasm        wasm-fma      numpy",
  );
  const ratios: number[] = [];
  for (const s of shapes) {
    const w = timeMatmul(wasm, s, seconds, rng, false);
    const f = fma ? timeMatmul(fma, s, seconds, rng, false) : undefined;
    const j = flag("--no-js") ? undefined : timeMatmul(jsBackend, s, seconds, rng, true);
    const n = np?.times.get(s.name);
    console.log(
      `${s.name.padEnd(30)} ${String(s.M).padStart(5)} ${String(s.K).padStart(5)} ${String(s.N).padStart(5)}` +
        `   ${fmt(j && gflops(s, j.median))} ${fmt(gflops(s, w.median))} [${fmt(gflops(s, w.best), 4)}]` +
        `  ${fmt(f && gflops(s, f.median))} [${fmt(f && gflops(s, f.best), 4)}]` +
        `   ${fmt(n && gflops(s, n.median))} [${fmt(n && gflops(s, n.best), 4)}]`,
    );
    if (n) {
      const r = n.median / w.median;
      ratios.push(r);
      const rf = f ? `; wasm-fma/openblas ${(n.median / f.median).toFixed(2)}` : "";
      console.log(
        `  ratio wasm/openblas ${s.name.trim()}: ${r.toFixed(2)} (target >= 0.25: ${r >= 0.25 ? "met" : "MISSED"})${rf}`,
      );
    } else {
      console.log(`  ratio wasm/openblas ${s.name.trim()}: n/a (no NumPy timing)`);
    }
  }
  if (ratios.length) {
    console.log(`wasm/openblas ratio: min ${Math.min(...ratios).toFixed(2)}, max ${Math.max(...ratios).toFixed(2)}`);
  }
  for (const H of flag("--gpt") ? [] : quick ? [256] : [256, 512]) {
    lstmStep(wasm, "wasm", H, seconds, rng);
    if (fma) lstmStep(fma, "wasm-fma", H, seconds, rng);
  }
}
