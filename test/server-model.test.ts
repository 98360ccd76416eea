// The server with a real model: a small LSTM with fixed seeded weights, saved as a checkpoint, loaded the way
// `charlm serve` loads it, and asked over a real socket. The served text must be exactly what the library's
// sampler gives for the same seed; the `charlm serve` command itself is run once as a child process.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Vocab } from "../src/data/vocab.js";
import { WordTokenizer } from "../src/data/word.js";
import { buildModel, countParams } from "../src/models/registry.js";
import { generateText } from "../src/sample/generate.js";
import { saveCheckpoint } from "../src/checkpoint/checkpoint.js";
import { createServer } from "../src/server/app.js";
import { fromCheckpoint, loadServedModels, servedModel } from "../src/server/checkpoint-model.js";
import { Rng } from "../src/util/rng.js";
import type { FastifyInstance } from "fastify";

const TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n";

let dir: string;
let app: FastifyInstance;
let base: string;
const vocab = Vocab.build(TEXT);
const model = buildModel(
  { type: "rnn", cell: "lstm", vocabSize: vocab.size, embedding: 8, units: 16, layers: 1, dropout: 0 },
  new Rng(42),
);

before(async () => {
  dir = join(mkdtempSync(join(tmpdir(), "charlm-serve-model-")), "tiny-lstm");
  await saveCheckpoint(dir, {
    model,
    vocab,
    step: 20,
    epoch: 2,
    history: [
      { epoch: 1, step: 10, trainLoss: 3.3, valLoss: 3.1, lr: 0.01, seconds: 0.5 },
      { epoch: 2, step: 20, trainLoss: 2.9, valLoss: 2.8, lr: 0.01, seconds: 0.5 },
    ],
    bestValLoss: 2.8,
    elapsedSeconds: 1,
  });
  app = createServer([await fromCheckpoint(dir)], { rng: new Rng(5) });
  await app.listen({ port: 0, host: "127.0.0.1" });
  base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
});

after(async () => {
  await app?.close();
  rmSync(join(dir, ".."), { recursive: true, force: true });
});

const post = (path: string, body: unknown) =>
  fetch(base + path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

test("the model card comes from the checkpoint", async () => {
  const { models } = (await (await fetch(`${base}/api/models`)).json()) as { models: Record<string, unknown>[] };
  assert.equal(models.length, 1);
  const m = models[0];
  assert.equal(m.name, "tiny-lstm");
  assert.equal(m.type, "rnn-lstm");
  assert.equal(m.parameters, countParams(model));
  assert.equal(m.vocabSize, vocab.size);
  assert.equal(m.validationLoss, 2.8);
  assert.equal(m.trainingSeconds, 1);
  assert.equal(m.steps, 20);
  assert.equal(m.inBrowser, true);
  assert.match(String(m.architecture), /Total params/);
  const svg = await (await fetch(`${base}/api/models/tiny-lstm/loss.svg`)).text();
  assert.equal((svg.match(/stroke-width="1.5"/g) ?? []).length, 2, "a train and a validation line");
});

test("served text equals the library sampler's for the same seed, JSON and streamed", async () => {
  const opts = { prime: "Speak", length: 120, temperature: 0.9, topK: 10, topP: 0.95, seed: 1234 };
  const expected = await generateText(model, vocab, opts);
  assert.equal(Array.from(expected).length, 120);
  const body = { prime: opts.prime, length: opts.length, temperature: 0.9, top_k: 10, top_p: 0.95, seed: 1234 };
  const json = (await (await post("/api/generate", body)).json()) as { text: string; reason: string };
  assert.equal(json.text, expected);
  assert.equal(json.reason, "length");
  const sse = await (await post("/api/generate/stream", body)).text();
  const streamed = sse
    .split("\n\n")
    .filter((b) => b.startsWith("data: "))
    .map((b) => (JSON.parse(b.slice(6)) as { text: string }).text)
    .join("");
  assert.equal(streamed, expected);
  // Stop strings end the text before them, as in the library.
  const stopAt = expected.slice(30, 32);
  const stopped = (await (await post("/api/generate", { ...body, stop: [stopAt] })).json()) as {
    text: string;
    reason: string;
  };
  assert.equal(stopped.text, expected.slice(0, expected.indexOf(stopAt)));
  assert.equal(stopped.reason, "stop");
});

test("characters outside the vocabulary are named", async () => {
  const res = await post("/api/generate", { prime: "Speak, Zoë!", length: 10 });
  assert.equal(res.status, 400);
  const err = (await res.json()) as { error: string; code: string };
  assert.equal(err.code, "unknown_characters");
  assert.match(err.error, /"Z", "ë", "!"/);
});

test("weights and manifest download byte for byte", async () => {
  const w = new Uint8Array(await (await fetch(`${base}/api/models/tiny-lstm/weights`)).arrayBuffer());
  assert.deepEqual(w, new Uint8Array(readFileSync(join(dir, "model.safetensors"))));
  const m = (await (await fetch(`${base}/api/models/tiny-lstm/manifest`)).json()) as { format: string };
  assert.equal(m.format, "charlm-checkpoint");
});

test("--model NAME=DIR names a model; duplicate names and missing directories are refused", async () => {
  const [named] = await loadServedModels([`shakespeare=${dir}`]);
  assert.equal(named.card.name, "shakespeare");
  await assert.rejects(loadServedModels([dir, dir]), /the name 'tiny-lstm' is taken by another --model/);
  await assert.rejects(loadServedModels([join(dir, "nope")]), /no such directory/);
});

test("charlm serve starts, answers, and stops on SIGTERM", async () => {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", "src/cli/main.ts", "serve", "--model", dir, "--port", "0", "--quiet"],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  try {
    let stderr = "";
    const address = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`serve did not start: ${stderr}`)), 20_000);
      child.stderr.on("data", (d: Buffer) => {
        stderr += d.toString();
        const m = /serving on (http:\/\/\S+)/.exec(stderr);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]);
        }
      });
      child.on("exit", (code) => reject(new Error(`serve exited with ${code}: ${stderr}`)));
    });
    assert.match(address, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.match(stderr, /model tiny-lstm: rnn-lstm/);
    const h = (await (await fetch(`${address}/healthz`)).json()) as { status: string };
    assert.equal(h.status, "ok");
    const exited = new Promise<number | null>((resolve) => child.on("exit", resolve));
    child.kill("SIGTERM");
    assert.equal(await exited, 0);
  } finally {
    if (child.exitCode === null) child.kill("SIGKILL");
  }
});

test("a word model's stop string reads as reason stop, though its tokens are several characters each", async () => {
  // `length` counts tokens and `chars` characters: 3 word tokens are more than 3 characters, so only the sampler can
  // say whether a stop string ended the text.
  const words = WordTokenizer.build(TEXT.repeat(3));
  const wordModel = buildModel(
    { type: "rnn", cell: "lstm", vocabSize: words.size, embedding: 8, units: 16, layers: 1, dropout: 0 },
    new Rng(3),
  );
  const { manifest } = await import("../src/checkpoint/checkpoint.js").then(async (c) => {
    const d = join(mkdtempSync(join(tmpdir(), "charlm-serve-word-")), "w");
    await c.saveCheckpoint(d, { model: wordModel, vocab: words });
    return c.loadCheckpoint(d);
  });
  const wordApp = createServer([servedModel("w", { model: wordModel, vocab: words, manifest })], { rng: new Rng(5) });
  try {
    const gen = async (body: object) => {
      const res = await wordApp.inject({ method: "POST", url: "/api/generate", payload: { prime: "All:", ...body } });
      assert.equal(res.statusCode, 200, res.body);
      return res.json() as { text: string; reason: string; chars: number };
    };
    const free = await gen({ length: 40, seed: 1 });
    assert.equal(free.reason, "length");
    assert.ok(free.chars > 40, `${free.chars} characters from 40 word tokens`);
    // A stop string whose first appearance lies past the first 40 characters: counting characters against the 40
    // tokens would call that "length".
    const text = free.text;
    let stop = "";
    for (let k = 41; k + 6 <= text.length && !stop; k++) {
      if (text.indexOf(text.slice(k, k + 6)) === k) stop = text.slice(k, k + 6);
    }
    assert.ok(stop, text);
    const stopped = await gen({ length: 40, seed: 1, stop: [stop] });
    assert.equal(stopped.reason, "stop", JSON.stringify(stopped));
    assert.ok(stopped.chars >= 40, JSON.stringify(stopped));
  } finally {
    await wordApp.close();
  }
});
