// `charlm export --to onnx`, run by onnxruntime (the npm package onnxruntime-node, CPU) against charlm's own
// forward pass and generation step, for LSTM, GRU, SimpleRNN and the GPT with and without biases: the whole-sequence
// logits and final states, and the stateful one-step form (T = 1 with the state, or the GPT's key/value cache, fed
// back; past the GPT's window, its last blockSize tokens from an empty cache, as charlm's step() does).
// Measured differences are printed as diagnostics; asserted within 1e-4 (float32 on both sides).

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as ort from "onnxruntime-node";
import type { RnnState } from "../src/models/rnn.js";
import { saveCheckpoint } from "../src/checkpoint/checkpoint.js";
import { cli } from "./helpers/cli.js";
import { MODELS, maxDiff, randomModel, vocab } from "./helpers/interop.js";

const B = 3;
const N = 11; // tokens per row: past the GPTs' blockSize of 8, so the windowed form is exercised

const ids = (rows: number[][]): ort.Tensor =>
  new ort.Tensor("int64", BigInt64Array.from(rows.flat().map(BigInt)), [rows.length, rows[0].length]);
const zeros = (dims: number[]): ort.Tensor =>
  new ort.Tensor("float32", new Float32Array(dims.reduce((a, b) => a * b, 1)), dims);

for (const [i, [name, config]] of MODELS.entries()) {
  test(`onnx export: ${name} in onnxruntime gives charlm's logits, whole sequence and step by step`, async (t) => {
    const root = mkdtempSync(join(tmpdir(), "charlm-onnx-"));
    const model = randomModel(config, 200 + i);
    await saveCheckpoint(join(root, "ck"), { model, vocab });
    const r = await cli("export", join(root, "ck"), "--to", "onnx", join(root, "onnx"));
    assert.equal(r.code, 0, r.err);
    const meta = JSON.parse(readFileSync(join(root, "onnx", "charlm-onnx.json"), "utf8"));
    assert.deepEqual(meta.vocab, vocab.toJSON());
    const session = await ort.InferenceSession.create(join(root, "onnx", "model.onnx"));
    const rows = Array.from({ length: B }, (_, b) => Array.from({ length: N }, (_, n) => (b * 5 + n * 3) % vocab.size));
    const flat = (rows2: number[][]) => Int32Array.from(rows2.flat());

    let worstSeq: number;
    let worstStep = 0;
    if (config.type === "rnn") {
      const { layers: L, units: H } = config;
      const lstm = config.cell === "lstm";
      const state0 = (): Record<string, ort.Tensor> => ({
        h0: zeros([L, B, H]),
        ...(lstm ? { c0: zeros([L, B, H]) } : {}),
      });
      // Whole sequence from zeros: logits (B, N, V) and the final states.
      const out = await session.run({ tokens: ids(rows), ...state0() });
      const want = model.forward(flat(rows), B, N);
      worstSeq = maxDiff(out.logits.data as Float32Array, want.logits.data);
      const st = want.state as RnnState;
      const hN = out.hN.data as Float32Array;
      for (let l = 0; l < L; l++) {
        assert.ok(maxDiff(hN.subarray(l * B * H, (l + 1) * B * H), st.h[l].data) <= 1e-4, `hN layer ${l}`);
        if (lstm)
          assert.ok(maxDiff((out.cN.data as Float32Array).subarray(l * B * H, (l + 1) * B * H), st.c[l].data) <= 1e-4);
      }
      // One step at a time, the state fed back, against charlm's step().
      let feeds = state0();
      let s = model.initialState!(B);
      for (let n = 0; n < N; n++) {
        const col = rows.map((row) => [row[n]]);
        const o = await session.run({ tokens: ids(col), ...feeds });
        const w = model.step!(flat(col), s);
        s = w.state;
        worstStep = Math.max(worstStep, maxDiff(o.logits.data as Float32Array, w.logits.data));
        feeds = { h0: o.hN, ...(lstm ? { c0: o.cN } : {}) };
      }
    } else {
      const { blockSize: S, nLayer: L, nHead: nH, nEmbd: C } = config;
      const empty = () => ({ past_k: zeros([L, B, nH, 0, C / nH]), past_v: zeros([L, B, nH, 0, C / nH]) });
      // A whole window from an empty cache: the first blockSize tokens.
      const win = rows.map((row) => row.slice(0, S));
      const out = await session.run({ tokens: ids(win), ...empty() });
      worstSeq = maxDiff(out.logits.data as Float32Array, model.forward(flat(win), B, S).logits.data);
      assert.deepEqual(out.present_k.dims, [L, B, nH, S, C / nH]);
      // Generation: one token at a time with the cache fed back, then, once the window is full, the last blockSize
      // tokens from an empty cache, against charlm's step() (which does the same), taking the last position's logits.
      let s = model.initialState!(B);
      let cache: Record<string, ort.Tensor> = empty();
      const V = config.vocabSize;
      for (let n = 0; n < N; n++) {
        const w = model.step!(flat(rows.map((row) => [row[n]])), s);
        s = w.state;
        const ctx = n < S ? rows.map((row) => [row[n]]) : rows.map((row) => row.slice(n + 1 - S, n + 1));
        const o = await session.run({ tokens: ids(ctx), ...(n < S ? cache : empty()) });
        cache = { past_k: o.present_k, past_v: o.present_v };
        const Tn = ctx[0].length;
        const logits = o.logits.data as Float32Array;
        const last = new Float32Array(B * V);
        for (let b = 0; b < B; b++) last.set(logits.subarray((b * Tn + Tn - 1) * V, (b * Tn + Tn) * V), b * V);
        worstStep = Math.max(worstStep, maxDiff(last, w.logits.data));
      }
    }
    t.diagnostic(
      `${name}: max |onnxruntime - charlm| logits ${worstSeq.toExponential(2)} (sequence), ${worstStep.toExponential(2)} (step by step)`,
    );
    assert.ok(worstSeq <= 1e-4, `${name}: sequence logits differ by ${worstSeq}`);
    assert.ok(worstStep <= 1e-4, `${name}: step logits differ by ${worstStep}`);
  });
}

// onnxruntime is lenient in places; the reference checker (Debian's python3-onnx) holds the files to the spec: every
// model is well formed and its shapes infer (full_check), at IR version 8 and opset 17.
const onnxMissing =
  spawnSync("/usr/bin/python3", ["-c", "import onnx"], { stdio: "ignore" }).status === 0
    ? false
    : "/usr/bin/python3 cannot import onnx; install Debian's python3-onnx to run the ONNX checker";

test("onnx export: every model passes onnx.checker with full shape inference", { skip: onnxMissing }, async () => {
  const root = mkdtempSync(join(tmpdir(), "charlm-onnx-"));
  const files: string[] = [];
  for (const [i, [name, config]] of MODELS.entries()) {
    await saveCheckpoint(join(root, name), { model: randomModel(config, i), vocab });
    assert.equal((await cli("export", join(root, name), "--to", "onnx", join(root, `${name}.onnx`))).code, 0);
    files.push(join(root, `${name}.onnx`, "model.onnx"));
  }
  const check = [
    "import onnx, sys",
    "for f in sys.argv[1:]:",
    "    m = onnx.load(f)",
    "    onnx.checker.check_model(m, full_check=True)",
    "    assert m.ir_version == 8 and m.opset_import[0].version == 17, f",
  ].join("\n");
  const r = spawnSync("/usr/bin/python3", ["-c", check, ...files], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
});
