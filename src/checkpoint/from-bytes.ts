// A checkpoint's model from bytes already in memory (a manifest's JSON and model.safetensors), for readers without
// a file system: the browser entry point and the web page. No Node built-ins here or below.

import { Vocab } from "../data/vocab.js";
import { parseModelConfig } from "../models/config.js";
import type { LanguageModel } from "../models/contract.js";
import { buildModel } from "../models/registry.js";
import { CharlmError } from "../util/errors.js";
import { decodeSafetensors } from "./safetensors.js";
import { loadWeightsInto } from "./weights.js";

/** Rebuild the model a manifest describes and load `weights` (model.safetensors) into it; `where` names the source. */
export function modelFromBytes(
  manifest: { model?: unknown; vocab?: unknown },
  weights: Uint8Array,
  where: string,
): { model: LanguageModel; vocab: Vocab } {
  const config = parseModelConfig(manifest.model, `${where}: model`);
  let vocab: Vocab;
  try {
    vocab = Vocab.fromJSON(manifest.vocab);
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
