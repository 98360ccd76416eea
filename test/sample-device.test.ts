// Generation drawing its tokens on the backend (GenerateOptions.onDevice): sampleTokens and embeddingFrom, and the
// texts they give. On js and wasm the kernels are the host sampler's own code, so the text must be the host's to the
// character; on webgpu (SwiftShader here) the draw runs in f32 in a WGSL kernel and is compared with js's, draw by
// draw, on logits with ties and with every filter; then whole generations on the GPU against js on the host.

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Vocab } from "../src/data/vocab.js";
import type { Backend, Storage } from "../src/engine/backend.js";
import { useBackend, withBackend } from "../src/engine/backends/index.js";
import { jsBackend } from "../src/engine/backends/js.js";
import { embeddingFrom, sampleTokens } from "../src/engine/ops.js";
import { samplingWeights } from "../src/engine/sampling.js";
import { Tensor } from "../src/engine/tensor.js";
import type { ModelConfig } from "../src/models/config.js";
import type { LanguageModel } from "../src/models/contract.js";
import { buildModel } from "../src/models/registry.js";
import { burstLayout, burstWorkgroupBytes, tokensPerDispatch } from "../src/engine/backends/webgpu/kernels/generate.js";
import { generateText, takesFusedBursts, type GenerateOptions } from "../src/sample/generate.js";
import { drawIndex, Rng } from "../src/util/rng.js";
import { gpuForTests } from "./helpers/webgpu.js";

const { gpu, skip } = await gpuForTests();

const vocab = new Vocab("abcdefghijklmnopqrstuvwxyz .,\n".split(""));
const lstm: ModelConfig = {
  type: "rnn",
  cell: "lstm",
  vocabSize: vocab.size,
  embedding: 8,
  units: 16,
  layers: 2,
  dropout: 0,
};
const gru: ModelConfig = {
  type: "rnn",
  cell: "gru",
  vocabSize: vocab.size,
  embedding: 6,
  units: 12,
  layers: 1,
  dropout: 0,
};

// A GPT whose window of 8 fills after the prime and 4 characters: then it slides at every step (on the backend too)
const gpt: ModelConfig = {
  type: "gpt",
  vocabSize: vocab.size,
  blockSize: 8,
  nLayer: 1,
  nHead: 2,
  nEmbd: 8,
  dropout: 0,
  bias: true,
};

// Temperatures, filters and a stop string: every path of the sampler.
const OPTIONS: Partial<GenerateOptions>[] = [
  {},
  { temperature: 0.5 },
  { topK: 4 },
  { topP: 0.7, temperature: 1.4 },
  { topK: 6, topP: 0.9 },
  { stop: ["e "] },
];

/** A model whose logits are far from uniform (an untrained one's barely move with temperature): larger weights. */
function model(cfg: ModelConfig, seed = 3): LanguageModel {
  const m = buildModel(cfg, new Rng(seed));
  for (const t of m.parameters().values()) {
    const v = t.backend.sync ? t.backend.view(t.storage) : null;
    if (v) for (let i = 0; i < v.length; i++) v[i] *= 6;
  }
  return m;
}

const text = (m: LanguageModel, o: Partial<GenerateOptions>, onDevice?: boolean, length = 200) =>
  generateText(m, vocab, { prime: "the ", length, seed: 5, ...o, ...(onDevice === undefined ? {} : { onDevice }) });

for (const name of ["js", "wasm"] as const) {
  test(`${name}: tokens drawn on the backend give the host sampler's text, character for character`, async () => {
    await useBackend(name);
    for (const cfg of [lstm, gru, gpt]) {
      const m = model(cfg);
      for (const o of OPTIONS) {
        const host = await text(m, o, false);
        const device = await text(m, o, true);
        assert.equal(device, host, `${cfg.type} ${JSON.stringify(o)}`);
        assert.equal(host.length, o.stop ? host.length : 200);
      }
    }
    // a GPT's window strides (its window moved on the backend in stepFrom, on the host in step)
    const g = model(gpt);
    const strided: string[] = [];
    for (const windowStride of [1, 3, 8]) {
      const o = { windowStride };
      const host = await text(g, o, false);
      assert.equal(await text(g, o, true), host, `gpt ${JSON.stringify(o)}`);
      strided.push(host);
    }
    assert.equal(strided[0], await text(g, {}, false)); // 1 is the default
    assert.equal(new Set(strided).size, 3);
    await assert.rejects(
      text(model(lstm), { windowStride: 2 }),
      /a window stride applies to a GPT .* this model is rnn/,
    );
    await assert.rejects(text(g, { windowStride: 0 }), /window stride must be a whole number >= 1, got 0/);
    await assert.rejects(text(g, { windowStride: 9 }), /window stride 9 does not fit the GPT's context of 8/);
    // the options matter (so the equality above is not of texts that ignore them)
    const m = model(lstm);
    const texts = new Set(await Promise.all(OPTIONS.slice(0, 5).map((o) => text(m, o, true))));
    assert.equal(texts.size, 5);
    await useBackend("js");
  });
}

test("sampleTokens draws each row with its own uniform draw, at the offsets given", async () => {
  await useBackend("js");
  const rng = new Rng(4);
  const rows = 3;
  const V = 7;
  const logits = Tensor.fromArray(
    Array.from({ length: rows * V }, () => rng.normal() * 2),
    [rows, V],
  );
  const u = Tensor.fromArray([0.9, 0.1, 0.5, 0.3, 0.99], [5]);
  const ids = Tensor.full([6], -1);
  sampleTokens(logits, u, 2, ids, 1, { temperature: 0.8, topK: 0, topP: 1 });
  const z = logits.toArray();
  const want = [0, 1, 2].map((r) =>
    drawIndex(samplingWeights(z.slice(r * V, (r + 1) * V), 0.8, 0, 1), [0.5, 0.3, 0.99][r]),
  );
  assert.deepEqual(Array.from(ids.toArray()), [-1, ...want, -1, -1]);
  assert.throws(
    () => sampleTokens(logits, u, 3, ids, 0, { temperature: 1, topK: 0, topP: 1 }),
    /3 uniform draws from position 3 do not fit in 5/,
  );
  assert.throws(
    () => sampleTokens(logits, u, 0, ids, 4, { temperature: 1, topK: 0, topP: 1 }),
    /3 ids from position 4 do not fit in 6/,
  );
  assert.throws(
    () => sampleTokens(logits, u, 0, ids, 0, { temperature: 0, topK: 0, topP: 1 }),
    /temperature 0 must be > 0/,
  );
  const w = Tensor.fromArray([1, 2, 3, 4, 5, 6], [3, 2], true);
  assert.throws(() => embeddingFrom(w, Tensor.fromArray([2, 0], [2]), 0, [2]), /embeddingFrom: has no gradient/);
});

/** A backend's storages of these host arrays. */
function put<S extends Storage>(be: Backend<S>, xs: Float32Array[]): S[] {
  return xs.map((x) => {
    const s = be.alloc(x.length);
    be.write(s, x);
    return s;
  });
}

describe("webgpu: drawing on the GPU", { skip }, () => {
  test("sampleRows draws the token js draws, for every filter, with ties, and odd vocabularies", async () => {
    const g = gpu!;
    const rng = new Rng(8);
    let draws = 0;
    let differ = 0;
    for (const V of [5, 70, 300]) {
      for (const tied of [false, true]) {
        const rows = 40;
        // tied: logits on a coarse grid, so many weights are equal and the ranking's tie-break decides top-k/top-p
        const logits = Float32Array.from({ length: rows * V }, () =>
          tied ? Math.round(rng.normal() * 2) / 2 : rng.normal() * 3,
        );
        const u = Float32Array.from({ length: rows + 2 }, () => rng.random());
        for (const [temperature, topK, topP] of [
          [1, 0, 1],
          [0.6, 0, 1],
          [1.3, 3, 1],
          [1, 0, 0.8],
          [0.9, 10, 0.5],
          [1, V, 1],
        ]) {
          const want = new Float32Array(rows + 1).fill(-1);
          jsBackend.sampleRows(logits, u, 2, want, 1, rows, V, { temperature, topK, topP });
          const [gl, gu, gi] = put(g, [logits, u, new Float32Array(rows + 1).fill(-1)]);
          g.sampleRows(gl, gu, 2, gi, 1, rows, V, { temperature, topK, topP });
          const got = await g.read(gi);
          assert.equal(got[0], -1, "the kernel wrote before its offset");
          for (let r = 1; r <= rows; r++) {
            assert.ok(Number.isInteger(got[r]) && got[r] >= 0 && got[r] < V, `row ${r}: ${got[r]}`);
            draws++;
            if (got[r] !== want[r]) differ++;
          }
          for (const s of [gl, gu, gi]) g.free(s);
        }
      }
    }
    // f32 on the GPU, f64 on the host: a draw within rounding of a boundary may differ (about one in a million)
    assert.ok(differ <= 1, `${differ} of ${draws} draws differ from js`);
    console.log(`# sampleRows: ${differ} of ${draws} GPU draws differ from js`);
  });

  test("embeddingFrom gathers the rows of the ids held on the GPU", async () => {
    const g = gpu!;
    const rng = new Rng(2);
    const V = 13;
    const D = 7;
    const w = Float32Array.from({ length: V * D }, () => rng.normal());
    const ids = Float32Array.of(4, 12, 0, 7, 7, 3);
    const want = new Float32Array(4 * D);
    jsBackend.embeddingFrom(w, ids, 1, want, 4, D);
    assert.deepEqual(Array.from(want.subarray(0, D)), Array.from(w.subarray(12 * D, 13 * D)));
    const [gw, gid, go] = put(g, [w, ids, new Float32Array(4 * D)]);
    g.embeddingFrom(gw, gid, 1, go, 4, D);
    assert.deepEqual(await g.read(go), want);
    for (const s of [gw, gid, go]) g.free(s);
  });

  test("generation on the GPU (tokens drawn there, in bursts) gives js's text", async () => {
    await useBackend("js");
    // SwiftShader runs ~10 characters a second: short texts; the LSTM under every option, the GRU under two
    for (const [cfg, options] of [
      [lstm, OPTIONS],
      [gru, OPTIONS.slice(2, 4)],
      [gpt, [...OPTIONS.slice(0, 2), { windowStride: 3 }, { windowStride: 8, topK: 4 }]],
    ] as const) {
      const cpu = model(cfg);
      const onGpu = withBackend(gpu!, () => buildModel(cfg, null));
      for (const [k, t] of onGpu.parameters()) {
        t.backend.write(t.storage, Float32Array.from(cpu.parameters().get(k)!.toArray()));
      }
      for (const o of options) {
        const want = await text(cpu, o, false, 40);
        assert.equal(
          await withBackend(gpu!, () => text(onGpu, o, undefined, 40)),
          want,
          `${cfg.type} ${JSON.stringify(o)}`,
        );
      }
      // and the GPU reading the logits back after every token, as before
      assert.equal(await withBackend(gpu!, () => text(onGpu, {}, false, 40)), await text(cpu, {}, false, 40));
    }
  });

  /** A recurrent model on js and the same weights on the GPU; no parameter zero (the biases start at zero). */
  const pair = (cfg: ModelConfig): { cpu: LanguageModel; onGpu: LanguageModel } => {
    const cpu = model(cfg);
    const noise = new Rng(11);
    for (const t of cpu.parameters().values()) {
      const v = t.backend.view(t.storage);
      for (let i = 0; i < v.length; i++) v[i] += noise.random() - 0.5;
    }
    const onGpu = withBackend(gpu!, () => buildModel(cfg, null));
    for (const [k, t] of onGpu.parameters())
      t.backend.write(t.storage, Float32Array.from(cpu.parameters().get(k)!.toArray()));
    return { cpu, onGpu };
  };

  test("bursts in the wide route (the default) and in one kernel give js's text and the step route's, for LSTM, GRU and RNN", async () => {
    await useBackend("js");
    const rnn: ModelConfig = {
      type: "rnn",
      cell: "rnn",
      vocabSize: vocab.size,
      embedding: 5,
      units: 9,
      layers: 2,
      dropout: 0,
    };
    for (const [cfg, options] of [
      [lstm, OPTIONS],
      [gru, OPTIONS.slice(0, 4)],
      [rnn, OPTIONS.slice(2, 4)],
    ] as const) {
      const { cpu, onGpu } = pair(cfg);
      assert.ok(takesFusedBursts(onGpu, gpu!), `${cfg.type}: the fused route is taken`);
      for (const o of options) {
        const want = await text(cpu, o, false, 40);
        const where = `${(cfg as { cell: string }).cell} ${JSON.stringify(o)}`;
        assert.equal(await withBackend(gpu!, () => text(onGpu, o, undefined, 40)), want, where);
        assert.equal(await withBackend(gpu!, () => text(onGpu, { ...o, fused: false }, undefined, 40)), want, where);
        assert.equal(await withBackend(gpu!, () => text(onGpu, { ...o, wide: false }, undefined, 40)), want, where);
      }
    }
  });

  test("a burst in one kernel with wide layers and a vocabulary over 256 (several units and logits a thread)", async () => {
    await useBackend("js");
    const wide = new Vocab(Array.from({ length: 300 }, (_, i) => String.fromCodePoint(0x4e00 + i)));
    const prime = Array.from(wide.decode(Int32Array.of(5, 280, 17)));
    for (const [cell, o] of [
      ["lstm", {}],
      ["gru", { topK: 40, topP: 0.9 }],
    ] as const) {
      const cfg: ModelConfig = { type: "rnn", cell, vocabSize: 300, embedding: 260, units: 300, layers: 2, dropout: 0 };
      const { cpu, onGpu } = pair(cfg);
      {
        const opts = { prime: prime.join(""), length: 24, seed: 9, ...o };
        const want = await generateText(cpu, wide, { ...opts, onDevice: false });
        for (const route of [{ wide: false }, {}]) {
          assert.equal(
            await withBackend(gpu!, () => generateText(onGpu, wide, { ...opts, ...route })),
            want,
            `${cell} ${JSON.stringify(o)} ${JSON.stringify(route)}`,
          );
        }
      }
    }
  });

  test("the wide route's kernels of two models alike but for their embedding are each their own", async () => {
    await useBackend("js");
    for (const embedding of [8, 6]) {
      const { cpu, onGpu } = pair({ ...lstm, embedding });
      const want = await text(cpu, {}, false, 24);
      assert.equal(await withBackend(gpu!, () => text(onGpu, {}, undefined, 24)), want, `E ${embedding}`);
    }
  });

  test("a model too wide for one workgroup's memory takes the wide route even where one kernel is asked for", async () => {
    await useBackend("js");
    // an embedding of 8,000 and two vectors of the layer do not fit one workgroup's memory (32 KiB on SwiftShader;
    // 16 KiB is WebGPU's least), while the wide route's kernels need none of the embedding there
    const cfg: ModelConfig = {
      type: "rnn",
      cell: "rnn",
      vocabSize: vocab.size,
      embedding: 8000,
      units: 8,
      layers: 1,
      dropout: 0,
    };
    const { cpu, onGpu } = pair(cfg);
    const { shape } = onGpu.burstWeights!();
    const limit = (gpu as Backend & { gpuDevice: GPUDevice }).gpuDevice.limits.maxComputeWorkgroupStorageSize;
    assert.ok(burstWorkgroupBytes(shape) > limit, `${burstWorkgroupBytes(shape)} bytes against ${limit}`);
    assert.ok(takesFusedBursts(onGpu, gpu!));
    const g = gpu as Backend & { counts(): Record<string, number> };
    const dispatches = async (length: number): Promise<number> => {
      const d0 = g.counts().dispatches;
      await withBackend(gpu!, () => text(onGpu, { wide: false }, undefined, length));
      return g.counts().dispatches - d0;
    };
    // a burst of 8: a layer and the logits a character, and a first draw
    assert.equal((await dispatches(8)) - (await dispatches(0)), 8 * 2 + 1);
    assert.equal(
      await withBackend(gpu!, () => text(onGpu, { wide: false }, undefined, 8)),
      await text(cpu, {}, false, 8),
    );
  });

  test("a burst in one kernel encodes one dispatch (a few for large weights), the step route several a token", async () => {
    await useBackend("js");
    const { onGpu } = pair(lstm);
    const g = gpu as Backend & { counts(): Record<string, number> };
    const dispatches = async (fused: boolean, length: number): Promise<number> => {
      const d0 = g.counts().dispatches;
      await withBackend(gpu!, () => text(onGpu, { fused, wide: false }, undefined, length));
      return g.counts().dispatches - d0;
    };
    // beyond the prime's steps (length 0), 64 tokens: bursts of 8, 16, 32 and the last 8
    assert.equal((await dispatches(true, 64)) - (await dispatches(true, 0)), 4);
    const steps = (await dispatches(false, 64)) - (await dispatches(false, 0));
    assert.ok(steps >= 64 * 5, `the step route: ${steps} dispatches for 64 tokens`);
    // the wide route: a dispatch per layer and one for the logits a token, and one more a burst (its first draw)
    // (the default: no option, and CHARLM_WEBGPU_BURST=wide; CHARLM_WEBGPU_BURST=fused takes one kernel a burst)
    const byDefault = async (length: number): Promise<number> => {
      const d0 = g.counts().dispatches;
      await withBackend(gpu!, () => text(onGpu, {}, undefined, length));
      return g.counts().dispatches - d0;
    };
    assert.equal((await byDefault(64)) - (await byDefault(0)), 64 * 3 + 4);
    for (const [value, want] of [
      ["wide", 64 * 3 + 4],
      ["1", 64 * 3 + 4],
      ["fused", 4],
    ] as const) {
      process.env.CHARLM_WEBGPU_BURST = value;
      try {
        assert.equal((await byDefault(64)) - (await byDefault(0)), want, `CHARLM_WEBGPU_BURST=${value}`);
      } finally {
        delete process.env.CHARLM_WEBGPU_BURST;
      }
    }
    // a value it does not know is refused in one line, not taken for the default
    process.env.CHARLM_WEBGPU_BURST = "fuse";
    try {
      await assert.rejects(
        () => withBackend(gpu!, () => text(onGpu, {}, undefined, 8)),
        /^CharlmError: CHARLM_WEBGPU_BURST is "fuse"; use wide, fused or 0, or unset it \(wide\)$/,
      );
    } finally {
      delete process.env.CHARLM_WEBGPU_BURST;
    }

    // a model whose weights take most of a dispatch's budget runs 3 tokens a dispatch: the same text
    const { shape } = onGpu.burstWeights!();
    const bytes = burstLayout(shape).weights * 4;
    assert.equal(tokensPerDispatch(bytes, 3 * bytes + 5), 3);
    assert.equal(tokensPerDispatch(bytes, bytes / 2), 1, "at least one");
    const whole = await withBackend(gpu!, () => text(onGpu, { wide: false }, undefined, 64));
    process.env.CHARLM_WEBGPU_BURST_BYTES = String(3 * bytes);
    try {
      assert.equal((await dispatches(true, 64)) - (await dispatches(true, 0)), 3 + 6 + 11 + 3); // 8, 16, 32, 8
      assert.equal(await withBackend(gpu!, () => text(onGpu, { wide: false }, undefined, 64)), whole);
    } finally {
      delete process.env.CHARLM_WEBGPU_BURST_BYTES;
    }
  });

  test("generations running at once on one device (a server's) give each the text it gives alone", async () => {
    await useBackend("js");
    const { onGpu } = pair(lstm);
    for (const route of [{ fused: true, wide: false }, { fused: true }, { fused: false }]) {
      const run = (seed: number) => withBackend(gpu!, () => text(onGpu, { ...route, seed }, undefined, 40));
      const alone = [await run(1), await run(2)];
      assert.notEqual(alone[0], alone[1]);
      assert.deepEqual(await Promise.all([run(1), run(2)]), alone, JSON.stringify(route));
    }
  });
});
