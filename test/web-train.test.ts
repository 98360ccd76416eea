// "Train in this tab" without a browser: the page's training module (web/tab-train.ts, the training library
// writing into memory) trains a tiny model on pasted text, and the checkpoint tar it offers for download is read by
// `charlm sample --model FILE.tar` and by `tar`, served by `charlm serve` (in-process, port 0), exported and
// fine-tuned from; a damaged one is refused. The tar writer and reader round-trip and refuse damaged files.
// Fine-tuning a served model from its manifest and weights bytes (as the page fetches them) keeps its shape and
// tokenizer, records initFrom, and starts lower on the new text than a new model does.
// test/webgpu-browser.test.ts drives the same mode in headless Chromium.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { train } from "../src/api.js";
import { BEST, encodeCheckpoint, MANIFEST, WEIGHTS } from "../src/checkpoint/checkpoint.js";
import { decodeSafetensors } from "../src/checkpoint/safetensors.js";
import { readTar, writeTar } from "../src/checkpoint/tar.js";
import { CharlmError } from "../src/util/errors.js";
import { resolveTrainConfig } from "../src/train/config.js";
import { TAB_DEFAULTS, TAB_MODELS, trainInTab, type TabRun, type TabSource } from "../web/tab-train.js";
import { createServer } from "../src/server/app.js";
import { loadServedModels } from "../src/server/checkpoint-model.js";
import { Rng } from "../src/util/rng.js";
import type { FastifyInstance } from "fastify";
import { cli } from "./helpers/cli.js";

const TEXT = "the quick brown fox jumps over the lazy dog. ".repeat(150);

/** `charlm sample` on a checkpoint (a directory or a tar): 40 characters after "the ", seed 3, on js. */
const sampleCli = (model: string) =>
  cli("sample", "--model", model, "--prime", "the ", "--length", "40", "--seed", "3", "--backend", "js");

test("a tar of files reads back file for file; damage is refused with the file named", () => {
  const files: [string, Uint8Array][] = [
    ["charlm.json", new TextEncoder().encode('{"a":1}\n')],
    ["empty.bin", new Uint8Array(0)],
    ["block.bin", Uint8Array.from({ length: 1030 }, (_, i) => i % 251)],
  ];
  const tar = writeTar("run", files);
  assert.equal(tar.length % 512, 0);
  assert.deepEqual([...readTar(tar, "x.tar")], files);
  const bad = tar.slice();
  bad[10] ^= 1; // inside the first header's name
  assert.throws(
    () => readTar(bad, "x.tar"),
    (e: Error) => e instanceof CharlmError && /x\.tar: the header at byte 0 has a bad checksum/.test(e.message),
  );
  assert.throws(() => readTar(tar.slice(0, 1024), "x.tar"), /x\.tar: .*runs past the end|truncated/);
});

test("the page's training makes a checkpoint tar that charlm sample reads", async () => {
  const dir = mkdtempSync(join(tmpdir(), "charlm-tab-"));
  try {
    const lines: { type: string; step: number; loss?: number; valLoss?: number }[] = [];
    const run = await trainInTab(
      TEXT,
      { ...TAB_DEFAULTS, units: 24, embedding: 8, seqLength: 16, batchSize: 8, steps: 60, validateEvery: 20, lr: 2e-2 },
      { backend: "js", name: "fox.txt", onMetrics: (l) => lines.push(l) },
    );
    assert.equal(run.result.status, "finished");
    assert.equal(run.result.step, 60);
    const losses = lines.filter((l) => l.type === "step").map((l) => l.loss!);
    const vals = lines.filter((l) => l.type === "epoch").map((l) => l.valLoss!);
    assert.equal(losses.length, 12); // every 5 steps
    assert.equal(vals.length, 3); // every 20 steps
    assert.ok(losses.at(-1)! < losses[0] - 0.4, `training loss ${losses[0]} -> ${losses.at(-1)}`);
    assert.ok(vals.at(-1)! < vals[0], `validation loss ${vals.join(" -> ")}`);

    const file = join(dir, "fox.tar");
    writeFileSync(file, run.store.tar("charlm-fox"));
    const r = await sampleCli(file);
    assert.equal(r.code, 0, r.err);
    assert.equal(Array.from(r.out.replace(/\n$/, "")).length, 44); // the text, then a newline
    assert.ok(r.out.startsWith("the "));
    // The same bytes as a directory: `tar xf` gives the checkpoint charlm sample reads the same way.
    execFileSync("tar", ["xf", file, "-C", dir]);
    const d = await sampleCli(join(dir, "charlm-fox"));
    assert.equal(d.out, r.out);
    writeFileSync(join(dir, "fox.txt"), TEXT);
    const e = await cli(
      "eval",
      "--model",
      file,
      "--data",
      join(dir, "fox.txt"),
      "--split",
      "validation",
      "--backend",
      "js",
      "--json",
    );
    assert.equal(e.code, 0, e.err);
    assert.ok((JSON.parse(e.out) as { nats: number }).nats < losses[0]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// The page's GPT (TAB_MODELS "GPT 4 x 128", made small): a transformer with the page's context as its window, whose
// tar charlm sample reads
test("the page trains a GPT too: its loss falls and its tar samples", async () => {
  const dir = mkdtempSync(join(tmpdir(), "charlm-tab-gpt-"));
  try {
    const losses: number[] = [];
    const gpt = TAB_MODELS["GPT 4 x 128"];
    assert.equal(gpt.type, "gpt");
    const s = { ...TAB_DEFAULTS, ...gpt, embedding: 16, layers: 1, heads: 2, seqLength: 16, batchSize: 8 };
    const run = await trainInTab(
      TEXT,
      { ...s, steps: 40, validateEvery: 20, lr: 1e-2 },
      {
        backend: "js",
        name: "fox.txt",
        onMetrics: (l) => (l.type === "step" ? losses.push(l.loss) : undefined),
      },
    );
    assert.equal(run.result.status, "finished");
    assert.deepEqual(run.model.config, {
      type: "gpt",
      vocabSize: run.vocab.size,
      blockSize: 16,
      nLayer: 1,
      nHead: 2,
      nEmbd: 16,
      dropout: 0.1,
      bias: false,
    });
    assert.ok(losses.at(-1)! < losses[0] - 0.4, `training loss ${losses[0]} -> ${losses.at(-1)}`);
    const file = join(dir, "fox.tar");
    writeFileSync(file, run.store.tar("charlm-fox-gpt"));
    const r = await sampleCli(file);
    assert.equal(r.code, 0, r.err);
    assert.ok(r.out.startsWith("the ") && Array.from(r.out.replace(/\n$/, "")).length === 44, r.out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("Stop (or the Minutes box) ends the page's run with its best validation's weights", async () => {
  // The held-out tenth follows 'a' with 'b' where the rest never does: past the first validations the model gets
  // worse on it. Stop is pressed mid-epoch once it has: the run validates where it stands, ends with the best
  // weights, and the checkpoint's model is the best one (the Minutes box aborts the same way).
  const text = "aaab".repeat(900) + "abbbbbbb".repeat(50);
  const stop = new AbortController();
  const vals: number[] = [];
  const lines: { type: string; step: number }[] = [];
  const run = await trainInTab(
    text,
    { ...SMALL, steps: 400, validateEvery: 10 },
    {
      backend: "js",
      name: "ab.txt",
      signal: stop.signal,
      onMetrics: (l) => {
        lines.push(l);
        if (l.type === "epoch") vals.push(l.valLoss);
        if (l.type === "step" && l.step % 10 === 5 && vals.length > 1 && vals.at(-1)! > Math.min(...vals)) stop.abort();
      },
    },
  );
  assert.ok(stop.signal.aborted, `the validation loss never rose: ${vals.join(" ")}`);
  assert.equal(run.result.status, "stopped");
  assert.equal(run.result.step % 10, 5);
  assert.deepEqual(lines.at(-1), { ...lines.at(-1), type: "eval", step: run.result.step });
  assert.ok(run.result.bestValLoss! < vals.at(-1)!);
  const tensors = (name: string) =>
    [...decodeSafetensors(run.store.files.get(name)!, name).tensors].map(([k, t]) => [k, Array.from(t.data)]);
  assert.deepEqual(tensors(WEIGHTS), tensors(BEST));
  assert.equal(json(run.store.files.get(MANIFEST)).status, "stopped");
});

test("text too short for one batch is refused with the sizes and the fix", async () => {
  await assert.rejects(
    trainInTab("abc", TAB_DEFAULTS, { backend: "js" }),
    /the text has 3 characters; one batch of 32 x 65 needs at least \d+: paste more text/,
  );
});

// ---- fine-tuning a served model

const SMALL = { ...TAB_DEFAULTS, units: 24, embedding: 8, seqLength: 16, batchSize: 8, validateEvery: 20, lr: 2e-2 };
// The same words as TEXT in another order: what a model of TEXT knows helps here from the first step.
const NEW_TEXT = "over the lazy dog jumps the quick brown fox. ".repeat(60);
const json = (bytes: Uint8Array | undefined): Record<string, unknown> =>
  JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;

/** A tab run as the server would serve it: charlm.json and model.safetensors, as the page fetches them. */
const served = (run: TabRun, name: string): TabSource => ({
  name,
  manifest: json(run.store.files.get(MANIFEST)),
  weights: run.store.files.get(WEIGHTS)!,
});

/** A model trained by the library in memory (any tokenizer), as the server would serve it. */
async function libraryModel(name: string, options: Parameters<typeof train>[0]): Promise<TabSource> {
  const t = await train({
    text: TEXT,
    units: 16,
    embedding: 8,
    layers: 1,
    seqLength: 16,
    batchSize: 8,
    epochs: 1,
    stepsPerEpoch: 10,
    sampleLength: 0,
    backend: "js",
    ...options,
  });
  const { manifest, files } = await encodeCheckpoint({
    model: t.model,
    vocab: t.vocab,
    trainConfig: t.config,
    step: t.result.step,
  });
  return {
    name,
    manifest: JSON.parse(JSON.stringify(manifest)) as Record<string, unknown>,
    weights: files.get(WEIGHTS)!,
  };
}

test("the page fine-tunes a served model: its shape and tokenizer, initFrom recorded, lower loss than a new model", async () => {
  const dir = mkdtempSync(join(tmpdir(), "charlm-tabft-"));
  try {
    const source = await trainInTab(TEXT, { ...SMALL, steps: 120 }, { backend: "js", name: "fox.txt" });
    const from = served(source, "fox");
    // 2,430 training characters: 142 windows of 17, 17 batches of 8 a pass; three passes. The page's own rate for
    // a new model is 5e-3 here: the fine-tuning run takes the rate the source was trained at (2e-2).
    const steps = 3 * 17;
    const page = { ...SMALL, lr: 5e-3, steps };
    const tuned = await trainInTab(NEW_TEXT, page, { backend: "js", name: "dog.txt", from });
    const fresh = await trainInTab(NEW_TEXT, { ...SMALL, steps }, { backend: "js" });
    assert.equal(tuned.result.status, "finished");
    assert.equal(tuned.result.step, steps);
    assert.equal(tuned.config.lr, SMALL.lr);
    // With no cap on its passes, a fine-tuning run stops early as on the command line; a new model runs its steps.
    assert.deepEqual(
      [tuned.config.patience, fresh.config.patience],
      [resolveTrainConfig({ preset: "cpu" }).patience, 0],
    );
    assert.ok(tuned.config.patience > 0);
    assert.deepEqual(tuned.unknown, []);

    const m = json(tuned.store.files.get(MANIFEST));
    assert.deepEqual(m.initFrom, { path: "server:fox", step: 120, format: "charlm" });
    assert.deepEqual(m.model, from.manifest.model);
    assert.deepEqual(m.tokenizer, from.manifest.tokenizer);
    assert.equal((m.train as { lr: number }).lr, tuned.config.lr);

    // The first validation (after one pass) and the best: the fine-tuned model is ahead of a new one throughout.
    const [t0, f0] = [tuned.result.history[0].valLoss, fresh.result.history[0].valLoss];
    assert.equal(tuned.result.history[0].step, fresh.result.history[0].step);
    assert.ok(t0 < f0 - 0.3, `validation after ${tuned.result.history[0].step} steps: fine-tuned ${t0}, new ${f0}`);
    assert.ok(tuned.result.bestValLoss! < fresh.result.bestValLoss!);

    // The downloaded tar is an ordinary checkpoint to the CLI.
    const file = join(dir, "dog.tar");
    writeFileSync(file, tuned.store.tar("charlm-dog"));
    const r = await cli(
      "sample",
      "--model",
      file,
      ...["--prime", "the ", "--length", "20", "--seed", "1", "--backend", "js"],
    );
    assert.equal(r.code, 0, r.err);
    assert.ok(r.out.startsWith("the "), r.out);

    // A character the source's vocabulary lacks, and no <unk> to read it as: one line naming it and the way out.
    await assert.rejects(
      trainInTab(NEW_TEXT.replace(/o/g, "Z"), { ...SMALL, steps: 5 }, { backend: "js", from }),
      (e: Error) =>
        e instanceof CharlmError &&
        /^pasted text: has 1 character the model in server:fox does not know \('Z' \(U\+005A\)\) and its vocabulary has no <unk>; remove them, start from a new model, or give them new rows with charlm train --init-from \(its checkpoint\) --extend-vocab$/.test(
          e.message,
        ),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("fine-tuning in the tab reads what the source lacks as <unk>, for a char vocabulary with it and for words", async () => {
  // A char vocabulary of 12 symbols, <unk> one of them: most letters are <unk> already, and so is the new "Z".
  const chars = await libraryModel("chars", { maxVocab: 12 });
  const c = await trainInTab(NEW_TEXT + "ZZZ", { ...SMALL, steps: 10 }, { backend: "js", from: chars });
  assert.equal(c.result.status, "finished");
  assert.ok(c.unknown.includes("Z"), c.unknown.join(""));
  assert.deepEqual(json(c.store.files.get(MANIFEST)).tokenizer, chars.manifest.tokenizer);

  // A word tokenizer: the steps are counted in words, the new word "cat" is <unk>, and the tokenizer stays.
  const words = await libraryModel("words", { tokenizer: "word" });
  const w = await trainInTab(NEW_TEXT.replace(/dog/g, "cat"), { ...SMALL, steps: 10 }, { backend: "js", from: words });
  assert.equal(w.result.status, "finished");
  assert.equal(w.vocab.kind, "word");
  const m = json(w.store.files.get(MANIFEST));
  assert.deepEqual(m.tokenizer, words.manifest.tokenizer);
  assert.equal((m.initFrom as { path: string }).path, "server:words");
  assert.ok(w.result.history.every((h) => Number.isFinite(h.valLoss)));
  // The tar's loss curve says what its losses are per: tokens for words, characters for a char model.
  const curve = (run: TabRun): string => new TextDecoder().decode(run.store.files.get("loss.svg"));
  assert.match(curve(w), /loss \(nats\/token\)/);
  assert.doesNotMatch(curve(w), /nats\/char/);
  assert.match(curve(c), /loss \(nats\/char\)/);
});

test("fine-tuning in the tab keeps a bpe tokenizer and a GPT's shape, and the tar samples", async () => {
  const dir = mkdtempSync(join(tmpdir(), "charlm-tabft2-"));
  try {
    const sources = [
      await libraryModel("bpe", { tokenizer: "bpe", vocabSize: 300 }),
      await libraryModel("gpt", { type: "gpt", layers: 1, heads: 2, embedding: 16, seqLength: 16 }),
    ];
    for (const from of sources) {
      const run = await trainInTab(NEW_TEXT, { ...SMALL, steps: 8 }, { backend: "js", from });
      assert.equal(run.result.status, "finished", from.name);
      const m = json(run.store.files.get(MANIFEST));
      assert.deepEqual(m.model, from.manifest.model, from.name);
      assert.deepEqual(m.tokenizer, from.manifest.tokenizer, from.name);
      assert.equal((m.initFrom as { path: string }).path, `server:${from.name}`);
      assert.ok(
        run.result.history.every((h) => Number.isFinite(h.valLoss)),
        from.name,
      );
      const file = join(dir, `${from.name}.tar`);
      writeFileSync(file, run.store.tar(`charlm-${from.name}`));
      const r = await cli("sample", "--model", file, "--prime", "the ", "--length", "12", "--seed", "2");
      assert.equal(r.code, 0, `${from.name}: ${r.err}`);
      assert.ok(r.out.startsWith("the "), `${from.name}: ${r.out}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("serve, export and train --init-from read the tab's tar as they read a directory; a damaged one is refused", async () => {
  const dir = mkdtempSync(join(tmpdir(), "charlm-tabtar-"));
  let app: FastifyInstance | undefined;
  try {
    const run = await trainInTab(TEXT, { ...SMALL, steps: 20 }, { backend: "js", name: "fox.txt" });
    const file = join(dir, "charlm-fox.tar");
    writeFileSync(file, run.store.tar("charlm-fox"));
    const sampled = await cli(
      ...["sample", "--model", file, "--prime", "the ", "--length", "40", "--seed", "3", "--backend", "js"],
    );
    assert.equal(sampled.code, 0, sampled.err);

    // Served in-process as `charlm serve --model FILE.tar` serves it: listed under the name less ".tar", the same
    // text as `charlm sample` for the seed, and the files the page downloads (to sample or fine-tune) from the tar.
    app = createServer(await loadServedModels([file]), { rng: new Rng(1) });
    await app.listen({ port: 0, host: "127.0.0.1" });
    const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
    const { models } = (await (await fetch(`${base}/api/models`)).json()) as { models: Record<string, unknown>[] };
    assert.deepEqual(
      models.map((m) => [m.name, m.steps, m.inBrowser]),
      [["charlm-fox", 20, true]],
    );
    const res = await fetch(`${base}/api/generate`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ prime: "the ", length: 40, seed: 3 }),
    });
    assert.equal(res.status, 200);
    assert.equal("the " + ((await res.json()) as { text: string }).text + "\n", sampled.out);
    const weights = new Uint8Array(await (await fetch(`${base}/api/models/charlm-fox/weights`)).arrayBuffer());
    assert.deepEqual(weights, run.store.files.get(WEIGHTS));
    const manifest = (await (await fetch(`${base}/api/models/charlm-fox/manifest`)).json()) as Record<string, unknown>;
    assert.deepEqual(manifest.model, json(run.store.files.get(MANIFEST)).model);
    // The page fine-tunes it from those two downloads, as from a directory's.
    const tab = await trainInTab(
      NEW_TEXT,
      { ...SMALL, steps: 5 },
      { backend: "js", from: { name: "charlm-fox", manifest, weights } },
    );
    assert.equal(tab.result.step, 5);
    assert.deepEqual(json(tab.store.files.get(MANIFEST)).initFrom, {
      path: "server:charlm-fox",
      step: 20,
      format: "charlm",
    });
    const svg = await fetch(`${base}/api/models/charlm-fox/loss.svg`);
    assert.equal(svg.headers.get("content-type"), "image/svg+xml");
    assert.equal(await svg.text(), new TextDecoder().decode(run.store.files.get("loss.svg")));

    // export (with Adam's state, read from the tar too) and fine-tuning start from it as from a directory.
    const torch = await cli("export", file, "--to", "torch", join(dir, "torch"));
    assert.equal(torch.code, 0, torch.err);
    assert.match(torch.out, /optimizer\.safetensors \(Adam at step 20\)/);
    const onnx = await cli("export", file, "--to", "onnx", join(dir, "onnx"));
    assert.equal(onnx.code, 0, onnx.err);
    writeFileSync(join(dir, "dog.txt"), NEW_TEXT);
    const tuned = await cli(
      "train",
      ...["--init-from", file, "--data", join(dir, "dog.txt"), "--epochs", "1", "--backend", "js"],
      ...["--seq-length", "16", "--batch-size", "8", "--quiet", "--out", join(dir, "tuned")],
    );
    assert.equal(tuned.code, 0, tuned.err);
    assert.deepEqual(JSON.parse(readFileSync(join(dir, "tuned", MANIFEST), "utf8")).initFrom, {
      path: file,
      step: 20,
      format: "charlm",
    });

    // One byte of the weights changed: every reader refuses it in the same one line, naming the file in the tar.
    const files = readTar(readFileSync(file), file);
    files.get(WEIGHTS)![files.get(WEIGHTS)!.length - 1] ^= 1; // a bit of the last weight
    const bad = join(dir, "bad.tar");
    writeFileSync(bad, writeTar("charlm-fox", files));
    const refusal =
      /^charlm \w+: \S*bad\.tar:model\.safetensors: contents do not match the SHA-256 in charlm\.json \(edited or corrupted\); restore the file or train again$/m;
    for (const args of [
      ["sample", "--model", bad, "--backend", "js"],
      ["serve", "--model", bad, "--port", "0"],
      ["export", bad, "--to", "torch", join(dir, "bad-torch")],
      ["train", "--init-from", bad, "--data", join(dir, "dog.txt"), "--backend", "js", "--out", join(dir, "bad-run")],
    ]) {
      const r = await cli(...args);
      assert.equal(r.code, 1, `${args[0]}: ${r.err}`);
      assert.match(r.err, refusal);
    }
  } finally {
    await app?.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
