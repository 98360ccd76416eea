// Every op, on every available backend: the forward against a float64 reference on random inputs of odd sizes,
// the backward against central finite differences (gradcheck: float32 forward, float64 projection and
// differences, step 1e-2, |a - n| <= 1e-4 + 1e-2 max(|a|, |n|); see src/engine/gradcheck.ts).

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as E from "../src/engine/index.js";
import {
  Tensor,
  gradcheck,
  listBackends,
  loadBackend,
  withBackend,
  type GradcheckOptions,
} from "../src/engine/index.js";
import { Rng } from "../src/util/rng.js";
import {
  assertClose,
  f64,
  rand,
  refAttention,
  refBroadcast,
  refCrossEntropy,
  refLayerNorm,
  refMatmul,
  refSoftmaxRows,
} from "./engine-ref.js";

function check(f: (...xs: Tensor[]) => Tensor | Tensor[], inputs: Tensor[], opts: GradcheckOptions = {}): void {
  const r = gradcheck(f, inputs, opts);
  assert.ok(r.ok, `gradcheck failed: worst ${JSON.stringify(r.worst)} (max rel ${r.maxRelError})`);
}

for (const name of await listBackends()) {
  const backend = await loadBackend(name);
  const on = (fn: () => void) => () => withBackend(backend, fn);

  describe(`engine ops on ${name}`, () => {
    test(
      "matmul: 2-d with every transpose, leading dims flattened",
      on(() => {
        const rng = new Rng(1);
        const [M, K, N] = [5, 7, 3];
        for (const transA of [false, true]) {
          for (const transB of [false, true]) {
            const a = rand(rng, transA ? [K, M] : [M, K]);
            const b = rand(rng, transB ? [N, K] : [K, N]);
            const c = E.matmul(a, b, { transA, transB });
            assert.deepEqual(c.shape, [M, N]);
            assertClose(c.data, refMatmul(f64(a), f64(b), M, K, N, transA, transB), 1e-5, 1e-6, "matmul");
            check((x, y) => E.matmul(x, y, { transA, transB }), [a, b]);
          }
        }
        // sizes past the js kernel's cache tiles (128 rows, 256 columns of B), odd on purpose
        const [m, k, n] = [9, 301, 263];
        for (const transA of [false, true]) {
          for (const transB of [false, true]) {
            const a = rand(rng, transA ? [k, m] : [m, k], -1, 1, false);
            const b = rand(rng, transB ? [n, k] : [k, n], -1, 1, false);
            const want = refMatmul(f64(a), f64(b), m, k, n, transA, transB);
            assertClose(E.matmul(a, b, { transA, transB }).data, want, 1e-4, 1e-4, "large matmul");
          }
        }
        const a3 = rand(rng, [3, 5, 7]);
        const w = rand(rng, [7, 4]);
        const y = E.matmul(a3, w);
        assert.deepEqual(y.shape, [3, 5, 4]);
        assertClose(y.data, refMatmul(f64(a3), f64(w), 15, 7, 4), 1e-5, 1e-6, "matmul leading dims");
        check((x, v) => E.matmul(x, v), [a3, w]);
      }),
    );

    test(
      "linear: x · w + b over leading dims, the same bits as matmul then add; gradients; bad shapes refused",
      on(() => {
        const rng = new Rng(11);
        const x = rand(rng, [3, 5, 7]);
        const w = rand(rng, [7, 4]);
        const b = rand(rng, [4]);
        const y = E.linear(x, w, b);
        assert.deepEqual(y.shape, [3, 5, 4]);
        const want = refMatmul(f64(x), f64(w), 15, 7, 4).map((v, i) => v + b.data[i % 4]);
        assertClose(y.data, want, 1e-5, 1e-6, "linear");
        assert.deepEqual(y.data, E.add(E.matmul(x, w), b).data);
        check((u, v, c) => E.linear(u, v, c), [x, w, b]);
        assert.throws(
          () => E.linear(x, rand(rng, [6, 4]), b),
          /^Error: linear: x \[3, 5, 7\] and w \[6, 4\] do not chain/,
        );
        assert.throws(() => E.linear(x, w, rand(rng, [5])), /^Error: linear: the bias is \[5\], w has 4 columns/);
        assert.throws(() => E.linear(x, rand(rng, [2, 7, 4]), b), /^Error: linear: w must be 2-d/);
      }),
    );

    test(
      "matmul: batched (..., M, K) x (..., K, N) with transposes",
      on(() => {
        const rng = new Rng(2);
        for (const [transA, transB] of [
          [false, false],
          [false, true],
          [true, false],
          [true, true],
        ]) {
          const a = rand(rng, transA ? [3, 7, 5] : [3, 5, 7]);
          const b = rand(rng, transB ? [3, 4, 7] : [3, 7, 4]);
          const c = E.matmul(a, b, { transA, transB });
          assert.deepEqual(c.shape, [3, 5, 4]);
          const ref: number[] = [];
          for (let p = 0; p < 3; p++) {
            ref.push(
              ...refMatmul(
                f64(a).slice(p * 35, (p + 1) * 35),
                f64(b).slice(p * 28, (p + 1) * 28),
                5,
                7,
                4,
                transA,
                transB,
              ),
            );
          }
          assertClose(c.data, ref, 1e-5, 1e-6, "batched matmul");
          check((x, y) => E.matmul(x, y, { transA, transB }), [a, b]);
        }
      }),
    );

    test(
      "add, sub, mul broadcast and reduce their gradients over broadcast axes",
      on(() => {
        const rng = new Rng(3);
        const pairs: [number[], number[]][] = [
          [
            [3, 5, 7],
            [3, 5, 7],
          ],
          [[3, 5, 7], [7]],
          [
            [3, 5, 7],
            [5, 1],
          ],
          [
            [3, 1, 7],
            [5, 1],
          ],
          [[1, 5], [3, 5, 7].slice(0, 2)],
          [[3, 5], []],
        ];
        const ops = [
          [E.add, (x: number, y: number) => x + y],
          [E.sub, (x: number, y: number) => x - y],
          [E.mul, (x: number, y: number) => x * y],
        ] as const;
        for (const [sa, sb] of pairs) {
          for (const [op, f] of ops) {
            const a = rand(rng, sa);
            const b = rand(rng, sb);
            const y = op(a, b);
            const ref = refBroadcast(a, b, f);
            assert.deepEqual(y.shape, ref.shape);
            assertClose(y.data, ref.data, 1e-6, 1e-6, `${op.name} ${sa} ${sb}`);
            check((x, z) => op(x, z), [a, b]);
            check((x, z) => op(z, x), [a, b]);
          }
        }
      }),
    );

    test(
      "scale and the elementwise nonlinearities",
      on(() => {
        const rng = new Rng(4);
        const x = rand(rng, [3, 5, 7], -2, 2);
        // keep relu's inputs away from its kink, where a central difference is meaningless
        for (let i = 0; i < x.size; i++) if (Math.abs(x.data[i]) < 0.05) x.data[i] = 0.3;
        const pos = rand(rng, [3, 5, 7], 0.5, 2);
        const cases: [string, (t: Tensor) => Tensor, (v: number) => number, Tensor][] = [
          ["scale", (t) => E.scale(t, -1.7), (v) => -1.7 * v, x],
          ["sigmoid", E.sigmoid, (v) => 1 / (1 + Math.exp(-v)), x],
          ["tanh", E.tanh, Math.tanh, x],
          ["exp", E.exp, Math.exp, x],
          ["log", E.log, Math.log, pos],
          ["relu", E.relu, (v) => Math.max(v, 0), x],
          ["gelu", E.gelu, (v) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))), x],
        ];
        for (const [label, op, f, input] of cases) {
          assertClose(op(input).data, f64(input).map(f), 1e-5, 1e-6, label);
          check((t) => op(t), [input]);
        }
      }),
    );

    test(
      "softmax over the last axis",
      on(() => {
        const rng = new Rng(5);
        const x = rand(rng, [3, 5, 7], -3, 3);
        const y = E.softmax(x);
        assertClose(y.data, refSoftmaxRows(f64(x), 7), 1e-5, 1e-7, "softmax");
        check((t) => E.softmax(t), [x]);
      }),
    );

    test(
      "softmaxCrossEntropy: mean nats, stable for large logits, gradient",
      on(() => {
        const rng = new Rng(6);
        const x = rand(rng, [3, 5, 7], -3, 3);
        const targets = Int32Array.from({ length: 15 }, () => rng.int(7));
        const loss = E.softmaxCrossEntropy(x, targets);
        assert.deepEqual(loss.shape, []);
        assertClose([loss.item()], [refCrossEntropy(f64(x), targets, 7)], 1e-5, 1e-6, "cross-entropy");
        check((t) => E.softmaxCrossEntropy(t, targets), [x]);
        // logits of 1e4 would overflow exp without the max shift
        const big = Tensor.fromArray([1e4, 0, -1e4, 1e4], [2, 2]);
        const l = E.softmaxCrossEntropy(big, Int32Array.from([1, 0]));
        assertClose([l.item()], [(1e4 + 2e4) / 2], 1e-6, 0, "large logits");
        assert.throws(
          () =>
            E.softmaxCrossEntropy(
              x,
              Int32Array.from({ length: 15 }, () => 7),
            ),
          /outside/,
        );
      }),
    );

    test(
      "embedding gathers rows and scatter-adds repeated ids",
      on(() => {
        const rng = new Rng(7);
        const w = rand(rng, [7, 5]);
        const ids = Int32Array.from([1, 3, 1, 6, 0, 2, 1, 3, 5]);
        const y = E.embedding(w, ids, [3, 3]);
        assert.deepEqual(y.shape, [3, 3, 5]);
        const ref: number[] = [];
        for (const id of ids) ref.push(...f64(w).slice(id * 5, id * 5 + 5));
        assertClose(y.data, ref, 0, 0, "embedding");
        check((t) => E.embedding(t, ids, [3, 3]), [w]);
        assert.throws(() => E.embedding(w, Int32Array.from([7]), [1]), /outside/);
      }),
    );

    test(
      "concat, slice and split along every axis",
      on(() => {
        const rng = new Rng(8);
        const a = rand(rng, [3, 5, 7]);
        for (let axis = 0; axis < 3; axis++) {
          const shapeB = [3, 5, 7];
          shapeB[axis] = 2;
          const b = rand(rng, shapeB);
          const c = E.concat([a, b], axis);
          const back = E.split(c, axis, [a.shape[axis], 2]);
          assertClose(back[0].data, a.data, 0, 0, "split 0");
          assertClose(back[1].data, b.data, 0, 0, "split 1");
          check((x, y) => E.concat([x, y], axis), [a, b]);
          check((x) => E.slice(x, axis, 1, 3), [a]);
        }
        // slice against an index-by-index reference
        const s = E.slice(a, 1, 2, 4);
        const ref: number[] = [];
        for (let i = 0; i < 3; i++)
          for (let j = 2; j < 4; j++) for (let k = 0; k < 7; k++) ref.push(a.data[(i * 5 + j) * 7 + k]);
        assertClose(s.data, ref, 0, 0, "slice");
      }),
    );

    test(
      "sum and mean over one axis or all",
      on(() => {
        const rng = new Rng(9);
        const x = rand(rng, [3, 5, 7]);
        const d = f64(x);
        assertClose([E.sum(x).item()], [d.reduce((p, q) => p + q, 0)], 1e-5, 1e-5, "sum all");
        assertClose([E.mean(x).item()], [d.reduce((p, q) => p + q, 0) / 105], 1e-5, 1e-6, "mean all");
        const ref = new Array<number>(3 * 7).fill(0);
        for (let i = 0; i < 3; i++)
          for (let j = 0; j < 5; j++) for (let k = 0; k < 7; k++) ref[i * 7 + k] += d[(i * 5 + j) * 7 + k];
        const s1 = E.sum(x, 1);
        assert.deepEqual(s1.shape, [3, 7]);
        assertClose(s1.data, ref, 1e-5, 1e-6, "sum axis 1");
        assert.deepEqual(E.mean(x, -1, true).shape, [3, 5, 1]);
        check((t) => E.sum(t), [x]);
        check((t) => E.mean(t), [x]);
        for (const axis of [0, 1, 2]) {
          check((t) => E.sum(t, axis), [x]);
          check((t) => E.mean(t, axis, true), [x]);
        }
      }),
    );

    test(
      "reshape and transpose",
      on(() => {
        const rng = new Rng(10);
        const x = rand(rng, [3, 5, 7]);
        const r = E.reshape(x, [5, -1]);
        assert.deepEqual(r.shape, [5, 21]);
        assert.equal(r.data, x.data, "reshape shares storage");
        check((t) => E.reshape(t, [7, 15]), [x]);
        const t02 = E.transpose(x, 0, 2);
        assert.deepEqual(t02.shape, [7, 5, 3]);
        for (let i = 0; i < 3; i++) {
          for (let j = 0; j < 5; j++) {
            for (let k = 0; k < 7; k++) assert.equal(t02.data[(k * 5 + j) * 3 + i], x.data[(i * 5 + j) * 7 + k]);
          }
        }
        check((t) => E.transpose(t, 0, 2), [x]);
        check((t) => E.transpose(t, 2, 1), [x]);
        assert.throws(() => E.reshape(x, [4, 4]), /cannot view/);
      }),
    );

    test(
      "layerNorm over the last axis",
      on(() => {
        const rng = new Rng(11);
        const x = rand(rng, [3, 5, 7], -2, 2);
        const g = rand(rng, [7], 0.5, 1.5);
        const b = rand(rng, [7]);
        const y = E.layerNorm(x, g, b, 1e-5);
        assertClose(y.data, refLayerNorm(f64(x), f64(g), f64(b), 7, 1e-5), 1e-4, 1e-5, "layerNorm");
        check((p, q, r) => E.layerNorm(p, q, r), [x, g, b]);
      }),
    );

    test(
      "dropout: seeded, inverted scaling, identity when not training",
      on(() => {
        const rng = new Rng(12);
        const x = rand(rng, [3, 5, 7]);
        assert.equal(E.dropout(x, 0.5, new Rng(0), false), x);
        const y = E.dropout(x, 0.4, new Rng(5), true);
        let zeros = 0;
        for (let i = 0; i < x.size; i++) {
          if (y.data[i] === 0) zeros++;
          else assertClose([y.data[i]], [x.data[i] / 0.6], 1e-6, 0, "kept entries are scaled by 1/(1-p)");
        }
        assert.ok(zeros > 20 && zeros < 70, `about 40% dropped, got ${zeros}/105`);
        assert.deepEqual(E.dropout(x, 0.4, new Rng(5), true).data, y.data, "same seed, same mask");
        check((t) => E.dropout(t, 0.3, new Rng(3), true), [x]);
      }),
    );

    test(
      "causal self-attention: fused op against float64 and against the pieces",
      on(() => {
        const rng = new Rng(13);
        const [B, T, C, nH] = [2, 5, 6, 3];
        const q = rand(rng, [B, T, C]);
        const k = rand(rng, [B, T, C]);
        const v = rand(rng, [B, T, C]);
        const y = E.causalSelfAttention(q, k, v, nH);
        assertClose(y.data, refAttention(f64(q), f64(k), f64(v), B, T, C, nH), 1e-5, 1e-6, "attention");
        check((a, b, c) => E.causalSelfAttention(a, b, c, nH), [q, k, v]);
        // the same from batched matmul + causalMask + softmax
        const heads = (t: Tensor) => E.transpose(E.reshape(t, [B, T, nH, C / nH]), 1, 2); // (B, nH, T, hd)
        const pieces = (a: Tensor, b: Tensor, c: Tensor) => {
          const att = E.softmax(
            E.causalMask(E.scale(E.matmul(heads(a), heads(b), { transB: true }), 1 / Math.sqrt(C / nH))),
          );
          return E.reshape(E.transpose(E.matmul(att, heads(c)), 1, 2), [B, T, C]);
        };
        assertClose(pieces(q, k, v).data, y.data, 1e-5, 1e-6, "pieces");
        check(pieces, [q, k, v]);
      }),
    );
  });
}
