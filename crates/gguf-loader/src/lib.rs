//! gguf-loader: open GGUF model files through a memory map, zero-copy, and
//! decode their tensors exactly as ggml does.
//!
//! Data flows [`format`] (parse and validate bytes) → [`loader`] (mappings,
//! split shards) → [`decode`] (CPU kernels per type family).

pub mod alloc;
pub mod decode;
pub mod error;
pub mod format;
pub mod loader;
pub mod model;
pub mod synth;
pub mod tensor;
pub mod validate;

pub use decode::{Element, ElementKind, Stores};
pub use error::{Error, Result};
pub use format::{GgmlType, GgufFile, Metadata, TensorInfo, Value, ValueType};
pub use half::{bf16, f16};
pub use loader::{load_model_f16, LazyModel, LoadMode, LoadOptions, MmapGGUFLoader, Progress};
pub use model::{Layer, Model, ModelConfig};
pub use tensor::{Device, Tensor};
