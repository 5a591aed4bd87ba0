//! The design's stability check: a TinyLlama-1.1B-shaped model (22 layers,
//! random Q4_0 weights from `synth`) loaded as f16 runs 256 tokens (a
//! 224-token prompt in one batch, then 32 tokens one at a time) with no NaN
//! or Inf in any activation. Release builds only (it is a billion
//! parameters on the CPU).

#[path = "../../gguf-loader/tests/common/mod.rs"]
mod common;

use gguf_loader::{f16, GgmlType, MmapGGUFLoader, Preset};
use gguf_loader_llm::forward::{Activation, Sampler, Transformer};

#[test]
fn tinyllama_shaped_model_runs_256_tokens_without_nan_or_inf() {
    if cfg!(debug_assertions) {
        eprintln!("skipped: the TinyLlama-shaped stability check runs in release builds");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = common::write_synth(
        dir.path(),
        "tinyllama.gguf",
        &Preset::TINYLLAMA_1_1B,
        GgmlType::Q4_0,
        1,
    );

    let loader = MmapGGUFLoader::new(&path).unwrap();
    let model = Transformer::<f16>::load(&loader).unwrap();
    assert_eq!(model.config().n_layer, 22);
    let n_vocab = model.config().n_vocab as u32;
    let mut cache = model.new_cache(256).unwrap();
    let mut seen = 0usize;
    let mut check = |a: Activation<'_>| {
        if let Some(i) = a.values.iter().position(|v| !v.is_finite()) {
            panic!(
                "{} (layer {:?}) holds {} at {i} after {seen} activations",
                a.name, a.layer, a.values[i]
            );
        }
        seen += 1;
    };
    let prompt: Vec<u32> = (0..224u32).map(|i| (i * 7919 + 13) % n_vocab).collect();
    let mut logits = model
        .forward_observed(&mut cache, &prompt, false, &mut check)
        .unwrap();
    let mut sampler = Sampler::new(0.8, 0.95, 5);
    while cache.len() < 256 {
        let t = sampler.sample(&logits).unwrap();
        logits = model
            .forward_observed(&mut cache, &[t], false, &mut check)
            .unwrap();
    }
    assert_eq!(cache.len(), 256);
}
