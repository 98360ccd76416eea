// Adapts a trained checkpoint (a directory or a tar of one) to what the server serves: the card from its manifest,
// the vocabulary check, generation through the one sampler (src/sample/generate.ts), and the files the in-browser
// mode downloads.

import { basename, join, resolve } from "node:path";
import type { LanguageModel } from "../models/contract.js";
import { countParams, summary } from "../models/registry.js";
import { generate } from "../sample/generate.js";
import { isFile, loadCheckpoint, MANIFEST, WEIGHTS, type Manifest } from "../checkpoint/checkpoint.js";
import type { Tokenizer } from "../data/tokenizer.js";
import { getBackend, lostDevice, renewLostBackend } from "../engine/backends/index.js";
import { DeviceLostError, UsageError } from "../util/errors.js";
import type { GenerateRequest, ModelCard, ServedFile, ServedModel } from "./served-model.js";

/** Loss-curve pictures a training run may leave next to its checkpoint; the first one found is served. */
const LOSS_PICTURES = ["loss.svg", "loss.png", "loss-curve.svg", "loss-curve.png"];

const NAME = /^[A-Za-z0-9._-]{1,100}$/;

/** The card shown by /api/models and the page, from a loaded checkpoint. */
export function cardOf(name: string, model: LanguageModel, vocab: Tokenizer, manifest: Manifest): ModelCard {
  const cfg = manifest.model as unknown as Record<string, unknown>;
  const history = manifest.history ?? [];
  const lastVal = history.length ? history[history.length - 1].valLoss : null;
  const validationLoss = manifest.bestValLoss ?? (Number.isFinite(lastVal) ? lastVal : null);
  return {
    name,
    type: [cfg.type, cfg.cell].filter((x) => typeof x === "string").join("-"),
    architecture: summary(model),
    parameters: countParams(model),
    vocabSize: vocab.size,
    tokenizer: vocab.kind,
    validationLoss,
    trainingSeconds: manifest.elapsedSeconds > 0 ? manifest.elapsedSeconds : null,
    steps: manifest.step ?? null,
    config: { ...cfg, data: manifest.dataName, preset: manifest.preset },
    history: history.map((h) => ({ step: h.step, trainLoss: h.trainLoss, valLoss: h.valLoss })),
  };
}

type Loaded = { model: LanguageModel; vocab: Tokenizer; manifest: Manifest };

/**
 * Serve a loaded model under `name`. With `reload` (the checkpoint read again), a model whose GPU device was lost is
 * loaded again on a new device before its next generation: the request that was running when the device went gets
 * DeviceLostError (the server answers 503, send it again), and those after it are served as before.
 */
export function servedModel(
  name: string,
  loaded: Loaded,
  files?: ServedModel["files"],
  reload?: () => Promise<Loaded>,
): ServedModel {
  const { vocab, manifest } = loaded;
  let model = loaded.model;
  // the backend holding the model's weights
  let on = model.parameters().values().next().value?.backend ?? getBackend();
  let renewing: Promise<void> | null = null;
  const ready = async (): Promise<LanguageModel> => {
    const why = reload ? lostDevice(on) : null;
    if (why !== null) {
      renewing ??= (async () => {
        process.stderr.write(`model ${name}: the GPU device was lost (${why}); loading the model on a new one\n`);
        try {
          on = await renewLostBackend(on);
          model = (await reload!()).model;
        } catch (err) {
          const reason = (err instanceof Error ? err.message : String(err)).split("\n")[0];
          throw new DeviceLostError(
            why,
            `the GPU device was lost (${why}) and no new one could take the model (${reason}); restart charlm ` +
              "serve, or serve with --backend wasm",
          );
        }
      })().finally(() => (renewing = null));
      await renewing;
    }
    return model;
  };
  async function* generateText(req: GenerateRequest, signal: AbortSignal, onStop?: () => void) {
    const m = await ready();
    try {
      yield* generate(m, vocab, {
        prime: req.prime,
        length: req.length,
        temperature: req.temperature,
        topK: req.topK > 0 ? req.topK : undefined,
        topP: req.topP < 1 ? req.topP : undefined,
        seed: req.seed,
        stop: req.stop,
        windowStride: req.windowStride,
        signal,
        onStop,
      });
    } catch (err) {
      if (!(err instanceof DeviceLostError) || !reload) throw err;
      throw new DeviceLostError(
        err.detail,
        `the GPU device was lost (${err.detail}) while generating; the server loads its models on a new device: ` +
          "send the request again",
      );
    }
  }
  return {
    card: cardOf(name, model, vocab, manifest),
    files,
    unknownChars: (text) => vocab.unknownChars(text),
    generate: generateText,
  };
}

/**
 * Load one checkpoint: a directory, or a tar of one (the web page's download), whose files the server then hands
 * on from memory. `name` defaults to the base name (less ".tar").
 */
export async function fromCheckpoint(dir: string, name?: string): Promise<ServedModel> {
  const abs = resolve(dir);
  const modelName =
    name ??
    basename(abs)
      .replace(/\.tar$/i, "")
      .replace(/[^A-Za-z0-9._-]/g, "-");
  if (!NAME.test(modelName)) {
    throw new UsageError(
      `--model ${dir}: '${modelName}' is not a usable model name; give one with --model NAME=DIR (letters, digits, . _ -)`,
    );
  }
  const loaded = await loadCheckpoint(abs);
  const { archive } = loaded.files;
  const fileOf = async (f: string): Promise<ServedFile | undefined> => {
    if (archive) return archive.has(f) ? { name: f, bytes: archive.get(f)! } : undefined;
    return (await isFile(join(abs, f))) ? join(abs, f) : undefined;
  };
  let lossPicture: ServedFile | undefined;
  for (const f of LOSS_PICTURES) if ((lossPicture = await fileOf(f))) break;
  // A directory's manifest and weights are read when asked (loadCheckpoint has checked them); a tar's are in hand.
  const [weights, manifest] = archive
    ? [
        { name: WEIGHTS, bytes: archive.get(WEIGHTS)! },
        { name: MANIFEST, bytes: archive.get(MANIFEST)! },
      ]
    : [join(abs, WEIGHTS), join(abs, MANIFEST)];
  return servedModel(modelName, loaded, { weights, manifest, lossPicture }, () => loadCheckpoint(abs));
}

/** Load every `--model` argument (DIR or NAME=DIR); names must be distinct. */
export async function loadServedModels(specs: string[]): Promise<ServedModel[]> {
  const out: ServedModel[] = [];
  for (const spec of specs) {
    const eq = spec.indexOf("=");
    // NAME=DIR only when the part before "=" is a plain name, so a directory with "=" in its path still works.
    const named = eq > 0 && NAME.test(spec.slice(0, eq));
    const m = await fromCheckpoint(named ? spec.slice(eq + 1) : spec, named ? spec.slice(0, eq) : undefined);
    if (out.some((o) => o.card.name === m.card.name)) {
      throw new UsageError(
        `--model ${spec}: the name '${m.card.name}' is taken by another --model; name them with --model NAME=DIR`,
      );
    }
    out.push(m);
  }
  return out;
}
