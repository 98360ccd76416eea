// The wasm backend's kernels: the Backend interface (../../backend.ts) on storage resident in wasm memory.
//
// Legend: M, K, N matrix sizes; B batch; T time; H hidden; G gate width (4H LSTM, 3H GRU, H RNN); V classes;
// C channels; S = B·H one time step of hidden state.
//
// Every kernel takes the byte addresses of its storages: nothing is copied in or out per call except token ids and
// targets (small Int32Arrays, put into a block of their own for the call) and the shape/stride lists of the
// broadcasting ops. The recurrent kernels of assembly/recurrent.ts want [h0 | h_0 .. h_{T-1}] as one block (so that
// the dWh product is one matrix product); the adapters below copy h0 and hs into such a block inside wasm memory,
// which costs O(T·S) against the O(T·S·G) of the products.
//
// Threads: with a pool (pool.ts), work above a size threshold is split into parts, each computed by the same kernel
// on a range of its rows or elements, the first part on this thread. The split never changes how an output element
// is computed (every kernel computes each element with the same operations whatever its range, and the products
// split along whole tiles), so results are bit-identical for every thread count. The recurrent layers split their
// batch rows for the whole sequence (or each step's product by columns: RecurrentSplit). Kernels whose outputs sum
// across rows (reduceTo, layer norm's backward, the loss, the squared norms, the embedding scatter, softmax's
// backward) stay on one thread.

import type {
  AdagradStep,
  AdamStep,
  Backend,
  BinaryOp,
  GruBackwardArgs,
  GruForwardArgs,
  LstmBackwardArgs,
  LstmForwardArgs,
  MatmulOptions,
  RmspropStep,
  RnnBackwardArgs,
  RnnForwardArgs,
  Sampling,
  SgdStep,
  Strides,
  UnaryOp,
} from "../../backend.js";
import { checkMatmulBias } from "../../backend.js";
import { CharlmError } from "../../../util/errors.js";
import * as J from "../js-ops.js";
import type { Kernels } from "./exports.js";
import type { WasmBuild } from "./load.js";
import { Heap, type WasmStorage } from "./memory.js";
import { CTL_BYTES, JOB, type Job, Pool } from "./pool.js";

/**
 * How a recurrent layer is shared between threads: "rows" (default) gives each thread a block of batch rows for the
 * whole sequence (no hand-over per step; every thread reads all of Wh at every step); "columns" shares each step's
 * product by columns (a hand-over per step; each thread reads its columns of Wh). Same bits either way.
 */
export type RecurrentSplit = "rows" | "columns";

const UNARY: Record<UnaryOp, number> = { sigmoid: 0, tanh: 1, exp: 2, log: 3, relu: 4, gelu: 5 };
const BINARY: Record<BinaryOp, number> = { add: 0, sub: 1, mul: 2 };

/**
 * Products with fewer multiply-adds (M·K·N) than this stay on one thread: handing a block to a worker and waiting
 * for it costs tens of microseconds (measured for the previous backend with `npm run bench -- gemm_threads`).
 */
export const THREAD_MIN_MACS = 1 << 21;
/** Elementwise and row work: at least this many elements per part (a part costs ~10 µs to hand out and wait for). */
export const PART_MIN_ELEMS = 1 << 15;
// Ranges of elements split on multiples of this (whole vectors, whole cache lines).
const ALIGN = 16;
// Each thread gets at least this many rows (or columns) of C, so that blocks keep whole micro-kernel tiles busy.
const MIN_ROWS_PER_THREAD = 16;
const MIN_COLS_PER_THREAD = 64;
// A thread's block of batch rows in a recurrent layer: at least one micro-kernel tile of rows (MR in assembly/gemm.ts).
const MIN_RECURRENT_ROWS = 4;
// Products with fewer rows than the micro-kernel's 4 (MR in assembly/gemm.ts), i.e. sampling with batch 1, skip
// packing B: the kernels stream B once instead (gemmFewRows), and the recurrent kernels take Wh unpacked.
const FEW_ROWS = 4;
// The most axes a broadcasting op takes.
const MAX_RANK = 32;

// Splits C into `parts` blocks for gemmBlock: by rows when C is at least as tall as wide (the input projections,
// T·B rows), else by columns (dWh = h^T @ dg, (H, 4H)), so that what each thread packs twice is the smaller operand.
// Boundaries fall on whole tiles (4 rows, 8 columns).
function splitC(M: number, N: number, parts: number): [number, number, number, number][] {
  const rows = M >= N;
  const dim = rows ? M : N;
  const unit = rows ? 4 : 8;
  const out: [number, number, number, number][] = [];
  let lo = 0;
  for (let p = 1; p <= parts; p++) {
    const hi = p === parts ? dim : Math.round((dim * p) / parts / unit) * unit;
    out.push(rows ? [lo, hi, 0, N] : [0, M, lo, hi]);
    lo = hi;
  }
  return out;
}

// Runs a recurrent job's kernel on this thread, from the same argument list a worker gets.
function runJobHere(k: Kernels, kind: number, a: number[]): void {
  switch (kind) {
    case JOB.lstmForward:
      return k.lstmForward(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9]);
    case JOB.lstmBackward:
      return k.lstmBackward(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13]);
    case JOB.gruForward:
      return k.gruForward(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11]);
    case JOB.gruBackward:
      return k.gruBackward(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13]);
    case JOB.rnnForward:
      return k.rnnForward(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]);
    case JOB.rnnBackward:
      return k.rnnBackward(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10]);
    default:
      throw new Error(`wasm backend: job kind ${kind} is not a recurrent kernel`);
  }
}

function checkLength(what: string, s: WasmStorage, n: number): void {
  if (s.length < n) throw new CharlmError(`wasm backend: ${what} has ${s.length} floats, the call needs ${n}`);
}

export class WasmBackend implements Backend<WasmStorage> {
  readonly name = "wasm";
  readonly sync = true;
  readonly heap: Heap;
  private pool: Pool | null = null;
  // One gemm workspace per thread (gemmWorkspaceFloats() floats each), thread t's at ws + t·wsStride.
  private ws = 0;
  private readonly wsStride: number;
  // Shape and stride lists of the broadcasting ops, MAX_RANK i32 each, written per call (calls never nest).
  private readonly lists: number;

  private readonly maxThreads: number;
  private readonly minMacs: number;
  private readonly minElems: number;
  /** How the recurrent layers share their work (see RecurrentSplit). */
  readonly recurrentSplit: RecurrentSplit;

  constructor(
    readonly kernels: Kernels,
    readonly build: WasmBuild,
    opts: { threads: number; minMacs?: number; minElems?: number; recurrentSplit?: RecurrentSplit },
  ) {
    this.maxThreads = opts.threads;
    this.minMacs = opts.minMacs ?? THREAD_MIN_MACS;
    this.minElems = opts.minElems ?? PART_MIN_ELEMS;
    this.recurrentSplit = opts.recurrentSplit ?? "rows";
    this.heap = new Heap(kernels.memory, kernels.heapBase());
    this.wsStride = kernels.gemmWorkspaceFloats() * 4;
    this.ws = this.heap.allocBytes(this.maxThreads * kernels.gemmWorkspaceFloats(), false);
    this.lists = this.heap.allocBytes(3 * MAX_RANK, false);
    this.heap.clear = (p, n) => this.fillAt(p, 0, n);
    this.heap.poison = typeof process !== "undefined" && process.env?.CHARLM_POISON === "1";
  }

  // Writes the lists into the scratch block; returns their addresses.
  private putLists(...lists: readonly (readonly number[])[]): number[] {
    const ints = this.heap.ints();
    return lists.map((l, i) => {
      if (l.length > MAX_RANK)
        throw new CharlmError(`wasm backend: ${l.length} axes; at most ${MAX_RANK} are supported`);
      const p = this.lists + 4 * MAX_RANK * i;
      ints.set(l, p >>> 2);
      return p;
    });
  }

  /** Threads the kernels use (1: the calling thread only). */
  get threads(): number {
    return this.pool ? this.pool.size + 1 : 1;
  }

  /** Starts threads - 1 workers on the shared memory the kernels run on (the shared-memory build). */
  async startPool(module: WebAssembly.Module, memory: WebAssembly.Memory): Promise<void> {
    const n = this.maxThreads - 1;
    if (n < 1) return;
    const k = this.kernels;
    const ctl = this.heap.allocBytes((n * CTL_BYTES) / 4);
    const tiles = Array.from({ length: n }, () => this.heap.allocBytes(k.tileScratchFloats() + k.rowScratchFloats()));
    this.pool = await Pool.start(module, memory, ctl, tiles);
    // Whole-batch recurrent calls hand columns of each step's product to the workers from inside wasm
    // (assembly/share.ts); worker w packs into thread w + 1's workspace.
    k.setWorkers(n, ctl, this.ws + this.wsStride, this.wsStride, Math.min(this.minMacs, 2 ** 31 - 1));
  }

  /** Stops the worker threads; the backend keeps working, on one thread. */
  async close(): Promise<void> {
    const pool = this.pool;
    this.pool = null;
    this.kernels.setWorkers(0, 0, 0, 0, 0);
    await pool?.close();
  }

  // ---- memory

  alloc(n: number): WasmStorage {
    return this.heap.alloc(n);
  }

  allocUninit(n: number): WasmStorage {
    return this.heap.allocUninit(n);
  }

  free(s: WasmStorage): void {
    this.heap.free(s);
  }

  // n floats at byte address p = value; large fills are shared between the threads (memory bandwidth).
  private fillAt(p: number, value: number, n: number): void {
    const k = this.kernels;
    this.split(
      n,
      8 * this.minElems,
      ALIGN,
      (i0, i1) => ({ kind: JOB.fill, args: [p, value, i0, i1], floats: [1] }),
      (i0, i1) => k.fillRange(p, value, i0, i1),
    );
  }

  // n floats from byte address src to dst (not overlapping), shared between the threads when large.
  private copyAt(src: number, dst: number, n: number): void {
    const k = this.kernels;
    this.split(
      n,
      8 * this.minElems,
      ALIGN,
      (i0, i1) => ({ kind: JOB.copy, args: [src, dst, i0, i1] }),
      (i0, i1) => k.copyRange(src, dst, i0, i1),
    );
  }

  write(dst: WasmStorage, src: Float32Array, offset = 0): void {
    if (offset < 0 || offset + src.length > dst.length) {
      throw new CharlmError(`wasm backend: writing ${src.length} floats at ${offset} into a storage of ${dst.length}`);
    }
    this.heap.floats().set(src, (dst.ptr >>> 2) + offset);
  }

  read(src: WasmStorage, offset = 0, n = src.length - offset): Promise<Float32Array> {
    const i = (src.ptr >>> 2) + offset;
    return Promise.resolve(this.heap.floats().slice(i, i + n));
  }

  view(s: WasmStorage): Float32Array {
    return this.heap.view(s);
  }

  copy(src: WasmStorage, srcOff: number, dst: WasmStorage, dstOff: number, n: number): void {
    this.copyAt(src.ptr + 4 * srcOff, dst.ptr + 4 * dstOff, n);
  }

  fill(dst: WasmStorage, value: number, offset = 0, n = dst.length - offset): void {
    this.fillAt(dst.ptr + 4 * offset, value, n);
  }

  flush(): Promise<void> {
    return Promise.resolve();
  }

  destroy(): void {
    void this.close();
  }

  // ---- splitting work

  // Runs own(i0, i1) over [0, n) on this thread, or splits [0, n) into parts of at least minPart (aligned to
  // `align`), hands all but the first to the workers as job(i0, i1) and runs the first here.
  private split(
    n: number,
    minPart: number,
    align: number,
    job: (i0: number, i1: number) => Job,
    own: (i0: number, i1: number) => void,
  ): void {
    const parts = this.pool ? Math.min(this.pool.size + 1, Math.floor(n / Math.max(1, minPart))) : 1;
    if (parts <= 1) {
      own(0, n);
      return;
    }
    const bound = (p: number) => (p === parts ? n : Math.round((n * p) / parts / align) * align);
    const jobs: Job[] = [];
    for (let p = 1; p < parts; p++) jobs.push(job(bound(p), bound(p + 1)));
    this.pool!.run(jobs, () => own(0, bound(1)));
  }

  // ---- products

  // How many threads share a product: 1 below the size threshold, else as many as get a useful block each.
  private gemmParts(M: number, K: number, N: number): number {
    if (!this.pool || M * K * N < this.minMacs) return 1;
    const most = M >= N ? Math.floor(M / MIN_ROWS_PER_THREAD) : Math.floor(N / MIN_COLS_PER_THREAD);
    return Math.max(1, Math.min(this.pool.size + 1, most));
  }

  // C (+)= op(A)·op(B) at byte addresses, over as many threads as the size makes worth it (the first on this one).
  private gemmAt(
    pa: number,
    pb: number,
    pc: number,
    M: number,
    K: number,
    N: number,
    tA: number,
    tB: number,
    acc: number,
  ): void {
    const k = this.kernels;
    const parts = this.gemmParts(M, K, N);
    if (parts === 1) {
      k.gemm(pa, pb, pc, M, K, N, tA, tB, acc, this.ws);
      return;
    }
    const blocks = splitC(M, N, parts);
    const args = (t: number) => [pa, pb, pc, M, K, N, tA, tB, acc, this.ws + t * this.wsStride, ...blocks[t]];
    const jobs = blocks.slice(1).map((_, t) => ({ kind: JOB.gemmBlock, args: args(t + 1) }));
    this.pool!.run(jobs, () => {
      const a = args(0);
      k.gemmBlock(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13]);
    });
  }

  matmul(
    a: WasmStorage,
    b: WasmStorage,
    c: WasmStorage,
    M: number,
    K: number,
    N: number,
    opts: MatmulOptions = {},
  ): void {
    const batch = opts.batch ?? 1;
    const [oa, ob, oc] = [opts.offsetA ?? 0, opts.offsetB ?? 0, opts.offsetC ?? 0];
    checkMatmulBias(N, opts);
    checkLength("matmul A", a, oa + batch * M * K);
    checkLength("matmul B", b, ob + batch * K * N);
    checkLength("matmul C", c, oc + batch * M * N);
    const [tA, tB, acc] = [opts.transA ? 1 : 0, opts.transB ? 1 : 0, opts.accumulate ? 1 : 0];
    const fewRows = M < FEW_ROWS && !tA && !tB;
    for (let i = 0; i < batch; i++) {
      const pa = a.ptr + 4 * (oa + i * M * K);
      const pb = b.ptr + 4 * (ob + i * K * N);
      const pc = c.ptr + 4 * (oc + i * M * N);
      if (fewRows) this.kernels.gemmFewRows(pa, pb, pc, M, K, N, acc);
      else this.gemmAt(pa, pb, pc, M, K, N, tA, tB, acc);
    }
    if (opts.bias) this.binary("add", c, [N, 1], opts.bias as WasmStorage, [0, 1], c, [M, N]);
  }

  // ---- elementwise

  unary(op: UnaryOp, x: WasmStorage, y: WasmStorage, n: number): void {
    const code = UNARY[op];
    const k = this.kernels;
    this.split(
      n,
      this.minElems,
      ALIGN,
      (i0, i1) => ({ kind: JOB.unary, args: [code, x.ptr, y.ptr, i0, i1] }),
      (i0, i1) => k.unary(code, x.ptr, y.ptr, i0, i1),
    );
  }

  unaryBackward(op: UnaryOp, x: WasmStorage, y: WasmStorage, g: WasmStorage, dx: WasmStorage, n: number): void {
    const code = UNARY[op];
    const k = this.kernels;
    this.split(
      n,
      this.minElems,
      ALIGN,
      (i0, i1) => ({ kind: JOB.unaryBackward, args: [code, x.ptr, y.ptr, g.ptr, dx.ptr, i0, i1] }),
      (i0, i1) => k.unaryBackward(code, x.ptr, y.ptr, g.ptr, dx.ptr, i0, i1),
    );
  }

  scale(x: WasmStorage, y: WasmStorage, n: number, s: number, accumulate: boolean): void {
    const acc = accumulate ? 1 : 0;
    const k = this.kernels;
    this.split(
      n,
      this.minElems,
      ALIGN,
      (i0, i1) => ({ kind: JOB.scale, args: [x.ptr, y.ptr, s, acc, i0, i1], floats: [2] }),
      (i0, i1) => k.scale(x.ptr, y.ptr, s, acc, i0, i1),
    );
  }

  binary(
    op: BinaryOp,
    a: WasmStorage,
    aStrides: Strides,
    b: WasmStorage,
    bStrides: Strides,
    out: WasmStorage,
    shape: readonly number[],
  ): void {
    const rank = shape.length;
    const L = rank > 0 ? shape[rank - 1] : 1;
    let rows = 1;
    for (let d = 0; d < rank - 1; d++) rows *= shape[d];
    if (L === 0 || rows === 0) return;
    const [ps, pa, pb] = this.putLists(shape, aStrides, bStrides);
    const code = BINARY[op];
    const k = this.kernels;
    this.split(
      rows,
      Math.ceil(this.minElems / L),
      1,
      (r0, r1) => ({ kind: JOB.binary, args: [code, a.ptr, pa, b.ptr, pb, out.ptr, ps, rank, r0, r1] }),
      (r0, r1) => k.binary(code, a.ptr, pa, b.ptr, pb, out.ptr, ps, rank, r0, r1),
    );
  }

  reduceTo(g: WasmStorage, shape: readonly number[], dst: WasmStorage, dstStrides: Strides, s: number): void {
    const [ps, pd] = this.putLists(shape, dstStrides);
    this.kernels.reduceTo(g.ptr, ps, shape.length, dst.ptr, pd, s);
  }

  // ---- rows

  softmax(x: WasmStorage, y: WasmStorage, rows: number, V: number): void {
    const k = this.kernels;
    this.split(
      rows,
      Math.ceil(this.minElems / (4 * V)),
      1,
      (r0, r1) => ({ kind: JOB.softmax, args: [x.ptr, y.ptr, V, r0, r1] }),
      (r0, r1) => k.softmax(x.ptr, y.ptr, V, r0, r1),
    );
  }

  softmaxBackward(y: WasmStorage, g: WasmStorage, dx: WasmStorage, rows: number, V: number): void {
    this.kernels.softmaxBackward(y.ptr, g.ptr, dx.ptr, rows, V);
  }

  crossEntropy(
    logits: WasmStorage,
    targets: Int32Array,
    loss: WasmStorage,
    probs: WasmStorage | null,
    N: number,
    V: number,
  ): void {
    checkLength("crossEntropy logits", logits, N * V);
    if (targets.length < N)
      throw new CharlmError(`wasm backend: crossEntropy has ${targets.length} targets for ${N} rows`);
    const tp = this.heap.putInts(targets.subarray(0, N));
    this.kernels.crossEntropy(logits.ptr, tp, loss.ptr, probs ? probs.ptr : 0, N, V);
    this.heap.freeBytes(tp, N);
  }

  crossEntropyBackward(
    probs: WasmStorage,
    targets: Int32Array,
    g: WasmStorage,
    dx: WasmStorage,
    N: number,
    V: number,
  ): void {
    const tp = this.heap.putInts(targets.subarray(0, N));
    this.kernels.crossEntropyBackward(probs.ptr, tp, g.ptr, dx.ptr, N, V);
    this.heap.freeBytes(tp, N);
  }

  layerNorm(
    x: WasmStorage,
    gamma: WasmStorage,
    beta: WasmStorage,
    y: WasmStorage,
    xhat: WasmStorage,
    rstd: WasmStorage,
    rows: number,
    C: number,
    eps: number,
  ): void {
    const k = this.kernels;
    const p = [x.ptr, gamma.ptr, beta.ptr, y.ptr, xhat.ptr, rstd.ptr] as const;
    this.split(
      rows,
      Math.ceil(this.minElems / (2 * C)),
      1,
      (r0, r1) => ({ kind: JOB.layerNorm, args: [...p, C, eps, r0, r1], floats: [7] }),
      (r0, r1) => k.layerNorm(...p, C, eps, r0, r1),
    );
  }

  layerNormBackward(
    g: WasmStorage,
    gamma: WasmStorage,
    xhat: WasmStorage,
    rstd: WasmStorage,
    dx: WasmStorage | null,
    dgamma: WasmStorage | null,
    dbeta: WasmStorage | null,
    rows: number,
    C: number,
  ): void {
    this.kernels.layerNormBackward(
      g.ptr,
      gamma.ptr,
      xhat.ptr,
      rstd.ptr,
      dx?.ptr ?? 0,
      dgamma?.ptr ?? 0,
      dbeta?.ptr ?? 0,
      rows,
      C,
    );
  }

  // ---- gather and scatter

  embedding(w: WasmStorage, ids: Int32Array, out: WasmStorage, D: number): void {
    checkLength("embedding out", out, ids.length * D);
    const ip = this.heap.putInts(ids);
    this.kernels.embedding(w.ptr, ip, out.ptr, ids.length, D);
    this.heap.freeBytes(ip, ids.length);
  }

  embeddingBackward(g: WasmStorage, ids: Int32Array, dw: WasmStorage, D: number): void {
    const ip = this.heap.putInts(ids);
    this.kernels.embeddingBackward(g.ptr, ip, dw.ptr, ids.length, D);
    this.heap.freeBytes(ip, ids.length);
  }

  // Generation's device-side token path: one row or a few per call, so the reference loops on the heap's views.
  embeddingFrom(w: WasmStorage, ids: WasmStorage, idsOff: number, out: WasmStorage, count: number, D: number): void {
    checkLength("embeddingFrom out", out, count * D);
    J.embeddingFrom(this.view(w), this.view(ids), idsOff, this.view(out), count, D);
  }

  sampleRows(
    logits: WasmStorage,
    u: WasmStorage,
    uOff: number,
    ids: WasmStorage,
    idsOff: number,
    rows: number,
    V: number,
    how: Sampling,
  ): void {
    J.sampleRows(this.view(logits), this.view(u), uOff, this.view(ids), idsOff, rows, V, how);
  }

  // ---- layout

  copyBlocks(
    src: WasmStorage,
    srcOff: number,
    srcStride: number,
    dst: WasmStorage,
    dstOff: number,
    dstStride: number,
    block: number,
    count: number,
    accumulate: boolean,
  ): void {
    this.kernels.copyBlocks(
      src.ptr + 4 * srcOff,
      srcStride,
      dst.ptr + 4 * dstOff,
      dstStride,
      block,
      count,
      accumulate ? 1 : 0,
    );
  }

  reduceAxis(x: WasmStorage, y: WasmStorage, outer: number, n: number, inner: number, s: number): void {
    this.kernels.reduceAxis(x.ptr, y.ptr, outer, n, inner, s);
  }

  broadcastAxis(g: WasmStorage, dx: WasmStorage, outer: number, n: number, inner: number, s: number): void {
    this.kernels.broadcastAxis(g.ptr, dx.ptr, outer, n, inner, s);
  }

  swapAxes(
    x: WasmStorage,
    shape: readonly number[],
    a0: number,
    a1: number,
    y: WasmStorage,
    accumulate: boolean,
  ): void {
    if (!(0 <= a0 && a0 < a1 && a1 < shape.length)) {
      throw new CharlmError(`wasm backend: swapAxes(${a0}, ${a1}) needs 0 <= a0 < a1 < ${shape.length}`);
    }
    const prod = (lo: number, hi: number) => shape.slice(lo, hi).reduce((p, d) => p * d, 1);
    const [P, n0, M, n1, Q] = [prod(0, a0), shape[a0], prod(a0 + 1, a1), shape[a1], prod(a1 + 1, shape.length)];
    this.kernels.swapAxes(x.ptr, y.ptr, P, n0, M, n1, Q, accumulate ? 1 : 0);
  }

  // ---- attention

  causalMask(x: WasmStorage, y: WasmStorage, count: number, T: number): void {
    this.kernels.causalMask(x.ptr, y.ptr, count, T);
  }

  causalMaskBackward(g: WasmStorage, dx: WasmStorage, count: number, T: number): void {
    this.kernels.causalMaskBackward(g.ptr, dx.ptr, count, T);
  }

  attention(
    q: WasmStorage,
    k: WasmStorage,
    v: WasmStorage,
    out: WasmStorage,
    att: WasmStorage,
    B: number,
    T: number,
    C: number,
    nHead: number,
  ): void {
    const ks = this.kernels;
    const p = [q.ptr, k.ptr, v.ptr, out.ptr, att.ptr, T, C, nHead] as const;
    // each part's scratch: a head's keys, transposed
    this.withPartScratch((C / nHead) * T, (own, next) =>
      this.split(
        B * nHead,
        Math.ceil(this.minElems / (T * T + T * C)),
        1,
        (p0, p1) => ({ kind: JOB.attention, args: [...p, next(), p0, p1] }),
        (p0, p1) => ks.attention(...p, own, p0, p1),
      ),
    );
  }

  // Runs `run` with `each` floats of scratch for every part of a split: the first part's at `own`, each job's from
  // `next()`; freed afterwards.
  private withPartScratch(each: number, run: (own: number, next: () => number) => void): void {
    const parts = this.threads;
    const scratch = this.heap.allocBytes(parts * each, false);
    let part = 0;
    try {
      run(scratch, () => scratch + 4 * each * ++part);
    } finally {
      this.heap.freeBytes(scratch, parts * each);
    }
  }

  attentionBackward(
    q: WasmStorage,
    k: WasmStorage,
    v: WasmStorage,
    att: WasmStorage,
    g: WasmStorage,
    dq: WasmStorage | null,
    dk: WasmStorage | null,
    dv: WasmStorage | null,
    B: number,
    T: number,
    C: number,
    nHead: number,
  ): void {
    const ks = this.kernels;
    const p = [q.ptr, k.ptr, v.ptr, att.ptr, g.ptr, dq?.ptr ?? 0, dk?.ptr ?? 0, dv?.ptr ?? 0, T, C, nHead] as const;
    // each part's scratch: a head's values transposed, then its ds
    this.withPartScratch((C / nHead + T) * T, (own, next) =>
      this.split(
        B * nHead,
        Math.ceil(this.minElems / (T * T + T * C)),
        1,
        (p0, p1) => ({ kind: JOB.attentionBackward, args: [...p, next(), p0, p1] }),
        (p0, p1) => ks.attentionBackward(...p, own, p0, p1),
      ),
    );
  }

  attentionCached(
    qkv: WasmStorage,
    kCache: WasmStorage,
    vCache: WasmStorage,
    out: WasmStorage,
    B: number,
    T: number,
    C: number,
    nHead: number,
    N: number,
    pos0: number,
  ): void {
    if (pos0 + T > N)
      throw new CharlmError(`wasm backend: attentionCached: positions up to ${pos0 + T} in a cache of ${N}`);
    if (T === 1) {
      // a generated token: each head's scores against the cache one dot product at a time (transposing the cached
      // keys first would cost as much as the scores)
      const scratch = this.heap.allocBytes(N, false);
      this.kernels.attentionCached(qkv.ptr, kCache.ptr, vCache.ptr, out.ptr, B, T, C, nHead, N, pos0, scratch);
      this.heap.freeBytes(scratch, N);
      return;
    }
    // several (a prime, a window rerun): each (batch, head) pair's keys transposed once for all its rows, the pairs
    // split over the threads
    const ks = this.kernels;
    const L = pos0 + T;
    const p = [qkv.ptr, kCache.ptr, vCache.ptr, out.ptr, T, C, nHead, N, pos0] as const;
    this.withPartScratch((C / nHead + 1) * L, (own, next) =>
      this.split(
        B * nHead,
        Math.ceil(this.minElems / (T * L + T * C)),
        1,
        (p0, p1) => ({ kind: JOB.attentionCached, args: [...p, next(), p0, p1] }),
        (p0, p1) => ks.attentionCachedPairs(...p, own, p0, p1),
      ),
    );
  }

  // ---- recurrent layers
  //
  // "rows": the batch rows of a recurrence never meet, so each thread runs the whole sequence for a block of rows
  // (at least MIN_RECURRENT_ROWS, whole micro-kernel tiles), with no hand-over between time steps. "columns", or a
  // batch too small for two blocks: this thread runs the whole batch and the kernel shares each step's product by
  // columns (assembly/share.ts), a hand-over per step. Either way the dWh product follows as one product over all
  // rows, split like any other.

  // Runs run(b0, b1, ws) over blocks of the B batch rows: on this thread alone when the sequence is small, else one
  // block per thread (each with its own workspace), as `kind` jobs with the arguments args(b0, b1, ws).
  private rows(B: number, work: number, kind: number, args: (b0: number, b1: number, ws: number) => number[]): void {
    const k = this.kernels;
    const byRows = this.pool && this.recurrentSplit === "rows" && work >= this.minMacs;
    const parts = byRows ? Math.min(this.pool!.size + 1, Math.floor(B / MIN_RECURRENT_ROWS)) : 1;
    if (parts <= 1) {
      runJobHere(k, kind, args(0, B, this.ws));
      return;
    }
    const bound = (p: number) =>
      p === parts ? B : Math.round((B * p) / parts / MIN_RECURRENT_ROWS) * MIN_RECURRENT_ROWS;
    const jobs: Job[] = [];
    for (let p = 1; p < parts; p++)
      jobs.push({ kind, args: args(bound(p), bound(p + 1), this.ws + p * this.wsStride) });
    this.pool!.run(jobs, () => runJobHere(k, kind, args(0, bound(1), this.ws)));
  }

  // [first | rest] as one block of (T+1)·S floats (the layout assembly/recurrent.ts works on).
  private stack(first: WasmStorage, rest: WasmStorage | null, S: number, T: number): number {
    const p = this.heap.allocBytes((T + 1) * S, false);
    this.copyAt(first.ptr, p, S);
    if (rest) this.copyAt(rest.ptr, p + 4 * S, T * S);
    return p;
  }

  // Wh (H, G) as the kernels take it: packed for h @ Wh (forward; as stored with fewer than FEW_ROWS batch rows),
  // or Wh^T packed for dh @ Wh^T (backward). Returns [address, scratch to free or 0, its floats].
  private packWh(wh: WasmStorage, H: number, G: number, B: number, transposed: boolean): [number, number, number] {
    const k = this.kernels;
    if (!transposed && B < FEW_ROWS) return [wh.ptr, 0, 0];
    const n = transposed ? k.packedBFloats(G, H) : k.packedBFloats(H, G);
    const p = this.heap.allocBytes(n, false);
    if (transposed) k.packB(wh.ptr, G, H, 1, p);
    else k.packB(wh.ptr, H, G, 0, p);
    return [p, p, n];
  }

  // A (B, H) block: a copy of src, or zeros.
  private state(src: WasmStorage | null, S: number): number {
    const p = this.heap.allocBytes(S, src === null);
    if (src) this.copyAt(src.ptr, p, S);
    return p;
  }

  private copyOut(p: number, dst: WasmStorage, n: number): void {
    this.copyAt(p, dst.ptr, n);
  }

  lstmForward(a: LstmForwardArgs<WasmStorage>): void {
    const { T, B, H } = a;
    const [G, S] = [4 * H, B * H];
    checkLength("lstm xw", a.xw, T * B * G);
    checkLength("lstm wh", a.wh, H * G);
    const h = this.heap;
    const hall = this.stack(a.h0, null, S, T);
    const call = this.stack(a.c0, null, S, T);
    this.copy(a.xw, 0, a.gates, 0, T * B * G); // the kernel adds h @ Wh onto xw in place
    const [w, wp, wn] = this.packWh(a.wh, H, G, B, false);
    const gates = a.gates.ptr;
    this.rows(B, T * B * H * G, JOB.lstmForward, (b0, b1, ws) => [T, B, H, w, hall, call, gates, ws, b0, b1]);
    this.copyOut(hall + 4 * S, a.hs, T * S);
    this.copyOut(call + 4 * S, a.cs, T * S);
    h.freeBytes(hall, (T + 1) * S);
    h.freeBytes(call, (T + 1) * S);
    if (wp) h.freeBytes(wp, wn);
  }

  lstmBackward(a: LstmBackwardArgs<WasmStorage>): void {
    const { T, B, H } = a;
    const [G, S] = [4 * H, B * H];
    const h = this.heap;
    const hall = this.stack(a.h0, a.hs, S, T);
    const call = this.stack(a.c0, a.cs, S, T);
    const dh = this.state(a.dhT, S);
    const dc = this.state(a.dcT, S);
    const [w, wp, wn] = this.packWh(a.wh, H, G, B, true);
    const [gates, dhs, dxw] = [a.gates.ptr, a.dhs.ptr, a.dxw.ptr];
    this.rows(B, T * B * H * G, JOB.lstmBackward, (b0, b1, ws) => [
      T,
      B,
      H,
      w,
      hall,
      call,
      gates,
      dhs,
      dh,
      dc,
      dxw,
      ws,
      b0,
      b1,
    ]);
    if (a.dwh) this.gemmAt(hall, dxw, a.dwh.ptr, H, T * B, G, 1, 0, 1); // dWh += [h0 .. h_{T-2}]^T @ dxw
    this.copyOut(dh, a.dh0, S);
    this.copyOut(dc, a.dc0, S);
    h.freeBytes(hall, (T + 1) * S);
    h.freeBytes(call, (T + 1) * S);
    h.freeBytes(dh, S);
    h.freeBytes(dc, S);
    h.freeBytes(wp, wn);
  }

  gruForward(a: GruForwardArgs<WasmStorage>): void {
    const { T, B, H } = a;
    const [G, S] = [3 * H, B * H];
    checkLength("gru xw", a.xw, T * B * G);
    checkLength("gru wh", a.wh, H * G);
    const h = this.heap;
    const hall = this.stack(a.h0, null, S, T);
    const hh = h.allocBytes(B * G, false);
    this.copy(a.xw, 0, a.gates, 0, T * B * G);
    const [w, wp, wn] = this.packWh(a.wh, H, G, B, false);
    const [bh, gates, hn] = [a.bh.ptr, a.gates.ptr, a.hn.ptr];
    this.rows(B, T * B * H * G, JOB.gruForward, (b0, b1, ws) => [T, B, H, w, bh, hall, gates, hn, hh, ws, b0, b1]);
    this.copyOut(hall + 4 * S, a.hs, T * S);
    h.freeBytes(hall, (T + 1) * S);
    h.freeBytes(hh, B * G);
    if (wp) h.freeBytes(wp, wn);
  }

  gruBackward(a: GruBackwardArgs<WasmStorage>): void {
    const { T, B, H } = a;
    const [G, S] = [3 * H, B * H];
    const h = this.heap;
    const hall = this.stack(a.h0, a.hs, S, T);
    const dh = this.state(a.dhT, S);
    const dhh = h.allocBytes(T * B * G, false);
    const [w, wp, wn] = this.packWh(a.wh, H, G, B, true);
    const [gates, hn, dhs, dxw] = [a.gates.ptr, a.hn.ptr, a.dhs.ptr, a.dxw.ptr];
    this.rows(B, T * B * H * G, JOB.gruBackward, (b0, b1, ws) => [
      T,
      B,
      H,
      w,
      hall,
      gates,
      hn,
      dhs,
      dh,
      dxw,
      dhh,
      ws,
      b0,
      b1,
    ]);
    if (a.dwh) this.gemmAt(hall, dhh, a.dwh.ptr, H, T * B, G, 1, 0, 1); // dWh += [h0 ..]^T @ dhh
    if (a.dbh) this.kernels.addColumnSums(dhh, T * B, G, a.dbh.ptr); // dbh += Σ_rows dhh
    this.copyOut(dh, a.dh0, S);
    h.freeBytes(hall, (T + 1) * S);
    h.freeBytes(dh, S);
    h.freeBytes(dhh, T * B * G);
    h.freeBytes(wp, wn);
  }

  rnnForward(a: RnnForwardArgs<WasmStorage>): void {
    const { T, B, H } = a;
    const S = B * H;
    checkLength("rnn xw", a.xw, T * S);
    checkLength("rnn wh", a.wh, H * H);
    const h = this.heap;
    const hall = this.stack(a.h0, a.xw, S, T); // the kernel turns xw_t into h_t in place
    const [w, wp, wn] = this.packWh(a.wh, H, H, B, false);
    this.rows(B, T * B * H * H, JOB.rnnForward, (b0, b1, ws) => [T, B, H, w, hall, ws, b0, b1]);
    this.copyOut(hall + 4 * S, a.hs, T * S);
    h.freeBytes(hall, (T + 1) * S);
    if (wp) h.freeBytes(wp, wn);
  }

  rnnBackward(a: RnnBackwardArgs<WasmStorage>): void {
    const { T, B, H } = a;
    const S = B * H;
    const h = this.heap;
    const hall = this.stack(a.h0, a.hs, S, T);
    const dh = this.state(a.dhT, S);
    const [w, wp, wn] = this.packWh(a.wh, H, H, B, true);
    const [dhs, dxw] = [a.dhs.ptr, a.dxw.ptr];
    this.rows(B, T * B * H * H, JOB.rnnBackward, (b0, b1, ws) => [T, B, H, w, hall, dhs, dh, dxw, ws, b0, b1]);
    if (a.dwh) this.gemmAt(hall, dxw, a.dwh.ptr, H, T * B, H, 1, 0, 1); // dWh += [h0 ..]^T @ dxw
    this.copyOut(dh, a.dh0, S);
    h.freeBytes(hall, (T + 1) * S);
    h.freeBytes(dh, S);
    h.freeBytes(wp, wn);
  }

  // ---- optimizers

  // Runs an optimizer kernel over n elements with its hyperparameters in a float64 block.
  private optimize(
    kind: number,
    ptrs: number[],
    hp: number[],
    n: number,
    run: (hpp: number, i0: number, i1: number) => void,
  ): void {
    const p = this.heap.putDoubles(hp);
    try {
      this.split(
        n,
        this.minElems / 4,
        ALIGN,
        (i0, i1) => ({ kind, args: [...ptrs, p, i0, i1] }),
        (i0, i1) => run(p, i0, i1),
      );
    } finally {
      this.heap.freeBytes(p, 2 * hp.length);
    }
  }

  adam(w: WasmStorage, g: WasmStorage, m: WasmStorage, v: WasmStorage, n: number, s: AdamStep): void {
    const ptrs = [w.ptr, g.ptr, m.ptr, v.ptr];
    const hp = [s.lr, s.beta1, s.beta2, s.eps, s.weightDecay, s.bc1, s.bc2];
    this.optimize(JOB.adam, ptrs, hp, n, (p, i0, i1) => this.kernels.adam(w.ptr, g.ptr, m.ptr, v.ptr, p, i0, i1));
  }

  rmsprop(w: WasmStorage, g: WasmStorage, sq: WasmStorage, n: number, s: RmspropStep): void {
    const hp = [s.lr, s.rho, s.eps, s.weightDecay];
    this.optimize(JOB.rmsprop, [w.ptr, g.ptr, sq.ptr], hp, n, (p, i0, i1) =>
      this.kernels.rmsprop(w.ptr, g.ptr, sq.ptr, p, i0, i1),
    );
  }

  adagrad(w: WasmStorage, g: WasmStorage, sum: WasmStorage, n: number, s: AdagradStep): void {
    const hp = [s.lr, s.eps, s.weightDecay];
    this.optimize(JOB.adagrad, [w.ptr, g.ptr, sum.ptr], hp, n, (p, i0, i1) =>
      this.kernels.adagrad(w.ptr, g.ptr, sum.ptr, p, i0, i1),
    );
  }

  sgd(w: WasmStorage, g: WasmStorage, buf: WasmStorage, n: number, s: SgdStep): void {
    const hp = [s.lr, s.momentum, s.nesterov ? 1 : 0, s.weightDecay, s.first ? 1 : 0];
    this.optimize(JOB.sgd, [w.ptr, g.ptr, buf.ptr], hp, n, (p, i0, i1) =>
      this.kernels.sgd(w.ptr, g.ptr, buf.ptr, p, i0, i1),
    );
  }

  // ---- norms

  sumSquares(x: WasmStorage, n: number, out: WasmStorage, outOff: number): void {
    this.kernels.sumSquares(x.ptr, n, out.ptr + 4 * outOff);
  }

  clipFactor(sq: WasmStorage, count: number, maxNorm: number, out: WasmStorage): void {
    this.kernels.clipFactor(sq.ptr, count, maxNorm, out.ptr);
  }

  dropoutMask(out: WasmStorage, n: number, seed: number, threshold: number, keep: number): void {
    this.kernels.dropoutMask(out.ptr, n, seed, threshold, keep);
  }

  scaleBy(x: WasmStorage, n: number, f: WasmStorage, fOff: number): void {
    this.kernels.scaleBy(x.ptr, n, f.ptr + 4 * fOff);
  }
}
