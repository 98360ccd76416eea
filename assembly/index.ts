// Entry point of the wasm kernels: everything exported here is what src/engine/backends/wasm.ts calls.
// The module has no allocator: the JS side owns all memory above `heapBase()` and hands in byte addresses.

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

/** First free byte after the static data; JS places its buffers from here up. */
export function heapBase(): usize {
  return __heap_base;
}
export { lstmForward, lstmBackward, gruForward, gruBackward, rnnForward, rnnBackward } from "./recurrent";
export { sigmoidInPlace, tanhInPlace } from "./activations";
export { setWorkers } from "./threads";
