// `npm run bench -- <name> [args]` runs bench/<name>.ts; with no name it lists what there is.
// Benchmarks are kept out of the tests: they take minutes and their absolute times drift on shared machines,
// so each one runs its reference (NumPy, PyTorch) in the same process tree and prints the ratio.

import { readdirSync } from "node:fs";
import { dirname } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const names = readdirSync(here)
  .filter((f) => f.endsWith(".ts") && f !== "run.ts" && !f.startsWith("_"))
  .map((f) => f.slice(0, -3))
  .sort();
const [name, ...args] = process.argv.slice(2);
if (!name || !names.includes(name)) {
  console.error(`usage: npm run bench -- <${names.join("|")}> [args]`);
  process.exit(name ? 2 : 0);
}
const mod = (await import(pathToFileURL(`${here}/${name}.ts`).href)) as { main(args: string[]): Promise<void> };
await mod.main(args);
