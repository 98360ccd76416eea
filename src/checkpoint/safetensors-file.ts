// Safetensors files on disk: read with strict validation, write atomically. The format itself is in safetensors.ts.

import { promises as fs } from "node:fs";
import { CharlmError } from "../util/errors.js";
import { writeFileAtomic } from "./atomic.js";
import { decodeSafetensors, encodeSafetensors, type SafetensorsFile } from "./safetensors.js";

/** Read and validate a .safetensors file. */
export async function readSafetensors(file: string): Promise<SafetensorsFile> {
  let bytes: Uint8Array;
  try {
    bytes = await fs.readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") {
      throw new CharlmError(
        `${file}: no such file; the checkpoint is incomplete, train again or pick another directory`,
      );
    }
    throw err;
  }
  return decodeSafetensors(bytes, file);
}

/** Write a .safetensors file atomically. */
export async function writeSafetensors(
  file: string,
  tensors: Map<string, { shape: number[]; data: Float32Array | Float64Array | Int32Array | Uint8Array }>,
  metadata: Record<string, string> = {},
): Promise<void> {
  await writeFileAtomic(file, encodeSafetensors(tensors, metadata));
}
