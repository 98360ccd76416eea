// Layers with the Keras vocabulary: embedding, dense, lstm, gru, simpleRNN, dropout, layerNorm.

export { Layer } from "./layer.js";
export { Embedding } from "./embedding.js";
export { Dense } from "./dense.js";
export { Dropout } from "./dropout.js";
export { LayerNorm } from "./layernorm.js";
export {
  LSTM,
  GRU,
  SimpleRNN,
  RecurrentLayer,
  recurrentLayer,
  type LayerState,
  type RecurrentOutput,
} from "./recurrent.js";
export { glorotUniform, orthogonal, uniform, zeros, ones, lstmBias } from "./init.js";
