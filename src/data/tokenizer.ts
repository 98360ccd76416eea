// The tokenizer seam: text <-> token ids, the one place that knows what a token is. Data loading, batching, the
// models (which see only ids and the vocabulary size), sampling, evaluation, the server and the web page all go
// through this interface; the checkpoint manifest stores `serialize()` and `tokenizerFromJSON` reads it back.
//
//   char  one token per Unicode code point (vocab.ts), pruned and enriched as asked; "<unk>" for pruned characters
//   word  words, numbers and punctuation marks as tokens, line breaks kept, other spacing restored on decoding
//         (word.ts); a capped vocabulary, the rest "<unk>"
//   bpe   byte-level byte-pair encoding (bpe.ts): 256 byte tokens plus learned merges; never an unknown token
//
// Nothing here may import a Node built-in: the web page bundles this code.

import { CharlmError } from "../util/errors.js";
import { BpeTokenizer, type BpeJSON } from "./bpe.js";
import { Vocab, type OnUnknown, type VocabJSON } from "./vocab.js";
import { WordTokenizer, type WordJSON } from "./word.js";

export const TOKENIZER_KINDS = ["char", "word", "bpe"] as const;
export type TokenizerKind = (typeof TOKENIZER_KINDS)[number];

export type TokenizerJSON = ({ kind: "char" } & VocabJSON) | WordJSON | BpeJSON;

/** Text encoded for measuring: the ids, where each token ends in the text, and what unknown tokens cost. */
export interface EncodedText {
  ids: Int32Array;
  /** ends[i]: code points of the text up to the end of token i (spacing before a token is counted with it). */
  ends: Float64Array;
  /** extra[i]: nats charged on top of the model's loss when token i is an "<unk>" standing for real text (or null). */
  extra: Float64Array | null;
  /** Tokens that are "<unk>". */
  unknown: number;
}

/** Turns ids back into text one token at a time; holds back what cannot be shown yet (half a UTF-8 character). */
export interface StreamDecoder {
  push(id: number): string;
  /** Whatever is still held back (an incomplete character becomes U+FFFD). */
  flush(): string;
}

export interface Tokenizer {
  readonly kind: TokenizerKind;
  /** Number of token ids, "<unk>" included: the model's vocabulary size. */
  readonly size: number;
  /** Id of "<unk>", or -1 when there is none. */
  readonly unk: number;
  /** Text -> ids; what is not in the vocabulary is an error, "<unk>" (when there is one), or dropped. */
  encode(text: string, onUnknown?: OnUnknown): Int32Array;
  decode(ids: ArrayLike<number>): string;
  decoder(): StreamDecoder;
  /** Characters of `text` that cannot be encoded at all (char without "<unk>"); word and bpe encode anything. */
  unknownChars(text: string): string[];
  /** encode() with "<unk>" for what is missing, plus character spans and the charge for unknown tokens. */
  measure(text: string): EncodedText;
  /** Ids the sampler starts from when the prime text is empty (a line break when the vocabulary has one). */
  startIds(): number[];
  /** The state the manifest stores; tokenizerFromJSON reads it back. */
  serialize(): TokenizerJSON;
  /** A short description for logs: "char, 65 symbols". */
  describe(): string;
}

/** Rebuild a tokenizer from its manifest state; a version-1 vocabulary ({chars, unk}, no kind) is a char tokenizer. */
export function tokenizerFromJSON(j: unknown): Tokenizer {
  const o = j as { kind?: unknown } | null;
  if (!o || typeof o !== "object") {
    throw new CharlmError(`tokenizer is damaged: expected an object with a "kind" (char, word or bpe)`);
  }
  const kind = o.kind ?? "char";
  if (kind === "char") return Vocab.fromJSON(j);
  if (kind === "word") return WordTokenizer.fromJSON(j);
  if (kind === "bpe") return BpeTokenizer.fromJSON(j);
  throw new CharlmError(
    `tokenizer kind ${JSON.stringify(kind)} is not known (this charlm reads char, word and bpe); use a newer charlm`,
  );
}
