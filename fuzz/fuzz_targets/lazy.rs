//! Writes arbitrary bytes to a file and opens it as a lazy model, mapped
//! and read: walks its layers with and without prefetch, asks for a missing
//! layer, decodes the tensors outside any layer, and holds every value
//! against a whole-model load of the same file, and that load (whose F32
//! tensors are views of the mapping) against one that copies them
//! (`own_memory`). The layers are the distinct
//! `blk.i` indices (bounded by the tensor count), so the work is bounded by
//! the file whatever indices it names.
#![no_main]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use gguf_loader::{Device, Error, LazyModel, LoadMode, LoadOptions, MmapGGUFLoader, Prefetch};
use libfuzzer_sys::fuzz_target;

/// Decoded values at most (f32): a file declares only what it holds, and
/// IQ1_S, the densest type, decodes to 20.5 times its bytes.
const MAX_VALUES: u64 = 1 << 24;

fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("gguf-loader-fuzz-lazy-{}.gguf", std::process::id()))
    })
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn walk(path: &PathBuf, mode: LoadMode) {
    let Ok(loader) = MmapGGUFLoader::open(path, mode) else {
        return;
    };
    if loader.tensors().map(|t| t.n_elements).sum::<u64>() > MAX_VALUES {
        return;
    }
    let loader = Arc::new(loader);
    let eager = loader.load_model::<f32>(Device::Cpu);
    let opts = LoadOptions::default().threads(1);
    let lazy = LazyModel::<f32>::with_options(loader.clone(), opts).expect("a one-thread pool");

    let indices: Vec<usize> = lazy.layer_indices().collect();
    assert!(indices.len() <= loader.tensor_count());
    assert!(indices.windows(2).all(|w| w[0] < w[1]), "layers ascend");

    let mut walks = Vec::new();
    for prefetch in [Prefetch::NextLayer, Prefetch::Off] {
        let mut seen = Vec::new();
        for layer in lazy.layers(prefetch) {
            match layer {
                Ok(l) => {
                    let tensors: Vec<(String, Vec<u32>)> = l
                        .tensors()
                        .iter()
                        .map(|(s, t)| (s.clone(), bits(t.data())))
                        .collect();
                    assert!(!tensors.is_empty());
                    seen.push((l.index, Some(tensors)));
                }
                Err(e) => {
                    assert!(eager.is_err(), "lazy failed where eager did not: {e}");
                    seen.push((usize::MAX, None));
                }
            }
        }
        assert_eq!(seen.len(), indices.len());
        walks.push(seen);
    }
    assert_eq!(walks[0], walks[1], "prefetch changes nothing");

    // An index with no tensors answers as the eager model does.
    let missing = (0..=indices.len())
        .find(|i| !indices.contains(i))
        .unwrap_or(usize::MAX);
    assert!(matches!(lazy.layer(missing), Err(Error::LayerNotFound(_))));

    let Ok(model) = eager else {
        for name in loader.tensor_names() {
            let _ = lazy.tensor(name);
        }
        return;
    };
    let copied = loader
        .load_model_with::<f32>(Device::Cpu, LoadOptions::default().own_memory(true))
        .expect("a copy loads where views did");
    for ((n, t), (m, c)) in model.tensors().zip(copied.tensors()) {
        assert_eq!(
            (n, bits(t.data())),
            (m, bits(c.data())),
            "views against copies"
        );
        assert!(!c.is_mapped());
        assert!(!t.is_mapped() || mode == LoadMode::Mmap);
    }
    // The same tensors by name, in reverse order: the same values.
    let names: Vec<&str> = model.names().collect();
    let reversed: Vec<&str> = names.iter().rev().copied().collect();
    let some = loader
        .load_tensors_with::<f32, _>(&reversed, Device::Cpu, LoadOptions::default())
        .expect("by name where the whole model loaded");
    for ((n, t), name) in some.iter().zip(&reversed) {
        assert_eq!(n, name);
        let whole = model.tensor(name).expect("a name of the model");
        assert_eq!(
            bits(t.data()),
            bits(whole.data()),
            "load_tensors_with {name}"
        );
    }
    assert_eq!(model.layer_count(), indices.len());
    assert!(matches!(model.layer(missing), Err(Error::LayerNotFound(_))));
    for (index, tensors) in &walks[0] {
        let layer = model.layer(*index).expect("the layer the lazy walk gave");
        let tensors = tensors.as_ref().expect("eager succeeded");
        // Both in file order (names such as blk.7.x and blk.07.x share a
        // layer and a suffix).
        let eager: Vec<(String, Vec<u32>)> = layer
            .tensors()
            .iter()
            .map(|(s, t)| (s.to_string(), bits(t.data())))
            .collect();
        assert_eq!(&eager, tensors, "layer {index}");
    }
    for (name, t) in model.globals() {
        let lazy_t = lazy.tensor(name).expect("eager succeeded");
        assert_eq!(bits(lazy_t.data()), bits(t.data()), "{name}");
        lazy.evict(name);
    }
    assert!(lazy.cached().is_empty());
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    if std::fs::write(path, data).is_err() {
        return;
    }
    walk(path, LoadMode::Mmap);
    walk(path, LoadMode::Read);
});
