// Recurrent layers: LSTM, GRU and SimpleRNN, each running a whole time-major sequence through one engine op (the
// op does the input projection as one matmul and the recurrence in a backend kernel).
//
// Legend: T time, B batch, D input width, H units. Gate order and formulas (as PyTorch and Keras):
//   LSTM (i, f, g, o): c_t = σ(f)*c_{t-1} + σ(i)*tanh(g);  h_t = σ(o)*tanh(c_t);  a = x Wx + h_{t-1} Wh + b
//   GRU  (r, z, n), reset-after: r = σ(x Wx_r + bx_r + h Wh_r + bh_r), z likewise,
//        n = tanh(x Wx_n + bx_n + r*(h Wh_n + bh_n));  h_t = (1-z)*n + z*h_{t-1}
//   SimpleRNN: h_t = tanh(x Wx + h_{t-1} Wh + b)
// Keras initialisers: glorot_uniform input kernels, orthogonal recurrent kernels, zero biases, LSTM forget bias 1.
// PyTorch's (init "torch"): every weight and bias U(±1/√H), the LSTM's and RNN's one bias the sum of two such draws.
// Constructed with rng null, every parameter starts at zero (weights about to be loaded: no orthogonalisation).

import { gru, gruProjected, linear, lstm, lstmProjected, rnn, rnnProjected } from "../engine/ops.js";
import { Tensor } from "../engine/tensor.js";
import type { Rng } from "../util/rng.js";
import { glorotUniform, lstmBias, orthogonal, uniform, uniformPair, zeros, type InitScheme } from "./init.js";
import { Layer } from "./layer.js";

/** Input kernel (D, G) and recurrent kernel (H, G) of a cell with G = gates x H columns, drawn as `init` says. */
function kernels(D: number, H: number, G: number, rng: Rng | null, init: InitScheme): [Float32Array, Float32Array] {
  if (!rng) return [zeros(D * G), zeros(H * G)];
  if (init === "torch") return [uniform(D * G, 1 / Math.sqrt(H), rng), uniform(H * G, 1 / Math.sqrt(H), rng)];
  return [glorotUniform(D, G, rng), orthogonal(H, G, rng)];
}

/** Per-layer recurrent state: h (B, H), and c (B, H) for an LSTM. */
export interface LayerState {
  h: Tensor;
  c?: Tensor;
}

export interface RecurrentOutput {
  hs: Tensor; // (T, B, H)
  state: LayerState; // after the last step (still attached to the graph)
}

export abstract class RecurrentLayer extends Layer {
  abstract readonly cell: "lstm" | "gru" | "rnn";
  /** Gates per unit: 4 (LSTM), 3 (GRU), 1 (SimpleRNN). */
  abstract readonly gates: number;

  constructor(
    readonly inputDim: number,
    readonly units: number,
    name: string,
  ) {
    super(name);
  }

  /** x (T, B, D), state per (B, H) -> hs (T, B, H) and the final state. */
  abstract forward(x: Tensor, state: LayerState): RecurrentOutput;

  /** The input projection x Wx + the input bias: (..., D) -> (..., G). forward(x) = forwardProjected(project(x)). */
  abstract project(x: Tensor): Tensor;

  /** forward() from the input projections xw (T, B, G) that project() makes. */
  abstract forwardProjected(xw: Tensor, state: LayerState): RecurrentOutput;

  /** Zero state for a batch of B. */
  initialState(B: number): LayerState {
    return { h: Tensor.zeros([B, this.units]) };
  }
}

// ---------------------------------------------------------------------------------------------------- LSTM

export class LSTM extends RecurrentLayer {
  readonly kind = "LSTM";
  readonly cell = "lstm";
  readonly gates = 4;
  readonly wx: Tensor; // (D, 4H)
  readonly wh: Tensor; // (H, 4H)
  readonly b: Tensor; // (4H)

  constructor(inputDim: number, units: number, rng: Rng | null, name = "lstm", init: InitScheme = "keras") {
    super(inputDim, units, name);
    const G = 4 * units;
    const [wx, wh] = kernels(inputDim, units, G, rng, init);
    this.wx = this.param("wx", wx, [inputDim, G]);
    this.wh = this.param("wh", wh, [units, G]);
    const b = !rng ? zeros(G) : init === "torch" ? uniformPair(G, 1 / Math.sqrt(units), rng) : lstmBias(units);
    this.b = this.param("b", b, [G]);
  }

  override initialState(B: number): LayerState {
    return { h: Tensor.zeros([B, this.units]), c: Tensor.zeros([B, this.units]) };
  }

  forward(x: Tensor, state: LayerState): RecurrentOutput {
    const c0 = state.c ?? Tensor.zeros(state.h.shape);
    const { hs, hT, cT } = lstm(x, this.wx, this.wh, this.b, state.h, c0);
    return { hs, state: { h: hT, c: cT } };
  }

  project(x: Tensor): Tensor {
    return linear(x, this.wx, this.b);
  }

  forwardProjected(xw: Tensor, state: LayerState): RecurrentOutput {
    const c0 = state.c ?? Tensor.zeros(state.h.shape);
    const { hs, hT, cT } = lstmProjected(xw, this.wh, state.h, c0);
    return { hs, state: { h: hT, c: cT } };
  }
}

// ---------------------------------------------------------------------------------------------------- GRU

export class GRU extends RecurrentLayer {
  readonly kind = "GRU";
  readonly cell = "gru";
  readonly gates = 3;
  readonly wx: Tensor; // (D, 3H)
  readonly wh: Tensor; // (H, 3H)
  readonly bx: Tensor; // (3H) input bias
  readonly bh: Tensor; // (3H) recurrent bias (inside r * (...) for the n gate)

  constructor(inputDim: number, units: number, rng: Rng | null, name = "gru", init: InitScheme = "keras") {
    super(inputDim, units, name);
    const G = 3 * units;
    const [wx, wh] = kernels(inputDim, units, G, rng, init);
    this.wx = this.param("wx", wx, [inputDim, G]);
    this.wh = this.param("wh", wh, [units, G]);
    const torch = rng && init === "torch";
    this.bx = this.param("bx", torch ? uniform(G, 1 / Math.sqrt(units), rng) : zeros(G), [G]);
    this.bh = this.param("bh", torch ? uniform(G, 1 / Math.sqrt(units), rng) : zeros(G), [G]);
  }

  forward(x: Tensor, state: LayerState): RecurrentOutput {
    const { hs, hT } = gru(x, this.wx, this.wh, this.bx, this.bh, state.h);
    return { hs, state: { h: hT } };
  }

  project(x: Tensor): Tensor {
    return linear(x, this.wx, this.bx);
  }

  forwardProjected(xw: Tensor, state: LayerState): RecurrentOutput {
    const { hs, hT } = gruProjected(xw, this.wh, this.bh, state.h);
    return { hs, state: { h: hT } };
  }
}

// ---------------------------------------------------------------------------------------------------- SimpleRNN

export class SimpleRNN extends RecurrentLayer {
  readonly kind = "SimpleRNN";
  readonly cell = "rnn";
  readonly gates = 1;
  readonly wx: Tensor; // (D, H)
  readonly wh: Tensor; // (H, H)
  readonly b: Tensor; // (H)

  constructor(inputDim: number, units: number, rng: Rng | null, name = "simple_rnn", init: InitScheme = "keras") {
    super(inputDim, units, name);
    const [wx, wh] = kernels(inputDim, units, units, rng, init);
    this.wx = this.param("wx", wx, [inputDim, units]);
    this.wh = this.param("wh", wh, [units, units]);
    const torch = rng && init === "torch";
    this.b = this.param("b", torch ? uniformPair(units, 1 / Math.sqrt(units), rng) : zeros(units), [units]);
  }

  forward(x: Tensor, state: LayerState): RecurrentOutput {
    const { hs, hT } = rnn(x, this.wx, this.wh, this.b, state.h);
    return { hs, state: { h: hT } };
  }

  project(x: Tensor): Tensor {
    return linear(x, this.wx, this.b);
  }

  forwardProjected(xw: Tensor, state: LayerState): RecurrentOutput {
    const { hs, hT } = rnnProjected(xw, this.wh, state.h);
    return { hs, state: { h: hT } };
  }
}

/** The recurrent layer for a cell name. */
export function recurrentLayer(
  cell: "lstm" | "gru" | "rnn",
  inputDim: number,
  units: number,
  rng: Rng | null,
  name: string,
  init: InitScheme = "keras",
): RecurrentLayer {
  if (cell === "lstm") return new LSTM(inputDim, units, rng, name, init);
  if (cell === "gru") return new GRU(inputDim, units, rng, name, init);
  return new SimpleRNN(inputDim, units, rng, name, init);
}
