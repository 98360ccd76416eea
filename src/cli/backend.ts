// The --backend and --threads flags the commands share, and the one place that picks a backend and says which.
//
// `auto` (the default of sample, eval and serve): webgpu when a hardware GPU adapter is found, else wasm when
// build/kernels.wasm loads, else js, with one line on stderr saying which and why. A backend named on the command
// line is that backend or a clear error; one named by a preset (train's cpu preset asks for wasm, gpu for webgpu)
// falls back to the next that works, and says so.

import type { Backend } from "../engine/backend.js";
import { loadBackend, probeWebgpu, setBackend, setWasmThreads, type BackendName } from "../engine/backends/index.js";
import type { FlagSpec } from "./flags.js";

export const backendFlag = {
  type: "string",
  help: "kernel backend; auto picks webgpu when a GPU is found, else wasm when build/kernels.wasm loads, else js",
  default: "auto",
  choices: ["auto", "js", "wasm", "webgpu"],
} as const satisfies FlagSpec;

export const threadsFlag = {
  type: "int",
  help: "threads of the wasm kernels (default: CHARLM_THREADS, else every core up to 16); any count gives the same bits",
  min: 1,
  max: 64,
  arg: "N",
} as const satisfies FlagSpec;

const ORDER: BackendName[] = ["webgpu", "wasm", "js"];

export interface ChosenBackend {
  name: BackendName;
  backend: Backend;
  /** What was picked and why, for stderr: "backend: wasm (relaxed SIMD, 2 threads); webgpu: no Vulkan driver". */
  line: string;
}

function describe(name: BackendName, b: Backend): string {
  const w = b as { build?: string; threads?: number; device?: string };
  if (name === "wasm")
    return `wasm (${w.build === "relaxed" ? "relaxed SIMD" : "SIMD"}, ${w.threads ?? 1} thread${w.threads === 1 ? "" : "s"})`;
  if (name === "webgpu") return `webgpu (${w.device ?? "GPU"})`;
  return "js (the plain-JavaScript reference: slow)";
}

/**
 * Load the backend for `want` ("auto" or a name). With `fallback` (the name came from a preset, not the user) a
 * backend that does not load gives way to the next of webgpu, wasm, js; "auto" always does.
 */
export async function chooseBackend(want: string, fallback: boolean): Promise<ChosenBackend> {
  const order =
    want === "auto" ? ORDER : fallback ? ORDER.slice(ORDER.indexOf(want as BackendName)) : [want as BackendName];
  const skipped: string[] = [];
  for (const name of order) {
    const last = name === order[order.length - 1];
    if (name === "webgpu" && want === "auto") {
      const probe = await probeWebgpu().catch((e: Error) => ({ ok: false as const, reason: e.message }));
      if (!probe.ok) {
        skipped.push(`webgpu: ${probe.reason}`);
        continue;
      }
    }
    try {
      const backend = await loadBackend(name);
      const why = skipped.length ? `; ${skipped.join("; ")}` : "";
      return { name, backend, line: `backend: ${describe(name, backend)}${why}` };
    } catch (e) {
      if (last) throw e;
      skipped.push((e as Error).message.replace(/^backend \w+: /, `${name}: `));
    }
  }
  throw new Error("unreachable: js always loads");
}

/**
 * Apply --threads, pick the backend for a --backend value and make it current. Returns its name and the line that
 * says which and why: commands print it on stderr once their input has passed its checks (so that bad input still
 * gets exactly one line).
 */
export async function selectBackend(name: string, threads?: number): Promise<{ name: BackendName; line: string }> {
  await setWasmThreads(threads ?? null);
  const chosen = await chooseBackend(name, false);
  setBackend(chosen.backend);
  return { name: chosen.name, line: chosen.line };
}
