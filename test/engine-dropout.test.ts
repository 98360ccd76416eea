// Dropout's mask made on the backend (Backend.dropoutMask): a counter-based hash of one seed from the run's seeded
// generator, so nothing is uploaded per step. The masks are the same bits on js, wasm (one thread and four) and
// webgpu (SwiftShader here; skipped without an adapter), drop the asked fraction, look independent between
// neighbouring elements and seeds, and the op draws exactly one number from the generator per mask.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import type { Backend, Storage } from "../src/engine/backend.js";
import { jsBackend } from "../src/engine/backends/js.js";
import { dropHash } from "../src/engine/backends/js-ops.js";
import { createWasmBackend } from "../src/engine/backends/wasm.js";
import { gpuForTests } from "./helpers/webgpu.js";
import { dropout } from "../src/engine/ops.js";
import { withBackend } from "../src/engine/backends/index.js";
import { Tensor } from "../src/engine/tensor.js";
import { Rng } from "../src/util/rng.js";

const wasm1 = await createWasmBackend({ threads: 1 });
const wasm4 = await createWasmBackend({ threads: 4 });
const { gpu, skip: gpuSkip } = await gpuForTests();
after(async () => {
  await wasm1.close();
  await wasm4.close();
});

async function mask<S extends Storage>(be: Backend<S>, n: number, seed: number, rate: number): Promise<Float32Array> {
  const out = be.alloc(n);
  be.dropoutMask(out, n, seed, Math.min(0xffffffff, Math.floor(rate * 2 ** 32)), Math.fround(1 / (1 - rate)));
  const v = await be.read(out);
  be.free(out);
  return v;
}

const CASES: [number, number, number][] = [
  [1, 0, 0.5],
  [7, 1, 0.1],
  [1000, 0xffffffff, 0.25],
  [4099, 12345, 0.9],
];

// Pinned from a separate Python transcription of the hash (integers masked to 32 bits):
//   lb = lambda x: (x := x ^ x >> 16, x := x * 0x7feb352d & M, x := x ^ x >> 15, x := x * 0x846ca68b & M, x ^ x >> 16)[-1]
//   h = lambda seed, i: lb(lb(i * 0x9e3779b9 + seed & M) ^ seed)
test("the hash matches its Python transcription (a change to it changes every dropout run)", () => {
  assert.deepEqual(
    [0, 1, 2, 3].map((i) => dropHash(1, i).toString(16)),
    ["d25b73e6", "7f58f66b", "533e97fa", "40814e9d"],
  );
  assert.deepEqual(
    [0, 1].map((i) => dropHash(0xffffffff, i).toString(16)),
    ["9945545d", "ca4d4754"],
  );
});

test("js and wasm (1 and 4 threads) make the same masks, bit for bit", async () => {
  for (const [n, seed, rate] of CASES) {
    const want = await mask(jsBackend, n, seed, rate);
    for (const be of [wasm1, wasm4]) {
      assert.deepEqual(
        await mask(be, n, seed, rate),
        want,
        `wasm ${be === wasm1 ? 1 : 4} thread(s), n ${n} seed ${seed}`,
      );
    }
  }
});

test("webgpu makes the same masks, bit for bit", { skip: gpuSkip }, async () => {
  for (const [n, seed, rate] of CASES) {
    assert.deepEqual(await mask(gpu!, n, seed, rate), await mask(jsBackend, n, seed, rate), `n ${n} seed ${seed}`);
  }
});

test("masks drop the asked fraction, scale the rest, and look independent", async () => {
  const n = 200_000;
  for (const rate of [0.1, 0.25, 0.5]) {
    const m = await mask(jsBackend, n, 7, rate);
    const keep = Math.fround(1 / (1 - rate));
    let dropped = 0;
    let bothDropped = 0;
    for (let i = 0; i < n; i++) {
      assert.ok(m[i] === 0 || m[i] === keep);
      if (m[i] === 0) dropped++;
      if (i > 0 && m[i] === 0 && m[i - 1] === 0) bothDropped++;
    }
    // Binomial: 5 standard deviations.
    const sd = Math.sqrt(n * rate * (1 - rate));
    assert.ok(Math.abs(dropped - n * rate) < 5 * sd, `rate ${rate}: dropped ${dropped} of ${n}`);
    const pairs = (n - 1) * rate * rate;
    assert.ok(Math.abs(bothDropped - pairs) < 5 * Math.sqrt(pairs), `rate ${rate}: neighbours ${bothDropped}`);
  }
  // Neighbouring seeds: agreement as for independent masks, p² + (1-p)² = 0.5 at rate 0.5.
  const a = await mask(jsBackend, n, 100, 0.5);
  const b = await mask(jsBackend, n, 101, 0.5);
  let agree = 0;
  for (let i = 0; i < n; i++) if (a[i] === b[i]) agree++;
  assert.ok(Math.abs(agree / n - 0.5) < 5 * Math.sqrt(0.25 / n), `seeds 100 and 101 agree on ${agree} of ${n}`);
});

test("dropout draws one number per mask: same generator state, same mask; the next call, another", async () => {
  const x = Tensor.fromArray(new Float32Array(64).fill(1), [8, 8]);
  const r1 = new Rng(3);
  const r2 = new Rng(3);
  const m1 = await dropout(x, 0.5, r1, true).read();
  const m2 = await dropout(x, 0.5, r2, true).read();
  assert.deepEqual(m1, m2);
  const probe = new Rng(3);
  probe.nextU32();
  assert.deepEqual(r1.getState(), probe.getState());
  assert.notDeepEqual(await dropout(x, 0.5, r1, true).read(), m1);
  // On wasm, the same generator state gives the same values.
  const onWasm = await withBackend(wasm1, () =>
    dropout(Tensor.fromArray(new Float32Array(64).fill(1), [8, 8]), 0.5, new Rng(3), true),
  ).read();
  assert.deepEqual(onWasm, m1);
});
