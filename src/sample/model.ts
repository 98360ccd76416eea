// A trained model with its vocabulary, ready to generate: what the library's load() and train() hand back, in
// Node and in the browser alike (no Node built-ins here).

import type { Tokenizer } from "../data/tokenizer.js";
import type { LanguageModel } from "../models/contract.js";
import { generate, generateText, type GenerateOptions } from "./generate.js";

/** Generation settings; every field has the `charlm sample` default. */
export interface GenerateRequest extends Partial<GenerateOptions> {
  prime?: string; // text the model reads first (default "")
  length?: number; // characters to generate (default 500)
  temperature?: number; // > 0; below 1 safer, above 1 wilder (default 1)
  topK?: number; // keep the k most likely characters (default 0 = all)
  topP?: number; // nucleus sampling, in (0, 1] (default 1 = off)
  seed?: number; // same seed, same text (default: a fresh random seed)
}

export class CharModel {
  constructor(
    readonly model: LanguageModel,
    readonly vocab: Tokenizer,
  ) {}

  /** Generate text after `prime` (which is not included). */
  generate(req: GenerateRequest = {}): Promise<string> {
    return generateText(this.model, this.vocab, options(req));
  }

  /** The same text, one character at a time as it is drawn. */
  stream(req: GenerateRequest = {}): AsyncGenerator<string> {
    return generate(this.model, this.vocab, options(req));
  }
}

function options(req: GenerateRequest): GenerateOptions {
  return { ...req, prime: req.prime ?? "", length: req.length ?? 500 };
}
