// The training loop: one loop for every model behind the LanguageModel contract.
//
//   for each epoch:  for each batch (capped by stepsPerEpoch):
//       lr = schedule(step); loss = model.forward(x, targets); loss.backward(); clip; optimizer.step(lr)
//     validation loss -> history, metrics.jsonl, loss curve, early stopping, checkpoint
//
// Determinism: three seeded generators and nothing else. The model's initial weights come from Rng(seed) (the
// caller builds the model), dropout draws from Rng(seed + 1) ("model" rng) and batch shuffling from Rng(seed + 2)
// ("data" rng). Both states are in every checkpoint. A resumed run rebuilds the epoch's batch order by replaying
// the shuffles from the seed (the data rng is used for nothing else), checks that it lands on the saved state, and
// skips the batches already done, so it continues with exactly the batches, dropout masks and learning rates the
// uninterrupted run would have had.
//
// Legend: B batch, T time (sequence length).

import * as path from "node:path";
import { StreamBatcher, WindowEpoch, type Batch, type StreamState } from "../data/batching.js";
import type { Tokenizer } from "../data/tokenizer.js";
import type { LanguageModel, State } from "../models/contract.js";
import { generateText } from "../sample/generate.js";
import { CharlmError } from "../util/errors.js";
import { Progress, formatDuration } from "../util/progress.js";
import { Rng, type RngState } from "../util/rng.js";
import { disposeReplaced, scope } from "../engine/scope.js";
import type { Tensor } from "../engine/tensor.js";
import {
  makeDir,
  openForWriting,
  saveCheckpoint,
  type EpochRecord,
  type InitFrom,
  type Manifest,
  type RunStatus,
} from "../checkpoint/checkpoint.js";
import type { TrainConfig } from "./config.js";
import { EarlyStopping } from "./early-stopping.js";
import { evaluate } from "./evaluate.js";
import { MetricsLog } from "./metrics.js";
import { clipGradNorm, createOptimizer, type OptimizerState } from "./optimizers.js";
import { writeLossCurve } from "./plot.js";
import { learningRate } from "./schedules.js";

/** Everything a resumed run needs besides the model (whose weights the caller has already loaded). */
export interface ResumeState {
  manifest: Manifest;
  optimizer: OptimizerState | null;
  bestWeights: Map<string, Float32Array> | null;
  carried: State | null;
}

export interface TrainOptions {
  config: TrainConfig;
  model: LanguageModel;
  vocab: Tokenizer;
  splits: { train: string; validation: string; name: string };
  /** Checkpoint directory (model.safetensors, charlm.json, metrics.jsonl, loss.svg). */
  out: string;
  preset?: string | null;
  resume?: ResumeState | null;
  /** A fine-tuning run: the model it started from, recorded in every checkpoint (a resumed run keeps its own). */
  initFrom?: InitFrom | null;
  /** Human-readable lines (config, epoch summaries, samples); default: none. */
  log?: (line: string) => void;
  /** Progress bar stream; default process.stderr. */
  progressStream?: NodeJS.WritableStream & { isTTY?: boolean };
  quiet?: boolean;
  /** Stop (after saving a checkpoint) once this many optimizer steps have been taken in total. */
  stopAfterSteps?: number;
  /** Abort: the loop saves a checkpoint and returns with status "interrupted". */
  signal?: AbortSignal;
  /** Draw loss.svg after each epoch (default true). */
  plot?: boolean;
}

export interface TrainResult {
  status: RunStatus | "interrupted";
  step: number;
  epoch: number;
  history: EpochRecord[];
  bestValLoss: number | null;
  /** Loss of every step taken in this call, in order. */
  stepLosses: { step: number; loss: number }[];
  /** Checkpoint manifest last written. */
  manifest: Manifest | null;
  elapsedSeconds: number;
}

/** Rng streams derived from the seed (see the header). */
export const modelRngFor = (seed: number): Rng => new Rng((seed + 1) >>> 0);
export const dataRngFor = (seed: number): Rng => new Rng((seed + 2) >>> 0);

/** Train `o.model`, holding the lock of the checkpoint directory (see lock.ts) for the whole run. */
export async function train(o: TrainOptions): Promise<TrainResult> {
  await makeDir(o.out);
  const lock = await openForWriting(o.out);
  try {
    return await trainLocked(o);
  } finally {
    lock.release();
  }
}

async function trainLocked(o: TrainOptions): Promise<TrainResult> {
  const cfg = o.config;
  const { model, vocab } = o;
  const log = o.log ?? (() => {});
  const B = cfg.batchSize;
  const T = cfg.seqLength;
  const params = model.parameters();
  const metrics = new MetricsLog(path.join(o.out, "metrics.jsonl"));
  const trainIds = vocab.encode(o.splits.train, vocab.unk >= 0 ? "unk" : "error");
  const valText = vocab.measure(o.splits.validation); // ids, character spans, "<unk>" charges (evaluate.ts)
  const valIds = valText.ids;
  if (valIds.length < 2) {
    throw new CharlmError(
      `the validation split of ${o.splits.name} is empty; use a longer corpus or a larger --validation-fraction`,
    );
  }

  const optimizer = createOptimizer(cfg.optimizer, params, {
    beta1: cfg.beta1,
    beta2: cfg.beta2,
    momentum: cfg.momentum,
    weightDecay: cfg.weightDecay,
  });
  const modelRng = modelRngFor(cfg.seed);
  const dataRng = dataRngFor(cfg.seed);
  const stopper = new EarlyStopping(cfg.patience, cfg.minDelta);

  const stream = cfg.batching === "stream";
  const windows = stream ? null : new WindowEpoch(trainIds, B, T, dataRng);
  const streams = stream ? new StreamBatcher(trainIds, B, T) : null;
  const perEpoch = Math.min(
    (windows ?? streams)!.batchesPerEpoch,
    cfg.stepsPerEpoch > 0 ? cfg.stepsPerEpoch : Number.POSITIVE_INFINITY,
  );
  const schedule = { ...cfg, totalSteps: cfg.epochs * perEpoch };

  let step = 0;
  let epoch = 0; // completed epochs
  let stepInEpoch = 0;
  let history: EpochRecord[] = [];
  let carried: State | null = null;
  let elapsedBefore = 0;
  let epochLossSum = 0; // Σ step losses of the current epoch so far (saved, so a resumed epoch has the same mean)
  let epochLossCount = 0;

  const r = o.resume;
  if (r) {
    const m = r.manifest;
    step = m.step;
    epoch = m.epoch;
    stepInEpoch = m.stepInEpoch;
    history = m.history.slice();
    elapsedBefore = m.elapsedSeconds;
    if (r.optimizer) optimizer.setState(r.optimizer);
    if (m.earlyStopping) {
      stopper.setState({ ...m.earlyStopping, best: m.earlyStopping.best ?? Infinity }, r.bestWeights);
    }
    if (m.rng) modelRng.setState(m.rng.model);
    if (streams && m.batcher) streams.setState(m.batcher as StreamState);
    carried = r.carried;
    epochLossSum = m.partialEpochLoss?.sum ?? 0;
    epochLossCount = m.partialEpochLoss?.count ?? 0;
    if (epoch >= cfg.epochs) {
      throw new CharlmError(
        `${o.out}: this run has already trained ${epoch} epoch(s) of ${cfg.epochs}; raise --epochs to train further`,
      );
    }
    await metrics.truncateAfter(step);
  } else {
    await metrics.reset();
  }

  const session0 = performance.now();
  const elapsed = (): number => elapsedBefore + (performance.now() - session0) / 1000;
  const stepLosses: { step: number; loss: number }[] = [];
  let lastManifest: Manifest | null = r?.manifest ?? null;
  let lastSavedStep: number | null = r ? r.manifest.step : null;
  let lr = learningRate(step, schedule);

  const save = async (status: RunStatus): Promise<void> => {
    await readLosses();
    for (const [name, p] of params) {
      const w = await p.read();
      for (let i = 0; i < w.length; i++) if (!Number.isFinite(w[i])) diverged(`parameter ${name} is not finite`);
    }
    lastManifest = await saveCheckpoint(o.out, {
      model,
      vocab,
      optimizer,
      rng: { model: modelRng, data: dataRng },
      step,
      epoch,
      stepInEpoch,
      batcher: streams?.getState() ?? null,
      carriedState: stream ? carried : null,
      history,
      bestValLoss: Number.isFinite(stopper.best) ? stopper.best : null,
      earlyStopping: stopper.getState(),
      bestWeights: stopper.bestWeights,
      trainConfig: cfg,
      preset: o.preset ?? null,
      dataName: o.splits.name,
      elapsedSeconds: elapsed(),
      status,
      partialEpochLoss: { sum: epochLossSum, count: epochLossCount },
      initFrom: o.initFrom ?? r?.manifest.initFrom ?? null,
    });
    lastSavedStep = step;
  };

  const diverged = (what: string, at = step + 1): never => {
    const kept =
      lastSavedStep === null
        ? "no checkpoint had been saved yet"
        : `the last good checkpoint (step ${lastSavedStep}) in ${o.out} is kept`;
    throw new CharlmError(
      `training diverged at step ${at} (epoch ${epoch + 1}): ${what}; the learning rate ${cfg.lr} is probably too high for this model, lower --lr or set --clip; ${kept}`,
    );
  };

  const printSample = async (): Promise<void> => {
    if (cfg.sampleLength <= 0) return;
    const text = await generateText(model, vocab, {
      prime: "",
      length: cfg.sampleLength,
      temperature: 0.8,
      seed: (cfg.seed + step) >>> 0,
    });
    log(`--- sample at step ${step} ---\n${text}\n---`);
  };

  // A resumed run replays the batch shuffles of the completed epochs from the seed (each new epoch generator
  // reshuffles once, on its first batch); the current epoch's shuffle and skip happen at the top of the loop.
  if (windows) for (let e = 0; e < epoch; e++) windows.batches().next();

  let status: RunStatus | "interrupted" = "running";
  let lastLogged = performance.now();
  let lastLoggedStep = step;

  // Losses and gradient norms of steps taken but not yet read back, oldest first.
  const syncReads = [...params.values()].every((p) => p.backend.sync);
  const unread: { step: number; lr: number; loss: Tensor; norm: Tensor }[] = [];
  let progress: Progress | null = null; // the current epoch's bar
  const readLosses = async (): Promise<void> => {
    for (const u of unread.splice(0)) {
      const loss = await u.loss.value();
      const [gradNorm] = await u.norm.read();
      u.loss.dispose();
      u.norm.dispose();
      if (!Number.isFinite(loss)) diverged(`the loss became ${loss}`, u.step);
      if (!Number.isFinite(gradNorm)) diverged(`the gradient norm became ${gradNorm}`, u.step);
      epochLossSum += loss;
      epochLossCount++;
      stepLosses.push({ step: u.step, loss });
      progress?.tick(1, `loss ${loss.toFixed(3)}  lr ${u.lr.toExponential(1)}`);
      if (u.step % cfg.logEvery === 0) {
        const now = performance.now();
        const charsPerSec = ((u.step - lastLoggedStep) * B * T) / Math.max(1e-9, (now - lastLogged) / 1000);
        lastLogged = now;
        lastLoggedStep = u.step;
        await metrics.append({
          type: "step",
          step: u.step,
          epoch: epoch + 1,
          loss,
          lr: u.lr,
          gradNorm,
          charsPerSec,
          time: elapsed(),
        });
      }
    }
  };
  outer: while (epoch < cfg.epochs) {
    const epochStart = performance.now();
    const batches = windows ? windows.batches() : null;
    if (batches && stepInEpoch > 0) {
      for (let k = 0; k < stepInEpoch; k++) batches.next();
    }
    if (r && r.manifest.rng && dataRng.getState().join() !== r.manifest.rng.data.join() && step === r.manifest.step) {
      throw new CharlmError(
        `${o.out}: replaying the batch order did not reach the saved state; the training data or --seed changed since the checkpoint, resume with the same ones`,
      );
    }
    progress = new Progress({
      total: perEpoch - stepInEpoch, // a resumed epoch counts what is left
      label: `epoch ${epoch + 1}/${cfg.epochs}${stepInEpoch > 0 ? ` (from batch ${stepInEpoch + 1})` : ""}`,
      unit: "char",
      unitsPerTick: B * T,
      quiet: o.quiet,
      stream: o.progressStream,
    });
    while (stepInEpoch < perEpoch) {
      if (o.signal?.aborted) {
        progress.finish();
        status = "interrupted";
        await save("running");
        break outer;
      }
      let batch: Batch;
      if (batches) {
        batch = batches.next().value as Batch;
      } else {
        const b = streams!.next();
        if (b.reset) carried = null;
        batch = b;
      }
      lr = learningRate(step, schedule);
      // One step in one scope: forward, backward, clipping and the update run on the backend, nothing is read back;
      // the scope frees the step's activations and keeps the loss, the gradient norm and the carried state.
      const state = carried;
      const out = scope(() => {
        for (const p of params.values()) p.zeroGrad();
        const opts = { targets: batch.targets, training: true, state: state ?? undefined, rng: modelRng };
        const res = model.forward(batch.inputs, batch.B, batch.T, opts);
        res.loss!.backward();
        const norm = clipGradNorm(params.values(), cfg.clip > 0 ? cfg.clip : Infinity);
        optimizer.step(lr);
        return { loss: res.loss!, norm, state: stream ? (res.state ?? null) : null };
      });
      if (stream) {
        disposeReplaced(state, out.state);
        carried = out.state;
      }
      step++;
      stepInEpoch++;
      unread.push({ step, lr, loss: out.loss, norm: out.norm });
      // A backend whose values JavaScript sees (js, wasm) is read every step; a GPU backend only when logging.
      if (syncReads || step % cfg.logEvery === 0) await readLosses();

      if (cfg.sampleEvery > 0 && step % cfg.sampleEvery === 0) await printSample();
      const stopNow = o.stopAfterSteps !== undefined && step >= o.stopAfterSteps;
      if (
        (cfg.saveEvery > 0 && step % cfg.saveEvery === 0 && stepInEpoch < perEpoch) ||
        (stopNow && stepInEpoch < perEpoch)
      ) {
        await save("running");
      }
      if (stopNow && stepInEpoch < perEpoch) {
        progress.finish();
        status = "interrupted";
        break outer;
      }
    }
    await readLosses();
    progress.finish();

    // End of epoch: validate, record, maybe stop early, checkpoint.
    const val = await evaluate(model, valIds, {
      B,
      T,
      carry: stream,
      maxChars: cfg.evalChars,
      text: { ends: valText.ends, extra: valText.extra, unk: vocab.unk },
    });
    if (!Number.isFinite(val.nats)) diverged(`the validation loss became ${val.nats}`);
    const trainLoss = epochLossCount ? epochLossSum / epochLossCount : NaN;
    epoch++;
    stepInEpoch = 0;
    epochLossSum = 0;
    epochLossCount = 0;
    const seconds = (performance.now() - epochStart) / 1000;
    history.push({ epoch, step, trainLoss, valLoss: val.nats, lr, seconds });
    await metrics.append({
      type: "epoch",
      step,
      epoch,
      trainLoss,
      valLoss: val.nats,
      valNatsPerChar: val.natsPerChar,
      valBitsPerChar: val.bitsPerChar,
      ...(vocab.kind === "word" ? { valUnknownShare: val.unknownShare } : {}),
      lr,
      seconds,
      time: elapsed(),
    });
    const { improved, stop } = await stopper.update(val.nats, epoch, params);
    // A char model's tokens are characters; other tokenizers show the loss per token and per character of the text.
    const perChar = `${val.natsPerChar.toFixed(4)} nats/char (${val.bitsPerChar.toFixed(3)} bits/char)`;
    const valLine =
      vocab.kind === "char"
        ? perChar
        : `${val.nats.toFixed(4)} nats/token, ${perChar}` +
          (vocab.kind === "word" ? `, <unk> ${(100 * val.unknownShare).toFixed(1)}% of tokens` : "");
    log(
      `epoch ${epoch}/${cfg.epochs}  step ${step}  train ${trainLoss.toFixed(4)}  val ${valLine}` +
        `${improved ? "  *best*" : ""}  ${formatDuration(seconds)}`,
    );
    if (cfg.sampleEvery === 0) await printSample();
    const done = epoch >= cfg.epochs || stop;
    if (done) {
      if (cfg.restoreBest && stopper.bestEpoch !== epoch && stopper.restore(params)) {
        log(`restored the weights of epoch ${stopper.bestEpoch} (best validation loss ${stopper.best.toFixed(4)})`);
      }
      status = stop && epoch < cfg.epochs ? "early-stopped" : "finished";
      if (status === "early-stopped") {
        log(`early stopping: no improvement larger than ${cfg.minDelta} for ${cfg.patience} epoch(s)`);
        await metrics.append({ type: "event", step, event: "early-stopped", time: elapsed() });
      }
    }
    await save(done ? (status as RunStatus) : "running");
    if (o.plot !== false) await writeLossCurve(o.out, history, `charlm ${o.splits.name}`);
    if (done) break;
    if (o.stopAfterSteps !== undefined && step >= o.stopAfterSteps) {
      status = "interrupted";
      break;
    }
  }

  return {
    status,
    step,
    epoch,
    history,
    bestValLoss: Number.isFinite(stopper.best) ? stopper.best : null,
    stepLosses,
    manifest: lastManifest,
    elapsedSeconds: elapsed(),
  };
}

/** Seed-derived RNG states a fresh run starts from (exported for tests). */
export function initialRngStates(seed: number): { model: RngState; data: RngState } {
  return { model: modelRngFor(seed).getState(), data: dataRngFor(seed).getState() };
}
