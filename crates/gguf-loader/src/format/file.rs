//! Parsing and validating a whole GGUF file in one pass over its bytes.

use std::collections::HashMap;

use super::cursor::{Cursor, Encoding, Fail};
use super::error::{Context, FormatError, FormatErrorKind};
use super::metadata::{read_value, Metadata, Value};
use super::types::ValueType;
use super::types::{GgmlType, TypeId};

/// `"GGUF"` as it stands at the start of every file.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the data section and of every tensor when the file sets none.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The metadata key that sets the alignment.
pub const ALIGNMENT_KEY: &str = "general.alignment";
/// ggml's `GGML_MAX_DIMS`.
pub const MAX_DIMS: usize = 4;

/// Byte order of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endianness {
    /// Little-endian: every file llama.cpp writes on x86 and Arm.
    Little,
    /// Big-endian (s390x builds of ggml); told by a byte-swapped version.
    Big,
}

impl Endianness {
    /// `"little"` or `"big"`.
    pub fn name(self) -> &'static str {
        match self {
            Endianness::Little => "little",
            Endianness::Big => "big",
        }
    }
}

/// One tensor's description, validated against the file.
#[derive(Clone, PartialEq, Eq)]
pub struct TensorInfo<'a> {
    /// The tensor's name, borrowed from the file.
    pub name: &'a str,
    n_dims: u8,
    dims: [u64; MAX_DIMS],
    /// Its ggml type.
    pub ty: GgmlType,
    /// Offset relative to the start of the data section, as stored.
    pub offset: u64,
    /// Absolute offset of the first byte in the file.
    pub file_offset: u64,
    /// Number of elements (the product of `ne`).
    pub n_elements: u64,
    /// Bytes of data in the file.
    pub n_bytes: u64,
    /// Where this tensor's offset field stands in the file (for errors).
    offset_field_at: u64,
}

impl std::fmt::Debug for TensorInfo<'_> {
    /// Its public fields, with `ne` as many dimensions as it has.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TensorInfo")
            .field("name", &self.name)
            .field("ne", &self.ne())
            .field("ty", &self.ty)
            .field("offset", &self.offset)
            .field("file_offset", &self.file_offset)
            .field("n_elements", &self.n_elements)
            .field("n_bytes", &self.n_bytes)
            .finish()
    }
}

impl TensorInfo<'_> {
    /// The dimensions in GGUF order, as ggml's `ne`: `ne[0]`, the
    /// fastest-varying (the row length), first. The reverse of [`Self::shape`].
    pub fn ne(&self) -> &[u64] {
        &self.dims[..self.n_dims as usize]
    }

    /// The shape in row-major order (PyTorch, safetensors, numpy): the
    /// slowest-varying dimension first, `ne` reversed. A 2-D weight of
    /// `ne = [in, out]` has shape `[out, in]`.
    pub fn shape(&self) -> Vec<u64> {
        self.ne().iter().rev().copied().collect()
    }

    /// The byte range of the data in the file.
    pub fn file_range(&self) -> std::ops::Range<usize> {
        // Validated at parse time to lie inside the file, so it fits usize.
        self.file_offset as usize..(self.file_offset + self.n_bytes) as usize
    }
}

/// A parsed, validated GGUF file borrowing its bytes.
#[derive(Debug, Clone)]
pub struct GgufFile<'a> {
    bytes: &'a [u8],
    /// GGUF version: 1, 2 or 3.
    pub version: u32,
    /// Byte order of every number in the file.
    pub endianness: Endianness,
    /// Alignment of the data section and of every tensor's data.
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_offset: u64,
    /// The key–value metadata.
    pub metadata: Metadata<'a>,
    tensors: Vec<TensorInfo<'a>>,
    index: HashMap<&'a str, usize>,
    file_len: u64,
    header_len: u64,
}

impl<'a> GgufFile<'a> {
    /// Parses and validates `bytes` as a GGUF file. Nothing is copied: names,
    /// strings and arrays are views into `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<GgufFile<'a>, FormatError> {
        Parser {
            bytes,
            file_len: bytes.len() as u64,
        }
        .parse()
    }

    /// Parses the start of a file of `file_len` bytes that `bytes` holds at
    /// least up to the data section (for reading without a mapping): every
    /// check runs as in [`GgufFile::parse`], tensor bounds against `file_len`.
    ///
    /// A `Truncated` error whose offset plus `needed` lies inside the file
    /// means `bytes` ended too early: read at least that much and parse
    /// again. Any other error is the one [`GgufFile::parse`] gives on the
    /// whole file.
    pub fn parse_header(bytes: &'a [u8], file_len: u64) -> Result<GgufFile<'a>, FormatError> {
        Parser {
            bytes,
            file_len: file_len.max(bytes.len() as u64),
        }
        .parse()
    }

    /// Length of the whole file (larger than `bytes()` for a header-only parse).
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Bytes of the header: magic, version, counts, metadata and tensor
    /// infos, up to (not including) the padding before the data section.
    /// [`GgufFile::parse_header`] needs exactly these.
    pub fn header_len(&self) -> u64 {
        self.header_len
    }

    /// True when `bytes()` holds the whole file, tensor data included.
    pub fn has_data(&self) -> bool {
        self.bytes.len() as u64 == self.file_len
    }

    /// The whole file.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Tensor infos in file order.
    pub fn tensors(&self) -> &[TensorInfo<'a>] {
        &self.tensors
    }

    /// The tensor info named `name`, if any.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo<'a>> {
        self.index.get(name).map(|i| &self.tensors[*i])
    }

    /// The bytes of `info`, one of this file's tensors: `None` where `info`
    /// describes no tensor of this file (one of another file, such as
    /// another shard of a split model) or the data was not parsed (a
    /// header-only parse).
    pub fn tensor_data(&self, info: &TensorInfo<'_>) -> Option<&'a [u8]> {
        // A header-only parse holds some data past the header, not all.
        if (self.bytes.len() as u64) < self.file_len {
            return None;
        }
        self.tensor(info.name)
            .filter(|own| *own == info)
            .and_then(|own| self.bytes.get(own.file_range()))
    }

    /// The bytes of `info`, known to be one of this file's tensors (empty
    /// after a header-only parse).
    pub(crate) fn own_tensor_data(&self, info: &TensorInfo<'_>) -> &'a [u8] {
        self.bytes.get(info.file_range()).unwrap_or_default()
    }
}

struct Parser<'a> {
    bytes: &'a [u8],
    file_len: u64,
}

fn at(context: Context) -> impl FnOnce(Fail) -> FormatError {
    move |(offset, kind)| FormatError {
        offset,
        context,
        kind,
    }
}

impl<'a> Parser<'a> {
    fn parse(self) -> Result<GgufFile<'a>, FormatError> {
        let bytes = self.bytes;
        let header = |offset, kind| FormatError {
            offset,
            context: Context::Header,
            kind,
        };

        // Magic and version; a big-endian file shows its version byte-swapped.
        let mut c = Cursor::over_prefix(
            bytes,
            self.file_len,
            0,
            Encoding {
                big_endian: false,
                wide_lengths: true,
            },
        );
        let magic = c.array::<4>("magic").map_err(at(Context::Header))?;
        if magic != GGUF_MAGIC {
            // Safetensors: a little-endian u64 header length, then JSON.
            if let (Some(len), Some(b'{')) = (bytes.get(..8), bytes.get(8)) {
                let len = u64::from_le_bytes(len.try_into().unwrap_or_default());
                if len >= 2 && len <= self.file_len.saturating_sub(8) {
                    return Err(header(0, FormatErrorKind::Safetensors(len)));
                }
            }
            return Err(header(0, FormatErrorKind::BadMagic(magic)));
        }
        let raw = c.array::<4>("version").map_err(at(Context::Header))?;
        let (version, big_endian) = match (u32::from_le_bytes(raw), u32::from_be_bytes(raw)) {
            (v @ 1..=3, _) => (v, false),
            (_, v @ 1..=3) => (v, true),
            (v, _) => return Err(header(4, FormatErrorKind::UnsupportedVersion(v))),
        };
        c.enc = Encoding {
            big_endian,
            wide_lengths: version >= 2,
        };
        let lw = c.enc.len_width();
        let n_tensors = c.len("tensor count").map_err(at(Context::Header))?;
        let n_kv = c.len("metadata count").map_err(at(Context::Header))?;

        // Every entry takes at least its key length, value type and one byte.
        c.check_count(n_kv, lw + 4 + 1, "metadata count")
            .map_err(at(Context::Header))?;
        let mut metadata = Metadata::with_capacity(n_kv as usize);
        for i in 0..n_kv {
            let key_at = c.pos();
            let key = read_key(&mut c).map_err(at(Context::KeyIndex(i)))?;
            let ctx = || Context::Key(key.to_string());
            let ty_at = c.pos();
            let raw = c.u32("value type").map_err(at(ctx()))?;
            let ty = ValueType::from_id(raw)
                .ok_or((ty_at, FormatErrorKind::UnknownValueType(raw)))
                .map_err(at(ctx()))?;
            let value = read_value(&mut c, ty, 0).map_err(at(ctx()))?;
            if !metadata.insert(key, value) {
                return Err(at(ctx())((key_at, FormatErrorKind::DuplicateKey)));
            }
        }

        let alignment = match metadata.get(ALIGNMENT_KEY) {
            None => DEFAULT_ALIGNMENT,
            Some(Value::U32(a)) if a.is_power_of_two() => u64::from(*a),
            Some(Value::U32(a)) => {
                return Err(at(Context::Key(ALIGNMENT_KEY.into()))((
                    c.pos(),
                    FormatErrorKind::BadAlignment(u64::from(*a)),
                )))
            }
            Some(other) => {
                return Err(at(Context::Key(ALIGNMENT_KEY.into()))((
                    c.pos(),
                    FormatErrorKind::AlignmentType(other.value_type()),
                )))
            }
        };

        // A tensor info takes at least a name length, n_dims, type and offset.
        c.check_count(n_tensors, lw + 4 + 4 + 8, "tensor count")
            .map_err(at(Context::Header))?;
        let mut tensors = Vec::with_capacity(n_tensors as usize);
        let mut index = HashMap::with_capacity(n_tensors as usize);
        for i in 0..n_tensors {
            let info_at = c.pos();
            let name = read_tensor_name(&mut c).map_err(at(Context::TensorIndex(i)))?;
            let info = read_tensor_info(&mut c, name).map_err(at(Context::Tensor(name.into())))?;
            if index.insert(name, tensors.len()).is_some() {
                return Err(at(Context::Tensor(name.into()))((
                    info_at,
                    FormatErrorKind::DuplicateTensor,
                )));
            }
            tensors.push(info);
        }

        // The data section starts at the next multiple of the alignment.
        let header_len = c.pos();
        let data_offset = header_len.next_multiple_of(alignment);
        let file_len = self.file_len;
        for t in &mut tensors {
            let ctx = || Context::Tensor(t.name.to_string());
            if t.offset % alignment != 0 {
                return Err(at(ctx())((
                    t.offset_field_at,
                    FormatErrorKind::MisalignedOffset {
                        offset: t.offset,
                        alignment,
                    },
                )));
            }
            let start = u128::from(data_offset) + u128::from(t.offset);
            let end = start + u128::from(t.n_bytes);
            if end > u128::from(file_len) {
                return Err(at(ctx())((
                    t.offset_field_at,
                    FormatErrorKind::DataPastEnd {
                        start: u64::try_from(start).unwrap_or(u64::MAX),
                        end,
                        file_len,
                    },
                )));
            }
            t.file_offset = start as u64;
        }
        check_overlaps(&tensors)?;

        Ok(GgufFile {
            bytes,
            version,
            endianness: if big_endian {
                Endianness::Big
            } else {
                Endianness::Little
            },
            alignment,
            data_offset,
            metadata,
            tensors,
            index,
            file_len,
            header_len,
        })
    }
}

fn read_key<'a>(c: &mut Cursor<'a>) -> Result<&'a str, Fail> {
    let len = c.len("key length")?;
    let at = c.pos();
    let b = c.take(len, "key")?;
    std::str::from_utf8(b).map_err(|_| (at, FormatErrorKind::KeyNotUtf8))
}

fn read_tensor_name<'a>(c: &mut Cursor<'a>) -> Result<&'a str, Fail> {
    let len = c.len("tensor name length")?;
    let at = c.pos();
    let b = c.take(len, "tensor name")?;
    std::str::from_utf8(b).map_err(|_| (at, FormatErrorKind::TensorNameNotUtf8))
}

fn read_tensor_info<'a>(c: &mut Cursor<'a>, name: &'a str) -> Result<TensorInfo<'a>, Fail> {
    let dims_at = c.pos();
    let n_dims = c.u32("dimension count")?;
    if n_dims as usize > MAX_DIMS {
        return Err((dims_at, FormatErrorKind::TooManyDims(n_dims.into())));
    }
    let mut dims = [1u64; MAX_DIMS];
    for (index, d) in dims.iter_mut().take(n_dims as usize).enumerate() {
        let at = c.pos();
        let value = c.len("dimension")?;
        if value > i64::MAX as u64 {
            return Err((at, FormatErrorKind::DimTooLarge { index, value }));
        }
        *d = value;
    }
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, d| {
            acc.checked_mul(*d).filter(|n| *n <= i64::MAX as u64)
        })
        .ok_or_else(|| {
            (
                dims_at,
                FormatErrorKind::ElementCountOverflow(dims[..n_dims as usize].to_vec()),
            )
        })?;
    let type_at = c.pos();
    let raw = c.u32("tensor type")?;
    let ty = match GgmlType::classify(raw) {
        TypeId::Known(t) => t,
        TypeId::Removed(name) => {
            return Err((type_at, FormatErrorKind::RemovedType { id: raw, name }))
        }
        TypeId::Unknown => return Err((type_at, FormatErrorKind::UnknownType(raw))),
    };
    let block_size = ty.block_size();
    if dims[0] % block_size != 0 {
        return Err((
            dims_at,
            FormatErrorKind::NotBlockMultiple {
                ty: ty.name(),
                ne0: dims[0],
                block_size,
            },
        ));
    }
    let n_bytes = ty.byte_size(n_elements).ok_or((
        dims_at,
        FormatErrorKind::ByteSizeOverflow {
            ty: ty.name(),
            n_elements,
        },
    ))?;
    let offset_field_at = c.pos();
    let offset = c.u64("tensor offset")?;
    Ok(TensorInfo {
        offset_field_at,
        name,
        n_dims: n_dims as u8,
        dims,
        ty,
        offset,
        file_offset: 0,
        n_elements,
        n_bytes,
    })
}

/// Fails when two tensors' data share a byte. Empty tensors overlap nothing.
fn check_overlaps(tensors: &[TensorInfo<'_>]) -> Result<(), FormatError> {
    let mut order: Vec<usize> = (0..tensors.len())
        .filter(|i| tensors[*i].n_bytes > 0)
        .collect();
    order.sort_unstable_by_key(|i| tensors[*i].file_offset);
    for pair in order.windows(2) {
        let (a, b) = (&tensors[pair[0]], &tensors[pair[1]]);
        let a_end = a.file_offset + a.n_bytes;
        if b.file_offset < a_end {
            return Err(FormatError {
                offset: b.file_offset,
                context: Context::Tensor(b.name.to_string()),
                kind: FormatErrorKind::Overlap {
                    start: b.file_offset,
                    end: b.file_offset + b.n_bytes,
                    other: a.name.to_string(),
                },
            });
        }
    }
    Ok(())
}
