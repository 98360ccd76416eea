// "Train in this tab": a small model trained on text the user drops or pastes, by the same training loop as
// `charlm train` (src/train/loop.ts) writing into memory instead of a directory (MemoryStore). The checkpoint comes
// out as one tar file that `charlm sample --model run.tar` reads. Runs in a worker (./train-worker.ts) and, for the
// tests, in Node; it touches no DOM and calls no Node built-in.
//
// Legend: B batch, T sequence length.

import { codePointIndex, codePointLength } from "../src/data/utf8.js";
import type { Vocab } from "../src/data/vocab.js";
import type { LanguageModel } from "../src/models/contract.js";
import { buildModel } from "../src/models/registry.js";
import { buildTrainVocab, modelConfigFor, resolveTrainConfig, type TrainConfig } from "../src/train/config.js";
import { trainLoop, type TrainResult } from "../src/train/loop.js";
import type { MetricsLine } from "../src/train/metrics.js";
import { MemoryStore } from "../src/train/store.js";
import { Rng } from "../src/util/rng.js";
import type { TabSettings } from "./tab-settings.js";

export { TAB_DEFAULTS, TAB_MODELS, type TabSettings } from "./tab-settings.js";

export const VALIDATION_FRACTION = 0.1;

export interface TabRun {
  config: TrainConfig;
  model: LanguageModel;
  vocab: Vocab;
  store: MemoryStore;
  result: TrainResult;
}

/**
 * The training config for settings `s` on `name`: the cpu preset's optimizer and schedule, the page's sizes. The
 * loop validates at the end of each epoch, so an epoch is `validateEvery` steps, or the whole text when that is
 * shorter (`batchesPerEpoch`); the steps are rounded up to whole epochs.
 */
export function tabConfig(
  s: TabSettings,
  name: string,
  backend: TrainConfig["backend"],
  batchesPerEpoch = Infinity,
): TrainConfig {
  const every = Math.max(1, Math.min(s.validateEvery, s.steps, batchesPerEpoch));
  return resolveTrainConfig({
    preset: "cpu",
    overrides: {
      data: name,
      validationFraction: VALIDATION_FRACTION,
      cell: s.cell,
      embedding: s.embedding,
      units: s.units,
      layers: s.layers,
      dropout: s.dropout,
      seqLength: s.seqLength,
      batchSize: s.batchSize,
      epochs: Math.ceil(s.steps / every),
      stepsPerEpoch: every,
      lr: s.lr,
      warmup: Math.min(100, Math.floor(s.steps / 10)),
      patience: 0,
      evalChars: 20_000,
      sampleLength: 0,
      logEvery: 5,
      seed: s.seed,
      backend,
    },
  });
}

/**
 * Train on `text` (its last tenth held out for validation) with the current backend; `name` names the corpus in
 * the checkpoint. Stops at `s.steps`, after `s.minutes`, or when `signal` aborts, saving the checkpoint each time.
 */
export async function trainInTab(
  text: string,
  s: TabSettings,
  o: {
    name?: string;
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
  const need = s.batchSize * (s.seqLength + 1);
  if (codePointLength(splits.train) < need || codePointLength(splits.validation) < 2) {
    throw new Error(
      `the text has ${n} characters; one batch of ${s.batchSize} x ${s.seqLength + 1} needs at least ${Math.ceil(need / (1 - VALIDATION_FRACTION)) + 2}: paste more text, or lower the batch size or sequence length`,
    );
  }
  // Windows of T + 1 characters, B to a batch (as WindowEpoch cuts them).
  const batchesPerEpoch = Math.floor(Math.floor(codePointLength(splits.train) / (s.seqLength + 1)) / s.batchSize);
  const config = tabConfig(s, name, o.backend, batchesPerEpoch);
  const vocab = buildTrainVocab(config, text);
  const model = buildModel(modelConfigFor(config, vocab.size), new Rng(config.seed));
  const store = new MemoryStore(o.onMetrics);
  // The time limit aborts like the Stop button: the loop saves a checkpoint and returns.
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
      signal: ctrl.signal,
      log: o.log,
      quiet: true,
      progressStream: { write: () => true, isTTY: false } as unknown as NodeJS.WritableStream,
    });
    return { config, model, vocab, store, result };
  } finally {
    clearTimeout(timer);
    o.signal?.removeEventListener("abort", forward);
  }
}
