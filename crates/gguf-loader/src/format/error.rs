//! Errors of the format layer: what is wrong, where (byte offset), and in
//! which key or tensor.

use std::fmt;

use super::types::ValueType;

/// Displays text from a file with control characters escaped (`\n`,
/// `\u{1b}`), and the bidirectional controls that reorder what a terminal
/// shows (`\u{202e}`: the "Trojan Source" set) and the invisible characters
/// (`\u{200b}`, `\u{feff}`…), everything else (quotes,
/// non-ASCII letters) as it is, so that a key or tensor name in a message
/// can neither drive a terminal nor pass for another. Idempotent: the
/// escaped form holds no such character.
pub struct Escaped<'a>(pub &'a str);

/// The characters that change the direction of the text around them
/// (U+061C, U+200E/F, U+202A–E, U+2066–9), and the invisible ones that
/// break or join text without showing (soft hyphen, zero-width space and
/// joiners, line and paragraph separators, word joiner and invisible
/// operators, the byte-order mark).
fn is_bidi_or_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}'
            | '\u{061c}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2069}'
            | '\u{feff}'
    )
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() || is_bidi_or_invisible(c) {
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
    /// The file does not start with `GGUF`: these are its first four bytes.
    #[error("bad magic {} (expected \"GGUF\"){}", Magic(.0), MagicHint(.0))]
    BadMagic([u8; 4]),
    /// The file is a safetensors file (a little-endian header length, then
    /// a JSON header), not GGUF.
    #[error("a safetensors file (its JSON header {0} bytes long), not GGUF")]
    Safetensors(u64),
    /// A version other than 1, 2 or 3 (in either byte order).
    #[error("unsupported GGUF version {0} (supported: 1, 2, 3)")]
    UnsupportedVersion(u32),
    #[error("unexpected end of file reading {what}: need {needed} bytes, {available} left")]
    /// The file ends inside a field.
    Truncated {
        /// The field being read.
        what: &'static str,
        /// Bytes it needs.
        needed: u64,
        /// Bytes left in the file.
        available: u64,
    },
    #[error("{what} {count} cannot fit in the {remaining} bytes left")]
    /// A count or length whose items could not fit in the rest of the file
    /// even at their smallest (checked before anything is allocated from it).
    CountTooLarge {
        /// The count's field.
        what: &'static str,
        /// Its value.
        count: u64,
        /// Bytes left in the file.
        remaining: u64,
    },
    /// A metadata value type id outside 0..=12.
    #[error("unknown metadata value type {0}")]
    UnknownValueType(u32),
    /// A bool stored as a byte other than 0 or 1.
    #[error("invalid bool byte {0} (must be 0 or 1)")]
    InvalidBool(u8),
    /// A metadata key that is not UTF-8.
    #[error("key is not valid UTF-8")]
    KeyNotUtf8,
    /// A metadata key that occurs twice.
    #[error("duplicate metadata key")]
    DuplicateKey,
    /// Arrays of arrays nested deeper than [`MAX_ARRAY_NESTING`](crate::MAX_ARRAY_NESTING).
    #[error("arrays nested deeper than {0} levels")]
    NestingTooDeep(usize),
    /// A tensor name that is not UTF-8.
    #[error("tensor name is not valid UTF-8")]
    TensorNameNotUtf8,
    /// A tensor name that occurs twice.
    #[error("duplicate tensor name")]
    DuplicateTensor,
    /// `general.alignment` stored as another type than u32.
    #[error("general.alignment must be a u32, found {0}")]
    AlignmentType(ValueType),
    /// `general.alignment` zero or not a power of two.
    #[error("general.alignment {0} is not a non-zero power of two")]
    BadAlignment(u64),
    /// More dimensions than ggml's four.
    #[error("{0} dimensions (at most 4)")]
    TooManyDims(u64),
    #[error("dimension {index} is {value}, past i64::MAX")]
    /// A dimension past `i64::MAX` (ggml's `ne` are `int64_t`).
    DimTooLarge {
        /// Which dimension (0 = `ne[0]`).
        index: usize,
        /// Its value.
        value: u64,
    },
    /// The product of the dimensions (given) passes `i64::MAX`.
    #[error("element count overflows (dims {0:?})")]
    ElementCountOverflow(Vec<u64>),
    #[error("byte size of {n_elements} {ty} elements overflows")]
    /// The data's byte size overflows u64.
    ByteSizeOverflow {
        /// The tensor type.
        ty: &'static str,
        /// Its element count.
        n_elements: u64,
    },
    /// A tensor type id ggml never defined.
    #[error("unknown tensor type id {0}")]
    UnknownType(u32),
    #[error("tensor type id {id} ({name}) was removed from ggml")]
    /// A tensor type id ggml once used and has removed (e.g. 4 = Q4_2).
    RemovedType {
        /// The id.
        id: u32,
        /// ggml's old name for it.
        name: &'static str,
    },
    #[error("ne[0] = {ne0} is not a multiple of the {ty} block size {block_size}")]
    /// A row length (`ne[0]`) that is not a whole number of blocks.
    NotBlockMultiple {
        /// The tensor type.
        ty: &'static str,
        /// The row length.
        ne0: u64,
        /// The type's block size.
        block_size: u64,
    },
    #[error("data offset {offset} is not a multiple of the alignment {alignment}")]
    /// A tensor's data offset that is not a multiple of the alignment.
    MisalignedOffset {
        /// The offset, relative to the data section.
        offset: u64,
        /// The file's alignment.
        alignment: u64,
    },
    #[error("data [{start}, {end}) runs past the end of the file ({file_len} bytes)")]
    /// A tensor's data runs past the end of the file.
    DataPastEnd {
        /// Its first byte in the file.
        start: u64,
        /// One past its last byte (may exceed u64).
        end: u128,
        /// The file's length.
        file_len: u64,
    },
    #[error("data [{start}, {end}) overlaps tensor '{}'", Escaped(other))]
    /// Two tensors' data share bytes.
    Overlap {
        /// This tensor's first byte in the file.
        start: u64,
        /// One past its last byte.
        end: u64,
        /// The tensor it overlaps.
        other: String,
    },
}

/// A parse or validation failure: the problem, its byte offset in the file,
/// and the key or tensor it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    /// Where in the file (bytes from its start).
    pub offset: u64,
    /// In which key or tensor, or the header.
    pub context: Context,
    /// What is wrong.
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

/// What a file with these first four bytes is likely to be, where they are
/// another format's well-known start: `": a gzip stream (…)"`, or nothing.
struct MagicHint<'a>(&'a [u8; 4]);

impl fmt::Display for MagicHint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hint = match self.0 {
            // ggml's magics before GGUF, written as little-endian u32s:
            // 'ggml', 'ggmf', 'ggjt', and LoRA adapters' 'ggla'.
            b"lmgg" | b"fmgg" | b"tjgg" | b"algg" => {
                "a GGML / GGJT file, llama.cpp's format before GGUF (llama.cpp's \
                 convert_llama_ggml_to_gguf.py converts it)"
            }
            b"vers" => "text: a Git LFS pointer? (`git lfs pull` fetches the file itself)",
            [b'<', ..] => "text: an HTML or XML page (a failed download?)",
            [0x1f, 0x8b, ..] => "a gzip stream (decompress it first)",
            [0x28, 0xb5, 0x2f, 0xfd] => "a zstd stream (decompress it first)",
            [b'P', b'K', 3, 4] => "a zip archive (a PyTorch checkpoint?)",
            [0x80, 2..=5, ..] => "a Python pickle (a PyTorch checkpoint?)",
            [0x89, b'H', b'D', b'F'] => "an HDF5 file",
            [0x7f, b'E', b'L', b'F'] => "an ELF executable",
            _ => return Ok(()),
        };
        write!(f, ": {hint}")
    }
}

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
