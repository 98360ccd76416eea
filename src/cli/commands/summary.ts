// `charlm summary`: a Keras-style table of layers, output shapes and parameter counts, for a checkpoint or for
// the model a training config would build.

import type { LanguageModel } from "../../models/contract.js";
import { loadCheckpoint, type Manifest } from "../../checkpoint/checkpoint.js";
import {
  PRESETS,
  resolveTrainConfig,
  TRAIN_FIELDS,
  checkTrainableSize,
  configFromFlags,
  modelConfigFor,
} from "../../train/config.js";
import { buildModel, countParams, modelTitle, summary, summaryRows } from "../../models/registry.js";
import { CHECKPOINT_HELP, defineCommand } from "../command.js";
import type { Schema } from "../flags.js";

const modelFields = ["type", "cell", "embedding", "units", "layers", "heads", "dropout", "seqLength"] as const;

export const summaryCommand = defineCommand({
  name: "summary",
  summary: "print a model's layers, output shapes and parameter counts",
  schema: {
    model: { type: "string", help: `${CHECKPOINT_HELP}; or describe a model with the flags below`, arg: "DIR" },
    preset: {
      type: "string",
      help: `training preset: ${Object.keys(PRESETS).join(", ")}`,
      default: "cpu",
      arg: "NAME",
    },
    vocabSize: { type: "int", help: "vocabulary size (Tiny Shakespeare has 65)", default: 65, min: 1, arg: "V" },
    ...(Object.fromEntries(modelFields.map((k) => [k, TRAIN_FIELDS[k]])) as Schema),
    json: { type: "bool", help: "print one JSON document {model, layers, totalParams, ...} instead", default: false },
  },
  examples: [
    "charlm summary --model runs/shakespeare",
    "charlm summary --preset tutorial",
    "charlm summary --cell gru --units 512 --layers 2",
  ],
  async run(flags) {
    const show = (model: LanguageModel, manifest?: Manifest): void => {
      if (flags.json) {
        const layers = summaryRows(model);
        const extra = manifest ? { bestValLoss: manifest.bestValLoss, step: manifest.step, epoch: manifest.epoch } : {};
        process.stdout.write(
          JSON.stringify({
            model: modelTitle(model),
            config: model.config,
            layers,
            totalParams: countParams(model),
            ...extra,
          }) + "\n",
        );
        return;
      }
      process.stdout.write(summary(model) + "\n");
      if (manifest && manifest.bestValLoss !== null) {
        process.stdout.write(
          `Best validation loss: ${manifest.bestValLoss.toFixed(4)} nats/${manifest.tokenizer.kind === "char" ? "char" : "token"} after ${manifest.step} steps\n`,
        );
      }
    };
    if (flags.model) {
      const { model, manifest } = await loadCheckpoint(flags.model);
      show(model, manifest);
      return;
    }
    const cfg = resolveTrainConfig({
      preset: flags.preset,
      overrides: configFromFlags(flags as unknown as Record<string, unknown> & { _given: Set<string> }),
    });
    checkTrainableSize(cfg);
    // Zero weights: only the shapes matter here, and a big model's random init costs seconds.
    show(buildModel(modelConfigFor(cfg, flags.vocabSize), null));
  },
});
