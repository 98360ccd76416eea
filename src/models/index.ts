// Models behind one contract, built from a config by the registry.

export type { ForwardResult, LanguageModel, State } from "./contract.js";
export {
  DEFAULT_GPT_CONFIG,
  DEFAULT_MODEL_CONFIG,
  parseModelConfig,
  type CellType,
  type GptModelConfig,
  type ModelConfig,
  type RnnModelConfig,
} from "./config.js";
export { buildModel, countParams, summary } from "./registry.js";
export { GptModel, type GptForwardOptions, type GptState } from "./gpt.js";
export { RnnModel, type RnnForwardOptions, type RnnState } from "./rnn.js";
export {
  configFromLayers,
  dense,
  dropout,
  embedding,
  gru,
  lstm,
  sequential,
  simpleRNN,
  type LayerSpec,
} from "./sequential.js";
