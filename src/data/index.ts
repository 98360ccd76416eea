// Data: corpora (Tiny Shakespeare, custom text), tokenizers (char, word, bpe) and batching.

export * from "./batching.js";
export * from "./bpe.js";
export * from "./corpus.js";
export * from "./files.js";
export * from "./tinyshakespeare.js";
export * from "./tokenizer.js";
export * from "./utf8.js";
export * from "./vocab.js";
export * from "./word.js";
