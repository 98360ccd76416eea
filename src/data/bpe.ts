// The byte-level BPE tokenizer: the 256 byte values are tokens 0-255, and each learned merge of two tokens into one
// is the next id (256, 257, ...). Any text is its UTF-8 bytes, so there is never an unknown token; a token may end
// halfway through a character, which the stream decoder holds back until the character is whole.
//
// Learning (Sennrich et al. 2016, on bytes as in GPT-2): the text is first cut into chunks that no merge crosses
// (a word or number with the space before it, a run of punctuation, a run of line breaks, other spacing), the
// distinct chunks are counted, and then the most frequent adjacent pair of tokens, weighted by chunk counts, is
// merged, again and again, until the vocabulary has the size asked for (or no pair is left). Only the chunks that
// hold the merged pair are touched, and pair counts change by the difference, so a merge costs what it changes,
// not a pass over the text; a max-heap with lazy deletion finds the next pair (ties: the smaller pair key).
//
// Encoding a chunk applies the learned merges in the order they were learned (lowest rank first), as learning did.

import { CharlmError } from "../util/errors.js";
import type { EncodedText, StreamDecoder, Tokenizer } from "./tokenizer.js";

export interface BpeJSON {
  kind: "bpe";
  merges: number[]; // flat pairs: merge k joins tokens merges[2k] and merges[2k+1] into token 256 + k
}

export const BPE_MIN = 256;
export const BPE_MAX = 8192;

const SPLIT = / ?[\p{L}\p{M}]+| ?\p{N}+| ?[^\s\p{L}\p{M}\p{N}]+|\n+|[^\S\n]+/gu;
const KEY = BPE_MAX; // pair key a * KEY + b (ids < 8192)

export class BpeTokenizer implements Tokenizer {
  readonly kind = "bpe" as const;
  readonly unk = -1;
  readonly merges: Int32Array;
  private readonly bytes: Uint8Array[]; // id -> its bytes
  private readonly leads: Uint8Array; // id -> how many characters start in it (bytes that are not 10xxxxxx)
  private readonly rank = new Map<number, number>(); // pair key -> merge index
  private cache = new Map<string, Int32Array>();

  constructor(merges: ArrayLike<number>) {
    if (merges.length % 2 !== 0) throw new CharlmError("bpe merges are damaged: an odd count of token ids");
    this.merges = Int32Array.from(merges);
    this.bytes = Array.from({ length: 256 }, (_, b) => Uint8Array.of(b));
    for (let k = 0; k < merges.length / 2; k++) {
      const a = merges[2 * k];
      const b = merges[2 * k + 1];
      const id = 256 + k;
      if (!(Number.isInteger(a) && Number.isInteger(b) && a >= 0 && b >= 0 && a < id && b < id)) {
        throw new CharlmError(`bpe merge ${k} joins ${a} and ${b}, which are not earlier tokens; the state is damaged`);
      }
      if (id >= BPE_MAX) throw new CharlmError(`bpe has more than ${BPE_MAX} tokens; the state is damaged`);
      const joined = new Uint8Array(this.bytes[a].length + this.bytes[b].length);
      joined.set(this.bytes[a]);
      joined.set(this.bytes[b], this.bytes[a].length);
      this.bytes.push(joined);
      this.rank.set(a * KEY + b, k);
    }
    this.leads = Uint8Array.from(this.bytes, (bs) => bs.reduce((n, x) => n + ((x & 0xc0) !== 0x80 ? 1 : 0), 0));
  }

  get size(): number {
    return this.bytes.length;
  }

  /** Learn merges from `text` until the vocabulary holds `size` tokens (256-8192) or no pair repeats. */
  static train(text: string, size: number): BpeTokenizer {
    if (!Number.isInteger(size) || size < BPE_MIN || size > BPE_MAX) {
      throw new CharlmError(`bpe vocabulary size must be a whole number from ${BPE_MIN} to ${BPE_MAX}, got ${size}`);
    }
    const chunkCounts = new Map<string, number>();
    for (const m of text.matchAll(SPLIT)) chunkCounts.set(m[0], (chunkCounts.get(m[0]) ?? 0) + 1);
    const enc = new TextEncoder();
    const words: number[][] = [];
    const counts: number[] = [];
    for (const [chunk, n] of chunkCounts) {
      const b = enc.encode(chunk);
      if (b.length < 2) continue; // one byte: nothing to merge
      words.push(Array.from(b));
      counts.push(n);
    }
    const pairCount = new Map<number, number>();
    const where = new Map<number, number[]>(); // pair key -> chunks that held it (may be stale or repeated)
    words.forEach((w, wi) => {
      for (let j = 0; j + 1 < w.length; j++) {
        const key = w[j] * KEY + w[j + 1];
        pairCount.set(key, (pairCount.get(key) ?? 0) + counts[wi]);
        const list = where.get(key);
        if (list) {
          if (list[list.length - 1] !== wi) list.push(wi);
        } else where.set(key, [wi]);
      }
    });
    const heap = new PairHeap();
    for (const [key, n] of pairCount) heap.push(n, key);

    const merges: number[] = [];
    const seen = new Int32Array(words.length).fill(-1); // merge index that last touched each chunk
    while (256 + merges.length / 2 < size) {
      let key = -1;
      while (heap.length > 0) {
        const [n, k] = heap.pop();
        const now = pairCount.get(k) ?? 0;
        if (now === n && n > 0) {
          key = k;
          break;
        }
        if (now > 0 && now < n) heap.push(now, k); // a stale entry: put the current count back
      }
      if (key < 0 || pairCount.get(key)! < 2) break; // nothing repeats: more merges would only memorise
      const m = merges.length / 2;
      const id = 256 + m;
      const a = Math.floor(key / KEY);
      const b = key % KEY;
      merges.push(a, b);
      const delta = new Map<number, number>();
      const add = (k: number, n: number): void => void delta.set(k, (delta.get(k) ?? 0) + n);
      for (const wi of where.get(key)!) {
        if (seen[wi] === m) continue;
        seen[wi] = m;
        const w = words[wi];
        const c = counts[wi];
        const out: number[] = [];
        let changed = false;
        for (let j = 0; j < w.length; j++) {
          if (j + 1 < w.length && w[j] === a && w[j + 1] === b) {
            out.push(id);
            j++;
            changed = true;
          } else out.push(w[j]);
        }
        if (!changed) continue;
        for (let j = 0; j + 1 < w.length; j++) add(w[j] * KEY + w[j + 1], -c);
        for (let j = 0; j + 1 < out.length; j++) {
          const k = out[j] * KEY + out[j + 1];
          add(k, c);
          if (out[j] === id || out[j + 1] === id) {
            const list = where.get(k);
            if (list) {
              if (list[list.length - 1] !== wi) list.push(wi);
            } else where.set(k, [wi]);
          }
        }
        words[wi] = out;
      }
      for (const [k, d] of delta) {
        if (d === 0) continue;
        const n = (pairCount.get(k) ?? 0) + d;
        if (n > 0) pairCount.set(k, n);
        else pairCount.delete(k);
        if (d > 0) heap.push(n, k);
      }
      where.delete(key);
    }
    return new BpeTokenizer(merges);
  }

  private encodeChunk(chunk: string, enc: TextEncoder): Int32Array {
    const hit = this.cache.get(chunk);
    if (hit) return hit;
    let w = Array.from(enc.encode(chunk));
    while (w.length > 1) {
      let best = -1;
      let bestRank = Infinity;
      for (let j = 0; j + 1 < w.length; j++) {
        const r = this.rank.get(w[j] * KEY + w[j + 1]);
        if (r !== undefined && r < bestRank) {
          bestRank = r;
          best = j;
        }
      }
      if (best < 0) break;
      const a = w[best];
      const b = w[best + 1];
      const id = 256 + bestRank;
      const out: number[] = [];
      for (let j = 0; j < w.length; j++) {
        if (j + 1 < w.length && w[j] === a && w[j + 1] === b) {
          out.push(id);
          j++;
        } else out.push(w[j]);
      }
      w = out;
    }
    const ids = Int32Array.from(w);
    if (this.cache.size > 200_000) this.cache = new Map(); // bound the memory a long text can take
    this.cache.set(chunk, ids);
    return ids;
  }

  encode(text: string): Int32Array {
    const enc = new TextEncoder();
    const parts: Int32Array[] = [];
    let n = 0;
    for (const m of text.matchAll(SPLIT)) {
      const ids = this.encodeChunk(m[0], enc);
      parts.push(ids);
      n += ids.length;
    }
    const out = new Int32Array(n);
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  /** Token i covers the characters that start in its bytes; nothing is ever unknown. */
  measure(text: string): EncodedText {
    const ids = this.encode(text);
    const ends = new Float64Array(ids.length);
    let cp = 0;
    for (let i = 0; i < ids.length; i++) {
      cp += this.leads[ids[i]];
      ends[i] = cp;
    }
    return { ids, ends, extra: null, unknown: 0 };
  }

  /** The bytes of `ids`; ids outside the vocabulary are an error. */
  tokenBytes(ids: ArrayLike<number>): Uint8Array {
    let n = 0;
    for (let i = 0; i < ids.length; i++) {
      const b = this.bytes[ids[i]];
      if (b === undefined) throw new CharlmError(`id ${ids[i]} is outside the vocabulary of ${this.size} tokens`);
      n += b.length;
    }
    const out = new Uint8Array(n);
    let at = 0;
    for (let i = 0; i < ids.length; i++) {
      out.set(this.bytes[ids[i]], at);
      at += this.bytes[ids[i]].length;
    }
    return out;
  }

  /** Ids -> text; bytes that do not form UTF-8 (a model can sample those) become U+FFFD. */
  decode(ids: ArrayLike<number>): string {
    return new TextDecoder().decode(this.tokenBytes(ids));
  }

  decoder(): StreamDecoder {
    const td = new TextDecoder();
    return {
      push: (id) => td.decode(this.tokenBytes([id]), { stream: true }),
      flush: () => td.decode(),
    };
  }

  unknownChars(): string[] {
    return [];
  }

  startIds(): number[] {
    return [10]; // the line-break byte
  }

  serialize(): BpeJSON {
    return { kind: "bpe", merges: Array.from(this.merges) };
  }

  describe(): string {
    return `bpe, ${this.size} tokens`;
  }

  static fromJSON(j: unknown): BpeTokenizer {
    const o = j as Partial<BpeJSON> | null;
    if (!o || !Array.isArray(o.merges)) {
      throw new CharlmError(`bpe tokenizer is damaged: expected {"kind": "bpe", "merges": [token ids, in pairs]}`);
    }
    return new BpeTokenizer(o.merges);
  }
}

/** Max-heap of (count, key): largest count first, then the smaller key. */
class PairHeap {
  private n: number[] = [];
  private k: number[] = [];

  get length(): number {
    return this.n.length;
  }

  private above(i: number, j: number): boolean {
    return this.n[i] > this.n[j] || (this.n[i] === this.n[j] && this.k[i] < this.k[j]);
  }

  private swap(i: number, j: number): void {
    [this.n[i], this.n[j]] = [this.n[j], this.n[i]];
    [this.k[i], this.k[j]] = [this.k[j], this.k[i]];
  }

  push(count: number, key: number): void {
    this.n.push(count);
    this.k.push(key);
    let i = this.n.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.above(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }

  pop(): [number, number] {
    const top: [number, number] = [this.n[0], this.k[0]];
    const lastN = this.n.pop()!;
    const lastK = this.k.pop()!;
    if (this.n.length > 0) {
      this.n[0] = lastN;
      this.k[0] = lastK;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < this.n.length && this.above(l, m)) m = l;
        if (r < this.n.length && this.above(r, m)) m = r;
        if (m === i) break;
        this.swap(i, m);
        i = m;
      }
    }
    return top;
  }
}
