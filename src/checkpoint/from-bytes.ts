// A checkpoint's model from bytes already in memory (a manifest's JSON and model.safetensors), for readers without
// a file system: the browser entry point and the web page. No Node built-ins here or below.

import { tokenizerFromJSON, type Tokenizer } from "../data/tokenizer.js";
import { parseModelConfig } from "../models/config.js";
import type { LanguageModel } from "../models/contract.js";
import { buildModel } from "../models/registry.js";
import { CharlmError } from "../util/errors.js";
import { decodeSafetensors } from "./safetensors.js";
import { loadWeightsInto } from "./weights.js";

/** Rebuild the model a manifest describes and load `weights` (model.safetensors) into it; `where` names the source. */
export function modelFromBytes(
  manifest: { model?: unknown; tokenizer?: unknown; vocab?: unknown },
  weights: Uint8Array,
  where: string,
): { model: LanguageModel; vocab: Tokenizer } {
  const config = parseModelConfig(manifest.model, `${where}: model`);
  let vocab: Tokenizer;
  try {
    // Version 2 has a tokenizer; version 1 a character vocabulary.
    vocab = tokenizerFromJSON(manifest.tokenizer ?? manifest.vocab);
  } catch (err) {
    throw new CharlmError(`${where}: ${(err as Error).message}`);
  }
  if (vocab.size !== config.vocabSize) {
    throw new CharlmError(
      `${where}: the vocabulary has ${vocab.size} symbols but the model expects ${config.vocabSize}; the checkpoint is damaged`,
    );
  }
  const model = buildModel(config, null); // zeros: the weights are loaded next
  loadWeightsInto(model, decodeSafetensors(weights, `${where}/model.safetensors`), where);
  return { model, vocab };
}
