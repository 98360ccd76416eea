// The autograd machinery itself: accumulation, broadcast reduction, multi-output nodes, no-grad mode, release of
// the graph after backward (a training loop must not grow the graph), and the backend registry.

import { test } from "node:test";
import assert from "node:assert/strict";
import * as E from "../src/engine/index.js";
import { Tensor, gradRules, liveNodes, noGrad, isGradEnabled } from "../src/engine/index.js";
import { Rng } from "../src/util/rng.js";
import { rand } from "./engine-ref.js";

test("leaf gradients accumulate across backward calls until zeroGrad", () => {
  const x = Tensor.fromArray([1, 2, 3], [3], true);
  E.sum(E.mul(x, x)).backward(); // d/dx Σx² = 2x
  assert.deepEqual(Array.from(x.grad!), [2, 4, 6]);
  E.sum(E.scale(x, 3)).backward();
  assert.deepEqual(Array.from(x.grad!), [5, 7, 9]);
  x.zeroGrad();
  assert.deepEqual(Array.from(x.grad!), [0, 0, 0]);
});

test("a tensor used twice gets the sum of both paths", () => {
  const x = Tensor.fromArray([0.5, -1], [2], true);
  const y = E.add(E.tanh(x), E.mul(x, Tensor.fromArray([2, 2], [2])));
  E.sum(y).backward();
  const want = [0.5, -1].map((v) => 1 - Math.tanh(v) ** 2 + 2);
  want.forEach((w, i) => assert.ok(Math.abs(x.grad![i] - w) < 1e-6));
});

test("a bias broadcast over rows gets the column sums of the gradient", () => {
  const x = Tensor.zeros([4, 3]);
  const b = Tensor.zeros([3], true);
  E.sum(E.add(x, b)).backward();
  assert.deepEqual(Array.from(b.grad!), [4, 4, 4]);
});

test("noGrad records no graph and marks nothing as requiring a gradient", () => {
  const w = Tensor.fromArray([1, 2], [2], true);
  const before = liveNodes();
  const y = noGrad(() => {
    assert.equal(isGradEnabled(), false);
    return E.tanh(E.mul(w, w));
  });
  assert.equal(isGradEnabled(), true);
  assert.equal(y.node, null);
  assert.equal(y.requiresGrad, false);
  assert.equal(liveNodes(), before);
  assert.throws(
    () =>
      noGrad(() => {
        throw new Error("boom");
      }),
    /boom/,
  );
  assert.equal(isGradEnabled(), true, "flag restored after a throw");
});

test("multi-output ops: an unused output contributes no gradient", () => {
  const rng = new Rng(41);
  const x = rand(rng, [3, 2, 4]);
  const wx = rand(rng, [4, 12]);
  const wh = rand(rng, [3, 12]);
  const b = rand(rng, [12]);
  const { hs, hT, cT } = E.lstm(x, wx, wh, b);
  assert.equal(hs.node, hT.node);
  assert.equal(hs.node, cT.node);
  E.sum(hT).backward(); // only hT used
  assert.ok(wx.grad && wx.grad.some((v) => v !== 0));
  assert.equal(hs.node, null, "graph released");
});

test("every op name has exactly one gradient rule", () => {
  const names = Object.keys(gradRules);
  // the ops of ops.ts and recurrent.ts, by the node names they record
  const recorded = [
    "matmul",
    "linear",
    "add",
    "sub",
    "mul",
    "scale",
    "unary",
    "softmax",
    "softmaxCrossEntropy",
    "embedding",
  ];
  recorded.push("concat", "slice", "reduce", "reshape", "transpose", "layerNorm", "dropout", "causalMask");
  recorded.push("causalSelfAttention", "lstm", "gru", "rnn", "lstmProjected", "gruProjected", "rnnProjected");
  assert.deepEqual(names.slice().sort(), recorded.sort());
  for (const n of names) assert.equal(typeof gradRules[n as keyof typeof gradRules], "function");
});

test("backward releases the graph: 300 training steps leave no nodes and no intermediate gradients behind", () => {
  const rng = new Rng(42);
  const [V, Dm, H, T, B] = [11, 5, 7, 6, 3];
  const emb = rand(rng, [V, Dm]);
  const wx = rand(rng, [Dm, 4 * H], -0.3, 0.3);
  const wh = rand(rng, [H, 4 * H], -0.3, 0.3);
  const b = Tensor.zeros([4 * H], true);
  const wo = rand(rng, [H, V], -0.3, 0.3);
  const params = [emb, wx, wh, b, wo];
  const base = liveNodes();
  let state: { h: Tensor; c: Tensor } | null = null;
  let first = 0;
  let last = 0;
  for (let step = 0; step < 300; step++) {
    const ids = Int32Array.from({ length: T * B }, () => rng.int(V));
    const targets = ids.map((id) => (id + 1) % V); // learnable: next id
    const x = E.embedding(emb, ids, [T, B]); // (T, B, Dm)
    const out = E.lstm(x, wx, wh, b, state?.h ?? null, state?.c ?? null);
    const h = E.dropout(out.hs, 0.1, rng, true);
    const loss = E.softmaxCrossEntropy(E.matmul(h, wo), targets);
    assert.ok(liveNodes() > base, "the step recorded a graph");
    for (const p of params) p.zeroGrad();
    loss.backward();
    assert.equal(liveNodes(), base, `step ${step}: every node released`);
    assert.equal(out.hs.grad, null, "intermediate gradients dropped");
    assert.equal(loss.node, null);
    // the carried state is a constant in the next step (truncated BPTT)
    state = { h: out.hT, c: out.cT };
    assert.equal(state.h.requiresGrad, false);
    // plain SGD so the loss goes down and the test also shows training works
    for (const p of params) for (let i = 0; i < p.size; i++) p.data[i] -= 0.5 * p.grad![i];
    if (step === 0) first = loss.item();
    last = loss.item();
  }
  assert.ok(Number.isFinite(last) && last < first, `loss went from ${first} to ${last}`);
});

test("backward without a seed needs a scalar; shape errors are one sentence", () => {
  const x = Tensor.zeros([2, 2], true);
  assert.throws(() => E.tanh(x).backward(), /scalar/);
  assert.throws(() => E.add(Tensor.zeros([2, 3]), Tensor.zeros([4])), /do not broadcast/);
  assert.throws(() => E.matmul(Tensor.zeros([2, 3]), Tensor.zeros([4, 5])), /do not chain/);
});

test("detach shares data and cuts history", () => {
  const x = Tensor.fromArray([1, 2], [2], true);
  const y = E.scale(x, 2);
  const d = y.detach();
  assert.equal(d.data, y.data);
  assert.equal(d.requiresGrad, false);
  assert.equal(d.node, null);
});

test("backend registry: js is the default, wasm listed only when it loads, unknown names rejected", async () => {
  assert.equal(E.getBackend().name, "js");
  const names = await E.listBackends();
  assert.equal(names[0], "js");
  for (const n of names) assert.equal((await E.loadBackend(n)).name, n);
  const prev = E.getBackend();
  const b = await E.useBackend(names[names.length - 1]);
  assert.equal(E.getBackend(), b);
  E.setBackend(prev);
  await assert.rejects(E.loadBackend("cuda" as never), /unknown/);
});

test("the heap does not grow over training steps (after a full GC)", async () => {
  const v8 = await import("node:v8");
  const vm = await import("node:vm");
  v8.setFlagsFromString("--expose-gc");
  const gc = vm.runInNewContext("gc") as () => void;
  const rng = new Rng(43);
  const [V, H, T, B] = [13, 16, 8, 4];
  const emb = rand(rng, [V, H]);
  const cell = { wx: rand(rng, [H, 3 * H], -0.3, 0.3), wh: rand(rng, [H, 3 * H], -0.3, 0.3) };
  const bx = Tensor.zeros([3 * H], true);
  const bh = Tensor.zeros([3 * H], true);
  const wo = rand(rng, [H, V], -0.3, 0.3);
  const params = [emb, cell.wx, cell.wh, bx, bh, wo];
  let h: Tensor | null = null;
  const step = () => {
    const ids = Int32Array.from({ length: T * B }, () => rng.int(V));
    const out = E.gru(E.embedding(emb, ids, [T, B]), cell.wx, cell.wh, bx, bh, h);
    const loss = E.softmaxCrossEntropy(E.matmul(out.hs, wo), ids);
    for (const p of params) p.zeroGrad();
    loss.backward();
    h = out.hT;
  };
  for (let i = 0; i < 100; i++) step();
  gc();
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < 500; i++) step();
  gc();
  const grown = process.memoryUsage().heapUsed - before;
  assert.ok(grown < 1 << 20, `heap grew by ${grown} bytes over 500 steps`);
});
