// The --backend and --threads flags the commands share, and selectBackend, which applies them (the chooser is
// src/engine/backends/choose.ts, shared with the library).
// `auto` (the default of sample, eval and serve): webgpu when a hardware GPU adapter is found, else wasm when
// build/kernels.wasm loads, else js, with one line on stderr saying which and why. A backend named on the command
// line is that backend or a clear error; one named by a preset (train's cpu preset asks for wasm, gpu for webgpu)
// falls back to the next that works, and says so.

import { chooseBackend } from "../engine/backends/choose.js";
import { setBackend, setWasmThreads, type BackendName } from "../engine/backends/index.js";
import { loadTunedKernels, tunedKernelsPath } from "../engine/backends/tuned-kernels.js";
import { ROUTE_NAMES } from "../engine/backends/webgpu/kernels/generate.js";
import type { FlagSpec } from "./flags.js";

export { chooseBackend, type ChosenBackend } from "../engine/backends/choose.js";

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

/**
 * Apply --threads, pick the backend for a --backend value and make it current. Returns its name and the line that
 * says which and why: commands print it on stderr once their input has passed its checks (so that bad input still
 * gets exactly one line).
 */
export async function selectBackend(name: string, threads?: number): Promise<{ name: BackendName; line: string }> {
  await setWasmThreads(threads ?? null);
  const chosen = await chooseBackend(name, false);
  setBackend(chosen.backend);
  let line = chosen.line;
  const device = (chosen.backend as { device?: string }).device;
  if (chosen.name === "webgpu" && device) {
    // the step settings charlm tune-gpu measured on this GPU, if it ran here
    const { shapes, matmul, generation } = await loadTunedKernels(device);
    if (shapes > 0)
      line +=
        `; step kernels tuned here for ${shapes} shape${shapes > 1 ? "s" : ""}` +
        `${matmul ? `, matrix products in ${matmul}` : ""}` +
        `${generation ? `, generation ${ROUTE_NAMES[generation]}` : ""}` +
        ` (${tunedKernelsPath()})`;
  }
  return { name: chosen.name, line };
}
