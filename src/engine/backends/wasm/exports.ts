// The TypeScript declarations of the wasm module's exports (assembly/index.ts). Pointers are byte addresses in the
// module's memory; bool parameters take 0 or 1. test/wasm-exports.test.ts parses assembly/ and checks that every
// export is declared here with the same parameter names and count, so the two cannot drift apart.

export interface Kernels {
  memory: WebAssembly.Memory;
  abiVersion(): number;
  heapBase(): number;

  // ---- matrix products (assembly/gemm.ts)
  gemm(
    a: number,
    b: number,
    c: number,
    M: number,
    K: number,
    N: number,
    transA: number,
    transB: number,
    accumulate: number,
    ws: number,
  ): void;
  gemmBlock(
    a: number,
    b: number,
    c: number,
    M: number,
    K: number,
    N: number,
    transA: number,
    transB: number,
    accumulate: number,
    ws: number,
    i0: number,
    i1: number,
    j0: number,
    j1: number,
  ): void;
  gemmPacked(
    a: number,
    transA: number,
    bpk: number,
    c: number,
    M: number,
    K: number,
    N: number,
    accumulate: number,
    ws: number,
  ): void;
  gemmPackedCols(
    a: number,
    transA: number,
    bpk: number,
    c: number,
    M: number,
    K: number,
    N: number,
    accumulate: number,
    ws: number,
    j0: number,
    j1: number,
  ): void;
  gemmFewRows(a: number, b: number, c: number, M: number, K: number, N: number, accumulate: number): void;
  packB(b: number, K: number, N: number, transB: number, dst: number): void;
  packedBFloats(K: number, N: number): number;
  packAFloats(): number;
  gemmWorkspaceFloats(): number;
  setTileScratch(p: number): void;
  tileScratchFloats(): number;

  // ---- recurrent layers (assembly/recurrent.ts): batch rows b0 .. b1, all T steps
  lstmForward(
    T: number,
    B: number,
    H: number,
    whp: number,
    hall: number,
    call: number,
    gates: number,
    ws: number,
    b0: number,
    b1: number,
  ): void;
  lstmBackward(
    T: number,
    B: number,
    H: number,
    whtp: number,
    hall: number,
    call: number,
    gates: number,
    dhs: number,
    dh: number,
    dc: number,
    dxw: number,
    ws: number,
    b0: number,
    b1: number,
  ): void;
  gruForward(
    T: number,
    B: number,
    H: number,
    whp: number,
    bh: number,
    hall: number,
    gates: number,
    hn: number,
    hh: number,
    ws: number,
    b0: number,
    b1: number,
  ): void;
  gruBackward(
    T: number,
    B: number,
    H: number,
    whtp: number,
    hall: number,
    gates: number,
    hn: number,
    dhs: number,
    dh: number,
    dxw: number,
    dhh: number,
    ws: number,
    b0: number,
    b1: number,
  ): void;
  rnnForward(T: number, B: number, H: number, whp: number, hall: number, ws: number, b0: number, b1: number): void;
  rnnBackward(
    T: number,
    B: number,
    H: number,
    whtp: number,
    hall: number,
    dhs: number,
    dh: number,
    dxw: number,
    ws: number,
    b0: number,
    b1: number,
  ): void;
  addColumnSums(src: number, rows: number, G: number, dst: number): void;
  setRowScratch(p: number): void;
  rowScratchFloats(): number;

  // ---- test hooks (assembly/activations.ts)
  sigmoidInPlace(p: number, n: number): void;
  tanhInPlace(p: number, n: number): void;

  // ---- threads (assembly/threads.ts, assembly/share.ts)
  runJob(b: number): void;
  setWorkers(n: number, ctlAddr: number, ws: number, stride: number, thresholdMacs: number): void;

  // ---- elementwise and layout (assembly/elementwise.ts)
  unary(op: number, x: number, y: number, i0: number, i1: number): void;
  unaryBackward(op: number, x: number, y: number, g: number, dx: number, i0: number, i1: number): void;
  scale(x: number, y: number, s: number, acc: number, i0: number, i1: number): void;
  scaleBy(x: number, n: number, fp: number): void;
  dropoutMask(out: number, n: number, seed: number, threshold: number, keep: number): void;
  binary(
    op: number,
    a: number,
    aStrides: number,
    b: number,
    bStrides: number,
    out: number,
    shape: number,
    rank: number,
    r0: number,
    r1: number,
  ): void;
  reduceTo(g: number, shape: number, rank: number, dst: number, dstStrides: number, s: number): void;
  copyBlocks(
    src: number,
    srcStride: number,
    dst: number,
    dstStride: number,
    block: number,
    count: number,
    acc: number,
  ): void;
  reduceAxis(x: number, y: number, outer: number, n: number, inner: number, s64: number): void;
  broadcastAxis(g: number, dx: number, outer: number, n: number, inner: number, s: number): void;
  swapAxes(x: number, y: number, P: number, n0: number, M: number, n1: number, Q: number, acc: number): void;
  causalMask(x: number, y: number, count: number, T: number): void;
  causalMaskBackward(g: number, dx: number, count: number, T: number): void;
  fillRange(p: number, value: number, i0: number, i1: number): void;
  copyRange(src: number, dst: number, i0: number, i1: number): void;

  // ---- rows (assembly/rows.ts)
  softmax(x: number, y: number, V: number, r0: number, r1: number): void;
  softmaxBackward(y: number, g: number, dx: number, rows: number, V: number): void;
  crossEntropy(x: number, tp: number, loss: number, probs: number, N: number, V: number): void;
  crossEntropyBackward(probs: number, tp: number, g: number, dx: number, N: number, V: number): void;
  layerNorm(
    x: number,
    gamma: number,
    beta: number,
    y: number,
    xhat: number,
    rstd: number,
    C: number,
    eps: number,
    r0: number,
    r1: number,
  ): void;
  layerNormBackward(
    g: number,
    gamma: number,
    xhat: number,
    rstd: number,
    dx: number,
    dgamma: number,
    dbeta: number,
    rows: number,
    C: number,
  ): void;
  embedding(w: number, ip: number, out: number, N: number, D: number): void;
  embeddingBackward(g: number, ip: number, dw: number, N: number, D: number): void;

  // ---- attention (assembly/attention.ts)
  attention(
    q: number,
    k: number,
    v: number,
    out: number,
    att: number,
    T: number,
    C: number,
    nH: number,
    scratch: number,
    p0: number,
    p1: number,
  ): void;
  attentionBackward(
    q: number,
    k: number,
    v: number,
    att: number,
    g: number,
    dq: number,
    dk: number,
    dv: number,
    T: number,
    C: number,
    nH: number,
    scratch: number,
    p0: number,
    p1: number,
  ): void;
  attentionCached(
    qkv: number,
    kc: number,
    vc: number,
    out: number,
    B: number,
    T: number,
    C: number,
    nH: number,
    N: number,
    pos0: number,
    scratch: number,
  ): void;
  attentionCachedPairs(
    qkv: number,
    kc: number,
    vc: number,
    out: number,
    T: number,
    C: number,
    nH: number,
    N: number,
    pos0: number,
    scratch: number,
    p0: number,
    p1: number,
  ): void;

  // ---- optimizers and norms (assembly/optim.ts)
  adam(w: number, g: number, m: number, v: number, hp: number, i0: number, i1: number): void;
  rmsprop(w: number, g: number, s: number, hp: number, i0: number, i1: number): void;
  adagrad(w: number, g: number, sum: number, hp: number, i0: number, i1: number): void;
  sgd(w: number, g: number, buf: number, hp: number, i0: number, i1: number): void;
  sumSquares(x: number, n: number, out: number): void;
  clipFactor(sq: number, count: number, maxNorm: number, out: number): void;
}
