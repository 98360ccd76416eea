// One worker thread of the wasm backend (Node worker_threads; started by pool.ts).
//
// It instantiates the shared-memory build on the backend's memory, points its scratch (the product's edge tile, the
// recurrent kernels' row tails) at its own (module globals are per instance; the scratch in static data would be
// shared by all threads), and then serves jobs from its
// control block, a few words in that same memory (layout in pool.ts and assembly/threads.ts):
//   [0] seq     bumped to hand out a job; a negative value stops the worker
//   [1] done    the worker stores seq here when it has finished that job
//   [2] failed  1 when the job trapped (the thread that handed it out turns that into an error)
// `runJob` in the module reads the job's kind and arguments from the block and runs that kernel.

import { parentPort, workerData } from "node:worker_threads";
import type { Kernels } from "./exports.js";

export interface WorkerData {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  /** Byte address of this worker's control block. */
  ctlAddr: number;
  /** Byte address of this worker's scratch: tileScratchFloats() floats, then rowScratchFloats(). */
  tile: number;
}

function serve(data: WorkerData): void {
  const ctl = new Int32Array(data.memory.buffer, data.ctlAddr, 4);
  let k: Kernels;
  try {
    k = new WebAssembly.Instance(data.module, { env: { memory: data.memory } }).exports as unknown as Kernels;
    k.setTileScratch(data.tile);
    k.setRowScratch(data.tile + 4 * k.tileScratchFloats());
    parentPort!.postMessage({ ready: true });
  } catch (e) {
    parentPort!.postMessage({ error: String((e as Error)?.message ?? e) });
    return;
  }
  let seen = 0;
  for (;;) {
    Atomics.wait(ctl, 0, seen);
    seen = Atomics.load(ctl, 0);
    if (seen < 0) break;
    try {
      k.runJob(data.ctlAddr);
      Atomics.store(ctl, 2, 0);
    } catch {
      Atomics.store(ctl, 2, 1);
    }
    Atomics.store(ctl, 1, seen);
    Atomics.notify(ctl, 1);
  }
}

if (parentPort) serve(workerData as WorkerData);
