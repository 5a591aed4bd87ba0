//! `gguf-loader inspect`: the header, metadata and tensor table of a GGUF
//! file, like llama.cpp's `gguf-dump`; or the whole structure as JSON.
//!
//! The table is for people: names and values from the file are escaped and
//! clipped, so that one line stays short whatever the file holds. The JSON
//! is for programs: everything whole, streamed.

use std::io::{self, Write};
use std::path::Path;

use gguf_loader::{Escaped, GgufFile, MmapGGUFLoader, TensorInfo, Value};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::json::{JsonMetadata, JsonMetadataTypes, JsonTensor, Seq};
use crate::text::{clip, lossy_chars, Clip};
use crate::CliError;

/// Array elements shown in the table before `... (N more)`.
pub const SHOWN_ELEMENTS: usize = 8;
/// The widest a key or tensor name is shown; longer ones end in `…`.
pub const NAME_CHARS: usize = 48;
/// The most characters of one value shown in the table.
pub const VALUE_CHARS: usize = 200;
/// The most characters of one string inside an array.
pub const ELEMENT_CHARS: usize = 48;

/// Opens `path` and writes its table (or its JSON) to standard output.
/// Errs when the file cannot be opened or is malformed, or when standard
/// output cannot be written ([`CliError::Stdout`]).
pub fn run(path: &Path, as_json: bool) -> Result<(), CliError> {
    let loader = MmapGGUFLoader::new(path)?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    let tensors = || loader.tensors();
    // A split model's tensor offsets are in their own shard: which one is
    // said per shard (their tensors come in shard order).
    let shards: Vec<Shard> = loader
        .paths()
        .zip(loader.shards())
        .map(|(p, f)| Shard {
            path: p.display().to_string(),
            tensors: f.tensors().len(),
            data_offset: f.data_offset,
        })
        .collect();
    let shards = if shards.len() > 1 { shards } else { Vec::new() };
    if as_json {
        crate::json::write_line(
            &mut out,
            &JsonFile {
                file: loader.file(),
                tensors,
                shards: &shards,
            },
        )
    } else {
        write_human(&mut out, path, shards.len().max(1), loader.file(), tensors).and_then(|()| {
            let mut first = 1;
            for (i, s) in shards.iter().enumerate() {
                writeln!(
                    out,
                    "  shard {}: tensors {first}-{} (offsets in this file), data at byte {}: {}",
                    i + 1,
                    first + s.tensors - 1,
                    s.data_offset,
                    Escaped(&s.path)
                )?;
                first += s.tensors;
            }
            Ok(())
        })
    }
    .and_then(|()| out.flush())
    .map_err(CliError::stdout)
}

/// One file of a split model, for the listing.
#[derive(Serialize)]
struct Shard {
    path: String,
    /// How many tensors it holds (they follow the previous shard's).
    tensors: usize,
    data_offset: u64,
}

/// Writes the whole structure as one line of JSON: version, endianness,
/// alignment, data offset, metadata (arrays whole) and `tensors` (each with
/// `ne` and `shape`, offsets absolute in their file), streamed: the memory
/// used does not grow with the file. Errs only when `out` does.
pub fn write_json<'t, I>(
    out: &mut impl Write,
    file: &GgufFile<'_>,
    tensors: impl Fn() -> I,
) -> io::Result<()>
where
    I: Iterator<Item = &'t TensorInfo<'t>>,
{
    crate::json::write_line(
        out,
        &JsonFile {
            file,
            tensors,
            shards: &[],
        },
    )
}

struct JsonFile<'f, 'a, F> {
    file: &'f GgufFile<'a>,
    tensors: F,
    /// A split model's files, in order (empty for one file).
    shards: &'f [Shard],
}

impl<'t, F, I> Serialize for JsonFile<'_, '_, F>
where
    F: Fn() -> I,
    I: Iterator<Item = &'t TensorInfo<'t>>,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let f = self.file;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("version", &f.version)?;
        map.serialize_entry("endianness", f.endianness.name())?;
        map.serialize_entry("alignment", &f.alignment)?;
        map.serialize_entry("data_offset", &f.data_offset)?;
        map.serialize_entry("metadata", &JsonMetadata(&f.metadata))?;
        map.serialize_entry("metadata_types", &JsonMetadataTypes(&f.metadata))?;
        map.serialize_entry("tensors", &Seq(|| (self.tensors)().map(JsonTensor)))?;
        if !self.shards.is_empty() {
            map.serialize_entry("shards", self.shards)?;
        }
        map.end()
    }
}

/// Writes the human table of a file: `path` and the header, one line per
/// metadata entry (type, value clipped to [`VALUE_CHARS`], arrays to
/// [`SHOWN_ELEMENTS`] elements), one line per tensor (name, type, `ne` in
/// GGUF order, bytes, absolute offset), and the totals. `shards` is the
/// number of files of a split model; `tensors` yields those of all shards.
/// Keys and names are escaped and clipped to [`NAME_CHARS`]. Errs only when
/// `out` does.
pub fn write_human<'t, I>(
    out: &mut impl Write,
    path: &Path,
    shards: usize,
    file: &GgufFile<'_>,
    tensors: impl Fn() -> I,
) -> io::Result<()>
where
    I: Iterator<Item = &'t TensorInfo<'t>>,
{
    writeln!(out, "{}", Escaped(&path.display().to_string()))?;
    if shards > 1 {
        writeln!(
            out,
            "  split model: {shards} shards (the header and metadata below are the first \
             shard's, whichever was named)"
        )?;
    }
    writeln!(
        out,
        "  GGUF v{}, {}-endian, alignment {}, data at byte {}",
        file.version,
        file.endianness.name(),
        file.alignment,
        file.data_offset
    )?;
    writeln!(out, "\n{} metadata entries:", file.metadata.len())?;
    let key_w = file
        .metadata
        .keys()
        .map(|k| clip(k, NAME_CHARS).chars().count())
        .max()
        .unwrap_or(0);
    let type_w = file
        .metadata
        .iter()
        .map(|(_, v)| type_human(v).len())
        .fold(8, usize::max);
    for (i, (k, v)) in file.metadata.iter().enumerate() {
        writeln!(
            out,
            "  {:>4}: {:<key_w$}  {:<type_w$} = {}",
            i + 1,
            clip(k, NAME_CHARS),
            type_human(v),
            value_human(v)
        )?;
    }
    writeln!(out, "\n{} tensors:", tensors().count())?;
    let name_w = tensors()
        .map(|t| clip(t.name, NAME_CHARS).chars().count())
        .fold(4, usize::max);
    writeln!(
        out,
        "  {:>4}  {:<name_w$}  {:<8}  {:<22}  {:>12}  {:>12}",
        "#", "name", "type", "ne", "bytes", "offset"
    )?;
    let (mut total, mut params) = (0u128, 0u128);
    for (i, t) in tensors().enumerate() {
        let ne = format!("{:?}", t.ne());
        writeln!(
            out,
            "  {:>4}  {:<name_w$}  {:<8}  {ne:<22}  {:>12}  {:>12}",
            i + 1,
            clip(t.name, NAME_CHARS),
            t.ty.name(),
            t.n_bytes,
            t.file_offset
        )?;
        total += u128::from(t.n_bytes);
        params += u128::from(t.n_elements);
    }
    writeln!(out, "\n  {params} parameters, {total} bytes of tensor data")
}

/// `string`, `uint32`, `[string; 49152]`.
fn type_human(v: &Value<'_>) -> String {
    match v {
        Value::Array(a) => format!("[{}; {}]", a.elem_type(), a.len()),
        other => other.value_type().to_string(),
    }
}

/// A value for the table, at most [`VALUE_CHARS`] characters (and the
/// length of a clipped string).
fn value_human(v: &Value<'_>) -> String {
    let mut c = Clip::new(VALUE_CHARS);
    // A lone string fits with its quotes.
    let clipped = write_value(&mut c, v, VALUE_CHARS - 3);
    let mut s = c.finish();
    if let (true, Value::String(g)) = (clipped, v) {
        s += &format!(" ({} bytes)", g.as_bytes().len());
    }
    s
}

/// Writes a value into the clip, strings quoted and escaped (at most
/// `string_chars` of each), arrays' first [`SHOWN_ELEMENTS`] elements;
/// stops as soon as the clip is full, so that nested arrays cost no more
/// than what is shown. True when anything was left out.
fn write_value(c: &mut Clip, v: &Value<'_>, string_chars: usize) -> bool {
    match v {
        Value::String(g) => {
            let mut s = Clip::new(string_chars);
            for ch in lossy_chars(g.as_bytes()) {
                if s.is_cut() {
                    break;
                }
                s.push_quoted(ch);
            }
            let clipped = s.is_cut();
            c.push('"');
            c.push_str(&s.finish());
            c.push('"');
            clipped || c.is_cut()
        }
        Value::Array(a) => {
            c.push('[');
            for (i, e) in a.iter().take(SHOWN_ELEMENTS).enumerate() {
                if c.is_cut() {
                    return true;
                }
                if i > 0 {
                    c.push_str(", ");
                }
                write_value(c, &e, ELEMENT_CHARS);
            }
            if a.len() > SHOWN_ELEMENTS as u64 {
                c.push_str(&format!(", ... ({} more)", a.len() - SHOWN_ELEMENTS as u64));
            }
            c.push(']');
            c.is_cut()
        }
        Value::F32(x) => scalar(
            c,
            &float_text(f64::from(*x), x.to_string(), format!("{x:e}")),
        ),
        Value::F64(x) => scalar(c, &float_text(*x, x.to_string(), format!("{x:e}"))),
        Value::Bool(x) => scalar(c, x),
        other => match other.as_i64() {
            Some(i) => scalar(c, &i),
            None => scalar(c, &other.as_u64().unwrap_or_default()),
        },
    }
}

/// A float as its shortest decimal (`plain`, Rust's `Display`) where that
/// is short, else in scientific notation (`exp`): `1e308` and `5e-324`
/// were hundreds of digits, clipped before their value showed.
fn float_text(x: f64, plain: String, exp: String) -> String {
    let a = x.abs();
    if a == 0.0 || !a.is_finite() || (1e-5..1e16).contains(&a) {
        plain
    } else {
        exp
    }
}

fn scalar(c: &mut Clip, x: &impl std::fmt::Display) -> bool {
    c.push_str(&x.to_string());
    c.is_cut()
}
