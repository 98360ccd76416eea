// Builds the WebAssembly kernels from assembly/ with AssemblyScript (SIMD, optimised, no runtime, no imports):
//   build/kernels.wasm          f32x4 SIMD: runs on Node 20+ and every current browser
//   build/kernels-relaxed.wasm  the same source with relaxed SIMD on: fused multiply-add in the matrix and attention
//                               kernels (Node 22+, Chrome/Edge 114+; Node 20 only with --experimental-wasm-relaxed-simd)
//   build/kernels-shared.wasm, build/kernels-shared-relaxed.wasm
//                               the same two with shared, imported memory (threads): what the backend loads when
//                               CHARLM_THREADS / { threads } asks for more than one thread (Node), and what a
//                               worker of a cross-origin-isolated page fetches for its threads (src/browser.ts)
// src/engine/backends/wasm.ts loads the relaxed build where the runtime validates it, else the plain one.
// Runs from `npm run build:wasm` and, through `prepare`, from `npm ci` / `npm install`; needs only the
// `assemblyscript` devDependency, no network. `--text` also writes the .wat files, to read the generated code.

import { mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const outDir = join(root, "build");
mkdirSync(outDir, { recursive: true });

let asc;
try {
  asc = (await import("assemblyscript/asc")).default;
} catch {
  console.error("build-wasm: the assemblyscript compiler is not installed; run `npm install` (it is a devDependency)");
  process.exit(1);
}

const common = [
  join(root, "assembly", "index.ts"),
  "--optimizeLevel",
  "3",
  "--shrinkLevel",
  "0",
  "--noAssert",
  "--runtime",
  "stub",
  "--use",
  "abort=",
  "--enable",
  "simd",
];
// Shared memory must declare a maximum; 65536 pages (4 GiB) is wasm32's own limit, the one the unshared builds
// have. The memory is created by the JS side (SHARED_PAGES in src/engine/backends/wasm.ts must match these).
const shared = ["--enable", "threads", "--sharedMemory", "--importMemory", "--initialMemory", "16"];
shared.push("--maximumMemory", "65536");
const builds = [
  { name: "kernels", features: [] },
  { name: "kernels-relaxed", features: ["--enable", "relaxed-simd"] },
  { name: "kernels-shared", features: shared },
  { name: "kernels-shared-relaxed", features: ["--enable", "relaxed-simd", ...shared] },
];
for (const { name, features } of builds) {
  const args = [...common, ...features, "--outFile", join(outDir, `${name}.wasm`)];
  if (process.argv.includes("--text")) args.push("--textFile", join(outDir, `${name}.wat`));
  const { error } = await asc.main(args, { stdout: process.stdout, stderr: process.stderr });
  if (error) {
    console.error(`build-wasm: compiling assembly/ into build/${name}.wasm failed: ${error.message}`);
    process.exit(1);
  }
  console.log(`build-wasm: wrote build/${name}.wasm`);
}
