// Column split of the recurrent kernels' per-step products over the worker threads (shared-memory build).
//
// Legend: C(M,N) (+)= op(A)(M,K) · Bpacked(K,N), as in gemmPacked; M is the batch B of one time step.
//
// The other way to share a recurrent layer is by batch rows (each thread runs the whole sequence for its rows; see
// assembly/recurrent.ts), which needs no hand-over per step but has every thread read all of Wh at every step. When
// the JS side runs a kernel on the whole batch on the calling thread (one thread's worth of rows, or
// CHARLM_WASM_SPLIT=columns), the kernel calls `gemmPackedShared` once per time step: above the size threshold it
// writes a block of columns of C into each worker's control block (the layout of threads.ts, job kind 1:
// gemmPackedCols), wakes them (atomic.notify), computes the first block itself, and waits (atomic.wait) until every
// worker has stored the job's sequence number back. Every element is computed by the same code whatever the split.
// In the builds without threads (ASC_FEATURE_THREADS false) this is plain `gemmPacked`.

import { NR, gemmPacked, gemmPackedCols } from "./gemm";

const CTL: i32 = 128; // bytes per control block (CTL_BYTES in threads.ts and pool.ts)
const JOB_GEMM_PACKED_COLS: i32 = 1;
const MIN_COLS: i32 = 64; // columns of C per thread at least

// Per instance (globals are not shared between the threads' instances): only the main thread's instance sets them.
let workers: i32 = 0;
let ctl: usize = 0;
let wsWorkers: usize = 0; // worker w's packA workspace at wsWorkers + w·packAFloats()·4
let wsStride: usize = 0;
let minMacs: i64 = 0;

/** Hands this instance n worker threads: their control blocks at ctlAddr, packA workspaces at ws (stride bytes). */
export function setWorkers(n: i32, ctlAddr: usize, ws: usize, stride: usize, thresholdMacs: i32): void {
  workers = n;
  ctl = ctlAddr;
  wsWorkers = ws;
  wsStride = stride;
  minMacs = thresholdMacs;
}

/** gemmPacked, split by columns over the worker threads when it is large enough (see the top of this file). */
export function gemmPackedShared(
  a: usize,
  transA: bool,
  bpk: usize,
  c: usize,
  M: i32,
  K: i32,
  N: i32,
  accumulate: bool,
  ws: usize,
): void {
  if (ASC_FEATURE_THREADS) {
    if (workers > 0 && K > 0 && <i64>M * K * N >= minMacs && N >= 2 * MIN_COLS) {
      splitPacked(a, transA, bpk, c, M, K, N, accumulate, ws);
      return;
    }
  }
  gemmPacked(a, transA, bpk, c, M, K, N, accumulate, ws);
}

// Column boundary p of `parts` (a multiple of NR, the packed panel width).
// @ts-ignore: decorator
@inline
function bound(N: i32, p: i32, parts: i32): i32 {
  return p == parts ? N : (((N * p) / parts + NR / 2) / NR) * NR;
}

function splitPacked(
  a: usize,
  transA: bool,
  bpk: usize,
  c: usize,
  M: i32,
  K: i32,
  N: i32,
  accumulate: bool,
  ws: usize,
): void {
  const parts = min(workers + 1, N / MIN_COLS);
  for (let p = 1; p < parts; p++) {
    const b = ctl + <usize>(p - 1) * CTL;
    // Each block's next sequence number is its last one plus 1 (the JS side hands out jobs on the same blocks).
    const seq = (atomic.load<i32>(b) + 1) & 0x3fffffff;
    store<i32>(b, JOB_GEMM_PACKED_COLS, 12);
    store<i32>(b, <i32>a, 16);
    store<i32>(b, transA ? 1 : 0, 20);
    store<i32>(b, <i32>bpk, 24);
    store<i32>(b, <i32>c, 28);
    store<i32>(b, M, 32);
    store<i32>(b, K, 36);
    store<i32>(b, N, 40);
    store<i32>(b, accumulate ? 1 : 0, 44);
    store<i32>(b, <i32>(wsWorkers + <usize>(p - 1) * wsStride), 48);
    store<i32>(b, bound(N, p, parts), 52);
    store<i32>(b, bound(N, p + 1, parts), 56);
    atomic.store<i32>(b, seq);
    atomic.notify(b, 1);
  }
  gemmPackedCols(a, transA, bpk, c, M, K, N, accumulate, ws, 0, bound(N, 1, parts));
  let failed = false;
  for (let p = 1; p < parts; p++) {
    const b = ctl + <usize>(p - 1) * CTL;
    const seq = atomic.load<i32>(b);
    // Wait in 1 s slices; a worker silent for a minute is dead: trap, and the backend reports it.
    for (let slices = 0; ; slices++) {
      const done = atomic.load<i32>(b, 4);
      if (done == seq) break;
      if (slices > 60) unreachable();
      atomic.wait<i32>(b + 4, done, 1_000_000_000);
    }
    failed = failed || atomic.load<i32>(b, 8) != 0;
  }
  if (failed) unreachable();
}
