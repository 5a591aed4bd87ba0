//! The real models (fetched by scripts/fetch-model.sh: SmolLM2-135M Q4_1
//! and Gemma-3-270M Q4_K_M): every tensor decodes to exactly what gguf-py
//! gives, as f32 and as f16.

mod common;

use std::collections::HashMap;
use std::path::Path;

use gguf_loader::{Device, Element, MmapGGUFLoader, ModelConfig};
use sha2::{Digest, Sha256};

fn hex<T: Element>(values: &[T]) -> String {
    Sha256::digest(T::to_le_bytes_vec(values))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every tensor of `model`, through the whole-model path and one by one,
/// as f32 and f16, against gguf-py's digests.
fn decodes_as_gguf_py(model: &Path) -> Option<ModelConfig> {
    let stdout = common::python_oracle("dequant_digests.py", model)?;
    let want: HashMap<String, HashMap<String, String>> = serde_json::from_slice(&stdout).unwrap();

    let loader = MmapGGUFLoader::new(model).unwrap();
    assert_eq!(want.len(), loader.tensor_count());
    // The whole-model path (parallel, largest first).
    let m = loader.load_f16_model(Device::Cpu).unwrap();
    assert_eq!(m.len(), want.len());
    for (name, t) in m.tensors() {
        assert_eq!(hex(t.data()), want[name]["f16"], "{name} in load_f16_model");
    }
    let config = m.config.clone();
    drop(m);
    for name in loader.tensor_names() {
        let f = loader.load_tensor::<f32>(name, Device::Cpu).unwrap();
        let h = loader.load_tensor_f16(name, Device::Cpu).unwrap();
        assert_eq!(hex(f.data()), want[name]["f32"], "{name} as f32");
        assert_eq!(hex(h.data()), want[name]["f16"], "{name} as f16");
    }
    Some(config)
}

#[test]
fn smollm2_decodes_as_gguf_py_does() {
    let Some(model) = common::model_path() else {
        return;
    };
    let Some(c) = decodes_as_gguf_py(&model) else {
        return;
    };
    assert_eq!(c.architecture, "llama");
    assert_eq!(c.block_count, Some(30));
    assert_eq!(c.vocab_size, Some(49152));
    assert_eq!(c.head_count_kv, Some(3));
}

#[test]
fn gemma3_decodes_as_gguf_py_does() {
    let Some(model) = common::gemma_path() else {
        return;
    };
    let Some(c) = decodes_as_gguf_py(&model) else {
        return;
    };
    assert_eq!(c.architecture, "gemma3");
    assert_eq!(c.block_count, Some(18));
    assert_eq!(c.vocab_size, Some(262_144));
    assert_eq!(c.head_dim, Some(256));
}
