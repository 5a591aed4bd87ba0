//! The ggml block layouts: one `#[repr(C)]` struct per block type, as in
//! ggml's `ggml-common.h` (llama.cpp vendored in llama-cpp-python 0.3.36),
//! the one place the crate learns block sizes, field offsets and the scale
//! fields from.
//!
//! Every field is a byte array (a `ggml_half` is `[u8; 2]`, a `uint16_t[n]`
//! is `[u8; 2 * n]`), so each struct has alignment 1 and no padding: any
//! whole block of a tensor's bytes can be viewed as its struct ([`as_blocks`])
//! without copying or `unsafe`, and the field offsets are those of the C
//! struct (whose fields never need padding either; ggml asserts it). Each
//! size is checked at compile time against ggml's `static_assert` formula;
//! the tests hold sizes and offsets against the numbers a C compiler gives
//! for `ggml-common.h`.
//!
//! From the structs come [`GgmlType::layout`](super::GgmlType::layout) (through
//! [`info`]), the scale fields the data check reads and `synth` writes
//! ([`scale_fields`], offsets by `offset_of!`), and the views the scalar
//! decoders and SIMD kernels read. Multi-byte fields are little-endian; read
//! them with the readers at the bottom ([`f16_le`], [`u16_at`], [`u32_at`],
//! [`bytes_at`], ...).

use std::mem::{align_of, offset_of, size_of};

use bytemuck::{Pod, Zeroable};
use half::f16;

use super::types::GgmlType;

/// ggml's `QK_K`: elements in a k-quant (and i-quant, ternary) super-block.
pub const QK_K: usize = 256;
/// ggml's `K_SCALE_SIZE`: bytes of packed 6-bit scales and mins in Q4_K and Q5_K.
pub const K_SCALE_SIZE: usize = 12;
/// Elements in a Q1_0 block.
pub const QK1_0: usize = 128;
/// Elements in a Q2_0 block.
pub const QK2_0: usize = 64;
/// Elements in a Q4_0 block.
pub const QK4_0: usize = 32;
/// Elements in a Q4_1 block.
pub const QK4_1: usize = 32;
/// Elements in an MXFP4 block.
pub const QK_MXFP4: usize = 32;
/// Elements in an NVFP4 block.
pub const QK_NVFP4: usize = 64;
/// Elements sharing one UE4M3 scale in an NVFP4 block.
pub const QK_NVFP4_SUB: usize = 16;
/// Elements in a Q5_0 block.
pub const QK5_0: usize = 32;
/// Elements in a Q5_1 block.
pub const QK5_1: usize = 32;
/// Elements in a Q8_0 block.
pub const QK8_0: usize = 32;
/// Elements in a Q8_1 block.
pub const QK8_1: usize = 32;
/// Elements in an IQ4_NL block.
pub const QK4_NL: usize = 32;
/// ggml's `IQ3S_N_SCALE`: scale bytes in an IQ3_S block.
pub const IQ3S_N_SCALE: usize = QK_K / 64;

/// ggml's `ggml_half`: a little-endian IEEE binary16 ([`f16_le`] reads it).
pub type Half = [u8; 2];

const HALF: usize = size_of::<Half>();

/// A ggml block type: [`Block::ELEMENTS`] values in `size_of::<Self>()` bytes.
pub trait Block: Pod {
    /// The ggml type whose blocks these are (for tests, the internals and
    /// the x86 IQ3_S kernels).
    #[cfg_attr(not(feature = "internals"), allow(dead_code))]
    const TYPE: GgmlType;
    /// Elements per block (ggml's `QK*`).
    const ELEMENTS: usize;
    /// The block's scale fields, in field order (see [`scale_fields`]).
    const SCALES: &'static [ScaleField];
}

/// The whole blocks at the start of `bytes` viewed as `B`, without copying;
/// a trailing partial block is left out. Never fails.
#[inline(always)]
pub fn as_blocks<B: Block>(bytes: &[u8]) -> &[B] {
    let whole = bytes.len() / size_of::<B>() * size_of::<B>();
    // Alignment 1 and a whole number of blocks: the cast always succeeds.
    bytemuck::try_cast_slice(bytes.get(..whole).unwrap_or_default()).unwrap_or_default()
}

/// Implements [`Block`] for a struct and checks at compile time that its
/// size is ggml's (`$size`, written as ggml's `static_assert` writes it) and
/// its alignment 1.
macro_rules! block {
    ($name:ident, $ty:ident, $qk:expr, $size:expr, [$($scale:expr),* $(,)?]) => {
        impl Block for $name {
            const TYPE: GgmlType = GgmlType::$ty;
            const ELEMENTS: usize = $qk;
            const SCALES: &'static [ScaleField] = &[$($scale),*];
        }
        const _: () = assert!(size_of::<$name>() == $size && align_of::<$name>() == 1);
    };
}

/// A [`ScaleField`] of block `$b`, field `$f`, with its offset and size taken
/// from the struct; named as the field unless a name is given.
macro_rules! scale {
    ($b:ty, $f:ident, $enc:ident) => {
        scale!($b, $f, $enc, stringify!($f))
    };
    ($b:ty, $f:ident, $enc:ident, $name:expr) => {
        ScaleField::new(
            $name,
            offset_of!($b, $f),
            field_size(|b: &$b| &b.$f),
            ScaleEnc::$enc,
        )
    };
}

/// `size_of` the field that `_f` borrows (evaluated at compile time).
const fn field_size<S, F>(_f: fn(&S) -> &F) -> usize {
    size_of::<F>()
}

// ---------------------------------------------------------------------------
// Legacy and small block types
// ---------------------------------------------------------------------------

/// `block_q1_0`: one sign bit per element.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct BlockQ1_0 {
    /// Delta.
    pub d: Half,
    /// Bits, 8 elements per byte.
    pub qs: [u8; QK1_0 / 8],
}
block!(
    BlockQ1_0,
    Q1_0,
    QK1_0,
    HALF + QK1_0 / 8,
    [scale!(BlockQ1_0, d, F16)]
);

/// `block_q2_0`: 2-bit codes.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct BlockQ2_0 {
    /// Delta (scale).
    pub d: Half,
    /// 2 bits per element.
    pub qs: [u8; QK2_0 / 4],
}
block!(
    BlockQ2_0,
    Q2_0,
    QK2_0,
    HALF + QK2_0 / 4,
    [scale!(BlockQ2_0, d, F16)]
);

/// `block_q4_0`.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct BlockQ4_0 {
    /// Delta.
    pub d: Half,
    /// Nibbles: element `j` low, `j + 16` high.
    pub qs: [u8; QK4_0 / 2],
}
block!(
    BlockQ4_0,
    Q4_0,
    QK4_0,
    HALF + QK4_0 / 2,
    [scale!(BlockQ4_0, d, F16)]
);

/// `block_q4_1`.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct BlockQ4_1 {
    /// Delta.
    pub d: Half,
    /// Min.
    pub m: Half,
    /// Nibbles: element `j` low, `j + 16` high.
    pub qs: [u8; QK4_1 / 2],
}
block!(
    BlockQ4_1,
    Q4_1,
    QK4_1,
    2 * HALF + QK4_1 / 2,
    [scale!(BlockQ4_1, d, F16), scale!(BlockQ4_1, m, F16)]
);

/// `block_mxfp4`.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct BlockMXFP4 {
    /// E8M0 scale.
    pub e: u8,
    /// E2M1 codes: element `j` low, `j + 16` high.
    pub qs: [u8; QK_MXFP4 / 2],
}
block!(
    BlockMXFP4,
    MXFP4,
    QK_MXFP4,
    1 + QK_MXFP4 / 2,
    [scale!(BlockMXFP4, e, E8M0)]
);

/// `block_nvfp4`.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct BlockNVFP4 {
    /// UE4M3 scales, one per 16-element sub-block.
    pub d: [u8; QK_NVFP4 / QK_NVFP4_SUB],
    /// Packed E2M1 codes.
    pub qs: [u8; QK_NVFP4 / 2],
}
block!(
    BlockNVFP4,
    NVFP4,
    QK_NVFP4,
    QK_NVFP4 / QK_NVFP4_SUB + QK_NVFP4 / 2,
    [scale!(BlockNVFP4, d, UE4M3)]
);

/// `block_q5_0`.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct BlockQ5_0 {
    /// Delta.
    pub d: Half,
    /// Fifth bit of each quant (a little-endian `uint32_t`).
    pub qh: [u8; 4],
    /// Nibbles: element `j` low, `j + 16` high.
    pub qs: [u8; QK5_0 / 2],
}
block!(
    BlockQ5_0,
    Q5_0,
    QK5_0,
    HALF + 4 + QK5_0 / 2,
    [scale!(BlockQ5_0, d, F16)]
);

/// `block_q5_1`.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct BlockQ5_1 {
    /// Delta.
    pub d: Half,
    /// Min.
    pub m: Half,
    /// Fifth bit of each quant (a little-endian `uint32_t`).
    pub qh: [u8; 4],
    /// Nibbles: element `j` low, `j + 16` high.
    pub qs: [u8; QK5_1 / 2],
}
block!(
    BlockQ5_1,
    Q5_1,
    QK5_1,
    2 * HALF + 4 + QK5_1 / 2,
    [scale!(BlockQ5_1, d, F16), scale!(BlockQ5_1, m, F16)]
);

/// `block_q8_0`.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct BlockQ8_0 {
    /// Delta.
    pub d: Half,
    /// Quants (`int8_t`).
    pub qs: [u8; QK8_0],
}
block!(
    BlockQ8_0,
    Q8_0,
    QK8_0,
    HALF + QK8_0,
    [scale!(BlockQ8_0, d, F16)]
);

/// `block_q8_1` (36 bytes; gguf-py 0.19 says 40).
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct BlockQ8_1 {
    /// Delta.
    pub d: Half,
    /// `d * sum(qs[i])`.
    pub s: Half,
    /// Quants (`int8_t`).
    pub qs: [u8; QK8_1],
}
block!(
    BlockQ8_1,
    Q8_1,
    QK8_1,
    2 * HALF + QK8_1,
    [scale!(BlockQ8_1, d, F16), scale!(BlockQ8_1, s, F16)]
);

// ---------------------------------------------------------------------------
// Ternary
// ---------------------------------------------------------------------------

/// `block_tq1_0` (1.6875 bpw).
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct BlockTQ1_0 {
    /// 5 elements per byte (3^5 = 243 < 256).
    pub qs: [u8; (QK_K - 4 * QK_K / 64) / 5],
    /// 4 elements per byte.
    pub qh: [u8; QK_K / 64],
    /// Scale.
    pub d: Half,
}
block!(
    BlockTQ1_0,
    TQ1_0,
    QK_K,
    HALF + QK_K / 64 + (QK_K - 4 * QK_K / 64) / 5,
    [scale!(BlockTQ1_0, d, F16)]
);

/// `block_tq2_0` (2.0625 bpw).
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct BlockTQ2_0 {
    /// 2 bits per element.
    pub qs: [u8; QK_K / 4],
    /// Scale.
    pub d: Half,
}
block!(
    BlockTQ2_0,
    TQ2_0,
    QK_K,
    HALF + QK_K / 4,
    [scale!(BlockTQ2_0, d, F16)]
);

// ---------------------------------------------------------------------------
// K-quants (super-blocks of QK_K)
// ---------------------------------------------------------------------------

/// `block_q2_K`: `x = a * q + b`, 16 groups of 16.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct BlockQ2_K {
    /// Scales (low nibble) and mins (high nibble), 4 bits each.
    pub scales: [u8; QK_K / 16],
    /// Quants, 2 bits each.
    pub qs: [u8; QK_K / 4],
    /// Super-block scale for the quantized scales.
    pub d: Half,
    /// Super-block scale for the quantized mins.
    pub dmin: Half,
}
block!(
    BlockQ2_K,
    Q2_K,
    QK_K,
    2 * HALF + QK_K / 16 + QK_K / 4,
    [scale!(BlockQ2_K, d, F16), scale!(BlockQ2_K, dmin, F16)]
);

/// `block_q3_K`: `x = a * q`, 16 groups of 16.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct BlockQ3_K {
    /// Quants, high bit.
    pub hmask: [u8; QK_K / 8],
    /// Quants, low 2 bits.
    pub qs: [u8; QK_K / 4],
    /// Scales, 6 bits each, packed.
    pub scales: [u8; 12],
    /// Super-block scale.
    pub d: Half,
}
block!(
    BlockQ3_K,
    Q3_K,
    QK_K,
    HALF + QK_K / 4 + QK_K / 8 + 12,
    [scale!(BlockQ3_K, d, F16)]
);

/// `block_q4_K`: `x = a * q + b`, 8 groups of 32.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct BlockQ4_K {
    /// Super-block scale for the quantized scales.
    pub d: Half,
    /// Super-block scale for the quantized mins.
    pub dmin: Half,
    /// Scales and mins, 6 bits each, packed.
    pub scales: [u8; K_SCALE_SIZE],
    /// 4-bit quants.
    pub qs: [u8; QK_K / 2],
}
block!(
    BlockQ4_K,
    Q4_K,
    QK_K,
    2 * HALF + K_SCALE_SIZE + QK_K / 2,
    [scale!(BlockQ4_K, d, F16), scale!(BlockQ4_K, dmin, F16)]
);

/// `block_q5_K`: `x = a * q + b`, 8 groups of 32.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct BlockQ5_K {
    /// Super-block scale for the quantized scales.
    pub d: Half,
    /// Super-block scale for the quantized mins.
    pub dmin: Half,
    /// Scales and mins, 6 bits each, packed.
    pub scales: [u8; K_SCALE_SIZE],
    /// Quants, high bit.
    pub qh: [u8; QK_K / 8],
    /// Quants, low 4 bits.
    pub qs: [u8; QK_K / 2],
}
block!(
    BlockQ5_K,
    Q5_K,
    QK_K,
    2 * HALF + K_SCALE_SIZE + QK_K / 2 + QK_K / 8,
    [scale!(BlockQ5_K, d, F16), scale!(BlockQ5_K, dmin, F16)]
);

/// `block_q6_K`: `x = a * q`, 16 groups of 16.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct BlockQ6_K {
    /// Quants, lower 4 bits.
    pub ql: [u8; QK_K / 2],
    /// Quants, upper 2 bits.
    pub qh: [u8; QK_K / 4],
    /// Scales, 8 bits each (`int8_t`).
    pub scales: [u8; QK_K / 16],
    /// Super-block scale.
    pub d: Half,
}
block!(
    BlockQ6_K,
    Q6_K,
    QK_K,
    HALF + QK_K / 16 + 3 * QK_K / 4,
    [scale!(BlockQ6_K, d, F16)]
);

/// `block_q8_K`, the intermediate type of the k-quant dot products.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct BlockQ8_K {
    /// Delta (a little-endian `float`).
    pub d: [u8; 4],
    /// Quants (`int8_t`).
    pub qs: [u8; QK_K],
    /// Sums of the quants in groups of 16 (`int16_t[QK_K / 16]`).
    pub bsums: [u8; QK_K / 16 * 2],
}
block!(
    BlockQ8_K,
    Q8_K,
    QK_K,
    4 + QK_K + QK_K / 16 * 2,
    [scale!(BlockQ8_K, d, F32)]
);

// ---------------------------------------------------------------------------
// I-quants
// ---------------------------------------------------------------------------

/// `block_iq2_xxs` (2.0625 bpw).
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct BlockIQ2_XXS {
    /// Scale.
    pub d: Half,
    /// `uint16_t[QK_K / 8]`: per 32 elements, four grid index bytes, then a
    /// `uint32_t` of sign indices and scale.
    pub qs: [u8; QK_K / 8 * 2],
}
block!(
    BlockIQ2_XXS,
    IQ2_XXS,
    QK_K,
    HALF + QK_K / 8 * 2,
    [scale!(BlockIQ2_XXS, d, F16)]
);

/// `block_iq2_xs` (2.3125 bpw).
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct BlockIQ2_XS {
    /// Scale.
    pub d: Half,
    /// `uint16_t[QK_K / 8]`: 9-bit grid index, 7-bit sign index.
    pub qs: [u8; QK_K / 8 * 2],
    /// Two 4-bit scales per 32 elements.
    pub scales: [u8; QK_K / 32],
}
block!(
    BlockIQ2_XS,
    IQ2_XS,
    QK_K,
    HALF + QK_K / 8 * 2 + QK_K / 32,
    [scale!(BlockIQ2_XS, d, F16)]
);

/// `block_iq2_s` (2.5625 bpw).
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct BlockIQ2_S {
    /// Scale.
    pub d: Half,
    /// `QK_K / 8` grid index low bytes, then `QK_K / 8` sign bytes.
    pub qs: [u8; QK_K / 4],
    /// Grid index high bits.
    pub qh: [u8; QK_K / 32],
    /// Two 4-bit scales per 32 elements.
    pub scales: [u8; QK_K / 32],
}
block!(
    BlockIQ2_S,
    IQ2_S,
    QK_K,
    HALF + QK_K / 4 + QK_K / 16,
    [scale!(BlockIQ2_S, d, F16)]
);

/// `block_iq3_xxs` (3.0625 bpw).
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct BlockIQ3_XXS {
    /// Scale.
    pub d: Half,
    /// `QK_K / 4` grid indices, then `QK_K / 32` `uint32_t` scales and signs.
    pub qs: [u8; 3 * QK_K / 8],
}
block!(
    BlockIQ3_XXS,
    IQ3_XXS,
    QK_K,
    HALF + 3 * (QK_K / 8),
    [scale!(BlockIQ3_XXS, d, F16)]
);

/// `block_iq3_s` (3.4375 bpw).
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct BlockIQ3_S {
    /// Scale.
    pub d: Half,
    /// Grid index low bytes.
    pub qs: [u8; QK_K / 4],
    /// Grid index high bits.
    pub qh: [u8; QK_K / 32],
    /// Sign bits.
    pub signs: [u8; QK_K / 8],
    /// Two 4-bit scales per 64 elements.
    pub scales: [u8; IQ3S_N_SCALE],
}
block!(
    BlockIQ3_S,
    IQ3_S,
    QK_K,
    HALF + 13 * (QK_K / 32) + IQ3S_N_SCALE,
    [scale!(BlockIQ3_S, d, F16)]
);

/// `block_iq1_s` (1.5625 bpw).
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct BlockIQ1_S {
    /// Scale.
    pub d: Half,
    /// Grid index low bytes.
    pub qs: [u8; QK_K / 8],
    /// `uint16_t[QK_K / 32]`: grid index high bits, scale, delta sign.
    pub qh: [u8; QK_K / 32 * 2],
}
block!(
    BlockIQ1_S,
    IQ1_S,
    QK_K,
    HALF + QK_K / 8 + QK_K / 16,
    [scale!(BlockIQ1_S, d, F16)]
);

/// `block_iq1_m` (1.75 bpw): no `d`; the f16 scale is spread over the top
/// nibbles of the four `uint16_t` words of `scales` ([`iq1m_scale`]).
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct BlockIQ1_M {
    /// Grid index, low 8 bits.
    pub qs: [u8; QK_K / 8],
    /// Grid index high 3 bits and grid shift bit, for two groups of 8.
    pub qh: [u8; QK_K / 16],
    /// `uint16_t[4]`: 3-bit block scales and the nibbles of the f16 scale.
    pub scales: [u8; QK_K / 32],
}
block!(
    BlockIQ1_M,
    IQ1_M,
    QK_K,
    QK_K / 8 + QK_K / 16 + QK_K / 32,
    [scale!(BlockIQ1_M, scales, Iq1mScale, "scale")]
);

/// `block_iq4_nl`.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct BlockIQ4_NL {
    /// Scale.
    pub d: Half,
    /// Nibbles (indices into `kvalues_iq4nl`): element `j` low, `j + 16` high.
    pub qs: [u8; QK4_NL / 2],
}
block!(
    BlockIQ4_NL,
    IQ4_NL,
    QK4_NL,
    HALF + QK4_NL / 2,
    [scale!(BlockIQ4_NL, d, F16)]
);

/// `block_iq4_xs`.
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct BlockIQ4_XS {
    /// Scale.
    pub d: Half,
    /// High 2 bits of the eight 6-bit block scales (`uint16_t`).
    pub scales_h: [u8; 2],
    /// Low 4 bits of the block scales.
    pub scales_l: [u8; QK_K / 64],
    /// Nibbles (indices into `kvalues_iq4nl`).
    pub qs: [u8; QK_K / 2],
}
block!(
    BlockIQ4_XS,
    IQ4_XS,
    QK_K,
    HALF + 2 + QK_K / 64 + QK_K / 2,
    [scale!(BlockIQ4_XS, d, F16)]
);

// ---------------------------------------------------------------------------
// Per-type table
// ---------------------------------------------------------------------------

/// How a scale field is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleEnc {
    /// A little-endian IEEE half.
    F16,
    /// A little-endian IEEE single.
    F32,
    /// One E8M0 byte (`2^(e - 127)`; 0xFF is NaN).
    E8M0,
    /// UE4M3 bytes, one per sub-block (every byte is a finite number).
    UE4M3,
    /// IQ1_M: the f16 assembled from the top nibbles of four little-endian
    /// `uint16_t` words ([`iq1m_scale`]).
    Iq1mScale,
}

impl ScaleEnc {
    /// Bytes one field of this encoding takes; `None` for UE4M3, of any
    /// number of bytes.
    pub const fn width(self) -> Option<usize> {
        match self {
            ScaleEnc::F16 => Some(2),
            ScaleEnc::F32 => Some(4),
            ScaleEnc::E8M0 => Some(1),
            ScaleEnc::UE4M3 => None,
            ScaleEnc::Iq1mScale => Some(8),
        }
    }
}

/// One scale field of a block: a value that scales the block's quants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleField {
    /// The name reports use: the C field's (`"d"`, `"m"`, `"dmin"`, `"s"`,
    /// `"e"`), or `"scale"` for IQ1_M's assembled f16.
    pub name: &'static str,
    /// Byte offset in the block (`offsetof` of the C field).
    pub offset: usize,
    /// Bytes of the field.
    pub size: usize,
    /// How the field is stored.
    pub enc: ScaleEnc,
}

impl ScaleField {
    /// A field; fails to compile where `size` does not fit `enc`.
    const fn new(name: &'static str, offset: usize, size: usize, enc: ScaleEnc) -> ScaleField {
        match enc.width() {
            Some(w) => assert!(w == size, "scale field size does not fit its encoding"),
            None => assert!(size > 0),
        }
        ScaleField {
            name,
            offset,
            size,
            enc,
        }
    }

    /// The field's bytes in `block` (empty if `block` is too short, which a
    /// whole block never is).
    #[inline(always)]
    pub fn bytes(self, block: &[u8]) -> &[u8] {
        block
            .get(self.offset..)
            .and_then(|b| b.get(..self.size))
            .unwrap_or_default()
    }

    /// The field's bytes in `block`, for writing (empty if `block` is too short).
    pub fn bytes_mut(self, block: &mut [u8]) -> &mut [u8] {
        block
            .get_mut(self.offset..)
            .and_then(|b| b.get_mut(..self.size))
            .unwrap_or_default()
    }
}

/// What the crate knows of one type's block, read from its struct.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockInfo {
    /// Elements per block.
    pub elements: usize,
    /// Bytes per block.
    pub bytes: usize,
    /// The scale fields, in field order.
    pub scales: &'static [ScaleField],
}

impl BlockInfo {
    const fn of<B: Block>() -> BlockInfo {
        BlockInfo {
            elements: B::ELEMENTS,
            bytes: size_of::<B>(),
            scales: B::SCALES,
        }
    }

    /// A plain number type: one element of `T`, no scales.
    const fn plain<T>() -> BlockInfo {
        BlockInfo {
            elements: 1,
            bytes: size_of::<T>(),
            scales: &[],
        }
    }
}

/// The block of `ty`: elements, bytes and scale fields, from its struct
/// (plain types: one element of their Rust number type).
pub const fn info(ty: GgmlType) -> BlockInfo {
    use GgmlType::*;
    match ty {
        F32 => BlockInfo::plain::<f32>(),
        F16 => BlockInfo::plain::<f16>(),
        BF16 => BlockInfo::plain::<half::bf16>(),
        F64 => BlockInfo::plain::<f64>(),
        I8 => BlockInfo::plain::<i8>(),
        I16 => BlockInfo::plain::<i16>(),
        I32 => BlockInfo::plain::<i32>(),
        I64 => BlockInfo::plain::<i64>(),
        Q4_0 => BlockInfo::of::<BlockQ4_0>(),
        Q4_1 => BlockInfo::of::<BlockQ4_1>(),
        Q5_0 => BlockInfo::of::<BlockQ5_0>(),
        Q5_1 => BlockInfo::of::<BlockQ5_1>(),
        Q8_0 => BlockInfo::of::<BlockQ8_0>(),
        Q8_1 => BlockInfo::of::<BlockQ8_1>(),
        Q1_0 => BlockInfo::of::<BlockQ1_0>(),
        Q2_0 => BlockInfo::of::<BlockQ2_0>(),
        MXFP4 => BlockInfo::of::<BlockMXFP4>(),
        NVFP4 => BlockInfo::of::<BlockNVFP4>(),
        TQ1_0 => BlockInfo::of::<BlockTQ1_0>(),
        TQ2_0 => BlockInfo::of::<BlockTQ2_0>(),
        Q2_K => BlockInfo::of::<BlockQ2_K>(),
        Q3_K => BlockInfo::of::<BlockQ3_K>(),
        Q4_K => BlockInfo::of::<BlockQ4_K>(),
        Q5_K => BlockInfo::of::<BlockQ5_K>(),
        Q6_K => BlockInfo::of::<BlockQ6_K>(),
        Q8_K => BlockInfo::of::<BlockQ8_K>(),
        IQ2_XXS => BlockInfo::of::<BlockIQ2_XXS>(),
        IQ2_XS => BlockInfo::of::<BlockIQ2_XS>(),
        IQ2_S => BlockInfo::of::<BlockIQ2_S>(),
        IQ3_XXS => BlockInfo::of::<BlockIQ3_XXS>(),
        IQ3_S => BlockInfo::of::<BlockIQ3_S>(),
        IQ1_S => BlockInfo::of::<BlockIQ1_S>(),
        IQ1_M => BlockInfo::of::<BlockIQ1_M>(),
        IQ4_NL => BlockInfo::of::<BlockIQ4_NL>(),
        IQ4_XS => BlockInfo::of::<BlockIQ4_XS>(),
    }
}

/// The scale fields of one block of `ty`, in field order: every f16/f32
/// `d`, `m`, `dmin`, `s`, MXFP4's `e`, NVFP4's UE4M3 `d` and IQ1_M's
/// assembled `scale`. Empty for the plain types.
pub const fn scale_fields(ty: GgmlType) -> &'static [ScaleField] {
    info(ty).scales
}

// ---------------------------------------------------------------------------
// Big-endian files
// ---------------------------------------------------------------------------

/// [`GgmlType::has_big_endian_order`]: the plain types, and the quantized
/// types `gguf_convert_endian.py` (gguf-py 0.19) byte-swaps, whose only
/// multi-byte fields are their f16 scales (checked by a test against the
/// script's offsets).
pub const fn big_endian_order(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        ty,
        F32 | F16 | BF16 | F64 | I8 | I16 | I32 | I64 | Q4_0 | Q8_0 | Q4_K | Q6_K | MXFP4 | NVFP4
    )
}

/// Whether [`swap_to_little_endian`] changes `ty`'s data: false for the
/// types with a byte order whose big-endian bytes are their little-endian
/// ones (I8, and MXFP4 and NVFP4, whose blocks hold only bytes), and for the
/// types without one. Callers that would copy the data to swap it skip the
/// copy where this is false.
pub fn big_endian_swaps(ty: GgmlType) -> bool {
    let block = info(ty);
    big_endian_order(ty)
        && block.bytes >= 2
        && (block.elements == 1 || block.scales.iter().any(|f| f.enc == ScaleEnc::F16))
}

/// Turns `ty`'s data from a big-endian file little-endian in place: each
/// value of a plain type reversed; in each whole block of a quantized type
/// with a byte order ([`big_endian_order`]), each f16 scale reversed (the
/// rest are bytes). Data of the other types, and a trailing partial block,
/// are left as they are.
pub fn swap_to_little_endian(ty: GgmlType, bytes: &mut [u8]) {
    if !big_endian_swaps(ty) {
        return;
    }
    let block = info(ty);
    if block.elements == 1 {
        for value in bytes.chunks_exact_mut(block.bytes) {
            value.reverse();
        }
        return;
    }
    for b in bytes.chunks_exact_mut(block.bytes) {
        for f in block.scales {
            if f.enc == ScaleEnc::F16 {
                f.bytes_mut(b).reverse();
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Little-endian readers
// ---------------------------------------------------------------------------

/// The `N` bytes at `b[at..at + N]`, or zeros past the end of `b` (never
/// reached on whole blocks).
#[inline(always)]
pub fn bytes_at<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    b.get(at..)
        .and_then(|s| s.first_chunk::<N>())
        .copied()
        .unwrap_or([0; N])
}

/// The little-endian `uint16_t` at `b[at..at + 2]` (0 past the end).
#[inline(always)]
pub fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(bytes_at(b, at))
}

/// The little-endian `uint32_t` at `b[at..at + 4]` (0 past the end), as
/// ggml's `memcpy` into a `uint32_t` reads it on a little-endian host.
#[inline(always)]
pub fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes_at(b, at))
}

/// A `ggml_half` widened exactly to f32 (`GGML_FP16_TO_FP32`; NaN payloads
/// kept, quieted).
#[inline(always)]
pub fn f16_le(h: Half) -> f32 {
    f16::from_bits(u16::from_le_bytes(h)).to_f32()
}

/// A little-endian bf16 as f32: its bits become the top half
/// (`GGML_BF16_TO_FP32`, NaN payloads kept bit for bit).
#[inline(always)]
pub fn bf16_le(h: [u8; 2]) -> f32 {
    f32::from_bits(u32::from(u16::from_le_bytes(h)) << 16)
}

/// A little-endian IEEE single.
#[inline(always)]
pub fn f32_le(b: [u8; 4]) -> f32 {
    f32::from_bits(u32::from_le_bytes(b))
}

/// IQ1_M's f16 scale bits, assembled from the top nibbles of the four
/// little-endian `uint16_t` words of `scales` (word 0 gives bits 0..4, word
/// 3 bits 12..16), as ggml's `iq1m_scale_t` (0 past the end of `scales`).
#[inline(always)]
pub fn iq1m_scale(scales: &[u8]) -> u16 {
    let sc = [0, 2, 4, 6].map(|at| u16_at(scales, at));
    (sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each type's entry in [`info`] is its own struct (no entry points at a
    /// neighbour of the same size).
    #[test]
    fn info_maps_each_type_to_its_struct() {
        fn check<B: Block>() {
            let i = info(B::TYPE);
            assert_eq!(i, BlockInfo::of::<B>(), "{}", B::TYPE);
        }
        check::<BlockQ4_0>();
        check::<BlockQ4_1>();
        check::<BlockQ5_0>();
        check::<BlockQ5_1>();
        check::<BlockQ8_0>();
        check::<BlockQ8_1>();
        check::<BlockQ1_0>();
        check::<BlockQ2_0>();
        check::<BlockMXFP4>();
        check::<BlockNVFP4>();
        check::<BlockTQ1_0>();
        check::<BlockTQ2_0>();
        check::<BlockQ2_K>();
        check::<BlockQ3_K>();
        check::<BlockQ4_K>();
        check::<BlockQ5_K>();
        check::<BlockQ6_K>();
        check::<BlockQ8_K>();
        check::<BlockIQ2_XXS>();
        check::<BlockIQ2_XS>();
        check::<BlockIQ2_S>();
        check::<BlockIQ3_XXS>();
        check::<BlockIQ3_S>();
        check::<BlockIQ1_S>();
        check::<BlockIQ1_M>();
        check::<BlockIQ4_NL>();
        check::<BlockIQ4_XS>();
    }

    /// The byte order of big-endian quantized data is the one llama.cpp's
    /// `gguf_convert_endian.py` (gguf-py 0.19) writes: it reverses the two
    /// bytes at these offsets of each block, and nothing else.
    #[test]
    fn big_endian_blocks_swap_what_gguf_convert_endian_swaps() {
        use GgmlType::*;
        let script: [(GgmlType, &[usize]); 6] = [
            (Q4_0, &[0]),
            (Q8_0, &[0]),
            (Q4_K, &[0, 2]),
            (Q6_K, &[208]),
            (MXFP4, &[]),
            (NVFP4, &[]),
        ];
        for ty in GgmlType::ALL {
            let expected = script.iter().find(|(t, _)| *t == ty).map(|(_, o)| *o);
            assert_eq!(
                big_endian_order(ty),
                !ty.is_quantized() || expected.is_some(),
                "{ty}"
            );
            // The copy to swap into is skipped exactly where nothing moves.
            let moves = if ty.is_quantized() {
                expected.is_some_and(|o| !o.is_empty())
            } else {
                info(ty).bytes >= 2
            };
            assert_eq!(big_endian_swaps(ty), moves, "{ty}");
            let Some(offsets) = expected else { continue };
            let n = info(ty).bytes;
            let original: Vec<u8> = (0..2 * n + 1).map(|i| i as u8).collect();
            let mut swapped = original.clone();
            swap_to_little_endian(ty, &mut swapped);
            let mut want = original.clone();
            for block in 0..2 {
                for &o in offsets {
                    want.swap(block * n + o, block * n + o + 1);
                }
            }
            assert_eq!(swapped, want, "{ty}");
        }
        // Plain values are reversed whole; other types are left alone.
        let mut v = vec![1, 2, 3, 4, 5, 6, 7, 8, 9];
        swap_to_little_endian(F32, &mut v);
        assert_eq!(v, [4, 3, 2, 1, 8, 7, 6, 5, 9]);
        let mut q = vec![1u8; 22];
        swap_to_little_endian(Q5_0, &mut q);
        assert_eq!(q, [1u8; 22]);
    }

    #[test]
    fn as_blocks_leaves_out_a_partial_block() {
        let bytes = [0u8; 18 * 3 + 5];
        assert_eq!(as_blocks::<BlockQ4_0>(&bytes).len(), 3);
        assert_eq!(as_blocks::<BlockQ4_0>(&bytes[..17]).len(), 0);
    }

    #[test]
    fn readers_are_little_endian_and_zero_past_the_end() {
        let b = [0x01, 0x02, 0x03, 0x04, 0x00, 0x3c];
        assert_eq!(u16_at(&b, 0), 0x0201);
        assert_eq!(u32_at(&b, 0), 0x0403_0201);
        assert_eq!(f16_le([b[4], b[5]]), 1.0);
        assert_eq!(u32_at(&b, 3), 0);
        assert_eq!(u16_at(&b, usize::MAX), 0);
        assert_eq!(bf16_le([0x80, 0x3f]), 1.0);
        assert_eq!(f32_le(1.5f32.to_le_bytes()), 1.5);
    }

    #[test]
    fn iq1m_scale_takes_the_top_nibbles() {
        // Words 0x1fff, 0x2fff, 0x3fff, 0x4fff: nibbles 1, 2, 3, 4.
        let s = [0xff, 0x1f, 0xff, 0x2f, 0xff, 0x3f, 0xff, 0x4f];
        assert_eq!(iq1m_scale(&s), 0x4321);
    }
}
