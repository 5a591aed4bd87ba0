//! The ggml tensor types (ids, names, block sizes and block byte sizes) and
//! the GGUF metadata value types.
//!
//! The table follows `ggml.h` / `ggml.c` (`type_traits`) of the llama.cpp
//! vendored in llama-cpp-python 0.3.36. Removed ids (4, 5, 31–33, 36–38) are
//! known but rejected; every other id above 42 is unknown.

use std::fmt;

/// A ggml tensor type that a GGUF file may carry.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum GgmlType {
    /// IEEE single precision.
    F32 = 0,
    /// IEEE half precision.
    F16 = 1,
    /// 4-bit, blocks of 32 with an f16 scale.
    Q4_0 = 2,
    /// 4-bit, blocks of 32 with an f16 scale and min.
    Q4_1 = 3,
    /// 5-bit, blocks of 32 with an f16 scale.
    Q5_0 = 6,
    /// 5-bit, blocks of 32 with an f16 scale and min.
    Q5_1 = 7,
    /// 8-bit, blocks of 32 with an f16 scale.
    Q8_0 = 8,
    /// 8-bit, blocks of 32 with an f16 scale and sum (a dot-product intermediate).
    Q8_1 = 9,
    /// 2-bit k-quant, super-blocks of 256.
    Q2_K = 10,
    /// 3-bit k-quant, super-blocks of 256.
    Q3_K = 11,
    /// 4-bit k-quant, super-blocks of 256.
    Q4_K = 12,
    /// 5-bit k-quant, super-blocks of 256.
    Q5_K = 13,
    /// 6-bit k-quant, super-blocks of 256.
    Q6_K = 14,
    /// 8-bit k-quant intermediate, super-blocks of 256 with an f32 scale.
    Q8_K = 15,
    /// 2.06-bit i-quant (E8 lattice grid).
    IQ2_XXS = 16,
    /// 2.31-bit i-quant.
    IQ2_XS = 17,
    /// 3.06-bit i-quant.
    IQ3_XXS = 18,
    /// 1.56-bit i-quant.
    IQ1_S = 19,
    /// 4-bit non-linear, blocks of 32.
    IQ4_NL = 20,
    /// 3.44-bit i-quant.
    IQ3_S = 21,
    /// 2.5-bit i-quant.
    IQ2_S = 22,
    /// 4.25-bit non-linear, super-blocks of 256.
    IQ4_XS = 23,
    /// Signed 8-bit integers.
    I8 = 24,
    /// Signed 16-bit integers.
    I16 = 25,
    /// Signed 32-bit integers.
    I32 = 26,
    /// Signed 64-bit integers.
    I64 = 27,
    /// IEEE double precision.
    F64 = 28,
    /// 1.75-bit i-quant.
    IQ1_M = 29,
    /// bfloat16.
    BF16 = 30,
    /// Ternary, 1.69 bits per weight.
    TQ1_0 = 34,
    /// Ternary, 2 bits per weight.
    TQ2_0 = 35,
    /// OCP microscaling FP4 (E2M1 values, an E8M0 scale per 32).
    MXFP4 = 39,
    /// NVIDIA FP4 (E2M1 values, a UE4M3 scale per 16).
    NVFP4 = 40,
    /// 1-bit sign, blocks of 128 with an f16 scale.
    Q1_0 = 41,
    /// 2-bit, blocks of 64 with an f16 scale.
    Q2_0 = 42,
}

/// What a raw type id in a file stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeId {
    /// A type ggml defines today.
    Known(GgmlType),
    /// An id ggml once used and has removed (e.g. 4 = Q4_2, 31 = Q4_0_4_4).
    Removed(&'static str),
    /// An id ggml never defined.
    Unknown,
}

/// Block layout of one type: `block_size` elements stored in `type_size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockLayout {
    /// Elements per block (1 for the plain number types).
    pub block_size: u64,
    /// Bytes per block.
    pub type_size: u64,
}

impl GgmlType {
    /// Every type ggml defines, in id order.
    pub const ALL: [GgmlType; 35] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q8_1,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::Q8_K,
        GgmlType::IQ2_XXS,
        GgmlType::IQ2_XS,
        GgmlType::IQ3_XXS,
        GgmlType::IQ1_S,
        GgmlType::IQ4_NL,
        GgmlType::IQ3_S,
        GgmlType::IQ2_S,
        GgmlType::IQ4_XS,
        GgmlType::I8,
        GgmlType::I16,
        GgmlType::I32,
        GgmlType::I64,
        GgmlType::F64,
        GgmlType::IQ1_M,
        GgmlType::BF16,
        GgmlType::TQ1_0,
        GgmlType::TQ2_0,
        GgmlType::MXFP4,
        GgmlType::NVFP4,
        GgmlType::Q1_0,
        GgmlType::Q2_0,
    ];

    /// Classifies a raw id read from a file.
    pub fn classify(id: u32) -> TypeId {
        match id {
            4 => TypeId::Removed("Q4_2"),
            5 => TypeId::Removed("Q4_3"),
            31 => TypeId::Removed("Q4_0_4_4"),
            32 => TypeId::Removed("Q4_0_4_8"),
            33 => TypeId::Removed("Q4_0_8_8"),
            36 => TypeId::Removed("IQ4_NL_4_4"),
            37 => TypeId::Removed("IQ4_NL_4_8"),
            38 => TypeId::Removed("IQ4_NL_8_8"),
            _ => Self::ALL
                .iter()
                .find(|t| **t as u32 == id)
                .map_or(TypeId::Unknown, |t| TypeId::Known(*t)),
        }
    }

    /// The type with this id, if ggml defines it today.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        match Self::classify(id) {
            TypeId::Known(t) => Some(t),
            _ => None,
        }
    }

    /// The numeric id stored in GGUF files.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// ggml's name in upper case, as gguf-py and `gguf-dump` print it (`"Q4_0"`).
    pub fn name(self) -> &'static str {
        use GgmlType::*;
        match self {
            F32 => "F32",
            F16 => "F16",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q8_1 => "Q8_1",
            Q2_K => "Q2_K",
            Q3_K => "Q3_K",
            Q4_K => "Q4_K",
            Q5_K => "Q5_K",
            Q6_K => "Q6_K",
            Q8_K => "Q8_K",
            IQ2_XXS => "IQ2_XXS",
            IQ2_XS => "IQ2_XS",
            IQ3_XXS => "IQ3_XXS",
            IQ1_S => "IQ1_S",
            IQ4_NL => "IQ4_NL",
            IQ3_S => "IQ3_S",
            IQ2_S => "IQ2_S",
            IQ4_XS => "IQ4_XS",
            I8 => "I8",
            I16 => "I16",
            I32 => "I32",
            I64 => "I64",
            F64 => "F64",
            IQ1_M => "IQ1_M",
            BF16 => "BF16",
            TQ1_0 => "TQ1_0",
            TQ2_0 => "TQ2_0",
            MXFP4 => "MXFP4",
            NVFP4 => "NVFP4",
            Q1_0 => "Q1_0",
            Q2_0 => "Q2_0",
        }
    }

    /// Parses a name case-insensitively (`"q4_k"`, `"Q4_K"`).
    pub fn from_name(name: &str) -> Option<GgmlType> {
        Self::ALL
            .iter()
            .copied()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }

    /// Elements per block and bytes per block, as in ggml's `type_traits`:
    /// read from the type's block struct in the crate's block layouts
    /// (`ggml-common.h`'s `block_*`), one element of the number type for the
    /// plain types.
    pub fn layout(self) -> BlockLayout {
        let info = super::blocks::info(self);
        BlockLayout {
            block_size: info.elements as u64,
            type_size: info.bytes as u64,
        }
    }

    /// Elements per block.
    pub fn block_size(self) -> u64 {
        self.layout().block_size
    }

    /// Bytes per block.
    pub fn type_size(self) -> u64 {
        self.layout().type_size
    }

    /// True for block-quantized types (everything but the plain number types).
    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }

    /// Whether data of this type in a big-endian file has a defined byte
    /// order, and so decodes: every plain type (each value big-endian), and
    /// the quantized types llama.cpp's `gguf_convert_endian.py` converts —
    /// Q4_0, Q8_0, Q4_K, Q6_K (their f16 scales big-endian, the rest bytes),
    /// MXFP4 and NVFP4 (all bytes). The other quantized types read
    /// multi-byte words of packed bits in ways ggml leaves to the host's byte
    /// order, and no converter defines them.
    pub fn has_big_endian_order(self) -> bool {
        super::blocks::big_endian_order(self)
    }

    /// Bytes taken by `n_elements` elements, or `None` when `n_elements` is not
    /// a whole number of blocks or the size overflows `u64`.
    pub fn byte_size(self, n_elements: u64) -> Option<u64> {
        let BlockLayout {
            block_size,
            type_size,
        } = self.layout();
        if !n_elements.is_multiple_of(block_size) {
            return None;
        }
        (n_elements / block_size).checked_mul(type_size)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// The 13 GGUF metadata value types, with their ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ValueType {
    /// `uint8`.
    U8 = 0,
    /// `int8`.
    I8 = 1,
    /// `uint16`.
    U16 = 2,
    /// `int16`.
    I16 = 3,
    /// `uint32`.
    U32 = 4,
    /// `int32`.
    I32 = 5,
    /// `float32`.
    F32 = 6,
    /// `bool`.
    Bool = 7,
    /// `string`.
    String = 8,
    /// `array`.
    Array = 9,
    /// `uint64`.
    U64 = 10,
    /// `int64`.
    I64 = 11,
    /// `float64`.
    F64 = 12,
}

impl ValueType {
    /// The type with this id, if GGUF defines it (0..=12).
    pub fn from_id(id: u32) -> Option<ValueType> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Bytes per value for the fixed-size types; `None` for strings and arrays.
    pub fn fixed_size(self) -> Option<u64> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }

    /// Lower-case name as in gguf-py (`"uint32"`, `"string"`…).
    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "uint8",
            I8 => "int8",
            U16 => "uint16",
            I16 => "int16",
            U32 => "uint32",
            I32 => "int32",
            F32 => "float32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "uint64",
            I64 => "int64",
            F64 => "float64",
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_removed_ids_are_known() {
        for t in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(t.id()), Some(t));
            assert_eq!(GgmlType::from_name(t.name()), Some(t));
        }
        for id in [4, 5, 31, 32, 33, 36, 37, 38] {
            assert!(matches!(GgmlType::classify(id), TypeId::Removed(_)));
        }
        assert_eq!(GgmlType::classify(43), TypeId::Unknown);
        assert_eq!(GgmlType::classify(u32::MAX), TypeId::Unknown);
        let known = (0..=42).filter(|i| GgmlType::from_id(*i).is_some()).count();
        assert_eq!(known, 35);
    }

    #[test]
    fn byte_size_checks_blocks_and_overflow() {
        assert_eq!(GgmlType::Q4_0.byte_size(64), Some(36));
        assert_eq!(GgmlType::Q4_0.byte_size(33), None);
        assert_eq!(GgmlType::F32.byte_size(u64::MAX), None);
        assert_eq!(GgmlType::Q6_K.byte_size(512), Some(420));
    }
}
