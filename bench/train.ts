// Training throughput and correctness at scale, charlm against PyTorch (bench/train_torch.py, run as a child).
//
//   npm run bench -- train [--steps N] [--only 1-6]
//     Throughput: Embedding 64 -> LSTM 256 -> Dense 65 and Embedding 64 -> 2 x LSTM 512 -> Dense 65, batch 64,
//     sequence 100, a GPT (4 layers x 128, block 128, batch 32; --only 3), the other cells (Embedding 64 -> GRU 256
//     and -> SimpleRNN 256; 4, 5) and the TensorFlow tutorial's model (Embedding 256 -> GRU 1024; 6), Adam; characters/s (B*T per full training step: forward, loss, backward, update), PyTorch at
//     its default threads and with both pinned to one thread, and the charlm/PyTorch ratio. charlm runs on the
//     wasm backend when its build exists (else js), single-threaded unless CHARLM_THREADS says otherwise (wasm only,
//     docs/wasm.md), so it is measured once per workload and compared with both PyTorch settings.
//
//   npm run bench -- train --compare-loss [--steps N] [--cell lstm|gru|rnn]
//     The same small model (Embedding 32 -> LSTM 128 -> Dense, or GRU / SimpleRNN), the same initial weights (written by charlm and
//     loaded into torch), the same batches and Adam hyperparameters, trained by both on Tiny Shakespeare's train
//     split; the validation losses must agree within 0.03 nats/char.
//
// Timings on a shared machine drift: both sides run back to back in the same process tree, and the ratio is what
// to read.

import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { TINY_SHAKESPEARE, loadTinyShakespeare } from "../src/data/tinyshakespeare.js";
import { getBackend, listBackends, noGrad, useBackend } from "../src/engine/index.js";
import { scope } from "../src/engine/scope.js";
import type { ModelConfig, RnnModelConfig } from "../src/models/config.js";
import type { LanguageModel } from "../src/models/contract.js";
import { buildModel } from "../src/models/registry.js";
import { foldsEmbedding, type RnnModel } from "../src/models/rnn.js";
import { Adam } from "../src/train/optimizers.js";
import { Rng } from "../src/util/rng.js";

const here = dirname(fileURLToPath(import.meta.url));
const PYTHON = "/usr/bin/python3";
const TORCH_SCRIPT = join(here, "train_torch.py");

interface TorchResult {
  torch: string;
  threads: number;
  openblasThreads: string;
  blas: string[];
  charsPerSec?: number;
  valLoss?: number;
  trainLosses?: number[];
  seconds: number;
}

function runTorch(args: string[], env: Record<string, string> = {}): TorchResult {
  const r = spawnSync(PYTHON, [TORCH_SCRIPT, ...args], { env: { ...process.env, ...env }, encoding: "utf8" });
  if (r.status !== 0) {
    throw new Error(`${PYTHON} ${TORCH_SCRIPT} failed (exit ${r.status}): ${r.stderr || r.error?.message}`);
  }
  const lines = r.stdout.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]) as TorchResult;
}

function flag(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(name);
  if (i < 0) return fallback;
  const v = Number(args[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name} needs a positive number, got ${args[i + 1]}`);
  return v;
}

async function pickBackend(): Promise<string> {
  const names = await listBackends();
  const name = names.includes("wasm") ? "wasm" : "js";
  await useBackend(name);
  return name;
}

function randomIds(n: number, V: number, rng: Rng): Int32Array {
  const ids = new Int32Array(n);
  for (let i = 0; i < n; i++) ids[i] = rng.int(V);
  return ids;
}

/** One full training step in one scope (its storage freed after); returns the loss. */
function trainStep(model: LanguageModel, opt: Adam, x: Int32Array, y: Int32Array, B: number, T: number, lr: number) {
  const loss = scope(() => {
    for (const p of model.parameters().values()) p.zeroGrad();
    const { loss } = model.forward(x, B, T, { targets: y, training: true });
    loss!.backward();
    opt.step(lr);
    return loss!;
  });
  const value = loss.item();
  loss.dispose();
  return value;
}

// ---------------------------------------------------------------------------------------------------- throughput

async function throughput(args: string[]): Promise<void> {
  const backend = await pickBackend();
  const V = 65;
  const rnn = (cell: "lstm" | "gru" | "rnn", name: string, E: number, H: number, L: number, steps: number) => ({
    name,
    B: 64,
    T: 100,
    steps,
    model: { type: "rnn", cell, vocabSize: V, embedding: E, units: H, layers: L, dropout: 0 } as ModelConfig,
    torch: ["--cell", cell, "--embedding", `${E}`, "--units", `${H}`, "--layers", `${L}`],
  });
  const steps = flag(args, "--steps", 3);
  const fewer = Math.max(1, steps - 1);
  const workloads = [
    rnn("lstm", "Embedding 64 -> LSTM 256 -> Dense 65, batch 64, sequence 100", 64, 256, 1, steps),
    rnn("lstm", "Embedding 64 -> 2 x LSTM 512 -> Dense 65, batch 64, sequence 100", 64, 512, 2, fewer),
    {
      name: "GPT 4 layers x 128 channels, 4 heads, block 128, batch 32",
      B: 32,
      T: 128,
      steps,
      model: { type: "gpt", vocabSize: V, blockSize: 128, nLayer: 4, nHead: 4, nEmbd: 128, dropout: 0, bias: true },
      torch: ["--cell", "gpt", "--units", "128", "--layers", "4", "--heads", "4"],
    } as const,
    rnn("gru", "Embedding 64 -> GRU 256 -> Dense 65, batch 64, sequence 100", 64, 256, 1, steps),
    rnn("rnn", "Embedding 64 -> SimpleRNN 256 -> Dense 65, batch 64, sequence 100", 64, 256, 1, steps),
    rnn(
      "gru",
      "the TensorFlow tutorial's: Embedding 256 -> GRU 1024 -> Dense 65, batch 64, sequence 100",
      256,
      1024,
      1,
      fewer,
    ),
  ];
  const only = flag(args, "--only", 0);
  const threads = (getBackend() as { threads?: number }).threads ?? 1;
  const fold = foldsEmbedding(V, 2 * V)
    ? "embedding folded into the first layer"
    : "CHARLM_FOLD_EMBEDDING=0: not folded";
  console.log(
    `charlm backend: ${backend} (${threads === 1 ? "single-threaded" : `${threads} threads`}); Adam; ${fold}`,
  );
  for (const [i, w] of workloads.entries()) {
    if (only && only !== i + 1) continue;
    const { B, T } = w;
    console.log(`\n${w.name}`);
    const rng = new Rng(0);
    const model = buildModel(w.model, rng);
    const opt = new Adam(model.parameters());
    const x = randomIds(B * T, V, rng);
    const y = randomIds(B * T, V, rng);
    trainStep(model, opt, x, y, B, T, 2e-3); // warm-up: JIT, wasm memory growth
    const t0 = performance.now();
    for (let s = 0; s < w.steps; s++) trainStep(model, opt, x, y, B, T, 2e-3);
    const sec = (performance.now() - t0) / 1000;
    const charlm = (B * T * w.steps) / sec;
    console.log(`  charlm (${backend}):            ${fmt(charlm)} chars/s  (${w.steps} steps, ${sec.toFixed(1)} s)`);

    const torchArgs = ["throughput", ...w.torch, "--vocab", `${V}`, "--batch", `${B}`, "--seq", `${T}`];
    torchArgs.push("--steps", `${w.steps + 2}`, "--warmup", "1");
    const dflt = runTorch(torchArgs);
    const one = runTorch([...torchArgs, "--threads", "1"], { OPENBLAS_NUM_THREADS: "1" });
    if (i === 0 || only) console.log(`  PyTorch ${dflt.torch}, BLAS: ${dflt.blas.join(", ") || "(none found)"}`);
    console.log(
      `  PyTorch default threads (torch ${dflt.threads}, OpenBLAS ${dflt.openblasThreads}): ${fmt(dflt.charsPerSec!)} chars/s`,
    );
    console.log(`  PyTorch pinned to 1 thread:     ${fmt(one.charsPerSec!)} chars/s`);
    console.log(`  ratio charlm/PyTorch (default threads): ${(charlm / dflt.charsPerSec!).toFixed(3)}`);
    console.log(`  ratio charlm/PyTorch (1 thread):        ${(charlm / one.charsPerSec!).toFixed(3)}`);
  }
}

// ---------------------------------------------------------------------------------------------------- compare-loss

async function compareLoss(args: string[]): Promise<void> {
  const backend = await pickBackend();
  const path = resolve(process.env.CHARLM_TINYSHAKESPEARE ?? "../shared/data/tinyshakespeare.txt");
  const ts = await loadTinyShakespeare({ path, download: false, quiet: true });
  const vocab = [...new Set(Array.from(ts.text))].sort();
  const index = new Map(vocab.map((ch, i) => [ch, i]));
  const encode = (s: string) => Int32Array.from(Array.from(s), (ch) => index.get(ch)!);
  const train = encode(ts.train);
  const val = encode(ts.validation);

  const steps = flag(args, "--steps", 300);
  const B = 32;
  const T = 64;
  const lr = 3e-3;
  const valWindows = 256;
  const ci = args.indexOf("--cell");
  const cell = ci >= 0 ? args[ci + 1] : "lstm";
  if (cell !== "lstm" && cell !== "gru" && cell !== "rnn")
    throw new Error(`--cell must be lstm, gru or rnn, got ${cell}`);
  const cfg: RnnModelConfig = {
    type: "rnn",
    cell,
    vocabSize: vocab.length,
    embedding: 32,
    units: 128,
    layers: 1,
    dropout: 0,
  };
  const rng = new Rng(42);
  const model = buildModel(cfg, rng) as RnnModel;

  // Initial weights and every batch's offsets go to files the PyTorch side reads.
  const dir = mkdtempSync(join(tmpdir(), "charlm-bench-"));
  try {
    const entries: { name: string; shape: number[]; offset: number }[] = [];
    let total = 0;
    for (const [name, t] of model.parameters()) {
      entries.push({ name, shape: t.shape, offset: total });
      total += t.size;
    }
    const flat = new Float32Array(total);
    for (const [i, t] of [...model.parameters().values()].entries()) flat.set(t.data, entries[i].offset);
    const weightsFile = join(dir, "weights.f32");
    writeFileSync(weightsFile, new Uint8Array(flat.buffer));
    const offsets = new Int32Array(steps * B);
    for (let i = 0; i < offsets.length; i++) offsets[i] = rng.int(train.length - T - 1);
    const offsetsFile = join(dir, "offsets.i32");
    writeFileSync(offsetsFile, new Uint8Array(offsets.buffer));
    const adam = { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8 };
    const specFile = join(dir, "spec.json");
    const [vlo, vhi] = TINY_SHAKESPEARE.splits.validation;
    const spec = {
      corpus: path,
      vocab,
      train: TINY_SHAKESPEARE.splits.train,
      validation: [vlo, vhi],
      model: cfg,
      weightsFile,
      weights: entries,
      offsetsFile,
      steps,
      batch: B,
      seq: T,
      adam,
      clip: 0,
      valWindows,
    };
    writeFileSync(specFile, JSON.stringify(spec));

    console.log(
      `Tiny Shakespeare, ${cell.toUpperCase()} E=${cfg.embedding} H=${cfg.units}, batch ${B}, sequence ${T}, Adam lr ${lr}, ${steps} steps`,
    );
    console.log(`charlm backend: ${backend}; same initial weights and batches for both`);
    const opt = new Adam(model.parameters(), { beta1: adam.beta1, beta2: adam.beta2, eps: adam.eps });
    const x = new Int32Array(B * T);
    const y = new Int32Array(B * T);
    const t0 = performance.now();
    const losses: number[] = [];
    for (let s = 0; s < steps; s++) {
      for (let b = 0; b < B; b++) {
        const o = offsets[s * B + b];
        x.set(train.subarray(o, o + T), b * T);
        y.set(train.subarray(o + 1, o + T + 1), b * T);
      }
      losses.push(trainStep(model, opt, x, y, B, T, lr));
    }
    const sec = (performance.now() - t0) / 1000;
    const charlmVal = validationLoss(model, val, B, T, valWindows);
    const torch = runTorch(["compare", "--spec", specFile]);
    const torchLosses = torch.trainLosses!;
    // Train loss (one batch) at a few steps: with the same weights and batches the curves start identical and
    // drift apart only by float rounding.
    const marks = [0, 1, 10, 50, 100, 200, 500, 1000, 2000, steps - 1].filter(
      (m, i, a) => m < steps && a.indexOf(m) === i,
    );
    console.log(`  step     ${marks.map((m) => String(m + 1).padStart(7)).join("")}`);
    console.log(`  charlm   ${marks.map((m) => losses[m].toFixed(4).padStart(7)).join("")}`);
    console.log(`  PyTorch  ${marks.map((m) => torchLosses[m].toFixed(4).padStart(7)).join("")}`);
    console.log(`  charlm:  validation ${charlmVal.toFixed(4)} nats/char (${sec.toFixed(1)} s training)`);
    console.log(
      `  PyTorch: validation ${torch.valLoss!.toFixed(4)} nats/char (${torch.seconds.toFixed(1)} s training)`,
    );
    const diff = Math.abs(charlmVal - torch.valLoss!);
    const ok = diff <= 0.03;
    console.log(`  |difference| ${diff.toFixed(4)} nats/char: ${ok ? "PASS" : "FAIL"} (tolerance 0.03)`);
    if (!ok) process.exitCode = 1;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Mean loss over the first n non-overlapping (T+1)-windows of the split, zero initial state per window. */
function validationLoss(model: RnnModel, ids: Int32Array, B: number, T: number, n: number): number {
  return noGrad(() => {
    let total = 0;
    let count = 0;
    for (let s = 0; s < n; s += B) {
      const b = Math.min(B, n - s);
      const x = new Int32Array(b * T);
      const y = new Int32Array(b * T);
      for (let r = 0; r < b; r++) {
        const o = (s + r) * (T + 1);
        x.set(ids.subarray(o, o + T), r * T);
        y.set(ids.subarray(o + 1, o + T + 1), r * T);
      }
      const loss = scope(() => model.forward(x, b, T, { targets: y }).loss!);
      total += loss.item() * b * T;
      loss.dispose();
      count += b * T;
    }
    return total / count;
  });
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString("en-US");
}

export async function main(args: string[]): Promise<void> {
  if (args.includes("--compare-loss")) await compareLoss(args);
  else await throughput(args);
}
