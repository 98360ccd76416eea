// Strict UTF-8 checking that can say *where* a file goes wrong. TextDecoder's `fatal` mode only says "invalid";
// a person fixing a corpus needs the byte offset, so we walk the bytes ourselves (RFC 3629, table 3-7 of the
// Unicode standard: no overlong forms, no surrogates, nothing above U+10FFFF).

/** Byte offset of the first invalid UTF-8 sequence in `bytes`, or -1 when the whole buffer is valid. */
export function findInvalidUtf8(bytes: Uint8Array): number {
  const n = bytes.length;
  let i = 0;
  while (i < n) {
    const b0 = bytes[i];
    if (b0 < 0x80) {
      i++;
      continue;
    }
    // Lead byte -> sequence length and the allowed range of the *second* byte (the later ones are 80..BF).
    let len: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (b0 >= 0xc2 && b0 <= 0xdf) len = 2;
    else if (b0 >= 0xe0 && b0 <= 0xef) {
      len = 3;
      if (b0 === 0xe0) lo = 0xa0; // would be overlong
      if (b0 === 0xed) hi = 0x9f; // would be a UTF-16 surrogate
    } else if (b0 >= 0xf0 && b0 <= 0xf4) {
      len = 4;
      if (b0 === 0xf0) lo = 0x90; // would be overlong
      if (b0 === 0xf4) hi = 0x8f; // would exceed U+10FFFF
    } else return i; // 80..C1 (continuation or overlong lead) or F5..FF
    if (i + len > n) return i; // truncated at end of file
    const b1 = bytes[i + 1];
    if (b1 < lo || b1 > hi) return i;
    for (let k = 2; k < len; k++) {
      const b = bytes[i + k];
      if (b < 0x80 || b > 0xbf) return i;
    }
    i += len;
  }
  return -1;
}

/** Number of Unicode code points in a string (a surrogate pair counts once). */
export function codePointLength(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

/** UTF-16 index where code point number `k` starts (k may equal the code point length: returns s.length). */
export function codePointIndex(s: string, k: number): number {
  let i = 0;
  for (let seen = 0; seen < k && i < s.length; seen++) {
    const c = s.charCodeAt(i);
    i += c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00 ? 2 : 1;
  }
  return i;
}
