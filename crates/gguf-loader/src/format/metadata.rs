//! Metadata values as zero-copy views into the file bytes.

use std::collections::HashMap;
use std::fmt;

use super::cursor::{Cursor, Encoding, Fail};
use super::error::{Escaped, FormatErrorKind};
use super::types::ValueType;

/// Arrays nested deeper than this are rejected; it bounds the recursion of
/// every walk over a value.
pub const MAX_ARRAY_NESTING: usize = 64;

/// A GGUF string: bytes in the file, UTF-8 by the spec but checked only when
/// asked for as `&str`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GgufStr<'a>(pub &'a [u8]);

impl<'a> GgufStr<'a> {
    /// The bytes as stored, borrowed from the file.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    /// The text, borrowed from the file; errs when it is not UTF-8.
    ///
    /// Under a memory map the bytes are the file's own: another process
    /// rewriting the file while it is mapped could change them after this
    /// check (see the crate's safety notes and [`LoadMode::Read`](crate::LoadMode::Read)).
    pub fn to_str(&self) -> Result<&'a str, std::str::Utf8Error> {
        std::str::from_utf8(self.0)
    }

    /// The text, with invalid UTF-8 replaced by U+FFFD.
    pub fn to_string_lossy(&self) -> std::borrow::Cow<'a, str> {
        String::from_utf8_lossy(self.0)
    }
}

impl fmt::Debug for GgufStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string_lossy(), f)
    }
}

impl fmt::Display for GgufStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_string_lossy())
    }
}

/// One metadata value. Strings and arrays borrow the file bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
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
    /// `bool` (stored as a byte, 0 or 1).
    Bool(bool),
    /// `string`: a view of its bytes.
    String(GgufStr<'a>),
    /// `array`: a view of its elements.
    Array(ArrayView<'a>),
    /// `uint64`.
    U64(u64),
    /// `int64`.
    I64(i64),
    /// `float64`.
    F64(f64),
}

impl<'a> Value<'a> {
    /// Its type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// Any integer value that is non-negative, widened to u64.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer value, widened to i64 when it fits.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::U64(v) => i64::try_from(v).ok(),
            Value::I8(v) => Some(v.into()),
            Value::I16(v) => Some(v.into()),
            Value::I32(v) => Some(v.into()),
            Value::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// Any float value, widened to f64.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => None,
        }
    }

    /// The string, or `None` for any other type.
    pub fn as_str(&self) -> Option<GgufStr<'a>> {
        match *self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The array, or `None` for any other type.
    pub fn as_array(&self) -> Option<ArrayView<'a>> {
        match *self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// An array value: its element type, length, and the bytes of its elements
/// in the file. Iterating decodes elements on the fly; nothing is copied.
#[derive(Clone, Copy)]
pub struct ArrayView<'a> {
    elem_type: ValueType,
    len: u64,
    bytes: &'a [u8],
    enc: Encoding,
}

impl PartialEq for ArrayView<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.elem_type == other.elem_type
            && self.len == other.len
            && self.iter().zip(other.iter()).all(|(a, b)| a == b)
    }
}

/// The value as one would write it: integers and booleans as Rust prints
/// them, floats as Rust's `{:?}` does (`1.0`, `1e-5`, `NaN`), strings in
/// double quotes with `"` and `\\` escaped and the characters
/// [`Escaped`](super::Escaped) escapes (control, bidirectional, invisible)
/// escaped as it does, bytes that are not UTF-8 as U+FFFD; arrays in full
/// as `[1, 2, 3]`. A whole vocabulary is megabytes of text: clip a long
/// array yourself (`ArrayView::iter().take(n)`).
impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::U8(v) => write!(f, "{v}"),
            Value::I8(v) => write!(f, "{v}"),
            Value::U16(v) => write!(f, "{v}"),
            Value::I16(v) => write!(f, "{v}"),
            Value::U32(v) => write!(f, "{v}"),
            Value::I32(v) => write!(f, "{v}"),
            Value::U64(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::F32(v) => write!(f, "{v:?}"),
            Value::F64(v) => write!(f, "{v:?}"),
            Value::String(s) => {
                f.write_str("\"")?;
                for part in s.to_string_lossy().split_inclusive(['"', '\\']) {
                    match part.strip_suffix(['"', '\\']) {
                        Some(head) => {
                            write!(f, "{}\\", super::Escaped(head))?;
                            f.write_str(&part[head.len()..])?;
                        }
                        None => write!(f, "{}", super::Escaped(part))?,
                    }
                }
                f.write_str("\"")
            }
            Value::Array(a) => {
                f.write_str("[")?;
                for (i, e) in a.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{e}")?;
                }
                f.write_str("]")
            }
        }
    }
}

impl fmt::Debug for ArrayView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}; {}]", self.elem_type, self.len)
    }
}

impl<'a> ArrayView<'a> {
    /// The type of every element.
    pub fn elem_type(&self) -> ValueType {
        self.elem_type
    }

    /// The number of elements.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The raw element bytes in the file (in the file's byte order).
    pub fn raw_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The byte order and length width of [`ArrayView::raw_bytes`].
    pub(crate) fn encoding(&self) -> Encoding {
        self.enc
    }

    /// The elements, decoded one by one.
    pub fn iter(&self) -> ArrayIter<'a> {
        ArrayIter {
            cursor: Cursor::new(self.bytes, 0, self.enc),
            elem_type: self.elem_type,
            left: self.len,
        }
    }

    /// The elements of a string array; empty for any other element type.
    pub fn strings(&self) -> impl Iterator<Item = GgufStr<'a>> + 'a {
        let n = if self.elem_type == ValueType::String {
            self.len
        } else {
            0
        };
        let mut cursor = Cursor::new(self.bytes, 0, self.enc);
        (0..n).map_while(move |_| {
            let len = cursor.len("string length").ok()?;
            cursor.take(len, "string").ok().map(GgufStr)
        })
    }
}

/// Iterator over an array's elements.
pub struct ArrayIter<'a> {
    cursor: Cursor<'a>,
    elem_type: ValueType,
    left: u64,
}

impl<'a> Iterator for ArrayIter<'a> {
    type Item = Value<'a>;

    fn next(&mut self) -> Option<Value<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // The bytes were validated when the file was opened; a failure here
        // cannot happen, and would end the iteration rather than panic.
        read_value(&mut self.cursor, self.elem_type, 1).ok()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = usize::try_from(self.left).unwrap_or(usize::MAX);
        (n, Some(n))
    }
}

/// Reads one value of type `ty`. Strings and arrays become views; arrays are
/// walked once to find their end and to validate every element.
pub(crate) fn read_value<'a>(
    c: &mut Cursor<'a>,
    ty: ValueType,
    depth: usize,
) -> Result<Value<'a>, Fail> {
    let enc = c.enc;
    Ok(match ty {
        ValueType::U8 => Value::U8(c.u8("u8 value")?),
        ValueType::I8 => Value::I8(c.u8("i8 value")? as i8),
        ValueType::U16 => Value::U16(c.u16("u16 value")?),
        ValueType::I16 => Value::I16(c.u16("i16 value")? as i16),
        ValueType::U32 => Value::U32(c.u32("u32 value")?),
        ValueType::I32 => Value::I32(c.u32("i32 value")? as i32),
        ValueType::F32 => Value::F32(f32::from_bits(c.u32("f32 value")?)),
        ValueType::U64 => Value::U64(c.u64("u64 value")?),
        ValueType::I64 => Value::I64(c.u64("i64 value")? as i64),
        ValueType::F64 => Value::F64(f64::from_bits(c.u64("f64 value")?)),
        ValueType::Bool => {
            let at = c.pos();
            match c.u8("bool value")? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err((at, FormatErrorKind::InvalidBool(b))),
            }
        }
        ValueType::String => {
            let len = c.len("string length")?;
            Value::String(GgufStr(c.take(len, "string")?))
        }
        ValueType::Array => {
            if depth >= MAX_ARRAY_NESTING {
                return Err((c.pos(), FormatErrorKind::NestingTooDeep(MAX_ARRAY_NESTING)));
            }
            let at = c.pos();
            let raw = c.u32("array element type")?;
            let elem_type =
                ValueType::from_id(raw).ok_or((at, FormatErrorKind::UnknownValueType(raw)))?;
            let len = c.len("array length")?;
            let start = c.pos();
            let bytes = skip_elements(c, elem_type, len, depth)?;
            debug_assert_eq!(c.pos() - start, bytes.len() as u64);
            Value::Array(ArrayView {
                elem_type,
                len,
                bytes,
                enc,
            })
        }
    })
}

/// Walks `len` elements of `elem_type`, validating them, and returns their bytes.
fn skip_elements<'a>(
    c: &mut Cursor<'a>,
    elem_type: ValueType,
    len: u64,
    depth: usize,
) -> Result<&'a [u8], Fail> {
    let start = c.pos();
    match elem_type.fixed_size() {
        Some(size) => {
            c.check_count(len, size, "array length")?;
            let bytes = c.take(len * size, "array")?;
            if elem_type == ValueType::Bool {
                if let Some(i) = bytes.iter().position(|b| *b > 1) {
                    return Err((start + i as u64, FormatErrorKind::InvalidBool(bytes[i])));
                }
            }
        }
        None if elem_type == ValueType::String => c.skip_strings(len)?,
        None => {
            // An element array takes at least its type and its length.
            c.check_count(len, 4 + c.enc.len_width(), "array length")?;
            for _ in 0..len {
                read_value(c, ValueType::Array, depth + 1)?;
            }
        }
    }
    Ok(c.slice_from(start))
}

/// The key that names a model's architecture.
pub const ARCHITECTURE_KEY: &str = "general.architecture";

/// The metadata of a file: key–value pairs in file order, with lookup by key.
#[derive(Debug, Clone, Default)]
pub struct Metadata<'a> {
    entries: Vec<(&'a str, Value<'a>)>,
    index: HashMap<&'a str, usize>,
}

/// A failed typed lookup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetadataError {
    /// No entry has this key.
    #[error("metadata key '{}' is missing", Escaped(.0))]
    Missing(String),
    /// The entry holds another type.
    #[error("metadata key '{}' is {found}, expected {expected}", Escaped(key))]
    WrongType {
        /// The key.
        key: String,
        /// The type asked for.
        expected: &'static str,
        /// The type stored.
        found: ValueType,
    },
    /// The entry is an array of another element type.
    #[error(
        "metadata key '{}' is an array of {found}, expected {expected}",
        Escaped(key)
    )]
    WrongElementType {
        /// The key.
        key: String,
        /// The type asked for (`array of ...`).
        expected: &'static str,
        /// The element type stored.
        found: ValueType,
    },
    /// An integer does not fit the type asked for.
    #[error(
        "metadata key '{}' is {value}, which does not fit {expected}",
        Escaped(key)
    )]
    OutOfRange {
        /// The key.
        key: String,
        /// The type asked for.
        expected: &'static str,
        /// The stored value.
        value: i128,
    },
    /// A string (or, with `index`, an element of a string array) is not UTF-8.
    #[error("metadata key '{}'{}: not valid UTF-8", Escaped(key), index.map(|i| format!(" element {i}")).unwrap_or_default())]
    NotUtf8 {
        /// The key.
        key: String,
        /// The array element, for string arrays.
        index: Option<u64>,
    },
}

macro_rules! getter {
    ($(#[$m:meta])* $name:ident, $variant:ident, $t:ty) => {
        $(#[$m])*
        ///
        /// Errs when the key is missing ([`MetadataError::Missing`]) or holds
        /// another type ([`MetadataError::WrongType`]): the stored type must
        /// match exactly (see [`Metadata::get_uint`] for any integer width).
        pub fn $name(&self, key: &str) -> Result<$t, MetadataError> {
            match self.require(key)? {
                Value::$variant(v) => Ok(*v),
                other => Err(wrong(key, ValueType::$variant.name(), other)),
            }
        }
    };
}

fn wrong(key: &str, expected: &'static str, found: &Value<'_>) -> MetadataError {
    MetadataError::WrongType {
        key: key.to_string(),
        expected,
        found: found.value_type(),
    }
}

impl<'a> Metadata<'a> {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Metadata {
            entries: Vec::with_capacity(n),
            index: HashMap::with_capacity(n),
        }
    }

    /// Adds an entry; `false` when the key is already present.
    pub(crate) fn insert(&mut self, key: &'a str, value: Value<'a>) -> bool {
        if self.index.contains_key(key) {
            return false;
        }
        self.index.insert(key, self.entries.len());
        self.entries.push((key, value));
        true
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the file has no metadata.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in file order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&'a str, &Value<'a>)> + '_ {
        self.entries.iter().map(|(k, v)| (*k, v))
    }

    /// The keys in file order.
    pub fn keys(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.entries.iter().map(|(k, _)| *k)
    }

    /// The value under `key`, of whatever type; `None` when missing. The
    /// typed getters below err instead, naming the key.
    pub fn get(&self, key: &str) -> Option<&Value<'a>> {
        self.index.get(key).map(|i| &self.entries[*i].1)
    }

    /// True when an entry has this key.
    pub fn contains_key(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    fn require(&self, key: &str) -> Result<&Value<'a>, MetadataError> {
        self.get(key)
            .ok_or_else(|| MetadataError::Missing(key.to_string()))
    }

    getter!(
        /// The `uint8` under `key`.
        get_u8,
        U8,
        u8
    );
    getter!(
        /// The `int8` under `key`.
        get_i8,
        I8,
        i8
    );
    getter!(
        /// The `uint16` under `key`.
        get_u16,
        U16,
        u16
    );
    getter!(
        /// The `int16` under `key`.
        get_i16,
        I16,
        i16
    );
    getter!(
        /// The `uint32` under `key`.
        get_u32,
        U32,
        u32
    );
    getter!(
        /// The `int32` under `key`.
        get_i32,
        I32,
        i32
    );
    getter!(
        /// The `uint64` under `key`.
        get_u64,
        U64,
        u64
    );
    getter!(
        /// The `int64` under `key`.
        get_i64,
        I64,
        i64
    );
    getter!(
        /// The `float32` under `key`.
        get_f32,
        F32,
        f32
    );
    getter!(
        /// The `float64` under `key`.
        get_f64,
        F64,
        f64
    );
    getter!(
        /// The `bool` under `key`.
        get_bool,
        Bool,
        bool
    );
    getter!(
        /// The array under `key`; iterate it with [`ArrayView::iter`] or
        /// [`ArrayView::strings`].
        get_array,
        Array,
        ArrayView<'a>
    );

    /// The string under `key`, checked to be UTF-8.
    pub fn get_str(&self, key: &str) -> Result<&'a str, MetadataError> {
        match self.require(key)? {
            Value::String(s) => s.to_str().map_err(|_| MetadataError::NotUtf8 {
                key: key.to_string(),
                index: None,
            }),
            other => Err(wrong(key, "string", other)),
        }
    }

    /// Any non-negative integer under `key` that fits a u32, whatever its
    /// stored width.
    pub fn get_u32_any(&self, key: &str) -> Result<u32, MetadataError> {
        let v = self.get_uint(key)?;
        u32::try_from(v).map_err(|_| MetadataError::OutOfRange {
            key: key.to_string(),
            expected: "uint32",
            value: i128::from(v),
        })
    }

    /// The array under `key` with elements of type `elem`.
    fn typed_array(
        &self,
        key: &str,
        elem: ValueType,
        expected: &'static str,
    ) -> Result<ArrayView<'a>, MetadataError> {
        let a = self.get_array(key)?;
        if a.elem_type() != elem {
            return Err(MetadataError::WrongElementType {
                key: key.to_string(),
                expected,
                found: a.elem_type(),
            });
        }
        Ok(a)
    }

    /// The elements of the array under `key`, of type `elem`, copied out
    /// through `pick`.
    /// The elements of a 4-byte array under `key` (of type `elem`), each
    /// made from its word by `from_bits`: a pass over the raw bytes, in the
    /// file's byte order (a 262,144-token vocabulary's scores in 0.1 ms,
    /// not the 3 ms of decoding them one by one as values).
    fn words<X>(
        &self,
        key: &str,
        elem: ValueType,
        expected: &'static str,
        from_bits: fn(u32) -> X,
    ) -> Result<Vec<X>, MetadataError> {
        let a = self.typed_array(key, elem, expected)?;
        // (Validated on opening: `len` elements of 4 bytes.)
        let (words, _) = a.raw_bytes().as_chunks::<4>();
        Ok(if a.encoding().big_endian {
            words
                .iter()
                .map(|&w| from_bits(u32::from_be_bytes(w)))
                .collect()
        } else {
            words
                .iter()
                .map(|&w| from_bits(u32::from_le_bytes(w)))
                .collect()
        })
    }

    /// The f32 array under `key` (e.g. `tokenizer.ggml.scores`), copied out.
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>, MetadataError> {
        self.words(key, ValueType::F32, "array of float32", f32::from_bits)
    }

    /// The i32 array under `key` (e.g. `tokenizer.ggml.token_type`), copied out.
    pub fn get_i32_array(&self, key: &str) -> Result<Vec<i32>, MetadataError> {
        self.words(key, ValueType::I32, "array of int32", |w| w as i32)
    }

    /// The string array under `key` (e.g. `tokenizer.ggml.tokens`) as
    /// `&str`s borrowed from the file, each checked to be UTF-8.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&'a str>, MetadataError> {
        let a = self.typed_array(key, ValueType::String, "array of string")?;
        a.strings()
            .enumerate()
            .map(|(i, s)| {
                s.to_str().map_err(|_| MetadataError::NotUtf8 {
                    key: key.to_string(),
                    index: Some(i as u64),
                })
            })
            .collect()
    }

    /// `general.architecture` (e.g. `"llama"`, `"gemma3"`), the prefix of
    /// the model's hyper-parameter keys.
    pub fn architecture(&self) -> Result<&'a str, MetadataError> {
        self.get_str(ARCHITECTURE_KEY)
    }

    /// `{general.architecture}.{key}`: `arch_key("block_count")` is
    /// `"llama.block_count"` in a llama model, `"gemma3.block_count"` in a
    /// Gemma 3.
    pub fn arch_key(&self, key: &str) -> Result<String, MetadataError> {
        Ok(format!("{}.{key}", self.architecture()?))
    }

    /// The value under `{general.architecture}.{key}`.
    pub fn arch_get(&self, key: &str) -> Result<&Value<'a>, MetadataError> {
        self.require(&self.arch_key(key)?)
    }

    /// `{arch}.{key}` as a u32, whatever integer width it is stored in
    /// (`metadata.arch_u32("block_count")`).
    pub fn arch_u32(&self, key: &str) -> Result<u32, MetadataError> {
        self.get_u32_any(&self.arch_key(key)?)
    }

    /// `{arch}.{key}` as a u64, whatever integer width it is stored in.
    pub fn arch_u64(&self, key: &str) -> Result<u64, MetadataError> {
        self.get_uint(&self.arch_key(key)?)
    }

    /// `{arch}.{key}` as an f32 (stored as f32, f64 or an integer), e.g.
    /// `arch_f32("rope.freq_base")`.
    pub fn arch_f32(&self, key: &str) -> Result<f32, MetadataError> {
        self.get_float(&self.arch_key(key)?).map(|x| x as f32)
    }

    /// `{arch}.{key}` as a UTF-8 string.
    pub fn arch_str(&self, key: &str) -> Result<&'a str, MetadataError> {
        self.get_str(&self.arch_key(key)?)
    }

    /// Any non-negative integer under `key`, whatever its stored width
    /// (llama.cpp's keys are written as u32 by some tools and u64 or i32 by others).
    pub fn get_uint(&self, key: &str) -> Result<u64, MetadataError> {
        let v = self.require(key)?;
        v.as_u64()
            .ok_or_else(|| wrong(key, "non-negative integer", v))
    }

    /// Any float or integer under `key`, as f64 (the nearest, for integers
    /// beyond 2^53).
    pub fn get_float(&self, key: &str) -> Result<f64, MetadataError> {
        let v = self.require(key)?;
        v.as_f64()
            .or_else(|| v.as_i64().map(|i| i as f64))
            // A u64 above i64::MAX.
            .or_else(|| v.as_u64().map(|u| u as f64))
            .ok_or_else(|| wrong(key, "number", v))
    }
}
