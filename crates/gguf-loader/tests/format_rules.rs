//! One crafted file per validation rule, each asserting its error; every
//! prefix of a valid file is rejected without panic.

mod corpus_cases;

use corpus_cases::Raw;
use gguf_loader::{
    Context, FormatErrorKind as K, GgmlType, GgufFile, GgufWriter, MetaValue, ValueType,
};

fn err(bytes: &[u8]) -> gguf_loader::FormatError {
    GgufFile::parse(bytes).expect_err("must be rejected")
}

#[test]
fn bad_magic() {
    let e = err(b"GGUG\x03\0\0\0");
    assert_eq!(e.kind, K::BadMagic(*b"GGUG"));
    assert_eq!((e.offset, e.context), (0, Context::Header));
}

#[test]
fn other_formats_are_named() {
    // A safetensors file: its header's length, then the JSON header.
    let json = br#"{"__metadata__":{}}"#;
    let mut st = (json.len() as u64).to_le_bytes().to_vec();
    st.extend(json);
    let e = err(&st);
    assert_eq!(e.kind, K::Safetensors(json.len() as u64));
    assert!(e.to_string().contains("a safetensors file"), "{e}");
    // A length past the end is no safetensors file.
    st[0] += 1;
    assert!(matches!(err(&st).kind, K::BadMagic(_)));

    for (start, says) in [
        (&b"tjgg\x03\0\0\0"[..], "llama.cpp's format before GGUF"),
        (
            b"version https://git-lfs.github.com/spec/v1\n",
            "Git LFS pointer",
        ),
        (b"<!DOCTYPE html>", "HTML"),
        (b"\x1f\x8b\x08\0\0\0\0\0", "gzip"),
        (b"PK\x03\x04\0\0\0\0", "zip"),
        (b"\x80\x02}q\0(X\0\0", "pickle"),
    ] {
        let e = err(start);
        assert!(matches!(e.kind, K::BadMagic(_)), "{e}");
        assert!(e.to_string().contains(says), "{e}");
    }
    // Unknown bytes get no guess.
    assert!(err(b"GGUG\x03\0\0\0")
        .to_string()
        .ends_with("(expected \"GGUF\") (at byte 0)"));
}

#[test]
fn unknown_versions() {
    for v in [0u32, 4, 0x0400_0000, u32::MAX] {
        let mut b = b"GGUF".to_vec();
        b.extend(v.to_le_bytes());
        b.extend([0u8; 16]);
        let e = err(&b);
        assert_eq!(e.kind, K::UnsupportedVersion(v), "version {v}");
        assert_eq!(e.offset, 4);
    }
}

#[test]
fn counts_that_cannot_fit() {
    for (nt, nkv, what) in [
        (0, 1 << 62, "metadata count"),
        (0, (1 << 63) - 1, "metadata count"),
        (1 << 62, 0, "tensor count"),
        (u64::MAX, 0, "tensor count"),
    ] {
        let e = err(&Raw::header(nt, nkv).out);
        assert!(
            matches!(e.kind, K::CountTooLarge { what: w, .. } if w == what),
            "{e}"
        );
    }
}

#[test]
fn string_and_array_lengths_past_the_end() {
    let mut r = Raw::header(0, 1);
    r.len(1 << 40).u64(0).u64(0);
    assert!(matches!(err(&r.out).kind, K::Truncated { what: "key", .. }));

    let mut r = Raw::header(0, 1);
    r.bytes(b"k")
        .u32(ValueType::String as u32)
        .len(100)
        .out
        .extend(b"short");
    let e = err(&r.out);
    assert!(matches!(e.kind, K::Truncated { what: "string", .. }), "{e}");
    assert_eq!(e.context, Context::Key("k".into()));

    // An array of 2^40 strings in a tiny file.
    let mut r = Raw::header(0, 1);
    r.bytes(b"tokens")
        .u32(ValueType::Array as u32)
        .u32(ValueType::String as u32)
        .len(1 << 40);
    assert!(matches!(
        err(&r.out).kind,
        K::CountTooLarge {
            what: "string array length",
            ..
        }
    ));

    let mut r = Raw::header(0, 1);
    r.bytes(b"a")
        .u32(ValueType::Array as u32)
        .u32(ValueType::U64 as u32)
        .len(u64::MAX / 4);
    assert!(matches!(
        err(&r.out).kind,
        K::CountTooLarge {
            what: "array length",
            ..
        }
    ));
}

#[test]
fn unknown_value_type() {
    let mut r = Raw::header(0, 1);
    r.bytes(b"k").u32(13).u32(0);
    let e = err(&r.out);
    assert_eq!(e.kind, K::UnknownValueType(13));
    assert_eq!(e.offset, 4 + 4 + 8 + 8 + 8 + 1);

    let mut r = Raw::header(0, 1);
    r.bytes(b"k").u32(ValueType::Array as u32).u32(99).len(0);
    assert_eq!(err(&r.out).kind, K::UnknownValueType(99));
}

#[test]
fn invalid_bools() {
    let mut r = Raw::header(0, 1);
    r.bytes(b"b").u32(ValueType::Bool as u32).u8(2);
    assert_eq!(err(&r.out).kind, K::InvalidBool(2));

    let mut r = Raw::header(0, 1);
    r.bytes(b"b")
        .u32(ValueType::Array as u32)
        .u32(ValueType::Bool as u32)
        .len(3)
        .u8(1)
        .u8(0)
        .u8(7);
    let e = err(&r.out);
    assert_eq!(e.kind, K::InvalidBool(7));
    assert_eq!(e.offset as usize, r.out.len() - 1);
}

#[test]
fn key_not_utf8_and_duplicate_key() {
    let mut r = Raw::header(0, 1);
    r.bytes(&[0xff, 0xfe]).u32(ValueType::U8 as u32).u8(0);
    let e = err(&r.out);
    assert_eq!(e.kind, K::KeyNotUtf8);
    assert_eq!(e.context, Context::KeyIndex(0));

    let mut r = Raw::header(0, 2);
    r.kv_u32("dup", 1).kv_u32("dup", 2);
    let e = err(&r.out);
    assert_eq!(e.kind, K::DuplicateKey);
    assert_eq!(e.context, Context::Key("dup".into()));
}

#[test]
fn deep_nesting_is_rejected_without_stack_overflow() {
    // 200,000 levels of arrays, each holding one array.
    let depth = 200_000;
    let mut r = Raw::header(0, 1);
    r.bytes(b"deep").u32(ValueType::Array as u32);
    for _ in 0..depth {
        r.u32(ValueType::Array as u32).len(1);
    }
    r.u32(ValueType::U8 as u32).len(0);
    let e = err(&r.out);
    assert!(matches!(e.kind, K::NestingTooDeep(_)), "{e}");
}

#[test]
fn alignment_values_and_types() {
    for a in [0u32, 3, 48] {
        let mut r = Raw::header(0, 1);
        r.kv_u32("general.alignment", a);
        assert_eq!(err(&r.out).kind, K::BadAlignment(a.into()));
    }
    let mut r = Raw::header(0, 1);
    r.bytes(b"general.alignment")
        .u32(ValueType::U64 as u32)
        .u64(32);
    assert_eq!(err(&r.out).kind, K::AlignmentType(ValueType::U64));
}

#[test]
fn dims() {
    let mut r = Raw::header(1, 0);
    r.tensor("t", &[1, 1, 1, 1, 1], 0, 0);
    assert_eq!(err(&r.data(4)).kind, K::TooManyDims(5));

    let mut r = Raw::header(1, 0);
    r.bytes(b"t").u32(1 << 31);
    assert_eq!(err(&r.data(32)).kind, K::TooManyDims(1 << 31));

    let mut r = Raw::header(1, 0);
    r.tensor("t", &[4, 1 << 63], 0, 0);
    assert!(matches!(
        err(&r.data(16)).kind,
        K::DimTooLarge { index: 1, .. }
    ));

    for dims in [
        &[i64::MAX as u64, 2, 1, 1][..],
        &[1 << 32, 1 << 32],
        &[1 << 40, 1 << 40, 1 << 40],
    ] {
        let mut r = Raw::header(1, 0);
        r.tensor("t", dims, 0, 0);
        let e = err(&r.data(16));
        assert!(
            matches!(e.kind, K::ElementCountOverflow(_)),
            "{dims:?}: {e}"
        );
        assert_eq!(e.context, Context::Tensor("t".into()));
    }

    // 2^62 f64 elements fit i64 but their 2^65 bytes do not fit u64.
    let mut r = Raw::header(1, 0);
    r.tensor("t", &[1 << 62], GgmlType::F64.id(), 0);
    assert!(matches!(err(&r.data(16)).kind, K::ByteSizeOverflow { .. }));
}

#[test]
fn unknown_and_removed_types_and_block_multiples() {
    for (id, kind) in [
        (43, K::UnknownType(43)),
        (1000, K::UnknownType(1000)),
        (
            4,
            K::RemovedType {
                id: 4,
                name: "Q4_2",
            },
        ),
        (
            31,
            K::RemovedType {
                id: 31,
                name: "Q4_0_4_4",
            },
        ),
    ] {
        let mut r = Raw::header(1, 0);
        r.tensor("t", &[32], id, 0);
        assert_eq!(err(&r.data(64)).kind, kind);
    }
    let mut r = Raw::header(1, 0);
    r.tensor("q", &[48, 2], GgmlType::Q4_0.id(), 0);
    assert_eq!(
        err(&r.data(64)).kind,
        K::NotBlockMultiple {
            ty: "Q4_0",
            ne0: 48,
            block_size: 32
        }
    );
}

#[test]
fn offsets() {
    let mut r = Raw::header(1, 0);
    r.tensor("t", &[4], 0, 8);
    assert!(matches!(
        err(&r.data(64)).kind,
        K::MisalignedOffset {
            offset: 8,
            alignment: 32
        }
    ));

    let mut r = Raw::header(1, 0);
    r.tensor("t", &[16], 0, 32);
    assert!(matches!(err(&r.data(64)).kind, K::DataPastEnd { .. }));

    // Offsets that wrap around u64 when added to the data start.
    let mut r = Raw::header(1, 0);
    r.tensor("t", &[16], 0, u64::MAX - 31);
    assert!(matches!(err(&r.data(64)).kind, K::DataPastEnd { .. }));

    // Truncated data.
    let mut r = Raw::header(1, 0);
    r.tensor("t", &[16], 0, 0);
    assert!(matches!(err(&r.data(63)).kind, K::DataPastEnd { .. }));
}

#[test]
fn overlapping_and_duplicate_tensors() {
    let mut r = Raw::header(2, 0);
    r.tensor("a", &[16], 0, 0).tensor("b", &[16], 0, 32);
    let e = err(&r.data(96));
    assert_eq!(e.context, Context::Tensor("b".into()));
    assert!(matches!(e.kind, K::Overlap { ref other, .. } if other == "a"));

    let mut r = Raw::header(2, 0);
    r.tensor("a", &[4], 0, 0).tensor("a", &[4], 0, 32);
    let e = err(&r.data(64));
    assert_eq!(e.kind, K::DuplicateTensor);
    assert_eq!(e.context, Context::Tensor("a".into()));

    let mut r = Raw::header(1, 0);
    r.bytes(&[b'a', 0xc0]).u32(1).len(4).u32(0).u64(0);
    assert_eq!(err(&r.data(16)).kind, K::TensorNameNotUtf8);
}

#[test]
fn byte_swapped_version_with_little_endian_content() {
    // A big-endian version followed by little-endian counts reads as absurd
    // counts, which are rejected before anything is allocated.
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_be_bytes());
    b.extend(1u64.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.extend([0u8; 64]);
    assert!(matches!(err(&b).kind, K::CountTooLarge { .. }));
}

fn sample_file() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.add("general.architecture", MetaValue::String("llama".into()));
    w.add("n", MetaValue::U32(7));
    w.add(
        "tokens",
        MetaValue::Array(
            ValueType::String,
            vec![
                MetaValue::String("a".into()),
                MetaValue::String("bc".into()),
            ],
        ),
    );
    w.add(
        "nested",
        MetaValue::Array(
            ValueType::Array,
            vec![MetaValue::Array(ValueType::I8, vec![MetaValue::I8(-1)])],
        ),
    );
    w.add_tensor("a", &[8], GgmlType::F32, vec![1u8; 32])
        .unwrap();
    w.add_tensor("q", &[32], GgmlType::Q4_0, vec![2u8; 18])
        .unwrap();
    w.to_bytes().unwrap()
}

#[test]
fn every_prefix_of_a_valid_file_is_rejected() {
    let bytes = sample_file();
    GgufFile::parse(&bytes).expect("the whole file is valid");
    for n in 0..bytes.len() {
        // The last tensor is padded only up to its own size; a prefix that
        // still holds all tensor bytes is valid.
        let last_end = {
            let f = GgufFile::parse(&bytes).unwrap();
            f.tensors()
                .iter()
                .map(|t| t.file_offset + t.n_bytes)
                .max()
                .unwrap() as usize
        };
        let r = GgufFile::parse(&bytes[..n]);
        assert_eq!(r.is_ok(), n >= last_end, "prefix of {n} bytes");
    }
}

#[test]
fn empty_file() {
    let e = err(&[]);
    assert!(matches!(e.kind, K::Truncated { what: "magic", .. }));
}
