// The safetensors format, written from its published description (no library):
//
//   bytes 0..8        N, the header length, unsigned 64-bit little-endian
//   bytes 8..8+N      a UTF-8 JSON object: for every tensor name { "dtype": "F32", "shape": [..], "data_offsets": [b, e] }
//                     and optionally "__metadata__": { string: string }; it starts with '{' and may be padded with
//                     trailing spaces (writers pad so the data starts 8-byte aligned)
//   bytes 8+N..       the data buffer: each tensor's raw little-endian elements, row-major, at [b, e) relative to
//                     the buffer start. Every byte of the buffer belongs to exactly one tensor: no holes, no overlaps.
//
// Reading checks all of that strictly, so a truncated, padded or hand-edited file is refused with a message that
// names the file and what was wrong instead of producing wrong weights.
//
// This module is pure (no Node APIs) so the browser bundle can decode weights too; file reading and atomic writing
// are in safetensors-file.ts.

import { CharlmError } from "../util/errors.js";

export type Dtype = "F32" | "F64" | "I32" | "U8" | "F16" | "BF16";

/** One stored tensor. F16 and BF16 are widened to Float32Array on read (charlm itself writes F32). */
export interface SafeTensor {
  dtype: Dtype;
  shape: number[];
  data: Float32Array | Float64Array | Int32Array | Uint8Array;
}

export interface SafetensorsFile {
  tensors: Map<string, SafeTensor>;
  metadata: Record<string, string>;
}

const BYTES: Record<Dtype, number> = { F32: 4, F64: 8, I32: 4, U8: 1, F16: 2, BF16: 2 };
const ELEMENT_TYPE: Record<string, Dtype> = {
  Float32Array: "F32",
  Float64Array: "F64",
  Int32Array: "I32",
  Uint8Array: "U8",
};
/** A header larger than this is certainly not ours (the reference implementation uses the same bound). */
const MAX_HEADER = 100_000_000;

const product = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);

/** Serialise named tensors (and string metadata) to safetensors bytes, in the order given. */
export function encodeSafetensors(
  tensors: Map<string, { shape: number[]; data: Float32Array | Float64Array | Int32Array | Uint8Array }>,
  metadata: Record<string, string> = {},
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  const parts: Uint8Array[] = [];
  for (const [name, t] of tensors) {
    if (name === "__metadata__") throw new Error("a tensor cannot be named __metadata__");
    const dtype = ELEMENT_TYPE[t.data.constructor.name];
    if (!dtype) throw new Error(`tensor ${name}: unsupported array type ${t.data.constructor.name}`);
    if (product(t.shape) !== t.data.length) {
      throw new Error(
        `tensor ${name}: shape [${t.shape}] holds ${product(t.shape)} elements, data has ${t.data.length}`,
      );
    }
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    parts.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  const utf8 = new TextEncoder();
  const pad = (8 - ((8 + utf8.encode(json).length) % 8)) % 8;
  json += " ".repeat(pad);
  const headerBytes = utf8.encode(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.length;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  if (!isLittleEndian()) throw new Error("charlm writes safetensors on little-endian machines only");
  return out;
}

/** Parse and strictly validate safetensors bytes; `name` (usually the file path) prefixes every error. */
export function decodeSafetensors(bytes: Uint8Array, name: string): SafetensorsFile {
  const bad = (what: string): CharlmError =>
    new CharlmError(`${name}: ${what}; the file is damaged or not a safetensors file, write it again`);
  if (bytes.length < 8) throw bad(`only ${bytes.length} bytes, too short for the 8-byte header length`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n64 = view.getBigUint64(0, true);
  if (n64 > BigInt(MAX_HEADER)) throw bad(`header length ${n64} is implausibly large`);
  const n = Number(n64);
  if (8 + n > bytes.length)
    throw bad(`header says ${n} header bytes but the file has only ${bytes.length - 8} after the length (truncated?)`);
  if (n < 2 || bytes[8] !== 0x7b) throw bad("header does not start with '{'");
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch {
    throw bad("header is not valid UTF-8 JSON");
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) throw bad("header is not a JSON object");
  const bufferStart = 8 + n;
  const bufferLength = bytes.length - bufferStart;
  const metadata: Record<string, string> = {};
  const entries: { name: string; dtype: Dtype; shape: number[]; begin: number; end: number }[] = [];
  for (const [key, value] of Object.entries(header as Record<string, unknown>)) {
    if (key === "__metadata__") {
      if (typeof value !== "object" || value === null || Array.isArray(value))
        throw bad("__metadata__ is not an object");
      for (const [k, v] of Object.entries(value)) {
        if (typeof v !== "string") throw bad(`__metadata__.${k} is not a string`);
        metadata[k] = v;
      }
      continue;
    }
    const e = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof e !== "object" || e === null) throw bad(`entry ${key} is not an object`);
    if (typeof e.dtype !== "string" || !(e.dtype in BYTES))
      throw bad(`tensor ${key} has unsupported dtype ${JSON.stringify(e.dtype)}`);
    if (!Array.isArray(e.shape) || e.shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
      throw bad(`tensor ${key} has an invalid shape ${JSON.stringify(e.shape)}`);
    }
    const off = e.data_offsets;
    if (
      !Array.isArray(off) ||
      off.length !== 2 ||
      off.some((o) => !Number.isSafeInteger(o) || o < 0) ||
      off[1] < off[0]
    ) {
      throw bad(`tensor ${key} has invalid data_offsets ${JSON.stringify(off)}`);
    }
    const dtype = e.dtype as Dtype;
    const shape = e.shape as number[];
    const expected = product(shape) * BYTES[dtype];
    if (off[1] - off[0] !== expected) {
      throw bad(`tensor ${key} (${dtype} [${shape}]) needs ${expected} bytes but its offsets span ${off[1] - off[0]}`);
    }
    if (off[1] > bufferLength) {
      throw bad(
        `tensor ${key} ends at byte ${off[1]} of the data but the data has only ${bufferLength} bytes (truncated?)`,
      );
    }
    entries.push({ name: key, dtype, shape, begin: off[0], end: off[1] });
  }
  // Every byte of the buffer belongs to exactly one tensor.
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  for (const e of sorted) {
    if (e.begin !== at) {
      throw bad(
        e.begin < at
          ? `tensor ${e.name} overlaps the tensor before it`
          : `a gap of ${e.begin - at} bytes before tensor ${e.name}`,
      );
    }
    at = e.end;
  }
  if (at !== bufferLength) throw bad(`${bufferLength - at} trailing bytes after the last tensor`);

  const tensors = new Map<string, SafeTensor>();
  for (const e of entries) {
    // Copy into a fresh, aligned buffer: the data offset need not be a multiple of the element size.
    const raw = bytes.slice(bufferStart + e.begin, bufferStart + e.end);
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data: toTyped(raw, e.dtype) });
  }
  return { tensors, metadata };
}

function toTyped(raw: Uint8Array, dtype: Dtype): SafeTensor["data"] {
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const n = raw.length / BYTES[dtype];
  switch (dtype) {
    case "U8":
      return raw;
    case "F32": {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(4 * i, true);
      return out;
    }
    case "F64": {
      const out = new Float64Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getFloat64(8 * i, true);
      return out;
    }
    case "I32": {
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) out[i] = view.getInt32(4 * i, true);
      return out;
    }
    case "BF16": {
      // bfloat16 is the top half of a float32.
      const out = new Float32Array(n);
      const u = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) u[i] = view.getUint16(2 * i, true) << 16;
      return out;
    }
    case "F16": {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = halfToFloat(view.getUint16(2 * i, true));
      return out;
    }
  }
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

function isLittleEndian(): boolean {
  return new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
}
