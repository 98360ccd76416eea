// Generation: an async iterator of characters with temperature, top-k, top-p, seed, stop strings and abort.
export * from "./generate.js";
