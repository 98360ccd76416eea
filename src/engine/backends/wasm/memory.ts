// Storage of the wasm backend: float32 buffers resident in the module's linear memory, and the allocator that
// hands them out.
//
// The module has no allocator of its own; everything above its static data (`heapBase()`) belongs to this file.
// Training allocates the same shapes every step, so freed blocks go to a free list per exact size and the next
// request of that size takes one back: after the first step no new memory is taken, and memory stays flat however
// long the run. Fresh blocks come from the top of the heap, which grows the wasm memory in large chunks (wasm
// memory never shrinks, and every grow detaches the JS views of the old buffer, so growing rarely matters).
// Addresses are 16-byte aligned for v128 loads.

import { CharlmError } from "../../../util/errors.js";
import type { Storage } from "../../backend.js";

/** n float32 values at byte address ptr of the backend's memory. */
export interface WasmStorage extends Storage {
  readonly ptr: number;
  readonly length: number;
  /** The last view handed out (see `Heap.view`). */
  cached?: Float32Array;
}

const PAGE = 65536;
// Grow by at least this many pages (64 MiB), or by half the memory there is, whichever is more.
const MIN_GROW_PAGES = 1024;

/** The heap above the module's static data: exact-size free lists over a bump pointer. */
/** The bytes of the block that holds n floats: a multiple of 16, at least 16 (its free list's size). */
function blockBytes(n: number): number {
  return Math.max(16, (n * 4 + 15) & ~15);
}

export class Heap {
  private top: number;
  private readonly lists = new Map<number, number[]>();
  private f32: Float32Array;
  private i32: Int32Array;
  private f64: Float64Array;
  /** Bytes handed out and not yet freed (for tests and the memory report). */
  live = 0;
  /** Zeroes n floats at byte address p; the backend sets it to share large fills between its threads. */
  clear: (p: number, n: number) => void = (p, n) => void this.floats().fill(0, p >>> 2, (p >>> 2) + n);

  constructor(
    private readonly memory: WebAssembly.Memory,
    heapBase: number,
  ) {
    this.top = (heapBase + 15) & ~15;
    this.f32 = new Float32Array(memory.buffer);
    this.i32 = new Int32Array(memory.buffer);
    this.f64 = new Float64Array(memory.buffer);
  }

  /** Bytes of wasm memory now (it only grows). */
  get bytes(): number {
    return this.memory.buffer.byteLength;
  }

  /** A block of n floats (zero-filled unless `zero` is false); returns its byte address. */
  allocBytes(n: number, zero = true): number {
    const size = blockBytes(n);
    const list = this.lists.get(size);
    let p: number;
    if (list && list.length > 0) {
      p = list.pop()!;
      if (zero) this.clear(p, n);
    } else {
      p = this.top;
      this.ensure(p + size);
      this.top = p + size; // memory above the old top is still zero: wasm memory starts zeroed and only grows
    }
    this.live += size;
    return p;
  }

  /** Gives the block of n floats at p back to its free list. */
  freeBytes(p: number, n: number): void {
    const size = blockBytes(n);
    let list = this.lists.get(size);
    if (!list) this.lists.set(size, (list = []));
    list.push(p);
    this.live -= size;
  }

  alloc(n: number): WasmStorage {
    if (!Number.isInteger(n) || n < 0) throw new CharlmError(`wasm backend: cannot allocate ${n} floats`);
    return { ptr: this.allocBytes(n), length: n };
  }

  /**
   * CHARLM_POISON=1 (the backend sets it): storage handed out unzeroed is NaN, the block's tail past n too, so that a
   * kernel that reads an output value before writing it shows NaN in the tests (as js's allocUninit does).
   */
  poison = false;

  /** n floats an op's kernel overwrites entirely before reading: as a freed block left them (Backend.allocUninit). */
  allocUninit(n: number): WasmStorage {
    if (!Number.isInteger(n) || n < 0) throw new CharlmError(`wasm backend: cannot allocate ${n} floats`);
    const ptr = this.allocBytes(n, false);
    if (this.poison) this.floats().fill(NaN, ptr >>> 2, (ptr >>> 2) + (blockBytes(n) >>> 2));
    return { ptr, length: n };
  }

  free(s: WasmStorage): void {
    this.freeBytes(s.ptr, s.length);
  }

  // Grows memory so that bytes below `end` exist.
  private ensure(end: number): void {
    const have = this.memory.buffer.byteLength;
    if (end <= have) return;
    const need = Math.ceil((end - have) / PAGE);
    const pages = Math.max(need, MIN_GROW_PAGES, Math.floor(have / PAGE / 2));
    try {
      this.memory.grow(pages);
    } catch {
      try {
        this.memory.grow(need);
      } catch {
        const mib = Math.ceil(end / 2 ** 20);
        throw new CharlmError(
          `wasm backend: the model needs ${mib} MiB of WebAssembly memory, more than the runtime allows (4 GiB at most); ` +
            "use a smaller batch, sequence length or model, or the js backend",
        );
      }
    }
  }

  /** The whole memory as floats; recreated when growing replaced the buffer. */
  floats(): Float32Array {
    if (this.f32.buffer !== this.memory.buffer) this.refresh();
    return this.f32;
  }

  ints(): Int32Array {
    if (this.i32.buffer !== this.memory.buffer) this.refresh();
    return this.i32;
  }

  doubles(): Float64Array {
    if (this.f64.buffer !== this.memory.buffer) this.refresh();
    return this.f64;
  }

  private refresh(): void {
    this.f32 = new Float32Array(this.memory.buffer);
    this.i32 = new Int32Array(this.memory.buffer);
    this.f64 = new Float64Array(this.memory.buffer);
  }

  /**
   * A live view of s (valid until an allocation grows memory). Kept on the storage and handed out again while the
   * buffer is the same, so tensors sharing a storage share one view (and `data` costs no allocation).
   */
  view(s: WasmStorage): Float32Array {
    const st = s as { cached?: Float32Array };
    if (st.cached && st.cached.buffer === this.memory.buffer) return st.cached;
    const i = s.ptr >>> 2;
    return (st.cached = this.floats().subarray(i, i + s.length));
  }

  /** Copies ints into a fresh block (token ids, targets, shapes); returns its address. Free it with `freeBytes`. */
  putInts(src: ArrayLike<number>): number {
    const p = this.allocBytes(src.length, false);
    this.ints().set(src, p >>> 2);
    return p;
  }

  /** Copies float64 values into a fresh block (optimizer hyperparameters); free with `freeBytes(p, 2 * n)`. */
  putDoubles(src: readonly number[]): number {
    const p = this.allocBytes(2 * src.length, false);
    this.doubles().set(src, p >>> 3);
    return p;
  }
}
