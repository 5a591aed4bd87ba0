//! The typed model configuration read from GGUF metadata.

use crate::format::{Metadata, Value};

/// Architectures whose hyper-parameter keys are known (`{arch}.block_count`…).
/// Others load too, read with the same generic keys.
pub const KNOWN_ARCHITECTURES: &[&str] = &[
    "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi3",
];

/// Hyper-parameters of a transformer as llama.cpp names them. Fields a file
/// does not carry are `None`; derived ones (head dim, RoPE dims) fall back
/// the way llama.cpp does.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelConfig {
    /// `general.architecture` (empty when missing).
    pub architecture: String,
    /// Whether the architecture is one of [`KNOWN_ARCHITECTURES`].
    pub known_architecture: bool,
    /// `{arch}.block_count`: transformer blocks.
    pub block_count: Option<usize>,
    /// `{arch}.context_length`: the context the model was trained for.
    pub context_length: Option<usize>,
    /// `{arch}.embedding_length`: the hidden size.
    pub embedding_length: Option<usize>,
    /// `feed_forward_length`; for per-layer arrays, the first layer's.
    pub feed_forward_length: Option<usize>,
    /// `attention.head_count`.
    pub head_count: Option<usize>,
    /// Defaults to `head_count` (no grouped-query attention).
    pub head_count_kv: Option<usize>,
    /// `attention.key_length`, else `embedding_length / head_count`.
    pub head_dim: Option<usize>,
    /// `attention.key_length`.
    pub key_length: Option<usize>,
    /// `attention.value_length`.
    pub value_length: Option<usize>,
    /// `rope.freq_base`, default 10000 as in llama.cpp.
    pub rope_freq_base: f32,
    /// `rope.dimension_count`, else the head dim.
    pub rope_dimension_count: Option<usize>,
    /// `attention.layer_norm_rms_epsilon`.
    pub rms_norm_eps: Option<f32>,
    /// `{arch}.vocab_size`, else the length of `tokenizer.ggml.tokens`.
    pub vocab_size: Option<usize>,
}

fn uint(v: &Value<'_>) -> Option<usize> {
    match v {
        Value::Array(a) => a.iter().next().and_then(|e| e.as_u64()),
        other => other.as_u64(),
    }
    .and_then(|x| usize::try_from(x).ok())
}

impl ModelConfig {
    /// The configuration a file's metadata describes (never fails: what
    /// is missing or mistyped is `None`).
    pub fn from_metadata(m: &Metadata<'_>) -> ModelConfig {
        let arch = m
            .get("general.architecture")
            .and_then(|v| v.as_str())
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let key = |k: &str| m.get(&format!("{arch}.{k}"));
        let u = |k: &str| key(k).and_then(uint);
        let f = |k: &str| key(k).and_then(|v| v.as_f64()).map(|x| x as f32);
        let embedding_length = u("embedding_length");
        let head_count = u("attention.head_count");
        let key_length = u("attention.key_length");
        let head_dim = key_length.or_else(|| match (embedding_length, head_count) {
            (Some(e), Some(h)) if h > 0 => Some(e / h),
            _ => None,
        });
        ModelConfig {
            known_architecture: KNOWN_ARCHITECTURES.contains(&arch.as_str()),
            block_count: u("block_count"),
            context_length: u("context_length"),
            embedding_length,
            feed_forward_length: u("feed_forward_length"),
            head_count,
            head_count_kv: u("attention.head_count_kv").or(head_count),
            head_dim,
            key_length,
            value_length: u("attention.value_length"),
            rope_freq_base: f("rope.freq_base").unwrap_or(10_000.0),
            rope_dimension_count: u("rope.dimension_count").or(head_dim),
            rms_norm_eps: f("attention.layer_norm_rms_epsilon"),
            vocab_size: u("vocab_size").or_else(|| {
                m.get("tokenizer.ggml.tokens")
                    .and_then(|v| v.as_array())
                    .and_then(|a| usize::try_from(a.len()).ok())
            }),
            architecture: arch,
        }
    }
}
