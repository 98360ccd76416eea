// Tokenizers compared at equal training time: `npm run bench -- tokenizers [--seconds 240] [--parallel 2]`.
//
// 1. BPE learning time on ~10 MB (Tiny Shakespeare repeated ten times) for 512, 2,048 and 8,192 tokens.
// 2. The cpu preset's model (2-layer LSTM, 256 units) trained on Tiny Shakespeare with each tokenizer (char; word,
//    10,000 tokens; bpe 512; bpe 2,048) for the same wall time, `--threads 1`, `parallel` runs at a time; each run
//    is stopped by SIGTERM (it saves a checkpoint), then evaluated on the validation split: nats per token, and
//    nats/char of the original text (the figure that compares across tokenizers; word charges its <unk> tokens
//    as word.ts says), with a sample of about 300 characters from seed 1.
// The runs share the machine with each other (and with whatever else runs), so the steps each run gets are printed.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { BpeTokenizer } from "../src/data/bpe.js";
import { charlm, evalRun, manifestFacts, option, pool, sampleRun } from "./_charlm.js";

const RUNS = [
  { name: "char", flags: [], sample: 300 },
  { name: "word-10k", flags: ["--tokenizer", "word", "--vocab-size", "10000"], sample: 70 },
  { name: "bpe-512", flags: ["--tokenizer", "bpe", "--vocab-size", "512"], sample: 150 },
  { name: "bpe-2048", flags: ["--tokenizer", "bpe", "--vocab-size", "2048"], sample: 110 },
];

export async function main(args: string[]): Promise<void> {
  const seconds = Number(option(args, "seconds", "240"));
  const parallel = Number(option(args, "parallel", "2"));
  const out = option(args, "out", "bench/out/tokenizers");
  const data = process.env.CHARLM_TINYSHAKESPEARE;
  if (data) {
    const text = readFileSync(data, "utf8").repeat(10);
    for (const size of [512, 2048, 8192]) {
      const t0 = performance.now();
      BpeTokenizer.train(text, size);
      const s = (performance.now() - t0) / 1000;
      console.log(`bpe learning, ${(text.length / 1e6).toFixed(1)} MB, ${size} tokens: ${s.toFixed(2)} s`);
    }
  } else console.log("(set CHARLM_TINYSHAKESPEARE to time BPE learning on 10 MB)");
  if (args.includes("--learn-only")) return;

  const finished = await pool(
    RUNS.map((run) => async () => {
      const dir = join(out, run.name);
      // SIGTERM is read between any two steps (the loop yields to the event loop after each), so a run overruns its
      // budget by at most one step.
      const common = ["--preset", "cpu", "--backend", "wasm", "--threads", "1", "--sample-length", "0", "--quiet"];
      const r = await charlm(["train", ...common, ...run.flags, "--out", dir, "--force"], seconds);
      if (r.code !== 0 && r.code !== 143) throw new Error(`${run.name}: charlm train failed: ${r.err}`);
      console.log(`${run.name}: trained ${r.seconds.toFixed(0)} s, step ${manifestFacts(dir).step}`);
      return { run, dir, seconds: r.seconds };
    }),
    parallel,
  );
  const rows = [];
  for (const f of finished) {
    const e = await evalRun(f.dir, "validation", ["--threads", "1", "--backend", "wasm"]);
    const sample = await sampleRun(f.dir, f.run.sample, [
      "--temperature",
      "0.8",
      "--threads",
      "1",
      "--backend",
      "wasm",
    ]);
    rows.push({ ...f, facts: manifestFacts(f.dir), e, sample });
  }
  console.log(`\nTiny Shakespeare validation, ${seconds} s of training each, ${parallel} at a time, 1 thread each\n`);
  console.log("| tokenizer | tokens | steps | val nats/token | val nats/char | bits/char | tokens/char | <unk> |");
  console.log("|---|---|---|---|---|---|---|---|");
  for (const r of rows) {
    const unk = r.facts.kind === "word" ? `${(100 * r.e.unknownShare).toFixed(2)}%` : "-";
    console.log(
      `| ${r.run.name} | ${r.facts.vocabSize} | ${r.facts.step} | ${r.e.nats.toFixed(3)} | ${r.e.natsPerChar.toFixed(3)} | ${r.e.bitsPerChar.toFixed(3)} | ${(r.e.chars / r.e.textChars).toFixed(3)} | ${unk} |`,
    );
  }
  for (const r of rows) console.log(`\n--- ${r.run.name} (seed 1, temperature 0.8) ---\n${r.sample}`);
}
