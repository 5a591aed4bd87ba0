//! Writing GGUF files: metadata of every type and tensors of any ggml type as
//! raw bytes, in any version and byte order.

use std::borrow::Cow;
use std::io::{self, Write};

use super::file::{Endianness, ALIGNMENT_KEY, DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_DIMS};
use super::metadata::Value;
use super::types::GgmlType;
use super::types::ValueType;

/// An owned metadata value, for writing.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(ValueType, Vec<MetaValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl MetaValue {
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
    fn check(&self) -> io::Result<()> {
        if let MetaValue::Array(ty, items) = self {
            for item in items {
                if item.value_type() != *ty {
                    return Err(invalid(format!(
                        "array of {ty} holds a {}",
                        item.value_type()
                    )));
                }
                item.check()?;
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
    data: Cow<'d, [u8]>,
}

/// Builds a GGUF file in memory and writes it out.
///
/// ```
/// use gguf_loader::format::{GgufWriter, GgmlType, MetaValue};
/// let mut w = GgufWriter::new();
/// w.add("general.architecture", MetaValue::String("llama".into()));
/// w.add_tensor("x", &[4], GgmlType::F32, vec![0u8; 16]).unwrap();
/// let bytes = w.to_bytes().unwrap();
/// let file = gguf_loader::format::GgufFile::parse(&bytes).unwrap();
/// assert_eq!(file.tensors()[0].name, "x");
/// ```
pub struct GgufWriter<'d> {
    version: u32,
    endianness: Endianness,
    alignment: u64,
    metadata: Vec<(String, MetaValue)>,
    tensors: Vec<TensorSpec<'d>>,
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
        self.metadata.retain(|(k, _)| k != ALIGNMENT_KEY);
        if u64::from(alignment) != DEFAULT_ALIGNMENT {
            self.metadata
                .push((ALIGNMENT_KEY.to_string(), MetaValue::U32(alignment)));
        }
        self
    }

    /// Adds a metadata entry, replacing one with the same key.
    pub fn add(&mut self, key: impl Into<String>, value: MetaValue) -> &mut Self {
        let key = key.into();
        match self.metadata.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key, value)),
        }
        self
    }

    /// Adds a tensor of type `ty` with dims in GGUF order (`ne[0]` first)
    /// and its raw bytes, which must be exactly the type's size for the dims.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ty: GgmlType,
        data: impl Into<Cow<'d, [u8]>>,
    ) -> io::Result<&mut Self> {
        let name = name.into();
        let data = data.into();
        if dims.len() > MAX_DIMS {
            return Err(invalid(format!("tensor '{name}': {} dims", dims.len())));
        }
        let n = dims
            .iter()
            .try_fold(1u64, |a, d| a.checked_mul(*d))
            .ok_or_else(|| invalid(format!("tensor '{name}': element count overflows")))?;
        let want = ty
            .byte_size(n)
            .filter(|_| dims.first().is_none_or(|d| d % ty.block_size() == 0))
            .ok_or_else(|| invalid(format!("tensor '{name}': {n} elements of {ty}")))?;
        if want != data.len() as u64 {
            return Err(invalid(format!(
                "tensor '{name}': {} bytes given, {ty} {dims:?} takes {want}",
                data.len()
            )));
        }
        self.tensors.push(TensorSpec {
            name,
            dims: dims.to_vec(),
            ty,
            data,
        });
        Ok(self)
    }

    /// The whole file as bytes.
    pub fn to_bytes(&self) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.write_to(&mut out)?;
        Ok(out)
    }

    /// Writes the whole file.
    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        if !(1..=3).contains(&self.version) {
            return Err(invalid(format!("version {}", self.version)));
        }
        if !self.alignment.is_power_of_two() {
            return Err(invalid(format!("alignment {}", self.alignment)));
        }
        for (_, v) in &self.metadata {
            v.check()?;
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
            e.value(v)?;
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
            offset = (offset + t.data.len() as u64).next_multiple_of(self.alignment);
        }
        let pad = |n: usize| (n as u64).next_multiple_of(self.alignment) as usize - n;
        let header_pad = pad(e.out.len());
        e.out.resize(e.out.len() + header_pad, 0);
        w.write_all(&e.out)?;
        for t in &self.tensors {
            w.write_all(&t.data)?;
            w.write_all(&vec![0u8; pad(t.data.len())])?;
        }
        Ok(())
    }
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
        self.len(s.len() as u64)?;
        self.out.extend_from_slice(s.as_bytes());
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
}
