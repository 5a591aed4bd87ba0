//! `gguf-loader inspect`: like llama.cpp's `gguf-dump`.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;

use gguf_loader::MmapGGUFLoader;
use gguf_loader::{ArrayView, Value};
use serde_json::{json, Map, Value as Json};

/// How many array elements the human form shows before eliding.
const SHOWN_ELEMENTS: usize = 8;

pub fn run(path: &Path, as_json: bool) -> Result<(), Box<dyn std::error::Error>> {
    let loader = MmapGGUFLoader::new(path)?;
    let out = io::stdout().lock();
    let mut out = io::BufWriter::new(out);
    if as_json {
        serde_json::to_writer(&mut out, &to_json(&loader))?;
        writeln!(out)?;
    } else {
        write_human(&mut out, path, &loader)?;
    }
    out.flush()?;
    Ok(())
}

/// The whole structure: version, endianness, alignment, data offset, metadata
/// and tensors (offsets absolute in their file).
pub fn to_json(loader: &MmapGGUFLoader) -> Json {
    let file = loader.file();
    let mut metadata = Map::new();
    for (k, v) in file.metadata.iter() {
        metadata.insert(k.to_string(), value_json(v));
    }
    let tensors: Vec<Json> = loader
        .tensors()
        .map(|t| {
            json!({
                "name": t.name,
                "type": t.ty.name(),
                "ne": t.ne(),
                "shape": t.shape(),
                "offset": t.file_offset,
                "n_bytes": t.n_bytes,
            })
        })
        .collect();
    json!({
        "version": file.version,
        "endianness": file.endianness.name(),
        "alignment": file.alignment,
        "data_offset": file.data_offset,
        "metadata": metadata,
        "tensors": tensors,
    })
}

fn float_json(x: f64) -> Json {
    if x.is_nan() {
        Json::from("NaN")
    } else if x.is_infinite() {
        Json::from(if x > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        Json::from(x)
    }
}

fn value_json(v: &Value<'_>) -> Json {
    match *v {
        Value::U8(x) => x.into(),
        Value::I8(x) => x.into(),
        Value::U16(x) => x.into(),
        Value::I16(x) => x.into(),
        Value::U32(x) => x.into(),
        Value::I32(x) => x.into(),
        Value::U64(x) => x.into(),
        Value::I64(x) => x.into(),
        Value::F32(x) => float_json(x.into()),
        Value::F64(x) => float_json(x),
        Value::Bool(x) => x.into(),
        Value::String(s) => s.to_string_lossy().into(),
        Value::Array(a) => Json::Array(a.iter().map(|e| value_json(&e)).collect()),
    }
}

fn value_human(v: &Value<'_>) -> String {
    match v {
        Value::String(s) => format!("{:?}", s.to_string_lossy()),
        Value::Array(a) => array_human(a),
        Value::F32(x) => format!("{x}"),
        Value::F64(x) => format!("{x}"),
        other => value_json(other).to_string(),
    }
}

fn array_human(a: &ArrayView<'_>) -> String {
    let mut s = String::from("[");
    for (i, e) in a.iter().take(SHOWN_ELEMENTS).enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&value_human(&e));
    }
    if a.len() > SHOWN_ELEMENTS as u64 {
        let _ = write!(s, ", ... ({} more)", a.len() - SHOWN_ELEMENTS as u64);
    }
    s.push(']');
    s
}

fn type_human(v: &Value<'_>) -> String {
    match v {
        Value::Array(a) => format!("[{}; {}]", a.elem_type(), a.len()),
        other => other.value_type().to_string(),
    }
}

fn write_human(out: &mut impl Write, path: &Path, loader: &MmapGGUFLoader) -> io::Result<()> {
    let file = loader.file();
    writeln!(out, "{}", path.display())?;
    let shards = loader.paths().count();
    if shards > 1 {
        writeln!(out, "  split model: {shards} shards")?;
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
    let key_w = file.metadata.keys().map(str::len).max().unwrap_or(0);
    for (i, (k, v)) in file.metadata.iter().enumerate() {
        writeln!(
            out,
            "  {:>4}: {k:<key_w$}  {:<16} = {}",
            i + 1,
            type_human(v),
            value_human(v)
        )?;
    }
    writeln!(out, "\n{} tensors:", loader.tensor_count())?;
    let name_w = loader.tensors().map(|t| t.name.len()).max().unwrap_or(4);
    writeln!(
        out,
        "  {:>4}  {:<name_w$}  {:<8}  {:<22}  {:>12}  {:>12}",
        "#", "name", "type", "ne", "bytes", "offset"
    )?;
    for (i, t) in loader.tensors().enumerate() {
        let shape = format!("{:?}", t.ne());
        writeln!(
            out,
            "  {:>4}  {:<name_w$}  {:<8}  {shape:<22}  {:>12}  {:>12}",
            i + 1,
            t.name,
            t.ty.name(),
            t.n_bytes,
            t.file_offset
        )?;
    }
    let total: u64 = loader.tensors().map(|t| t.n_bytes).sum();
    let params: u64 = loader.tensors().map(|t| t.n_elements).sum();
    writeln!(out, "\n  {params} parameters, {total} bytes of tensor data")?;
    Ok(())
}
