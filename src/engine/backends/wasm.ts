// The wasm backend lives in ./wasm/ (one file per concern, see ./wasm/index.ts); this path stays for its importers.
export * from "./wasm/index.js";
