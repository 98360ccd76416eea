// Model configuration: a typed config with a default and a one-line comment per field. The training CLI layers a
// preset and flags over DEFAULT_MODEL_CONFIG; a checkpoint stores the resolved config and rebuilds the model from it
// with parseModelConfig, which rejects unknown keys and wrong types by name.

import { CharlmError } from "../util/errors.js";

export type CellType = "lstm" | "gru" | "rnn";

export interface RnnModelConfig {
  type: "rnn"; // the Keras-style sequential recurrent model (src/models/rnn.ts)
  cell: CellType; // recurrent layer: LSTM, GRU (reset-after) or SimpleRNN (tanh)
  vocabSize: number; // V: number of symbols (characters) in the vocabulary
  embedding: number; // E: embedding width
  units: number; // H: units per recurrent layer
  layers: number; // number of stacked recurrent layers
  dropout: number; // dropout rate on each recurrent layer's output during training (0 = none)
}

export interface GptModelConfig {
  type: "gpt"; // the GPT-style decoder-only transformer (src/models/gpt.ts)
  vocabSize: number; // V: number of symbols (characters) in the vocabulary
  blockSize: number; // context length: the most positions one forward pass sees (one learned embedding each)
  nLayer: number; // number of transformer blocks
  nHead: number; // attention heads per block; must divide nEmbd
  nEmbd: number; // C: channels of the residual stream
  dropout: number; // dropout rate on the embeddings and each residual branch during training (0 = none)
  bias: boolean; // biases in the linear layers and LayerNorms (false: none, as nanoGPT's bias=False)
}

/** Every model config; `type` picks the model in src/models/registry.ts. */
export type ModelConfig = RnnModelConfig | GptModelConfig;

export const DEFAULT_MODEL_CONFIG: RnnModelConfig = {
  type: "rnn",
  cell: "lstm",
  vocabSize: 65,
  embedding: 256,
  units: 1024,
  layers: 1,
  dropout: 0,
};

/** nanoGPT's Shakespeare-character model (config/train_shakespeare_char.py); too slow for CPU, so presets shrink it. */
export const DEFAULT_GPT_CONFIG: GptModelConfig = {
  type: "gpt",
  vocabSize: 65,
  blockSize: 256,
  nLayer: 6,
  nHead: 6,
  nEmbd: 384,
  dropout: 0.2,
  bias: false,
};

const CELLS: readonly CellType[] = ["lstm", "gru", "rnn"];

/**
 * Validate a config read from JSON (a checkpoint manifest, a preset). `where` names its source in error messages,
 * e.g. "runs/a/charlm.json: model config". A config whose type is known statically parses to that config's type.
 */
export function parseModelConfig(
  raw: RnnModelConfig | { type: "rnn"; [key: string]: unknown },
  where?: string,
): RnnModelConfig;
export function parseModelConfig(
  raw: GptModelConfig | { type: "gpt"; [key: string]: unknown },
  where?: string,
): GptModelConfig;
export function parseModelConfig(raw: unknown, where?: string): ModelConfig;
export function parseModelConfig(raw: unknown, where = "model config"): ModelConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new CharlmError(`${where}: expected an object with a "type" field; rewrite it as JSON like {"type":"rnn"}`);
  }
  const obj = raw as Record<string, unknown>;
  if (obj.type === "gpt") return parseGptConfig(obj, where);
  if (obj.type !== "rnn") {
    throw new CharlmError(`${where}: unknown model type ${JSON.stringify(obj.type)}; the known types are "rnn", "gpt"`);
  }
  const known = Object.keys(DEFAULT_MODEL_CONFIG);
  for (const key of Object.keys(obj)) {
    if (!known.includes(key)) {
      throw new CharlmError(`${where}: unknown key "${key}"; the keys are ${known.join(", ")}`);
    }
  }
  const cfg = { ...DEFAULT_MODEL_CONFIG, ...obj } as RnnModelConfig;
  if (!CELLS.includes(cfg.cell)) {
    throw new CharlmError(`${where}: "cell" is ${JSON.stringify(cfg.cell)}; use one of ${CELLS.join(", ")}`);
  }
  for (const key of ["vocabSize", "embedding", "units", "layers"] as const) {
    const v = cfg[key];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
      throw new CharlmError(`${where}: "${key}" is ${JSON.stringify(v)}; use a positive integer`);
    }
  }
  if (typeof cfg.dropout !== "number" || !(cfg.dropout >= 0 && cfg.dropout < 1)) {
    throw new CharlmError(`${where}: "dropout" is ${JSON.stringify(cfg.dropout)}; use a number in [0, 1)`);
  }
  return cfg;
}

function parseGptConfig(obj: Record<string, unknown>, where: string): GptModelConfig {
  const known = Object.keys(DEFAULT_GPT_CONFIG);
  for (const key of Object.keys(obj)) {
    if (!known.includes(key)) {
      throw new CharlmError(`${where}: unknown key "${key}"; the keys are ${known.join(", ")}`);
    }
  }
  const cfg = { ...DEFAULT_GPT_CONFIG, ...obj } as GptModelConfig;
  for (const key of ["vocabSize", "blockSize", "nLayer", "nHead", "nEmbd"] as const) {
    const v = cfg[key];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
      throw new CharlmError(`${where}: "${key}" is ${JSON.stringify(v)}; use a positive integer`);
    }
  }
  if (cfg.nEmbd % cfg.nHead !== 0) {
    throw new CharlmError(
      `${where}: "nEmbd" ${cfg.nEmbd} does not split into ${cfg.nHead} heads; make nEmbd a multiple of nHead`,
    );
  }
  if (typeof cfg.dropout !== "number" || !(cfg.dropout >= 0 && cfg.dropout < 1)) {
    throw new CharlmError(`${where}: "dropout" is ${JSON.stringify(cfg.dropout)}; use a number in [0, 1)`);
  }
  if (typeof cfg.bias !== "boolean") {
    throw new CharlmError(`${where}: "bias" is ${JSON.stringify(cfg.bias)}; use true or false`);
  }
  return cfg;
}
