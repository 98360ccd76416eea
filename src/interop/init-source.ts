// The starting point of a fine-tuning run (`charlm train --init-from DIR`): a charlm checkpoint (charlm.json, or a
// tar of one) or a PyTorch export (charlm-torch.json, written by `charlm export --to torch` or python/train.py), read
// as a charlm model with its vocabulary. Only the weights are taken: the new run starts its optimizer, schedule and
// step count afresh, so the source's optimizer state is left unread. It lives beside the PyTorch reader, not in
// src/train, because it reads both formats and the export reader already builds on the checkpoint code.
//
// The tensors are made on the backend current when this is called: call it after the run's backend is chosen.

import { promises as fs } from "node:fs";
import * as path from "node:path";
import type { Tokenizer } from "../data/tokenizer.js";
import { Vocab } from "../data/vocab.js";
import type { LanguageModel } from "../models/contract.js";
import { parseModelConfig, type ModelConfig } from "../models/config.js";
import { buildModel } from "../models/registry.js";
import { MANIFEST, isFile, loadCheckpoint, openCheckpoint, type InitFrom } from "../checkpoint/checkpoint.js";
import { checkPartialConfig, type TrainConfig } from "../train/config.js";
import { CharlmError } from "../util/errors.js";
import { Rng } from "../util/rng.js";
import { TORCH_MANIFEST, loadTorchExport, readTorchExport } from "./torch-export.js";

export interface InitSource {
  model: LanguageModel;
  vocab: Tokenizer; // the source's tokenizer, kept as it is: its size is a dimension of the weights
  train: Partial<TrainConfig> | null; // the training config the source came from, when it recorded one
  initFrom: InitFrom;
}

const exists = (p: string): Promise<boolean> =>
  fs.stat(p).then(
    () => true,
    () => false,
  );

/** Which of the two formats `dir` holds; a line naming what to pass when it is neither. */
async function formatOf(dir: string): Promise<InitFrom["format"]> {
  // A file: a tar of a checkpoint (the web page's download), which openCheckpoint reads or refuses in one line.
  if (await isFile(dir)) return "charlm";
  // charlm.json.next: a checkpoint caught mid-save still reads (readManifest goes by it).
  if ((await exists(path.join(dir, MANIFEST))) || (await exists(path.join(dir, MANIFEST + ".next")))) return "charlm";
  if (await exists(path.join(dir, TORCH_MANIFEST))) return "torch";
  throw new CharlmError(
    (await exists(dir))
      ? `${dir}: neither a charlm checkpoint (${MANIFEST}) nor a PyTorch export (${TORCH_MANIFEST}); pass to --init-from the --out directory of a charlm train run or a directory written by charlm export --to torch`
      : `${dir}: no such directory; pass to --init-from the --out directory of a charlm train run or a PyTorch export`,
  );
}

/**
 * The model config of the source in `dir`, read without its tensors: enough to resolve the new run's config before
 * its backend is chosen.
 */
export async function peekInitSource(
  dir: string,
): Promise<{ format: InitFrom["format"]; model: ModelConfig; train: Partial<TrainConfig> | null }> {
  const format = await formatOf(dir);
  if (format === "charlm") {
    const m = (await openCheckpoint(dir)).manifest;
    return { format, model: m.model, train: m.train ? checkPartialConfig(m.train, `${dir}: train`) : null };
  }
  const { manifest } = await readTorchExport(dir);
  return { format, model: manifest.model, train: manifest.train };
}

/** The source's model (its weights on the current backend, with `dropout` while training) and vocabulary. */
export async function loadInitSource(dir: string, opts: { dropout?: number } = {}): Promise<InitSource> {
  const format = await formatOf(dir);
  const loaded = format === "charlm" ? await loadCheckpoint(dir) : await loadTorchExport(dir);
  const { vocab, manifest } = loaded;
  let model = loaded.model;
  const config = parseModelConfig(model.config);
  if (opts.dropout !== undefined && opts.dropout !== config.dropout) {
    // Dropout has no weights: the same parameters in a model built with the new rate.
    const rebuilt = buildModel({ ...config, dropout: opts.dropout }, null);
    const params = model.parameters();
    for (const [name, p] of rebuilt.parameters()) p.write(await params.get(name)!.read());
    for (const p of params.values()) p.dispose(); // backend memory (wasm, webgpu) is not garbage-collected
    model = rebuilt;
  }
  return {
    model,
    vocab,
    train: manifest.train,
    initFrom: { path: path.resolve(dir), step: manifest.step, format },
  };
}

/**
 * `--extend-vocab`: the source's vocabulary with `chars` appended (the old ids stay), and its model with a row of
 * the embedding and of the output layer for each, initialised as a new model's would be from `seed`. Every other
 * weight, and the old rows, are the source's. The vocabulary size is one dimension of a few parameters (rnn:
 * embedding (V, E), dense (H, V) and (V); gpt: wte (V, C), head (C, V)), so each parameter is copied over the
 * region its old shape covers in the new one.
 */
export async function extendVocab(
  source: InitSource,
  chars: string[],
  seed: number,
): Promise<{ model: LanguageModel; vocab: Vocab }> {
  if (!(source.vocab instanceof Vocab)) {
    throw new CharlmError(
      `--extend-vocab adds characters to a char vocabulary, and ${source.initFrom.path} uses the ${source.vocab.kind} tokenizer; drop --extend-vocab (its ${source.vocab.kind === "bpe" ? "byte-level tokens encode any text" : "unknown words map to <unk>"})`,
    );
  }
  const vocab = new Vocab([...source.vocab.chars, ...chars], source.vocab.unk);
  const config = parseModelConfig(source.model.config);
  const model = buildModel({ ...config, vocabSize: vocab.size }, new Rng(seed));
  const old = source.model.parameters();
  for (const [name, p] of model.parameters()) {
    const from = old.get(name)!;
    const [rows, cols] = from.shape.length === 2 ? from.shape : [1, from.shape[0]];
    const width = p.shape.length === 2 ? p.shape[1] : p.shape[0];
    const src = await from.read();
    const dst = await p.read();
    for (let i = 0; i < rows; i++) dst.set(src.subarray(i * cols, (i + 1) * cols), i * width);
    p.write(dst);
    from.dispose();
  }
  return { model, vocab };
}
