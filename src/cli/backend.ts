// The --backend flag the inference commands share: `auto` (the default) runs the wasm kernels when
// build/kernels.wasm loads and the plain-JS reference otherwise; naming one makes a missing build an error.

import { listBackends, useBackend, type BackendName } from "../engine/backends/index.js";
import type { FlagSpec } from "./flags.js";

export const backendFlag = {
  type: "string",
  help: "kernel backend; auto picks wasm when build/kernels.wasm loads, else js",
  default: "auto",
  choices: ["auto", "js", "wasm", "webgpu"],
} as const satisfies FlagSpec;

/** Make the backend named by a --backend value current. */
export async function selectBackend(name: string): Promise<BackendName> {
  const resolved: BackendName =
    name === "auto" ? ((await listBackends()).includes("wasm") ? "wasm" : "js") : (name as BackendName);
  await useBackend(resolved);
  return resolved;
}
