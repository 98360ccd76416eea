// `charlm train`: resolve the config (default < preset < --config file < flags), load the corpus, build or
// resume the model (src/train/session.ts), and run the training loop. This file only wires flags to the library.

import { readFile } from "node:fs/promises";
import * as path from "node:path";
import { threadsFlag } from "../backend.js";
import {
  PRESETS,
  checkPartialConfig,
  configFromFlags,
  trainConfigSchema,
  type TrainConfig,
} from "../../train/config.js";
import { trainLoop } from "../../train/loop.js";
import { prepareRun } from "../../train/session.js";
import { CharlmError } from "../../util/errors.js";
import { formatDuration } from "../../util/progress.js";
import { DATA_ENV, KERNEL_ENV, defineCommand } from "../command.js";
import { stopOnSignals } from "../signals.js";
import type { Flags, Schema } from "../flags.js";

const schema = {
  preset: {
    type: "string",
    help: `starting point: ${Object.keys(PRESETS).join(", ")} (the defaults shown below are cpu's)`,
    default: "cpu",
    arg: "NAME",
  },
  config: { type: "string", help: "JSON file of config keys, applied after the preset", arg: "FILE" },
  out: { type: "string", help: "checkpoint directory (default runs/<data>-<cell><units>)", arg: "DIR" },
  resume: { type: "string", help: "continue the run saved in DIR (same seed: same losses)", arg: "DIR" },
  initFrom: {
    type: "string",
    help: "fine-tune: start from the weights of the checkpoint (a directory or a .tar of one) or PyTorch export in DIR, keeping its model and vocabulary (shape flags are refused), with a fresh optimizer and schedule; --lr and --dropout default to the source's, and early stopping ends the run as it ends any",
    arg: "DIR",
  },
  extendVocab: {
    type: "bool",
    help: "with --init-from: characters of --data the source lacks get new embedding and output rows (instead of <unk>)",
    default: false,
  },
  force: { type: "bool", help: "overwrite a checkpoint already in --out", default: false },
  stopAfter: { type: "int", help: "stop (and save) after this many steps in total; resume later", min: 1, arg: "N" },
  endOnStop: {
    type: "bool",
    help: "a stop (--time-limit, --stop-after, Ctrl-C, SIGTERM) ends the run as its last epoch would: validated where it stopped, with the best validation's weights (status stopped), instead of saved where it stands to resume from",
    default: false,
  },
  quiet: { type: "bool", help: "no progress bar", default: false },
  threads: threadsFlag,
  json: {
    type: "bool",
    help: "end with one JSON line {status, steps, epochs, bestValLoss, checkpoint, ...}",
    default: false,
  },
  ...trainConfigSchema(),
} satisfies Schema;

export const trainCommand = defineCommand({
  name: "train",
  environment: [...KERNEL_ENV, ...DATA_ENV],
  summary: "train a character-level model (Tiny Shakespeare or your corpus), with checkpoints",
  schema,
  examples: [
    "charlm train --out runs/shakespeare",
    "charlm train --preset tiny --out runs/smoke",
    "charlm train --data corpus.txt --cell gru --units 512 --layers 2 --dropout 0.2 --epochs 20 --out runs/mine",
    "charlm train --preset tutorial --cell gru --out runs/tutorial",
    "charlm train --resume runs/shakespeare --epochs 20",
    "charlm train --init-from runs/shakespeare --data my.txt --out runs/mine-tuned",
  ],
  run: runTraining,
});

async function runTraining(flags: Flags<typeof schema>): Promise<number> {
  const run = await prepareRun({
    preset: flags._given.has("preset") ? flags.preset : "cpu",
    file: flags.config ? await readConfigFile(flags.config) : undefined,
    fileName: flags.config,
    overrides: configFromFlags(flags as unknown as Record<string, unknown> & { _given: Set<string> }),
    out: flags.out ?? null,
    outFor: (cfg) => path.join("runs", `${dataLabel(cfg.data)}-${cfg.cell}${cfg.units}`),
    resume: flags.resume,
    initFrom: flags.initFrom,
    extendVocab: flags.extendVocab,
    force: flags.force,
    threads: flags.threads,
    quiet: flags.quiet,
  });
  const out = run.out!;
  const say = (line: string): void => void process.stdout.write(line + "\n");
  for (const line of run.describe) say(line);
  const stop = stopOnSignals("saving a checkpoint");
  try {
    const result = await trainLoop({
      ...run,
      log: say,
      quiet: flags.quiet,
      signal: stop.signal,
      stopAfterSteps: flags.stopAfter,
      endOnStop: flags.endOnStop,
    });
    const exitCode = result.status === "interrupted" || result.status === "stopped" ? stop.exitCode() : 0;
    const best =
      result.bestValLoss === null
        ? "n/a"
        : run.vocab.kind === "char"
          ? `${result.bestValLoss.toFixed(4)} nats/char (${(result.bestValLoss / Math.LN2).toFixed(3)} bits/char)`
          : `${result.bestValLoss.toFixed(4)} nats/token (per character: see the epoch lines or charlm eval)`;
    say(
      `${result.status}: ${result.step} steps, ${result.epoch} epoch(s), best validation loss ${best}, ${formatDuration(result.elapsedSeconds)} in all`,
    );
    if (flags.json) {
      const { status, step, epoch, bestValLoss, elapsedSeconds } = result;
      say(
        JSON.stringify({ status, steps: step, epochs: epoch, bestValLoss, seconds: elapsedSeconds, checkpoint: out }),
      );
      return exitCode;
    }
    say(
      `checkpoint: ${out} (sample with: charlm sample --model ${out}${result.status === "interrupted" ? `; continue with: charlm train --resume ${out}` : result.status === "time-limit" ? `; train further with: charlm train --resume ${out} --time-limit SECONDS` : ""})`,
    );
    return exitCode;
  } finally {
    stop.dispose();
    run.release();
  }
}

function dataLabel(data: string | string[]): string {
  if (Array.isArray(data)) return data.length === 1 ? dataLabel(data[0]) : "corpus";
  const base = /^tinyshakespeare/i.test(data) ? "tinyshakespeare" : path.basename(data).replace(/\.[^.]*$/, "");
  return base.replace(/[^A-Za-z0-9_-]+/g, "_") || "corpus";
}

/** A --config file's keys, checked; a one-line CharlmError naming the file and the fix. */
export async function readConfigFile(file: string): Promise<Partial<TrainConfig>> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch {
    throw new CharlmError(`${file}: cannot read the config file; check the path`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new CharlmError(`${file}: not valid JSON; write the config as a JSON object like {"units": 512}`);
  }
  return checkPartialConfig(raw, file);
}
