// Checkpoints: a directory that describes itself.
//
//   charlm.json            the manifest: format "charlm-checkpoint", version 2, model config, tokenizer, training
//                          config, optimizer scalars, RNG states, step/epoch/batcher position, history, best
//                          validation loss, elapsed time, and the size and SHA-256 of every file below
//   model.safetensors      the weights: one F32 tensor per named parameter (names and shapes as model.parameters())
//   optimizer.safetensors  the optimizer's per-parameter buffers, "<slot>.<parameter>" (Adam: m.*, v.*), for --resume
//   best.safetensors       the weights of the best validation epoch so far (early stopping restores them)
//   state.safetensors      the carried recurrent state of stream batching, "h.<layer>" and "c.<layer>", if any
//   training.safetensors   a run that averages its weights (--ema), while it can still resume: the weights the
//                          optimizer is stepping (model.safetensors then holds their average, the model to use)
//
// Saving is a small two-phase commit so that a run killed at any moment leaves the previous complete checkpoint or
// the new one, never a mix: every new file is first written atomically (temp file, fsync, rename) under a ".next"
// name, then the new manifest as "charlm.json.next" (the commit point), then each ".next" file is renamed over
// its final name, the manifest last.
//
// Only the writer changes the directory. It holds charlm.lock (lock.ts) and, on taking it, finishes a committed
// save a killed writer left (charlm.json.next present) or drops an uncommitted one (stray ".next" files), and
// removes the temp files of killed writes. Readers never rename or delete anything: a reader goes by
// charlm.json.next while it is there (each file under its ".next" name or, once moved, its final one), else by
// charlm.json. A file that does not match its manifest entry (size, SHA-256, safetensors structure) is refused,
// unless the directory changed while it was read (a writer at work), in which case the reader reads it again.

import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { tokenizerFromJSON, type Tokenizer, type TokenizerJSON } from "../data/tokenizer.js";
import type { VocabJSON } from "../data/vocab.js";
import { Tensor } from "../engine/tensor.js";
import { parseModelConfig, type ModelConfig } from "../models/config.js";
import type { LanguageModel, State } from "../models/contract.js";
import { buildModel } from "../models/registry.js";
import { CharlmError } from "../util/errors.js";
import type { Rng, RngState } from "../util/rng.js";
import { writeFileAtomic } from "./atomic.js";
import { checkManifestFields } from "./manifest-fields.js";
import { lockDir, makeDir, writerActive, type WriterLock } from "./lock.js";
import type { TrainConfig } from "../train/config.js";
import type { EarlyStoppingState } from "../train/early-stopping.js";
import type { Optimizer, OptimizerState } from "../train/optimizers.js";
import { decodeSafetensors, encodeSafetensors, type SafetensorsFile } from "./safetensors.js";
import { loadWeightsInto } from "./weights.js";
import { readTar } from "./tar.js";

export { readSafetensors, writeSafetensors } from "./safetensors-file.js";
export { loadWeightsInto } from "./weights.js";
export { LOCK, makeDir, type WriterLock } from "./lock.js";

export const CHECKPOINT_FORMAT = "charlm-checkpoint";
// Version 2 stores a tokenizer (kind and state) where version 1 stored a character vocabulary {chars, unk}; version
// 1 manifests still load, as char tokenizers.
export const CHECKPOINT_VERSION = 2;
export const READABLE_VERSIONS = [1, 2];
export const MANIFEST = "charlm.json";
export const WEIGHTS = "model.safetensors";
export const OPTIMIZER = "optimizer.safetensors";
export const BEST = "best.safetensors";
export const STATE = "state.safetensors";
export const TRAINING = "training.safetensors";

/** One line of the per-epoch history. Losses are mean nats per token (per character for a char model). */
export interface EpochRecord {
  epoch: number; // 1-based
  step: number; // optimizer steps done at the end of the epoch
  trainLoss: number;
  valLoss: number;
  lr: number; // learning rate of the epoch's last step
  seconds: number; // wall time of the epoch
}

/**
 * running: resumable where it stands (interrupted, or between epochs); time-limit: resumable with a larger limit;
 * finished, early-stopped: ended with the best validation's weights (or the last ones without restoreBest);
 * stopped: ended by a stop before its last epoch in a run that ends there (the loop's endOnStop: the page's Stop
 * button and Minutes box, charlm train --end-on-stop), with the best validation's weights.
 */
export type RunStatus = "running" | "finished" | "early-stopped" | "time-limit" | "stopped";

export interface Manifest {
  format: typeof CHECKPOINT_FORMAT;
  version: number; // CHECKPOINT_VERSION when written; 1 for older checkpoints
  savedAt: string; // ISO time
  model: ModelConfig;
  tokenizer: TokenizerJSON; // filled from `vocab` when a version-1 manifest is read
  vocab?: VocabJSON; // version 1 only: the character vocabulary
  train: TrainConfig | null; // resolved training config (null for a model saved outside `charlm train`)
  preset: string | null;
  dataName: string | null; // "tinyshakespeare" or the corpus file name
  parameters: { name: string; shape: number[] }[]; // what model.safetensors holds, in order
  files: Record<string, { bytes: number; sha256: string }>;
  optimizer: { type: OptimizerState["type"]; t: number; hyper: OptimizerState["hyper"] } | null;
  rng: { model: RngState; data: RngState } | null; // dropout draws; batch shuffling
  step: number; // optimizer steps done
  epoch: number; // completed epochs
  stepInEpoch: number; // batches of the current (incomplete) epoch done
  batcher: unknown; // stream batching position (StreamBatcher.getState()), or null
  earlyStopping: { best: number | null; bestEpoch: number; wait: number } | null;
  history: EpochRecord[];
  bestValLoss: number | null;
  partialEpochLoss: { sum: number; count: number } | null; // step losses of the incomplete epoch so far
  elapsedSeconds: number;
  status: RunStatus;
  initFrom?: InitFrom | null; // the model a fine-tuning run started from (absent: trained from scratch)
  /** A run that averages its weights (--ema): the decay and the updates folded in; absent when it does not. */
  average?: { decay: number; t: number } | null;
}

/** Where a fine-tuning run (`charlm train --init-from DIR`) took its starting weights from. */
export interface InitFrom {
  path: string; // the source directory, resolved to an absolute path when the run started
  step: number; // the optimizer steps the source had taken
  format: "charlm" | "torch"; // a charlm checkpoint (charlm.json) or a PyTorch export (charlm-torch.json)
  addedChars?: string[]; // --extend-vocab: the characters appended to the source's vocabulary, with new rows
}

/** What saveCheckpoint needs; everything past model and vocab is training state and may be left out. */
export interface CheckpointInput {
  model: LanguageModel;
  vocab: Tokenizer;
  optimizer?: Optimizer | null;
  rng?: { model: Rng; data: Rng } | null;
  step?: number;
  epoch?: number;
  stepInEpoch?: number;
  batcher?: unknown;
  carriedState?: State | null;
  history?: EpochRecord[];
  bestValLoss?: number | null;
  earlyStopping?: EarlyStoppingState | null;
  bestWeights?: Map<string, Float32Array> | null;
  trainConfig?: TrainConfig | null;
  preset?: string | null;
  dataName?: string | null;
  partialEpochLoss?: { sum: number; count: number } | null;
  elapsedSeconds?: number;
  status?: RunStatus;
  initFrom?: InitFrom | null;
  /** A run that averages its weights: the decay and updates (the model's weights are then the average). */
  average?: { decay: number; t: number } | null;
  /** ...and the weights the optimizer steps, while the run can resume (training.safetensors). */
  trainingWeights?: Map<string, Float32Array> | null;
}

const sha256 = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");
const finiteOrNull = (x: number | null | undefined): number | null =>
  x !== undefined && x !== null && Number.isFinite(x) ? x : null;

/** The parameters' values, read back from the backend. */
async function weightsOf(model: LanguageModel): Promise<Map<string, { shape: number[]; data: Float32Array }>> {
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, t] of model.parameters()) out.set(name, { shape: t.shape, data: await t.read() });
  return out;
}

/** Save a checkpoint into `dir` (created if needed). Data files first, the manifest last; each write is atomic. */
export async function saveCheckpoint(dir: string, c: CheckpointInput): Promise<Manifest> {
  await makeDir(dir);
  const lock = await openForWriting(dir);
  try {
    return await saveLocked(dir, c);
  } finally {
    lock.release();
  }
}

async function saveLocked(dir: string, c: CheckpointInput): Promise<Manifest> {
  const { manifest, files } = await encodeCheckpoint(c);
  for (const [name, bytes] of files) await writeFileAtomic(path.join(dir, name + NEXT), bytes);
  await writeFileAtomic(path.join(dir, MANIFEST + NEXT), prettyJson(manifest) + "\n");
  await finishInterruptedSave(dir);
  return manifest;
}

/** SHA-256 in hex through Web Crypto, which Node and browsers share (the page saves checkpoints too). */
async function sha256Async(b: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await globalThis.crypto.subtle.digest("SHA-256", b as Uint8Array<ArrayBuffer>));
  return Array.from(digest, (x) => x.toString(16).padStart(2, "0")).join("");
}

/**
 * A checkpoint in memory: its manifest and data files (name -> bytes), without touching a disk. saveCheckpoint
 * writes them into a directory; the web page packs them, with charlm.json, into a tar (tar.ts).
 */
export async function encodeCheckpoint(
  c: CheckpointInput,
): Promise<{ manifest: Manifest; files: Map<string, Uint8Array> }> {
  const data = new Map<string, Uint8Array>();
  const files: Manifest["files"] = {};
  const put = async (name: string, bytes: Uint8Array): Promise<void> => {
    data.set(name, bytes);
    files[name] = { bytes: bytes.length, sha256: await sha256Async(bytes) };
  };
  const params = model2list(c.model);
  await put(WEIGHTS, encodeSafetensors(await weightsOf(c.model), { format: "charlm", layout: "row-major" }));
  const opt = (await c.optimizer?.getState()) ?? null;
  if (opt)
    await put(
      OPTIMIZER,
      encodeSafetensors(new Map([...opt.slots].map(([k, v]) => [k, { shape: [v.length], data: v }]))),
    );
  const shapes = new Map(params.map((p) => [p.name, p.shape]));
  const named = (w: Map<string, Float32Array>) =>
    encodeSafetensors(new Map([...w].map(([k, v]) => [k, { shape: shapes.get(k) ?? [v.length], data: v }])));
  if (c.bestWeights) await put(BEST, named(c.bestWeights));
  if (c.trainingWeights) await put(TRAINING, named(c.trainingWeights));
  const carried = c.carriedState ? await stateTensors(c.carriedState) : null;
  // The keys go in the metadata too: a key whose list is empty (a GRU's `c`) has no tensor to carry its name.
  if (carried) await put(STATE, encodeSafetensors(carried.tensors, { keys: carried.keys.join(",") }));

  const es = c.earlyStopping;
  const manifest: Manifest = {
    format: CHECKPOINT_FORMAT,
    version: CHECKPOINT_VERSION,
    savedAt: new Date().toISOString(),
    model: c.model.config as unknown as ModelConfig,
    tokenizer: c.vocab.serialize(),
    train: c.trainConfig ?? null,
    preset: c.preset ?? null,
    dataName: c.dataName ?? null,
    parameters: params,
    files,
    optimizer: opt ? { type: opt.type, t: opt.t, hyper: opt.hyper } : null,
    rng: c.rng ? { model: c.rng.model.getState(), data: c.rng.data.getState() } : null,
    step: c.step ?? 0,
    epoch: c.epoch ?? 0,
    stepInEpoch: c.stepInEpoch ?? 0,
    batcher: c.batcher ?? null,
    earlyStopping: es ? { best: finiteOrNull(es.best), bestEpoch: es.bestEpoch, wait: es.wait } : null,
    history: c.history ?? [],
    bestValLoss: finiteOrNull(c.bestValLoss),
    partialEpochLoss: c.partialEpochLoss ?? null,
    elapsedSeconds: c.elapsedSeconds ?? 0,
    status: c.status ?? "finished",
    // Written only for fine-tuned runs, so a run from scratch keeps the manifest it always had.
    initFrom: c.initFrom ?? undefined,
    // Likewise written only by a run that averages its weights.
    average: c.average ?? undefined,
  };
  return { manifest, files: data };
}

const NEXT = ".next";

/** JSON indented by two spaces, with arrays of numbers or strings kept on one line (vocabulary, shapes, RNG). */
export function prettyJson(value: unknown, indent = ""): string {
  if (Array.isArray(value)) {
    if (value.every((v) => v === null || typeof v !== "object")) return JSON.stringify(value);
    const inner = indent + "  ";
    return `[\n${value.map((v) => inner + prettyJson(v, inner)).join(",\n")}\n${indent}]`;
  }
  if (value !== null && typeof value === "object") {
    const entries = Object.entries(value).filter(([, v]) => v !== undefined);
    if (!entries.length) return "{}";
    const inner = indent + "  ";
    const body = entries.map(([k, v]) => `${inner}${JSON.stringify(k)}: ${prettyJson(v, inner)}`).join(",\n");
    return `{\n${body}\n${indent}}`;
  }
  return JSON.stringify(value) ?? "null";
}

/**
 * Become the one writer of the existing directory `dir` (see lock.ts), then put it in order: finish or drop a save
 * that a killed writer left, and remove the temp files of killed atomic writes. Release the lock when done.
 */
export async function openForWriting(dir: string): Promise<WriterLock> {
  const lock = await lockDir(dir);
  try {
    await finishInterruptedSave(dir);
    for (const name of await fs.readdir(dir)) {
      // Another process's temp file (this one's may be mid-write: the lock is re-entrant within a process).
      const pid = TEMP_FILE.exec(name)?.[1];
      if (pid && Number(pid) !== process.pid) await fs.rm(path.join(dir, name), { force: true });
    }
  } catch (err) {
    lock.release();
    throw err;
  }
  return lock;
}

// The temp files writeFileAtomic makes (".<name>.tmp-<pid>-<n>"): left behind only by a killed write.
const TEMP_FILE = /^\..+\.tmp-(\d+)-\d+$/;

/**
 * Writer only. Complete a committed save (charlm.json.next present): move each listed ".next" file into place,
 * remove data files the new manifest does not list, then move the manifest. Without a committed manifest, drop
 * stray ".next" files. A charlm.json.next that is not a manifest is refused rather than acted on.
 */
async function finishInterruptedSave(dir: string): Promise<void> {
  const nextManifest = path.join(dir, MANIFEST + NEXT);
  let committed: Manifest | null = null;
  const text = await fs.readFile(nextManifest, "utf8").catch(() => null); // absent: the usual case
  if (text !== null) {
    committed = parseManifest(text, nextManifest, "quiet");
    if (!committed) {
      throw new CharlmError(
        `${nextManifest}: not a charlm manifest; charlm did not write it, so move or remove it before training into ${dir}`,
      );
    }
  }
  for (const name of DATA_FILES) {
    const next = path.join(dir, name + NEXT);
    if (committed && name in committed.files) {
      await fs.rename(next, path.join(dir, name)).catch((err: NodeJS.ErrnoException) => {
        if (err.code !== "ENOENT") throw err; // already moved by the interrupted save
      });
    } else {
      await fs.rm(next, { force: true });
      if (committed) await fs.rm(path.join(dir, name), { force: true });
    }
  }
  if (committed) await fs.rename(nextManifest, path.join(dir, MANIFEST));
}

const DATA_FILES = [WEIGHTS, OPTIMIZER, BEST, STATE, TRAINING];

function model2list(model: LanguageModel): { name: string; shape: number[] }[] {
  return [...model.parameters()].map(([name, t]) => ({ name, shape: t.shape.slice() }));
}

// The carried state of stream batching, if it is the usual { h: Tensor[], c: Tensor[] } shape; null otherwise.
async function stateTensors(
  state: State,
): Promise<{ keys: string[]; tensors: Map<string, { shape: number[]; data: Float32Array }> } | null> {
  if (typeof state !== "object" || state === null) return null;
  const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [key, list] of Object.entries(state)) {
    if (!Array.isArray(list) || !list.every((t) => t instanceof Tensor)) return null;
    for (const [i, t] of (list as Tensor[]).entries()) {
      tensors.set(`${key}.${i}`, { shape: t.shape, data: await t.read() });
    }
  }
  return { keys: Object.keys(state), tensors };
}

/** Rebuild a carried state saved by stateTensors, empty lists included. */
export function stateFromTensors(file: SafetensorsFile): State {
  const state: Record<string, Tensor[]> = {};
  for (const key of file.metadata.keys?.split(",") ?? []) if (key) state[key] = [];
  for (const [name, t] of file.tensors) {
    const [key, i] = name.split(".");
    (state[key] ??= [])[Number(i)] = new Tensor(t.data as Float32Array, t.shape);
  }
  // Files written before the keys were recorded: a recurrent state without `c` is a GRU's or SimpleRNN's.
  if (!file.metadata.keys && state.h && !state.c) state.c = [];
  return state;
}

// ---------------------------------------------------------------------------------------------------------------
// Reading

const exists = (p: string): Promise<boolean> =>
  fs.stat(p).then(
    () => true,
    () => false,
  );

// Manifests read from charlm.json.next: their files may still sit under their ".next" names.
const pending = new WeakSet<Manifest>();

/**
 * Read and check the manifest of `dir`: charlm.json.next while a committed save is not yet moved into place (and it
 * is a valid manifest), else charlm.json. It must exist, be ours, and be a version this code reads.
 */
export async function readManifest(dir: string): Promise<Manifest> {
  const nextFile = path.join(dir, MANIFEST + NEXT);
  const nextText = await fs.readFile(nextFile, "utf8").catch(() => null);
  const next = nextText === null ? null : parseManifest(nextText, nextFile, "quiet");
  if (next) {
    pending.add(next);
    return next;
  }
  const file = path.join(dir, MANIFEST);
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") {
      throw new CharlmError(
        (await exists(dir))
          ? `${dir}: no ${MANIFEST} in this directory, so it is not a charlm checkpoint; pass the --out directory of a charlm train run`
          : `${dir}: no such directory; pass the --out directory of a charlm train run`,
      );
    }
    if (code === "EISDIR") throw new CharlmError(`${file}: is a directory; the checkpoint is damaged`);
    throw err;
  }
  return parseManifest(text, file, "throw");
}

/** Parse and check a manifest's text; `quiet` returns null instead of throwing. */
function parseManifest(text: string, file: string, mode: "throw"): Manifest;
function parseManifest(text: string, file: string, mode: "quiet"): Manifest | null;
function parseManifest(text: string, file: string, mode: "throw" | "quiet"): Manifest | null {
  try {
    return checkManifest(text, file);
  } catch (err) {
    if (mode === "quiet" && err instanceof CharlmError) return null;
    throw err;
  }
}

function checkManifest(text: string, file: string): Manifest {
  let m: Partial<Manifest>;
  try {
    m = JSON.parse(text) as Partial<Manifest>;
  } catch {
    throw new CharlmError(`${file}: not valid JSON; the checkpoint is damaged, train again or restore it from a copy`);
  }
  if (typeof m !== "object" || m === null || m.format !== CHECKPOINT_FORMAT) {
    throw new CharlmError(
      `${file}: format is ${JSON.stringify(m?.format)}, expected "${CHECKPOINT_FORMAT}"; this is not a charlm checkpoint`,
    );
  }
  if (!READABLE_VERSIONS.includes(m.version as number)) {
    throw new CharlmError(
      `${file}: checkpoint format version ${JSON.stringify(m.version)} is not supported (this charlm reads versions ${READABLE_VERSIONS.join(" and ")}); use the charlm release that wrote it or train again`,
    );
  }
  if (m.version === 1 && typeof m.vocab === "object" && m.vocab !== null) m.tokenizer = { kind: "char", ...m.vocab };
  for (const key of ["model", "tokenizer", "parameters", "files"] as const) {
    if (typeof m[key] !== "object" || m[key] === null)
      throw new CharlmError(`${file}: the "${key}" field is missing; the checkpoint is damaged`);
  }
  checkManifestFields(m as Record<string, unknown>, file);
  m.model = parseModelConfig(m.model, `${file}: model`);
  // The training config is checked key by key where a run resumes or starts from this checkpoint (the training
  // library's readTrainConfig); readers that only sample need the model and the vocabulary.
  if (m.train !== undefined && m.train !== null && (typeof m.train !== "object" || Array.isArray(m.train)))
    throw new CharlmError(`${file}: the "train" field is not an object; the checkpoint is damaged`);
  return m as Manifest;
}

/** Read one data file of the checkpoint, checking its size and SHA-256 against the manifest. */
export async function readCheckpointFile(
  dir: string,
  manifest: Manifest,
  name: string,
): Promise<SafetensorsFile | null> {
  const entry = manifest.files[name];
  if (!entry) return null;
  const file = path.join(dir, name);
  let bytes: Uint8Array;
  try {
    // A save being moved into place: the file is under its ".next" name until the writer renames it.
    bytes = pending.has(manifest)
      ? await fs.readFile(file + NEXT).catch((err: NodeJS.ErrnoException) => {
          if (err.code === "ENOENT") return fs.readFile(file);
          throw err;
        })
      : await fs.readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      throw new CharlmError(
        `${file}: missing, though ${MANIFEST} lists it; the checkpoint is incomplete, copy the whole directory`,
      );
    }
    throw err;
  }
  return checkFileBytes(file, entry, bytes);
}

/** One data file's bytes, checked against its manifest entry (size, structure, SHA-256), parsed. */
function checkFileBytes(file: string, entry: { bytes: number; sha256: string }, bytes: Uint8Array): SafetensorsFile {
  if (bytes.length !== entry.bytes) {
    throw new CharlmError(
      `${file}: ${bytes.length} bytes but the manifest says ${entry.bytes} (truncated or replaced); restore the file or train again`,
    );
  }
  // Structure first (it names what is wrong), then the checksum (catches edits that keep the structure).
  const parsed = decodeSafetensors(bytes, file);
  if (sha256(bytes) !== entry.sha256) {
    throw new CharlmError(
      `${file}: contents do not match the SHA-256 in ${MANIFEST} (edited or corrupted); restore the file or train again`,
    );
  }
  return parsed;
}

/**
 * Run a read of `dir` until it sees one consistent checkpoint. A refusal is final unless the manifests changed
 * while it read or a live writer holds the lock: then a save was under way, and the read starts again (for up to
 * a few seconds, after which the reader says to retry).
 */
export async function readConsistently<R>(dir: string, read: () => Promise<R>): Promise<R> {
  const deadline = performance.now() + 5000;
  for (let wait = 5; ; wait = Math.min(wait * 2, 200)) {
    const before = await manifestStamp(dir);
    try {
      return await read();
    } catch (err) {
      if (!(err instanceof CharlmError)) throw err;
      const changed = (await manifestStamp(dir)) !== before || (await writerActive(dir));
      if (!changed) throw err;
      if (performance.now() > deadline) {
        throw new CharlmError(
          `${dir}: a charlm train is saving into this checkpoint faster than it can be read; retry, or copy it once training stops`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
}

// Identity of both manifests (inode, size, change time): a rename or a new save changes it.
async function manifestStamp(dir: string): Promise<string> {
  const one = (name: string) =>
    fs.stat(path.join(dir, name)).then(
      (s) => `${s.ino}:${s.size}:${s.ctimeMs}`,
      () => "-",
    );
  return `${await one(MANIFEST)}|${await one(MANIFEST + NEXT)}`;
}

/**
 * A checkpoint opened for reading: its manifest, and its data files read on demand, each checked against the
 * manifest. It comes from a checkpoint directory or from a tar of one (the web page's download, tar.ts), which is
 * then held whole in memory.
 */
export interface CheckpointFiles {
  manifest: Manifest;
  /** Where a file of the checkpoint is, for messages: DIR/NAME, or FILE.tar:NAME. */
  where(name: string): string;
  /** A data file the manifest lists, checked (size, structure, SHA-256); null when it lists none by that name. */
  read(name: string): Promise<SafetensorsFile | null>;
  /** A tar's files as stored (name -> bytes), for whoever hands them on (the server); null for a directory. */
  archive: ReadonlyMap<string, Uint8Array> | null;
}

/** The files of the checkpoint directory `dir`, whose manifest has been read (readManifest). */
export function directoryFiles(dir: string, manifest: Manifest): CheckpointFiles {
  return {
    manifest,
    where: (name) => path.join(dir, name),
    read: (name) => readCheckpointFile(dir, manifest, name),
    archive: null,
  };
}

/** A checkpoint packed as one tar file (see tar.ts), checked file by file as a directory is. */
async function archiveFiles(file: string): Promise<CheckpointFiles> {
  const files = readTar(new Uint8Array(await fs.readFile(file)), file);
  const text = files.get(MANIFEST);
  if (!text) throw new CharlmError(`${file}: holds no ${MANIFEST}; give a tar of a checkpoint directory`);
  const manifest = checkManifest(new TextDecoder().decode(text), `${file}:${MANIFEST}`);
  return {
    manifest,
    where: (name) => `${file}:${name}`,
    read: async (name) => {
      const entry = manifest.files[name];
      if (!entry) return null;
      const bytes = files.get(name);
      if (!bytes) throw new CharlmError(`${file}: lacks ${name}, though ${MANIFEST} lists it; download it again`);
      return checkFileBytes(`${file}:${name}`, entry, bytes);
    },
    archive: files,
  };
}

/** Whether `p` is a regular file (false when it is a directory or missing). */
export const isFile = (p: string): Promise<boolean> =>
  fs.stat(p).then(
    (s) => s.isFile(),
    () => false,
  );

/**
 * The one way a trained model is found by its path: `p` is a checkpoint directory, or a tar of one. Every command
 * that takes a trained model (sample, eval, summary, serve, export, train --init-from) and the library's load()
 * come through here or loadCheckpoint, so each reads both, with the same checks and messages.
 */
export async function openCheckpoint(p: string): Promise<CheckpointFiles> {
  // A file where a checkpoint is expected is a tar of one.
  return (await isFile(p)) ? archiveFiles(p) : directoryFiles(p, await readManifest(p));
}

/**
 * Load a checkpoint for sampling or evaluation: the model (with its weights), the vocabulary, the manifest, and
 * the files for reading more (optimizer state). `p` is a checkpoint directory or a tar of one (openCheckpoint).
 */
export async function loadCheckpoint(
  p: string,
): Promise<{ model: LanguageModel; vocab: Tokenizer; manifest: Manifest; files: CheckpointFiles }> {
  if (await isFile(p)) return modelFrom(await archiveFiles(p));
  return readConsistently(p, async () => modelFrom(directoryFiles(p, await readManifest(p))));
}

async function modelFrom(
  files: CheckpointFiles,
): Promise<{ model: LanguageModel; vocab: Tokenizer; manifest: Manifest; files: CheckpointFiles }> {
  const { manifest } = files;
  const file = files.where(MANIFEST);
  const named = <T>(build: () => T): T => {
    try {
      return build();
    } catch (err) {
      // The vocabulary and model parsers do not know which file they read; say it.
      if (err instanceof CharlmError) throw new CharlmError(`${file}: ${err.message}`);
      throw err;
    }
  };
  const vocab = named(() => tokenizerFromJSON(manifest.tokenizer));
  if (vocab.size !== manifest.model.vocabSize) {
    throw new CharlmError(
      `${file}: the vocabulary has ${vocab.size} symbols but the model expects ${manifest.model.vocabSize}; the checkpoint is damaged`,
    );
  }
  const model = named(() => buildModel(manifest.model, null)); // zeros: the weights are loaded next
  const weights = await files.read(WEIGHTS);
  if (!weights) throw new CharlmError(`${file}: lists no ${WEIGHTS}; the checkpoint is damaged`);
  loadWeightsInto(model, weights, files.where(WEIGHTS));
  return { model, vocab, manifest, files };
}

/** The optimizer state stored in a checkpoint (slots from optimizer.safetensors), or null if none was saved. */
export async function loadOptimizerState(files: CheckpointFiles): Promise<OptimizerState | null> {
  const { manifest } = files;
  if (!manifest.optimizer) return null;
  const file = await files.read(OPTIMIZER);
  if (!file)
    throw new CharlmError(`${files.where(MANIFEST)}: optimizer state without ${OPTIMIZER}; the checkpoint is damaged`);
  const slots = new Map<string, Float32Array>();
  for (const [k, t] of file.tensors) slots.set(k, t.data as Float32Array);
  return { ...manifest.optimizer, slots };
}

/** The best-epoch weights stored in a checkpoint, or null. */
export async function loadBestWeights(files: CheckpointFiles): Promise<Map<string, Float32Array> | null> {
  const file = await files.read(BEST);
  if (!file) return null;
  return new Map([...file.tensors].map(([k, t]) => [k, t.data as Float32Array]));
}

/** The weights the optimizer steps, stored by a resumable run that averages its weights (--ema), or null. */
export async function loadTrainingWeights(files: CheckpointFiles): Promise<Map<string, Float32Array> | null> {
  const file = await files.read(TRAINING);
  if (!file) {
    const { manifest } = files;
    if (manifest.average && (manifest.status === "running" || manifest.status === "time-limit")) {
      throw new CharlmError(
        `${files.where(MANIFEST)}: a resumable run that averages its weights, without ${TRAINING}; the checkpoint is damaged`,
      );
    }
    return null;
  }
  return new Map([...file.tensors].map(([k, t]) => [k, t.data as Float32Array]));
}

/**
 * Put training weights (from loadTrainingWeights) into the model's parameters; one missing or of the wrong size means
 * a damaged checkpoint: `fix` ends the message (what to do instead).
 */
export function writeTrainingWeights(
  params: Iterable<[string, Tensor]>,
  weights: Map<string, Float32Array>,
  where: string,
  fix: string,
): void {
  for (const [k, p] of params) {
    const w = weights.get(k);
    if (!w || w.length !== p.size) {
      throw new CharlmError(
        `${where}: its training weights do not match the model (${k}); the checkpoint is damaged, ${fix}`,
      );
    }
    p.write(w);
  }
}

/** The carried stream state stored in a checkpoint, or null. */
export async function loadCarriedState(files: CheckpointFiles): Promise<State | null> {
  const file = await files.read(STATE);
  return file ? stateFromTensors(file) : null;
}
