// The wasm kernels against slow, obvious float64 references written here, on random inputs of odd sizes.
// matmul: every transpose/accumulate variant, sizes that are not multiples of the 4x8 tile, K beyond one cache block.
// Recurrent kernels: forward against a float64 forward; backward against central finite differences (float64) of
// that forward, for the loss L = Σ dhs·hs + dhT·h_T (+ dcT·c_T), over every input (xw, Wh, bh, h0, c0).
//
// Legend: T time, B batch, H hidden, G gate width.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { WASM_URL, createWasmBackend, wasmActivations } from "../src/engine/backends/wasm.js";
import { jsBackend } from "../src/engine/backends/js.js";
import type { Backend } from "../src/engine/backend.js";
import { Rng } from "../src/util/rng.js";
import { onHost } from "./helpers/host-backend.js";

const wasm = createWasmBackend({ threads: 1 });
// The tests below pass host arrays; onHost copies them into wasm storage and back around each kernel.
const backend = wasm.then((be) => Object.assign(onHost(be), { build: be.build }));

test("the wasm backend loads the build CHARLM_WASM_BUILD asks for, else the best this runtime runs", async () => {
  const be = await backend;
  const want = process.env.CHARLM_WASM_BUILD;
  if (want) assert.equal(be.build, want);
  else assert.ok(be.build === "plain" || be.build === "relaxed", `build ${be.build}`);
  assert.equal(be.name, "wasm");
});

function rand(rng: Rng, n: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (rng.random() * 2 - 1) * scale;
  return a;
}

/** max |a-b| / (atol + rtol·|b|) <= 1, with a readable failure. */
function assertClose(a: ArrayLike<number>, b: ArrayLike<number>, what: string, rtol = 1e-5, atol = 1e-5): void {
  assert.equal(a.length, b.length, `${what}: length`);
  for (let i = 0; i < a.length; i++) {
    const err = Math.abs(a[i] - b[i]);
    if (!(err <= atol + rtol * Math.abs(b[i]))) {
      assert.fail(`${what}[${i}]: got ${a[i]}, expected ${b[i]} (|diff| ${err})`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------
// matmul

function refMatmul(
  a: Float32Array,
  b: Float32Array,
  c0: Float32Array,
  M: number,
  K: number,
  N: number,
  tA: boolean,
  tB: boolean,
  acc: boolean,
): Float64Array {
  const c = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = acc ? c0[i * N + j] : 0;
      for (let k = 0; k < K; k++) s += (tA ? a[k * M + i] : a[i * K + k]) * (tB ? b[j * K + k] : b[k * N + j]);
      c[i * N + j] = s;
    }
  }
  return c;
}

const SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [3, 5, 7],
  [2, 9, 21], // fewer rows than the micro-kernel: the unpacked path, with an 8-wide body and a tail
  [4, 8, 8],
  [13, 17, 9],
  [37, 300, 21], // K spans two KC blocks
  [131, 7, 19], // M spans two MC blocks
  [9, 300, 1037], // N spans two NC blocks
  [5, 0, 6], // K = 0: C = 0 (or unchanged with accumulate)
];

test("wasm matmul matches a float64 reference for every transpose/accumulate variant", async () => {
  const be = await backend;
  const rng = new Rng(1);
  for (const [M, K, N] of SHAPES) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        for (const accumulate of [false, true]) {
          const a = rand(rng, M * K);
          const b = rand(rng, K * N);
          const c = rand(rng, M * N);
          const want = refMatmul(a, b, c, M, K, N, transA, transB, accumulate);
          be.matmul(a, b, c, M, K, N, { transA, transB, accumulate });
          assertClose(
            c,
            want,
            `matmul ${M}x${K}x${N} tA=${transA} tB=${transB} acc=${accumulate}`,
            1e-5,
            1e-5 * Math.sqrt(K + 1),
          );
        }
      }
    }
  }
});

test("wasm matmul writes only C's M·N floats and accepts subarray views", async () => {
  const be = await backend;
  const rng = new Rng(2);
  const big = rand(rng, 100);
  const a = big.subarray(10, 10 + 6); // (2, 3)
  const b = rand(rng, 3 * 5);
  const c = new Float32Array(2 * 5 + 3).fill(7);
  be.matmul(a, b, c, 2, 3, 5);
  assertClose(c.subarray(0, 10), refMatmul(a, b, c, 2, 3, 5, false, false, false), "C");
  assert.deepEqual(Array.from(c.subarray(10)), [7, 7, 7]);
});

// ---------------------------------------------------------------------------------------------------------------
// activations

test("wasm sigmoid and tanh are accurate to 5e-7 relative over a wide sweep", async () => {
  const act = await wasmActivations();
  // [-20, 20], then [0, 1] densely: where tanh's series is longest (2|x| near ln2/2) and sigmoid's e^-x near 1
  const xs = new Float32Array(20001 + 100001);
  for (let i = 0; i < 20001; i++) xs[i] = (i - 10000) / 500;
  for (let i = 0; i <= 100000; i++) xs[20001 + i] = i / 100000;
  const extra = Float32Array.from([0, -0, 1e-30, -1e-8, 1e-4, 0.3499, 0.35, 0.3501, 50, -50, 100, -100, 1e4, -1e4]);
  const all = new Float32Array(xs.length + extra.length);
  all.set(xs);
  all.set(extra, xs.length);
  const s = act.sigmoid(all);
  const t = act.tanh(all);
  for (let i = 0; i < all.length; i++) {
    const x = all[i];
    const ws = 1 / (1 + Math.exp(-x));
    const wt = Math.tanh(x);
    assert.ok(Math.abs(s[i] - ws) <= 5e-7 * Math.abs(ws) + 1e-30, `sigmoid(${x}) = ${s[i]}, want ${ws}`);
    assert.ok(Math.abs(t[i] - wt) <= 5e-7 * Math.abs(wt) + 1e-30, `tanh(${x}) = ${t[i]}, want ${wt}`);
  }
});

test("wasm sigmoid and tanh pass NaN through and reach their limits at the infinities", async () => {
  const act = await wasmActivations();
  const x = Float32Array.from([NaN, -NaN, Infinity, -Infinity, 1, NaN, 0, NaN]); // NaNs in every lane
  const s = act.sigmoid(x);
  const t = act.tanh(x);
  for (const i of [0, 1, 5, 7]) {
    assert.ok(Number.isNaN(s[i]), `sigmoid(NaN) at ${i} = ${s[i]}: a NaN must not be clamped into a number`);
    assert.ok(Number.isNaN(t[i]), `tanh(NaN) at ${i} = ${t[i]}`);
  }
  assert.deepEqual([s[2], t[2], t[3]], [1, 1, -1]);
  assert.ok(s[3] >= 0 && s[3] < 1e-38, `sigmoid(-Infinity) = ${s[3]}`); // e^-x clamped at e^88.3: 1/(1 + 2e38)
});

// ---------------------------------------------------------------------------------------------------------------
// recurrent references (float64)

const sig = (x: number) => 1 / (1 + Math.exp(-x));

/** LSTM forward in float64; returns hs, cs (T,B,H) and the loss against dhs/dhT/dcT. */
function refLstm(
  T: number,
  B: number,
  H: number,
  xw: Float64Array,
  wh: Float64Array,
  h0: Float64Array,
  c0: Float64Array,
) {
  const G = 4 * H;
  const hs = new Float64Array(T * B * H);
  const cs = new Float64Array(T * B * H);
  const gates = new Float64Array(T * B * G);
  let hp = h0;
  let cp = c0;
  for (let t = 0; t < T; t++) {
    for (let b = 0; b < B; b++) {
      const a = new Float64Array(G);
      for (let g = 0; g < G; g++) {
        let s = xw[(t * B + b) * G + g];
        for (let k = 0; k < H; k++) s += hp[b * H + k] * wh[k * G + g];
        a[g] = s;
      }
      for (let j = 0; j < H; j++) {
        const i = sig(a[j]);
        const f = sig(a[H + j]);
        const gg = Math.tanh(a[2 * H + j]);
        const o = sig(a[3 * H + j]);
        const c = f * cp[b * H + j] + i * gg;
        const base = (t * B + b) * G;
        gates[base + j] = i;
        gates[base + H + j] = f;
        gates[base + 2 * H + j] = gg;
        gates[base + 3 * H + j] = o;
        cs[(t * B + b) * H + j] = c;
        hs[(t * B + b) * H + j] = o * Math.tanh(c);
      }
    }
    hp = hs.subarray(t * B * H, (t + 1) * B * H);
    cp = cs.subarray(t * B * H, (t + 1) * B * H);
  }
  return { hs, cs, gates };
}

function refGru(
  T: number,
  B: number,
  H: number,
  xw: Float64Array,
  wh: Float64Array,
  bh: Float64Array,
  h0: Float64Array,
) {
  const G = 3 * H;
  const hs = new Float64Array(T * B * H);
  const gates = new Float64Array(T * B * G);
  const hn = new Float64Array(T * B * H);
  let hp = h0;
  for (let t = 0; t < T; t++) {
    for (let b = 0; b < B; b++) {
      const hh = new Float64Array(G);
      for (let g = 0; g < G; g++) {
        let s = bh[g];
        for (let k = 0; k < H; k++) s += hp[b * H + k] * wh[k * G + g];
        hh[g] = s;
      }
      const base = (t * B + b) * G;
      for (let j = 0; j < H; j++) {
        const r = sig(xw[base + j] + hh[j]);
        const z = sig(xw[base + H + j] + hh[H + j]);
        const n = Math.tanh(xw[base + 2 * H + j] + r * hh[2 * H + j]);
        gates[base + j] = r;
        gates[base + H + j] = z;
        gates[base + 2 * H + j] = n;
        hn[(t * B + b) * H + j] = hh[2 * H + j];
        hs[(t * B + b) * H + j] = (1 - z) * n + z * hp[b * H + j];
      }
    }
    hp = hs.subarray(t * B * H, (t + 1) * B * H);
  }
  return { hs, gates, hn };
}

function refRnn(T: number, B: number, H: number, xw: Float64Array, wh: Float64Array, h0: Float64Array) {
  const hs = new Float64Array(T * B * H);
  let hp = h0;
  for (let t = 0; t < T; t++) {
    for (let b = 0; b < B; b++) {
      for (let j = 0; j < H; j++) {
        let s = xw[(t * B + b) * H + j];
        for (let k = 0; k < H; k++) s += hp[b * H + k] * wh[k * H + j];
        hs[(t * B + b) * H + j] = Math.tanh(s);
      }
    }
    hp = hs.subarray(t * B * H, (t + 1) * B * H);
  }
  return { hs };
}

function dot(a: Float64Array, b: Float32Array, offA = 0): number {
  let s = 0;
  for (let i = 0; i < b.length; i++) s += a[offA + i] * b[i];
  return s;
}

/** Central-difference gradient of loss() w.r.t. every entry of x (float64, modified and restored in place). */
function numGrad(x: Float64Array, loss: () => number, eps = 1e-6): Float64Array {
  const g = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const keep = x[i];
    x[i] = keep + eps;
    const lp = loss();
    x[i] = keep - eps;
    const lm = loss();
    x[i] = keep;
    g[i] = (lp - lm) / (2 * eps);
  }
  return g;
}

const f64 = (a: Float32Array) => Float64Array.from(a);

// Sizes: H not a multiple of 4 (row tails), H a multiple (no tail), B odd.
const RNN_SIZES: [number, number, number][] = [
  [3, 2, 5],
  [4, 3, 8],
  [2, 1, 1],
  [2, 129, 2], // B beyond one MC block; T·B beyond one KC block in the dWh product
];

test("wasm lstmForward matches float64 on odd sizes", async () => {
  const be = await backend;
  const rng = new Rng(3);
  for (const [T, B, H] of [...RNN_SIZES, [5, 7, 37] as [number, number, number]]) {
    const G = 4 * H;
    const xw = rand(rng, T * B * G);
    const wh = rand(rng, H * G, 0.5);
    const h0 = rand(rng, B * H);
    const c0 = rand(rng, B * H);
    const hs = new Float32Array(T * B * H);
    const cs = new Float32Array(T * B * H);
    const gates = new Float32Array(T * B * G);
    be.lstmForward({ T, B, H, xw, wh, h0, c0, hs, cs, gates });
    const want = refLstm(T, B, H, f64(xw), f64(wh), f64(h0), f64(c0));
    assertClose(hs, want.hs, `lstm hs ${T}x${B}x${H}`);
    assertClose(cs, want.cs, `lstm cs ${T}x${B}x${H}`);
    assertClose(gates, want.gates, `lstm gates ${T}x${B}x${H}`);
  }
});

test("wasm lstmBackward matches central differences over xw, Wh, h0, c0", async () => {
  const be = await backend;
  const rng = new Rng(4);
  for (const [T, B, H] of RNN_SIZES) {
    for (const withFinal of [true, false]) {
      const G = 4 * H;
      const xw = rand(rng, T * B * G);
      const wh = rand(rng, H * G, 0.5);
      const h0 = rand(rng, B * H);
      const c0 = rand(rng, B * H);
      const dhs = rand(rng, T * B * H);
      const dhT = withFinal ? rand(rng, B * H) : null;
      const dcT = withFinal ? rand(rng, B * H) : null;
      const hs = new Float32Array(T * B * H);
      const cs = new Float32Array(T * B * H);
      const gates = new Float32Array(T * B * G);
      be.lstmForward({ T, B, H, xw, wh, h0, c0, hs, cs, gates });
      const dxw = new Float32Array(T * B * G).fill(NaN); // overwritten
      const dwh0 = rand(rng, H * G); // accumulated into
      const dwh = dwh0.slice();
      const dh0 = new Float32Array(B * H).fill(NaN);
      const dc0 = new Float32Array(B * H).fill(NaN);
      be.lstmBackward({ T, B, H, xw, wh, h0, c0, hs, cs, gates, dhs, dhT, dcT, dxw, dwh, dh0, dc0 });

      const X = f64(xw);
      const W = f64(wh);
      const H0 = f64(h0);
      const C0 = f64(c0);
      const last = (T - 1) * B * H;
      const loss = () => {
        const r = refLstm(T, B, H, X, W, H0, C0);
        let l = dot(r.hs, dhs);
        if (dhT) l += dot(r.hs, dhT, last);
        if (dcT) l += dot(r.cs, dcT, last);
        return l;
      };
      const what = `lstm ${T}x${B}x${H} final=${withFinal}`;
      assertClose(dxw, numGrad(X, loss), `${what} dxw`, 1e-4, 1e-5);
      const gw = numGrad(W, loss);
      assertClose(
        dwh,
        gw.map((g, i) => g + dwh0[i]),
        `${what} dwh`,
        1e-4,
        1e-5,
      );
      assertClose(dh0, numGrad(H0, loss), `${what} dh0`, 1e-4, 1e-5);
      assertClose(dc0, numGrad(C0, loss), `${what} dc0`, 1e-4, 1e-5);
    }
  }
});

test("wasm gruForward matches float64 on odd sizes", async () => {
  const be = await backend;
  const rng = new Rng(5);
  for (const [T, B, H] of [...RNN_SIZES, [5, 7, 37] as [number, number, number]]) {
    const G = 3 * H;
    const xw = rand(rng, T * B * G);
    const wh = rand(rng, H * G, 0.5);
    const bh = rand(rng, G);
    const h0 = rand(rng, B * H);
    const hs = new Float32Array(T * B * H);
    const gates = new Float32Array(T * B * G);
    const hn = new Float32Array(T * B * H);
    be.gruForward({ T, B, H, xw, wh, bh, h0, hs, gates, hn });
    const want = refGru(T, B, H, f64(xw), f64(wh), f64(bh), f64(h0));
    assertClose(hs, want.hs, `gru hs ${T}x${B}x${H}`);
    assertClose(gates, want.gates, `gru gates ${T}x${B}x${H}`);
    assertClose(hn, want.hn, `gru hn ${T}x${B}x${H}`);
  }
});

test("wasm gruBackward matches central differences over xw, Wh, bh, h0", async () => {
  const be = await backend;
  const rng = new Rng(6);
  for (const [T, B, H] of RNN_SIZES) {
    for (const withFinal of [true, false]) {
      const G = 3 * H;
      const xw = rand(rng, T * B * G);
      const wh = rand(rng, H * G, 0.5);
      const bh = rand(rng, G);
      const h0 = rand(rng, B * H);
      const dhs = rand(rng, T * B * H);
      const dhT = withFinal ? rand(rng, B * H) : null;
      const hs = new Float32Array(T * B * H);
      const gates = new Float32Array(T * B * G);
      const hn = new Float32Array(T * B * H);
      be.gruForward({ T, B, H, xw, wh, bh, h0, hs, gates, hn });
      const dxw = new Float32Array(T * B * G).fill(NaN);
      const dwh0 = rand(rng, H * G);
      const dwh = dwh0.slice();
      const dbh0 = rand(rng, G);
      const dbh = dbh0.slice();
      const dh0 = new Float32Array(B * H).fill(NaN);
      be.gruBackward({ T, B, H, xw, wh, bh, h0, hs, gates, hn, dhs, dhT, dxw, dwh, dbh, dh0 });

      const X = f64(xw);
      const W = f64(wh);
      const BH = f64(bh);
      const H0 = f64(h0);
      const last = (T - 1) * B * H;
      const loss = () => {
        const r = refGru(T, B, H, X, W, BH, H0);
        return dot(r.hs, dhs) + (dhT ? dot(r.hs, dhT, last) : 0);
      };
      const what = `gru ${T}x${B}x${H} final=${withFinal}`;
      assertClose(dxw, numGrad(X, loss), `${what} dxw`, 1e-4, 1e-5);
      assertClose(
        dwh,
        numGrad(W, loss).map((g, i) => g + dwh0[i]),
        `${what} dwh`,
        1e-4,
        1e-5,
      );
      assertClose(
        dbh,
        numGrad(BH, loss).map((g, i) => g + dbh0[i]),
        `${what} dbh`,
        1e-4,
        1e-5,
      );
      assertClose(dh0, numGrad(H0, loss), `${what} dh0`, 1e-4, 1e-5);
    }
  }
});

test("wasm rnnForward matches float64 on odd sizes", async () => {
  const be = await backend;
  const rng = new Rng(7);
  for (const [T, B, H] of [...RNN_SIZES, [5, 7, 37] as [number, number, number]]) {
    const xw = rand(rng, T * B * H);
    const wh = rand(rng, H * H, 0.5);
    const h0 = rand(rng, B * H);
    const hs = new Float32Array(T * B * H);
    be.rnnForward({ T, B, H, xw, wh, h0, hs });
    assertClose(hs, refRnn(T, B, H, f64(xw), f64(wh), f64(h0)).hs, `rnn hs ${T}x${B}x${H}`);
  }
});

test("wasm rnnBackward matches central differences over xw, Wh, h0", async () => {
  const be = await backend;
  const rng = new Rng(8);
  for (const [T, B, H] of RNN_SIZES) {
    for (const withFinal of [true, false]) {
      const xw = rand(rng, T * B * H);
      const wh = rand(rng, H * H, 0.5);
      const h0 = rand(rng, B * H);
      const dhs = rand(rng, T * B * H);
      const dhT = withFinal ? rand(rng, B * H) : null;
      const hs = new Float32Array(T * B * H);
      be.rnnForward({ T, B, H, xw, wh, h0, hs });
      const dxw = new Float32Array(T * B * H).fill(NaN);
      const dwh0 = rand(rng, H * H);
      const dwh = dwh0.slice();
      const dh0 = new Float32Array(B * H).fill(NaN);
      be.rnnBackward({ T, B, H, xw, wh, h0, hs, dhs, dhT, dxw, dwh, dh0 });
      const X = f64(xw);
      const W = f64(wh);
      const H0 = f64(h0);
      const last = (T - 1) * B * H;
      const loss = () => {
        const r = refRnn(T, B, H, X, W, H0);
        return dot(r.hs, dhs) + (dhT ? dot(r.hs, dhT, last) : 0);
      };
      const what = `rnn ${T}x${B}x${H} final=${withFinal}`;
      assertClose(dxw, numGrad(X, loss), `${what} dxw`, 1e-4, 1e-5);
      assertClose(
        dwh,
        numGrad(W, loss).map((g, i) => g + dwh0[i]),
        `${what} dwh`,
        1e-4,
        1e-5,
      );
      assertClose(dh0, numGrad(H0, loss), `${what} dh0`, 1e-4, 1e-5);
    }
  }
});

// ---------------------------------------------------------------------------------------------------------------
// wasm against the js reference backend, on one medium odd size per kernel (forward and backward outputs)

test("wasm agrees with the js backend on every kernel", async () => {
  const be = await backend;
  const rng = new Rng(9);
  const [T, B, H] = [4, 3, 9];
  const S = B * H;
  const both = (fn: (b: Backend) => Float32Array[]): [Float32Array[], Float32Array[]] => [fn(be), fn(jsBackend)];
  const check = ([w, j]: [Float32Array[], Float32Array[]], what: string) =>
    w.forEach((arr, i) => assertClose(arr, j[i], `${what} output ${i}`, 1e-4, 1e-5));

  for (const [cell, G] of [
    ["lstm", 4 * H],
    ["gru", 3 * H],
    ["rnn", H],
  ] as const) {
    const xw = rand(rng, T * B * G);
    const wh = rand(rng, H * G, 0.5);
    const bh = rand(rng, G);
    const h0 = rand(rng, S);
    const c0 = rand(rng, S);
    const dhs = rand(rng, T * S);
    const dhT = rand(rng, S);
    const dcT = rand(rng, S);
    const dwhInit = rand(rng, H * G);
    const dbhInit = rand(rng, G);
    check(
      both((b) => {
        const hs = new Float32Array(T * S);
        const dxw = new Float32Array(T * B * G);
        const dwh = dwhInit.slice();
        const dh0 = new Float32Array(S);
        if (cell === "lstm") {
          const cs = new Float32Array(T * S);
          const gates = new Float32Array(T * B * G);
          const dc0 = new Float32Array(S);
          b.lstmForward({ T, B, H, xw, wh, h0, c0, hs, cs, gates });
          b.lstmBackward({ T, B, H, xw, wh, h0, c0, hs, cs, gates, dhs, dhT, dcT, dxw, dwh, dh0, dc0 });
          return [hs, cs, gates, dxw, dwh, dh0, dc0];
        }
        if (cell === "gru") {
          const gates = new Float32Array(T * B * G);
          const hn = new Float32Array(T * S);
          const dbh = dbhInit.slice();
          b.gruForward({ T, B, H, xw, wh, bh, h0, hs, gates, hn });
          b.gruBackward({ T, B, H, xw, wh, bh, h0, hs, gates, hn, dhs, dhT, dxw, dwh, dbh, dh0 });
          return [hs, gates, hn, dxw, dwh, dbh, dh0];
        }
        b.rnnForward({ T, B, H, xw, wh, h0, hs });
        b.rnnBackward({ T, B, H, xw, wh, h0, hs, dhs, dhT, dxw, dwh, dh0 });
        return [hs, dxw, dwh, dh0];
      }),
      cell,
    );
  }
  const [M, K, N] = [29, 71, 43];
  const a = rand(rng, M * K);
  const bm = rand(rng, K * N);
  const c0 = rand(rng, M * N);
  for (const transA of [false, true]) {
    for (const transB of [false, true]) {
      check(
        both((b) => {
          const c = c0.slice();
          b.matmul(a, bm, c, M, K, N, { transA, transB, accumulate: true });
          return [c];
        }),
        `matmul tA=${transA} tB=${transB}`,
      );
    }
  }
});

test("createWasmBackend takes the module's bytes (the browser path) and rejects bytes that are not the kernels", async () => {
  const bytes = await readFile(WASM_URL);
  const be = onHost(await createWasmBackend(bytes));
  const c = new Float32Array(4);
  be.matmul(Float32Array.from([1, 2, 3, 4]), Float32Array.from([5, 6, 7, 8]), c, 2, 2, 2);
  assert.deepEqual(Array.from(c), [19, 22, 43, 50]);
  await assert.rejects(
    createWasmBackend(new Uint8Array([0, 97, 115, 109, 9, 9])),
    /could not instantiate the wasm kernels/,
  );
});
