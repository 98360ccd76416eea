// "Train in this tab": a small model trained on text the user drops or pastes, by the same training loop as
// `charlm train` (src/train/loop.ts) writing into memory instead of a directory (MemoryStore). The checkpoint comes
// out as one tar file that `charlm sample --model run.tar` reads. Runs in a worker (./train-worker.ts) and, for the
// tests, in Node; it touches no DOM and calls no Node built-in.
//
// It starts from a new model, or fine-tunes one of the server's models (`charlm train --init-from` on the page): the
// source's manifest and weights as fetched, rebuilt by src/checkpoint/from-bytes.ts, its shape and tokenizer kept
// and its config resolved by src/train/fine-tune.ts, with a fresh optimizer; the checkpoint records initFrom.
//
// Legend: B batch, T sequence length.

import { MANIFEST, type InitFrom } from "../src/checkpoint/checkpoint.js";
import { modelFromBytes } from "../src/checkpoint/from-bytes.js";
import type { Tokenizer } from "../src/data/tokenizer.js";
import { codePointIndex, codePointLength } from "../src/data/utf8.js";
import { parseModelConfig, type ModelConfig } from "../src/models/config.js";
import type { LanguageModel } from "../src/models/contract.js";
import { buildModel } from "../src/models/registry.js";
import {
  buildTrainVocab,
  checkPartialConfig,
  modelConfigFor,
  resolveTrainConfig,
  type TrainConfig,
} from "../src/train/config.js";
import { checkSourceVocab, fineTuneConfig } from "../src/train/fine-tune.js";
import { trainLoop, type TrainResult } from "../src/train/loop.js";
import type { MetricsLine } from "../src/train/metrics.js";
import { MemoryStore } from "../src/train/store.js";
import { DeviceLostError } from "../src/util/errors.js";
import { Rng } from "../src/util/rng.js";
import type { TabSettings } from "./tab-settings.js";

export { TAB_DEFAULTS, TAB_MODELS, type TabSettings } from "./tab-settings.js";

export const VALIDATION_FRACTION = 0.1;

export interface TabRun {
  config: TrainConfig;
  model: LanguageModel;
  vocab: Tokenizer;
  store: MemoryStore;
  result: TrainResult;
  /** Fine-tuning: the characters of the text the source's vocabulary lacks, read as "<unk>". */
  unknown: string[];
}

/**
 * The GPU device was lost under a run that had saved a checkpoint (at an epoch's end): the message says at which
 * step, and `saved` holds that checkpoint (`saved.store`) to download or to generate from on another backend.
 * `saved.model` was on the lost device: load the store's weights into a new one.
 */
export class TabDeviceLost extends DeviceLostError {
  constructor(
    err: DeviceLostError,
    readonly saved: Omit<TabRun, "result"> & { step: number; bestValLoss: number | null },
  ) {
    super(err.detail, err.message);
  }
}

/** A served model to fine-tune: its name on the server, and its charlm.json and model.safetensors as fetched. */
export interface TabSource {
  name: string;
  manifest: Record<string, unknown>;
  weights: Uint8Array;
}

/** A fetched source, read: what fineTuneConfig needs, and the model and tokenizer to train on. */
export interface ReadSource {
  dir: string; // `server:NAME`, as the checkpoint's initFrom records it
  model: ModelConfig;
  train: Partial<TrainConfig> | null;
  weights: { model: LanguageModel; vocab: Tokenizer };
  initFrom: InitFrom;
}

/** Rebuild the source on the current backend (call after the run's backend is chosen). */
function readSource(from: TabSource): ReadSource {
  const dir = `server:${from.name}`;
  const m = from.manifest;
  const weights = modelFromBytes(m, from.weights, dir);
  return {
    dir,
    model: parseModelConfig(weights.model.config, `${dir}: model`),
    train: m.train ? checkPartialConfig(m.train, `${dir}: train`) : null,
    weights,
    initFrom: { path: dir, step: typeof m.step === "number" ? m.step : 0, format: "charlm" },
  };
}

/** T: the page's, or a GPT source's context when that is shorter (its learned positions end there). */
const tabSeqLength = (s: TabSettings, model?: ModelConfig): number =>
  model?.type === "gpt" ? Math.min(s.seqLength, model.blockSize) : s.seqLength;

/**
 * The training config for settings `s` on `name`: the cpu preset's optimizer and schedule, the page's sizes. The
 * loop validates at the end of each epoch, so an epoch is `validateEvery` steps, or the whole text when that is
 * shorter (`batchesPerEpoch`); the steps are rounded up to whole epochs.
 *
 * Fine-tuning `source`: its model and tokenizer, its dropout and the learning rate it was trained at
 * (fineTuneConfig); the steps and minutes as for a new model. A GPT's sequence is at most its context.
 */
export function tabConfig(
  s: TabSettings,
  name: string,
  backend: TrainConfig["backend"],
  batchesPerEpoch = Infinity,
  source?: Pick<ReadSource, "dir" | "model" | "train">,
): TrainConfig {
  const { steps } = s;
  const every = Math.max(1, Math.min(s.validateEvery, steps, batchesPerEpoch));
  const run: Partial<TrainConfig> = {
    data: name,
    validationFraction: VALIDATION_FRACTION,
    seqLength: tabSeqLength(s, source?.model),
    batchSize: s.batchSize,
    epochs: Math.ceil(steps / every),
    stepsPerEpoch: every,
    warmup: Math.min(100, Math.floor(steps / 10)),
    evalChars: 20_000,
    sampleLength: 0,
    logEvery: 5,
    seed: s.seed,
    backend,
  };
  // A fine-tuning run stops early as on the command line (the preset's patience, counted in validations here) and
  // then ends with the best validation's weights: with no cap on its passes, the source would otherwise overfit a
  // small text for the rest of its steps. A new model runs its steps.
  if (source) return fineTuneConfig({ preset: "cpu", overrides: run, source });
  const { type, cell, embedding, units, layers, heads, dropout, lr } = s;
  const model = { type, cell, embedding, units, layers, heads, dropout, lr };
  return resolveTrainConfig({ preset: "cpu", overrides: { ...run, ...model, patience: 0 } });
}

/**
 * Train on `text` (its last tenth held out for validation) with the current backend; `name` names the corpus in
 * the checkpoint, `from` the served model to fine-tune (default: a new model). Stops at `s.steps`, after
 * `s.minutes`, or when `signal` aborts, each time with the best validation's weights, saved as the checkpoint.
 */
export async function trainInTab(
  text: string,
  s: TabSettings,
  o: {
    name?: string;
    from?: TabSource;
    backend: TrainConfig["backend"];
    signal?: AbortSignal;
    onMetrics?: (line: MetricsLine) => void;
    log?: (line: string) => void;
  },
): Promise<TabRun> {
  const name = o.name ?? "pasted text";
  const n = codePointLength(text);
  const cut = codePointIndex(text, n - Math.ceil(n * VALIDATION_FRACTION));
  const splits = { train: text.slice(0, cut), validation: text.slice(cut), name };
  const source = o.from ? readSource(o.from) : null;
  let checked: { unknown: string[]; tokens: number };
  try {
    checked = checkText(text, splits, s, source);
  } catch (err) {
    // The source's tensors live on the backend (wasm, webgpu memory is not garbage-collected).
    for (const p of source?.weights.model.parameters().values() ?? []) p.dispose();
    throw err;
  }
  const { unknown, tokens } = checked;
  const T = tabSeqLength(s, source?.model);
  // Windows of T + 1 tokens, B to a batch (as WindowEpoch cuts them).
  const batchesPerEpoch = Math.floor(Math.floor(tokens / (T + 1)) / s.batchSize);
  const config = tabConfig(s, name, o.backend, batchesPerEpoch, source ?? undefined);
  const vocab = source ? source.weights.vocab : buildTrainVocab(config, text);
  const model = source ? source.weights.model : buildModel(modelConfigFor(config, vocab.size), new Rng(config.seed));
  const store = new MemoryStore(o.onMetrics);
  // The time limit aborts like the Stop button: the loop validates where it stopped, keeps the best validation's
  // weights (endOnStop), saves the checkpoint and returns.
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), s.minutes * 60_000);
  const forward = (): void => ctrl.abort();
  o.signal?.addEventListener("abort", forward);
  if (o.signal?.aborted) ctrl.abort();
  try {
    const result = await trainLoop({
      config,
      model,
      vocab,
      splits,
      out: "this tab",
      store,
      initFrom: source?.initFrom ?? null,
      signal: ctrl.signal,
      endOnStop: true, // Stop and the Minutes box end the run with its best validation's weights
      log: o.log,
      quiet: true,
      progressStream: { write: () => true, isTTY: false } as unknown as NodeJS.WritableStream,
    });
    return { config, model, vocab, store, result, unknown };
  } catch (err) {
    const manifest = store.files.get(MANIFEST);
    if (!(err instanceof DeviceLostError) || !manifest) throw err;
    const m = JSON.parse(new TextDecoder().decode(manifest)) as { step: number; bestValLoss: number | null };
    throw new TabDeviceLost(err, { config, model, vocab, store, unknown, step: m.step, bestValLoss: m.bestValLoss });
  } finally {
    clearTimeout(timer);
    o.signal?.removeEventListener("abort", forward);
  }
}

/**
 * What the text holds for the run: the characters a fine-tuning source lacks (read as "<unk>" where its tokenizer
 * has one; a char vocabulary without one refuses them), and the training split's length in the run's tokens
 * (characters for a new model; the source's words or BPE pieces otherwise), checked against one batch.
 */
function checkText(
  text: string,
  splits: { train: string; validation: string; name: string },
  s: TabSettings,
  source: ReadSource | null,
): { unknown: string[]; tokens: number } {
  const unknown = source
    ? checkSourceVocab(source.weights.vocab, text, splits.name, source.dir, {
        fix: "remove them, start from a new model, or give them new rows with charlm train --init-from (its checkpoint) --extend-vocab",
      })
    : [];
  const tokenizer = source?.weights.vocab;
  const tokens = tokenizer
    ? tokenizer.encode(splits.train, tokenizer.unk >= 0 ? "unk" : "error").length
    : codePointLength(splits.train);
  const T = tabSeqLength(s, source?.model);
  const need = s.batchSize * (T + 1);
  if (tokens < need || codePointLength(splits.validation) < 2) {
    throw new Error(
      tokenizer && tokenizer.kind !== "char"
        ? `the text has ${tokens} ${tokenizer.kind} tokens to train on (after the tenth held out); one batch of ${s.batchSize} x ${T + 1} needs at least ${need}: paste more text`
        : `the text has ${codePointLength(text)} characters; one batch of ${s.batchSize} x ${T + 1} needs at least ${Math.ceil(need / (1 - VALIDATION_FRACTION)) + 2}: paste more text, or lower the batch size or sequence length`,
    );
  }
  return { unknown, tokens };
}
