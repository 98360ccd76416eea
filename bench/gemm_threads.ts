// `npm run bench -- gemm_threads [--seconds S]`: does a second thread pay off for the wasm matrix product here?
//
// Builds the kernels once more with shared memory (--sharedMemory --enable threads) into a temporary directory,
// starts one worker_thread on the same memory, and times each product on 1 thread and split by rows over 2 (the
// main thread takes the top half, the worker the bottom half; B is packed once and shared; the handshake is
// Atomics.wait/notify on a small control block). Threads only help in wall-clock time, so this bench reports wall
// time (best and median), unlike bench/gemm.ts. The backend itself stays single-threaded: see docs/wasm.md.

import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Worker } from "node:worker_threads";

interface SharedKernels {
  heapBase(): number;
  packedBFloats(K: number, N: number): number;
  packAFloats(): number;
  packB(b: number, K: number, N: number, transB: number, dst: number): void;
  gemmPacked(
    a: number,
    tA: number,
    bpk: number,
    c: number,
    M: number,
    K: number,
    N: number,
    acc: number,
    ws: number,
  ): void;
}

// The worker's code, plain JavaScript evaluated by `new Worker(..., { eval: true })` (a worker does not inherit the
// tsx loader). Control block (Int32Array over a SharedArrayBuffer): [seq, done, a, bpk, c, M, K, N, ws]; the main
// thread bumps seq to hand out a job, the worker stores seq into done when finished; seq < 0 stops the worker.
const WORKER = `
const { parentPort, workerData } = require("node:worker_threads");
const { bytes, memory, control } = workerData;
const k = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } }).exports;
const ctl = new Int32Array(control);
let seen = 0;
for (;;) {
  Atomics.wait(ctl, 0, seen);
  seen = Atomics.load(ctl, 0);
  if (seen < 0) break;
  k.gemmPacked(ctl[2], 0, ctl[3], ctl[4], ctl[5], ctl[6], ctl[7], 0, ctl[8]);
  Atomics.store(ctl, 1, seen);
  Atomics.notify(ctl, 1);
}
parentPort.postMessage("stopped");
`;

async function buildShared(): Promise<Uint8Array<ArrayBuffer>> {
  const root = join(dirname(fileURLToPath(import.meta.url)), "..");
  const dir = mkdtempSync(join(tmpdir(), "charlm-threads-"));
  const out = join(dir, "kernels-shared.wasm");
  const asc = (await import("assemblyscript/asc")).default;
  const args = [join(root, "assembly", "index.ts"), "--outFile", out, "-O3", "--noAssert", "--runtime", "stub"];
  args.push("--enable", "simd", "--enable", "threads", "--use", "abort=", "--sharedMemory", "--importMemory");
  args.push("--initialMemory", "2048", "--maximumMemory", "16384");
  const { error } = await asc.main(args, { stdout: process.stdout, stderr: process.stderr });
  if (error) throw error;
  const bytes = new Uint8Array(readFileSync(out));
  rmSync(dir, { recursive: true, force: true });
  return bytes;
}

// Wall-clock best and median, and the process's CPU time over wall time for the whole run: about 1 means only one
// core was doing the work, about 2 means both threads really ran at once.
function wallTimes(fn: () => void, seconds: number): { best: number; median: number; cores: number } {
  for (let i = 0; i < 5; i++) fn();
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
  return { best: ts[0], median: ts[ts.length >> 1], cores };
}

export async function main(args: string[]): Promise<void> {
  const si = args.indexOf("--seconds");
  const seconds = si >= 0 ? Number(args[si + 1]) : 0.6;
  const bytes = await buildShared();
  const memory = new WebAssembly.Memory({ initial: 2048, maximum: 16384, shared: true });
  const control = new SharedArrayBuffer(64);
  const ctl = new Int32Array(control);
  const k = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { memory } })
    .exports as unknown as SharedKernels;
  const worker = new Worker(WORKER, { eval: true, workerData: { bytes, memory, control } });
  const stopped = new Promise((resolve) => worker.once("message", resolve));
  worker.on("error", (e) => console.error(`gemm_threads: worker failed: ${e.message}`));
  // Let the worker start (and report a failure) before the main thread blocks in Atomics.wait.
  await new Promise((resolve) => setTimeout(resolve, 500));
  const f32 = () => new Float32Array(memory.buffer);
  let seq = 0;
  const base = (k.heapBase() + 15) & ~15;
  console.log(
    `wall-clock GFLOP/s, best and median over ${seconds}s per configuration (threads only help in wall time)`,
  );
  for (const [M, K, N] of [
    [64, 256, 1024],
    [64, 512, 2048],
    [6400, 64, 1024],
    [1024, 1024, 1024],
  ]) {
    let p = base;
    const alloc = (n: number) => {
      const r = p;
      p += (n * 4 + 15) & ~15;
      return r;
    };
    const a = alloc(M * K);
    const b = alloc(K * N);
    const c = alloc(M * N);
    const bpk = alloc(k.packedBFloats(K, N));
    const ws1 = alloc(k.packAFloats());
    const ws2 = alloc(k.packAFloats());
    if (p > memory.buffer.byteLength) memory.grow(Math.ceil((p - memory.buffer.byteLength) / 65536));
    const v = f32();
    for (let i = 0; i < M * K; i++) v[(a >> 2) + i] = Math.sin(i);
    for (let i = 0; i < K * N; i++) v[(b >> 2) + i] = Math.cos(i);
    const one = () => {
      k.packB(b, K, N, 0, bpk);
      k.gemmPacked(a, 0, bpk, c, M, K, N, 0, ws1);
    };
    const two = () => {
      k.packB(b, K, N, 0, bpk);
      const top = Math.floor(M / 8) * 4; // rows for the main thread, a multiple of the 4-row tile
      ctl.set([a + top * K * 4, bpk, c + top * N * 4, M - top, K, N, ws2], 2);
      seq++;
      Atomics.store(ctl, 0, seq);
      Atomics.notify(ctl, 0);
      k.gemmPacked(a, 0, bpk, c, top, K, N, 0, ws1);
      const deadline = performance.now() + 10_000;
      while (Atomics.load(ctl, 1) !== seq) {
        Atomics.wait(ctl, 1, Atomics.load(ctl, 1), 100);
        if (performance.now() > deadline) throw new Error("gemm_threads: the worker did not answer within 10 s");
      }
    };
    const t1 = wallTimes(one, seconds);
    const t2 = wallTimes(two, seconds);
    const g = (t: number) => ((2 * M * K * N) / t / 1e9).toFixed(1);
    console.log(
      `${M}x${K}x${N}: 1 thread ${g(t1.best)} (median ${g(t1.median)}), 2 threads ${g(t2.best)} (median ${g(t2.median)}); ` +
        `speedup best ${(t1.best / t2.best).toFixed(2)}, median ${(t1.median / t2.median).toFixed(2)}; ` +
        `cores busy ${t1.cores.toFixed(2)} vs ${t2.cores.toFixed(2)}`,
    );
  }
  Atomics.store(ctl, 0, -1);
  Atomics.notify(ctl, 0);
  await stopped;
  await worker.terminate();
}
