// The wasm backend against the js reference backend, kernel by kernel, on random inputs of small odd sizes; the
// same kernels on 1, 2 and 3 threads must give the same bits; the allocator must reuse freed memory.
//
// Legend: M, K, N matrix sizes; B batch; T time; H hidden; V classes; C channels; nH heads.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import type { Backend } from "../src/engine/backend.js";
import { jsBackend } from "../src/engine/backends/js.js";
import { createWasmBackend, type WasmStorage } from "../src/engine/backends/wasm/index.js";
import { checkVersion } from "../src/engine/backends/wasm/load.js";
import { Rng } from "../src/util/rng.js";
import { SMALL_MODELS, train } from "./helpers/train.js";

const wasm1 = await createWasmBackend({ threads: 1 });
// Thresholds lowered so that the small test sizes are split between the threads.
const small = { threadMinMacs: 64, threadMinElems: 8 };
const wasm2 = await createWasmBackend({ threads: 2, ...small });
const wasm3 = await createWasmBackend({ threads: 3, ...small });
// The recurrent layers' other split: each step's product by columns (from inside the kernels).
const wasm3c = await createWasmBackend({ threads: 3, ...small, recurrentSplit: "columns" });
after(() => Promise.all([wasm2.close(), wasm3.close(), wasm3c.close()]));

const rng = new Rng(1234);
function rand(n: number, lo = -1, hi = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * rng.random();
  return a;
}
const zeros = (n: number) => new Float32Array(n);

/** One kernel call: its buffers (inputs and outputs, with initial values), which to compare, and the call. */
interface Case {
  name: string;
  bufs: Record<string, Float32Array>;
  outputs: string[];
  run<S extends { length: number }>(be: Backend<S>, b: Record<string, S>): void;
  /** Compare bit for bit with js (kernels that do the js backend's float64 operations in its order). */
  exact?: boolean;
  tol?: number;
}

function runOn<S extends { length: number }>(be: Backend<S>, c: Case): Record<string, Float32Array> {
  const b: Record<string, S> = {};
  for (const [k, v] of Object.entries(c.bufs)) {
    b[k] = be.alloc(v.length);
    be.write(b[k], v);
  }
  c.run(be, b);
  const out: Record<string, Float32Array> = {};
  for (const k of c.outputs) out[k] = be.view(b[k]).slice();
  for (const s of Object.values(b)) be.free(s);
  return out;
}

function assertNear(got: Float32Array, want: Float32Array, tol: number, what: string): void {
  assert.equal(got.length, want.length, what);
  for (let i = 0; i < want.length; i++) {
    const [g, w] = [got[i], want[i]];
    if (Object.is(g, w)) continue;
    if (!(Math.abs(g - w) <= tol * (1 + Math.abs(w)))) assert.fail(`${what}[${i}]: wasm ${g}, js ${w}`);
  }
}

function assertSame(got: Float32Array, want: Float32Array, what: string): void {
  for (let i = 0; i < want.length; i++) {
    if (!Object.is(got[i], want[i])) assert.fail(`${what}[${i}]: ${got[i]} vs ${want[i]} (not bit-identical)`);
  }
}

const cases: Case[] = [];
const add = (c: Case) => cases.push(c);

// ---- products
for (const [M, K, N] of [
  [7, 13, 11],
  [2, 9, 5],
  [37, 45, 29],
]) {
  for (const transA of [false, true]) {
    for (const transB of [false, true]) {
      for (const accumulate of [false, true]) {
        const batch = M === 7 ? 2 : 1;
        const [oa, ob, oc] = [3, 1, 2];
        add({
          name: `matmul ${M}x${K}x${N} tA=${transA} tB=${transB} acc=${accumulate} batch=${batch}`,
          bufs: { a: rand(oa + batch * M * K), b: rand(ob + batch * K * N), c: rand(oc + batch * M * N) },
          outputs: ["c"],
          run: (be, b) =>
            be.matmul(b.a, b.b, b.c, M, K, N, {
              transA,
              transB,
              accumulate,
              batch,
              offsetA: oa,
              offsetB: ob,
              offsetC: oc,
            }),
        });
      }
    }
  }
}

// with a bias added to every row (the recurrent layers' input projections), from offsets of A and B
for (const [M, K, N] of [
  [7, 13, 11],
  [37, 45, 29],
]) {
  for (const transB of [false, true]) {
    add({
      name: `matmul ${M}x${K}x${N} tB=${transB} with a bias`,
      bufs: { a: rand(3 + M * K), b: rand(1 + K * N), bias: rand(N), c: rand(M * N) },
      outputs: ["c"],
      run: (be, b) => be.matmul(b.a, b.b, b.c, M, K, N, { transB, offsetA: 3, offsetB: 1, bias: b.bias }),
    });
  }
}

test("matmul refuses a bias with accumulate, batch or an offset of C, naming the fix", () => {
  const [a, b, c, bias] = [rand(6), rand(6), rand(8), rand(2)];
  for (const be of [jsBackend, wasm1] as Backend<Float32Array>[]) {
    for (const o of [{ accumulate: true }, { batch: 2 }, { offsetC: 1 }])
      assert.throws(() => be.matmul(a, b, c, 2, 3, 2, { ...o, bias }), /needs batch 1, no accumulate/);
    assert.throws(() => be.matmul(a, b, c, 2, 3, 2, { bias: rand(1) }), /bias has 1 values, the product 2 columns/);
  }
});

// ---- memory: fill and copy (shared between threads when large)
add({
  name: "fill and copy",
  bufs: { a: rand(203), b: rand(211) },
  outputs: ["a", "b"],
  run: (be, b) => {
    be.fill(b.a, 0.25, 3, 150);
    be.fill(b.b, 0);
    be.copy(b.a, 1, b.b, 7, 190);
    be.copy(b.a, 0, b.a, 101, 100);
  },
});

// ---- elementwise
const N1 = 103;
for (const op of ["sigmoid", "tanh", "exp", "log", "relu", "gelu"] as const) {
  const x = op === "log" ? rand(N1, 0.05, 5) : rand(N1, -4, 4);
  add({ name: `unary ${op}`, bufs: { x, y: zeros(N1) }, outputs: ["y"], run: (be, b) => be.unary(op, b.x, b.y, N1) });
  const y = new Float32Array(N1);
  jsBackend.unary(op, x, y, N1);
  add({
    name: `unaryBackward ${op}`,
    bufs: { x, y, g: rand(N1), dx: rand(N1) },
    outputs: ["dx"],
    run: (be, b) => be.unaryBackward(op, b.x, b.y, b.g, b.dx, N1),
  });
}
{
  // gelu far out: its sigmoid's exp clamps (|2u| > 88) and its tails reach 0 and x
  const x = Float32Array.from([...rand(N1 - 6, -40, 40), -1e4, -90, -9, 9, 90, 1e4]);
  const y = new Float32Array(N1);
  jsBackend.unary("gelu", x, y, N1);
  add({
    name: "unary gelu, wide",
    bufs: { x, y: zeros(N1) },
    outputs: ["y"],
    run: (be, b) => be.unary("gelu", b.x, b.y, N1),
  });
  add({
    name: "unaryBackward gelu, wide",
    bufs: { x, y, g: rand(N1), dx: rand(N1) },
    outputs: ["dx"],
    run: (be, b) => be.unaryBackward("gelu", b.x, b.y, b.g, b.dx, N1),
  });
}
for (const acc of [false, true]) {
  add({
    name: `scale acc=${acc}`,
    bufs: { x: rand(N1), y: rand(N1) },
    outputs: ["y"],
    run: (be, b) => be.scale(b.x, b.y, N1, 0.37, acc),
  });
}
const shape3 = [3, 5, 7];
const full3 = [35, 7, 1];
for (const op of ["add", "sub", "mul"] as const) {
  for (const [bName, bStrides, bLen] of [
    ["full", full3, 105],
    ["bias", [0, 0, 1], 7],
    ["column", [0, 1, 0], 5],
    ["scalar", [0, 0, 0], 1],
    ["outer", [1, 0, 0], 3],
  ] as [string, number[], number][]) {
    add({
      name: `binary ${op} ${bName}`,
      bufs: { a: rand(105), b: rand(bLen), out: zeros(105) },
      outputs: ["out"],
      run: (be, b) => be.binary(op, b.a, full3, b.b, bStrides, b.out, shape3),
    });
    add({
      name: `binary ${op} a broadcast, b ${bName}`,
      bufs: { a: rand(15), b: rand(bLen), out: zeros(105) },
      outputs: ["out"],
      run: (be, b) => be.binary(op, b.a, [5, 1, 0], b.b, bStrides, b.out, shape3),
    });
  }
  add({
    name: `binary ${op} in place`,
    bufs: { a: rand(105), b: rand(7) },
    outputs: ["a"],
    run: (be, b) => be.binary(op, b.a, full3, b.b, [0, 0, 1], b.a, shape3),
  });
}
for (const [dName, dStrides, dLen] of [
  ["full", full3, 105],
  ["bias", [0, 0, 1], 7],
  ["column", [0, 1, 0], 5],
  ["scalar", [0, 0, 0], 1],
  ["outer", [1, 0, 0], 3],
  ["first and last", [7, 0, 1], 21],
] as [string, number[], number][]) {
  add({
    name: `reduceTo ${dName}`,
    bufs: { g: rand(105), d: rand(dLen) },
    outputs: ["d"],
    run: (be, b) => be.reduceTo(b.g, shape3, b.d, dStrides, 0.5),
  });
}

// ---- rows
{
  const [R, V] = [9, 13];
  const x = rand(R * V, -3, 3);
  x[5] = -Infinity; // a masked logit
  add({ name: "softmax", bufs: { x, y: zeros(R * V) }, outputs: ["y"], run: (be, b) => be.softmax(b.x, b.y, R, V) });
  const y = new Float32Array(R * V);
  jsBackend.softmax(x, y, R, V);
  add({
    name: "softmaxBackward",
    bufs: { y, g: rand(R * V), dx: rand(R * V) },
    outputs: ["dx"],
    run: (be, b) => be.softmaxBackward(b.y, b.g, b.dx, R, V),
  });
  const t = Int32Array.from({ length: R }, (_, i) => (i * 5) % V);
  add({
    name: "crossEntropy",
    bufs: { x, loss: zeros(1), p: zeros(R * V) },
    outputs: ["loss", "p"],
    run: (be, b) => be.crossEntropy(b.x, t, b.loss, b.p, R, V),
  });
  add({
    name: "crossEntropy without probs",
    bufs: { x, loss: zeros(1) },
    outputs: ["loss"],
    run: (be, b) => be.crossEntropy(b.x, t, b.loss, null, R, V),
  });
  add({
    name: "crossEntropyBackward",
    bufs: { p: y, g: Float32Array.of(1.7), dx: rand(R * V) },
    outputs: ["dx"],
    run: (be, b) => be.crossEntropyBackward(b.p, t, b.g, b.dx, R, V),
  });
}
// 11 channels: 8 in blocks of 4, 10 in pairs, tails of 3 and 1; 6: a tail of 2, none in pairs; 128: no tails
for (const [R, C] of [
  [7, 11],
  [5, 6],
  [3, 128],
]) {
  add({
    name: `layerNorm ${R}x${C}`,
    bufs: { x: rand(R * C, -2, 3), ga: rand(C), be: rand(C), y: zeros(R * C), xh: zeros(R * C), rs: zeros(R) },
    outputs: ["y", "xh", "rs"],
    run: (be, b) => be.layerNorm(b.x, b.ga, b.be, b.y, b.xh, b.rs, R, C, 1e-5),
  });
  for (const which of ["all", "dx only", "params only"]) {
    add({
      name: `layerNormBackward ${R}x${C} ${which}`,
      bufs: {
        g: rand(R * C),
        ga: rand(C),
        xh: rand(R * C),
        rs: rand(R, 0.5, 2),
        dx: rand(R * C),
        dg: rand(C),
        db: rand(C),
      },
      outputs: which === "all" ? ["dx", "dg", "db"] : which === "dx only" ? ["dx"] : ["dg", "db"],
      run: (be, b) =>
        be.layerNormBackward(
          b.g,
          b.ga,
          b.xh,
          b.rs,
          which === "params only" ? null : b.dx,
          which === "dx only" ? null : b.dg,
          which === "dx only" ? null : b.db,
          R,
          C,
        ),
    });
  }
}

// ---- gather, scatter, layout
{
  const [Vn, D] = [6, 7];
  const ids = Int32Array.of(3, 0, 5, 3, 3, 1, 2, 5, 4);
  add({
    name: "embedding",
    bufs: { w: rand(Vn * D), out: zeros(ids.length * D) },
    outputs: ["out"],
    run: (be, b) => be.embedding(b.w, ids, b.out, D),
  });
  add({
    name: "embeddingBackward",
    bufs: { g: rand(ids.length * D), dw: rand(Vn * D) },
    outputs: ["dw"],
    run: (be, b) => be.embeddingBackward(b.g, ids, b.dw, D),
  });
}
for (const acc of [false, true]) {
  add({
    name: `copyBlocks acc=${acc}`,
    bufs: { s: rand(60), d: rand(70) },
    outputs: ["d"],
    run: (be, b) => be.copyBlocks(b.s, 2, 11, b.d, 3, 13, 5, 4, acc),
  });
}
for (const [outer, n, inner] of [
  [3, 5, 7],
  [4, 9, 1],
  [1, 6, 5],
]) {
  add({
    name: `reduceAxis ${outer}x${n}x${inner}`,
    bufs: { x: rand(outer * n * inner), y: rand(outer * inner) },
    outputs: ["y"],
    run: (be, b) => be.reduceAxis(b.x, b.y, outer, n, inner, 1 / n),
  });
  add({
    name: `broadcastAxis ${outer}x${n}x${inner}`,
    bufs: { g: rand(outer * inner), dx: rand(outer * n * inner) },
    outputs: ["dx"],
    run: (be, b) => be.broadcastAxis(b.g, b.dx, outer, n, inner, 0.3),
  });
}
for (const [a0, a1] of [
  [1, 2],
  [0, 3],
  [0, 1],
]) {
  for (const acc of [false, true]) {
    const shape = [2, 3, 4, 5];
    add({
      name: `swapAxes ${a0},${a1} acc=${acc}`,
      bufs: { x: rand(120), y: rand(120) },
      outputs: ["y"],
      run: (be, b) => be.swapAxes(b.x, shape, a0, a1, b.y, acc),
    });
  }
}

// ---- attention
{
  const [cnt, T] = [3, 5];
  add({
    name: "causalMask",
    bufs: { x: rand(cnt * T * T), y: zeros(cnt * T * T) },
    outputs: ["y"],
    run: (be, b) => be.causalMask(b.x, b.y, cnt, T),
  });
  add({
    name: "causalMaskBackward",
    bufs: { g: rand(cnt * T * T), dx: rand(cnt * T * T) },
    outputs: ["dx"],
    run: (be, b) => be.causalMaskBackward(b.g, b.dx, cnt, T),
  });
}
// T 37 and hd 36: the kernels' blocks of 16 positions and 16 channels, then of 4, then single ones; hd 19: 16 and 3;
// rows and columns are combined two at a time: odd T leaves one, T 8 none
for (const [B, T, C, nH] of [
  [2, 5, 12, 3],
  [3, 7, 10, 2],
  [2, 37, 72, 2],
  [1, 21, 38, 2],
  [2, 8, 32, 2],
]) {
  const n = B * T * C;
  const [q, k, v] = [rand(n), rand(n), rand(n)];
  add({
    name: `attention B${B} T${T} C${C} nH${nH}`,
    bufs: { q, k, v, out: rand(n), att: rand(B * nH * T * T) },
    outputs: ["out", "att"],
    run: (be, b) => be.attention(b.q, b.k, b.v, b.out, b.att, B, T, C, nH),
  });
  const att = new Float32Array(B * nH * T * T);
  jsBackend.attention(q, k, v, new Float32Array(n), att, B, T, C, nH);
  add({
    name: `attentionBackward B${B} T${T} C${C} nH${nH}`,
    bufs: { q, k, v, att, g: rand(n), dq: rand(n), dk: rand(n), dv: rand(n) },
    outputs: ["dq", "dk", "dv"],
    run: (be, b) => be.attentionBackward(b.q, b.k, b.v, b.att, b.g, b.dq, b.dk, b.dv, B, T, C, nH),
  });
  add({
    name: `attentionBackward dq only B${B}`,
    bufs: { q, k, v, att, g: rand(n), dq: rand(n) },
    outputs: ["dq"],
    run: (be, b) => be.attentionBackward(b.q, b.k, b.v, b.att, b.g, b.dq, null, null, B, T, C, nH),
  });
  const Nc = T + 4;
  for (const [Tn, pos0] of [
    [T, 0],
    [1, 3],
    [2, 6],
  ]) {
    add({
      name: `attentionCached B${B} T${Tn} pos0 ${pos0}`,
      bufs: { qkv: rand(B * Tn * 3 * C), kc: rand(B * Nc * C), vc: rand(B * Nc * C), out: rand(B * Tn * C) },
      outputs: ["kc", "vc", "out"],
      run: (be, b) => be.attentionCached(b.qkv, b.kc, b.vc, b.out, B, Tn, C, nH, Nc, pos0),
    });
  }
}

// ---- recurrent layers: B >= 4 packs Wh, B < 4 streams it; B = 9 and 13 split into blocks of rows on 2 and 3 threads
for (const [T, B, H] of [
  [4, 5, 7],
  [3, 2, 5],
  [3, 9, 37],
  [5, 13, 6],
]) {
  const S = B * H;
  for (const [kind, g] of [
    ["lstm", 4],
    ["gru", 3],
    ["rnn", 1],
  ] as const) {
    const G = g * H;
    const fwd: Record<string, Float32Array> = {
      xw: rand(T * B * G),
      wh: rand(H * G, -0.5, 0.5),
      h0: rand(S),
      c0: rand(S),
      bh: rand(G),
      hs: zeros(T * S),
      cs: zeros(T * S),
      gates: zeros(T * B * G),
      hn: zeros(T * S),
    };
    const runFwd = <S extends { length: number }>(be: Backend<S>, b: Record<string, S>) => {
      if (kind === "lstm")
        be.lstmForward({ T, B, H, xw: b.xw, wh: b.wh, h0: b.h0, c0: b.c0, hs: b.hs, cs: b.cs, gates: b.gates });
      else if (kind === "gru")
        be.gruForward({ T, B, H, xw: b.xw, wh: b.wh, bh: b.bh, h0: b.h0, hs: b.hs, gates: b.gates, hn: b.hn });
      else be.rnnForward({ T, B, H, xw: b.xw, wh: b.wh, h0: b.h0, hs: b.hs });
    };
    const fwdOut = kind === "lstm" ? ["hs", "cs", "gates"] : kind === "gru" ? ["hs", "gates", "hn"] : ["hs"];
    add({ name: `${kind}Forward T${T} B${B} H${H}`, bufs: fwd, outputs: fwdOut, run: runFwd });
    // backward from the js forward's saved values
    const saved = runOn(jsBackend, { name: "", bufs: fwd, outputs: fwdOut, run: runFwd });
    for (const carried of [false, true]) {
      const bufs: Record<string, Float32Array> = {
        ...fwd,
        ...saved,
        dhs: rand(T * S),
        dhT: rand(S),
        dcT: rand(S),
        dxw: zeros(T * B * G),
        dwh: rand(H * G),
        dbh: rand(G),
        dh0: zeros(S),
        dc0: zeros(S),
      };
      const out =
        kind === "lstm"
          ? ["dxw", "dwh", "dh0", "dc0"]
          : kind === "gru"
            ? ["dxw", "dwh", "dbh", "dh0"]
            : ["dxw", "dwh", "dh0"];
      add({
        name: `${kind}Backward T${T} B${B} H${H} carried=${carried}`,
        bufs,
        outputs: out,
        run: (be, b) => {
          const dhT = carried ? b.dhT : null;
          const common = {
            T,
            B,
            H,
            xw: b.xw,
            wh: b.wh,
            h0: b.h0,
            hs: b.hs,
            dhs: b.dhs,
            dhT,
            dxw: b.dxw,
            dwh: b.dwh,
            dh0: b.dh0,
          };
          if (kind === "lstm")
            be.lstmBackward({ ...common, c0: b.c0, cs: b.cs, gates: b.gates, dcT: carried ? b.dcT : null, dc0: b.dc0 });
          else if (kind === "gru") be.gruBackward({ ...common, bh: b.bh, gates: b.gates, hn: b.hn, dbh: b.dbh });
          else be.rnnBackward(common);
        },
      });
    }
  }
}

// ---- optimizers and norms: the js backend's float64 operations in its order, so the bits must agree
{
  const n = 101;
  const base = () => ({ w: rand(n), g: rand(n), m: rand(n, -0.1, 0.1), v: rand(n, 0, 0.1) });
  for (const wd of [0, 0.01]) {
    const h = {
      lr: 0.003,
      beta1: 0.9,
      beta2: 0.999,
      eps: 1e-8,
      weightDecay: wd,
      bc1: 1 - 0.9 ** 3,
      bc2: 1 - 0.999 ** 3,
    };
    add({
      name: `adam wd=${wd}`,
      bufs: base(),
      outputs: ["w", "m", "v"],
      exact: true,
      run: (be, b) => be.adam(b.w, b.g, b.m, b.v, n, h),
    });
    add({
      name: `rmsprop wd=${wd}`,
      bufs: base(),
      outputs: ["w", "v"],
      exact: true,
      run: (be, b) => be.rmsprop(b.w, b.g, b.v, n, { lr: 0.01, rho: 0.9, eps: 1e-8, weightDecay: wd }),
    });
    add({
      name: `adagrad wd=${wd}`,
      bufs: base(),
      outputs: ["w", "v"],
      exact: true,
      run: (be, b) => be.adagrad(b.w, b.g, b.v, n, { lr: 0.1, eps: 1e-10, weightDecay: wd }),
    });
    for (const [momentum, nesterov, first] of [
      [0, false, false],
      [0.9, false, true],
      [0.9, false, false],
      [0.9, true, false],
    ] as [number, boolean, boolean][]) {
      add({
        name: `sgd wd=${wd} momentum=${momentum} nesterov=${nesterov} first=${first}`,
        bufs: base(),
        outputs: ["w", "m"],
        exact: true,
        run: (be, b) => be.sgd(b.w, b.g, b.m, n, { lr: 0.05, momentum, nesterov, weightDecay: wd, first }),
      });
    }
  }
  add({
    name: "sumSquares, clipFactor, scaleBy",
    bufs: { x: rand(n), y: rand(57), sq: zeros(3), out: zeros(2) },
    outputs: ["sq", "out", "x"],
    run: (be, b) => {
      be.sumSquares(b.x, n, b.sq, 0);
      be.sumSquares(b.y, 57, b.sq, 2);
      be.clipFactor(b.sq, 3, 1.5, b.out);
      be.scaleBy(b.x, n, b.out, 1);
    },
  });
  for (const maxNorm of [100, Infinity]) {
    add({
      name: `clipFactor maxNorm ${maxNorm}`,
      bufs: { sq: Float32Array.of(2, 3, 4), out: zeros(2) },
      outputs: ["out"],
      run: (be, b) => be.clipFactor(b.sq, 3, maxNorm, b.out),
    });
  }
}

for (const c of cases) {
  test(`wasm ${c.name} matches js`, () => {
    const want = runOn(jsBackend, c);
    const got = runOn(wasm1, c);
    for (const k of c.outputs) {
      if (c.exact) assertSame(got[k], want[k], k);
      else assertNear(got[k], want[k], c.tol ?? 2e-5, k);
    }
  });
}

test("every kernel gives the same bits on 1, 2 and 3 threads, recurrent layers split by rows or by columns", () => {
  assert.equal(wasm2.threads, 2);
  assert.equal(wasm3.threads, 3);
  assert.equal(wasm3c.recurrentSplit, "columns");
  for (const c of cases) {
    const one = runOn(wasm1, c);
    for (const be of [wasm2, wasm3, wasm3c]) {
      const many = runOn(be, c);
      const what = `${c.name} (${be.threads} threads, ${be.recurrentSplit})`;
      for (const k of c.outputs) assertSame(many[k], one[k], `${what} ${k}`);
    }
  }
});

test("freed storage is reused: alloc/free cycles do not grow memory, and reused storage is zeroed", () => {
  const be = wasm1;
  const sizes = [7, 1000, 33, 4096, 1];
  for (let round = 0; round < 3; round++) {
    const ss = sizes.map((n) => be.alloc(n));
    for (const s of ss) be.fill(s, 3);
    for (const s of ss) be.free(s);
  }
  const bytes = be.heap.bytes;
  const live = be.heap.live;
  for (let step = 0; step < 500; step++) {
    const ss: WasmStorage[] = sizes.map((n) => be.alloc(n));
    for (const s of ss) assert.ok(be.view(s).every((v) => v === 0));
    for (const s of ss) be.fill(s, step);
    for (const s of ss.reverse()) be.free(s);
  }
  assert.equal(be.heap.bytes, bytes);
  assert.equal(be.heap.live, live);
});

test("read copies values out; write and view go through", async () => {
  const s = wasm1.alloc(5);
  wasm1.write(s, Float32Array.of(1, 2, 3), 2);
  assert.deepEqual([...(await wasm1.read(s))], [0, 0, 1, 2, 3]);
  assert.deepEqual([...(await wasm1.read(s, 3, 2))], [2, 3]);
  wasm1.view(s)[0] = 9;
  assert.deepEqual([...(await wasm1.read(s, 0, 1))], [9]);
  assert.throws(() => wasm1.write(s, new Float32Array(4), 2), /writing 4 floats/);
  wasm1.free(s);
});

test("a build of another ABI version is refused with the command that rebuilds it", () => {
  assert.throws(
    () => checkVersion({ abiVersion: () => 1 }, "build/kernels.wasm"),
    /^CharlmError: build\/kernels\.wasm is version 1 but the loader expects \d+; run npm run build$/,
  );
  assert.doesNotThrow(() => checkVersion(wasm1.kernels, "build/kernels.wasm"));
});

test("Node 20 runs the relaxed-SIMD (FMA) build by default", () => {
  if (process.env.CHARLM_WASM_BUILD) return;
  assert.equal(wasm1.build, "relaxed");
  assert.equal(wasm2.build, "relaxed");
});

test("allocUninit hands out a freed block as it was, NaN with CHARLM_POISON=1; whole models then train like js", async () => {
  const s = wasm1.alloc(6);
  wasm1.write(s, Float32Array.of(1, 2, 3, 4, 5, 6));
  wasm1.free(s);
  const u = wasm1.allocUninit(5); // the same block (16 bytes and up are kept by size), not cleared
  assert.deepEqual([...(await wasm1.read(u))], [1, 2, 3, 4, 5]);
  wasm1.free(u);

  process.env.CHARLM_POISON = "1";
  const poisoned = await createWasmBackend({ threads: 2, ...small });
  delete process.env.CHARLM_POISON;
  try {
    const t = poisoned.alloc(3);
    poisoned.free(t);
    const v = poisoned.allocUninit(3);
    assert.ok([...poisoned.view(v)].every(Number.isNaN) && [...(await poisoned.read(v))].length === 3);
    poisoned.free(v);
    // op outputs come from allocUninit: no kernel may read a value it has not written
    // batch 3 x 7: the plain path; 4 x 7 folds a recurrent model's embedding into its first layer (models/rnn.ts)
    for (const [name, cfg, B] of [
      ...SMALL_MODELS.map(([n, c]) => [n, c, 3] as const),
      [...SMALL_MODELS[0], 4] as const,
    ]) {
      const want = await train(jsBackend as Backend, cfg, B, 7, 3);
      const got = await train(poisoned as unknown as Backend, cfg, B, 7, 3);
      got.losses.forEach((l, i) =>
        assert.ok(
          Math.abs(l - want.losses[i]) <= 1e-5 * want.losses[i],
          `${name} loss ${i}: ${l} vs ${want.losses[i]}`,
        ),
      );
    }
  } finally {
    await poisoned.close();
  }
});
