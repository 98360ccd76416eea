// The recurrent models: initialisers, parameter names and shapes, config validation, summary, step() against
// forward(), determinism, and a tiny model overfitting a short string. Run on every backend available.

import { test } from "node:test";
import assert from "node:assert/strict";

import { listBackends, liveNodes, useBackend } from "../src/engine/index.js";
import { parseModelConfig, type RnnModelConfig } from "../src/models/config.js";
import { buildModel, countParams, summary } from "../src/models/registry.js";
import {
  configFromLayers,
  dense,
  dropout,
  embedding,
  gru,
  lstm,
  sequential,
  simpleRNN,
} from "../src/models/sequential.js";
import { PREFILL_CHUNK, type RnnModel, type RnnState } from "../src/models/rnn.js";
import { Tensor } from "../src/engine/tensor.js";
import { Dropout } from "../src/nn/dropout.js";
import { glorotUniform, lstmBias, orthogonal } from "../src/nn/init.js";
import { LayerNorm } from "../src/nn/layernorm.js";
import { Adam } from "../src/train/optimizers.js";
import { CharlmError } from "../src/util/errors.js";
import { Rng } from "../src/util/rng.js";

const CELLS = ["lstm", "gru", "rnn"] as const;

function config(over: Partial<RnnModelConfig> = {}): RnnModelConfig {
  return { type: "rnn", cell: "lstm", vocabSize: 13, embedding: 6, units: 9, layers: 2, dropout: 0, ...over };
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function randomTokens(n: number, V: number, rng: Rng): Int32Array {
  const ids = new Int32Array(n);
  for (let i = 0; i < n; i++) ids[i] = rng.int(V);
  return ids;
}

/** The names of the ops that made t, through its whole graph. */
function graphOps(t: Tensor): Set<string> {
  const ops = new Set<string>();
  const seen = new Set<unknown>();
  const walk = (x: Tensor) => {
    if (!x.node || seen.has(x.node)) return;
    seen.add(x.node);
    ops.add(x.node.op);
    x.node.inputs.forEach(walk);
  };
  walk(t);
  return ops;
}

// ---------------------------------------------------------------------------------------------------- initialisers

test("glorot_uniform stays inside ±sqrt(6/(fanIn+fanOut)) and fills the range", () => {
  const w = glorotUniform(30, 120, new Rng(1));
  const limit = Math.sqrt(6 / 150);
  let max = 0;
  for (const v of w) max = Math.max(max, Math.abs(v));
  assert.ok(max <= limit && max > 0.95 * limit, `max ${max}, limit ${limit}`);
});

test("orthogonal gives orthonormal rows (wide) or columns (tall)", () => {
  for (const [rows, cols] of [
    [7, 28],
    [28, 7],
    [16, 16],
    [100, 130], // more than one 64-vector block: the blocked projections run
    [150, 70],
  ]) {
    const w = orthogonal(rows, cols, new Rng(2));
    const k = Math.min(rows, cols);
    const at = (v: number, i: number) => (rows <= cols ? w[v * cols + i] : w[i * cols + v]);
    const n = Math.max(rows, cols);
    for (let a = 0; a < k; a++) {
      for (let b = 0; b < k; b++) {
        let dot = 0;
        for (let i = 0; i < n; i++) dot += at(a, i) * at(b, i);
        assert.ok(Math.abs(dot - (a === b ? 1 : 0)) < 1e-5, `(${rows}x${cols}) <${a},${b}> = ${dot}`);
      }
    }
  }
});

test("LSTM bias is zero except the forget gate (i, f, g, o order), Keras unit_forget_bias", () => {
  const b = lstmBias(3);
  assert.deepEqual(Array.from(b), [0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0]);
});

test("LayerNorm normalises the last axis; Dropout is the identity outside training and keeps the mean in it", () => {
  const ln = new LayerNorm(4);
  const y = ln.forward(Tensor.fromArray([1, 2, 3, 4, -2, 0, 2, 4], [2, 4]));
  for (let r = 0; r < 2; r++) {
    const row = Array.from(y.data.subarray(r * 4, r * 4 + 4));
    const mean = row.reduce((a, v) => a + v, 0) / 4;
    const varc = row.reduce((a, v) => a + (v - mean) ** 2, 0) / 4;
    assert.ok(Math.abs(mean) < 1e-6 && Math.abs(varc - 1) < 1e-4, `row ${r}: mean ${mean}, var ${varc}`);
  }
  assert.deepEqual([...ln.params.keys()], ["gamma", "beta"]);
  const drop = new Dropout(0.25);
  const x = Tensor.full([10000], 1);
  assert.equal(drop.forward(x, new Rng(1), false), x);
  const d = drop.forward(x, new Rng(1), true);
  const zeros = d.data.filter((v) => v === 0).length;
  assert.ok(zeros > 2300 && zeros < 2700, `${zeros} of 10000 dropped at rate 0.25`);
  assert.ok(d.data.every((v) => v === 0 || Math.abs(v - 4 / 3) < 1e-6));
});

// ---------------------------------------------------------------------------------------------------- structure

test("parameter names, shapes and counts follow docs/models.md", () => {
  const expect: Record<string, [string, number[]][]> = {
    lstm: [
      ["embedding.weight", [13, 6]],
      ["rnn.0.wx", [6, 36]],
      ["rnn.0.wh", [9, 36]],
      ["rnn.0.b", [36]],
      ["rnn.1.wx", [9, 36]],
      ["rnn.1.wh", [9, 36]],
      ["rnn.1.b", [36]],
      ["dense.weight", [9, 13]],
      ["dense.bias", [13]],
    ],
    gru: [
      ["embedding.weight", [13, 6]],
      ["rnn.0.wx", [6, 27]],
      ["rnn.0.wh", [9, 27]],
      ["rnn.0.bx", [27]],
      ["rnn.0.bh", [27]],
      ["rnn.1.wx", [9, 27]],
      ["rnn.1.wh", [9, 27]],
      ["rnn.1.bx", [27]],
      ["rnn.1.bh", [27]],
      ["dense.weight", [9, 13]],
      ["dense.bias", [13]],
    ],
    rnn: [
      ["embedding.weight", [13, 6]],
      ["rnn.0.wx", [6, 9]],
      ["rnn.0.wh", [9, 9]],
      ["rnn.0.b", [9]],
      ["rnn.1.wx", [9, 9]],
      ["rnn.1.wh", [9, 9]],
      ["rnn.1.b", [9]],
      ["dense.weight", [9, 13]],
      ["dense.bias", [13]],
    ],
  };
  for (const cell of CELLS) {
    const model = buildModel(config({ cell }), new Rng(0));
    const got = [...model.parameters()].map(([n, t]) => [n, t.shape]);
    assert.deepEqual(got, expect[cell], cell);
    for (const t of model.parameters().values()) assert.ok(t.requiresGrad);
  }
  // rng null: same names and shapes, all zeros (for loading weights without paying for the init).
  const bare = buildModel(config({ cell: "gru" }), null);
  assert.deepEqual(
    [...bare.parameters()].map(([n, t]) => [n, t.shape]),
    expect.gru,
  );
  for (const t of bare.parameters().values()) assert.ok(t.data.every((v) => v === 0));
  const lstm = buildModel(config(), new Rng(0));
  // The forget-gate block of each LSTM bias starts at 1.
  assert.deepEqual(Array.from(lstm.parameters().get("rnn.1.b")!.data.subarray(9, 18)), new Array(9).fill(1));
});

test("summary prints layers, output shapes and Keras' parameter counts", () => {
  // Keras: Embedding(65, 64) 4,160; LSTM(256) on 64 inputs 4 * (64*256 + 256*256 + 256) = 328,704; Dense(65) 16,705.
  const model = buildModel(config({ vocabSize: 65, embedding: 64, units: 256, layers: 1 }), new Rng(0));
  const s = summary(model);
  assert.match(s, /embedding \(Embedding\)\s+\(None, None, 64\)\s+4,160/);
  assert.match(s, /rnn\.0 \(LSTM\)\s+\(None, None, 256\)\s+328,704/);
  assert.match(s, /dense \(Dense\)\s+\(None, None, 65\)\s+16,705/);
  assert.match(s, /Total params: 349,569/);
  assert.equal(countParams(model), 349569);
  // GRU (reset-after, two biases) matches Keras' GRU: 3 * (D*H + H*H + 2H); SimpleRNN: D*H + H*H + H.
  const gru = buildModel(config({ cell: "gru", vocabSize: 65, embedding: 64, units: 256, layers: 1 }), new Rng(0));
  assert.match(summary(gru), /rnn\.0 \(GRU\)\s+\(None, None, 256\)\s+247,296/);
  const rnn = buildModel(config({ cell: "rnn", vocabSize: 65, embedding: 64, units: 256, layers: 2 }), new Rng(0));
  assert.match(summary(rnn), /rnn\.1 \(SimpleRNN\)\s+\(None, None, 256\)\s+131,328/);
});

test("sequential() takes the Keras layer vocabulary and refuses stacks it cannot build", () => {
  const model = sequential([embedding(13, 6), gru(9), dropout(0.1), gru(9), dropout(0.1), dense(13)], new Rng(0));
  assert.deepEqual(model.config, { ...config({ cell: "gru", dropout: 0.1 }) });
  const same = buildModel(config({ cell: "gru", dropout: 0.1 }), new Rng(0));
  assert.deepEqual(
    [...model.parameters().values()].map((t) => Array.from(t.data)),
    [...same.parameters().values()].map((t) => Array.from(t.data)),
  );
  assert.equal(configFromLayers([embedding(5, 4), simpleRNN(8), dense(5)]).cell, "rnn");
  assert.throws(() => configFromLayers([lstm(8), dense(5)]), /must start with embedding/);
  assert.throws(() => configFromLayers([embedding(5, 4), lstm(8), gru(8), dense(5)]), /layer 2 \(gru\): every/);
  assert.throws(() => configFromLayers([embedding(5, 4), lstm(8), dense(6)]), /dense\(6\) must predict the 5/);
  assert.throws(() => configFromLayers([embedding(5, 4), lstm(8), dropout(0.1), lstm(8), dense(5)]), /same dropout/);
  assert.throws(() => configFromLayers([embedding(5, 4), dense(5)]), /add at least one lstm/);
  assert.throws(() => configFromLayers([embedding(5, 4)]), /must end with dense/);
});

test("config validation names the bad key", () => {
  assert.throws(() => parseModelConfig({ type: "rnn", celll: "lstm" }), /unknown key "celll"/);
  assert.throws(() => parseModelConfig({ type: "rnn", cell: "tcn" }), /"cell" is "tcn"/);
  assert.throws(() => parseModelConfig({ type: "rnn", units: 0 }), /"units" is 0; use a positive integer/);
  assert.throws(() => parseModelConfig({ type: "rnn", dropout: 1 }), /"dropout" is 1/);
  assert.throws(() => parseModelConfig({ type: "gpt2" }), CharlmError);
  assert.equal(parseModelConfig({ type: "rnn", cell: "gru" }).cell, "gru");
});

test("forward rejects out-of-vocabulary ids and a wrong state with a clear message", () => {
  const model = buildModel(config(), new Rng(0));
  assert.throws(() => model.forward(Int32Array.of(1, 99), 1, 2), /token id 99 at \(0, 1\) is outside/);
  assert.throws(() => model.forward(Int32Array.of(1, 2), 1, 2, { state: model.initialState!(3) }), /model state/);
  // A batch the ids do not fill, in forward() and in prefill() (a prime of several tokens at once).
  assert.throws(
    () => model.forward(Int32Array.of(1, 2, 3), 2, 2),
    /3 tokens do not fill a \(2, 2\) batch; pass B\*T ids/,
  );
  const prime = Int32Array.of(1, 2, 3);
  assert.throws(() => model.prefill!(prime, 2, 2, model.initialState!(2)), /3 tokens do not fill a \(2, 2\) batch/);
});

// ---------------------------------------------------------------------------------------------------- per backend

for (const backend of await listBackends()) {
  test(`[${backend}] step() token by token gives the logits of one forward pass, state included`, async () => {
    await useBackend(backend);
    for (const cell of CELLS) {
      const model = buildModel(config({ cell }), new Rng(3));
      const B = 3;
      const T = 7;
      const V = 13;
      const tokens = randomTokens(B * T, V, new Rng(4));
      const full = model.forward(tokens, B, T);
      let state = model.initialState!(B);
      for (let t = 0; t < T; t++) {
        const col = new Int32Array(B);
        for (let b = 0; b < B; b++) col[b] = tokens[b * T + t];
        const out = model.step!(col, state);
        state = out.state;
        for (let b = 0; b < B; b++) {
          for (let v = 0; v < V; v++) {
            const want = full.logits.data[(b * T + t) * V + v];
            const got = out.logits.data[b * V + v];
            assert.ok(Math.abs(got - want) < 1e-5, `${cell} b=${b} t=${t} v=${v}: ${got} vs ${want}`);
          }
        }
      }
      // The final states agree too, and carrying forward()'s state equals one longer forward.
      const a = full.state as RnnState;
      const s = state as RnnState;
      for (let l = 0; l < 2; l++) {
        for (let i = 0; i < a.h[l].size; i++) assert.ok(Math.abs(a.h[l].data[i] - s.h[l].data[i]) < 1e-5);
      }
      const half = model.forward(tokens.subarray(0, B * T), B, T, { state: a });
      assert.equal(half.logits.shape.join(","), `${B},${T},${V}`);
    }
  });

  // prefill: a prime in one pass over the sequence (folded into the first layer from 2V tokens, in chunks of
  // PREFILL_CHUNK past that), from a fresh state and from one steps left: the logits and state of stepping through it
  test(`[${backend}] prefill() gives the logits and state of step() token by token, in chunks past PREFILL_CHUNK`, async () => {
    await useBackend(backend);
    const V = 13;
    for (const cell of CELLS) {
      const model = buildModel(config({ cell, units: 6, embedding: 4 }), new Rng(3)) as RnnModel;
      const B = 2;
      const n = PREFILL_CHUNK + 300;
      const seq = randomTokens(B * n, V, new Rng(5)); // (B, n)
      const cols = (from: number, to: number) => {
        const out = new Int32Array(B * (to - from));
        for (let b = 0; b < B; b++) out.set(seq.subarray(b * n + from, b * n + to), b * (to - from));
        return out;
      };
      let state = model.initialState(B);
      const logits: Float32Array[] = [];
      const states: RnnState[] = [];
      for (let t = 0; t < n; t++) {
        const out = model.step(cols(t, t + 1), state);
        state = out.state;
        logits.push(out.logits.data);
        states.push(state);
      }
      for (const [from, to] of [
        [0, 1],
        [0, 5],
        [3, 40], // 37 tokens in a batch of 2: 74 >= 2V, folded
        [0, n], // two chunks
      ]) {
        const at = `${cell}, tokens ${from} .. ${to}`;
        const out = model.prefill(cols(from, to), B, to - from, from === 0 ? model.initialState(B) : states[from - 1]);
        assert.equal(out.logits.shape.join(","), `${B},${V}`);
        assert.ok(maxDiff(out.logits.data, logits[to - 1]) < 1e-5, `${at}: logits`);
        for (let l = 0; l < 2; l++) {
          assert.ok(maxDiff(out.state.h[l].data, states[to - 1].h[l].data) < 1e-5, `${at}: h of layer ${l}`);
          if (cell === "lstm") assert.ok(maxDiff(out.state.c[l].data, states[to - 1].c[l].data) < 1e-5, `${at}: c`);
        }
      }
      assert.throws(() => model.prefill(cols(0, 0), B, 0, model.initialState(B)), /at least 1 token per row, not 0/);
    }
  });

  test(`[${backend}] the embedding folded into the first layer: taken when a batch holds twice the vocabulary, same losses and gradients`, async () => {
    await useBackend(backend);
    const V = 13;
    for (const cell of CELLS) {
      const projected = `${cell}Projected`;
      const rng = new Rng(8);
      const [B, T] = [4, 7]; // 28 tokens >= 2 x 13
      const tokens = randomTokens(B * T, V, rng);
      const targets = randomTokens(B * T, V, rng);
      const run = (opts: { fold?: boolean }, b = B) => {
        const model = buildModel(config({ cell }), new Rng(9)) as RnnModel;
        const n = b * T;
        const { loss } = model.forward(tokens.subarray(0, n), b, T, { targets: targets.subarray(0, n), ...opts });
        const ops = graphOps(loss!);
        loss!.backward();
        const grads = [...model.parameters()].map(([name, t]) => [name, t.grad!.slice()] as const);
        return { loss: loss!.item(), grads, ops };
      };
      const folded = run({});
      const plain = run({ fold: false });
      // the second layer takes the plain op either way
      assert.ok(folded.ops.has(projected), `${cell}: ${[...folded.ops].join(" ")}`);
      assert.ok(!plain.ops.has(projected), `${cell}: ${[...plain.ops].join(" ")}`);
      assert.ok(Math.abs(folded.loss - plain.loss) < 1e-6, `${cell}: loss ${folded.loss} against ${plain.loss}`);
      folded.grads.forEach(([name, g], i) => {
        const want = plain.grads[i][1];
        for (let k = 0; k < g.length; k++) {
          const err = Math.abs(g[k] - want[k]);
          assert.ok(err <= 1e-5 + 1e-4 * Math.abs(want[k]), `${cell} ${name}[${k}]: ${g[k]} against ${want[k]}`);
        }
      });
      // 12 tokens < 2 x 13: not folded; nor when CHARLM_FOLD_EMBEDDING=0
      assert.ok(!run({}, 2).ops.has(projected));
      process.env.CHARLM_FOLD_EMBEDDING = "0";
      try {
        assert.ok(!run({}).ops.has(projected));
      } finally {
        delete process.env.CHARLM_FOLD_EMBEDDING;
      }
    }
  });

  test(`[${backend}] carrying state across two forward calls equals one forward over the whole sequence`, async () => {
    await useBackend(backend);
    const model = buildModel(config({ cell: "lstm" }), new Rng(5));
    const B = 2;
    const T = 8;
    const tokens = randomTokens(B * T, 13, new Rng(6));
    const full = model.forward(tokens, B, T).logits.data;
    const first = new Int32Array(B * 5);
    const second = new Int32Array(B * 3);
    for (let b = 0; b < B; b++) {
      first.set(tokens.subarray(b * T, b * T + 5), b * 5);
      second.set(tokens.subarray(b * T + 5, b * T + 8), b * 3);
    }
    const r1 = model.forward(first, B, 5);
    const r2 = model.forward(second, B, 3, { state: r1.state });
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < 3; t++) {
        for (let v = 0; v < 13; v++) {
          const want = full[(b * T + 5 + t) * 13 + v];
          assert.ok(Math.abs(r2.logits.data[(b * 3 + t) * 13 + v] - want) < 1e-5);
        }
      }
    }
  });

  test(`[${backend}] same seed: same initial weights and the same losses over a few Adam steps`, async () => {
    await useBackend(backend);
    const run = (seed: number) => {
      const rng = new Rng(seed);
      const model = buildModel(config({ cell: "gru", dropout: 0.2 }), rng) as RnnModel;
      const weights = [...model.parameters().values()].map((t) => t.data.slice());
      const opt = new Adam(model.parameters());
      const losses: number[] = [];
      // Counted from here: earlier tests' forward-only graphs were never backpropagated, so never released.
      const live = liveNodes();
      for (let i = 0; i < 4; i++) {
        const x = randomTokens(4 * 10, 13, rng);
        const y = randomTokens(4 * 10, 13, rng);
        const { loss } = model.forward(x, 4, 10, { targets: y, training: true, rng });
        for (const t of model.parameters().values()) t.zeroGrad();
        loss!.backward();
        opt.step(0.01);
        losses.push(loss!.item());
        assert.equal(liveNodes(), live, "backward releases the whole graph of the step");
      }
      return { weights, losses };
    };
    const a = run(11);
    const b = run(11);
    const c = run(12);
    assert.deepEqual(a.weights, b.weights);
    assert.deepEqual(a.losses, b.losses);
    assert.notDeepEqual(a.losses, c.losses);
    assert.ok(a.losses[3] < a.losses[0], `losses ${a.losses.join(", ")}`);
  });

  test(`[${backend}] a tiny model overfits a short string with Adam`, async () => {
    await useBackend(backend);
    for (const cell of CELLS) {
      const text = "to be, or not to be: that is the question. ";
      const chars = [...new Set(text)].sort();
      const ids = Int32Array.from(text, (ch) => chars.indexOf(ch));
      const model = buildModel(
        config({ cell, vocabSize: chars.length, embedding: 8, units: 32, layers: 1 }),
        new Rng(7),
      ) as RnnModel;
      const opt = new Adam(model.parameters());
      const T = ids.length - 1;
      let loss = Infinity;
      for (let i = 0; i < 150 && loss > 0.05; i++) {
        const out = model.forward(ids.subarray(0, T), 1, T, { targets: ids.subarray(1), training: true });
        for (const t of model.parameters().values()) t.zeroGrad();
        out.loss!.backward();
        opt.step(0.02);
        loss = out.loss!.item();
      }
      assert.ok(loss < 0.1, `${cell}: loss ${loss} after training; a 43-character string should be memorised`);
      // Greedy generation from the first character reproduces the string.
      let state = model.initialState(1);
      let id = ids[0];
      let out = chars[id];
      for (let t = 0; t < T; t++) {
        const r = model.step(Int32Array.of(id), state);
        state = r.state;
        id = r.logits.data.indexOf(Math.max(...r.logits.data));
        out += chars[id];
      }
      assert.equal(out, text, cell);
    }
  });
}
