// Data: corpora (Tiny Shakespeare, custom text), vocabularies and batching.

export * from "./batching.js";
export * from "./corpus.js";
export * from "./files.js";
export * from "./tinyshakespeare.js";
export * from "./utf8.js";
export * from "./vocab.js";
