// The build script makes two modules from assembly/: plain SIMD and relaxed SIMD (fused multiply-add). The runtime
// picks one (test/wasm.test.ts tests that one); this file runs test/wasm.test.ts again in a child process on the
// other, so both stay checked against the float64 references: on Node 20 the relaxed build needs
// --experimental-wasm-relaxed-simd, on Node 22+ it is the default and the plain build is forced instead.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { WASM_RELAXED_URL } from "../src/engine/backends/wasm.js";

test("the other wasm build (plain or relaxed SIMD) passes the same kernel tests", async () => {
  const relaxed = await readFile(WASM_RELAXED_URL);
  const native = WebAssembly.validate(relaxed);
  const other = native ? "plain" : "relaxed";
  const flags = native ? [] : ["--experimental-wasm-relaxed-simd"];
  const root = fileURLToPath(new URL("..", import.meta.url));
  const r = spawnSync(process.execPath, [...flags, "--import", "tsx", "--test", "test/wasm.test.ts"], {
    cwd: root,
    // NODE_TEST_CONTEXT would make the child talk the parent runner's internal protocol instead of printing TAP
    env: { ...process.env, CHARLM_WASM_BUILD: other, NODE_TEST_CONTEXT: undefined },
    encoding: "utf8",
  });
  assert.equal(r.status, 0, `build ${other}: test/wasm.test.ts failed:\n${(r.stdout + r.stderr).slice(-4000)}`);
  assert.match(r.stdout, /# pass [1-9]/);
  assert.match(r.stdout, /# fail 0/);
});
