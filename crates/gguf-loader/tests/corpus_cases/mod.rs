//! The malformed-file corpus: one crafted file per class of defect, each with
//! the error it must raise. Shared by `tests/corpus.rs` (which also keeps the
//! committed copies under `tests/corpus/` in step) and `tests/bounded_memory.rs`.
#![allow(dead_code)]

use gguf_loader::{FormatErrorKind as K, GgmlType, ValueType};

/// Builds raw GGUF bytes field by field, for files our writer refuses to make.
pub struct Raw {
    pub out: Vec<u8>,
    wide: bool,
}

impl Raw {
    pub fn magic_version(v: u32) -> Raw {
        let mut r = Raw {
            out: b"GGUF".to_vec(),
            wide: true,
        };
        r.u32(v);
        r
    }
    pub fn header(n_tensors: u64, n_kv: u64) -> Raw {
        let mut r = Raw::magic_version(3);
        r.u64(n_tensors);
        r.u64(n_kv);
        r
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.out.push(v);
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.out.extend(v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.out.extend(v.to_le_bytes());
        self
    }
    pub fn len(&mut self, v: u64) -> &mut Self {
        if self.wide {
            self.u64(v)
        } else {
            self.u32(v as u32)
        }
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.len(b.len() as u64);
        self.out.extend_from_slice(b);
        self
    }
    pub fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.bytes(key.as_bytes()).u32(ValueType::U32 as u32).u32(v)
    }
    pub fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.bytes(name.as_bytes()).u32(dims.len() as u32);
        for d in dims {
            self.len(*d);
        }
        self.u32(ty).u64(offset)
    }
    /// Pads to 32 and appends `n` data bytes.
    pub fn data(&self, n: usize) -> Vec<u8> {
        let mut out = self.out.clone();
        out.resize(out.len().next_multiple_of(32) + n, 0);
        out
    }
    pub fn done(&self) -> Vec<u8> {
        self.out.clone()
    }
}

/// One corpus file: its name (without `.gguf`), bytes, the check its error
/// must pass, and whether a copy is committed under `tests/corpus/`.
pub struct Case {
    pub name: &'static str,
    pub bytes: Vec<u8>,
    pub expect: fn(&K) -> bool,
    pub committed: bool,
}

fn case(name: &'static str, bytes: Vec<u8>, expect: fn(&K) -> bool) -> Case {
    Case {
        name,
        bytes,
        expect,
        committed: true,
    }
}

fn version(v: u32) -> Vec<u8> {
    let mut r = Raw::magic_version(v);
    // Little-endian counts of 1 and 1 follow.
    r.u64(1).u64(1);
    r.data(64)
}

fn kv(key: &[u8], build: impl FnOnce(&mut Raw)) -> Vec<u8> {
    let mut r = Raw::header(0, 1);
    r.bytes(key);
    build(&mut r);
    r.done()
}

fn one_tensor(dims: &[u64], ty: u32, offset: u64, data: usize) -> Vec<u8> {
    let mut r = Raw::header(1, 0);
    r.tensor("t", dims, ty, offset);
    r.data(data)
}

/// `levels` arrays, each holding one array, around an empty u8 array.
pub fn nested(levels: usize) -> Vec<u8> {
    let mut r = Raw::header(0, 1);
    r.bytes(b"deep").u32(ValueType::Array as u32);
    for _ in 0..levels {
        r.u32(ValueType::Array as u32).len(1);
    }
    r.u32(ValueType::U8 as u32).len(0);
    r.done()
}

const ARRAY: u32 = ValueType::Array as u32;

/// Every case, in a fixed order.
pub fn cases() -> Vec<Case> {
    let mut v = vec![
        case("empty", vec![], |k| {
            matches!(k, K::Truncated { what: "magic", .. })
        }),
        case("bad_magic", b"GGUG\x03\0\0\0\0\0\0\0".to_vec(), |k| {
            *k == K::BadMagic(*b"GGUG")
        }),
        case("version_0", version(0), |k| *k == K::UnsupportedVersion(0)),
        case("version_4", version(4), |k| *k == K::UnsupportedVersion(4)),
        // 0x01000000 is 1 byte-swapped: the file reads as big-endian v1, whose
        // u32 tensor count (the first half of the little-endian u64 1) is 2^24.
        case("version_0x01000000", version(0x0100_0000), |k| {
            matches!(
                k,
                K::CountTooLarge {
                    what: "tensor count",
                    count: 0x0100_0000,
                    ..
                }
            )
        }),
        case("version_0x04000000", version(0x0400_0000), |k| {
            *k == K::UnsupportedVersion(0x0400_0000)
        }),
        case("version_u32_max", version(u32::MAX), |k| {
            *k == K::UnsupportedVersion(u32::MAX)
        }),
        case("truncated_version", b"GGUF\x03\0".to_vec(), |k| {
            matches!(
                k,
                K::Truncated {
                    what: "version",
                    ..
                }
            )
        }),
        case(
            "truncated_header",
            b"GGUF\x03\0\0\0\0\0\0\0\0\0\0\0\x01".to_vec(),
            |k| {
                matches!(
                    k,
                    K::Truncated {
                        what: "metadata count",
                        ..
                    }
                )
            },
        ),
        case("tensor_count_2e62", Raw::header(1 << 62, 0).done(), |k| {
            matches!(
                k,
                K::CountTooLarge {
                    what: "tensor count",
                    ..
                }
            )
        }),
        case(
            "tensor_count_2e63m1",
            Raw::header((1 << 63) - 1, 0).done(),
            |k| {
                matches!(
                    k,
                    K::CountTooLarge {
                        what: "tensor count",
                        ..
                    }
                )
            },
        ),
        case("kv_count_2e62", Raw::header(0, 1 << 62).done(), |k| {
            matches!(
                k,
                K::CountTooLarge {
                    what: "metadata count",
                    ..
                }
            )
        }),
        case(
            "kv_count_2e63m1",
            Raw::header(0, (1 << 63) - 1).done(),
            |k| {
                matches!(
                    k,
                    K::CountTooLarge {
                        what: "metadata count",
                        ..
                    }
                )
            },
        ),
        case(
            "key_length_past_end",
            {
                let mut r = Raw::header(0, 1);
                r.len(1 << 40).u64(0).u64(0);
                r.done()
            },
            |k| matches!(k, K::Truncated { what: "key", .. }),
        ),
        case(
            "string_length_past_end",
            kv(b"k", |r| {
                r.u32(ValueType::String as u32)
                    .len(100)
                    .out
                    .extend(b"short");
            }),
            |k| matches!(k, K::Truncated { what: "string", .. }),
        ),
        case(
            "array_length_past_end",
            kv(b"a", |r| {
                r.u32(ARRAY).u32(ValueType::U64 as u32).len(1000).u64(0);
            }),
            |k| {
                matches!(
                    k,
                    K::CountTooLarge {
                        what: "array length",
                        ..
                    }
                )
            },
        ),
        case(
            "array_length_u64_max",
            kv(b"a", |r| {
                r.u32(ARRAY).u32(ValueType::U64 as u32).len(u64::MAX);
            }),
            |k| {
                matches!(
                    k,
                    K::CountTooLarge {
                        what: "array length",
                        ..
                    }
                )
            },
        ),
        case(
            "array_string_past_end",
            kv(b"a", |r| {
                r.u32(ARRAY).u32(ValueType::String as u32).len(2);
                r.bytes(b"ok").len(1 << 30).u64(0);
            }),
            |k| matches!(k, K::Truncated { what: "string", .. }),
        ),
        case(
            "array_2e40_strings",
            kv(b"tokens", |r| {
                r.u32(ARRAY).u32(ValueType::String as u32).len(1 << 40);
            }),
            |k| {
                matches!(
                    k,
                    K::CountTooLarge {
                        what: "string array length",
                        ..
                    }
                )
            },
        ),
        case(
            "array_2e40_arrays",
            kv(b"a", |r| {
                r.u32(ARRAY).u32(ARRAY).len(1 << 40);
            }),
            |k| {
                matches!(
                    k,
                    K::CountTooLarge {
                        what: "array length",
                        ..
                    }
                )
            },
        ),
        case("nested_65_levels", nested(65), |k| {
            *k == K::NestingTooDeep(64)
        }),
        Case {
            // 2.4 MB: built in memory only.
            committed: false,
            ..case("nested_200000_levels", nested(200_000), |k| {
                *k == K::NestingTooDeep(64)
            })
        },
        case(
            "unknown_value_type",
            kv(b"k", |r| {
                r.u32(13).u32(0);
            }),
            |k| *k == K::UnknownValueType(13),
        ),
        case(
            "unknown_array_elem_type",
            kv(b"k", |r| {
                r.u32(ARRAY).u32(99).len(0);
            }),
            |k| *k == K::UnknownValueType(99),
        ),
        case(
            "invalid_bool",
            kv(b"b", |r| {
                r.u32(ValueType::Bool as u32).u8(2);
            }),
            |k| *k == K::InvalidBool(2),
        ),
        case(
            "invalid_bool_in_array",
            kv(b"b", |r| {
                r.u32(ARRAY)
                    .u32(ValueType::Bool as u32)
                    .len(3)
                    .u8(1)
                    .u8(0)
                    .u8(7);
            }),
            |k| *k == K::InvalidBool(7),
        ),
        case(
            "key_not_utf8",
            kv(&[0xff, 0xfe], |r| {
                r.u32(ValueType::U8 as u32).u8(0);
            }),
            |k| *k == K::KeyNotUtf8,
        ),
        case(
            "duplicate_key",
            {
                let mut r = Raw::header(0, 2);
                r.kv_u32("dup", 1).kv_u32("dup", 2);
                r.done()
            },
            |k| *k == K::DuplicateKey,
        ),
        case(
            "alignment_0",
            kv(b"general.alignment", |r| {
                r.u32(ValueType::U32 as u32).u32(0);
            }),
            |k| *k == K::BadAlignment(0),
        ),
        case(
            "alignment_3",
            kv(b"general.alignment", |r| {
                r.u32(ValueType::U32 as u32).u32(3);
            }),
            |k| *k == K::BadAlignment(3),
        ),
        case(
            "alignment_u64",
            kv(b"general.alignment", |r| {
                r.u32(ValueType::U64 as u32).u64(32);
            }),
            |k| *k == K::AlignmentType(ValueType::U64),
        ),
        case(
            "alignment_string",
            kv(b"general.alignment", |r| {
                r.u32(ValueType::String as u32).bytes(b"32");
            }),
            |k| *k == K::AlignmentType(ValueType::String),
        ),
        case("dims_5", one_tensor(&[1, 1, 1, 1, 1], 0, 0, 4), |k| {
            *k == K::TooManyDims(5)
        }),
        case(
            "dims_2e31",
            {
                let mut r = Raw::header(1, 0);
                r.bytes(b"t").u32(1 << 31);
                r.data(32)
            },
            |k| *k == K::TooManyDims(1 << 31),
        ),
        case(
            "dims_int64max_2_1_1",
            one_tensor(&[i64::MAX as u64, 2, 1, 1], 0, 0, 16),
            |k| *k == K::ElementCountOverflow(vec![i64::MAX as u64, 2, 1, 1]),
        ),
        case(
            "dims_2e32_2e32",
            one_tensor(&[1 << 32, 1 << 32], 0, 0, 16),
            |k| matches!(k, K::ElementCountOverflow(_)),
        ),
        case(
            "dims_2e40_cubed",
            one_tensor(&[1 << 40, 1 << 40, 1 << 40], 0, 0, 16),
            |k| matches!(k, K::ElementCountOverflow(_)),
        ),
        case(
            "byte_size_overflow",
            one_tensor(&[1 << 62], GgmlType::F64.id(), 0, 16),
            |k| matches!(k, K::ByteSizeOverflow { ty: "F64", .. }),
        ),
        case("dim_sign_bit", one_tensor(&[4, 1 << 63], 0, 0, 16), |k| {
            *k == K::DimTooLarge {
                index: 1,
                value: 1 << 63,
            }
        }),
        case("unknown_type_43", one_tensor(&[32], 43, 0, 128), |k| {
            *k == K::UnknownType(43)
        }),
        case(
            "unknown_type_u32_max",
            one_tensor(&[32], u32::MAX, 0, 128),
            |k| *k == K::UnknownType(u32::MAX),
        ),
        case("removed_type_q4_2", one_tensor(&[32], 4, 0, 128), |k| {
            *k == K::RemovedType {
                id: 4,
                name: "Q4_2",
            }
        }),
        case(
            "removed_type_q4_0_4_4",
            one_tensor(&[32], 31, 0, 128),
            |k| {
                *k == K::RemovedType {
                    id: 31,
                    name: "Q4_0_4_4",
                }
            },
        ),
        case(
            "ne0_not_block_multiple",
            one_tensor(&[48, 2], GgmlType::Q4_0.id(), 0, 64),
            |k| {
                *k == K::NotBlockMultiple {
                    ty: "Q4_0",
                    ne0: 48,
                    block_size: 32,
                }
            },
        ),
        case("misaligned_offset", one_tensor(&[4], 0, 8, 64), |k| {
            *k == K::MisalignedOffset {
                offset: 8,
                alignment: 32,
            }
        }),
        case("offset_past_end", one_tensor(&[16], 0, 32, 64), |k| {
            matches!(k, K::DataPastEnd { .. })
        }),
        case(
            "offset_wrapping",
            one_tensor(&[16], 0, u64::MAX - 31, 64),
            |k| matches!(k, K::DataPastEnd { .. }),
        ),
        case("truncated_data", one_tensor(&[16], 0, 0, 63), |k| {
            matches!(k, K::DataPastEnd { .. })
        }),
        case(
            "overlapping_tensors",
            {
                let mut r = Raw::header(2, 0);
                r.tensor("a", &[16], 0, 0).tensor("b", &[16], 0, 32);
                r.data(96)
            },
            |k| matches!(k, K::Overlap { other, .. } if other == "a"),
        ),
        case(
            "duplicate_tensor_names",
            {
                let mut r = Raw::header(2, 0);
                r.tensor("a", &[4], 0, 0).tensor("a", &[4], 0, 32);
                r.data(64)
            },
            |k| *k == K::DuplicateTensor,
        ),
        case(
            "tensor_name_not_utf8",
            {
                let mut r = Raw::header(1, 0);
                r.bytes(&[b'a', 0xc0]).u32(1).len(4).u32(0).u64(0);
                r.data(16)
            },
            |k| *k == K::TensorNameNotUtf8,
        ),
        case(
            "byte_swapped_version",
            {
                // Big-endian version 3, little-endian counts of 1 and 1: read
                // big-endian, both counts are 2^56 (the metadata one is
                // checked first).
                let mut b = b"GGUF".to_vec();
                b.extend(3u32.to_be_bytes());
                b.extend(1u64.to_le_bytes());
                b.extend(1u64.to_le_bytes());
                b.extend([0u8; 64]);
                b
            },
            |k| {
                matches!(
                    k,
                    K::CountTooLarge {
                        what: "metadata count",
                        count: 72057594037927936,
                        ..
                    }
                )
            },
        ),
    ];
    v.shrink_to_fit();
    v
}
