// `charlm tune-gpu`: time webgpu's recurrent step kernels in every setting on this GPU, for one model shape, the
// matrix products' tiles on that shape's large products, and generation at batch 1 of that model both ways (a burst
// in one kernel, or a step's kernels per character), and keep the fastest in the cache directory's
// webgpu-kernels.json, which every later command on webgpu here reads. The timing is
// src/engine/backends/webgpu/tune.ts (and timeGeneration below); the file is src/engine/backends/tuned-kernels.ts.

import { Vocab } from "../../data/vocab.js";
import type { BurstShape } from "../../engine/backend.js";
import { getBackend } from "../../engine/backends/index.js";
import { ROUTE_NAMES, useBurstRoute } from "../../engine/backends/webgpu/kernels/generate.js";
import { buildModel } from "../../models/registry.js";
import { generate, generationRate } from "../../sample/generate.js";
import { Rng } from "../../util/rng.js";
import { saveTunedKernels, tunedKernelsPath } from "../../engine/backends/tuned-kernels.js";
import type { WebgpuBackend } from "../../engine/backends/webgpu/index.js";
import { stepLabel, tuneProducts, tuneSteps } from "../../engine/backends/webgpu/tune.js";
import { PRESETS, resolveTrainConfig } from "../../train/config.js";
import { selectBackend } from "../backend.js";
import { defineCommand } from "../command.js";

export const tuneGpuCommand = defineCommand({
  name: "tune-gpu",
  summary:
    "time webgpu's recurrent step kernels in every setting, its matrix products' tiles and its two ways to generate on this GPU; keep the fastest for later runs here",
  schema: {
    preset: {
      type: "string",
      help: "the model shape to tune for: this training preset's cell, units and batch size",
      default: "gpu",
      choices: Object.keys(PRESETS),
    },
    cell: { type: "string", choices: ["lstm", "gru", "rnn"], help: "the recurrent cell (default: the preset's)" },
    units: {
      type: "int",
      min: 1,
      max: 8192,
      help: "hidden units of the recurrent layers (default: the preset's)",
      arg: "N",
    },
    batchSize: { type: "int", min: 1, max: 65536, help: "batch rows (default: the preset's)", arg: "N" },
    seqLength: { type: "int", min: 1, max: 1000, help: "time steps in each timed sequence", default: 100, arg: "T" },
    quick: { type: "bool", help: "a smaller grid of settings (about a quarter of them)", default: false },
  },
  environment: ["CHARLM_CACHE_DIR", "CHARLM_DAWN_OPTIONS"],
  examples: [
    "charlm tune-gpu",
    "charlm tune-gpu --units 1024 --batch-size 64",
    "charlm tune-gpu --cell gru --preset tutorial",
  ],
  async run(flags) {
    const cfg = resolveTrainConfig({ preset: flags.preset });
    const cell = (flags.cell ?? cfg.cell) as "lstm" | "gru" | "rnn";
    const H = flags.units ?? cfg.units;
    const B = flags.batchSize ?? cfg.batchSize;
    const out = tunedKernelsPath();
    const { line } = await selectBackend("webgpu");
    process.stderr.write(line + "\n");
    const gpu = getBackend() as WebgpuBackend;
    if (/swiftshader|llvmpipe/i.test(gpu.device))
      process.stderr.write("note: this adapter is a software Vulkan on the CPU; its timings say nothing of a GPU\n");
    process.stdout.write(
      `tuning ${cell.toUpperCase()} ${H} at batch ${B} on ${gpu.device}: forward and backward steps, ${flags.seqLength} a sequence\n`,
    );
    const t0 = performance.now();
    const { table } = await tuneSteps(gpu, cell, [{ H, B }], {
      T: flags.seqLength,
      small: flags.quick,
      onKernel: (k) =>
        process.stdout.write(
          `  ${k.key}: ${k.best.us.toFixed(1)} us a step with ${stepLabel(k.best.settings)}; the defaults ` +
            `${k.defaults.us.toFixed(1)} (${(k.defaults.us / k.best.us).toFixed(2)}x); ${k.timings.length} settings timed\n`,
        ),
    });
    // the matrix products' tiles: 64 x 64 everywhere, or 128 x 128 (as floats, vec4s, prefetched or
    // double-buffered) where large
    const products = await tuneProducts(gpu, cell, { H, B }, { T: flags.seqLength });
    const fastest = products.find((p) => p.diff < 1e-3) ?? products.find((p) => p.variant === "auto")!;
    const auto = products.find((p) => p.variant === "auto")!;
    process.stdout.write(
      `  matrix products (input projection, its gradient, the weight gradient): ` +
        `${products.map((p) => `${p.variant} ${(p.us / 1000).toFixed(2)} ms`).join(", ")}; ` +
        `${fastest.variant} kept (${(auto.us / fastest.us).toFixed(2)}x the default, auto)\n`,
    );
    // generation at batch 1 of the preset's model with these units: bursts in one kernel, a kernel per layer a
    // character, or a step's kernels each
    const shape = { cell, L: cfg.layers, E: cfg.embedding, H, V: 65 };
    const gen = await timeGeneration(shape, flags.quick ? 40 : 400);
    const route = (["fused", "wide", "steps"] as const).reduce((a, b) => (gen[b] > gen[a] ? b : a));
    process.stdout.write(
      `  generation at batch 1 (${shape.L} x ${cell.toUpperCase()} ${H}, embedding ${shape.E}, 65 symbols): ` +
        `${gen.fused.toFixed(0)} chars/s in one kernel a burst, ${gen.wide.toFixed(0)} in a kernel per layer ` +
        `a character, ${gen.steps.toFixed(0)} step by step` +
        `${gen.same ? "" : " (the texts differ: f32 rounding at a draw's boundary)"}; ${route} kept\n`,
    );
    await saveTunedKernels(gpu.device, table, out, fastest.variant, route);
    process.stdout.write(
      `saved in ${out} (${((performance.now() - t0) / 1000).toFixed(0)} s): charlm's commands on webgpu with this GPU ` +
        `take these settings for ${cell.toUpperCase()} ${H} at batch ${B}, these matrix products for every ` +
        `shape, and generate ${ROUTE_NAMES[route]}; CHARLM_WEBGPU_KERNELS, ` +
        `CHARLM_WEBGPU_MATMUL, CHARLM_WEBGPU_BURST and the single settings override them\n`,
    );
  },
});

/**
 * Characters a second of a model of `shape` (random weights) generating `chars` characters at batch 1 on the current
 * backend, in one kernel a burst, in the wide route and step by step (a warm-up of each first), and whether all three
 * gave the same text.
 */
async function timeGeneration(
  shape: BurstShape,
  chars: number,
): Promise<{ fused: number; wide: number; steps: number; same: boolean }> {
  const before = useBurstRoute(null); // time both, whatever was measured before
  const vocab = new Vocab(Array.from({ length: shape.V }, (_, i) => String.fromCharCode(48 + i)));
  const { cell, L: layers, E: embedding, H: units, V: vocabSize } = shape;
  const model = buildModel({ type: "rnn", cell, vocabSize, embedding, units, layers, dropout: 0 }, new Rng(1));
  try {
    const rate = (fused: boolean, wide = false) =>
      generationRate((length) => generate(model, vocab, { prime: "", length, seed: 1, fused, wide }), chars);
    const [fused, wide, steps] = [await rate(true), await rate(true, true), await rate(false)];
    return {
      fused: fused.perSecond,
      wide: wide.perSecond,
      steps: steps.perSecond,
      same: fused.text === steps.text && wide.text === steps.text,
    };
  } finally {
    for (const p of model.parameters().values()) p.dispose();
    useBurstRoute(before);
  }
}
