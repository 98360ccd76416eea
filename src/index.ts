// charlm's library entry point.
export { Rng } from "./util/rng.js";
export type { RngState } from "./util/rng.js";
export { CharlmError, UsageError } from "./util/errors.js";
