// The training library: loop, optimizers, schedules, early stopping, evaluation, checkpoints, metrics, loss curve.
export * from "../checkpoint/index.js";
export * from "./config.js";
export * from "./early-stopping.js";
export * from "./evaluate.js";
export * from "./fine-tune.js";
export * from "./loop.js";
export * from "./metrics.js";
export * from "./optimizers.js";
export * from "./plot.js";
export * from "./schedules.js";
export * from "./session.js";
export * from "./store.js";
