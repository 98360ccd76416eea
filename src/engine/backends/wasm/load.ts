// Finding, checking and instantiating the wasm kernels (the builds scripts/build-wasm.mjs writes into build/).
//
// Four builds of one source: plain f32x4 SIMD or relaxed SIMD (fused multiply-add in the matrix kernel), each with
// its own memory (one thread, browsers) or with shared, imported memory (worker threads, Node). The relaxed build is
// picked wherever the runtime validates it; on Node 20 that takes a V8 flag, which `enableRelaxedSimd` sets before
// the first compile. Every build carries an ABI version (assembly/index.ts `abiVersion`): a build from other
// sources than this loader's is refused with the command that rebuilds it, rather than run with wrong arguments.

import { CharlmError } from "../../../util/errors.js";
import type { Kernels } from "./exports.js";

/** The version of assembly/index.ts's exports this loader is written for (its `abiVersion()`). */
export const ABI_VERSION = 5;

/** Where the build script puts the modules (works from src/engine/backends/wasm and from dist/engine/backends/wasm). */
export const WASM_URL = new URL("../../../../build/kernels.wasm", import.meta.url);
/** The same kernels built with relaxed SIMD (fused multiply-add): used where the runtime validates it. */
export const WASM_RELAXED_URL = new URL("../../../../build/kernels-relaxed.wasm", import.meta.url);
/** The two builds again with shared, imported memory, for threads > 1. */
export const WASM_SHARED_URL = new URL("../../../../build/kernels-shared.wasm", import.meta.url);
export const WASM_SHARED_RELAXED_URL = new URL("../../../../build/kernels-shared-relaxed.wasm", import.meta.url);

// The shared builds import their memory; these limits must match scripts/build-wasm.mjs (--initialMemory,
// --maximumMemory). 65536 pages = 4 GiB, wasm32's limit, as for the unshared builds.
const SHARED_PAGES = { initial: 16, maximum: 65536 };

// Node built-ins are imported through variable specifiers so that a browser bundler does not try to resolve them;
// in a browser they are never imported (readBuild fetches instead).
const FS = "node:fs/promises";
const URL_MOD = "node:url";
const V8 = "node:v8";

export const isNode = (): boolean => typeof process !== "undefined" && typeof process.versions?.node === "string";

/** Which build runs: "relaxed" (fused multiply-add) or "plain"; "bytes" when the caller passed the module's bytes. */
export type WasmBuild = "plain" | "relaxed" | "bytes";

let relaxedFlagSet = false;

/**
 * Node 20 and 21 validate relaxed SIMD only with --experimental-wasm-relaxed-simd; setting the flag at run time
 * works as long as no module has been compiled yet, so the loader does it first thing (Node 22+ has it on).
 */
export async function enableRelaxedSimd(): Promise<void> {
  if (relaxedFlagSet || !isNode()) return;
  relaxedFlagSet = true;
  const major = Number(process.versions.node.split(".")[0]);
  if (major >= 22) return;
  const v8 = (await import(V8)) as typeof import("node:v8");
  v8.setFlagsFromString("--experimental-wasm-relaxed-simd");
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
    // CHARLM_WASM_DIR: a folder holding the builds, for code bundled away from the repository (a bench carried to
    // another machine); the file names are the build script's.
    const dir = process.env.CHARLM_WASM_DIR;
    const file = dir ? `${dir}/${url.pathname.split("/").pop()}` : fileURLToPath(url);
    try {
      return new Uint8Array(await readFile(file));
    } catch {
      return null;
    }
  }
  const res = await fetch(url).catch(() => null);
  return res?.ok ? new Uint8Array(await res.arrayBuffer()) : null;
}

function fileName(shared: boolean, relaxed: boolean): string {
  return `build/kernels${shared ? "-shared" : ""}${relaxed ? "-relaxed" : ""}.wasm`;
}

/** The bytes of the build to run: relaxed where the runtime validates it (or CHARLM_WASM_BUILD says), else plain. */
export async function loadBytes(
  shared: boolean,
): Promise<{ bytes: Uint8Array<ArrayBuffer>; build: "plain" | "relaxed"; file: string }> {
  await enableRelaxedSimd();
  const [plainUrl, relaxedUrl] = shared ? [WASM_SHARED_URL, WASM_SHARED_RELAXED_URL] : [WASM_URL, WASM_RELAXED_URL];
  const want = requestedBuild();
  if (want !== "plain") {
    const relaxed = await readBuild(relaxedUrl);
    if (relaxed && WebAssembly.validate(relaxed))
      return { bytes: relaxed, build: "relaxed", file: fileName(shared, true) };
    if (want === "relaxed") {
      throw new CharlmError(
        `CHARLM_WASM_BUILD=relaxed: ${relaxed ? "this runtime does not support relaxed SIMD" : `${fileName(shared, true)} is missing`}; ` +
          "unset it (or use Node 20+ or a browser with relaxed SIMD)",
      );
    }
  }
  const plain = await readBuild(plainUrl);
  if (!plain) {
    throw new CharlmError(
      `${fileName(shared, false)}: the wasm kernels are not built (or not served); run npm run build:wasm`,
    );
  }
  return { bytes: plain, build: "plain", file: fileName(shared, false) };
}

/** Refuses kernels built from other sources than this loader expects, with the command that fixes it. */
export function checkVersion(k: Partial<Kernels>, file: string): void {
  const got = typeof k.abiVersion === "function" ? k.abiVersion() : 1;
  if (got !== ABI_VERSION) {
    throw new CharlmError(`${file} is version ${got} but the loader expects ${ABI_VERSION}; run npm run build`);
  }
}

function instantiateError(e: unknown, file: string): CharlmError {
  return new CharlmError(
    `${file}: could not instantiate the wasm kernels (${(e as Error).message}); ` +
      "rebuild them with npm run build:wasm and use a runtime with WebAssembly SIMD (Node 20+, current browsers)",
  );
}

/** Instantiates an unshared build (its own memory): one thread, Node or browser. */
export async function instantiateSingle(bytes: BufferSource, file: string): Promise<Kernels> {
  let instance: WebAssembly.Instance;
  try {
    ({ instance } = await WebAssembly.instantiate(bytes, {}));
  } catch (e) {
    throw instantiateError(e, file);
  }
  const k = instance.exports as unknown as Kernels;
  checkVersion(k, file);
  return k;
}

/** Compiles a shared-memory build and instantiates it on a new shared memory (the module goes to the workers). */
export async function instantiateShared(
  bytes: BufferSource,
  file: string,
): Promise<{ kernels: Kernels; module: WebAssembly.Module; memory: WebAssembly.Memory }> {
  let memory: WebAssembly.Memory;
  let module: WebAssembly.Module;
  let kernels: Kernels;
  try {
    memory = new WebAssembly.Memory({ ...SHARED_PAGES, shared: true });
    module = await WebAssembly.compile(bytes);
    const instance = await WebAssembly.instantiate(module, { env: { memory } });
    kernels = { ...(instance.exports as unknown as Kernels), memory };
  } catch (e) {
    throw instantiateError(e, file);
  }
  checkVersion(kernels, file);
  return { kernels, module, memory };
}
