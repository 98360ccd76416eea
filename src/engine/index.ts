// The engine's public surface: tensors, ops, autograd controls, backends and the gradient check.

export { Tensor, shapeSize } from "./tensor.js";
export * from "./ops.js";
export { backward, liveNodes, noGrad, isGradEnabled } from "./autograd.js";
export { gradRules, type OpName } from "./grad.js";
export { gradcheck, type GradcheckOptions, type GradcheckResult } from "./gradcheck.js";
export type { Backend, MatmulOptions } from "./backend.js";
export { jsBackend } from "./backends/js.js";
export {
  getBackend,
  setBackend,
  useBackend,
  loadBackend,
  listBackends,
  withBackend,
  type BackendName,
} from "./backends/index.js";
