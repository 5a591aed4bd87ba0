//! The forward pass against llama.cpp: on the real models (loaded to f16,
//! the same weights as the F16 GGUF llama.cpp ran), the logits of every
//! prompt position match llama.cpp's with NMSE ≤ 1e-4, and greedy decoding
//! gives llama.cpp's first 32 tokens. The golden files come from
//! `scripts/llama_cpp_logits.sh` (tests/golden/logits). And the logits
//! are the same bits on x86-64 (AVX2 or AVX-512) and on aarch64 (NEON),
//! at every thread count: with glibc, their SHA-256 is held to one digest
//! per model.

#[path = "../../gguf-loader/tests/common/mod.rs"]
mod common;

mod golden;

use std::cell::RefCell;
use std::path::Path;

use gguf_loader::{f16, MmapGGUFLoader};
use gguf_loader_llm::forward::Transformer;
use sha2::{Digest, Sha256};

/// The SHA-256 of the bits of every logit `check` runs, in order (the
/// prompts' every position, then each greedy step's), with f16 weights.
/// Every matrix kernel sums the same products in the same order: AVX2's
/// and AVX-512's on x86-64, NEON's on aarch64, and the portable one
/// (`GGUF_LOADER_SIMD=scalar`), whose separate multiply and add give what
/// the others' fused ones do here, since the inputs are rounded to f16 as
/// ggml rounds them and a product of two f16 values is exact in f32.
///
/// The RoPE angles (`powf`, `sinf`, `cosf`) and the GELU table (`tanhf`)
/// come from the C library's libm, as ggml's do, so the digest is glibc's
/// (2.36 here, on both architectures): elsewhere (MinGW's under Wine, whose
/// angles differ in their last bits, and so both models' logits; macOS) it
/// is printed, not asserted.
const LOGITS_SHA256: [(&str, &str); 2] = [
    (
        "smollm2",
        "ab738d38fac8626288eb1498f4de5f4b8f2efa72cde2ec079fd8c2beb9632c9b",
    ),
    (
        "gemma3",
        "229d5ed86d336d833ece2b58bcad6c41feafb0ae9fc65ce74a7de888dc0b33e4",
    ),
];

fn check(name: &str, path: &Path) {
    let loader = MmapGGUFLoader::new(path).unwrap();
    if !golden::applies(name, &loader) {
        return;
    }
    let model = Transformer::<f16>::load(&loader).unwrap();
    let digest = RefCell::new(Sha256::new());
    golden::check(name, "CPU", model.config().n_vocab, |capacity| {
        let mut cache = model.new_cache(capacity).unwrap();
        let (model, digest) = (&model, &digest);
        move |tokens: &[u32], all: bool| {
            let logits = model.forward(&mut cache, tokens, all).unwrap();
            for v in &logits {
                digest.borrow_mut().update(v.to_bits().to_le_bytes());
            }
            logits
        }
    });
    let got: String = digest
        .into_inner()
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let simd = gguf_loader::simd_features();
    eprintln!("{name}: logits SHA-256 {got} ({simd})");
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return;
    }
    let want = LOGITS_SHA256.iter().find(|(n, _)| *n == name).unwrap().1;
    assert_eq!(got, want, "{name}: the logits' bits ({simd})");
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
