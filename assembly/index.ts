// Entry point of the wasm kernels: everything exported here is what src/engine/backends/wasm/ calls; the
// declarations in src/engine/backends/wasm/exports.ts must match (test/wasm-exports.test.ts parses both).
// The module has no allocator: the JS side owns all memory above `heapBase()` and hands in byte addresses.

/**
 * Version of this module's exports and their meaning; src/engine/backends/wasm/load.ts refuses a build whose
 * version differs from the one it expects (a stale build once trained badly without any error). Bump it with
 * every change of an export's parameters or semantics, and ABI_VERSION in load.ts with it.
 */
export function abiVersion(): i32 {
  return 5;
}

/** First free byte after the static data; JS places its buffers from here up. */
export function heapBase(): usize {
  return __heap_base;
}

export {
  gemm,
  gemmBlock,
  gemmPacked,
  gemmPackedCols,
  gemmFewRows,
  packB,
  packedBFloats,
  packAFloats,
  gemmWorkspaceFloats,
  setTileScratch,
  tileScratchFloats,
} from "./gemm";
export {
  lstmForward,
  lstmBackward,
  gruForward,
  gruBackward,
  rnnForward,
  rnnBackward,
  addColumnSums,
  setRowScratch,
  rowScratchFloats,
} from "./recurrent";
export { sigmoidInPlace, tanhInPlace } from "./activations";
export { runJob } from "./threads";
export { setWorkers } from "./share";
export {
  unary,
  unaryBackward,
  scale,
  scaleBy,
  binary,
  reduceTo,
  copyBlocks,
  reduceAxis,
  broadcastAxis,
  swapAxes,
  causalMask,
  causalMaskBackward,
  fillRange,
  copyRange,
} from "./elementwise";
export {
  softmax,
  softmaxBackward,
  crossEntropy,
  crossEntropyBackward,
  layerNorm,
  layerNormBackward,
  embedding,
  embeddingBackward,
} from "./rows";
export { attention, attentionBackward, attentionCached, attentionCachedPairs } from "./attention";
export { adam, rmsprop, adagrad, sgd, sumSquares, clipFactor } from "./optim";
export { dropoutMask } from "./random";
