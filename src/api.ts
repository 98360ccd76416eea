// The library in three calls: train() a model (from a corpus name, files or text in memory; on disk or not),
// load() a checkpoint, and generate from either. The CLI runs the same paths: prepareRun and trainLoop.

import { splitText, type Splits } from "./data/corpus.js";
import { chooseBackend } from "./engine/backends/choose.js";
import { setBackend, setWasmThreads, type BackendName } from "./engine/backends/index.js";
import { loadCheckpoint, saveCheckpoint, type EpochRecord, type Manifest } from "./checkpoint/checkpoint.js";
import { CharModel } from "./sample/model.js";
import { DEFAULT_PRESET, type TrainConfig } from "./train/config.js";
import { trainLoop, type TrainCallbacks, type TrainResult } from "./train/loop.js";
import { prepareRun } from "./train/session.js";
import { CharlmError } from "./util/errors.js";

/** Text given in memory: one string (its tail is held out by validationFraction) or both splits. */
export type InMemoryData = string | { train: string; validation: string };

/**
 * Options of train(): any training config field (unset ones take the preset's value, as `charlm train` does),
 * plus where the data and the run live, and the callbacks.
 */
export interface TrainOptions extends Omit<Partial<TrainConfig>, "data">, TrainCallbacks {
  /** "tinyshakespeare", a file or directory path, several paths, or both splits in memory. */
  data?: string | string[] | { train: string; validation: string };
  /** Train on this text instead of `data` (its tail is held out by validationFraction; nothing is read from disk). */
  text?: string;
  /** Starting point for the config: cpu (default), tutorial, gpu or tiny. */
  preset?: string;
  /** Checkpoint directory; unset: the run stays in memory and writes nothing. */
  out?: string;
  /** Continue the run saved in this directory. */
  resume?: string;
  /** Fine-tune the checkpoint or PyTorch export in this directory. */
  initFrom?: string;
  /** Overwrite a checkpoint already in `out`. */
  force?: boolean;
  /** Threads of the wasm kernels. */
  threads?: number;
  /** Lines `charlm train` prints (the config, the backend, epoch summaries, samples); default: none. */
  log?: (line: string) => void;
  /** Show the progress bar on stderr (default false). */
  progress?: boolean;
  /** Aborting saves a checkpoint (with `out`) and ends the run with status "interrupted". */
  signal?: AbortSignal;
  /**
   * A stop before the last epoch (the signal, a callback, the time limit) ends the run with the best validation's
   * weights, status "stopped", instead of saving where it stands to resume from (default false).
   */
  endOnStop?: boolean;
}

/** A trained model: generate from it, look at its history, save it. */
export class TrainedModel extends CharModel {
  constructor(
    run: { model: CharModel["model"]; vocab: CharModel["vocab"] },
    readonly config: TrainConfig,
    readonly result: TrainResult,
    private readonly dataName: string,
  ) {
    super(run.model, run.vocab);
  }
  get status(): TrainResult["status"] {
    return this.result.status;
  }
  get history(): EpochRecord[] {
    return this.result.history;
  }
  get bestValLoss(): number | null {
    return this.result.bestValLoss;
  }
  get backend(): TrainConfig["backend"] {
    return this.config.backend;
  }

  /** Write the model as a checkpoint that `charlm sample`, `charlm serve` and load() read (not resumable). */
  async save(dir: string): Promise<Manifest> {
    const { step, epoch, history, bestValLoss, elapsedSeconds } = this.result;
    return saveCheckpoint(dir, {
      model: this.model,
      vocab: this.vocab,
      step,
      epoch,
      history,
      bestValLoss,
      trainConfig: this.config,
      dataName: this.dataName,
      elapsedSeconds,
      status: this.result.status === "interrupted" ? "running" : this.result.status,
    });
  }
}

/** Train a model; resolves when training ends (all epochs, early stopping, a callback's stop, or the signal). */
export async function train(options: TrainOptions = {}): Promise<TrainedModel> {
  const { text, preset = DEFAULT_PRESET, out, resume, initFrom, force, threads, log, progress, signal } = options;
  const { endOnStop } = options;
  const { onStep, onEpoch, onCheckpoint } = options;
  const { data, ...overrides } = configKeys(options);
  if (text !== undefined && data !== undefined) {
    throw new CharlmError("train(): give either data (a corpus name, paths or splits) or text, not both");
  }
  let corpus: string | string[] | undefined;
  let memory: InMemoryData | undefined = text;
  if (typeof data === "string" || Array.isArray(data)) corpus = data;
  else if (data) memory = data;
  const run = await prepareRun({
    preset,
    overrides: {
      ...overrides,
      ...(memory !== undefined ? { data: "(text in memory)" } : corpus ? { data: corpus } : {}),
    },
    out: out ?? null,
    resume,
    initFrom,
    force,
    threads,
    splits: memory !== undefined ? inMemorySplits(memory, overrides.validationFraction) : null,
    quiet: !progress,
  });
  try {
    for (const line of run.describe) log?.(line);
    const result = await trainLoop({ ...run, log, quiet: !progress, signal, endOnStop, onStep, onEpoch, onCheckpoint });
    return new TrainedModel(run, run.config, result, run.splits.name);
  } finally {
    run.release();
  }
}

export interface LoadOptions {
  /** Kernel backend (default auto: webgpu on a GPU, else wasm, else js). */
  backend?: "auto" | BackendName;
  threads?: number;
}

/** A checkpoint (a directory `charlm train` or save() wrote) loaded for generation. */
export async function load(dir: string, options: LoadOptions = {}): Promise<CharModel & { manifest: Manifest }> {
  await setWasmThreads(options.threads ?? null);
  const chosen = await chooseBackend(options.backend ?? "auto", false);
  setBackend(chosen.backend);
  const { model, vocab, manifest } = await loadCheckpoint(dir);
  return Object.assign(new CharModel(model, vocab), { manifest });
}

const NOT_CONFIG = new Set([
  "text",
  "preset",
  "out",
  "resume",
  "initFrom",
  "force",
  "threads",
  "log",
  "progress",
  "signal",
  "endOnStop",
  "onStep",
  "onEpoch",
  "onCheckpoint",
]);

/** The training config keys among the options (checked key by key when the config is resolved). */
function configKeys(options: TrainOptions): Omit<Partial<TrainConfig>, "data"> & Pick<TrainOptions, "data"> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(options)) if (!NOT_CONFIG.has(k) && v !== undefined) out[k] = v;
  return out;
}

function inMemorySplits(text: InMemoryData, fraction = 0.1): Splits {
  if (typeof text === "string") {
    if (text.length === 0) throw new CharlmError("train(): text is empty; give the corpus as a non-empty string");
    return { ...splitText(text, fraction), name: "text" };
  }
  const { train, validation } = text;
  if (typeof train !== "string" || typeof validation !== "string") {
    throw new CharlmError("train(): text must be a string or { train: string, validation: string }");
  }
  return { train, validation, text: train + validation, name: "text" };
}
