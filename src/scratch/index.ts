// The from-scratch vanilla RNN (min-char-rnn): model, training loop, checkpoints, whole jobs.

export * from "./checkpoint.js";
export * from "./rnn.js";
export * from "./run.js";
export * from "./train.js";
