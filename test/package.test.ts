// What a package user gets: `charlm/browser` bundles for the browser with no Node built-in anywhere in its import
// graph, and the published types check for a consumer without @types/node (no NodeJS or Buffer in them).

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { build } from "esbuild";

const pkg = JSON.parse(readFileSync("package.json", "utf8")) as { exports: Record<string, { types: string }> };

test("charlm/browser bundles for the browser without a Node built-in", async () => {
  assert.equal(pkg.exports["./browser"].types, "./dist/browser.d.ts");
  const builtins: string[] = [];
  const result = await build({
    entryPoints: ["src/browser.ts"],
    bundle: true,
    write: false,
    platform: "browser",
    format: "esm",
    target: "es2022",
    logLevel: "silent",
    plugins: [
      {
        name: "no-node-builtins",
        setup(b) {
          const names = /^node:|^(fs|path|os|url|crypto|worker_threads|child_process|http|stream|util)(\/.*)?$/;
          b.onResolve({ filter: names }, (a) => {
            builtins.push(`${a.path} (imported by ${a.importer})`);
            return { path: a.path, external: true };
          });
        },
      },
    ],
  });
  assert.deepEqual(builtins, []);
  const js = result.outputFiles[0].text;
  assert.match(js, /charlm\.json/, "the bundle holds load()");
});

test("the published types check for a consumer without @types/node", () => {
  const dir = mkdtempSync(join(tmpdir(), "charlm-types-"));
  const charlm = join(dir, "node_modules", "charlm");
  mkdirSync(join(dir, "src"), { recursive: true });
  const tsc = resolve("node_modules/typescript/bin/tsc");
  execFileSync(
    process.execPath,
    [
      tsc,
      "-p",
      "tsconfig.build.json",
      "--outDir",
      join(charlm, "dist"),
      "--emitDeclarationOnly",
      "--sourceMap",
      "false",
    ],
    { stdio: "pipe" },
  );
  writeFileSync(join(charlm, "package.json"), JSON.stringify({ name: "charlm", type: "module", exports: pkg.exports }));
  writeFileSync(join(dir, "package.json"), JSON.stringify({ type: "module" }));
  writeFileSync(
    join(dir, "src", "use.ts"),
    [
      `import { train, load, type TrainOptions } from "charlm";`,
      `import { load as fetchModel } from "charlm/browser";`,
      `const options: TrainOptions = { preset: "tiny", text: "to be or not to be ", units: 32, backend: "auto" };`,
      `const run = await train({ ...options, onStep: ({ step, loss }) => step < 10 && loss > 0 });`,
      `const text: string = await run.generate({ prime: "t", length: 20, temperature: 0.8, topK: 5, seed: 1 });`,
      `const saved = await load("runs/x", { backend: "wasm" });`,
      `const page = await fetchModel("https://example.org/runs/x/", { wasm: false });`,
      `for await (const ch of page.stream({ length: 3 })) console.log(ch, text, saved.manifest.step, run.bestValLoss);`,
    ].join("\n"),
  );
  const tsconfig = {
    compilerOptions: {
      target: "ES2022",
      module: "NodeNext",
      moduleResolution: "NodeNext",
      lib: ["ES2022", "DOM"],
      strict: true,
      noEmit: true,
      skipLibCheck: false, // check charlm's d.ts files too
      types: [], // no @types/node
    },
    include: ["src"],
  };
  writeFileSync(join(dir, "tsconfig.json"), JSON.stringify(tsconfig));
  try {
    execFileSync(process.execPath, [tsc, "-p", dir], { encoding: "utf8", stdio: "pipe" });
  } catch (err) {
    assert.fail(`tsc without @types/node:\n${(err as { stdout: string }).stdout}`);
  }
});
