//! The numeric pieces of the forward pass, all in f32: the weight types
//! (matrix products are in `matmul`), RMSNorm, RoPE, activations, softmax.

use gguf_loader::{f16, Element};
use half::slice::HalfFloatSliceExt;

use super::matmul::Kernel;

pub(crate) mod sealed {
    /// What the matrix kernels need of a weight type; out of reach outside
    /// the crate, so that `WeightElement` stays closed.
    pub trait Sealed: Copy {
        /// This weight as f32.
        fn to_f32(self) -> f32;

        /// Eight consecutive weights from `p`, widened to f32.
        ///
        /// # Safety
        /// The CPU has AVX2 and F16C, and `p..p + 8` is readable.
        #[cfg(target_arch = "x86_64")]
        unsafe fn load8(p: *const Self) -> core::arch::x86_64::__m256;

        /// Sixteen consecutive weights from `p`, widened to f32.
        ///
        /// # Safety
        /// The CPU has AVX-512F, and `p..p + 16` is readable.
        #[cfg(target_arch = "x86_64")]
        unsafe fn load16(p: *const Self) -> core::arch::x86_64::__m512;

        /// Four consecutive weights from `p`, widened to f32.
        ///
        /// # Safety
        /// `p..p + 4` is readable (NEON is in every aarch64 CPU).
        #[cfg(target_arch = "aarch64")]
        unsafe fn load4(p: *const Self) -> core::arch::aarch64::float32x4_t;
    }

    impl Sealed for f32 {
        fn to_f32(self) -> f32 {
            self
        }

        #[cfg(target_arch = "x86_64")]
        #[inline(always)]
        unsafe fn load8(p: *const f32) -> core::arch::x86_64::__m256 {
            // SAFETY: the caller vouches for AVX and for 8 readable floats.
            unsafe { core::arch::x86_64::_mm256_loadu_ps(p) }
        }

        #[cfg(target_arch = "x86_64")]
        #[inline(always)]
        unsafe fn load16(p: *const f32) -> core::arch::x86_64::__m512 {
            // SAFETY: the caller vouches for AVX-512F and 16 readable floats.
            unsafe { core::arch::x86_64::_mm512_loadu_ps(p) }
        }

        #[cfg(target_arch = "aarch64")]
        #[inline(always)]
        unsafe fn load4(p: *const f32) -> core::arch::aarch64::float32x4_t {
            // SAFETY: the caller vouches for 4 readable floats (`ld1`
            // needs only f32 alignment, which `p` has).
            unsafe { core::arch::aarch64::vld1q_f32(p) }
        }
    }

    impl Sealed for gguf_loader::f16 {
        fn to_f32(self) -> f32 {
            gguf_loader::f16::to_f32(self)
        }

        #[cfg(target_arch = "x86_64")]
        #[inline(always)]
        unsafe fn load8(p: *const gguf_loader::f16) -> core::arch::x86_64::__m256 {
            use core::arch::x86_64::{_mm256_cvtph_ps, _mm_loadu_si128};
            // SAFETY: the caller vouches for F16C and for 8 readable
            // halves (16 bytes; the load is unaligned).
            unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.cast())) }
        }

        #[cfg(target_arch = "x86_64")]
        #[inline(always)]
        unsafe fn load16(p: *const gguf_loader::f16) -> core::arch::x86_64::__m512 {
            use core::arch::x86_64::{_mm256_loadu_si256, _mm512_cvtph_ps};
            // SAFETY: the caller vouches for AVX-512F and for 16 readable
            // halves (32 bytes; the load is unaligned).
            unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())) }
        }

        #[cfg(target_arch = "aarch64")]
        #[inline(always)]
        unsafe fn load4(p: *const gguf_loader::f16) -> core::arch::aarch64::float32x4_t {
            use core::arch::aarch64::{float32x4_t, vld1_u16};
            // SAFETY: the caller vouches for 4 readable halves (`ld1`
            // needs only u16 alignment, which `p` has).
            let h = unsafe { vld1_u16(p.cast()) };
            let f: float32x4_t;
            // SAFETY: one register-only conversion (`fcvtl`, base Advanced
            // SIMD, in every aarch64 CPU; exact, as `f16::to_f32`: Rust's
            // `float16x4_t` intrinsics are not stable); no memory, stack or
            // flags are touched.
            unsafe {
                core::arch::asm!(
                    "fcvtl {f:v}.4s, {h:v}.4h",
                    h = in(vreg) h,
                    f = lateout(vreg) f,
                    options(pure, nomem, nostack, preserves_flags)
                );
            }
            f
        }
    }
}

/// The element types the forward pass takes weights in: `f16` (as the
/// issue's design has it) and `f32`. Products accumulate in f32 either way.
pub trait WeightElement: Element + sealed::Sealed + Send + Sync {
    /// Widens `src` into `dst` (same length).
    fn widen(src: &[Self], dst: &mut [f32]);

    /// Rounds the inputs of a product with weights of this type as ggml
    /// does (its `vec_dot_type`): to f16 for f16 weights, so that the
    /// products are exact f16 × f16 ones accumulated in f32; f32 keeps them.
    fn round_inputs(x: &mut [f32]);

    /// `x` rounded by [`Self::round_inputs`]: in `buf` where that changes
    /// anything, `x` itself where not.
    fn rounded<'a>(x: &'a [f32], buf: &'a mut Vec<f32>) -> &'a [f32];
}

impl WeightElement for f32 {
    fn widen(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }

    fn round_inputs(_: &mut [f32]) {}

    fn rounded<'a>(x: &'a [f32], _: &'a mut Vec<f32>) -> &'a [f32] {
        x
    }
}

impl WeightElement for f16 {
    fn widen(src: &[f16], dst: &mut [f32]) {
        // gguf-loader's F16 decoder (AVX2 + F16C or NEON where the CPU has
        // them) with ordinary stores: the caller reads the values at once.
        // It reads little-endian bytes, which an f16 slice is only there.
        #[cfg(target_endian = "little")]
        if gguf_loader::dequantize_into_with(
            gguf_loader::GgmlType::F16,
            bytemuck::cast_slice(src),
            dst,
            gguf_loader::Stores::Cached,
        )
        .is_ok()
        {
            return;
        }
        src.convert_to_f32_slice(dst);
    }

    fn round_inputs(x: &mut [f32]) {
        // Through `half`'s slice conversions (F16C where the CPU has it, by
        // eight; the same rounding as `f16::from_f32`), a block at a time.
        let mut h = [f16::ZERO; 256];
        for block in x.chunks_mut(256) {
            let h = &mut h[..block.len()];
            h.convert_from_f32_slice(block);
            h.convert_to_f32_slice(block);
        }
    }

    fn rounded<'a>(x: &'a [f32], buf: &'a mut Vec<f32>) -> &'a [f32] {
        // Written over (a buffer taken at `x`'s length is not touched
        // first), in one pass from `x`: a batch's on every thread.
        buf.resize(x.len(), 0.0);
        pairwise(buf, x, |dst, src| {
            let mut h = [f16::ZERO; 256];
            for (d, s) in dst.chunks_mut(256).zip(src.chunks(256)) {
                let h = &mut h[..s.len()];
                h.convert_from_f32_slice(s);
                h.convert_to_f32_slice(d);
            }
        });
        buf
    }
}

/// `a · b + c` rounded once: [`f32::mul_add`], an FMA instruction where
/// the caller is compiled for one, else the C library's `fmaf`. Except on
/// Windows: MinGW's `fmaf` (linked into the program) rounds twice, one
/// product in 2^20 or so a unit off, which moved `expf` by up to 26 units
/// of the last place; MSVC's (the UCRT's) has not been run here. There the
/// instruction where the CPU has it (the same bits), else [`fma_by_f64`].
#[inline(always)]
pub(crate) fn fma32(a: f32, b: f32, c: f32) -> f32 {
    #[cfg(all(windows, target_arch = "x86_64"))]
    {
        /// # Safety
        /// The CPU has FMA.
        #[target_feature(enable = "fma")]
        #[inline]
        unsafe fn instruction(a: f32, b: f32, c: f32) -> f32 {
            a.mul_add(b, c)
        }
        if std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has FMA (detected just above).
            return unsafe { instruction(a, b, c) };
        }
        fma_by_f64(a, b, c)
    }
    #[cfg(not(all(windows, target_arch = "x86_64")))]
    {
        a.mul_add(b, c)
    }
}

/// `a · b + c` rounded once, in f64 arithmetic: the product is exact there
/// (24 + 24 bits), the sum is rounded to odd (its exact error, by TwoSum,
/// sets the last bit where it is not zero), and a sum rounded to odd with
/// two more bits than f32 rounds to f32 as the exact value does (Boldo
/// and Melquiond). Infinities and NaNs give what `mul_add` gives.
#[cfg_attr(not(all(windows, target_arch = "x86_64")), allow(dead_code))]
pub(crate) fn fma_by_f64(a: f32, b: f32, c: f32) -> f32 {
    let p = a as f64 * b as f64;
    let c = c as f64;
    let s = p + c;
    let v = s - p;
    let e = (p - (s - v)) + (c - v);
    let bits = s.to_bits();
    if s.is_finite() && e != 0.0 && bits & 1 == 0 {
        // One unit toward the exact value: up in magnitude where the error
        // has the sum's sign. (s is not zero: p + c = 0 is exact.)
        let toward = if (e > 0.0) == (s > 0.0) {
            bits + 1
        } else {
            bits - 1
        };
        return f64::from_bits(toward) as f32;
    }
    s as f32
}

/// Dot product in f32 with 16 independent partial sums (vectorizable),
/// each product fused into its sum ([`fma32`]: one rounding, as ggml's
/// f16 dot products on the CPU, which fuse them; an FMA instruction where
/// the caller is compiled for one, else libm's `fmaf`, slow but exact).
/// `b` in f32 or f16, widened as it is read (exactly: every f16 is an
/// f32).
#[inline(always)]
pub(crate) fn dot<E: sealed::Sealed>(a: &[f32], b: &[E]) -> f32 {
    let mut acc = [0f32; 16];
    let ca = a.chunks_exact(16);
    let cb = b.chunks_exact(16);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] = fma32(x[i], y[i].to_f32(), acc[i]);
        }
    }
    let mut s: f32 = ra.iter().zip(rb).map(|(x, y)| x * y.to_f32()).sum();
    for v in acc {
        s += v;
    }
    s
}

/// Square blocks of floats transposed in registers: the packing of the
/// matrices' weights by lane, and the lanes of a vector of keys' scores.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
pub(crate) mod transpose {
    #[cfg(target_arch = "aarch64")]
    use core::arch::aarch64::*;
    #[cfg(target_arch = "x86_64")]
    use core::arch::x86_64::*;

    /// The 16 × 16 matrix of rows `r` as columns.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
        // Pairs of rows interleaved: t[2m] holds, in each 128-bit lane L,
        // rows 2m and 2m + 1 of columns 4L and 4L + 1; t[2m + 1] of 4L + 2
        // and 4L + 3.
        let t: [__m512; 16] = std::array::from_fn(|i| {
            let (a, b) = (r[i & !1], r[i | 1]);
            if i % 2 == 0 {
                _mm512_unpacklo_ps(a, b)
            } else {
                _mm512_unpackhi_ps(a, b)
            }
        });
        // u[4m + q] holds, in lane L, rows 4m..4m + 4 of column 4L + q.
        let u: [__m512; 16] = std::array::from_fn(|i| {
            let (m, q) = (i / 4, i % 4);
            let (a, b) = (t[4 * m + q / 2], t[4 * m + 2 + q / 2]);
            if q % 2 == 0 {
                _mm512_shuffle_ps::<0x44>(a, b)
            } else {
                _mm512_shuffle_ps::<0xee>(a, b)
            }
        });
        // Column 4L + q: lane L of u[q], u[4 + q], u[8 + q], u[12 + q].
        let mut out = [_mm512_setzero_ps(); 16];
        for q in 0..4 {
            let v0 = _mm512_shuffle_f32x4::<0x44>(u[q], u[4 + q]);
            let v1 = _mm512_shuffle_f32x4::<0xee>(u[q], u[4 + q]);
            let v2 = _mm512_shuffle_f32x4::<0x44>(u[8 + q], u[12 + q]);
            let v3 = _mm512_shuffle_f32x4::<0xee>(u[8 + q], u[12 + q]);
            out[q] = _mm512_shuffle_f32x4::<0x88>(v0, v2);
            out[4 + q] = _mm512_shuffle_f32x4::<0xdd>(v0, v2);
            out[8 + q] = _mm512_shuffle_f32x4::<0x88>(v1, v3);
            out[12 + q] = _mm512_shuffle_f32x4::<0xdd>(v1, v3);
        }
        out
    }

    /// The 8 × 8 matrix of rows `r` as columns (as [`transpose16`], two
    /// 128-bit lanes).
    #[cfg(target_arch = "x86_64")]
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        let t: [__m256; 8] = std::array::from_fn(|i| {
            let (a, b) = (r[i & !1], r[i | 1]);
            if i % 2 == 0 {
                _mm256_unpacklo_ps(a, b)
            } else {
                _mm256_unpackhi_ps(a, b)
            }
        });
        let u: [__m256; 8] = std::array::from_fn(|i| {
            let (m, q) = (i / 4, i % 4);
            let (a, b) = (t[4 * m + q / 2], t[4 * m + 2 + q / 2]);
            if q % 2 == 0 {
                _mm256_shuffle_ps::<0x44>(a, b)
            } else {
                _mm256_shuffle_ps::<0xee>(a, b)
            }
        });
        let mut out = [_mm256_setzero_ps(); 8];
        for q in 0..4 {
            out[q] = _mm256_permute2f128_ps::<0x20>(u[q], u[4 + q]);
            out[4 + q] = _mm256_permute2f128_ps::<0x31>(u[q], u[4 + q]);
        }
        out
    }

    /// The 4 × 4 matrix of rows `r` as columns: pairs of rows interleaved
    /// (`trn1` / `trn2`), then their halves paired (`zip1` / `zip2` of
    /// 64-bit lanes).
    #[cfg(target_arch = "aarch64")]
    #[inline]
    #[target_feature(enable = "neon")]
    pub(crate) fn transpose4(r: [float32x4_t; 4]) -> [float32x4_t; 4] {
        // t0 = (r0[0], r1[0], r0[2], r1[2]), t1 the odd columns; t2, t3
        // the same of rows 2 and 3.
        let (t0, t1) = (vtrn1q_f32(r[0], r[1]), vtrn2q_f32(r[0], r[1]));
        let (t2, t3) = (vtrn1q_f32(r[2], r[3]), vtrn2q_f32(r[2], r[3]));
        let low = |a: float32x4_t, b: float32x4_t| {
            vreinterpretq_f32_f64(vzip1q_f64(
                vreinterpretq_f64_f32(a),
                vreinterpretq_f64_f32(b),
            ))
        };
        let high = |a: float32x4_t, b: float32x4_t| {
            vreinterpretq_f32_f64(vzip2q_f64(
                vreinterpretq_f64_f32(a),
                vreinterpretq_f64_f32(b),
            ))
        };
        [low(t0, t2), low(t1, t3), high(t0, t2), high(t1, t3)]
    }
}

/// What the batch attention kernels ([`Vector`]'s) pad to: each
/// head's scores fill rows of a multiple of this, and the transposed keys
/// are readable that far past the last position.
pub(crate) const SCORE_KEYS: usize = 16;

/// Positions the batch kernels' weighted values take at a time.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const VALUE_CHUNK: usize = 128;

/// Rows the batch kernels' weighted values ask memory for ahead of the one
/// they read (AVX-512's and AVX2's; NEON's [`prefetch`] asks nothing).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const VALUE_AHEAD: usize = 8;

/// Asks memory now for the `len` values from `p`: a hint, which never
/// faults, wherever `p` points. The kernels that stream weights or a
/// cache's rows from memory (a step of one token) ask so for what they
/// read next: this machine's hardware prefetching alone left them waiting
/// on memory (a Gemma-3-270M step at 31 tokens/s, 42 with the matrices'
/// rows asked for a block ahead).
#[cfg(target_arch = "x86_64")]
#[inline]
pub(crate) fn prefetch<E>(p: *const E, len: usize) {
    use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
    for line in (0..len * size_of::<E>()).step_by(64) {
        // SAFETY: SSE is in every x86-64 CPU; a prefetch only hints.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>().wrapping_add(line)) };
    }
}

/// [`prefetch`]'s place on aarch64: nothing, as in the NEON matrix kernel
/// (no aarch64 machine here to measure whether asking pays there).
#[cfg(target_arch = "aarch64")]
#[inline]
pub(crate) fn prefetch<E>(_: *const E, _: usize) {}

/// Heads the batch kernels' weighted values take at a time, at every
/// width.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const VALUE_HEADS: usize = 4;

/// The attention's batch kernels for one vector type: `$v` of `$width`
/// floats, the `$feature` CPU features (of `core::arch::$arch`), `$vecs`
/// vectors of each head's weighted values at once, and the intrinsics that
/// zero, load, broadcast, multiply, add, fuse (`a * b + c`, rounded once)
/// and store its vectors. One source for AVX-512, AVX2 and NEON, each
/// function compiled with its features.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
macro_rules! attention_kernels {
    (
        $name:ident, $feature:literal, $arch:ident, $v:ty, $width:expr, $vecs:expr,
        $zero:path, $load:ident, $widen:ident, $splat:ident, $mul:ident, $add:ident, $fma:path,
        $store:ident, $transpose:ident, $heads:expr
    ) => {
        pub(crate) mod $name {
            use core::arch::$arch::*;

            use super::sealed::Sealed;

            /// Keys a vector of [`lane_scores`] takes.
            const L: usize = $width;
            const _: () = assert!(super::SCORE_KEYS.is_multiple_of(L));

            /// The attention scores of the query heads in `q` (`hd` values
            /// each) against `span` keys, `dot(q, k) * scale` bit for bit,
            /// a vector of keys at a time: `kt` holds the keys transposed
            /// (`kt[c * tp + t]` is key `t`'s value `c`, readable up to key
            /// `span` rounded up to [`super::SCORE_KEYS`]); head `i`'s
            /// scores go to `scores[i * stride..]`.
            ///
            /// [`super::dot`] sums sixteen lanes of a head, each over every
            /// sixteenth value, then adds the lanes one by one to the sum
            /// of the values past the last sixteen. Here a vector holds one
            /// lane of a vector of keys' dot products, and the lanes are
            /// added the same way, for all those keys at once: the same
            /// operations on the same values (the products fused into the
            /// lanes' sums, as `dot`'s `mul_add`), so the same bits,
            /// without a chain of sixteen scalar additions a score.
            ///
            /// # Safety
            /// The CPU has the features.
            #[target_feature(enable = $feature)]
            pub(crate) unsafe fn lane_scores(
                q: &[f32],
                hd: usize,
                (kt, tp): (&[f32], usize),
                span: usize,
                scale: f32,
                scores: &mut [f32],
                stride: usize,
            ) {
                let spanp = span.next_multiple_of(L);
                assert!(stride >= spanp && tp >= spanp && kt.len() >= (hd - 1) * tp + spanp.max(1));
                assert!(scores.len() >= q.len() / hd * stride);
                let heads = q.len() / hd;
                // Keys outer: a vector of keys' values (`hd` rows of `kt`)
                // stay in the L1 cache while every head meets them; heads
                // outer read all of `kt` once a head (3 MB a layer at 3000
                // positions of Gemma-3, from memory each time).
                for t0 in (0..span).step_by(L) {
                    let mut h0 = 0;
                    while h0 < heads {
                        let (q, sp) = (&q[h0 * hd..], scores[h0 * stride..].as_mut_ptr());
                        let kt = (kt, tp, t0);
                        // SAFETY: heads h0.. of `q` and `scores` (checked
                        // above), keys t0..t0 + L of `kt`.
                        h0 += unsafe {
                            match heads - h0 {
                                left if left >= HEADS => {
                                    lane_group::<HEADS>(q, hd, kt, scale, sp, stride)
                                }
                                left if left >= 4 => lane_group::<4>(q, hd, kt, scale, sp, stride),
                                left if left >= 2 => lane_group::<2>(q, hd, kt, scale, sp, stride),
                                _ => lane_group::<1>(q, hd, kt, scale, sp, stride),
                            }
                        };
                    }
                }
            }

            /// Heads [`lane_scores`] takes at a time.
            const HEADS: usize = $heads;

            /// [`lane_scores`] of `H` heads (from `q`, into `scores + h *
            /// stride` for head `h`) for the vector of keys from `t0` in
            /// `kt`; returns `H`. The heads' sums are independent chains,
            /// interleaved, and each vector of keys' values is loaded once
            /// for them.
            ///
            /// # Safety
            /// As [`lane_scores`]'s, for `H` heads and keys `t0..t0 + L`.
            #[inline]
            #[target_feature(enable = $feature)]
            unsafe fn lane_group<const H: usize>(
                q: &[f32],
                hd: usize,
                (kt, tp, t0): (&[f32], usize, usize),
                scale: f32,
                scores: *mut f32,
                stride: usize,
            ) -> usize {
                const D: usize = 16;
                let body = hd - hd % D;
                assert!(q.len() >= H * hd);
                let (ktp, qp) = (kt.as_ptr(), q.as_ptr());
                let empty: f32 = std::iter::empty::<f32>().sum();
                // The products past the last sixteen values, summed key by
                // key as `dot` sums them.
                let mut s: [$v; H] = std::array::from_fn(|h| {
                    let qh = &q[h * hd..][..hd];
                    if body == hd {
                        $splat(empty)
                    } else {
                        let tails: [f32; L] = std::array::from_fn(|j| {
                            (body..hd).map(|c| qh[c] * kt[c * tp + t0 + j]).sum()
                        });
                        // SAFETY: a vector's floats.
                        unsafe { $load(tails.as_ptr()) }
                    }
                });
                for l in 0..D {
                    let mut a = [$zero(); H];
                    for c in (l..body).step_by(D) {
                        // SAFETY: c < hd and t0 + L <= spanp: inside `kt`.
                        let k = unsafe { $load(ktp.add(c * tp + t0)) };
                        for (h, a) in a.iter_mut().enumerate() {
                            // SAFETY: h < H and c < hd: inside `q`
                            // (asserted above). Unchecked: a bounds check
                            // for each product was a third of the loop.
                            let qv = unsafe { *qp.add(h * hd + c) };
                            *a = $fma($splat(qv), k, *a);
                        }
                    }
                    for (s, a) in s.iter_mut().zip(a) {
                        *s = $add(*s, a);
                    }
                }
                for (h, s) in s.into_iter().enumerate() {
                    // SAFETY: head h's row holds `stride >= spanp` scores.
                    unsafe { $store(scores.add(h * stride + t0), $mul(s, $splat(scale))) };
                }
                H
            }

            /// [`lane_scores`] from the keys as the cache holds them: `span`
            /// rows of `k` (f32 or f16, rows `kv_dim` apart, the first at
            /// the span's first position), `dot(q, k) * scale` bit for bit
            /// into `scores[i * stride..][..span]` for head `i`. For a
            /// step of a few tokens, whose keys are not transposed: `dot`'s
            /// sixteen lanes of a vector of keys at a time (one register of
            /// sums a key, or two passes of eight lanes with AVX2), then
            /// each key's lanes added in `dot`'s order; independent sums,
            /// where `dot` key by key waits on a chain of additions.
            ///
            /// # Safety
            /// The CPU has the features.
            #[target_feature(enable = $feature)]
            #[allow(clippy::too_many_arguments)]
            pub(crate) unsafe fn row_scores<E: Sealed>(
                q: &[f32],
                hd: usize,
                (k, kv_dim): (&[E], usize),
                span: usize,
                scale: f32,
                scores: &mut [f32],
                stride: usize,
            ) {
                let heads = q.len() / hd;
                assert!(heads >= 1 && span >= 1 && stride >= span);
                assert!(
                    k.len() >= (span - 1) * kv_dim + hd
                        && scores.len() >= (heads - 1) * stride + span
                );
                let mut t0 = 0;
                while t0 < span {
                    let kp = k[t0 * kv_dim..].as_ptr();
                    let sp = scores[t0..].as_mut_ptr();
                    // The next block's keys (see `prefetch`).
                    for j in L..2 * L {
                        super::prefetch(kp.wrapping_add(j * kv_dim), hd);
                    }
                    // SAFETY: keys t0..t0 + L (or t0) inside `k`, their
                    // scores inside `scores` (checked above).
                    unsafe {
                        if span - t0 >= L {
                            row_block(q, hd, kp, kv_dim, scale, sp, stride);
                            t0 += L;
                        } else {
                            row_one(q, hd, kp, scale, sp, stride);
                            t0 += 1;
                        }
                    }
                }
            }

            /// [`row_scores`] of the `L` keys from `k` (rows `kv_dim`
            /// apart), into `scores` (head `i`'s from `scores + i *
            /// stride`). Each key's sixteen lanes are summed in a register
            /// of its own (two halves with AVX2); the registers are then
            /// transposed, so that a vector holds one lane of every key,
            /// and the lanes added in `dot`'s order for all the keys at
            /// once: the same additions of the same values, so the same
            /// bits. (Key by key, a chain of sixteen scalar additions a
            /// score was two fifths of this kernel's time at 3000
            /// positions of SmolLM2.)
            ///
            /// # Safety
            /// As [`row_scores`]'s, for `L` rows from `k` and `L` scores a
            /// head from `scores`.
            #[inline]
            #[target_feature(enable = $feature)]
            unsafe fn row_block<E: Sealed>(
                q: &[f32],
                hd: usize,
                k: *const E,
                kv_dim: usize,
                scale: f32,
                scores: *mut f32,
                stride: usize,
            ) {
                const D: usize = 16;
                let body = hd - hd % D;
                let empty: f32 = std::iter::empty::<f32>().sum();
                for (i, qh) in q.chunks_exact(hd).enumerate() {
                    // The products past the last sixteen values, key by
                    // key, as `dot` sums them.
                    let mut s = if body == hd {
                        $splat(empty)
                    } else {
                        let tails: [f32; L] = std::array::from_fn(|j| {
                            (body..hd)
                                // SAFETY: key row j's values past the body.
                                .map(|c| qh[c] * unsafe { *k.add(j * kv_dim + c) }.to_f32())
                                .sum()
                        });
                        // SAFETY: a vector's floats.
                        unsafe { $load(tails.as_ptr()) }
                    };
                    for half in (0..D).step_by(L) {
                        let mut acc = [$zero(); L];
                        for c in (half..body).step_by(D) {
                            // SAFETY: c + L <= body <= hd: inside the query
                            // and each key row.
                            let qv = unsafe { $load(qh.as_ptr().add(c)) };
                            for (j, a) in acc.iter_mut().enumerate() {
                                // SAFETY: as above, in key row j.
                                let kv = unsafe { E::$widen(k.add(j * kv_dim + c)) };
                                *a = $fma(qv, kv, *a);
                            }
                        }
                        // Lane half + l of every key, for l in order.
                        for lane in super::transpose::$transpose(acc) {
                            s = $add(s, lane);
                        }
                    }
                    // SAFETY: head i's scores of the L keys.
                    unsafe { $store(scores.add(i * stride), $mul(s, $splat(scale))) };
                }
            }

            /// [`row_scores`] of the one key at `k`, into `scores` (head
            /// `i`'s at `scores + i * stride`): `dot(q, k) * scale`.
            ///
            /// # Safety
            /// As [`row_scores`]'s, for one row from `k` and one score a
            /// head from `scores`.
            #[inline]
            #[target_feature(enable = $feature)]
            unsafe fn row_one<E: Sealed>(
                q: &[f32],
                hd: usize,
                k: *const E,
                scale: f32,
                scores: *mut f32,
                stride: usize,
            ) {
                // SAFETY: the row's `hd` values (the caller's).
                let k = unsafe { std::slice::from_raw_parts(k, hd) };
                for (i, qh) in q.chunks_exact(hd).enumerate() {
                    // SAFETY: head i's score of the key.
                    unsafe { *scores.add(i * stride) = super::dot(qh, k) * scale };
                }
            }

            /// Vectors of values [`weighted_values`] holds at once for each
            /// head.
            const VECS: usize = $vecs;
            /// Values [`weighted_values`] holds at once for each head.
            pub(crate) const VALUE_BLOCK: usize = VECS * $width;

            /// Each head's output in `o` (`hd` values, a multiple of
            /// [`VALUE_BLOCK`], each head's after the one before) plus its
            /// weighted sum of the values: `o += p_t * v_t` for `t` in
            /// `0..span` in order, one fused multiply-add for each value,
            /// as a plain loop of `mul_add` over the positions adds them
            /// (as ggml's f16 products sum, fused); here a block of
            /// values of a few heads at a time, held in registers over the
            /// positions, each value row read once for those heads; the
            /// positions a chunk at a time, whose rows stay in the L2 cache
            /// while every block of values reads them. Head `i`'s weights
            /// are `scores[i * stride..][..span]`; `v` holds the values
            /// from the first position of the span, rows `kv_dim` apart,
            /// f32 or f16 (the cache's rows, widened as they are read:
            /// every f16 is an f32, so the same bits).
            ///
            /// # Safety
            /// The CPU has the features.
            #[target_feature(enable = $feature)]
            pub(crate) unsafe fn weighted_values<E: Sealed>(
                (scores, stride): (&[f32], usize),
                span: usize,
                (v, kv_dim): (&[E], usize),
                hd: usize,
                o: &mut [f32],
            ) {
                let heads = o.len() / hd;
                assert!(hd.is_multiple_of(VALUE_BLOCK) && span >= 1 && stride >= span);
                assert!(v.len() >= (span - 1) * kv_dim + hd);
                assert!(heads == 0 || scores.len() >= (heads - 1) * stride + span);
                for p0 in (0..span).step_by(super::VALUE_CHUNK) {
                    let pn = super::VALUE_CHUNK.min(span - p0);
                    let vp = v[p0 * kv_dim..].as_ptr();
                    let mut h0 = 0;
                    while h0 < heads {
                        let nh = (heads - h0).min(super::VALUE_HEADS);
                        let sp = scores[h0 * stride + p0..].as_ptr();
                        let op = o[h0 * hd..].as_mut_ptr();
                        // SAFETY: heads h0..h0 + nh of `o` and `scores`,
                        // positions p0..p0 + pn of `scores` and `v`
                        // (checked above).
                        unsafe {
                            match nh {
                                4 => value_group::<E, 4>(sp, stride, pn, vp, kv_dim, hd, op),
                                3 => value_group::<E, 3>(sp, stride, pn, vp, kv_dim, hd, op),
                                2 => value_group::<E, 2>(sp, stride, pn, vp, kv_dim, hd, op),
                                _ => value_group::<E, 1>(sp, stride, pn, vp, kv_dim, hd, op),
                            }
                        }
                        h0 += nh;
                    }
                }
            }

            /// [`weighted_values`] for `H` heads.
            ///
            /// # Safety
            /// As [`weighted_values`]'s, for `H` heads from `scores` and
            /// `o`.
            #[inline]
            #[target_feature(enable = $feature)]
            #[allow(clippy::too_many_arguments)]
            unsafe fn value_group<E: Sealed, const H: usize>(
                scores: *const f32,
                stride: usize,
                span: usize,
                v: *const E,
                kv_dim: usize,
                hd: usize,
                o: *mut f32,
            ) {
                for c0 in (0..hd).step_by(VALUE_BLOCK) {
                    let mut acc = [[$zero(); VECS]; H];
                    for (h, a) in acc.iter_mut().enumerate() {
                        for (j, aj) in a.iter_mut().enumerate() {
                            // SAFETY: vector j of head h's block, inside `o`.
                            *aj = unsafe { $load(o.add(h * hd + c0 + L * j)) };
                        }
                    }
                    for t in 0..span {
                        if c0 == 0 {
                            // A row ahead's values (see `prefetch`); the
                            // next blocks find them in the cache.
                            super::prefetch(v.wrapping_add((t + super::VALUE_AHEAD) * kv_dim), hd);
                        }
                        // SAFETY: row t's values of the block, inside `v`.
                        let vr = unsafe { v.add(t * kv_dim + c0) };
                        let vv: [$v; VECS] =
                            std::array::from_fn(|j| unsafe { E::$widen(vr.add(L * j)) });
                        for (h, a) in acc.iter_mut().enumerate() {
                            // SAFETY: head h's weight of position t.
                            let p = $splat(unsafe { *scores.add(h * stride + t) });
                            for (aj, &vj) in a.iter_mut().zip(&vv) {
                                *aj = $fma(p, vj, *aj);
                            }
                        }
                    }
                    for (h, a) in acc.iter().enumerate() {
                        for (j, &aj) in a.iter().enumerate() {
                            // SAFETY: as the loads above.
                            unsafe { $store(o.add(h * hd + c0 + L * j), aj) };
                        }
                    }
                }
            }
        }
    };
}

// Weighted values: four heads of four vectors, 16 of the 32 registers hold
// sums; lane scores: eight heads' sums and lanes, 16 registers.
#[cfg(target_arch = "x86_64")]
attention_kernels!(
    avx512,
    "avx512f",
    x86_64,
    __m512,
    16,
    4,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    load16,
    _mm512_set1_ps,
    _mm512_mul_ps,
    _mm512_add_ps,
    _mm512_fmadd_ps,
    _mm512_storeu_ps,
    transpose16,
    8
);
// Weighted values: four heads of two vectors, 8 of the 16 registers hold
// sums; lane scores: four heads' sums and lanes, 8 registers.
#[cfg(target_arch = "x86_64")]
attention_kernels!(
    avx2,
    "avx2,fma,f16c",
    x86_64,
    __m256,
    8,
    2,
    _mm256_setzero_ps,
    _mm256_loadu_ps,
    load8,
    _mm256_set1_ps,
    _mm256_mul_ps,
    _mm256_add_ps,
    _mm256_fmadd_ps,
    _mm256_storeu_ps,
    transpose8,
    4
);

// Weighted values: four heads of four vectors (AVX-512's sixteen values a
// head), 16 of the 32 registers hold sums; lane scores: eight heads' sums
// and lanes, 16 registers.
#[cfg(target_arch = "aarch64")]
attention_kernels!(
    neon,
    "neon",
    aarch64,
    float32x4_t,
    4,
    4,
    super::neon_zero,
    vld1q_f32,
    load4,
    vdupq_n_f32,
    vmulq_f32,
    vaddq_f32,
    super::neon_fma,
    vst1q_f32,
    transpose4,
    8
);

/// Four zeros.
#[cfg(target_arch = "aarch64")]
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn neon_zero() -> core::arch::aarch64::float32x4_t {
    core::arch::aarch64::vdupq_n_f32(0.0)
}

/// `a * b + c`, rounded once (`fmla`), in the order of x86's `vfmadd`'s
/// arguments.
#[cfg(target_arch = "aarch64")]
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn neon_fma(
    a: core::arch::aarch64::float32x4_t,
    b: core::arch::aarch64::float32x4_t,
    c: core::arch::aarch64::float32x4_t,
) -> core::arch::aarch64::float32x4_t {
    core::arch::aarch64::vfmaq_f32(c, a, b)
}

/// The attention's batch kernels a CPU runs: AVX-512's or AVX2's ([`avx512`],
/// [`avx2`]) on x86-64, NEON's ([`neon`]) on aarch64; none elsewhere.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Vector {
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "aarch64")]
    Neon,
}

impl Vector {
    /// The batch kernels of the CPU that runs `simd` (a CPU with AVX2,
    /// FMA and F16C for either x86 kernel, AVX-512F besides for
    /// AVX-512's); none for the portable kernel.
    pub(crate) fn of(simd: Kernel) -> Option<Vector> {
        match simd {
            Kernel::Portable => None,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => Some(Vector::Avx2),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => Some(Vector::Avx512),
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => Some(Vector::Neon),
        }
    }

    /// The kernels a step of one token takes: AVX2's for AVX-512 (a step
    /// of a few tokens ran 12% slower with AVX-512's at 3000 positions of
    /// SmolLM2), else these.
    pub(crate) fn for_steps(self) -> Vector {
        match self {
            #[cfg(target_arch = "x86_64")]
            Vector::Avx512 => Vector::Avx2,
            other => other,
        }
    }

    /// The values [`weighted_values`] takes a block of at a time (a
    /// head's values must be a multiple).
    pub(crate) fn value_block(self) -> usize {
        match self {
            #[cfg(target_arch = "x86_64")]
            Vector::Avx2 => avx2::VALUE_BLOCK,
            #[cfg(target_arch = "x86_64")]
            Vector::Avx512 => avx512::VALUE_BLOCK,
            #[cfg(target_arch = "aarch64")]
            Vector::Neon => neon::VALUE_BLOCK,
        }
    }
}

/// `vec`'s `lane_scores` ([`avx512::lane_scores`], [`avx2::…`],
/// [`neon::…`]).
///
/// # Safety
/// The CPU has `vec`'s features (see [`Vector::of`]).
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(unused_variables)
)]
pub(crate) unsafe fn lane_scores(
    vec: Vector,
    kt: (&[f32], usize),
    span: usize,
    (q, hd, scale): (&[f32], usize, f32),
    (scores, stride): (&mut [f32], usize),
) {
    // SAFETY: the caller vouches for the features.
    unsafe {
        match vec {
            #[cfg(target_arch = "x86_64")]
            Vector::Avx512 => avx512::lane_scores(q, hd, kt, span, scale, scores, stride),
            #[cfg(target_arch = "x86_64")]
            Vector::Avx2 => avx2::lane_scores(q, hd, kt, span, scale, scores, stride),
            #[cfg(target_arch = "aarch64")]
            Vector::Neon => neon::lane_scores(q, hd, kt, span, scale, scores, stride),
        }
    }
}

/// `vec`'s `row_scores` ([`avx512::row_scores`], [`avx2::…`],
/// [`neon::…`]).
///
/// # Safety
/// The CPU has `vec`'s features (see [`Vector::of`]).
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(unused_variables)
)]
pub(crate) unsafe fn row_scores<E: sealed::Sealed>(
    vec: Vector,
    k: (&[E], usize),
    span: usize,
    (q, hd, scale): (&[f32], usize, f32),
    (scores, stride): (&mut [f32], usize),
) {
    // SAFETY: the caller vouches for the features.
    unsafe {
        match vec {
            #[cfg(target_arch = "x86_64")]
            Vector::Avx512 => avx512::row_scores(q, hd, k, span, scale, scores, stride),
            #[cfg(target_arch = "x86_64")]
            Vector::Avx2 => avx2::row_scores(q, hd, k, span, scale, scores, stride),
            #[cfg(target_arch = "aarch64")]
            Vector::Neon => neon::row_scores(q, hd, k, span, scale, scores, stride),
        }
    }
}

/// `vec`'s `weighted_values` ([`avx512::weighted_values`], [`avx2::…`],
/// [`neon::…`]).
///
/// # Safety
/// The CPU has `vec`'s features (see [`Vector::of`]).
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(unused_variables)
)]
pub(crate) unsafe fn weighted_values<E: sealed::Sealed>(
    vec: Vector,
    p: (&[f32], usize),
    span: usize,
    v: (&[E], usize),
    hd: usize,
    o: &mut [f32],
) {
    // SAFETY: the caller vouches for the features.
    unsafe {
        match vec {
            #[cfg(target_arch = "x86_64")]
            Vector::Avx512 => avx512::weighted_values(p, span, v, hd, o),
            #[cfg(target_arch = "x86_64")]
            Vector::Avx2 => avx2::weighted_values(p, span, v, hd, o),
            #[cfg(target_arch = "aarch64")]
            Vector::Neon => neon::weighted_values(p, span, v, hd, o),
        }
    }
}

/// RMSNorm of each `dim`-long row of `x` in place, times `weight`, as
/// ggml computes it (sum of squares in f64, `1 / sqrt(mean + eps)` in f32).
///
/// Many rows (a prompt's) are shared out to rayon, and each task sums
/// [`NORM_ROWS`] rows side by side: each row's squares are still added
/// one after the other, in order, so the same bits, but the rows' chains
/// of dependent f64 additions overlap instead of waiting on each other
/// (one row at a time, on one thread, the norms were a twentieth of a
/// Gemma-3 prompt's time).
pub(crate) fn rms_norm(x: &mut [f32], weight: &[f32], eps: f32) {
    let dim = weight.len();
    if dim == 0 {
        return;
    }
    if x.len() >= PAR_ELEMENTWISE {
        use rayon::prelude::*;
        let rows = (PAR_ELEMENTWISE / 4)
            .div_ceil(dim)
            .next_multiple_of(NORM_ROWS);
        x.par_chunks_mut(rows * dim)
            .for_each(|part| rms_norm_rows(part, weight, eps));
    } else {
        rms_norm_rows(x, weight, eps);
    }
}

/// Rows summed side by side in [`rms_norm`].
const NORM_ROWS: usize = 4;
/// Values from which an element-wise step (a norm, the feed-forward's
/// activation, a residual sum) is shared out to rayon: a batch's, not a
/// single token's (whose wake-up of the threads would cost more than it
/// saves).
pub(crate) const PAR_ELEMENTWISE: usize = 1 << 15;

/// `f` over `dst` and `src` (as long) in matching chunks: a batch's
/// ([`PAR_ELEMENTWISE`] values or more) on every thread, in chunks of a
/// quarter of that; fewer in one call, on the calling thread.
pub(crate) fn pairwise<A: Send, B: Sync>(
    dst: &mut [A],
    src: &[B],
    f: impl Fn(&mut [A], &[B]) + Sync,
) {
    use rayon::prelude::*;
    debug_assert_eq!(dst.len(), src.len());
    if dst.len() >= PAR_ELEMENTWISE {
        dst.par_chunks_mut(PAR_ELEMENTWISE / 4)
            .zip(src.par_chunks(PAR_ELEMENTWISE / 4))
            .for_each(|(d, s)| f(d, s));
    } else {
        f(dst, src);
    }
}

/// [`rms_norm`] on one thread, [`NORM_ROWS`] rows at a time.
fn rms_norm_rows(x: &mut [f32], weight: &[f32], eps: f32) {
    let dim = weight.len();
    // A row scaled by its sum of squares, times `weight`.
    let finish = |row: &mut [f32], sum: f64| {
        let scale = 1.0 / ((sum / dim as f64) as f32 + eps).sqrt();
        for (v, w) in row.iter_mut().zip(weight) {
            *v = *v * scale * w;
        }
    };
    let mut groups = x.chunks_exact_mut(NORM_ROWS * dim);
    for group in &mut groups {
        let mut sums = [0f64; NORM_ROWS];
        {
            let rows: [&[f32]; NORM_ROWS] = std::array::from_fn(|r| &group[r * dim..][..dim]);
            for c in 0..dim {
                for (s, row) in sums.iter_mut().zip(&rows) {
                    let v = row[c] as f64;
                    *s += v * v;
                }
            }
        }
        for (row, s) in group.chunks_exact_mut(dim).zip(sums) {
            finish(row, s);
        }
    }
    for row in groups.into_remainder().chunks_exact_mut(dim) {
        let sum = row.iter().fold(0f64, |s, &v| s + (v as f64) * (v as f64));
        finish(row, sum);
    }
}

/// How RoPE pairs the dimensions of a head: llama's converter permutes Q/K
/// so that adjacent dimensions pair (`Norm`); gemma3 pairs dimension `i`
/// with `i + n_rot / 2` (`Neox`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeMode {
    /// Pairs `(2i, 2i + 1)`.
    Norm,
    /// Pairs `(i, i + n_rot / 2)`.
    Neox,
}

/// The RoPE parameters of one layer.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rope {
    pub mode: RopeMode,
    pub n_rot: usize,
    pub base: f32,
    pub scale: f32,
    /// Per-pair frequency divisors (`rope_freqs.weight`), if any.
    pub factors: Option<Vec<f32>>,
}

impl Rope {
    /// Each pair's angle at position `pos`, as ggml's rope cache computes
    /// it (advanced by repeated f32 multiplication).
    fn pair_angles(&self, pos: usize) -> impl Iterator<Item = f32> + '_ {
        let theta_scale = self.base.powf(-2.0 / self.n_rot as f32);
        let mut theta = pos as f32;
        (0..self.n_rot / 2).map(move |i| {
            let ff = self.factors.as_ref().map_or(1.0, |f| f[i]);
            let t = self.scale * (theta / ff);
            theta *= theta_scale;
            t
        })
    }

    /// `(cos, sin)` of each pair (`n_rot / 2` of them) at each of the `n`
    /// positions from `start`, one position after the other; many on
    /// every thread.
    pub(crate) fn angles_from(
        &self,
        start: usize,
        n: usize,
    ) -> Result<Vec<(f32, f32)>, super::ForwardError> {
        use rayon::prelude::*;
        let pairs = self.n_rot / 2;
        let mut out = super::try_zeros::<(f32, f32)>(n.saturating_mul(pairs))?;
        let fill = |(i, row): (usize, &mut [(f32, f32)])| {
            for (o, t) in row.iter_mut().zip(self.pair_angles(start + i)) {
                *o = (t.cos(), t.sin());
            }
        };
        if pairs == 0 {
            // No pairs to rotate.
        } else if out.len() >= PAR_ELEMENTWISE / 4 {
            out.par_chunks_mut(pairs).enumerate().for_each(fill);
        } else {
            out.chunks_mut(pairs).enumerate().for_each(fill);
        }
        Ok(out)
    }

    /// The first pair whose angle at position `pos` is not finite (its
    /// cosine and sine would be NaN), with that angle; `None` where all are.
    pub fn first_unusable_pair(&self, pos: usize) -> Option<(usize, f32)> {
        self.pair_angles(pos)
            .enumerate()
            .find(|(_, t)| !t.is_finite())
    }

    /// Rotates one head (`head_dim` values) in place.
    pub fn apply(&self, head: &mut [f32], angles: &[(f32, f32)]) {
        let half = self.n_rot / 2;
        for (i, &(c, s)) in angles.iter().enumerate() {
            let (a, b) = match self.mode {
                RopeMode::Norm => (2 * i, 2 * i + 1),
                RopeMode::Neox => (i, i + half),
            };
            let (x0, x1) = (head[a], head[b]);
            head[a] = x0 * c - x1 * s;
            head[b] = x0 * s + x1 * c;
        }
    }
}

/// The constants of [`expf`], as ggml's source writes them in hex.
mod exp_consts {
    /// 0x1.8p23: adding it rounds to an integer.
    pub(super) const SHIFT: u32 = 0x4b40_0000;
    /// 0x1.715476p+0: log2(e).
    pub(super) const LOG2E: u32 = 0x3fb8_aa3b;
    /// 0x1.62e4p-1 and 0x1.7f7d1cp-20: ln 2 in two parts.
    pub(super) const LN2_HI: u32 = 0x3f31_7200;
    pub(super) const LN2_LO: u32 = 0x35bf_be8e;
    /// The polynomial's coefficients, 0x1.ffffecp-1 … 0x1.0e4020p-7.
    pub(super) const C1: u32 = 0x3f7f_fff6;
    pub(super) const C2: u32 = 0x3eff_fedb;
    pub(super) const C3: u32 = 0x3e2a_af33;
    pub(super) const C4: u32 = 0x3d2b_9f17;
    pub(super) const C5: u32 = 0x3c07_2010;
}

/// `e^x` as ggml's AVX-512 code computes it (`ggml_v_expf`, after Arm's
/// optimized routines: within 1.5 ulp; inf above 88.38, 0 below -103.97,
/// NaN for NaN), value by value: the reference of the vector versions
/// ([`exp8`], [`exp16`]), which give the same bits. [`fma32`] is their
/// fused multiply-add (one rounding on any CPU); AVX-512's `scalef`
/// (`j · 2^n`, rounded once) is a product by `2^n` where that is a normal
/// float, else a product in f64 rounded to f32. Instead of libm's `expf` a
/// value at a time, which was a twelfth of a long prompt's time in the
/// softmax.
pub(crate) fn expf(x: f32) -> f32 {
    use exp_consts::*;
    let f = f32::from_bits;
    let r = f(SHIFT);
    let z = fma32(x, f(LOG2E), r);
    let n = z - r;
    let b = fma32(-n, f(LN2_LO), fma32(-n, f(LN2_HI), x));
    let u = b * b;
    let j = fma32(
        fma32(fma32(f(C5), b, f(C4)), u, fma32(f(C3), b, f(C2))),
        u,
        fma32(f(C1), b, 1.0),
    );
    // (A NaN takes this way, as in ggml, whose ordered comparisons are
    // false for it.)
    if n.abs() <= 126.0 || n.is_nan() {
        // 2^n, exactly: n is an integer of at most 126 in size.
        let k = f((z.to_bits() << 23).wrapping_add(1f32.to_bits()));
        return j * k;
    }
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    // 2^n in f64 (n an integer within ±192): the product is exact there.
    let k = f64::from_bits(((n as i64 + 1023) as u64) << 52);
    (j as f64 * k) as f32
}

/// [`expf`] of eight values (AVX2 and FMA): ggml's AVX-512 operations at
/// half the width, AVX-512's `scalef` (`j · 2^n`, rounded once) by
/// products: by `2^n` as ggml's AVX2 code forms it where that is a normal
/// float, else in two steps, of which only the second rounds.
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn exp8(x: core::arch::x86_64::__m256) -> core::arch::x86_64::__m256 {
    use core::arch::x86_64::*;
    use exp_consts::*;
    let c = |bits: u32| _mm256_castsi256_ps(_mm256_set1_epi32(bits as i32));
    let one = _mm256_set1_ps(1.0);
    let r = c(SHIFT);
    let z = _mm256_fmadd_ps(x, c(LOG2E), r);
    let n = _mm256_sub_ps(z, r);
    let b = _mm256_fnmadd_ps(n, c(LN2_LO), _mm256_fnmadd_ps(n, c(LN2_HI), x));
    let u = _mm256_mul_ps(b, b);
    let j = _mm256_fmadd_ps(
        _mm256_fmadd_ps(
            _mm256_fmadd_ps(c(C5), b, c(C4)),
            u,
            _mm256_fmadd_ps(c(C3), b, c(C2)),
        ),
        u,
        _mm256_fmadd_ps(c(C1), b, one),
    );
    let abs_n = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
    let big = _mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, _mm256_set1_ps(126.0));
    // 2^n (n an integer within ±126 in such a lane).
    let e = _mm256_slli_epi32::<23>(_mm256_castps_si256(z));
    let k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(one)));
    let plain = _mm256_mul_ps(j, k);
    if _mm256_movemask_ps(big) == 0 {
        return plain;
    }
    // Beyond: `j · 2^n` as `(j · s2) · s1`, the first product exact (a
    // normal float), the second rounded once, as `scalef` rounds: s1 is
    // 2^-125 and s2 2^(n + 125) where n <= 0, else 2^127 and 2^(n - 127)
    // (ggml's AVX2 split).
    let le0 = _mm256_cmp_ps::<_CMP_LE_OQ>(n, _mm256_setzero_ps());
    let g = _mm256_and_si256(
        _mm256_castps_si256(le0),
        _mm256_set1_epi32(0x8200_0000u32 as i32),
    );
    let s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f00_0000)));
    let s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
    let scaled = _mm256_mul_ps(_mm256_mul_ps(s2, j), s1);
    // And beyond 192, 0 or inf.
    let huge = _mm256_cmp_ps::<_CMP_GT_OQ>(abs_n, _mm256_set1_ps(192.0));
    let alt = _mm256_blendv_ps(_mm256_set1_ps(f32::INFINITY), _mm256_setzero_ps(), le0);
    _mm256_blendv_ps(_mm256_blendv_ps(plain, scaled, big), alt, huge)
}

/// [`expf`] of four values (NEON): [`exp8`]'s operations at half its
/// width (`fmla` / `fmls` for its fused multiply-adds, one rounding each),
/// so the same bits.
#[cfg(target_arch = "aarch64")]
#[inline]
#[target_feature(enable = "neon")]
pub(crate) fn exp4(x: core::arch::aarch64::float32x4_t) -> core::arch::aarch64::float32x4_t {
    use core::arch::aarch64::*;
    use exp_consts::*;
    let c = |bits: u32| vreinterpretq_f32_u32(vdupq_n_u32(bits));
    let one = vdupq_n_f32(1.0);
    let r = c(SHIFT);
    let z = vfmaq_f32(r, x, c(LOG2E));
    let n = vsubq_f32(z, r);
    let b = vfmsq_f32(vfmsq_f32(x, n, c(LN2_HI)), n, c(LN2_LO));
    let u = vmulq_f32(b, b);
    let j = vfmaq_f32(
        vfmaq_f32(one, c(C1), b),
        vfmaq_f32(vfmaq_f32(c(C2), c(C3), b), vfmaq_f32(c(C4), c(C5), b), u),
        u,
    );
    let abs_n = vabsq_f32(n);
    // (Ordered comparisons: false for a NaN, as AVX2's `_OQ` ones.)
    let big = vcgtq_f32(abs_n, vdupq_n_f32(126.0));
    // 2^n (n an integer within ±126 in such a lane).
    let e = vshlq_n_u32::<23>(vreinterpretq_u32_f32(z));
    let k = vreinterpretq_f32_u32(vaddq_u32(e, vreinterpretq_u32_f32(one)));
    let plain = vmulq_f32(j, k);
    if vmaxvq_u32(big) == 0 {
        return plain;
    }
    // Beyond: `(j · s2) · s1`, as `exp8` splits 2^n.
    let le0 = vcleq_f32(n, vdupq_n_f32(0.0));
    let g = vandq_u32(le0, vdupq_n_u32(0x8200_0000));
    let s1 = vreinterpretq_f32_u32(vaddq_u32(g, vdupq_n_u32(0x7f00_0000)));
    let s2 = vreinterpretq_f32_u32(vsubq_u32(e, g));
    let scaled = vmulq_f32(vmulq_f32(s2, j), s1);
    // And beyond 192, 0 or inf.
    let huge = vcgtq_f32(abs_n, vdupq_n_f32(192.0));
    let alt = vbslq_f32(le0, vdupq_n_f32(0.0), vdupq_n_f32(f32::INFINITY));
    vbslq_f32(huge, alt, vbslq_f32(big, scaled, plain))
}

/// [`expf`] of sixteen values (AVX-512F): ggml's `ggml_v_expf` for AVX-512
/// operation for operation.
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn exp16(x: core::arch::x86_64::__m512) -> core::arch::x86_64::__m512 {
    use core::arch::x86_64::*;
    use exp_consts::*;
    let c = |bits: u32| _mm512_castsi512_ps(_mm512_set1_epi32(bits as i32));
    let r = c(SHIFT);
    let z = _mm512_fmadd_ps(x, c(LOG2E), r);
    let n = _mm512_sub_ps(z, r);
    let b = _mm512_fnmadd_ps(n, c(LN2_LO), _mm512_fnmadd_ps(n, c(LN2_HI), x));
    let huge = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(_mm512_abs_ps(n), _mm512_set1_ps(192.0));
    let u = _mm512_mul_ps(b, b);
    let j = _mm512_fmadd_ps(
        _mm512_fmadd_ps(
            _mm512_fmadd_ps(c(C5), b, c(C4)),
            u,
            _mm512_fmadd_ps(c(C3), b, c(C2)),
        ),
        u,
        _mm512_fmadd_ps(c(C1), b, _mm512_set1_ps(1.0)),
    );
    let res = _mm512_scalef_ps(j, n);
    if huge == 0 {
        return res;
    }
    let le0 = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(n, _mm512_setzero_ps());
    let alt = _mm512_mask_blend_ps(le0, _mm512_set1_ps(f32::INFINITY), _mm512_setzero_ps());
    _mm512_mask_blend_ps(huge, res, alt)
}

/// `x[i] = expf(x[i] - sub)` for every value, by the widest [`expf`] the
/// kernel `simd` has (the same bits at every width).
#[inline(always)]
fn exp_all(x: &mut [f32], sub: f32, simd: Kernel) {
    /// `f` of each `W` values of `x` (loaded and stored by `f`), the last
    /// ones padded with zeros: the vectors serve the tail too, where the
    /// reference, compiled apart, would call libm's `fmaf` for each
    /// `mul_add` on a CPU it does not assume FMA of.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[inline(always)]
    fn by<const W: usize>(x: &mut [f32], f: impl Fn(&mut [f32; W])) {
        let mut chunks = x.chunks_exact_mut(W);
        for c in &mut chunks {
            f(c.try_into().expect("W values"));
        }
        let tail = chunks.into_remainder();
        if !tail.is_empty() {
            let mut v = [0f32; W];
            v[..tail.len()].copy_from_slice(tail);
            f(&mut v);
            tail.copy_from_slice(&v[..tail.len()]);
        }
    }
    match simd {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => by::<16>(x, |c| {
            use core::arch::x86_64::*;
            // SAFETY: the AVX-512 kernel is chosen only where the CPU has
            // AVX-512F; sixteen values are loaded and stored.
            unsafe {
                let v = _mm512_sub_ps(_mm512_loadu_ps(c.as_ptr()), _mm512_set1_ps(sub));
                _mm512_storeu_ps(c.as_mut_ptr(), exp16(v));
            }
        }),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => by::<8>(x, |c| {
            use core::arch::x86_64::*;
            // SAFETY: the AVX2 kernel is chosen only where the CPU has AVX2
            // and FMA; eight values are loaded and stored.
            unsafe {
                let v = _mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), _mm256_set1_ps(sub));
                _mm256_storeu_ps(c.as_mut_ptr(), exp8(v));
            }
        }),
        #[cfg(target_arch = "aarch64")]
        Kernel::Neon => by::<4>(x, |c| {
            use core::arch::aarch64::*;
            // SAFETY: four values are loaded and stored (NEON is in every
            // aarch64 CPU).
            unsafe {
                let v = vsubq_f32(vld1q_f32(c.as_ptr()), vdupq_n_f32(sub));
                vst1q_f32(c.as_mut_ptr(), exp4(v));
            }
        }),
        Kernel::Portable => x.iter_mut().for_each(|v| *v = expf(*v - sub)),
    }
}

/// SiLU (`x · sigmoid(x)`) as ggml's AVX-512 code computes it:
/// `x / (1 + e^(0 - x))` with [`expf`].
fn silu(x: f32) -> f32 {
    x / (1.0 + expf(0.0 - x))
}

/// `g = silu(g) · u`, value by value (llama's feed-forward gate): ggml's
/// `ggml_vec_swiglu_f32` as its AVX-512 code computes it, by the widest
/// [`expf`] the CPU has (the same bits at every width).
pub(crate) fn silu_mul(g: &mut [f32], u: &[f32]) {
    let len = u.len().min(g.len());
    let (g, u) = (&mut g[..len], &u[..len]);
    /// `f` of each `W` values of `g` and `u`, the last ones padded with
    /// zeros (as in [`exp_all`]).
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[inline(always)]
    fn by<const W: usize>(g: &mut [f32], u: &[f32], f: impl Fn(&mut [f32; W], &[f32; W])) {
        let mut gs = g.chunks_exact_mut(W);
        let mut us = u.chunks_exact(W);
        for (a, b) in (&mut gs).zip(&mut us) {
            f(
                a.try_into().expect("W values"),
                b.try_into().expect("W values"),
            );
        }
        let (ga, ua) = (gs.into_remainder(), us.remainder());
        if !ga.is_empty() {
            let (mut a, mut b) = ([0f32; W], [0f32; W]);
            a[..ga.len()].copy_from_slice(ga);
            b[..ua.len()].copy_from_slice(ua);
            f(&mut a, &b);
            ga.copy_from_slice(&a[..ga.len()]);
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        fn wide(g: &mut [f32], u: &[f32]) {
            use core::arch::x86_64::*;
            by::<16>(g, u, |a, b| {
                // SAFETY: sixteen values of `a` and of `b`; the CPU has
                // AVX-512F (the caller's kernel).
                unsafe {
                    let x = _mm512_loadu_ps(a.as_ptr());
                    let e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), x));
                    let s = _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0), e));
                    let y = _mm512_mul_ps(s, _mm512_loadu_ps(b.as_ptr()));
                    _mm512_storeu_ps(a.as_mut_ptr(), y);
                }
            })
        }
        #[target_feature(enable = "avx2,fma")]
        fn narrow(g: &mut [f32], u: &[f32]) {
            use core::arch::x86_64::*;
            by::<8>(g, u, |a, b| {
                // SAFETY: eight values of `a` and of `b`; the CPU has AVX2
                // and FMA (the caller's kernel).
                unsafe {
                    let x = _mm256_loadu_ps(a.as_ptr());
                    let e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
                    let s = _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0), e));
                    let y = _mm256_mul_ps(s, _mm256_loadu_ps(b.as_ptr()));
                    _mm256_storeu_ps(a.as_mut_ptr(), y);
                }
            })
        }
        match Kernel::detect() {
            // SAFETY: the kernels are detected from the CPU's features.
            Kernel::Avx512 => return unsafe { wide(g, u) },
            // SAFETY: as above.
            Kernel::Avx2 => return unsafe { narrow(g, u) },
            Kernel::Portable => {}
        }
    }
    #[cfg(target_arch = "aarch64")]
    if Kernel::detect() == Kernel::Neon {
        use core::arch::aarch64::*;
        return by::<4>(g, u, |a, b| {
            // SAFETY: four values of `a` and of `b` (NEON is in every
            // aarch64 CPU).
            unsafe {
                let x = vld1q_f32(a.as_ptr());
                let e = exp4(vsubq_f32(vdupq_n_f32(0.0), x));
                let s = vdivq_f32(x, vaddq_f32(vdupq_n_f32(1.0), e));
                let y = vmulq_f32(s, vld1q_f32(b.as_ptr()));
                vst1q_f32(a.as_mut_ptr(), y);
            }
        });
    }
    g.iter_mut().zip(u).for_each(|(a, b)| *a = silu(*a) * b)
}

/// GELU, tanh approximation: ggml's `ggml_gelu_f32` as a native build
/// compiles it where the CPU has FMA (GCC and Clang fuse `1 + A·x·x` into
/// one `fma`; one f16 entry of the table, at x = -1.999, tells the two
/// apart). [`fma32`] rounds once on any CPU, so the table is the same
/// everywhere.
fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    const A: f32 = 0.044715;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * x * fma32(A * x, x, 1.0)).tanh())
}

/// `gelu_tanh` of every f16 value, rounded to f16 and held widened to f32,
/// indexed by the f16's bits: ggml's `ggml_table_gelu_f16` (256 KiB, made
/// on first use in about a millisecond). A NaN maps to the quiet NaN of
/// its sign, as in ggml's.
static GELU_TABLE: std::sync::LazyLock<Box<[f32]>> = std::sync::LazyLock::new(|| {
    (0..=u16::MAX)
        .map(|bits| match f16::from_bits(bits).to_f32() {
            x if x.is_nan() => f32::NAN.copysign(x),
            x => f16::from_f32(gelu_tanh(x)).to_f32(),
        })
        .collect()
});

/// `g = gelu(g) · u`, value by value (gemma3's feed-forward gate), as
/// ggml's CPU computes it (`ggml_vec_geglu_f32` under `GGML_GELU_FP16`,
/// which ggml defines): 0 at or below -10, `g` itself at or above 10, and
/// between them the table entry of `g` rounded to f16. A lookup instead of
/// libm's `tanhf` and `expm1f`, which were a seventh of a Gemma-3 prompt.
pub(crate) fn gelu_mul(g: &mut [f32], u: &[f32]) {
    let table: &[f32] = &GELU_TABLE;
    g.iter_mut().zip(u).for_each(|(a, b)| {
        let x = *a;
        let y = if x <= -10.0 {
            0.0
        } else if x >= 10.0 {
            x
        } else {
            table[usize::from(f16::from_f32(x).to_bits())]
        };
        *a = y * b
    })
}

/// The sum in f64 of each sixteen values' f32 sum, the last sixteen filled
/// with zeros, each sixteen added as `_mm512_reduce_add_ps` adds them.
#[inline(always)]
fn sum_by_sixteens(x: &[f32]) -> f64 {
    let tree = |v: &[f32; 16]| {
        let h: [f32; 8] = std::array::from_fn(|i| v[i + 8] + v[i]);
        let q: [f32; 4] = std::array::from_fn(|i| h[i + 4] + h[i]);
        ((q[0] + q[2]) + (q[1] + q[3])) as f64
    };
    let mut sum = 0f64;
    let mut sixteens = x.chunks_exact(16);
    for c in &mut sixteens {
        sum += tree(c.try_into().expect("16 values"));
    }
    // Only the tail is padded: the whole sixteens are read as they are,
    // with no bounds test for each value.
    let tail = sixteens.remainder();
    if !tail.is_empty() {
        let mut v = [0f32; 16];
        v[..tail.len()].copy_from_slice(tail);
        sum += tree(&v);
    }
    sum
}

/// Softmax in place, as ggml's AVX-512 code computes it
/// (`ggml_vec_soft_max_f32`) for a row of attention scores that begins at
/// a multiple of sixteen and is padded past its end with masked scores
/// (as llama.cpp's KV cache pads a causal row): the max subtracted,
/// [`expf`] of each value (by the widest the kernel `simd` has: the same
/// bits at every width), the sum in f64 of each sixteen's f32 sum (added
/// as `_mm512_reduce_add_ps` adds them; the last sixteen filled with
/// zeros, the `e^-inf` of the padding), then each value times `1 / sum`
/// rounded to f32.
#[inline(always)]
pub(crate) fn softmax(x: &mut [f32], simd: Kernel) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    exp_all(x, max, simd);
    let inv = (1.0 / sum_by_sixteens(x)) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// Values in [-4, 4) from `seed` (xorshift): the inputs of the forward
/// pass's kernel tests (attention, matrix products).
#[cfg(test)]
pub(crate) fn test_values(mut seed: u64) -> impl FnMut() -> f32 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 8.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The NEON weight loads widen every f16 bit pattern (NaN payloads
    /// included) to the f32 bits `f16::to_f32` gives, and load f32s as
    /// they are.
    #[cfg(target_arch = "aarch64")]
    #[test]
    fn neon_weight_loads_widen_exactly() {
        use core::arch::aarch64::vst1q_f32;
        use sealed::Sealed;
        let lanes = |v| {
            let mut out = [0f32; 4];
            // SAFETY: `out` holds 4 floats.
            unsafe { vst1q_f32(out.as_mut_ptr(), v) };
            out.map(f32::to_bits)
        };
        let halves: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
        for c in halves.chunks_exact(4) {
            // SAFETY: 4 readable halves.
            let got = lanes(unsafe { f16::load4(c.as_ptr()) });
            let want: Vec<u32> = c.iter().map(|h| h.to_f32().to_bits()).collect();
            assert_eq!(got[..], want[..], "from {:#06x}", c[0].to_bits());
        }
        let floats = [1.5f32, -0.0, f32::MIN_POSITIVE / 2.0, f32::INFINITY];
        // SAFETY: 4 readable floats.
        let got = lanes(unsafe { f32::load4(floats.as_ptr()) });
        assert_eq!(got, floats.map(f32::to_bits));
    }

    /// The values `scripts/ggml_expf_digest.sh` sweeps: every f32 bit
    /// pattern 4093 apart, then -110 to 95 by 1/1024.
    fn exp_sweep() -> Vec<f32> {
        const WIDE: u32 = 1 << 20;
        (0..WIDE + 205 * 1024)
            .map(|i| match i {
                i if i < WIDE => f32::from_bits(i.wrapping_mul(4093)),
                i => -110.0 + (i - WIDE) as f32 / 1024.0,
            })
            .collect()
    }

    /// A value's bytes, every NaN as one (Rust promises no NaN's bits).
    fn le32(v: &f32) -> [u8; 4] {
        if v.is_nan() {
            0x7fc0_0000u32
        } else {
            v.to_bits()
        }
        .to_le_bytes()
    }

    fn sha256(bytes: impl IntoIterator<Item = u8>) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(bytes.into_iter().collect::<Vec<u8>>());
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Our `e^x`, softmax sums and SiLU are ggml's CPU ones (AVX-512, as the
    /// llama.cpp the golden logits came from computes them) on 1.3 million
    /// values, NaNs and infinities among them: the digests are what
    /// `scripts/ggml_expf_digest.sh` prints. The vector versions give the
    /// reference's bits.
    #[test]
    fn expf_softmax_and_silu_are_ggmls() {
        let x = exp_sweep();
        let e: Vec<f32> = x.iter().map(|&v| expf(v)).collect();
        assert_eq!(
            sha256(e.iter().flat_map(le32)),
            "76236b742e7445fae191c356b5143fee9063fd790beea1d30f2355d6605b15d0"
        );
        assert_eq!(
            sha256(e.chunks(16).flat_map(|c| match sum_by_sixteens(c) {
                s if s.is_nan() => 0x7ff8_0000_0000_0000u64.to_le_bytes(),
                s => s.to_le_bytes(),
            })),
            "a39864bf998fc37e8fb652a2541b287b2b197bbc133be90e1f4133126d9f1471"
        );
        let mut l = x.clone();
        silu_mul(&mut l, &vec![1.0; x.len()]);
        assert_eq!(
            sha256(l.iter().flat_map(le32)),
            "6daf5ce1c1c0bea18e8bf5e9ac5755a3dc50bf622ca6f2e461ce69b68d680c1f"
        );
        // Value by value (the scalar SiLU), as the vectors.
        let scalar: Vec<f32> = x.iter().map(|&v| silu(v)).collect();
        assert!(scalar.iter().zip(&l).all(|(a, b)| le32(a) == le32(b)));
        // Every width of `exp_all` (the softmax's) gives the reference's
        // bits, on lengths that leave a tail.
        #[allow(unused_mut)]
        let mut kernels = vec![Kernel::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                kernels.push(Kernel::Avx2);
            }
            if is_x86_feature_detected!("avx512f") {
                kernels.push(Kernel::Avx512);
            }
        }
        #[cfg(target_arch = "aarch64")]
        kernels.push(Kernel::Neon);
        for k in kernels {
            let mut y = x[..x.len() - 5].to_vec();
            exp_all(&mut y, 0.0, k);
            let same = y.iter().zip(&e).all(|(a, b)| le32(a) == le32(b));
            assert!(same, "{k:?}");
        }
    }

    /// The f64 fused multiply-add (MinGW's stand-in) is [`fma32`] bit for
    /// bit (the C library's `fmaf`, or the FMA instruction on MinGW): on
    /// random products near a cancelling sum (where rounding twice shows),
    /// on sums of far magnitudes, subnormals, zeros of both signs,
    /// infinities and NaNs, and on sums built to round wrong twice.
    #[test]
    fn fma_by_f64_rounds_once() {
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            s.wrapping_mul(0x2545_f491_4f6c_dd1d)
        };
        let special = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            f32::MIN_POSITIVE,
            1e-45,
            -1e-45,
            f32::MAX,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ];
        let same = |a: f32, b: f32, c: f32| {
            let (got, want) = (fma_by_f64(a, b, c), fma32(a, b, c));
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "fma({a:e}, {b:e}, {c:e}): {got:e} against {want:e}"
            );
        };
        for &a in &special {
            for &b in &special {
                for &c in &special {
                    same(a, b, c);
                }
            }
        }
        // Where rounding the f64 sum and then to f32 goes wrong: the sum
        // an f32 `h` (even) plus just over half its unit, the excess below
        // f64's last bit. (1 + 2^-12)(1 - 4095 · 2^-24) = 1 + 2^-36, so
        // h + half · that rounds up, and h + half (the f64 sum) to even.
        let b = 1.0 - 4095.0 * 2f32.powi(-24);
        for _ in 0..10_000 {
            let h = f32::from_bits((next() as u32 & 0x3fff_fffe) | 0x0d00_0000);
            let half = f32::from_bits((h.to_bits() & 0x7f80_0000) - (24 << 23));
            let a = half * (1.0 + 2f32.powi(-12));
            assert_eq!(fma32(a, b, h), f32::from_bits(h.to_bits() + 1));
            same(a, b, h);
            same(-a, b, -h);
        }
        for i in 0..2_000_000u32 {
            let r = next();
            let (a, b) = (f32::from_bits(r as u32), f32::from_bits((r >> 32) as u32));
            let c = match i % 3 {
                // Cancelling: minus the product rounded, nudged.
                0 => -f32::from_bits((a * b).to_bits() ^ (next() as u32 & 3)),
                1 => f32::from_bits(next() as u32),
                _ => f32::from_bits(next() as u32 & 0x807f_ffff),
            };
            same(a, b, c);
        }
    }

    /// `expf` within 2 ulp of `e^x` over its normal range, and its edges.
    #[test]
    fn expf_is_accurate() {
        let mut worst = 0f64;
        for x in exp_sweep() {
            let want = (x as f64).exp();
            if !(x.is_finite() && want > f32::MIN_POSITIVE as f64 && want < f32::MAX as f64) {
                continue;
            }
            let ulp = (want as f32).to_bits();
            let ulp = (f32::from_bits(ulp + 1) - f32::from_bits(ulp)) as f64;
            worst = worst.max((expf(x) as f64 - want).abs() / ulp);
        }
        // (ggml's bound, 1.45 ulp plus the rounding, in units of the ulp
        // of the rounded result, half as large below a power of two.)
        assert!(worst < 2.5, "{worst} ulp");
        assert_eq!(expf(0.0), 1.0);
        assert_eq!(expf(-0.0), 1.0);
        assert_eq!(expf(f32::INFINITY), f32::INFINITY);
        assert_eq!(expf(f32::NEG_INFINITY), 0.0);
        assert_eq!(expf(89.0), f32::INFINITY);
        assert_eq!(expf(-104.0), 0.0);
        assert!(expf(f32::NAN).is_nan());
        assert!(expf(-100.0) > 0.0, "subnormal results are kept");
    }

    /// Our GELU table is ggml's `ggml_table_gelu_f16`, all 65536 entries:
    /// the digest is what `scripts/ggml_gelu_table.sh` prints for the
    /// llama.cpp the golden logits came from (on x86-64). One entry is a
    /// NaN that arithmetic makes (gelu(-∞) = -∞ · 0), and takes the sign
    /// of the CPU's default NaN, in ggml's table as in ours: negative on
    /// x86, positive on Arm; it is hashed as x86 makes it. (`gelu_mul`
    /// never reads that entry: -∞ is below -10.)
    #[test]
    fn gelu_table_is_ggmls() {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        for (bits, &v) in GELU_TABLE.iter().enumerate() {
            let made_nan = v.is_nan() && !f16::from_bits(bits as u16).is_nan();
            let v = if made_nan { -f32::NAN } else { v };
            h.update(f16::from_f32(v).to_bits().to_le_bytes());
        }
        let got: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            got,
            "5eceda6f287dec9dc0bcfa24516d6744a031a5c52d1984688b4558aeb1daf909"
        );
    }

    /// The gate outside the table's span and on values that are not
    /// numbers, as ggml's: 0 at or below -10, `g · u` at or above 10, NaN
    /// through; inside, the table entry of `g` rounded to f16.
    #[test]
    fn gelu_mul_is_ggmls_at_the_edges() {
        let g = [
            -f32::INFINITY,
            -1e30,
            -10.0,
            -9.999,
            -0.0,
            1.0,
            1.0001,
            9.999,
            10.0,
            12.5,
            f32::INFINITY,
            f32::NAN,
        ];
        let mut out = g;
        gelu_mul(&mut out, &[2.0; 12]);
        let want = |x: f32| 2.0 * f16::from_f32(gelu_tanh(f16::from_f32(x).to_f32())).to_f32();
        let expect = [
            0.0,
            0.0,
            0.0,
            want(-9.999),
            want(-0.0),
            want(1.0),
            want(1.0),
            want(9.999),
            20.0,
            25.0,
            f32::INFINITY,
            f32::NAN,
        ];
        for (i, (a, b)) in out.iter().zip(expect).enumerate() {
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "g = {}: {a} against {b}",
                g[i]
            );
        }
        // 1.0001 rounds to the f16 1.0: the same entry.
        assert_eq!(out[5], out[6]);
    }

    /// The batch attention kernels the CPU has (AVX-512's and AVX2's, each
    /// with AVX2, FMA and F16C; NEON's); and values in [-4, 4) from `seed`.
    fn kernels_and_values(seed: u64) -> (Vec<Vector>, impl FnMut() -> f32) {
        #[cfg(target_arch = "x86_64")]
        let has = {
            // The kernels' wrappers ask for AVX2, FMA and F16C at either
            // width.
            let avx2 = is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c");
            let avx512 = avx2 && is_x86_feature_detected!("avx512f");
            if !avx512 {
                eprintln!("partly skipped: AVX-512F {avx512}, AVX2 + FMA + F16C {avx2}");
            }
            [(avx512, Vector::Avx512), (avx2, Vector::Avx2)]
                .into_iter()
                .filter_map(|(has, vec)| has.then_some(vec))
                .collect()
        };
        // NEON is in every aarch64 CPU.
        #[cfg(target_arch = "aarch64")]
        let has = vec![Vector::Neon];
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        let has = Vec::new();
        (has, test_values(seed))
    }

    /// The lane scores, AVX-512's, AVX2's and NEON's, are `dot(q, k) *
    /// scale` bit for bit, for heads of whole sixteens and with a tail past
    /// them, spans that fill their last vector of keys or not, every group
    /// of heads the kernels take.
    #[test]
    fn lane_scores_are_dots_bit_for_bit() {
        let (kernels, mut next) = kernels_and_values(0x2545_f491_4f6c_dd1d);
        for vec in kernels {
            // 3 heads: a pair and one; 15: every size of group of heads
            // the kernels take (8 or 4, 4, 2, 1).
            for (hd, heads) in [8, 16, 64, 70, 256]
                .into_iter()
                .flat_map(|hd| [(hd, 3), (hd, 15)])
            {
                for span in [1usize, 7, 8, 9, 15, 16, 17, 100] {
                    let tp = span.next_multiple_of(SCORE_KEYS) + SCORE_KEYS;
                    let q: Vec<f32> = (0..heads * hd).map(|_| next()).collect();
                    let kt: Vec<f32> = (0..hd * tp).map(|_| next()).collect();
                    let stride = span.next_multiple_of(SCORE_KEYS);
                    let mut scores = vec![0f32; heads * stride];
                    let kts = (&kt[..], tp);
                    // SAFETY: the CPU has the kernel's features (checked above).
                    unsafe {
                        super::lane_scores(vec, kts, span, (&q, hd, 0.125), (&mut scores, stride))
                    }
                    for (i, qh) in q.chunks_exact(hd).enumerate() {
                        for t in 0..span {
                            let k: Vec<f32> = (0..hd).map(|c| kt[c * tp + t]).collect();
                            let want = dot(qh, &k) * 0.125;
                            assert_eq!(
                                scores[i * stride + t].to_bits(),
                                want.to_bits(),
                                "{vec:?}: hd {hd}, span {span}, head {i}, key {t}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// The row scores, AVX-512's, AVX2's and NEON's, are `dot(q, k) *
    /// scale` bit for bit, from f32 rows and from f16 rows (widened), for
    /// heads of whole sixteens and with a tail past them, spans of whole
    /// vectors of keys and not, rows of keys wider than a head.
    #[test]
    fn row_scores_are_dots_bit_for_bit() {
        let (kernels, mut next) = kernels_and_values(0x6a09_e667_f3bc_c908);
        for vec in kernels {
            for hd in [8, 16, 64, 70, 256, 1040] {
                for span in [1usize, 7, 8, 9, 15, 16, 17, 100] {
                    let (heads, kv_dim) = (3, hd + 5);
                    let q: Vec<f32> = (0..heads * hd).map(|_| next()).collect();
                    let k32: Vec<f32> = (0..span * kv_dim).map(|_| next()).collect();
                    let k16: Vec<f16> = k32.iter().map(|&v| f16::from_f32(v)).collect();
                    let stride = span + 3;
                    let mut got = [vec![0f32; heads * stride], vec![0f32; heads * stride]];
                    // SAFETY: the CPU has the kernel's features (checked above).
                    unsafe {
                        let (k32, k16, q) =
                            ((&k32[..], kv_dim), (&k16[..], kv_dim), (&q[..], hd, 0.125));
                        let [g32, g16] = &mut got;
                        super::row_scores(vec, k32, span, q, (g32, stride));
                        super::row_scores(vec, k16, span, q, (g16, stride));
                    }
                    for (i, qh) in q.chunks_exact(hd).enumerate() {
                        for t in 0..span {
                            let k32 = &k32[t * kv_dim..][..hd];
                            let k16: Vec<f32> =
                                k16[t * kv_dim..][..hd].iter().map(|v| v.to_f32()).collect();
                            for (kind, g, k) in [("f32", &got[0], k32), ("f16", &got[1], &k16)] {
                                let want = dot(qh, k) * 0.125;
                                assert_eq!(
                                    g[i * stride + t].to_bits(),
                                    want.to_bits(),
                                    "{vec:?}, {kind}: hd {hd}, span {span}, head {i}, key {t}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// The weighted values, AVX-512's, AVX2's and NEON's, are the plain
    /// loop's (each position in order, a fused multiply-add) bit for bit,
    /// for one to five heads (a group of four and the rest), heads of 16 to
    /// 256 values (those of whole blocks), rows of values wider than a
    /// head, spans of one chunk of positions and of several; and from f16
    /// rows what they are from the same values as f32.
    #[test]
    fn weighted_values_are_the_plain_loops_bit_for_bit() {
        let (kernels, mut next) = kernels_and_values(0x5851_f42d_4c95_7f2d);
        for vec in kernels {
            let block = vec.value_block();
            for hd in [16, 32, 48, 64, 256]
                .into_iter()
                .filter(|hd| hd % block == 0)
            {
                for heads in 1..=5 {
                    for span in [1usize, 7, 40, 128, 300] {
                        let (kv_dim, stride) = (hd * 2, span.next_multiple_of(16));
                        let scores: Vec<f32> = (0..heads * stride).map(|_| next()).collect();
                        let v: Vec<f32> = (0..span * kv_dim).map(|_| next()).collect();
                        let mut want = vec![0f32; heads * hd];
                        for t in 0..span {
                            for (h, o) in want.chunks_exact_mut(hd).enumerate() {
                                let p = scores[h * stride + t];
                                for (a, b) in o.iter_mut().zip(&v[t * kv_dim..][..hd]) {
                                    *a = fma32(p, *b, *a);
                                }
                            }
                        }
                        let mut got = vec![0f32; heads * hd];
                        let (p, vs) = ((&scores[..], stride), (&v[..], kv_dim));
                        // SAFETY: the CPU has the kernel's features (checked
                        // above).
                        unsafe { super::weighted_values(vec, p, span, vs, hd, &mut got) }
                        let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                        assert_eq!(
                            bits(&got),
                            bits(&want),
                            "{vec:?}: hd {hd}, {heads} heads, span {span}"
                        );
                        // From f16 rows (a few-token step's cache), widened
                        // as read: the f32 rows' result on their values.
                        let v16: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
                        let v32: Vec<f32> = v16.iter().map(|x| x.to_f32()).collect();
                        let (mut got16, mut want16) =
                            (vec![0f32; heads * hd], vec![0f32; heads * hd]);
                        // SAFETY: as above.
                        unsafe {
                            super::weighted_values(
                                vec,
                                p,
                                span,
                                (&v16[..], kv_dim),
                                hd,
                                &mut got16,
                            );
                            super::weighted_values(
                                vec,
                                p,
                                span,
                                (&v32[..], kv_dim),
                                hd,
                                &mut want16,
                            );
                        }
                        assert_eq!(
                            bits(&got16),
                            bits(&want16),
                            "f16 rows, {vec:?}: hd {hd}, {heads} heads, span {span}"
                        );
                    }
                }
            }
        }
    }

    /// Rounding inputs a slice at a time (F16C where the CPU has it) gives
    /// `f16::from_f32`'s value for every kind of f32: ties, the subnormal
    /// and overflow edges, infinities, NaN.
    #[test]
    fn rounding_inputs_by_slice_is_rounding_each() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut x: Vec<f32> = (0..100_000)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                f32::from_bits(seed as u32)
            })
            .collect();
        for e in -27..17 {
            let p = 2f32.powi(e);
            // Ties and their neighbours at every binade half reaches.
            x.extend([
                p * (1.0 + 1.0 / 2048.0),
                p * (1.0 + 3.0 / 2048.0),
                p * 1.0004883,
            ]);
        }
        x.extend([
            65504.0,
            65519.99,
            65520.0,
            f32::MAX,
            f32::INFINITY,
            -0.0,
            f32::NAN,
        ]);
        x.extend(x.clone().iter().map(|v| -v));
        let mut y = x.clone();
        <f16 as WeightElement>::round_inputs(&mut y);
        let check = |x: &[f32], y: &[f32]| {
            assert_eq!(y.len(), x.len());
            for (a, b) in x.iter().zip(y) {
                let want = f16::from_f32(*a).to_f32();
                assert!(
                    want.to_bits() == b.to_bits() || (want.is_nan() && b.is_nan()),
                    "{a:e}: {b:e}, not {want:e}"
                );
            }
        };
        check(&x, &y);
        // Into a buffer (many values, shared out to rayon; a few, on this
        // thread) as long, shorter or longer, whatever it held.
        for len in [x.len(), 0, x.len() + 7] {
            let mut buf = vec![f32::NAN; len];
            check(&x, <f16 as WeightElement>::rounded(&x, &mut buf));
            check(
                &x[..999],
                <f16 as WeightElement>::rounded(&x[..999], &mut buf),
            );
        }
    }

    /// Rows side by side, and shared out to rayon, give the bits of one
    /// row at a time (each row's squares added in order in f64), for
    /// every count of rows against the groups of four and the tasks.
    #[test]
    fn rms_norm_by_groups_and_tasks_is_a_row_at_a_time() {
        let one_row = |x: &mut [f32], w: &[f32], eps: f32| {
            for row in x.chunks_exact_mut(w.len()) {
                let mut sum = 0f64;
                for &v in row.iter() {
                    sum += (v as f64) * (v as f64);
                }
                let scale = 1.0 / ((sum / w.len() as f64) as f32 + eps).sqrt();
                for (v, w) in row.iter_mut().zip(w) {
                    *v = *v * scale * w;
                }
            }
        };
        let mut next = test_values(7);
        for (dim, rows) in [
            (1, 9),
            (3, 1),
            (3, 7),
            (64, 5),
            (640, 3),
            (640, 66),
            (256, 131),
        ] {
            let w: Vec<f32> = (0..dim).map(|_| next()).collect();
            let mut x: Vec<f32> = (0..dim * rows).map(|_| next() * 1e3).collect();
            x[0] = f32::NAN;
            if let Some(v) = x.get_mut(dim + 1) {
                *v = 0.0;
            }
            let mut want = x.clone();
            one_row(&mut want, &w, 1e-6);
            rms_norm(&mut x, &w, 1e-6);
            let bits = |v: &[f32]| v.iter().map(le32).collect::<Vec<_>>();
            assert_eq!(bits(&x), bits(&want), "{rows} rows of {dim}");
        }
        rms_norm(&mut [], &[], 1e-6);
    }

    #[test]
    fn rope_norm_and_neox_rotate_the_right_pairs() {
        let rope = Rope {
            mode: RopeMode::Norm,
            n_rot: 4,
            base: 10000.0,
            scale: 1.0,
            factors: None,
        };
        let mut h = [1.0, 0.0, 1.0, 0.0, 5.0];
        let a = rope.angles_from(1, 1).unwrap();
        rope.apply(&mut h, &a);
        assert!((h[0] - 1f32.cos()).abs() < 1e-6 && (h[1] - 1f32.sin()).abs() < 1e-6);
        assert_eq!(h[4], 5.0, "dimensions past n_rot are left alone");
        let neox = Rope {
            mode: RopeMode::Neox,
            ..rope
        };
        let mut h = [1.0, 1.0, 0.0, 0.0];
        neox.apply(&mut h, &a);
        assert!((h[0] - 1f32.cos()).abs() < 1e-6 && (h[2] - 1f32.sin()).abs() < 1e-6);
    }
}
