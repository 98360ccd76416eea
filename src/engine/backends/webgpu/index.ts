// The WebGPU backend: every kernel of ../../backend.ts as WGSL compute shaders, on storages that stay on the GPU.
//
// Kernels are encoded into one command stream and submitted in batches (runtime.ts); nothing waits for the GPU
// except `read` and `flush`. Values are not visible to JavaScript (`sync: false`): `view` throws, `read` is async.
//
//   const gpu = await createWebgpuBackend();   // throws a CharlmError saying why not (no package, no adapter)
//   ...
//   gpu.destroy();                              // a Dawn device keeps Node alive until destroyed

import type { Backend } from "../../backend.js";
import { CharlmError } from "../../../util/errors.js";
import { requestGpuDevice } from "./device.js";
import type { GpuProfile, ProfileOptions } from "./profile.js";
import { GpuRuntime, GpuStorage } from "./runtime.js";
import * as A from "./kernels/attention.js";
import * as E from "./kernels/elementwise.js";
import { burstRoute, burstWorkgroupBytes, rnnBurst, wideWorkgroupBytes } from "./kernels/generate.js";
import { matmul } from "./kernels/matmul.js";
import * as R from "./kernels/recurrent.js";
import * as W from "./kernels/rows.js";

export { GpuStorage } from "./runtime.js";
export type { GpuProfile, KernelProfile, ProfileOptions } from "./profile.js";

export interface WebgpuBackend extends Backend<GpuStorage> {
  /** The adapter, e.g. "nvidia hopper" or "google swiftshader". */
  readonly device: string;
  /**
   * The GPUDevice itself, for code that shares it (a storage's buffer is `.buffer`). Destroying it from outside is,
   * for this backend, the device lost.
   */
  readonly gpuDevice: GPUDevice;
  /** Why the device was lost (every later use then throws DeviceLostError), or null while it works. */
  lost(): string | null;
  /** Bytes of GPU buffers held (in use or pooled): flat after warm-up when every storage is freed. */
  bytesAllocated(): number;
  /** Commands encoded since the backend was made: dispatches, copies, clears, submits, uploads. */
  counts(): Readonly<Record<string, number>>;
  /** Time what is encoded from now on: GPU time per kernel (timestamp-query) and host time (profile.ts). */
  startProfile(options?: ProfileOptions): void;
  /** Wait for the GPU and return the profile since startProfile. */
  stopProfile(): Promise<GpuProfile>;
}

export async function createWebgpuBackend(): Promise<WebgpuBackend> {
  const { device, description, keepAlive } = await requestGpuDevice();
  const rt = new GpuRuntime(device, keepAlive);
  return {
    name: "webgpu",
    sync: false,
    device: description,
    gpuDevice: device,
    lost: () => rt.lost(),
    bytesAllocated: () => rt.bytesAllocated,
    counts: () => ({ ...rt.counts }),
    startProfile: (options) => rt.startProfile(options),
    stopProfile: () => rt.stopProfile(),

    alloc: (n) => rt.alloc(n),
    allocUninit: (n) => rt.scratch(n), // a pooled buffer as its last user left it: no clear
    free: (s) => rt.free(s),
    write(dst, src, offset = 0) {
      if (src.length === 0) return;
      rt.copyBuffer(rt.upload(src), 0, dst.buffer, offset * 4, src.length * 4);
    },
    async read(src, offset = 0, n = src.length - offset) {
      return new Float32Array(await rt.readBytes(src.buffer, offset * 4, n * 4));
    },
    view() {
      throw new CharlmError("backend webgpu: values on the GPU: use await tensor.read()");
    },
    copy(src, srcOff, dst, dstOff, n) {
      // copyBufferToBuffer refuses one buffer as both ends; within one storage a kernel copies instead
      if (src.buffer !== dst.buffer) rt.copyBuffer(src.buffer, srcOff * 4, dst.buffer, dstOff * 4, n * 4);
      else E.copyBlocks(rt, src, srcOff, n, dst, dstOff, n, n, 1, false);
    },
    fill(dst, value, offset = 0, n = dst.length - offset) {
      if (value === 0 && !Object.is(value, -0)) rt.clear(dst.buffer, offset * 4, n * 4);
      else E.fill(rt, dst, value, offset, n);
    },
    flush: () => rt.flush(),
    destroy: () => rt.destroy(),

    matmul: (a, b, c, M, K, N, opts) => matmul(rt, a, b, c, M, K, N, opts),

    unary: (op, x, y, n) => E.unary(rt, op, x, y, n),
    unaryBackward: (op, x, y, g, dx, n) => E.unaryBackward(rt, op, x, y, g, dx, n),
    scale: (x, y, n, s, acc) => E.scale(rt, x, y, n, s, acc),
    binary: (op, a, as, b, bs, out, shape) => E.binary(rt, op, a, as, b, bs, out, shape),
    reduceTo: (g, shape, dst, ds, s) => E.reduceTo(rt, g, shape, dst, ds, s),

    softmax: (x, y, rows, V) => W.softmax(rt, x, y, rows, V),
    softmaxBackward: (y, g, dx, rows, V) => W.softmaxBackward(rt, y, g, dx, rows, V),
    crossEntropy: (x, t, loss, probs, N, V) => W.crossEntropy(rt, x, t, loss, probs, N, V),
    crossEntropyBackward: (p, t, g, dx, N, V) => W.crossEntropyBackward(rt, p, t, g, dx, N, V),
    layerNorm: (x, ga, be, y, xh, rs, rows, C, eps) => W.layerNorm(rt, x, ga, be, y, xh, rs, rows, C, eps),
    layerNormBackward: (g, ga, xh, rs, dx, dg, db, rows, C) =>
      W.layerNormBackward(rt, g, ga, xh, rs, dx, dg, db, rows, C),

    embedding: (w, ids, out, D) => W.embedding(rt, w, ids, out, D, w.length / D),
    embeddingBackward: (g, ids, dw, D) => W.embeddingBackward(rt, g, ids, dw, D, dw.length / D),
    embeddingFrom: (w, ids, io, out, n, D) => W.embeddingFrom(rt, w, ids, io, out, n, D, w.length / D),
    sampleRows: (x, u, uo, ids, io, rows, V, how) => W.sampleRows(rt, x, u, uo, ids, io, rows, V, how),
    rnnBurst: (a) => rnnBurst(rt, a),
    takesBurst: (shape) =>
      burstRoute() !== "steps" &&
      Math.min(burstWorkgroupBytes(shape), wideWorkgroupBytes(shape)) <= device.limits.maxComputeWorkgroupStorageSize,

    copyBlocks: (src, so, ss, dst, d0, ds, block, count, acc) =>
      E.copyBlocks(rt, src, so, ss, dst, d0, ds, block, count, acc),
    reduceAxis: (x, y, outer, n, inner, s) => E.reduceAxis(rt, x, y, outer, n, inner, s),
    broadcastAxis: (g, dx, outer, n, inner, s) => E.broadcastAxis(rt, g, dx, outer, n, inner, s),
    swapAxes: (x, shape, a0, a1, y, acc) => E.swapAxes(rt, x, shape, a0, a1, y, acc),

    causalMask: (x, y, count, T) => E.causalMask(rt, x, y, count, T),
    causalMaskBackward: (g, dx, count, T) => E.causalMaskBackward(rt, g, dx, count, T),
    attention: (q, k, v, out, att, B, T, C, nH) => A.attention(rt, q, k, v, out, att, B, T, C, nH),
    attentionBackward: (q, k, v, att, g, dq, dk, dv, B, T, C, nH) =>
      A.attentionBackward(rt, q, k, v, att, g, dq, dk, dv, B, T, C, nH),
    attentionCached: (qkv, kc, vc, out, B, T, C, nH, N, pos0) =>
      A.attentionCached(rt, qkv, kc, vc, out, B, T, C, nH, N, pos0),

    lstmForward: (a) => R.lstmForward(rt, a),
    lstmBackward: (a) => R.lstmBackward(rt, a),
    gruForward: (a) => R.gruForward(rt, a),
    gruBackward: (a) => R.gruBackward(rt, a),
    rnnForward: (a) => R.rnnForward(rt, a),
    rnnBackward: (a) => R.rnnBackward(rt, a),

    adam: (w, g, m, v, n, h) => E.adam(rt, w, g, m, v, n, h),
    rmsprop: (w, g, s, n, h) => E.rmsprop(rt, w, g, s, n, h),
    adagrad: (w, g, sum, n, h) => E.adagrad(rt, w, g, sum, n, h),
    sgd: (w, g, buf, n, h) => E.sgd(rt, w, g, buf, n, h),

    sumSquares: (x, n, out, off) => E.sumAll(rt, x, n, out, off, true, 1),
    clipFactor: (sq, count, maxNorm, out) => E.clipFactor(rt, sq, count, maxNorm, out),
    scaleBy: (x, n, f, fOff) => E.scaleBy(rt, x, n, f, fOff),
    dropoutMask: (out, n, seed, threshold, keep) => E.dropoutMask(rt, out, n, seed, threshold, keep),
  };
}
