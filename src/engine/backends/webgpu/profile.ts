/// <reference types="@webgpu/types" />
// Where the time of the webgpu backend goes: GPU time per kernel and host time spent encoding, between
// GpuRuntime.startProfile() and stopProfile(). Only the runtime makes a Profiler; without one, the runtime does
// nothing more than test that there is none.
//
// GPU time. While profiling with timestamps, every dispatch gets a compute pass of its own whose beginning and end
// write a timestamp (the `timestamp-query` feature), so a kernel's time is end - beginning of its pass, except
// that Dawn on Vulkan writes the beginning at the top of the pipe: before the previous pass's work has finished
// where nothing orders them, so a pass's time is taken from the later of its beginning and the previous pass's end
// (the time the GPU spent on it alone; the sum of kernels and gaps is then the GPU's busy span). A query
// set holds at most 4096 queries (2048 dispatches): one chunk (query set, resolve buffer, read-back buffer) serves
// the dispatches of one command buffer, is resolved into its read-back buffer just before the buffer is finished,
// and read asynchronously after the submit; a full chunk makes the runtime submit early. Copies and clears are
// encoder commands outside any pass, which core WebGPU cannot time directly; they are timed together with the
// barriers around them as the gap between the two passes they sit between (the gap before a chunk's first pass is
// not seen). Gaps between passes with no copy or clear between them are the cost of a pass change and its barrier.
// One pass per dispatch adds such gaps that the ordinary single pass does not have: the kernel times hold, while
// a profiled step's wall time is longer than an ordinary one's. Dawn quantizes timestamps unless told not to
// (device.ts turns its `timestamp_quantization` off).
//
// Host time. Wall time inside the runtime's entry points (run, copyBuffer, clear, upload, submit): JavaScript
// bookkeeping and Dawn's validation and encoding. The rest of a step's host time is the engine and the model above.

/** One kernel key's totals (the key that kernels pass to GpuRuntime.run, e.g. "lstmForward.R1"). */
export interface KernelProfile {
  key: string;
  /** Dispatches encoded. */
  count: number;
  /**
   * GPU nanoseconds summed over its dispatches (0 without timestamps), each from the later of its pass's beginning
   * and the previous pass's end to its pass's end.
   */
  gpuNs: number;
  /** Host milliseconds inside GpuRuntime.run for this key (parameters, bind group, encoding). */
  hostMs: number;
}

/** What one profile measured, from startProfile to the end of stopProfile (which waits for the GPU). */
export interface GpuProfile {
  /** Whether kernels were timed on the GPU; when not, `why` says why in one line. */
  timestamps: boolean;
  why?: string;
  /** Per kernel key, by GPU time (by host time without timestamps), largest first. */
  kernels: KernelProfile[];
  /** GPU nanoseconds of all kernels: the sum of kernels[].gpuNs. */
  gpuNs: number;
  /** GPU nanoseconds between passes that had copies or clears between them (the copies, clears and barriers). */
  copyGapNs: number;
  /** GPU nanoseconds between passes with nothing between them (pass changes and barriers). */
  passGapNs: number;
  /** GPU nanoseconds by which passes began before the previous one ended (left out of the later one's time). */
  overlapNs: number;
  /** Dispatches whose timestamps came back unusable (zero, end before beginning, longer than the whole profile). */
  badTimestamps: number;
  /** Host milliseconds inside the runtime: run, copyBuffer, clear, upload, submit. */
  hostMs: number;
  /** The part of hostMs inside submit (writing the parameter ring, finishing and submitting the command buffer). */
  submitMs: number;
  /** Milliseconds from startProfile to the end of stopProfile. */
  wallMs: number;
  /** Commands encoded while profiling. */
  counts: { dispatches: number; copies: number; clears: number; submits: number; uploads: number };
}

export interface ProfileOptions {
  /** Time kernels on the GPU when the device has `timestamp-query` (default true); false: host time only. */
  timestamps?: boolean;
  /** Key kernels by key and workgroup grid, e.g. "matmulNT 4x1x1", to tell shapes apart (default false). */
  grid?: boolean;
}

const QUERIES = 4096; // the most a query set holds

/** A query set, its resolve buffer and read-back buffer, and what was timed into it. */
interface Chunk {
  querySet: GPUQuerySet;
  resolve: GPUBuffer;
  readBack: GPUBuffer;
  keys: string[];
  /** Per dispatch: whether copies or clears were encoded between the previous pass and this one. */
  afterCopy: boolean[];
}

export class Profiler {
  readonly timestamps: boolean;
  private readonly why: string | undefined;
  private readonly kernels = new Map<string, KernelProfile>();
  private readonly free: Chunk[] = [];
  private chunk: Chunk | null = null;
  private readonly reading: Promise<void>[] = [];
  private copiedSincePass = false;
  private depth = 0;
  /** The sums of GpuProfile (see there). */
  private readonly sum = {
    gpuNs: 0,
    copyGapNs: 0,
    passGapNs: 0,
    overlapNs: 0,
    badTimestamps: 0,
    hostMs: 0,
    submitMs: 0,
  };
  private readonly t0 = performance.now();

  constructor(
    private readonly device: GPUDevice,
    private readonly options: ProfileOptions,
  ) {
    const has = device.features.has("timestamp-query");
    this.timestamps = has && options.timestamps !== false;
    if (!has) this.why = "the device has no timestamp-query (not offered, or Dawn's null backend): host times only";
    else if (!this.timestamps) this.why = "timestamps not asked for: host times only";
  }

  /** Call on entering a runtime entry point: a start time, or -1 when nested in another (not timed twice). */
  enter(): number {
    return this.depth++ === 0 ? performance.now() : -1;
  }

  /** Call on leaving it, with what enter returned; a dispatch's key gets its host time too. */
  leave(t0: number, key?: string): void {
    this.depth--;
    if (t0 < 0) return;
    const ms = performance.now() - t0;
    this.sum.hostMs += ms;
    if (key !== undefined) this.kernel(key).hostMs += ms;
  }

  /** Time spent in a submit, counted whether or not it is nested in another entry point. */
  submitted(t0: number): void {
    this.sum.submitMs += performance.now() - t0;
  }

  /** The key a dispatch is counted under. */
  keyOf(key: string, groups: readonly number[], detail?: string): string {
    if (!this.options.grid) return key;
    return `${key} ${groups[0]}x${groups[1] ?? 1}x${groups[2] ?? 1}${detail ? ` ${detail}` : ""}`;
  }

  /** Count a dispatch encoded without timestamps. */
  counted(key: string): void {
    this.kernel(key).count++;
  }

  /** A copy or clear was encoded: the gap before the next pass holds it. */
  copied(): void {
    this.copiedSincePass = true;
  }

  /** Whether the current chunk is full: the runtime submits before the next timed dispatch. */
  full(): boolean {
    return this.chunk !== null && this.chunk.keys.length * 2 >= QUERIES;
  }

  /** The timestampWrites of the next dispatch's own pass, counted under `key`. */
  timestampWrites(key: string): GPUComputePassTimestampWrites {
    const c = (this.chunk ??= this.free.pop() ?? this.newChunk());
    const i = c.keys.length;
    c.keys.push(key);
    c.afterCopy.push(this.copiedSincePass);
    this.copiedSincePass = false;
    this.kernel(key).count++;
    return { querySet: c.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
  }

  /** Before the command buffer is finished: resolve this buffer's timestamps into the chunk's read-back buffer. */
  beforeFinish(encoder: GPUCommandEncoder): Chunk | null {
    const c = this.chunk;
    this.chunk = null;
    this.copiedSincePass = false;
    if (!c || c.keys.length === 0) return null;
    const bytes = c.keys.length * 16;
    encoder.resolveQuerySet(c.querySet, 0, c.keys.length * 2, c.resolve, 0);
    encoder.copyBufferToBuffer(c.resolve, 0, c.readBack, 0, bytes);
    return c;
  }

  /** After the submit: read the chunk's timestamps when the GPU is done with them, then reuse the chunk. */
  afterSubmit(c: Chunk | null): void {
    if (!c) return;
    const bytes = c.keys.length * 16;
    const done = c.readBack.mapAsync(GPUMapMode.READ, 0, bytes).then(() => {
      const t = new BigUint64Array(c.readBack.getMappedRange(0, bytes));
      // No pass can have lasted longer than the profile so far: a longer one is a timestamp not written
      const most = (performance.now() - this.t0) * 1e6;
      let prevEnd = -1;
      for (let i = 0; i < c.keys.length; i++) {
        const begin = Number(t[2 * i]);
        const end = Number(t[2 * i + 1]);
        if (begin === 0 || end < begin || end - begin > most) {
          this.sum.badTimestamps++;
          prevEnd = -1;
          continue;
        }
        let from = begin;
        if (prevEnd >= 0 && Math.abs(begin - prevEnd) <= most) {
          if (begin < prevEnd) {
            from = Math.min(prevEnd, end);
            this.sum.overlapNs += from - begin;
          } else if (c.afterCopy[i]) this.sum.copyGapNs += begin - prevEnd;
          else this.sum.passGapNs += begin - prevEnd;
        }
        this.kernel(c.keys[i]).gpuNs += end - from;
        this.sum.gpuNs += end - from;
        prevEnd = Math.max(prevEnd, end);
      }
      c.readBack.unmap();
      c.keys = [];
      c.afterCopy = [];
      this.free.push(c);
    });
    this.reading.push(done);
  }

  /** The totals, once every chunk has been read (call after the runtime's last submit has completed). */
  async result(counts: GpuProfile["counts"]): Promise<GpuProfile> {
    await Promise.all(this.reading);
    for (const c of this.free) {
      c.querySet.destroy();
      c.resolve.destroy();
      c.readBack.destroy();
    }
    const kernels = [...this.kernels.values()].sort((a, b) =>
      this.timestamps ? b.gpuNs - a.gpuNs || b.count - a.count : b.hostMs - a.hostMs,
    );
    return {
      timestamps: this.timestamps,
      ...(this.why ? { why: this.why } : {}),
      kernels,
      ...this.sum,
      wallMs: performance.now() - this.t0,
      counts,
    };
  }

  private kernel(key: string): KernelProfile {
    let k = this.kernels.get(key);
    if (!k) this.kernels.set(key, (k = { key, count: 0, gpuNs: 0, hostMs: 0 }));
    return k;
  }

  private newChunk(): Chunk {
    const d = this.device;
    return {
      querySet: d.createQuerySet({ type: "timestamp", count: QUERIES }),
      resolve: d.createBuffer({ size: QUERIES * 8, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC }),
      readBack: d.createBuffer({ size: QUERIES * 8, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST }),
      keys: [],
      afterCopy: [],
    };
  }
}
