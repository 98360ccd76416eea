// What the fine-tuning defaults should be: `charlm train --init-from SOURCE --data TEXT` as a user runs it (the
// default epochs, early stopping, the weight average), at several learning rates, on texts of a book's size and of
// an essay collection's size:
//   npm run bench -- fine_tune_defaults --source DIR [--text FILE]... [--factors 0.1,0.3,1] [--epochs 3]
//                                       [--seeds 1] [--out bench/out/fine_tune_defaults]
//
// DIR: a char model trained on Tiny Shakespeare (e.g. `charlm train --time-limit 600 --out DIR`, the cpu preset).
// The texts: each --text FILE, or else Genesis and Exodus of the King James Bible (about 360 KB, from Debian's
// bible-kjv, as in fine_tune.ts) and modern English prose of about 65 KB (the GPL 3, Apache 2.0 and MPL 2.0 licence
// texts Debian keeps in /usr/share/common-licenses). Every run trains on one thread, two at a time, with the
// learning rate at each factor of the source preset's (0.1 is the default since fine-tuning landed); --epochs, when
// given, is passed to every run (else the fine-tuning default). Each run's model (its best epoch, averaged as
// training judged it) is evaluated on the text's validation tail and on Tiny Shakespeare's validation split (what
// the model kept of its source).

import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { charlm, evalRun, manifestFacts, option, pool } from "./_charlm.js";
import { kjvText } from "./fine_tune.js";

const LICENSES = ["GPL-3", "Apache-2.0", "MPL-2.0"].map((f) => join("/usr/share/common-licenses", f));

function defaultTexts(out: string): string[] {
  const kjv = join(out, "kjv-genesis-exodus.txt");
  if (!existsSync(kjv)) writeFileSync(kjv, kjvText());
  const prose = join(out, "licences.txt");
  if (!existsSync(prose)) {
    const missing = LICENSES.filter((f) => !existsSync(f));
    if (missing.length) throw new Error(`${missing[0]} is missing (Debian's base-files has it); pass --text FILE`);
    writeFileSync(prose, LICENSES.map((f) => readFileSync(f, "utf8")).join("\n\n"));
  }
  return [kjv, prose];
}

interface Row {
  text: string;
  kb: number;
  factor: number;
  seed: number;
  steps: number;
  seconds: number;
  val: number;
  shakespeare: number;
}

export async function main(args: string[]): Promise<void> {
  const source = option(args, "source", "");
  if (!source) throw new Error("--source DIR: a char model trained on Tiny Shakespeare (charlm train --out DIR)");
  const out = option(args, "out", "bench/out/fine_tune_defaults");
  mkdirSync(out, { recursive: true });
  const texts = args.flatMap((a, i) => (a === "--text" && i + 1 < args.length ? [args[i + 1]] : []));
  if (!texts.length) texts.push(...defaultTexts(out));
  const factors = option(args, "factors", "0.1,0.3,1").split(",").map(Number);
  const seeds = option(args, "seeds", "1").split(",").map(Number);
  const epochs = option(args, "epochs", "");
  const src = JSON.parse(readFileSync(join(source, "charlm.json"), "utf8")) as { train?: { lr?: number } };
  const lr0 = src.train?.lr;
  if (typeof lr0 !== "number")
    throw new Error(`${source}: its charlm.json records no train.lr; pass a charlm train run`);
  const base = ["--init-from", source, "--threads", "1", "--backend", "wasm", "--sample-length", "0", "--quiet"];
  base.push("--force", ...(manifestFacts(source).kind === "char" ? ["--extend-vocab"] : []));
  if (epochs) base.push("--epochs", epochs);
  const source0 = await evalRun(source, "validation", ["--threads", "1", "--backend", "wasm"]);
  const jobs = texts.flatMap((text, ti) =>
    factors.flatMap((factor) =>
      seeds.map((seed) => async (): Promise<Row> => {
        const dir = join(out, `t${ti}-x${factor}-s${seed}`);
        const lr = String(lr0 * factor);
        const r = await charlm(["train", ...base, "--data", text, "--lr", lr, "--seed", String(seed), "--out", dir]);
        if (r.code !== 0) throw new Error(`${dir}: charlm train failed: ${r.err}`);
        const ev = ["--threads", "1", "--backend", "wasm"];
        const val = await evalRun(dir, "validation", ev);
        const shakespeare = await evalRun(dir, "validation", [...ev, "--data", "tinyshakespeare"]);
        const row: Row = {
          text,
          kb: readFileSync(text).length / 1000,
          factor,
          seed,
          steps: manifestFacts(dir).step,
          seconds: r.seconds,
          val: val.natsPerChar,
          shakespeare: shakespeare.natsPerChar,
        };
        console.log(
          `${text} x${factor} seed ${seed}: ${row.steps} steps, ${r.seconds.toFixed(0)} s, val ${row.val.toFixed(4)}`,
        );
        return row;
      }),
    ),
  );
  const rows = await pool(jobs, 2);
  console.log(
    `\nsource ${source}: Tiny Shakespeare validation ${source0.natsPerChar.toFixed(4)} nats/char; lr = factor x ${lr0}\n`,
  );
  console.log("| text | KB | lr factor | seed | steps | seconds | text val nats/char | Tiny Shakespeare val |");
  console.log("|---|---|---|---|---|---|---|---|");
  for (const r of rows) {
    const cells = [r.text, r.kb.toFixed(0), r.factor, r.seed, r.steps, r.seconds.toFixed(0)];
    console.log(`| ${[...cells, r.val.toFixed(4), r.shakespeare.toFixed(4)].join(" | ")} |`);
  }
}
