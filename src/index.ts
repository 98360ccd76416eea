// charlm's library entry point. First the three calls most programs need (see README "Library"), then the layers
// beneath them: data -> engine -> models -> train -> sample, in the order data flows.
export { train, load, TrainedModel } from "./api.js";
export type { TrainOptions, LoadOptions, InMemoryData } from "./api.js";
export { tune, type TuneOptions, type TuneResult } from "./tune/index.js";
export { lrRangeTest, type LrFindOptions, type LrFindResult, type LrPoint } from "./tune/index.js";
export { CharModel } from "./sample/model.js";
export type { GenerateRequest } from "./sample/model.js";
export type { StepInfo, EpochInfo, CheckpointInfo, TrainCallbacks } from "./train/loop.js";
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
