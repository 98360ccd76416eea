// The backend registry: which kernels the ops call. `js` is always there and is the default; `wasm` is loaded
// lazily (dynamic import, so a browser bundle or a checkout without build/kernels.wasm never pays for it) and is
// listed only when its module loads and build/kernels.wasm instantiates. It runs on the threads `setWasmThreads` asked
// for (the CLI's --threads), else CHARLM_THREADS, else every core up to a cap (see docs/wasm.md): a malformed value,
// or threads that cannot start, make `useBackend("wasm")` fail with the reason.
// `webgpu` (./webgpu/) is loaded lazily too, on first request only: it needs the optional package `webgpu` (Dawn) in
// Node or navigator.gpu in a browser, and a GPU adapter. It is not in listBackends(): its values are read
// asynchronously (`sync: false`), and the suites that iterate over listBackends() read them synchronously.

import type { Backend } from "../backend.js";
import { jsBackend } from "./js.js";
import { CharlmError } from "../../util/errors.js";

export type BackendName = "js" | "wasm" | "webgpu";

let current: Backend = jsBackend;
let wasmPromise: Promise<Backend | null> | null = null;
let wasmError: unknown = null;
let wasmThreads: number | null = null;
let webgpuPromise: Promise<Backend> | null = null;

/** The backend the ops use now. */
export function getBackend(): Backend {
  return current;
}

/** Make `b` the backend for all ops from now on. */
export function setBackend(b: Backend): void {
  current = b;
}

type WasmModule = {
  createWasmBackend(bytes?: BufferSource, opts?: { threads?: number }): Promise<Backend & { close(): Promise<void> }>;
  threadsFromEnv(): number;
};

/**
 * The wasm backend's thread count from now on (null: CHARLM_THREADS, else the default). A backend already loaded
 * with another count is closed and the next request loads a new one.
 */
export async function setWasmThreads(n: number | null): Promise<void> {
  if (n === wasmThreads) return;
  wasmThreads = n;
  const old = wasmPromise;
  wasmPromise = null;
  wasmError = null;
  const b = (await old) as (Backend & { close?(): Promise<void> }) | null;
  if (b && current === b) current = jsBackend;
  await b?.close?.();
}

/** Load the wasm backend once; null when its build is missing or does not instantiate (the reason in wasmError). */
function loadWasm(): Promise<Backend | null> {
  if (!wasmPromise) {
    // Imported on first use only: the js backend never loads the wasm module or its binary.
    wasmPromise = import("./wasm.js")
      .then((m: WasmModule) => m.createWasmBackend(undefined, { threads: wasmThreads ?? m.threadsFromEnv() }))
      .catch((e: unknown) => {
        wasmError = e;
        return null;
      });
  }
  return wasmPromise;
}

/** Names of the backends that work here, "js" first. */
export async function listBackends(): Promise<BackendName[]> {
  const names: BackendName[] = ["js"];
  if (await loadWasm()) names.push("wasm");
  return names;
}

/** A backend by name, without making it current. */
export async function loadBackend(name: BackendName): Promise<Backend> {
  if (name === "js") return jsBackend;
  if (name === "wasm") {
    const b = await loadWasm();
    if (!b) {
      // The loader's own errors name the file or setting and the fix (a missing build, a bad CHARLM_THREADS).
      if (wasmError instanceof CharlmError) throw wasmError;
      throw new CharlmError(
        "backend wasm: build/kernels.wasm is missing or failed to load; run `npm run build:wasm` or use --backend js",
      );
    }
    return b;
  }
  if (name === "webgpu") {
    // One device per process, made on first use; a failure (no package, no adapter) is a CharlmError saying why,
    // and the next request tries again, as it does after the device was lost (a new device then, on a new backend).
    const held = webgpuPromise ? await webgpuPromise.catch(() => null) : null;
    if (held && lostDevice(held) !== null) webgpuPromise = null;
    webgpuPromise ??= import("./webgpu/index.js").then((m) => m.createWebgpuBackend());
    return webgpuPromise.catch((e: unknown) => {
      webgpuPromise = null;
      throw e;
    });
  }
  throw new CharlmError(`backend ${String(name)}: unknown; choose one of js, wasm, webgpu`);
}

/**
 * Whether a hardware GPU is here for the webgpu backend, without making a device: its description, or why not
 * (`--backend auto` asks this first).
 */
export async function probeWebgpu(): Promise<{ ok: true; description: string } | { ok: false; reason: string }> {
  const m = await import("./webgpu/device.js");
  return m.probeGpu();
}

/** Release what the loaded backends hold: the GPU device (which keeps Node running) and the wasm worker threads. */
export async function closeBackends(): Promise<void> {
  const gpu = webgpuPromise ? await webgpuPromise.catch(() => null) : null;
  webgpuPromise = null;
  gpu?.destroy?.();
  const wasm = wasmPromise ? ((await wasmPromise) as (Backend & { close?(): Promise<void> }) | null) : null;
  wasmPromise = null;
  await wasm?.close?.();
  current = jsBackend;
}

/** Why `b`'s GPU device was lost, or null: it works (a backend without a device is never lost). */
export function lostDevice(b: Backend): string | null {
  return (b as Backend & { lost?(): string | null }).lost?.() ?? null;
}

/**
 * After the GPU device under `b` was lost: a new webgpu backend (a new device), made current where `b` was. Values
 * on the lost device are gone: what uses it loads them again (the server's models, checkpoint-model.ts).
 */
export async function renewLostBackend(b: Backend): Promise<Backend> {
  if (lostDevice(b) === null) return b;
  const fresh = await loadBackend("webgpu");
  if (current === b) setBackend(fresh);
  return fresh;
}

/** Load the named backend and make it current. */
export async function useBackend(name: BackendName): Promise<Backend> {
  const b = await loadBackend(name);
  setBackend(b);
  return b;
}

/** Run fn with `b` as the current backend, restoring the previous one afterwards (tests compare backends). */
export function withBackend<T>(b: Backend, fn: () => T): T {
  const prev = current;
  current = b;
  try {
    return fn();
  } finally {
    current = prev;
  }
}
