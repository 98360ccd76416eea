// How many threads the wasm backend runs on: `{ threads }` if given, else CHARLM_THREADS, else every core up to a
// cap (Node), or 1 (browsers, and wherever SharedArrayBuffer is missing). The CLI prints the count it gets back.

import { CharlmError } from "../../../util/errors.js";
import { isNode } from "./load.js";

/** The most threads `{ threads }` / CHARLM_THREADS accept. */
export const MAX_THREADS = 64;

/**
 * The default's cap: past this many threads the per-step products of the models charlm trains are too small to
 * share (the previous backend's scaling on a 16-core Xeon flattened before 16, see issue 8); more can still be asked for.
 */
export const DEFAULT_THREADS_CAP = 16;

/** A thread count checked: a whole number from 1 to MAX_THREADS, else an error naming `what` and the fix. */
export function checkThreads(n: number, what: string): number {
  if (!Number.isInteger(n) || n < 1 || n > MAX_THREADS) {
    throw new CharlmError(
      `${what}: not a whole number from 1 to ${MAX_THREADS}; give the threads for the wasm kernels (1 = no worker threads), or unset it`,
    );
  }
  return n;
}

/** Threads when nothing says otherwise: the cores Node reports, up to DEFAULT_THREADS_CAP; 1 outside Node. */
export function defaultThreads(): number {
  // process.getBuiltinModule (Node >= 20.16) first: a bundle may run this before this module's import of node:os
  // (below) has settled (esbuild's did, in bench/gpu-pack.sh's bundles, which then ran wasm on one thread).
  const get = isNode() ? (process as { getBuiltinModule?: (id: string) => unknown }).getBuiltinModule : undefined;
  const cores = (get?.("node:os") as NodeOs | undefined)?.availableParallelism ?? availableParallelism;
  if (!isNode() || typeof SharedArrayBuffer === "undefined" || typeof cores !== "function") return 1;
  return Math.max(1, Math.min(cores(), DEFAULT_THREADS_CAP));
}

/** CHARLM_THREADS as a thread count, or the default when it is unset; a malformed value is an error naming it. */
export function threadsFromEnv(): number {
  const v = isNode() ? process.env.CHARLM_THREADS : undefined;
  if (v === undefined || v.trim() === "") return defaultThreads();
  return checkThreads(Number(v), `CHARLM_THREADS=${v}`);
}

// Node's core count, for Node before process.getBuiltinModule. node:os is imported by a computed name, in Node only,
// so that bundles for the browser (charlm/browser, the web page) contain no Node built-in. Last in the module: a
// bundle that does not wait for this module's top-level await still has every constant above.
type NodeOs = { availableParallelism?: () => number };
const os: NodeOs | null = isNode() ? await import(["node", "os"].join(":")) : null;
const availableParallelism = os?.availableParallelism;
