//! The crate's error type: every failure names the file, and where it can the
//! key or tensor and the byte offset.

use std::io;
use std::path::PathBuf;

use crate::decode::DecodeError;
use crate::format::{FormatError, GgmlType, MetadataError};
use crate::tensor::Device;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be opened, read or mapped.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The file is not a valid GGUF file.
    #[error("{}: {source}", path.display())]
    Format {
        path: PathBuf,
        #[source]
        source: Box<FormatError>,
    },
    /// A metadata lookup failed (missing key or wrong type).
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// Reading a tensor's bytes failed (read mode: e.g. the file shrank).
    #[error("{}: tensor '{tensor}' at byte {offset}: {source}", path.display())]
    TensorIo {
        path: PathBuf,
        tensor: String,
        offset: u64,
        #[source]
        source: io::Error,
    },
    /// Zero-copy access asked of a loader opened in read mode.
    #[error("tensor '{0}': the file is not mapped (read mode); use read_tensor_data")]
    NotMapped(String),
    /// A tensor too large for this platform's address space.
    #[error("tensor '{0}' is too large for this platform")]
    TooLarge(String),
    /// The decoding thread pool could not be built.
    #[error("thread pool: {0}")]
    ThreadPool(String),
    /// A load was cancelled by its progress callback.
    #[error("cancelled")]
    Cancelled,
    /// No tensor has this name.
    #[error("tensor '{0}' not found")]
    TensorNotFound(String),
    /// A tensor's bytes could not be decoded into the requested output.
    #[error("tensor '{tensor}': {source}")]
    Decode {
        tensor: String,
        #[source]
        source: DecodeError,
    },
    /// Quantized data in a big-endian file has no defined byte order in ggml.
    #[error("tensor '{tensor}': {ty} data in a big-endian file cannot be decoded")]
    BigEndianData { tensor: String, ty: GgmlType },
    /// The device is not available in this build.
    #[error("device {0} is not available in this build")]
    UnsupportedDevice(Device),
    /// A split model's shard is missing or does not belong with the others.
    #[error("{}: {message}", path.display())]
    Split { path: PathBuf, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
