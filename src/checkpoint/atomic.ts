// Atomic file writes: a reader sees either the old file or the new one, never half of each. The bytes go to a
// temporary file beside the target, are fsynced, and the temporary is renamed over the target (rename is atomic
// within one filesystem); the directory is fsynced too so the rename itself survives a power cut. Every writer of
// charlm's files (checkpoints, caches, exports, reports) goes through here.

import { promises as fs } from "node:fs";
import * as path from "node:path";
import { makeDir } from "./lock.js";

let counter = 0;

/**
 * Write `data` to `file` atomically (temp file, fsync, rename, fsync directory), making its directory if it is
 * missing. A write that fails (a full disk, say) removes its temporary file; only a killed process leaves one behind.
 */
export async function writeFileAtomic(file: string, data: Uint8Array | string): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.tmp-${process.pid}-${counter++}`);
  // The directory is made only when it is missing (most writers made it already), by makeDir: a clear error where it
  // cannot be, where fs.mkdir's recursive form never returns for a path under /proc.
  const handle = await fs.open(tmp, "w").catch(async (err: NodeJS.ErrnoException) => {
    if (err.code !== "ENOENT") throw err;
    await makeDir(dir);
    return fs.open(tmp, "w");
  });
  try {
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await syncDir(dir);
}

async function syncDir(dir: string): Promise<void> {
  // Some filesystems refuse to open or fsync a directory; the rename has happened either way.
  try {
    const d = await fs.open(dir, "r");
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  } catch {
    /* best effort */
  }
}
