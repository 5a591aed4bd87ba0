//! `gguf-loader convert`: decode tensors and write safetensors or a GGUF of
//! one float type.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use gguf_loader::{bf16, f16, Device, Element, ElementKind, MmapGGUFLoader};
use gguf_loader::{GgufWriter, MetaValue, Value};
use indicatif::{ProgressBar, ProgressStyle};
use regex::Regex;
use safetensors::tensor::{Dtype, View};

type BoxError = Box<dyn std::error::Error>;

/// llama.cpp's `general.file_type` for an all-f32 / mostly-f16 / mostly-bf16 file.
fn file_type(kind: ElementKind) -> u32 {
    match kind {
        ElementKind::F32 => 0,
        ElementKind::F16 => 1,
        ElementKind::BF16 => 32,
    }
}

pub fn run(
    input: &Path,
    output: &Path,
    dtype: ElementKind,
    filter: Option<&str>,
) -> Result<(), BoxError> {
    match dtype {
        ElementKind::F32 => convert::<f32>(input, output, filter),
        ElementKind::F16 => convert::<f16>(input, output, filter),
        ElementKind::BF16 => convert::<bf16>(input, output, filter),
    }
}

fn progress(n: usize) -> ProgressBar {
    let bar = ProgressBar::new(n as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} tensors {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn convert<T: Element>(input: &Path, output: &Path, filter: Option<&str>) -> Result<(), BoxError> {
    let loader = MmapGGUFLoader::new(input)?;
    let re = filter.map(Regex::new).transpose()?;
    let names: Vec<&str> = loader
        .tensor_names()
        .into_iter()
        .filter(|n| re.as_ref().is_none_or(|r| r.is_match(n)))
        .collect();
    // The one decode failure left after validation: quantized data of a
    // big-endian file. Refuse it before writing anything (safetensors'
    // `View::data` cannot return an error).
    if loader.endianness() == gguf_loader::Endianness::Big {
        if let Some(t) = names
            .iter()
            .filter_map(|n| loader.tensor_info(n))
            .find(|t| t.ty.is_quantized())
        {
            return Err(format!(
                "tensor '{}': {} data in a big-endian file cannot be decoded",
                t.name, t.ty
            )
            .into());
        }
    }
    let bar = progress(names.len());
    let is_gguf = output.extension().is_some_and(|e| e == "gguf");
    if is_gguf {
        write_gguf::<T>(&loader, &names, output, &bar)?;
    } else {
        write_safetensors::<T>(&loader, &names, output, &bar)?;
    }
    bar.finish_and_clear();
    Ok(())
}

/// A tensor decoded when safetensors asks for its bytes, so that only one
/// decoded tensor is held at a time.
struct Lazy<'a, T> {
    loader: &'a MmapGGUFLoader,
    name: &'a str,
    shape: Vec<usize>,
    bar: &'a ProgressBar,
    _t: std::marker::PhantomData<T>,
}

impl<T: Element> View for Lazy<'_, T> {
    fn dtype(&self) -> Dtype {
        match T::KIND {
            ElementKind::F32 => Dtype::F32,
            ElementKind::F16 => Dtype::F16,
            ElementKind::BF16 => Dtype::BF16,
        }
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        self.bar.set_message(self.name.to_string());
        // View::data cannot fail; the tensor was validated at open and its
        // length checked, so decoding cannot fail either.
        let t = self
            .loader
            .load_tensor::<T>(self.name, Device::Cpu)
            .unwrap_or_else(|e| panic!("{e}"));
        self.bar.inc(1);
        Cow::Owned(T::to_le_bytes_vec(t.data()))
    }
    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * T::KIND.size()
    }
}

/// GGUF scalar metadata as strings for safetensors' `__metadata__` (arrays,
/// such as tokenizer vocabularies, are left out).
fn string_metadata(loader: &MmapGGUFLoader) -> HashMap<String, String> {
    loader
        .metadata()
        .iter()
        .filter_map(|(k, v)| {
            let s = match v {
                Value::Array(_) => return None,
                Value::String(s) => s.to_string_lossy().into_owned(),
                Value::Bool(b) => b.to_string(),
                Value::F32(x) => x.to_string(),
                Value::F64(x) => x.to_string(),
                other => other
                    .as_i64()
                    .map(|i| i.to_string())
                    .or_else(|| other.as_u64().map(|u| u.to_string()))?,
            };
            Some((k.to_string(), s))
        })
        .collect()
}

fn write_safetensors<T: Element>(
    loader: &MmapGGUFLoader,
    names: &[&str],
    output: &Path,
    bar: &ProgressBar,
) -> Result<(), BoxError> {
    let views: Vec<(String, Lazy<'_, T>)> = names
        .iter()
        .map(|name| {
            let info = loader.tensor_info(name).expect("name from the loader");
            let shape = info.shape().into_iter().map(|d| d as usize).collect();
            (
                name.to_string(),
                Lazy {
                    loader,
                    name,
                    shape,
                    bar,
                    _t: std::marker::PhantomData,
                },
            )
        })
        .collect();
    safetensors::serialize_to_file(views, &Some(string_metadata(loader)), output)?;
    Ok(())
}

fn write_gguf<T: Element>(
    loader: &MmapGGUFLoader,
    names: &[&str],
    output: &Path,
    bar: &ProgressBar,
) -> Result<(), BoxError> {
    let file = loader.file();
    let mut w = GgufWriter::new().alignment(file.alignment as u32);
    for (k, v) in loader.metadata().iter() {
        if k.starts_with("split.") || k == "general.alignment" {
            continue;
        }
        w.add(k, MetaValue::from_value(v));
    }
    w.add("general.file_type", MetaValue::U32(file_type(T::KIND)));
    for name in names {
        bar.set_message(name.to_string());
        let t = loader.load_tensor::<T>(name, Device::Cpu)?;
        let ne: Vec<u64> = t.ne().iter().map(|d| *d as u64).collect();
        w.add_tensor(
            *name,
            &ne,
            T::KIND.ggml_type(),
            T::to_le_bytes_vec(t.data()),
        )?;
        bar.inc(1);
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(output)?);
    w.write_to(&mut out)?;
    std::io::Write::flush(&mut out)?;
    Ok(())
}
