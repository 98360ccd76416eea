// When the GPU fails under a run: the device lost (a driver reset, a GPU taken away, a browser's GPU process gone),
// a tensor over the adapter's largest buffer, the GPU out of memory. Each says what happened and what to do in one
// line, and nothing is lost: a training run's last checkpoint stays as it was and resumes on another backend.
// The loss is made by destroying the device from outside the backend, as the browser or the driver would.
// Runs on SwiftShader here and in CI; skipped, with the reason, where the webgpu package or an adapter is missing.

import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { train } from "../src/api.js";
import { saveCheckpoint } from "../src/checkpoint/checkpoint.js";
import { Vocab } from "../src/data/vocab.js";
import {
  closeBackends,
  getBackend,
  loadBackend,
  lostDevice,
  setBackend,
  useBackend,
} from "../src/engine/backends/index.js";
import type { ModelConfig } from "../src/models/config.js";
import { buildModel } from "../src/models/registry.js";
import { createServer } from "../src/server/app.js";
import { fromCheckpoint } from "../src/server/checkpoint-model.js";
import { Rng } from "../src/util/rng.js";
import { createWebgpuBackend, type WebgpuBackend } from "../src/engine/backends/webgpu/index.js";
import { bufferSize, sizeClass } from "../src/engine/backends/webgpu/runtime.js";
import { CharlmError, DeviceLostError } from "../src/util/errors.js";
import { TAB_DEFAULTS, TabDeviceLost, trainInTab } from "../web/tab-train.js";
import { cli } from "./helpers/cli.js";
import { assertSameRun } from "./helpers/runs.js";

let skip: string | false = false;
try {
  await loadBackend("webgpu");
} catch (e) {
  skip = `webgpu not available here: ${(e as Error).message}`;
}
const gpu = async (): Promise<WebgpuBackend> => (await loadBackend("webgpu")) as WebgpuBackend;
const work = mkdtempSync(join(tmpdir(), "charlm-lost-"));
after(async () => {
  await closeBackends();
  rmSync(work, { recursive: true, force: true });
});

const oneLine = (e: unknown): boolean => e instanceof Error && !e.message.includes("\n") && e.message.length > 0;

test(
  "after the device is lost, reads and flushes throw DeviceLostError in one line; destroy() is no loss",
  { skip },
  async () => {
    const b = await gpu();
    const s = b.alloc(10);
    b.fill(s, 2);
    assert.deepEqual([...(await b.read(s))], new Array(10).fill(2));
    assert.equal(b.lost(), null);
    b.gpuDevice.destroy();
    await assert.rejects(b.read(s), (e: unknown) => {
      assert.ok(e instanceof DeviceLostError, String(e));
      assert.ok(oneLine(e), (e as Error).message);
      assert.match((e as Error).message, /^backend webgpu: the GPU device was lost \(.+\).*--backend wasm/);
      return true;
    });
    assert.ok(b.lost(), "lost() names why");
    b.fill(s, 3); // encoding still works (nothing runs); the next submit says why
    await assert.rejects(b.flush(), DeviceLostError);
    await assert.rejects(b.flush(), DeviceLostError, "and keeps saying it");

    // The next request for the backend makes a new device, which works; its own destroy() is not a loss.
    const fresh = await gpu();
    assert.notEqual(fresh, b);
    const t = fresh.alloc(3);
    fresh.fill(t, 5);
    assert.deepEqual([...(await fresh.read(t))], [5, 5, 5]);
    assert.equal(fresh.lost(), null);
    const own = await createWebgpuBackend();
    own.destroy?.();
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(own.lost(), null, "a backend's own destroy() is not a loss");
  },
);

test(
  "a training run whose device is lost keeps its last checkpoint, says where, and resumes on js",
  { skip },
  async () => {
    const corpus = join(work, "text.txt");
    writeFileSync(corpus, "Now is the winter of our discontent made glorious summer by this sun of York.\n".repeat(40));
    const run = {
      data: corpus,
      embedding: 8,
      units: 16,
      layers: 2,
      dropout: 0.1,
      seqLength: 16,
      batchSize: 4,
      stepsPerEpoch: 5,
      epochs: 2,
      logEvery: 1,
      saveEvery: 4,
    };
    const dir = join(work, "lost");
    let destroyedAt = 0;
    await assert.rejects(
      train({
        ...run,
        backend: "webgpu",
        out: dir,
        onStep: async ({ step }) => {
          if (step === 6) {
            destroyedAt = step;
            (await gpu()).gpuDevice.destroy();
          }
        },
      }),
      (e: unknown) => {
        assert.ok(e instanceof DeviceLostError, String(e));
        assert.ok(oneLine(e), (e as Error).message);
        // saved at step 4 (every 4) and step 5 (the first epoch's end)
        const kept = `the last checkpoint \\(step 5\\) in ${dir} is kept: continue with charlm train --resume ${dir}`;
        assert.match((e as Error).message, new RegExp(`^training stopped at step \\d+ .*device was lost.*; ${kept}`));
        return true;
      },
    );
    assert.equal(destroyedAt, 6);
    const manifest = JSON.parse(readFileSync(join(dir, "charlm.json"), "utf8")) as { step: number };
    assert.equal(manifest.step, 5, "the checkpoint is the one saved before the loss");

    const resumed = await cli("train", "--resume", dir, "--backend", "js", "--quiet");
    assert.equal(resumed.code, 0, resumed.err);
    const whole = join(work, "whole");
    await train({ ...run, backend: "js", out: whole });
    await assertSameRun(dir, whole, 10);
  },
);

test(
  "charlm serve on a lost device: the request running answers device_lost, the next is served on a new device",
  { skip },
  async () => {
    const TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n";
    const vocab = Vocab.build(TEXT);
    const dir = join(work, "served");
    const config = { type: "rnn", cell: "lstm", vocabSize: vocab.size, embedding: 8, units: 16, layers: 1, dropout: 0 };
    await saveCheckpoint(dir, { model: buildModel(config as ModelConfig, new Rng(42)), vocab, step: 1, epoch: 1 });
    const before = getBackend();
    await useBackend("webgpu");
    const app = createServer([await fromCheckpoint(dir)], { rng: new Rng(5) });
    try {
      await app.listen({ port: 0, host: "127.0.0.1" });
      const base = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`;
      const ask = { prime: "All:", length: 40, seed: 3 };
      const generate = () =>
        fetch(`${base}/api/generate`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify(ask),
        });
      const first = await generate();
      assert.equal(first.status, 200);
      const { text } = (await first.json()) as { text: string };
      assert.equal(text.length, 40);

      // A long stream; the device goes once its first characters have come.
      const res = await fetch(`${base}/api/generate/stream`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ ...ask, length: 2000 }),
      });
      let events = "";
      const decoder = new TextDecoder();
      let lost = false;
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        events += decoder.decode(chunk, { stream: true });
        if (!lost && events.includes('"text"')) {
          lost = true;
          (getBackend() as WebgpuBackend).gpuDevice.destroy();
        }
      }
      const error = /event: error\ndata: (.*)\n/.exec(events);
      assert.ok(error, `an error event, not the whole text: ${events.slice(-200)}`);
      const body = JSON.parse(error[1]) as { error: string; code: string };
      assert.equal(body.code, "device_lost");
      assert.match(body.error, /^the GPU device was lost \(.+\) while generating; .*send the request again$/);

      // no new device to be had (Dawn told to use an adapter it does not have): a 503 that says what to do
      process.env.CHARLM_DAWN_OPTIONS = "adapter=no-such-adapter";
      let none: Response;
      try {
        none = await generate();
      } finally {
        delete process.env.CHARLM_DAWN_OPTIONS;
      }
      assert.equal(none.status, 503);
      const refused = (await none.json()) as { error: string; code: string };
      assert.equal(refused.code, "device_lost");
      assert.ok(!refused.error.includes("\n"), refused.error);
      assert.match(refused.error, /no new one could take the model \(backend webgpu: no GPU adapter .*\); restart/);

      // and once there is one again, the next request is served on it
      const again = await generate();
      assert.equal(again.status, 200, await again.clone().text());
      assert.equal(((await again.json()) as { text: string }).text, text, "the same text from the same seed");
      assert.equal(lostDevice(getBackend()), null, "on a new device");
    } finally {
      await app.close();
      setBackend(before);
    }
  },
);

test(
  "training in the tab on a lost device hands back the checkpoint saved before it, which charlm sample reads",
  { skip },
  async () => {
    const before = getBackend();
    const b = (await useBackend("webgpu")) as WebgpuBackend;
    let err: unknown = null;
    try {
      const settings = {
        ...TAB_DEFAULTS,
        units: 16,
        embedding: 8,
        seqLength: 16,
        batchSize: 4,
        steps: 60,
        validateEvery: 10,
      };
      await trainInTab("the quick brown fox jumps over the lazy dog. ".repeat(40), settings, {
        backend: "webgpu",
        name: "fox.txt",
        onMetrics: (line) => {
          if (line.type === "step" && line.step === 15) b.gpuDevice.destroy();
        },
      });
    } catch (e) {
      err = e;
    } finally {
      setBackend(before);
    }
    assert.ok(err instanceof TabDeviceLost, String(err));
    assert.match(
      err.message,
      /^training stopped at step \d+ .*the GPU device was lost \(.+\); the last checkpoint \(step 10\) is kept$/,
    );
    assert.equal(err.saved.step, 10);
    const file = join(work, "fox.tar");
    writeFileSync(file, err.saved.store.tar("charlm-fox"));
    const sample = (backend: string) =>
      cli("sample", "--model", file, "--prime", "the ", "--length", "30", "--seed", "3", "--backend", backend);
    const js = await sample("js");
    assert.equal(js.code, 0, js.err);
    assert.ok(js.out.startsWith("the "));
    const gpuText = await sample("webgpu"); // on a new device
    assert.equal(gpuText.code, 0, gpuText.err);
    assert.equal(gpuText.out, js.out);
  },
);

test(
  "a tensor over the GPU's largest buffer is refused when it is made, naming both sizes and the fix",
  { skip },
  async () => {
    const b = await gpu();
    const max = Math.min(b.gpuDevice.limits.maxBufferSize, b.gpuDevice.limits.maxStorageBufferBindingSize);
    const n = Math.floor(max / 4) + 64;
    assert.throws(
      () => b.alloc(n),
      (e: unknown) => {
        assert.ok(e instanceof CharlmError && oneLine(e), String(e));
        assert.match(
          (e as Error).message,
          /a tensor of [\d.]+ [KMGT]iB is over this GPU's largest buffer \([\d.]+ [KMGT]iB\)/,
        );
        assert.match((e as Error).message, /--batch-size.*--backend wasm/);
        return true;
      },
    );
    assert.throws(() => b.write(b.alloc(1), new Float32Array(n)), /over this GPU's largest buffer/, "an upload too");
    const s = b.alloc(4);
    b.fill(s, 1);
    assert.deepEqual([...(await b.read(s))], [1, 1, 1, 1], "and nothing else is harmed");
  },
);

test("running out of GPU memory says so in one line with the bytes held and the fix", { skip }, async () => {
  // SwiftShader refuses a 1 GiB allocation (VK_ERROR_OUT_OF_DEVICE_MEMORY) without trying to make it.
  const b = await gpu();
  const s = b.alloc(2 ** 28);
  b.fill(s, 1, 0, 4);
  await assert.rejects(b.read(s, 0, 4), (e: unknown) => {
    assert.ok(e instanceof CharlmError && oneLine(e), String(e));
    assert.match(
      (e as Error).message,
      /^backend webgpu: out of GPU memory making a buffer of 1\.0 GiB with [\d.]+ (bytes|[KMGT]iB) in buffers; lower/,
    );
    return true;
  });
  b.free(s);
  const t = b.alloc(3);
  b.fill(t, 7);
  assert.deepEqual([...(await b.read(t))], [7, 7, 7], "the device goes on working");
});

test("buffer sizes: the size class, else the exact size under a limit that is not a class, else refused", () => {
  assert.equal(bufferSize(1000, 2 ** 30), sizeClass(1000));
  assert.equal(bufferSize(2 ** 30, 2 ** 30), 2 ** 30);
  const limit = 2 ** 32 - 4; // some adapters' maxStorageBufferBindingSize
  const bytes = 2 ** 32 - 1024;
  assert.ok(sizeClass(bytes) > limit);
  assert.equal(bufferSize(bytes, limit), bytes);
  assert.throws(
    () => bufferSize(2 ** 30 + 4, 2 ** 30),
    /a tensor of 1\.0 GiB is over this GPU's largest buffer \(1\.0 GiB\)/,
  );
});
