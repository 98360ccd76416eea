// Fine-tuning against training from scratch on a new text, for the same steps:
//   npm run bench -- fine_tune [--source DIR | --source-seconds S] [--text FILE] [--steps 60] [--warmup 10]
//                              [--out bench/out/fine_tune]
//
// The source is a Tiny Shakespeare model: DIR (default: the char run of `npm run bench -- tokenizers`), or with
// --source-seconds a small char model (Embedding 32 -> LSTM 128, otherwise the cpu preset) trained here for S
// seconds of wall time on one thread. The new text is
// FILE, or else Genesis and Exodus of the King James Bible (about 360 KB) printed by the `bible` program of
// Debian's bible-kjv package (`apt-get install bible-kjv`), verse numbers and chapter headings dropped. The three
// runs use the source's model shape, tokenizer and batches, `--threads 1`, two at a time, `--warmup` steps of
// warm-up (the preset's 100 would take most of a short budget): fine-tuned with the fine-tuning defaults (the rate
// the source was trained at; --extend-vocab for characters the source lacks), fine-tuned at a tenth of that rate
// (the default before stop 20, for a source trained at the preset's rate), and from scratch at the preset's rate.
// Each is evaluated on the text's validation tail (its last 10%) in nats/char, with a sample.

import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { charlm, evalRun, manifestFacts, option, pool, sampleRun } from "./_charlm.js";

/** Genesis and Exodus as plain text: one verse per line, a blank line between chapters. */
export function kjvText(): string {
  let raw: string;
  try {
    raw = execFileSync("bible", ["-l300", "Gen1:1-Exo40:38"], { encoding: "utf8", maxBuffer: 64 << 20 });
  } catch {
    throw new Error("the `bible` program is missing: apt-get install bible-kjv, or pass --text FILE");
  }
  return raw
    .split("\n")
    .filter((line) => !/^(Genesis|Exodus) \d+$/.test(line.trim()))
    .map((line) => line.replace(/^ *\d+ /, "").trimEnd())
    .join("\n")
    .replace(/\n{3,}/g, "\n\n")
    .trim()
    .concat("\n");
}

export async function main(args: string[]): Promise<void> {
  let source = option(args, "source", "bench/out/tokenizers/char");
  const sourceSeconds = Number(option(args, "source-seconds", "0"));
  const steps = Number(option(args, "steps", "60"));
  const warmup = option(args, "warmup", "10");
  const out = option(args, "out", "bench/out/fine_tune");
  mkdirSync(out, { recursive: true });
  let text = option(args, "text", "");
  if (!text) {
    text = join(out, "kjv-genesis-exodus.txt");
    if (!existsSync(text)) writeFileSync(text, kjvText());
  }
  if (sourceSeconds > 0) {
    source = join(out, "source");
    const flags = ["--preset", "cpu", "--embedding", "32", "--units", "128", "--layers", "1", "--threads", "1"];
    flags.push("--backend", "wasm", "--log-every", "1", "--sample-length", "0", "--quiet", "--force");
    const r = await charlm(["train", ...flags, "--out", source], sourceSeconds);
    if (r.code !== 0 && r.code !== 143) throw new Error(`source: charlm train failed: ${r.err}`);
    const e = await evalRun(source, "validation", ["--threads", "1", "--backend", "wasm"]);
    const step = manifestFacts(source).step;
    console.log(
      `source: Tiny Shakespeare, ${step} steps in ${r.seconds.toFixed(0)} s, val ${e.natsPerChar.toFixed(3)} nats/char`,
    );
  }
  const src = manifestFacts(source);
  const common = ["--data", text, "--steps-per-epoch", String(steps), "--epochs", "1", "--threads", "1"];
  common.push(
    "--warmup",
    warmup,
    "--backend",
    "wasm",
    "--log-every",
    "1",
    "--sample-length",
    "0",
    "--quiet",
    "--force",
  );
  const extend = src.kind === "char" ? ["--extend-vocab"] : [];
  const trained = JSON.parse(readFileSync(join(source, "charlm.json"), "utf8")) as { train: { lr: number } };
  const tenth = trained.train.lr / 10;
  const runs = [
    { name: "fine-tuned", args: ["--init-from", source, ...extend] },
    { name: "fine-tuned at a tenth of its rate", args: ["--init-from", source, ...extend, "--lr", String(tenth)] },
    // The scratch run: the source's model shape and tokenizer settings, fresh weights.
    { name: "from scratch", args: ["--preset", "cpu", ...sourceFlags(source)] },
  ];
  const done = await pool(
    runs.map((run) => async () => {
      const dir = join(out, run.name.replace(/[^A-Za-z0-9-]+/g, "-"));
      const r = await charlm(["train", ...run.args, ...common, "--out", dir]);
      if (r.code !== 0) throw new Error(`${run.name}: charlm train failed: ${r.err}`);
      console.log(`${run.name}: ${steps} steps in ${r.seconds.toFixed(0)} s`);
      return { ...run, dir };
    }),
    2,
  );
  console.log(`\n${text}: validation (last 10%) after ${steps} steps, source ${source} (step ${src.step})\n`);
  console.log("| run | val nats/char | bits/char |");
  console.log("|---|---|---|");
  const samples: string[] = [];
  for (const d of done) {
    const e = await evalRun(d.dir, "validation", ["--threads", "1", "--backend", "wasm"]);
    console.log(`| ${d.name} | ${e.natsPerChar.toFixed(3)} | ${e.bitsPerChar.toFixed(3)} |`);
    const s = await sampleRun(d.dir, 300, ["--temperature", "0.8", "--threads", "1", "--backend", "wasm"]);
    samples.push(`\n--- ${d.name} (seed 1, temperature 0.8) ---\n${s}`);
  }
  for (const s of samples) console.log(s);
}

/** The source's shape, batches and tokenizer as flags, so the scratch run is the same model made afresh. */
function sourceFlags(dir: string): string[] {
  const f = manifestFacts(dir);
  const train = (JSON.parse(readFileSync(join(dir, "charlm.json"), "utf8")) as { train: Record<string, unknown> })
    .train;
  const flags: string[] = [];
  for (const key of ["type", "cell", "embedding", "units", "layers", "heads", "dropout", "seqLength", "batchSize"]) {
    if (train[key] !== undefined)
      flags.push(`--${key.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase())}`, String(train[key]));
  }
  return f.kind === "char" ? flags : [...flags, "--tokenizer", f.kind, "--vocab-size", String(f.vocabSize)];
}
