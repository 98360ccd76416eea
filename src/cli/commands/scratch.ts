// `charlm scratch [train]` trains the from-scratch vanilla RNN (src/scratch); `charlm scratch sample` samples a
// checkpoint it saved. Flags only; the work is in src/scratch/run.ts.

import { DATA_ENV, defineCommand } from "../command.js";
import { stopOnSignals } from "../signals.js";
import { kebab } from "../flags.js";
import { UsageError } from "../../util/errors.js";
import { sampleScratch, trainScratch } from "../../scratch/run.js";

const schema = {
  // ---- train
  data: {
    type: "strings",
    help: "training text: a file, a directory of .txt files, or tinyshakespeare[:FILE] (repeatable)",
    arg: "FILE",
  },
  text: { type: "string", help: "train on this text instead of --data (e.g. 'hello world')", arg: "TEXT" },
  iterations: { type: "int", help: "stop after N updates (total, counting a resumed run)", min: 1, arg: "N" },
  epochs: { type: "int", help: "stop after N passes over the training split", min: 1, arg: "N" },
  hidden: { type: "int", help: "hidden units", default: 100, min: 1, arg: "N" },
  seqLength: { type: "int", help: "characters unrolled per update", default: 25, min: 1, arg: "N" },
  lr: { type: "float", help: "Adagrad learning rate", default: 0.1, above: 0, arg: "X" },
  clip: { type: "float", help: "clip every gradient entry to [-X, X]", default: 5, above: 0, arg: "X" },
  out: { type: "string", help: "checkpoint directory", default: "runs/scratch", arg: "DIR" },
  resume: { type: "bool", help: "continue the checkpoint in --out" },
  sampleEvery: {
    type: "int",
    help: "print a 200-character sample every N updates (0: never)",
    default: 1000,
    min: 0,
    arg: "N",
  },
  saveEvery: {
    type: "int",
    help: "save a checkpoint every N updates (0: only at the end)",
    default: 10000,
    min: 0,
    arg: "N",
  },
  validationFraction: {
    type: "float",
    help: "tail of a custom corpus held out for validation (--text: 0)",
    min: 0,
    max: 0.9,
    arg: "X",
  },
  split: {
    type: "string",
    help: "split the final loss is reported on",
    default: "validation",
    choices: ["validation", "test"],
  },
  quiet: { type: "bool", help: "no progress bar" },
  // ---- sample
  model: { type: "string", help: "(sample) checkpoint directory", arg: "DIR" },
  prime: { type: "string", help: "(sample) text to start from", default: "", arg: "TEXT" },
  length: { type: "int", help: "(sample) characters to generate", default: 200, min: 1, arg: "N" },
  temperature: {
    type: "float",
    help: "(sample) 1 = model's distribution, lower = safer, 0 = greedy",
    default: 1,
    min: 0,
    arg: "X",
  },
  // ---- both
  seed: { type: "int", help: "random seed (weights and samples)", default: 42, min: 0, arg: "N" },
} as const;

const SAMPLE_ONLY = ["model", "prime", "length", "temperature"];
const TRAIN_ONLY = Object.keys(schema).filter((k) => !SAMPLE_ONLY.includes(k) && k !== "seed");

export const scratchCommand = defineCommand({
  name: "scratch",
  environment: DATA_ENV,
  summary: "the min-char-rnn vanilla RNN written from scratch: train it, or sample a checkpoint ('scratch sample')",
  schema,
  positionals: "[train|sample]",
  examples: [
    "charlm scratch --text 'hello world' --seq-length 5 --iterations 500 --out runs/hello",
    "charlm scratch --data tinyshakespeare --epochs 5 --out runs/scratch",
    "charlm scratch --data tinyshakespeare --epochs 10 --out runs/scratch --resume",
    "charlm scratch sample --model runs/scratch --prime 'ROMEO:' --length 200 --temperature 0.8",
  ],
  async run(f) {
    const [mode = "train", ...extra] = f._;
    if (mode !== "train" && mode !== "sample") {
      throw new UsageError(`unknown mode '${mode}'; use 'charlm scratch [train]' or 'charlm scratch sample'`);
    }
    if (extra.length > 0) throw new UsageError(`unexpected argument '${extra[0]}'; flags start with --`);
    const wrong = [...f._given].filter((k) => (mode === "train" ? SAMPLE_ONLY : TRAIN_ONLY).includes(k));
    if (wrong.length > 0) {
      const other = mode === "train" ? "charlm scratch sample" : "charlm scratch (train)";
      throw new UsageError(`--${kebab(wrong[0])} belongs to '${other}', not '${mode}'; drop it or switch mode`);
    }

    if (mode === "sample") {
      if (!f.model) throw new UsageError("give the checkpoint to sample: --model DIR");
      const text = await sampleScratch({
        model: f.model,
        prime: f.prime,
        length: f.length,
        temperature: f.temperature,
        seed: f.seed,
      });
      process.stdout.write(text + "\n");
      return 0;
    }

    // Only flags the user typed may override a resumed checkpoint's config.
    const given = (key: string) => f._given.has(key);
    const stop = stopOnSignals("stopping after this update and saving");
    try {
      await trainScratch({
        data: f.data,
        text: f.text,
        config: {
          hidden: given("hidden") || !f.resume ? f.hidden : undefined,
          seqLength: given("seqLength") || !f.resume ? f.seqLength : undefined,
          learningRate: given("lr") || !f.resume ? f.lr : undefined,
          clip: given("clip") || !f.resume ? f.clip : undefined,
        },
        iterations: f.iterations,
        epochs: f.epochs,
        seed: f.seed,
        sampleEvery: f.sampleEvery,
        saveEvery: f.saveEvery,
        out: f.out,
        resume: f.resume,
        validationFraction: f.validationFraction,
        split: f.split as "validation" | "test",
        quiet: f.quiet,
        stopped: () => stop.signal.aborted,
      });
    } finally {
      stop.dispose();
    }
    return stop.exitCode();
  },
});
