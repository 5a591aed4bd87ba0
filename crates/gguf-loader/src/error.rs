//! The crate's error type: a failure of a file (opening, parsing, reading)
//! names it, and where it can the key or tensor and the byte offset; a
//! failure of a tensor or key names that ([`Error::path`] says which file
//! an error names, so that a caller can add its own).
//!
//! Each message is one line that already holds its cause, so
//! [`std::error::Error::source`] returns `None` (a chain printer would print
//! the cause twice otherwise); [`Error::io_error`] reaches an I/O cause.
//! Names and keys taken from a file are printed with their control
//! characters escaped, so an error line cannot drive a terminal.

use std::io;
use std::path::{Path, PathBuf};

use crate::decode::DecodeError;
use crate::format::{Escaped, FormatError, GgmlType, MetadataError};
use crate::tensor::Device;

/// Everything that can go wrong opening, reading or decoding a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be opened, read or mapped.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        error: io::Error,
    },
    /// The path is not a regular file (a directory, a FIFO, a socket…):
    /// refused before anything is read, so that a FIFO cannot block.
    #[error("{}: is {what}, not a regular file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is instead: `"a directory"`, `"a FIFO"`, …
        what: &'static str,
    },
    /// The file is not a valid GGUF file.
    #[error("{}: {error}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, where (byte offset), in which key or tensor.
        error: Box<FormatError>,
    },
    /// A metadata lookup failed (missing key or wrong type).
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// Reading a tensor's bytes failed (read mode: e.g. the file shrank).
    #[error(
        "{}: tensor '{}' at byte {offset}: {}",
        path.display(),
        Escaped(tensor),
        tensor_io_text(error)
    )]
    TensorIo {
        /// The file.
        path: PathBuf,
        /// The tensor.
        tensor: String,
        /// Where its data starts in the file.
        offset: u64,
        /// What the system said.
        error: io::Error,
    },
    /// Zero-copy access asked of a loader opened in read mode.
    #[error("tensor '{}': the file is not mapped (read mode); use read_tensor_data", Escaped(.0))]
    NotMapped(String),
    /// A tensor too large for this platform's address space.
    #[error("tensor '{}' is too large for this platform", Escaped(.0))]
    TooLarge(String),
    /// The memory for a tensor's output, or for its bytes read from the file
    /// (read mode), could not be allocated: the size the file declares is
    /// beyond what the system gives.
    #[error(
        "tensor '{}': cannot allocate {bytes} bytes (out of memory)",
        Escaped(tensor)
    )]
    OutOfMemory {
        /// The tensor.
        tensor: String,
        /// The bytes asked for.
        bytes: u64,
    },
    /// A load asked for no decoding threads, or for more than
    /// [`max_threads`](crate::max_threads).
    #[error(
        "{n} decoding threads asked for: a load takes 1 to {max} ({} per available core)",
        crate::THREADS_PER_CORE
    )]
    Threads {
        /// The threads asked for.
        n: usize,
        /// The most allowed here.
        max: usize,
    },
    /// The decoding thread pool could not be built, or a decoding thread died.
    #[error("thread pool: {0}")]
    ThreadPool(String),
    /// A load was cancelled by its progress callback.
    #[error("cancelled")]
    Cancelled,
    /// No tensor has this name.
    #[error("tensor '{}' not found", Escaped(.0))]
    TensorNotFound(String),
    /// No tensor is named `blk.{i}.*`.
    #[error("layer {0} not found (no tensor is named blk.{0}.*)")]
    LayerNotFound(usize),
    /// A tensor's bytes could not be decoded into the requested output.
    #[error("tensor '{}': {error}", Escaped(tensor))]
    Decode {
        /// The tensor.
        tensor: String,
        /// Why.
        error: DecodeError,
    },
    /// Quantized data of a type with no defined big-endian byte order in a
    /// big-endian file ([`GgmlType::has_big_endian_order`]).
    #[error(
        "tensor '{}': {ty} data in a big-endian file cannot be decoded (a big-endian byte \
         order is defined for Q4_0, Q8_0, Q4_K, Q6_K, MXFP4 and NVFP4 only, the types \
         llama.cpp's gguf_convert_endian.py converts)",
        Escaped(tensor)
    )]
    BigEndianData {
        /// The tensor.
        tensor: String,
        /// Its type.
        ty: GgmlType,
    },
    /// The device is not available in this build (a GPU without the `cuda`
    /// feature).
    #[error("device {0} is not available in this build (built without the `cuda` feature)")]
    UnsupportedDevice(Device),
    /// The GPU cannot be used: no driver library, no such device, or NVRTC
    /// missing (`message` says which, in one line).
    #[error("{device}: {message}")]
    CudaUnavailable {
        /// The device asked for.
        device: Device,
        /// Why it cannot be used.
        message: String,
    },
    /// A CUDA call failed while working on `what` (a tensor's name, or a
    /// step such as "compiling the decode kernels").
    #[error("{device}: {what}: {message}")]
    Cuda {
        /// The device.
        device: Device,
        /// The tensor or step.
        what: String,
        /// The driver's or NVRTC's message.
        message: String,
    },
    /// An operation needs the tensor's values on the host (or on a GPU) and
    /// they are elsewhere: see `Tensor::to_host`.
    #[error("the tensor is on {0}: copy it with Tensor::to_host first")]
    WrongDevice(Device),
    /// A split model's shard does not belong with the others (or names
    /// shards that cannot be there).
    #[error("{}: {message}", path.display())]
    Split {
        /// The shard (or the first one).
        path: PathBuf,
        /// What is wrong (names from the files already escaped).
        message: String,
    },
    /// A shard of a split model is not there (`path` is where it was
    /// looked for, beside the shard opened).
    #[error(
        "{}: shard {no} of {count} is missing (opened from {})",
        path.display(),
        opened.display()
    )]
    MissingShard {
        /// Where the shard was looked for.
        path: PathBuf,
        /// Its number, from 1.
        no: u64,
        /// How many shards the model has.
        count: u64,
        /// The shard that was opened.
        opened: PathBuf,
    },
}

impl Error {
    /// The file this error's message names, if it names one: the file that
    /// could not be opened, parsed or read, or the shard that disagrees. A
    /// tensor's or key's error (not found, not decodable, of another type)
    /// names the tensor or key only; a caller that opened the file can
    /// prefix its path.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Error::Io { path, .. }
            | Error::NotAFile { path, .. }
            | Error::Format { path, .. }
            | Error::TensorIo { path, .. }
            | Error::Split { path, .. }
            | Error::MissingShard { path, .. } => Some(path),
            _ => None,
        }
    }

    /// The I/O error behind an [`Error::Io`] or [`Error::TensorIo`], e.g. to
    /// tell a missing file (`NotFound`) from a malformed one.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Error::Io { error, .. } | Error::TensorIo { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// `std::result::Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A tensor read's error in words: an end of file met before the tensor's
/// end means the file shrank after it was opened (std says "failed to fill
/// whole buffer").
fn tensor_io_text(error: &io::Error) -> String {
    if error.kind() == io::ErrorKind::UnexpectedEof {
        "the file ends before the tensor's data does (truncated or changed since it was opened)"
            .to_string()
    } else {
        error.to_string()
    }
}
