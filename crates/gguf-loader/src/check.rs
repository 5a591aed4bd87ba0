//! Data checks: NaN and infinity in tensor values and block scales, like
//! llama.cpp's `--check-tensors` (ggml's `ggml_validate_row_data` in
//! `ggml-quants.c`, llama.cpp vendored in llama-cpp-python 0.3.36).
//!
//! What is checked, per type (the same fields ggml checks):
//!
//! | types | field(s) | test |
//! |---|---|---|
//! | F32, F16, BF16, F64 | every element (`"value"`) | exponent all ones: NaN if the mantissa is non-zero, else Inf |
//! | Q4_0, Q5_0, Q8_0, Q1_0, Q2_0, IQ4_NL, IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ4_XS, IQ1_S, TQ1_0, TQ2_0, Q3_K, Q6_K | f16 `d` | as F16 |
//! | Q4_1, Q5_1 | f16 `d`, `m` | as F16 |
//! | Q2_K, Q4_K, Q5_K | f16 `d`, `dmin` | as F16 |
//! | Q8_K | f32 `d` | as F32 |
//! | IQ1_M | the f16 `scale` assembled from the top nibbles of the four `scales` words | as F16 |
//! | MXFP4 | E8M0 `e` | `0xFF` (the E8M0 NaN; ggml: "invalid e value") is NaN |
//! | NVFP4 | — | ggml checks nothing: "UE4M3 scales are uint8_t — all byte values are valid" (`ggml_ue4m3_to_fp32` maps every byte to a finite number) |
//! | I8, I16, I32, I64 | — | ggml: "nothing to validate" |
//! | Q8_1 | f16 `d`, `s` | ggml has no case for Q8_1 and rejects it as an "invalid type"; here its two f16 fields are checked like Q5_1's `d`, `m` |
//!
//! Differences from ggml, all in what is reported rather than what is
//! checked: ggml stops at the first bad value of a row and prints it, here
//! every bad value is counted and up to `max_problems` per tensor are listed
//! (ggml's BF16 branch counts NaNs and infinities without positions; here they
//! are listed by element like F32's). A trailing partial block (impossible in
//! a file the loader accepted) is ignored rather than rejected.
//!
//! Data is read little-endian. In a big-endian file the plain float types are
//! read big-endian, and so are the f16 scales of the quantized types with a
//! big-endian byte order ([`GgmlType::has_big_endian_order`]); tensors of
//! the other quantized types are skipped and named in
//! [`ModelReport::skipped`], as nothing defines a byte order for their blocks.
//!
//! No input panics: every field is read from a whole block.

use std::fmt;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::format::blocks::{
    big_endian_swaps, iq1m_scale, scale_fields, swap_to_little_endian, u16_at, u32_at, ScaleEnc,
    ScaleField,
};
use crate::format::{Endianness, GgmlType};
use crate::loader::{Located, MmapGGUFLoader};
use crate::model::{in_pool, LoadOptions};

/// What is wrong with a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    /// Not a number (for E8M0 scales: the byte 0xFF).
    NaN,
    /// Plus or minus infinity.
    Inf,
}

impl ProblemKind {
    /// `"NaN"` or `"Inf"`.
    pub fn name(self) -> &'static str {
        match self {
            ProblemKind::NaN => "NaN",
            ProblemKind::Inf => "Inf",
        }
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// One NaN or infinite value found in a tensor's data.
#[derive(Debug, Clone, PartialEq)]
pub struct DataProblem {
    /// The tensor's name.
    pub tensor: String,
    /// Block index within the tensor, or element index for the plain float
    /// types (F32, F16, BF16, F64), as ggml reports it.
    pub block: u64,
    /// `"value"` for plain float elements, else the block field: `"d"`, `"m"`,
    /// `"dmin"`, `"s"` (Q8_1), `"e"` (MXFP4), `"scale"` (IQ1_M).
    pub field: &'static str,
    /// The field's value widened to f64 (NaN or ±infinity).
    pub value: f64,
    /// The field's raw bits (e.g. `0x7e00` for an f16 NaN).
    pub bits: u64,
    /// NaN or infinity.
    pub kind: ProblemKind,
}

impl DataProblem {
    /// True when `block` counts elements of a plain float tensor.
    pub fn is_element(&self) -> bool {
        self.field == "value"
    }

    /// `"NaN"`, `"Inf"` or `"-Inf"`.
    pub fn value_name(&self) -> &'static str {
        match self.kind {
            ProblemKind::NaN => "NaN",
            ProblemKind::Inf if self.value < 0.0 => "-Inf",
            ProblemKind::Inf => "Inf",
        }
    }
}

impl fmt::Display for DataProblem {
    /// `blk.0.attn_q.weight: block 3: field d is NaN` or
    /// `output_norm.weight: element 7: value is Inf`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_element() {
            write!(
                f,
                "{}: element {}: value is {}",
                self.tensor,
                self.block,
                self.value_name()
            )
        } else {
            write!(
                f,
                "{}: block {}: field {} is {}",
                self.tensor,
                self.block,
                self.field,
                self.value_name()
            )
        }
    }
}

/// A tensor whose data was not checked, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedTensor {
    /// The tensor's name.
    pub tensor: String,
    /// Its type.
    pub ty: GgmlType,
    /// Why it was not checked.
    pub reason: &'static str,
}

/// The result of [`check_model_report`].
#[derive(Debug, Clone, PartialEq)]
pub struct ModelReport {
    /// Mapped files (1 for an unsplit model).
    pub shards: usize,
    /// Tensors whose data was checked (all but [`ModelReport::skipped`]).
    pub tensors_checked: usize,
    /// At most `max_per_tensor` problems per tensor, in tensor order, then
    /// block order.
    pub problems: Vec<DataProblem>,
    /// Every problem found, listed or not.
    pub problem_count: u64,
    /// Tensors whose data could not be checked, with why.
    pub skipped: Vec<SkippedTensor>,
}

impl ModelReport {
    /// True when no problem was found (skipped tensors aside).
    pub fn is_clean(&self) -> bool {
        self.problem_count == 0
    }
}

/// The scale fields ggml checks in one block of `ty` (see the module table):
/// the block's scale fields from its layout (`format::blocks`), none for the
/// plain types and none for NVFP4.
fn block_fields(ty: GgmlType) -> &'static [ScaleField] {
    match ty {
        // ggml: "UE4M3 scales are uint8_t — all byte values are valid".
        GgmlType::NVFP4 => &[],
        _ => scale_fields(ty),
    }
}

/// Names of the fields checked in each block of `ty`: `["value"]` for the
/// plain float types, `[]` for the integer types and NVFP4.
pub fn checked_fields(ty: GgmlType) -> Vec<&'static str> {
    match ty {
        GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 | GgmlType::F64 => vec!["value"],
        _ => block_fields(ty).iter().map(|f| f.name).collect(),
    }
}

const F16_EXP: u16 = 0x7c00;
const BF16_EXP: u16 = 0x7f80;
const F32_EXP: u32 = 0x7f80_0000;
const F64_EXP: u64 = 0x7ff0_0000_0000_0000;

/// NaN or Inf from the raw bits of a value whose exponent is all ones.
#[inline]
fn kind_of(bits: u64, exp_mask: u64) -> Option<ProblemKind> {
    if bits & exp_mask != exp_mask {
        None
    } else if bits & mantissa_mask(exp_mask) != 0 {
        Some(ProblemKind::NaN)
    } else {
        Some(ProblemKind::Inf)
    }
}

/// The mantissa bits below an exponent mask.
#[inline]
fn mantissa_mask(exp_mask: u64) -> u64 {
    (1u64 << exp_mask.trailing_zeros()) - 1
}

fn f16_value(bits: u16) -> f64 {
    f64::from(half::f16::from_bits(bits).to_f32())
}

fn bf16_value(bits: u16) -> f64 {
    f64::from(f32::from_bits(u32::from(bits) << 16))
}

/// Checks one field of one whole block: `(kind, value, bits)` when bad.
#[inline]
fn check_field(block: &[u8], f: &ScaleField) -> Option<(ProblemKind, f64, u64)> {
    let o = f.offset;
    match f.enc {
        ScaleEnc::F16 => {
            let b = u16_at(block, o);
            kind_of(u64::from(b), u64::from(F16_EXP)).map(|k| (k, f16_value(b), u64::from(b)))
        }
        ScaleEnc::Iq1mScale => {
            let b = iq1m_scale(f.bytes(block));
            kind_of(u64::from(b), u64::from(F16_EXP)).map(|k| (k, f16_value(b), u64::from(b)))
        }
        ScaleEnc::F32 => {
            let b = u32_at(block, o);
            kind_of(u64::from(b), u64::from(F32_EXP))
                .map(|k| (k, f64::from(f32::from_bits(b)), u64::from(b)))
        }
        ScaleEnc::E8M0 => match block.get(o) {
            Some(&0xff) => Some((ProblemKind::NaN, f64::NAN, 0xff)),
            _ => None,
        },
        // Every UE4M3 byte is a finite number (`block_fields` leaves them out).
        ScaleEnc::UE4M3 => None,
    }
}

/// True when any block of `group` has a bad `f`: a branch-free pass over the
/// blocks (the common, clean case), before the exact pass.
fn group_has_bad(group: &[u8], type_size: usize, f: &ScaleField) -> bool {
    let blocks = group.chunks_exact(type_size);
    let o = f.offset;
    match f.enc {
        ScaleEnc::F16 => blocks.fold(false, |acc, b| acc | (u16_at(b, o) & F16_EXP == F16_EXP)),
        ScaleEnc::Iq1mScale => blocks.fold(false, |acc, b| {
            acc | (iq1m_scale(f.bytes(b)) & F16_EXP == F16_EXP)
        }),
        ScaleEnc::F32 => blocks.fold(false, |acc, b| acc | (u32_at(b, o) & F32_EXP == F32_EXP)),
        ScaleEnc::E8M0 => blocks.fold(false, |acc, b| acc | (b.get(o) == Some(&0xff))),
        ScaleEnc::UE4M3 => false,
    }
}

/// Blocks per group in the fast pass.
const GROUP: usize = 256;

/// Collects problems into `out` (up to `max` entries there) and returns how
/// many there were in all.
struct Sink<'a> {
    name: &'a str,
    max: usize,
    out: Vec<DataProblem>,
    count: u64,
}

impl Sink<'_> {
    fn push(
        &mut self,
        block: u64,
        field: &'static str,
        (kind, value, bits): (ProblemKind, f64, u64),
    ) {
        self.count += 1;
        if self.out.len() < self.max {
            self.out.push(DataProblem {
                tensor: self.name.to_string(),
                block,
                field,
                value,
                bits,
                kind,
            });
        }
    }
}

fn scan_blocks(ty: GgmlType, bytes: &[u8], first: u64, sink: &mut Sink<'_>) {
    let fields = block_fields(ty);
    if fields.is_empty() {
        return;
    }
    let ts = ty.type_size() as usize;
    for (gi, group) in bytes.chunks(ts * GROUP).enumerate() {
        if !fields.iter().any(|f| group_has_bad(group, ts, f)) {
            continue;
        }
        for (bi, block) in group.chunks_exact(ts).enumerate() {
            for f in fields {
                if let Some(p) = check_field(block, f) {
                    let index = first + (gi * GROUP + bi) as u64;
                    sink.push(index, f.name, p);
                }
            }
        }
    }
}

/// Elements per group in the fast pass over plain floats.
const ELEMS: usize = 1024;

macro_rules! scan_plain {
    ($fn:ident, $uint:ty, $n:literal, $exp:expr, $value:expr) => {
        fn $fn(bytes: &[u8], big: bool, first: u64, sink: &mut Sink<'_>) {
            let load = |c: &[u8]| -> $uint {
                let a: [u8; $n] = c.try_into().unwrap_or([0; $n]);
                if big {
                    <$uint>::from_be_bytes(a)
                } else {
                    <$uint>::from_le_bytes(a)
                }
            };
            for (gi, group) in bytes.chunks($n * ELEMS).enumerate() {
                let hits = group
                    .chunks_exact($n)
                    .fold(0u32, |acc, c| acc | u32::from(load(c) & $exp == $exp));
                if hits == 0 {
                    continue;
                }
                for (i, c) in group.chunks_exact($n).enumerate() {
                    let bits = load(c);
                    #[allow(clippy::unnecessary_cast)]
                    if let Some(k) = kind_of(bits as u64, $exp as u64) {
                        let index = first + (gi * ELEMS + i) as u64;
                        sink.push(index, "value", (k, $value(bits), bits as u64));
                    }
                }
            }
        }
    };
}

scan_plain!(scan_f16, u16, 2, F16_EXP, f16_value);
scan_plain!(scan_bf16, u16, 2, BF16_EXP, bf16_value);
scan_plain!(scan_f32, u32, 4, F32_EXP, |b| f64::from(f32::from_bits(b)));
scan_plain!(scan_f64, u64, 8, F64_EXP, f64::from_bits);

/// Scans whole blocks (elements for plain types) numbered from `first`.
fn scan(ty: GgmlType, bytes: &[u8], big: bool, first: u64, sink: &mut Sink<'_>) {
    match ty {
        GgmlType::F32 => scan_f32(bytes, big, first, sink),
        GgmlType::F16 => scan_f16(bytes, big, first, sink),
        GgmlType::BF16 => scan_bf16(bytes, big, first, sink),
        GgmlType::F64 => scan_f64(bytes, big, first, sink),
        _ if big && big_endian_swaps(ty) => {
            let mut little = bytes.to_vec();
            swap_to_little_endian(ty, &mut little);
            scan_blocks(ty, &little, first, sink)
        }
        _ => scan_blocks(ty, bytes, first, sink),
    }
}

/// The NaN and infinite values ggml's `--check-tensors` would object to in
/// the little-endian data of one tensor of type `ty`: at most `max_problems`,
/// in block order. A trailing partial block is ignored; no input panics.
pub fn check_tensor_data(
    name: &str,
    ty: GgmlType,
    bytes: &[u8],
    max_problems: usize,
) -> Vec<DataProblem> {
    count_tensor_data(name, ty, bytes, Endianness::Little, max_problems).0
}

/// Like [`check_tensor_data`] with a byte order, also returning how many
/// problems there were in all (listed or not). Big-endian data is read as
/// such for the plain float types and the quantized types with a big-endian
/// byte order ([`GgmlType::has_big_endian_order`]); for the others it is
/// read little-endian (callers skip it, see [`ModelReport::skipped`]).
pub fn count_tensor_data(
    name: &str,
    ty: GgmlType,
    bytes: &[u8],
    endianness: Endianness,
    max_problems: usize,
) -> (Vec<DataProblem>, u64) {
    let mut sink = Sink {
        name,
        max: max_problems,
        out: Vec::new(),
        count: 0,
    };
    scan(ty, bytes, endianness == Endianness::Big, 0, &mut sink);
    (sink.out, sink.count)
}

/// Bytes scanned by one task of [`check_model_report`].
const CHUNK_BYTES: usize = 1 << 20;

/// Checks every tensor of the model (every shard), spread over rayon's
/// threads: tensors in parallel, and large tensors in ranges of whole blocks.
/// Returns at most `max_per_tensor` problems per tensor, in tensor order.
pub fn check_model(loader: &MmapGGUFLoader, max_per_tensor: usize) -> Vec<DataProblem> {
    check_model_report(loader, max_per_tensor).problems
}

/// [`check_model`] with counts and the tensors that could not be checked.
/// In read mode a tensor whose bytes cannot be read (the file shrank) is
/// listed as skipped; [`check_model_report_with`] returns that error.
pub fn check_model_report(loader: &MmapGGUFLoader, max_per_tensor: usize) -> ModelReport {
    check_report(loader, max_per_tensor).0
}

/// [`check_model_report`] with options: the check runs on
/// [`LoadOptions::threads`] threads of its own (its progress callback and
/// stores are not used). Errs with [`Error::ThreadPool`] when the pool
/// cannot be built, and in read mode with the first [`Error::TensorIo`] a
/// tensor's bytes gave.
pub fn check_model_report_with(
    loader: &MmapGGUFLoader,
    max_per_tensor: usize,
    opts: LoadOptions<'_>,
) -> Result<ModelReport> {
    let (report, error) = in_pool(opts.threads, || check_report(loader, max_per_tensor))?;
    match error {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// The check, and the first error reading a tensor's bytes (read mode).
fn check_report(loader: &MmapGGUFLoader, max_per_tensor: usize) -> (ModelReport, Option<Error>) {
    struct Task<'a> {
        tensor: usize,
        located: Located<'a>,
        big: bool,
        bytes: std::ops::Range<u64>,
        first: u64,
    }
    let mut tasks = Vec::new();
    let mut skipped = Vec::new();
    let mut n_tensors = 0usize;
    for t in loader.located() {
        let tensor = n_tensors;
        n_tensors += 1;
        let (info, big) = (t.info, t.endianness() == Endianness::Big);
        if big && !info.ty.has_big_endian_order() && !block_fields(info.ty).is_empty() {
            skipped.push(SkippedTensor {
                tensor: info.name.to_string(),
                ty: info.ty,
                reason: "data has no defined big-endian byte order",
            });
            continue;
        }
        if checked_fields(info.ty).is_empty() {
            continue;
        }
        let ts = info.ty.type_size();
        let per_task = (CHUNK_BYTES as u64 / ts).max(1) * ts;
        let mut start = 0;
        while start < info.n_bytes {
            let end = info.n_bytes.min(start + per_task);
            tasks.push(Task {
                tensor,
                located: t,
                big,
                bytes: start..end,
                first: start / ts,
            });
            start = end;
        }
    }
    type Found = (usize, Result<(Vec<DataProblem>, u64)>);
    let results: Vec<Found> = tasks
        .par_iter()
        .map(|task| {
            let bytes = match task.located.read(task.bytes.clone()) {
                Ok(b) => b,
                Err(e) => return (task.tensor, Err(e)),
            };
            let mut sink = Sink {
                name: task.located.info.name,
                max: max_per_tensor,
                out: Vec::new(),
                count: 0,
            };
            scan(
                task.located.info.ty,
                &bytes,
                task.big,
                task.first,
                &mut sink,
            );
            (task.tensor, Ok((sink.out, sink.count)))
        })
        .collect();

    let mut problems = Vec::new();
    let mut problem_count = 0u64;
    let mut current = usize::MAX;
    let mut listed = 0usize;
    let mut error = None;
    let mut unreadable = usize::MAX;
    for ((tensor, found), task) in results.into_iter().zip(&tasks) {
        if tensor != current {
            current = tensor;
            listed = 0;
        }
        let (found, count) = match found {
            Ok(f) => f,
            Err(e) => {
                if unreadable != tensor {
                    unreadable = tensor;
                    skipped.push(SkippedTensor {
                        tensor: task.located.info.name.to_string(),
                        ty: task.located.info.ty,
                        reason: "its bytes could not be read",
                    });
                }
                error.get_or_insert(e);
                continue;
            }
        };
        problem_count += count;
        for p in found {
            if listed < max_per_tensor {
                problems.push(p);
                listed += 1;
            }
        }
    }
    let report = ModelReport {
        shards: loader.shards().count(),
        tensors_checked: n_tensors - skipped.len(),
        problems,
        problem_count,
        skipped,
    };
    (report, error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_from_bits() {
        let e = u64::from(F16_EXP);
        assert_eq!(kind_of(0x7c00, e), Some(ProblemKind::Inf));
        assert_eq!(kind_of(0xfc00, e), Some(ProblemKind::Inf));
        assert_eq!(kind_of(0x7e00, e), Some(ProblemKind::NaN));
        assert_eq!(kind_of(0x7c01, e), Some(ProblemKind::NaN));
        assert_eq!(kind_of(0x7bff, e), None);
        let e = u64::from(BF16_EXP);
        assert_eq!(kind_of(0x7f80, e), Some(ProblemKind::Inf));
        assert_eq!(kind_of(0xff81, e), Some(ProblemKind::NaN));
        assert_eq!(kind_of(0x7f7f, e), None);
        let e = u64::from(F32_EXP);
        assert_eq!(
            kind_of(f32::INFINITY.to_bits().into(), e),
            Some(ProblemKind::Inf)
        );
        assert_eq!(
            kind_of(f32::NAN.to_bits().into(), e),
            Some(ProblemKind::NaN)
        );
        assert_eq!(kind_of(f32::MAX.to_bits().into(), e), None);
        assert_eq!(
            kind_of(f64::NEG_INFINITY.to_bits(), F64_EXP),
            Some(ProblemKind::Inf)
        );
        assert_eq!(kind_of(f64::NAN.to_bits(), F64_EXP), Some(ProblemKind::NaN));
    }

    #[test]
    fn checked_fields_fit_their_blocks_and_can_be_bad() {
        for ty in GgmlType::ALL {
            for f in block_fields(ty) {
                assert!(
                    f.offset + f.size <= ty.type_size() as usize,
                    "{ty} {}",
                    f.name
                );
                assert_ne!(f.enc, ScaleEnc::UE4M3, "{ty}: UE4M3 is never NaN or Inf");
            }
        }
    }

    #[test]
    fn every_quantized_type_but_nvfp4_has_a_checked_field() {
        for ty in GgmlType::ALL {
            let fields = checked_fields(ty);
            let expect_none = matches!(
                ty,
                GgmlType::I8 | GgmlType::I16 | GgmlType::I32 | GgmlType::I64 | GgmlType::NVFP4
            );
            assert_eq!(fields.is_empty(), expect_none, "{ty}");
        }
    }
}
