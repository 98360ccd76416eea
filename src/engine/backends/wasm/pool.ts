// The worker threads of a threaded wasm backend, and how work is handed to them.
//
// A backend with n threads runs n - 1 workers (SERVE, below) on the shared memory of the shared-memory build. Each
// worker owns a control block of CTL_BYTES in that memory; to run a job on a worker this thread writes the job's kind
// and arguments into its block, bumps the sequence number and notifies; the worker runs `runJob` and stores the
// sequence number back into `done`. The thread that handed the jobs out runs its own part meanwhile and then waits
// (Atomics.wait: allowed on Node's main thread and in a browser's worker, not on a page's main thread). In Node the
// workers are worker_threads, in a browser Web Workers, both running the same source.
//
// Control block (i32 slots): [0] seq  [1] done  [2] failed  [3] kind (JOB)  [4..] the arguments, i32 or f32 bits.

import { CharlmError } from "../../../util/errors.js";
import { isNode } from "./load.js";

/** Bytes per control block; must match CTL_BYTES in assembly/threads.ts. */
export const CTL_BYTES = 128;

/** Job kinds; must match JOB_* in assembly/threads.ts. */
export const JOB = {
  gemmBlock: 0,
  gemmPackedCols: 1,
  unary: 2,
  unaryBackward: 3,
  scale: 4,
  binary: 5,
  softmax: 6,
  layerNorm: 7,
  attention: 8,
  attentionBackward: 9,
  adam: 10,
  rmsprop: 11,
  adagrad: 12,
  sgd: 13,
  lstmForward: 14,
  lstmBackward: 15,
  gruForward: 16,
  gruBackward: 17,
  rnnForward: 18,
  rnnBackward: 19,
  fill: 20,
  copy: 21,
  attentionCached: 22,
} as const;

/** One job: its kind, its arguments in the kernel's order, and which of them are float32 (written as bits). */
export interface Job {
  kind: number;
  args: number[];
  floats?: number[];
}

const WT = "node:worker_threads";
/** A worker as the pool uses it: Node's worker_threads.Worker, or a browser's Web Worker. */
type WorkerT = { terminate(): unknown };

/** What a worker gets first: the module, the memory, where its control block is, and its own scratch. */
export interface WorkerData {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  /** Byte address of this worker's control block. */
  ctlAddr: number;
  /** Byte address of this worker's scratch: tileScratchFloats() floats, then rowScratchFloats(). */
  tile: number;
}

// One worker's whole program, as source text, so that Node (a worker_threads worker run from it) and browsers (a Web
// Worker from a Blob URL) run the same lines, and no worker file has to be found on disk, bundled or served. It
// instantiates the shared-memory build on the backend's memory, points its scratch (the product's edge tile, the
// recurrent kernels' row tails) at its own (module globals are per instance; scratch in static data would be shared
// by all threads), answers {ready} or {error}, and then serves jobs from its control block until told to stop
// (a negative seq) or terminated: it waits for seq to change, runs `runJob` (which reads the job's kind and
// arguments from the block), sets `failed` if the job trapped, and stores seq into `done`.
const SERVE = `
const serve = (d, post) => {
  let k;
  try {
    k = new WebAssembly.Instance(d.module, { env: { memory: d.memory } }).exports;
    k.setTileScratch(d.tile);
    k.setRowScratch(d.tile + 4 * k.tileScratchFloats());
    post({ ready: true });
  } catch (err) {
    post({ error: String((err && err.message) || err) });
    return;
  }
  const ctl = new Int32Array(d.memory.buffer, d.ctlAddr, 4);
  let seen = 0;
  for (;;) {
    Atomics.wait(ctl, 0, seen);
    seen = Atomics.load(ctl, 0);
    if (seen < 0) break;
    try {
      k.runJob(d.ctlAddr);
      Atomics.store(ctl, 2, 0);
    } catch {
      Atomics.store(ctl, 2, 1);
    }
    Atomics.store(ctl, 1, seen);
    Atomics.notify(ctl, 1);
  }
};
`;
// Node: the data comes as workerData (an eval'd worker is a CommonJS script, so require works); a browser: in the
// first message.
const NODE_WORKER = `${SERVE}
const { parentPort, workerData } = require("node:worker_threads");
serve(workerData, (m) => parentPort.postMessage(m));
`;
const BROWSER_WORKER = `${SERVE}
self.onmessage = (e) => serve(e.data, (m) => self.postMessage(m));
`;

/** Starts one browser worker on `data` and resolves once it has instantiated the module. */
function startBrowserWorker(url: string, data: WorkerData): Promise<WorkerT> {
  const w = new Worker(url);
  return new Promise((resolve, reject) => {
    w.onmessage = (e: MessageEvent<{ ready?: boolean; error?: string }>) => {
      w.onmessage = null;
      w.onerror = null;
      if (e.data.ready) resolve(w);
      else {
        w.terminate();
        reject(new Error(e.data.error ?? "no answer"));
      }
    };
    w.onerror = (e: ErrorEvent) => {
      w.terminate();
      reject(new Error(e.message || "the worker did not start"));
    };
    w.postMessage(data);
  });
}

export class Pool {
  private constructor(
    private readonly workers: WorkerT[],
    private readonly ctls: Int32Array[],
    private readonly ctlF: Float32Array[],
  ) {}

  /** Worker threads (the calling thread not counted). */
  get size(): number {
    return this.workers.length;
  }

  /**
   * Starts one worker per entry of `tiles` on `memory`, worker i with its control block at ctl + i·CTL_BYTES and
   * its scratch (the product's edge tile, then the recurrent kernels' row tails) at tiles[i]; resolves when all
   * are ready.
   */
  static async start(
    module: WebAssembly.Module,
    memory: WebAssembly.Memory,
    ctl: number,
    tiles: number[],
  ): Promise<Pool> {
    const workers: WorkerT[] = [];
    const ctls: Int32Array[] = [];
    const ctlF: Float32Array[] = [];
    if (!isNode()) {
      const url = URL.createObjectURL(new Blob([BROWSER_WORKER], { type: "text/javascript" }));
      try {
        for (let i = 0; i < tiles.length; i++) {
          const ctlAddr = ctl + i * CTL_BYTES;
          workers.push(await startBrowserWorker(url, { module, memory, ctlAddr, tile: tiles[i] }));
          ctls.push(new Int32Array(memory.buffer, ctlAddr, CTL_BYTES / 4));
          ctlF.push(new Float32Array(memory.buffer, ctlAddr, CTL_BYTES / 4));
        }
      } catch (e) {
        for (const w of workers) w.terminate();
        throw new CharlmError(
          `wasm backend: could not start ${tiles.length} worker(s) (${(e as Error).message}); use threads 1`,
        );
      } finally {
        URL.revokeObjectURL(url);
      }
      return new Pool(workers, ctls, ctlF);
    }
    const { Worker } = (await import(WT)) as typeof import("node:worker_threads");
    try {
      for (let i = 0; i < tiles.length; i++) {
        const ctlAddr = ctl + i * CTL_BYTES;
        const workerData: WorkerData = { module, memory, ctlAddr, tile: tiles[i] };
        // No loader flags (tsx's, when running from the sources): the program is plain JavaScript.
        const w = new Worker(NODE_WORKER, { eval: true, execArgv: [], workerData });
        workers.push(w);
        ctls.push(new Int32Array(memory.buffer, ctlAddr, CTL_BYTES / 4));
        ctlF.push(new Float32Array(memory.buffer, ctlAddr, CTL_BYTES / 4));
        await new Promise<void>((resolve, reject) => {
          w.once("message", (m: { ready?: boolean; error?: string }) =>
            m.ready ? resolve() : reject(new Error(m.error ?? "no answer")),
          );
          w.once("error", reject);
          w.once("exit", () => reject(new Error("the worker exited")));
        });
        w.removeAllListeners();
        // None is expected after start-up (jobs catch their own traps); a worker that died anyway is noticed by
        // run()'s deadline, since this thread is blocked in Atomics.wait when it matters and handles no events.
        w.on("error", () => {});
        w.unref(); // idle workers wait in Atomics.wait; let the process exit around them
      }
    } catch (e) {
      await Promise.all(workers.map((w) => w.terminate()));
      throw new CharlmError(
        `wasm backend: could not start ${tiles.length} worker thread(s) (${(e as Error).message}); use CHARLM_THREADS=1`,
      );
    }
    return new Pool(workers, ctls, ctlF);
  }

  /** Hands jobs[i] to worker i, runs `own` on this thread, and waits until every worker is done. */
  run(jobs: Job[], own: () => void): void {
    const seqs: number[] = [];
    for (let i = 0; i < jobs.length; i++) {
      const ctl = this.ctls[i];
      const { kind, args, floats } = jobs[i];
      const seq = (Atomics.load(ctl, 0) + 1) & 0x3fffffff;
      seqs.push(seq);
      ctl[3] = kind;
      ctl.set(args, 4);
      if (floats) for (const f of floats) this.ctlF[i][4 + f] = args[f];
      Atomics.store(ctl, 0, seq);
      Atomics.notify(ctl, 0);
    }
    const t0 = performance.now();
    // If this thread's part throws, the workers still write into the memory: wait for them before rethrowing.
    let ownError: unknown = null;
    try {
      own();
    } catch (e) {
      ownError = e;
    }
    // A worker's part takes about as long as this thread's; allow for a machine that starves it for a while.
    const deadline = performance.now() + 60_000 + 100 * (performance.now() - t0);
    let failed = false;
    for (let i = 0; i < jobs.length; i++) {
      const ctl = this.ctls[i];
      for (;;) {
        const done = Atomics.load(ctl, 1);
        if (done === seqs[i]) break;
        if (performance.now() > deadline) {
          throw new CharlmError(
            "wasm backend: a worker thread did not finish its part of a kernel in time; use CHARLM_THREADS=1",
          );
        }
        Atomics.wait(ctl, 1, done, 1000);
      }
      failed ||= Atomics.load(ctl, 2) !== 0;
    }
    if (ownError) throw ownError;
    if (failed) throw new CharlmError("wasm backend: a worker thread failed in a kernel; use CHARLM_THREADS=1");
  }

  async close(): Promise<void> {
    for (const ctl of this.ctls) {
      Atomics.store(ctl, 0, -1);
      Atomics.notify(ctl, 0);
    }
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
