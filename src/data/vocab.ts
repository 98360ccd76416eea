// The character vocabulary: index <-> symbol. Symbols are Unicode code points (an emoji is one symbol, not two
// UTF-16 halves), sorted by code point so the same text always gives the same ids. Optionally pruned (keep the
// N most frequent, or those seen at least K times) with the rest mapped to "<unk>", and enriched with characters
// that must be representable even if the training text lacks them. Saved with every model as JSON.

import { CharlmError } from "../util/errors.js";
import type { EncodedText, StreamDecoder, Tokenizer, TokenizerJSON } from "./tokenizer.js";

export const UNK = "<unk>";

export interface VocabJSON {
  /** index -> symbol; each a single code point, except "<unk>". */
  chars: string[];
  /** Index of "<unk>", or -1 when the vocabulary has none. */
  unk: number;
}

export interface VocabBuildOptions {
  /** Keep at most this many symbols, "<unk>" included; the most frequent characters win (ties: lower code point). */
  maxSize?: number;
  /** Keep only characters seen at least this many times. */
  minCount?: number;
  /** Characters that are always kept, even if absent from the text or pruned away. */
  extra?: string;
}

/** What `encode` does with a character that is not in the vocabulary. */
export type OnUnknown = "error" | "unk" | "skip";

/** The char tokenizer: one token per code point. */
export class Vocab implements Tokenizer {
  readonly kind = "char" as const;
  readonly chars: string[];
  readonly unk: number;
  // Code point -> id. A dense table covers the Basic Multilingual Plane (fast path for encoding a whole corpus);
  // a Map holds anything above it.
  private readonly bmp: Int32Array;
  private readonly astral = new Map<number, number>();

  constructor(chars: string[], unk = chars.indexOf(UNK)) {
    this.chars = chars.slice();
    this.unk = unk;
    this.bmp = new Int32Array(0x10000).fill(-1);
    const seen = new Set<string>();
    chars.forEach((ch, i) => {
      if (seen.has(ch)) throw new CharlmError(`vocabulary lists ${describe(ch)} twice; rebuild the vocabulary`);
      seen.add(ch);
      if (i === unk) return;
      if (ch !== UNK && Array.from(ch).length !== 1) {
        throw new CharlmError(`vocabulary entry ${i} (${JSON.stringify(ch)}) is not one character`);
      }
      const cp = ch.codePointAt(0)!;
      if (cp < 0x10000) this.bmp[cp] = i;
      else this.astral.set(cp, i);
    });
    if (unk !== -1 && chars[unk] !== UNK) throw new CharlmError(`vocabulary unk index ${unk} is not "${UNK}"`);
  }

  get size(): number {
    return this.chars.length;
  }

  /** Sorted unique characters of `text`, pruned and enriched as asked. */
  static build(text: string, opts: VocabBuildOptions = {}): Vocab {
    const { maxSize, minCount = 1 } = opts;
    if (maxSize !== undefined && (!Number.isInteger(maxSize) || maxSize < 2)) {
      throw new CharlmError(`vocabulary maxSize must be a whole number of at least 2, got ${maxSize}`);
    }
    if (!Number.isInteger(minCount) || minCount < 1) {
      throw new CharlmError(`vocabulary minCount must be a whole number of at least 1, got ${minCount}`);
    }
    const counts = new Map<number, number>();
    for (const ch of text) {
      const cp = ch.codePointAt(0)!;
      counts.set(cp, (counts.get(cp) ?? 0) + 1);
    }
    const extra = new Set<number>(Array.from(opts.extra ?? "", (c) => c.codePointAt(0)!));
    // Candidates most frequent first, ties by code point: a deterministic order to prune from.
    const candidates = [...counts.entries()]
      .filter(([cp, n]) => n >= minCount && !extra.has(cp))
      .sort((a, b) => b[1] - a[1] || a[0] - b[0])
      .map(([cp]) => cp);
    const textOnly = [...counts.keys()].filter((cp) => !extra.has(cp)).length;
    let take = candidates.length;
    if (maxSize !== undefined) {
      const needUnk = candidates.length < textOnly;
      if (extra.size + candidates.length + (needUnk ? 1 : 0) > maxSize) {
        take = maxSize - 1 - extra.size; // one slot goes to "<unk>"
        if (take < 0) {
          throw new CharlmError(
            `vocabulary maxSize ${maxSize} leaves no room for "<unk>" beside ${extra.size} extra chars`,
          );
        }
      }
    }
    const cps = [...candidates.slice(0, take), ...extra].sort((a, b) => a - b);
    const chars = cps.map((cp) => String.fromCodePoint(cp));
    // "<unk>" sits at index 0 when the text had characters the vocabulary does not keep.
    return take < textOnly ? new Vocab([UNK, ...chars], 0) : new Vocab(chars, -1);
  }

  has(ch: string): boolean {
    return ch === UNK ? this.unk !== -1 : this.id(ch.codePointAt(0) ?? -1) !== -1;
  }

  /** Id of a code point, or -1. */
  id(cp: number): number {
    if (cp < 0) return -1;
    return cp < 0x10000 ? this.bmp[cp] : (this.astral.get(cp) ?? -1);
  }

  /** Distinct characters of `text` the vocabulary cannot represent, in order of first appearance. */
  unknownChars(text: string): string[] {
    const out = new Set<string>();
    for (const ch of text) if (this.id(ch.codePointAt(0)!) === -1) out.add(ch);
    return [...out];
  }

  /**
   * Text -> ids. Unknown characters are an error (default), map to "<unk>" (falls back to an error when the
   * vocabulary has none), or are dropped.
   */
  encode(text: string, onUnknown: OnUnknown = "error"): Int32Array {
    const out = new Int32Array(text.length); // upper bound: code points <= UTF-16 units
    let n = 0;
    for (let i = 0; i < text.length; i++) {
      let cp = text.charCodeAt(i);
      if (cp >= 0xd800 && cp <= 0xdbff && i + 1 < text.length) {
        const lo = text.charCodeAt(i + 1);
        if (lo >= 0xdc00 && lo <= 0xdfff) {
          cp = ((cp - 0xd800) << 10) + (lo - 0xdc00) + 0x10000;
          i++;
        }
      }
      let id = cp < 0x10000 ? this.bmp[cp] : (this.astral.get(cp) ?? -1);
      if (id === -1) {
        if (onUnknown === "skip") continue;
        if (onUnknown === "unk" && this.unk !== -1) id = this.unk;
        else throw this.unknownError(text);
      }
      out[n++] = id;
    }
    return n === out.length ? out : out.slice(0, n);
  }

  decode(ids: ArrayLike<number>): string {
    let s = "";
    for (let i = 0; i < ids.length; i++) {
      const ch = this.chars[ids[i]];
      if (ch === undefined) throw new CharlmError(`id ${ids[i]} is outside the vocabulary of ${this.size} symbols`);
      s += ch;
    }
    return s;
  }

  decoder(): StreamDecoder {
    return { push: (id) => this.decode([id]), flush: () => "" };
  }

  /** One character per token; "<unk>" stands for one character and is charged nothing extra. */
  measure(text: string): EncodedText {
    const ids = this.encode(text, this.unk >= 0 ? "unk" : "error");
    const ends = new Float64Array(ids.length);
    let unknown = 0;
    for (let i = 0; i < ids.length; i++) {
      ends[i] = i + 1;
      if (ids[i] === this.unk) unknown++;
    }
    return { ids, ends, extra: null, unknown };
  }

  startIds(): number[] {
    return [this.has("\n") ? this.id(10) : 0];
  }

  serialize(): TokenizerJSON {
    return { kind: "char", ...this.toJSON() };
  }

  describe(): string {
    return `char, ${this.size} symbols`;
  }

  toJSON(): VocabJSON {
    return { chars: this.chars.slice(), unk: this.unk };
  }

  static fromJSON(j: unknown): Vocab {
    const o = j as (Partial<VocabJSON> & { kind?: string }) | null;
    if (!o || !Array.isArray(o.chars) || !o.chars.every((c) => typeof c === "string") || o.chars.length === 0) {
      throw new CharlmError(`vocabulary is damaged: expected {"chars": [one string per symbol], "unk": index}`);
    }
    const unk = o.unk ?? o.chars.indexOf(UNK);
    if (!Number.isInteger(unk) || unk < -1 || unk >= o.chars.length) {
      throw new CharlmError(`vocabulary is damaged: unk index ${JSON.stringify(o.unk)} is out of range`);
    }
    return new Vocab(o.chars, unk);
  }

  private unknownError(text: string): CharlmError {
    const bad = this.unknownChars(text);
    const shown = bad.slice(0, 5).map(describe).join(", ") + (bad.length > 5 ? `, and ${bad.length - 5} more` : "");
    return new CharlmError(`text has characters outside the vocabulary: ${shown}; use only characters the model knows`);
  }
}

/** A character for an error message: printable ones quoted, all with their code point. */
export function describe(ch: string): string {
  const cp = ch.codePointAt(0) ?? 0;
  const hex = "U+" + cp.toString(16).toUpperCase().padStart(4, "0");
  return cp < 0x20 || cp === 0x7f ? hex : `'${ch}' (${hex})`;
}
