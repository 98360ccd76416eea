import { test } from "node:test";
import assert from "node:assert/strict";
import { Rng } from "../src/util/rng.js";

test("same seed gives the same stream; different seeds differ", () => {
  const a = new Rng(42);
  const b = new Rng(42);
  const c = new Rng(43);
  const xa = Array.from({ length: 8 }, () => a.nextU32());
  const xb = Array.from({ length: 8 }, () => b.nextU32());
  const xc = Array.from({ length: 8 }, () => c.nextU32());
  assert.deepEqual(xa, xb);
  assert.notDeepEqual(xa, xc);
});

test("state round-trips: restoring continues the same stream", () => {
  const a = new Rng(7);
  for (let i = 0; i < 5; i++) a.random();
  const saved = a.getState();
  const next = [a.random(), a.normal(), a.int(10)];
  const b = new Rng(saved);
  assert.deepEqual([b.random(), b.normal(), b.int(10)], next);
});

test("uniform and normal draws have the right moments", () => {
  const r = new Rng(1);
  const n = 20000;
  let su = 0;
  let sn = 0;
  let sn2 = 0;
  for (let i = 0; i < n; i++) {
    su += r.random();
    const z = r.normal();
    sn += z;
    sn2 += z * z;
  }
  assert.ok(Math.abs(su / n - 0.5) < 0.01);
  assert.ok(Math.abs(sn / n) < 0.03);
  assert.ok(Math.abs(sn2 / n - 1) < 0.05);
});

test("categorical follows the weights", () => {
  const r = new Rng(3);
  const counts = [0, 0, 0];
  for (let i = 0; i < 9000; i++) counts[r.categorical([1, 0, 2])]++;
  assert.equal(counts[1], 0);
  assert.ok(Math.abs(counts[2] / counts[0] - 2) < 0.2);
});
