//! Bench-only crate comparing gguf-loader with its peers; see `benches/`.

use std::path::PathBuf;

/// The model the benchmarks open: `$GGUF_LOADER_MODEL`, else SmolLM2 in the
/// cache that `scripts/fetch-model.sh` fills.
pub fn model_path() -> PathBuf {
    if let Some(p) = std::env::var_os("GGUF_LOADER_MODEL") {
        return p.into();
    }
    let cache = std::env::var_os("GGUF_LOADER_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/gguf-loader")
        });
    cache.join("SmolLM2-135M-Instruct.Q4_1.gguf")
}
