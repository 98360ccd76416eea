// Fine-tuning (`charlm train --init-from DIR`): the training config of a run that starts from a trained model. The
// source fixes the model (type, cell, sizes) and the vocabulary, since its weights have their shapes; everything
// about the training itself (optimizer, schedule, epochs, batches, seed) is the new run's, as for any run, except two
// defaults taken from the source: its dropout and the learning rate it was trained at.
//
// Why not a lower rate and fewer epochs (the defaults until stop 20: a tenth of the preset's rate, 3 epochs): measured
// with `npm run bench -- fine_tune_defaults` (docs/training.md has the table), a Tiny Shakespeare LSTM 512
// fine-tuned on Genesis and Exodus (366 KB) reached 1.208 nats/char on that text's held-out tail that way, and 0.934
// at its own rate once early stopping ended the preset's epochs; on 63 KB of modern prose, 2.381 against 1.488.
// Early stopping and the best epoch's weights already guard against overfitting a small text; the lower rate only
// kept the model closer to Shakespeare, which is not what a fine-tuning run is for.

import type { Tokenizer } from "../data/tokenizer.js";
import { describe, UNK } from "../data/vocab.js";
import type { ModelConfig } from "../models/config.js";
import { kebab } from "../util/schema.js";
import { CharlmError, UsageError } from "../util/errors.js";
import { DEFAULT_TRAIN_CONFIG, resolveTrainConfig, type TrainConfig } from "./config.js";

/** Fields the source's weights fix: the model's shape and the vocabulary (its size is a weight dimension). */
export const FIXED_BY_SOURCE = [
  "type",
  "cell",
  "heads",
  "embedding",
  "units",
  "layers",
  "maxVocab",
  "minCount",
  "extraChars",
  "tokenizer",
  "vocabSize",
  "wordLowercase",
] as const satisfies readonly (keyof TrainConfig)[];

/**
 * The config of a run fine-tuning the model in `source.dir`: default < preset < file < flags as usual, then the
 * source's model and vocabulary settings, and the source's dropout and learning rate where the user left them
 * unset. A shape or vocabulary setting in the flags or the config file is refused, naming it.
 */
export function fineTuneConfig(opts: {
  preset: string;
  file?: Partial<TrainConfig>;
  fileName?: string;
  overrides: Partial<TrainConfig>;
  source: { dir: string; model: ModelConfig; train: Partial<TrainConfig> | null };
}): TrainConfig {
  const { file = {}, overrides, source } = opts;
  for (const key of FIXED_BY_SOURCE) {
    const fix = `fine-tuning keeps the model and vocabulary of ${source.dir} (its weights fix them), so drop it, or train from scratch without --init-from to change it`;
    if (key in overrides) throw new UsageError(`--${kebab(key)}: ${fix}`);
    if (key in file) throw new CharlmError(`${opts.fileName ?? "config file"}: "${key}": ${fix}`);
  }
  const given = (key: keyof TrainConfig): boolean => key in overrides || key in file;
  const cfg = resolveTrainConfig({ preset: opts.preset, file, overrides });
  const m = source.model;
  // The vocabulary settings only describe how the source built its vocabulary; kept for the record.
  const vocabSettings = {
    maxVocab: source.train?.maxVocab ?? DEFAULT_TRAIN_CONFIG.maxVocab,
    minCount: source.train?.minCount ?? DEFAULT_TRAIN_CONFIG.minCount,
    extraChars: source.train?.extraChars ?? DEFAULT_TRAIN_CONFIG.extraChars,
    tokenizer: source.train?.tokenizer ?? DEFAULT_TRAIN_CONFIG.tokenizer,
    vocabSize: source.train?.vocabSize ?? DEFAULT_TRAIN_CONFIG.vocabSize,
    wordLowercase: source.train?.wordLowercase ?? DEFAULT_TRAIN_CONFIG.wordLowercase,
  };
  if (m.type === "gpt") {
    // A GPT's learned positions cover blockSize tokens: its context by default, and never more.
    if (given("seqLength") && cfg.seqLength > m.blockSize) {
      throw new UsageError(
        `--seq-length ${cfg.seqLength}: the GPT in ${source.dir} has a context of ${m.blockSize} characters; use at most ${m.blockSize}`,
      );
    }
    Object.assign(cfg, {
      type: "gpt",
      embedding: m.nEmbd,
      layers: m.nLayer,
      heads: m.nHead,
      seqLength: given("seqLength") ? cfg.seqLength : m.blockSize,
    });
  } else {
    Object.assign(cfg, { type: "rnn", cell: m.cell, embedding: m.embedding, units: m.units, layers: m.layers });
  }
  Object.assign(cfg, vocabSettings);
  if (!given("dropout")) cfg.dropout = m.dropout;
  // A PyTorch export carries the config of the charlm run it came from; a source with no record keeps the preset's.
  const sourceLr = sourceLearningRate(source.train);
  if (!given("lr") && sourceLr !== null) cfg.lr = sourceLr;
  return cfg;
}

/** The learning rate a source was trained at (its manifest's train.lr), or null when it has no record of one. */
export function sourceLearningRate(train: Partial<TrainConfig> | null): number | null {
  const lr = train?.lr;
  return typeof lr === "number" && Number.isFinite(lr) && lr > 0 ? lr : null;
}

/**
 * The characters of `text` the source's vocabulary lacks: they map to "<unk>" when the vocabulary has it, or get new
 * rows when `extending` (--extend-vocab); otherwise the run is refused with a line naming a few of them. `data`
 * names the text, `dir` the source; `fix` replaces the line's advice where the CLI's flags are not at hand (the page).
 */
export function checkSourceVocab(
  vocab: Tokenizer,
  text: string,
  data: string,
  dir: string,
  opts: { extending?: boolean; fix?: string } = {},
): string[] {
  const missing = vocab.unknownChars(text);
  if (missing.length && vocab.unk < 0 && !opts.extending) {
    const shown =
      missing.slice(0, 5).map(describe).join(", ") + (missing.length > 5 ? `, and ${missing.length - 5} more` : "");
    throw new CharlmError(
      `${data}: has ${missing.length} character${missing.length > 1 ? "s" : ""} the model in ${dir} does not know (${shown}) and its vocabulary has no ${UNK}; ${opts.fix ?? "fine-tune on text the model knows, add --extend-vocab to give them new rows, or train from scratch without --init-from"}`,
    );
  }
  return missing;
}
