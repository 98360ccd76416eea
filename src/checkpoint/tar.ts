// A checkpoint as one file: an uncompressed POSIX tar (ustar) of the checkpoint directory, which the web page
// downloads and every command that takes a model (openCheckpoint in checkpoint.ts) reads as it reads the directory.
// `tar xf run.tar` gives the directory back. The writer and reader are small and use no Node built-ins, so the page
// bundles them.
//
// Layout: per file a 512-byte header (name, mode, size in octal, checksum, "ustar" magic) then its bytes padded to
// 512; two zero blocks end the archive. Only regular files in one directory are written or accepted.

import { CharlmError } from "../util/errors.js";

const BLOCK = 512;
const enc = new TextEncoder();
const dec = new TextDecoder();

function octal(dst: Uint8Array, at: number, width: number, value: number): void {
  // width - 1 octal digits, zero-padded, then NUL
  const s = value.toString(8).padStart(width - 1, "0");
  if (s.length > width - 1) throw new CharlmError(`tar: ${value} does not fit a ${width}-byte header field`);
  dst.set(enc.encode(s), at);
}

/** An uncompressed tar holding `files` under the directory `dir` (regular files, mode 0644, time `mtime` s). */
export function writeTar(dir: string, files: Iterable<[string, Uint8Array]>, mtime = 0): Uint8Array {
  const parts: Uint8Array[] = [];
  let total = 0;
  const push = (b: Uint8Array): void => {
    parts.push(b);
    total += b.length;
  };
  for (const [name, bytes] of files) {
    const full = enc.encode(`${dir}/${name}`);
    if (full.length > 100) throw new CharlmError(`tar: the name ${dir}/${name} is longer than 100 bytes`);
    const h = new Uint8Array(BLOCK);
    h.set(full, 0);
    octal(h, 100, 8, 0o644); // mode
    octal(h, 108, 8, 0); // uid
    octal(h, 116, 8, 0); // gid
    octal(h, 124, 12, bytes.length);
    octal(h, 136, 12, Math.floor(mtime));
    h.fill(0x20, 148, 156); // the checksum is summed with its own field as spaces
    h[156] = 0x30; // "0": a regular file
    h.set(enc.encode("ustar\0"), 257);
    h.set(enc.encode("00"), 263);
    let sum = 0;
    for (const b of h) sum += b;
    octal(h, 148, 7, sum);
    h[155] = 0x20;
    push(h);
    push(bytes);
    const pad = (BLOCK - (bytes.length % BLOCK)) % BLOCK;
    if (pad) push(new Uint8Array(pad));
  }
  push(new Uint8Array(2 * BLOCK));
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function field(h: Uint8Array, at: number, width: number): string {
  const b = h.subarray(at, at + width);
  const end = b.indexOf(0);
  return dec.decode(end >= 0 ? b.subarray(0, end) : b);
}

/**
 * The files of a tar written by writeTar (or by `tar cf run.tar run/` on one directory): file name (without its
 * directory) -> bytes. `label` names the archive in errors.
 */
export function readTar(bytes: Uint8Array, label: string): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  const damaged = (what: string): never => {
    throw new CharlmError(`${label}: ${what}; not a tar of a charlm checkpoint, or damaged (download it again)`);
  };
  let at = 0;
  let dir: string | null = null;
  while (at + BLOCK <= bytes.length) {
    const h = bytes.subarray(at, at + BLOCK);
    if (h.every((b) => b === 0)) return files;
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i];
    const stored = parseInt(field(h, 148, 8).trim(), 8);
    if (stored !== sum) damaged(`the header at byte ${at} has a bad checksum`);
    const prefix = field(h, 345, 155);
    const name = (prefix ? prefix + "/" : "") + field(h, 0, 100);
    const size = parseInt(field(h, 124, 12).trim() || "0", 8);
    const type = String.fromCharCode(h[156] || 0x30);
    at += BLOCK;
    if (!Number.isFinite(size) || at + size > bytes.length) damaged(`${name} runs past the end of the file`);
    if (type === "0") {
      const parts = name.replace(/^\.\//, "").split("/");
      const base = parts.pop()!;
      const parent = parts.join("/");
      if (parts.length > 1) damaged(`${name} is nested more than one directory deep`);
      if (dir !== null && parent !== dir) damaged(`it holds more than one directory (${dir}, ${parent})`);
      dir = parent;
      files.set(base, bytes.slice(at, at + size));
    } else if (type !== "5" && type !== "x" && type !== "g") {
      // directories are implied by the names; pax headers (x, g) carry nothing charlm needs
      damaged(`${name} is not a regular file (type ${type})`);
    }
    at += Math.ceil(size / BLOCK) * BLOCK;
  }
  return damaged("the end-of-archive blocks are missing (truncated)");
}
