// The webgpu backend's profiler (src/engine/backends/webgpu/profile.ts): counts and GPU times per kernel key, host
// time, the same results as without it, and nothing changed in what an unprofiled run encodes.
//
// Skipped, with the reason, when the optional package `webgpu` is missing or finds no adapter (on Linux without a
// GPU: VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json, which .ci/run sets).

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { GpuStorage, WebgpuBackend } from "../src/engine/backends/webgpu/index.js";
import { gpuForTests } from "./helpers/webgpu.js";

const { gpu, skip } = await gpuForTests();

/** A few kernels of three keys and one clear: 3 x unary.relu, 2 x matmulNN.thin (4 rows: a thread per output), 1 x fill, on (4, 5)·(5, 3). */
function work(g: WebgpuBackend, s: Record<string, GpuStorage>): void {
  for (let i = 0; i < 3; i++) g.unary("relu", s.x, s.y, 20);
  g.matmul(s.x, s.w, s.c, 4, 5, 3);
  g.matmul(s.x, s.w, s.c, 4, 5, 3, { accumulate: true });
  g.fill(s.y, 0.5, 0, 7);
  g.fill(s.x, 0, 18, 2); // a clear
}

function storages(g: WebgpuBackend): Record<string, GpuStorage> {
  const s = { x: g.alloc(20), y: g.alloc(20), w: g.alloc(15), c: g.alloc(12) };
  g.write(
    s.x,
    Float32Array.from({ length: 20 }, (_, i) => (i % 7) - 3),
  );
  g.write(
    s.w,
    Float32Array.from({ length: 15 }, (_, i) => (i % 5) / 4),
  );
  return s;
}

async function values(g: WebgpuBackend, s: Record<string, GpuStorage>): Promise<number[][]> {
  return Promise.all(Object.values(s).map(async (b) => [...(await g.read(b))]));
}

/** Compute passes begun while `f` runs (counted on the prototype Dawn's encoders share). */
async function passes(f: () => Promise<unknown>): Promise<number> {
  const proto = (globalThis as unknown as { GPUCommandEncoder: { prototype: GPUCommandEncoder } }).GPUCommandEncoder
    .prototype;
  const begin = proto.beginComputePass;
  let n = 0;
  proto.beginComputePass = function (this: GPUCommandEncoder, d?: GPUComputePassDescriptor) {
    n++;
    return begin.call(this, d);
  };
  try {
    await f();
  } finally {
    proto.beginComputePass = begin;
  }
  return n;
}

describe("webgpu profiler", { skip }, () => {
  test("one entry per kernel key with its count, GPU times where the device has timestamps", async () => {
    const g = gpu!;
    const s = storages(g);
    await g.flush();
    g.startProfile();
    work(g, s);
    const p = await g.stopProfile();
    const counts = Object.fromEntries(p.kernels.map((k) => [k.key, k.count]));
    assert.deepEqual(counts, { "unary.relu": 3, "matmulNN.thin": 2, fill: 1 });
    assert.deepEqual({ d: p.counts.dispatches, c: p.counts.clears }, { d: 6, c: 1 });
    assert.ok(p.hostMs > 0 && p.wallMs >= p.hostMs, `host ${p.hostMs} ms, wall ${p.wallMs} ms`);
    assert.ok(p.kernels.every((k) => k.hostMs > 0));
    if (p.timestamps) {
      assert.equal(p.badTimestamps, 0);
      assert.ok(
        p.kernels.every((k) => k.gpuNs > 0),
        JSON.stringify(p.kernels),
      );
      assert.equal(
        p.gpuNs,
        p.kernels.reduce((a, k) => a + k.gpuNs, 0),
      );
      // sorted by GPU time
      assert.ok(p.kernels.every((k, i) => i === 0 || p.kernels[i - 1].gpuNs >= k.gpuNs));
    } else {
      assert.match(p.why ?? "", /timestamp-query/);
      assert.ok(p.kernels.every((k) => k.gpuNs === 0));
    }
    for (const b of Object.values(s)) g.free(b);
  });

  test("profiled results are the unprofiled ones; off, the commands encoded are the same as before", async () => {
    const g = gpu!;
    const run = async (profile: boolean) => {
      const s = storages(g);
      await g.flush();
      const c0 = g.counts();
      let n = 0;
      const passCount = await passes(async () => {
        if (profile) g.startProfile();
        work(g, s);
        if (profile) n = (await g.stopProfile()).kernels.length;
        else await g.flush();
      });
      const c1 = g.counts();
      const v = await values(g, s);
      for (const b of Object.values(s)) g.free(b);
      const delta = Object.fromEntries(["dispatches", "copies", "clears"].map((k) => [k, c1[k] - c0[k]]));
      return { v, delta, passCount, n };
    };
    const before = await run(false);
    const profiled = await run(true);
    const after = await run(false);
    assert.deepEqual(profiled.v, before.v);
    assert.deepEqual(after, before);
    assert.deepEqual(profiled.delta, before.delta);
    assert.equal(profiled.n, 3);
    // Off: dispatches with no copy or clear between them share one pass (all six here). On with timestamps: a
    // pass per dispatch.
    assert.equal(before.passCount, 1);
    if (await probeTimestamps(g)) assert.equal(profiled.passCount, 6);
  });

  test("more dispatches than a query set holds (4096 timestamps) in one flush, grid keys, host-only mode", async () => {
    const g = gpu!;
    const x = g.alloc(8);
    g.startProfile({ grid: true });
    for (let i = 0; i < 2100; i++) g.scale(x, x, 8, 1.0001, false);
    const c = g.alloc(6);
    g.matmul(x, x, c, 2, 4, 3); // a product's key says its M x K x N too
    const p = await g.stopProfile();
    assert.deepEqual(p.kernels.map((k) => [k.key, k.count]).sort(), [
      ["matmulNN.thin 1x1x1 2x4x3", 1],
      ["scale.false 1x1x1", 2100],
    ]);
    g.free(c);
    if (p.timestamps) {
      assert.equal(p.badTimestamps, 0);
      assert.ok(p.gpuNs > 0);
    }
    g.startProfile({ timestamps: false });
    g.scale(x, x, 8, 2, false);
    const h = await g.stopProfile();
    assert.equal(h.timestamps, false);
    assert.match(h.why ?? "", /host times only/);
    assert.deepEqual(
      h.kernels.map((k) => [k.key, k.count, k.gpuNs]),
      [["scale.false", 1, 0]],
    );
    g.free(x);
  });

  test("a run of one kernel sets its pipeline once a pass; a set of buffers gets its bind group once", async () => {
    const g = gpu!;
    const s = storages(g);
    await g.flush();
    const encode = async (profile: boolean) => {
      const counted = await commandCalls(g, async () => {
        if (profile) g.startProfile();
        work(g, s);
        if (profile) await g.stopProfile();
        else await g.flush();
      });
      return counted;
    };
    const first = await encode(false);
    const again = await encode(false);
    // work() runs 3 x relu, 2 x one product and a fill in one pass: a pipeline change each, and each dispatch's
    // buffers bound at its own dynamic offset
    assert.deepEqual({ p: again.setPipeline, b: again.setBindGroup }, { p: 3, b: 6 });
    assert.equal(again.createBindGroup, 0, "the same buffers again: every bind group comes from the cache");
    assert.ok(first.createBindGroup <= 4, `${first.createBindGroup} bind groups for 4 sets of buffers`);
    // profiled with timestamps, each dispatch is a pass of its own, and so sets its pipeline
    if (await probeTimestamps(g)) assert.equal((await encode(true)).setPipeline, 6);
    for (const b of Object.values(s)) g.free(b);
  });

  test("start twice or stop without start: an error that says what to do", async () => {
    const g = gpu!;
    await assert.rejects(() => g.stopProfile(), /no profile is running; call startProfile first/);
    g.startProfile();
    assert.throws(() => g.startProfile(), /already running; call stopProfile first/);
    await g.stopProfile();
  });
});

/** Calls of setPipeline and setBindGroup on compute passes and of createBindGroup while `f` runs. */
async function commandCalls(
  g: WebgpuBackend,
  f: () => Promise<unknown>,
): Promise<{ setPipeline: number; setBindGroup: number; createBindGroup: number }> {
  const gl = globalThis as unknown as { GPUComputePassEncoder: { prototype: GPUComputePassEncoder } };
  const pass = gl.GPUComputePassEncoder.prototype;
  const { setPipeline, setBindGroup } = pass;
  const device = g.gpuDevice;
  const createBindGroup = device.createBindGroup;
  const n = { setPipeline: 0, setBindGroup: 0, createBindGroup: 0 };
  pass.setPipeline = function (this: GPUComputePassEncoder, ...a: Parameters<GPUComputePassEncoder["setPipeline"]>) {
    n.setPipeline++;
    return setPipeline.apply(this, a);
  };
  pass.setBindGroup = function (this: GPUComputePassEncoder, ...a: unknown[]) {
    n.setBindGroup++;
    return (setBindGroup as (...x: unknown[]) => undefined).apply(this, a);
  };
  device.createBindGroup = (d: GPUBindGroupDescriptor) => {
    n.createBindGroup++;
    return createBindGroup.call(device, d);
  };
  try {
    await f();
  } finally {
    pass.setPipeline = setPipeline;
    pass.setBindGroup = setBindGroup;
    device.createBindGroup = createBindGroup;
  }
  return n;
}

/** Whether this device times kernels (SwiftShader does). */
async function probeTimestamps(g: WebgpuBackend): Promise<boolean> {
  g.startProfile();
  return (await g.stopProfile()).timestamps;
}
