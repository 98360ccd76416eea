// charlm -> PyTorch -> charlm: `charlm export --to torch`, python/charlm_torch.py loading the export into torch.nn
// modules (and saving torch's own state_dict back as an export), `charlm import`. For LSTM, GRU, SimpleRNN and the
// GPT with and without biases, over a pruned vocabulary with "<unk>": torch's logits match charlm's (float32 both,
// tolerance 1e-4) and the imported model's logits are bit-identical to the original's. Damaged and foreign exports
// are refused with one line. Needs /usr/bin/python3 with torch (Debian's python3-torch); skipped without it.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { TORCH_MANIFEST, TORCH_WEIGHTS, loadTorchExport } from "../src/interop/torch-export.js";
import type { LanguageModel } from "../src/models/contract.js";
import { MANIFEST, loadCheckpoint, loadOptimizerState, saveCheckpoint } from "../src/checkpoint/checkpoint.js";
import { createOptimizer, type Optimizer, type OptimizerState, type Param } from "../src/train/optimizers.js";
import { Rng } from "../src/util/rng.js";
import { cli } from "./helpers/cli.js";
import { MODELS, maxDiff, randomModel, vocab } from "./helpers/interop.js";

const PYTHON = "/usr/bin/python3";
const torchMissing =
  spawnSync(PYTHON, ["-c", "import torch"], { stdio: "ignore" }).status === 0
    ? false
    : `${PYTHON} cannot import torch; install Debian's python3-torch to run the PyTorch round trip`;

const tmp = (): string => mkdtempSync(join(tmpdir(), "charlm-torch-"));

/** An Adam that has taken `t` steps, with random moments (v >= 0) and non-default betas. */
async function randomAdam(model: LanguageModel, t: number): Promise<Optimizer> {
  const opt = createOptimizer("adam", model.parameters() as Map<string, Param>, { beta1: 0.8, beta2: 0.99 });
  const state = await opt.getState();
  const rng = new Rng(t);
  for (const [k, v] of state.slots)
    for (let i = 0; i < v.length; i++) v[i] = k.startsWith("v.") ? rng.random() : rng.random() - 0.5;
  opt.setState({ ...state, t });
  return opt;
}
const B = 3;
const T = 8;

test(
  "torch export: charlm -> torch -> charlm for LSTM, GRU, SimpleRNN and GPT (bias on, off)",
  { skip: torchMissing },
  async (t) => {
    const root = tmp();
    const tokens = Int32Array.from({ length: B * T }, (_, i) => (i * 7 + 3) % vocab.size); // "<unk>" (0) included
    const items: { export: string; tokens: number[]; B: number; T: number; resave: string }[] = [];
    const originals: LanguageModel[] = [];
    const optimizers: (OptimizerState | null)[] = [];
    for (const [i, [name, config]] of MODELS.entries()) {
      const model = randomModel(config, 100 + i);
      originals.push(model);
      // Adam's moments travel too (torch.optim.Adam's exp_avg, exp_avg_sq); the SimpleRNN goes without any.
      const optimizer = name === "rnn" ? null : await randomAdam(model, 7 + i);
      optimizers.push(optimizer ? await optimizer.getState() : null);
      await saveCheckpoint(join(root, name), { model, vocab, step: 40 + i, optimizer });
      const r = await cli("export", join(root, name), "--to", "torch", join(root, `${name}.torch`));
      assert.equal(r.code, 0, r.err);
      items.push({
        export: join(root, `${name}.torch`),
        tokens: [...tokens],
        B,
        T,
        resave: join(root, `${name}.resaved`),
      });
    }
    // One Python process for all models: load each export into torch.nn modules (load_state_dict, strict) and
    // torch.optim.Adam, run the tokens, and save the module's and the optimizer's state_dict again as a new export.
    const job = join(root, "job.json");
    writeFileSync(job, JSON.stringify({ out: join(root, "torch.json"), items }));
    execFileSync(PYTHON, [fileURLToPath(new URL("../python/charlm_torch.py", import.meta.url)), "logits", job], {
      stdio: "pipe",
    });
    const torchOut = JSON.parse(readFileSync(join(root, "torch.json"), "utf8")) as { items: { logits: number[] }[] };

    for (const [i, [name]] of MODELS.entries()) {
      const want = originals[i].forward(tokens, B, T).logits.data;
      const vsTorch = maxDiff(want, torchOut.items[i].logits);
      t.diagnostic(`${name}: max |charlm - torch| logit difference ${vsTorch.toExponential(2)}`);
      assert.ok(vsTorch <= 1e-4, `${name}: torch's logits differ from charlm's by ${vsTorch}`);

      const r = await cli("import", join(root, `${name}.resaved`), "--out", join(root, `${name}.back`));
      assert.equal(r.code, 0, r.err);
      const back = await loadCheckpoint(join(root, `${name}.back`));
      assert.deepEqual(back.vocab.serialize(), vocab.serialize(), `${name}: vocabulary`);
      assert.equal(back.manifest.step, 40 + i, `${name}: step`);
      assert.deepEqual(back.manifest.model, MODELS[i][1], `${name}: config`);
      for (const [p, w] of originals[i].parameters()) {
        assert.deepEqual(back.model.parameters().get(p)!.data, w.data, `${name}: ${p} changed on the round trip`);
      }
      assert.equal(maxDiff(back.model.forward(tokens, B, T).logits.data, want), 0, `${name}: logits`);
      const opt = await loadOptimizerState(back.files);
      if (!optimizers[i]) assert.equal(opt, null);
      else {
        assert.equal(opt!.t, optimizers[i]!.t, `${name}: Adam's step`);
        assert.deepEqual(opt!.hyper, optimizers[i]!.hyper, `${name}: Adam's scalars`);
        assert.deepEqual(opt!.slots, optimizers[i]!.slots, `${name}: Adam's moments changed on the round trip`);
      }
    }
  },
);

test("torch export: the state_dict has PyTorch's names and layouts, and the LSTM's bias_hh is zero", async () => {
  const root = tmp();
  const model = randomModel(MODELS[0][1], 1);
  await saveCheckpoint(join(root, "ck"), { model, vocab });
  assert.equal((await cli("export", join(root, "ck"), "--to", "torch", join(root, "ex"))).code, 0);
  const { readSafetensors } = await import("../src/checkpoint/checkpoint.js");
  const sd = (await readSafetensors(join(root, "ex", TORCH_WEIGHTS))).tensors;
  assert.deepEqual(
    [...sd.keys()],
    [
      "embedding.weight",
      ...[0, 1].flatMap((l) => ["weight_ih", "weight_hh", "bias_ih", "bias_hh"].map((k) => `rnn.${k}_l${l}`)),
      "dense.weight",
      "dense.bias",
    ],
  );
  const wx = model.parameters().get("rnn.0.wx")!; // (E, 4H)
  const ih = sd.get("rnn.weight_ih_l0")!; // (4H, E)
  assert.deepEqual(ih.shape, [28, 5]);
  assert.equal(ih.data[3 * 5 + 2], wx.data[2 * 28 + 3]);
  assert.deepEqual(Array.from(sd.get("rnn.bias_hh_l1")!.data), new Array(28).fill(0));
  const m = JSON.parse(readFileSync(join(root, "ex", TORCH_MANIFEST), "utf8"));
  assert.deepEqual(m.vocab, { chars: vocab.chars, unk: 0 });
  assert.equal(m.torch.module, "CharRNN");
});

test("torch export: bad input is refused with one line naming the file and the fix", async () => {
  const root = tmp();
  const model = randomModel(MODELS[0][1], 2);
  await saveCheckpoint(join(root, "ck"), { model, vocab });
  const oneLine = (r: { code: number; err: string }, re: RegExp) => {
    assert.notEqual(r.code, 0);
    assert.match(r.err, re);
    assert.equal(r.err.trim().split("\n").length, 1, r.err);
  };
  // Writing an export over a checkpoint would destroy it.
  oneLine(await cli("export", join(root, "ck"), "--to", "torch", join(root, "ck")), /holds a charlm checkpoint/);
  oneLine(await cli("export", join(root, "ck"), "--to", "torch"), /takes a checkpoint and an output directory/);
  oneLine(
    await cli("import", join(root, "ck"), "--out", join(root, "x")),
    /no charlm-torch\.json.*not a PyTorch export/,
  );
  oneLine(await cli("import", join(root, "nowhere"), "--out", join(root, "x")), /no such directory/);

  const ex = join(root, "ex");
  assert.equal((await cli("export", join(root, "ck"), "--to", "torch", ex)).code, 0);
  oneLine(
    await cli("export", join(root, "ck"), "--to", "torch", ex),
    /already holds an export \(charlm-torch\.json\).*--force/,
  );
  assert.equal((await cli("import", ex, "--out", join(root, "ck2"))).code, 0);
  oneLine(await cli("import", ex, "--out", join(root, "ck2")), /already holds a checkpoint.*--force/);

  // A flipped byte in the weights: the SHA-256 in the JSON catches it.
  const wfile = join(ex, TORCH_WEIGHTS);
  const good = readFileSync(wfile);
  const bad = Buffer.from(good);
  bad[bad.length - 3] ^= 0x40;
  writeFileSync(wfile, bad);
  oneLine(await cli("import", ex, "--out", join(root, "y")), /model\.safetensors: contents do not match the SHA-256/);
  writeFileSync(wfile, good.subarray(0, good.length - 4));
  oneLine(await cli("import", ex, "--out", join(root, "y")), /bytes but charlm-torch\.json says .*truncated/);
  writeFileSync(wfile, good);

  // The JSON says GRU but the weights are an LSTM's: the tensors do not fit, named.
  const mfile = join(ex, TORCH_MANIFEST);
  const manifest = JSON.parse(readFileSync(mfile, "utf8"));
  writeFileSync(mfile, JSON.stringify({ ...manifest, model: { ...manifest.model, cell: "gru" } }));
  oneLine(
    await cli("import", ex, "--out", join(root, "y")),
    /rnn\.weight_ih_l0 has shape \[28,5\] but .*gru.* needs \[21,5\]/,
  );
  writeFileSync(mfile, JSON.stringify({ ...manifest, version: 9 }));
  oneLine(await cli("import", ex, "--out", join(root, "y")), /version 9 is not supported/);
  writeFileSync(mfile, "{ not json");
  oneLine(await cli("import", ex, "--out", join(root, "y")), /not valid JSON/);
  writeFileSync(mfile, JSON.stringify({ ...manifest, vocab: { chars: vocab.chars.slice(1), unk: -1 } }));
  await assert.rejects(loadTorchExport(ex), /vocabulary has 19 symbols but the model expects 20/);
  assert.ok(!readFileSync(join(root, "ck", MANIFEST), "utf8").includes("charlm-torch-export"));
});
