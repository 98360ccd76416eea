// Picking a kernel backend and saying which: `auto` is webgpu when a hardware GPU adapter is found, else wasm when
// build/kernels.wasm loads, else js. A backend named by the user is that backend or a clear error; one named by a
// preset falls back to the next that works (webgpu: on a hardware adapter, as for auto). The CLI (--backend) and
// the library's train() both choose here.

import type { Backend } from "../backend.js";
import { loadBackend, probeWebgpu, type BackendName } from "./index.js";

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
    // auto and a preset (the gpu preset) take webgpu only on a hardware adapter: a software Vulkan (SwiftShader,
    // llvmpipe) trains far slower than wasm on the same CPU. Only a user's --backend webgpu runs on one.
    if (name === "webgpu" && (want === "auto" || fallback)) {
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
