// Custom corpora: one file, several files, or a directory of .txt files, read as strict UTF-8. Corpora without
// predefined splits get a validation split from their *tail* (a contiguous block), so validation text never
// overlaps the windows the model trains on. `loadSplits` is the single entry point the commands use: it knows
// "tinyshakespeare" (TFDS splits) and falls back to files.

import { readdir, readFile, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { CharlmError } from "../util/errors.js";
import { loadTinyShakespeare, type LoadTinyShakespeareOptions } from "./tinyshakespeare.js";
import { codePointIndex, codePointLength, findInvalidUtf8 } from "./utf8.js";

export interface Corpus {
  /** All files joined (a "\n" is put between files when one does not end with a newline). */
  text: string;
  train: string;
  validation: string;
  /** The files read, in order. */
  files: string[];
}

export interface CorpusOptions {
  /** Fraction of the characters (code points) held out from the end as validation, in [0, 1). Default 0.1. */
  validationFraction?: number;
}

export async function loadCorpus(paths: string[], opts: CorpusOptions = {}): Promise<Corpus> {
  const fraction = opts.validationFraction ?? 0.1;
  if (!(fraction >= 0 && fraction < 1)) {
    throw new CharlmError(`validation fraction must be at least 0 and below 1, got ${fraction}`);
  }
  if (paths.length === 0) throw new CharlmError("no corpus given; pass a text file or a directory of .txt files");
  const files: string[] = [];
  for (const p of paths) files.push(...(await expand(p)));

  let text = "";
  for (const file of files) {
    const part = await readUtf8(file);
    if (text.length > 0 && part.length > 0 && !text.endsWith("\n")) text += "\n";
    text += part;
  }
  if (text.length === 0) {
    const what = files.length === 1 ? files[0] : `${files.length} files (${paths.join(", ")})`;
    throw new CharlmError(`${what}: the corpus is empty; give a non-empty UTF-8 text file`);
  }
  return { ...splitText(text, fraction), files };
}

/** Hold out the last `fraction` of the characters (code points) of `text` as validation. */
export function splitText(text: string, fraction: number): { text: string; train: string; validation: string } {
  const n = codePointLength(text);
  const cut = codePointIndex(text, n - Math.ceil(n * fraction));
  return { text, train: text.slice(0, cut), validation: text.slice(cut) };
}

/** A path -> the text files it names: itself, or the .txt files under a directory, sorted by path. */
async function expand(path: string): Promise<string[]> {
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    throw readError(path, err);
  }
  if (st.isFile()) return [path];
  if (!st.isDirectory()) {
    // A device or pipe (/dev/zero, /dev/stdin) never ends or cannot be read twice; a corpus is a file.
    throw new CharlmError(`${path}: not a regular file (a device, pipe or socket); give a UTF-8 text file`);
  }
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    const entries = await readdir(dir, { withFileTypes: true }).catch((err: unknown) => {
      throw readError(dir, err);
    });
    // Sort by name so every machine reads the files in the same order (readdir's order is the filesystem's).
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      if (e.name.startsWith(".")) continue;
      const full = join(dir, e.name);
      if (e.isDirectory()) await walk(full);
      else if ((e.isFile() || e.isSymbolicLink()) && e.name.toLowerCase().endsWith(".txt")) out.push(full);
    }
  };
  await walk(path);
  if (out.length === 0) throw new CharlmError(`${path}: directory has no .txt files; put the corpus in .txt files`);
  return out;
}

/** Read a file as strict UTF-8; invalid bytes are an error naming the file and the byte offset. */
export async function readUtf8(file: string): Promise<string> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw readError(file, err);
  }
  const bad = findInvalidUtf8(bytes);
  if (bad !== -1) throw new CharlmError(`${file}: invalid UTF-8 at byte ${bad}; re-encode the file as UTF-8`);
  // A leading byte-order mark is not text.
  const start = bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? 3 : 0;
  return bytes.toString("utf8", start);
}

function readError(path: string, err: unknown): CharlmError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return new CharlmError(`${path}: no such file or directory; check the path`);
  if (code === "EACCES" || code === "EPERM") {
    return new CharlmError(`${path}: permission denied; make the file readable or copy it somewhere you can read`);
  }
  if (code === "EISDIR") return new CharlmError(`${path}: is a directory; pass a text file`);
  return new CharlmError(`${path}: cannot read (${code ?? (err as Error).message}); check the path`);
}

// ---------------------------------------------------------------------------------------------------------------
// One entry point for the commands

export interface Splits {
  train: string;
  validation: string;
  test?: string;
  /** All text the splits come from (the vocabulary is built from it). */
  text: string;
  /** Short name for logs and checkpoints: "tinyshakespeare", a file name, or "N files". */
  name: string;
}

export interface SplitsOptions extends CorpusOptions {
  /** Passed to the Tiny Shakespeare loader (cache dir, quiet, ...). */
  tinyShakespeare?: LoadTinyShakespeareOptions;
}

/**
 * `data` is "tinyshakespeare" (TFDS splits; the file found as loadTinyShakespeare resolves it),
 * "tinyshakespeare:FILE" (TFDS splits of a local copy), or one or more corpus paths (tail validation split).
 */
export async function loadSplits(data: string | string[], opts: SplitsOptions = {}): Promise<Splits> {
  const list = Array.isArray(data) ? data : [data];
  const first = list[0] ?? "";
  if (list.length === 1 && /^tinyshakespeare(:|$)/i.test(first)) {
    const path = first.includes(":") ? first.slice(first.indexOf(":") + 1) : undefined;
    if (path === "") throw new CharlmError(`'${first}' names no file; use tinyshakespeare:/path/to/input.txt`);
    const ts = await loadTinyShakespeare({ ...opts.tinyShakespeare, ...(path !== undefined ? { path } : {}) });
    return { train: ts.train, validation: ts.validation, test: ts.test, text: ts.text, name: "tinyshakespeare" };
  }
  const c = await loadCorpus(list, opts);
  const name = c.files.length === 1 ? basename(c.files[0]) : `${c.files.length} files`;
  return { train: c.train, validation: c.validation, text: c.text, name };
}
