// Builds the WebAssembly kernels: assembly/index.ts -> build/kernels.wasm (AssemblyScript, SIMD, optimised).
// Runs from `npm run build:wasm` and, through `prepare`, from `npm ci` / `npm install`; needs only the
// `assemblyscript` devDependency, no network. `--text` also writes build/kernels.wat for reading the output.

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

const args = [
  join(root, "assembly", "index.ts"),
  "--outFile",
  join(outDir, "kernels.wasm"),
  "--optimizeLevel",
  "3",
  "--shrinkLevel",
  "0",
  "--noAssert",
  "--runtime",
  "stub",
  "--enable",
  "simd",
  "--use",
  "abort=",
];
if (process.argv.includes("--text")) args.push("--textFile", join(outDir, "kernels.wat"));

const { error, stderr } = await asc.main(args, { stdout: process.stdout, stderr: process.stderr });
if (error) {
  console.error(`build-wasm: compiling assembly/ failed: ${error.message}`);
  if (stderr) console.error(stderr.toString());
  process.exit(1);
}
console.log(`build-wasm: wrote ${join("build", "kernels.wasm")}`);
