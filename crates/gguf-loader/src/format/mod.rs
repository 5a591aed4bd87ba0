//! The GGUF format: parsing and validation over a byte slice, and writing.
//! Knows nothing of files or devices.

mod cursor;
pub mod error;
pub mod file;
pub mod metadata;
pub mod types;
pub mod writer;

pub use cursor::Encoding;
pub use error::{Context, FormatError, FormatErrorKind};
pub use file::{Endianness, GgufFile, TensorInfo, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GGUF_MAGIC};
pub use metadata::{ArrayIter, ArrayView, GgufStr, Metadata, MetadataError, Value, ValueType};
pub use types::{BlockLayout, GgmlType, TypeId};
pub use writer::{GgufWriter, MetaValue};
