// The wasm backend with worker threads (CHARLM_THREADS / { threads }): large products split between threads must give
// exactly the bits of one thread, for every transpose/accumulate variant, row and column splits alike; training steps
// (LSTM, GRU, RNN) must give the same losses and weights; idle workers must not keep the process alive; bad settings
// fail by name.
//
// Legend: M, K, N matrix sizes; B batch; T time.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import {
  THREAD_MIN_MACS,
  WASM_RELAXED_URL,
  WASM_SHARED_RELAXED_URL,
  WASM_URL,
  createWasmBackend,
  defaultThreads,
  threadsFromEnv,
} from "../src/engine/backends/wasm.js";
import { onHost } from "./helpers/host-backend.js";
import { withBackend } from "../src/engine/index.js";
import { buildModel } from "../src/models/registry.js";
import { Adam } from "../src/train/optimizers.js";
import { Rng } from "../src/util/rng.js";

const single = await createWasmBackend({ threads: 1 });
const two = await createWasmBackend({ threads: 2 });
const three = await createWasmBackend({ threads: 3 });
after(() => Promise.all([two.close(), three.close()]));
// The product tests pass host arrays; onHost copies them into wasm storage and back around each kernel.
const host = new Map([single, two, three].map((be) => [be, onHost(be)]));

function rand(rng: Rng, n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.random() * 2 - 1;
  return a;
}

function firstDifference(a: Float32Array, b: Float32Array): string | null {
  for (let i = 0; i < a.length; i++) if (!Object.is(a[i], b[i])) return `[${i}] ${a[i]} vs ${b[i]}`;
  return null;
}

// All above THREAD_MIN_MACS, none a multiple of the 4x8 tile. Taller than wide: split by rows; wider than tall: by
// columns. K beyond one 256-deep block; N beyond one 1024-wide block; M beyond one 128-row block.
const SHAPES: [number, number, number][] = [
  [301, 77, 131], // rows
  [1031, 263, 9], // rows, 9 columns
  [37, 301, 523], // columns
  [5, 421, 1031], // columns, fewer rows than a tile, N over two blocks
  [263, 530, 67], // rows, K over three blocks
];

test("the threaded backends say how many threads they run, and the shared build matches the unshared one", () => {
  assert.equal(single.threads, 1);
  assert.equal(two.threads, 2);
  assert.equal(three.threads, 3);
  assert.equal(two.build, single.build);
  for (const [M, K, N] of SHAPES) assert.ok(M * K * N >= THREAD_MIN_MACS, `${M}x${K}x${N} is below the threshold`);
});

test("matmul on 2 and 3 threads is bit-identical to 1 thread for every transpose/accumulate variant", () => {
  const rng = new Rng(7);
  for (const [M, K, N] of SHAPES) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        for (const accumulate of [false, true]) {
          // Fresh inputs every time: a block a worker failed to write would keep the previous case's values.
          const a = rand(rng, M * K);
          const b = rand(rng, K * N);
          const c0 = rand(rng, M * N);
          const want = c0.slice();
          host.get(single)!.matmul(a, b, want, M, K, N, { transA, transB, accumulate });
          for (const be of [two, three]) {
            const got = c0.slice();
            host.get(be)!.matmul(a, b, got, M, K, N, { transA, transB, accumulate });
            const diff = firstDifference(got, want);
            const what = `${M}x${K}x${N} tA=${transA} tB=${transB} acc=${accumulate} on ${be.threads} threads`;
            assert.equal(diff, null, `${what}: differs at ${diff}`);
          }
        }
      }
    }
  }
});

for (const [cell, H] of [
  ["lstm", 160],
  ["gru", 160],
  ["rnn", 256],
] as const) {
  test(`a ${cell.toUpperCase()} training step gives the same losses and weights on 1 and 2 threads`, () => {
    // (B, T) = (32, 8): every product is above the threshold and split: the input projection x @ Wx (256 x 32 x G)
    // and its gradients, the output layer's, the recurrent dWh (H x 256 x G, run outside the kernel when threaded),
    // and the per-step products inside the recurrent kernels, h @ Wh (32 x H x G) and dg @ Wh^T (32 x G x H).
    const [B, T, V] = [32, 8, 13];
    const run = (threads: number) => {
      const rng = new Rng(3);
      const losses: number[] = [];
      // The model is built on the backend under test: tensors stay on the backend they were made on.
      const model = withBackend(threads === 1 ? single : two, () => {
        const model = buildModel(
          { type: "rnn", cell, vocabSize: V, embedding: 32, units: H, layers: 1, dropout: 0 },
          rng,
        );
        const opt = new Adam(model.parameters());
        for (let i = 0; i < 2; i++) {
          const x = Int32Array.from({ length: B * T }, () => rng.int(V));
          const y = Int32Array.from({ length: B * T }, () => rng.int(V));
          const { loss } = model.forward(x, B, T, { targets: y, training: true });
          for (const t of model.parameters().values()) t.zeroGrad();
          loss!.backward();
          opt.step(0.01);
          losses.push(loss!.item());
        }
        return model;
      });
      return { losses, weights: [...model.parameters()].map(([name, t]) => [name, t.data.slice()] as const) };
    };
    const one = run(1);
    const both = run(2);
    assert.deepEqual(both.losses, one.losses);
    for (let i = 0; i < one.weights.length; i++) {
      const diff = firstDifference(both.weights[i][1], one.weights[i][1]);
      assert.equal(diff, null, `${one.weights[i][0]} differs at ${diff}`);
    }
  });
}

test("close() stops the workers and the backend keeps working on one thread", async () => {
  const be = await createWasmBackend({ threads: 2 });
  await be.close();
  assert.equal(be.threads, 1);
  const c = new Float32Array(4);
  onHost(be).matmul(Float32Array.from([1, 2, 3, 4]), Float32Array.from([5, 6, 7, 8]), c, 2, 2, 2);
  assert.deepEqual(Array.from(c), [19, 22, 43, 50]);
});

test("bad thread settings fail with a message naming them", async () => {
  const saved = process.env.CHARLM_THREADS;
  try {
    for (const v of ["two", "0", "1.5", "65"]) {
      process.env.CHARLM_THREADS = v;
      assert.throws(() => threadsFromEnv(), new RegExp(`CHARLM_THREADS=${v.replace(".", "\\.")}: not a whole number`));
    }
    process.env.CHARLM_THREADS = " ";
    assert.equal(threadsFromEnv(), defaultThreads());
  } finally {
    if (saved === undefined) delete process.env.CHARLM_THREADS;
    else process.env.CHARLM_THREADS = saved;
  }
  await assert.rejects(createWasmBackend({ threads: 0 }), /threads 0: not a whole number/);
  const bytes = await readFile(WASM_URL);
  await assert.rejects(createWasmBackend(bytes, { threads: 2 }), /need the shared-memory build/);
});

test("useBackend('wasm') honours CHARLM_THREADS, and idle workers do not keep the process alive", () => {
  // The child never calls close(): it must still exit by itself once its work is done.
  const code = [
    'import { useBackend } from "./src/engine/index.ts";',
    'const be = await useBackend("wasm");',
    "const n = 600, a = be.alloc(n * n), c = be.alloc(n * n);",
    "be.fill(a, 1);",
    "be.matmul(a, a, c, n, n, n);",
    "const v = await be.read(c);",
    "console.log(`threads ${be.threads} c ${v[0]} ${v[n * n - 1]}`);",
  ].join("\n");
  const root = fileURLToPath(new URL("..", import.meta.url));
  const wasmFlags = process.execArgv.filter((f) => f.startsWith("--experimental-wasm")); // as CHARLM_WASM_BUILD needs
  const r = spawnSync(process.execPath, [...wasmFlags, "--import", "tsx", "--input-type=module", "-e", code], {
    cwd: root,
    env: { ...process.env, CHARLM_THREADS: "2", NODE_TEST_CONTEXT: undefined },
    encoding: "utf8",
    timeout: 30_000,
  });
  assert.equal(r.error, undefined, `the child did not exit within 30 s: ${String(r.error)}`);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /threads 2 c 600 600/);
});

test("a one-file bundle of the engine (as bench/gpu-pack.sh makes) gets the default thread count", async () => {
  // esbuild runs a dynamically imported module's top-level await without waiting for it when a re-exporting module
  // sits between: the thread default must not depend on that await having settled.
  const { build } = await import("esbuild");
  const root = fileURLToPath(new URL("..", import.meta.url));
  const result = await build({
    stdin: {
      contents: [
        'const m = await import("./src/engine/backends/wasm.ts");',
        "console.log(JSON.stringify({ threads: m.threadsFromEnv(), max: m.MAX_THREADS }));",
      ].join("\n"),
      resolveDir: root,
      loader: "ts",
    },
    bundle: true,
    platform: "node",
    format: "esm",
    write: false,
    logLevel: "silent",
  });
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", result.outputFiles[0].text], {
    env: { ...process.env, CHARLM_THREADS: undefined, NODE_TEST_CONTEXT: undefined },
    encoding: "utf8",
    timeout: 30_000,
  });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { threads: defaultThreads(), max: 64 });
});

test("given a shared build's bytes (as the page's training worker fetches them), the backend runs its threads on them and names the build", async () => {
  const bytes = await readFile(WASM_SHARED_RELAXED_URL);
  const given = await createWasmBackend({ sharedBytes: bytes, build: "relaxed", threads: 2 });
  try {
    assert.equal(given.threads, 2);
    assert.equal(given.build, "relaxed");
    // against the unshared relaxed build on one thread: the same bits
    const one = await createWasmBackend({ bytes: await readFile(WASM_RELAXED_URL), build: "relaxed" });
    const rng = new Rng(7);
    for (const [M, K, N] of SHAPES) {
      const a = rand(rng, M * K);
      const b = rand(rng, K * N);
      const [want, got] = [new Float32Array(M * N), new Float32Array(M * N)];
      onHost(one).matmul(a, b, want, M, K, N, {});
      onHost(given).matmul(a, b, got, M, K, N, {});
      assert.equal(firstDifference(got, want), null, `${M}x${K}x${N}`);
    }
  } finally {
    await given.close();
  }
  // unshared bytes labelled by the caller; the label is reported, not guessed
  const plain = await createWasmBackend({ bytes: await readFile(WASM_URL), build: "plain" });
  assert.equal(plain.build, "plain");
  assert.equal((await createWasmBackend({ bytes: await readFile(WASM_URL) })).build, "bytes");
});
