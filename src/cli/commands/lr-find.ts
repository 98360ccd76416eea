// `charlm lr-find`: the learning-rate range test (src/tune/lr-find.ts) on the model and data `charlm train` would
// use with the same flags: a few hundred steps at exponentially growing rates, the smoothed loss per rate, and a
// suggested rate. Nothing is saved but the optional plot.

import { existsSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { threadsFlag } from "../backend.js";
import { PRESETS, configFromFlags, trainConfigSchema } from "../../train/config.js";
import { prepareRun } from "../../train/session.js";
import { checkLrFindOptions, lrRangeTest, type LrPoint } from "../../tune/lr-find.js";
import { CharlmError, UsageError } from "../../util/errors.js";
import { lineChartSvg } from "../../util/chart.js";
import { Progress } from "../../util/progress.js";
import { DATA_ENV, KERNEL_ENV, defineCommand } from "../command.js";
import type { Flags, Schema } from "../flags.js";
import { readConfigFile } from "./train.js";

const schema = {
  minLr: { type: "float", help: "the first step's learning rate", default: 1e-5, min: 0, arg: "LR" },
  maxLr: { type: "float", help: "the last step's learning rate", default: 1, min: 0, arg: "LR" },
  steps: {
    type: "int",
    help: "steps from --min-lr to --max-lr (fewer if the loss blows up first)",
    default: 200,
    min: 10,
    arg: "N",
  },
  plot: { type: "string", help: "write the loss against the learning rate as an SVG chart to FILE", arg: "FILE" },
  preset: {
    type: "string",
    help: `the run to test: ${Object.keys(PRESETS).join(", ")} (the defaults shown below are cpu's)`,
    default: "cpu",
    arg: "NAME",
  },
  config: { type: "string", help: "JSON file of config keys, applied after the preset", arg: "FILE" },
  quiet: { type: "bool", help: "no progress bar", default: false },
  threads: threadsFlag,
  json: {
    type: "bool",
    help: "print one JSON document {suggested, steepest, lowestAt, ended, points} instead",
    default: false,
  },
  ...trainConfigSchema(),
  lr: {
    type: "float",
    help: "refused here: the test sweeps the rate from --min-lr to --max-lr",
    min: 0,
    arg: "LR",
  },
} satisfies Schema;

export const lrFindCommand = defineCommand({
  name: "lr-find",
  environment: [...KERNEL_ENV, ...DATA_ENV],
  summary:
    "the learning-rate range test: train briefly at growing rates and suggest the rate where the loss falls fastest",
  schema,
  examples: [
    "charlm lr-find",
    "charlm lr-find --data my.txt --units 256 --plot lr.svg",
    "charlm lr-find --optimizer rmsprop --min-lr 1e-4 --max-lr 0.1 --steps 100",
  ],
  run: runLrFind,
});

async function runLrFind(flags: Flags<typeof schema>): Promise<number> {
  try {
    checkLrFindOptions({ minLr: flags.minLr, maxLr: flags.maxLr, steps: flags.steps });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (flags._given.has("lr")) {
    throw new UsageError(
      "charlm lr-find sweeps the learning rate itself; drop --lr (set the range with --min-lr and --max-lr)",
    );
  }
  // Before the run, not after it: a plot that cannot be written would lose the run's minute.
  if (flags.plot && !existsSync(dirname(resolve(flags.plot)))) {
    throw new CharlmError(
      `--plot ${flags.plot}: the folder ${dirname(resolve(flags.plot))} does not exist; create it or pick another path`,
    );
  }
  const run = await prepareRun({
    preset: flags.preset,
    file: flags.config ? await readConfigFile(flags.config) : undefined,
    fileName: flags.config,
    overrides: configFromFlags(flags as unknown as Record<string, unknown> & { _given: Set<string> }),
    out: null,
    threads: flags.threads,
    quiet: flags.quiet || flags.json,
  });
  try {
    const say = (line: string): void => void process.stdout.write(line + "\n");
    const cfg = run.config;
    if (!flags.json) {
      // the backend and data lines of a run's start; its config block would show a rate the test does not use
      for (const line of run.describe.slice(2)) say(line);
      say(
        `sweeping the learning rate from ${flags.minLr} to ${flags.maxLr} over ${flags.steps} steps: ${cfg.optimizer}, ` +
          `batch ${cfg.batchSize} x ${cfg.seqLength}, clipping ${cfg.clip > 0 ? `at ${cfg.clip}` : "off"}, seed ${cfg.seed}`,
      );
    }
    const progress = new Progress({
      total: flags.steps,
      label: "lr-find",
      unit: "char",
      unitsPerTick: cfg.batchSize * cfg.seqLength,
      quiet: flags.quiet || flags.json,
    });
    const result = await lrRangeTest(run, {
      minLr: flags.minLr,
      maxLr: flags.maxLr,
      steps: flags.steps,
      onStep: (p) => progress.tick(1, `lr ${p.lr.toExponential(1)}  loss ${p.smoothed.toFixed(3)}`),
    });
    progress.finish();
    const unit = run.vocab.kind === "char" ? "nats/char" : "nats/token";
    if (flags.plot) await writeFile(flags.plot, chart(result.points, unit, result.suggested));
    if (flags.json) {
      say(JSON.stringify({ ...result, optimizer: cfg.optimizer, batchSize: cfg.batchSize, seqLength: cfg.seqLength }));
      return 0;
    }
    say(`${"learning rate".padStart(13)}  training loss, smoothed (${unit})`);
    for (const p of sampled(result.points, 12)) say(`${p.lr.toExponential(1).padStart(13)}  ${p.smoothed.toFixed(4)}`);
    const last = result.points[result.points.length - 1];
    say(
      result.ended === "diverged"
        ? `stopped at ${last.lr.toExponential(1)}: the loss ${Number.isFinite(last.loss) ? "passed 4x its lowest" : "was not finite"}`
        : `reached --max-lr ${flags.maxLr} after ${result.points.length} steps`,
    );
    if (result.suggested === null) {
      say(`the loss never fell: try a higher --max-lr or more --steps (lowest at ${result.lowestAt.toExponential(1)})`);
    } else {
      const steepest = result.steepest === null ? "" : `; it fell fastest at ${result.steepest.toExponential(1)}`;
      say(
        `suggested: --lr ${round(result.suggested)} (a tenth of ${result.lowestAt.toExponential(1)}, where the loss was lowest${steepest}) ` +
          `for ${cfg.optimizer} at batch ${cfg.batchSize} x ${cfg.seqLength}`,
      );
      say("a rate for a short run; for a long one with decay, search around it with charlm tune (docs/tuning.md)");
    }
    if (flags.plot) say(`plot: ${flags.plot}`);
    return 0;
  } finally {
    run.release();
  }
}

/** Two significant digits: 0.0031622 -> 0.0032. */
const round = (x: number): string => String(Number(x.toPrecision(2)));

/** About n points spread evenly over the run, the last included. */
function sampled(points: LrPoint[], n: number): LrPoint[] {
  if (points.length <= n) return points;
  return Array.from({ length: n }, (_, k) => points[Math.round((k * (points.length - 1)) / (n - 1))]);
}

function chart(points: LrPoint[], unit: string, suggested: number | null): string {
  // Values past a third above the starting loss are the blow-up at the end: left out, so that they do not squash
  // the part of the curve worth reading.
  const top = 1.33 * points[0].smoothed;
  const kept = (y: number): number => (y <= top ? y : NaN);
  const at = (p: LrPoint, y: number): [number, number] => [Math.log10(p.lr), kept(y)];
  const series = [
    { label: "loss", color: "#c8c8c8", points: points.map((p) => at(p, p.loss)) },
    { label: "smoothed", color: "#4878d0", points: points.map((p) => at(p, p.smoothed)) },
  ];
  if (suggested !== null) {
    const ys = points.map((p) => kept(p.smoothed)).filter(Number.isFinite);
    const x = Math.log10(suggested);
    series.push({
      label: "suggested",
      color: "#ee854a",
      points: [
        [x, Math.min(...ys)],
        [x, Math.max(...ys)],
      ],
    });
  }
  return lineChartSvg(series, {
    title: `learning-rate range test${suggested === null ? "" : `: suggested ${round(suggested)}`}`,
    width: 560,
    xLabel: "log10 learning rate",
    yLabel: `training loss (${unit})`,
  });
}
