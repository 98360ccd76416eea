// Fine-tuning against training from scratch on a new text, for the same steps:
//   npm run bench -- fine_tune [--source DIR] [--text FILE] [--steps 60] [--warmup 10] [--out bench/out/fine_tune]
//
// The source is a Tiny Shakespeare model (default: the char run of `npm run bench -- tokenizers`). The new text is
// FILE, or else Genesis and Exodus of the King James Bible (about 360 KB) printed by the `bible` program of
// Debian's bible-kjv package (`apt-get install bible-kjv`), verse numbers and chapter headings dropped. Both runs
// use the source's model shape and the cpu preset's batches, `--threads 1`, two at a time, `--warmup` steps of
// warm-up (the preset's 100 would take most of a short budget): fine-tuned with the fine-tuning defaults (a tenth
// of the preset's learning rate; --extend-vocab for characters the source lacks), fine-tuned at the preset's
// learning rate, and from scratch at the preset's. Each is evaluated on the text's validation tail (its last 10%)
// in nats/char, with a sample.

import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { charlm, evalRun, manifestFacts, option, pool, sampleRun } from "./_charlm.js";

/** Genesis and Exodus as plain text: one verse per line, a blank line between chapters. */
function kjvText(): string {
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
  const source = option(args, "source", "bench/out/tokenizers/char");
  const steps = Number(option(args, "steps", "60"));
  const warmup = option(args, "warmup", "10");
  const out = option(args, "out", "bench/out/fine_tune");
  mkdirSync(out, { recursive: true });
  let text = option(args, "text", "");
  if (!text) {
    text = join(out, "kjv-genesis-exodus.txt");
    if (!existsSync(text)) writeFileSync(text, kjvText());
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
  const runs = [
    { name: "fine-tuned", args: ["--init-from", source, ...extend] },
    { name: "fine-tuned at lr 2e-3", args: ["--init-from", source, ...extend, "--lr", "2e-3"] },
    // The scratch run: the source's model shape (the cpu preset's) and tokenizer settings, fresh weights.
    { name: "from scratch", args: ["--preset", "cpu", ...tokenizerFlags(source)] },
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

/** The source's tokenizer flags (kind and size), so the scratch run tokenizes the same way. */
function tokenizerFlags(dir: string): string[] {
  const f = manifestFacts(dir);
  return f.kind === "char" ? [] : ["--tokenizer", f.kind, "--vocab-size", String(f.vocabSize)];
}
