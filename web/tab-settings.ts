// The settings of "train in this tab" and the page's choices, apart from the training code (./tab-train.ts), so the
// page's own bundle (web/dist/app.js) carries the form without the training library the worker bundles.

export interface TabSettings {
  cell: "lstm" | "gru" | "rnn";
  embedding: number;
  units: number; // H
  layers: number;
  dropout: number;
  seqLength: number; // T
  batchSize: number; // B
  steps: number; // optimizer steps (rounded up to whole validation intervals)
  validateEvery: number; // steps between validation losses (an "epoch" of the loop)
  minutes: number; // stop (and keep the checkpoint) after this long, whatever the steps
  lr: number;
  seed: number;
}

/** The page's defaults: an LSTM 128 that learns words from a few hundred KB of text in a few minutes on wasm. */
export const TAB_DEFAULTS: TabSettings = {
  cell: "lstm",
  embedding: 32,
  units: 128,
  layers: 1,
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
};
