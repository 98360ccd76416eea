// `charlm export DIR --to onnx OUT`: the model as an ONNX graph (onnx.ts) beside a JSON that says how to use it.
//
//   model.onnx          the graph with the weights inside
//   charlm-onnx.json    format "charlm-onnx-export", version 1: the model config, the vocabulary (tokens are its
//                       indices; "<unk>" at `unk`, -1 if none), and the graph's inputs and outputs with their shapes
//
// Both are written atomically, the JSON last.

import { Vocab } from "../data/vocab.js";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { parseModelConfig } from "../models/config.js";
import { writeFileAtomic } from "../checkpoint/atomic.js";
import { loadCheckpoint, prettyJson } from "../checkpoint/checkpoint.js";
import { ONNX_OPSET, onnxModel } from "./onnx.js";
import { checkTarget } from "./torch-export.js";
import type { Weights } from "./torch-names.js";

export const ONNX_MANIFEST = "charlm-onnx.json";
export const ONNX_FILE = "model.onnx";

export async function exportCheckpointToOnnx(
  dir: string,
  out: string,
  opts: { force?: boolean } = {},
): Promise<{ bytes: number; io: Record<string, string> }> {
  const { model, vocab, manifest } = await loadCheckpoint(dir);
  await checkTarget(out, opts.force ?? false, "export", ONNX_MANIFEST);
  const config = parseModelConfig(model.config);
  const weights: Weights = new Map([...model.parameters()].map(([k, t]) => [k, { shape: t.shape, data: t.data }]));
  const bytes = onnxModel(config, weights);
  const io: Record<string, string> =
    config.type === "rnn"
      ? {
          tokens: "int64 (batch, time): vocabulary indices",
          h0: `float32 (${config.layers}, batch, ${config.units}): initial hidden state, zeros to start`,
          ...(config.cell === "lstm"
            ? { c0: `float32 (${config.layers}, batch, ${config.units}): initial cell state` }
            : {}),
          logits: `float32 (batch, time, ${config.vocabSize}): next-character logits`,
          hN: "float32: hidden state after the last step; feed it back as h0 to continue (time 1 = one generation step)",
          ...(config.cell === "lstm" ? { cN: "float32: cell state after the last step; feed it back as c0" } : {}),
        }
      : {
          tokens: "int64 (batch, time): vocabulary indices",
          past_k: `float32 (${config.nLayer}, batch, ${config.nHead}, past, ${config.nEmbd / config.nHead}): cached keys of the tokens before these, past = 0 to start; past + time <= ${config.blockSize}`,
          past_v: "float32, as past_k: cached values",
          logits: `float32 (batch, time, ${config.vocabSize}): next-character logits`,
          present_k:
            "float32 (..., past + time, ...): feed back as past_k for the next token; once the window is full, start again from an empty cache on the last blockSize tokens",
          present_v: "float32: feed back as past_v",
        };
  await fs.mkdir(out, { recursive: true });
  await writeFileAtomic(path.join(out, ONNX_FILE), bytes);
  const json = {
    format: "charlm-onnx-export",
    version: 1,
    savedAt: new Date().toISOString(),
    opset: ONNX_OPSET,
    model: config,
    // A char model's vocabulary as before; a word or bpe model's tokenizer state, as its checkpoint stores it.
    ...(vocab instanceof Vocab ? { vocab: vocab.toJSON() } : { tokenizer: vocab.serialize() }),
    step: manifest.step,
    io,
  };
  await writeFileAtomic(path.join(out, ONNX_MANIFEST), prettyJson(json) + "\n");
  return { bytes: bytes.length, io };
}
