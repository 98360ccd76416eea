// charlm/browser's choice of kernels (src/browser.ts): which files beside kernels.wasm it asks for, and how many
// threads it runs where. The page's runs in headless Chromium are in test/e2e.test.ts.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { browserThreads, wasmKernels, wasmSiblings } from "../src/browser.js";
import { WASM_RELAXED_URL, WASM_SHARED_RELAXED_URL, WASM_SHARED_URL, WASM_URL } from "../src/engine/backends/wasm.js";
import { enableRelaxedSimd } from "../src/engine/backends/wasm/load.js";

await enableRelaxedSimd(); // Node 20 validates relaxed SIMD only with V8's flag on, as browsers do without one

test("the builds beside a kernels.wasm URL are found by the build script's names, a query kept", () => {
  assert.deepEqual(wasmSiblings("/kernels.wasm"), {
    relaxed: "/kernels-relaxed.wasm",
    shared: "/kernels-shared.wasm",
    sharedRelaxed: "/kernels-shared-relaxed.wasm",
  });
  assert.deepEqual(wasmSiblings("https://example.org/charlm/build/kernels.wasm?v=3"), {
    relaxed: "https://example.org/charlm/build/kernels-relaxed.wasm?v=3",
    shared: "https://example.org/charlm/build/kernels-shared.wasm?v=3",
    sharedRelaxed: "https://example.org/charlm/build/kernels-shared-relaxed.wasm?v=3",
  });
  assert.equal(wasmSiblings("/api/kernels"), null, "not a .wasm file: the plain build alone");
});

test("threads only in a worker of a cross-origin-isolated page; one anywhere else", () => {
  const g = globalThis as { crossOriginIsolated?: boolean; document?: unknown };
  assert.equal(browserThreads(), 1, "Node: not a page");
  assert.equal(browserThreads(4), 1, "asking does not make it isolated");
  g.crossOriginIsolated = true;
  try {
    assert.equal(browserThreads(4), 4, "a worker of an isolated page");
    assert.ok(browserThreads() >= 1);
    g.document = {};
    assert.equal(browserThreads(4), 1, "a page's main thread may not block");
  } finally {
    delete g.crossOriginIsolated;
    delete g.document;
  }
});

// A module that validates but cannot be instantiated: it imports a function nobody provides.
const UNINSTANTIABLE = Uint8Array.from([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0x01, 0x04, 0x01, 0x60, 0x00, 0x00, 0x02, 0x0f, 0x01, 0x03, 0x65,
  0x6e, 0x76, 0x07, 0x6e, 0x6f, 0x74, 0x68, 0x69, 0x6e, 0x67, 0x00, 0x00,
]);

/** Serves `files` (name -> bytes) over HTTP for the length of `fn`; everything else is a 404. */
async function serving(files: Record<string, Uint8Array>, fn: (base: string) => Promise<void>): Promise<void> {
  const server = createServer((req, res) => {
    const body = files[(req.url ?? "").slice(1)];
    res.writeHead(body ? 200 : 404, { "content-type": "application/wasm" }).end(body ?? "");
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    await fn(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  } finally {
    server.close();
  }
}

test("wasmKernels takes the shared builds for threads, the relaxed one for one thread, and the plain one alone", async () => {
  const read = (u: URL) => new Uint8Array(readFileSync(u));
  const all = {
    "kernels.wasm": read(WASM_URL),
    "kernels-relaxed.wasm": read(WASM_RELAXED_URL),
    "kernels-shared.wasm": read(WASM_SHARED_URL),
    "kernels-shared-relaxed.wasm": read(WASM_SHARED_RELAXED_URL),
  };
  type Info = { build: string; threads: number; close?: () => Promise<void> };
  await serving(all, async (base) => {
    const threaded = (await wasmKernels(`${base}/kernels.wasm`, undefined, 2)) as unknown as Info;
    assert.deepEqual([threaded.build, threaded.threads], ["relaxed", 2]);
    await threaded.close?.();
    const one = (await wasmKernels(`${base}/kernels.wasm`)) as unknown as Info;
    assert.deepEqual([one.build, one.threads], ["relaxed", 1]);
  });
  await serving({ "kernels.wasm": all["kernels.wasm"] }, async (base) => {
    const plain = (await wasmKernels(`${base}/kernels.wasm`, undefined, 2)) as unknown as Info;
    assert.deepEqual([plain.build, plain.threads], ["plain", 1], "a server with only kernels.wasm");
  });
  // a shared build that will not start (here: it cannot be instantiated) leaves one thread, not the js kernels
  const warn = console.warn;
  const warned: string[] = [];
  console.warn = (m: string) => void warned.push(m);
  try {
    await serving({ ...all, "kernels-shared-relaxed.wasm": UNINSTANTIABLE }, async (base) => {
      const fallback = (await wasmKernels(`${base}/kernels.wasm`, undefined, 2)) as unknown as Info;
      assert.deepEqual([fallback.build, fallback.threads], ["relaxed", 1]);
    });
  } finally {
    console.warn = warn;
  }
  assert.match(warned.join("\n"), /the wasm kernels run on one thread: .*could not instantiate/);
});
