// charlm/browser's choice of kernels (src/browser.ts): which files beside kernels.wasm it asks for, and how many
// threads it runs where. The page's runs in headless Chromium are in test/e2e.test.ts.

import { test } from "node:test";
import assert from "node:assert/strict";
import { browserThreads, wasmSiblings } from "../src/browser.js";

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
