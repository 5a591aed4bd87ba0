//! The typed model configuration read from GGUF metadata.

use crate::format::{Escaped, Metadata, Value};

/// Architectures whose hyper-parameter keys are known (`{arch}.block_count`…).
/// Others load too, read with the same generic keys.
pub const KNOWN_ARCHITECTURES: &[&str] = &[
    "llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3", "phi3",
];

/// Hyper-parameters of a transformer as llama.cpp names them. Fields a file
/// does not carry are `None`; derived ones (head dim, RoPE dims) fall back
/// the way llama.cpp does.
///
/// `#[non_exhaustive]`: made by [`ModelConfig::from_metadata`] or from
/// `ModelConfig::default()` with fields set.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
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
    /// The keys above that the file has but that could not be used (of
    /// another type, or out of range), in the order read; their fields are
    /// as if the keys were absent.
    pub ignored: Vec<IgnoredKey>,
}

/// A metadata key [`ModelConfig::from_metadata`] found and could not use:
/// of another type than the field's, or a value out of its range. Its
/// field is then `None` (or its default), as if the key were absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredKey {
    /// The key, as in the file.
    pub key: String,
    /// What it holds and what was wanted: `"int32 -5, not an unsigned
    /// integer"`.
    pub why: String,
}

impl std::fmt::Display for IgnoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is {}", Escaped(&self.key), self.why)
    }
}

/// A value's type, with the value where it is a number: `int32 -5`,
/// `float32 1.5`, `string`, `array of string`, `empty array`.
fn held(v: &Value<'_>) -> String {
    match v {
        Value::Array(a) if a.is_empty() => format!("an empty array of {}", a.elem_type()),
        Value::Array(a) => format!("an array of {}", a.elem_type()),
        Value::String(_) | Value::Bool(_) => v.value_type().to_string(),
        other => match (other.as_i64(), other.as_u64(), other.as_f64()) {
            (Some(i), _, _) => format!("{} {i}", other.value_type()),
            (None, Some(u), _) => format!("{} {u}", other.value_type()),
            (_, _, Some(x)) => format!("{} {x}", other.value_type()),
            _ => other.value_type().to_string(),
        },
    }
}

/// Reads typed fields, noting each key it cannot use.
struct Reader<'m, 'a> {
    m: &'m Metadata<'a>,
    arch: String,
    ignored: Vec<IgnoredKey>,
}

impl Reader<'_, '_> {
    fn ignore(&mut self, key: String, why: String) {
        self.ignored.push(IgnoredKey { key, why });
    }

    /// `{arch}.{k}` as an unsigned integer that fits in `usize`; for an
    /// array (llama.cpp's per-layer values), its first element.
    fn uint(&mut self, k: &str) -> Option<usize> {
        let key = format!("{}.{k}", self.arch);
        let v = self.m.get(&key)?;
        let first = match v {
            Value::Array(a) => a.iter().next(),
            other => Some(*other),
        };
        match first.as_ref().and_then(|e| e.as_u64()) {
            Some(x) => match usize::try_from(x) {
                Ok(x) => Some(x),
                Err(_) => {
                    self.ignore(key, format!("{x}, beyond this platform's sizes"));
                    None
                }
            },
            None => {
                let what = match (v, first) {
                    (Value::Array(_), Some(e)) => {
                        format!("an array whose first element is {}", held(&e))
                    }
                    _ => held(v),
                };
                self.ignore(key, format!("{what}, not an unsigned integer"));
                None
            }
        }
    }

    /// `{arch}.{k}` as a float (`float32` or `float64`, the latter rounded).
    fn float(&mut self, k: &str) -> Option<f32> {
        let key = format!("{}.{k}", self.arch);
        let v = self.m.get(&key)?;
        match v.as_f64() {
            Some(x) => Some(x as f32),
            None => {
                self.ignore(key, format!("{}, not a float", held(v)));
                None
            }
        }
    }
}

impl ModelConfig {
    /// The configuration a file's metadata describes. Never fails: a key
    /// that is missing leaves its field `None` (or its default), and so does
    /// one that is mistyped or out of range, which is also listed in
    /// [`ModelConfig::ignored`], so that a caller can say so.
    pub fn from_metadata(m: &Metadata<'_>) -> ModelConfig {
        let mut ignored = Vec::new();
        let arch = match m.get("general.architecture") {
            None => String::new(),
            Some(v) => match v.as_str() {
                Some(s) => s.to_string_lossy().into_owned(),
                None => {
                    ignored.push(IgnoredKey {
                        key: "general.architecture".into(),
                        why: format!("{}, not a string", held(v)),
                    });
                    String::new()
                }
            },
        };
        let mut r = Reader { m, arch, ignored };
        let block_count = r.uint("block_count");
        let context_length = r.uint("context_length");
        let embedding_length = r.uint("embedding_length");
        let feed_forward_length = r.uint("feed_forward_length");
        let head_count = r.uint("attention.head_count");
        let head_count_kv = r.uint("attention.head_count_kv");
        let key_length = r.uint("attention.key_length");
        let value_length = r.uint("attention.value_length");
        let rope_freq_base = r.float("rope.freq_base");
        let rope_dimension_count = r.uint("rope.dimension_count");
        let rms_norm_eps = r.float("attention.layer_norm_rms_epsilon");
        let vocab_size = r.uint("vocab_size");
        let head_dim = key_length.or_else(|| match (embedding_length, head_count) {
            (Some(e), Some(h)) if h > 0 => Some(e / h),
            _ => None,
        });
        let vocab_size = vocab_size.or_else(|| {
            let v = m.get("tokenizer.ggml.tokens")?;
            match v.as_array() {
                Some(a) => usize::try_from(a.len()).ok(),
                None => {
                    r.ignore(
                        "tokenizer.ggml.tokens".into(),
                        format!("{}, not an array of strings", held(v)),
                    );
                    None
                }
            }
        });
        ModelConfig {
            known_architecture: KNOWN_ARCHITECTURES.contains(&r.arch.as_str()),
            block_count,
            context_length,
            embedding_length,
            feed_forward_length,
            head_count,
            head_count_kv: head_count_kv.or(head_count),
            head_dim,
            key_length,
            value_length,
            rope_freq_base: rope_freq_base.unwrap_or(10_000.0),
            rope_dimension_count: rope_dimension_count.or(head_dim),
            rms_norm_eps,
            vocab_size,
            architecture: r.arch,
            ignored: r.ignored,
        }
    }
}
