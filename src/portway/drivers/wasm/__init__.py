"""The WebAssembly tier: WASI modules run by wasmtime in worker processes."""
