// Work sharing in the shared-memory build (scripts/build-wasm.mjs): what a worker thread runs.
//
// The worker threads (src/engine/backends/wasm/worker.ts) wait in JS on a control block each, in this memory; the
// JS side (src/engine/backends/wasm/pool.ts) writes a job's kind and arguments there and wakes the worker, which
// calls `runJob`. Every job is a kernel on a range of its output (rows, elements, blocks of a product, batch rows of
// a recurrent layer) computed by the same code as an unsplit call, so results are bit-identical to one thread.
//
// Control block at b (i32 slots; pool.ts uses the same layout):
//   [0] seq  [1] done  [2] failed  [3] kind (JOB_* below)  [4..] the arguments (i32, or f32 bits where a kernel
//   takes a float), in the order of the kernel's parameters.

import { gemmBlock, gemmPackedCols } from "./gemm";
import { binary, copyRange, fillRange, scale, unary, unaryBackward } from "./elementwise";
import { layerNorm, softmax } from "./rows";
import { attention, attentionBackward, attentionCachedPairs } from "./attention";
import { adagrad, adam, rmsprop, sgd } from "./optim";
import { gruBackward, gruForward, lstmBackward, lstmForward, rnnBackward, rnnForward } from "./recurrent";

/** Bytes of a control block (a cache line pair, so two workers never share one); pool.ts uses the same. */
export const CTL_BYTES: i32 = 128;

// Job kinds; src/engine/backends/wasm/pool.ts has the same numbers (JOB).
const JOB_GEMM_BLOCK: i32 = 0;
const JOB_GEMM_PACKED_COLS: i32 = 1;
const JOB_UNARY: i32 = 2;
const JOB_UNARY_BACKWARD: i32 = 3;
const JOB_SCALE: i32 = 4;
const JOB_BINARY: i32 = 5;
const JOB_SOFTMAX: i32 = 6;
const JOB_LAYER_NORM: i32 = 7;
const JOB_ATTENTION: i32 = 8;
const JOB_ATTENTION_BACKWARD: i32 = 9;
const JOB_ADAM: i32 = 10;
const JOB_RMSPROP: i32 = 11;
const JOB_ADAGRAD: i32 = 12;
const JOB_SGD: i32 = 13;
const JOB_LSTM_FORWARD: i32 = 14;
const JOB_LSTM_BACKWARD: i32 = 15;
const JOB_GRU_FORWARD: i32 = 16;
const JOB_GRU_BACKWARD: i32 = 17;
const JOB_RNN_FORWARD: i32 = 18;
const JOB_RNN_BACKWARD: i32 = 19;
const JOB_FILL: i32 = 20;
const JOB_COPY: i32 = 21;
const JOB_ATTENTION_CACHED: i32 = 22;

// Argument i of the job in the control block at b.
// @ts-ignore: decorator
@inline
function ai(b: usize, i: i32): i32 {
  return load<i32>(b + 16 + <usize>i * 4);
}
// @ts-ignore: decorator
@inline
function au(b: usize, i: i32): usize {
  return <usize>load<i32>(b + 16 + <usize>i * 4);
}
// @ts-ignore: decorator
@inline
function af(b: usize, i: i32): f32 {
  return load<f32>(b + 16 + <usize>i * 4);
}

/** Runs the job in the control block at b (a worker thread calls this when woken). */
export function runJob(b: usize): void {
  const kind = load<i32>(b, 12);
  switch (kind) {
    case JOB_GEMM_BLOCK:
      gemmBlock(au(b, 0), au(b, 1), au(b, 2), ai(b, 3), ai(b, 4), ai(b, 5), ai(b, 6) != 0, ai(b, 7) != 0, ai(b, 8) != 0, au(b, 9), ai(b, 10), ai(b, 11), ai(b, 12), ai(b, 13));
      break;
    case JOB_GEMM_PACKED_COLS:
      gemmPackedCols(au(b, 0), ai(b, 1) != 0, au(b, 2), au(b, 3), ai(b, 4), ai(b, 5), ai(b, 6), ai(b, 7) != 0, au(b, 8), ai(b, 9), ai(b, 10));
      break;
    case JOB_UNARY:
      unary(ai(b, 0), au(b, 1), au(b, 2), ai(b, 3), ai(b, 4));
      break;
    case JOB_UNARY_BACKWARD:
      unaryBackward(ai(b, 0), au(b, 1), au(b, 2), au(b, 3), au(b, 4), ai(b, 5), ai(b, 6));
      break;
    case JOB_SCALE:
      scale(au(b, 0), au(b, 1), af(b, 2), ai(b, 3) != 0, ai(b, 4), ai(b, 5));
      break;
    case JOB_BINARY:
      binary(ai(b, 0), au(b, 1), au(b, 2), au(b, 3), au(b, 4), au(b, 5), au(b, 6), ai(b, 7), ai(b, 8), ai(b, 9));
      break;
    case JOB_SOFTMAX:
      softmax(au(b, 0), au(b, 1), ai(b, 2), ai(b, 3), ai(b, 4));
      break;
    case JOB_LAYER_NORM:
      layerNorm(au(b, 0), au(b, 1), au(b, 2), au(b, 3), au(b, 4), au(b, 5), ai(b, 6), af(b, 7), ai(b, 8), ai(b, 9));
      break;
    case JOB_ATTENTION:
      attention(au(b, 0), au(b, 1), au(b, 2), au(b, 3), au(b, 4), ai(b, 5), ai(b, 6), ai(b, 7), au(b, 8), ai(b, 9), ai(b, 10));
      break;
    case JOB_ATTENTION_BACKWARD:
      attentionBackward(au(b, 0), au(b, 1), au(b, 2), au(b, 3), au(b, 4), au(b, 5), au(b, 6), au(b, 7), ai(b, 8), ai(b, 9), ai(b, 10), au(b, 11), ai(b, 12), ai(b, 13));
      break;
    case JOB_ATTENTION_CACHED:
      attentionCachedPairs(au(b, 0), au(b, 1), au(b, 2), au(b, 3), ai(b, 4), ai(b, 5), ai(b, 6), ai(b, 7), ai(b, 8), au(b, 9), ai(b, 10), ai(b, 11));
      break;
    case JOB_ADAM:
      adam(au(b, 0), au(b, 1), au(b, 2), au(b, 3), au(b, 4), ai(b, 5), ai(b, 6));
      break;
    case JOB_RMSPROP:
      rmsprop(au(b, 0), au(b, 1), au(b, 2), au(b, 3), ai(b, 4), ai(b, 5));
      break;
    case JOB_ADAGRAD:
      adagrad(au(b, 0), au(b, 1), au(b, 2), au(b, 3), ai(b, 4), ai(b, 5));
      break;
    case JOB_SGD:
      sgd(au(b, 0), au(b, 1), au(b, 2), au(b, 3), ai(b, 4), ai(b, 5));
      break;
    case JOB_LSTM_FORWARD:
      lstmForward(ai(b, 0), ai(b, 1), ai(b, 2), au(b, 3), au(b, 4), au(b, 5), au(b, 6), au(b, 7), ai(b, 8), ai(b, 9));
      break;
    case JOB_LSTM_BACKWARD:
      lstmBackward(ai(b, 0), ai(b, 1), ai(b, 2), au(b, 3), au(b, 4), au(b, 5), au(b, 6), au(b, 7), au(b, 8), au(b, 9), au(b, 10), au(b, 11), ai(b, 12), ai(b, 13));
      break;
    case JOB_GRU_FORWARD:
      gruForward(ai(b, 0), ai(b, 1), ai(b, 2), au(b, 3), au(b, 4), au(b, 5), au(b, 6), au(b, 7), au(b, 8), au(b, 9), ai(b, 10), ai(b, 11));
      break;
    case JOB_GRU_BACKWARD:
      gruBackward(ai(b, 0), ai(b, 1), ai(b, 2), au(b, 3), au(b, 4), au(b, 5), au(b, 6), au(b, 7), au(b, 8), au(b, 9), au(b, 10), au(b, 11), ai(b, 12), ai(b, 13));
      break;
    case JOB_RNN_FORWARD:
      rnnForward(ai(b, 0), ai(b, 1), ai(b, 2), au(b, 3), au(b, 4), au(b, 5), ai(b, 6), ai(b, 7));
      break;
    case JOB_RNN_BACKWARD:
      rnnBackward(ai(b, 0), ai(b, 1), ai(b, 2), au(b, 3), au(b, 4), au(b, 5), au(b, 6), au(b, 7), au(b, 8), ai(b, 9), ai(b, 10));
      break;
    case JOB_FILL:
      fillRange(au(b, 0), af(b, 1), ai(b, 2), ai(b, 3));
      break;
    case JOB_COPY:
      copyRange(au(b, 0), au(b, 1), ai(b, 2), ai(b, 3));
      break;
    default:
      unreachable();
  }
}
