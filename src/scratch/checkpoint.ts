// Checkpoints of the from-scratch RNN: a directory with
//   scratch.json          manifest: format name + version, config, vocabulary, iteration / epoch / data position,
//                         RNG state, smoothed loss, last validation loss, and the layout and sha256 of the weights
//   scratch.weights.bin   float64 little-endian: the parameters, Adagrad's memory and the carried hidden state
// Float64 so that a resumed run continues bit for bit as if it had never stopped. Both files are written atomically
// (temp, fsync, rename), weights first; the manifest's sha256 of the weights catches a pair from different saves.

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "../checkpoint/atomic.js";
import { sha256 } from "../data/files.js";
import { Vocab, type VocabJSON } from "../data/vocab.js";
import { CharlmError } from "../util/errors.js";
import { Rng, type RngState } from "../util/rng.js";
import { PARAM_NAMES, paramShapes, ScratchRNN } from "./rnn.js";
import { ScratchTrainer, type ScratchConfig, type TrainerState } from "./train.js";

export const SCRATCH_FORMAT = "charlm-scratch-rnn";
export const SCRATCH_VERSION = 1;
export const MANIFEST_FILE = "scratch.json";
export const WEIGHTS_FILE = "scratch.weights.bin";

interface TensorEntry {
  name: string;
  shape: number[];
  /** Offset in float64 elements. */
  offset: number;
}

export interface ScratchManifest {
  format: typeof SCRATCH_FORMAT;
  version: typeof SCRATCH_VERSION;
  config: ScratchConfig;
  vocab: VocabJSON;
  /** What it was trained on: name and number of training characters (a resumed run must match). */
  data: { name: string; trainChars: number };
  iteration: number;
  epoch: number;
  position: number;
  smoothLoss: number;
  rng: RngState;
  /** Last evaluation, if any. */
  validation?: { split: string; nats: number; bits: number; chars: number };
  weights: { file: string; dtype: "float64"; byteLength: number; sha256: string; tensors: TensorEntry[] };
  savedAt: string;
}

export interface ScratchCheckpoint {
  model: ScratchRNN;
  vocab: Vocab;
  config: ScratchConfig;
  state: TrainerState;
  rng: Rng;
  manifest: ScratchManifest;
}

export async function saveScratchCheckpoint(
  dir: string,
  c: {
    trainer: ScratchTrainer;
    vocab: Vocab;
    rng: Rng;
    data: { name: string; trainChars: number };
    validation?: ScratchManifest["validation"];
  },
): Promise<ScratchManifest> {
  const { model, config, state } = c.trainer;
  // Layout: parameters, then Adagrad memory ("m" + name), then the hidden state to carry into the next chunk.
  const parts: [string, number[], Float64Array][] = [];
  const shapes = paramShapes(model.V, model.H);
  for (const name of PARAM_NAMES) parts.push([name, shapes[name], model.params[name]]);
  for (const name of PARAM_NAMES) parts.push(["m" + name, shapes[name], model.memory[name]]);
  parts.push(["hprev", [model.H], state.hprev]);
  const total = parts.reduce((n, [, , a]) => n + a.length, 0);
  const buf = Buffer.alloc(total * 8);
  const tensors: TensorEntry[] = [];
  let off = 0;
  for (const [name, shape, a] of parts) {
    tensors.push({ name, shape, offset: off });
    for (let i = 0; i < a.length; i++) buf.writeDoubleLE(a[i], (off + i) * 8);
    off += a.length;
  }
  const manifest: ScratchManifest = {
    format: SCRATCH_FORMAT,
    version: SCRATCH_VERSION,
    config: { ...config },
    vocab: c.vocab.toJSON(),
    data: c.data,
    iteration: state.iteration,
    epoch: state.epoch,
    position: state.position,
    smoothLoss: state.smoothLoss,
    rng: c.rng.getState(),
    ...(c.validation ? { validation: c.validation } : {}),
    weights: { file: WEIGHTS_FILE, dtype: "float64", byteLength: buf.length, sha256: sha256(buf), tensors },
    savedAt: new Date().toISOString(),
  };
  await writeFileAtomic(join(dir, WEIGHTS_FILE), buf);
  await writeFileAtomic(join(dir, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + "\n");
  return manifest;
}

export async function loadScratchCheckpoint(dir: string): Promise<ScratchCheckpoint> {
  const mpath = join(dir, MANIFEST_FILE);
  const retrain = `train one with 'charlm scratch --out ${dir}'`;
  let raw: string;
  try {
    raw = await readFile(mpath, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "ENOENT" && code !== "ENOTDIR") throw new CharlmError(`${mpath}: cannot read (${code}); check it`);
    const other = await readFile(join(dir, "charlm.json"), "utf8").catch(() => null);
    if (other !== null) {
      throw new CharlmError(`${dir}: holds a charlm-checkpoint, not a scratch RNN; sample it with 'charlm sample'`);
    }
    throw new CharlmError(`${dir}: no scratch RNN checkpoint here (${MANIFEST_FILE} missing); ${retrain}`);
  }
  let m: ScratchManifest;
  try {
    m = JSON.parse(raw) as ScratchManifest;
  } catch {
    throw new CharlmError(`${mpath}: damaged (not valid JSON); restore it from a backup or ${retrain}`);
  }
  if (m?.format !== SCRATCH_FORMAT) {
    throw new CharlmError(`${mpath}: format '${String(m?.format)}' is not '${SCRATCH_FORMAT}'; ${retrain}`);
  }
  if (m.version !== SCRATCH_VERSION) {
    throw new CharlmError(
      `${mpath}: version ${String(m.version)} of ${SCRATCH_FORMAT}, this charlm reads version ${SCRATCH_VERSION}; use a matching charlm or retrain`,
    );
  }
  const damaged = (what: string) => new CharlmError(`${mpath}: damaged manifest (${what}); ${retrain}`);
  const cfg = m.config;
  if (!cfg || ![cfg.hidden, cfg.seqLength].every((x) => Number.isInteger(x) && x > 0)) throw damaged("config");
  if (!(cfg.learningRate > 0) || !(cfg.clip > 0)) throw damaged("config");
  const vocab = Vocab.fromJSON(m.vocab);
  const V = vocab.size;
  const H = cfg.hidden;

  const wpath = join(dir, m.weights?.file ?? WEIGHTS_FILE);
  let buf: Buffer;
  try {
    buf = await readFile(wpath);
  } catch {
    throw new CharlmError(`${wpath}: weights file missing or unreadable; restore it or ${retrain}`);
  }
  if (buf.length !== m.weights.byteLength || sha256(buf) !== m.weights.sha256) {
    throw new CharlmError(`${wpath}: damaged weights (size or sha256 differs from the manifest); ${retrain}`);
  }
  const model = new ScratchRNN(V, H, new Rng(0));
  const shapes = paramShapes(V, H);
  const want = new Map<string, [number[], Float64Array]>();
  for (const name of PARAM_NAMES) {
    want.set(name, [shapes[name], model.params[name]]);
    want.set("m" + name, [shapes[name], model.memory[name]]);
  }
  const hprev = new Float64Array(H);
  want.set("hprev", [[H], hprev]);
  for (const [name, [shape, target]] of want) {
    const e = m.weights.tensors?.find((t) => t.name === name);
    if (!e || e.shape.join(",") !== shape.join(",") || (e.offset + target.length) * 8 > buf.length) {
      throw damaged(`tensor ${name} missing or not of shape [${shape}]`);
    }
    for (let i = 0; i < target.length; i++) target[i] = buf.readDoubleLE((e.offset + i) * 8);
  }
  const rng = new Rng(0);
  try {
    rng.setState(m.rng);
  } catch {
    throw damaged("rng state");
  }
  const state: TrainerState = {
    iteration: m.iteration,
    epoch: m.epoch,
    position: m.position,
    hprev,
    smoothLoss: m.smoothLoss,
  };
  if (![state.iteration, state.epoch, state.position].every((x) => Number.isInteger(x) && x >= 0)) {
    throw damaged("training position");
  }
  return { model, vocab, config: { ...cfg }, state, rng, manifest: m };
}
