// Tiny Shakespeare exactly as TensorFlow Datasets defines it: Karpathy's char-rnn input.txt (1,115,394 bytes of
// ASCII), split by character index into train / validation / test. Where the file comes from, in order:
//   1. an explicit path (opts.path; on the command line `--data tinyshakespeare:FILE`),
//   2. the environment variable CHARLM_TINYSHAKESPEARE,
//   3. the user cache: $CHARLM_CACHE_DIR, else $XDG_CACHE_HOME/charlm, else ~/.cache/charlm,
//   4. a download from the canonical URL, checked against its sha256 *before* it is written to the cache,
//      and written atomically (temp file, fsync, rename) so an interrupted run never leaves half a file.
// Whatever the source, the bytes must have the published size and sha256: the split points are only meaningful
// for that exact file.

import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { CharlmError } from "../util/errors.js";
import { Progress, type TextStream } from "../util/progress.js";
import { writeFileAtomic } from "../checkpoint/atomic.js";
import { sha256 } from "./files.js";

/** Environment variables (process.env), typed without Node's types so the published types need none. */
type Env = Record<string, string | undefined>;

/** A downloadable, checksummed text corpus with predefined splits (character index ranges, end exclusive). */
export interface DatasetSpec {
  url: string;
  bytes: number;
  sha256: string;
  splits: { train: readonly [number, number]; validation: readonly [number, number]; test: readonly [number, number] };
}

export const TINY_SHAKESPEARE: DatasetSpec = {
  url: "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
  bytes: 1115394,
  sha256: "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
  splits: { train: [0, 1003854], validation: [1003854, 1059624], test: [1059624, 1115394] },
};

const CACHE_FILE = "tinyshakespeare.txt";

export interface LoadTinyShakespeareOptions {
  /** Read the file from here (highest priority). */
  path?: string;
  /** Cache directory; default from CHARLM_CACHE_DIR / XDG_CACHE_HOME / ~/.cache. */
  cacheDir?: string;
  /** Allow the download step (default true). */
  download?: boolean;
  /** No progress bar or notes on stderr. */
  quiet?: boolean;
  /** Where to write notes and the progress bar; default process.stderr. */
  log?: TextStream;
  /** Override the dataset (tests serve a small file from a local HTTP server). */
  spec?: DatasetSpec;
  /** Environment to read CHARLM_TINYSHAKESPEARE / cache variables from (tests); default process.env. */
  env?: Env;
}

export interface TinyShakespeare {
  text: string;
  train: string;
  validation: string;
  test: string;
  /** Where the text came from: a path, or "download <url>". */
  source: string;
}

/** The cache directory charlm uses: $CHARLM_CACHE_DIR, else $XDG_CACHE_HOME/charlm, else ~/.cache/charlm. */
export function defaultCacheDir(env: Env = process.env): string {
  if (env.CHARLM_CACHE_DIR) return env.CHARLM_CACHE_DIR;
  return join(env.XDG_CACHE_HOME || join(homedir(), ".cache"), "charlm");
}

/** How to get the file without charlm's help; ends every error of this module. */
function byHand(spec: DatasetSpec): string {
  return `download ${spec.url} by hand and set CHARLM_TINYSHAKESPEARE=/path/to/input.txt (or use --data tinyshakespeare:FILE)`;
}

export async function loadTinyShakespeare(opts: LoadTinyShakespeareOptions = {}): Promise<TinyShakespeare> {
  const spec = opts.spec ?? TINY_SHAKESPEARE;
  const env = opts.env ?? process.env;
  const log = opts.log ?? process.stderr;

  // 1 and 2: a file the user pointed at. A wrong file here is an error, never a silent fall-through to download.
  const given = opts.path ?? (env.CHARLM_TINYSHAKESPEARE || undefined);
  if (given !== undefined) {
    const what = opts.path !== undefined ? given : `CHARLM_TINYSHAKESPEARE=${given}`;
    const bytes = await readGiven(given, what);
    checkBytes(bytes, spec, what, "the file");
    return withSplits(bytes, spec, given);
  }

  // 3: the cache. A damaged cached copy (wrong size or checksum) is replaced by a fresh download.
  const cacheDir = opts.cacheDir ?? defaultCacheDir(env);
  const cached = join(cacheDir, CACHE_FILE);
  const fromCache = await readFile(cached).catch(() => null);
  if (fromCache) {
    if (fromCache.length === spec.bytes && sha256(fromCache) === spec.sha256)
      return withSplits(fromCache, spec, cached);
    if (!opts.quiet) log.write(`charlm: cached ${cached} is damaged (size or sha256 differs); downloading again\n`);
  }

  // 4: download, verify, then cache.
  if (opts.download === false) {
    throw new CharlmError(`Tiny Shakespeare is not in ${cacheDir} and downloading is off; ${byHand(spec)}`);
  }
  const bytes = await download(spec, opts.quiet ?? false, log);
  checkBytes(bytes, spec, `download from ${spec.url}`, "the download");
  try {
    await writeFileAtomic(cached, bytes);
  } catch (err) {
    // The data is good; only caching failed. Say so once and carry on.
    if (!opts.quiet) log.write(`charlm: could not cache Tiny Shakespeare in ${cacheDir} (${errText(err)})\n`);
  }
  return withSplits(bytes, spec, `download ${spec.url}`);
}

async function readGiven(path: string, what: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EISDIR" ? "is a directory" : errText(err);
    throw new CharlmError(`${what}: cannot read Tiny Shakespeare (${why}); point it at the 1,115,394-byte input.txt`);
  }
}

function checkBytes(bytes: Uint8Array, spec: DatasetSpec, what: string, it: string): void {
  if (bytes.length !== spec.bytes) {
    throw new CharlmError(
      `${what}: ${it} has ${bytes.length} bytes, Tiny Shakespeare has ${spec.bytes}; ${byHand(spec)}`,
    );
  }
  const got = sha256(bytes);
  if (got !== spec.sha256) {
    throw new CharlmError(`${what}: sha256 ${got} does not match the expected ${spec.sha256}; ${byHand(spec)}`);
  }
}

function withSplits(bytes: Uint8Array, spec: DatasetSpec, source: string): TinyShakespeare {
  // The splits are character indices; they equal byte indices only because the file is pure ASCII. Check it, so a
  // different spec (or a future file) cannot quietly shift the split points.
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] >= 0x80) throw new CharlmError(`${source}: byte ${i} is not ASCII; ${byHand(spec)}`);
  }
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("latin1");
  const cut = (r: readonly [number, number]) => text.slice(r[0], r[1]);
  return {
    text,
    train: cut(spec.splits.train),
    validation: cut(spec.splits.validation),
    test: cut(spec.splits.test),
    source,
  };
}

async function download(spec: DatasetSpec, quiet: boolean, log: TextStream): Promise<Uint8Array> {
  let res: Response;
  try {
    res = await fetch(spec.url);
  } catch (err) {
    throw new CharlmError(`download of ${spec.url} failed (${errText(err)}); ${byHand(spec)}`);
  }
  if (!res.ok || !res.body) {
    throw new CharlmError(`download of ${spec.url} failed (HTTP ${res.status}); ${byHand(spec)}`);
  }
  const total = Number(res.headers.get("content-length")) || spec.bytes;
  const progress = new Progress({ total, label: "Tiny Shakespeare", unit: "B", quiet, stream: log });
  const chunks: Uint8Array[] = [];
  let got = 0;
  try {
    const reader = res.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
      got += value.length;
      progress.tick(value.length);
      // A server that sends far more than the file is not serving Tiny Shakespeare; stop reading.
      if (got > spec.bytes * 2) break;
    }
  } catch (err) {
    throw new CharlmError(`download of ${spec.url} broke off after ${got} bytes (${errText(err)}); ${byHand(spec)}`);
  }
  progress.finish();
  const out = new Uint8Array(got);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

function errText(err: unknown): string {
  const e = err as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  return e.cause?.code ?? e.cause?.message ?? e.code ?? e.message ?? String(err);
}
