//! The forward pass against llama.cpp: on the real models (loaded to f16,
//! the same weights as the F16 GGUF llama.cpp ran), the logits of every
//! prompt position match llama.cpp's with NMSE ≤ 1e-4, and greedy decoding
//! gives llama.cpp's first 32 tokens. The golden files come from
//! `scripts/llama_cpp_logits.sh` (tests/golden/logits).

#[path = "../../gguf-loader/tests/common/mod.rs"]
mod common;

mod golden;

use std::path::Path;

use gguf_loader::{f16, MmapGGUFLoader};
use gguf_loader_llm::forward::Transformer;

fn check(name: &str, path: &Path) {
    let loader = MmapGGUFLoader::new(path).unwrap();
    if !golden::applies(name, &loader) {
        return;
    }
    let model = Transformer::<f16>::load(&loader).unwrap();
    golden::check(name, "CPU", model.config().n_vocab, |capacity| {
        let mut cache = model.new_cache(capacity).unwrap();
        let model = &model;
        move |tokens: &[u32], all: bool| model.forward(&mut cache, tokens, all).unwrap()
    });
}

#[test]
fn smollm2_logits_and_greedy_tokens_match_llama_cpp() {
    let Some(path) = common::model_path() else {
        return;
    };
    check("smollm2", &path);
}

#[test]
fn gemma3_logits_and_greedy_tokens_match_llama_cpp() {
    let Some(path) = common::gemma_path() else {
        return;
    };
    check("gemma3", &path);
}
