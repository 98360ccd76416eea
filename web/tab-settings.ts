// The settings of "train in this tab" and the page's choices, apart from the training code (./tab-train.ts), so the
// page's own bundle (web/dist/app.js) carries the form without the training library the worker bundles.

export interface TabSettings {
  type: "rnn" | "gpt"; // a recurrent stack, or a GPT-style transformer
  cell: "lstm" | "gru" | "rnn";
  embedding: number; // a GPT: its channels
  units: number; // H
  layers: number; // a GPT: its blocks
  heads: number; // a GPT's attention heads (dividing embedding)
  dropout: number;
  seqLength: number; // T (a GPT: its context)
  batchSize: number; // B
  steps: number; // optimizer steps (rounded up to whole validation intervals)
  validateEvery: number; // steps between validation losses (an "epoch" of the loop)
  minutes: number; // stop (and keep the checkpoint) after this long, whatever the steps
  lr: number;
  seed: number;
}

/** The page's defaults: an LSTM 128 that learns words from a few hundred KB of text in a few minutes on wasm. */
export const TAB_DEFAULTS: TabSettings = {
  type: "rnn",
  cell: "lstm",
  embedding: 32,
  units: 128,
  layers: 1,
  heads: 4,
  dropout: 0,
  seqLength: 64,
  batchSize: 32,
  steps: 2000,
  validateEvery: 50,
  minutes: 3,
  lr: 3e-3,
  seed: 1,
};

/** The models the page offers (name -> the settings it changes). */
export const TAB_MODELS: Record<string, Partial<TabSettings>> = {
  // First, so a page opened in a hurry (or by the browser test) sees something within seconds, even on SwiftShader.
  "LSTM 32 (a quick look)": { cell: "lstm", units: 32, embedding: 16, layers: 1, seqLength: 32, batchSize: 16 },
  "LSTM 128": { cell: "lstm", units: 128, layers: 1 },
  "LSTM 256": { cell: "lstm", units: 256, layers: 1, embedding: 64 },
  "GRU 256": { cell: "gru", units: 256, layers: 1, embedding: 64 },
  "2 x LSTM 256": { cell: "lstm", units: 256, layers: 2, embedding: 64, dropout: 0.1 },
  // nanoGPT's small character recipe, smaller: 4 blocks of 128 channels over 128 characters, Adam at 1e-3
  "GPT 4 x 128": { type: "gpt", embedding: 128, layers: 4, heads: 4, seqLength: 128, dropout: 0.1, lr: 1e-3 },
};
