// The training loop: one loop for every model behind the LanguageModel contract, read in `runLoop`:
//
//   restore (a fresh run, or a checkpoint's counters, optimizer, rngs and batch order)
//   for each epoch:  for each batch (capped by stepsPerEpoch):
//       lr = schedule(step); loss = model.forward(x, targets); loss.backward(); clip; optimizer.step(lr)  -> onStep
//     end of epoch: validation loss -> history, metrics.jsonl, loss curve, early stopping -> onEpoch,
//                   checkpoint -> onCheckpoint
//
// A callback that returns false (or calls info.stop()) ends the run after the current step, with a checkpoint to
// resume from when the run has a directory; without one (`out` unset) nothing is written to disk. With `endOnStop`
// (the page's runs) a stop instead ends the run as its last epoch would: validated, with the best weights.
//
// Determinism: three seeded generators and nothing else. The model's initial weights come from Rng(seed) (the
// caller builds the model), dropout draws from Rng(seed + 1) ("model" rng) and batch shuffling from Rng(seed + 2)
// ("data" rng). Both states are in every checkpoint. A resumed run rebuilds the epoch's batch order by replaying
// the shuffles from the seed (the data rng is used for nothing else), checks that it lands on the saved state, and
// skips the batches already done, so it continues with exactly the batches, dropout masks and learning rates the
// uninterrupted run would have had.
//
// Weight averaging (--ema, average.ts): after each step the weights are folded into a moving average, and the
// average is what validation, early stopping (its best weights), samples and the checkpoint's model.safetensors
// see; the weights the optimizer steps go beside it (training.safetensors) for resuming, and a run that ends keeps
// the best average (or the last one without --restore-best).
//
// Legend: B batch, T time (sequence length).

import { createBatcher, type Batch, type Batcher, type StreamState } from "../data/batching.js";
import type { Tokenizer } from "../data/tokenizer.js";
import type { LanguageModel, State } from "../models/contract.js";
import { generateText } from "../sample/generate.js";
import { CharlmError, DeviceLostError } from "../util/errors.js";
import { Progress, formatDuration, type TextStream } from "../util/progress.js";
import { Rng, type RngState } from "../util/rng.js";
import { yieldToEvents } from "../util/yield.js";
import { disposeReplaced, scope } from "../engine/scope.js";
import type { Tensor } from "../engine/tensor.js";
import {
  writeTrainingWeights,
  type EpochRecord,
  type InitFrom,
  type Manifest,
  type RunStatus,
} from "../checkpoint/checkpoint.js";
import type { TrainConfig } from "./config.js";
import { WeightAverage } from "./average.js";
import { EarlyStopping } from "./early-stopping.js";
import { evaluate } from "./evaluate.js";
import { clipGradNorm, createOptimizer, type Optimizer, type OptimizerState } from "./optimizers.js";
import { learningRate } from "./schedules.js";
import { directoryStore, type RunStore } from "./store.js";

/** Everything a resumed run needs besides the model (whose weights the caller has already loaded). */
export interface ResumeState {
  manifest: Manifest;
  optimizer: OptimizerState | null;
  bestWeights: Map<string, Float32Array> | null;
  carried: State | null;
  /** --ema: the weights the optimizer was stepping (the model's loaded weights are their average); null otherwise. */
  trainingWeights?: Map<string, Float32Array> | null;
}

/** What the loop tells `onStep` after each optimizer step (read back from the backend). */
export interface StepInfo {
  step: number; // optimizer steps taken in the whole run
  epoch: number; // the epoch this step belongs to (1-based)
  loss: number; // training loss of the step, nats per character
  lr: number;
  gradNorm: number; // global gradient norm before clipping
  /** End training cleanly after this step (as returning false does). */
  stop: () => void;
}

/** What the loop tells `onEpoch` after each epoch's validation. */
export interface EpochInfo extends EpochRecord {
  valBitsPerChar: number;
  improved: boolean; // the best validation loss so far
  stop: () => void;
}

/** What the loop tells `onCheckpoint` after each checkpoint it writes. */
export interface CheckpointInfo {
  dir: string;
  step: number;
  epoch: number;
  status: RunStatus;
  manifest: Manifest;
  stop: () => void;
}

/** A callback may return false (or call info.stop()) to end training cleanly. */
export type TrainCallback<I> = (info: I) => void | boolean | Promise<void | boolean>;

export interface TrainCallbacks {
  onStep?: TrainCallback<StepInfo>;
  onEpoch?: TrainCallback<EpochInfo>;
  onCheckpoint?: TrainCallback<CheckpointInfo>;
}

export interface LoopOptions extends TrainCallbacks {
  config: TrainConfig;
  model: LanguageModel;
  vocab: Tokenizer;
  splits: { train: string; validation: string; name: string };
  /** Checkpoint directory (model.safetensors, charlm.json, metrics.jsonl, loss.svg); null or absent: in memory only. */
  out?: string | null;
  /** Where checkpoints, metrics and the loss curve go instead of the directory `out` (the web page: memory). */
  store?: RunStore;
  preset?: string | null;
  resume?: ResumeState | null;
  /** A fine-tuning run: the model it started from, recorded in every checkpoint (a resumed run keeps its own). */
  initFrom?: InitFrom | null;
  /** Human-readable lines (config, epoch summaries, samples); default: none. */
  log?: (line: string) => void;
  /** Progress bar stream; default process.stderr. */
  progressStream?: TextStream;
  quiet?: boolean;
  /** Stop (after saving a checkpoint) once this many optimizer steps have been taken in total. */
  stopAfterSteps?: number;
  /** Abort: the loop saves a checkpoint and returns with status "interrupted". */
  signal?: AbortSignal;
  /**
   * A stop before the last epoch (the signal, the time limit, stopAfterSteps, a callback) ends the run as its last
   * epoch would: the weights where it stopped are validated, and with restoreBest the run keeps the best
   * validation's. Status "stopped", in the result and the checkpoint (which then holds no training weights to
   * resume an average from). For runs nobody resumes as they stood, as the page's; without it a stop saves where
   * the run stands, to resume from.
   */
  endOnStop?: boolean;
  /** Draw loss.svg after each epoch (default true). */
  plot?: boolean;
}

export interface TrainResult {
  /** "interrupted": stopped before the last epoch (a signal, stopAfterSteps or a callback); the run can resume. */
  status: RunStatus | "interrupted";
  step: number;
  epoch: number;
  history: EpochRecord[];
  bestValLoss: number | null;
  /** Loss of every step taken in this call, in order. */
  stepLosses: { step: number; loss: number }[];
  /** Checkpoint manifest last written (null in memory). */
  manifest: Manifest | null;
  elapsedSeconds: number;
}

/** The run's optimizer over `params`, with the config's hyperparameters. */
export function optimizerFor(cfg: TrainConfig, params: Map<string, Tensor>): Optimizer {
  return createOptimizer(cfg.optimizer, params, {
    beta1: cfg.beta1,
    beta2: cfg.beta2,
    momentum: cfg.momentum,
    weightDecay: cfg.weightDecay,
  });
}

/**
 * One optimizer step in one scope: zero the gradients, forward (training, from `state`, dropout from `rng`), backward,
 * clip at cfg.clip, step at `lr`, then `after` (the weight average). Nothing is read back; returns the loss, the
 * gradient norm tensor (clipGradNorm's) and, with stream batching, the state to carry (else null).
 */
export function trainingStep(
  model: LanguageModel,
  params: Map<string, Tensor>,
  optimizer: Optimizer,
  batch: Batch,
  at: { state: State | null; lr: number; cfg: TrainConfig; rng: Rng },
  after?: () => void,
): { loss: Tensor; norm: Tensor; state: State | null } {
  const { state, lr, cfg, rng } = at;
  return scope(() => {
    for (const p of params.values()) p.zeroGrad();
    const opts = { targets: batch.targets, training: true, state: state ?? undefined, rng };
    const res = model.forward(batch.inputs, batch.B, batch.T, opts);
    res.loss!.backward();
    const norm = clipGradNorm(params.values(), cfg.clip > 0 ? cfg.clip : Infinity);
    optimizer.step(lr);
    after?.();
    return { loss: res.loss!, norm, state: cfg.batching === "stream" ? (res.state ?? null) : null };
  });
}

/** Rng streams derived from the seed (see the header). */
export const modelRngFor = (seed: number): Rng => new Rng((seed + 1) >>> 0);
export const dataRngFor = (seed: number): Rng => new Rng((seed + 2) >>> 0);

/** Train `o.model`; with `o.out`, holding the lock of the checkpoint directory (see lock.ts) for the whole run. */
export async function trainLoop(o: LoopOptions): Promise<TrainResult> {
  const store = o.store ?? (o.out ? directoryStore(o.out) : null);
  if (!store) return runLoop(o, null);
  const lock = await store.open();
  try {
    return await runLoop(o, store);
  } finally {
    lock.release();
  }
}

/** The whole loop: restore, then epochs of steps, each ending in validation and a checkpoint. */
async function runLoop(o: LoopOptions, store: RunStore | null): Promise<TrainResult> {
  const run = new Run(o, store);
  await run.restore();
  try {
    while (run.epoch < o.config.epochs) {
      await run.trainEpoch();
      if (run.status !== "running") break; // stopped mid-epoch (interrupted, time limit): saved where it stood
      await run.endEpoch();
      if (run.status !== "running") break;
    }
    // A run that averages its weights hands back the average, whatever stopped it (the checkpoint holds it too).
    if (!run.final) run.average?.commit();
  } catch (err) {
    // Nothing is saved: the weights went with the device, and the last checkpoint stays as it was.
    if (err instanceof DeviceLostError) throw run.lostDevice(err);
    throw err;
  } finally {
    run.average?.dispose();
  }
  return run.result();
}

// ---------------------------------------------------------------------------------------------------------------
// One run's state and its three phases

type Unread = { step: number; lr: number; loss: Tensor; norm: Tensor };

class Run {
  readonly cfg: TrainConfig;
  readonly params: Map<string, Tensor>;
  readonly optimizer: Optimizer;
  readonly modelRng: Rng;
  readonly dataRng: Rng;
  readonly stopper: EarlyStopping;
  readonly average: WeightAverage | null;
  readonly batcher: Batcher;
  readonly valIds: Int32Array;
  readonly valText: ReturnType<Tokenizer["measure"]>;
  readonly perEpoch: number;
  readonly schedule: TrainConfig & { totalSteps: number };
  readonly log: (line: string) => void;

  step = 0;
  epoch = 0; // completed epochs
  stepInEpoch = 0;
  history: EpochRecord[] = [];
  carried: State | null = null;
  elapsedBefore = 0;
  epochLossSum = 0; // Σ step losses of the current epoch so far (saved, so a resumed epoch has the same mean)
  epochLossCount = 0;
  lr = 0;
  status: RunStatus | "interrupted" = "running";
  /** The run has ended and the parameters hold the weights it ends with (the best, or the average). */
  final = false;
  stopAsked = false;
  lastManifest: Manifest | null = null;
  lastSavedStep: number | null = null;
  readonly stepLosses: { step: number; loss: number }[] = [];
  readonly session0 = performance.now();
  private readonly unread: Unread[] = []; // steps taken but not yet read back, oldest first
  private readonly syncReads: boolean;
  private progress: Progress | null = null; // the current epoch's bar
  private lastLogged = performance.now();
  private lastLoggedStep = 0;
  readonly stop = (): void => void (this.stopAsked = true);

  constructor(
    readonly o: LoopOptions,
    readonly store: RunStore | null,
  ) {
    const cfg = (this.cfg = o.config);
    const { vocab } = o;
    this.log = o.log ?? (() => {});
    this.params = o.model.parameters();
    const trainIds = vocab.encode(o.splits.train, vocab.unk >= 0 ? "unk" : "error");
    this.valText = vocab.measure(o.splits.validation); // ids, character spans, "<unk>" charges (evaluate.ts)
    this.valIds = this.valText.ids;
    if (this.valIds.length < 2) {
      throw new CharlmError(
        `the validation split of ${o.splits.name} is empty; use a longer corpus or a larger --validation-fraction`,
      );
    }
    this.optimizer = optimizerFor(cfg, this.params);
    this.modelRng = modelRngFor(cfg.seed);
    this.dataRng = dataRngFor(cfg.seed);
    this.stopper = new EarlyStopping(cfg.patience, cfg.minDelta);
    this.average = cfg.ema > 0 ? new WeightAverage(this.params, cfg.ema) : null;
    this.batcher = createBatcher(cfg.batching, trainIds, cfg.batchSize, cfg.seqLength, this.dataRng);
    this.perEpoch = Math.min(
      this.batcher.batchesPerEpoch,
      cfg.stepsPerEpoch > 0 ? cfg.stepsPerEpoch : Number.POSITIVE_INFINITY,
    );
    this.schedule = { ...cfg, totalSteps: cfg.epochs * this.perEpoch };
    // A backend whose values JavaScript sees (js, wasm) is read every step; a GPU backend only when logging,
    // unless onStep wants every loss.
    this.syncReads = !!o.onStep || [...this.params.values()].every((p) => p.backend.sync);
  }

  private get stopping(): boolean {
    return this.stopAsked || !!this.o.signal?.aborted;
  }

  /** Run `fn` on the weights the run is judged by: the average with --ema, else the training weights. */
  private judged<R>(fn: () => Promise<R>): Promise<R> {
    return this.average ? this.average.with(fn) : fn();
  }

  private elapsed(): number {
    return this.elapsedBefore + (performance.now() - this.session0) / 1000;
  }

  /** A fresh run starts a new metrics log; a resumed one takes back its counters, optimizer, rngs and batch order. */
  async restore(): Promise<void> {
    const r = this.o.resume;
    if (!r) {
      await this.store?.truncateMetricsAfter(-1);
      this.batcher.restore(0, null);
      this.lr = learningRate(0, this.schedule);
      return;
    }
    const m = r.manifest;
    this.step = this.lastLoggedStep = m.step;
    this.epoch = m.epoch;
    this.stepInEpoch = m.stepInEpoch;
    this.history = m.history.slice();
    this.elapsedBefore = m.elapsedSeconds;
    this.lastManifest = m;
    this.lastSavedStep = m.step;
    if (r.optimizer) this.optimizer.setState(r.optimizer);
    if (this.average) {
      // The loaded model holds the average; the weights the optimizer was stepping come back from beside it (a run
      // that had ended has none: it continues from its final weights, and the average from them).
      const average = new Map<string, Float32Array>();
      for (const [k, p] of this.params) average.set(k, await p.read());
      this.average.setState({ t: m.average?.t ?? 0, weights: average });
      if (r.trainingWeights) writeTrainingWeights(this.params, r.trainingWeights, `${this.o.out}`, "start a new run");
    }
    if (m.earlyStopping) {
      this.stopper.setState({ ...m.earlyStopping, best: m.earlyStopping.best ?? Infinity }, r.bestWeights);
    }
    if (m.rng) this.modelRng.setState(m.rng.model);
    this.carried = r.carried;
    this.epochLossSum = m.partialEpochLoss?.sum ?? 0;
    this.epochLossCount = m.partialEpochLoss?.count ?? 0;
    if (this.epoch >= this.cfg.epochs) {
      throw new CharlmError(
        `${this.o.out}: this run has already trained ${this.epoch} epoch(s) of ${this.cfg.epochs}; raise --epochs to train further`,
      );
    }
    if (this.cfg.timeLimit > 0 && this.elapsedBefore >= this.cfg.timeLimit) {
      throw new CharlmError(
        `${this.o.out}: this run has already trained ${this.elapsedBefore.toFixed(1)} s of its --time-limit ${this.cfg.timeLimit}; raise --time-limit to train further`,
      );
    }
    await this.store?.truncateMetricsAfter(this.step);
    // Replay the batch order of the completed epochs, then of the current one up to where it stopped, and check
    // that it lands where the checkpoint's data rng says (it serves nothing else).
    this.batcher.restore(this.epoch, (m.batcher as StreamState | null) ?? null);
    this.batcher.startEpoch(this.stepInEpoch);
    if (m.rng && this.dataRng.getState().join() !== m.rng.data.join()) {
      throw new CharlmError(
        `${this.o.out}: replaying the batch order did not reach the saved state; the training data or --seed changed since the checkpoint, resume with the same ones`,
      );
    }
    this.lr = learningRate(this.step, this.schedule);
  }

  /** Steps until the epoch's batches run out, or the run is asked to stop (then it saves where it stands). */
  async trainEpoch(): Promise<void> {
    const { cfg, perEpoch, batcher } = this;
    if (this.stepInEpoch === 0) batcher.startEpoch(0); // a resumed epoch was started by restore()
    const epochStart = performance.now();
    this.progress = new Progress({
      total: perEpoch - this.stepInEpoch, // a resumed epoch counts what is left
      label: `epoch ${this.epoch + 1}/${cfg.epochs}${this.stepInEpoch > 0 ? ` (from batch ${this.stepInEpoch + 1})` : ""}`,
      unit: "char",
      unitsPerTick: cfg.batchSize * cfg.seqLength,
      quiet: this.o.quiet,
      stream: this.o.progressStream,
    });
    this.epochStart = epochStart;
    while (this.stepInEpoch < perEpoch) {
      if (this.stopping) return this.interrupt();
      const batch = batcher.next();
      if (batch.reset) this.carried = null;
      await this.trainStep(batch);
      // On js and wasm a step awaits only settled promises: without this break a signal handler (Ctrl-C, SIGTERM: save
      // and stop), an abort or the page's Stop message would wait for the next checkpoint.
      await yieldToEvents();
      if (cfg.sampleEvery > 0 && this.step % cfg.sampleEvery === 0) await this.printSample();
      const stopNow = this.o.stopAfterSteps !== undefined && this.step >= this.o.stopAfterSteps;
      if (this.stepInEpoch < perEpoch) {
        if (stopNow) return this.interrupt();
        if (this.timeUp()) return this.stopForTime();
        if (cfg.saveEvery > 0 && this.step % cfg.saveEvery === 0) await this.save("running");
      }
    }
    await this.readLosses();
    this.progress.finish();
  }
  private epochStart = 0;

  /** One step in one scope: forward, backward, clipping and the update run on the backend, nothing is read back. */
  private async trainStep(batch: Batch): Promise<void> {
    const { cfg, params, optimizer, modelRng } = this;
    const stream = cfg.batching === "stream";
    this.lr = learningRate(this.step, this.schedule);
    const lr = this.lr;
    // trainingStep's scope frees the step's activations and keeps the loss, the gradient norm and the carried state.
    const state = this.carried;
    const out = trainingStep(this.o.model, params, optimizer, batch, { state, lr, cfg, rng: modelRng }, () =>
      this.average?.update(),
    );
    if (stream) {
      disposeReplaced(state, out.state);
      this.carried = out.state;
    }
    this.step++;
    this.stepInEpoch++;
    this.unread.push({ step: this.step, lr, loss: out.loss, norm: out.norm });
    if (this.syncReads || this.step % cfg.logEvery === 0) await this.readLosses();
  }

  /** Stop mid-epoch: a checkpoint of where the run stands, to resume from. */
  private async interrupt(): Promise<void> {
    this.progress?.finish();
    if (this.o.endOnStop) {
      await this.endMidEpoch();
      return this.save("stopped");
    }
    this.status = "interrupted";
    await this.save("running");
  }

  /** The validation loss per token, and per character of the text (see evaluate.ts). */
  private async validate(): Promise<Awaited<ReturnType<typeof evaluate>>> {
    const { cfg, valText, o } = this;
    const val = await this.judged(() =>
      evaluate(o.model, this.valIds, {
        B: cfg.batchSize,
        T: cfg.seqLength,
        carry: cfg.batching === "stream",
        maxChars: cfg.evalChars,
        text: { ends: valText.ends, extra: valText.extra, unk: o.vocab.unk },
      }),
    );
    if (!Number.isFinite(val.nats)) this.diverged(`the validation loss became ${val.nats}`);
    return val;
  }

  /** metrics.jsonl's figures per character of the text (and the word tokenizer's <unk> share) beside valLoss. */
  private perChar(val: Awaited<ReturnType<typeof evaluate>>) {
    return {
      valNatsPerChar: val.natsPerChar,
      valBitsPerChar: val.bitsPerChar,
      ...(this.o.vocab.kind === "word" ? { valUnknownShare: val.unknownShare } : {}),
    };
  }

  /** A char model's tokens are characters; other tokenizers show the loss per token and per character of the text. */
  private valLine(val: Awaited<ReturnType<typeof evaluate>>): string {
    const kind = this.o.vocab.kind;
    const perChar = `${val.natsPerChar.toFixed(4)} nats/char (${val.bitsPerChar.toFixed(3)} bits/char)`;
    if (kind === "char") return perChar;
    const unk = kind === "word" ? `, <unk> ${(100 * val.unknownShare).toFixed(1)}% of tokens` : "";
    return `${val.nats.toFixed(4)} nats/token, ${perChar}${unk}`;
  }

  /** Whether the run has used its --time-limit (training time in all, resumes included). */
  private timeUp(): boolean {
    return this.cfg.timeLimit > 0 && this.elapsed() >= this.cfg.timeLimit;
  }

  /**
   * The time limit ends a run cleanly mid-epoch too: the validation loss where it stopped, then a checkpoint that a
   * resume with a larger --time-limit continues from (the epoch's remaining batches first).
   */
  private async stopForTime(): Promise<void> {
    this.progress?.finish();
    const val = await this.validateHere(`time limit of ${this.cfg.timeLimit} s reached`);
    if (this.o.endOnStop) {
      await this.endMidEpoch(val);
      return this.save("stopped");
    }
    this.status = "time-limit";
    await this.save("time-limit");
  }

  /** End of epoch: validate, record, maybe stop early, checkpoint. */
  async endEpoch(): Promise<void> {
    const { cfg, stopper, params } = this;
    const val = await this.validate();
    const trainLoss = this.epochLossCount ? this.epochLossSum / this.epochLossCount : NaN;
    this.epoch++;
    this.stepInEpoch = 0;
    this.epochLossSum = 0;
    this.epochLossCount = 0;
    const { epoch, step, lr } = this;
    const seconds = (performance.now() - this.epochStart) / 1000;
    const record = { epoch, step, trainLoss, valLoss: val.nats, lr, seconds };
    this.history.push(record);
    await this.store?.appendMetrics({
      type: "epoch",
      ...record,
      ...this.perChar(val),
      time: this.elapsed(),
    });
    const { improved, stop } = await this.judged(() => stopper.update(val.nats, epoch, params));
    this.log(
      `epoch ${epoch}/${cfg.epochs}  step ${step}  train ${trainLoss.toFixed(4)}  val ${this.valLine(val)}` +
        `${improved ? "  *best*" : ""}  ${formatDuration(seconds)}`,
    );
    if (cfg.sampleEvery === 0) await this.printSample();
    await this.call(this.o.onEpoch, { ...record, valBitsPerChar: val.bitsPerChar, improved, stop: this.stop });
    const done = epoch >= cfg.epochs || stop;
    if (done) {
      this.keepBest(epoch);
      this.status = stop && epoch < cfg.epochs ? "early-stopped" : "finished";
      if (this.status === "early-stopped") {
        this.log(`early stopping: no improvement larger than ${cfg.minDelta} for ${cfg.patience} epoch(s)`);
        await this.store?.appendMetrics({ type: "event", step, event: "early-stopped", time: this.elapsed() });
      }
    }
    const timeUp = !done && this.timeUp();
    if (timeUp) {
      this.status = "time-limit";
      this.log(`time limit of ${cfg.timeLimit} s reached at step ${step}`);
    }
    const stopAfter = this.o.stopAfterSteps !== undefined && step >= this.o.stopAfterSteps;
    const stopped = !done && !timeUp && (stopAfter || this.stopping);
    if (this.o.endOnStop && (timeUp || stopped)) {
      this.keepBest(epoch);
      this.status = "stopped";
    }
    await this.save(this.status as RunStatus); // running, or how the run ended (it is marked interrupted below)
    if (this.store && this.o.plot !== false) {
      await this.store.plot(this.history, `charlm ${this.o.splits.name}`, this.o.vocab.kind);
    }
    if (stopped && this.status === "running") this.status = "interrupted";
  }

  /**
   * The run ends after judging epoch `epoch`: with restoreBest the best validation's weights go back in (with --ema
   * the parameters hold the training weights, and the best weights are of the average), else the average stays.
   */
  private keepBest(epoch: number): void {
    const { cfg, stopper, params } = this;
    const restore = cfg.restoreBest && (this.average !== null || stopper.bestEpoch !== epoch);
    if (restore && stopper.restore(params)) {
      if (stopper.bestEpoch !== epoch) {
        this.log(
          `restored the ${this.average ? "averaged " : ""}weights of epoch ${stopper.bestEpoch} (best validation loss ${stopper.best.toFixed(4)})`,
        );
      }
    } else this.average?.commit();
    this.final = true;
  }

  /** Mid-epoch: the validation loss where the run stands, as an "eval" line of metrics.jsonl and a log line. */
  private async validateHere(what: string): Promise<Awaited<ReturnType<typeof evaluate>>> {
    await this.readLosses();
    const val = await this.validate();
    await this.store?.appendMetrics({
      type: "eval",
      step: this.step,
      epoch: this.epoch + 1,
      valLoss: val.nats,
      ...this.perChar(val),
      time: this.elapsed(),
    });
    this.log(`${what} at step ${this.step}: val ${this.valLine(val)}`);
    return val;
  }

  /**
   * endOnStop, stopped mid-epoch: the weights where the run stands are validated (a partial epoch, counted as the
   * next) and judged against the best so far, then the run ends with the better.
   */
  private async endMidEpoch(val?: Awaited<ReturnType<typeof evaluate>>): Promise<void> {
    const { stopper, params } = this;
    this.status = "stopped";
    // Stopped before the first batch of an epoch: the epoch that ended was judged at this step.
    if (!val && this.history.at(-1)?.step === this.step) return this.keepBest(this.epoch);
    val ??= await this.validateHere("stopped");
    const nats = val.nats;
    await this.judged(() => stopper.update(nats, this.epoch + 1, params));
    this.keepBest(this.epoch + 1);
  }

  /** Read back the losses of the steps taken so far; log them, tell onStep, and fail on a non-finite one. */
  private async readLosses(): Promise<void> {
    const { cfg } = this;
    for (const u of this.unread.splice(0)) {
      const loss = await u.loss.value();
      const [gradNorm] = await u.norm.read();
      u.loss.dispose();
      u.norm.dispose();
      if (!Number.isFinite(loss)) this.diverged(`the loss became ${loss}`, u.step);
      if (!Number.isFinite(gradNorm)) this.diverged(`the gradient norm became ${gradNorm}`, u.step);
      this.epochLossSum += loss;
      this.epochLossCount++;
      this.stepLosses.push({ step: u.step, loss });
      this.progress?.tick(1, `loss ${loss.toFixed(3)}  lr ${u.lr.toExponential(1)}`);
      if (u.step % cfg.logEvery === 0) {
        const now = performance.now();
        const chars = (u.step - this.lastLoggedStep) * cfg.batchSize * cfg.seqLength;
        const charsPerSec = chars / Math.max(1e-9, (now - this.lastLogged) / 1000);
        this.lastLogged = now;
        this.lastLoggedStep = u.step;
        const epoch = this.epoch + 1;
        const line = { type: "step" as const, step: u.step, epoch, loss, lr: u.lr, gradNorm, charsPerSec };
        await this.store?.appendMetrics({ ...line, time: this.elapsed() });
      }
      await this.call(this.o.onStep, {
        step: u.step,
        epoch: this.epoch + 1,
        loss,
        lr: u.lr,
        gradNorm,
        stop: this.stop,
      });
    }
  }

  /**
   * Checkpoint into `out` (in memory: only the check that the weights are finite). With --ema the model's weights
   * are the average, and until the run has ended the training weights go beside it.
   */
  private async save(status: RunStatus): Promise<void> {
    await this.readLosses();
    const training = new Map<string, Float32Array>();
    for (const [name, p] of this.params) {
      const w = await p.read();
      for (let i = 0; i < w.length; i++) if (!Number.isFinite(w[i])) this.diverged(`parameter ${name} is not finite`);
      training.set(name, w);
    }
    const { o, stopper, average } = this;
    if (!this.store) return;
    const store = this.store;
    const averaged = average !== null && !this.final;
    const write = () =>
      store.save({
        model: o.model,
        vocab: o.vocab,
        optimizer: this.optimizer,
        rng: { model: this.modelRng, data: this.dataRng },
        step: this.step,
        epoch: this.epoch,
        stepInEpoch: this.stepInEpoch,
        batcher: this.batcher.getState(),
        carriedState: this.cfg.batching === "stream" ? this.carried : null,
        history: this.history,
        bestValLoss: Number.isFinite(stopper.best) ? stopper.best : null,
        earlyStopping: stopper.getState(),
        bestWeights: stopper.bestWeights,
        trainConfig: this.cfg,
        preset: o.preset ?? null,
        dataName: o.splits.name,
        elapsedSeconds: this.elapsed(),
        status,
        partialEpochLoss: { sum: this.epochLossSum, count: this.epochLossCount },
        initFrom: o.initFrom ?? o.resume?.manifest.initFrom ?? null,
        average: average ? { decay: average.decay, t: average.t } : null,
        trainingWeights: averaged ? training : null,
      });
    this.lastManifest = averaged ? await average.with(write) : await write();
    this.lastSavedStep = this.step;
    const { step, epoch, lastManifest: manifest } = this;
    await this.call(o.onCheckpoint, { dir: o.out ?? "", step, epoch, status, manifest, stop: this.stop });
  }

  private async call<I>(cb: TrainCallback<I> | undefined, info: I): Promise<void> {
    if (cb && (await cb(info)) === false) this.stopAsked = true;
  }

  /** The device-lost error with where the run stood and how to go on (`o.store` given: not a directory). */
  lostDevice(err: DeviceLostError): DeviceLostError {
    const { out, store } = this.o;
    const saved = this.lastSavedStep;
    const next =
      saved === null
        ? "no checkpoint had been saved yet: start the run again"
        : store || !out
          ? `the last checkpoint (step ${saved}) is kept`
          : `the last checkpoint (step ${saved}) in ${out} is kept: continue with charlm train --resume ${out} ` +
            "(add --backend wasm to go on on the CPU)";
    return new DeviceLostError(
      err.detail,
      `training stopped at step ${this.step + 1} (epoch ${this.epoch + 1}): the GPU device was lost (${err.detail}); ${next}`,
    );
  }

  private diverged(what: string, at = this.step + 1): never {
    const kept =
      this.lastSavedStep === null
        ? "no checkpoint had been saved yet"
        : `the last good checkpoint (step ${this.lastSavedStep}) in ${this.o.out} is kept`;
    throw new CharlmError(
      `training diverged at step ${at} (epoch ${this.epoch + 1}): ${what}; the learning rate ${this.cfg.lr} is probably too high for this model, lower --lr or set --clip; ${kept}`,
    );
  }

  private async printSample(): Promise<void> {
    const { cfg } = this;
    if (cfg.sampleLength <= 0) return;
    const text = await this.judged(() =>
      generateText(this.o.model, this.o.vocab, {
        prime: "",
        length: cfg.sampleLength,
        temperature: 0.8,
        seed: (cfg.seed + this.step) >>> 0,
      }),
    );
    this.log(`--- sample at step ${this.step} ---\n${text}\n---`);
  }

  result(): TrainResult {
    const { status, step, epoch, history, stepLosses, stopper } = this;
    const bestValLoss = Number.isFinite(stopper.best) ? stopper.best : null;
    const manifest = this.lastManifest;
    return { status, step, epoch, history, bestValLoss, stepLosses, manifest, elapsedSeconds: this.elapsed() };
  }
}

/** Seed-derived RNG states a fresh run starts from (exported for tests). */
export function initialRngStates(seed: number): { model: RngState; data: RngState } {
  return { model: modelRngFor(seed).getState(), data: dataRngFor(seed).getState() };
}
