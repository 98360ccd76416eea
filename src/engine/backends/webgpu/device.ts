/// <reference types="@webgpu/types" />
// Finding a WebGPU device: `navigator.gpu` in a browser; in Node the optional npm package `webgpu` (Dawn's Node
// binding, prebuilt inside the package). Either failure (no package, no adapter) is one CharlmError that says what
// to do, so that `--backend auto` can fall back and `--backend webgpu` can tell the user why not.

import { CharlmError } from "../../../util/errors.js";

/** The part of the `webgpu` package used here (typed locally: the package is optional, tsc must not need it). */
interface DawnModule {
  create(options: string[]): GPU;
  globals: object;
}

export interface GpuDevice {
  device: GPUDevice;
  /**
   * The entry point and adapter, held for the device's lifetime: when Dawn's `create()` result is garbage
   * collected, Dawn's instance goes with it while the device is still in use (random crashes: corrupted mutexes,
   * std::system_error, SIGSEGV, seen on SwiftShader here).
   */
  keepAlive: unknown[];
  /** "vendor architecture" as the adapter reports it, e.g. "nvidia hopper" or "google swiftshader". */
  description: string;
}

/**
 * Dawn's entry points made so far, by their options: one per process and options, shared by the probe and every
 * device, and never released (see "Keep the object create() returned alive" in docs/webgpu.md). Each `create()` is a
 * Vulkan instance; the probe used to make a fresh one on every call and drop it. One CI run aborted in glibc ("The
 * futex facility returned an unexpected error code") as test/backend-choose.test.ts, which probes three times,
 * exited after passing; 250 runs here did not repeat it, so that this is the cause is a likely guess, not a finding.
 */
const dawnEntries = new Map<string, GPU>();
let dawnMade = 0;

/** How many Dawn instances this process has made (tests check that probes and devices share one). */
export function dawnInstancesMade(): number {
  return dawnMade;
}

/** The GPU entry point: the browser's, else Dawn's from the `webgpu` package (made once per set of options). */
async function gpuEntry(): Promise<GPU> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return nav.gpu;
  const isNode = typeof process !== "undefined" && process.versions?.node !== undefined;
  if (!isNode) {
    throw new CharlmError("backend webgpu: this browser has no WebGPU (navigator.gpu); use --backend wasm");
  }
  // CHARLM_DAWN_OPTIONS: Dawn's own options, space-separated (e.g. "backend=null" to time the host side alone,
  // "backend=vulkan", "adapter=NAME"; the webgpu package's README lists them)
  const options = withToggleOff(
    process.env.CHARLM_DAWN_OPTIONS?.split(" ").filter(Boolean) ?? [],
    "timestamp_quantization",
  );
  const key = options.join(" ");
  const made = dawnEntries.get(key);
  if (made) return made;
  let mod: DawnModule;
  try {
    // A specifier in a variable: bundlers for the web page leave this Node-only package alone.
    const name = "webgpu";
    mod = (await import(name)) as DawnModule;
  } catch (e) {
    throw new CharlmError(
      `backend webgpu: the optional package "webgpu" did not load (${(e as Error).message.split("\n")[0]}); ` +
        "run `npm install webgpu` or use --backend wasm",
    );
  }
  // Dawn's classes (GPUBufferUsage, GPUMapMode, ...) become globals, as in a browser.
  Object.assign(globalThis, mod.globals);
  const again = dawnEntries.get(key); // made by a call that ran while this one imported the package
  if (again) return again;
  const gpu = mod.create(options);
  dawnMade++;
  dawnEntries.set(key, gpu);
  return gpu;
}

/**
 * Dawn's options with one more toggle disabled. `timestamp_quantization`, on by default, rounds timestamps down to
 * multiples of 65,536 ns (seen on SwiftShader: eight empty passes in a row all read the same time), a browser's
 * guard against timing attacks that would blur the profiler's ~10-100 us kernel times (profile.ts) to nothing;
 * timestamps are read nowhere else.
 */
function withToggleOff(options: string[], toggle: string): string[] {
  const key = "disable-dawn-features=";
  const i = options.findIndex((o) => o.startsWith(key));
  if (i < 0) return [...options, key + toggle];
  return options.map((o, j) => (j === i ? `${o},${toggle}` : o));
}

/** Where Linux Vulkan loaders look for drivers' manifests (ICDs). */
const ICD_DIRS = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d"];

/**
 * Whether a hardware GPU adapter is here, without making a device (for `--backend auto`): its description, or the
 * reason why not. A software adapter (SwiftShader, a CPU Vulkan) counts as none: it is correct but far slower than
 * the wasm kernels. On Linux without any Vulkan driver manifest, Dawn is not even asked (it would print warnings).
 */
export async function probeGpu(): Promise<{ ok: true; description: string } | { ok: false; reason: string }> {
  const isNode = typeof process !== "undefined" && process.versions?.node !== undefined;
  if (isNode && process.platform === "linux" && !process.env.VK_ICD_FILENAMES && !process.env.VK_DRIVER_FILES) {
    const fsName = "node:fs";
    const { readdirSync } = (await import(fsName)) as typeof import("node:fs");
    const any = ICD_DIRS.some((d) => {
      try {
        return readdirSync(d).some((f) => f.endsWith(".json"));
      } catch {
        return false;
      }
    });
    if (!any) return { ok: false, reason: "no Vulkan driver is installed" };
  }
  let gpu: GPU;
  try {
    gpu = await gpuEntry();
  } catch (e) {
    return { ok: false, reason: (e as Error).message.replace(/^backend webgpu: /, "") };
  }
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" }).catch(() => null);
  if (!adapter) return { ok: false, reason: "no GPU adapter found" };
  const info = adapter.info;
  const description = `${info?.vendor ?? "?"} ${info?.architecture ?? "?"}`.trim();
  if (
    /swiftshader|llvmpipe|lavapipe/i.test(description) ||
    (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter
  ) {
    return { ok: false, reason: `only a software adapter (${description})` };
  }
  return { ok: true, description };
}

/**
 * A device with the limits the kernels need: up to 10 storage buffers per shader stage and the adapter's largest
 * buffers and workgroup memory, and `timestamp-query` where the adapter has it (for the profiler). Throws a
 * CharlmError naming the cause when there is no adapter.
 */
export async function requestGpuDevice(): Promise<GpuDevice> {
  const gpu = await gpuEntry();
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" }).catch((e: unknown) => {
    // Dawn refuses options that name no adapter it has (its message then lists the adapters, a line each)
    const options = typeof process !== "undefined" ? process.env?.CHARLM_DAWN_OPTIONS : undefined;
    const why = (e instanceof Error ? e.message : String(e)).split("\n")[0];
    throw new CharlmError(
      `backend webgpu: no GPU adapter (${why}${options ? `, with CHARLM_DAWN_OPTIONS="${options}"` : ""}); ` +
        `${options ? "unset CHARLM_DAWN_OPTIONS or " : ""}use --backend wasm`,
    );
  });
  if (!adapter) {
    throw new CharlmError(
      "backend webgpu: no GPU adapter found (no GPU, or no Vulkan/Metal/D3D12 driver; on Linux without a GPU set " +
        "VK_ICD_FILENAMES to SwiftShader's ICD, e.g. /usr/lib/chromium/vk_swiftshader_icd.json); use --backend wasm",
    );
  }
  const l = adapter.limits;
  // Timestamps cost nothing until a pass asks for them (only the profiler does, profile.ts). Dawn's null backend
  // (CHARLM_DAWN_OPTIONS="backend=null") offers them but runs nothing: its timestamps are whatever memory held.
  const timestamps = adapter.features.has("timestamp-query") && adapter.info?.device !== "null-backend";
  const device = await adapter.requestDevice({
    requiredFeatures: timestamps ? ["timestamp-query"] : [],
    requiredLimits: {
      maxStorageBuffersPerShaderStage: Math.min(10, l.maxStorageBuffersPerShaderStage),
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
    },
  });
  const info = adapter.info;
  return {
    device,
    description: `${info?.vendor ?? "?"} ${info?.architecture ?? "?"}`.trim(),
    keepAlive: [gpu, adapter],
  };
}
