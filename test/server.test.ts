// The HTTP layer over a real socket on port 0, with a stand-in model whose every step is visible: limits, errors,
// streaming, the generator being stopped when the client leaves, the queue bound and the time limit.
// (test/server-model.test.ts serves a real trained checkpoint.)

import { test } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createServer, type ServerOptions } from "../src/server/app.js";
import type { GenerateRequest, ServedModel } from "../src/server/served-model.js";
import { CharlmError, DeviceLostError } from "../src/util/errors.js";
import { Rng } from "../src/util/rng.js";

// ---------------------------------------------------------------------------------------------------------------
// A stand-in model: emits characters of "abc " chosen by the seed, optionally slowly, and records what happened.

class FakeModel implements ServedModel {
  started = 0;
  finished = 0;
  produced = 0;
  readonly card: ServedModel["card"];
  files?: ServedModel["files"];

  constructor(
    name: string,
    private readonly delayMs = 0,
  ) {
    this.card = {
      name,
      type: "rnn/lstm",
      architecture: "Embedding(4, 8)\nLSTM(16)\nDense(4)",
      parameters: 1234,
      vocabSize: 4,
      validationLoss: 1.25,
      trainingSeconds: 3.5,
      steps: 10,
      config: { type: "rnn", cell: "lstm" },
      history: [
        { step: 1, trainLoss: 1.4, valLoss: 1.39 },
        { step: 10, trainLoss: 1.2, valLoss: 1.25 },
      ],
    };
  }

  unknownChars(text: string): string[] {
    return [...new Set(Array.from(text).filter((c) => !"abc ".includes(c)))];
  }

  failWith: Error | null = null;
  last: GenerateRequest | null = null;

  async *generate(req: GenerateRequest, signal: AbortSignal, onStop?: () => void): AsyncGenerator<string> {
    this.started++;
    this.last = req;
    if (this.failWith) throw this.failWith;
    const rng = new Rng(req.seed);
    try {
      for (let i = 0; i < req.length && !signal.aborted; i++) {
        if (this.delayMs) await sleep(this.delayMs);
        const ch = "abc "[rng.int(4)];
        this.produced++;
        // Like the real sampler, the stop string itself is not emitted (single-character stops suffice here).
        if (req.stop.includes(ch)) return onStop?.();
        yield ch;
      }
    } finally {
      this.finished++;
    }
  }
}

async function serve(models: ServedModel[], opts: ServerOptions = {}) {
  const app = createServer(models, { rng: new Rng(1), ...opts });
  await app.listen({ port: 0, host: "127.0.0.1" });
  const addr = app.server.address();
  assert.ok(addr && typeof addr === "object");
  return { app, base: `http://127.0.0.1:${addr.port}` };
}

const post = (url: string, body: unknown) =>
  fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

/** Reads a server-sent event stream to its end: [{event, data}]. */
async function readEvents(res: Response): Promise<{ event: string; data: Record<string, unknown> }[]> {
  const text = await res.text();
  return text
    .split("\n\n")
    .filter((b) => b.trim())
    .map((block) => {
      const lines = block.split("\n");
      const event = lines.find((l) => l.startsWith("event: "))?.slice(7) ?? "message";
      const data = JSON.parse(lines.find((l) => l.startsWith("data: "))!.slice(6)) as Record<string, unknown>;
      return { event, data };
    });
}

// ---------------------------------------------------------------------------------------------------------------

test("healthz and the model list", async () => {
  const { app, base } = await serve([new FakeModel("tiny"), new FakeModel("other")]);
  try {
    const h = (await (await fetch(`${base}/healthz`)).json()) as { status: string; models: number };
    assert.equal(h.status, "ok");
    assert.equal(h.models, 2);
    const list = (await (await fetch(`${base}/api/models`)).json()) as { models: Record<string, unknown>[] };
    assert.deepEqual(
      list.models.map((m) => m.name),
      ["tiny", "other"],
    );
    const m = list.models[0];
    for (const key of ["type", "parameters", "vocabSize", "validationLoss", "trainingSeconds"])
      assert.ok(key in m, key);
    assert.equal(m.parameters, 1234);
    const card = (await (await fetch(`${base}/api/models/tiny`)).json()) as { history: unknown[] };
    assert.equal(card.history.length, 2);
    const svg = await fetch(`${base}/api/models/tiny/loss.svg`);
    assert.equal(svg.headers.get("content-type"), "image/svg+xml");
    assert.match(await svg.text(), /^<svg[\s\S]*<path[\s\S]*<\/svg>$/);
  } finally {
    await app.close();
  }
});

test("POST /api/generate returns the text; the same seed gives the same text", async () => {
  const model = new FakeModel("tiny");
  const { app, base } = await serve([model]);
  try {
    const res = await post(`${base}/api/generate`, { prime: "ab", length: 50, seed: 7, temperature: 0.8, top_k: 3 });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { text: string; chars: number; reason: string; seed: number; model: string };
    assert.equal(Array.from(body.text).length, 50);
    assert.equal(body.chars, 50);
    assert.equal(body.reason, "length");
    assert.equal(body.seed, 7);
    assert.equal(body.model, "tiny");
    const again = (await (await post(`${base}/api/generate`, { prime: "ab", length: 50, seed: 7 })).json()) as {
      text: string;
    };
    assert.equal(again.text, body.text);
    // No seed: the server picks one and says which, so the result can be reproduced.
    const unseeded = (await (await post(`${base}/api/generate`, { prime: "a", length: 5 })).json()) as { seed: number };
    assert.ok(Number.isInteger(unseeded.seed));
    // A stop string ends generation early.
    const stopped = (await (
      await post(`${base}/api/generate`, { prime: "a", length: 500, seed: 3, stop: [" "] })
    ).json()) as {
      text: string;
      reason: string;
    };
    assert.equal(stopped.reason, "stop");
    assert.ok(!stopped.text.includes(" ") && stopped.text.length < 500);
  } finally {
    await app.close();
  }
});

test("bad requests get a 4xx JSON error that names the problem", async () => {
  // "other" stands in for a GPT: a window of 8 (window_stride applies to it alone)
  const other = new FakeModel("other");
  other.card.config = { type: "gpt", blockSize: 8 };
  const { app, base } = await serve([new FakeModel("tiny"), other], {
    maxLength: 100,
    bodyLimit: 2048,
  });
  const expect = async (body: unknown, status: number, pattern: RegExp, code?: string) => {
    const res = await post(`${base}/api/generate`, body);
    assert.equal(res.status, status, JSON.stringify(body));
    assert.match(res.headers.get("content-type") ?? "", /application\/json/);
    const err = (await res.json()) as { error: string; code: string };
    assert.match(err.error, pattern);
    if (code) assert.equal(err.code, code);
  };
  try {
    await expect({ model: "tiny", prime: "ab", length: 101 }, 400, /length must be <= 100/, "invalid_request");
    await expect({ model: "tiny", prime: "ab", length: 0 }, 400, /length must be >= 1/);
    await expect({ model: "tiny", prime: "ab", length: "12" }, 400, /length must be integer/);
    await expect({ model: "tiny", prime: "ab", temperature: 0 }, 400, /temperature must be > 0/);
    await expect({ model: "tiny", prime: "ab", top_p: 1.5 }, 400, /top_p must be <= 1/);
    await expect({ model: "tiny", prime: "ab", top_k: -1 }, 400, /top_k must be >= 0/);
    await expect({ model: "tiny", prime: "ab", topK: 5 }, 400, /unknown field 'topK'; allowed fields are model, prime/);
    await expect({ model: "tiny", prime: "ab", stop: [""] }, 400, /stop\.0 must NOT have fewer than 1 characters/);
    await expect({ model: "other", prime: "ab", window_stride: 0 }, 400, /window_stride must be >= 1/);
    await expect(
      { model: "tiny", prime: "ab", window_stride: 2 },
      400,
      /window_stride applies to a GPT .*; model 'tiny' is rnn: leave it out/,
      "bad_window_stride",
    );
    await expect(
      { model: "other", prime: "ab", window_stride: 9 },
      400,
      /window_stride 9 does not fit model 'other''s context of 8; pass 1 to 8/,
      "bad_window_stride",
    );
    const strided = await post(`${base}/api/generate`, { model: "other", prime: "ab", length: 3, window_stride: 4 });
    assert.equal(strided.status, 200);
    assert.equal(other.last?.windowStride, 4);
    await expect({ model: "nope", prime: "ab" }, 404, /unknown model 'nope'; available: tiny, other/, "unknown_model");
    await expect({ model: "../../etc", prime: "ab" }, 400, /model must match pattern/);
    await expect({ prime: "ab" }, 400, /several models are served; name one in 'model'/, "model_required");
    await expect(
      { model: "tiny", prime: "abxé€ab" },
      400,
      /3 characters outside model .tiny..s vocabulary: "x", "é", "€"; remove them/,
      "unknown_characters",
    );
    await expect(
      { model: "tiny", prime: "a".repeat(5000) },
      413,
      /larger than the limit of 2048 bytes/,
      "body_too_large",
    );
    const notJson = await fetch(`${base}/api/generate`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{nope",
    });
    assert.equal(notJson.status, 400);
    assert.ok(((await notJson.json()) as { error: string }).error.length > 0);
    const plain = await fetch(`${base}/api/generate`, {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: "hi",
    });
    assert.equal(plain.status, 415);
    assert.equal(((await plain.json()) as { code: string }).code, "unsupported_media_type");
    const missing = await fetch(`${base}/api/nothing`);
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as { code: string }).code, "not_found");
  } finally {
    await app.close();
  }
});

test("the stream sends one event per character, then done", async () => {
  const { app, base } = await serve([new FakeModel("tiny")]);
  try {
    const res = await post(`${base}/api/generate/stream`, { prime: "a", length: 30, seed: 7 });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
    const events = await readEvents(res);
    assert.equal(events[0].event, "start");
    assert.equal(events[0].data.seed, 7);
    const chars = events.filter((e) => e.event === "message").map((e) => e.data.text as string);
    assert.equal(chars.length, 30);
    const done = events.at(-1)!;
    assert.equal(done.event, "done");
    assert.equal(done.data.reason, "length");
    assert.equal(done.data.chars, 30);
    // The same text as the JSON endpoint for the same seed.
    const json = (await (await post(`${base}/api/generate`, { prime: "a", length: 30, seed: 7 })).json()) as {
      text: string;
    };
    assert.equal(chars.join(""), json.text);
    // Validation errors come before the stream starts, as plain JSON.
    const bad = await post(`${base}/api/generate/stream`, { prime: "a", length: 30, temperature: -1 });
    assert.equal(bad.status, 400);
  } finally {
    await app.close();
  }
});

test("a client that disconnects mid-stream stops the generator", async () => {
  const model = new FakeModel("slow", 5);
  const { app, base } = await serve([model]);
  try {
    const url = new URL(`${base}/api/generate/stream`);
    await new Promise<void>((resolve, reject) => {
      const req = request(
        {
          host: url.hostname,
          port: url.port,
          path: url.pathname,
          method: "POST",
          headers: { "content-type": "application/json" },
        },
        (res) => {
          let seen = 0;
          res.on("data", (chunk: Buffer) => {
            seen += (chunk.toString().match(/^data: \{"text"/gm) ?? []).length;
            if (seen >= 3) {
              req.destroy();
              resolve();
            }
          });
        },
      );
      req.on("error", (err) => ((err as NodeJS.ErrnoException).code === "ECONNRESET" ? undefined : reject(err)));
      req.end(JSON.stringify({ prime: "a", length: 2000, seed: 1 }));
    });
    // The generator's finally block runs once the server notices the closed socket.
    for (let i = 0; i < 200 && model.finished === 0; i++) await sleep(5);
    assert.equal(model.started, 1);
    assert.equal(model.finished, 1, "generator was not stopped after the client left");
    const producedAtStop = model.produced;
    assert.ok(producedAtStop < 100, `generated ${producedAtStop} characters for a client that had gone`);
    await sleep(50);
    assert.equal(model.produced, producedAtStop, "generation continued after the client left");
    const h = (await (await fetch(`${base}/healthz`)).json()) as { generations: { running: number } };
    assert.equal(h.generations.running, 0, "the slot was not released");
  } finally {
    await app.close();
  }
});

test("concurrent generations are bounded: a queue, then 429", async () => {
  const model = new FakeModel("slow", 2);
  const { app, base } = await serve([model], { maxActive: 1, maxQueued: 1 });
  try {
    const a = post(`${base}/api/generate`, { prime: "a", length: 40, seed: 1 });
    await sleep(20);
    const b = post(`${base}/api/generate`, { prime: "a", length: 40, seed: 2 });
    await sleep(20);
    const c = await post(`${base}/api/generate/stream`, { prime: "a", length: 40, seed: 3 });
    assert.equal(c.status, 429);
    assert.equal(c.headers.get("retry-after"), "2");
    assert.match(((await c.json()) as { error: string }).error, /server busy: 1 generations running and 1 waiting/);
    const [ra, rb] = await Promise.all([a, b]);
    assert.equal(ra.status, 200);
    assert.equal(rb.status, 200, "the queued request should run once the first finished");
    assert.equal(((await rb.json()) as { chars: number }).chars, 40);
    await ra.arrayBuffer();
  } finally {
    await app.close();
  }
});

test("the per-request time limit ends a generation and says so", async () => {
  const model = new FakeModel("slow", 10);
  const { app, base } = await serve([model], { timeLimitMs: 150 });
  try {
    const t0 = performance.now();
    const body = (await (await post(`${base}/api/generate`, { prime: "a", length: 2000 })).json()) as {
      reason: string;
      chars: number;
    };
    assert.equal(body.reason, "time_limit");
    assert.ok(body.chars > 0 && body.chars < 2000);
    assert.ok(performance.now() - t0 < 1500);
    const events = await readEvents(await post(`${base}/api/generate/stream`, { prime: "a", length: 2000 }));
    assert.equal(events.at(-1)!.event, "done");
    assert.equal(events.at(-1)!.data.reason, "time_limit");
    await sleep(30);
    assert.equal(model.finished, model.started);
  } finally {
    await app.close();
  }
});

test("model files and the page are served; nothing outside them is", async () => {
  const dir = mkdtempSync(join(tmpdir(), "charlm-serve-"));
  writeFileSync(join(dir, "model.safetensors"), Buffer.from([1, 2, 3, 4]));
  writeFileSync(join(dir, "charlm.json"), JSON.stringify({ format: "charlm-checkpoint" }));
  writeFileSync(join(dir, "index.html"), "<!doctype html><title>charlm</title>");
  writeFileSync(join(dir, ".secret.js"), "no");
  const model = new FakeModel("tiny");
  model.files = { weights: join(dir, "model.safetensors"), manifest: join(dir, "charlm.json") };
  const { app, base } = await serve([model, new FakeModel("memory")], {
    webDir: dir,
    wasmPath: join(dir, "missing.wasm"),
  });
  try {
    const w = await fetch(`${base}/api/models/tiny/weights`);
    assert.equal(w.status, 200);
    assert.deepEqual([...new Uint8Array(await w.arrayBuffer())], [1, 2, 3, 4]);
    const m = (await (await fetch(`${base}/api/models/tiny/manifest`)).json()) as { format: string };
    assert.equal(m.format, "charlm-checkpoint");
    assert.equal((await fetch(`${base}/api/models/memory/weights`)).status, 404);
    assert.equal((await fetch(`${base}/api/models/..%2f..%2fetc/weights`)).status, 400);
    const page = await fetch(`${base}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type") ?? "", /text\/html/);
    for (const path of [
      "/..%2fpackage.json",
      "/%2e%2e/%2e%2e/package.json",
      "/.secret.js",
      "/model.safetensors",
      "/dist/app.js",
    ]) {
      assert.equal((await fetch(`${base}${path}`)).status, 404, path);
    }
    const wasm = await fetch(`${base}/kernels.wasm`);
    assert.equal(wasm.status, 404);
    assert.match(((await wasm.json()) as { error: string }).error, /npm run build/);
  } finally {
    await app.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("errors raised by the model: the library's refusals are 400, a lost GPU 503, anything else 500; streams get an error event", async () => {
  const model = new FakeModel("tiny");
  const { app, base } = await serve([model]);
  try {
    model.failWith = new CharlmError("temperature must be above 0, got 0; use e.g. 0.8");
    const res = await post(`${base}/api/generate`, { prime: "a" });
    assert.equal(res.status, 400);
    assert.deepEqual(await res.json(), {
      error: "temperature must be above 0, got 0; use e.g. 0.8",
      code: "invalid_request",
    });
    model.failWith = new DeviceLostError("device was destroyed", "the GPU device was lost; send the request again");
    const lost = await post(`${base}/api/generate`, { prime: "a" });
    assert.equal(lost.status, 503, "the server's trouble, not the request's");
    assert.equal(lost.headers.get("retry-after"), "1");
    assert.deepEqual(await lost.json(), {
      error: "the GPU device was lost; send the request again",
      code: "device_lost",
    });
    model.failWith = new Error("kernel exploded");
    const bug = await post(`${base}/api/generate`, { prime: "a" });
    assert.equal(bug.status, 500);
    assert.equal(((await bug.json()) as { code: string }).code, "internal");
    const events = await readEvents(await post(`${base}/api/generate/stream`, { prime: "a" }));
    assert.deepEqual(
      events.map((e) => e.event),
      ["start", "error"],
    );
    assert.equal(events[1].data.error, "kernel exploded");
    const h = (await (await fetch(`${base}/healthz`)).json()) as { generations: { running: number } };
    assert.equal(h.generations.running, 0, "a failed generation must free its slot");
  } finally {
    await app.close();
  }
});

test("a client that leaves while queued gives up its place without starting a generation", async () => {
  const model = new FakeModel("slow", 3);
  const { app, base } = await serve([model], { maxActive: 1, maxQueued: 4 });
  const waiting = async () =>
    ((await (await fetch(`${base}/healthz`)).json()) as { generations: { waiting: number } }).generations.waiting;
  try {
    const first = post(`${base}/api/generate`, { prime: "a", length: 60 });
    await sleep(20);
    const url = new URL(`${base}/api/generate/stream`);
    const queued = request({
      host: url.hostname,
      port: url.port,
      path: url.pathname,
      method: "POST",
      headers: { "content-type": "application/json" },
    });
    queued.on("error", () => {});
    queued.end(JSON.stringify({ prime: "a", length: 60 }));
    for (let i = 0; i < 100 && (await waiting()) === 0; i++) await sleep(5);
    assert.equal(await waiting(), 1);
    queued.destroy();
    for (let i = 0; i < 100 && (await waiting()) === 1; i++) await sleep(5);
    assert.equal(await waiting(), 0, "the queue still holds a client that left");
    assert.equal((await first).status, 200);
    await sleep(20);
    assert.equal(model.started, 1, "the departed client's generation started anyway");
  } finally {
    await app.close();
  }
});

test("Fastify's own errors come back as {error, code}; GET on a POST endpoint is 405", async () => {
  const { app, base } = await serve([new FakeModel("tiny")]);
  try {
    const notJson = await fetch(`${base}/api/generate`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{nope",
    });
    assert.equal(notJson.status, 400);
    const body = (await notJson.json()) as { error: string; code: string };
    assert.deepEqual(Object.keys(body).sort(), ["code", "error"]);
    assert.equal(body.code, "invalid_request");
    assert.match(body.error, /^request body is not valid JSON/);
    const empty = await fetch(`${base}/api/generate`, {
      method: "POST",
      headers: { "content-type": "application/json" },
    });
    assert.equal(empty.status, 400);
    assert.equal(((await empty.json()) as { code: string }).code, "invalid_request");
    const badUrl = await fetch(`${base}/api/models/%E0%A4%A`);
    assert.equal(badUrl.status, 400);
    assert.equal(((await badUrl.json()) as { code: string }).code, "invalid_request");
    for (const path of ["/api/generate", "/api/generate/stream"]) {
      const get = await fetch(`${base}${path}`);
      assert.equal(get.status, 405, path);
      assert.equal(get.headers.get("allow"), "POST");
      assert.deepEqual(await get.json(), {
        error: `${path} takes POST with a JSON body, not GET`,
        code: "method_not_allowed",
      });
    }
  } finally {
    await app.close();
  }
});

test("a request body dribbled slowly is cut off by the request time limit", async () => {
  const { app, base } = await serve([new FakeModel("tiny")], { requestTimeoutMs: 400 });
  try {
    const { port } = new URL(base);
    const t0 = performance.now();
    const status = await new Promise<number | "closed">((resolve) => {
      const req = request({
        host: "127.0.0.1",
        port,
        path: "/api/generate",
        method: "POST",
        headers: { "content-type": "application/json", "content-length": 100 },
      });
      req.on("response", (res) => resolve(res.statusCode ?? 0));
      req.on("error", () => resolve("closed"));
      req.write("{");
      const drip = setInterval(() => req.write(" "), 100);
      req.on("close", () => clearInterval(drip));
    });
    const seconds = (performance.now() - t0) / 1000;
    assert.ok(status === 408 || status === "closed", String(status));
    assert.ok(seconds < 3, `cut off after ${seconds.toFixed(1)} s`);
  } finally {
    await app.close();
  }
});

test("the served manifest names the corpus by its base name, not the server's path", async () => {
  const dir = mkdtempSync(join(tmpdir(), "charlm-serve-"));
  writeFileSync(join(dir, "model.safetensors"), Buffer.from([1, 2, 3, 4]));
  const manifest = { format: "charlm-checkpoint", train: { data: "/home/someone/corpora/letters.txt", units: 8 } };
  writeFileSync(join(dir, "charlm.json"), JSON.stringify(manifest));
  const model = new FakeModel("tiny");
  model.files = { weights: join(dir, "model.safetensors"), manifest: join(dir, "charlm.json") };
  const { app, base } = await serve([model]);
  try {
    const m = (await (await fetch(`${base}/api/models/tiny/manifest`)).json()) as typeof manifest;
    assert.deepEqual(m, { ...manifest, train: { data: "letters.txt", units: 8 } });
  } finally {
    await app.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("time limits beyond what a timer can hold are refused; --cors ORIGIN answers that origin only", async () => {
  assert.throws(() => createServer([new FakeModel("tiny")], { timeLimitMs: 2_200_000_000 }), /time limit .* at most/);
  const plain = await serve([new FakeModel("tiny")]);
  const open = await serve([new FakeModel("tiny")], { cors: "https://example.org" });
  try {
    const res = await fetch(`${plain.base}/api/models`, { headers: { origin: "https://example.org" } });
    assert.equal(res.headers.get("access-control-allow-origin"), null);
    const ok = await fetch(`${open.base}/api/models`, { headers: { origin: "https://example.org" } });
    assert.equal(ok.headers.get("access-control-allow-origin"), "https://example.org");
    const pre = await fetch(`${open.base}/api/generate`, {
      method: "OPTIONS",
      headers: { origin: "https://example.org", "access-control-request-method": "POST" },
    });
    assert.equal(pre.status, 204);
    assert.match(pre.headers.get("access-control-allow-methods") ?? "", /POST/);
    assert.match(pre.headers.get("access-control-allow-headers") ?? "", /content-type/);
  } finally {
    await plain.app.close();
    await open.app.close();
  }
});

test("the page and its kernels come cross-origin isolated (COOP and COEP), every wasm build beside kernels.wasm is served, the API has no such headers", async () => {
  const dir = mkdtempSync(join(tmpdir(), "charlm-serve-"));
  writeFileSync(join(dir, "index.html"), "<!doctype html><title>charlm</title>");
  for (const tail of ["", "-relaxed", "-shared"]) writeFileSync(join(dir, `kernels${tail}.wasm`), `bytes${tail}`);
  const { app, base } = await serve([new FakeModel("tiny")], { webDir: dir, wasmPath: join(dir, "kernels.wasm") });
  try {
    for (const path of ["/", "/kernels.wasm", "/kernels-relaxed.wasm", "/kernels-shared.wasm"]) {
      const res = await fetch(`${base}${path}`);
      assert.equal(res.status, 200, path);
      assert.equal(res.headers.get("cross-origin-opener-policy"), "same-origin", path);
      assert.equal(res.headers.get("cross-origin-embedder-policy"), "require-corp", path);
    }
    const relaxed = await fetch(`${base}/kernels-relaxed.wasm`);
    assert.equal(relaxed.headers.get("content-type"), "application/wasm");
    assert.equal(await relaxed.text(), "bytes-relaxed");
    const missing = await fetch(`${base}/kernels-shared-relaxed.wasm`);
    assert.equal(missing.status, 404);
    assert.match(((await missing.json()) as { error: string }).error, /kernels-shared-relaxed\.wasm is missing/);
    const api = await fetch(`${base}/api/models`);
    assert.equal(api.status, 200);
    assert.equal(api.headers.get("cross-origin-embedder-policy"), null);
  } finally {
    await app.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
