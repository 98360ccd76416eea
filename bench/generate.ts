// Generation speed at batch 1, charlm against PyTorch's stateful loop (bench/generate_torch.py, run as a child).
//
//   npm run bench -- generate [--chars N] [--backend js|wasm|webgpu]
//
// Workloads (random weights: speed does not depend on their values):
//   Embedding 64 -> 2 x LSTM 256 -> Dense 65: N characters (default 2000) through charlm's `generate` (the sampler
//     behind `charlm sample`: step(), read the logits back, temperature 1, one draw) and through torch.nn.LSTM
//     stepped with its (h, c) state.
//   GPT, 4 layers of 128 channels, 4 heads, context 256: 250 characters (within one context window, so both sides
//     take exactly one key/value-cached step per character).
//   The same GPT past its window (stop 18), after a prime that fills it: with a window stride of 1 every character
//     reruns the whole window (nanoGPT's generate); with 128 (--window-stride) a full window drops its 128 oldest
//     characters at once and the next 127 steps are cached ones (generate_torch.py --past does the same). charlm's
//     figure is the difference of a generation of 2N and of N characters, so that the prime's steps cancel.
// Both sides generate 300 characters first (warm-up: V8's JIT, PyTorch's allocator), then are timed.
// PyTorch runs at its default thread count and pinned to one thread; the ratio is charlm / PyTorch (higher is better).

import { spawnSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import { Vocab } from "../src/data/vocab.js";
import { getBackend, listBackends, useBackend, type BackendName } from "../src/engine/index.js";
import type { ModelConfig } from "../src/models/config.js";
import { buildModel } from "../src/models/registry.js";
import { generateText } from "../src/sample/generate.js";
import { Rng } from "../src/util/rng.js";

const here = dirname(fileURLToPath(import.meta.url));
const PYTHON = "/usr/bin/python3";
const WARMUP = 300; // characters generated before timing, on both sides

function torchRate(args: string[], env: Record<string, string> = {}): { charsPerSec: number; threads: number } {
  const r = spawnSync(PYTHON, [join(here, "generate_torch.py"), "generate", ...args], {
    env: { ...process.env, ...env },
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`generate_torch.py failed (exit ${r.status}): ${r.stderr || r.error?.message}`);
  const lines = r.stdout.trim().split("\n");
  return JSON.parse(lines[lines.length - 1]) as { charsPerSec: number; threads: number };
}

function option(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

async function charlmRate(cfg: ModelConfig, chars: number): Promise<number> {
  const V = cfg.vocabSize;
  const vocab = new Vocab(Array.from({ length: V }, (_, i) => String.fromCharCode(48 + i)));
  const model = buildModel(cfg, new Rng(0));
  // Warm-up, as many characters as PyTorch's side takes (generate_torch.py --warmup): both measure steady state.
  await generateText(model, vocab, { prime: "", length: WARMUP, temperature: 1, seed: 1 });
  const t0 = performance.now();
  const text = await generateText(model, vocab, { prime: "", length: chars, temperature: 1, seed: 1 });
  const sec = (performance.now() - t0) / 1000;
  if (text.length !== chars) throw new Error(`generated ${text.length} characters, expected ${chars}`);
  return chars / sec;
}

/** Characters a second of a GPT past its window (a prime that fills it), with a window stride: 2n less n characters. */
async function charlmPastRate(cfg: ModelConfig & { blockSize: number }, n: number, stride: number): Promise<number> {
  const vocab = new Vocab(Array.from({ length: cfg.vocabSize }, (_, i) => String.fromCharCode(48 + i)));
  const model = buildModel(cfg, new Rng(0));
  const prime = "0".repeat(cfg.blockSize);
  const timed = async (length: number) => {
    const t0 = performance.now();
    await generateText(model, vocab, { prime, length, temperature: 1, seed: 1, windowStride: stride });
    return performance.now() - t0;
  };
  await timed(Math.min(n, 20));
  const [a, b] = [await timed(n), await timed(2 * n)];
  return (1000 * n) / (b - a);
}

export async function main(args: string[]): Promise<void> {
  const chars = Number(option(args, "--chars") ?? 2000);
  const want = option(args, "--backend") as BackendName | undefined;
  const name = want ?? ((await listBackends()).includes("wasm") ? "wasm" : "js");
  await useBackend(name);
  const threads = (getBackend() as { threads?: number }).threads ?? 1;
  console.log(`charlm backend: ${name}${threads > 1 ? ` (${threads} threads)` : ""}; batch 1, temperature 1`);
  const workloads: { name: string; cfg: ModelConfig; chars: number; torch: string[] }[] = [
    {
      name: "Embedding 64 -> 2 x LSTM 256 -> Dense 65",
      cfg: { type: "rnn", cell: "lstm", vocabSize: 65, embedding: 64, units: 256, layers: 2, dropout: 0 },
      chars,
      torch: ["--model", "lstm", "--embedding", "64", "--units", "256", "--layers", "2"],
    },
    {
      name: "GPT 4 x 128 channels, 4 heads, context 256",
      cfg: { type: "gpt", vocabSize: 65, blockSize: 256, nLayer: 4, nHead: 4, nEmbd: 128, dropout: 0, bias: false },
      chars: 250,
      torch: ["--model", "gpt", "--embedding", "128", "--layers", "4", "--heads", "4", "--block", "256"],
    },
  ];
  for (const w of workloads) {
    const ours = await charlmRate(w.cfg, w.chars);
    const torchArgs = [...w.torch, "--vocab", "65", "--chars", String(w.chars), "--warmup", String(WARMUP)];
    const dflt = torchRate(torchArgs);
    const one = torchRate([...torchArgs, "--threads", "1"], { OPENBLAS_NUM_THREADS: "1" });
    console.log(`\n${w.name}, ${w.chars} characters`);
    console.log(`  charlm (${name}):                 ${ours.toFixed(0).padStart(7)} chars/s`);
    console.log(`  PyTorch, default (${dflt.threads} threads): ${dflt.charsPerSec.toFixed(0).padStart(7)} chars/s`);
    console.log(`  PyTorch, 1 thread:               ${one.charsPerSec.toFixed(0).padStart(7)} chars/s`);
    console.log(
      `  ratio charlm / PyTorch: ${(ours / dflt.charsPerSec).toFixed(2)} (default), ${(ours / one.charsPerSec).toFixed(2)} (1 thread)`,
    );
  }
  const gpt = workloads[1];
  for (const [stride, n] of [
    [1, 40],
    [128, 256],
  ]) {
    const ours = await charlmPastRate(gpt.cfg as ModelConfig & { blockSize: number }, n, stride);
    const torchArgs = [...gpt.torch, "--vocab", "65", "--chars", String(n), "--past", "--stride", String(stride)];
    const dflt = torchRate(torchArgs);
    console.log(`\n${gpt.name}, past its window, window stride ${stride}, ${n} characters`);
    console.log(`  charlm (${name}):                 ${ours.toFixed(0).padStart(7)} chars/s`);
    console.log(`  PyTorch, default (${dflt.threads} threads): ${dflt.charsPerSec.toFixed(0).padStart(7)} chars/s`);
    console.log(`  ratio charlm / PyTorch: ${(ours / dflt.charsPerSec).toFixed(2)}`);
  }
}
