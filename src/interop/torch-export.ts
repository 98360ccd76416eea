// A PyTorch export: a directory that python/charlm_torch.py loads into plain torch.nn modules, and that charlm
// reads back (`charlm import`, or loadTorchExport as the starting point of a new run).
//
//   charlm-torch.json    format "charlm-torch-export", version 1: the model config (charlm's keys), the tokenizer
//                        (characters and the index of "<unk>", -1 when there is none), the training config the model
//                        came from (or null), the optimizer steps so far, who wrote it, Adam's scalars (or null),
//                        and the size and SHA-256 of each file below
//   model.safetensors    the state_dict: PyTorch names and layouts (torch-names.ts), F32
//   optimizer.safetensors  Adam's moments, when the run used Adam: "exp_avg.<name>" and "exp_avg_sq.<name>" for every
//                        state_dict entry, laid out as the weights (torch.optim.Adam's exp_avg / exp_avg_sq; charlm's
//                        m / v). Frozen entries (the LSTM's bias_hh) hold zeros. Other optimizers are not exported:
//                        the Python trainer then starts Adam afresh.
//
// Each file is written atomically, the data files first and the JSON last. A new export is complete once its JSON
// exists; an export overwritten (--force, or train.py's --save-every) and interrupted between the writes is left
// with a JSON whose sizes and SHA-256 no longer match, and is refused rather than read as a mix. Reading checks the
// JSON, then each file's size and SHA-256, then its tensors.

import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import type { Tokenizer } from "../data/tokenizer.js";
import { Vocab, type VocabJSON } from "../data/vocab.js";
import { parseModelConfig, type ModelConfig } from "../models/config.js";
import type { LanguageModel } from "../models/contract.js";
import { buildModel } from "../models/registry.js";
import { writeFileAtomic } from "../checkpoint/atomic.js";
import {
  MANIFEST,
  loadCheckpoint,
  loadOptimizerState,
  loadTrainingWeights,
  prettyJson,
  writeTrainingWeights,
  saveCheckpoint,
} from "../checkpoint/checkpoint.js";
import { checkPartialConfig, type TrainConfig } from "../train/config.js";
import { createOptimizer, type OptimizerState, type Param } from "../train/optimizers.js";
import { decodeSafetensors, encodeSafetensors } from "../checkpoint/safetensors.js";
import { loadWeightsInto } from "../checkpoint/weights.js";
import { CharlmError } from "../util/errors.js";
import { fromTorchStateDict, toTorchStateDict, type Weights } from "./torch-names.js";

export const TORCH_FORMAT = "charlm-torch-export";
export const TORCH_VERSION = 1;
export const TORCH_MANIFEST = "charlm-torch.json";
export const TORCH_WEIGHTS = "model.safetensors";
export const TORCH_OPTIMIZER = "optimizer.safetensors";
/** charlm's Adam slots and torch.optim.Adam's state names. */
const MOMENTS = [
  ["m", "exp_avg"],
  ["v", "exp_avg_sq"],
] as const;

/** Adam's scalars in the export (its moments are in optimizer.safetensors; `step` is its t, for bias correction). */
export interface TorchOptimizerInfo {
  type: "adam";
  step: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export interface TorchExportManifest {
  format: typeof TORCH_FORMAT;
  version: typeof TORCH_VERSION;
  savedAt: string; // ISO time
  writer: string; // "charlm export" or "python/train.py"
  model: ModelConfig; // charlm's config keys; python/charlm_torch.py builds the same architecture from them
  torch: { module: "CharRNN" | "GPT"; dtype: "float32" };
  vocab: VocabJSON;
  train: Partial<TrainConfig> | null; // the charlm training config the weights came from, for reference
  step: number; // optimizer steps taken so far (charlm's and the Python trainer's together)
  optimizer: TorchOptimizerInfo | null;
  files: Record<string, { bytes: number; sha256: string }>;
}

const sha256 = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");
const exists = (p: string): Promise<boolean> =>
  fs.stat(p).then(
    () => true,
    () => false,
  );

function weightsOf(model: LanguageModel): Weights {
  const out: Weights = new Map();
  for (const [name, t] of model.parameters()) out.set(name, { shape: t.shape.slice(), data: t.data });
  return out;
}

/** Write a model (and Adam's state, if given) as a PyTorch export into `out` (created if needed). */
export async function writeTorchExport(
  out: string,
  c: {
    model: LanguageModel;
    vocab: Tokenizer;
    train?: Partial<TrainConfig> | null;
    step?: number;
    optimizer?: OptimizerState | null;
  },
): Promise<TorchExportManifest> {
  const vocab = charVocabOf(c.vocab, "a PyTorch export");
  const config = parseModelConfig(c.model.config);
  const weights = weightsOf(c.model);
  const files: TorchExportManifest["files"] = {};
  const put = async (name: string, bytes: Uint8Array): Promise<void> => {
    await writeFileAtomic(path.join(out, name), bytes);
    files[name] = { bytes: bytes.length, sha256: sha256(bytes) };
  };
  await fs.mkdir(out, { recursive: true });
  await put(TORCH_WEIGHTS, encodeSafetensors(toTorchStateDict(config, weights), { format: "pt" }));
  let optimizer: TorchOptimizerInfo | null = null;
  const opt = c.optimizer;
  if (opt?.type === "adam") {
    const moments: Weights = new Map();
    for (const [slot, torchName] of MOMENTS) {
      const slotWeights: Weights = new Map(
        [...weights].map(([name, w]) => [name, { shape: w.shape, data: opt.slots.get(`${slot}.${name}`)! }]),
      );
      for (const [name, t] of toTorchStateDict(config, slotWeights)) moments.set(`${torchName}.${name}`, t);
    }
    await put(TORCH_OPTIMIZER, encodeSafetensors(moments));
    const { beta1, beta2, eps, weightDecay } = opt.hyper;
    optimizer = { type: "adam", step: opt.t, beta1, beta2, eps, weightDecay };
  } else {
    await fs.rm(path.join(out, TORCH_OPTIMIZER), { force: true }); // an earlier export's, now stale
  }
  const manifest: TorchExportManifest = {
    format: TORCH_FORMAT,
    version: TORCH_VERSION,
    savedAt: new Date().toISOString(),
    writer: "charlm export",
    model: config,
    torch: { module: config.type === "rnn" ? "CharRNN" : "GPT", dtype: "float32" },
    vocab: vocab.toJSON(),
    train: c.train ?? null,
    step: c.step ?? 0,
    optimizer,
    files,
  };
  await writeFileAtomic(path.join(out, TORCH_MANIFEST), prettyJson(manifest) + "\n");
  return manifest;
}

/** The char vocabulary of a model, or a line saying that `what` (the PyTorch side) reads characters only. */
export function charVocabOf(t: Tokenizer, what: string): Vocab {
  if (t instanceof Vocab) return t;
  throw new CharlmError(
    `${what} carries a character vocabulary, and this model uses the ${t.kind} tokenizer; export a char model, or use this one with charlm sample or charlm serve`,
  );
}

/**
 * Refuse to write over something that is not an earlier output of the same kind (a charlm checkpoint above all).
 * `mine` names the file that marks an export of this kind (the PyTorch export's JSON by default).
 */
export async function checkTarget(
  out: string,
  force: boolean,
  kind: "export" | "checkpoint",
  mine = TORCH_MANIFEST,
): Promise<void> {
  if (kind === "export" && (await exists(path.join(out, MANIFEST)))) {
    throw new CharlmError(
      `${out}: holds a charlm checkpoint (${MANIFEST}); write the export to another directory so the checkpoint stays intact`,
    );
  }
  if (!force && (await exists(path.join(out, kind === "export" ? mine : MANIFEST)))) {
    throw new CharlmError(
      `${out}: already holds ${kind === "export" ? `an export (${mine})` : "a checkpoint"}; pick another directory or add --force to overwrite it`,
    );
  }
}

/**
 * `charlm export DIR --to torch OUT`: the checkpoint in `dir` as a PyTorch export in `out`. A run that averages its
 * weights (--ema) and can still resume keeps the weights its optimizer steps beside the average: those go out, with
 * the Adam moments that belong to them, so that PyTorch continues the run exactly (`training` is then true). A
 * finished run has only its average, which goes out as its model.
 */
export async function exportCheckpointToTorch(
  dir: string,
  out: string,
  opts: { force?: boolean } = {},
): Promise<TorchExportManifest & { training: boolean }> {
  const { model, vocab, manifest, files } = await loadCheckpoint(dir);
  charVocabOf(vocab, `${dir}: a PyTorch export`);
  await checkTarget(out, opts.force ?? false, "export");
  const optimizer = await loadOptimizerState(files);
  const training = await loadTrainingWeights(files);
  if (training) writeTrainingWeights(model.parameters(), training, dir, "export another checkpoint");
  const m = await writeTorchExport(out, { model, vocab, train: manifest.train, step: manifest.step, optimizer });
  return { ...m, training: training !== null };
}

/** Read and check `dir`/charlm-torch.json, model.safetensors and optimizer.safetensors (Adam's moments, or null). */
export async function readTorchExport(
  dir: string,
): Promise<{ manifest: TorchExportManifest; stateDict: Weights; moments: Weights | null }> {
  const file = path.join(dir, TORCH_MANIFEST);
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT" || (err as NodeJS.ErrnoException).code === "ENOTDIR") {
      throw new CharlmError(
        (await exists(dir))
          ? `${dir}: no ${TORCH_MANIFEST} in this directory, so it is not a PyTorch export; pass a directory written by charlm export --to torch or python/train.py`
          : `${dir}: no such directory; pass a directory written by charlm export --to torch or python/train.py`,
      );
    }
    throw err;
  }
  let m: Partial<TorchExportManifest>;
  try {
    m = JSON.parse(text) as Partial<TorchExportManifest>;
  } catch {
    throw new CharlmError(`${file}: not valid JSON; the export is damaged, export the model again`);
  }
  if (typeof m !== "object" || m === null || m.format !== TORCH_FORMAT) {
    throw new CharlmError(
      `${file}: format is ${JSON.stringify(m?.format)}, expected "${TORCH_FORMAT}"; this is not a charlm PyTorch export`,
    );
  }
  if (m.version !== TORCH_VERSION) {
    throw new CharlmError(
      `${file}: export format version ${JSON.stringify(m.version)} is not supported (this charlm reads version ${TORCH_VERSION}); export the model again with this release`,
    );
  }
  for (const key of ["model", "vocab", "files"] as const) {
    if (typeof m[key] !== "object" || m[key] === null)
      throw new CharlmError(`${file}: the "${key}" field is missing; the export is damaged, export the model again`);
  }
  m.model = parseModelConfig(m.model, `${file}: model`);
  if (m.train) m.train = checkPartialConfig(m.train, `${file}: train`);
  if (!Number.isInteger(m.step) || m.step! < 0) m.step = 0;
  if (m.optimizer !== null && m.optimizer !== undefined) {
    const o = m.optimizer as Partial<TorchOptimizerInfo>;
    const ok =
      o.type === "adam" &&
      Number.isInteger(o.step) &&
      o.step! >= 0 &&
      (["beta1", "beta2", "eps", "weightDecay"] as const).every((k) => typeof o[k] === "number");
    if (!ok) throw new CharlmError(`${file}: the "optimizer" field is damaged; export the model again`);
  }
  const manifest = { ...m, optimizer: m.optimizer ?? null } as TorchExportManifest;
  const stateDict = await readListed(dir, manifest, TORCH_WEIGHTS);
  const moments = manifest.optimizer ? await readListed(dir, manifest, TORCH_OPTIMIZER) : null;
  return { manifest, stateDict, moments };
}

/** One data file of an export, checked against the manifest's size and SHA-256, as float32 tensors. */
async function readListed(dir: string, m: TorchExportManifest, name: string): Promise<Weights> {
  const entry = m.files[name];
  if (!entry)
    throw new CharlmError(
      `${path.join(dir, TORCH_MANIFEST)}: lists no ${name}; the export is damaged, export the model again`,
    );
  const wfile = path.join(dir, name);
  let bytes: Uint8Array;
  try {
    bytes = await fs.readFile(wfile);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT")
      throw new CharlmError(`${wfile}: missing, though ${TORCH_MANIFEST} lists it; copy the whole export directory`);
    throw err;
  }
  if (bytes.length !== entry.bytes) {
    throw new CharlmError(
      `${wfile}: ${bytes.length} bytes but ${TORCH_MANIFEST} says ${entry.bytes} (truncated or replaced); export the model again`,
    );
  }
  const parsed = decodeSafetensors(bytes, wfile);
  if (sha256(bytes) !== entry.sha256) {
    throw new CharlmError(
      `${wfile}: contents do not match the SHA-256 in ${TORCH_MANIFEST} (edited or corrupted); export the model again`,
    );
  }
  const out: Weights = new Map();
  for (const [key, t] of parsed.tensors) {
    if (t.dtype !== "F32" && t.dtype !== "F16" && t.dtype !== "BF16") {
      throw new CharlmError(`${wfile}: tensor ${key} has dtype ${t.dtype}; save it as float32`);
    }
    out.set(key, { shape: t.shape, data: t.data as Float32Array });
  }
  return out;
}

/**
 * A PyTorch export as a charlm model and vocabulary: the library entry for starting a charlm run from weights
 * trained in PyTorch (what `charlm import` writes out as a checkpoint).
 */
export async function loadTorchExport(dir: string): Promise<{
  model: LanguageModel;
  vocab: Vocab;
  manifest: TorchExportManifest;
  optimizer: OptimizerState | null; // Adam's state, to continue with (null: start the optimizer afresh)
}> {
  const { manifest, stateDict, moments } = await readTorchExport(dir);
  const file = path.join(dir, TORCH_MANIFEST);
  let vocab: Vocab;
  try {
    vocab = Vocab.fromJSON(manifest.vocab);
  } catch (err) {
    throw new CharlmError(`${file}: ${(err as Error).message}`);
  }
  if (vocab.size !== manifest.model.vocabSize) {
    throw new CharlmError(
      `${file}: the vocabulary has ${vocab.size} symbols but the model expects ${manifest.model.vocabSize}; the export is damaged`,
    );
  }
  const model = buildModel(manifest.model, null); // zeros: the weights are loaded next
  const shapes = new Map([...model.parameters()].map(([name, t]) => [name, t.shape]));
  const weights = fromTorchStateDict(manifest.model, stateDict, shapes, path.join(dir, TORCH_WEIGHTS));
  loadWeightsInto(
    model,
    { tensors: new Map([...weights].map(([k, t]) => [k, { dtype: "F32", ...t }])), metadata: {} },
    dir,
  );
  let optimizer: OptimizerState | null = null;
  if (manifest.optimizer && moments) {
    const { step, beta1, beta2, eps, weightDecay } = manifest.optimizer;
    const slots = new Map<string, Float32Array>();
    for (const [slot, torchName] of MOMENTS) {
      const prefix = `${torchName}.`;
      const sd: Weights = new Map(
        [...moments].filter(([k]) => k.startsWith(prefix)).map(([k, t]) => [k.slice(prefix.length), t]),
      );
      const back = fromTorchStateDict(manifest.model, sd, shapes, path.join(dir, TORCH_OPTIMIZER));
      for (const [name, t] of back) slots.set(`${slot}.${name}`, t.data);
    }
    const hyper = (await createOptimizer("adam", new Map(), { beta1, beta2, eps, weightDecay }).getState()).hyper;
    optimizer = { type: "adam", t: step, hyper, slots };
  }
  return { model, vocab, manifest, optimizer };
}

/** `charlm import DIR --out OUT`: a PyTorch export as a charlm checkpoint (for sample, eval, serve). */
export async function importTorchExport(
  dir: string,
  out: string,
  opts: { force?: boolean } = {},
): Promise<Awaited<ReturnType<typeof loadTorchExport>>> {
  const loaded = await loadTorchExport(dir);
  await checkTarget(out, opts.force ?? false, "checkpoint");
  let optimizer = null;
  if (loaded.optimizer) {
    optimizer = createOptimizer("adam", loaded.model.parameters() as Map<string, Param>, loaded.optimizer.hyper);
    optimizer.setState(loaded.optimizer);
  }
  await saveCheckpoint(out, { model: loaded.model, vocab: loaded.vocab, step: loaded.manifest.step, optimizer });
  return loaded;
}
