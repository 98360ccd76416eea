// The training configuration: one typed record with a default and a one-line description per field. It is
// resolved in one direction, default < preset < config file < command-line flags, printed at the start of a run
// and stored in every checkpoint. The same table generates `charlm train --help` and checks values from JSON
// (unknown keys and wrong types are errors naming the key).

import type { FlagSpec, Schema } from "../cli/flags.js";
import type { ModelConfig } from "../models/config.js";
import { checkRange } from "../cli/flags.js";
import { totalmem } from "node:os";
import { BpeTokenizer } from "../data/bpe.js";
import { TOKENIZER_KINDS, type Tokenizer, type TokenizerKind } from "../data/tokenizer.js";
import { Vocab } from "../data/vocab.js";
import { DEFAULT_WORD_VOCAB, WordTokenizer } from "../data/word.js";
import { describeSize, estimateParams, MAX_PARAMETERS } from "../models/registry.js";
import { CharlmError, UsageError } from "../util/errors.js";
import type { OptimizerName } from "./optimizers.js";
import type { ScheduleName } from "./schedules.js";

export interface TrainConfig {
  data: string | string[]; // corpus: "tinyshakespeare" (TFDS splits), or UTF-8 text files or directories (tail held out)
  validationFraction: number; // custom corpora: fraction of the text held out at the end for validation
  maxVocab: number; // keep the N most frequent symbols, "<unk>" included; the rest map to "<unk>" (0 = keep all)
  minCount: number; // keep only characters seen at least K times in the corpus; the rest map to "<unk>"
  extraChars: string; // characters always in the vocabulary, even if the corpus lacks them or pruning drops them
  tokenizer: TokenizerKind; // char: one token per character; word: words and punctuation; bpe: byte-level BPE
  vocabSize: number; // word: vocabulary cap, <unk> included (0 = 10,000); bpe: 256-8192 (0 = 1,024); char: use maxVocab
  wordLowercase: boolean; // word: fold case before building the vocabulary and encoding
  type: "rnn" | "gpt"; // model family: the Keras-style recurrent stack, or a GPT-style transformer
  cell: "lstm" | "gru" | "rnn"; // recurrent cell
  embedding: number; // embedding width E
  units: number; // units H per recurrent layer
  layers: number; // stacked recurrent layers
  heads: number; // gpt: attention heads per block (must divide embedding)
  dropout: number; // dropout after each recurrent layer (gpt: on embeddings and residual branches) while training
  seqLength: number; // T: characters per training sequence (backpropagation through time length)
  batchSize: number; // B: sequences per batch
  epochs: number; // passes over the training split
  stepsPerEpoch: number; // cap on batches per epoch (0 = the whole split)
  batching: "windows" | "stream"; // windows: shuffled independent sequences (Keras); stream: contiguous, state carried
  optimizer: OptimizerName; // update rule
  lr: number; // peak learning rate
  beta1: number; // Adam β1
  beta2: number; // Adam β2
  momentum: number; // SGD momentum (0 = plain SGD)
  weightDecay: number; // L2 penalty added to gradients (0 = none)
  schedule: ScheduleName; // learning-rate schedule after warm-up
  warmup: number; // linear warm-up steps
  decayEvery: number; // step schedule: steps between decays
  decayRate: number; // step schedule: factor applied at each decay
  minLrFraction: number; // cosine schedule: final rate as a fraction of lr
  clip: number; // clip gradients to this global norm (0 = no clipping)
  patience: number; // early stopping: epochs without improvement before stopping (0 = never stop early)
  minDelta: number; // early stopping: smallest drop in validation loss that counts as an improvement
  restoreBest: boolean; // at the end, put back the weights of the best validation epoch
  evalChars: number; // characters of the validation split used per evaluation (0 = all)
  sampleEvery: number; // print a sample every this many steps (0 = at the end of each epoch only)
  sampleLength: number; // characters per printed sample (0 = no samples)
  saveEvery: number; // also checkpoint every this many steps (0 = at the end of each epoch only)
  logEvery: number; // write a step line to metrics.jsonl every this many steps
  seed: number; // seeds initialisation, shuffling and dropout: same seed, same run
  backend: "auto" | "js" | "wasm" | "webgpu"; // kernel backend (auto: webgpu on a GPU, else wasm, else js)
}

export const DEFAULT_TRAIN_CONFIG: TrainConfig = {
  data: "tinyshakespeare",
  validationFraction: 0.1,
  maxVocab: 0,
  minCount: 1,
  extraChars: "",
  tokenizer: "char",
  vocabSize: 0,
  wordLowercase: false,
  type: "rnn",
  cell: "lstm",
  embedding: 64,
  units: 256,
  layers: 1,
  heads: 4,
  dropout: 0,
  seqLength: 100,
  batchSize: 32,
  epochs: 10,
  stepsPerEpoch: 0,
  batching: "windows",
  optimizer: "adam",
  lr: 2e-3,
  beta1: 0.9,
  beta2: 0.999,
  momentum: 0.9,
  weightDecay: 0,
  schedule: "constant",
  warmup: 0,
  decayEvery: 1000,
  decayRate: 0.5,
  minLrFraction: 0.1,
  clip: 5,
  patience: 0,
  minDelta: 0,
  restoreBest: true,
  evalChars: 0,
  sampleEvery: 0,
  sampleLength: 200,
  saveEvery: 0,
  logEvery: 10,
  seed: 1,
  backend: "js",
};

/** Validation rules and --help lines for every field (the help line is the field's comment above). */
export const TRAIN_FIELDS: { [K in keyof TrainConfig]: FlagSpec } = {
  data: {
    type: "strings",
    arg: "FILE",
    help: "corpus: tinyshakespeare, or a UTF-8 text file or directory of .txt files (repeat for several)",
  },
  validationFraction: { type: "float", min: 0.001, max: 0.5, help: "custom corpus: tail fraction held out" },
  maxVocab: { type: "int", min: 0, arg: "N", help: "keep the N most frequent symbols, <unk> included (0 = all)" },
  minCount: { type: "int", min: 1, arg: "K", help: "keep characters seen at least K times; the rest map to <unk>" },
  extraChars: { type: "string", arg: "STRING", help: "characters always in the vocabulary, even if unseen" },
  tokenizer: { type: "string", choices: [...TOKENIZER_KINDS], help: "tokens: characters, words, or byte-level BPE" },
  vocabSize: { type: "int", min: 0, arg: "N", help: "word: cap, <unk> included (0 = 10000); bpe: 256-8192 (0 = 1024)" },
  wordLowercase: { type: "bool", help: "word tokenizer: fold case" },
  type: { type: "string", choices: ["rnn", "gpt"], help: "model family: recurrent stack or GPT-style transformer" },
  cell: { type: "string", choices: ["lstm", "gru", "rnn"], help: "recurrent cell" },
  embedding: { type: "int", min: 1, help: "embedding width (gpt: channels of the residual stream)" },
  units: { type: "int", min: 1, help: "units per recurrent layer" },
  layers: { type: "int", min: 1, max: 16, help: "stacked recurrent layers (gpt: transformer blocks)" },
  heads: { type: "int", min: 1, help: "gpt: attention heads per block (must divide --embedding)" },
  dropout: { type: "float", min: 0, max: 0.95, help: "dropout after each recurrent layer" },
  seqLength: { type: "int", min: 1, help: "characters per training sequence (gpt: the context length)" },
  batchSize: { type: "int", min: 1, help: "sequences per batch" },
  epochs: { type: "int", min: 1, help: "passes over the training split" },
  stepsPerEpoch: { type: "int", min: 0, help: "cap on batches per epoch (0 = whole split)" },
  batching: { type: "string", choices: ["windows", "stream"], help: "shuffled windows or contiguous streams" },
  optimizer: { type: "string", choices: ["adam", "rmsprop", "adagrad", "sgd"], help: "update rule" },
  lr: { type: "float", above: 0, help: "peak learning rate" },
  beta1: { type: "float", min: 0, max: 0.9999, help: "Adam beta1" },
  beta2: { type: "float", min: 0, max: 0.99999, help: "Adam beta2" },
  momentum: { type: "float", min: 0, max: 0.9999, help: "SGD momentum" },
  weightDecay: { type: "float", min: 0, help: "L2 penalty added to gradients" },
  schedule: { type: "string", choices: ["constant", "step", "cosine"], help: "learning-rate schedule" },
  warmup: { type: "int", min: 0, help: "linear warm-up steps" },
  decayEvery: { type: "int", min: 1, help: "step schedule: steps between decays" },
  decayRate: { type: "float", above: 0, max: 1, help: "step schedule: decay factor" },
  minLrFraction: { type: "float", min: 0, max: 1, help: "cosine schedule: final lr as a fraction of lr" },
  clip: { type: "float", min: 0, help: "clip gradients to this global norm (0 = off)" },
  patience: { type: "int", min: 0, help: "early stopping patience in epochs (0 = off)" },
  minDelta: { type: "float", min: 0, help: "early stopping: smallest improvement that counts" },
  restoreBest: { type: "bool", help: "end with the best validation epoch's weights" },
  evalChars: { type: "int", min: 0, help: "validation characters per evaluation (0 = all)" },
  sampleEvery: { type: "int", min: 0, help: "print a sample every N steps (0 = each epoch end)" },
  sampleLength: { type: "int", min: 0, help: "characters per printed sample (0 = none)" },
  saveEvery: { type: "int", min: 0, help: "also checkpoint every N steps (0 = epoch ends only)" },
  logEvery: { type: "int", min: 1, help: "metrics.jsonl step line every N steps" },
  seed: { type: "int", min: 0, max: 0xffffffff, help: "random seed" },
  backend: {
    type: "string",
    choices: ["auto", "js", "wasm", "webgpu"],
    help: "kernel backend; auto picks webgpu when a GPU is found, else wasm, else js",
  },
};

/**
 * Presets. `cpu` is the default: meant to be what this 2-core machine trains best in about half an hour. It is
 * provisional: 2 x LSTM 256 was picked from the throughput measured while the engine was still being written
 * (wasm kernels, a busy machine); re-tune it when the engine's speed settles. `tutorial` is the
 * TensorFlow text-generation tutorial's recipe (embedding 256, one recurrent layer of 1024, sequences of 100,
 * batches of 64, Adam); the tutorial itself uses a GRU, so `--preset tutorial --cell gru` is the exact recipe.
 * `tiny` trains in seconds, for smoke tests.
 */
export const PRESETS: Record<string, Partial<TrainConfig>> = {
  cpu: {
    embedding: 64,
    units: 256,
    layers: 2,
    dropout: 0.1,
    seqLength: 100,
    batchSize: 32,
    epochs: 8, // 310 steps of 3,200 characters each: 30.5 min measured (val 1.542); batch 64 x 10 epochs gave 1.537 in 37
    optimizer: "adam",
    lr: 2e-3,
    schedule: "cosine",
    warmup: 100,
    clip: 5,
    patience: 3,
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
  // A GPU (--backend webgpu): two LSTM layers of 512 at batch 256, the largest model the webgpu backend trains fast
  // (on an H200: 361 k chars/s; 2 x 1024 ran at 21 k). On this small corpus a model this size overfits within a few
  // minutes of GPU time, so dropout, short epochs and early stopping decide the best loss.
  gpu: {
    cell: "lstm",
    embedding: 64,
    units: 512,
    layers: 2,
    dropout: 0.25,
    seqLength: 100,
    batchSize: 256,
    epochs: 60,
    stepsPerEpoch: 100,
    optimizer: "adam",
    lr: 3e-3,
    schedule: "cosine",
    warmup: 100,
    clip: 5,
    patience: 5,
    logEvery: 50,
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
export function checkTrainableSize(cfg: TrainConfig): void {
  const n = estimateParams(modelConfigFor(cfg, 1));
  const need = n * 16;
  const have = totalmem();
  if (n <= MAX_PARAMETERS && need <= have) return;
  const knobs = cfg.type === "gpt" ? ["embedding", "layers"] : ["units", "embedding", "layers"];
  throw new UsageError(
    `${knobs.map((k) => `--${k} ${cfg[k as keyof TrainConfig] as number}`).join(" ")}: the model has ${describeSize(n)}, too big to train in this machine's memory (${(have / 1e9).toFixed(1)} GB; training needs about ${(need / 1e9).toPrecision(2)} GB, and charlm builds at most ${MAX_PARAMETERS.toLocaleString("en-US")} parameters); lower them`,
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
