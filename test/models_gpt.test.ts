// The GPT model: config validation, parameter names and counts, PyTorch golden numbers (logits, loss, every
// gradient), causality, the key/value-cache step() against forward(), determinism, and a tiny model memorising a
// string. Per-backend tests run on every backend available.
//
// Golden fixture: test/fixtures/golden_gpt.json, written by scripts/golden/make_gpt_golden.py (PyTorch, float64;
// V=11, blockSize=T=8, C=12, 2 heads, 2 layers, bias on, B=3). charlm computes in float32. Measured: logits within
// 1.0e-6 (js) and 9.1e-7 (wasm), loss within 1.4e-8, gradients within 2.5e-7 (js) and 1.7e-7 (wasm), largest
// gradient 0.26. Asserted: logits 1e-4, loss 1e-5, gradients 1e-5 absolute + 1e-3 relative (the recurrent models'
// golden bar), which leaves room for faster kernels without hiding a wrong rule.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { listBackends, liveNodes, useBackend } from "../src/engine/index.js";
import { parseModelConfig, type GptModelConfig } from "../src/models/config.js";
import type { GptModel } from "../src/models/gpt.js";
import { buildModel, countParams, summary } from "../src/models/registry.js";
import { Tensor } from "../src/engine/tensor.js";
import { Adam } from "../src/train/optimizers.js";
import { Rng } from "../src/util/rng.js";

function config(over: Partial<GptModelConfig> = {}): GptModelConfig {
  return { type: "gpt", vocabSize: 13, blockSize: 8, nLayer: 2, nHead: 2, nEmbd: 8, dropout: 0, bias: true, ...over };
}

function gpt(over: Partial<GptModelConfig>, seed: number): GptModel {
  return buildModel(config(over), new Rng(seed)) as GptModel;
}

function randomTokens(n: number, V: number, rng: Rng): Int32Array {
  const ids = new Int32Array(n);
  for (let i = 0; i < n; i++) ids[i] = rng.int(V);
  return ids;
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

interface Golden {
  config: GptModelConfig;
  B: number;
  T: number;
  tokens: number[];
  targets: number[];
  weights: Record<string, { shape: number[]; data: number[] }>;
  logits: number[];
  loss: number;
  grads: Record<string, { shape: number[]; data: number[] }>;
}

const golden = JSON.parse(readFileSync(new URL("./fixtures/golden_gpt.json", import.meta.url), "utf8")) as Golden;

// ---------------------------------------------------------------------------------------------------- structure

test("gpt config: defaults fill missing keys; unknown keys, bad sizes and heads are named", () => {
  const c = parseModelConfig({ type: "gpt", nLayer: 3 });
  assert.equal(c.nLayer, 3);
  assert.equal(c.blockSize, 256);
  assert.equal(c.bias, false);
  assert.throws(() => parseModelConfig({ type: "gpt", nLayers: 3 }), /unknown key "nLayers"; the keys are type, voc/);
  assert.throws(() => parseModelConfig({ type: "gpt", cell: "lstm" }), /unknown key "cell"/);
  assert.throws(() => parseModelConfig({ type: "gpt", nEmbd: 10, nHead: 3 }), /"nEmbd" 10 does not split into 3/);
  assert.throws(() => parseModelConfig({ type: "gpt", blockSize: 0 }), /"blockSize" is 0; use a positive integer/);
  assert.throws(() => parseModelConfig({ type: "gpt", dropout: -0.1 }), /"dropout" is -0.1/);
  assert.throws(() => parseModelConfig({ type: "gpt", bias: "yes" }), /"bias" is "yes"; use true or false/);
  assert.throws(() => parseModelConfig({ type: "transformer" }), /the known types are "rnn", "gpt"/);
});

test("gpt parameter names and shapes follow docs/models.md; bias false drops biases and betas", () => {
  const C = 8;
  const block = (l: number, bias: boolean): [string, number[]][] =>
    [
      [`h.${l}.ln1.gamma`, [C]],
      [`h.${l}.ln1.beta`, [C]],
      [`h.${l}.attn.wqkv`, [C, 3 * C]],
      [`h.${l}.attn.bqkv`, [3 * C]],
      [`h.${l}.attn.wo`, [C, C]],
      [`h.${l}.attn.bo`, [C]],
      [`h.${l}.ln2.gamma`, [C]],
      [`h.${l}.ln2.beta`, [C]],
      [`h.${l}.mlp.wfc`, [C, 4 * C]],
      [`h.${l}.mlp.bfc`, [4 * C]],
      [`h.${l}.mlp.wproj`, [4 * C, C]],
      [`h.${l}.mlp.bproj`, [C]],
    ].filter(([n]) => bias || !/\.(beta|b\w+)$/.test(n as string)) as [string, number[]][];
  for (const bias of [true, false]) {
    const want: [string, number[]][] = [
      ["wte", [13, C]],
      ["wpe", [8, C]],
      ...block(0, bias),
      ...block(1, bias),
      ["lnf.gamma", [C]],
      ...(bias ? [["lnf.beta", [C]] as [string, number[]]] : []),
      ["head.weight", [C, 13]],
    ];
    const model = gpt({ bias }, 0);
    assert.deepEqual(
      [...model.parameters()].map(([n, t]) => [n, t.shape]),
      want,
      `bias ${bias}`,
    );
    for (const t of model.parameters().values()) assert.ok(t.requiresGrad);
  }
  // rng null: same names, weights zero, LayerNorm gains one.
  const bare = buildModel(config(), null);
  for (const [name, t] of bare.parameters()) {
    assert.ok(
      t.data.every((v) => v === (name.endsWith(".gamma") ? 1 : 0)),
      name,
    );
  }
  // GPT-2 init: N(0, 0.02), the residual projections N(0, 0.02/sqrt(2L)).
  const big = gpt({ nEmbd: 64, nHead: 4, nLayer: 2 }, 1).parameters();
  const std = (name: string) => Math.sqrt(big.get(name)!.data.reduce((a, v) => a + v * v, 0) / big.get(name)!.size);
  assert.ok(Math.abs(std("h.0.mlp.wfc") - 0.02) < 0.001, `wfc std ${std("h.0.mlp.wfc")}`);
  assert.ok(Math.abs(std("h.1.attn.wo") - 0.01) < 0.001, `wo std ${std("h.1.attn.wo")}`);
});

test("gpt summary: one row per embedding, block, norm and head; nanoGPT's Shakespeare model count", () => {
  // Per block 12C² + 13C with biases; 12C² + 2C without.
  const small = gpt({}, 0);
  assert.equal(countParams(small), 13 * 8 + 8 * 8 + 2 * (12 * 64 + 13 * 8) + 2 * 8 + 8 * 13);
  const s = summary(small);
  assert.match(s, /^Model: "gpt"/);
  assert.match(s, /wte \(Embedding\)\s+\(None, None, 8\)\s+104/);
  assert.match(s, /h\.1 \(Block\)\s+\(None, None, 8\)\s+872/);
  assert.match(s, /head \(Dense\)\s+\(None, None, 13\)\s+104/);
  // nanoGPT's shakespeare_char (V 65, block 256, 6 x 384, bias off) prints 10.65M: it leaves out wpe and counts the
  // tied head once. Here the head is untied: 10,646,784 + 98,304 (wpe) + 24,960 (head).
  const shakespeare = buildModel(parseModelConfig({ type: "gpt" }), null);
  assert.equal(countParams(shakespeare), 10_770_048);
});

test("gpt forward rejects a context longer than blockSize and out-of-vocabulary ids", () => {
  const model = gpt({}, 0);
  assert.throws(() => model.forward(new Int32Array(9), 1, 9), /9 positions exceed the GPT's context of 8/);
  assert.throws(() => model.forward(Int32Array.of(1, 99), 1, 2), /token id 99 at \(0, 1\) is outside/);
  assert.throws(() => model.step(Int32Array.of(1), model.initialState(2)), /model state/);
  for (const stride of [0, 1.5, 1000]) {
    assert.throws(
      () => model.initialState(1, { windowStride: stride }),
      /window stride .* does not fit the GPT's context of \d+ \(blockSize\); pass 1 to \d+/,
    );
  }
  // stepFrom: ids held on the backend; once it has moved the window there, step() cannot continue the state
  const ids = Tensor.fromArray([3, 4], [2]);
  const state = model.initialState(1);
  assert.throws(() => model.stepFrom(ids, 2, 1, state), /1 ids from position 2 do not fit in 2/);
  const { logits } = model.stepFrom(ids, 1, 1, state);
  assert.deepEqual(logits.shape, [1, 13]);
  assert.throws(() => model.step(Int32Array.of(1), state), /stepFrom advanced this cache on the backend/);
});

// ---------------------------------------------------------------------------------------------------- per backend

for (const backend of await listBackends()) {
  test(`[${backend}] gpt matches PyTorch: logits, loss and every gradient`, async () => {
    await useBackend(backend);
    const g = golden;
    const model = buildModel(g.config, new Rng(0));
    const params = model.parameters();
    assert.deepEqual([...params.keys()].sort(), Object.keys(g.weights).sort());
    for (const [name, w] of Object.entries(g.weights)) {
      const p = params.get(name)!;
      assert.deepEqual(p.shape, w.shape, name);
      p.data.set(w.data);
    }
    const out = model.forward(Int32Array.from(g.tokens), g.B, g.T, { targets: Int32Array.from(g.targets) });
    assert.deepEqual(out.logits.shape, [g.B, g.T, g.config.vocabSize]);
    const dl = maxAbsDiff(out.logits.data, g.logits);
    assert.ok(dl < 1e-4, `logits differ by ${dl}`);
    assert.ok(Math.abs(out.loss!.item() - g.loss) < 1e-5, `loss ${out.loss!.item()} vs ${g.loss}`);
    out.loss!.backward();
    for (const [name, ref] of Object.entries(g.grads)) {
      const got = params.get(name)!.grad;
      assert.ok(got, `${name} has no gradient`);
      for (let i = 0; i < ref.data.length; i++) {
        const err = Math.abs(got[i] - ref.data[i]);
        assert.ok(err <= 1e-5 + 1e-3 * Math.abs(ref.data[i]), `d${name}[${i}]: ${got[i]} vs ${ref.data[i]}`);
      }
    }
  });

  test(`[${backend}] gpt is causal: changing a later token leaves every earlier logit unchanged`, async () => {
    await useBackend(backend);
    const model = gpt({}, 2);
    const T = 8;
    const a = randomTokens(2 * T, 13, new Rng(3));
    const ref = model.forward(a, 2, T).logits.data;
    for (const t of [0, 3, 7]) {
      const b = a.slice();
      b[T + t] = (b[T + t] + 1) % 13; // row 1, position t
      const got = model.forward(b, 2, T).logits.data;
      // Row 0 untouched entirely; row 1 before t bit-identical, at t changed.
      assert.equal(maxAbsDiff(got.subarray(0, (T + t) * 13), ref.subarray(0, (T + t) * 13)), 0, `t=${t}`);
      assert.ok(
        maxAbsDiff(got.subarray((T + t) * 13, (T + t + 1) * 13), ref.subarray((T + t) * 13, (T + t + 1) * 13)) > 0,
      );
    }
  });

  // With a window stride S a full window drops its S oldest tokens at once: the window then holds 5 - S + 1 and
  // grows back to 5 with cached steps; every step gives forward()'s logits on the window it holds.
  test(`[${backend}] gpt step() with its key/value cache gives forward()'s logits, past blockSize too, every window stride`, async () => {
    await useBackend(backend);
    for (const [bias, stride] of [
      [true, 1],
      [false, 1],
      [true, 2],
      [false, 4],
      [true, 5],
    ] as const) {
      const model = gpt({ bias, blockSize: 5 }, 4);
      // GPT-2's init (N(0, 0.02)) leaves every attention row near uniform, whatever the keys: larger query and key
      // weights make the attention depend on them (a stale key in the cache then shows)
      for (const [name, t] of model.parameters()) {
        if (name.endsWith("wqkv")) for (let i = 0; i < t.size; i++) t.data[i] *= 40;
      }
      const B = 2;
      const n = 14; // nine steps past the 5-token window: those rerun the window, or the part of it kept
      const seq = randomTokens(B * n, 13, new Rng(5));
      let state = model.initialState(B, { windowStride: stride });
      // stepFrom (the tokens given on the backend, as a GPU's sampler leaves them) from the same start: the same logits
      let fromState = model.initialState(B, { windowStride: stride });
      let w = 0; // tokens in the window
      const widths: number[] = [];
      for (let t = 0; t < n; t++) {
        const col = Int32Array.from({ length: B }, (_, b) => seq[b * n + t]);
        const out = model.step(col, state);
        state = out.state;
        const from = model.stepFrom(Tensor.fromArray([7, ...col], [B + 1]), 1, B, fromState);
        fromState = from.state;
        assert.ok(maxAbsDiff(from.logits.data, out.logits.data) < 1e-6, `stepFrom, stride ${stride}, t=${t}`);
        // forward() on the last w tokens, last position.
        w = w < 5 ? w + 1 : 5 - stride + 1;
        widths.push(w);
        const win = new Int32Array(B * w);
        for (let b = 0; b < B; b++) win.set(seq.subarray(b * n + t + 1 - w, b * n + t + 1), b * w);
        const full = model.forward(win, B, w).logits.data;
        for (let b = 0; b < B; b++) {
          const want = full.subarray((b * w + w - 1) * 13, (b * w + w) * 13);
          const d = maxAbsDiff(out.logits.data.subarray(b * 13, (b + 1) * 13), want);
          assert.ok(d < 1e-5, `bias ${bias} stride ${stride} t=${t} b=${b}: differs by ${d}`);
        }
      }
      // the schedule itself: stride 2 keeps 4 and grows back to 5 (every other step reruns 4 positions)
      if (stride === 2) assert.deepEqual(widths, [1, 2, 3, 4, 5, 4, 5, 4, 5, 4, 5, 4, 5, 4]);
    }
  });

  // prefill: T tokens per row in one pass, any T, from any state step() leaves (empty, part full, full, past the
  // window): the logits and window of stepping through the same tokens one at a time, with the stride's schedule,
  // and steps on from its state give step()'s logits too
  test(`[${backend}] gpt prefill() of any length gives step()'s logits, window and state, for every stride`, async () => {
    await useBackend(backend);
    const N = 5;
    const model = gpt({ blockSize: N }, 6);
    for (const [name, t] of model.parameters())
      if (name.endsWith("wqkv")) for (let i = 0; i < t.size; i++) t.data[i] *= 40;
    const B = 2;
    const n = 16;
    const seq = randomTokens(B * n, 13, new Rng(8)); // (B, n)
    const cols = (from: number, to: number) => {
      const out = new Int32Array(B * (to - from));
      for (let b = 0; b < B; b++) out.set(seq.subarray(b * n + from, b * n + to), b * (to - from));
      return out;
    };
    const windowOf = (s: { len: number; tokens: Int32Array }) =>
      Array.from({ length: B }, (_, b) => Array.from(s.tokens.subarray(b * N, b * N + s.len)));
    for (const stride of [1, 2, 5]) {
      const stepTo = (k: number) => {
        let state = model.initialState(B, { windowStride: stride });
        for (let t = 0; t < k; t++) state = model.step(cols(t, t + 1), state).state;
        return state;
      };
      // the reference: every token stepped, the logits after each and the window then
      let state = model.initialState(B, { windowStride: stride });
      const want: { logits: Float32Array; window: number[][] }[] = [];
      for (let t = 0; t < n; t++) {
        const out = model.step(cols(t, t + 1), state);
        state = out.state;
        want.push({ logits: out.logits.data, window: windowOf(state) });
      }
      for (const from of [0, 3, 5, 7]) {
        for (const T of [1, 2, 4, 5, 6, 9]) {
          const at = `stride ${stride}, ${T} tokens after ${from}`;
          const out = model.prefill(cols(from, from + T), B, T, stepTo(from));
          const last = want[from + T - 1];
          assert.ok(maxAbsDiff(out.logits.data, last.logits) < 1e-5, `${at}: logits`);
          assert.deepEqual(windowOf(out.state), last.window, `${at}: window`);
          let s = out.state;
          for (let t = from + T; t < Math.min(from + T + 2, n); t++) {
            const next = model.step(cols(t, t + 1), s);
            s = next.state;
            assert.ok(maxAbsDiff(next.logits.data, want[t].logits) < 1e-5, `${at}: the step to ${t} after it`);
          }
        }
      }
    }
    // 8 tokens through a window of 5 at stride 2: it fills, drops 2 at the 6th (4 held), grows to 5, drops again
    assert.equal(model.prefill(cols(0, 8), B, 8, model.initialState(B, { windowStride: 2 })).state.len, 4);
    assert.throws(() => model.prefill(cols(0, 0), B, 0, model.initialState(B)), /at least 1 token per row, not 0/);
    const bad = cols(0, 2);
    bad[3] = 13;
    assert.throws(() => model.prefill(bad, B, 2, model.initialState(B)), /token id 13 at \(1, 1\) is outside/);
    assert.throws(
      () => model.prefill(cols(0, 2), B, 3, model.initialState(B)),
      /4 tokens do not fill a \(2, 3\) batch/,
    );
  });

  test(`[${backend}] gpt: same seed, same weights and the same losses over Adam steps with dropout`, async () => {
    await useBackend(backend);
    const run = (seed: number) => {
      const rng = new Rng(seed);
      const model = gpt({ dropout: 0.2 }, seed);
      const weights = [...model.parameters().values()].map((t) => t.data.slice());
      const opt = new Adam(model.parameters());
      const losses: number[] = [];
      const live = liveNodes();
      for (let i = 0; i < 4; i++) {
        const x = randomTokens(4 * 8, 13, rng);
        const y = randomTokens(4 * 8, 13, rng);
        const { loss } = model.forward(x, 4, 8, { targets: y, training: true, rng });
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
    // Dropout is active in training: the same batch twice gives two losses; outside training, one.
    const model = gpt({ dropout: 0.2 }, 1);
    const x = randomTokens(8, 13, new Rng(1));
    const y = randomTokens(8, 13, new Rng(2));
    const rng = new Rng(3);
    const l1 = model.forward(x, 1, 8, { targets: y, training: true, rng }).loss!.item();
    const l2 = model.forward(x, 1, 8, { targets: y, training: true, rng }).loss!.item();
    assert.notEqual(l1, l2);
    const e1 = model.forward(x, 1, 8, { targets: y }).loss!.item();
    assert.equal(model.forward(x, 1, 8, { targets: y }).loss!.item(), e1);
  });

  test(`[${backend}] a tiny gpt overfits a short string with Adam and regenerates it with step()`, async () => {
    await useBackend(backend);
    const text = "to be, or not to be: that is the question. ";
    const chars = [...new Set(text)].sort();
    const ids = Int32Array.from(text, (ch) => chars.indexOf(ch));
    const T = ids.length - 1;
    const model = gpt({ vocabSize: chars.length, blockSize: 48, nLayer: 2, nHead: 2, nEmbd: 32 }, 7);
    const opt = new Adam(model.parameters());
    let loss = Infinity;
    let steps = 0;
    for (; steps < 200 && loss > 0.05; steps++) {
      const out = model.forward(ids.subarray(0, T), 1, T, { targets: ids.subarray(1), training: true });
      for (const t of model.parameters().values()) t.zeroGrad();
      out.loss!.backward();
      opt.step(0.01);
      loss = out.loss!.item();
    }
    assert.ok(loss < 0.1, `loss ${loss} after ${steps} steps; a 43-character string should be memorised`);
    let state = model.initialState(1);
    let id = ids[0];
    let out = chars[id];
    for (let t = 0; t < T; t++) {
      const r = model.step(Int32Array.of(id), state);
      state = r.state;
      id = r.logits.data.indexOf(Math.max(...r.logits.data));
      out += chars[id];
    }
    assert.equal(out, text);
  });
}
