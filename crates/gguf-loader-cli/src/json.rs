//! JSON written as a stream: `Serialize` views over the file's values that
//! serde_json writes straight to the output, element by element, so that
//! memory stays bounded by a small constant whatever the file holds (a
//! 10^8-element array, a million tensors, a gigabyte string).

use std::io::{self, Write};

use gguf_loader::{Metadata, TensorInfo, Value};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::Serialize;

use crate::text::Lossy;

/// Writes `value` as one line of JSON.
pub fn write_line(out: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    writeln!(out)
}

/// A float; NaN and the infinities, which JSON lacks, as the strings
/// `"NaN"`, `"Infinity"`, `"-Infinity"` (as gguf-py's dump does).
pub fn float<S: Serializer>(x: f64, s: S) -> Result<S::Ok, S::Error> {
    if x.is_nan() {
        s.serialize_str("NaN")
    } else if x.is_infinite() {
        s.serialize_str(if x > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        s.serialize_f64(x)
    }
}

/// A metadata value: numbers, booleans, strings (invalid UTF-8 replaced by
/// U+FFFD, streamed), arrays element by element.
pub struct JsonValue<'v, 'a>(pub &'v Value<'a>);

impl Serialize for JsonValue<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match *self.0 {
            Value::U8(x) => s.serialize_u8(x),
            Value::I8(x) => s.serialize_i8(x),
            Value::U16(x) => s.serialize_u16(x),
            Value::I16(x) => s.serialize_i16(x),
            Value::U32(x) => s.serialize_u32(x),
            Value::I32(x) => s.serialize_i32(x),
            Value::U64(x) => s.serialize_u64(x),
            Value::I64(x) => s.serialize_i64(x),
            Value::F32(x) => float(x.into(), s),
            Value::F64(x) => float(x, s),
            Value::Bool(x) => s.serialize_bool(x),
            Value::String(g) => s.collect_str(&Lossy(g.as_bytes())),
            Value::Array(a) => {
                let mut seq = s.serialize_seq(None)?;
                for e in a.iter() {
                    seq.serialize_element(&JsonValue(&e))?;
                }
                seq.end()
            }
        }
    }
}

/// Every metadata entry, in file order, as one object.
pub struct JsonMetadata<'m, 'a>(pub &'m Metadata<'a>);

impl Serialize for JsonMetadata<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (k, v) in self.0.iter() {
            map.serialize_entry(k, &JsonValue(v))?;
        }
        map.end()
    }
}

/// Each metadata key's GGUF type (`uint32`, `float32`, `string`, …;
/// `array[ELEMENT]` for an array): what the values alone cannot say (a
/// float, an integer; NaN or the string "NaN").
pub struct JsonMetadataTypes<'m, 'a>(pub &'m Metadata<'a>);

impl Serialize for JsonMetadataTypes<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (k, v) in self.0.iter() {
            match v {
                Value::Array(a) => map.serialize_entry(k, &format!("array[{}]", a.elem_type()))?,
                other => map.serialize_entry(k, other.value_type().name())?,
            }
        }
        map.end()
    }
}

/// One tensor: name, type, `ne` (GGUF order, fastest first), `shape`
/// (row-major, slowest first), absolute offset in its file, bytes.
pub struct JsonTensor<'t, 'a>(pub &'t TensorInfo<'a>);

impl Serialize for JsonTensor<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = self.0;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("name", t.name)?;
        map.serialize_entry("type", t.ty.name())?;
        map.serialize_entry("ne", t.ne())?;
        map.serialize_entry("shape", &Seq(|| t.ne().iter().rev()))?;
        map.serialize_entry("offset", &t.file_offset)?;
        map.serialize_entry("n_bytes", &t.n_bytes)?;
        map.end()
    }
}

/// A sequence streamed from an iterator, made afresh by the closure each
/// time it is serialized.
pub struct Seq<F>(pub F);

impl<F, I> Serialize for Seq<F>
where
    F: Fn() -> I,
    I: Iterator,
    I::Item: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq((self.0)())
    }
}
