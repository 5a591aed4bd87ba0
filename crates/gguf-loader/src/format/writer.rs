//! Writing GGUF files: metadata of every type and tensors of any ggml type as
//! raw bytes, in any version and byte order.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{self, Write};

use super::cursor::Encoding;
use super::file::{Endianness, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_DIMS};
use super::metadata::Value;
use super::types::GgmlType;
use super::types::ValueType;

/// An owned metadata value, for writing.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    /// `uint8`.
    U8(u8),
    /// `int8`.
    I8(i8),
    /// `uint16`.
    U16(u16),
    /// `int16`.
    I16(i16),
    /// `uint32`.
    U32(u32),
    /// `int32`.
    I32(i32),
    /// `float32`.
    F32(f32),
    /// `bool`.
    Bool(bool),
    /// `string`.
    String(String),
    /// `array` of elements of the given type (all of it).
    Array(ValueType, Vec<MetaValue>),
    /// `uint64`.
    U64(u64),
    /// `int64`.
    I64(i64),
    /// `float64`.
    F64(f64),
}

impl MetaValue {
    /// Its type.
    pub fn value_type(&self) -> ValueType {
        match self {
            MetaValue::U8(_) => ValueType::U8,
            MetaValue::I8(_) => ValueType::I8,
            MetaValue::U16(_) => ValueType::U16,
            MetaValue::I16(_) => ValueType::I16,
            MetaValue::U32(_) => ValueType::U32,
            MetaValue::I32(_) => ValueType::I32,
            MetaValue::F32(_) => ValueType::F32,
            MetaValue::Bool(_) => ValueType::Bool,
            MetaValue::String(_) => ValueType::String,
            MetaValue::Array(..) => ValueType::Array,
            MetaValue::U64(_) => ValueType::U64,
            MetaValue::I64(_) => ValueType::I64,
            MetaValue::F64(_) => ValueType::F64,
        }
    }

    /// An owned copy of a value read from a file (strings lossily as UTF-8).
    pub fn from_value(v: &Value<'_>) -> MetaValue {
        match *v {
            Value::U8(x) => MetaValue::U8(x),
            Value::I8(x) => MetaValue::I8(x),
            Value::U16(x) => MetaValue::U16(x),
            Value::I16(x) => MetaValue::I16(x),
            Value::U32(x) => MetaValue::U32(x),
            Value::I32(x) => MetaValue::I32(x),
            Value::F32(x) => MetaValue::F32(x),
            Value::Bool(x) => MetaValue::Bool(x),
            Value::String(s) => MetaValue::String(s.to_string_lossy().into_owned()),
            Value::Array(a) => MetaValue::Array(
                a.elem_type(),
                a.iter().map(|e| Self::from_value(&e)).collect(),
            ),
            Value::U64(x) => MetaValue::U64(x),
            Value::I64(x) => MetaValue::I64(x),
            Value::F64(x) => MetaValue::F64(x),
        }
    }

    /// Checks that every array's items have its element type.
    /// Items of their array's type, arrays nested no deeper than a reader
    /// takes ([`MAX_ARRAY_NESTING`](crate::MAX_ARRAY_NESTING)).
    fn check(&self, depth: usize) -> io::Result<()> {
        if let MetaValue::Array(ty, items) = self {
            if depth >= crate::MAX_ARRAY_NESTING {
                return Err(invalid(format!(
                    "arrays nested deeper than {}",
                    crate::MAX_ARRAY_NESTING
                )));
            }
            for item in items {
                if item.value_type() != *ty {
                    return Err(invalid(format!(
                        "array of {ty} holds a {}",
                        item.value_type()
                    )));
                }
                item.check(depth + 1)?;
            }
        }
        Ok(())
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

struct TensorSpec<'d> {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    /// The data's length in bytes.
    size: u64,
    /// The data, or `None` for a tensor streamed after the header through a
    /// [`GgufDataWriter`].
    data: Option<Cow<'d, [u8]>>,
}

/// Builds a GGUF file and writes it out: metadata and tensors with their
/// bytes held in memory ([`GgufWriter::add_tensor`], then
/// [`GgufWriter::write_to`]), or tensors declared by name, dims and type whose
/// bytes are streamed after the header one after the other
/// ([`GgufWriter::add_tensor_info`], then [`GgufWriter::write_header`]), so
/// that a file of any size is written holding one tensor at a time.
///
/// ```
/// use gguf_loader::{GgmlType, GgufFile, GgufWriter, MetaValue};
/// let mut w = GgufWriter::new();
/// w.add("general.architecture", MetaValue::String("llama".into()));
/// w.add_tensor("x", &[4], GgmlType::F32, vec![0u8; 16]).unwrap();
/// let bytes = w.to_bytes().unwrap();
/// let file = GgufFile::parse(&bytes).unwrap();
/// assert_eq!(file.tensors()[0].name, "x");
///
/// // The same file, its tensor data streamed after the header.
/// let mut w = GgufWriter::new();
/// w.add("general.architecture", MetaValue::String("llama".into()));
/// w.add_tensor_info("x", &[4], GgmlType::F32).unwrap();
/// let mut stream = w.write_header(Vec::new()).unwrap();
/// assert_eq!(stream.next_tensor(), Some(("x", 16)));
/// stream.write_data(&[0u8; 16]).unwrap();
/// assert_eq!(stream.finish().unwrap(), bytes);
/// ```
pub struct GgufWriter<'d> {
    version: u32,
    endianness: Endianness,
    alignment: u64,
    metadata: Vec<(String, Meta<'d>)>,
    /// Position of each key in `metadata`, so that adding n keys is linear.
    keys: HashMap<String, usize>,
    tensors: Vec<TensorSpec<'d>>,
}

impl std::fmt::Debug for GgufWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self.metadata.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("GgufWriter")
            .field("version", &self.version)
            .field("endianness", &self.endianness)
            .field("alignment", &self.alignment)
            .field("metadata", &keys)
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// A metadata value to write: owned, or borrowed from a parsed file.
enum Meta<'d> {
    Owned(MetaValue),
    Borrowed(Value<'d>),
}

impl Meta<'_> {
    fn value_type(&self) -> ValueType {
        match self {
            Meta::Owned(v) => v.value_type(),
            Meta::Borrowed(v) => v.value_type(),
        }
    }
}

impl Default for GgufWriter<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'d> GgufWriter<'d> {
    /// A v3, little-endian writer with the default alignment (32).
    pub fn new() -> Self {
        GgufWriter {
            version: 3,
            endianness: Endianness::Little,
            alignment: DEFAULT_ALIGNMENT,
            metadata: Vec::new(),
            keys: HashMap::new(),
            tensors: Vec::new(),
        }
    }

    /// Writes version 1 (u32 counts and lengths), 2 or 3.
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// Byte order of every header field. Tensor bytes are written as given.
    pub fn endianness(mut self, e: Endianness) -> Self {
        self.endianness = e;
        self
    }

    /// Sets the alignment; a value other than 32 is also stored as
    /// `general.alignment`.
    pub fn alignment(mut self, alignment: u32) -> Self {
        self.alignment = u64::from(alignment);
        if let Some(i) = self.keys.remove(ALIGNMENT_KEY) {
            self.metadata.remove(i);
            for v in self.keys.values_mut() {
                if *v > i {
                    *v -= 1;
                }
            }
        }
        if u64::from(alignment) != DEFAULT_ALIGNMENT {
            self.put(
                ALIGNMENT_KEY.to_string(),
                Meta::Owned(MetaValue::U32(alignment)),
            );
        }
        self
    }

    /// Adds a metadata entry, replacing one with the same key.
    pub fn add(&mut self, key: impl Into<String>, value: MetaValue) -> &mut Self {
        self.put(key.into(), Meta::Owned(value))
    }

    /// Adds a metadata entry read from a parsed file, replacing one with the
    /// same key. Nothing is copied: the value (a tokenizer's vocabulary, say)
    /// is written from the file's bytes, its strings byte for byte, its
    /// numbers in this writer's byte order.
    pub fn add_value(&mut self, key: impl Into<String>, value: Value<'d>) -> &mut Self {
        self.put(key.into(), Meta::Borrowed(value))
    }

    fn put(&mut self, key: String, value: Meta<'d>) -> &mut Self {
        match self.keys.get(&key) {
            Some(&i) => self.metadata[i].1 = value,
            None => {
                self.keys.insert(key.clone(), self.metadata.len());
                self.metadata.push((key, value));
            }
        }
        self
    }

    /// Adds a tensor of type `ty` with dims in GGUF order (`ne[0]` first)
    /// and its raw bytes.
    ///
    /// Errs (`InvalidInput`) when there are more than [`MAX_DIMS`] dims, a
    /// dim or the element count is above `i64::MAX` (the most a reader
    /// takes), `ne[0]` is not a whole number of the type's
    /// blocks, or `data` is not exactly the type's size for the dims.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ty: GgmlType,
        data: impl Into<Cow<'d, [u8]>>,
    ) -> io::Result<&mut Self> {
        let name = name.into();
        let data = data.into();
        let size = tensor_size(&name, dims, ty)?;
        if size != data.len() as u64 {
            return Err(invalid(format!(
                "tensor '{name}': {} bytes given, {ty} {dims:?} takes {size}",
                data.len()
            )));
        }
        self.tensors.push(TensorSpec {
            name,
            dims: dims.to_vec(),
            ty,
            size,
            data: Some(data),
        });
        Ok(self)
    }

    /// Adds a tensor of type `ty` with dims in GGUF order whose bytes are
    /// given later, after the header, through the [`GgufDataWriter`] that
    /// [`GgufWriter::write_header`] returns. Errs as
    /// [`GgufWriter::add_tensor`] does on the dims.
    pub fn add_tensor_info(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ty: GgmlType,
    ) -> io::Result<&mut Self> {
        let name = name.into();
        let size = tensor_size(&name, dims, ty)?;
        self.tensors.push(TensorSpec {
            name,
            dims: dims.to_vec(),
            ty,
            size,
            data: None,
        });
        Ok(self)
    }

    /// The whole file as bytes; errs as [`GgufWriter::write_to`] does.
    pub fn to_bytes(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.write_to(&mut out)?;
        Ok(out)
    }

    /// Writes the whole file. Errs (`InvalidInput`) on an unknown version, an
    /// alignment that is not a power of two, a `general.alignment` entry
    /// that is not that alignment as a uint32 (added with
    /// [`GgufWriter::add`] instead of set with [`GgufWriter::alignment`]), an
    /// array item not of its array's type, arrays nested deeper than
    /// [`MAX_ARRAY_NESTING`](crate::MAX_ARRAY_NESTING), a tensor name added
    /// twice, a length too large for a v1 file, or a tensor added by
    /// [`GgufWriter::add_tensor_info`] (its bytes are not here); and with the
    /// error of `w`.
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        if let Some(t) = self.tensors.iter().find(|t| t.data.is_none()) {
            return Err(invalid(format!(
                "tensor '{}' has no data here: stream it through write_header",
                t.name
            )));
        }
        self.write_header(w)?.finish()?;
        Ok(())
    }

    /// Writes the header (metadata, tensor table, padding) and the data of
    /// the tensors added with their bytes up to the first one added by
    /// [`GgufWriter::add_tensor_info`]; the returned [`GgufDataWriter`]
    /// takes the bytes of those, in the order they were added. Errs as
    /// [`GgufWriter::write_to`] does.
    pub fn write_header<W: Write>(&self, mut w: W) -> io::Result<GgufDataWriter<'_, 'd, W>> {
        let header = self.header()?;
        w.write_all(&header)?;
        // The padding streamed, not built: an alignment of 2^31 once meant
        // 2 GiB of zeros in memory before the first byte was written.
        let len = header.len() as u64;
        write_zeros(&mut w, len.next_multiple_of(self.alignment) - len)?;
        let mut stream = GgufDataWriter {
            writer: self,
            out: w,
            index: 0,
            written: 0,
        };
        stream.advance()?;
        Ok(stream)
    }

    /// The header, without the padding to the alignment that follows it.
    fn header(&self) -> io::Result<Vec<u8>> {
        if !(1..=3).contains(&self.version) {
            return Err(invalid(format!("version {}", self.version)));
        }
        if !self.alignment.is_power_of_two() {
            return Err(invalid(format!("alignment {}", self.alignment)));
        }
        for (k, v) in &self.metadata {
            if let Meta::Owned(v) = v {
                v.check(0).map_err(|e| invalid(format!("key '{k}': {e}")))?;
            }
        }
        // The alignment a reader takes is the key's: it must be this one
        // (set by `alignment`), or the tensors would be read from the wrong
        // offsets.
        if let Some(&i) = self.keys.get(ALIGNMENT_KEY) {
            let stored = match &self.metadata[i].1 {
                Meta::Owned(MetaValue::U32(a)) => Some(*a),
                Meta::Borrowed(Value::U32(a)) => Some(*a),
                _ => None,
            };
            if stored.map(u64::from) != Some(self.alignment) {
                return Err(invalid(format!(
                    "{ALIGNMENT_KEY} is not the writer's alignment ({}) as a uint32: set it \
                     with GgufWriter::alignment",
                    self.alignment
                )));
            }
        }
        let mut names = std::collections::HashSet::with_capacity(self.tensors.len());
        if let Some(t) = self.tensors.iter().find(|t| !names.insert(t.name.as_str())) {
            return Err(invalid(format!("tensor '{}' is added twice", t.name)));
        }
        let mut e = Emitter {
            out: Vec::new(),
            big: self.endianness == Endianness::Big,
            wide: self.version >= 2,
        };
        e.out.extend_from_slice(&GGUF_MAGIC);
        e.u32(self.version);
        e.len(self.tensors.len() as u64)?;
        e.len(self.metadata.len() as u64)?;
        for (k, v) in &self.metadata {
            e.string(k)?;
            e.u32(v.value_type() as u32);
            match v {
                Meta::Owned(v) => e.value(v)?,
                Meta::Borrowed(v) => e.borrowed(v)?,
            }
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            e.string(&t.name)?;
            e.u32(t.dims.len() as u32);
            for d in &t.dims {
                e.len(*d)?;
            }
            e.u32(t.ty.id());
            e.u64(offset);
            offset = offset
                .checked_add(t.size)
                .and_then(|o| o.checked_next_multiple_of(self.alignment))
                .ok_or_else(|| invalid(format!("tensor '{}': offset overflows", t.name)))?;
        }
        Ok(e.out)
    }
}

/// The byte size of a tensor of type `ty` with these dims, or why it cannot
/// be written.
fn tensor_size(name: &str, dims: &[u64], ty: GgmlType) -> io::Result<u64> {
    if dims.len() > MAX_DIMS {
        return Err(invalid(format!("tensor '{name}': {} dims", dims.len())));
    }
    // A reader takes dims and element counts up to i64::MAX (ggml's int64_t).
    let n = dims
        .iter()
        .try_fold(1u64, |a, d| a.checked_mul(*d))
        .filter(|n| *n <= i64::MAX as u64 && dims.iter().all(|d| *d <= i64::MAX as u64))
        .ok_or_else(|| invalid(format!("tensor '{name}': element count overflows")))?;
    ty.byte_size(n)
        .filter(|_| dims.first().is_none_or(|d| d % ty.block_size() == 0))
        .ok_or_else(|| invalid(format!("tensor '{name}': {n} elements of {ty}")))
}

/// The tensor data of a GGUF file after its header, written in order: what
/// [`GgufWriter::write_header`] returns. Each tensor declared by
/// [`GgufWriter::add_tensor_info`] takes exactly its byte size, in one or
/// more [`GgufDataWriter::write_data`] calls; the padding between tensors,
/// and the tensors whose bytes the writer already holds, are written
/// in between by this type.
pub struct GgufDataWriter<'w, 'd, W: Write> {
    writer: &'w GgufWriter<'d>,
    out: W,
    /// The tensor being written (`tensors.len()` when done).
    index: usize,
    /// Its bytes written so far.
    written: u64,
}

impl<W: Write> GgufDataWriter<'_, '_, W> {
    /// The name and byte size of the tensor whose bytes come next, or `None`
    /// when every tensor is written.
    pub fn next_tensor(&self) -> Option<(&str, u64)> {
        let t = self.writer.tensors.get(self.index)?;
        Some((&t.name, t.size))
    }

    /// Appends bytes to the tensor data, running over into the next tensors
    /// when it completes one. Errs (`InvalidInput`) when more bytes are given
    /// than the tensors still take, and with the output's error.
    pub fn write_data(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let Some(t) = self.writer.tensors.get(self.index) else {
                return Err(invalid(format!(
                    "{} bytes of tensor data beyond the last tensor",
                    bytes.len()
                )));
            };
            let room = usize::try_from(t.size - self.written).unwrap_or(usize::MAX);
            let (now, rest) = bytes.split_at(bytes.len().min(room));
            self.out.write_all(now)?;
            self.written += now.len() as u64;
            bytes = rest;
            self.advance()?;
        }
        Ok(())
    }

    /// Checks that every tensor got all its bytes and returns the output
    /// (not flushed). Errs (`InvalidInput`) naming the first tensor short of
    /// bytes.
    pub fn finish(self) -> io::Result<W> {
        match self.writer.tensors.get(self.index) {
            Some(t) => Err(invalid(format!(
                "tensor '{}': {} of its {} bytes written",
                t.name, self.written, t.size
            ))),
            None => Ok(self.out),
        }
    }

    /// Pads after the tensor just completed and writes the held tensors that
    /// follow, up to the next one still to be streamed.
    fn advance(&mut self) -> io::Result<()> {
        while let Some(t) = self.writer.tensors.get(self.index) {
            match &t.data {
                Some(data) if self.written == 0 => {
                    self.out.write_all(data)?;
                    self.written = t.size;
                }
                _ if self.written < t.size => return Ok(()),
                _ => {}
            }
            write_zeros(
                &mut self.out,
                t.size.next_multiple_of(self.writer.alignment) - t.size,
            )?;
            self.index += 1;
            self.written = 0;
        }
        Ok(())
    }
}

/// Zeros for the padding, written in pieces of this size.
static ZEROS: [u8; 4096] = [0; 4096];

/// Writes `n` zero bytes, a piece at a time.
fn write_zeros<W: Write>(w: &mut W, mut n: u64) -> io::Result<()> {
    while n > 0 {
        let k = n.min(ZEROS.len() as u64);
        w.write_all(&ZEROS[..k as usize])?;
        n -= k;
    }
    Ok(())
}

struct Emitter {
    out: Vec<u8>,
    big: bool,
    wide: bool,
}

impl Emitter {
    fn bytes<const N: usize>(&mut self, le: [u8; N]) {
        if self.big {
            self.out.extend(le.iter().rev());
        } else {
            self.out.extend_from_slice(&le);
        }
    }
    fn u32(&mut self, v: u32) {
        self.bytes(v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.bytes(v.to_le_bytes());
    }
    fn len(&mut self, v: u64) -> io::Result<()> {
        if self.wide {
            self.u64(v);
        } else {
            let v = u32::try_from(v).map_err(|_| invalid(format!("length {v} in a v1 file")))?;
            self.u32(v);
        }
        Ok(())
    }
    fn string(&mut self, s: &str) -> io::Result<()> {
        self.raw_string(s.as_bytes())
    }
    fn raw_string(&mut self, s: &[u8]) -> io::Result<()> {
        self.len(s.len() as u64)?;
        self.out.extend_from_slice(s);
        Ok(())
    }
    fn value(&mut self, v: &MetaValue) -> io::Result<()> {
        match v {
            MetaValue::U8(x) => self.bytes(x.to_le_bytes()),
            MetaValue::I8(x) => self.bytes(x.to_le_bytes()),
            MetaValue::U16(x) => self.bytes(x.to_le_bytes()),
            MetaValue::I16(x) => self.bytes(x.to_le_bytes()),
            MetaValue::U32(x) => self.bytes(x.to_le_bytes()),
            MetaValue::I32(x) => self.bytes(x.to_le_bytes()),
            MetaValue::F32(x) => self.bytes(x.to_le_bytes()),
            MetaValue::Bool(x) => self.out.push(u8::from(*x)),
            MetaValue::String(s) => self.string(s)?,
            MetaValue::Array(ty, items) => {
                self.u32(*ty as u32);
                self.len(items.len() as u64)?;
                // Items are written bare; a nested array brings its own
                // element type and length.
                for item in items {
                    self.value(item)?;
                }
            }
            MetaValue::U64(x) => self.bytes(x.to_le_bytes()),
            MetaValue::I64(x) => self.bytes(x.to_le_bytes()),
            MetaValue::F64(x) => self.bytes(x.to_le_bytes()),
        }
        Ok(())
    }
    /// A value of a parsed file, written as [`Emitter::value`] writes its
    /// owned copy, item by item without one.
    fn borrowed(&mut self, v: &Value<'_>) -> io::Result<()> {
        match *v {
            Value::U8(x) => self.bytes(x.to_le_bytes()),
            Value::I8(x) => self.bytes(x.to_le_bytes()),
            Value::U16(x) => self.bytes(x.to_le_bytes()),
            Value::I16(x) => self.bytes(x.to_le_bytes()),
            Value::U32(x) => self.bytes(x.to_le_bytes()),
            Value::I32(x) => self.bytes(x.to_le_bytes()),
            Value::F32(x) => self.bytes(x.to_le_bytes()),
            Value::Bool(x) => self.out.push(u8::from(x)),
            Value::String(s) => self.raw_string(s.as_bytes())?,
            Value::Array(a) => {
                self.u32(a.elem_type() as u32);
                self.len(a.len())?;
                let same = Encoding {
                    big_endian: self.big,
                    wide_lengths: self.wide,
                };
                if a.encoding() == same {
                    // Its items as they would be written here, item by
                    // item (the parse walked them in this encoding): at
                    // once. (Gemma-3's tokenizer keys, 6.5 MB: written in
                    // 15.5 ms item by item, 5.2 ms so.)
                    self.out.extend_from_slice(a.raw_bytes());
                } else {
                    for item in a.iter() {
                        self.borrowed(&item)?;
                    }
                }
            }
            Value::U64(x) => self.bytes(x.to_le_bytes()),
            Value::I64(x) => self.bytes(x.to_le_bytes()),
            Value::F64(x) => self.bytes(x.to_le_bytes()),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::GgufFile;

    /// A writer with held tensors (`held`) or declared ones, the same data.
    fn sample(held: &[bool]) -> (GgufWriter<'static>, Vec<Vec<u8>>) {
        let mut w = GgufWriter::new().alignment(64);
        w.add("general.architecture", MetaValue::String("llama".into()));
        let mut datas = Vec::new();
        for (i, &h) in held.iter().enumerate() {
            let n = [3u64, 0, 17, 64][i % 4];
            let data: Vec<u8> = (0..n * 4).map(|b| (b as u8) ^ (i as u8)).collect();
            let name = format!("t{i}");
            if h {
                w.add_tensor(name, &[n], GgmlType::F32, data.clone())
                    .unwrap();
            } else {
                w.add_tensor_info(name, &[n], GgmlType::F32).unwrap();
            }
            datas.push(data);
        }
        (w, datas)
    }

    #[test]
    fn streamed_file_is_byte_identical_to_the_held_one() {
        let pattern = [true, false, false, true, false, true, true, false];
        let (all_held, _) = sample(&[true; 8]);
        let want = all_held.to_bytes().unwrap();
        let (w, datas) = sample(&pattern);
        let mut s = w.write_header(Vec::new()).unwrap();
        for (i, data) in datas.iter().enumerate() {
            // Held tensors are written by the writer, and so are declared
            // ones of no bytes.
            if pattern[i] || data.is_empty() {
                continue;
            }
            let (name, size) = s.next_tensor().unwrap();
            assert_eq!((name, size), (format!("t{i}").as_str(), data.len() as u64));
            // In uneven pieces.
            for piece in data.chunks(5) {
                s.write_data(piece).unwrap();
            }
        }
        assert_eq!(s.next_tensor(), None);
        let got = s.finish().unwrap();
        assert_eq!(got, want);
        let f = GgufFile::parse(&got).unwrap();
        assert_eq!(f.tensors().len(), 8);
    }

    #[test]
    fn one_write_may_span_tensors() {
        let (w, datas) = sample(&[false; 3]);
        let mut s = w.write_header(Vec::new()).unwrap();
        s.write_data(&datas.concat()).unwrap();
        let (held, _) = sample(&[true; 3]);
        assert_eq!(s.finish().unwrap(), held.to_bytes().unwrap());
    }

    #[test]
    fn too_many_or_too_few_bytes_are_errors() {
        let (w, datas) = sample(&[false; 2]);
        let mut s = w.write_header(Vec::new()).unwrap();
        let err = s
            .write_data(&vec![0; datas.concat().len() + 1])
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("beyond the last tensor"), "{err}");

        let mut s = w.write_header(Vec::new()).unwrap();
        s.write_data(&[1, 2, 3]).unwrap();
        let err = s.finish().unwrap_err();
        assert!(
            err.to_string().contains("tensor 't0': 3 of its 12 bytes"),
            "{err}"
        );
    }

    #[test]
    fn write_to_refuses_declared_tensors() {
        let (w, _) = sample(&[true, false]);
        let err = w.to_bytes().unwrap_err();
        assert!(err.to_string().contains("tensor 't1' has no data"), "{err}");
    }

    #[test]
    fn padding_larger_than_the_zero_buffer() {
        let mut w = GgufWriter::new().alignment(1 << 16);
        w.add_tensor_info("a", &[1], GgmlType::F32).unwrap();
        w.add_tensor("b", &[1], GgmlType::F32, vec![1u8; 4])
            .unwrap();
        let mut s = w.write_header(Vec::new()).unwrap();
        s.write_data(&[2; 4]).unwrap();
        let bytes = s.finish().unwrap();
        let f = GgufFile::parse(&bytes).unwrap();
        assert_eq!(f.tensors()[1].offset, 1 << 16);
        assert_eq!(bytes.len() as u64, f.data_offset + (2 << 16));
    }

    /// The padding after the header is streamed: an alignment of 2^31 once
    /// built 2 GiB of zeros in memory (an abort under a memory limit).
    #[test]
    fn the_padding_after_the_header_is_streamed() {
        struct Count(u64, usize);
        impl Write for Count {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.0 += b.len() as u64;
                self.1 = self.1.max(b.len());
                Ok(b.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let w = GgufWriter::new().alignment(1 << 31);
        let mut out = Count(0, 0);
        w.write_header(&mut out).unwrap().finish().unwrap();
        assert_eq!(out.0, 1 << 31);
        assert!(out.1 <= 4096, "a write of {} bytes", out.1);
    }
}

#[cfg(test)]
mod copy_tests {
    use super::*;
    use crate::format::GgufFile;

    /// The repository's fixtures `all_types_le.gguf` and `all_types_be.gguf`,
    /// or `None`, saying so, where the crate is built from its package
    /// (which carries no test data).
    fn fixtures() -> Option<[Vec<u8>; 2]> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
        if !dir.is_dir() {
            eprintln!(
                "skipped: {} is not here (the repository's tests)",
                dir.display()
            );
            return None;
        }
        Some(["le", "be"].map(|e| std::fs::read(dir.join(format!("all_types_{e}.gguf"))).unwrap()))
    }

    /// A file's metadata and tensors copied through `add_value`, in its
    /// layout.
    fn copy(src: &GgufFile<'_>, bytes: &[u8]) -> Vec<u8> {
        let mut w = GgufWriter::new();
        w.alignment = src.alignment;
        for (k, v) in src.metadata.iter() {
            w.add_value(k, *v);
        }
        for t in src.tensors() {
            w.add_tensor(t.name, t.ne(), t.ty, &bytes[t.file_range()])
                .unwrap();
        }
        w.to_bytes().unwrap()
    }

    #[test]
    fn borrowed_values_copy_a_file_byte_for_byte() {
        let Some([le, _]) = fixtures() else { return };
        let src = GgufFile::parse(&le).unwrap();
        assert_eq!(copy(&src, &le), le);
    }

    #[test]
    fn borrowed_values_of_a_big_endian_file_are_written_in_the_writer_order() {
        let Some([le_bytes, be_bytes]) = fixtures() else {
            return;
        };
        let be = GgufFile::parse(&be_bytes).unwrap();
        let le = GgufFile::parse(&le_bytes).unwrap();
        let copied = copy(&be, &be_bytes);
        let f = GgufFile::parse(&copied).unwrap();
        assert_eq!(f.endianness, Endianness::Little);
        for ((k, v), (k2, v2)) in f.metadata.iter().zip(le.metadata.iter()) {
            assert_eq!(k, k2);
            assert_eq!(format!("{v:?}"), format!("{v2:?}"), "{k}");
        }
    }
}
