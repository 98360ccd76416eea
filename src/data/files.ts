// File helpers shared by the data loaders and the checkpoint writers.

import { createHash } from "node:crypto";
import { mkdir, open, rename, rm } from "node:fs/promises";
import { dirname } from "node:path";

/** Write a file so that readers see the old content or the whole new content, never a part: temp, fsync, rename. */
export async function writeAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true });
  const tmp = `${path}.${process.pid}.${Date.now()}.tmp`;
  const fh = await open(tmp, "w");
  try {
    await fh.writeFile(data);
    await fh.sync();
  } catch (err) {
    await fh.close();
    await rm(tmp, { force: true });
    throw err;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  // Persist the rename itself. Not every platform lets a directory be opened for fsync; that is not fatal.
  try {
    const dh = await open(dir, "r");
    await dh.sync().finally(() => dh.close());
  } catch {
    /* best effort */
  }
}

export function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}
