//! gguf-loader: open GGUF model files through a memory map, zero-copy, and
//! decode their tensors exactly as ggml does.
//!
//! Data flows `format` (parse and validate bytes) → `loader` (mapping, shards)
//! → `decode` (CPU kernels per type family).

pub mod decode;
pub mod format;
