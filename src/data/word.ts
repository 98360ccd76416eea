// The word tokenizer: words (letters, marks and digits, with inner apostrophes or hyphens: "o'er", "well-a-day"),
// single punctuation marks and line breaks are tokens; spaces and tabs are not. Decoding puts one space between
// tokens except at the start of a line, before closing punctuation (. , ; : ! ? ) ] }) and after opening
// punctuation (( [ {); a lone ' or " opens a quotation (no space after it) and the next one closes it (no space
// before it). Runs of spaces therefore come back as one space: the spacing is restored, not stored.
//
// The vocabulary is "<unk>", the line break, then the most frequent tokens of the training text (ties: code-unit
// order) up to `maxSize` in all; the rest encode as "<unk>". Folding case (`lowercase`) lowercases every token.
//
// Charging unknown words: "<unk>" predicts that some unknown word comes, not its letters. When measuring (nats per
// character of the original text), each "<unk>" target is charged, on top of the model's loss for "<unk>", ln K
// nats per character of the word it stands for, K being the number of distinct characters of the training text:
// the cost of spelling it out with a uniform guess over those characters. That keeps a word model's nats/char from
// looking better merely because it gave up on its rare words.

import { CharlmError } from "../util/errors.js";
import type { EncodedText, StreamDecoder, Tokenizer } from "./tokenizer.js";
import { UNK, type OnUnknown } from "./vocab.js";

export interface WordJSON {
  kind: "word";
  words: string[]; // id -> token; words[0] is "<unk>"
  lowercase: boolean; // tokens were case-folded when the vocabulary was built
  charCount: number; // distinct characters of the training text (K in the unknown-word charge)
}

export interface WordBuildOptions {
  maxSize?: number; // tokens in all, "<unk>" and the line break included (default 10,000)
  lowercase?: boolean;
}

export const DEFAULT_WORD_VOCAB = 10_000;

const TOKEN = /[\p{L}\p{M}\p{N}]+(?:['’-][\p{L}\p{M}\p{N}]+)*|\n|[^\s\p{L}\p{M}\p{N}]/gu;
const NO_SPACE_BEFORE = new Set([".", ",", ";", ":", "!", "?", ")", "]", "}", "’", "”", "…", "»"]);
const NO_SPACE_AFTER = new Set(["(", "[", "{", "‘", "“", "«", "¿", "¡"]);
const QUOTES = new Set(["'", '"']);

export class WordTokenizer implements Tokenizer {
  readonly kind = "word" as const;
  readonly unk = 0;
  readonly words: string[];
  readonly lowercase: boolean;
  readonly charCount: number;
  private readonly ids = new Map<string, number>();

  constructor(words: string[], lowercase: boolean, charCount: number) {
    if (words[0] !== UNK) throw new CharlmError(`word vocabulary must start with "${UNK}"; rebuild it`);
    this.words = words.slice();
    this.lowercase = lowercase;
    this.charCount = charCount;
    words.forEach((w, i) => {
      if (this.ids.has(w)) throw new CharlmError(`word vocabulary lists ${JSON.stringify(w)} twice; rebuild it`);
      if (i > 0 && w !== "\n" && !/^\S+$/u.test(w)) {
        throw new CharlmError(`word vocabulary entry ${i} (${JSON.stringify(w)}) holds spacing; rebuild it`);
      }
      this.ids.set(w, i);
    });
  }

  get size(): number {
    return this.words.length;
  }

  static build(text: string, opts: WordBuildOptions = {}): WordTokenizer {
    const maxSize = opts.maxSize ?? DEFAULT_WORD_VOCAB;
    if (!Number.isInteger(maxSize) || maxSize < 3) {
      throw new CharlmError(`word vocabulary size must be a whole number of at least 3, got ${maxSize}`);
    }
    const lowercase = opts.lowercase ?? false;
    const counts = new Map<string, number>();
    for (const m of text.matchAll(TOKEN)) {
      const w = lowercase ? m[0].toLowerCase() : m[0];
      counts.set(w, (counts.get(w) ?? 0) + 1);
    }
    counts.delete("\n");
    const ranked = [...counts.entries()]
      .sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
      .slice(0, maxSize - 2)
      .map(([w]) => w);
    return new WordTokenizer([UNK, "\n", ...ranked], lowercase, Math.max(2, new Set(text).size));
  }

  private tokenId(raw: string): number {
    return this.ids.get(this.lowercase ? raw.toLowerCase() : raw) ?? -1;
  }

  encode(text: string, onUnknown: OnUnknown = "unk"): Int32Array {
    const out: number[] = [];
    for (const m of text.matchAll(TOKEN)) {
      const id = this.tokenId(m[0]);
      if (id >= 0) out.push(id);
      else if (onUnknown !== "skip") out.push(this.unk); // "<unk>" is always there, so "error" never fires
    }
    return Int32Array.from(out);
  }

  measure(text: string): EncodedText {
    const ids: number[] = [];
    const ends: number[] = [];
    const extra: number[] = [];
    const perChar = Math.log(this.charCount);
    let pos = 0; // UTF-16 index
    let cp = 0; // code points up to pos
    let unknown = 0;
    for (const m of text.matchAll(TOKEN)) {
      const end = m.index + m[0].length;
      cp += countCodePoints(text, pos, end);
      pos = end;
      const id = this.tokenId(m[0]);
      ids.push(id >= 0 ? id : this.unk);
      ends.push(cp);
      if (id < 0) unknown++;
      extra.push(id < 0 ? countCodePoints(m[0], 0, m[0].length) * perChar : 0);
    }
    return { ids: Int32Array.from(ids), ends: Float64Array.from(ends), extra: Float64Array.from(extra), unknown };
  }

  decode(ids: ArrayLike<number>): string {
    const d = this.decoder();
    let s = "";
    for (let i = 0; i < ids.length; i++) s += d.push(ids[i]);
    return s;
  }

  decoder(): StreamDecoder {
    let prev: string | null = null; // previous token; null at the start
    let quoteOpen = false;
    return {
      push: (id) => {
        const w = this.words[id];
        if (w === undefined) throw new CharlmError(`id ${id} is outside the vocabulary of ${this.size} tokens`);
        let space = prev !== null && prev !== "\n" && w !== "\n";
        if (space && (NO_SPACE_BEFORE.has(w) || NO_SPACE_AFTER.has(prev!))) space = false;
        if (space && QUOTES.has(prev!) && quoteOpen) space = false; // right after an opening quote
        if (QUOTES.has(w)) {
          if (space && quoteOpen) space = false; // a closing quote hugs the word before it
          quoteOpen = !quoteOpen;
        }
        if (w === "\n") quoteOpen = false;
        prev = w;
        return (space ? " " : "") + w;
      },
      flush: () => "",
    };
  }

  unknownChars(): string[] {
    return []; // anything unknown is "<unk>"
  }

  startIds(): number[] {
    return [1]; // the line break
  }

  serialize(): WordJSON {
    return { kind: "word", words: this.words.slice(), lowercase: this.lowercase, charCount: this.charCount };
  }

  describe(): string {
    return `word${this.lowercase ? " (case folded)" : ""}, ${this.size} tokens`;
  }

  static fromJSON(j: unknown): WordTokenizer {
    const o = j as Partial<WordJSON> | null;
    if (
      !o ||
      !Array.isArray(o.words) ||
      !o.words.every((w) => typeof w === "string") ||
      typeof o.lowercase !== "boolean" ||
      !Number.isInteger(o.charCount)
    ) {
      throw new CharlmError(
        `word tokenizer is damaged: expected {"kind": "word", "words": [...], "lowercase": true|false, "charCount": K}`,
      );
    }
    return new WordTokenizer(o.words, o.lowercase, o.charCount!);
  }
}

/** Code points of s[from, to). */
function countCodePoints(s: string, from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < to) {
      const lo = s.charCodeAt(i + 1);
      if (lo >= 0xdc00 && lo <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}
