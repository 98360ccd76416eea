// Checkpoints: the manifest, safetensors files, atomic writes, the writer lock and run listings. Readers (sample,
// eval, serve, the web page) import this module without the training library.
export * from "./checkpoint.js";
export * from "./runs.js";
export * from "./safetensors.js";
export { writeFileAtomic } from "./atomic.js";
