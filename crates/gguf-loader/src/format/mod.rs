//! The GGUF format: parsing and validation over a byte slice, and writing.
//! Knows nothing of files or devices.

pub mod blocks;
mod cursor;
mod error;
mod file;
mod metadata;
mod types;
mod writer;

pub use error::{Context, Escaped, FormatError, FormatErrorKind};
pub use file::{
    Endianness, GgufFile, TensorInfo, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_DIMS,
};
pub use metadata::{
    ArrayIter, ArrayView, GgufStr, Metadata, MetadataError, Value, ARCHITECTURE_KEY,
    MAX_ARRAY_NESTING,
};
pub use types::{BlockLayout, GgmlType, TypeId, ValueType};
pub use writer::{GgufDataWriter, GgufWriter, MetaValue};
