// Putting decoded safetensors weights into a model. Pure (no Node APIs), so the browser bundle can use it.

import type { LanguageModel } from "../models/contract.js";
import { CharlmError } from "../util/errors.js";
import type { SafetensorsFile } from "./safetensors.js";

/** Copy tensors into the model's parameters; names and shapes must match exactly. */
export function loadWeightsInto(model: LanguageModel, file: SafetensorsFile, where: string): void {
  const params = model.parameters();
  for (const name of file.tensors.keys()) {
    if (!params.has(name))
      throw new CharlmError(
        `${where}: tensor ${name} is not a parameter of this model; the weights belong to another model`,
      );
  }
  for (const [name, p] of params) {
    const t = file.tensors.get(name);
    if (!t) throw new CharlmError(`${where}: parameter ${name} is missing; the weights belong to another model`);
    if (t.dtype !== "F32" && t.dtype !== "F16" && t.dtype !== "BF16")
      throw new CharlmError(`${where}: ${name} has dtype ${t.dtype}, expected F32`);
    if (t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i])) {
      throw new CharlmError(
        `${where}: ${name} has shape [${t.shape}] but the model needs [${p.shape}]; the weights belong to another model`,
      );
    }
    p.write(t.data as Float32Array);
  }
}
