// `charlm tune`: a hyperparameter search over training runs. The search is in src/tune; this file only wires flags
// to it. Any training flag not in the space is a setting every trial shares, as `charlm train` takes it.

import { promises as fs } from "node:fs";
import * as path from "node:path";
import { PRESETS, configFromFlags, trainConfigSchema } from "../../train/config.js";
import { parseSpaceJson, type Dimension } from "../../tune/space.js";
import { formatTable, tune } from "../../tune/index.js";
import { CharlmError, UsageError } from "../../util/errors.js";
import { DATA_ENV, defineCommand } from "../command.js";
import type { Schema } from "../flags.js";
import { stopOnSignals } from "../signals.js";

const schema = {
  out: {
    type: "string",
    help: "search directory (tune.json, trials/, results.*); re-run to continue",
    default: "runs/tune",
    arg: "DIR",
  },
  space: {
    type: "strings",
    help: "a searched field: KEY=log:LO:HI (log-uniform), KEY=LO:HI (uniform) or KEY=A,B,C (choices); repeat",
    arg: "KEY=SPEC",
  },
  spaceFile: { type: "string", help: 'JSON space: {"lr": "log:1e-4:1e-2", "units": [128, 256]}', arg: "FILE" },
  strategy: {
    type: "string",
    choices: ["random", "halving"],
    help: "random search, or successive halving (short trials, the best resumed with larger budgets)",
    default: "random",
  },
  trials: {
    type: "int",
    min: 1,
    help: "trials to run (halving: in the first rung) [default: 10, halving eta², or --time's]",
    arg: "N",
  },
  time: {
    type: "string",
    help: "wall-clock time for the whole search, earlier sessions included: 90s, 30m, 1h30m",
    arg: "DURATION",
  },
  jobs: {
    type: "int",
    min: 1,
    max: 64,
    help: "trials at once, the cores split between them [default: 1, or the search's last]",
    arg: "N",
  },
  cores: { type: "int", min: 1, max: 1024, help: "cores to split between the jobs (default: all)", arg: "N" },
  budget: {
    type: "string",
    choices: ["time", "epochs"],
    help: "what a trial budget counts: training seconds (--time-limit) or epochs (--epochs)",
    default: "time",
  },
  trialBudget: {
    type: "float",
    above: 0,
    help: "random: each trial's budget; halving: the first rung's (default: fitted to --time, or 1 epoch)",
    arg: "X",
  },
  eta: {
    type: "int",
    min: 2,
    max: 100,
    help: "halving: keep the best 1/eta of each rung; budgets grow eta-fold",
    default: 3,
  },
  rungs: { type: "int", min: 1, max: 20, help: "halving: rungs (default: until one trial is left)", arg: "N" },
  searchSeed: { type: "int", min: 0, max: 0xffffffff, help: "seed of the draws from the space", default: 1 },
  apply: {
    type: "string",
    help: "write the best trial's full config to FILE, for charlm train --config FILE",
    arg: "FILE",
  },
  preset: {
    type: "string",
    help: `every trial's starting point: ${Object.keys(PRESETS).join(", ")}`,
    default: "cpu",
    arg: "NAME",
  },
  config: { type: "string", help: "JSON file of config keys every trial starts from, after the preset", arg: "FILE" },
  ...trainConfigSchema(),
} satisfies Schema;

export const tuneCommand = defineCommand({
  name: "tune",
  environment: ["CHARLM_THREADS", ...DATA_ENV],
  summary: "search training settings: random search or successive halving over trials run as normal runs",
  schema,
  examples: [
    "charlm tune --space lr=log:1e-4:1e-2 --space dropout=0:0.5 --space init=keras,torch --trials 8 --out runs/tune",
    "charlm tune --strategy halving --time 30m --jobs 2 --space units=128,256,512 --space lr=log:5e-4:5e-3",
    "charlm tune --space-file space.json --preset tiny --data corpus.txt --budget epochs --trial-budget 2",
    "charlm tune --out runs/tune                      # continue a search that was stopped",
    "charlm tune --out runs/tune --apply best.json    # then: charlm train --config best.json",
  ],
  async run(flags) {
    const space: (string | Dimension)[] = [...(flags.space ?? [])];
    if (flags.spaceFile) space.push(...parseSpaceJson(await readJson(flags.spaceFile), flags.spaceFile));
    const stop = stopOnSignals("stopping the trials, each saves a checkpoint; re-run to continue");
    const say = (line: string): void => void process.stdout.write(line + "\n");
    try {
      const result = await tune({
        out: flags.out,
        space,
        fixed: configFromFlags(flags as unknown as Record<string, unknown> & { _given: Set<string> }),
        preset: flags._given.has("preset") ? flags.preset : undefined,
        configFile: flags.config ? await readJson(flags.config) : undefined,
        strategy: flags.strategy as "random" | "halving",
        trials: flags.trials,
        timeSeconds: flags.time === undefined ? undefined : parseDuration(flags.time),
        jobs: flags.jobs,
        cores: flags.cores,
        budget: flags.budget as "time" | "epochs",
        trialBudget: flags.trialBudget,
        eta: flags.eta,
        rungs: flags.rungs,
        seed: flags.searchSeed,
        apply: flags.apply,
        log: say,
        signal: stop.signal,
      });
      say("");
      say(formatTable(result.rows));
      say("");
      const top = result.rows[0];
      if (top?.bestValLoss != null) {
        say(
          `best: trial ${top.trial}, validation loss ${top.bestValLoss.toFixed(4)} nats/char (${path.join(flags.out, top.dir)})`,
        );
      }
      say(
        `results: ${["results.md", "results.csv", "results.json", "val-loss.svg"].map((f) => path.join(flags.out, f)).join(", ")}`,
      );
      if (flags.apply) say(`wrote ${flags.apply}: train with it using charlm train --config ${flags.apply}`);
      if (top?.bestValLoss == null && result.status === "finished") {
        process.stderr.write(
          `charlm tune: no trial reached a validation loss; see the trials' logs in ${path.join(flags.out, "trials")}\n`,
        );
        return 1;
      }
      if (result.status === "interrupted") {
        say(`search stopped; continue it with: charlm tune --out ${flags.out}`);
        return stop.exitCode() || 130;
      }
      return 0;
    } finally {
      stop.dispose();
    }
  },
});

/** "90", "90s", "30m", "1h30m", "1.5h" -> seconds. */
export function parseDuration(text: string): number {
  const m = /^\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*$/.exec(text);
  const secs = m ? Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0) : NaN;
  if (!m || !(secs > 0)) throw new UsageError(`--time ${text}: write a duration like 90s, 30m or 1h30m`);
  return secs;
}

async function readJson(file: string): Promise<never> {
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch {
    throw new CharlmError(`${file}: cannot read the file; check the path`);
  }
  try {
    return JSON.parse(text) as never;
  } catch {
    throw new CharlmError(`${file}: not valid JSON`);
  }
}
