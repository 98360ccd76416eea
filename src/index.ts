// charlm's library entry point: data -> engine -> models -> train -> sample, in the order data flows.
export { Rng } from "./util/rng.js";
export type { RngState } from "./util/rng.js";
export { CharlmError, UsageError } from "./util/errors.js";
export { Progress } from "./util/progress.js";
export * from "./data/index.js";
export * as engine from "./engine/index.js";
export { Tensor, useBackend, listBackends, setBackend, getBackend } from "./engine/index.js";
export * from "./models/index.js";
export * from "./train/index.js";
export * from "./sample/index.js";
export * as scratch from "./scratch/index.js";
