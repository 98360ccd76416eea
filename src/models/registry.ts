// The one place a config becomes a model: `type` picks the class. Also summary(), a Keras-style table of layers,
// output shapes and parameter counts.

import { Dense } from "../nn/dense.js";
import { Embedding } from "../nn/embedding.js";
import type { InitScheme } from "../nn/init.js";
import { RecurrentLayer } from "../nn/recurrent.js";
import { CharlmError } from "../util/errors.js";
import type { Rng } from "../util/rng.js";
import { parseModelConfig, type ModelConfig } from "./config.js";
import type { LanguageModel } from "./contract.js";
import { GptModel } from "./gpt.js";
import { RnnModel } from "./rnn.js";

/**
 * Build a freshly initialised model; all draws come from rng, so the same seed gives the same weights. With rng
 * null the parameters are zeros: use that when weights are loaded next (checkpoints) or only the shapes matter
 * (summary), since the orthogonal init of a 1024-unit LSTM costs seconds. `init` picks the recurrent model's
 * initialisers, Keras' or PyTorch's (see InitScheme); a GPT has one initialisation for both.
 */
export function buildModel(config: ModelConfig, rng: Rng | null, init: InitScheme = "keras"): LanguageModel {
  const cfg = parseModelConfig(config);
  const n = estimateParams(cfg);
  if (n > MAX_PARAMETERS) {
    throw new CharlmError(
      `model config: ${describeSize(n)} is too big to build (charlm holds at most ${describeSize(MAX_PARAMETERS)}); lower the units, embedding or layers`,
    );
  }
  switch (cfg.type) {
    case "rnn":
      return new RnnModel(cfg, rng, init);
    case "gpt":
      return new GptModel(cfg, rng);
    default:
      throw new CharlmError(`model config: unknown type ${JSON.stringify((cfg as { type: unknown }).type)}`);
  }
}

/**
 * The most parameters a model may have: 4 bytes each, so 1 GB of weights. Training holds about four copies
 * (weights, gradients, two optimizer slots), and the wasm kernels address 4 GiB in all; past this, typed arrays
 * fail deep inside with a RangeError instead of a sentence.
 */
export const MAX_PARAMETERS = 250_000_000;

/**
 * Parameters a config builds, counted from the config alone (before any allocation), as an upper bound: every
 * recurrent cell is given two bias vectors per gate (only the GRU has them) and every GPT linear layer a bias.
 */
export function estimateParams(cfg: ModelConfig): number {
  const V = cfg.vocabSize;
  if (cfg.type === "gpt") {
    const C = cfg.nEmbd;
    return V * C + cfg.blockSize * C + cfg.nLayer * (12 * C * C + 13 * C) + 2 * C + C * V + V;
  }
  const gates = cfg.cell === "lstm" ? 4 : cfg.cell === "gru" ? 3 : 1;
  const H = cfg.units;
  let n = V * cfg.embedding + H * V + V;
  for (let l = 0; l < cfg.layers; l++) n += gates * ((l === 0 ? cfg.embedding : H) * H + H * H + 2 * H);
  return n;
}

/** "123,456,789 parameters (0.49 GB of weights)". */
export function describeSize(params: number): string {
  const shown = params < 1e15 ? Math.round(params).toLocaleString("en-US") : params.toExponential(1);
  const gb = (params * 4) / 1e9;
  const size = gb < 10 ? gb.toPrecision(2) : gb < 1e15 ? Math.round(gb).toLocaleString("en-US") : gb.toExponential(1);
  return `${shown} parameters (${size} GB of weights)`;
}

/** Total number of scalar parameters. */
export function countParams(model: LanguageModel): number {
  let n = 0;
  for (const t of model.parameters().values()) n += t.size;
  return n;
}

/** One row of summary(): a layer, its output shape (null: the batch and time axes any batch fills), its parameters. */
export interface SummaryRow {
  name: string;
  type: string;
  outputShape: (number | null)[];
  params: number;
}

/** The rows of summary(), for the table and for --json. */
export function summaryRows(model: LanguageModel): SummaryRow[] {
  const rows: SummaryRow[] = [];
  const row = (name: string, type: string, width: number, params: number) =>
    rows.push({ name, type, outputShape: [null, null, width], params });
  if (model instanceof RnnModel) {
    const c = model.config;
    for (const layer of model.layers()) {
      let width = 0;
      if (layer instanceof Embedding) width = layer.dim;
      else if (layer instanceof RecurrentLayer) width = layer.units;
      else if (layer instanceof Dense) width = layer.units;
      row(layer.name, layer.kind, width, layer.countParams());
      if (layer instanceof RecurrentLayer && c.dropout > 0) row(`${layer.name}.dropout`, "Dropout", width, 0);
    }
  } else if (model instanceof GptModel) {
    for (const r of model.summaryRows()) row(r.name, r.kind, r.width, r.params);
  } else {
    for (const [name, t] of model.parameters())
      rows.push({ name, type: "Tensor", outputShape: t.shape, params: t.size });
  }
  return rows;
}

/** The model's name in summaries: "rnn-lstm", "gpt". */
export function modelTitle(model: LanguageModel): string {
  return `${String(model.config.type)}${"cell" in model.config ? `-${String(model.config.cell)}` : ""}`;
}

/**
 * A table like Keras' model.summary(): one row per layer with its output shape (None for the batch and time axes,
 * which any batch fills) and parameter count, then the totals.
 */
export function summary(model: LanguageModel): string {
  const rows = summaryRows(model).map((r) => [
    `${r.name} (${r.type})`,
    `(${r.outputShape.map((d) => d ?? "None").join(", ")})`,
    fmt(r.params),
  ]);
  const total = countParams(model);
  const w = [40, 24, 14];
  const line = (ch: string) => ch.repeat(w[0] + w[1] + w[2]);
  const row = (cells: string[]) => cells.map((s, i) => (i === 2 ? s.padStart(w[i]) : s.padEnd(w[i]))).join("");
  return [
    `Model: "${modelTitle(model)}"`,
    line("_"),
    row(["Layer (type)", "Output Shape", "Param #"]),
    line("="),
    ...rows.map(row),
    line("="),
    `Total params: ${fmt(total)} (${megabytes(total)})`,
    `Trainable params: ${fmt(total)}`,
    `Non-trainable params: 0`,
    line("_"),
  ].join("\n");
}

function fmt(n: number): string {
  return n.toLocaleString("en-US");
}

function megabytes(params: number): string {
  return `${((params * 4) / (1024 * 1024)).toFixed(2)} MB`;
}
