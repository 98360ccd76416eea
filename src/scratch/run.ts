// Whole jobs for `charlm scratch`: train (fresh or resumed) with progress, samples and checkpoints, then report the
// loss on a named split; and sample from a saved checkpoint. The CLI only turns flags into these options.

import { access } from "node:fs/promises";
import { join } from "node:path";
import { loadSplits, type Splits } from "../data/corpus.js";
import { describe, Vocab } from "../data/vocab.js";
import { codePointLength } from "../data/utf8.js";
import { CharlmError, UsageError } from "../util/errors.js";
import { Progress, type TextStream } from "../util/progress.js";
import { Rng } from "../util/rng.js";
import { loadScratchCheckpoint, MANIFEST_FILE, saveScratchCheckpoint, type ScratchManifest } from "./checkpoint.js";
import { ScratchRNN } from "./rnn.js";
import { DEFAULT_SCRATCH_CONFIG, ScratchTrainer, trainLoop, type ScratchConfig } from "./train.js";

export interface ScratchTrainOptions {
  /** Corpus: "tinyshakespeare", "tinyshakespeare:FILE", or file / directory paths. */
  data?: string[];
  /** Inline training text instead of data (e.g. "hello world"); no validation split unless asked. */
  text?: string;
  config?: Partial<ScratchConfig>;
  iterations?: number;
  epochs?: number;
  seed?: number;
  sampleEvery?: number;
  sampleLength?: number;
  saveEvery?: number;
  /** Checkpoint directory (written at saveEvery and at the end). */
  out?: string;
  /** Continue the checkpoint in `out`. */
  resume?: boolean;
  validationFraction?: number;
  /** Split the final loss is reported on. */
  split?: "validation" | "test";
  quiet?: boolean;
  /** Where lines go (resolved config, samples, results); default process.stdout. */
  print?: (line: string) => void;
  /** Progress bar stream; default process.stderr. */
  progressStream?: TextStream;
  /** Checked between updates; true stops training early (the CLI wires Ctrl-C here). */
  stopped?: () => boolean;
}

export interface ScratchTrainResult {
  trainer: ScratchTrainer;
  vocab: Vocab;
  /** Smoothed loss per character at the end. */
  smoothLoss: number;
  /** Loss on the reported split (NaN when there is no text to evaluate). */
  eval: { split: string; nats: number; bits: number; chars: number };
  seconds: number;
  manifest?: ScratchManifest;
}

export async function trainScratch(o: ScratchTrainOptions): Promise<ScratchTrainResult> {
  const print = o.print ?? ((line: string) => void process.stdout.write(line + "\n"));
  if (o.iterations === undefined && o.epochs === undefined) {
    throw new UsageError("say how long to train: give --iterations N or --epochs N");
  }
  if ((o.data?.length ?? 0) > 0 && o.text !== undefined) throw new UsageError("give --data or --text, not both");

  // ---- data and vocabulary
  let splits: Splits;
  if (o.text !== undefined) {
    if (o.text.length === 0) throw new CharlmError("--text is empty; give some training text");
    const n = codePointLength(o.text);
    const f = o.validationFraction ?? 0;
    const cut = Array.from(o.text)
      .slice(0, n - Math.ceil(n * f))
      .join("");
    splits = { train: cut, validation: o.text.slice(cut.length), text: o.text, name: "text" };
  } else if (o.data && o.data.length > 0) {
    splits = await loadSplits(o.data, {
      validationFraction: o.validationFraction,
      tinyShakespeare: { quiet: o.quiet },
    });
  } else {
    throw new UsageError("give the training text: --data FILE|DIR|tinyshakespeare or --text TEXT");
  }

  // ---- model, trainer, RNG: fresh or from the checkpoint
  let vocab: Vocab;
  let trainer: ScratchTrainer;
  let rng: Rng;
  if (o.resume) {
    if (!o.out) throw new UsageError("--resume needs --out DIR, the checkpoint to continue");
    const ck = await loadScratchCheckpoint(o.out);
    for (const [key, value] of Object.entries(o.config ?? {})) {
      const saved = ck.config[key as keyof ScratchConfig];
      if (value !== undefined && value !== saved) {
        throw new UsageError(`--${flagName(key)} ${value} differs from the checkpoint's ${saved}; drop it to resume`);
      }
    }
    vocab = ck.vocab;
    const ids = encodeTrain(vocab, splits.train, o.out);
    if (ck.manifest.data.name !== splits.name || ck.manifest.data.trainChars !== ids.length) {
      throw new CharlmError(
        `${o.out} was trained on ${ck.manifest.data.name} (${ck.manifest.data.trainChars} chars), not ${splits.name} (${ids.length}); resume with the same --data`,
      );
    }
    trainer = new ScratchTrainer(ck.model, ids, ck.config, ck.state);
    rng = ck.rng;
    print(`resuming ${o.out} at iteration ${ck.state.iteration} (epoch ${ck.state.epoch})`);
  } else {
    if (o.out && (await exists(join(o.out, MANIFEST_FILE)))) {
      throw new CharlmError(
        `${o.out} already holds a scratch checkpoint; pass --resume to continue it or pick another --out`,
      );
    }
    const config = { ...DEFAULT_SCRATCH_CONFIG, ...definedOnly(o.config ?? {}) };
    vocab = Vocab.build(splits.text);
    const ids = vocab.encode(splits.train);
    if (ids.length < config.seqLength + 1) {
      throw new CharlmError(
        `${splits.name}: the training text has ${ids.length} characters, fewer than one sequence of --seq-length ${config.seqLength} + 1; use a shorter --seq-length or a longer corpus`,
      );
    }
    rng = new Rng(o.seed ?? 42);
    trainer = new ScratchTrainer(new ScratchRNN(vocab.size, config.hidden, rng), ids, config);
  }
  const { config } = trainer;
  const data = { name: splits.name, trainChars: trainer.ids.length };
  print(
    `scratch RNN: data ${splits.name} (train ${trainer.ids.length} chars, validation ${codePointLength(splits.validation)}), ` +
      `vocab ${vocab.size}, hidden ${config.hidden}, seq-length ${config.seqLength}, lr ${config.learningRate}, ` +
      `clip ${config.clip}, ${trainer.iterationsPerEpoch} iterations/epoch, ` +
      `until ${[o.iterations !== undefined ? `iteration ${o.iterations}` : "", o.epochs !== undefined ? `epoch ${o.epochs}` : ""].filter(Boolean).join(" or ")}`,
  );

  // ---- train
  const target = Math.min(
    o.iterations ?? Infinity,
    o.epochs !== undefined ? o.epochs * trainer.iterationsPerEpoch : Infinity,
  );
  const start = trainer.state.iteration;
  const progress = new Progress({
    total: Math.max(0, target - start),
    label: "scratch",
    unit: "char",
    unitsPerTick: config.seqLength,
    quiet: o.quiet,
    stream: o.progressStream,
  });
  const save = async () => {
    if (o.out) await saveScratchCheckpoint(o.out, { trainer, vocab, rng, data });
  };
  const t0 = performance.now();
  await trainLoop(trainer, {
    iterations: o.iterations,
    epochs: o.epochs,
    rng,
    sampleEvery: o.sampleEvery ?? 1000,
    sampleLength: o.sampleLength ?? 200,
    checkpointEvery: o.saveEvery ?? 10000,
    onCheckpoint: save,
    stopped: o.stopped,
    onStep: () => progress.tick(1, `loss ${(trainer.state.smoothLoss / config.seqLength).toFixed(3)} nats/char`),
    onSample: (ids) => {
      const s = trainer.state;
      print(
        `---- iteration ${s.iteration}, smooth loss ${s.smoothLoss.toFixed(2)} (${(s.smoothLoss / config.seqLength).toFixed(3)} nats/char)`,
      );
      print(vocab.decode(ids));
      print("----");
    },
  });
  const seconds = (performance.now() - t0) / 1000;
  progress.finish();

  // ---- evaluate on the named split (a text without a validation split is scored on its training text)
  let split: string = o.split ?? "validation";
  let evalText = split === "test" ? splits.test : splits.validation;
  if (split === "test" && evalText === undefined) {
    throw new UsageError(`${splits.name} has no test split; use --split validation`);
  }
  if (!evalText || codePointLength(evalText) < 2) {
    split = "train";
    evalText = splits.train;
  }
  const evalIds = vocab.encode(evalText, vocab.unk === -1 ? "error" : "unk");
  const nats = trainer.model.evaluate(evalIds);
  const evaluation = { split, nats, bits: nats / Math.LN2, chars: evalIds.length };
  const s = trainer.state;
  print(
    `trained ${s.iteration - start} iterations (${s.iteration} total, ${trainer.epochsDone()} epochs) in ${seconds.toFixed(1)}s; ` +
      `smooth loss ${(s.smoothLoss / config.seqLength).toFixed(4)} nats/char`,
  );
  print(
    `${split} loss: ${nats.toFixed(4)} nats/char (${evaluation.bits.toFixed(4)} bits/char) over ${evalIds.length} chars`,
  );
  let manifest: ScratchManifest | undefined;
  if (o.out) {
    manifest = await saveScratchCheckpoint(o.out, { trainer, vocab, rng, data, validation: evaluation });
    print(`saved ${o.out}; sample it with: charlm scratch sample --model ${o.out} --length 200`);
  }
  return { trainer, vocab, smoothLoss: s.smoothLoss / config.seqLength, eval: evaluation, seconds, manifest };
}

function encodeTrain(vocab: Vocab, text: string, dir: string): Int32Array {
  const bad = vocab.unknownChars(text);
  if (bad.length > 0 && vocab.unk === -1) {
    throw new CharlmError(
      `the data has characters the checkpoint in ${dir} never saw (${bad.slice(0, 3).map(describe).join(", ")}); resume with the same --data`,
    );
  }
  return vocab.encode(text, "unk");
}

export interface ScratchSampleOptions {
  model: string;
  prime?: string;
  length?: number;
  /** 1: the model's distribution; below 1 more conservative; 0 greedy. */
  temperature?: number;
  seed?: number;
}

/** prime + length sampled characters from a saved checkpoint. */
export async function sampleScratch(o: ScratchSampleOptions): Promise<string> {
  const ck = await loadScratchCheckpoint(o.model);
  const { model, vocab } = ck;
  const prime = o.prime ?? "";
  const temperature = o.temperature ?? 1;
  if (!(temperature >= 0)) throw new UsageError(`--temperature must be at least 0, got ${temperature}`);
  const bad = vocab.unknownChars(prime);
  if (bad.length > 0 && vocab.unk === -1) {
    throw new CharlmError(
      `--prime has characters outside the model's vocabulary: ${bad.slice(0, 5).map(describe).join(", ")}; use only characters the model was trained on`,
    );
  }
  const ids = vocab.encode(prime, "unk");
  const rng = new Rng(o.seed ?? 42);
  // Run all but the last priming character through the network; the last one is the seed of sample().
  let seed: number;
  let h: Float64Array;
  if (ids.length > 0) {
    h = model.feed(ids.subarray(0, ids.length - 1));
    seed = ids[ids.length - 1];
  } else {
    h = new Float64Array(model.H);
    seed = vocab.has("\n") ? vocab.encode("\n")[0] : 0;
  }
  return prime + vocab.decode(model.sample(h, seed, o.length ?? 200, rng, temperature));
}

const flagName = (key: string): string =>
  key === "learningRate" ? "lr" : key.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}
