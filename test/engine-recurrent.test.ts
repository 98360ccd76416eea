// The fused recurrent ops (lstm, gru, rnn, and their forms from given input projections) on every backend: forward against a float64 step-by-step reference,
// gradients of x, h0, c0, wx, wh and the biases against central finite differences, and every kernel of each
// backend against the js reference on random inputs of odd sizes.
//
// Legend: T time, B batch, D input, H hidden, G gate width.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as E from "../src/engine/index.js";
import {
  Tensor,
  gradcheck,
  jsBackend,
  listBackends,
  loadBackend,
  withBackend,
  type Backend,
} from "../src/engine/index.js";
import { Rng } from "../src/util/rng.js";
import { assertClose, f64, rand, refGru, refLstm, refRnn } from "./engine-ref.js";
import { onHost } from "./helpers/host-backend.js";

const [T, B, D, H] = [5, 3, 7, 4];

function check(f: (...xs: Tensor[]) => Tensor[], inputs: Tensor[]): void {
  const r = gradcheck(f, inputs);
  const names = ["x", "wx", "wh", "b", "b2/h0", "h0/c0"];
  const w = r.worst;
  assert.ok(r.ok, `gradcheck failed at ${w ? names[w.input] : "?"}: ${JSON.stringify(w)}`);
}

for (const name of await listBackends()) {
  const backend = await loadBackend(name);
  const on = (fn: () => void) => () => withBackend(backend, fn);

  describe(`recurrent ops on ${name}`, () => {
    test(
      "lstm forward matches float64 and its gradients match finite differences",
      on(() => {
        const rng = new Rng(21);
        const x = rand(rng, [T, B, D]);
        const wx = rand(rng, [D, 4 * H], -0.5, 0.5);
        const wh = rand(rng, [H, 4 * H], -0.5, 0.5);
        const b = rand(rng, [4 * H]);
        const h0 = rand(rng, [B, H]);
        const c0 = rand(rng, [B, H]);
        const y = E.lstm(x, wx, wh, b, h0, c0);
        const ref = refLstm(f64(x), f64(wx), f64(wh), f64(b), f64(h0), f64(c0), T, B, D, H);
        assert.deepEqual(y.hs.shape, [T, B, H]);
        assertClose(y.hs.data, ref.hs, 1e-5, 1e-6, "hs");
        assertClose(y.hT.data, ref.hT, 1e-5, 1e-6, "hT");
        assertClose(y.cT.data, ref.cT, 1e-5, 1e-6, "cT");
        check((...a) => Object.values(E.lstm(a[0], a[1], a[2], a[3], a[4], a[5])), [x, wx, wh, b, h0, c0]);
        // only the carried state used (hs gets no gradient) and zero initial states
        check((...a) => [E.lstm(a[0], a[1], a[2], a[3]).cT], [x, wx, wh, b]);
      }),
    );

    test(
      "gru forward matches float64 and its gradients match finite differences",
      on(() => {
        const rng = new Rng(22);
        const x = rand(rng, [T, B, D]);
        const wx = rand(rng, [D, 3 * H], -0.5, 0.5);
        const wh = rand(rng, [H, 3 * H], -0.5, 0.5);
        const bx = rand(rng, [3 * H]);
        const bh = rand(rng, [3 * H]);
        const h0 = rand(rng, [B, H]);
        const y = E.gru(x, wx, wh, bx, bh, h0);
        const ref = refGru(f64(x), f64(wx), f64(wh), f64(bx), f64(bh), f64(h0), T, B, D, H);
        assertClose(y.hs.data, ref.hs, 1e-5, 1e-6, "hs");
        assertClose(y.hT.data, ref.hT, 1e-5, 1e-6, "hT");
        check((...a) => Object.values(E.gru(a[0], a[1], a[2], a[3], a[4], a[5])), [x, wx, wh, bx, bh, h0]);
        check((...a) => [E.gru(a[0], a[1], a[2], a[3], a[4]).hT], [x, wx, wh, bx, bh]);
      }),
    );

    test(
      "rnn forward matches float64 and its gradients match finite differences",
      on(() => {
        const rng = new Rng(23);
        const x = rand(rng, [T, B, D]);
        const wx = rand(rng, [D, H], -0.5, 0.5);
        const wh = rand(rng, [H, H], -0.5, 0.5);
        const b = rand(rng, [H]);
        const h0 = rand(rng, [B, H]);
        const y = E.rnn(x, wx, wh, b, h0);
        const ref = refRnn(f64(x), f64(wx), f64(wh), f64(b), f64(h0), T, B, D, H);
        assertClose(y.hs.data, ref.hs, 1e-5, 1e-6, "hs");
        assertClose(y.hT.data, ref.hT, 1e-5, 1e-6, "hT");
        check((...a) => Object.values(E.rnn(a[0], a[1], a[2], a[3], a[4])), [x, wx, wh, b, h0]);
      }),
    );

    test(
      "the projected forms equal the ops from linear(x, wx, b) and their gradients match finite differences",
      on(() => {
        const rng = new Rng(24);
        const x = rand(rng, [T, B, D]);
        const h0 = rand(rng, [B, H]);
        const c0 = rand(rng, [B, H]);
        const cells = [
          { gates: 4, run: (xw: Tensor, wh: Tensor) => E.lstmProjected(xw, wh, h0, c0) },
          { gates: 3, run: (xw: Tensor, wh: Tensor, bh?: Tensor) => E.gruProjected(xw, wh, bh!, h0) },
          { gates: 1, run: (xw: Tensor, wh: Tensor) => E.rnnProjected(xw, wh, h0) },
        ];
        const direct = [
          (wx: Tensor, wh: Tensor, b: Tensor) => E.lstm(x, wx, wh, b, h0, c0),
          (wx: Tensor, wh: Tensor, b: Tensor, bh?: Tensor) => E.gru(x, wx, wh, b, bh!, h0),
          (wx: Tensor, wh: Tensor, b: Tensor) => E.rnn(x, wx, wh, b, h0),
        ];
        cells.forEach(({ gates, run }, i) => {
          const G = gates * H;
          const wx = rand(rng, [D, G], -0.5, 0.5);
          const wh = rand(rng, [H, G], -0.5, 0.5);
          const b = rand(rng, [G]);
          const bh = rand(rng, [G]);
          const viaLinear = run(E.linear(x, wx, b), wh, bh);
          const ref = direct[i](wx, wh, b, bh);
          assertClose(viaLinear.hs.data, ref.hs.data, 1e-6, 1e-7, `hs (${gates} gates)`);
          assertClose(viaLinear.hT.data, ref.hT.data, 1e-6, 1e-7, `hT (${gates} gates)`);
          const xw = rand(rng, [T, B, G]);
          // xw's gradient written by the kernel itself, then added to one another op made first
          check((...a) => Object.values(run(a[0], a[1], a[2])), [xw, wh, bh]);
          check((...a) => [...Object.values(run(a[0], a[1], a[2])), E.mul(a[0], a[0])], [xw, wh, bh]);
        });
      }),
    );

    test(
      "shape errors name the argument",
      on(() => {
        const x = Tensor.zeros([T, B, D]);
        assert.throws(
          () => E.lstm(x, Tensor.zeros([D + 1, 4 * H]), Tensor.zeros([H, 4 * H]), Tensor.zeros([4 * H])),
          /wx/,
        );
        assert.throws(
          () => E.gru(x, Tensor.zeros([D, 3 * H]), Tensor.zeros([H, H]), Tensor.zeros([3 * H]), Tensor.zeros([3 * H])),
          /wh/,
        );
        assert.throws(() => E.lstmProjected(Tensor.zeros([T, B, 4 * H]), Tensor.zeros([H + 1, 4 * H])), /wh/);
        assert.throws(() => E.rnnProjected(Tensor.zeros([T * B, H]), Tensor.zeros([H, H])), /xw must be \(T, B, 1H\)/);
      }),
    );
  });

  if (name !== "js") {
    describe(`${name} kernels against js`, () => {
      kernelComparison(onHost(backend));
    });
  }
}

/** Run the same kernel call on `be` and on js with identical random inputs; compare every output. */
function kernelComparison(be: Backend): void {
  const fill = (rng: Rng, n: number, s = 1) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = (rng.random() * 2 - 1) * s;
    return a;
  };
  const same = (a: Float32Array, b: Float32Array, what: string, tol = 1e-5) => assertClose(a, b, tol, tol, what);

  test("matmul, every transpose and accumulate, odd sizes", () => {
    const rng = new Rng(31);
    for (const [M, K, N] of [
      [1, 1, 1],
      [3, 5, 7],
      [17, 33, 9],
      [64, 31, 129],
      [5, 100, 3],
    ]) {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          for (const accumulate of [false, true]) {
            const a = fill(rng, M * K);
            const b = fill(rng, K * N);
            const c0 = fill(rng, M * N);
            const c1 = c0.slice();
            const c2 = c0.slice();
            be.matmul(a, b, c1, M, K, N, { transA, transB, accumulate });
            jsBackend.matmul(a, b, c2, M, K, N, { transA, transB, accumulate });
            same(c1, c2, `matmul ${M}x${K}x${N} tA=${transA} tB=${transB} acc=${accumulate}`, 1e-4);
          }
        }
      }
    }
  });

  for (const [T, B, H] of [
    [1, 1, 1],
    [5, 3, 7],
    [7, 5, 13],
  ]) {
    test(`lstm, gru, rnn kernels forward and backward, T=${T} B=${B} H=${H}`, () => {
      const rng = new Rng(32 + T);
      for (const [kind, G] of [
        ["lstm", 4 * H],
        ["gru", 3 * H],
        ["rnn", H],
      ] as const) {
        const base = {
          T,
          B,
          H,
          xw: fill(rng, T * B * G, 2),
          wh: fill(rng, H * G, 0.5),
          h0: fill(rng, B * H),
          c0: fill(rng, B * H),
          bh: fill(rng, G),
          dhs: fill(rng, T * B * H),
          dhT: fill(rng, B * H),
          dcT: fill(rng, B * H),
          dwh0: fill(rng, H * G),
          dbh0: fill(rng, G),
        };
        const run = (k: Backend) => {
          const o = {
            hs: new Float32Array(T * B * H),
            cs: new Float32Array(T * B * H),
            gates: new Float32Array(T * B * G),
            hn: new Float32Array(T * B * H),
            dxw: new Float32Array(T * B * G),
            dwh: base.dwh0.slice(),
            dbh: base.dbh0.slice(),
            dh0: new Float32Array(B * H),
            dc0: new Float32Array(B * H),
          };
          const { xw, wh, h0, c0, bh, dhs, dhT, dcT } = base;
          if (kind === "lstm") {
            const f = { T, B, H, xw, wh, h0, c0, hs: o.hs, cs: o.cs, gates: o.gates };
            k.lstmForward(f);
            k.lstmBackward({ ...f, dhs, dhT, dcT, dxw: o.dxw, dwh: o.dwh, dh0: o.dh0, dc0: o.dc0 });
          } else if (kind === "gru") {
            const f = { T, B, H, xw, wh, bh, h0, hs: o.hs, gates: o.gates, hn: o.hn };
            k.gruForward(f);
            k.gruBackward({ ...f, dhs, dhT, dxw: o.dxw, dwh: o.dwh, dbh: o.dbh, dh0: o.dh0 });
          } else {
            const f = { T, B, H, xw, wh, h0, hs: o.hs };
            k.rnnForward(f);
            k.rnnBackward({ ...f, dhs, dhT: null, dxw: o.dxw, dwh: o.dwh, dh0: o.dh0 });
          }
          return o;
        };
        const got = run(be);
        const want = run(jsBackend);
        for (const key of Object.keys(want) as (keyof typeof want)[]) same(got[key], want[key], `${kind} ${key}`, 1e-4);
      }
    });
  }
}
