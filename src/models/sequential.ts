// The Keras vocabulary for the recurrent stack: describe the model as a list of layers, as one would write
//
//   keras.Sequential([Embedding(65, 256), LSTM(1024, return_sequences=True), Dropout(0.2), Dense(65)])
//
// and get the same model as from a config:
//
//   sequential([embedding(65, 256), lstm(1024), dropout(0.2), dense(65)], new Rng(42))
//
// The stack charlm trains has one shape: an embedding, one or more recurrent layers of one cell type and width,
// optionally a dropout of one rate after each of them, and a dense layer back to the vocabulary. A list outside that
// shape is refused with a message saying which layer does not fit.

import { CharlmError } from "../util/errors.js";
import type { Rng } from "../util/rng.js";
import { parseModelConfig, type CellType, type RnnModelConfig } from "./config.js";
import { RnnModel } from "./rnn.js";

export type LayerSpec =
  | { kind: "embedding"; vocabSize: number; dim: number }
  | { kind: CellType; units: number }
  | { kind: "dropout"; rate: number }
  | { kind: "dense"; units: number };

export const embedding = (vocabSize: number, dim: number): LayerSpec => ({ kind: "embedding", vocabSize, dim });
export const lstm = (units: number): LayerSpec => ({ kind: "lstm", units });
export const gru = (units: number): LayerSpec => ({ kind: "gru", units });
export const simpleRNN = (units: number): LayerSpec => ({ kind: "rnn", units });
export const dropout = (rate: number): LayerSpec => ({ kind: "dropout", rate });
export const dense = (units: number): LayerSpec => ({ kind: "dense", units });

/** The model config a layer list describes; throws a CharlmError naming the layer that does not fit. */
export function configFromLayers(layers: LayerSpec[]): RnnModelConfig {
  const where = (i: number) => `layer ${i} (${layers[i]?.kind ?? "missing"})`;
  const first = layers[0];
  if (!first || first.kind !== "embedding") {
    throw new CharlmError(`${where(0)}: the model must start with embedding(vocabSize, dim)`);
  }
  const last = layers[layers.length - 1];
  if (layers.length < 2 || last.kind !== "dense") {
    throw new CharlmError(`${where(layers.length - 1)}: the model must end with dense(vocabSize)`);
  }
  if (last.units !== first.vocabSize) {
    throw new CharlmError(
      `${where(layers.length - 1)}: dense(${last.units}) must predict the ${first.vocabSize} symbols of the embedding`,
    );
  }
  let cell: CellType | null = null;
  let units = 0;
  let count = 0;
  let rate: number | null = null;
  for (let i = 1; i < layers.length - 1; i++) {
    const l = layers[i];
    if (l.kind === "lstm" || l.kind === "gru" || l.kind === "rnn") {
      if (cell && (l.kind !== cell || l.units !== units)) {
        throw new CharlmError(`${where(i)}: every recurrent layer must be ${cell}(${units}) like the first`);
      }
      cell = l.kind;
      units = l.units;
      count++;
      const next = layers[i + 1];
      const r = next.kind === "dropout" ? next.rate : 0;
      if (rate !== null && r !== rate) {
        throw new CharlmError(`${where(i + 1)}: put the same dropout after every recurrent layer (or none after any)`);
      }
      rate = r;
    } else if (l.kind === "dropout") {
      const prev = layers[i - 1].kind;
      if (prev !== "lstm" && prev !== "gru" && prev !== "rnn") {
        throw new CharlmError(`${where(i)}: dropout goes right after a recurrent layer`);
      }
    } else {
      throw new CharlmError(`${where(i)}: only recurrent layers and dropout go between embedding and dense`);
    }
  }
  if (!cell) throw new CharlmError(`${where(1)}: add at least one lstm(units), gru(units) or simpleRNN(units)`);
  return {
    type: "rnn",
    cell,
    vocabSize: first.vocabSize,
    embedding: first.dim,
    units,
    layers: count,
    dropout: rate ?? 0,
  };
}

/** Build the model a Keras-style layer list describes (same as buildModel(configFromLayers(layers), rng)). */
export function sequential(layers: LayerSpec[], rng: Rng | null): RnnModel {
  return new RnnModel(parseModelConfig(configFromLayers(layers), "sequential model"), rng);
}
