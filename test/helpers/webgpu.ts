// The GPU for a test file: a webgpu backend, or why there is none (the reason the file's GPU tests are skipped
// with). Destroyed when the file's tests end. On Linux without a GPU: VK_ICD_FILENAMES pointing at SwiftShader.

import { after } from "node:test";
import { createWebgpuBackend, type WebgpuBackend } from "../../src/engine/backends/webgpu/index.js";

export async function gpuForTests(): Promise<{ gpu: WebgpuBackend | null; skip: string | false }> {
  try {
    const gpu = await createWebgpuBackend();
    after(() => gpu.destroy?.());
    return { gpu, skip: false };
  } catch (e) {
    return { gpu: null, skip: `webgpu not available here: ${(e as Error).message}` };
  }
}
