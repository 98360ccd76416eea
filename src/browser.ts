// charlm in a browser (`import { load } from "charlm/browser"`): fetch a checkpoint's manifest and weights, run on
// the WebAssembly kernels (or the js ones) and generate. Nothing here or below imports a Node built-in; a test
// bundles this file for the browser and fails on any.

import { modelFromBytes } from "./checkpoint/from-bytes.js";
import type { Backend } from "./engine/backend.js";
import { setBackend } from "./engine/backends/index.js";
import { jsBackend } from "./engine/backends/js.js";
import { createWasmBackend, DEFAULT_THREADS_CAP } from "./engine/backends/wasm.js";
import { CharModel } from "./sample/model.js";

export { CharModel } from "./sample/model.js";
export type { GenerateRequest } from "./sample/model.js";
export { CharlmError } from "./util/errors.js";

export interface BrowserLoadOptions {
  /** URL of kernels.wasm; default: the package's build/kernels.wasm beside this module; false: the js kernels. */
  wasm?: string | URL | false;
  /** Passed to fetch (credentials, headers, signal). */
  fetchInit?: RequestInit;
  /**
   * Threads of the wasm kernels, in a worker of a cross-origin-isolated page (default: the cores the browser reports,
   * up to 16); elsewhere, and on a page's main thread, 1 whatever this says (see browserThreads).
   */
  threads?: number;
  /**
   * Build the model on the backend the caller has already made current (e.g. webgpu via setBackend) instead of
   * switching to the kernels from `wasm`; `backend` then names it as given.
   */
  keepBackend?: string;
}

/** Where a checkpoint's two files are: a directory URL (charlm.json and model.safetensors in it), or each one. */
export type CheckpointSource = string | URL | { manifest: string | URL; weights: string | URL };

/** What load() resolves to: a model that generates, and the kernels it runs on. */
export type BrowserModel = CharModel & { manifest: Record<string, unknown>; backend: string; bytes: number };

let kernels: Promise<"wasm" | "js"> | null = null;
let kernelsFrom: string | null = null;
const wasmFrom = new Map<string, Promise<Backend>>();

/**
 * The other builds beside `url` (build/kernels.wasm), named as the build script names them: the relaxed-SIMD build
 * (fused multiply-add), and the two shared-memory builds for threads. A URL that does not end in .wasm has none.
 */
export function wasmSiblings(url: string): { relaxed: string; shared: string; sharedRelaxed: string } | null {
  const m = /^(.*)\.wasm((?:[?#].*)?)$/.exec(url);
  if (!m) return null;
  const at = (tail: string) => `${m[1]}${tail}.wasm${m[2]}`;
  return { relaxed: at("-relaxed"), shared: at("-shared"), sharedRelaxed: at("-shared-relaxed") };
}

/** The bytes at `url` if it answers and this browser validates them, else null. */
async function validBytes(url: string, fetchInit?: RequestInit): Promise<ArrayBuffer | null> {
  const res = await fetch(url, fetchInit).catch(() => null);
  if (!res?.ok) return null;
  const bytes = await res.arrayBuffer();
  return WebAssembly.validate(bytes) ? bytes : null;
}

/**
 * Threads the wasm kernels can run on here: `want`, else the cores the browser reports (up to 16), in a worker of
 * a cross-origin-isolated page (one whose server sends Cross-Origin-Opener-Policy: same-origin and
 * Cross-Origin-Embedder-Policy: require-corp, as `charlm serve` does); 1 anywhere else. A page's main thread gets
 * 1: it may not block, and the kernels' threads wait for each other.
 */
export function browserThreads(want?: number): number {
  const g = globalThis as { crossOriginIsolated?: boolean; document?: unknown; navigator?: Navigator };
  if (!g.crossOriginIsolated || typeof SharedArrayBuffer === "undefined" || g.document !== undefined) return 1;
  return want ?? Math.max(1, Math.min(g.navigator?.hardwareConcurrency ?? 1, DEFAULT_THREADS_CAP));
}

/**
 * The wasm kernels fetched from `url` (the plain build, build/kernels.wasm), started once per URL and thread count
 * (a failed fetch or start is tried again next time). The relaxed-SIMD build beside it is taken where this browser
 * validates it; with threads > 1 (see browserThreads) the shared-memory builds beside it, on Web Workers, falling
 * back to one thread where they are not served.
 */
export function wasmKernels(url: string, fetchInit?: RequestInit, threads = 1): Promise<Backend> {
  const key = `${threads} ${url}`;
  let p = wasmFrom.get(key);
  if (!p) {
    p = startWasm(url, fetchInit, threads);
    p.catch(() => wasmFrom.delete(key));
    wasmFrom.set(key, p);
  }
  return p;
}

async function startWasm(url: string, fetchInit: RequestInit | undefined, threads: number): Promise<Backend> {
  const siblings = wasmSiblings(url);
  if (siblings && threads > 1) {
    for (const [sharedUrl, build] of [
      [siblings.sharedRelaxed, "relaxed"],
      [siblings.shared, "plain"],
    ] as const) {
      const sharedBytes = await validBytes(sharedUrl, fetchInit);
      if (!sharedBytes) continue;
      try {
        return await createWasmBackend({ sharedBytes, build, threads });
      } catch (err) {
        // e.g. no room for a shared memory that may grow to 4 GiB, or workers refused: one thread still runs
        console.warn(`charlm: the wasm kernels run on one thread: ${(err as Error).message}`);
        break;
      }
    }
  }
  const relaxed = siblings ? await validBytes(siblings.relaxed, fetchInit) : null;
  if (relaxed) return createWasmBackend({ bytes: relaxed, build: "relaxed" });
  const res = await fetchOk(url, fetchInit);
  return createWasmBackend({ bytes: await res.arrayBuffer(), build: "plain" });
}

/**
 * Make the engine run on the wasm kernels from `wasm` (once per URL), falling back to the js kernels when the
 * module cannot be fetched or started. A model's tensors live on the backend current when it was built, so this
 * comes before any model is built.
 */
export function useKernels(
  wasm: string | URL | false | undefined,
  fetchInit?: RequestInit,
  threads = browserThreads(),
): Promise<"wasm" | "js"> {
  const url = wasm === false ? null : String(wasm ?? new URL("../build/kernels.wasm", import.meta.url));
  const from = `${threads} ${url}`;
  if (kernels && kernelsFrom === from) return kernels;
  kernelsFrom = from;
  kernels = (async () => {
    if (url === null) {
      setBackend(jsBackend);
      return "js";
    }
    try {
      setBackend(await wasmKernels(url, fetchInit, threads));
      return "wasm";
    } catch (err) {
      console.warn("charlm: wasm kernels unavailable, using the js kernels:", err);
      setBackend(jsBackend);
      return "js";
    }
  })();
  return kernels;
}

/** Fetch a checkpoint and rebuild its model for generation. */
export async function load(source: CheckpointSource, options: BrowserLoadOptions = {}): Promise<BrowserModel> {
  const backend =
    options.keepBackend ?? (await useKernels(options.wasm, options.fetchInit, browserThreads(options.threads)));
  const urls =
    typeof source === "object" && !(source instanceof URL)
      ? { manifest: String(source.manifest), weights: String(source.weights) }
      : { manifest: join(source, "charlm.json"), weights: join(source, "model.safetensors") };
  const [manifest, weights] = await Promise.all([
    fetchOk(urls.manifest, options.fetchInit).then((r) => r.json() as Promise<Record<string, unknown>>),
    fetchOk(urls.weights, options.fetchInit).then((r) => r.arrayBuffer()),
  ]);
  const { model, vocab } = modelFromBytes(manifest, new Uint8Array(weights), urls.manifest);
  return Object.assign(new CharModel(model, vocab), { manifest, backend, bytes: weights.byteLength });
}

/** fetch, with a failed response turned into an error naming the URL (and the server's own message, if JSON). */
export async function fetchOk(url: string, init?: RequestInit): Promise<Response> {
  const res = await fetch(url, init);
  if (!res.ok) {
    const body = (await res.json().catch(() => null)) as { error?: string } | null;
    throw new Error(body?.error ?? `${url}: HTTP ${res.status}`);
  }
  return res;
}

const join = (dir: string | URL, file: string): string => String(dir).replace(/\/*$/, "/") + file;
