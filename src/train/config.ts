// The training configuration: one typed record with a default and a one-line description per field. It is
// resolved in one direction, default < preset < config file < command-line flags, printed at the start of a run
// and stored in every checkpoint. The same table generates `charlm train --help` and checks values from JSON
// (unknown keys and wrong types are errors naming the key).

import type { ModelConfig } from "../models/config.js";
import { checkRange, type FlagSpec, type Schema } from "../util/schema.js";
import { totalmem } from "node:os";
import { BpeTokenizer } from "../data/bpe.js";
import { TOKENIZER_KINDS, type Tokenizer } from "../data/tokenizer.js";
import { Vocab } from "../data/vocab.js";
import { INIT_SCHEMES } from "../nn/init.js";
import { DEFAULT_WORD_VOCAB, WordTokenizer } from "../data/word.js";
import { describeSize, estimateParams, MAX_PARAMETERS } from "../models/registry.js";
import { CharlmError, UsageError } from "../util/errors.js";

// ---------------------------------------------------------------------------------------------------------------
// The fields: one entry each (kind, default, --help line, range or choices). TrainConfig, DEFAULT_TRAIN_CONFIG,
// the checks on config files and the flags of `charlm train` are all read from this table, so a new field is one
// line here.

type Range = Pick<FlagSpec, "min" | "max" | "above" | "arg">;
interface Field<V extends FlagSpec["default"]> extends FlagSpec {
  default: V;
}
const int = (d: number, help: string, range: Range = {}): Field<number> => ({
  type: "int",
  default: d,
  help,
  ...range,
});
const float = (d: number, help: string, range: Range = {}): Field<number> => ({
  type: "float",
  default: d,
  help,
  ...range,
});
const bool = (d: boolean, help: string): Field<boolean> => ({ type: "bool", default: d, help });
const text = (d: string, help: string, arg?: string): Field<string> => ({ type: "string", default: d, help, arg });
const files = (d: string, help: string): Field<string | string[]> => ({
  type: "strings",
  default: d,
  help,
  arg: "FILE",
});
const oneOf = <const C extends readonly string[]>(choices: C, d: C[number], help: string): Field<C[number]> => ({
  type: "string",
  choices,
  default: d,
  help,
});

const FIELDS = {
  // data
  data: files(
    "tinyshakespeare",
    "corpus: tinyshakespeare, or a UTF-8 text file or directory of .txt files (repeat for several)",
  ),
  validationFraction: float(0.1, "custom corpus: tail fraction held out", { min: 0.001, max: 0.5 }),
  maxVocab: int(0, "keep the N most frequent symbols, <unk> included (0 = all)", { min: 0, arg: "N" }),
  minCount: int(1, "keep characters seen at least K times; the rest map to <unk>", { min: 1, arg: "K" }),
  extraChars: text("", "characters always in the vocabulary, even if unseen", "STRING"),
  tokenizer: oneOf(TOKENIZER_KINDS, "char", "tokens: characters, words, or byte-level BPE"),
  vocabSize: int(0, "word: cap, <unk> included (0 = 10000); bpe: 256-8192 (0 = 1024)", { min: 0, arg: "N" }),
  wordLowercase: bool(false, "word tokenizer: fold case"),
  // model
  type: oneOf(["rnn", "gpt"], "rnn", "model family: recurrent stack or GPT-style transformer"),
  cell: oneOf(["lstm", "gru", "rnn"], "lstm", "recurrent cell"),
  embedding: int(64, "embedding width (gpt: channels of the residual stream)", { min: 1 }),
  units: int(256, "units per recurrent layer", { min: 1 }),
  layers: int(1, "stacked recurrent layers (gpt: transformer blocks)", { min: 1, max: 16 }),
  heads: int(4, "gpt: attention heads per block (must divide --embedding)", { min: 1 }),
  dropout: float(0, "dropout after each recurrent layer (gpt: embeddings and residual branches)", {
    min: 0,
    max: 0.95,
  }),
  // batches
  seqLength: int(100, "characters per training sequence (gpt: the context length)", { min: 1 }),
  batchSize: int(32, "sequences per batch", { min: 1 }),
  epochs: int(10, "passes over the training split", { min: 1 }),
  stepsPerEpoch: int(0, "cap on batches per epoch (0 = whole split)", { min: 0 }),
  batching: oneOf(["windows", "stream"], "windows", "shuffled windows or contiguous streams (state carried)"),
  // optimizer and schedule
  optimizer: oneOf(["adam", "rmsprop", "adagrad", "sgd"], "adam", "update rule"),
  lr: float(2e-3, "peak learning rate", { above: 0 }),
  beta1: float(0.9, "Adam beta1", { min: 0, max: 0.9999 }),
  beta2: float(0.999, "Adam beta2", { min: 0, max: 0.99999 }),
  momentum: float(0.9, "SGD momentum", { min: 0, max: 0.9999 }),
  weightDecay: float(0, "L2 penalty added to gradients", { min: 0 }),
  schedule: oneOf(["constant", "step", "cosine"], "constant", "learning-rate schedule after warm-up"),
  warmup: int(0, "linear warm-up steps", { min: 0 }),
  decayEvery: int(1000, "step schedule: steps between decays", { min: 1 }),
  decayRate: float(0.5, "step schedule: decay factor", { above: 0, max: 1 }),
  minLrFraction: float(0.1, "cosine schedule: final lr as a fraction of lr", { min: 0, max: 1 }),
  clip: float(5, "clip gradients to this global norm (0 = off)", { min: 0 }),
  ema: float(
    0,
    "average the weights (a moving average of this decay, e.g. 0.998): validation, early stopping and the saved model use the average (0 = off)",
    { min: 0, max: 0.99999 },
  ),
  // early stopping and evaluation
  patience: int(0, "early stopping patience in epochs (0 = off)", { min: 0 }),
  minDelta: float(0, "early stopping: smallest improvement that counts", { min: 0 }),
  restoreBest: bool(true, "end with the best validation epoch's weights"),
  evalChars: int(0, "validation tokens per evaluation (characters, for a char model; 0 = all)", { min: 0 }),
  // output
  sampleEvery: int(0, "print a sample every N steps (0 = each epoch end)", { min: 0 }),
  sampleLength: int(200, "characters per printed sample (0 = none)", { min: 0 }),
  saveEvery: int(0, "also checkpoint every N steps (0 = epoch ends only)", { min: 0 }),
  logEvery: int(10, "metrics.jsonl step line every N steps", { min: 1 }),
  seed: int(1, "random seed: same seed, same run", { min: 0, max: 0xffffffff }),
  init: oneOf(
    INIT_SCHEMES,
    "torch",
    "initialisation: keras (embedding U(±0.05), Glorot, orthogonal, forget bias 1) or torch (PyTorch's defaults)",
  ),
  timeLimit: float(
    0,
    "stop after this much training time in all (resumes included): evaluate, checkpoint, stop (0 = none)",
    {
      min: 0,
      arg: "SECONDS",
    },
  ),
  backend: oneOf(
    ["auto", "js", "wasm", "webgpu"],
    "auto",
    "kernel backend; auto picks webgpu when a GPU is found, else wasm, else js",
  ),
} satisfies Record<string, FlagSpec>;

/** The resolved training config: every field of TRAIN_FIELDS, typed by its default. */
export type TrainConfig = { [K in keyof typeof FIELDS]: (typeof FIELDS)[K]["default"] };

/** Validation rules and --help lines for every field. */
export const TRAIN_FIELDS: { [K in keyof TrainConfig]: FlagSpec } = FIELDS;

export const DEFAULT_TRAIN_CONFIG: TrainConfig = Object.fromEntries(
  Object.entries(TRAIN_FIELDS).map(([k, f]) => [k, f.default]),
) as TrainConfig;

/**
 * Presets. `cpu` is the default: what this 2-core machine trains best in about half an hour (one LSTM 512, picked by
 * a tuning search and measured: README "Results"). `tutorial` is the
 * TensorFlow text-generation tutorial's recipe (embedding 256, one recurrent layer of 1024, sequences of 100,
 * batches of 64, Adam); the tutorial itself uses a GRU, so `--preset tutorial --cell gru` is the exact recipe.
 * `tiny` trains in seconds, for smoke tests.
 */
export const PRESETS: Record<string, Partial<TrainConfig>> = {
  cpu: {
    // From `charlm tune` (successive halving over units, lr, dropout, init and batch size: docs/tuning.md), sized to
    // 30 minutes on this 2-core machine at ~8,500 characters/s (310 steps of 3,200 characters per epoch). Judged by a
    // moving average of its weights (ema 0.995, docs/tuning.md "Weight averaging"): 1.3990 on validation after 7
    // epochs (README "Results"; 1.3970 in a run that judged both, where the weights themselves reached 1.4119).
    embedding: 64,
    units: 512,
    layers: 1,
    dropout: 0.2,
    seqLength: 100,
    batchSize: 32,
    epochs: 14,
    optimizer: "adam",
    lr: 4e-3,
    schedule: "cosine",
    warmup: 0,
    clip: 5,
    patience: 3,
    init: "torch",
    ema: 0.995,
    backend: "auto",
  },
  tutorial: {
    cell: "lstm",
    embedding: 256,
    units: 1024,
    layers: 1,
    dropout: 0,
    seqLength: 100,
    batchSize: 64,
    epochs: 20,
    optimizer: "adam",
    lr: 1e-3,
    schedule: "constant",
    warmup: 0,
    clip: 0,
    backend: "auto",
  },
  // A GPU (--backend webgpu): two LSTM layers of 512 on the cpu preset's recipe (batch 32, Adam at 4e-3, a cosine over
  // 14 epochs, torch init) with dropout 0.3, judged by a moving average of its weights (0.995). On this small corpus a
  // model this size overfits long before a GPU runs out of time, so the recipe, not the speed, decides the best loss.
  // Measured on 2 CPU cores (docs/tuning.md, "Weight averaging"): the average reached 1.3946 on validation after 9
  // epochs, the weights themselves 1.4007 after 11. On an H200 (docs/webgpu.md) the recipe without the average (and
  // with Keras init) reached 1.4009 after 46 s, early-stopped at 61 s.
  gpu: {
    cell: "lstm",
    embedding: 64,
    units: 512,
    layers: 2,
    dropout: 0.3,
    seqLength: 100,
    batchSize: 32,
    epochs: 14,
    optimizer: "adam",
    lr: 4e-3,
    schedule: "cosine",
    warmup: 0,
    clip: 5,
    patience: 3,
    init: "torch",
    ema: 0.995,
    backend: "webgpu",
  },
  tiny: {
    backend: "js",
    embedding: 16,
    units: 32,
    layers: 1,
    seqLength: 32,
    batchSize: 8,
    epochs: 2,
    stepsPerEpoch: 20,
    evalChars: 2000,
    sampleLength: 80,
  },
};

export const DEFAULT_PRESET = "cpu";

/**
 * Check one value from JSON or code against the field table; `where` names the source (e.g. "config.json").
 * Throws a CharlmError naming the key for unknown keys, wrong types, bad choices and out-of-range numbers.
 */
export function checkField(key: string, value: unknown, where: string): void {
  const spec = (TRAIN_FIELDS as Record<string, FlagSpec | undefined>)[key];
  if (!spec) {
    throw new CharlmError(
      `${where}: unknown training config key "${key}"; the keys are ${Object.keys(TRAIN_FIELDS).join(", ")}`,
    );
  }
  const want =
    spec.type === "int"
      ? "a whole number"
      : spec.type === "float"
        ? "a number"
        : spec.type === "bool"
          ? "true or false"
          : spec.type === "strings"
            ? "a string or a list of strings"
            : "a string";
  const ok =
    spec.type === "int"
      ? typeof value === "number" && Number.isInteger(value)
      : spec.type === "float"
        ? typeof value === "number" && Number.isFinite(value)
        : spec.type === "bool"
          ? typeof value === "boolean"
          : spec.type === "strings"
            ? typeof value === "string" ||
              (Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === "string"))
            : typeof value === "string";
  if (!ok) throw new CharlmError(`${where}: "${key}" must be ${want}, got ${JSON.stringify(value)}`);
  if (typeof value === "number") {
    try {
      checkRange(`${where}: "${key}"`, spec, value);
    } catch (err) {
      // A value in a file is bad input (exit 1), not a bad command line: keep the sentence, not the kind.
      throw new CharlmError((err as Error).message);
    }
  }
  if (spec.choices && !spec.choices.includes(value as string)) {
    throw new CharlmError(`${where}: "${key}" must be one of ${spec.choices.join(", ")}, got ${JSON.stringify(value)}`);
  }
}

/** Check every key of a partial config (from a JSON file or a checkpoint). */
export function checkPartialConfig(raw: unknown, where: string): Partial<TrainConfig> {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new CharlmError(`${where}: expected a JSON object of training config keys`);
  }
  for (const [k, v] of Object.entries(raw)) checkField(k, v, where);
  return raw as Partial<TrainConfig>;
}

/** default < preset < file < overrides, each layer checked key by key. */
export function resolveTrainConfig(
  opts: { preset?: string; file?: Partial<TrainConfig>; overrides?: Partial<TrainConfig> } = {},
): TrainConfig {
  const name = opts.preset ?? DEFAULT_PRESET;
  const preset = PRESETS[name];
  if (!preset) {
    throw new UsageError(`unknown preset '${name}'; the presets are ${Object.keys(PRESETS).join(", ")}`);
  }
  const cfg: TrainConfig = { ...DEFAULT_TRAIN_CONFIG, ...preset };
  for (const [layer, where] of [
    [opts.file, "config file"],
    [opts.overrides, "flags"],
  ] as const) {
    if (!layer) continue;
    checkPartialConfig(layer, where);
    Object.assign(cfg, layer);
  }
  return cfg;
}

/** Flag schema entries for every config field (defaults shown in --help are the cpu preset's). */
export function trainConfigSchema(): Schema {
  const cpu = { ...DEFAULT_TRAIN_CONFIG, ...PRESETS[DEFAULT_PRESET] };
  const schema: Schema = {};
  for (const [k, spec] of Object.entries(TRAIN_FIELDS)) {
    schema[k] = { ...spec, default: cpu[k as keyof TrainConfig] };
  }
  return schema;
}

/** Pick the config fields a user set on the command line (parseFlags records them in _given). */
export function configFromFlags(flags: Record<string, unknown> & { _given: Set<string> }): Partial<TrainConfig> {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(TRAIN_FIELDS)) if (flags._given.has(key)) out[key] = flags[key];
  // One --data stays a plain string, as in a config file; several are a list.
  if (Array.isArray(out.data) && out.data.length === 1) out.data = out.data[0];
  return out as Partial<TrainConfig>;
}

/** The resolved config as aligned "key  value" lines, for the start of a run. */
export function formatConfig(cfg: TrainConfig): string {
  const width = Math.max(...Object.keys(cfg).map((k) => k.length)) + 2;
  return Object.entries(cfg)
    .map(([k, v]) => `  ${k.padEnd(width)}${typeof v === "string" ? v : JSON.stringify(v)}`)
    .join("\n");
}

/**
 * The vocabulary a training config asks for, built from the corpus text: pruned to `maxVocab` symbols and to
 * characters seen `minCount` times, enriched with `extraChars`. Anything pruned maps to "<unk>" when the splits are
 * encoded. A resumed run calls this again with the saved settings and must get the checkpoint's vocabulary back.
 */
export function buildTrainVocab(cfg: Pick<TrainConfig, "maxVocab" | "minCount" | "extraChars">, text: string): Vocab {
  const { maxVocab, minCount, extraChars } = cfg;
  if (maxVocab === 1) {
    throw new UsageError(`--max-vocab 1 leaves room for "<unk>" alone; use at least 2, or 0 to keep every character`);
  }
  if (maxVocab > 0) {
    // Vocab.build needs one slot for "<unk>" beside the extra characters whenever the corpus has anything else.
    const extra = new Set(extraChars);
    let other = false;
    for (const ch of text) {
      if (!extra.has(ch)) {
        other = true;
        break;
      }
    }
    if (extra.size > maxVocab || (other && extra.size >= maxVocab)) {
      throw new UsageError(
        `--max-vocab ${maxVocab} leaves no room beside the ${extra.size} --extra-chars and "<unk>"; raise --max-vocab above ${extra.size} or drop some extra characters`,
      );
    }
  }
  return Vocab.build(text, { maxSize: maxVocab > 0 ? maxVocab : undefined, minCount, extra: extraChars });
}

/** bpe's vocabulary size when --vocab-size is 0. */
export const DEFAULT_BPE_VOCAB = 1024;

/**
 * The tokenizer a training config asks for: the char vocabulary (buildTrainVocab, from the whole corpus, as before),
 * or, learned from the training split alone, the word vocabulary (the `vocabSize` most frequent tokens) or the BPE
 * merges. A resumed run builds it again and must get the checkpoint's back.
 */
export function buildTrainTokenizer(
  cfg: Pick<TrainConfig, "maxVocab" | "minCount" | "extraChars" | "tokenizer" | "vocabSize" | "wordLowercase">,
  splits: { text: string; train: string },
): Tokenizer {
  const kind = cfg.tokenizer ?? "char";
  if (kind !== "char" && (cfg.maxVocab > 0 || cfg.minCount > 1 || cfg.extraChars)) {
    throw new UsageError(
      `--max-vocab, --min-count and --extra-chars shape the char tokenizer; with --tokenizer ${kind} use --vocab-size`,
    );
  }
  if (kind !== "word" && cfg.wordLowercase) {
    throw new UsageError(`--word-lowercase applies to --tokenizer word; drop it or pick the word tokenizer`);
  }
  if (kind === "word") {
    return WordTokenizer.build(splits.train, {
      maxSize: cfg.vocabSize || DEFAULT_WORD_VOCAB,
      lowercase: cfg.wordLowercase,
    });
  }
  if (kind === "bpe") {
    const size = cfg.vocabSize || DEFAULT_BPE_VOCAB;
    if (size < 256 || size > 8192) {
      throw new UsageError(`--vocab-size ${size}: a bpe vocabulary holds 256 to 8192 tokens; pick one in that range`);
    }
    return BpeTokenizer.train(splits.train, size);
  }
  if (cfg.vocabSize > 0) {
    throw new UsageError(
      `--vocab-size sets the word and bpe vocabularies; a char vocabulary is capped with --max-vocab ${cfg.vocabSize}`,
    );
  }
  return buildTrainVocab(cfg, splits.text);
}

/**
 * The model a training config describes, for a vocabulary of V symbols. A gpt's context length (blockSize) is the
 * training sequence length; its width is `embedding` and its depth `layers`.
 */
/**
 * Refuse, before any data loads or memory is allocated, a model too big to train here: over the registry's cap, or
 * needing more than this machine's memory at about 16 bytes per parameter (weights, gradients, two optimizer slots).
 * The vocabulary is not known yet, so it counts one symbol: the refusal never hits a model that would fit.
 */
export function checkTrainableSize(cfg: TrainConfig, source?: string): void {
  const n = estimateParams(modelConfigFor(cfg, 1));
  const need = n * 16;
  const have = totalmem();
  if (n <= MAX_PARAMETERS && need <= have) return;
  const why = `too big to train in this machine's memory (${(have / 1e9).toFixed(1)} GB; training needs about ${(need / 1e9).toPrecision(2)} GB, and charlm builds at most ${MAX_PARAMETERS.toLocaleString("en-US")} parameters)`;
  // Fine-tuning: the shape is the source's, not the command line's (an input error, exit 1).
  if (source) {
    throw new CharlmError(
      `${source}: its model has ${describeSize(n)}, ${why}; fine-tune it on a larger machine, or check that its charlm.json is not damaged`,
    );
  }
  const knobs = cfg.type === "gpt" ? ["embedding", "layers"] : ["units", "embedding", "layers"];
  throw new UsageError(
    `${knobs.map((k) => `--${k} ${cfg[k as keyof TrainConfig] as number}`).join(" ")}: the model has ${describeSize(n)}, ${why}; lower them`,
  );
}

export function modelConfigFor(cfg: TrainConfig, vocabSize: number): ModelConfig {
  if (cfg.type === "gpt") {
    if (cfg.embedding % cfg.heads !== 0) {
      throw new CharlmError(
        `--heads ${cfg.heads} does not divide --embedding ${cfg.embedding}; pick heads that divide it`,
      );
    }
    return {
      type: "gpt",
      vocabSize,
      blockSize: cfg.seqLength,
      nLayer: cfg.layers,
      nHead: cfg.heads,
      nEmbd: cfg.embedding,
      dropout: cfg.dropout,
      bias: false,
    };
  }
  const { cell, embedding, units, layers, dropout } = cfg;
  return { type: "rnn", cell, vocabSize, embedding, units, layers, dropout };
}
