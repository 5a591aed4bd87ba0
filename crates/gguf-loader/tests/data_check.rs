//! The data check (`check_model`, `check_tensor_data`): NaN/Inf in plain float values and in block
//! scales, at known positions, through files written with `GgufWriter` and
//! through `check_tensor_data` for all 35 types; clean data reports nothing;
//! no bytes panic.

use std::path::Path;

use gguf_loader::MmapGGUFLoader;
use gguf_loader::{
    check_model, check_model_report, check_tensor_data, checked_fields, count_tensor_data,
    DataProblem, ProblemKind,
};
use gguf_loader::{Endianness, GgmlType, GgufWriter, MetaValue};
use proptest::prelude::*;

const F16_NAN: u16 = 0x7e00;
const F16_INF: u16 = 0x7c00;
const F16_NEG_INF: u16 = 0xfc00;
const F16_ONE: u16 = 0x3c00;

/// Where ggml's checked fields live (`ggml-common.h`), written out here
/// independently of the implementation: `(field, offset, width)`.
fn ggml_fields(ty: GgmlType) -> Vec<(&'static str, usize, usize)> {
    use GgmlType::*;
    match ty {
        F32 | F16 | BF16 | F64 => vec![("value", 0, ty.type_size() as usize)],
        I8 | I16 | I32 | I64 | NVFP4 => vec![],
        Q4_0 | Q5_0 | Q8_0 | Q1_0 | Q2_0 | IQ4_NL | IQ2_XXS | IQ2_XS | IQ2_S | IQ3_XXS | IQ3_S
        | IQ4_XS | IQ1_S => vec![("d", 0, 2)],
        Q4_1 | Q5_1 => vec![("d", 0, 2), ("m", 2, 2)],
        Q8_1 => vec![("d", 0, 2), ("s", 2, 2)],
        Q4_K | Q5_K => vec![("d", 0, 2), ("dmin", 2, 2)],
        Q2_K => vec![("d", 80, 2), ("dmin", 82, 2)],
        Q3_K => vec![("d", 108, 2)],
        Q6_K => vec![("d", 208, 2)],
        Q8_K => vec![("d", 0, 4)],
        TQ1_0 => vec![("d", 52, 2)],
        TQ2_0 => vec![("d", 64, 2)],
        IQ1_M => vec![("scale", 48, 8)],
        MXFP4 => vec![("e", 0, 1)],
    }
}

/// `n` blocks of `ty` with every checked field finite (1.0, or E8M0 127)
/// and the other bytes a fixed pattern.
fn clean_blocks(ty: GgmlType, n: usize) -> Vec<u8> {
    let ts = ty.type_size() as usize;
    let mut v: Vec<u8> = (0..n * ts).map(|i| (i * 37 % 251) as u8).collect();
    for b in 0..n {
        for (_, off, width) in ggml_fields(ty) {
            let at = b * ts + off;
            set_field(&mut v[at..at + width], ty, Bad::None);
        }
        if ty == GgmlType::IQ1_M {
            // The top nibbles of the four scale words make the f16 1.0 (0x3c00).
            let at = b * ts + 48;
            set_iq1m_scale(&mut v[at..at + 8], F16_ONE);
        }
    }
    v
}

#[derive(Clone, Copy, PartialEq)]
enum Bad {
    None,
    NaN,
    Inf,
    NegInf,
}

/// Writes a finite, NaN or infinite value into one field of `ty` (plain
/// types: one element), little-endian.
fn set_field(dst: &mut [u8], ty: GgmlType, bad: Bad) {
    match (ty, dst.len()) {
        (GgmlType::MXFP4, 1) => dst[0] = if bad == Bad::None { 127 } else { 0xff },
        (GgmlType::IQ1_M, 8) => {
            let h = match bad {
                Bad::None => F16_ONE,
                Bad::NaN => F16_NAN,
                Bad::Inf => F16_INF,
                Bad::NegInf => F16_NEG_INF,
            };
            set_iq1m_scale(dst, h);
        }
        (GgmlType::BF16, 2) => {
            let h: u16 = match bad {
                Bad::None => 0x3f80,
                Bad::NaN => 0x7fc1,
                Bad::Inf => 0x7f80,
                Bad::NegInf => 0xff80,
            };
            dst.copy_from_slice(&h.to_le_bytes());
        }
        (_, 2) => {
            let h = match bad {
                Bad::None => F16_ONE,
                Bad::NaN => F16_NAN,
                Bad::Inf => F16_INF,
                Bad::NegInf => F16_NEG_INF,
            };
            dst.copy_from_slice(&h.to_le_bytes());
        }
        (_, 4) => {
            let f = match bad {
                Bad::None => 1.0f32,
                Bad::NaN => f32::NAN,
                Bad::Inf => f32::INFINITY,
                Bad::NegInf => f32::NEG_INFINITY,
            };
            dst.copy_from_slice(&f.to_le_bytes());
        }
        (_, 8) => {
            let f = match bad {
                Bad::None => 1.0f64,
                Bad::NaN => f64::NAN,
                Bad::Inf => f64::INFINITY,
                Bad::NegInf => f64::NEG_INFINITY,
            };
            dst.copy_from_slice(&f.to_le_bytes());
        }
        other => panic!("no field of width {other:?}"),
    }
}

/// Stores `h` in the top nibbles of the four IQ1_M scale words, keeping the
/// low 12 bits of each (the 3-bit block scales).
fn set_iq1m_scale(dst: &mut [u8], h: u16) {
    for (j, w) in dst.chunks_exact_mut(2).enumerate() {
        let old = u16::from_le_bytes([w[0], w[1]]);
        let nib = (h >> (4 * j)) & 0xf;
        let new = (old & 0x0fff) | (nib << 12);
        w.copy_from_slice(&new.to_le_bytes());
    }
}

/// `n` blocks of `ty` with `bad` written into `field` of block `k`.
fn blocks_with(ty: GgmlType, n: usize, k: usize, field: &str, bad: Bad) -> Vec<u8> {
    let mut v = clean_blocks(ty, n);
    let ts = ty.type_size() as usize;
    let (_, off, width) = ggml_fields(ty).into_iter().find(|f| f.0 == field).unwrap();
    let at = k * ts + off;
    set_field(&mut v[at..at + width], ty, bad);
    v
}

/// The (tensor, block, field, kind) of each problem.
fn summary(ps: &[DataProblem]) -> Vec<(String, u64, &'static str, ProblemKind)> {
    ps.iter()
        .map(|p| (p.tensor.clone(), p.block, p.field, p.kind))
        .collect()
}

fn write(path: &Path, w: &GgufWriter<'_>) {
    std::fs::write(path, w.to_bytes().unwrap()).unwrap();
}

fn n_elements(ty: GgmlType, blocks: usize) -> u64 {
    blocks as u64 * ty.block_size()
}

#[test]
fn checked_fields_are_ggmls() {
    for ty in GgmlType::ALL {
        let want: Vec<&str> = ggml_fields(ty).iter().map(|f| f.0).collect();
        assert_eq!(checked_fields(ty), want, "{ty}");
    }
}

/// Every checked field of every type: NaN, Inf and -Inf in block 2 of 5 are
/// found at the right block with the right field; the clean blocks are clean.
#[test]
fn every_field_of_every_type() {
    for ty in GgmlType::ALL {
        let clean = clean_blocks(ty, 5);
        assert_eq!(
            check_tensor_data("t", ty, &clean, 100),
            vec![],
            "{ty} clean"
        );
        for (field, _, _) in ggml_fields(ty) {
            for bad in [Bad::NaN, Bad::Inf, Bad::NegInf] {
                let data = blocks_with(ty, 5, 2, field, bad);
                let got = check_tensor_data("t", ty, &data, 100);
                let kind = if bad == Bad::NaN || ty == GgmlType::MXFP4 {
                    ProblemKind::NaN
                } else {
                    ProblemKind::Inf
                };
                assert_eq!(
                    summary(&got),
                    vec![("t".to_string(), 2, field, kind)],
                    "{ty} {field}"
                );
                let p = &got[0];
                match kind {
                    ProblemKind::NaN => assert!(p.value.is_nan(), "{ty}"),
                    ProblemKind::Inf => {
                        assert!(p.value.is_infinite(), "{ty}");
                        assert_eq!(p.value < 0.0, bad == Bad::NegInf, "{ty}");
                    }
                }
            }
        }
    }
}

/// Types ggml does not check report nothing even for all-ones bytes.
#[test]
fn unchecked_types_report_nothing() {
    use GgmlType::*;
    for ty in [I8, I16, I32, I64, NVFP4] {
        let data = vec![0xffu8; ty.type_size() as usize * 64];
        assert_eq!(check_tensor_data("t", ty, &data, 100), vec![], "{ty}");
    }
}

/// A model file with plain float tensors holding NaN/Inf at known indices
/// (some past the fast pass's group boundaries) and quantized tensors with a
/// bad scale in a known block.
#[test]
fn model_file_problems_at_known_places() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");

    let mut f32s = vec![0u8; 3000 * 4];
    f32s[123 * 4..124 * 4].copy_from_slice(&f32::NAN.to_le_bytes());
    f32s[2999 * 4..].copy_from_slice(&f32::NEG_INFINITY.to_le_bytes());
    let mut f16s = vec![0u8; 4096 * 2];
    f16s[5 * 2..6 * 2].copy_from_slice(&F16_INF.to_le_bytes());
    f16s[2047 * 2..2048 * 2].copy_from_slice(&0x7c01u16.to_le_bytes()); // NaN
    let mut bf16s = vec![0x3fu8; 64 * 2];
    bf16s[7 * 2..8 * 2].copy_from_slice(&0x7fc0u16.to_le_bytes());
    bf16s[8 * 2..9 * 2].copy_from_slice(&0xff80u16.to_le_bytes());

    let quants: Vec<(&str, GgmlType, usize, usize, &str, Bad)> = vec![
        ("q4_0", GgmlType::Q4_0, 8, 3, "d", Bad::NaN),
        ("q4_1", GgmlType::Q4_1, 8, 7, "m", Bad::Inf),
        ("q8_0", GgmlType::Q8_0, 600, 300, "d", Bad::Inf),
        ("q2_k", GgmlType::Q2_K, 4, 0, "dmin", Bad::NaN),
        ("q4_k", GgmlType::Q4_K, 4, 1, "dmin", Bad::NaN),
        ("q5_k", GgmlType::Q5_K, 4, 3, "d", Bad::NegInf),
        ("q6_k", GgmlType::Q6_K, 4, 2, "d", Bad::Inf),
        ("q8_k", GgmlType::Q8_K, 3, 0, "d", Bad::NaN),
        ("iq1_m", GgmlType::IQ1_M, 3, 1, "scale", Bad::Inf),
        ("tq1_0", GgmlType::TQ1_0, 3, 2, "d", Bad::NaN),
        ("mxfp4", GgmlType::MXFP4, 10, 5, "e", Bad::NaN),
    ];
    let mut w = GgufWriter::new();
    w.add("general.architecture", MetaValue::String("llama".into()));
    w.add_tensor("f32", &[1000, 3], GgmlType::F32, f32s)
        .unwrap();
    w.add_tensor("clean", &[32], GgmlType::F32, vec![0u8; 128])
        .unwrap();
    w.add_tensor("f16", &[4096], GgmlType::F16, f16s).unwrap();
    w.add_tensor("bf16", &[64], GgmlType::BF16, bf16s).unwrap();
    for (name, ty, n, k, field, bad) in &quants {
        w.add_tensor(
            *name,
            &[n_elements(*ty, *n)],
            *ty,
            blocks_with(*ty, *n, *k, field, *bad),
        )
        .unwrap();
    }
    write(&path, &w);

    let loader = MmapGGUFLoader::new(&path).unwrap();
    let got = summary(&check_model(&loader, 10));
    let mut want: Vec<(String, u64, &str, ProblemKind)> = vec![
        ("f32".into(), 123, "value", ProblemKind::NaN),
        ("f32".into(), 2999, "value", ProblemKind::Inf),
        ("f16".into(), 5, "value", ProblemKind::Inf),
        ("f16".into(), 2047, "value", ProblemKind::NaN),
        ("bf16".into(), 7, "value", ProblemKind::NaN),
        ("bf16".into(), 8, "value", ProblemKind::Inf),
    ];
    for (name, _, _, k, field, bad) in &quants {
        let kind = if *bad == Bad::NaN {
            ProblemKind::NaN
        } else {
            ProblemKind::Inf
        };
        want.push((name.to_string(), *k as u64, field, kind));
    }
    assert_eq!(got, want);

    let report = check_model_report(&loader, 10);
    assert_eq!(report.shards, 1);
    assert_eq!(report.tensors_checked, 4 + quants.len());
    assert_eq!(report.problem_count, want.len() as u64);
    assert!(report.skipped.is_empty());
    let shown: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(shown[0], "f32: element 123: value is NaN");
    assert_eq!(shown[1], "f32: element 2999: value is -Inf");
    assert_eq!(shown[6], "q4_0: block 3: field d is NaN");
    assert_eq!(shown[7], "q4_1: block 7: field m is Inf");
}

#[test]
fn clean_model_reports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clean.gguf");
    let mut w = GgufWriter::new();
    for ty in GgmlType::ALL {
        w.add_tensor(
            format!("t.{}", ty.name()),
            &[n_elements(ty, 4)],
            ty,
            clean_blocks(ty, 4),
        )
        .unwrap();
    }
    write(&path, &w);
    let loader = MmapGGUFLoader::new(&path).unwrap();
    let report = check_model_report(&loader, 10);
    assert_eq!(report.problems, vec![]);
    assert_eq!(report.problem_count, 0);
    assert_eq!(report.tensors_checked, 35);
    assert!(report.is_clean());
}

/// Large tensors are split across tasks: indices stay absolute, problems
/// stay in order, and the per-tensor cap holds across tasks while every
/// problem is counted.
#[test]
fn large_tensors_split_and_cap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.gguf");
    let n = 700_000usize; // 2.8 MB of f32: three tasks
    let mut big = vec![0u8; n * 4];
    for i in [5usize, 262_144, 290_000, 699_999] {
        big[i * 4..i * 4 + 4].copy_from_slice(&f32::INFINITY.to_le_bytes());
    }
    let all_nan = vec![0xffu8; n * 4];
    let q = blocks_with(GgmlType::Q4_0, 200_000, 150_000, "d", Bad::NaN);
    let mut w = GgufWriter::new();
    w.add_tensor("big", &[n as u64], GgmlType::F32, &big[..])
        .unwrap();
    w.add_tensor("nan", &[n as u64], GgmlType::F32, &all_nan[..])
        .unwrap();
    w.add_tensor("q", &[200_000 * 32], GgmlType::Q4_0, &q[..])
        .unwrap();
    write(&path, &w);
    let loader = MmapGGUFLoader::new(&path).unwrap();
    let report = check_model_report(&loader, 3);
    let got: Vec<(String, u64)> = report
        .problems
        .iter()
        .map(|p| (p.tensor.clone(), p.block))
        .collect();
    let want: Vec<(String, u64)> = [
        ("big", 5),
        ("big", 262_144),
        ("big", 290_000),
        ("nan", 0),
        ("nan", 1),
        ("nan", 2),
        ("q", 150_000),
    ]
    .iter()
    .map(|(t, b)| (t.to_string(), *b))
    .collect();
    assert_eq!(got, want);
    assert_eq!(report.problem_count, 4 + n as u64 + 1);

    // The same through the single-tensor entry point.
    let (listed, count) = count_tensor_data("nan", GgmlType::F32, &all_nan, Endianness::Little, 2);
    assert_eq!(listed.len(), 2);
    assert_eq!(count, n as u64);
}

/// Big-endian files: plain floats are read big-endian; quantized tensors are
/// skipped and named.
#[test]
fn big_endian_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("be.gguf");
    let mut f = Vec::new();
    for x in [1.0f32, 2.0, f32::NAN, 4.0] {
        f.extend_from_slice(&x.to_be_bytes());
    }
    // Bytes 00 00 80 7f: a tiny number big-endian, +Inf if read little-endian.
    f.extend_from_slice(&[0x00, 0x00, 0x80, 0x7f]);
    let mut h = Vec::new();
    for x in [F16_ONE, F16_NEG_INF] {
        h.extend_from_slice(&x.to_be_bytes());
    }
    let mut w = GgufWriter::new().endianness(Endianness::Big);
    w.add_tensor("f32", &[5], GgmlType::F32, f).unwrap();
    w.add_tensor("f16", &[2], GgmlType::F16, h).unwrap();
    // Q4_0's f16 scale is big-endian (gguf_convert_endian.py's order):
    // 7c 00 is +Inf, a tiny number if read little-endian.
    let mut q = vec![0x7c, 0x00];
    q.extend_from_slice(&[0u8; 16]);
    w.add_tensor("q4_0", &[32], GgmlType::Q4_0, q).unwrap();
    // Q5_0 has no big-endian byte order: skipped.
    w.add_tensor("q5_0", &[32], GgmlType::Q5_0, vec![0xffu8; 22])
        .unwrap();
    w.add_tensor("i32", &[4], GgmlType::I32, vec![0xffu8; 16])
        .unwrap();
    write(&path, &w);
    let loader = MmapGGUFLoader::new(&path).unwrap();
    let report = check_model_report(&loader, 10);
    assert_eq!(
        summary(&report.problems),
        vec![
            ("f32".to_string(), 2, "value", ProblemKind::NaN),
            ("f16".to_string(), 1, "value", ProblemKind::Inf),
            ("q4_0".to_string(), 0, "d", ProblemKind::Inf),
        ]
    );
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].tensor, "q5_0");
    assert_eq!(report.skipped[0].ty, GgmlType::Q5_0);
    assert_eq!(report.tensors_checked, 4);
}

#[test]
fn split_models_check_every_shard() {
    let dir = tempfile::tempdir().unwrap();
    let p = |i: u16| dir.path().join(format!("model-{i:05}-of-00002.gguf"));
    for (no, name) in [(0u16, "a"), (1, "b")] {
        let mut w = GgufWriter::new();
        w.add("split.no", MetaValue::U16(no))
            .add("split.count", MetaValue::U16(2))
            .add("split.tensors.count", MetaValue::I32(2));
        w.add_tensor(
            name,
            &[64],
            GgmlType::Q8_0,
            blocks_with(GgmlType::Q8_0, 2, 1, "d", Bad::NaN),
        )
        .unwrap();
        write(&p(no + 1), &w);
    }
    let loader = MmapGGUFLoader::new(p(1)).unwrap();
    let report = check_model_report(&loader, 10);
    assert_eq!(report.shards, 2);
    assert_eq!(
        summary(&report.problems),
        vec![
            ("a".to_string(), 1, "d", ProblemKind::NaN),
            ("b".to_string(), 1, "d", ProblemKind::NaN),
        ]
    );
}

#[test]
fn max_problems_caps_the_list() {
    let data = vec![0xffu8; 18 * 100];
    let got = check_tensor_data("t", GgmlType::Q4_0, &data, 5);
    assert_eq!(
        got.iter().map(|p| p.block).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
    assert_eq!(check_tensor_data("t", GgmlType::Q4_0, &data, 0), vec![]);
    let (_, count) = count_tensor_data("t", GgmlType::Q4_0, &data, Endianness::Little, 0);
    assert_eq!(count, 100);
}

#[test]
fn partial_blocks_and_empty_input() {
    for ty in GgmlType::ALL {
        assert_eq!(check_tensor_data("t", ty, &[], 10), vec![], "{ty}");
        // A trailing partial block of all ones is ignored.
        let ts = ty.type_size() as usize;
        let mut v = clean_blocks(ty, 2);
        v.extend(std::iter::repeat_n(0xffu8, ts - 1));
        assert_eq!(check_tensor_data("t", ty, &v, 10), vec![], "{ty}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any bytes of any length, any type, either byte order: no panic, the
    /// cap holds, and every listed problem is inside the data.
    #[test]
    fn random_bytes_never_panic(
        type_index in 0usize..35,
        bytes in proptest::collection::vec(any::<u8>(), 0..3000),
        max in 0usize..20,
        big in any::<bool>(),
    ) {
        let ty = GgmlType::ALL[type_index];
        let e = if big { Endianness::Big } else { Endianness::Little };
        let (listed, count) = count_tensor_data("t", ty, &bytes, e, max);
        prop_assert!(listed.len() <= max);
        prop_assert!(listed.len() as u64 <= count);
        let blocks = (bytes.len() as u64) / ty.type_size();
        for p in &listed {
            prop_assert!(p.block < blocks);
        }
        let _ = check_tensor_data("t", ty, &bytes, max);
    }
}
