// One writer per checkpoint directory. A writer (charlm train, or anything calling saveCheckpoint) creates
// DIR/charlm.lock exclusively and writes its process id into it; a second writer finding a lock whose process is
// alive is refused with one line, and a lock whose process has died (SIGKILL, power cut) is taken over. Readers
// never look at the lock to decide anything but whether to wait a moment and read again.
//
// The lock is re-entrant within a process: the train command takes it before reading a run to resume, and the
// training loop and each save take it again. Process ids can be reused, so a lock left by a crash can, rarely,
// name an unrelated live process; the refusal says how to remove it by hand.

import { promises as fs, rmSync, readFileSync } from "node:fs";
import * as path from "node:path";
import { BusyError, CharlmError } from "../util/errors.js";

export const LOCK = "charlm.lock";

export interface WriterLock {
  /** Give the lock back (once per take); the file goes when the last take in this process is released. */
  release(): void;
}

const held = new Map<string, number>(); // resolved directory -> takes by this process

/** Become the one writer of the existing directory `dir`, or throw a CharlmError naming the process that is. */
export async function lockDir(dir: string): Promise<WriterLock> {
  const key = path.resolve(dir);
  const file = path.join(dir, LOCK);
  const taken = held.get(key);
  if (taken) {
    held.set(key, taken + 1);
    return releaser(key, file);
  }
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await fs.writeFile(file, JSON.stringify({ pid: process.pid, since: new Date().toISOString() }) + "\n", {
        flag: "wx",
      });
      held.set(key, 1);
      return releaser(key, file);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "EEXIST") throw cannotWrite(dir, code);
    }
    const holder = (await lockHolder(dir)) ?? (await pause(50).then(() => lockHolder(dir)));
    if (holder !== null && isAlive(holder)) {
      throw new BusyError(
        `${dir} is being written by another charlm process (pid ${holder}); wait for it to finish or stop it, or pick another --out (if no such run is going, remove ${file})`,
      );
    }
    await fs.rm(file, { force: true }); // its process is gone: a stale lock
  }
  throw new CharlmError(`${file}: could not take the lock; another charlm process keeps taking it, retry`);
}

/**
 * Create `dir` and its missing parents, or throw a CharlmError naming the part of the path that is in the way.
 * Hand-rolled because Node 20's `mkdir({ recursive: true })` never returns for a path under /proc.
 */
export async function makeDir(dir: string): Promise<void> {
  const missing: string[] = [];
  let at = path.resolve(dir);
  for (;;) {
    const st = await fs.stat(at).catch((err: NodeJS.ErrnoException) => {
      if (err.code === "ENOENT" || err.code === "ENOTDIR") return null; // look further up
      throw cannotWrite(dir, err.code);
    });
    if (st) {
      if (!st.isDirectory()) {
        throw new CharlmError(
          at === path.resolve(dir)
            ? `${dir}: not a directory (a file or device is there); pick a directory for the checkpoint`
            : `${dir}: ${at} is not a directory; pick a checkpoint directory elsewhere`,
        );
      }
      break;
    }
    missing.push(at);
    const up = path.dirname(at);
    if (up === at) break;
    at = up;
  }
  for (const d of missing.reverse()) {
    await fs.mkdir(d).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== "EEXIST") throw cannotWrite(dir, err.code);
    });
  }
}

/** The process id in `dir`'s lock file, or null when there is none (or it cannot be read). */
export async function lockHolder(dir: string): Promise<number | null> {
  try {
    const pid = (JSON.parse(await fs.readFile(path.join(dir, LOCK), "utf8")) as { pid?: unknown }).pid;
    return typeof pid === "number" && Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/**
 * Whether another live process holds `dir`'s lock: a writer is at work, so what a reader saw may change under it.
 * This process holding it (a trainer reading the run it resumes) does not count: it writes nothing while it reads.
 */
export async function writerActive(dir: string): Promise<boolean> {
  const pid = await lockHolder(dir);
  return pid !== null && pid !== process.pid && isAlive(pid);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0); // signal 0: only asks whether the process exists
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM"; // exists, owned by someone else
  }
}

function releaser(key: string, file: string): WriterLock {
  let done = false;
  return {
    release() {
      if (done) return;
      done = true;
      const left = (held.get(key) ?? 1) - 1;
      if (left > 0) {
        held.set(key, left);
        return;
      }
      held.delete(key);
      // Synchronous so that it also works from an exit handler; only our own lock is removed.
      try {
        if ((JSON.parse(readFileSync(file, "utf8")) as { pid?: number }).pid === process.pid) rmSync(file);
      } catch {
        /* already gone */
      }
    },
  };
}

function cannotWrite(dir: string, code: string | undefined): CharlmError {
  const why =
    code === "ENOENT"
      ? "cannot create a directory there"
      : code === "ENOTDIR"
        ? "a part of the path is a file"
        : code === "EACCES" || code === "EPERM"
          ? "permission denied"
          : code === "EROFS"
            ? "read-only filesystem"
            : `cannot create files there (${code ?? "unknown error"})`;
  return new CharlmError(`${dir}: ${why}; pick a checkpoint directory you can write to`);
}

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
