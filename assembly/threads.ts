// Work sharing for the per-step products of the recurrent kernels, in the shared-memory build (scripts/build-wasm.mjs).
//
// Legend: C(M,N) (+)= op(A)(M,K) · Bpacked(K,N), as in gemmPacked; M is the batch B of one time step.
//
// The worker threads (started by src/engine/backends/wasm.ts) wait in JS on a control block each, in this memory.
// The recurrent kernels call `gemmPackedShared` once per time step: above the size threshold it writes a block of
// columns of C into each worker's control block, wakes them (atomic.notify), computes the first block itself with
// `gemmPackedCols`, and waits (atomic.wait) until every worker has stored the job's sequence number back. Every
// element is computed by the same code whatever the split, so results are bit-identical to one thread. In the builds
// without threads (ASC_FEATURE_THREADS false) this is plain `gemmPacked`, and the atomics are never compiled.
//
// Control block of worker w at ctl + w·CTL_BYTES (i32 slots; the JS side uses the same layout):
//   [0] seq  [1] done  [2] failed  [3] kind (JOB_* below)  [4..] the arguments (i32, or f32 bits where a kernel
//   takes a float), in the order of the kernel's parameters. A worker runs a job with `runJob`, so the JS side
//   (src/engine/backends/wasm/pool.ts) and these kernels hand out work the same way.

import { NR, gemmBlock, gemmPacked, gemmPackedCols } from "./gemm";
import { binary, scale, unary, unaryBackward } from "./elementwise";
import { layerNorm, softmax } from "./rows";
import { attention, attentionBackward } from "./attention";
import { adagrad, adam, rmsprop, sgd } from "./optim";

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
      attention(au(b, 0), au(b, 1), au(b, 2), au(b, 3), au(b, 4), ai(b, 5), ai(b, 6), ai(b, 7), ai(b, 8), ai(b, 9));
      break;
    case JOB_ATTENTION_BACKWARD:
      attentionBackward(au(b, 0), au(b, 1), au(b, 2), au(b, 3), au(b, 4), au(b, 5), au(b, 6), au(b, 7), ai(b, 8), ai(b, 9), ai(b, 10), au(b, 11), ai(b, 12), ai(b, 13));
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
    default:
      unreachable();
  }
}

export const CTL_BYTES: i32 = 128; // a cache line pair per worker, so two workers never share one
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
    const b = ctl + <usize>(p - 1) * CTL_BYTES;
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
    const b = ctl + <usize>(p - 1) * CTL_BYTES;
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
