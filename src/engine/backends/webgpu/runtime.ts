/// <reference types="@webgpu/types" />
// The GPU side of the backend: storage (pooled GPUBuffers), the command stream and the per-dispatch parameters.
//
// Ordering. Everything that touches a storage is *encoded* into one command encoder (dispatches, clears, copies)
// and submitted in batches: at reads and flushes, and every MAX_DISPATCHES dispatches. The queue runs batches in
// order, and within a batch commands run in encoding order, so a storage freed here can be handed out again at once:
// its next user is encoded after its last one. The only thing that bypasses the encoder is queue.writeBuffer (it
// lands on the queue before the batch still being encoded), so it only ever writes into buffers that no encoded
// command of this batch touches: fresh upload buffers (released at the submit), and the parameter ring (written
// once, at the submit, for the whole batch). `write` therefore uploads and then encodes a copy: no submit needed.
//
// Parameters. Each dispatch gets a 256-byte slot (64 u32 values) of one uniform ring buffer, bound at the slot's
// offset; WGSL reads them with pu(i) (u32) and pf(i) (f32 bits), see PRELUDE.
//
// Profiling (startProfile .. stopProfile, profile.ts): GPU time per kernel from timestamps, one pass per dispatch,
// and host time inside the entry points below. Off, each entry point tests one field and does nothing more.

import { CharlmError, DeviceLostError } from "../../../util/errors.js";
import type { Storage } from "../../backend.js";
import { type GpuProfile, type ProfileOptions, Profiler } from "./profile.js";

/** n float32 values in a GPUBuffer owned by the backend (the buffer may be larger: pool size classes). */
export class GpuStorage implements Storage {
  constructor(
    public buffer: GPUBuffer,
    readonly length: number,
  ) {}
}

/** A binding: a backend storage or a raw buffer (uploads, temporaries). */
export type Buf = GpuStorage | GPUBuffer;

const SLOT_U32 = 64; // parameters per dispatch
const SLOT_BYTES = 256; // minUniformBufferOffsetAlignment
const RING_SLOTS = 1024;
const MAX_DISPATCHES = 512; // submit after this many, so that long runs of kernels start on the GPU early

/** Threads per workgroup of the one-thread-per-element kernels (see gridFor and `gindex` in PRELUDE). */
export const WG = 256;

/**
 * WGSL shared by every kernel: the parameter slot, the flat index of a 1-D grid laid over (x, y) workgroups,
 * -Infinity, and stable activations (WGSL's tanh overflows to NaN past |x| ~ 44 on some drivers; tanh(15) is 1 in f32).
 */
export const PRELUDE = /* wgsl */ `
@group(0) @binding(0) var<uniform> P: array<vec4<u32>, 16>;
fn pu(i: u32) -> u32 { return P[i >> 2u][i & 3u]; }
fn pf(i: u32) -> f32 { return bitcast<f32>(pu(i)); }
fn gindex(gid: vec3<u32>, nwg: vec3<u32>) -> u32 { return gid.x + gid.y * nwg.x * ${WG}u; }
fn tanh_(x: f32) -> f32 { return tanh(clamp(x, -15.0, 15.0)); }
fn sigmoid_(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }
// -Infinity: WGSL rejects it as a constant, so it is made at run time from a variable's bits
var<private> NEG_INF_BITS: u32 = 0xff800000u;
fn negInf() -> f32 { return bitcast<f32>(NEG_INF_BITS); }
`;

const f32u32 = new Float32Array(1);
const u32f32 = new Uint32Array(f32u32.buffer);
/** An environment variable in Node (kernel tuning switches); undefined in browsers. */
export function envSetting(name: string): string | undefined {
  return typeof process !== "undefined" ? process.env?.[name] : undefined;
}

/** The bit pattern of x as float32, to pass a float parameter (read back with pf). */
export function fbits(x: number): number {
  f32u32[0] = x;
  return u32f32[0];
}

/** Workgroups for n threads of WG each: (x, y) with x <= 65535 (the per-dimension limit). */
export function gridFor(n: number): [number, number] {
  const groups = Math.max(1, Math.ceil(n / WG));
  const x = Math.min(groups, 65535);
  return [x, Math.ceil(groups / x)];
}

/** The fix for a run that does not fit the GPU. */
const SMALLER =
  "lower the batch size, the sequence length or the model's size (--batch-size, --seq-length, --units), " +
  "or use --backend wasm";

/** 1.5 GiB, 12.0 MiB, 300 KiB. */
export function formatBytes(bytes: number): string {
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = bytes;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} bytes` : `${v.toFixed(1)} ${units[i]}`;
}

/**
 * The buffer for `bytes` under a device's largest (`max`): its size class, or `bytes` rounded up to 256 where the
 * class is over `max` (an adapter's limit need not be a class); past `max`, a CharlmError naming both and the fix.
 */
export function bufferSize(bytes: number, max: number): number {
  const c = sizeClass(Math.max(4, bytes));
  if (c <= max) return c;
  const exact = Math.ceil(bytes / 256) * 256;
  if (exact <= max) return exact;
  throw new CharlmError(
    `backend webgpu: a tensor of ${formatBytes(bytes)} is over this GPU's largest buffer (${formatBytes(max)}); ` +
      SMALLER,
  );
}

export function sizeClass(bytes: number): number {
  // Round up to 256 bytes below 64 KiB, else to a power of two's eighth: few classes, bounded waste (12.5%).
  if (bytes <= 65536) return Math.max(256, Math.ceil(bytes / 256) * 256);
  const step = 2 ** (Math.floor(Math.log2(bytes)) - 3);
  return Math.ceil(bytes / step) * step;
}

export class GpuRuntime {
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly pool = new Map<number, GPUBuffer[]>(); // free storage buffers by size class
  private readonly uploadPool = new Map<number, GPUBuffer[]>();
  private readonly stagingPool = new Map<number, GPUBuffer[]>();
  private uploadsInFlight: GPUBuffer[] = [];
  private readonly ring: GPUBuffer;
  private readonly ringHost = new Uint32Array(RING_SLOTS * SLOT_U32);
  private slots = 0;
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private dispatches = 0;
  private error: string | null = null;
  /** Why the device was lost, once it is (destroy() aside): every entry point that reaches the GPU then throws. */
  private lostDetail: string | null = null;
  private destroyed = false;
  /** The largest buffer a storage may take: the adapter's limits on a buffer and on a storage binding. */
  private readonly maxBytes: number;
  /** The size of the storage buffer being made (Dawn reports running out of memory inside createBuffer). */
  private creating = 0;
  private readonly poison: GPUBuffer;
  /** Bytes held in GPU buffers (in use or pooled), for the memory-flat checks. */
  bytesAllocated = 0;
  /** Commands encoded so far, by kind (the bench prints them per training step). */
  readonly counts = { dispatches: 0, copies: 0, clears: 0, submits: 0, uploads: 0 };
  private readonly layouts = new Map<string, GPUBindGroupLayout>();
  private readonly groupRoots = new Map<number, GroupNode>();
  private groupCount = 0;
  /** The buffers of the dispatch being encoded (reused: no array made per dispatch). */
  private readonly bound: GPUBuffer[] = [];
  /** The pipeline set last in the open pass: a run of dispatches of one kernel (a time loop) sets it once. */
  private passPipeline: GPUComputePipeline | null = null;
  private pipelinePass: GPUComputePassEncoder | null = null;
  private profiler: Profiler | null = null;
  private profileFrom = { ...this.counts };
  /** CHARLM_POISON=1: storage handed out unzeroed (scratch, allocUninit) is NaN, its tail past n too (tests). */
  private readonly nanScratch = envSetting("CHARLM_POISON") === "1";

  constructor(
    readonly device: GPUDevice,
    /** Objects that must outlive the device (Dawn's instance, see device.ts); dropped at destroy. */
    private keepAlive: unknown[] = [],
  ) {
    this.ring = device.createBuffer({
      size: RING_SLOTS * SLOT_BYTES,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
    this.poison = device.createBuffer({ size: 4, usage: GPUBufferUsage.STORAGE });
    this.poison.destroy();
    this.maxBytes = Math.min(device.limits.maxBufferSize, device.limits.maxStorageBufferBindingSize);
    device.addEventListener("uncapturederror", (e) => {
      const error = (e as GPUUncapturedErrorEvent).error;
      // Reported here, as one line (Dawn would also print each error and its cascade to stderr).
      e.preventDefault();
      if (this.error !== null) return; // the first one: those after it are usually its consequences
      const outOfMemory =
        (typeof GPUOutOfMemoryError !== "undefined" && error instanceof GPUOutOfMemoryError) ||
        error.constructor?.name === "GPUOutOfMemoryError";
      this.error = outOfMemory
        ? `out of GPU memory ${this.creating ? `making a buffer of ${formatBytes(this.creating)} ` : ""}with ` +
          `${formatBytes(this.bytesAllocated)} in buffers; ${SMALLER}`
        : `the device reported an error: ${error.message.split("\n")[0]}`;
    });
    void device.lost.then((info) => {
      if (!this.destroyed) this.lostDetail = info.message || info.reason || "no reason given";
    });
  }

  /** Why the device was lost, or null while it works. */
  lost(): string | null {
    return this.lostDetail;
  }

  /**
   * Throws the first error the device reported (validation, out of memory) as one line, or DeviceLostError once the
   * device is lost.
   */
  checkError(): void {
    if (this.lostDetail !== null) throw new DeviceLostError(this.lostDetail);
    if (this.error) {
      const msg = this.error;
      this.error = null;
      throw new CharlmError(`backend webgpu: ${msg}`);
    }
  }

  // ---- storage

  alloc(n: number): GpuStorage {
    return this.allocate(n, true);
  }

  /** Scratch storage that its first kernel overwrites entirely: not zeroed when reused. */
  scratch(n: number): GpuStorage {
    return this.allocate(n, false);
  }

  private allocate(n: number, zero: boolean): GpuStorage {
    const bytes = this.bufferBytes(n * 4);
    const free = this.pool.get(bytes);
    let buffer = free?.pop();
    if (buffer) {
      // A reused buffer holds its last user's values: zero it in stream order.
      if (zero) this.clear(buffer, 0, bytes);
    } else {
      this.creating = bytes;
      buffer = this.device.createBuffer({
        size: bytes,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      });
      this.creating = 0;
      this.bytesAllocated += bytes;
    }
    if (!zero && this.nanScratch) {
      // a kernel that reads a value nobody wrote, here or in the size class's tail, then shows it
      this.copyBuffer(this.upload(new Float32Array(bytes / 4).fill(NaN)), 0, buffer, 0, bytes);
    }
    return new GpuStorage(buffer, n);
  }

  private bufferBytes(bytes: number): number {
    return bufferSize(bytes, this.maxBytes);
  }

  free(s: GpuStorage): void {
    const list = this.pool.get(s.buffer.size);
    if (list) list.push(s.buffer);
    else this.pool.set(s.buffer.size, [s.buffer]);
    // Poison the handle: a use after free binds a destroyed-looking buffer instead of someone else's data.
    s.buffer = this.poison;
  }

  /** A buffer holding `data`, usable by commands encoded in the current batch (released to its pool at submit). */
  upload(data: Float32Array | Uint32Array | Int32Array): GPUBuffer {
    const p = this.profiler;
    const t0 = p ? p.enter() : 0;
    const bytes = this.bufferBytes(data.byteLength);
    const b =
      this.uploadPool.get(bytes)?.pop() ??
      this.device.createBuffer({
        size: bytes,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      });
    if (data.byteLength > 0) this.device.queue.writeBuffer(b, 0, data.buffer, data.byteOffset, data.byteLength);
    this.uploadsInFlight.push(b);
    this.counts.uploads++;
    if (p) p.leave(t0);
    return b;
  }

  // ---- encoding

  private encode(): GPUCommandEncoder {
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    return (this.encoder ??= this.device.createCommandEncoder());
  }

  copyBuffer(src: GPUBuffer, srcByte: number, dst: GPUBuffer, dstByte: number, bytes: number): void {
    if (bytes === 0) return;
    const p = this.profiler;
    const t0 = p ? p.enter() : 0;
    this.counts.copies++;
    this.encode().copyBufferToBuffer(src, srcByte, dst, dstByte, bytes);
    if (p) {
      p.copied();
      p.leave(t0);
    }
  }

  clear(dst: GPUBuffer, byte: number, bytes: number): void {
    if (bytes === 0) return;
    const p = this.profiler;
    const t0 = p ? p.enter() : 0;
    this.counts.clears++;
    this.encode().clearBuffer(dst, byte, bytes);
    if (p) {
      p.copied();
      p.leave(t0);
    }
  }

  /**
   * The bind group layout of a kernel with `nr` read and `nw` written storage buffers: the parameters at binding 0
   * with a dynamic offset (one bind group then serves every slot of the ring), then the storages.
   */
  private layout(nr: number, nw: number): GPUBindGroupLayout {
    const key = `${nr},${nw}`;
    let l = this.layouts.get(key);
    if (!l) {
      const storage = (type: GPUBufferBindingType, binding: number): GPUBindGroupLayoutEntry => ({
        binding,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type },
      });
      l = this.device.createBindGroupLayout({
        entries: [
          {
            binding: 0,
            visibility: GPUShaderStage.COMPUTE,
            buffer: { type: "uniform", hasDynamicOffset: true, minBindingSize: SLOT_BYTES },
          },
          ...Array.from({ length: nr }, (_, i) => storage("read-only-storage", 1 + i)),
          ...Array.from({ length: nw }, (_, i) => storage("storage", 1 + nr + i)),
        ],
      });
      this.layouts.set(key, l);
    }
    return l;
  }

  /** The pipeline of one kernel variant, compiled once per key. */
  pipeline(key: string, code: () => string, nr: number, nw: number): GPUComputePipeline {
    let p = this.pipelines.get(key);
    if (!p) {
      const module = this.device.createShaderModule({ code: PRELUDE + code(), label: key });
      const layout = this.device.createPipelineLayout({ bindGroupLayouts: [this.layout(nr, nw)] });
      p = this.device.createComputePipeline({ layout, compute: { module, entryPoint: "main" }, label: key });
      this.pipelines.set(key, p);
    }
    return p;
  }

  /**
   * The bind group of these buffers, made once: pooled storage comes back in the same order every training step,
   * and a recurrent layer binds the same buffers at every time step, so after warm-up nearly every dispatch finds
   * its group here. Looked up along a tree keyed by the buffers themselves (no key string to build per dispatch);
   * cleared when it holds more than a bound of groups (shapes that keep changing).
   */
  private bindGroup(nr: number, nw: number, buffers: readonly GPUBuffer[], n: number): GPUBindGroup {
    let node: GroupNode | undefined = this.groupRoots.get(nr * 256 + nw);
    if (!node) this.groupRoots.set(nr * 256 + nw, (node = { next: new Map(), group: null }));
    for (let i = 0; i < n; i++) {
      let child: GroupNode | undefined = node.next.get(buffers[i]);
      if (!child) node.next.set(buffers[i], (child = { next: new Map(), group: null }));
      node = child;
    }
    if (node.group) return node.group;
    if (this.groupCount >= 8192) {
      this.groupRoots.clear();
      this.groupCount = 0;
      return this.bindGroup(nr, nw, buffers, n);
    }
    const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: this.ring, offset: 0, size: SLOT_BYTES } }];
    for (let i = 0; i < n; i++) entries.push({ binding: i + 1, resource: { buffer: buffers[i] } });
    node.group = this.device.createBindGroup({ layout: this.layout(nr, nw), entries });
    this.groupCount++;
    return node.group;
  }

  /**
   * Encode one dispatch. WGSL bindings: 0 the parameters, then `reads` (var<storage, read>) from 1, then `writes`
   * (var<storage, read_write>). A read that is also written in the same dispatch (in-place ops: y = f(x) with
   * x === y) is read from a snapshot, since WebGPU forbids a buffer bound writable and readable at once.
   */
  run(
    key: string,
    code: () => string,
    reads: Buf[],
    writes: Buf[],
    params: ArrayLike<number>,
    groups: readonly number[],
    /** What a profile by grid adds to the key (a product's M x K x N, say); called only while profiling. */
    detail?: () => string,
  ): void {
    if (groups[0] === 0 || groups[1] === 0 || groups[2] === 0) return;
    const p = this.profiler;
    const t0 = p ? p.enter() : 0;
    if (this.slots === RING_SLOTS || p?.full()) this.submit();
    const nr = reads.length;
    const nw = writes.length;
    const pipeline = this.pipeline(key, code, nr, nw);
    // the writes' buffers after the reads' in `bound`; a read that is also written is read from a snapshot
    const bound = this.bound;
    bound.length = nr + nw;
    for (let i = 0; i < nw; i++) bound[nr + i] = raw(writes[i]);
    let snapshots: GpuStorage[] | null = null;
    for (let i = 0; i < nr; i++) {
      const b = raw(reads[i]);
      bound[i] = b;
      for (let j = 0; j < nw; j++) {
        if (bound[nr + j] !== b) continue;
        const snap = this.scratch(b.size / 4);
        this.copyBuffer(b, 0, snap.buffer, 0, b.size);
        (snapshots ??= []).push(snap);
        bound[i] = snap.buffer;
        break;
      }
    }
    const slot = this.slots++;
    this.ringHost.fill(0, slot * SLOT_U32, slot * SLOT_U32 + SLOT_U32);
    this.ringHost.set(params, slot * SLOT_U32);
    const bindGroup = this.bindGroup(nr, nw, bound, nr + nw);
    const pk = p ? p.keyOf(key, groups, detail?.()) : "";
    if (p?.timestamps) {
      // A pass of its own, timed at its beginning and end (profile.ts)
      const timestampWrites = p.timestampWrites(pk);
      this.pass = this.encode().beginComputePass({ timestampWrites });
    } else if (!this.pass) this.pass = (this.encoder ??= this.device.createCommandEncoder()).beginComputePass();
    if (this.pass !== this.pipelinePass || pipeline !== this.passPipeline) {
      this.pass.setPipeline(pipeline);
      this.passPipeline = pipeline;
      this.pipelinePass = this.pass;
    }
    this.pass.setBindGroup(0, bindGroup, [slot * SLOT_BYTES]);
    this.pass.dispatchWorkgroups(groups[0], groups[1] ?? 1, groups[2] ?? 1);
    this.counts.dispatches++;
    if (snapshots) for (const s of snapshots) this.free(s);
    if (p) {
      if (!p.timestamps) p.counted(pk);
      p.leave(t0, pk);
    }
    if (++this.dispatches >= MAX_DISPATCHES) this.submit();
  }

  /** Send everything encoded so far to the GPU. */
  submit(): void {
    const p = this.profiler;
    const t0 = p ? p.enter() : 0;
    const ts = p ? performance.now() : 0;
    if (this.pass) {
      this.pass.end();
      this.pass = null;
    }
    if (this.slots > 0) this.device.queue.writeBuffer(this.ring, 0, this.ringHost.buffer, 0, this.slots * SLOT_BYTES);
    if (this.encoder) {
      const timed = p ? p.beforeFinish(this.encoder) : null;
      this.device.queue.submit([this.encoder.finish()]);
      this.counts.submits++;
      if (p) p.afterSubmit(timed);
    }
    this.encoder = null;
    this.slots = 0;
    this.dispatches = 0;
    for (const b of this.uploadsInFlight) {
      const list = this.uploadPool.get(b.size);
      if (list) list.push(b);
      else this.uploadPool.set(b.size, [b]);
    }
    this.uploadsInFlight = [];
    if (p) {
      p.submitted(ts);
      p.leave(t0);
    }
    this.checkError();
  }

  async flush(): Promise<void> {
    this.submit();
    await this.device.queue.onSubmittedWorkDone();
    this.checkError();
  }

  /**
   * Why a read of the GPU failed: DeviceLostError where the device was lost (its lost promise may settle just after
   * the read's rejection, so it is given a moment), else the read's own error as one line.
   */
  private async readFailed(e: unknown): Promise<never> {
    if (this.lostDetail === null) {
      await Promise.race([this.device.lost, new Promise((resolve) => setTimeout(resolve, 200))]);
    }
    this.checkError();
    const why = e instanceof Error ? e.message || e.name : String(e);
    throw new CharlmError(`backend webgpu: reading from the GPU failed: ${why.split("\n")[0]}`);
  }

  /** bytes from src at srcByte, once everything encoded before has run. */
  async readBytes(src: GPUBuffer, srcByte: number, bytes: number): Promise<ArrayBuffer> {
    if (bytes === 0) return new ArrayBuffer(0);
    const size = this.bufferBytes(bytes);
    const staging =
      this.stagingPool.get(size)?.pop() ??
      this.device.createBuffer({ size, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });
    this.copyBuffer(src, srcByte, staging, 0, bytes);
    this.submit();
    // mapAsync resolves once the work submitted before it that uses the buffer (the copy, so everything before it)
    // has run: no separate wait for the queue (that took a third of a small read's time on SwiftShader).
    await staging.mapAsync(GPUMapMode.READ, 0, bytes).catch((e: unknown) => this.readFailed(e));
    const out = staging.getMappedRange(0, bytes).slice(0);
    staging.unmap();
    const list = this.stagingPool.get(size);
    if (list) list.push(staging);
    else this.stagingPool.set(size, [staging]);
    this.checkError();
    return out;
  }

  // ---- profiling

  /**
   * Start measuring where time goes (profile.ts): what is encoded from now on is timed, on the GPU per kernel key
   * when the device has `timestamp-query` and `timestamps` is not false, and on the host inside the runtime.
   * Submits what was encoded before, so that it is not counted.
   */
  startProfile(options: ProfileOptions = {}): void {
    if (this.profiler) throw new CharlmError("backend webgpu: a profile is already running; call stopProfile first");
    this.submit();
    this.profiler = new Profiler(this.device, options);
    this.profileFrom = { ...this.counts };
  }

  /** Wait for the GPU, then the profile since startProfile; profiling stops. */
  async stopProfile(): Promise<GpuProfile> {
    const p = this.profiler;
    if (!p) throw new CharlmError("backend webgpu: no profile is running; call startProfile first");
    try {
      await this.flush();
    } finally {
      this.profiler = null; // a device error ends the profile too
    }
    const c = this.counts;
    const f = this.profileFrom;
    return p.result({
      dispatches: c.dispatches - f.dispatches,
      copies: c.copies - f.copies,
      clears: c.clears - f.clears,
      submits: c.submits - f.submits,
      uploads: c.uploads - f.uploads,
    });
  }

  destroy(): void {
    this.destroyed = true;
    this.device.destroy();
    this.keepAlive = [];
  }
}

/** A level of the bind groups' tree (GpuRuntime.bindGroup): the group of the buffers on the path to it, if made. */
interface GroupNode {
  next: Map<GPUBuffer, GroupNode>;
  group: GPUBindGroup | null;
}

function raw(b: Buf): GPUBuffer {
  return b instanceof GpuStorage ? b.buffer : b;
}
