// Bundles the page (web/app.ts, which pulls in the engine, models and sampler from src/) into web/dist/app.js,
// and the worker that trains in the tab (web/train-worker.ts, with the training library) into
// web/dist/train-worker.js, with esbuild: ES modules, no CDN, works offline. Run: `tsx web/build.ts` (part of `npm run build`).
//
// The library code the browser runs is the same as Node's. A few modules import Node built-ins for things the
// page never calls (reading checkpoints from disk, hashing files, finding build/kernels.wasm on disk); those
// imports resolve to an empty stand-in here, so calling one in the browser would fail loudly, not silently.

import { build, type Plugin } from "esbuild";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

export const nodeBuiltinsStub: Plugin = {
  name: "node-builtins-stub",
  setup(b) {
    b.onResolve({ filter: /^node:/ }, (args) => ({ path: args.path, namespace: "node-stub" }));
    // CommonJS, so any named import resolves (to undefined) without esbuild knowing the names.
    b.onLoad({ filter: /.*/, namespace: "node-stub" }, () => ({ contents: "module.exports = {};", loader: "js" }));
  },
};

export async function buildWeb(opts: { outdir?: string; minify?: boolean } = {}): Promise<string> {
  const outdir = opts.outdir ?? join(here, "dist");
  const result = await build({
    entryPoints: [join(here, "app.ts"), join(here, "train-worker.ts")],
    outdir,
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: opts.minify ?? true,
    sourcemap: true,
    logLevel: "warning",
    plugins: [nodeBuiltinsStub],
    metafile: true,
  });
  return Object.entries(result.metafile.outputs)
    .filter(([f]) => f.endsWith(".js"))
    .map(([f, o]) => `web/dist/${f.split("/").pop()}: ${(o.bytes / 1024).toFixed(0)} KiB`)
    .join(", ");
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  console.log(await buildWeb());
}
