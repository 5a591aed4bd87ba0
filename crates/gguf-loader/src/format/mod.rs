//! The GGUF format: parsing and validation over a byte slice. Knows nothing of
//! files or devices.

pub mod types;

pub use types::{BlockLayout, GgmlType, TypeId};
