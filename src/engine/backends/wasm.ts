// The `wasm` backend: the Backend kernels run in WebAssembly SIMD compiled from assembly/ (see docs/wasm.md).
//
// Legend: M, K, N matrix sizes; T time steps; B batch; H hidden; G gate width (4H LSTM, 3H GRU, H RNN).
//
// The module has no allocator and no imports. For every call this file lays the operands out in wasm linear memory
// above the module's static data (a bump "arena", reset per call), copies the inputs in, runs the kernel and copies
// the outputs back into the caller's Float32Arrays. The copies are O(size of the operands) against O(M·K·N) work,
// and the recurrent kernels run a whole sequence per call, so they are amortised. Memory grows as needed and is
// kept for the next call (wasm memory cannot shrink); growing detaches old views, so views are made after growing.

import type {
  Backend,
  GruBackwardArgs,
  GruForwardArgs,
  LstmBackwardArgs,
  LstmForwardArgs,
  MatmulOptions,
  RnnBackwardArgs,
  RnnForwardArgs,
} from "../backend.js";
import { CharlmError } from "../../util/errors.js";

/** Where the build script puts the modules (works from src/engine/backends and from dist/engine/backends). */
export const WASM_URL = new URL("../../../build/kernels.wasm", import.meta.url);
/** The same kernels built with relaxed SIMD (fused multiply-add): used where the runtime validates it. */
export const WASM_RELAXED_URL = new URL("../../../build/kernels-relaxed.wasm", import.meta.url);

interface Kernels {
  memory: WebAssembly.Memory;
  heapBase(): number;
  packedBFloats(K: number, N: number): number;
  packAFloats(): number;
  gemmWorkspaceFloats(): number;
  packB(b: number, K: number, N: number, transB: number, dst: number): void;
  gemmFewRows(a: number, b: number, c: number, M: number, K: number, N: number, acc: number): void;
  gemm(
    a: number,
    b: number,
    c: number,
    M: number,
    K: number,
    N: number,
    tA: number,
    tB: number,
    acc: number,
    ws: number,
  ): void;
  lstmForward(
    T: number,
    B: number,
    H: number,
    whp: number,
    hall: number,
    call: number,
    gates: number,
    ws: number,
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
    dwh: number,
    ws: number,
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
    dwh: number,
    dbh: number,
    ws: number,
  ): void;
  rnnForward(T: number, B: number, H: number, whp: number, hall: number, ws: number): void;
  rnnBackward(
    T: number,
    B: number,
    H: number,
    whtp: number,
    hall: number,
    dhs: number,
    dh: number,
    dxw: number,
    dwh: number,
    ws: number,
  ): void;
  sigmoidInPlace(p: number, n: number): void;
  tanhInPlace(p: number, n: number): void;
}

const PAGE = 65536;

// Products with fewer rows than the micro-kernel's 4 (MR in assembly/gemm.ts), i.e. sampling with batch 1, skip
// packing B: the kernels stream B once instead (gemmFewRows), and the recurrent kernels take Wh unpacked.
const FEW_ROWS = 4;

/** Bump allocator over linear memory; addresses are byte offsets, 16-byte aligned for v128 loads. */
class Arena {
  private readonly base: number;
  private top: number;
  private view: Float32Array;

  constructor(private readonly k: Kernels) {
    this.base = (k.heapBase() + 15) & ~15;
    this.top = this.base;
    this.view = new Float32Array(k.memory.buffer);
  }

  /** Starts a new call: every earlier address is free again. */
  reset(): void {
    this.top = this.base;
  }

  /** Reserves n floats and returns the byte address; call `commit()` before touching memory. */
  alloc(n: number): number {
    const p = this.top;
    this.top += (n * 4 + 15) & ~15;
    return p;
  }

  /** Grows memory to cover every reservation and returns a fresh float view of it. */
  commit(): Float32Array {
    const have = this.k.memory.buffer.byteLength;
    if (this.top > have) {
      // Grow at least geometrically so a sequence of slightly larger calls does not grow every time.
      const need = Math.ceil((this.top - have) / PAGE);
      const pages = Math.max(need, Math.min(have / PAGE, 16384));
      try {
        this.k.memory.grow(pages);
      } catch {
        try {
          this.k.memory.grow(need);
        } catch {
          const mib = Math.ceil(this.top / 2 ** 20);
          throw new CharlmError(
            `wasm backend: this call needs ${mib} MiB of WebAssembly memory, more than the runtime allows (4 GiB at most); ` +
              "use a smaller batch or sequence length, or the js backend",
          );
        }
      }
    }
    if (this.view.buffer !== this.k.memory.buffer) this.view = new Float32Array(this.k.memory.buffer);
    return this.view;
  }

  /** Copies src into memory at byte address p (view from `commit()`). */
  static put(view: Float32Array, p: number, src: Float32Array, n: number): void {
    view.set(n === src.length ? src : src.subarray(0, n), p >> 2);
  }

  static take(view: Float32Array, p: number, dst: Float32Array, n: number): void {
    dst.set(view.subarray(p >> 2, (p >> 2) + n));
  }
}

function need(what: string, arr: Float32Array, n: number): void {
  if (arr.length < n) throw new Error(`wasm backend: ${what} has ${arr.length} floats, needs ${n}`);
}

// Node built-ins are imported through variable specifiers so that a browser bundler does not try to resolve them;
// in a browser they are never imported (readBuild fetches instead).
const FS = "node:fs/promises";
const URL_MOD = "node:url";
const isNode = () => typeof process !== "undefined" && typeof process.versions?.node === "string";

async function wasmPath(): Promise<string> {
  const { fileURLToPath } = (await import(URL_MOD)) as typeof import("node:url");
  return fileURLToPath(WASM_URL);
}

/** Which build runs: "relaxed" (fused multiply-add) where the runtime supports it, else "plain"; "bytes" when the
 * caller passed the module's bytes. */
export type WasmBuild = "plain" | "relaxed" | "bytes";

/** The wasm backend, plus which build of the kernels it runs (the bench prints it). */
export interface WasmBackendInfo extends Backend {
  readonly build: WasmBuild;
}

// CHARLM_WASM_BUILD=plain|relaxed forces one build (tests run both; plain reproduces a Node 20 run elsewhere).
function requestedBuild(): "plain" | "relaxed" | null {
  const v = isNode() ? process.env.CHARLM_WASM_BUILD : undefined;
  if (v === undefined || v === "") return null;
  if (v === "plain" || v === "relaxed") return v;
  throw new CharlmError(`CHARLM_WASM_BUILD=${v}: unknown wasm build; use plain or relaxed, or unset it`);
}

async function readBuild(url: URL): Promise<Uint8Array<ArrayBuffer> | null> {
  if (isNode()) {
    const { readFile } = (await import(FS)) as typeof import("node:fs/promises");
    const { fileURLToPath } = (await import(URL_MOD)) as typeof import("node:url");
    try {
      return new Uint8Array(await readFile(fileURLToPath(url)));
    } catch {
      return null;
    }
  }
  const res = await fetch(url).catch(() => null);
  return res?.ok ? new Uint8Array(await res.arrayBuffer()) : null;
}

async function loadBytes(): Promise<{ bytes: BufferSource; build: "plain" | "relaxed" }> {
  const want = requestedBuild();
  if (want !== "plain") {
    const relaxed = await readBuild(WASM_RELAXED_URL);
    if (relaxed && WebAssembly.validate(relaxed)) return { bytes: relaxed, build: "relaxed" };
    if (want === "relaxed") {
      throw new CharlmError(
        `CHARLM_WASM_BUILD=relaxed: ${relaxed ? "this runtime does not support relaxed SIMD" : "build/kernels-relaxed.wasm is missing"}; ` +
          "unset it (or use Node 22+, or node --experimental-wasm-relaxed-simd on Node 20)",
      );
    }
  }
  const plain = await readBuild(WASM_URL);
  if (!plain) {
    const where = isNode() ? await wasmPath() : WASM_URL.href;
    throw new CharlmError(`${where}: the wasm kernels are not built (or not served); run \`npm run build:wasm\``);
  }
  return { bytes: plain, build: "plain" };
}

/**
 * Instantiates the kernels and returns a Backend using them: from `bytes` if given (either build), else from
 * build/kernels-relaxed.wasm where the runtime supports relaxed SIMD, else build/kernels.wasm (read with fs in Node,
 * fetched from the same URLs in a browser).
 */
export async function createWasmBackend(bytes?: BufferSource): Promise<WasmBackendInfo> {
  const loaded = bytes ? { bytes, build: "bytes" as const } : await loadBytes();
  let instance: WebAssembly.Instance;
  try {
    ({ instance } = await WebAssembly.instantiate(loaded.bytes, {}));
  } catch (e) {
    throw new CharlmError(
      `build/kernels.wasm: could not instantiate the wasm kernels (${(e as Error).message}); ` +
        "rebuild them with `npm run build:wasm` and use a runtime with WebAssembly SIMD (Node 20+, current browsers)",
    );
  }
  return new WasmBackend(instance.exports as unknown as Kernels, loaded.build);
}

class WasmBackend implements WasmBackendInfo {
  readonly name = "wasm";
  private readonly arena: Arena;

  constructor(
    readonly kernels: Kernels,
    readonly build: WasmBuild,
  ) {
    this.arena = new Arena(kernels);
  }

  matmul(
    a: Float32Array,
    b: Float32Array,
    c: Float32Array,
    M: number,
    K: number,
    N: number,
    opts: MatmulOptions = {},
  ): void {
    need("matmul A", a, M * K);
    need("matmul B", b, K * N);
    need("matmul C", c, M * N);
    const k = this.kernels;
    const ar = this.arena;
    ar.reset();
    const pa = ar.alloc(M * K);
    const pb = ar.alloc(K * N);
    const pc = ar.alloc(M * N);
    const fewRows = M < FEW_ROWS && !opts.transA && !opts.transB;
    const ws = fewRows ? 0 : ar.alloc(k.gemmWorkspaceFloats());
    const v = ar.commit();
    Arena.put(v, pa, a, M * K);
    Arena.put(v, pb, b, K * N);
    if (opts.accumulate) Arena.put(v, pc, c, M * N);
    if (fewRows) k.gemmFewRows(pa, pb, pc, M, K, N, opts.accumulate ? 1 : 0);
    else k.gemm(pa, pb, pc, M, K, N, opts.transA ? 1 : 0, opts.transB ? 1 : 0, opts.accumulate ? 1 : 0, ws);
    Arena.take(v, pc, c, M * N);
  }

  // Copies Wh (H, G) in and packs it for h @ Wh (or transposed, for dh @ Wh^T); returns the address the kernel
  // takes. Forward with fewer than FEW_ROWS batch rows uses Wh as stored (the kernels do not pack then).
  private weights(
    v: Float32Array,
    wh: Float32Array,
    H: number,
    G: number,
    transposed: boolean,
    pw: number,
    pp: number,
    B: number,
  ): number {
    Arena.put(v, pw, wh, H * G);
    if (transposed) this.kernels.packB(pw, G, H, 1, pp);
    else if (B < FEW_ROWS) return pw;
    else this.kernels.packB(pw, H, G, 0, pp);
    return pp;
  }

  lstmForward(a: LstmForwardArgs): void {
    const { T, B, H } = a;
    const G = 4 * H;
    const S = B * H;
    need("lstm xw", a.xw, T * B * G);
    need("lstm wh", a.wh, H * G);
    const k = this.kernels;
    const ar = this.arena;
    ar.reset();
    const hall = ar.alloc((T + 1) * S);
    const call = ar.alloc((T + 1) * S);
    const gates = ar.alloc(T * B * G);
    const pw = ar.alloc(H * G);
    const whp = ar.alloc(k.packedBFloats(H, G));
    const ws = ar.alloc(k.packAFloats());
    const v = ar.commit();
    Arena.put(v, hall, a.h0, S);
    Arena.put(v, call, a.c0, S);
    Arena.put(v, gates, a.xw, T * B * G);
    const w = this.weights(v, a.wh, H, G, false, pw, whp, B);
    k.lstmForward(T, B, H, w, hall, call, gates, ws);
    Arena.take(v, hall + S * 4, a.hs, T * S);
    Arena.take(v, call + S * 4, a.cs, T * S);
    Arena.take(v, gates, a.gates, T * B * G);
  }

  lstmBackward(a: LstmBackwardArgs): void {
    const { T, B, H } = a;
    const G = 4 * H;
    const S = B * H;
    const k = this.kernels;
    const ar = this.arena;
    ar.reset();
    const hall = ar.alloc((T + 1) * S);
    const call = ar.alloc((T + 1) * S);
    const gates = ar.alloc(T * B * G);
    const dhs = ar.alloc(T * S);
    const dh = ar.alloc(S);
    const dc = ar.alloc(S);
    const dxw = ar.alloc(T * B * G);
    const dwh = ar.alloc(H * G);
    const pw = ar.alloc(H * G);
    const whtp = ar.alloc(k.packedBFloats(G, H));
    const ws = ar.alloc(k.gemmWorkspaceFloats());
    const v = ar.commit();
    Arena.put(v, hall, a.h0, S);
    Arena.put(v, hall + S * 4, a.hs, T * S);
    Arena.put(v, call, a.c0, S);
    Arena.put(v, call + S * 4, a.cs, T * S);
    Arena.put(v, gates, a.gates, T * B * G);
    Arena.put(v, dhs, a.dhs, T * S);
    if (a.dhT) Arena.put(v, dh, a.dhT, S);
    else v.fill(0, dh >> 2, (dh >> 2) + S);
    if (a.dcT) Arena.put(v, dc, a.dcT, S);
    else v.fill(0, dc >> 2, (dc >> 2) + S);
    Arena.put(v, dwh, a.dwh, H * G);
    this.weights(v, a.wh, H, G, true, pw, whtp, B);
    k.lstmBackward(T, B, H, whtp, hall, call, gates, dhs, dh, dc, dxw, dwh, ws);
    Arena.take(v, dxw, a.dxw, T * B * G);
    Arena.take(v, dwh, a.dwh, H * G);
    Arena.take(v, dh, a.dh0, S);
    Arena.take(v, dc, a.dc0, S);
  }

  gruForward(a: GruForwardArgs): void {
    const { T, B, H } = a;
    const G = 3 * H;
    const S = B * H;
    need("gru xw", a.xw, T * B * G);
    need("gru wh", a.wh, H * G);
    const k = this.kernels;
    const ar = this.arena;
    ar.reset();
    const hall = ar.alloc((T + 1) * S);
    const gates = ar.alloc(T * B * G);
    const hn = ar.alloc(T * S);
    const hh = ar.alloc(B * G);
    const bh = ar.alloc(G);
    const pw = ar.alloc(H * G);
    const whp = ar.alloc(k.packedBFloats(H, G));
    const ws = ar.alloc(k.packAFloats());
    const v = ar.commit();
    Arena.put(v, hall, a.h0, S);
    Arena.put(v, gates, a.xw, T * B * G);
    Arena.put(v, bh, a.bh, G);
    const w = this.weights(v, a.wh, H, G, false, pw, whp, B);
    k.gruForward(T, B, H, w, bh, hall, gates, hn, hh, ws);
    Arena.take(v, hall + S * 4, a.hs, T * S);
    Arena.take(v, gates, a.gates, T * B * G);
    Arena.take(v, hn, a.hn, T * S);
  }

  gruBackward(a: GruBackwardArgs): void {
    const { T, B, H } = a;
    const G = 3 * H;
    const S = B * H;
    const k = this.kernels;
    const ar = this.arena;
    ar.reset();
    const hall = ar.alloc((T + 1) * S);
    const gates = ar.alloc(T * B * G);
    const hn = ar.alloc(T * S);
    const dhs = ar.alloc(T * S);
    const dh = ar.alloc(S);
    const dxw = ar.alloc(T * B * G);
    const dhh = ar.alloc(T * B * G);
    const dwh = ar.alloc(H * G);
    const dbh = ar.alloc(G);
    const pw = ar.alloc(H * G);
    const whtp = ar.alloc(k.packedBFloats(G, H));
    const ws = ar.alloc(k.gemmWorkspaceFloats());
    const v = ar.commit();
    Arena.put(v, hall, a.h0, S);
    Arena.put(v, hall + S * 4, a.hs, T * S);
    Arena.put(v, gates, a.gates, T * B * G);
    Arena.put(v, hn, a.hn, T * S);
    Arena.put(v, dhs, a.dhs, T * S);
    if (a.dhT) Arena.put(v, dh, a.dhT, S);
    else v.fill(0, dh >> 2, (dh >> 2) + S);
    Arena.put(v, dwh, a.dwh, H * G);
    Arena.put(v, dbh, a.dbh, G);
    this.weights(v, a.wh, H, G, true, pw, whtp, B);
    k.gruBackward(T, B, H, whtp, hall, gates, hn, dhs, dh, dxw, dhh, dwh, dbh, ws);
    Arena.take(v, dxw, a.dxw, T * B * G);
    Arena.take(v, dwh, a.dwh, H * G);
    Arena.take(v, dbh, a.dbh, G);
    Arena.take(v, dh, a.dh0, S);
  }

  rnnForward(a: RnnForwardArgs): void {
    const { T, B, H } = a;
    const S = B * H;
    need("rnn xw", a.xw, T * S);
    need("rnn wh", a.wh, H * H);
    const k = this.kernels;
    const ar = this.arena;
    ar.reset();
    const hall = ar.alloc((T + 1) * S);
    const pw = ar.alloc(H * H);
    const whp = ar.alloc(k.packedBFloats(H, H));
    const ws = ar.alloc(k.packAFloats());
    const v = ar.commit();
    Arena.put(v, hall, a.h0, S);
    Arena.put(v, hall + S * 4, a.xw, T * S);
    const w = this.weights(v, a.wh, H, H, false, pw, whp, B);
    k.rnnForward(T, B, H, w, hall, ws);
    Arena.take(v, hall + S * 4, a.hs, T * S);
  }

  rnnBackward(a: RnnBackwardArgs): void {
    const { T, B, H } = a;
    const S = B * H;
    const k = this.kernels;
    const ar = this.arena;
    ar.reset();
    const hall = ar.alloc((T + 1) * S);
    const dhs = ar.alloc(T * S);
    const dh = ar.alloc(S);
    const dxw = ar.alloc(T * S);
    const dwh = ar.alloc(H * H);
    const pw = ar.alloc(H * H);
    const whtp = ar.alloc(k.packedBFloats(H, H));
    const ws = ar.alloc(k.gemmWorkspaceFloats());
    const v = ar.commit();
    Arena.put(v, hall, a.h0, S);
    Arena.put(v, hall + S * 4, a.hs, T * S);
    Arena.put(v, dhs, a.dhs, T * S);
    if (a.dhT) Arena.put(v, dh, a.dhT, S);
    else v.fill(0, dh >> 2, (dh >> 2) + S);
    Arena.put(v, dwh, a.dwh, H * H);
    this.weights(v, a.wh, H, H, true, pw, whtp, B);
    k.rnnBackward(T, B, H, whtp, hall, dhs, dh, dxw, dwh, ws);
    Arena.take(v, dxw, a.dxw, T * S);
    Arena.take(v, dwh, a.dwh, H * H);
    Arena.take(v, dh, a.dh0, S);
  }
}

/** Test hooks: the kernels' own sigmoid/tanh applied to xs (for accuracy tests). */
export async function wasmActivations(): Promise<{
  sigmoid(xs: Float32Array): Float32Array;
  tanh(xs: Float32Array): Float32Array;
}> {
  const { instance } = await WebAssembly.instantiate((await loadBytes()).bytes, {});
  const k = instance.exports as unknown as Kernels;
  const ar = new Arena(k);
  const run = (f: (p: number, n: number) => void, xs: Float32Array) => {
    ar.reset();
    const p = ar.alloc(xs.length);
    const v = ar.commit();
    Arena.put(v, p, xs, xs.length);
    f(p, xs.length);
    const out = new Float32Array(xs.length);
    Arena.take(ar.commit(), p, out, xs.length);
    return out;
  };
  return { sigmoid: (xs) => run(k.sigmoidInPlace, xs), tanh: (xs) => run(k.tanhInPlace, xs) };
}
