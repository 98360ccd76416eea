// The `wasm` backend: the Backend kernels run in WebAssembly SIMD compiled from assembly/ (see docs/wasm.md).
//
// Legend: M, K, N matrix sizes; T time steps; B batch; H hidden; G gate width (4H LSTM, 3H GRU, H RNN).
//
// The module has no allocator and no imports. For every call this file lays the operands out in wasm linear memory
// above the module's static data (a bump "arena", reset per call), copies the inputs in, runs the kernel and copies
// the outputs back into the caller's Float32Arrays. The copies are O(size of the operands) against O(M·K·N) work,
// and the recurrent kernels run a whole sequence per call, so they are amortised. Memory grows as needed and is
// kept for the next call (wasm memory cannot shrink); growing detaches old views, so views are made after growing.
//
// Threads (Node only, opt-in: `{ threads }` or CHARLM_THREADS, default 1). With threads > 1 the backend loads the
// shared-memory build of the same kernels, and starts threads - 1 worker_threads, each instantiating that module
// on the same memory. Large matrix products are then split into blocks of rows (or of columns, when C is wider than
// tall) and each thread computes one block with `gemmBlock`; the main thread takes the first block and then blocks
// in Atomics.wait until the workers are done. The recurrent backward kernels leave their one big product (dWh,
// (H x T·B x G)) to this file, which splits it the same way; their per-step products (B x H x G) are split by the
// kernels themselves, by columns, through the same workers (assembly/threads.ts). Every element is computed by the
// same code in the same order whatever the split, so the results are bit-identical to one thread. Products under
// the size threshold, the gate math and the copies stay on the main thread.

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
import { jsBackend } from "./js.js";
import { CharlmError } from "../../util/errors.js";

// Until the wasm backend keeps its storage in wasm memory, its storage is the js backend's (Float32Arrays): the
// products and recurrent layers below copy their operands in and out per call, every other kernel is the js one.
type F = Float32Array;
type LstmForwardArgs = LstmForwardArgsOf<F>;
type LstmBackwardArgs = LstmBackwardArgsOf<F> & { dwh: F };
type GruForwardArgs = GruForwardArgsOf<F>;
type GruBackwardArgs = GruBackwardArgsOf<F> & { dwh: F; dbh: F };
type RnnForwardArgs = RnnForwardArgsOf<F>;
type RnnBackwardArgs = RnnBackwardArgsOf<F> & { dwh: F };

/** The kernels this file runs in wasm, on Float32Arrays copied in and out per call. */
interface CopyingKernels {
  readonly name: string;
  matmul(a: F, b: F, c: F, M: number, K: number, N: number, opts?: MatmulOptions): void;
  lstmForward(args: LstmForwardArgs): void;
  lstmBackward(args: LstmBackwardArgs): void;
  gruForward(args: GruForwardArgs): void;
  gruBackward(args: GruBackwardArgs): void;
  rnnForward(args: RnnForwardArgs): void;
  rnnBackward(args: RnnBackwardArgs): void;
}

/** Where the build script puts the modules (works from src/engine/backends and from dist/engine/backends). */
export const WASM_URL = new URL("../../../build/kernels.wasm", import.meta.url);
/** The same kernels built with relaxed SIMD (fused multiply-add): used where the runtime validates it. */
export const WASM_RELAXED_URL = new URL("../../../build/kernels-relaxed.wasm", import.meta.url);
/** The two builds again with shared, imported memory, for threads > 1. */
export const WASM_SHARED_URL = new URL("../../../build/kernels-shared.wasm", import.meta.url);
export const WASM_SHARED_RELAXED_URL = new URL("../../../build/kernels-shared-relaxed.wasm", import.meta.url);

// The shared builds import their memory; these limits must match scripts/build-wasm.mjs (--initialMemory,
// --maximumMemory). 65536 pages = 4 GiB, wasm32's limit, as for the unshared builds.
const SHARED_PAGES = { initial: 16, maximum: 65536 };

/** The most threads `{ threads }` / CHARLM_THREADS accept. */
export const MAX_THREADS = 64;

// Products with fewer multiply-adds (M·K·N) than this stay on the main thread: handing a block to a worker and
// waiting for it costs tens of microseconds, and a worker that has been idle for a while is slower to wake. Measured
// with `npm run bench -- gemm_threads` (see docs/wasm.md).
export const THREAD_MIN_MACS = 1 << 21;
// Each thread gets at least this many rows (or columns) of C, so that blocks keep whole micro-kernel tiles busy.
const MIN_ROWS_PER_THREAD = 16;
const MIN_COLS_PER_THREAD = 64;

interface Kernels {
  memory: WebAssembly.Memory;
  heapBase(): number;
  packedBFloats(K: number, N: number): number;
  packAFloats(): number;
  gemmWorkspaceFloats(): number;
  packB(b: number, K: number, N: number, transB: number, dst: number): void;
  gemmFewRows(a: number, b: number, c: number, M: number, K: number, N: number, acc: number): void;
  setTileScratch(p: number): void;
  setWorkers(n: number, ctl: number, ws: number, wsStride: number, minMacs: number): void;
  gemmPackedCols(
    a: number,
    tA: number,
    bpk: number,
    c: number,
    M: number,
    K: number,
    N: number,
    acc: number,
    ws: number,
    j0: number,
    j1: number,
  ): void;
  tileScratchFloats(): number;
  gemmBlock(
    a: number,
    b: number,
    c: number,
    M: number,
    K: number,
    N: number,
    tA: number,
    tB: number,
    acc: number,
    ws: number,
    i0: number,
    i1: number,
    j0: number,
    j1: number,
  ): void;
  gemm(
    a: number,
    b: number,
    c: number,
    M: number,
    K: number,
    N: number,
    tA: number,
    tB: number,
    acc: number,
    ws: number,
  ): void;
  lstmForward(
    T: number,
    B: number,
    H: number,
    whp: number,
    hall: number,
    call: number,
    gates: number,
    ws: number,
  ): void;
  lstmBackward(
    T: number,
    B: number,
    H: number,
    whtp: number,
    hall: number,
    call: number,
    gates: number,
    dhs: number,
    dh: number,
    dc: number,
    dxw: number,
    dwh: number,
    ws: number,
    withDwh: number,
  ): void;
  gruForward(
    T: number,
    B: number,
    H: number,
    whp: number,
    bh: number,
    hall: number,
    gates: number,
    hn: number,
    hh: number,
    ws: number,
  ): void;
  gruBackward(
    T: number,
    B: number,
    H: number,
    whtp: number,
    hall: number,
    gates: number,
    hn: number,
    dhs: number,
    dh: number,
    dxw: number,
    dhh: number,
    dwh: number,
    dbh: number,
    ws: number,
    withDwh: number,
  ): void;
  rnnForward(T: number, B: number, H: number, whp: number, hall: number, ws: number): void;
  rnnBackward(
    T: number,
    B: number,
    H: number,
    whtp: number,
    hall: number,
    dhs: number,
    dh: number,
    dxw: number,
    dwh: number,
    ws: number,
    withDwh: number,
  ): void;
  sigmoidInPlace(p: number, n: number): void;
  tanhInPlace(p: number, n: number): void;
}

const PAGE = 65536;

// Products with fewer rows than the micro-kernel's 4 (MR in assembly/gemm.ts), i.e. sampling with batch 1, skip
// packing B: the kernels stream B once instead (gemmFewRows), and the recurrent kernels take Wh unpacked.
const FEW_ROWS = 4;

/** Bump allocator over linear memory; addresses are byte offsets, 16-byte aligned for v128 loads. */
class Arena {
  private base: number;
  private top: number;
  private view: Float32Array;

  constructor(private readonly k: Kernels) {
    this.base = (k.heapBase() + 15) & ~15;
    this.top = this.base;
    this.view = new Float32Array(k.memory.buffer);
  }

  /** Reserves n floats for good (below everything `reset` frees); returns the byte address. */
  keep(n: number): number {
    this.reset();
    const p = this.alloc(n);
    this.commit();
    this.base = this.top;
    return p;
  }

  /** Starts a new call: every earlier address is free again. */
  reset(): void {
    this.top = this.base;
  }

  /** Reserves n floats and returns the byte address; call `commit()` before touching memory. */
  alloc(n: number): number {
    const p = this.top;
    this.top += (n * 4 + 15) & ~15;
    return p;
  }

  /** Grows memory to cover every reservation and returns a fresh float view of it. */
  commit(): Float32Array {
    const have = this.k.memory.buffer.byteLength;
    if (this.top > have) {
      // Grow at least geometrically so a sequence of slightly larger calls does not grow every time.
      const need = Math.ceil((this.top - have) / PAGE);
      const pages = Math.max(need, Math.min(have / PAGE, 16384));
      try {
        this.k.memory.grow(pages);
      } catch {
        try {
          this.k.memory.grow(need);
        } catch {
          const mib = Math.ceil(this.top / 2 ** 20);
          throw new CharlmError(
            `wasm backend: this call needs ${mib} MiB of WebAssembly memory, more than the runtime allows (4 GiB at most); ` +
              "use a smaller batch or sequence length, or the js backend",
          );
        }
      }
    }
    if (this.view.buffer !== this.k.memory.buffer) this.view = new Float32Array(this.k.memory.buffer);
    return this.view;
  }

  /** Copies src into memory at byte address p (view from `commit()`). */
  static put(view: Float32Array, p: number, src: Float32Array, n: number): void {
    view.set(n === src.length ? src : src.subarray(0, n), p >> 2);
  }

  static take(view: Float32Array, p: number, dst: Float32Array, n: number): void {
    dst.set(view.subarray(p >> 2, (p >> 2) + n));
  }
}

function need(what: string, arr: Float32Array, n: number): void {
  if (arr.length < n) throw new Error(`wasm backend: ${what} has ${arr.length} floats, needs ${n}`);
}

// Node built-ins are imported through variable specifiers so that a browser bundler does not try to resolve them;
// in a browser they are never imported (readBuild fetches instead).
const FS = "node:fs/promises";
const URL_MOD = "node:url";
const isNode = () => typeof process !== "undefined" && typeof process.versions?.node === "string";

async function filePath(url: URL): Promise<string> {
  const { fileURLToPath } = (await import(URL_MOD)) as typeof import("node:url");
  return fileURLToPath(url);
}

/** Which build runs: "relaxed" (fused multiply-add) where the runtime supports it, else "plain"; "bytes" when the
 * caller passed the module's bytes. */
export type WasmBuild = "plain" | "relaxed" | "bytes";

/** The wasm backend, plus which build of the kernels it runs (the bench prints it). */
export interface WasmBackendInfo extends Backend<F> {
  readonly build: WasmBuild;
  /** Threads the large matrix products use (1: the calling thread only). */
  readonly threads: number;
  /** Stops the worker threads, if any; the backend keeps working, on one thread. */
  close(): Promise<void>;
}

// CHARLM_WASM_BUILD=plain|relaxed forces one build (tests run both; plain reproduces a Node 20 run elsewhere).
function requestedBuild(): "plain" | "relaxed" | null {
  const v = isNode() ? process.env.CHARLM_WASM_BUILD : undefined;
  if (v === undefined || v === "") return null;
  if (v === "plain" || v === "relaxed") return v;
  throw new CharlmError(`CHARLM_WASM_BUILD=${v}: unknown wasm build; use plain or relaxed, or unset it`);
}

async function readBuild(url: URL): Promise<Uint8Array<ArrayBuffer> | null> {
  if (isNode()) {
    const { readFile } = (await import(FS)) as typeof import("node:fs/promises");
    const { fileURLToPath } = (await import(URL_MOD)) as typeof import("node:url");
    try {
      return new Uint8Array(await readFile(fileURLToPath(url)));
    } catch {
      return null;
    }
  }
  const res = await fetch(url).catch(() => null);
  return res?.ok ? new Uint8Array(await res.arrayBuffer()) : null;
}

async function loadBytes(shared = false): Promise<{ bytes: Uint8Array<ArrayBuffer>; build: "plain" | "relaxed" }> {
  const [plainUrl, relaxedUrl] = shared ? [WASM_SHARED_URL, WASM_SHARED_RELAXED_URL] : [WASM_URL, WASM_RELAXED_URL];
  const want = requestedBuild();
  if (want !== "plain") {
    const relaxed = await readBuild(relaxedUrl);
    if (relaxed && WebAssembly.validate(relaxed)) return { bytes: relaxed, build: "relaxed" };
    if (want === "relaxed") {
      const file = shared ? "build/kernels-shared-relaxed.wasm" : "build/kernels-relaxed.wasm";
      throw new CharlmError(
        `CHARLM_WASM_BUILD=relaxed: ${relaxed ? "this runtime does not support relaxed SIMD" : `${file} is missing`}; ` +
          "unset it (or use Node 22+, or node --experimental-wasm-relaxed-simd on Node 20)",
      );
    }
  }
  const plain = await readBuild(plainUrl);
  if (!plain) {
    const where = isNode() ? await filePath(plainUrl) : plainUrl.href;
    throw new CharlmError(`${where}: the wasm kernels are not built (or not served); run \`npm run build:wasm\``);
  }
  return { bytes: plain, build: "plain" };
}

/** Options of `createWasmBackend`. */
export interface WasmBackendOptions {
  /**
   * Threads for large matrix products (Node only): 1 runs everything on the calling thread; N > 1 starts N - 1
   * worker threads on shared memory. Default: CHARLM_THREADS in Node (unless `bytes` are passed), else 1.
   */
  threads?: number;
  /** Products with fewer multiply-adds (M·K·N) stay on the calling thread; default THREAD_MIN_MACS (benches lower it). */
  threadMinMacs?: number;
}

function checkThreads(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 1 || n > MAX_THREADS) {
    throw new CharlmError(
      `${what}: not a whole number from 1 to ${MAX_THREADS}; ` +
        "give the threads for large matrix products (1 = no worker threads, e.g. the cores minus one), or unset it",
    );
  }
  return n;
}

/** CHARLM_THREADS as a thread count (1 when unset or outside Node); a malformed value is an error naming it. */
export function threadsFromEnv(): number {
  const v = isNode() ? process.env.CHARLM_THREADS : undefined;
  if (v === undefined || v.trim() === "") return 1;
  return checkThreads(Number(v), `CHARLM_THREADS=${v}`);
}

function instantiateError(e: unknown, file: string): CharlmError {
  return new CharlmError(
    `${file}: could not instantiate the wasm kernels (${(e as Error).message}); ` +
      "rebuild them with `npm run build:wasm` and use a runtime with WebAssembly SIMD (Node 20+, current browsers)",
  );
}

/**
 * Instantiates the kernels and returns a Backend using them: from `bytes` if given (either build), else from
 * build/kernels-relaxed.wasm where the runtime supports relaxed SIMD, else build/kernels.wasm (read with fs in Node,
 * fetched from the same URLs in a browser). With `threads` > 1 (Node only, not with `bytes`) it loads the
 * shared-memory build (build/kernels-shared*.wasm, same choice of plain or relaxed) and starts the worker threads;
 * `close()` stops them (they never keep the process alive).
 */
export async function createWasmBackend(bytes?: BufferSource, opts: WasmBackendOptions = {}): Promise<WasmBackendInfo> {
  const threads =
    opts.threads === undefined ? (bytes ? 1 : threadsFromEnv()) : checkThreads(opts.threads, `threads ${opts.threads}`);
  if (threads > 1) return createThreaded(bytes, threads, opts.threadMinMacs ?? THREAD_MIN_MACS);
  const loaded = bytes ? { bytes, build: "bytes" as const } : await loadBytes();
  let instance: WebAssembly.Instance;
  try {
    ({ instance } = await WebAssembly.instantiate(loaded.bytes, {}));
  } catch (e) {
    throw instantiateError(e, "build/kernels.wasm");
  }
  return adapt(new WasmBackend(instance.exports as unknown as Kernels, loaded.build, null, THREAD_MIN_MACS));
}

/**
 * The whole Backend interface over the copying kernels: batched products as one call per matrix, gradients that
 * are not wanted computed into scratch, everything else from the js backend.
 */
function adapt(k: WasmBackend): WasmBackendInfo {
  return {
    ...jsBackend,
    name: "wasm",
    build: k.build,
    get threads() {
      return k.threads;
    },
    close: () => k.close(),
    matmul(a, b, c, M, K, N, opts = {}) {
      const batch = opts.batch ?? 1;
      const [oa, ob, oc] = [opts.offsetA ?? 0, opts.offsetB ?? 0, opts.offsetC ?? 0];
      for (let p = 0; p < batch; p++) {
        k.matmul(
          a.subarray(oa + p * M * K, oa + (p + 1) * M * K),
          b.subarray(ob + p * K * N, ob + (p + 1) * K * N),
          c.subarray(oc + p * M * N, oc + (p + 1) * M * N),
          M,
          K,
          N,
          opts,
        );
      }
    },
    lstmForward: (a) => k.lstmForward(a),
    lstmBackward: (a) => k.lstmBackward({ ...a, dwh: a.dwh ?? new Float32Array(a.H * 4 * a.H) }),
    gruForward: (a) => k.gruForward(a),
    gruBackward: (a) =>
      k.gruBackward({
        ...a,
        dwh: a.dwh ?? new Float32Array(a.H * 3 * a.H),
        dbh: a.dbh ?? new Float32Array(3 * a.H),
      }),
    rnnForward: (a) => k.rnnForward(a),
    rnnBackward: (a) => k.rnnBackward({ ...a, dwh: a.dwh ?? new Float32Array(a.H * a.H) }),
  };
}

async function createThreaded(
  bytes: BufferSource | undefined,
  threads: number,
  minMacs: number,
): Promise<WasmBackendInfo> {
  if (bytes) {
    throw new CharlmError(
      `wasm backend: threads ${threads} need the shared-memory build, which the backend loads itself; pass no bytes, or threads 1`,
    );
  }
  if (!isNode() || typeof SharedArrayBuffer === "undefined") {
    throw new CharlmError(
      `wasm backend: threads ${threads} need Node's worker_threads and SharedArrayBuffer; use threads 1 here (in a browser the kernels run on one thread)`,
    );
  }
  const loaded = await loadBytes(true);
  const file = loaded.build === "relaxed" ? "build/kernels-shared-relaxed.wasm" : "build/kernels-shared.wasm";
  let memory: WebAssembly.Memory;
  let module: WebAssembly.Module;
  let kernels: Kernels;
  try {
    memory = new WebAssembly.Memory({ ...SHARED_PAGES, shared: true });
    module = await WebAssembly.compile(loaded.bytes);
    const instance = await WebAssembly.instantiate(module, { env: { memory } });
    kernels = { ...(instance.exports as unknown as Kernels), memory };
  } catch (e) {
    throw instantiateError(e, file);
  }
  const be = new WasmBackend(kernels, loaded.build, null, minMacs);
  await be.startPool(module, memory, threads - 1);
  return adapt(be);
}

// ---------------------------------------------------------------------------------------------------------------
// Worker threads

// The worker's code, plain JavaScript run with `new Worker(code, { eval: true })`, so it needs no loader and works
// the same from src/ (tsx) and dist/. Each worker instantiates the module on the shared memory (the module's data
// segments are written again then, which is why all workers start before the backend is first used), points its
// edge-tile scratch at its own, and serves jobs from its control block, CTL_BYTES in the shared memory itself, so
// that both this file and the recurrent kernels (assembly/threads.ts, same layout) can hand out work:
//   [0] seq     bumped to hand out a job; a negative value stops the worker
//   [1] done    the worker stores seq here when it finished that job
//   [2] failed  1 when the job threw (the main thread turns that into an error)
//   [3] kind    0: gemmBlock (this file's matmul and dWh), 1: gemmPackedCols (the recurrent per-step products)
//   [4..]       the arguments
const WORKER_CODE = `
const { parentPort, workerData } = require("node:worker_threads");
const { module, memory, ctlAddr, tile } = workerData;
const ctl = new Int32Array(memory.buffer, ctlAddr, 32);
let k;
try {
  k = new WebAssembly.Instance(module, { env: { memory } }).exports;
  k.setTileScratch(tile);
  parentPort.postMessage({ ready: true });
} catch (e) {
  parentPort.postMessage({ error: String((e && e.message) || e) });
}
let seen = 0;
while (k) {
  Atomics.wait(ctl, 0, seen);
  seen = Atomics.load(ctl, 0);
  if (seen < 0) break;
  try {
    const a = ctl.slice(4, 18);
    if (ctl[3] === 1) k.gemmPackedCols(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10]);
    else k.gemmBlock(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13]);
    Atomics.store(ctl, 2, 0);
  } catch (e) {
    Atomics.store(ctl, 2, 1);
  }
  Atomics.store(ctl, 1, seen);
  Atomics.notify(ctl, 1);
}
`;
// Bytes per control block; must match CTL_BYTES in assembly/threads.ts.
const CTL_BYTES = 128;
const WT = "node:worker_threads";

type WorkerT = import("node:worker_threads").Worker;

/** The worker threads of one backend and their control blocks. */
class Pool {
  private constructor(
    private readonly workers: WorkerT[],
    private readonly ctls: Int32Array[],
  ) {}

  get size(): number {
    return this.workers.length;
  }

  /**
   * Starts n workers on `memory`, worker i with its control block at ctl + i·CTL_BYTES and its edge-tile scratch
   * at tiles[i]; resolves when all are ready.
   */
  static async start(module: WebAssembly.Module, memory: WebAssembly.Memory, ctl: number, tiles: number[]) {
    const { Worker } = (await import(WT)) as typeof import("node:worker_threads");
    const workers: WorkerT[] = [];
    const ctls: Int32Array[] = [];
    const n = tiles.length;
    try {
      for (let i = 0; i < n; i++) {
        const ctlAddr = ctl + i * CTL_BYTES;
        // execArgv []: the worker must not inherit flags such as --input-type=module, which would make its
        // CommonJS code an ES module (V8 flags, e.g. relaxed SIMD on Node 20, are process-wide and still apply).
        const workerData = { module, memory, ctlAddr, tile: tiles[i] };
        const w = new Worker(WORKER_CODE, { eval: true, execArgv: [], workerData });
        workers.push(w);
        ctls.push(new Int32Array(memory.buffer, ctlAddr, CTL_BYTES / 4));
        await new Promise<void>((resolve, reject) => {
          w.once("message", (m: { ready?: boolean; error?: string }) =>
            m.ready ? resolve() : reject(new Error(m.error ?? "no answer")),
          );
          w.once("error", reject);
          w.once("exit", () => reject(new Error("the worker exited")));
        });
        w.removeAllListeners();
        // None is expected after start-up (jobs catch their own errors); a worker that died anyway is noticed by
        // run()'s deadline, since this thread is blocked in Atomics.wait when it matters and handles no events.
        w.on("error", () => {});
        // Idle workers wait in Atomics.wait; unref lets the process exit around them.
        w.unref();
      }
    } catch (e) {
      await Promise.all(workers.map((w) => w.terminate()));
      throw new CharlmError(
        `wasm backend: could not start ${n} worker thread(s) (${(e as Error).message}); use CHARLM_THREADS=1`,
      );
    }
    return new Pool(workers, ctls);
  }

  /**
   * Hands jobs[i] (gemmBlock's arguments) to worker i, runs `own` on this thread, and waits for the workers. The
   * wait blocks this thread (Atomics.wait, allowed on Node's main thread), so the caller's memory stays untouched.
   */
  run(jobs: number[][], own: () => void): void {
    // Each block's next sequence number is its last one plus 1: the recurrent kernels hand out jobs on the same
    // blocks (assembly/threads.ts does the same), so there is no shared counter to keep in step.
    const seqs: number[] = [];
    for (let i = 0; i < jobs.length; i++) {
      const ctl = this.ctls[i];
      const seq = (Atomics.load(ctl, 0) + 1) & 0x3fffffff;
      seqs.push(seq);
      ctl[3] = 0; // gemmBlock
      ctl.set(jobs[i], 4);
      Atomics.store(ctl, 0, seq);
      Atomics.notify(ctl, 0);
    }
    const t0 = performance.now();
    // If this thread's block throws, the workers still write into the memory: wait for them before rethrowing.
    let ownError: unknown = null;
    try {
      own();
    } catch (e) {
      ownError = e;
    }
    // A worker's block takes about as long as this thread's; allow for a machine that starves it for a while.
    const deadline = performance.now() + 60_000 + 100 * (performance.now() - t0);
    let failed = false;
    for (let i = 0; i < jobs.length; i++) {
      const ctl = this.ctls[i];
      for (;;) {
        const done = Atomics.load(ctl, 1);
        if (done === seqs[i]) break;
        if (performance.now() > deadline) {
          throw new CharlmError(
            "wasm backend: a worker thread did not finish its part of a matrix product in time; use CHARLM_THREADS=1",
          );
        }
        Atomics.wait(ctl, 1, done, 1000);
      }
      failed ||= Atomics.load(ctl, 2) !== 0;
    }
    if (ownError) throw ownError;
    if (failed) throw new CharlmError("wasm backend: a worker thread failed in a matrix product; use CHARLM_THREADS=1");
  }

  async close(): Promise<void> {
    for (const ctl of this.ctls) {
      Atomics.store(ctl, 0, -1);
      Atomics.notify(ctl, 0);
    }
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

// Splits C into `parts` blocks for gemmBlock: by rows when C is at least as tall as wide (the input projections,
// T·B rows), else by columns (dWh = h^T @ dg, (H, 4H)), so that what each thread packs twice (all of op(B) for a row
// split, all of op(A) for a column split) is the smaller operand. Boundaries fall on whole tiles (4 rows, 8 columns).
function splitC(M: number, N: number, parts: number): [number, number, number, number][] {
  const rows = M >= N;
  const dim = rows ? M : N;
  const unit = rows ? 4 : 8;
  const out: [number, number, number, number][] = [];
  let lo = 0;
  for (let p = 1; p <= parts; p++) {
    const hi = p === parts ? dim : Math.round((dim * p) / parts / unit) * unit;
    out.push(rows ? [lo, hi, 0, N] : [0, M, lo, hi]);
    lo = hi;
  }
  return out;
}

class WasmBackend implements CopyingKernels {
  readonly name = "wasm";
  private readonly arena: Arena;

  constructor(
    readonly kernels: Kernels,
    readonly build: WasmBuild,
    public pool: Pool | null,
    private readonly minMacs: number,
  ) {
    this.arena = new Arena(kernels);
  }

  get threads(): number {
    return this.pool ? this.pool.size + 1 : 1;
  }

  /**
   * Starts n worker threads: reserves for good their control blocks, edge-tile scratches and the workspaces of the
   * per-step products they take from the recurrent kernels, then tells the kernels about them.
   */
  async startPool(module: WebAssembly.Module, memory: WebAssembly.Memory, n: number): Promise<void> {
    const k = this.kernels;
    const ctl = this.arena.keep((n * CTL_BYTES) / 4);
    const wsStride = k.packAFloats() * 4;
    const ws = this.arena.keep(n * k.packAFloats());
    const tiles = Array.from({ length: n }, () => this.arena.keep(k.tileScratchFloats()));
    this.pool = await Pool.start(module, memory, ctl, tiles);
    k.setWorkers(n, ctl, ws, wsStride, Math.min(this.minMacs, 2 ** 31 - 1));
  }

  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = null;
    this.kernels.setWorkers(0, 0, 0, 0, 0);
    await pool?.close();
  }

  // How many threads share a product: 1 below the size threshold, else as many as get a useful block each.
  private parts(M: number, K: number, N: number): number {
    if (!this.pool || M * K * N < this.minMacs) return 1;
    const most = M >= N ? Math.floor(M / MIN_ROWS_PER_THREAD) : Math.floor(N / MIN_COLS_PER_THREAD);
    return Math.max(1, Math.min(this.pool.size + 1, most));
  }

  /** Reserves one gemm workspace per thread of a product (call before `commit`). */
  private workspaces(parts: number): number[] {
    return Array.from({ length: parts }, () => this.arena.alloc(this.kernels.gemmWorkspaceFloats()));
  }

  // C (+)= op(A)·op(B) on operands already in memory, over as many threads as `ws` has workspaces (the first one
  // on this thread).
  private gemmAt(
    pa: number,
    pb: number,
    pc: number,
    M: number,
    K: number,
    N: number,
    tA: number,
    tB: number,
    acc: number,
    ws: number[],
  ): void {
    const k = this.kernels;
    if (ws.length === 1 || !this.pool) {
      k.gemm(pa, pb, pc, M, K, N, tA, tB, acc, ws[0]);
      return;
    }
    const blocks = splitC(M, N, ws.length);
    const job = (t: number): Parameters<Kernels["gemmBlock"]> => [
      pa,
      pb,
      pc,
      M,
      K,
      N,
      tA,
      tB,
      acc,
      ws[t],
      ...blocks[t],
    ];
    this.pool.run(
      blocks.slice(1).map((_, t) => job(t + 1)),
      () => k.gemmBlock(...job(0)),
    );
  }

  matmul(
    a: Float32Array,
    b: Float32Array,
    c: Float32Array,
    M: number,
    K: number,
    N: number,
    opts: MatmulOptions = {},
  ): void {
    need("matmul A", a, M * K);
    need("matmul B", b, K * N);
    need("matmul C", c, M * N);
    const k = this.kernels;
    const ar = this.arena;
    ar.reset();
    const pa = ar.alloc(M * K);
    const pb = ar.alloc(K * N);
    const pc = ar.alloc(M * N);
    const fewRows = M < FEW_ROWS && !opts.transA && !opts.transB;
    const ws = fewRows ? [] : this.workspaces(this.parts(M, K, N));
    const v = ar.commit();
    Arena.put(v, pa, a, M * K);
    Arena.put(v, pb, b, K * N);
    if (opts.accumulate) Arena.put(v, pc, c, M * N);
    const [tA, tB, acc] = [opts.transA ? 1 : 0, opts.transB ? 1 : 0, opts.accumulate ? 1 : 0];
    if (fewRows) k.gemmFewRows(pa, pb, pc, M, K, N, acc);
    else this.gemmAt(pa, pb, pc, M, K, N, tA, tB, acc, ws);
    Arena.take(v, pc, c, M * N);
  }

  // Copies Wh (H, G) in and packs it for h @ Wh (or transposed, for dh @ Wh^T); returns the address the kernel
  // takes. Forward with fewer than FEW_ROWS batch rows uses Wh as stored (the kernels do not pack then).
  private weights(
    v: Float32Array,
    wh: Float32Array,
    H: number,
    G: number,
    transposed: boolean,
    pw: number,
    pp: number,
    B: number,
  ): number {
    Arena.put(v, pw, wh, H * G);
    if (transposed) this.kernels.packB(pw, G, H, 1, pp);
    else if (B < FEW_ROWS) return pw;
    else this.kernels.packB(pw, H, G, 0, pp);
    return pp;
  }

  lstmForward(a: LstmForwardArgs): void {
    const { T, B, H } = a;
    const G = 4 * H;
    const S = B * H;
    need("lstm xw", a.xw, T * B * G);
    need("lstm wh", a.wh, H * G);
    const k = this.kernels;
    const ar = this.arena;
    ar.reset();
    const hall = ar.alloc((T + 1) * S);
    const call = ar.alloc((T + 1) * S);
    const gates = ar.alloc(T * B * G);
    const pw = ar.alloc(H * G);
    const whp = ar.alloc(k.packedBFloats(H, G));
    const ws = ar.alloc(k.packAFloats());
    const v = ar.commit();
    Arena.put(v, hall, a.h0, S);
    Arena.put(v, call, a.c0, S);
    Arena.put(v, gates, a.xw, T * B * G);
    const w = this.weights(v, a.wh, H, G, false, pw, whp, B);
    k.lstmForward(T, B, H, w, hall, call, gates, ws);
    Arena.take(v, hall + S * 4, a.hs, T * S);
    Arena.take(v, call + S * 4, a.cs, T * S);
    Arena.take(v, gates, a.gates, T * B * G);
  }

  lstmBackward(a: LstmBackwardArgs): void {
    const { T, B, H } = a;
    const G = 4 * H;
    const S = B * H;
    const k = this.kernels;
    const ar = this.arena;
    ar.reset();
    const hall = ar.alloc((T + 1) * S);
    const call = ar.alloc((T + 1) * S);
    const gates = ar.alloc(T * B * G);
    const dhs = ar.alloc(T * S);
    const dh = ar.alloc(S);
    const dc = ar.alloc(S);
    const dxw = ar.alloc(T * B * G);
    const dwh = ar.alloc(H * G);
    const pw = ar.alloc(H * G);
    const whtp = ar.alloc(k.packedBFloats(G, H));
    const ws = this.workspaces(this.parts(H, T * B, G));
    const v = ar.commit();
    Arena.put(v, hall, a.h0, S);
    Arena.put(v, hall + S * 4, a.hs, T * S);
    Arena.put(v, call, a.c0, S);
    Arena.put(v, call + S * 4, a.cs, T * S);
    Arena.put(v, gates, a.gates, T * B * G);
    Arena.put(v, dhs, a.dhs, T * S);
    if (a.dhT) Arena.put(v, dh, a.dhT, S);
    else v.fill(0, dh >> 2, (dh >> 2) + S);
    if (a.dcT) Arena.put(v, dc, a.dcT, S);
    else v.fill(0, dc >> 2, (dc >> 2) + S);
    Arena.put(v, dwh, a.dwh, H * G);
    this.weights(v, a.wh, H, G, true, pw, whtp, B);
    // dWh += [h0 .. h_{T-2}]^T @ dxw: in the kernel on one thread, else here, split over the threads
    k.lstmBackward(T, B, H, whtp, hall, call, gates, dhs, dh, dc, dxw, dwh, ws[0], ws.length === 1 ? 1 : 0);
    if (ws.length > 1) this.gemmAt(hall, dxw, dwh, H, T * B, G, 1, 0, 1, ws);
    Arena.take(v, dxw, a.dxw, T * B * G);
    Arena.take(v, dwh, a.dwh, H * G);
    Arena.take(v, dh, a.dh0, S);
    Arena.take(v, dc, a.dc0, S);
  }

  gruForward(a: GruForwardArgs): void {
    const { T, B, H } = a;
    const G = 3 * H;
    const S = B * H;
    need("gru xw", a.xw, T * B * G);
    need("gru wh", a.wh, H * G);
    const k = this.kernels;
    const ar = this.arena;
    ar.reset();
    const hall = ar.alloc((T + 1) * S);
    const gates = ar.alloc(T * B * G);
    const hn = ar.alloc(T * S);
    const hh = ar.alloc(B * G);
    const bh = ar.alloc(G);
    const pw = ar.alloc(H * G);
    const whp = ar.alloc(k.packedBFloats(H, G));
    const ws = ar.alloc(k.packAFloats());
    const v = ar.commit();
    Arena.put(v, hall, a.h0, S);
    Arena.put(v, gates, a.xw, T * B * G);
    Arena.put(v, bh, a.bh, G);
    const w = this.weights(v, a.wh, H, G, false, pw, whp, B);
    k.gruForward(T, B, H, w, bh, hall, gates, hn, hh, ws);
    Arena.take(v, hall + S * 4, a.hs, T * S);
    Arena.take(v, gates, a.gates, T * B * G);
    Arena.take(v, hn, a.hn, T * S);
  }

  gruBackward(a: GruBackwardArgs): void {
    const { T, B, H } = a;
    const G = 3 * H;
    const S = B * H;
    const k = this.kernels;
    const ar = this.arena;
    ar.reset();
    const hall = ar.alloc((T + 1) * S);
    const gates = ar.alloc(T * B * G);
    const hn = ar.alloc(T * S);
    const dhs = ar.alloc(T * S);
    const dh = ar.alloc(S);
    const dxw = ar.alloc(T * B * G);
    const dhh = ar.alloc(T * B * G);
    const dwh = ar.alloc(H * G);
    const dbh = ar.alloc(G);
    const pw = ar.alloc(H * G);
    const whtp = ar.alloc(k.packedBFloats(G, H));
    const ws = this.workspaces(this.parts(H, T * B, G));
    const v = ar.commit();
    Arena.put(v, hall, a.h0, S);
    Arena.put(v, hall + S * 4, a.hs, T * S);
    Arena.put(v, gates, a.gates, T * B * G);
    Arena.put(v, hn, a.hn, T * S);
    Arena.put(v, dhs, a.dhs, T * S);
    if (a.dhT) Arena.put(v, dh, a.dhT, S);
    else v.fill(0, dh >> 2, (dh >> 2) + S);
    Arena.put(v, dwh, a.dwh, H * G);
    Arena.put(v, dbh, a.dbh, G);
    this.weights(v, a.wh, H, G, true, pw, whtp, B);
    k.gruBackward(T, B, H, whtp, hall, gates, hn, dhs, dh, dxw, dhh, dwh, dbh, ws[0], ws.length === 1 ? 1 : 0);
    if (ws.length > 1) this.gemmAt(hall, dhh, dwh, H, T * B, G, 1, 0, 1, ws); // dWh += [h0 ..]^T @ dhh
    Arena.take(v, dxw, a.dxw, T * B * G);
    Arena.take(v, dwh, a.dwh, H * G);
    Arena.take(v, dbh, a.dbh, G);
    Arena.take(v, dh, a.dh0, S);
  }

  rnnForward(a: RnnForwardArgs): void {
    const { T, B, H } = a;
    const S = B * H;
    need("rnn xw", a.xw, T * S);
    need("rnn wh", a.wh, H * H);
    const k = this.kernels;
    const ar = this.arena;
    ar.reset();
    const hall = ar.alloc((T + 1) * S);
    const pw = ar.alloc(H * H);
    const whp = ar.alloc(k.packedBFloats(H, H));
    const ws = ar.alloc(k.packAFloats());
    const v = ar.commit();
    Arena.put(v, hall, a.h0, S);
    Arena.put(v, hall + S * 4, a.xw, T * S);
    const w = this.weights(v, a.wh, H, H, false, pw, whp, B);
    k.rnnForward(T, B, H, w, hall, ws);
    Arena.take(v, hall + S * 4, a.hs, T * S);
  }

  rnnBackward(a: RnnBackwardArgs): void {
    const { T, B, H } = a;
    const S = B * H;
    const k = this.kernels;
    const ar = this.arena;
    ar.reset();
    const hall = ar.alloc((T + 1) * S);
    const dhs = ar.alloc(T * S);
    const dh = ar.alloc(S);
    const dxw = ar.alloc(T * S);
    const dwh = ar.alloc(H * H);
    const pw = ar.alloc(H * H);
    const whtp = ar.alloc(k.packedBFloats(H, H));
    const ws = this.workspaces(this.parts(H, T * B, H));
    const v = ar.commit();
    Arena.put(v, hall, a.h0, S);
    Arena.put(v, hall + S * 4, a.hs, T * S);
    Arena.put(v, dhs, a.dhs, T * S);
    if (a.dhT) Arena.put(v, dh, a.dhT, S);
    else v.fill(0, dh >> 2, (dh >> 2) + S);
    Arena.put(v, dwh, a.dwh, H * H);
    this.weights(v, a.wh, H, H, true, pw, whtp, B);
    k.rnnBackward(T, B, H, whtp, hall, dhs, dh, dxw, dwh, ws[0], ws.length === 1 ? 1 : 0);
    if (ws.length > 1) this.gemmAt(hall, dxw, dwh, H, T * B, H, 1, 0, 1, ws); // dWh += [h0 ..]^T @ dxw
    Arena.take(v, dxw, a.dxw, T * S);
    Arena.take(v, dwh, a.dwh, H * H);
    Arena.take(v, dh, a.dh0, S);
  }
}

/** Test hooks: the kernels' own sigmoid/tanh applied to xs (for accuracy tests). */
export async function wasmActivations(): Promise<{
  sigmoid(xs: Float32Array): Float32Array;
  tanh(xs: Float32Array): Float32Array;
}> {
  const { instance } = await WebAssembly.instantiate((await loadBytes()).bytes, {});
  const k = instance.exports as unknown as Kernels;
  const ar = new Arena(k);
  const run = (f: (p: number, n: number) => void, xs: Float32Array) => {
    ar.reset();
    const p = ar.alloc(xs.length);
    const v = ar.commit();
    Arena.put(v, p, xs, xs.length);
    f(p, xs.length);
    const out = new Float32Array(xs.length);
    Arena.take(ar.commit(), p, out, xs.length);
    return out;
  };
  return { sigmoid: (xs) => run(k.sigmoidInPlace, xs), tanh: (xs) => run(k.tanhInPlace, xs) };
}
