//! No thread of a `LazyModel` outlives it: dropped after a walk with
//! prefetch, its prefetch pool's threads have all ended (a process that
//! exits right after, as a fuzz run's does, has none of them still
//! running). Alone in its test binary, so that no other test's model has
//! threads of that name. Linux: threads listed from /proc.
#![cfg(target_os = "linux")]

mod common;

use gguf_loader::{GgmlType, LazyModel, MmapGGUFLoader, Prefetch, Preset};
use std::sync::Arc;

/// The names of this process's threads that a prefetch pool names.
fn prefetch_threads() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim_end().to_string())
        .filter(|n| n.starts_with("prefetch-"))
        .collect()
}

#[test]
fn a_dropped_lazy_models_threads_have_ended() {
    let dir = tempfile::tempdir().unwrap();
    let path = common::write_synth(dir.path(), "m.gguf", &Preset::TINY_TEST, GgmlType::Q4_0, 3);
    for _ in 0..20 {
        let loader = Arc::new(MmapGGUFLoader::new(&path).unwrap());
        let lazy = LazyModel::<f32>::new(loader);
        for layer in lazy.layers(Prefetch::NextLayer) {
            layer.unwrap();
        }
        assert!(!prefetch_threads().is_empty(), "the walk prefetched");
        drop(lazy);
        assert_eq!(prefetch_threads(), Vec::<String>::new());
    }
}
