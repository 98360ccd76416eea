// The WebGPU backend, kernel by kernel, against the js reference backend on the same random inputs (odd, small
// sizes: CI runs this on SwiftShader, a CPU Vulkan at ~0.1 GFLOP/s). Every buffer a kernel sees, inputs included, is
// compared after the call: |gpu - js| <= tol · max(1, |js|), tol 1e-5 unless a kernel's note says why not.
//
// Skipped, with the reason, when the optional package `webgpu` is missing or finds no adapter (on Linux without a
// GPU: VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json, which .ci/run sets).

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { Backend, MatmulOptions, Storage } from "../src/engine/backend.js";
import { jsBackend } from "../src/engine/backends/js.js";
import { createWebgpuBackend } from "../src/engine/backends/webgpu/index.js";
import { pickVariant, takesThin, THIN_ROWS } from "../src/engine/backends/webgpu/kernels/matmul.js";
import { lstmStepSettings, stepSettingsOf } from "../src/engine/backends/webgpu/kernels/recurrent.js";
import { cachedByRow, softmaxByWorkgroup } from "../src/engine/backends/webgpu/kernels/attention.js";
import { normByWorkgroup } from "../src/engine/backends/webgpu/kernels/rows.js";
import { sizeClass } from "../src/engine/backends/webgpu/runtime.js";
import { SMALL_MODELS, train } from "./helpers/train.js";
import { gpuForTests } from "./helpers/webgpu.js";
import { Rng } from "../src/util/rng.js";
import type { ModelConfig } from "../src/models/config.js";

const { gpu, skip } = await gpuForTests();

const rng = new Rng(9);
/** n uniform values in [-s, s). */
function rand(n: number, s = 1): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) x[i] = (2 * rng.random() - 1) * s;
  return x;
}

// The fastest settings per step kernel and shape, as bench/gpu_kernels.ts --table writes them (here for the 2 x LSTM
// of 10 units at batch 3 above, and a shape no test runs)
const TABLE = JSON.stringify({
  "lstmForward H10 B3": { rows: 2, slices: 4, units: 1, wide: true, prefetch: true, ahead: true },
  "lstmBackward H10 B3": { rows: 1, slices: 8, units: 4, wide: false, prefetch: true },
  "lstmBackward H512 B64": { rows: 4, slices: 2, units: 2, wide: true, prefetch: false },
});

type Bufs = Record<string, Float32Array>;
type Run = <S extends Storage>(b: Backend<S>, s: Record<string, S>) => void;

/** Run on js (copies of `inputs`) and on the GPU, then compare every buffer. */
async function same(inputs: Bufs, run: Run, tol = 1e-5): Promise<void> {
  const g = gpu!;
  const ref: Bufs = {};
  for (const [k, v] of Object.entries(inputs)) ref[k] = v.slice();
  run(jsBackend, ref);
  const st = Object.fromEntries(
    Object.entries(inputs).map(([k, v]) => {
      const s = g.alloc(v.length);
      g.write(s, v);
      return [k, s];
    }),
  );
  run(g, st);
  for (const [k, want] of Object.entries(ref)) {
    const got = await g.read(st[k]);
    let worst = 0;
    let at = -1;
    for (let i = 0; i < want.length; i++) {
      if (Object.is(got[i], want[i])) continue;
      const e = Math.abs(got[i] - want[i]) / Math.max(1, Math.abs(want[i]));
      if (!(e <= worst)) [worst, at] = [e, i];
    }
    assert.ok(worst <= tol, `${k}[${at}]: gpu ${got[at]} js ${want[at]} (relative error ${worst}, tolerance ${tol})`);
    g.free(st[k]);
  }
}

function ids(n: number, V: number): Int32Array {
  return Int32Array.from({ length: n }, () => rng.int(V));
}

describe("webgpu backend against js", { skip }, () => {
  test("memory: write, read ranges, copy, fill, view refuses", async () => {
    const g = gpu!;
    const s = g.alloc(11);
    g.write(s, Float32Array.from([1, 2, 3]), 4);
    assert.deepEqual([...(await g.read(s))], [0, 0, 0, 0, 1, 2, 3, 0, 0, 0, 0]);
    g.copy(s, 4, s, 0, 3); // within one storage
    g.fill(s, 7, 8, 2);
    assert.deepEqual([...(await g.read(s, 0, 10))], [1, 2, 3, 0, 1, 2, 3, 0, 7, 7]);
    assert.throws(() => g.view(s), /await tensor.read/);
    g.free(s);
    const t = g.alloc(11); // pooled: the same buffer again, zeroed
    assert.deepEqual([...(await g.read(t))], new Array(11).fill(0));
    g.free(t);
  });

  // Every variant (CHARLM_WEBGPU_MATMUL: 64 x 64 or 128 x 128 tiles, read as floats or vec4s, the next tiles
  // prefetched or not; auto picks by shape); shapes straddle two tiles of either size.
  for (const tile of ["auto", "64", "128", "64v", "128v", "64p", "128p", "64d", "128d", "auto-128", "auto-128d"]) {
    test(`matmul (CHARLM_WEBGPU_MATMUL=${tile}): transposes, accumulate, batch, offsets`, () =>
      withEnv({ CHARLM_WEBGPU_MATMUL: tile }, () => matmulOps()));
  }
  async function matmulOps(): Promise<void> {
    for (const [M, K, N] of [
      [67, 33, 70],
      [139, 21, 131],
    ]) {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          await same({ a: rand(M * K), b: rand(K * N), c: rand(M * N) }, (b, s) =>
            b.matmul(s.a, s.b, s.c, M, K, N, { transA, transB }),
          );
        }
      }
    }
    // split along K (few output tiles, long K), as a weight gradient over T·B rows; overwrite and accumulate
    const [m, k, n] = [9, 1100, 5];
    for (const accumulate of [false, true]) {
      await same(
        { a: rand(k * m), b: rand(k * n), c: rand(3 + m * n) },
        (b, s) => b.matmul(s.a, s.b, s.c, m, k, n, { transA: true, accumulate, offsetC: 3 }),
        5e-5, // sums of 1,100 terms of either sign, in 4 parts: another order than js's (1e-5 failed once at 1.03e-5)
      );
    }
    // a weight gradient's shape (6 output tiles, K = 2,048): unsplit, split in 2 (for 12 workgroups) and by the
    // default rule (in 8: capped by K / 256)
    for (const target of ["1", "12", ""]) {
      await withEnv({ CHARLM_WEBGPU_SPLITK: target }, () =>
        same(
          { a: rand(2048 * 70), b: rand(2048 * 130), c: rand(70 * 130) },
          (b, s) => b.matmul(s.a, s.b, s.c, 70, 2048, 130, { transA: true, accumulate: true }),
          1e-4, // sums of 2,048 terms of either sign, in another order than js's
        ),
      );
    }
    await same({ a: rand(3 + 2 * 5 * 7), b: rand(1 + 2 * 7 * 4), c: rand(2 + 2 * 5 * 4) }, (b, s) =>
      b.matmul(s.a, s.b, s.c, 5, 7, 4, { batch: 2, accumulate: true, offsetA: 3, offsetB: 1, offsetC: 2 }),
    );
    // a bias added to every row: unsplit (an input projection) and split along K
    for (const [M, K, N, transA] of [
      [67, 33, 70, false],
      [9, 1100, 5, true],
    ] as const) {
      await same({ a: rand(2 + M * K), b: rand(K * N), bias: rand(N), c: rand(M * N) }, (b, s) =>
        b.matmul(s.a, s.b, s.c, M, K, N, { transA, offsetA: 2, bias: s.bias }),
      );
    }
  }

  // A product of at most THIN_ROWS rows (a generated character's) takes a thread per output: the tiles' fma chain
  // in k order, so the same bits as the tiles (CHARLM_WEBGPU_THIN=0), transposed or not, with a bias, accumulating
  // at offsets, in a batch and split along K.
  test("matmul with few rows: a thread per output, the same bits as the tiles", async () => {
    const g = gpu!;
    const cases: [number, number, number, MatmulOptions, string?][] = [];
    for (const M of [1, 3, THIN_ROWS]) {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) cases.push([M, 37, 70, { transA, transB }]);
      }
      cases.push([M, 21, 131, { offsetA: 2, offsetB: 1, offsetC: 3, accumulate: true }]);
      cases.push([M, 1100, 5, { transA: true }, ""]); // split along K in 4 parts
      cases.push([M, 1100, 5, { transA: true, accumulate: true }, "12"]); // in 8
    }
    cases.push([2, 7, 4, { batch: 3, accumulate: true, offsetA: 3, offsetB: 1, offsetC: 2 }]);
    for (const [M, K, N, o, splitK = "1"] of cases) {
      const batch = o.batch ?? 1;
      const [a, b, bias] = [rand(3 + batch * M * K), rand(1 + batch * K * N), rand(N)].map((v) => {
        const st = g.alloc(v.length);
        g.write(st, v);
        return st;
      });
      const c0 = rand(3 + batch * M * N);
      const outs: Float32Array[] = [];
      for (const thin of ["1", "0"]) {
        for (const withBias of batch === 1 && !o.accumulate ? [false, true] : [false]) {
          const c = g.alloc(c0.length);
          g.write(c, c0);
          g.startProfile({ timestamps: false });
          await withEnv({ CHARLM_WEBGPU_THIN: thin, CHARLM_WEBGPU_SPLITK: splitK }, async () =>
            g.matmul(a, b, c, M, K, N, withBias ? { ...o, bias } : o),
          );
          const keys = (await g.stopProfile()).kernels.map((k) => k.key);
          assert.equal(
            keys.some((k) => k.includes(".thin")),
            thin === "1",
            `${keys} (${M}x${K}x${N})`,
          );
          outs.push(await g.read(c));
          g.free(c);
        }
      }
      const half = outs.length / 2;
      for (let i = 0; i < half; i++) assert.deepEqual(outs[i], outs[half + i], `${M}x${K}x${N} ${JSON.stringify(o)}`);
      // and js's values
      const ref = c0.slice();
      const [ha, hb] = [await g.read(a), await g.read(b)];
      jsBackend.matmul(ha, hb, ref, M, K, N, o);
      const tol = K > 1000 ? 1e-4 : 1e-5;
      outs[0].forEach((v, i) =>
        assert.ok(Math.abs(v - ref[i]) <= tol * Math.max(1, Math.abs(ref[i])), `${M}x${K}x${N} [${i}]`),
      );
      for (const st of [a, b, bias]) g.free(st);
    }
    assert.ok(takesThin(THIN_ROWS, 65) && !takesThin(THIN_ROWS + 1, 65));
    await withEnv({ CHARLM_WEBGPU_THIN: "0" }, async () => assert.ok(!takesThin(1, 65)));
  });

  test("CHARLM_WEBGPU_MATMUL: an unknown variant is refused in one line", async () => {
    const g = gpu!;
    const [a, c] = [g.alloc(4), g.alloc(4)];
    await withEnv({ CHARLM_WEBGPU_MATMUL: "256" }, async () =>
      assert.throws(
        () => g.matmul(a, a, c, 2, 2, 2),
        /CHARLM_WEBGPU_MATMUL is "256"; use auto, 64, 128, 64v, 128v, 64p, 128p, 64d, 128d, auto-128, auto-128v, auto-128p or auto-128d/,
      ),
    );
    g.free(a);
    g.free(c);
  });

  test("matmul with a bias gives the same bits as the product, then the bias added", async () => {
    const g = gpu!;
    for (const [M, K, N, splitK] of [
      [139, 300, 131, "1"],
      [9, 1100, 5, ""], // split along K
    ] as const) {
      const [a, b, bias] = [rand(M * K), rand(K * N), rand(N)].map((v) => {
        const st = g.alloc(v.length);
        g.write(st, v);
        return st;
      });
      const [fused, separate] = [g.alloc(M * N), g.alloc(M * N)];
      await withEnv({ CHARLM_WEBGPU_SPLITK: splitK }, async () => {
        g.matmul(a, b, fused, M, K, N, { bias });
        g.matmul(a, b, separate, M, K, N);
      });
      g.binary("add", separate, [N, 1], bias, [0, 1], separate, [M, N]);
      assert.deepEqual(await g.read(fused), await g.read(separate));
      for (const s of [a, b, bias, fused, separate]) g.free(s);
    }
  });

  test("matmul: every tile variant gives the same bits as 64 x 64 (the same fma chain in k order)", async () => {
    const g = gpu!;
    const [M, K, N] = [139, 300, 131];
    const [a, b] = [rand(K * M), rand(K * N)].map((v) => {
      const st = g.alloc(v.length);
      g.write(st, v);
      return st;
    });
    const out: Float32Array[] = [];
    const tiles = ["64", "128", "64v", "128v", "64p", "128p", "64d", "128d"];
    for (const tile of tiles) {
      const c = g.alloc(M * N);
      await withEnv({ CHARLM_WEBGPU_MATMUL: tile }, async () => g.matmul(a, b, c, M, K, N, { transA: true }));
      out.push(await g.read(c));
      g.free(c);
    }
    for (let i = 1; i < tiles.length; i++) assert.deepEqual(out[i], out[0], `${tiles[i]} against 64`);
    g.free(a);
    g.free(b);
  });

  test("unary and unaryBackward, every op", async () => {
    for (const op of ["sigmoid", "tanh", "exp", "log", "relu", "gelu"] as const) {
      const n = 301;
      const x = op === "log" ? rand(n).map((v) => Math.abs(v) + 0.1) : rand(n, 3);
      await same({ x, y: rand(n) }, (b, s) => b.unary(op, s.x, s.y, n));
      const y = new Float32Array(n);
      jsBackend.unary(op, x, y, n);
      await same({ x, y, g: rand(n), dx: rand(n) }, (b, s) => b.unaryBackward(op, s.x, s.y, s.g, s.dx, n));
    }
  });

  test("scale, binary with broadcasting, reduceTo", async () => {
    await same({ x: rand(50), y: rand(50) }, (b, s) => b.scale(s.x, s.y, 50, 0.3, false));
    await same({ x: rand(50), y: rand(50) }, (b, s) => b.scale(s.x, s.y, 50, -2, true));
    const shape = [3, 5, 7];
    for (const op of ["add", "sub", "mul"] as const) {
      await same({ a: rand(105), b: rand(7), o: rand(105) }, (b, s) =>
        b.binary(op, s.a, [35, 7, 1], s.b, [0, 0, 1], s.o, shape),
      );
    }
    await same({ a: rand(15), b: rand(7), o: rand(105) }, (b, s) =>
      b.binary("mul", s.a, [5, 1, 0], s.b, [0, 0, 1], s.o, shape),
    );
    // in place: out is a
    await same({ a: rand(105), b: rand(5) }, (b, s) => b.binary("add", s.a, [35, 7, 1], s.b, [0, 1, 0], s.a, shape));
    await same({ g: rand(105), d: rand(7) }, (b, s) => b.reduceTo(s.g, shape, s.d, [0, 0, 1], 0.5));
    await same({ g: rand(105), d: rand(15) }, (b, s) => b.reduceTo(s.g, shape, s.d, [5, 1, 0], 1));
    // long enough to be summed in chunks: a bias gradient over 2000 rows, and one over two axes
    await same({ g: rand(2000 * 3), d: rand(3) }, (b, s) => b.reduceTo(s.g, [2000, 3], s.d, [0, 1], 0.5));
    await same({ g: rand(40 * 3 * 50), d: rand(3) }, (b, s) => b.reduceTo(s.g, [40, 3, 50], s.d, [0, 1, 0], 1));
    // one reduced axis, not the leading one (stride 1), with a chunk that is not a multiple of 4 rows
    await same({ g: rand(3 * 2001), d: rand(3) }, (b, s) => b.reduceTo(s.g, [3, 2001], s.d, [1, 0], 2));
    // 6 chunks: their sum reads four, then the other two
    await same({ g: rand(1300 * 2), d: rand(2) }, (b, s) => b.reduceTo(s.g, [1300, 2], s.d, [0, 1], 1));
  });

  test("softmax, crossEntropy, layerNorm and their backwards", async () => {
    const [N, V] = [37, 13];
    await same({ x: rand(N * V, 4), y: rand(N * V) }, (b, s) => b.softmax(s.x, s.y, N, V));
    const y = new Float32Array(N * V);
    jsBackend.softmax(rand(N * V, 4), y, N, V);
    await same({ y, g: rand(N * V), dx: rand(N * V) }, (b, s) => b.softmaxBackward(s.y, s.g, s.dx, N, V));
    const t = ids(N, V);
    await same({ x: rand(N * V, 4), l: rand(1), p: rand(N * V) }, (b, s) => b.crossEntropy(s.x, t, s.l, s.p, N, V));
    await same({ p: y, g: rand(1), dx: rand(N * V) }, (b, s) => b.crossEntropyBackward(s.p, t, s.g, s.dx, N, V));
    // layerNorm: a workgroup per row (the default) or a thread per row; rows narrower and wider than the
    // workgroup's 64 threads
    for (const route of ["row", "thread"]) {
      for (const C of [19, 150]) {
        const io = { x: rand(N * C, 2), ga: rand(C), be: rand(C), y: rand(N * C), xh: rand(N * C), rs: rand(N) };
        gpu!.startProfile({ timestamps: false });
        await withEnv({ CHARLM_WEBGPU_LAYERNORM: route }, () =>
          same(io, (b, s) => b.layerNorm(s.x, s.ga, s.be, s.y, s.xh, s.rs, N, C, 1e-5)),
        );
        const keys = (await gpu!.stopProfile()).kernels.map((k) => k.key);
        assert.deepEqual(keys, [route === "row" ? "layerNorm.row" : "layerNorm"]);
      }
    }
    assert.ok(normByWorkgroup());
    await withEnv({ CHARLM_WEBGPU_LAYERNORM: "thread" }, async () => assert.ok(!normByWorkgroup()));
    await withEnv({ CHARLM_WEBGPU_LAYERNORM: "rows" }, async () =>
      assert.throws(() => normByWorkgroup(), /CHARLM_WEBGPU_LAYERNORM is "rows"; use row or thread, or unset it/),
    );
    // its backward's dx takes the forward's route
    for (const route of ["row", "thread"]) {
      for (const C of [19, 150]) {
        const bw = {
          g: rand(N * C),
          ga: rand(C),
          xh: rand(N * C),
          rs: rand(N),
          dx: rand(N * C),
          dg: rand(C),
          db: rand(C),
        };
        gpu!.startProfile({ timestamps: false });
        await withEnv({ CHARLM_WEBGPU_LAYERNORM: route }, async () => {
          await same(bw, (b, s) => b.layerNormBackward(s.g, s.ga, s.xh, s.rs, s.dx, s.dg, s.db, N, C));
          await same(bw, (b, s) => b.layerNormBackward(s.g, s.ga, s.xh, s.rs, null, s.dg, null, N, C));
        });
        const keys = (await gpu!.stopProfile()).kernels.map((k) => k.key);
        assert.ok(keys.includes(route === "row" ? "layerNormBackward.row" : "layerNormBackward.dx"), keys.join());
        assert.ok(!keys.includes(route === "row" ? "layerNormBackward.dx" : "layerNormBackward.row"), keys.join());
      }
    }
    // more rows than a grid dimension holds (65,535 workgroups): byRow spreads them over a second one, as the
    // attention's score rows of W3 (98,304 a layer) would be. A row index off would be off by O(1); 1e-4 leaves room
    // for the rounding of 70,000 rows of 3, some of nearly equal values (a large 1 / σ)
    await withEnv({ CHARLM_WEBGPU_LAYERNORM: "row" }, async () => {
      const [M, C] = [70_000, 3];
      const io = { x: rand(M * C, 2), ga: rand(C), be: rand(C), y: rand(M * C), xh: rand(M * C), rs: rand(M) };
      await same(io, (b, s) => b.layerNorm(s.x, s.ga, s.be, s.y, s.xh, s.rs, M, C, 1e-5), 1e-4);
      const bw = { g: rand(M * C), ga: rand(C), xh: rand(M * C), rs: rand(M), dx: rand(M * C) };
      await same(bw, (b, s) => b.layerNormBackward(s.g, s.ga, s.xh, s.rs, s.dx, null, null, M, C), 1e-4);
    });
  });

  test("embedding and its scatter-add gradient (repeated ids)", async () => {
    const [V, D, N] = [11, 6, 40];
    const t = ids(N, V);
    await same({ w: rand(V * D), o: rand(N * D) }, (b, s) => b.embedding(s.w, t, s.o, D));
    await same({ g: rand(N * D), dw: rand(V * D) }, (b, s) => b.embeddingBackward(s.g, t, s.dw, D));
    // 60 positions per id (read eight at a time, then the rest; at most EMBEDDING_RUN): added in js's order, so the
    // same bits
    const many = Int32Array.from({ length: 300 }, (_, n) => (n * 7) % 5);
    await same({ g: rand(300 * D), dw: rand(5 * D) }, (b, s) => b.embeddingBackward(s.g, many, s.dw, D), 0);
    // ~700 positions per id, one id absent: runs of 64 summed, then the runs' sums added in order (float rounding)
    const long = ids(2100, 3).map((v) => (v === 1 ? 3 : v));
    await same({ g: rand(2100 * D), dw: rand(4 * D) }, (b, s) => b.embeddingBackward(s.g, long, s.dw, D));
  });

  test("layout: copyBlocks, reduceAxis, broadcastAxis, swapAxes, causal mask", async () => {
    for (const acc of [false, true]) {
      await same({ x: rand(60), y: rand(80) }, (b, s) => b.copyBlocks(s.x, 2, 9, s.y, 1, 13, 7, 6, acc));
      await same({ x: rand(3 * 4 * 5 * 6), y: rand(120) }, (b, s) => b.swapAxes(s.x, [3, 4, 5, 6], 1, 3, s.y, acc));
    }
    await same({ x: rand(3 * 5 * 7), y: rand(21) }, (b, s) => b.reduceAxis(s.x, s.y, 3, 5, 7, 0.5));
    await same({ g: rand(21), dx: rand(105) }, (b, s) => b.broadcastAxis(s.g, s.dx, 3, 5, 7, 2));
    await same({ x: rand(2 * 36), y: rand(72) }, (b, s) => b.causalMask(s.x, s.y, 2, 6));
    await same({ g: rand(72), dx: rand(72) }, (b, s) => b.causalMaskBackward(s.g, s.dx, 2, 6));
  });

  // Both attention routes (CHARLM_WEBGPU_ATTENTION: a thread per row or value, or batched matrix products); T = 70
  // spans two of the products' 64-wide tiles. The products' score rows a thread each, or a workgroup each
  // (CHARLM_WEBGPU_SOFTMAX=row): T = 70 gives its 64 threads two values of the longest rows.
  for (const [route, softmax, [B, T, C, nH]] of [
    ["rows", "thread", [2, 5, 12, 3]],
    ["matmul", "thread", [2, 5, 12, 3]],
    ["matmul", "thread", [1, 70, 8, 2]],
    ["matmul", "row", [2, 5, 12, 3]],
    ["matmul", "row", [1, 70, 8, 2]],
  ] as const) {
    test(`attention forward, backward, cached (${route}, softmax rows a ${softmax} each, T ${T})`, async () => {
      gpu!.startProfile({ timestamps: false });
      await withEnv({ CHARLM_WEBGPU_ATTENTION: route, CHARLM_WEBGPU_SOFTMAX: softmax }, () =>
        attentionOps(B, T, C, nH),
      );
      const keys = (await gpu!.stopProfile()).kernels.map((k) => k.key);
      if (route === "matmul") {
        const row = softmax === "row" ? ".row" : "";
        for (const key of ["attention.softmax", "attentionBackward.dsRows"]) assert.ok(keys.includes(key + row), key);
      }
    });
  }
  test("CHARLM_WEBGPU_SOFTMAX takes row or thread, and refuses anything else in one line", async () => {
    assert.equal(softmaxByWorkgroup(), true);
    await withEnv({ CHARLM_WEBGPU_SOFTMAX: "thread" }, async () => assert.equal(softmaxByWorkgroup(), false));
    await withEnv({ CHARLM_WEBGPU_SOFTMAX: "rows" }, async () =>
      assert.throws(() => softmaxByWorkgroup(), /CHARLM_WEBGPU_SOFTMAX is "rows"; use row or thread, or unset it/),
    );
  });
  // The cached step's kernel takes a workgroup per (b, head, new position): more positions than its 64 threads
  // (each thread then takes several), heads wider than 64 (each thread several output values), and caches too long
  // for the adapter's workgroup memory, which take a thread per row or value instead.
  test("cached attention: long windows, wide heads, caches longer than workgroup memory holds", async () => {
    const longest = gpu!.gpuDevice.limits.maxComputeWorkgroupStorageSize / 4;
    for (const [B, Tn, C, nH, N, pos0] of [
      [2, 1, 12, 3, 150, 140], // 141 positions over 64 threads
      [1, 150, 12, 3, 150, 0], // a whole window recomputed
      [2, 3, 160, 2, 70, 60], // heads of 80
      [1, 1, 8, 2, longest, longest - 5], // caches past workgroup memory
      [1, 3, 8, 2, longest, 7],
    ]) {
      const cache = { kc: rand(B * N * C), vc: rand(B * N * C) };
      gpu!.startProfile({ timestamps: false });
      await same({ qkv: rand(B * Tn * 3 * C), ...cache, o: rand(B * Tn * C) }, (b, s) =>
        b.attentionCached(s.qkv, s.kc, s.vc, s.o, B, Tn, C, nH, N, pos0),
      );
      const kernels = (await gpu!.stopProfile()).kernels.map((k) => k.key).sort();
      const want = N === longest ? (Tn === 1 ? ["out"] : ["rows", "sum"]) : [`row.${N}`];
      assert.deepEqual(kernels, ["put", ...want].map((k) => `attentionCached.${k}`).sort(), `N ${N}, T ${Tn}`);
    }
    // CHARLM_WEBGPU_CACHED=thread forces the thread-per-row kernels at any length; an unknown value is refused
    await withEnv({ CHARLM_WEBGPU_CACHED: "thread" }, async () => assert.ok(!cachedByRow(9, longest * 4)));
    assert.ok(cachedByRow(9, longest * 4) && !cachedByRow(longest, longest * 4));
    await withEnv({ CHARLM_WEBGPU_CACHED: "rows" }, async () =>
      assert.throws(() => cachedByRow(9, 1e6), /CHARLM_WEBGPU_CACHED is "rows"; use row or thread, or unset it/),
    );
  });
  async function attentionOps(B: number, T: number, C: number, nH: number): Promise<void> {
    const n = B * T * C;
    const att = new Float32Array(B * nH * T * T);
    const [q, k, v] = [rand(n), rand(n), rand(n)];
    jsBackend.attention(q, k, v, new Float32Array(n), att, B, T, C, nH);
    await same({ q, k, v, o: rand(n), att: rand(att.length) }, (b, s) =>
      b.attention(s.q, s.k, s.v, s.o, s.att, B, T, C, nH),
    );
    const io = { q, k, v, att, g: rand(n), dq: rand(n), dk: rand(n), dv: rand(n) };
    await same(io, (b, s) => b.attentionBackward(s.q, s.k, s.v, s.att, s.g, s.dq, s.dk, s.dv, B, T, C, nH));
    await same(io, (b, s) => b.attentionBackward(s.q, s.k, s.v, s.att, s.g, null, s.dk, null, B, T, C, nH));
    // the cached step: one new position (a generated character), two after four cached, a whole window of 9
    const N = 9;
    for (const [Tn, pos0] of [
      [1, 5],
      [2, 4],
      [N, 0],
    ]) {
      const cache = { kc: rand(B * N * C), vc: rand(B * N * C) };
      await same({ qkv: rand(B * Tn * 3 * C), ...cache, o: rand(B * Tn * C) }, (b, s) =>
        b.attentionCached(s.qkv, s.kc, s.vc, s.o, B, Tn, C, nH, N, pos0),
      );
    }
  }

  // Sizes straddle the kernels' tiles: H = 70 spans two 64-wide workgroups, B = 9 two or three row groups. Each
  // test runs both time-loop layouts (CHARLM_WEBGPU_RECURRENT: a dispatch per step, or one for the whole sequence)
  // with 1, 2 and 4 batch rows per thread, and 8 for the sequence (CHARLM_WEBGPU_ROWS); the step layout also with its
  // dot products cut into 2, 4 and 8 slices (CHARLM_WEBGPU_SPLIT; H = 70 then spans 3 to 9 workgroups), and with 2 or
  // 4 units per thread in the kernels with one product per unit (CHARLM_WEBGPU_UNITS; units past H), and with wide
  // tiles (CHARLM_WEBGPU_WIDE). The sequence
  // layout walks the units in blocks of 256: H = 300 takes two, the second partial.
  let [T, B, H] = [4, 9, 70];
  // step-layout variants that prefetch, [rows, slices, units, wide] each, with their weights a chunk ahead or not
  const prefetching = (ahead: string, list: string[][]) =>
    list.map(([rows, split, units, wide]) => ({
      layout: "step",
      rows,
      split,
      units,
      wide,
      prefetch: "1",
      ...(ahead ? { ahead } : {}),
      T: 4,
      B: 9,
      H: 70,
    }));
  const rowVariants = (name: string, fn: () => Promise<void>) =>
    test(name, async () => {
      const variants = [
        ...["1", "2", "4", "8"].map((rows) => ({ layout: "step", rows, split: "1", units: "1", T: 4, B: 9, H: 70 })),
        ...[
          ["1", "8", "1"],
          ["2", "2", "1"],
          ["4", "4", "1"],
          ["4", "1", "4"],
          ["2", "2", "4"],
          ["1", "8", "2"],
        ].map(([rows, split, units]) => ({ layout: "step", rows, split, units, T: 4, B: 9, H: 70 })),
        // wide tiles, 128 to 512 wide (one or two tiles of these K), and 128 wide over K = 300 and 1,200 (3 and 10 tiles)
        ...[
          ["1", "8", "1"],
          ["2", "4", "1"],
          ["4", "8", "1"],
          ["1", "2", "4"],
        ].map(([rows, split, units]) => ({ layout: "step", rows, split, units, wide: "1", T: 4, B: 9, H: 70 })),
        { layout: "step", rows: "1", split: "2", units: "1", wide: "1", T: 3, B: 3, H: 300 },
        // prefetching the next tile, with its weights a tile ahead where they fit 32 registers (8 slices, also with
        // 4 units; the RNN's wide 128-k tiles; the backward steps over K = 1,200) or not (the rest)
        ...prefetching("", [
          ["1", "8", "1", ""],
          ["4", "2", "4", ""],
          ["1", "8", "4", ""],
          ["1", "8", "1", "1"],
          ["2", "4", "2", "1"],
          ["8", "4", "2", ""],
        ]),
        { layout: "step", rows: "1", split: "2", units: "1", prefetch: "1", T: 3, B: 3, H: 300 },
        // prefetching with the weights a chunk ahead where a tile's do not fit 32 registers: the forward steps (8
        // values of k a chunk, 4 a slice: 64-wide tiles, two over K = 70, and 128-wide), backward steps with 2 and 4
        // units (16 and 8 a chunk), K over several tiles (300 forward, 1,200 backward)
        ...prefetching("1", [
          ["1", "2", "1", "0"],
          ["2", "4", "1", "1"],
          ["4", "2", "4", ""],
          ["2", "2", "2", "1"],
        ]),
        { layout: "step", rows: "1", split: "2", units: "2", prefetch: "1", ahead: "1", T: 3, B: 3, H: 300 },
        // the tile of row values as plain floats (CHARLM_WEBGPU_VEC4=0; vec4s, the default since stop 23, in every
        // variant above): plain, wide, prefetching (a tile's weights ahead, or a chunk's), and the sequence layout
        // over two blocks of units
        ...[
          { rows: "2", split: "4", units: "1" },
          { rows: "1", split: "2", units: "4", wide: "1" },
          { rows: "4", split: "8", units: "1", prefetch: "1" },
          { rows: "1", split: "2", units: "2", prefetch: "1", ahead: "1" },
        ].map((v) => ({ layout: "step", ...v, vec4: "0", T: 4, B: 9, H: 70 })),
        { layout: "sequence", rows: "2", split: "1", units: "1", vec4: "0", T: 3, B: 3, H: 300 },
        ...["1", "2", "4", "8"].map((rows) => ({
          layout: "sequence",
          rows,
          split: "1",
          units: "1",
          T: 4,
          B: 9,
          H: 70,
        })),
        { layout: "sequence", rows: "2", split: "1", units: "1", T: 3, B: 3, H: 300 },
        // the products layout: the step's product in 1 (one fused kernel), 2 or 8 parts along K (or the rule's: 1
        // here), then the gate kernel; K = 300 forward takes 7 parts of 48 at 8, 1,200 backward 8 of 160
        ...["1", "2", ""].map((split) => ({ layout: "products", rows: "", split, units: "", T: 4, B: 9, H: 70 })),
        { layout: "products", rows: "", split: "1", units: "", T: 2, B: 70, H: 20 }, // one part: fused, 2 row tiles
        { layout: "products", rows: "2", split: "1", units: "", T: 2, B: 70, H: 20 }, // 32-row tiles: 3
        { layout: "products", rows: "", split: "8", units: "", T: 3, B: 3, H: 300 },
      ];
      for (const v of variants) {
        const env = {
          CHARLM_WEBGPU_RECURRENT: v.layout,
          CHARLM_WEBGPU_ROWS: v.rows,
          CHARLM_WEBGPU_SPLIT: v.split,
          CHARLM_WEBGPU_UNITS: v.units,
          CHARLM_WEBGPU_WIDE: (v as { wide?: string }).wide ?? "",
          CHARLM_WEBGPU_PREFETCH: (v as { prefetch?: string }).prefetch ?? "",
          CHARLM_WEBGPU_AHEAD: (v as { ahead?: string }).ahead ?? "",
          CHARLM_WEBGPU_VEC4: (v as { vec4?: string }).vec4 ?? "",
        };
        [T, B, H] = [v.T, v.B, v.H];
        await withEnv(env, fn).catch((e: Error) => {
          const what = `${v.layout} layout, ${v.rows || "default"} rows, ${v.split || "default"} slices (parts), ${v.units || "default"} units${"wide" in v && v.wide === "1" ? ", wide tiles" : ""}${"prefetch" in v ? ", prefetch" : ""}${"ahead" in v ? ", weights ahead" : ""}${"vec4" in v ? ", float tile" : ""}, T ${T} B ${B} H ${H}`;
          throw new Error(`${what}: ${e.message}`, { cause: e });
        });
      }
    });
  rowVariants("LSTM forward and backward", async () => {
    const G = 4 * H;
    const f = { xw: rand(T * B * G), wh: rand(H * G, 0.2), h0: rand(B * H), c0: rand(B * H) };
    const out = { hs: rand(T * B * H), cs: rand(T * B * H), gates: rand(T * B * G) };
    await same({ ...f, ...out }, (b, s) => b.lstmForward({ T, B, H, ...pick(s, f), ...pick(s, out) }));
    const fw = { T, B, H, ...f, hs: new Float32Array(T * B * H), cs: new Float32Array(T * B * H) };
    const fwd = { ...fw, gates: new Float32Array(T * B * G) };
    jsBackend.lstmForward(fwd);
    const io = {
      ...f,
      hs: fwd.hs,
      cs: fwd.cs,
      gates: fwd.gates,
      dhs: rand(T * B * H),
      dhT: rand(B * H),
      dcT: rand(B * H),
      dxw: rand(T * B * G),
      dwh: rand(H * G),
      dh0: rand(B * H),
      dc0: rand(B * H),
    };
    await same(io, (b, s) => b.lstmBackward({ T, B, H, ...s } as never));
    await same(io, (b, s) => b.lstmBackward({ T, B, H, ...s, dhT: null, dcT: null, dwh: null } as never));
  });

  rowVariants("GRU forward and backward", async () => {
    const G = 3 * H;
    const f = { xw: rand(T * B * G), wh: rand(H * G, 0.2), bh: rand(G), h0: rand(B * H) };
    const out = { hs: rand(T * B * H), gates: rand(T * B * G), hn: rand(T * B * H) };
    await same({ ...f, ...out }, (b, s) => b.gruForward({ T, B, H, ...pick(s, f), ...pick(s, out) }));
    const fwd = { T, B, H, ...f, hs: new Float32Array(T * B * H), gates: new Float32Array(T * B * G) };
    const all = { ...fwd, hn: new Float32Array(T * B * H) };
    jsBackend.gruForward(all);
    const io = {
      ...f,
      hs: all.hs,
      gates: all.gates,
      hn: all.hn,
      dhs: rand(T * B * H),
      dhT: rand(B * H),
      dxw: rand(T * B * G),
      dwh: rand(H * G),
      dbh: rand(G),
      dh0: rand(B * H),
    };
    await same(io, (b, s) => b.gruBackward({ T, B, H, ...s } as never));
  });

  test("a CHARLM_WEBGPU_KERNELS table picks the step kernels of the shapes it names", async () => {
    [T, B, H] = [3, 3, 10];
    const G = 4 * H;
    const f = { xw: rand(T * B * G), wh: rand(H * G, 0.2), h0: rand(B * H), c0: rand(B * H) };
    const out = { hs: rand(T * B * H), cs: rand(T * B * H), gates: rand(T * B * G) };
    const io = { dhs: rand(T * B * H), dxw: rand(T * B * G), dh0: rand(B * H), dc0: rand(B * H) };
    const keys = async (fn: () => Promise<void>) => {
      gpu!.startProfile({ timestamps: false });
      await fn();
      return (await gpu!.stopProfile()).kernels.map((k) => k.key).filter((k) => k.startsWith("lstm"));
    };
    const run = () =>
      same({ ...f, ...out, ...io }, (b, s) => {
        b.lstmForward({ T, B, H, ...pick(s, f), ...pick(s, out) });
        b.lstmBackward({ T, B, H, ...s, dhT: null, dcT: null, dwh: null } as never);
      });
    assert.deepEqual((await keys(run)).sort(), ["lstmBackward.R1.S8.U2.P.V", "lstmForward.R1.S8.V"]);
    const tuned = await withEnv({ CHARLM_WEBGPU_KERNELS: TABLE }, () => keys(run));
    // the forward's 16 values of k a slice take 64 weights: its entry's weights ahead come in chunks of 8
    assert.deepEqual(tuned.sort(), ["lstmBackward.R1.S8.U4.P.V", "lstmForward.R2.S4.P.C.V"]);
  });

  test("prefetching step kernels: weights past K (a pooled buffer's tail, NaN here) reach no sum", async () => {
    [T, B, H] = [3, 3, 70];
    const G = 4 * H;
    const f = { xw: rand(T * B * G), wh: rand(H * G, 0.2), h0: rand(B * H), c0: rand(B * H) };
    const fwd = { T, B, H, ...f, hs: new Float32Array(T * B * H), cs: new Float32Array(T * B * H) };
    const all = { ...fwd, gates: new Float32Array(T * B * G) };
    jsBackend.lstmForward(all);
    const io = { ...f, hs: all.hs, cs: all.cs, gates: all.gates, dhs: rand(T * B * H), dxw: rand(T * B * G) };
    const out = { dh0: rand(B * H), dc0: rand(B * H) };
    // the backward step reads a transposed copy of Wh (G x H) from a pooled buffer: hand it one whose every value,
    // its tail past G·H included, is NaN
    const poisoned = () => {
      const s = gpu!.alloc(sizeClass(G * H * 4) / 4);
      gpu!.fill(s, NaN);
      gpu!.free(s);
    };
    for (const [split, units, ahead] of [
      ["8", "1", ""], // the weights a tile ahead
      ["4", "4", ""], // the weights loaded as the products go
      ["2", "4", "1"], // the weights a chunk ahead, the last chunk's next past K
    ]) {
      const env = {
        CHARLM_WEBGPU_PREFETCH: "1",
        CHARLM_WEBGPU_SPLIT: split,
        CHARLM_WEBGPU_UNITS: units,
        CHARLM_WEBGPU_AHEAD: ahead,
      };
      await withEnv(env, () =>
        same({ ...io, ...out }, (b, s) => {
          if (b === (gpu as unknown)) poisoned();
          b.lstmBackward({ T, B, H, ...s, dhT: null, dcT: null, dwh: null } as never);
        }),
      );
    }
  });

  test("the tile of row values as vec4s (the default) or floats (CHARLM_WEBGPU_VEC4=0) gives the same bits, in both layouts", async () => {
    [T, B, H] = [3, 9, 70];
    const G = 4 * H;
    const f = { xw: rand(T * B * G), wh: rand(H * G, 0.2), h0: rand(B * H), c0: rand(B * H) };
    const fwd = { hs: rand(T * B * H), cs: rand(T * B * H), gates: rand(T * B * G) };
    const bwd = { dhs: rand(T * B * H), dxw: rand(T * B * G), dwh: rand(H * G), dh0: rand(B * H), dc0: rand(B * H) };
    const g = gpu!;
    const run = async (vec4: string, layout: string, prefetch: string) => {
      const st = Object.fromEntries(
        Object.entries({ ...f, ...fwd, ...bwd }).map(([k, v]) => {
          const s = g.alloc(v.length);
          g.write(s, v);
          return [k, s];
        }),
      );
      const env = { CHARLM_WEBGPU_VEC4: vec4, CHARLM_WEBGPU_RECURRENT: layout, CHARLM_WEBGPU_PREFETCH: prefetch };
      await withEnv(env, async () => {
        g.lstmForward({ T, B, H, ...pick(st, f), ...pick(st, fwd) } as never);
        g.lstmBackward({ T, B, H, ...st, dhT: null, dcT: null } as never);
      });
      const out = await Promise.all(["hs", "dxw", "dh0"].map((k) => g.read(st[k])));
      for (const s of Object.values(st)) g.free(s);
      return out;
    };
    for (const [layout, prefetch] of [
      ["step", "0"],
      ["step", "1"],
      ["sequence", ""],
    ])
      assert.deepEqual(await run("1", layout, prefetch), await run("0", layout, prefetch), `${layout} ${prefetch}`);
  });

  rowVariants("RNN forward and backward", async () => {
    const f = { xw: rand(T * B * H), wh: rand(H * H, 0.2), h0: rand(B * H) };
    await same({ ...f, hs: rand(T * B * H) }, (b, s) => b.rnnForward({ T, B, H, ...s } as never));
    const hs = new Float32Array(T * B * H);
    jsBackend.rnnForward({ T, B, H, ...f, hs });
    const io = {
      ...f,
      hs,
      dhs: rand(T * B * H),
      dhT: rand(B * H),
      dxw: rand(T * B * H),
      dwh: rand(H * H),
      dh0: rand(B * H),
    };
    await same(io, (b, s) => b.rnnBackward({ T, B, H, ...s } as never));
  });

  test("optimizers, norms and clipping", async () => {
    const n = 333;
    const p = () => ({ w: rand(n), g: rand(n), m: rand(n), v: rand(n).map(Math.abs) });
    const adam = { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, bc1: 0.1, bc2: 0.002 };
    await same(p(), (b, s) => b.adam(s.w, s.g, s.m, s.v, n, adam));
    await same(p(), (b, s) => b.rmsprop(s.w, s.g, s.v, n, { lr: 0.01, rho: 0.9, eps: 1e-8, weightDecay: 0 }));
    await same(p(), (b, s) => b.adagrad(s.w, s.g, s.v, n, { lr: 0.1, eps: 1e-8, weightDecay: 0.1 }));
    for (const [momentum, nesterov, first] of [
      [0, false, false],
      [0.9, false, true],
      [0.9, true, false],
    ] as const) {
      await same(p(), (b, s) => b.sgd(s.w, s.g, s.m, n, { lr: 0.1, momentum, nesterov, weightDecay: 0.01, first }));
    }
    await same({ x: rand(n), out: rand(3) }, (b, s) => b.sumSquares(s.x, n, s.out, 1));
    // past one workgroup's chunk (16384): partial sums, then their sum
    await same({ x: rand(40000), out: rand(2) }, (b, s) => b.sumSquares(s.x, 40000, s.out, 1));
    for (const maxNorm of [0.5, 100, Infinity]) {
      await same({ sq: rand(5).map(Math.abs), out: rand(2) }, (b, s) => b.clipFactor(s.sq, 5, maxNorm, s.out));
    }
    await same({ x: rand(n), f: rand(4) }, (b, s) => b.scaleBy(s.x, n, s.f, 2));
  });
});

describe("webgpu backend: whole models against js", { skip }, () => {
  const models = SMALL_MODELS;
  test("memory is flat after the first training step (storage pooled and reused)", async () => {
    const { bytes } = await train(gpu!, models[0][1], 3, 7, 5);
    assert.deepEqual(bytes.slice(1), new Array(4).fill(bytes[1]), `GPU bytes after each step: ${bytes.join(", ")}`);
  });
  test("dropout uploads nothing per step: its masks are made on the GPU", async () => {
    const perStep = (u: number[]) => u.slice(1).map((v, i) => v - u[i]);
    const withDropout = perStep((await train(gpu!, models[0][1], 3, 7, 3)).uploads);
    const without = perStep((await train(gpu!, { ...models[0][1], dropout: 0 }, 3, 7, 3)).uploads);
    assert.deepEqual(withDropout, without);
  });
  test("deterministic: the same run twice gives the same bits", async () => {
    const a = await train(gpu!, models[3][1], 3, 7, 2);
    const b = await train(gpu!, models[3][1], 3, 7, 2);
    assert.deepEqual(b.losses, a.losses);
    for (const [k, w] of a.weights) assert.deepEqual(b.weights.get(k), w, k);
  });
  const cases: [string, ModelConfig, Record<string, string>][] = [
    ...models.map(([name, cfg]): [string, ModelConfig, Record<string, string>] => [name, cfg, {}]),
    ["2 x LSTM (its recurrence one dispatch per sequence)", models[0][1], { CHARLM_WEBGPU_RECURRENT: "sequence" }],
    ["2 x LSTM (its steps a tiled product and a gate kernel)", models[0][1], { CHARLM_WEBGPU_RECURRENT: "products" }],
    [
      "2 x LSTM (a table picks the products layout for the backward steps only, in 4 parts)",
      models[0][1],
      {
        CHARLM_WEBGPU_KERNELS: JSON.stringify({
          "lstmBackward H10 B3": { rows: 1, slices: 4, units: 1, wide: false, prefetch: false, products: true },
        }),
      },
    ],
    ["GPT (attention as a thread per row)", models[3][1], { CHARLM_WEBGPU_ATTENTION: "rows" }],
    [
      "GPT (score rows and layer norm a thread per row, stop 22's defaults)",
      models[3][1],
      { CHARLM_WEBGPU_SOFTMAX: "thread", CHARLM_WEBGPU_LAYERNORM: "thread" },
    ],
    [
      "2 x LSTM (step settings from a CHARLM_WEBGPU_KERNELS table: prefetching)",
      models[0][1],
      { CHARLM_WEBGPU_KERNELS: TABLE },
    ],
  ];
  test("with every unzeroed buffer NaN, its tail too (CHARLM_POISON=1), whole models train like js", async () => {
    // op outputs and kernels' scratch are handed out without a clear: no kernel may read a value nobody wrote
    const poisoned = await withEnv({ CHARLM_POISON: "1" }, () => createWebgpuBackend());
    try {
      const runs: [string, ModelConfig, Record<string, string>][] = [
        ...models.map(([name, cfg]): [string, ModelConfig, Record<string, string>] => [
          name,
          cfg,
          { CHARLM_WEBGPU_PREFETCH: "1" },
        ]),
        // the products layout fused (its rule here), and through its parts and gate kernel
        [`${models[0][0]} (products layout)`, models[0][1], { CHARLM_WEBGPU_RECURRENT: "products" }],
        [
          `${models[0][0]} (products layout, parts)`,
          models[0][1],
          { CHARLM_WEBGPU_RECURRENT: "products", CHARLM_WEBGPU_SPLIT: "2" },
        ],
      ];
      runs.push([`${models[0][0]} (embedding folded, batch 4)`, models[0][1], {}]);
      for (const [name, cfg, env] of runs) {
        const B = name.includes("batch 4") ? 4 : 3;
        const want = await train(jsBackend as Backend, cfg, B, 7, 3);
        const got = await withEnv(env, () => train(poisoned, cfg, B, 7, 3));
        got.losses.forEach((l, i) =>
          assert.ok(
            Math.abs(l - want.losses[i]) <= 1e-5 * want.losses[i],
            `${name} loss ${i}: ${l} vs ${want.losses[i]}`,
          ),
        );
      }
    } finally {
      poisoned.destroy?.();
    }
  });
  // batch 3 x 7 = 21 tokens, under twice the vocabulary (11): the plain path; 4 x 7 folds the embedding into the
  // first layer (models/rnn.ts), whose backward scatters G-wide rows
  const folded = models
    .filter(([, cfg]) => cfg.type === "rnn")
    .map(([name, cfg]): [string, ModelConfig, Record<string, string>, number] => [
      `${name} (embedding folded, batch 4)`,
      cfg,
      {},
      4,
    ]);
  for (const [name, cfg, env, B] of [...cases.map((c) => [...c, 3] as const), ...folded]) {
    test(`${name}: three training steps give the same losses and weights`, async () => {
      const want = await train(jsBackend as Backend, cfg, B, 7, 3);
      const got = await withEnv(env, () => train(gpu!, cfg, B, 7, 3));
      got.losses.forEach((l, i) =>
        assert.ok(Math.abs(l - want.losses[i]) <= 1e-5 * want.losses[i], `loss ${i}: gpu ${l} js ${want.losses[i]}`),
      );
      for (const [k, w] of want.weights) {
        const g = got.weights.get(k)!;
        // Adam divides by √v: where a gradient is ~0 the two backends' roundings can step differently (by ≤ lr)
        const worst = w.reduce((m, v, i) => Math.max(m, Math.abs(v - g[i])), 0);
        assert.ok(worst <= 1e-3, `${k}: max difference ${worst}`);
      }
    });
  }
});

test("matmul's tile by default: 128 x 128 as vec4s where both sides span one and the product fills the GPU or is split", async () => {
  const key = (M: number, N: number, batch: number, K: number) => pickVariant(false, false, M, N, batch, K).key;
  assert.equal(key(25600, 2048, 1, 512), "matmulNN.128.v"); // W2's input projection at batch 256: 3,200 workgroups
  assert.equal(key(6400, 1024, 1, 64), "matmulNN.128.v"); // 400
  assert.equal(key(6400, 256, 1, 65), "matmulNN"); // 100 workgroups of 128 x 128
  assert.equal(key(25600, 65, 1, 512), "matmulNN"); // the output layer: 65 columns, less than a tile
  assert.equal(key(512, 2048, 1, 25600), "matmulNN.128.v"); // a weight gradient: split along K
  assert.equal(key(64, 2048, 1, 25600), "matmulNN"); // an embedding's: 64 rows
  assert.equal(key(256, 256, 384, 64), "matmulNN.128.v"); // attention scores, batched: 1,536
  assert.equal(key(256, 256, 8, 64), "matmulNN"); // 32
  assert.equal(pickVariant(true, true, 256, 256, 384, 64).key, "matmulTT.128.v");
  await withEnv({ CHARLM_WEBGPU_MATMUL: "64p" }, async () => assert.equal(key(25600, 2048, 1, 512), "matmulNN.p"));
  await withEnv({ CHARLM_WEBGPU_MATMUL: "128v" }, async () => assert.equal(key(8, 8, 1, 8), "matmulNN.128.v"));
  await withEnv({ CHARLM_WEBGPU_MATMUL: "auto" }, async () => assert.equal(key(8, 8, 1, 8), "matmulNN"));
  // auto-128: stop 22's default, plain 128 x 128 tiles for the large products
  await withEnv({ CHARLM_WEBGPU_MATMUL: "auto-128" }, async () => {
    assert.equal(key(25600, 2048, 1, 512), "matmulNN.128");
    assert.equal(key(25600, 65, 1, 512), "matmulNN");
  });
  for (const bad of ["96", "auto-64", "auto-"])
    await withEnv({ CHARLM_WEBGPU_MATMUL: bad }, async () =>
      assert.throws(() => key(8, 8, 1, 8), new RegExp(`^CharlmError: CHARLM_WEBGPU_MATMUL is "${bad}"; use auto, 64`)),
    );
});

test("CHARLM_WEBGPU_KERNELS: a table of step settings per kernel and shape; single settings win; a bad one is refused", async () => {
  // The rules: a forward step (four products a unit) wide, not prefetching; a backward step 2 units a thread,
  // prefetching, more slices. The wide forward tile of the LSTM 10 is no wider than K.
  const rules = { forward: { R: 1, S: 8, U: 1, W: 64, P: false }, backward: { R: 1, S: 8, U: 2, W: 64, P: true } };
  assert.deepEqual(lstmStepSettings(false, 3, 10), rules.forward);
  assert.deepEqual(lstmStepSettings(true, 3, 10), rules.backward);
  assert.deepEqual(lstmStepSettings(false, 48, 512), { R: 1, S: 8, U: 1, W: 512, P: false });
  assert.deepEqual(lstmStepSettings(true, 48, 512), { R: 1, S: 8, U: 2, W: 64, P: true });
  assert.deepEqual(lstmStepSettings(true, 128, 512), { R: 4, S: 8, U: 2, W: 64, P: true });
  // the shapes the H200 sweep measured take its fastest
  assert.deepEqual(lstmStepSettings(true, 256, 512), { R: 4, S: 2, U: 1, W: 64, P: true });
  assert.deepEqual(lstmStepSettings(false, 64, 512), { R: 2, S: 4, U: 1, W: 256, P: true });
  assert.deepEqual(lstmStepSettings(false, 32, 512), { R: 2, S: 8, U: 1, W: 64, P: true }); // the gpu preset's
  assert.deepEqual(lstmStepSettings(true, 32, 512), { R: 2, S: 8, U: 1, W: 256, P: true });
  await withEnv({ CHARLM_WEBGPU_KERNELS: TABLE }, async () => {
    assert.deepEqual(lstmStepSettings(false, 3, 10), { R: 2, S: 4, U: 1, W: 64, P: true }); // wide: no wider than K
    assert.deepEqual(lstmStepSettings(true, 3, 10), { R: 1, S: 8, U: 4, W: 64, P: true });
    assert.deepEqual(lstmStepSettings(true, 64, 512), { R: 4, S: 2, U: 2, W: 128, P: false });
    // shapes not in the table: the H200's measured table, else the rules
    assert.deepEqual(lstmStepSettings(false, 64, 512), { R: 2, S: 4, U: 1, W: 256, P: true });
    assert.deepEqual(lstmStepSettings(true, 4, 10), rules.backward);
    await withEnv({ CHARLM_WEBGPU_SPLIT: "2", CHARLM_WEBGPU_PREFETCH: "0" }, async () =>
      assert.deepEqual(lstmStepSettings(true, 64, 512), { R: 4, S: 2, U: 2, W: 128, P: false }),
    );
    await withEnv({ CHARLM_WEBGPU_SPLIT: "8", CHARLM_WEBGPU_PREFETCH: "1" }, async () =>
      assert.deepEqual(lstmStepSettings(true, 3, 10), { R: 1, S: 8, U: 4, W: 64, P: true }),
    );
    await withEnv({ CHARLM_WEBGPU_SPLIT: "2", CHARLM_WEBGPU_PREFETCH: "0" }, async () =>
      assert.deepEqual(lstmStepSettings(true, 3, 10), { R: 1, S: 2, U: 4, W: 64, P: false }),
    );
  });
  // weights a chunk ahead: only where a table or CHARLM_WEBGPU_AHEAD says so, with prefetching, and where a tile's
  // weights do not fit 32 registers (LSTM 512's forward at batch 256: 64 values of k a slice, four products; its
  // backward: 32 and one, a whole tile's ahead anyway)
  const ahead = (backward: boolean, B: number, H: number) =>
    stepSettingsOf(backward ? "lstmBackward" : "lstmForward", B, H).ahead;
  assert.equal(ahead(false, 256, 512), false);
  await withEnv({ CHARLM_WEBGPU_KERNELS: TABLE }, async () => assert.equal(ahead(false, 3, 10), true));
  await withEnv({ CHARLM_WEBGPU_AHEAD: "1" }, async () => {
    assert.deepEqual([ahead(false, 256, 512), ahead(true, 256, 512)], [true, false]);
    await withEnv({ CHARLM_WEBGPU_PREFETCH: "0" }, async () => assert.equal(ahead(false, 256, 512), false));
  });
  await withEnv({ CHARLM_WEBGPU_KERNELS: TABLE, CHARLM_WEBGPU_AHEAD: "0" }, async () =>
    assert.equal(ahead(false, 3, 10), false),
  );
  // 8 rows: where the tile and the slices' partial sums would pass 16 KiB of workgroup memory, 4
  await withEnv({ CHARLM_WEBGPU_ROWS: "8", CHARLM_WEBGPU_SPLIT: "2" }, async () => {
    assert.deepEqual(lstmStepSettings(false, 128, 512), { R: 4, S: 2, U: 1, W: 128, P: false }); // 24 KiB with 8
    assert.deepEqual(lstmStepSettings(true, 128, 512), { R: 8, S: 2, U: 2, W: 64, P: true }); // 16 KiB
  });
  await withEnv({ CHARLM_WEBGPU_ROWS: "8", CHARLM_WEBGPU_SPLIT: "4" }, async () =>
    assert.deepEqual(lstmStepSettings(false, 128, 512), { R: 8, S: 4, U: 1, W: 64, P: false }),
  );
  for (const bad of ["{not json", "[1, 2]", "7"])
    await withEnv({ CHARLM_WEBGPU_KERNELS: bad }, async () =>
      assert.throws(() => lstmStepSettings(true, 3, 10), /^CharlmError: CHARLM_WEBGPU_KERNELS is not a JSON object/),
    );
});

test("the products layout: forced or by a table's entry; its parts by the rule or CHARLM_WEBGPU_SPLIT", async () => {
  const products = (backward: boolean, B: number, H: number) => {
    const s = stepSettingsOf(backward ? "lstmBackward" : "lstmForward", B, H);
    return s.products ? s.S : null;
  };
  const rows = (B: number, H: number) => stepSettingsOf("lstmForward", B, H).R;
  assert.equal(products(false, 256, 512), null); // the step layout by default
  await withEnv({ CHARLM_WEBGPU_RECURRENT: "products" }, async () => {
    // the fewest parts that give 256 workgroups of 64 x 64 outputs, each part at least 128 long
    assert.equal(products(false, 256, 512), 2); // 128 tiles, K 512
    assert.equal(products(true, 256, 512), 8); // 32 tiles, K 2,048
    assert.equal(products(false, 64, 512), 4); // 32 tiles, K 512: 8 parts would be 64 long
    assert.equal(products(false, 3, 10), 1); // K 10
    await withEnv({ CHARLM_WEBGPU_SPLIT: "1" }, async () => assert.equal(products(true, 256, 512), 1));
    assert.equal(rows(256, 512), 4); // the fused kernel's rows a thread: 64-row tiles
    await withEnv({ CHARLM_WEBGPU_ROWS: "2" }, async () => assert.equal(rows(256, 512), 2));
  });
  const table = JSON.stringify({
    "lstmBackward H512 B256": { rows: 1, slices: 4, units: 1, wide: false, prefetch: false, products: true },
    "lstmForward H512 B64": { rows: 2, slices: 1, units: 1, wide: false, prefetch: false, products: true },
  });
  await withEnv({ CHARLM_WEBGPU_KERNELS: table }, async () => {
    assert.equal(products(true, 256, 512), 4);
    assert.equal(products(false, 64, 512), 1);
    assert.equal(rows(64, 512), 2);
    assert.equal(products(false, 256, 512), null); // not in the table: the step layout
    await withEnv({ CHARLM_WEBGPU_RECURRENT: "step" }, async () => assert.equal(products(true, 256, 512), null));
  });
  await withEnv({ CHARLM_WEBGPU_RECURRENT: "products!" }, async () =>
    assert.throws(
      () => products(true, 256, 512),
      /^CharlmError: CHARLM_WEBGPU_RECURRENT is "products!"; use step, sequence, products or auto, or unset it$/,
    ),
  );
});

/** fn with the kernel switches in `env` set, unset again afterwards. */
async function withEnv<R>(env: Record<string, string>, fn: () => Promise<R>): Promise<R> {
  Object.assign(process.env, env);
  try {
    return await fn();
  } finally {
    for (const k of Object.keys(env)) delete process.env[k];
  }
}

function pick<S, K extends string>(s: Record<string, S>, keys: Record<K, unknown>): Record<K, S> {
  return Object.fromEntries(Object.keys(keys).map((k) => [k, s[k]])) as Record<K, S>;
}
