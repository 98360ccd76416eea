// Builds the WebAssembly kernels (filled in by the wasm backend work).
