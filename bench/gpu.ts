// GPU bench: charlm on the webgpu backend against PyTorch CUDA on the same GPU, in one run that prints everything.
//
//   W1 = Embedding 64 -> LSTM 256 -> Dense 65, W2 = Embedding 64 -> 2 x LSTM 512 -> Dense 65; sequence 100, Adam,
//   batch 64 and 256 (and W3, a 6 x 384 GPT with block 256, at batch 64: the transformer's speed, for the quality
//   route): training characters/s (B·T per full step: forward, loss, backward, update) after warm-up
//   steps, the loss read once at the end (the GPU runs ahead of JavaScript in between, as in a training run that
//   logs now and then). Then generation at batch 1 (charlm's sampler, one character per step; tokens drawn on the
//   GPU in bursts, the default, and reading the logits back after each, as before) and, for scale,
//   charlm's wasm backend on the CPU's cores for W1 and W2 at both batch sizes.
//
// On the GPU machine (no Node there; ../shared/gpu/README.md), from the project root, after npm ci here:
//   bash bench/gpu-pack.sh        (../shared/gpu/pack.sh, plus train_torch.py, the wasm builds and worker)
//   then there, with .gpu carried:  . .gpu/setup.sh && node .gpu/app/gpu.mjs
// Here, on SwiftShader (CPU Vulkan, ~1000x slower: checks the plumbing, not the speed):
//   CHARLM_GPU_BENCH=tiny node --import tsx bench/gpu.ts      (or the bundle: ... node .gpu/app/gpu.mjs --tiny)
//
// Each recurrent workload runs in the step layout: its dot products in 2, 4 and 8 slices (CHARLM_WEBGPU_SPLIT; rows per
// thread by the default rule), 4 rows per thread (CHARLM_WEBGPU_ROWS) in 4 and 8 slices, 2 and 4 units per thread in
// the backward steps (CHARLM_WEBGPU_UNITS; slices by the default rule), 4 units in 8 slices, wide tiles
// (CHARLM_WEBGPU_WIDE) alone and with 4 units, prefetching (CHARLM_WEBGPU_PREFETCH); then every rule at its default,
// and so again with stop 5's split-K rule (CHARLM_WEBGPU_SPLITK=128). 1 slice and the sequence layout, the slowest at
// stop 5, are left out (--tiny keeps them, to check their plumbing). With CHARLM_WEBGPU_KERNELS set (the fastest
// settings per kernel and shape that bench/gpu_kernels.ts measured), only the defaults and those ("tuned"). --json FILE
// keeps every figure; --only W1,W2 measures those workloads alone (training, generation, wasm). W3 runs its attention
// both ways (CHARLM_WEBGPU_ATTENTION: matmul, the default, or rows). --compare: the defaults against the same on a
// device without Dawn's robustness transforms (CHARLM_DAWN_OPTIONS=enable-dawn-features=disable_robustness, a backend
// of its own; stop 23's variants, now decided, are in bench/results/h200-stop23), and against
// CHARLM_WEBGPU_MATMUL=$CHARLM_BENCH_MATMUL when that is set: a tile variant everywhere, or auto-128, auto-128p or
// auto-128d, the default's choice with that variant for the large products. --rounds N runs every variant of a workload
// N times, taking turns (A B C A B C ...), and reports the median and the spread: a variant timed only after another
// runs on a GPU that has been busy longer. Before the first timed run of the process one run is made and not counted
// (since stop 23: that first run was a third as fast). --wasm-only [--against FILE] runs the wasm part alone, its "x
// wasm" against the webgpu figures a --json FILE kept (PART=compare runs it after the GPU's training, so that both come
// from one command); --training-only leaves out generation and wasm; --generation-only runs generation alone (a
// recurrent model's bursts in one kernel each, since stop 16, against the wide route (since stop 17; the default since
// stop 23), the step route and reading the logits back).
//
// --profile: where a training step's time goes instead (the backend's profiler, src/engine/backends/webgpu/
// profile.ts), for the same workloads and batches (--only W3: the GPT too, with its defaults): wall ms per step, the host's share (the whole JavaScript step,
// and the part of it inside the runtime's encoding), the GPU's (kernels from timestamps, one pass per dispatch),
// and the kernels that take the GPU's time. No PyTorch, generation or wasm parts.
// --profile-generation (with the generation, e.g. --generation-only): where a character's time goes at batch 1, for
// each route of a recurrent model and for the GPT past its window (every character reruns the window): wall ms,
// encoding ms, dispatches and GPU time per character, by kernel (the difference of a 128- and a 64-character run).
//
// The PyTorch side is bench/train_torch.py --device cuda (float32, TF32 off), found next to this file (the bundle's
// .gpu/app/) or in bench/; run by the first of $CHARLM_PYTHON, python3, /usr/bin/python3 that imports torch. Without
// CUDA it says so and runs on the CPU.

import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { Vocab } from "../src/data/vocab.js";
import type { Tensor } from "../src/engine/index.js";
import { getBackend, setBackend, useBackend } from "../src/engine/index.js";
import type { Backend } from "../src/engine/backend.js";
import { createWebgpuBackend, type KernelProfile, type WebgpuBackend } from "../src/engine/backends/webgpu/index.js";
import { scope } from "../src/engine/scope.js";
import type { ModelConfig } from "../src/models/config.js";
import type { LanguageModel } from "../src/models/contract.js";
import { buildModel } from "../src/models/registry.js";
import { generate, generationRate } from "../src/sample/generate.js";
import { Adam } from "../src/train/optimizers.js";
import { Rng } from "../src/util/rng.js";

const here = dirname(fileURLToPath(import.meta.url));
const tiny = process.env.CHARLM_GPU_BENCH === "tiny" || process.argv.includes("--tiny");
const profile = process.argv.includes("--profile");

const V = 65;
// Tiny: shapes SwiftShader runs in seconds; the same code path.
const WARMUP = tiny ? 1 : 3;
const STEPS = tiny ? 2 : 30;
const GEN_CHARS = tiny ? 5 : 1000;
const PROFILE_CHARS = tiny ? 4 : 64; // --profile-generation: characters of each of its two generations' difference
// --profile: more warm-up than the throughput runs, so that JavaScript's optimizing compiler is done with the step
const PROFILE_WARMUP = tiny ? 1 : 10;
const PROFILE_STEPS = tiny ? 2 : 10;
interface Workload {
  name: string;
  desc: string;
  model: ModelConfig;
  T: number; // sequence length (the block, for GPT)
  batches: number[];
  steps: number; // timed steps
  heads?: number;
}
const lstm = (name: string, H: number, L: number): Workload => ({
  name,
  desc: `Embedding 64 -> ${L > 1 ? `${L} x ` : ""}LSTM ${H} -> Dense ${V}`,
  model: { type: "rnn", cell: "lstm", vocabSize: V, embedding: 64, units: H, layers: L, dropout: 0 },
  T: tiny ? 8 : 100,
  batches: tiny ? [4, 8] : [64, 256],
  steps: STEPS,
});
// W3, for the quality route through a transformer: nanoGPT's Shakespeare model's shape (6 layers, 6 heads, 384 wide,
// block 256), at one batch size and fewer steps (each is ~1 TFLOP).
const gpt = (C: number, L: number, nH: number, block: number): Workload => ({
  name: "W3",
  desc: `GPT ${L} layers x ${C}, ${nH} heads, block ${block}`,
  model: { type: "gpt", vocabSize: V, blockSize: block, nLayer: L, nHead: nH, nEmbd: C, dropout: 0, bias: true },
  T: block,
  batches: tiny ? [2] : [64],
  steps: tiny ? 2 : 10,
  heads: nH,
});
const workloads: Workload[] = tiny
  ? [lstm("W1", 16, 1), lstm("W2", 24, 2), gpt(16, 1, 2, 16)]
  : [lstm("W1", 256, 1), lstm("W2", 512, 2), gpt(384, 6, 6, 256)];

function randomIds(n: number, rng: Rng): Int32Array {
  return Int32Array.from({ length: n }, () => rng.int(V));
}

/** One full training step in one scope; returns the loss tensor (kept, unread). */
function trainStep(model: LanguageModel, opt: Adam, x: Int32Array, y: Int32Array, B: number, T: number): Tensor {
  return scope(() => {
    for (const p of model.parameters().values()) p.zeroGrad();
    const { loss } = model.forward(x, B, T, { targets: y, training: true });
    loss!.backward();
    opt.step(2e-3);
    return loss!;
  });
}

type Counted = { counts?: () => Readonly<Record<string, number>>; bytesAllocated?: () => number };

/** What the GPU backend encoded per step between two snapshots of its counts, and its memory. */
function perStep(a: Readonly<Record<string, number>>, b: Readonly<Record<string, number>>, steps: number): string {
  return Object.keys(b)
    .map((key) => `${((b[key] - a[key]) / steps).toFixed(0)} ${key}`)
    .join(", ");
}

let lastProfile = "";

/** Every setting a variant may have set, unset. */
function clearSettings(): void {
  for (const name of [
    "CHARLM_WEBGPU_RECURRENT",
    "CHARLM_WEBGPU_ROWS",
    "CHARLM_WEBGPU_SPLIT",
    "CHARLM_WEBGPU_UNITS",
    "CHARLM_WEBGPU_ATTENTION",
    "CHARLM_WEBGPU_SPLITK",
    "CHARLM_WEBGPU_WIDE",
    "CHARLM_WEBGPU_PREFETCH",
    "CHARLM_WEBGPU_AHEAD",
    "CHARLM_WEBGPU_VEC4",
    "CHARLM_WEBGPU_KERNELS",
    "CHARLM_WEBGPU_MATMUL",
    "CHARLM_FOLD_EMBEDDING",
    "CHARLM_WEBGPU_LAYERNORM",
    "CHARLM_WEBGPU_SOFTMAX",
  ])
    delete process.env[name];
}

/** Training characters/s: warm-up steps, then timed steps, the loss read once after the last. */
async function trainRate(w: Workload, B: number, steps: number): Promise<[number, number]> {
  const be = getBackend() as Counted;
  const rng = new Rng(0);
  const T = w.T;
  const model = buildModel(w.model, rng);
  const opt = new Adam(model.parameters());
  const x = randomIds(B * T, rng);
  const y = randomIds(B * T, rng);
  let last: Tensor | null = null;
  const run = (n: number) => {
    for (let s = 0; s < n; s++) {
      const loss = trainStep(model, opt, x, y, B, T);
      last?.dispose();
      last = loss;
    }
  };
  run(WARMUP);
  await last!.value();
  const c0 = be.counts?.();
  const m0 = be.bytesAllocated?.() ?? 0;
  const t0 = performance.now();
  run(steps);
  const loss = await last!.value();
  const sec = (performance.now() - t0) / 1000;
  if (c0 && be.counts) {
    const grown = (be.bytesAllocated!() - m0) / 2 ** 20;
    lastProfile = `per step: ${perStep(c0, be.counts(), steps)}; GPU memory ${(m0 / 2 ** 20).toFixed(0)} MiB, +${grown.toFixed(1)} MiB over the timed steps`;
  }
  last!.dispose();
  dispose(model, opt);
  return [(B * T * steps) / sec, loss];
}

function dispose(model: LanguageModel, opt?: Adam): void {
  for (const p of model.parameters().values()) p.dispose();
  (opt as { dispose?: () => void } | undefined)?.dispose?.();
}

/**
 * onDevice: tokens drawn on the GPU in bursts (the default there), a recurrent model's bursts in one kernel each
 * unless `fused` is false (or in a kernel per layer a token, `wide`); or onDevice false: the logits read back for each.
 */
async function generateRate(
  w: Workload,
  chars: number,
  onDevice: boolean,
  fused = true,
  wide = false,
): Promise<number> {
  const vocab = new Vocab(Array.from({ length: V }, (_, i) => String.fromCharCode(48 + i)));
  const model = buildModel(w.model, new Rng(0));
  const opts = { prime: "", temperature: 1, seed: 1, onDevice, fused, wide };
  // a warm-up first: pipelines, burst sizes
  const run = (length: number) => generate(model, vocab, { ...opts, length });
  const { perSecond, text } = await generationRate(run, chars, Math.min(chars, 120));
  dispose(model);
  if (text.length !== chars) throw new Error(`generated ${text.length} characters, expected ${chars}`);
  return perSecond;
}

// Stop 17's kernels for a batch-1 GPT step, where stop 18 added its own: products of tiles, layer norm a thread per
// row, cached attention a thread per row or value
const BEFORE_BATCH1 = { CHARLM_WEBGPU_THIN: "0", CHARLM_WEBGPU_LAYERNORM: "thread", CHARLM_WEBGPU_CACHED: "thread" };

/**
 * A GPT's generation at batch 1 in characters a second, within its window (from an empty prime) and past it (after
 * a prime that fills it: every character reruns the window), each the difference of a generation of 2n and of n
 * characters (the prime's steps cancel), drawn on the GPU; with the settings in `env`.
 */
async function gptRates(
  w: Workload,
  n: number,
  env: Record<string, string>,
  windowStride = 1,
): Promise<[number, number]> {
  const vocab = new Vocab(Array.from({ length: V }, (_, i) => String.fromCharCode(48 + i)));
  const model = buildModel(w.model, new Rng(0));
  const block = (w.model as { blockSize: number }).blockSize;
  Object.assign(process.env, env);
  try {
    const rates: number[] = [];
    for (const prime of ["", "0".repeat(block)]) {
      const chars = Math.min(n, Math.floor((block - 2) / 2)); // within: 2n characters stay inside the window
      const k = prime ? n : chars;
      const timed = async (length: number) => {
        const t0 = performance.now();
        for await (const _ of generate(model, vocab, { prime, length, seed: 1, temperature: 1, windowStride }));
        return performance.now() - t0;
      };
      await timed(4);
      const [a, b] = [await timed(k), await timed(2 * k)];
      rates.push(b > a ? (1000 * k) / (b - a) : NaN); // NaN: the runs too short to tell apart (--tiny)
    }
    return [rates[0], rates[1]];
  } finally {
    for (const key of Object.keys(env)) delete process.env[key];
    dispose(model);
  }
}

interface TorchResult {
  charsPerSec: number;
  loss: number;
  torch: string;
  device?: string;
}

/** The Python that has torch, and whether it sees CUDA; null with the reason when none does. */
function findTorch(): { python: string; cuda: boolean; version: string } | string {
  const tried: string[] = [];
  for (const python of [process.env.CHARLM_PYTHON, "python3", "/usr/bin/python3"]) {
    if (!python) continue;
    const code = "import torch; print(torch.__version__, torch.cuda.is_available())";
    const r = spawnSync(python, ["-c", code], { encoding: "utf8" });
    const [version, cuda] = (r.stdout ?? "").trim().split(" ");
    if (r.status === 0) return { python, cuda: cuda === "True", version };
    tried.push(`${python}: ${(r.stderr || r.error?.message || "").trim().split("\n").pop()}`);
  }
  return tried.join("; ");
}

function torch(python: string, w: Workload, B: number, device: string): TorchResult | string {
  const script = [join(here, "train_torch.py"), "bench/train_torch.py"].find((p) => existsSync(p));
  if (!script) return "bench/train_torch.py not found (copy it next to the bundle: cp bench/train_torch.py .gpu/app/)";
  const m = w.model;
  const shape =
    m.type === "gpt"
      ? ["--cell", "gpt", "--units", `${m.nEmbd}`, "--layers", `${m.nLayer}`, "--heads", `${m.nHead}`]
      : ["--cell", m.cell, "--embedding", `${m.embedding}`, "--units", `${m.units}`, "--layers", `${m.layers}`];
  const args = [script, "throughput", "--device", device, ...shape, "--vocab", `${V}`];
  args.push("--batch", `${B}`, "--seq", `${w.T}`, "--steps", `${w.steps}`, "--warmup", `${WARMUP}`);
  const r = spawnSync(python, args, { encoding: "utf8" });
  if (r.status !== 0)
    return `failed (exit ${r.status}): ${(r.stderr || r.error?.message || "").trim().split("\n").pop()}`;
  const lines = r.stdout.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]) as TorchResult;
}

// ---- --profile

/** Steps as trainRate runs them, the last loss kept; returns the loss tensor of the last step. */
function steps(
  model: LanguageModel,
  opt: Adam,
  x: Int32Array,
  y: Int32Array,
  [B, T]: [number, number],
  n: number,
  last: Tensor | null,
) {
  for (let s = 0; s < n; s++) {
    const loss = trainStep(model, opt, x, y, B, T);
    last?.dispose();
    last = loss;
  }
  return last!;
}

type Profiled = Backend & Pick<WebgpuBackend, "startProfile" | "stopProfile">;

/** Where the time of a training step goes, for one workload and batch: printed, see the file's header. */
async function profileSteps(be: Profiled, w: Workload, B: number, layout: string): Promise<void> {
  const n = PROFILE_STEPS;
  const T = w.T;
  const rng = new Rng(0);
  const model = buildModel(w.model, rng);
  const opt = new Adam(model.parameters());
  const x = randomIds(B * T, rng);
  const y = randomIds(B * T, rng);
  let last = steps(model, opt, x, y, [B, T], PROFILE_WARMUP, null);
  await last.value();
  // 1. Unprofiled: the wall time, and the host's part of it (the steps' JavaScript, before waiting for the loss)
  let t0 = performance.now();
  last = steps(model, opt, x, y, [B, T], n, last);
  const jsMs = (performance.now() - t0) / n;
  await last.value();
  const wallMs = (performance.now() - t0) / n;
  // 2. Host times inside the runtime (encoding), with the ordinary single pass
  be.startProfile({ timestamps: false });
  t0 = performance.now();
  last = steps(model, opt, x, y, [B, T], n, last);
  const jsProfiledMs = (performance.now() - t0) / n;
  await last.value();
  const host = await be.stopProfile();
  // 3. GPU times per kernel (a pass per dispatch), keyed by kernel and workgroup grid
  be.startProfile({ grid: true });
  last = steps(model, opt, x, y, [B, T], n, last);
  await last.value();
  const gpu = await be.stopProfile();
  last.dispose();
  dispose(model, opt);

  const ms = (ns: number) => ns / 1e6 / n;
  console.log(`${w.name} ${w.desc}, B=${B}, ${layout}: per step, ${n} steps after ${PROFILE_WARMUP} warm-up`);
  console.log(
    `  wall ${wallMs.toFixed(2)} ms = the steps' JavaScript ${jsMs.toFixed(2)} ms + ${(wallMs - jsMs).toFixed(2)} ms ` +
      `waiting for the GPU at the loss read`,
  );
  console.log(
    `  host, timed inside the runtime (steps' JavaScript ${jsProfiledMs.toFixed(2)} ms then): encoding ` +
      `${(host.hostMs / n).toFixed(2)} ms, of which submits ${(host.submitMs / n).toFixed(2)} ms (the loss read's ` +
      `included); ${host.counts.dispatches / n} dispatches, ${host.counts.copies / n} copies, ` +
      `${host.counts.clears / n} clears, ${host.counts.uploads / n} uploads, ${(host.counts.submits / n).toFixed(1)} submits`,
  );
  if (!gpu.timestamps) {
    console.log(`  GPU: not timed; ${gpu.why}`);
    kernelTable(host.kernels, n, false, false);
    return;
  }
  const busy = gpu.gpuNs + gpu.copyGapNs + gpu.passGapNs;
  console.log(
    `  GPU: kernels ${ms(gpu.gpuNs).toFixed(2)} ms + copies and clears ${ms(gpu.copyGapNs).toFixed(2)} ms + between ` +
      `passes ${ms(gpu.passGapNs).toFixed(2)} ms = ${ms(busy).toFixed(2)} ms` +
      `${gpu.overlapNs ? ` (passes began ${ms(gpu.overlapNs).toFixed(2)} ms before the previous ended: not counted)` : ""}` +
      `${gpu.badTimestamps ? ` (${gpu.badTimestamps} dispatches with unusable timestamps left out)` : ""}; ` +
      `timed with a pass per dispatch, whose steps took ${(gpu.wallMs / n).toFixed(2)} ms wall`,
  );
  const bound = jsMs >= ms(busy) ? "host-bound" : "GPU-bound";
  console.log(`  => ${bound}: host JavaScript ${jsMs.toFixed(2)} ms vs GPU ${ms(busy).toFixed(2)} ms per step`);
  // By kernel key (the grid keys summed), then the costliest shapes
  const byKey = new Map<string, KernelProfile>();
  for (const k of gpu.kernels) {
    const key = k.key.slice(0, k.key.indexOf(" ")); // the grid (and a product's M x K x N) dropped
    const e = byKey.get(key) ?? { key, count: 0, gpuNs: 0, hostMs: 0 };
    e.count += k.count;
    e.gpuNs += k.gpuNs;
    byKey.set(key, e);
  }
  for (const k of host.kernels) if (byKey.has(k.key)) byKey.get(k.key)!.hostMs = k.hostMs;
  kernelTable(
    [...byKey.values()].sort((a, b) => b.gpuNs - a.gpuNs),
    n,
    true,
  );
  console.log("  costliest kernel x workgroup grid (a product's M x K x N):");
  kernelTable(gpu.kernels.slice(0, 8), n, true, false);
}

/**
 * --profile-generation: where a character's time goes when generating at batch 1 (each route of a recurrent model,
 * the GPT past its window, whose every character reruns the whole window): two generations from the same prime, of
 * PROFILE_CHARS and of PROFILE_CHARS more, each profiled, and the second's per-kernel totals less the first's,
 * divided by the characters between them (the prime's steps cancel). Host time inside the runtime (encoding) with
 * the ordinary single pass, then GPU time per kernel with a pass per dispatch.
 */
async function profileGeneration(be: Profiled, w: Workload): Promise<void> {
  const vocab = new Vocab(Array.from({ length: V }, (_, i) => String.fromCharCode(48 + i)));
  const model = buildModel(w.model, new Rng(0));
  const block = (w.model as { blockSize?: number }).blockSize ?? 0;
  const prime = "0".repeat(block); // a GPT's window full from the first character on
  const routes: [string, { fused?: boolean; wide?: boolean }][] =
    w.model.type === "rnn"
      ? [
          ["in one kernel a burst", { fused: true, wide: false }],
          ["in a kernel per layer a character", { fused: true, wide: true }],
          ["step by step", { fused: false }],
        ]
      : [["past its window", {}]];
  const n = PROFILE_CHARS;
  for (const [label, opts] of routes) {
    const run = (length: number) => generate(model, vocab, { prime, length, seed: 1, temperature: 1, ...opts });
    const drain = async (length: number) => {
      for await (const _ of run(length));
    };
    await drain(8); // pipelines
    const measure = async (length: number, timestamps: boolean) => {
      be.startProfile(timestamps ? {} : { timestamps: false });
      const t0 = performance.now();
      await drain(length);
      const p = await be.stopProfile();
      return { p, ms: performance.now() - t0 };
    };
    const [h1, h2] = [await measure(n, false), await measure(2 * n, false)];
    const [g1, g2] = [await measure(n, true), await measure(2 * n, true)];
    const per = (a: number, b: number) => (b - a) / n;
    const counts = (k: keyof typeof h1.p.counts) => per(h1.p.counts[k], h2.p.counts[k]);
    console.log(
      `${w.name} ${w.desc}, generation ${label}: per character, the difference of ${2 * n} and ${n} characters`,
    );
    console.log(
      `  wall ${per(h1.ms, h2.ms).toFixed(3)} ms; encoding inside the runtime ${per(h1.p.hostMs, h2.p.hostMs).toFixed(3)} ` +
        `ms; ${counts("dispatches").toFixed(1)} dispatches, ${counts("copies").toFixed(1)} copies, ` +
        `${counts("submits").toFixed(2)} submits`,
    );
    if (!g2.p.timestamps) {
      console.log(`  GPU: not timed; ${g2.p.why}`);
      continue;
    }
    const busy = (p: typeof g1.p) => p.gpuNs + p.copyGapNs + p.passGapNs;
    console.log(
      `  GPU busy ${(per(busy(g1.p), busy(g2.p)) / 1e6).toFixed(3)} ms (kernels ` +
        `${(per(g1.p.gpuNs, g2.p.gpuNs) / 1e6).toFixed(3)}); a pass per dispatch: wall ${per(g1.ms, g2.ms).toFixed(3)} ms`,
    );
    const byKey = (p: typeof g1.p) => new Map(p.kernels.map((k) => [k.key, k]));
    const [a, b] = [byKey(g1.p), byKey(g2.p)];
    const hostA = new Map(h1.p.kernels.map((k) => [k.key, k.hostMs]));
    const hostB = new Map(h2.p.kernels.map((k) => [k.key, k.hostMs]));
    const diff: KernelProfile[] = [...b.values()].map((k) => ({
      key: k.key,
      count: k.count - (a.get(k.key)?.count ?? 0),
      gpuNs: k.gpuNs - (a.get(k.key)?.gpuNs ?? 0),
      hostMs: (hostB.get(k.key) ?? 0) - (hostA.get(k.key) ?? 0),
    }));
    kernelTable(
      diff.filter((k) => k.count > 0).sort((x, y) => y.gpuNs - x.gpuNs),
      n,
      true,
    );
  }
  dispose(model);
}

/**
 * The kernels' table, per step: count, then GPU us (total, per dispatch, share of the kernels' GPU time) when
 * `timed`, else host us inside the runtime (total, share); and host us per dispatch (encoding) if `hostColumn`.
 */
function kernelTable(kernels: KernelProfile[], n: number, timed: boolean, hostColumn = true): void {
  const us = (k: KernelProfile) => (timed ? k.gpuNs / 1e3 : k.hostMs * 1e3);
  const total = kernels.reduce((a, k) => a + us(k), 0);
  const top = kernels.slice(0, 15);
  const what = timed ? "GPU" : "host";
  const head = `count/step  ${what} us/step  us/dispatch  share${hostColumn ? "  host us/dispatch" : ""}`;
  console.log(`    ${"kernel".padEnd(34)} ${head}`);
  const row = (k: KernelProfile) => {
    const cols = [
      (k.count / n).toFixed(1).padStart(10),
      (us(k) / n).toFixed(0).padStart(what.length + 8),
      (us(k) / k.count).toFixed(1).padStart(11),
      `${((100 * us(k)) / (total || 1)).toFixed(1).padStart(4)}%`,
    ];
    if (hostColumn) cols.push(((k.hostMs * 1e3) / k.count).toFixed(1).padStart(16));
    console.log(`    ${k.key.padEnd(34)} ${cols.join("  ")}`);
  };
  top.forEach(row);
  if (kernels.length > top.length) {
    const rest = kernels.slice(top.length);
    const sum = (f: (k: KernelProfile) => number) => rest.reduce((a, k) => a + f(k), 0);
    const others = { count: sum((k) => k.count), gpuNs: sum((k) => k.gpuNs), hostMs: sum((k) => k.hostMs) };
    row({ key: `(${rest.length} more)`, ...others });
  }
}

const k = (x: number) => (x >= 1e6 ? `${(x / 1e6).toFixed(2)} M` : `${(x / 1e3).toFixed(1)} k`).padStart(9);

async function main(): Promise<void> {
  const t00 = performance.now();
  const gpu = (await useBackend("webgpu")) as Backend & { device?: string };
  console.log(`charlm webgpu on ${gpu.device ?? "?"}${tiny ? " (tiny sizes: a plumbing check, not a timing)" : ""}`);
  if (!tiny && /swiftshader/i.test(gpu.device ?? "")) {
    // Full sizes would take hours on a CPU Vulkan: on the GPU machine this means Vulkan did not find the NVIDIA
    // driver (setup.sh prints the ICD it chose).
    console.log("the adapter is SwiftShader (a CPU Vulkan), not a GPU: stopping; use --tiny to check the plumbing");
    process.exit(1);
  }
  const T = workloads[0].T;
  // CHARLM_WEBGPU_KERNELS (bench/gpu_kernels.ts --table): the fastest step settings per kernel and shape on this GPU,
  // run as a variant of its own ("tuned") against the defaults, not under every variant
  const kernelTable = process.env.CHARLM_WEBGPU_KERNELS;
  delete process.env.CHARLM_WEBGPU_KERNELS;
  if (profile) {
    console.log(
      `sequence ${T}, Adam, float32; where a training step's time goes (--profile), with the default kernels and ` +
        `${kernelTable ? "the tuned ones (CHARLM_WEBGPU_KERNELS)" : "with wide tiles"}\n`,
    );
    // (--tiny: the sequence layout too, to check its plumbing; it was the slowest everywhere on an H200)
    const variants: [string, Record<string, string>][] = [
      ["step layout", { CHARLM_WEBGPU_RECURRENT: "step" }],
      kernelTable
        ? ["tuned", { CHARLM_WEBGPU_RECURRENT: "auto", CHARLM_WEBGPU_KERNELS: kernelTable }]
        : ["step layout, wide tiles", { CHARLM_WEBGPU_RECURRENT: "step", CHARLM_WEBGPU_WIDE: "1" }],
      ...(tiny
        ? [["sequence layout", { CHARLM_WEBGPU_RECURRENT: "sequence" }] as [string, Record<string, string>]]
        : []),
    ];
    // the recurrent workloads, or those --only names (W3, the GPT, only so: its defaults alone)
    const at = process.argv.indexOf("--only");
    const named = at > 0 ? process.argv[at + 1].split(",") : null;
    for (const w of workloads.filter((w) => (named ? named.includes(w.name) : w.model.type === "rnn"))) {
      for (const B of w.batches) {
        for (const [name, env] of w.model.type === "gpt"
          ? [["defaults", {}] as [string, Record<string, string>]]
          : variants) {
          Object.assign(process.env, env);
          await profileSteps(gpu as Profiled, w, B, name);
          for (const k of Object.keys(env)) delete process.env[k];
        }
      }
    }
    gpu.destroy?.();
    console.log(`\ntotal ${((performance.now() - t00) / 1000).toFixed(0)} s`);
    return;
  }
  console.log(
    `sequence ${T} (GPT: its block), Adam, float32; ${WARMUP} warm-up steps, ${STEPS} timed steps (GPT: ` +
      `${workloads[2].steps}), loss read at the end\n`,
  );
  const py = findTorch();
  const device = typeof py !== "string" && py.cuda ? "cuda" : "cpu";
  if (typeof py === "string") console.log(`PyTorch: not found (${py}); its side is skipped\n`);
  else console.log(`PyTorch ${py.version} (${py.python}) on ${py.cuda ? "CUDA" : "the CPU (no CUDA here)"}\n`);

  // Each workload in both encodings of the recurrent time loop (src/engine/backends/webgpu/kernels/recurrent.ts):
  // a dispatch per step, its dot products cut into 2 to 8 slices, 4 rows per thread, its backward steps with 2 or 4
  // units per thread, wide tiles; every rule at its default, and so with stop 5's split-K rule. Left out as the
  // slowest everywhere at stop 5 on an H200: 1 slice, and the sequence layout (1.2x-2.9x slower than the default;
  // CHARLM_WEBGPU_RECURRENT=sequence still runs it). --json FILE keeps every figure, so that a script can pick the
  // fastest.
  const layouts = [
    ...(tiny ? ["1", "4"] : ["2", "4", "8"]).map((split) => ({
      name: `step, ${split} slice${split === "1" ? "" : "s"}`,
      env: { CHARLM_WEBGPU_RECURRENT: "step", CHARLM_WEBGPU_SPLIT: split },
    })),
    // 4 rows per thread with slices: fewer row groups stream Wh from the cache at every step (the rows rule was set
    // before slices, to keep enough workgroups)
    ...(tiny ? [] : ["4", "8"]).map((split) => ({
      name: `step, 4 rows, ${split} slices`,
      env: { CHARLM_WEBGPU_RECURRENT: "step", CHARLM_WEBGPU_ROWS: "4", CHARLM_WEBGPU_SPLIT: split },
    })),
    ...(tiny
      ? [["4", "2"]]
      : [
          ["2", ""],
          ["4", ""],
          ["4", "8"],
        ]
    ).map(([units, split]) => ({
      name: `step, ${units} units${split ? `, ${split} slices` : ""}`,
      env: {
        CHARLM_WEBGPU_RECURRENT: "step",
        CHARLM_WEBGPU_UNITS: units,
        ...(split ? { CHARLM_WEBGPU_SPLIT: split } : {}),
      },
    })),
    // wide tiles (up to 64 k per slice between barriers; CHARLM_WEBGPU_WIDE), slices by the default rule
    { name: "step, wide tiles", env: { CHARLM_WEBGPU_RECURRENT: "step", CHARLM_WEBGPU_WIDE: "1" } },
    {
      name: "step, 4 units, wide tiles",
      env: { CHARLM_WEBGPU_RECURRENT: "step", CHARLM_WEBGPU_UNITS: "4", CHARLM_WEBGPU_WIDE: "1" },
    },
    ...(tiny
      ? [{ name: "sequence, 1 row", env: { CHARLM_WEBGPU_RECURRENT: "sequence", CHARLM_WEBGPU_ROWS: "1" } }]
      : []),
    // the next tile loaded while the current one is multiplied (CHARLM_WEBGPU_PREFETCH), slices by the default rule
    { name: "step, prefetch", env: { CHARLM_WEBGPU_RECURRENT: "step", CHARLM_WEBGPU_PREFETCH: "1" } },
    // every rule at its default, the same with stop 8's split-K target (weight gradients split to 512 workgroups,
    // not 2,048; src/engine/backends/webgpu/kernels/matmul.ts), and with the products' 128 x 128 tiles
    { name: "defaults", env: { CHARLM_WEBGPU_RECURRENT: "step" } },
    { name: "defaults, split-K 512", env: { CHARLM_WEBGPU_RECURRENT: "step", CHARLM_WEBGPU_SPLITK: "512" } },
    { name: "defaults, 128 tiles", env: { CHARLM_WEBGPU_RECURRENT: "step", CHARLM_WEBGPU_MATMUL: "128" } },
    // stop 11: every step a tiled product in parts, then the gate math (parts by its rule)
    { name: "products layout", env: { CHARLM_WEBGPU_RECURRENT: "products" } },
  ];
  // With CHARLM_WEBGPU_KERNELS (the fastest step settings per kernel and shape, from bench/gpu_kernels.ts --table):
  // the defaults against those settings, which that sweep already chose among all the combinations above, alone
  // and with the matrix products' fastest tile variant there (CHARLM_BENCH_MATMUL, from its --matmul; 128 if unset;
  // none when the default 64 won). "auto": where the table picks the products layout for a kernel, it runs.
  const tunedEnv = { CHARLM_WEBGPU_RECURRENT: "auto", CHARLM_WEBGPU_KERNELS: kernelTable ?? "" };
  const tiles = process.env.CHARLM_BENCH_MATMUL || "128";
  const compare = process.argv.includes("--compare");
  const compareVariants: {
    name: string;
    env: Record<string, string>;
    recurrentOnly?: boolean;
    gptOnly?: boolean;
    /** Dawn's options for a device of the variant's own (CHARLM_DAWN_OPTIONS), made once */
    dawn?: string;
  }[] = [
    { name: "defaults", env: { CHARLM_WEBGPU_RECURRENT: "auto" } },
    // the defaults on a device without Dawn's robustness transforms (every storage index clamped to its binding:
    // a min() on each load and store of every kernel); stop 23 checked that the option takes effect in Node and
    // that the webgpu tests pass without them
    { name: "robustness off", env: {}, dawn: "enable-dawn-features=disable_robustness" },
    ...(process.env.CHARLM_BENCH_MATMUL
      ? [
          {
            name: tiles.startsWith("auto-") ? `large products ${tiles.slice(5)}` : `matmul ${tiles} everywhere`,
            env: { CHARLM_WEBGPU_MATMUL: tiles },
          },
        ]
      : []),
  ];
  const variants = compare
    ? compareVariants
    : kernelTable
      ? [
          { name: "defaults", env: { CHARLM_WEBGPU_RECURRENT: "step" } },
          { name: "tuned", env: tunedEnv },
          ...(tiles === "64"
            ? []
            : [{ name: `tuned, matmul ${tiles}`, env: { ...tunedEnv, CHARLM_WEBGPU_MATMUL: tiles } }]),
        ]
      : layouts;
  // W3 with its attention as batched matrix products (the default since stop 9) and as a thread per row or value
  const attentionRoutes = [
    { name: "attention products", env: { CHARLM_WEBGPU_ATTENTION: "matmul" } },
    { name: "attention rows", env: { CHARLM_WEBGPU_ATTENTION: "rows" } },
  ];
  const results: Record<string, unknown>[] = [];
  const json = process.argv.indexOf("--json");
  const onlyAt = process.argv.indexOf("--only"); // --only W1,W2: those workloads' throughput alone
  const only = onlyAt > 0 ? process.argv[onlyAt + 1].split(",") : null;
  const roundsAt = process.argv.indexOf("--rounds");
  const rounds = roundsAt > 0 ? Math.max(1, Number(process.argv[roundsAt + 1]) || 1) : 1;
  const generationOnly = process.argv.includes("--generation-only");
  let processWarm = false; // whether a run, not counted, has gone before the first timed one
  // a backend on a device made with other Dawn options (a variant's `dawn`), one per set of options
  const devices = new Map<string, Backend>();
  const deviceWith = async (options: string): Promise<Backend> => {
    let b = devices.get(options);
    if (!b) {
      const before = process.env.CHARLM_DAWN_OPTIONS;
      process.env.CHARLM_DAWN_OPTIONS = options;
      try {
        b = (await createWebgpuBackend()) as Backend;
      } finally {
        if (before === undefined) delete process.env.CHARLM_DAWN_OPTIONS;
        else process.env.CHARLM_DAWN_OPTIONS = before;
      }
      devices.set(options, b);
    }
    return b;
  };
  for (const w of workloads.filter((w) => !generationOnly && (!only || only.includes(w.name)))) {
    for (const B of w.batches) {
      const t = typeof py === "string" ? "skipped" : torch(py.python, w, B, device);
      const theirs = typeof t === "string" ? null : t;
      console.log(
        `${w.name} ${w.desc} B=${B}: PyTorch ${theirs?.device ?? device} ${theirs ? `${k(theirs.charsPerSec)} chars/s` : t}`,
      );
      const gpt = w.model.type === "gpt";
      const list = compare
        ? variants.filter((v) => !(gpt ? "recurrentOnly" in v : "gptOnly" in v))
        : gpt
          ? attentionRoutes
          : variants;
      const rates: number[][] = list.map(() => []);
      const losses: number[] = [];
      const profiles: string[] = [];
      // The first timed run of a process ran at a third of the others' speed on the H200 (stop 23: W1 at batch 64,
      // 0.65 M and 0.72 M char/s against ~1.9 M, in both calls), whichever variant it was: one run of the first list
      // of a process, not counted, takes that place.
      if (!processWarm) {
        Object.assign(process.env, list[0].env);
        await trainRate(w, B, w.steps);
        clearSettings();
        processWarm = true;
      }
      for (let r = 0; r < rounds; r++) {
        for (const [i, l] of list.entries()) {
          Object.assign(process.env, l.env);
          const own = "dawn" in l && l.dawn ? await deviceWith(l.dawn) : null;
          if (own) setBackend(own);
          const [ours, loss] = await trainRate(w, B, w.steps).finally(() => own && setBackend(gpu));
          clearSettings();
          rates[i].push(ours);
          losses[i] = loss;
          profiles[i] = lastProfile;
        }
      }
      for (const [i, l] of list.entries()) {
        const sorted = [...rates[i]].sort((a, b) => a - b);
        const ours = sorted[Math.floor(sorted.length / 2)];
        const ratio = theirs ? `  ratio ${(ours / theirs.charsPerSec).toFixed(2)}` : "";
        const spread =
          rounds > 1
            ? ` (median of ${rounds}, ${k(sorted[0]).trim()}-${k(sorted[sorted.length - 1]).trim()}` +
              (theirs
                ? `, ratio ${(sorted[0] / theirs.charsPerSec).toFixed(2)}-` +
                  `${(sorted[sorted.length - 1] / theirs.charsPerSec).toFixed(2)})`
                : ")")
            : "";
        console.log(
          `   charlm ${l.name.padEnd(24)} ${k(ours)} chars/s (loss ${losses[i].toFixed(3)})${ratio}${spread}`,
        );
        console.log(`      ${profiles[i]}`);
        results.push({
          workload: w.name,
          B,
          layout: l.env,
          charsPerSec: ours,
          rounds: rates[i],
          torch: theirs?.charsPerSec ?? null,
        });
        // written after every figure, so that a run cut short by its time box keeps what it measured
        if (json > 0) writeFileSync(process.argv[json + 1], JSON.stringify({ device: gpu.device, results }, null, 1));
      }
    }
  }
  if (process.argv.includes("--training-only")) {
    gpu.destroy?.();
    console.log(`\ntotal ${((performance.now() - t00) / 1000).toFixed(0)} s`);
    return;
  }
  // generation for the workloads measured here (--only), the GPT too (its key/value-cached step, the window of ids
  // kept on the GPU when it draws there)
  for (const w of workloads.filter((w) => !only || only.includes(w.name))) {
    // since stop 16 a recurrent model's bursts run in one kernel each (rnnBurst): timed against the step route
    // and since stop 17 against the wide route (a kernel per layer a token, spread over the GPU)
    const burst = w.model.type === "rnn" ? await generateRate(w, GEN_CHARS, true) : null;
    const wide = w.model.type === "rnn" ? await generateRate(w, GEN_CHARS, true, true, true) : null;
    const r = await generateRate(w, GEN_CHARS, true, false);
    const back = await generateRate(w, GEN_CHARS, false);
    console.log(
      `generation, batch 1, ${w.name} (${w.desc}): ` +
        (burst === null ? "" : `${burst.toFixed(0)} chars/s in one kernel a burst, `) +
        (wide === null ? "" : `${wide.toFixed(0)} in a kernel per layer a character, `) +
        `${r.toFixed(0)} drawn on the GPU step by step, ${back.toFixed(0)} reading the logits back for each ` +
        `(${GEN_CHARS} characters)`,
    );
    results.push({ workload: w.name, generation: { burst, wide, steps: r, readBack: back, chars: GEN_CHARS } });
    if (w.model.type === "gpt") {
      // within the window and past it, with stop 18's batch-1 kernels (the defaults) and without
      const n = tiny ? 3 : 100;
      const [within, past] = await gptRates(w, n, {});
      const [within0, past0] = await gptRates(w, n, BEFORE_BATCH1);
      // and past it with a window stride of half the window (stop 18): a rerun every half window of characters
      const stride = Math.floor((w.model as { blockSize: number }).blockSize / 2);
      const [, strided] = await gptRates(w, tiny ? 3 : 2 * stride, {}, stride);
      console.log(
        `generation, batch 1, ${w.name}: within its window ${within.toFixed(0)} chars/s (stop 17's kernels ` +
          `${within0.toFixed(0)}), past it ${past.toFixed(0)} (${past0.toFixed(0)}); past it with a window stride ` +
          `of ${stride}, ${strided.toFixed(0)}`,
      );
      results.push({
        workload: w.name,
        gptGeneration: { within, past, before: { within: within0, past: past0 }, strided: { stride, past: strided } },
      });
    }
    if (json > 0) writeFileSync(process.argv[json + 1], JSON.stringify({ device: gpu.device, results }, null, 1));
  }
  if (process.argv.includes("--profile-generation")) {
    for (const w of workloads.filter((w) => !only || only.includes(w.name)))
      await profileGeneration(gpu as Profiled, w);
  }
  gpu.destroy?.();
  if (generationOnly) {
    console.log(`\ntotal ${((performance.now() - t00) / 1000).toFixed(0)} s`);
    return;
  }

  await wasmPart(results, only);
  console.log(`\ntotal ${((performance.now() - t00) / 1000).toFixed(0)} s`);
}

/**
 * wasm on the CPU's cores (its default thread count), the recurrent workloads at every batch size, against the
 * fastest webgpu figure of each in `results` (this run's, or a --json file's with --wasm-only --against FILE): the
 * "x wasm" the GPU buys. A bundle finds the builds through CHARLM_WASM_DIR, set here to the bundle's folder when
 * they were copied there.
 */
async function wasmPart(results: Record<string, unknown>[], only: string[] | null): Promise<void> {
  if (!process.env.CHARLM_WASM_DIR && existsSync(join(here, "kernels.wasm"))) process.env.CHARLM_WASM_DIR = here;
  const onCpu = workloads.filter((w) => w.model.type === "rnn" && (!only || only.includes(w.name)));
  try {
    if (onCpu.length === 0) throw new Error("no recurrent workload among --only");
    const wasm = (await useBackend("wasm")) as Backend & { threads?: number };
    console.log(`\nwasm on the CPU, ${wasm.threads ?? 1} threads:`);
    for (const w of onCpu) {
      for (const B of w.batches) {
        const [rate] = await trainRate(w, B, tiny ? 1 : 2);
        const gpuBest = Math.max(
          ...results.filter((r) => r.workload === w.name && r.B === B).map((r) => r.charsPerSec as number),
        );
        console.log(
          `   ${w.name} B=${String(B).padEnd(4)} ${k(rate)} chars/s; ` +
            (gpuBest > 0 ? `webgpu's best is ${(gpuBest / rate).toFixed(1)}x` : "webgpu not timed here (--only)"),
        );
      }
    }
    (wasm as { close?: () => void }).close?.();
  } catch (e) {
    console.log(`\nwasm: skipped (${(e as Error).message.split("\n")[0]})`);
  }
}

/** --wasm-only [--against FILE]: the wasm part alone, its ratios against the webgpu figures of FILE (a --json). */
async function wasmOnly(): Promise<void> {
  const t00 = performance.now();
  const at = process.argv.indexOf("--against");
  const file = at > 0 ? process.argv[at + 1] : null;
  let results: Record<string, unknown>[] = [];
  if (file) {
    try {
      results = (JSON.parse(readFileSync(file, "utf8")) as { results: Record<string, unknown>[] }).results;
    } catch (e) {
      console.log(`--against ${file}: not read (${(e as Error).message.split("\n")[0]}); wasm alone`);
    }
  }
  const onlyAt = process.argv.indexOf("--only");
  await wasmPart(results, onlyAt > 0 ? process.argv[onlyAt + 1].split(",") : null);
  console.log(`\ntotal ${((performance.now() - t00) / 1000).toFixed(0)} s`);
}

await (process.argv.includes("--wasm-only") ? wasmOnly() : main());
process.exit(0);
