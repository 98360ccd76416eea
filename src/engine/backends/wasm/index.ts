// The `wasm` backend: every kernel of ../../backend.ts in WebAssembly SIMD compiled from assembly/ (docs/wasm.md),
// on storage resident in the module's memory, on one thread or several.
//
//   load.ts     finds, checks (ABI version) and instantiates the builds in build/
//   memory.ts   the storage type and the allocator (exact-size free lists)
//   kernels.ts  the Backend implementation: addresses in, nothing copied
//   pool.ts     worker threads (Node) or Web Workers (browsers), and how work is handed to them
//   threads.ts  how many threads to run
//   exports.ts  the declarations of the module's exports

import { CharlmError } from "../../../util/errors.js";
import { instantiateShared, instantiateSingle, isNode, loadBytes } from "./load.js";
import { type RecurrentSplit, WasmBackend } from "./kernels.js";
import { checkThreads, threadsFromEnv } from "./threads.js";

export type { WasmStorage } from "./memory.js";
export type { WasmBuild } from "./load.js";
export { ABI_VERSION, WASM_URL, WASM_RELAXED_URL, WASM_SHARED_URL, WASM_SHARED_RELAXED_URL } from "./load.js";
export { MAX_THREADS, DEFAULT_THREADS_CAP, defaultThreads, threadsFromEnv } from "./threads.js";
export { WasmBackend, THREAD_MIN_MACS, PART_MIN_ELEMS, type RecurrentSplit } from "./kernels.js";

/** Options of `createWasmBackend`. */
export interface WasmBackendOptions {
  /**
   * Threads: 1 runs everything on the calling thread; N > 1 starts N - 1 worker threads on shared memory (in a
   * browser: Web Workers, from a worker of a cross-origin-isolated page, with `sharedBytes`). Default:
   * `threadsFromEnv()` (CHARLM_THREADS, else the cores up to a cap) in Node unless bytes are given; 1 in browsers.
   */
  threads?: number;
  /** The module's bytes (an unshared build, one thread), instead of reading build/ (the web page fetches them). */
  bytes?: BufferSource;
  /**
   * A shared-memory build's bytes (build/kernels-shared*.wasm), for threads > 1 where the backend cannot read
   * build/ itself: a browser's worker on a cross-origin-isolated page (the threads are then Web Workers).
   */
  sharedBytes?: BufferSource;
  /** Which build the given bytes are, for `build` (default "bytes": not said). */
  build?: "plain" | "relaxed";
  /** Products with fewer multiply-adds (M·K·N) stay on one thread; default THREAD_MIN_MACS (tests lower it). */
  threadMinMacs?: number;
  /** Elementwise and row work below this many elements per thread stays on one thread; default PART_MIN_ELEMS. */
  threadMinElems?: number;
  /** How recurrent layers share their work (see RecurrentSplit); default CHARLM_WASM_SPLIT, else "rows". */
  recurrentSplit?: RecurrentSplit;
}

// CHARLM_WASM_SPLIT=rows|columns picks the recurrent layers' split (to compare them with `npm run bench -- threads`).
function splitFromEnv(): RecurrentSplit | undefined {
  const v = isNode() ? process.env.CHARLM_WASM_SPLIT : undefined;
  if (v === undefined || v === "") return undefined;
  if (v === "rows" || v === "columns") return v;
  throw new CharlmError(`CHARLM_WASM_SPLIT=${v}: unknown split; use rows or columns, or unset it`);
}

/** The wasm backend as created: its build and thread count (the CLI prints them), and `close` for the workers. */
export type WasmBackendInfo = WasmBackend;

function isBytes(x: unknown): x is BufferSource {
  return x instanceof ArrayBuffer || ArrayBuffer.isView(x);
}

/**
 * Instantiates the kernels and returns the backend: relaxed SIMD where the runtime validates it, else plain; with
 * threads > 1 the shared-memory build and threads - 1 workers (`close()` stops them; they never keep the process
 * alive). Also callable as createWasmBackend(bytes, opts), the form of the previous backend.
 */
export async function createWasmBackend(
  arg?: WasmBackendOptions | BufferSource,
  more: WasmBackendOptions = {},
): Promise<WasmBackend> {
  const opts: WasmBackendOptions = isBytes(arg) ? { ...more, bytes: arg } : { ...(arg ?? {}), ...more };
  const threads =
    opts.threads === undefined
      ? opts.bytes || opts.sharedBytes
        ? 1
        : threadsFromEnv()
      : checkThreads(opts.threads, `threads ${opts.threads}`);
  const tuning = {
    minMacs: opts.threadMinMacs,
    minElems: opts.threadMinElems,
    recurrentSplit: opts.recurrentSplit ?? splitFromEnv(),
  };
  if (threads === 1) {
    if (opts.bytes) {
      const kernels = await instantiateSingle(opts.bytes, "the given wasm bytes");
      return new WasmBackend(kernels, opts.build ?? "bytes", { threads: 1, ...tuning });
    }
    const { bytes, build, file } = await loadBytes(false);
    return new WasmBackend(await instantiateSingle(bytes, file), build, { threads: 1, ...tuning });
  }
  if (opts.bytes) {
    throw new CharlmError(
      `wasm backend: threads ${threads} need the shared-memory build, which the backend loads itself; pass no bytes, or threads 1`,
    );
  }
  if (typeof SharedArrayBuffer === "undefined") {
    throw new CharlmError(
      `wasm backend: threads ${threads} need SharedArrayBuffer, which a browser gives only to a cross-origin-isolated page; use threads 1 here`,
    );
  }
  if (!isNode() && !opts.sharedBytes) {
    throw new CharlmError(
      `wasm backend: threads ${threads} in a browser need the shared-memory build's bytes (sharedBytes); pass them, or threads 1`,
    );
  }
  const { bytes, build, file } = opts.sharedBytes
    ? { bytes: opts.sharedBytes, build: opts.build ?? ("bytes" as const), file: "the given shared wasm bytes" }
    : await loadBytes(true);
  const { kernels, module, memory } = await instantiateShared(bytes, file);
  const be = new WasmBackend(kernels, build, { threads, ...tuning });
  await be.startPool(module, memory);
  return be;
}

/** Test hooks: the kernels' own sigmoid/tanh applied to xs (for accuracy tests). */
export async function wasmActivations(): Promise<{
  sigmoid(xs: Float32Array): Float32Array;
  tanh(xs: Float32Array): Float32Array;
}> {
  const be = await createWasmBackend({ threads: 1 });
  const run = (f: (p: number, n: number) => void, xs: Float32Array) => {
    const s = be.alloc(xs.length);
    be.write(s, xs);
    f(s.ptr, xs.length);
    const out = be.view(s).slice();
    be.free(s);
    return out;
  };
  return { sigmoid: (xs) => run(be.kernels.sigmoidInPlace, xs), tanh: (xs) => run(be.kernels.tanhInPlace, xs) };
}
