// Setting a training run up, for the CLI and the library alike: resolve the config (a new run, a fine-tuning run
// or a resumed one, whose policy lives here), make and lock the run's directory, choose the backend, load the data
// and build or load the model and its vocabulary. What is left is to hand the result to trainLoop.

import { promises as fs } from "node:fs";
import * as path from "node:path";
import { loadSplits, type Splits } from "../data/corpus.js";
import type { Tokenizer } from "../data/tokenizer.js";
import { UNK, describe } from "../data/vocab.js";
import { chooseBackend } from "../engine/backends/choose.js";
import { setBackend, setWasmThreads } from "../engine/backends/index.js";
import { extendVocab, loadInitSource, peekInitSource, type InitSource } from "../interop/init-source.js";
import type { LanguageModel } from "../models/contract.js";
import { buildModel, countParams } from "../models/registry.js";
import {
  MANIFEST,
  directoryFiles,
  loadBestWeights,
  loadCarriedState,
  loadCheckpoint,
  loadOptimizerState,
  loadTrainingWeights,
  makeDir,
  openForWriting,
  readManifest,
  type InitFrom,
  type WriterLock,
} from "../checkpoint/checkpoint.js";
import { CharlmError, UsageError } from "../util/errors.js";
import { Rng } from "../util/rng.js";
import { kebab } from "../util/schema.js";
import {
  DEFAULT_TRAIN_CONFIG,
  buildTrainTokenizer,
  DEFAULT_BPE_VOCAB,
  checkPartialConfig,
  checkTrainableSize,
  formatConfig,
  modelConfigFor,
  resolveTrainConfig,
  type TrainConfig,
} from "./config.js";
import { checkSourceVocab, fineTuneConfig, FIXED_BY_SOURCE, sourceLearningRate } from "./fine-tune.js";
import type { ResumeState } from "./loop.js";

/** Fields a resumed run must keep: they define the model, the vocabulary, the batches or the random streams. */
export const LOCKED_ON_RESUME: (keyof TrainConfig)[] = [
  ...FIXED_BY_SOURCE, // the model's shape and the vocabulary
  "dropout",
  "seqLength",
  "batchSize",
  "batching",
  "optimizer",
  "seed",
  "validationFraction",
  "init",
  "ema",
];

export interface RunRequest {
  preset?: string; // default "cpu"
  /** Config keys from a file, applied after the preset; `fileName` names it in messages. */
  file?: Partial<TrainConfig>;
  fileName?: string;
  /** Config keys the user set (flags, or the library's options), applied last. */
  overrides?: Partial<TrainConfig>;
  /** The run's directory; null: a new run kept in memory (nothing written to disk), unless outFor names one. */
  out: string | null;
  /** The directory of a new run when `out` is null (the CLI's runs/<data>-<cell><units>). */
  outFor?: (config: TrainConfig) => string;
  /** Continue the run saved in this directory (out must be unset or the same). */
  resume?: string | null;
  /** Fine-tune: start from the checkpoint or PyTorch export in this directory. */
  initFrom?: string | null;
  extendVocab?: boolean;
  /** Overwrite a checkpoint already in `out`. */
  force?: boolean;
  threads?: number | null;
  /** Text given in memory instead of config.data. */
  splits?: Splits | null;
  quiet?: boolean;
}

export interface PreparedRun {
  config: TrainConfig;
  out: string | null;
  model: LanguageModel;
  vocab: Tokenizer;
  splits: Splits;
  preset: string | null;
  resume: ResumeState | null;
  initFrom: InitFrom | null;
  /** What a command prints before training: the run, the config, the backend, the data and the model. */
  describe: string[];
  /** Release the directory's lock (trainLoop takes its own while it runs). */
  release(): void;
}

/**
 * Set a run up as `req` asks. A run refused before it wrote anything leaves no empty directory behind; on
 * success the directory stays locked until release().
 */
export async function prepareRun(req: RunRequest): Promise<PreparedRun> {
  const held: WriterLock[] = []; // the lock of the run's directory, from before loading until release()
  const made: string[] = []; // the run's directory, if this run created it
  try {
    return await prepare(req, held, made);
  } catch (err) {
    for (const lock of held) lock.release();
    for (const dir of made) await fs.rmdir(dir).catch(() => {});
    throw err;
  }
}

async function prepare(req: RunRequest, held: WriterLock[], made: string[]): Promise<PreparedRun> {
  const overrides = req.overrides ?? {};
  const file = req.file;
  const preset = req.preset ?? "cpu";
  let cfg: TrainConfig;
  let out = req.out;
  let resume: ResumeState | null = null;

  if (req.extendVocab && !req.initFrom) {
    throw new UsageError(
      `--extend-vocab adds characters to the vocabulary of the --init-from model; add --init-from DIR, or drop it (a new run's vocabulary already holds every character of --data)`,
    );
  }
  if (req.resume && req.initFrom) {
    throw new UsageError(
      `--init-from starts a new run and --resume continues one; drop --init-from (a resumed run keeps where it started from)`,
    );
  }
  if (req.resume) {
    if (out && path.resolve(out) !== path.resolve(req.resume)) {
      throw new UsageError(
        `--resume continues in its own directory; drop --out ${out} (or copy ${req.resume} there first)`,
      );
    }
    out = req.resume;
    // The manifest first (a clear line if it is not a checkpoint, before the lock creates anything there); the
    // tensors are loaded once the run's backend is chosen, below.
    const manifest = await readManifest(out);
    held.push(await openForWriting(out));
    if (!manifest.train)
      throw new CharlmError(
        `${path.join(out, MANIFEST)}: holds no training config, so it cannot be resumed; start a new run`,
      );
    cfg = resumedConfig(manifest.train, { ...file, ...overrides }, path.join(out, MANIFEST));
    const files = directoryFiles(out, manifest);
    resume = {
      manifest,
      optimizer: await loadOptimizerState(files),
      bestWeights: await loadBestWeights(files),
      carried: null, // tensors: loaded with the model, on the run's backend
      trainingWeights: await loadTrainingWeights(files),
    };
  } else {
    if (req.initFrom) {
      // The source's config first (its tensors load once the backend is chosen, below).
      const peek = await peekInitSource(req.initFrom);
      cfg = fineTuneConfig({
        preset,
        file,
        fileName: req.fileName,
        overrides,
        source: { dir: req.initFrom, model: peek.model, train: peek.train },
      });
    } else {
      cfg = resolveTrainConfig({ preset, file, overrides });
    }
    checkTrainableSize(cfg, req.initFrom ?? undefined);
    out ??= req.outFor?.(cfg) ?? null;
    if (out) {
      if (req.initFrom && path.resolve(out) === path.resolve(req.initFrom)) {
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
      if (existing && !req.force) {
        throw new UsageError(
          `${out} already holds a checkpoint; continue it with --resume ${out}, or pick another --out, or add --force to overwrite it`,
        );
      }
    }
  }

  await setWasmThreads(req.threads ?? null);
  // A backend the user named (flag or option) is that backend or an error; one from a preset, a config file or the
  // default falls back to the next that works here, with one line.
  const chosen = await chooseBackend(cfg.backend, !("backend" in overrides));
  cfg = { ...cfg, backend: chosen.name };
  setBackend(chosen.backend);
  const loaded = resume && out ? await loadCheckpoint(out) : null;
  if (resume && loaded) resume.carried = await loadCarriedState(loaded.files);
  const source = req.initFrom ? await loadInitSource(req.initFrom, { dropout: cfg.dropout }) : null;
  const splits =
    req.splits ??
    (await loadSplits(cfg.data, {
      validationFraction: cfg.validationFraction,
      tinyShakespeare: { quiet: req.quiet },
    }));
  const { model, vocab, note } = await modelAndVocab(cfg, splits, { source, loaded, resume, req });

  const lrGiven = "lr" in overrides || (file !== undefined && "lr" in file);
  const lines = [
    resume
      ? `resuming ${out} at step ${resume.manifest.step} (epoch ${resume.manifest.epoch + 1})`
      : source
        ? `fine-tuning ${source.initFrom.path} (${source.initFrom.format === "torch" ? "PyTorch export" : "checkpoint"}, step ${source.initFrom.step}) into ${out ?? "memory"}, learning rate ${cfg.lr}${lrGiven || sourceLearningRate(source.train) === null ? "" : " (the source's; --lr sets another)"}`
        : `training into ${out ?? "memory"}`,
    `config (preset ${resume ? (resume.manifest.preset ?? "?") : preset}):\n${formatConfig(cfg)}`,
    chosen.line,
    `data: ${splits.name}, ${splits.train.length.toLocaleString("en-US")} train / ${splits.validation.length.toLocaleString("en-US")} validation characters, ${vocab.kind === "char" ? `vocabulary ${vocab.size}` : `tokenizer ${vocab.describe()}`}${note}; model: ${countParams(model).toLocaleString("en-US")} parameters`,
  ];
  return {
    config: cfg,
    out,
    model,
    vocab,
    splits,
    preset: resume ? resume.manifest.preset : preset,
    resume,
    initFrom: source?.initFrom ?? null,
    describe: lines,
    release: () => {
      for (const lock of held.splice(0)) lock.release();
    },
  };
}

/** A resumed run's config: the saved one with the changes it allows; a change to a locked field is refused. */
export function resumedConfig(saved: unknown, changes: Partial<TrainConfig>, where: string): TrainConfig {
  // A checkpoint written before a field existed ran with that field's default (e.g. the full vocabulary).
  // The exception: `init`, whose default became torch; every checkpoint written before the field existed was built
  // with the Keras initialisers.
  const base: TrainConfig = { ...DEFAULT_TRAIN_CONFIG, init: "keras", ...checkPartialConfig(saved, `${where}: train`) };
  for (const key of LOCKED_ON_RESUME) {
    if (key in changes && changes[key] !== base[key]) {
      throw new UsageError(
        `--${kebab(key)} ${shown(changes[key])} differs from the run's ${shown(base[key])}; a resumed run keeps its model, vocabulary, batches and seed, so drop the flag or start a new run`,
      );
    }
  }
  return { ...base, ...changes };
}

/** The model and vocabulary: the fine-tuning source's, the checkpoint's (checked against the data), or new ones. */
async function modelAndVocab(
  cfg: TrainConfig,
  splits: Splits,
  from: {
    source: InitSource | null;
    loaded: Awaited<ReturnType<typeof loadCheckpoint>> | null;
    resume: ResumeState | null;
    req: RunRequest;
  },
): Promise<{ model: LanguageModel; vocab: Tokenizer; note: string }> {
  const { source, loaded, resume, req } = from;
  let vocab: Tokenizer;
  let model: LanguageModel;
  let unknown = 0; // characters of the data the vocabulary lacks, mapped to <unk>
  let added: string[] = []; // --extend-vocab: characters given new rows
  if (source) {
    // Fine-tuning keeps the source's vocabulary as it is (its size is a dimension of the weights), unless
    // --extend-vocab grows it by the characters the data has and it lacks.
    const extending = !!req.extendVocab;
    if (extending && source.vocab.kind !== "char") {
      throw new UsageError(
        `--extend-vocab adds characters to a char vocabulary, and ${req.initFrom} uses the ${source.vocab.kind} tokenizer; drop --extend-vocab (${source.vocab.kind === "bpe" ? "byte-level tokens encode any text" : "unknown words map to <unk>"})`,
      );
    }
    const missing = checkSourceVocab(source.vocab, splits.text, splits.name, req.initFrom!, { extending });
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
        `${shownData(cfg.data)}: its vocabulary (${fresh.size} symbols) differs from the checkpoint's (${vocab.size} symbols)${extra}; resume with the data the run was started on (--data)`,
      );
    }
    model = loaded.model;
  } else {
    vocab = buildTrainTokenizer(cfg, splits);
    model = buildModel(modelConfigFor(cfg, vocab.size), new Rng(cfg.seed), cfg.init);
  }
  const dropped = vocab.kind === "char" && vocab.unk >= 0 ? vocab.unknownChars(splits.text).length : 0;
  const note = added.length
    ? ` (${added.length} character${added.length > 1 ? "s" : ""} added by --extend-vocab)`
    : unknown
      ? ` (${unknown} character${unknown > 1 ? "s" : ""} the model does not know map${unknown > 1 ? "" : "s"} to ${UNK})`
      : dropped
        ? ` (${dropped} pruned character${dropped > 1 ? "s map" : " maps"} to ${UNK})`
        : "";
  // BPE stops merging once no pair of tokens repeats: a small text can give fewer tokens than --vocab-size asked for.
  const asked = vocab.kind === "bpe" && !loaded && !source ? cfg.vocabSize || DEFAULT_BPE_VOCAB : 0;
  const short = asked > vocab.size ? ` (${vocab.size} of the ${asked} tokens asked: no pair repeats in the text)` : "";
  return { model, vocab, note: note + short };
}

const shownData = (data: string | string[]): string => (Array.isArray(data) ? data.join(",") : data);

/** A config value in a message: strings that are empty or hold spaces quoted (e.g. --extra-chars), the rest as is. */
function shown(v: unknown): string {
  return typeof v === "string" && (v === "" || /\s/.test(v)) ? JSON.stringify(v) : String(v);
}
