// The --backend flag the inference commands share: `auto` (the default) runs the wasm kernels when
// build/kernels.wasm loads and the plain-JS reference otherwise; naming one makes a missing build an error.

import { listBackends, useBackend, type BackendName } from "../engine/backends/index.js";
import type { FlagSpec } from "./flags.js";

export const backendFlag = {
  type: "string",
  help: "kernel backend; auto picks wasm when build/kernels.wasm loads, else js",
  default: "auto",
  choices: ["auto", "js", "wasm"],
} as const satisfies FlagSpec;

/** Make the backend named by a --backend value current. */
export async function selectBackend(name: string): Promise<BackendName> {
  let resolved = name as BackendName;
  if (name === "auto") {
    resolved = (await listBackends()).includes("wasm") ? "wasm" : "js";
    // Say so: the js kernels are many times slower, and a missing build is usually a skipped `npm run build`.
    if (resolved === "js") {
      process.stderr.write(
        "note: --backend auto: build/kernels.wasm does not load here, so the js kernels run (slower; 'npm run build' makes it)\n",
      );
    }
  }
  await useBackend(resolved);
  return resolved;
}
