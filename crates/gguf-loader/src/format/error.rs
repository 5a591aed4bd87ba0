//! Errors of the format layer: what is wrong, where (byte offset), and in
//! which key or tensor.

use std::fmt;

use super::types::ValueType;

/// Displays text from a file with control characters escaped (`\n`,
/// `\u{1b}`), everything else (quotes, non-ASCII letters) as it is, so that
/// a key or tensor name in a message cannot drive a terminal. Idempotent:
/// the escaped form holds no control character.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else {
                fmt::Write::write_char(f, c)?;
            }
        }
        Ok(())
    }
}

/// Where in the file a problem lies, beyond its byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Context {
    /// The fixed header (magic, version, counts).
    Header,
    /// A metadata entry, by key (or by index while the key itself is unread).
    Key(String),
    /// The `index`-th metadata entry, whose key could not be read.
    KeyIndex(u64),
    /// A tensor info or tensor data, by name.
    Tensor(String),
    /// The `index`-th tensor info, whose name could not be read.
    TensorIndex(u64),
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Context::Header => f.write_str("header"),
            Context::Key(k) => write!(f, "key '{}'", Escaped(k)),
            Context::KeyIndex(i) => write!(f, "metadata entry #{i}"),
            Context::Tensor(t) => write!(f, "tensor '{}'", Escaped(t)),
            Context::TensorIndex(i) => write!(f, "tensor info #{i}"),
        }
    }
}

/// What is wrong with a GGUF file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatErrorKind {
    #[error("bad magic {} (expected \"GGUF\")", Magic(.0))]
    BadMagic([u8; 4]),
    #[error("unsupported GGUF version {0} (supported: 1, 2, 3)")]
    UnsupportedVersion(u32),
    #[error("unexpected end of file reading {what}: need {needed} bytes, {available} left")]
    Truncated {
        what: &'static str,
        needed: u64,
        available: u64,
    },
    #[error("{what} {count} cannot fit in the {remaining} bytes left")]
    CountTooLarge {
        what: &'static str,
        count: u64,
        remaining: u64,
    },
    #[error("unknown metadata value type {0}")]
    UnknownValueType(u32),
    #[error("invalid bool byte {0} (must be 0 or 1)")]
    InvalidBool(u8),
    #[error("key is not valid UTF-8")]
    KeyNotUtf8,
    #[error("duplicate metadata key")]
    DuplicateKey,
    #[error("arrays nested deeper than {0} levels")]
    NestingTooDeep(usize),
    #[error("tensor name is not valid UTF-8")]
    TensorNameNotUtf8,
    #[error("duplicate tensor name")]
    DuplicateTensor,
    #[error("general.alignment must be a u32, found {0}")]
    AlignmentType(ValueType),
    #[error("general.alignment {0} is not a non-zero power of two")]
    BadAlignment(u64),
    #[error("{0} dimensions (at most 4)")]
    TooManyDims(u64),
    #[error("dimension {index} is {value}, past i64::MAX")]
    DimTooLarge { index: usize, value: u64 },
    #[error("element count overflows (dims {0:?})")]
    ElementCountOverflow(Vec<u64>),
    #[error("byte size of {n_elements} {ty} elements overflows")]
    ByteSizeOverflow { ty: &'static str, n_elements: u64 },
    #[error("unknown tensor type id {0}")]
    UnknownType(u32),
    #[error("tensor type id {id} ({name}) was removed from ggml")]
    RemovedType { id: u32, name: &'static str },
    #[error("ne[0] = {ne0} is not a multiple of the {ty} block size {block_size}")]
    NotBlockMultiple {
        ty: &'static str,
        ne0: u64,
        block_size: u64,
    },
    #[error("data offset {offset} is not a multiple of the alignment {alignment}")]
    MisalignedOffset { offset: u64, alignment: u64 },
    #[error("data [{start}, {end}) runs past the end of the file ({file_len} bytes)")]
    DataPastEnd {
        start: u64,
        end: u128,
        file_len: u64,
    },
    #[error("data [{start}, {end}) overlaps tensor '{}'", Escaped(other))]
    Overlap { start: u64, end: u64, other: String },
}

/// A parse or validation failure: the problem, its byte offset in the file,
/// and the key or tensor it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    pub offset: u64,
    pub context: Context,
    pub kind: FormatErrorKind,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} (at byte {})",
            self.context, self.kind, self.offset
        )
    }
}

impl std::error::Error for FormatError {}

/// The four magic bytes as `0x17 0x14 0x67 0x67 ("\x17\x14gg")`.
struct Magic<'a>(&'a [u8; 4]);

impl fmt::Display for Magic<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{b:#04x}")?;
        }
        write!(f, " (\"{}\")", self.0.escape_ascii())
    }
}
