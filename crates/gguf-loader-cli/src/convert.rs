//! `gguf-loader convert`: decode tensors and write safetensors or a GGUF of
//! one float type, one tensor at a time.
//!
//! Both outputs are streamed: the header first (its size and every tensor's
//! offset follow from the shapes), then each tensor decoded into one reused
//! buffer and written out, so that memory holds about one tensor whatever the
//! model's size. The output goes through [`Output`]: checked and created
//! before anything is decoded, never one of the inputs, renamed into place
//! when complete.

use std::io::{self, Write};
use std::path::Path;
use std::time::Instant;

use gguf_loader::{
    Device, Element, ElementKind, Endianness, Error, Escaped, LoadMode, MmapGGUFLoader,
};
use gguf_loader::{GgmlType, GgufWriter, MetaValue, TensorInfo, Value};
use indicatif::{ProgressBar, ProgressStyle};

use crate::output::Output;
use gguf_loader_cli::with_element;

use gguf_loader_cli::CliError;

/// What `convert` is asked to do.
pub struct Args<'a> {
    pub input: &'a Path,
    pub output: &'a Path,
    pub dtype: ElementKind,
    /// Only tensors whose name matches this regular expression.
    pub filter: Option<&'a str>,
    /// Replace an existing output.
    pub force: bool,
    /// Where to decode: the CPU, or a GPU (feature `cuda`) whose output is
    /// copied back; the file is the same byte for byte.
    pub device: Device,
    /// How the input is read (mapped, or read into buffers).
    pub mode: LoadMode,
}

/// The output's format, from its extension.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Safetensors,
    Gguf,
}

impl Format {
    /// The extension in any case (`.GGUF` as `.gguf`).
    fn of(path: &Path) -> Result<Format, CliError> {
        let ext = path.extension().and_then(|e| e.to_str());
        match ext.map(str::to_ascii_lowercase).as_deref() {
            Some("safetensors") => Ok(Format::Safetensors),
            Some("gguf") => Ok(Format::Gguf),
            _ => Err(format!(
                "{}: the output's name must end in .safetensors or .gguf (it picks the format)",
                path.display()
            )
            .into()),
        }
    }
}

/// llama.cpp's `general.file_type` for an all-f32 / mostly-f16 / mostly-bf16
/// file (`LLAMA_FTYPE_ALL_F32`, `_MOSTLY_F16`, `_MOSTLY_BF16`).
fn file_type(kind: ElementKind) -> u32 {
    match kind {
        ElementKind::F32 => 0,
        ElementKind::F16 => 1,
        ElementKind::BF16 => 32,
    }
}

/// ggml's `ggml_n_dims`: the dims up to the last one above 1 (at least 1).
fn n_dims(info: &TensorInfo<'_>) -> usize {
    info.ne().iter().rposition(|&d| d > 1).map_or(1, |i| i + 1)
}

/// The float a tensor is written as. In a GGUF, as llama.cpp's converters
/// and `llama-quantize` do, 1-D tensors (norms, biases) and norm weights stay
/// f32: llama.cpp's CPU kernels add and multiply them only as f32.
fn kind_for(format: Format, dtype: ElementKind, info: &TensorInfo<'_>) -> ElementKind {
    if format == Format::Gguf && (n_dims(info) <= 1 || info.name.ends_with("_norm.weight")) {
        ElementKind::F32
    } else {
        dtype
    }
}

/// The magnitude up to which every integer is exact in `kind` (2^11 in
/// f16, 2^8 in bf16, 2^24 in f32).
fn exact_integers(kind: ElementKind) -> u64 {
    match kind {
        ElementKind::F16 => 1 << 11,
        ElementKind::BF16 => 1 << 8,
        _ => 1 << 24,
    }
}

/// What to say, once per source type, when tensors of integers (I8…I64)
/// or of f64 become a float that does not hold every value of their type:
/// llama.cpp's converters keep such tensors as they are, this command makes
/// every tensor a float.
fn inexact_warnings(plan: &[(&TensorInfo<'_>, ElementKind)]) -> Vec<String> {
    let mut seen: Vec<(GgmlType, ElementKind, &str, usize)> = Vec::new();
    for (t, kind) in plan {
        let largest: u64 = match t.ty {
            GgmlType::I8 => 1 << 7,
            GgmlType::I16 => 1 << 15,
            GgmlType::I32 => 1 << 31,
            GgmlType::I64 => 1 << 63,
            GgmlType::F64 => u64::MAX,
            _ => continue,
        };
        if largest <= exact_integers(*kind) {
            continue;
        }
        match seen.iter_mut().find(|s| s.0 == t.ty && s.1 == *kind) {
            Some(s) => s.3 += 1,
            None => seen.push((t.ty, *kind, t.name, 1)),
        }
    }
    let mut said = Vec::with_capacity(seen.len());
    for (ty, kind, first, n) in seen {
        // f16 ends at 65504; f32 and bf16 hold every integer's magnitude.
        let overflow = kind == ElementKind::F16 || ty == GgmlType::F64;
        said.push(format!(
            "{n} {ty} tensor{} ('{}'{}) become{} {}, which does not hold \
             every {ty} value exactly: they are rounded{}",
            if n == 1 { "" } else { "s" },
            Escaped(first),
            if n > 1 { ", …" } else { "" },
            if n == 1 { "s" } else { "" },
            kind.name(),
            if overflow {
                ", and beyond its range infinite"
            } else {
                ""
            }
        ));
    }
    said
}

/// Runs `convert`; prints a one-line summary on stdout.
///
/// Errs, before decoding anything, on an output name that is neither
/// `.safetensors` nor `.gguf`, an unreadable or malformed input, a bad
/// `--tensors` expression or one that matches no tensor, quantized data in a
/// big-endian file, a tensor whose output cannot be allocated
/// ([`Error::OutOfMemory`]), and an output that cannot be written or has no
/// room on its disk (see [`Output::create`]); then on a tensor that cannot
/// be decoded and on a failed write.
pub fn run(a: &Args<'_>) -> Result<(), CliError> {
    let start = Instant::now();
    let format = Format::of(a.output)?;
    let loader = MmapGGUFLoader::open(a.input, a.mode)?;
    // A GPU that cannot be used is refused before any output exists.
    gguf_loader_cli::gpu::setup(a.device)?;
    let tensors = gguf_loader_cli::load::selected(&loader, a.filter, a.input)?;
    if tensors.is_empty() {
        return Err(format!("{}: has no tensors to convert", a.input.display()).into());
    }
    // The one decode failure left after validation: quantized data of a
    // big-endian file in a type with no defined byte order. Refused before
    // anything is written.
    if loader.endianness() == Endianness::Big {
        if let Some(t) = tensors.iter().find(|t| !t.ty.has_big_endian_order()) {
            return Err(Error::BigEndianData {
                tensor: t.name.to_string(),
                ty: t.ty,
            }
            .into());
        }
    }
    if format == Format::Safetensors {
        if let Some(t) = tensors.iter().find(|t| t.name == METADATA_KEY) {
            return Err(format!(
                "tensor '{}': the name safetensors keeps for its metadata",
                t.name
            )
            .into());
        }
    }
    let plan: Vec<(&TensorInfo<'_>, ElementKind)> = tensors
        .iter()
        .map(|t| (*t, kind_for(format, a.dtype, t)))
        .collect();
    // Said once the file is written: an error before that stays one line.
    let inexact = inexact_warnings(&plan);
    let mut decoder = Decoder {
        device: a.device,
        ..Decoder::default()
    };
    decoder.prepare(&plan)?;
    let inputs: Vec<&Path> = loader.paths().collect();
    let mut out = Output::create(a.output, &inputs, a.force)?;
    let data_bytes: u64 = plan
        .iter()
        .map(|(t, k)| t.n_elements.saturating_mul(k.size() as u64))
        .fold(0, u64::saturating_add);
    out.reserve(data_bytes)?;

    let bar = progress(plan.len());
    match format {
        Format::Gguf => write_gguf(&loader, &plan, a.dtype, &mut out, &mut decoder, &bar)?,
        Format::Safetensors => write_safetensors(&loader, &plan, &mut out, &mut decoder, &bar)?,
    }
    bar.finish_and_clear();
    let bytes = out.commit()?;
    for w in inexact {
        gguf_loader_cli::warn(format_args!("warning: {w}"));
    }
    decoder.warn_non_finite();
    // What went as asked and what was kept as f32, apart (the count as
    // asked included those kept).
    let kept = plan.iter().filter(|(_, k)| *k != a.dtype).count();
    let asked = plan.len() - kept;
    let what = match (asked, kept) {
        (_, 0) => format!("{} as {}", tensors_text(asked), a.dtype.name()),
        (0, _) => format!("{} kept as f32 (1-D or norm)", tensors_text(kept)),
        _ => format!(
            "{} as {}, {kept} kept as f32 (1-D or norm)",
            tensors_text(asked),
            a.dtype.name()
        ),
    };
    writeln!(
        io::stdout().lock(),
        "wrote {}: {what}, {bytes} bytes, in {:.1} s",
        Escaped(&a.output.display().to_string()),
        start.elapsed().as_secs_f64()
    )
    .map_err(CliError::stdout)?;
    Ok(())
}

/// A name from the file with its control characters escaped, so that the
/// progress line cannot drive the terminal.
fn escaped(name: &str) -> String {
    Escaped(name).to_string()
}

/// "1 tensor", "2 tensors".
fn tensors_text(n: usize) -> String {
    format!("{n} tensor{}", if n == 1 { "" } else { "s" })
}

fn progress(n: usize) -> ProgressBar {
    let bar = ProgressBar::new(n as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} tensors {elapsed} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Bytes handed to the sink at a time.
const PIECE: usize = 1 << 20;

/// Decodes tensors one at a time into one buffer reused from one tensor to
/// the next, whatever their output float, so that memory holds about the
/// largest tensor, never the model.
#[derive(Default)]
struct Decoder {
    /// Words, so that the buffer is aligned for every output float.
    buf: Vec<u64>,
    /// Where tensors are decoded.
    device: Device,
    /// The outputs that hold values beyond f16's range (±65504), made
    /// infinite by an f16 output, with how many.
    overflowed: Vec<(String, usize)>,
    /// The outputs that hold NaN or infinite values as the file gives them
    /// (a float tensor's, or a block's scale), with how many.
    non_finite: Vec<(String, usize)>,
}

/// How many of `values` are infinite and how many NaN, from their bits.
fn non_finite<T: Element>(values: &[T]) -> (usize, usize) {
    // (magnitude mask, the infinity's bits): above it is NaN.
    fn count<B: Copy + Into<u32>>(bits: &[B], mask: u32, inf: u32) -> (usize, usize) {
        bits.iter().fold((0, 0), |(i, n), &b| {
            let m = b.into() & mask;
            (i + usize::from(m == inf), n + usize::from(m > inf))
        })
    }
    match T::KIND {
        ElementKind::F32 => count(
            bytemuck::cast_slice::<T, u32>(values),
            0x7fff_ffff,
            0x7f80_0000,
        ),
        ElementKind::F16 => count(bytemuck::cast_slice::<T, u16>(values), 0x7fff, 0x7c00),
        ElementKind::BF16 => count(bytemuck::cast_slice::<T, u16>(values), 0x7fff, 0x7f80),
    }
}

/// The values of `info` (decoded as `T` into `values`) made infinite by an
/// f16 output, and those NaN or infinite as the file gives them. In an f16
/// output an infinity may be a finite value beyond f16's range: told apart
/// by decoding the tensor again as f32 (only where there are infinities).
fn overflowed_and_non_finite<T: Element>(
    loader: &MmapGGUFLoader,
    info: &TensorInfo<'_>,
    values: &[T],
) -> (usize, usize) {
    let (inf, nan) = non_finite(values);
    let mut in_file = inf;
    if inf > 0 && T::KIND == ElementKind::F16 {
        in_file = loader
            .load_tensor::<f32>(info.name, Device::Cpu)
            .map_or(0, |t| non_finite(t.data()).0);
    }
    (inf.saturating_sub(in_file), in_file + nan)
}

/// Names at most three of `tensors` with their counts, and how many more.
fn named(tensors: &[(String, usize)]) -> String {
    let mut text: Vec<String> = tensors
        .iter()
        .take(3)
        .map(|(t, n)| format!("'{}' ({n})", Escaped(t)))
        .collect();
    if tensors.len() > 3 {
        text.push(format!("and {} more", tensors.len() - 3));
    }
    text.join(", ")
}

impl Decoder {
    /// Allocates (without touching) the buffer for the largest output of
    /// `plan`, so that a tensor too large for memory shows before anything
    /// is written.
    fn prepare(&mut self, plan: &[(&TensorInfo<'_>, ElementKind)]) -> Result<(), Error> {
        let largest = plan
            .iter()
            .max_by_key(|(t, k)| t.n_elements.saturating_mul(k.size() as u64));
        if let Some((t, kind)) = largest {
            self.reserve(t, *kind)?;
        }
        Ok(())
    }

    /// Makes room for `info`'s elements as `kind` (without touching new
    /// memory) and returns the words they take. Errs with
    /// [`Error::OutOfMemory`] naming the tensor and the bytes when they
    /// cannot be allocated.
    fn reserve(&mut self, info: &TensorInfo<'_>, kind: ElementKind) -> Result<usize, Error> {
        let bytes = info.n_elements.saturating_mul(kind.size() as u64);
        let words =
            usize::try_from(bytes.div_ceil(8)).map_err(|_| Error::TooLarge(info.name.into()))?;
        if self.buf.capacity() < words {
            // The old buffer goes first, so that the two are never held at once.
            self.buf = Vec::new();
            self.buf
                .try_reserve_exact(words)
                .map_err(|_| Error::OutOfMemory {
                    tensor: info.name.to_string(),
                    bytes,
                })?;
        }
        Ok(words)
    }

    /// Keeps `info`'s counts from [`overflowed_and_non_finite`].
    fn note(&mut self, info: &TensorInfo<'_>, (overflowed, non_finite): (usize, usize)) {
        if overflowed > 0 {
            self.overflowed.push((info.name.to_string(), overflowed));
        }
        if non_finite > 0 {
            self.non_finite.push((info.name.to_string(), non_finite));
        }
    }

    /// Says on standard error which outputs hold values made infinite by
    /// f16, and which hold NaN or infinite values from the file (at most
    /// three named each).
    fn warn_non_finite(&self) {
        let tensors = |n: usize| {
            if n == 1 {
                "1 tensor holds"
            } else {
                "tensors hold"
            }
        };
        if !self.overflowed.is_empty() {
            gguf_loader_cli::warn(format_args!(
                "warning: {} values beyond f16's range (±65504), infinite in f16: {}; --dtype \
                 bf16 or f32 keeps their range",
                tensors(self.overflowed.len()),
                named(&self.overflowed)
            ));
        }
        if !self.non_finite.is_empty() {
            gguf_loader_cli::warn(format_args!(
                "warning: {} NaN or infinite values as the file gives them: {}; `gguf-loader \
                 verify` says where",
                tensors(self.non_finite.len()),
                named(&self.non_finite)
            ));
        }
    }

    /// Decodes `info` as `kind` and hands its little-endian bytes to `sink`
    /// in pieces of at most 1 MiB.
    fn decode(
        &mut self,
        loader: &MmapGGUFLoader,
        info: &TensorInfo<'_>,
        kind: ElementKind,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), CliError>,
    ) -> Result<(), CliError> {
        if self.device != Device::Cpu {
            // Decoded on the GPU, copied back whole (the same values).
            return with_element!(kind, T => {
                let t = loader.load_tensor::<T>(info.name, self.device)?.to_host()?;
                self.note(info, overflowed_and_non_finite(loader, info, t.data()));
                for piece in t.data().chunks(PIECE / T::KIND.size()) {
                    sink(&T::to_le_bytes_vec(piece))?;
                }
                Ok(())
            });
        }
        let words = self.reserve(info, kind)?;
        if self.buf.len() < words {
            self.buf.resize(words, 0);
        }
        // Fits usize: `reserve` took its bytes.
        let n = info.n_elements as usize;
        with_element!(kind, T => {
            let values = &mut bytemuck::cast_slice_mut::<u64, T>(&mut self.buf[..words])[..n];
            loader.load_tensor_into(info.name, values)?;
            let counts = overflowed_and_non_finite(loader, info, values);
            for piece in values.chunks(PIECE / T::KIND.size()) {
                sink(&T::to_le_bytes_vec(piece))?;
            }
            self.note(info, counts);
        });
        Ok(())
    }
}

/// Decodes the tensors of `plan` in order, handing their bytes to `sink`.
fn decode_all(
    loader: &MmapGGUFLoader,
    plan: &[(&TensorInfo<'_>, ElementKind)],
    decoder: &mut Decoder,
    bar: &ProgressBar,
    sink: &mut dyn FnMut(&[u8]) -> Result<(), CliError>,
) -> Result<(), CliError> {
    for (t, kind) in plan {
        bar.set_message(escaped(t.name));
        decoder.decode(loader, t, *kind, sink)?;
        bar.inc(1);
    }
    Ok(())
}

fn write_error(out: &Path, e: io::Error) -> CliError {
    format!("{}: cannot write: {e}", out.display()).into()
}

fn write_gguf(
    loader: &MmapGGUFLoader,
    plan: &[(&TensorInfo<'_>, ElementKind)],
    dtype: ElementKind,
    out: &mut Output,
    decoder: &mut Decoder,
    bar: &ProgressBar,
) -> Result<(), CliError> {
    let file = loader.file();
    let mut w = GgufWriter::new().alignment(file.alignment as u32);
    for (k, v) in loader.metadata().iter() {
        if k.starts_with("split.") || k == gguf_loader::ALIGNMENT_KEY {
            continue;
        }
        // Written from the input's bytes: no owned copy of a vocabulary.
        w.add_value(k, *v);
    }
    w.add("general.file_type", MetaValue::U32(file_type(dtype)));
    for (t, kind) in plan {
        w.add_tensor_info(t.name, TensorInfo::ne(t), kind.ggml_type())
            .map_err(|e| format!("tensor '{}': {e}", Escaped(t.name)))?;
    }
    let shown = out.path().to_path_buf();
    let mut stream = w.write_header(out).map_err(|e| write_error(&shown, e))?;
    decode_all(loader, plan, decoder, bar, &mut |bytes| {
        stream.write_data(bytes).map_err(|e| write_error(&shown, e))
    })?;
    stream.finish().map_err(|e| write_error(&shown, e))?;
    Ok(())
}

/// The key of safetensors' metadata object in its header.
const METADATA_KEY: &str = "__metadata__";

/// The largest header safetensors' readers accept.
const MAX_SAFETENSORS_HEADER: usize = 100_000_000;

/// Writes safetensors as its format is documented: an 8-byte little-endian
/// header length, the JSON header (padded with spaces to a multiple of 8),
/// then each tensor's bytes in the header's order, contiguous.
fn write_safetensors(
    loader: &MmapGGUFLoader,
    plan: &[(&TensorInfo<'_>, ElementKind)],
    out: &mut Output,
    decoder: &mut Decoder,
    bar: &ProgressBar,
) -> Result<(), CliError> {
    let mut header = serde_json::Map::new();
    header.insert(
        METADATA_KEY.into(),
        serde_json::Value::Object(string_metadata(loader, out.path())?),
    );
    let mut offset = 0u64;
    for (t, kind) in plan {
        let end = t
            .n_elements
            .checked_mul(kind.size() as u64)
            .and_then(|n| n.checked_add(offset))
            .ok_or_else(|| Error::TooLarge(t.name.to_string()))?;
        // safetensors names its floats as ggml does.
        let dtype = kind.ggml_type().name();
        header.insert(
            t.name.to_string(),
            serde_json::json!({ "dtype": dtype, "shape": t.shape(), "data_offsets": [offset, end] }),
        );
        offset = end;
    }
    let mut json = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    drop(header);
    json.resize(json.len().next_multiple_of(8), b' ');
    if json.len() > MAX_SAFETENSORS_HEADER {
        return Err(too_large(out.path(), json.len()));
    }
    let shown = out.path().to_path_buf();
    out.write_all(&(json.len() as u64).to_le_bytes())
        .and_then(|()| out.write_all(&json))
        .map_err(|e| write_error(&shown, e))?;
    drop(json);
    decode_all(loader, plan, decoder, bar, &mut |bytes| {
        out.write_all(bytes).map_err(|e| write_error(&shown, e))
    })
}

fn too_large(out: &Path, bytes: usize) -> CliError {
    format!(
        "{}: the metadata makes a safetensors header of over {bytes} bytes, more than \
         its readers accept ({MAX_SAFETENSORS_HEADER}); write a .gguf instead",
        out.display()
    )
    .into()
}

/// Every GGUF metadata key (but a split model's `split.*`) as a string for
/// safetensors' `__metadata__` (which holds only strings): a string as itself (invalid UTF-8 replaced),
/// a number or bool as its decimal text, an array (tokenizer vocabularies,
/// `general.languages`, …) as JSON text, its non-finite floats as the
/// strings "NaN", "inf", "-inf". Errs when the text outgrows what a
/// safetensors header may hold (so a hostile array cannot exhaust memory).
fn string_metadata(
    loader: &MmapGGUFLoader,
    out: &Path,
) -> Result<serde_json::Map<String, serde_json::Value>, CliError> {
    let mut budget = Capped {
        buf: Vec::new(),
        total: 0,
    };
    let mut map = serde_json::Map::new();
    for (k, v) in loader.metadata().iter() {
        // One file out, as in a GGUF output: a split model's keys would
        // describe shards it has not.
        if k.starts_with("split.") {
            continue;
        }
        let s = match v {
            Value::Array(_) => {
                budget.buf.clear();
                if write_json(v, &mut budget).is_err() {
                    return Err(too_large(out, budget.total + budget.buf.len()));
                }
                String::from_utf8_lossy(&budget.buf).into_owned()
            }
            Value::String(s) => s.to_string_lossy().into_owned(),
            other => scalar_text(other),
        };
        // As the header will hold them: quoted and escaped, `"k":"s",`.
        budget.total += json_len(k) + json_len(&s) + 2;
        if budget.total > MAX_SAFETENSORS_HEADER {
            return Err(too_large(out, budget.total));
        }
        map.insert(k.to_string(), serde_json::Value::String(s));
    }
    Ok(map)
}

/// The length of `s` as a JSON string (quoted, escaped).
fn json_len(s: &str) -> usize {
    struct Count(usize);
    impl Write for Count {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing to a counter cannot fail.
    let _ = serde_json::to_writer(&mut c, s);
    c.0
}

/// A number's or bool's text.
fn scalar_text(v: &Value<'_>) -> String {
    match *v {
        Value::Bool(b) => b.to_string(),
        Value::F32(x) => x.to_string(),
        Value::F64(x) => x.to_string(),
        ref other => other
            .as_i64()
            .map(|i| i.to_string())
            .or_else(|| other.as_u64().map(|u| u.to_string()))
            .unwrap_or_default(),
    }
}

/// A buffer that refuses to grow the header past what safetensors accepts.
struct Capped {
    buf: Vec<u8>,
    /// Bytes of the header so far, this buffer's included.
    total: usize,
}

impl Write for Capped {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if self.total + self.buf.len() + b.len() > MAX_SAFETENSORS_HEADER {
            return Err(io::Error::other("header too large"));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A metadata value as JSON text, written as it is read.
fn write_json(v: &Value<'_>, out: &mut impl Write) -> io::Result<()> {
    fn float(x: f64, out: &mut impl Write) -> io::Result<()> {
        if x.is_finite() {
            // Debug always has a point or an exponent: read back as a
            // float, -0.0 included.
            write!(out, "{x:?}")
        } else if x.is_nan() {
            out.write_all(b"\"NaN\"")
        } else if x > 0.0 {
            out.write_all(b"\"inf\"")
        } else {
            out.write_all(b"\"-inf\"")
        }
    }
    match *v {
        Value::String(s) => serde_json::to_writer(&mut *out, &s.to_string_lossy())?,
        Value::F32(x) if x.is_finite() => write!(out, "{x:?}")?,
        Value::F32(x) => float(f64::from(x), out)?,
        Value::F64(x) => float(x, out)?,
        Value::Array(a) => {
            out.write_all(b"[")?;
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.write_all(b",")?;
                }
                write_json(&item, out)?;
            }
            out.write_all(b"]")?;
        }
        Value::Bool(b) => out.write_all(if b { b"true" } else { b"false" })?,
        ref other => match (other.as_i64(), other.as_u64()) {
            (Some(i), _) => write!(out, "{i}")?,
            (None, Some(u)) => write!(out, "{u}")?,
            (None, None) => {}
        },
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn progress_names_are_escaped() {
        assert_eq!(
            super::escaped("blk.0\u{1b}]0;x\u{7}é"),
            "blk.0\\u{1b}]0;x\\u{7}é"
        );
    }
}
