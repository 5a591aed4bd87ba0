//! The i-quant blocks with grids (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S,
//! IQ1_S, IQ1_M) cut into their 32 groups of eight outputs, for the x86 and
//! NEON kernels: the bit fields of a block are unpacked here once, with the
//! reference's arithmetic, and the kernels only do the vector part.
//!
//! Each group is eight grid bytes, a scale and either a negation mask (the
//! "signed" types: output `scale * grid`, negated where the mask says, the
//! reference's sign flip) or a shift (IQ1_S, IQ1_M: output
//! `scale * (grid as i8 + delta)`). The scales are computed exactly as in
//! [`crate::decode::iquants`] (the same f32 operations in the same order).
//!
//! Every grid index is built from masked bit fields, as the reference
//! builds it, so it is below its table's length and no lookup can panic.

use super::Kernels;
use crate::decode::iquants::tables::{
    IQ1S_GRID, IQ2S_GRID, IQ2XS_GRID, IQ2XXS_GRID, IQ3S_GRID, IQ3XXS_GRID, KSIGNS_IQ2XS,
};
use crate::format::blocks::{
    f16_le, iq1m_scale, u16_at, u32_at, Block, BlockIQ1_M, BlockIQ1_S, BlockIQ2_S, BlockIQ2_XS,
    BlockIQ2_XXS, BlockIQ3_S, BlockIQ3_XXS, IQ3S_N_SCALE, QK_K,
};
use crate::format::GgmlType;

/// The kernels of one architecture, made for any block type here.
pub trait Tables {
    /// The kernels of block type `B`.
    fn table<B: IqBlock>() -> Kernels;
}

/// `A`'s kernels for `ty`, where `ty` is one of the types here.
pub fn kernels<A: Tables>(ty: GgmlType) -> Kernels {
    match ty {
        GgmlType::IQ2_XXS => A::table::<BlockIQ2_XXS>(),
        GgmlType::IQ2_XS => A::table::<BlockIQ2_XS>(),
        GgmlType::IQ2_S => A::table::<BlockIQ2_S>(),
        GgmlType::IQ3_XXS => A::table::<BlockIQ3_XXS>(),
        GgmlType::IQ3_S => A::table::<BlockIQ3_S>(),
        GgmlType::IQ1_S => A::table::<BlockIQ1_S>(),
        GgmlType::IQ1_M => A::table::<BlockIQ1_M>(),
        _ => Kernels::default(),
    }
}

/// Groups of eight outputs in a block.
pub const GROUPS: usize = QK_K / 8;

/// One group of eight outputs.
#[derive(Clone, Copy)]
pub struct Group {
    /// The eight grid bytes, output `j` in byte `j` (little-endian).
    pub grid: u64,
    /// Signed types: byte `j` is 0xFF where output `j` is negated, else 0.
    pub neg: u64,
    /// The group's scale (the reference's `db` or `dl`).
    pub scale: f32,
    /// IQ1_S and IQ1_M: the shift added to each grid byte (read as i8).
    pub delta: f32,
}

/// A block type whose groups the kernels decode.
pub trait IqBlock: Block {
    /// Whether outputs are `scale * (grid as i8 + delta)` (IQ1_S, IQ1_M)
    /// rather than `scale * grid`, negated where `neg` says.
    const SHIFTED: bool;

    /// Calls `f(k, group)` for `k` in `0..GROUPS`, in order: group `k` is
    /// outputs `8k..8k + 8` of the block.
    fn groups(&self, f: impl FnMut(usize, Group));
}

/// Byte `j` 0xFF where bit `j` of `b` is set, else 0.
const fn spread(b: u8) -> u64 {
    let mut m = 0u64;
    let mut j = 0;
    while j < 8 {
        if b & (1 << j) != 0 {
            m |= 0xFF << (8 * j);
        }
        j += 1;
    }
    m
}

/// [`spread`] of every sign byte.
static SIGN_MASKS: [u64; 256] = {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = spread(i as u8);
        i += 1;
    }
    t
};

/// [`spread`] of `ksigns_iq2xs[i]`: the mask of a 7-bit sign index.
static KSIGN_MASKS: [u64; 128] = {
    let mut t = [0u64; 128];
    let mut i = 0;
    while i < 128 {
        t[i] = spread(KSIGNS_IQ2XS[i]);
        i += 1;
    }
    t
};

/// Whether every byte of every entry of `grid` is below 128, so that the
/// kernels may widen grid bytes as i8 (`grid` holds 8-byte entries, or
/// 4-byte entries zero-extended).
const fn bytes_below_128(grid: &[u64]) -> bool {
    let mut i = 0;
    while i < grid.len() {
        if grid[i] & 0x8080_8080_8080_8080 != 0 {
            return false;
        }
        i += 1;
    }
    true
}

/// `grid` widened to 8-byte entries (for [`bytes_below_128`]).
const fn widen<const N: usize>(grid: &[u32; N]) -> [u64; N] {
    let mut t = [0u64; N];
    let mut i = 0;
    while i < N {
        t[i] = grid[i] as u64;
        i += 1;
    }
    t
}

const _: () = assert!(bytes_below_128(&IQ2XXS_GRID));
const _: () = assert!(bytes_below_128(&IQ2XS_GRID));
const _: () = assert!(bytes_below_128(&IQ2S_GRID));
const _: () = assert!(bytes_below_128(&widen(&IQ3XXS_GRID)));
const _: () = assert!(bytes_below_128(&widen(&IQ3S_GRID)));

/// A signed group.
#[inline(always)]
fn signed(grid: u64, neg: u64, scale: f32) -> Group {
    Group {
        grid,
        neg,
        scale,
        delta: 0.0,
    }
}

/// An IQ1 group.
#[inline(always)]
fn shifted(grid: u64, scale: f32, delta: f32) -> Group {
    Group {
        grid,
        neg: 0,
        scale,
        delta,
    }
}

/// `d * (0.5 + s) * 0.25` for the IQ2 types.
#[inline(always)]
fn iq2_scale(d: f32, s: u32) -> f32 {
    d * (0.5f32 + s as f32) * 0.25f32
}

/// The two 32-element-group scales (low, then high nibble) of `s`.
#[inline(always)]
fn iq2_scales(d: f32, s: u8) -> [f32; 2] {
    [
        iq2_scale(d, u32::from(s & 0xf)),
        iq2_scale(d, u32::from(s >> 4)),
    ]
}

/// ggml-common.h `IQ1S_DELTA` (0.125), negative where bit `bit` of `x` is
/// set; without a branch, as that bit is random from group to group.
#[inline(always)]
fn iq1_delta(x: u16, bit: u32) -> f32 {
    f32::from_bits(0x3e00_0000 | (u32::from(x >> bit) & 1) << 31)
}

/// `d * (2 * s + 1)` (the int converted, then multiplied) for the IQ1 types.
#[inline(always)]
fn iq1_scale(d: f32, s: u16) -> f32 {
    d * (2 * i32::from(s & 7) + 1) as f32
}

impl IqBlock for BlockIQ2_XXS {
    const SHIFTED: bool = false;

    #[inline(always)]
    fn groups(&self, mut f: impl FnMut(usize, Group)) {
        let d = f16_le(self.d);
        for ib in 0..QK_K / 32 {
            let aux1 = u32_at(&self.qs, 8 * ib + 4);
            let db = iq2_scale(d, aux1 >> 28);
            for l in 0..4 {
                let grid = IQ2XXS_GRID[usize::from(self.qs[8 * ib + l])];
                let neg = KSIGN_MASKS[((aux1 >> (7 * l)) & 127) as usize];
                f(4 * ib + l, signed(grid, neg, db));
            }
        }
    }
}

impl IqBlock for BlockIQ2_XS {
    const SHIFTED: bool = false;

    #[inline(always)]
    fn groups(&self, mut f: impl FnMut(usize, Group)) {
        let d = f16_le(self.d);
        for ib in 0..QK_K / 32 {
            let db = iq2_scales(d, self.scales[ib]);
            for l in 0..4 {
                let q = u16_at(&self.qs, 2 * (4 * ib + l));
                let grid = IQ2XS_GRID[usize::from(q & 511)];
                let neg = KSIGN_MASKS[usize::from(q >> 9)];
                f(4 * ib + l, signed(grid, neg, db[l / 2]));
            }
        }
    }
}

impl IqBlock for BlockIQ2_S {
    const SHIFTED: bool = false;

    #[inline(always)]
    fn groups(&self, mut f: impl FnMut(usize, Group)) {
        let d = f16_le(self.d);
        let (qs, signs) = self.qs.split_at(QK_K / 8);
        for ib in 0..QK_K / 32 {
            let db = iq2_scales(d, self.scales[ib]);
            let h = usize::from(self.qh[ib]);
            for l in 0..4 {
                let idx = usize::from(qs[4 * ib + l]) | ((h << (8 - 2 * l)) & 0x300);
                let neg = SIGN_MASKS[usize::from(signs[4 * ib + l])];
                f(4 * ib + l, signed(IQ2S_GRID[idx], neg, db[l / 2]));
            }
        }
    }
}

impl IqBlock for BlockIQ3_XXS {
    const SHIFTED: bool = false;

    #[inline(always)]
    fn groups(&self, mut f: impl FnMut(usize, Group)) {
        let d = f16_le(self.d);
        let (qs, scales_and_signs) = self.qs.split_at(QK_K / 4);
        for ib in 0..QK_K / 32 {
            let aux32 = u32_at(scales_and_signs, 4 * ib);
            let db = d * (0.5f32 + (aux32 >> 28) as f32) * 0.5f32;
            for l in 0..4 {
                let g1 = IQ3XXS_GRID[usize::from(qs[8 * ib + 2 * l])];
                let g2 = IQ3XXS_GRID[usize::from(qs[8 * ib + 2 * l + 1])];
                let neg = KSIGN_MASKS[((aux32 >> (7 * l)) & 127) as usize];
                f(4 * ib + l, signed(pair(g1, g2), neg, db));
            }
        }
    }
}

/// Two 4-byte grid entries as one group (`g1` first).
#[inline(always)]
fn pair(g1: u32, g2: u32) -> u64 {
    u64::from(g1) | u64::from(g2) << 32
}

/// IQ3_S's scale of its 32-output group `ib`: `d * (1 + 2 * s)` (the int
/// converted, then multiplied), `s` the group's nibble of `scales`.
#[inline(always)]
pub fn iq3s_scale(d: f32, scales: &[u8; IQ3S_N_SCALE], ib: usize) -> f32 {
    let s = (scales[ib / 2] >> (4 * (ib % 2))) & 0xf;
    d * (1 + 2 * i32::from(s)) as f32
}

impl IqBlock for BlockIQ3_S {
    const SHIFTED: bool = false;

    #[inline(always)]
    fn groups(&self, mut f: impl FnMut(usize, Group)) {
        let d = f16_le(self.d);
        for ib in 0..QK_K / 32 {
            let db = iq3s_scale(d, &self.scales, ib);
            let h = usize::from(self.qh[ib]);
            let qs = &self.qs[8 * ib..8 * ib + 8];
            for l in 0..4 {
                let g1 = IQ3S_GRID[usize::from(qs[2 * l]) | ((h << (8 - 2 * l)) & 256)];
                let g2 = IQ3S_GRID[usize::from(qs[2 * l + 1]) | ((h << (7 - 2 * l)) & 256)];
                let neg = SIGN_MASKS[usize::from(self.signs[4 * ib + l])];
                f(4 * ib + l, signed(pair(g1, g2), neg, db));
            }
        }
    }
}

impl IqBlock for BlockIQ1_S {
    const SHIFTED: bool = true;

    #[inline(always)]
    fn groups(&self, mut f: impl FnMut(usize, Group)) {
        let d = f16_le(self.d);
        for ib in 0..QK_K / 32 {
            let qh = u16_at(&self.qh, 2 * ib);
            let dl = iq1_scale(d, qh >> 12);
            let delta = iq1_delta(qh, 15);
            for l in 0..4 {
                let idx =
                    usize::from(self.qs[4 * ib + l]) | (usize::from((qh >> (3 * l)) & 7) << 8);
                f(4 * ib + l, shifted(IQ1S_GRID[idx], dl, delta));
            }
        }
    }
}

impl IqBlock for BlockIQ1_M {
    const SHIFTED: bool = true;

    #[inline(always)]
    fn groups(&self, mut f: impl FnMut(usize, Group)) {
        let d = f16_le(iq1m_scale(&self.scales).to_le_bytes());
        for ib in 0..QK_K / 32 {
            let s = u16_at(&self.scales, 2 * (ib / 2)) >> (6 * (ib % 2));
            let dl = [iq1_scale(d, s), iq1_scale(d, s >> 3)];
            for l in 0..4 {
                // Byte `qh[2ib + l/2]`: low nibble for even `l`, high for odd.
                let h = u16::from(self.qh[2 * ib + l / 2]) >> (4 * (l % 2));
                let idx = usize::from(self.qs[4 * ib + l]) | (usize::from(h & 7) << 8);
                let delta = iq1_delta(h, 3);
                f(4 * ib + l, shifted(IQ1S_GRID[idx], dl[l / 2], delta));
            }
        }
    }
}
