// What the HTTP layer needs from a model, and nothing more: a card to show, a vocabulary check, a character stream,
// and the files the in-browser mode downloads. The server never sees tensors or kernels; `fromCheckpoint`
// (checkpoint-model.ts) adapts a trained checkpoint to this shape, and tests can serve a stand-in.

/** One point of the training history, for the loss curve. */
export interface LossPoint {
  step: number;
  trainLoss?: number;
  valLoss?: number;
}

/** What /api/models reports and the page's model card shows. */
export interface ModelCard {
  name: string;
  /** Model family and cell, e.g. "rnn/lstm". */
  type: string;
  /** Human-readable architecture, one layer per line. */
  architecture: string;
  parameters: number;
  vocabSize: number;
  /** Tokenizer kind (char, word, bpe); absent means char. */
  tokenizer?: string;
  /** Best validation loss in nats per token (per character for a char model), or null when the checkpoint has none. */
  validationLoss: number | null;
  /** Wall-clock seconds spent training, or null when unknown. */
  trainingSeconds: number | null;
  /** Optimizer steps taken. */
  steps: number | null;
  /** The model config as stored in the checkpoint. */
  config: Record<string, unknown>;
  history: LossPoint[];
}

/** A generation request after validation, in the sampler's terms. */
export interface GenerateRequest {
  prime: string;
  length: number;
  temperature: number;
  topK: number; // 0: off
  topP: number; // 1: off
  seed: number;
  stop: string[];
  windowStride?: number; // a GPT past its window: oldest tokens dropped at once (unset: 1)
}

export interface ServedModel {
  readonly card: ModelCard;
  /** Distinct characters of `text` that the model's vocabulary cannot encode, in order of first appearance. */
  unknownChars(text: string): string[];
  /**
   * Generated text, a token's text per item (a character for a char model; the prime is not repeated). Ends after
   * `length` tokens, at a stop string (then `onStop` is called first), or when `signal` aborts.
   */
  generate(req: GenerateRequest, signal: AbortSignal, onStop?: () => void): AsyncIterable<string>;
  /** Files for the in-browser mode and the card; absent for models that live only in memory. */
  readonly files?: {
    weights: ServedFile; // model.safetensors
    manifest: ServedFile; // charlm.json
    lossPicture?: ServedFile; // a loss-curve image written at training time, if any
  };
}

/** A file to send: a path on disk (read when asked), or its name and bytes held in memory (a model from a tar). */
export type ServedFile = string | { name: string; bytes: Uint8Array };
