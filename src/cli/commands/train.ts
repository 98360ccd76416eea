// `charlm train`: resolve the config (default < preset < --config file < flags), load the corpus, build or
// resume the model, and run the training loop. All the work is in src/train; this file only wires flags to it.

import { promises as fs } from "node:fs";
import * as path from "node:path";
import { loadSplits } from "../../data/corpus.js";
import type { Tokenizer } from "../../data/tokenizer.js";
import { UNK, describe } from "../../data/vocab.js";
import { setBackend, setWasmThreads } from "../../engine/backends/index.js";
import { chooseBackend, threadsFlag } from "../backend.js";
import { extendVocab, loadInitSource, peekInitSource, type InitSource } from "../../interop/init-source.js";
import { buildModel, countParams } from "../../models/registry.js";
import {
  MANIFEST,
  type WriterLock,
  loadBestWeights,
  loadCarriedState,
  loadCheckpoint,
  loadOptimizerState,
  makeDir,
  openForWriting,
  readManifest,
} from "../../checkpoint/checkpoint.js";
import {
  DEFAULT_TRAIN_CONFIG,
  PRESETS,
  buildTrainTokenizer,
  checkPartialConfig,
  checkTrainableSize,
  configFromFlags,
  formatConfig,
  modelConfigFor,
  resolveTrainConfig,
  trainConfigSchema,
  type TrainConfig,
} from "../../train/config.js";
import {
  checkSourceVocab,
  fineTuneConfig,
  FINE_TUNE_EPOCHS,
  FINE_TUNE_LR_FACTOR,
  FIXED_BY_SOURCE,
} from "../../train/fine-tune.js";
import { train, type ResumeState } from "../../train/loop.js";
import { CharlmError, UsageError } from "../../util/errors.js";
import { formatDuration } from "../../util/progress.js";
import { Rng } from "../../util/rng.js";
import { defineCommand } from "../command.js";
import { stopOnSignals } from "../signals.js";
import { kebab, type Flags, type Schema } from "../flags.js";

/** Fields a resumed run must keep: they define the model, the vocabulary, the batches or the random streams. */
const LOCKED_ON_RESUME: (keyof TrainConfig)[] = [
  ...FIXED_BY_SOURCE, // the model's shape and the vocabulary
  "dropout",
  "seqLength",
  "batchSize",
  "batching",
  "optimizer",
  "seed",
  "validationFraction",
];

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
    help: `fine-tune: start from the weights of the checkpoint or PyTorch export in DIR, keeping its model and vocabulary (shape flags are refused), with a fresh optimizer and schedule; unless set, --epochs ${FINE_TUNE_EPOCHS} and --lr ${FINE_TUNE_LR_FACTOR} x the preset's`,
    arg: "DIR",
  },
  extendVocab: {
    type: "bool",
    help: "with --init-from: characters of --data the source lacks get new embedding and output rows (instead of <unk>)",
    default: false,
  },
  force: { type: "bool", help: "overwrite a checkpoint already in --out", default: false },
  stopAfter: { type: "int", help: "stop (and save) after this many steps in total; resume later", min: 1, arg: "N" },
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
  environment: ["CHARLM_THREADS", "CHARLM_WASM_BUILD", "CHARLM_TINYSHAKESPEARE", "CHARLM_CACHE_DIR"],
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
  async run(flags) {
    const held: WriterLock[] = []; // the lock of the run's directory, from before loading until the end
    const made: string[] = []; // the run's directory, if this run created it
    try {
      return await runTraining(flags, held, made);
    } catch (err) {
      // A run refused before it wrote anything leaves no empty directory behind (rmdir fails on a non-empty one).
      for (const lock of held) lock.release();
      for (const dir of made) await fs.rmdir(dir).catch(() => {});
      throw err;
    } finally {
      for (const lock of held) lock.release();
    }
  },
});

async function runTraining(flags: Flags<typeof schema>, held: WriterLock[], made: string[]): Promise<number> {
  const overrides = configFromFlags(flags as unknown as Record<string, unknown> & { _given: Set<string> });
  const file = flags.config ? await readConfigFile(flags.config) : undefined;
  let cfg: TrainConfig;
  let out: string;
  let resume: ResumeState | null = null;
  let loaded: Awaited<ReturnType<typeof loadCheckpoint>> | null = null;
  let source: InitSource | null = null;

  const preset = flags._given.has("preset") ? flags.preset : "cpu";

  if (flags.extendVocab && !flags.initFrom) {
    throw new UsageError(
      `--extend-vocab adds characters to the vocabulary of the --init-from model; add --init-from DIR, or drop it (a new run's vocabulary already holds every character of --data)`,
    );
  }
  if (flags.resume && flags.initFrom) {
    throw new UsageError(
      `--init-from starts a new run and --resume continues one; drop --init-from (a resumed run keeps where it started from)`,
    );
  }
  if (flags.resume) {
    if (flags.out && path.resolve(flags.out) !== path.resolve(flags.resume)) {
      throw new UsageError(
        `--resume continues in its own directory; drop --out ${flags.out} (or copy ${flags.resume} there first)`,
      );
    }
    out = flags.resume;
    // The manifest first (a clear line if it is not a checkpoint, before the lock creates anything there); the
    // tensors are loaded once the run's backend is chosen, below.
    const manifest = await readManifest(out);
    held.push(await openForWriting(out));
    if (!manifest.train)
      throw new CharlmError(
        `${path.join(out, MANIFEST)}: holds no training config, so it cannot be resumed; start a new run`,
      );
    // A checkpoint written before a field existed ran with that field's default (e.g. the full vocabulary).
    const saved: TrainConfig = {
      ...DEFAULT_TRAIN_CONFIG,
      ...checkPartialConfig(manifest.train, `${path.join(out, MANIFEST)}: train`),
    };
    const changes = { ...file, ...overrides };
    for (const key of LOCKED_ON_RESUME) {
      if (key in changes && changes[key] !== saved[key]) {
        throw new UsageError(
          `--${kebab(key)} ${shown(changes[key])} differs from the run's ${shown(saved[key])}; a resumed run keeps its model, vocabulary, batches and seed, so drop the flag or start a new run`,
        );
      }
    }
    cfg = { ...saved, ...changes };
    resume = {
      manifest,
      optimizer: await loadOptimizerState(out, manifest),
      bestWeights: await loadBestWeights(out, manifest),
      carried: null, // tensors: loaded with the model, on the run's backend
    };
  } else {
    if (flags.initFrom) {
      // The source's config first (its tensors load once the backend is chosen, below).
      const peek = await peekInitSource(flags.initFrom);
      cfg = fineTuneConfig({
        preset,
        file,
        fileName: flags.config,
        overrides,
        source: { dir: flags.initFrom, model: peek.model, train: peek.train },
      });
    } else {
      cfg = resolveTrainConfig({ preset, file, overrides });
    }
    checkTrainableSize(cfg);
    out = flags.out ?? path.join("runs", `${dataLabel(cfg.data)}-${cfg.cell}${cfg.units}`);
    if (flags.initFrom && path.resolve(out) === path.resolve(flags.initFrom)) {
      throw new UsageError(
        `--out ${out} is the --init-from directory; fine-tuning writes a new run, so pick another --out and the source stays intact`,
      );
    }
    // The directory is made and locked before the data loads, so a bad --out or a busy run fails at once.
    if (!(await fs.stat(out).catch(() => null))) made.push(out);
    await makeDir(out);
    held.push(await openForWriting(out));
    const existing = await fs.stat(path.join(out, MANIFEST)).then(
      () => true,
      () => false,
    );
    if (existing && !flags.force) {
      throw new UsageError(
        `${out} already holds a checkpoint; continue it with --resume ${out}, or pick another --out, or add --force to overwrite it`,
      );
    }
  }

  await setWasmThreads(flags.threads ?? null);
  // A backend the preset asked for (the user did not) falls back to the next one that works here, with one line.
  const chosen = await chooseBackend(cfg.backend, !flags._given.has("backend"));
  cfg = { ...cfg, backend: chosen.name };
  setBackend(chosen.backend);
  if (resume) {
    loaded = await loadCheckpoint(out);
    resume.carried = await loadCarriedState(out, resume.manifest);
  }
  if (flags.initFrom) source = await loadInitSource(flags.initFrom, { dropout: cfg.dropout });
  const splits = await loadSplits(cfg.data, {
    validationFraction: cfg.validationFraction,
    tinyShakespeare: { quiet: flags.quiet },
  });
  let vocab: Tokenizer;
  let model;
  let unknown = 0; // characters of the data the vocabulary lacks, mapped to <unk>
  let added: string[] = []; // --extend-vocab: characters given new rows
  if (source) {
    // Fine-tuning keeps the source's vocabulary as it is (its size is a dimension of the weights), unless
    // --extend-vocab grows it by the characters the data has and it lacks.
    const extending = flags.extendVocab;
    if (extending && source.vocab.kind !== "char") {
      throw new UsageError(
        `--extend-vocab adds characters to a char vocabulary, and ${flags.initFrom} uses the ${source.vocab.kind} tokenizer; drop --extend-vocab (${source.vocab.kind === "bpe" ? "byte-level tokens encode any text" : "unknown words map to <unk>"})`,
      );
    }
    const missing = checkSourceVocab(source.vocab, splits.text, splits.name, flags.initFrom!, { extending });
    if (extending && missing.length) {
      ({ model, vocab } = await extendVocab(source, missing, cfg.seed));
      added = missing;
      source.initFrom.addedChars = missing;
    } else {
      vocab = source.vocab;
      model = source.model;
      unknown = missing.length;
    }
  } else if (loaded && resume?.manifest.initFrom) {
    // A fine-tuned run's vocabulary is its source's, not one built from this data: check only that it covers it.
    vocab = loaded.vocab;
    unknown = checkSourceVocab(vocab, splits.text, splits.name, resume.manifest.initFrom.path).length;
    model = loaded.model;
  } else if (loaded) {
    vocab = loaded.vocab;
    // Rebuilt with the run's own tokenizer settings, the data must give back the very same tokens.
    const fresh = buildTrainTokenizer(cfg, splits);
    const missing = vocab.unk >= 0 ? [] : vocab.unknownChars(splits.text);
    const same = JSON.stringify(fresh.serialize()) === JSON.stringify(vocab.serialize());
    if (missing.length || !same) {
      const extra = missing.length
        ? `; the data has characters the model does not know: ${missing.slice(0, 5).map(describe).join(", ")}`
        : "";
      throw new CharlmError(
        `${cfg.data}: its vocabulary (${fresh.size} symbols) differs from the checkpoint's (${vocab.size} symbols)${extra}; resume with the data the run was started on (--data)`,
      );
    }
    model = loaded.model;
  } else {
    vocab = buildTrainTokenizer(cfg, splits);
    model = buildModel(modelConfigFor(cfg, vocab.size), new Rng(cfg.seed));
  }

  const say = (line: string): void => void process.stdout.write(line + "\n");
  const dropped = vocab.kind === "char" && vocab.unk >= 0 ? vocab.unknownChars(splits.text).length : 0;
  const pruned = added.length
    ? ` (${added.length} character${added.length > 1 ? "s" : ""} added by --extend-vocab)`
    : unknown
      ? ` (${unknown} character${unknown > 1 ? "s" : ""} the model does not know map${unknown > 1 ? "" : "s"} to ${UNK})`
      : dropped
        ? ` (${dropped} pruned character${dropped > 1 ? "s map" : " maps"} to ${UNK})`
        : "";
  say(
    resume
      ? `resuming ${out} at step ${resume.manifest.step} (epoch ${resume.manifest.epoch + 1})`
      : source
        ? `fine-tuning ${source.initFrom.path} (${source.initFrom.format === "torch" ? "PyTorch export" : "checkpoint"}, step ${source.initFrom.step}) into ${out}`
        : `training into ${out}`,
  );
  say(`config (preset ${resume ? (resume.manifest.preset ?? "?") : preset}):\n${formatConfig(cfg)}`);
  say(chosen.line);
  say(
    `data: ${splits.name}, ${splits.train.length.toLocaleString("en-US")} train / ${splits.validation.length.toLocaleString("en-US")} validation characters, ${vocab.kind === "char" ? `vocabulary ${vocab.size}` : `tokenizer ${vocab.describe()}`}${pruned}; model: ${countParams(model).toLocaleString("en-US")} parameters`,
  );

  const stop = stopOnSignals("saving a checkpoint");
  try {
    const result = await train({
      config: cfg,
      model,
      vocab,
      splits,
      out,
      preset: resume ? resume.manifest.preset : preset,
      resume,
      initFrom: source?.initFrom ?? null,
      log: say,
      quiet: flags.quiet,
      signal: stop.signal,
      stopAfterSteps: flags.stopAfter,
    });
    const exitCode = result.status === "interrupted" ? stop.exitCode() : 0;
    const best =
      result.bestValLoss === null
        ? "n/a"
        : vocab.kind === "char"
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
      `checkpoint: ${out} (sample with: charlm sample --model ${out}${result.status === "interrupted" ? `; continue with: charlm train --resume ${out}` : ""})`,
    );
    return exitCode;
  } finally {
    stop.dispose();
  }
}

/** A config value in a message: strings that are empty or hold spaces quoted (e.g. --extra-chars), the rest as is. */
function shown(v: unknown): string {
  return typeof v === "string" && (v === "" || /\s/.test(v)) ? JSON.stringify(v) : String(v);
}

function dataLabel(data: string | string[]): string {
  if (Array.isArray(data)) return data.length === 1 ? dataLabel(data[0]) : "corpus";
  const base = /^tinyshakespeare/i.test(data) ? "tinyshakespeare" : path.basename(data).replace(/\.[^.]*$/, "");
  return base.replace(/[^A-Za-z0-9_-]+/g, "_") || "corpus";
}

async function readConfigFile(file: string): Promise<Partial<TrainConfig>> {
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
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
