//! `y = x · Wᵀ` over f16 or f32 weights with f32 inputs and f32
//! accumulation, on all cores.
//!
//! Rows of `W` are shared out to rayon in chunks; inside a chunk a small
//! kernel computes an `R × C` block of dot products (`R` weight rows against
//! `C` input rows), so that each weight loaded from memory meets several
//! inputs (prompt processing) and each input several rows (generation).
//! Weights are widened to f32 in registers as they are read, never into a
//! buffer. Every dot product is summed in the order of ggml's single-token
//! path (see [`Kernel::block`]). On x86-64 the kernel uses AVX-512, or AVX2,
//! F16C and FMA, when the CPU has them (detected at run time; the AVX-512
//! kernel holds two of AVX2's eight-lane sums in each register, so every
//! lane sums the same products in the same order: the same bits, in half
//! the instructions and with twice the registers). On aarch64 the NEON
//! kernel (every aarch64 CPU has NEON) holds each of AVX2's eight-lane
//! sums in two four-lane registers and fuses as AVX2 does: the same
//! products summed in the same order with the same roundings, so the x86
//! kernels' bits. Elsewhere a portable kernel sums in the same order
//! without fusing. With AVX-512, AVX2 or NEON and
//! many inputs (prompt processing), the lane kernel ([`Lanes`]) takes the
//! product instead: each of the order's 32 partial sums as a matrix
//! product of its own, a vector of inputs at a time, the same bits again.
//! `GGUF_LOADER_SIMD=avx2` (or `scalar`) caps it as it caps the decoders.

use rayon::prelude::*;

#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
use gguf_loader::ElementKind;

use super::ops::WeightElement;

/// Weight rows per kernel call.
const R: usize = 4;
/// Input rows per kernel call.
const C: usize = 3;
/// Input rows per pass over a chunk of weights: enough to reuse each
/// weight, few enough for their inputs to stay in the L2 cache.
const T_BLOCK: usize = 48;
/// Weights per rayon task, about: enough to amortize the task, little
/// enough to share out evenly and stay in the L2 cache.
const CHUNK_ELEMS: usize = 64 * 1024;

/// `y = x · Wᵀ`: `w` holds `rows` rows of `cols` weights (a GGUF matrix of
/// `ne = [cols, rows]`), `x` holds `n` rows of `cols` inputs; the result
/// holds `n` rows of `rows` outputs.
#[cfg(test)]
pub(crate) fn matmul<T: WeightElement>(
    w: &[T],
    rows: usize,
    cols: usize,
    x: &[f32],
    n: usize,
) -> Vec<f32> {
    let [y] = matmul_many([(w, rows)], cols, x, n, [vec![0f32; n * rows]]);
    y
}

/// [`matmul`] of the same inputs by `M` matrices of `cols` columns at once
/// (`(weights, rows)` each): one parallel section for all, so that a
/// step's Q, K and V (or gate and up) cost one wake-up of the threads, not
/// one each. Each product is the one [`matmul`] gives, bit for bit, written
/// over `ys` (`n × rows` values each, whatever they hold).
pub(crate) fn matmul_many<T: WeightElement, const M: usize>(
    ws: [(&[T], usize); M],
    cols: usize,
    x: &[f32],
    n: usize,
    mut ys: [Vec<f32>; M],
) -> [Vec<f32>; M] {
    debug_assert_eq!(x.len(), n * cols);
    let simd = Kernel::detect();
    let threads = rayon::current_num_threads();
    // Many inputs on AVX-512 or AVX2: packed by lane once for every matrix
    // (see [`Lanes`]), and chunks of whole lane tiles.
    let tile = simd.lane_tile(n, cols);
    let lanes = tile.map(|(_, inputs)| Lanes::pack(simd, x, n, cols, inputs));
    let unit = tile.map_or(R, |(rows, _)| rows);
    // Each task owns a block of whole tiles of one matrix's rows and writes
    // their outputs, each input's beside each other, straight into the
    // product (`n × rows`).
    let mut jobs: Vec<(Outputs, &[T])> = Vec::new();
    for (y, &(w, rows)) in ys.iter_mut().zip(&ws) {
        debug_assert_eq!(w.len(), rows * cols);
        assert_eq!(y.len(), n * rows);
        if cols == 0 {
            // Sums of nothing.
            y.fill(0.0);
        }
        if y.is_empty() || cols == 0 {
            continue;
        }
        // Chunks of about CHUNK_ELEMS weights, their count a multiple of
        // the threads so that none waits long on the last.
        let tasks = (rows * cols)
            .div_ceil(CHUNK_ELEMS)
            .next_multiple_of(threads);
        let chunk = rows.div_ceil(tasks).next_multiple_of(unit);
        jobs.extend(Outputs::blocks(y, n, rows, chunk).zip(w.chunks(chunk * cols)));
    }
    jobs.into_par_iter()
        .for_each(|(mut out, w)| simd.rows(w, cols, x, lanes.as_ref(), &mut out));
    ys
}

/// One task's share of a product's outputs: the columns
/// `first..first + width` of its `n` rows of `stride` outputs (one row an
/// input, one column a weight row), which no other task writes.
pub(super) struct Outputs<'a> {
    /// The block's first output, in the first row.
    ptr: *mut f32,
    stride: usize,
    width: usize,
    n: usize,
    _y: std::marker::PhantomData<&'a mut [f32]>,
}

// SAFETY: an `Outputs` is a unique loan of its columns of the product (see
// `Outputs::blocks`), as a `&mut [f32]` is of its values, and is as safe
// to send to another thread.
unsafe impl Send for Outputs<'_> {}

impl<'a> Outputs<'a> {
    /// `y` (`n` rows of `stride`) lent out in blocks of `width` columns
    /// (the last one fewer), left to right.
    pub(super) fn blocks(
        y: &'a mut [f32],
        n: usize,
        stride: usize,
        width: usize,
    ) -> impl Iterator<Item = Outputs<'a>> {
        assert!(y.len() == n * stride && width > 0);
        let base = y.as_mut_ptr();
        // None of no rows.
        let columns = if n == 0 { 0 } else { stride };
        (0..columns).step_by(width).map(move |first| Outputs {
            // SAFETY: `first < stride`, inside `y`'s first row.
            ptr: unsafe { base.add(first) },
            stride,
            width: width.min(stride - first),
            n,
            _y: std::marker::PhantomData,
        })
    }

    /// The block's columns.
    pub(super) fn width(&self) -> usize {
        self.width
    }

    /// Input `t`'s outputs in the block.
    pub(super) fn row(&mut self, t: usize) -> &mut [f32] {
        assert!(t < self.n);
        // SAFETY: row `t < n` of `y`, columns `first..first + width` (at
        // most `stride`): inside `y`; no other block lends them (blocks
        // are disjoint runs of columns), and `&mut self` lends them once.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(t * self.stride), self.width) }
    }
}

/// Which block kernel runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Kernel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
    #[cfg(target_arch = "aarch64")]
    Neon,
}

impl Kernel {
    /// The widest kernel the CPU runs, under `GGUF_LOADER_SIMD`'s cap
    /// (read once).
    pub(super) fn detect() -> Kernel {
        static KERNEL: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *KERNEL.get_or_init(|| {
            let cap = std::env::var(gguf_loader::SIMD_ENV)
                .unwrap_or_default()
                .to_ascii_lowercase();
            if matches!(cap.as_str(), "scalar" | "none") {
                return Kernel::Portable;
            }
            Self::widest(cap != "avx2")
        })
    }

    /// The widest kernel the CPU runs (AVX-512 only when `avx512`).
    fn widest(avx512: bool) -> Kernel {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c")
        {
            if avx512 && is_x86_feature_detected!("avx512f") {
                return Kernel::Avx512;
            }
            return Kernel::Avx2;
        }
        let _ = avx512;
        // NEON (Advanced SIMD) is in every aarch64 CPU.
        #[cfg(target_arch = "aarch64")]
        return Kernel::Neon;
        #[cfg(not(target_arch = "aarch64"))]
        Kernel::Portable
    }

    /// Whether this is the AVX-512 kernel.
    #[cfg(target_arch = "x86_64")]
    pub(super) fn is_avx512(self) -> bool {
        self == Kernel::Avx512
    }

    /// The lane kernel's tile (weight rows, inputs) for a product of `n`
    /// inputs of `cols` where it takes the product ([`Lanes`]): AVX-512,
    /// AVX2 or NEON, at least one whole sum of 32 columns, and inputs to fill half
    /// a tile at least (fewer would leave most of a tile padding).
    fn lane_tile(self, n: usize, cols: usize) -> Option<(usize, usize)> {
        let tile = match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => Some((x86::avx512::ROWS, x86::avx512::INPUTS)),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => Some((x86::avx2::ROWS, x86::avx2::INPUTS)),
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => Some((neon::lanes::ROWS, neon::lanes::INPUTS)),
            Kernel::Portable => None,
        };
        tile.filter(|&(_, inputs)| 2 * n >= inputs && cols >= 4 * LANES)
    }

    /// `out.row(t)[r] = w[r] · x[t]` for the `w.len() / cols` rows of `w`
    /// (`out`'s columns) and the `n` rows of `x` (`out`'s rows; `lanes`:
    /// `x` packed by lane, where [`Self::lane_tile`] gives a tile).
    fn rows<T: WeightElement>(
        self,
        w: &[T],
        cols: usize,
        x: &[f32],
        lanes: Option<&Lanes>,
        out: &mut Outputs,
    ) {
        let n = out.n;
        debug_assert_eq!(w.len(), out.width() * cols);
        thread_local! {
            static WIDE: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
            static PACKED: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        // The lane kernel (many inputs; AVX-512, AVX2 or NEON): the weights
        // packed as the inputs (see `Lanes`), widened to f32 as they are
        // packed, in whole tiles of rows (the last padded with rows of
        // zeros).
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        if let (Some(lanes), Some((tile_rows, _))) = (lanes, self.lane_tile(n, cols)) {
            return PACKED.with_borrow_mut(|packed| {
                let (rows, steps) = (w.len() / cols, lanes.steps);
                let group = tile_rows * steps * 4 * LANES;
                let size = rows.div_ceil(tile_rows) * group;
                // Grown, never shrunk: every value used is written.
                if packed.len() < size {
                    packed.resize(size, 0.0);
                }
                let packed = &mut packed[..size];
                pack_by_lane(self, w, cols, steps, tile_rows, packed);
                // SAFETY (each arm): `detect` saw the kernel's features;
                // `packed` holds `w`'s rows packed in whole tiles, `lanes`
                // is `x` packed in the kernel's tiles (`lane_tile`).
                match self {
                    #[cfg(target_arch = "x86_64")]
                    Kernel::Avx512 => unsafe {
                        x86::avx512::lane_tiles(w, packed, cols, lanes, x, out)
                    },
                    #[cfg(target_arch = "x86_64")]
                    _ => unsafe { x86::avx2::lane_tiles(w, packed, cols, lanes, x, out) },
                    #[cfg(target_arch = "aarch64")]
                    _ => unsafe { neon::lanes::lane_tiles(w, packed, cols, lanes, x, out) },
                }
            });
        }
        // With several inputs (prompt processing) and no lane kernel, f16
        // weights are widened to f32 once (`WeightElement::widen`), into
        // this thread's buffer, and meet every input from there: the same
        // products in the same order, and faster, since the f32 kernel
        // keeps its twelve sums, three inputs and one weight vector in the
        // sixteen registers where converting in the loop spills a sum (on
        // aarch64, the f32 loads spare the loop the conversions).
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        if n > 1 && self != Kernel::Portable && T::KIND != ElementKind::F32 {
            return WIDE.with_borrow_mut(|wide| {
                // Grown, never shrunk: every value used is written.
                if wide.len() < w.len() {
                    wide.resize(w.len(), 0.0);
                }
                let wide = &mut wide[..w.len()];
                T::widen(w, wide);
                self.tiles(wide, cols, x, n, out)
            });
        }
        let _ = lanes;
        self.tiles(w, cols, x, n, out)
    }

    /// [`Self::rows`] on the weights as they are.
    fn tiles<T: WeightElement>(self, w: &[T], cols: usize, x: &[f32], n: usize, out: &mut Outputs) {
        let nr = w.len() / cols;
        for t0 in (0..n).step_by(T_BLOCK) {
            let tn = T_BLOCK.min(n - t0);
            let mut r = 0;
            while r < nr {
                let rn = if nr - r >= R { R } else { 1 };
                let mut t = t0;
                while t < t0 + tn {
                    let cn = C.min(t0 + tn - t);
                    let wb = &w[r * cols..(r + rn) * cols];
                    let xb = &x[t * cols..(t + cn) * cols];
                    let mut acc = [[0f32; C]; R];
                    self.block(wb, xb, cols, &mut acc);
                    for j in 0..cn {
                        let o = &mut out.row(t + j)[r..][..rn];
                        for (v, a) in o.iter_mut().zip(&acc) {
                            *v = a[j];
                        }
                    }
                    t += cn;
                }
                r += rn;
            }
        }
    }

    /// `acc[i][j] = w[i] · x[j]` for the `w.len() / cols` (`R` or 1) rows
    /// of `w` and the `x.len() / cols` (1 to `C`) rows of `x`.
    ///
    /// Each dot product is summed in the order of ggml's `ggml_vec_dot_f16`
    /// on AVX2 (llama.cpp's single-token path), so that our logits follow
    /// llama.cpp's closely even where the model amplifies rounding (the
    /// first position of SmolLM2): four sums of eight lanes, one for each
    /// block of eight columns modulo four, reduced as ggml reduces them,
    /// and the columns past the last whole 32 added in f64.
    fn block<T: WeightElement>(self, w: &[T], x: &[f32], cols: usize, acc: &mut [[f32; C]; R]) {
        let (rn, cn) = (w.len() / cols, x.len() / cols);
        // The SIMD kernel `$m::$f` instantiated for the block's shape.
        #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
        macro_rules! by_shape {
            ($m:ident::$f:ident, $rn:expr, $cn:expr, $($arg:expr),*) => {
                match ($rn, $cn) {
                    (R, 3) => $m::$f::<T, R, 3>($($arg),*),
                    (R, 2) => $m::$f::<T, R, 2>($($arg),*),
                    (R, 1) => $m::$f::<T, R, 1>($($arg),*),
                    (1, 3) => $m::$f::<T, 1, 3>($($arg),*),
                    (1, 2) => $m::$f::<T, 1, 2>($($arg),*),
                    _ => $m::$f::<T, 1, 1>($($arg),*),
                }
            };
        }
        match self {
            // SAFETY: `detect` saw the kernel's features (AVX2, FMA and
            // F16C; AVX-512F too for `Avx512`) on this CPU, and the slices
            // hold exactly `rn` and `cn` rows of `cols`.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => unsafe { by_shape!(x86::block, rn, cn, w, x, cols, acc) },
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => unsafe { by_shape!(x86::block512, rn, cn, w, x, cols, acc) },
            // SAFETY: the slices hold exactly `rn` and `cn` rows of `cols`
            // (NEON is in every aarch64 CPU).
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => unsafe { by_shape!(neon::block, rn, cn, w, x, cols, acc) },
            Kernel::Portable => {
                for (i, wr) in w.chunks_exact(cols).enumerate() {
                    for (j, xr) in x.chunks_exact(cols).enumerate() {
                        acc[i][j] = portable_dot(wr, xr);
                    }
                }
            }
        }
        debug_assert!(rn <= R && cn <= C);
    }
}

/// Lanes of one SIMD sum (ggml's `GGML_F32_EPR` on AVX2).
const LANES: usize = 8;

/// Vectors of inputs in one lane tile, at either width.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
const LANE_VECS: usize = 2;

/// The inputs of a product packed by lane, for the lane kernel.
///
/// ggml's order gives each dot product 32 partial sums: lane `l` sums the
/// products of columns `l`, `l + 32`, `l + 64`, … in order, fused, and the
/// 32 lanes are then added in a fixed tree. Each lane is thus a matrix
/// product of its own, over every 32nd column. The lane kernel computes
/// it as a matrix product is best computed, a vector of inputs (sixteen
/// with AVX-512, eight with AVX2, four with NEON) against one weight at a time (so no sum
/// is ever split across a register, and each weight and input loaded
/// meets many of the other), then adds the 32 lanes' results in ggml's
/// tree, a vector of outputs at a time: the same operations on the same
/// values, so the same bits.
///
/// The inputs come in tiles of `inputs` (the kernel's: 32 with AVX-512,
/// 16 with AVX2, 8 with NEON; the last tile padded with zeros), each tile's values by
/// lane and 32 of columns, the tile's inputs side by side:
/// `xp[((b * 32 + l) * steps + k) * inputs + i]` is `x[t * cols + 32 k + l]`
/// for input `t = inputs * b + i`, over the `steps` whole 32s of a row. A
/// tile's values lie together, so the kernel streams them.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
struct Lanes {
    xp: Vec<f32>,
    steps: usize,
    inputs: usize,
}

/// Rows of `cols` values (`src`), packed by lane in groups of `group`
/// rows, group after group: in each group, lane by lane, the values of
/// each 32 of columns for the group's rows side by side, so that
/// `dst[((g * 32 + l) * steps + k) * group + i]` is row `g * group + i`'s
/// column `32 k + l`, over the `steps` whole 32s of a row. A last group of
/// fewer rows is padded with zeros (its part of `dst` whole tiles, as the
/// lane kernel reads them).
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
fn pack_by_lane<T: WeightElement>(
    simd: Kernel,
    src: &[T],
    cols: usize,
    steps: usize,
    group: usize,
    dst: &mut [f32],
) {
    let rows = src.len() / cols;
    if !rows.is_multiple_of(group) {
        // The last group's padding: every row of it zeroed, then its rows
        // packed over them.
        if let Some(last) = dst
            .chunks_exact_mut(group * 4 * LANES * steps)
            .nth(rows / group)
        {
            last.fill(0.0);
        }
    }
    // SAFETY (each arm): `detect` (or a test's `widest`) saw the kernel's
    // features.
    match simd {
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 => return unsafe { x86::pack_by_lane512(src, cols, steps, group, dst) },
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx2 => return unsafe { x86::pack_by_lane256(src, cols, steps, group, dst) },
        #[cfg(target_arch = "aarch64")]
        Kernel::Neon => return unsafe { neon::pack_by_lane128(src, cols, steps, group, dst) },
        Kernel::Portable => {}
    }
    pack_by_lane_scalar(src, cols, steps, group, dst);
}

/// [`pack_by_lane`] a value at a time.
#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
fn pack_by_lane_scalar<T: WeightElement>(
    src: &[T],
    cols: usize,
    steps: usize,
    group: usize,
    dst: &mut [f32],
) {
    for (sg, dg) in src
        .chunks(group * cols)
        .zip(dst.chunks_exact_mut(group * 4 * LANES * steps))
    {
        // A 32 of columns at a time: its (up to) group × 32 values read
        // from the L1 cache, each lane's written beside the previous 32's.
        for k in 0..steps {
            for l in 0..4 * LANES {
                let d = &mut dg[(l * steps + k) * group..][..group];
                for (v, row) in d.iter_mut().zip(sg.chunks_exact(cols)) {
                    *v = T::to_f32(row[4 * LANES * k + l]);
                }
            }
        }
    }
}

thread_local! {
    /// The last [`Lanes`] dropped on this thread's values, for the next
    /// (a fresh buffer the size of a prompt's inputs costs a page fault
    /// every 4 KiB).
    static PACKED_INPUTS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[cfg_attr(
    not(any(target_arch = "x86_64", target_arch = "aarch64")),
    allow(dead_code)
)]
impl Lanes {
    /// `n` rows of `cols` inputs, packed in tiles of `inputs`, a tile a
    /// task (by `simd`'s [`pack_by_lane`]).
    fn pack(simd: Kernel, x: &[f32], n: usize, cols: usize, inputs: usize) -> Lanes {
        let steps = cols / (4 * LANES);
        let tile = inputs * 4 * LANES * steps;
        let mut xp = PACKED_INPUTS.take();
        // Every value is written: packed, or the last tile's padding zeroed.
        xp.resize(n.div_ceil(inputs) * tile, 0.0);
        if tile > 0 {
            xp.par_chunks_mut(tile)
                .zip(x.par_chunks(inputs * cols))
                .for_each(|(dst, src)| pack_by_lane(simd, src, cols, steps, inputs, dst));
        }
        Lanes { xp, steps, inputs }
    }
}

impl Drop for Lanes {
    fn drop(&mut self) {
        PACKED_INPUTS.set(std::mem::take(&mut self.xp));
    }
}

/// The portable dot product, in the order of [`Kernel::block`] (with
/// separate multiplies and adds where the SIMD kernels fuse them).
fn portable_dot<T: WeightElement>(w: &[T], x: &[f32]) -> f32 {
    ordered_dot::<T, false>(w, x)
}

/// The dot product in the order of [`Kernel::block`], each product fused
/// into its sum where `FUSED` (the SIMD kernels' bits, a value at a time).
fn ordered_dot<T: WeightElement, const FUSED: bool>(w: &[T], x: &[f32]) -> f32 {
    let body = w.len() - w.len() % (4 * LANES);
    let mut p = [[0f32; LANES]; 4];
    for (wc, xc) in w[..body]
        .chunks_exact(4 * LANES)
        .zip(x.chunks_exact(4 * LANES))
    {
        for (part, (wl, xl)) in p
            .iter_mut()
            .zip(wc.chunks_exact(LANES).zip(xc.chunks_exact(LANES)))
        {
            for (s, (a, b)) in part.iter_mut().zip(wl.iter().zip(xl)) {
                *s = if FUSED {
                    super::ops::fma32(a.to_f32(), *b, *s)
                } else {
                    *s + a.to_f32() * b
                };
            }
        }
    }
    let s: [f32; LANES] = std::array::from_fn(|l| (p[0][l] + p[2][l]) + (p[1][l] + p[3][l]));
    let h: [f32; 4] = std::array::from_fn(|l| s[l] + s[l + 4]);
    tail(((h[0] + h[1]) + (h[2] + h[3])) as f64, w, x, body)
}

/// `sum` plus the products of the columns from `body` on, in f64 (as
/// ggml adds its leftovers), rounded to f32.
fn tail<T: WeightElement>(sum: f64, w: &[T], x: &[f32], body: usize) -> f32 {
    (body..w.len()).fold(sum, |s, k| s + (w[k].to_f32() * x[k]) as f64) as f32
}

/// [`Kernel::block`] and its sweeps, for one vector type: `$v` of `$width`
/// floats, `$parts` of them to each 32 columns (AVX2's four eight-lane
/// sums; NEON's eight four-lane quarters, each the low or high half of
/// one of AVX2's sums), compiled with `$feature`; `$zero` an empty vector,
/// `$load` a vector of inputs, `T::$wload` one of weights widened,
/// `$fma(s, w, x)` `s + w · x` rounded once, `$reduce(p, i, j)` ggml's
/// tree over the dot product `i · j`'s parts, `$prefetch` the next block's
/// rows a block ahead (with one input). One source for AVX2 and NEON, so
/// that both sum the same products in the same order.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
macro_rules! block_kernel {
    (
        $feature:literal, $v:ty, $width:expr, $parts:literal, $zero:expr,
        $load:ident, $wload:ident, $fma:ident, $reduce:ident, $prefetch:ident
    ) => {
        /// `acc[i][j] = w[i] · x[j]` for `RN` rows of `w` and `CN` rows of
        /// `x` (each `cols` long), in ggml's order (see
        /// [`super::Kernel::block`]).
        ///
        /// # Safety
        /// The CPU has the features; `w` holds at least `RN * cols`
        /// elements and `x` at least `CN * cols` (asserted).
        #[target_feature(enable = $feature)]
        pub(super) unsafe fn block<T: WeightElement, const RN: usize, const CN: usize>(
            w: &[T],
            x: &[f32],
            cols: usize,
            acc: &mut [[f32; super::C]; super::R],
        ) {
            assert!(w.len() >= RN * cols && x.len() >= CN * cols);
            let body = cols - cols % (4 * LANES);
            let mut p = [[[$zero; CN]; RN]; $parts];
            if CN == 1 {
                // One input: each row in a single sweep, all its parts at
                // once, so that the weights stream through in order.
                for i in 0..RN {
                    // SAFETY: the assert above; row i starts at i * cols.
                    let s = unsafe { sweep::<T, 1, 1, $parts>(&w[i * cols..], x, cols, body, 0) };
                    for (part, v) in p.iter_mut().zip(s) {
                        part[i][0] = v[0][0];
                    }
                }
            } else {
                // Several inputs: one sweep per part, to keep the R × C
                // sums in registers; the rows stay in the L1 cache between
                // sweeps.
                for (k, part) in p.iter_mut().enumerate() {
                    // SAFETY: the assert above.
                    *part = unsafe { sweep::<T, RN, CN, 1>(w, x, cols, body, k) }[0];
                }
            }
            for i in 0..RN {
                for j in 0..CN {
                    let sum = $reduce(&p, i, j) as f64;
                    acc[i][j] =
                        super::tail(sum, &w[i * cols..][..cols], &x[j * cols..][..cols], body);
                }
            }
        }

        /// The parts `first..first + P`: part `q` over the columns
        /// `32 k + $width q .. 32 k + $width (q + 1)` below `body`.
        ///
        /// # Safety
        /// As [`block`]'s, and `body <= cols`, `first + P <= $parts`.
        #[inline]
        #[target_feature(enable = $feature)]
        unsafe fn sweep<T: WeightElement, const RN: usize, const CN: usize, const P: usize>(
            w: &[T],
            x: &[f32],
            cols: usize,
            body: usize,
            first: usize,
        ) -> [[[$v; CN]; RN]; P] {
            let (wp, xp) = (w.as_ptr(), x.as_ptr());
            let mut sum = [[[$zero; CN]; RN]; P];
            for k in (0..body).step_by(4 * LANES) {
                if P == $parts {
                    // A row at a time (one input): the next block's row,
                    // these columns.
                    $prefetch(wp.wrapping_add(super::R * cols + k));
                }
                for (q, sq) in sum.iter_mut().enumerate() {
                    let k = k + (first + q) * $width;
                    let mut xs = [$zero; CN];
                    for (j, v) in xs.iter_mut().enumerate() {
                        // SAFETY: k + $width <= body <= cols: the floats lie
                        // in row j.
                        *v = unsafe { $load(xp.add(j * cols + k)) };
                    }
                    for (i, row) in sq.iter_mut().enumerate() {
                        // SAFETY: as above, in weight row i; this function
                        // has the features the load needs.
                        let wv = unsafe { T::$wload(wp.add(i * cols + k)) };
                        for (s, &xv) in row.iter_mut().zip(&xs) {
                            *s = $fma(*s, wv, xv);
                        }
                    }
                }
            }
            sum
        }
    };
}

/// [`pack_by_lane`] from f32 or f16 rows, `$width` rows of a group by
/// `$width` columns at a time: loaded and widened (`$load`), transposed in
/// registers (`$transpose`), each column's values stored under a mask of
/// the rows (`$mask`, `$store`). (A value at a time, the packing of a
/// product's weights, once for every prompt whatever its length, cost most
/// of what the lane kernel's arithmetic did on 64 inputs.) One source for
/// AVX-512, AVX2 and NEON, as the lane kernel.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
macro_rules! pack_by_lane_simd {
    (
        $name:ident, $feature:literal, $v:ty, $width:literal,
        $zero:path, $load:ident, $transpose:ident, $mask:ident, $store:path
    ) => {
        /// # Safety
        /// The CPU has the features.
        #[target_feature(enable = $feature)]
        pub(super) unsafe fn $name<T: WeightElement>(
            src: &[T],
            cols: usize,
            steps: usize,
            group: usize,
            dst: &mut [f32],
        ) {
            assert!(4 * LANES * steps <= cols);
            for (sg, dg) in src
                .chunks(group * cols)
                .zip(dst.chunks_exact_mut(group * 4 * LANES * steps))
            {
                let rows = sg.len() / cols;
                for i0 in (0..rows).step_by($width) {
                    let rn = (rows - i0).min($width);
                    let mask = $mask(rn);
                    for k in 0..steps {
                        for c0 in (0..4 * LANES).step_by($width) {
                            let at = 4 * LANES * k + c0;
                            let block: [$v; $width] = std::array::from_fn(|r| {
                                if r < rn {
                                    let row = &sg[(i0 + r) * cols + at..][..$width];
                                    // SAFETY: row i0 + r of `sg`, columns
                                    // at..at + $width (at most 32 k + 32
                                    // <= cols).
                                    unsafe { T::$load(row.as_ptr()) }
                                } else {
                                    $zero()
                                }
                            });
                            for (c, v) in $transpose(block).into_iter().enumerate() {
                                let d = &mut dg[((c0 + c) * steps + k) * group + i0..][..rn];
                                // SAFETY: `rn` floats at `d` (the mask's).
                                unsafe { $store(d.as_mut_ptr(), mask, v) };
                            }
                        }
                    }
                }
            }
        }
    };
}

/// The lane kernel (see [`Lanes`]) for one vector type: `$v` of `$width`
/// floats, the `$feature` CPU features (of `std::arch::$arch`), `$rows`
/// weight rows to a tile, the intrinsics that zero, load, broadcast, fuse
/// (`a * b + c`, rounded once), add and store its vectors, and those that
/// transpose `$width` of them and store the first lanes of one (under a
/// mask of so many lanes, as [`pack_by_lane_simd`] takes them). One source
/// for AVX-512, AVX2 and NEON, each function compiled with its features
/// (as generic code would not be).
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
macro_rules! lane_kernel {
    (
        $name:ident, $feature:literal, $arch:ident, $v:ty, $width:expr, $rows:expr,
        $zero:path, $load:ident, $splat:ident, $fmadd:path, $add:ident, $store:ident,
        $transpose:path, $mask:path, $mstore:path
    ) => {
        pub(in super::super) mod $name {
            use std::arch::$arch::*;

            use super::super::{Lanes, Outputs, WeightElement, LANES, LANE_VECS};

            /// Weight rows of one lane tile.
            pub(in super::super) const ROWS: usize = $rows;
            /// Inputs of one lane tile.
            pub(in super::super) const INPUTS: usize = $width * LANE_VECS;

            /// A lane tile's sums: [`ROWS`] rows, each `V` vectors of
            /// inputs.
            type Tile<const V: usize> = [[$v; V]; ROWS];

            /// `out.row(t)[r] = w[r] · x[t]` by the lane kernel for
            /// the `out.width()` rows of `w`.
            ///
            /// # Safety
            /// The CPU has the features; `w` holds `out.width()`
            /// `cols`-long rows, and `packed` the same packed by
            /// [`super::super::pack_by_lane`] in whole tiles (zeros
            /// past the last row); `lanes` is `x` (`n` rows of `cols`)
            /// packed in tiles of [`INPUTS`].
            #[target_feature(enable = $feature)]
            pub(in super::super) unsafe fn lane_tiles<T: WeightElement>(
                w: &[T],
                packed: &[f32],
                cols: usize,
                lanes: &Lanes,
                x: &[f32],
                out: &mut Outputs,
            ) {
                let (rows, n) = (out.width(), out.n);
                let steps = lanes.steps;
                let tile = 4 * LANES * steps * INPUTS;
                let body = steps * 4 * LANES;
                assert!(
                    lanes.inputs == INPUTS
                        && body <= cols
                        && x.len() >= n * cols
                        && lanes.xp.len() >= n.div_ceil(INPUTS) * tile
                        && w.len() >= rows * cols
                        && packed.len() >= rows.next_multiple_of(ROWS) * body
                );
                let mut buf = [[0f32; INPUTS]; ROWS];
                // Inputs outer: a tile of inputs (of every packed row)
                // stays in the L2 cache while every tile of weights
                // meets it.
                for t0 in (0..n).step_by(INPUTS) {
                    let tn = INPUTS.min(n - t0);
                    for r0 in (0..rows).step_by(ROWS) {
                        let (wp, xp) = (
                            // SAFETY: the tile of rows r0.. lies whole
                            // in `packed`, that of inputs t0.. in `xp`.
                            unsafe { packed.as_ptr().add(r0 * body) },
                            unsafe { lanes.xp.as_ptr().add(t0 / INPUTS * tile) },
                        );
                        // The sums into `buf`, row by row (a last tile
                        // of a few inputs takes as few vectors as hold
                        // them), then out, input by input.
                        let mut rows_out = |sums: &[&[$v]]| {
                            let rn = ROWS.min(rows - r0);
                            if body == cols {
                                // Each vector of inputs' sums, `$width`
                                // rows at a time, transposed in registers
                                // (a vector an input, its rows' outputs
                                // side by side) and stored under a mask of
                                // the rows. (Through `buf`, a value at a
                                // time, the compiler gathered them: a
                                // tenth of the products' time.)
                                for g0 in (0..rn).step_by($width) {
                                    let gn = ($width).min(rn - g0);
                                    let mask = $mask(gn);
                                    for v in 0..sums[0].len() {
                                        let block: [$v; $width] = std::array::from_fn(|j| {
                                            sums.get(g0 + j).map_or($zero(), |s| s[v])
                                        });
                                        let first = v * $width;
                                        for (i, c) in $transpose(block)
                                            .into_iter()
                                            .enumerate()
                                            .take(tn.saturating_sub(first))
                                        {
                                            let o = &mut out.row(t0 + first + i)[r0 + g0..][..gn];
                                            // SAFETY: `gn` floats at `o`
                                            // (the mask's).
                                            unsafe { $mstore(o.as_mut_ptr(), mask, c) };
                                        }
                                    }
                                }
                                return;
                            }
                            for (b, s) in buf.iter_mut().zip(sums).take(rn) {
                                for (v, &sv) in s.iter().enumerate() {
                                    // SAFETY: `b` holds INPUTS floats.
                                    unsafe { $store(b.as_mut_ptr().add($width * v), sv) };
                                }
                            }
                            for i in 0..tn {
                                let o = &mut out.row(t0 + i)[r0..][..rn];
                                let xr = &x[(t0 + i) * cols..][..cols];
                                for (r, (v, b)) in o.iter_mut().zip(&buf).enumerate() {
                                    let wr = &w[(r0 + r) * cols..][..cols];
                                    *v = super::super::tail(b[i] as f64, wr, xr, body);
                                }
                            }
                        };
                        // SAFETY (each arm): as above; V vectors of the
                        // tile.
                        match tn.div_ceil($width) {
                            1 => rows_out(
                                &unsafe { lane_tile::<1>(wp, xp, steps) }
                                    .each_ref()
                                    .map(|r| &r[..]),
                            ),
                            _ => rows_out(
                                &unsafe { lane_tile::<LANE_VECS>(wp, xp, steps) }
                                    .each_ref()
                                    .map(|r| &r[..]),
                            ),
                        }
                    }
                }
            }

            /// One lane tile: the dot products of the [`ROWS`] rows
            /// packed at `w` with `V` vectors of inputs of the tile
            /// packed at `xp`, over `steps` 32s of columns, each lane
            /// summed alone and the lanes added as ggml adds them.
            ///
            /// # Safety
            /// The CPU has the features; `w` and `xp` point at a packed
            /// tile of weights and one of inputs, of `steps` 32s of
            /// columns; `V <= LANE_VECS`.
            #[inline]
            #[target_feature(enable = $feature)]
            unsafe fn lane_tile<const V: usize>(
                w: *const f32,
                xp: *const f32,
                steps: usize,
            ) -> Tile<V> {
                // ggml's GGML_F32x8_REDUCE, its eight-lane sums p0..p3
                // being lanes m, 8 + m, 16 + m and 24 + m here:
                // s_m = (p0 + p2) + (p1 + p3), then h_m = s_m + s_(m + 4),
                // then (h0 + h1) + (h2 + h3). (No array of tiles: each
                // would be zeroed before it is written.)
                let s = |m: usize| {
                    // SAFETY: lanes m, 8 + m, 16 + m and 24 + m (< 32)
                    // of the same tile and inputs.
                    let p = |j: usize| unsafe {
                        let l = j * LANES + m;
                        lane_sums::<V>(w.add(l * steps * ROWS), xp.add(l * steps * INPUTS), steps)
                    };
                    let a = add(&p(0), &p(2));
                    add(&a, &add(&p(1), &p(3)))
                };
                let h = |m: usize| add(&s(m), &s(m + 4));
                let a = add(&h(0), &h(1));
                add(&a, &add(&h(2), &h(3)))
            }

            /// `a + b`, sum by sum.
            #[inline]
            #[target_feature(enable = $feature)]
            fn add<const V: usize>(a: &Tile<V>, b: &Tile<V>) -> Tile<V> {
                let mut s = *a;
                for (sr, br) in s.iter_mut().zip(b) {
                    for (v, &w) in sr.iter_mut().zip(br) {
                        *v = $add(*v, w);
                    }
                }
                s
            }

            /// One lane's sums of a tile: for each row, its weight of
            /// step `k` times the inputs' value of that step fused into
            /// the sum, `k` in order, a vector of inputs at a time.
            ///
            /// Never inlined: its loop keeps the tile's sums in
            /// registers only as a function of its own. Inlined into
            /// [`lane_tile`], whether they stayed there hung on how the
            /// crate's code fell into codegen units: an unrelated
            /// change once spilled them to the stack in the loop, and a
            /// prompt's products took 40% longer.
            ///
            /// # Safety
            /// As [`lane_tile`]'s, `w` and `xp` at the lane.
            #[inline(never)]
            #[target_feature(enable = $feature)]
            unsafe fn lane_sums<const V: usize>(
                w: *const f32,
                xp: *const f32,
                steps: usize,
            ) -> Tile<V> {
                let mut acc = [[$zero(); V]; ROWS];
                for k in 0..steps {
                    let mut xs = [$zero(); V];
                    for (v, xv) in xs.iter_mut().enumerate() {
                        // SAFETY: step k of this lane's inputs: at
                        // least V vectors' floats from here.
                        *xv = unsafe { $load(xp.add(k * INPUTS + $width * v)) };
                    }
                    for (r, a) in acc.iter_mut().enumerate() {
                        // SAFETY: row r's weight of step k, inside the
                        // lane.
                        let wv = $splat(unsafe { *w.add(k * ROWS + r) });
                        for (av, &xv) in a.iter_mut().zip(&xs) {
                            *av = $fmadd(wv, xv, *av);
                        }
                    }
                }
                acc
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::super::ops::transpose::{transpose16, transpose8};
    use super::super::ops::WeightElement;
    use super::LANES;

    pack_by_lane_simd!(
        pack_by_lane512,
        "avx512f,f16c",
        __m512,
        16,
        _mm512_setzero_ps,
        load16,
        transpose16,
        mask16,
        _mm512_mask_storeu_ps
    );
    pack_by_lane_simd!(
        pack_by_lane256,
        "avx2,f16c",
        __m256,
        8,
        _mm256_setzero_ps,
        load8,
        transpose8,
        mask8,
        _mm256_maskstore_ps
    );

    /// The first `rn` of sixteen lanes.
    #[inline]
    fn mask16(rn: usize) -> __mmask16 {
        ((1u32 << rn) - 1) as u16
    }

    /// The first `rn` of eight lanes: all ones there.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn mask8(rn: usize) -> __m256i {
        _mm256_cmpgt_epi32(
            _mm256_set1_epi32(rn as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        )
    }

    block_kernel!(
        "avx2,fma,f16c",
        __m256,
        LANES,
        4,
        _mm256_setzero_ps(),
        _mm256_loadu_ps,
        load8,
        fma,
        reduce,
        prefetch
    );

    /// `s + w · x`, rounded once.
    #[inline]
    #[target_feature(enable = "fma")]
    fn fma(s: __m256, w: __m256, x: __m256) -> __m256 {
        _mm256_fmadd_ps(w, x, s)
    }

    /// ggml's GGML_F32x8_REDUCE of the dot product `i · j`'s four sums:
    /// (0 + 2) + (1 + 3), then the two halves, then pairwise.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn reduce<const RN: usize, const CN: usize>(
        p: &[[[__m256; CN]; RN]; 4],
        i: usize,
        j: usize,
    ) -> f32 {
        let s = _mm256_add_ps(
            _mm256_add_ps(p[0][i][j], p[2][i][j]),
            _mm256_add_ps(p[1][i][j], p[3][i][j]),
        );
        halves_then_pairs(s)
    }

    /// [`ops::prefetch`](super::super::ops::prefetch) of the `4 * LANES`
    /// weights from `p`: a block kernel's next block's rows, a block ahead
    /// (with one input, where reading the weights is the work, Gemma-3's
    /// F16 step read 16.5 GB/s of them on two threads without it).
    #[inline]
    fn prefetch<T>(p: *const T) {
        super::super::ops::prefetch(p, 4 * LANES);
    }

    /// The end of ggml's GGML_F32x8_REDUCE: the two halves of `s` added,
    /// then pairwise.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn halves_then_pairs(s: __m256) -> f32 {
        let h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
        let h = _mm_hadd_ps(h, h);
        _mm_cvtss_f32(_mm_hadd_ps(h, h))
    }

    /// [`block`] with AVX-512: the sums of column blocks 0 and 1 of each
    /// 32 (ggml's first two eight-lane sums) side by side in one register,
    /// those of blocks 2 and 3 in another, so each lane sums what it sums
    /// there, in the same order, and the reduction adds the same pairs.
    ///
    /// # Safety
    /// The CPU has AVX-512F, AVX2, FMA and F16C; `w` holds at least
    /// `RN * cols` elements and `x` at least `CN * cols`.
    #[target_feature(enable = "avx512f,avx2,fma,f16c")]
    pub(super) unsafe fn block512<T: WeightElement, const RN: usize, const CN: usize>(
        w: &[T],
        x: &[f32],
        cols: usize,
        acc: &mut [[f32; super::C]; super::R],
    ) {
        assert!(w.len() >= RN * cols && x.len() >= CN * cols);
        let body = cols - cols % (4 * LANES);
        let (wp, xp) = (w.as_ptr(), x.as_ptr());
        let zero = _mm512_setzero_ps();
        // Blocks 0 and 1 (`lo`), 2 and 3 (`hi`) of each 32 columns.
        let mut lo = [[zero; CN]; RN];
        let mut hi = [[zero; CN]; RN];
        for k in (0..body).step_by(4 * LANES) {
            // The next block's rows, these columns (see `prefetch`).
            for i in RN..2 * RN {
                prefetch(wp.wrapping_add(i * cols + k));
            }
            for (half, sums) in [(0, &mut lo), (2 * LANES, &mut hi)] {
                let k = k + half;
                let mut xs = [zero; CN];
                for (j, v) in xs.iter_mut().enumerate() {
                    // SAFETY: k + 16 <= body <= cols: the 16 floats lie in
                    // row j.
                    *v = unsafe { _mm512_loadu_ps(xp.add(j * cols + k)) };
                }
                for (i, row) in sums.iter_mut().enumerate() {
                    // SAFETY: as above, in weight row i; this function has
                    // the features `load16` needs.
                    let wv = unsafe { T::load16(wp.add(i * cols + k)) };
                    for (s, &xv) in row.iter_mut().zip(&xs) {
                        *s = _mm512_fmadd_ps(wv, xv, *s);
                    }
                }
            }
        }
        for i in 0..RN {
            for j in 0..CN {
                // [0 + 2 | 1 + 3], then its halves: (0 + 2) + (1 + 3), then
                // as ggml's GGML_F32x8_REDUCE goes on.
                let s = _mm512_add_ps(lo[i][j], hi[i][j]);
                let s0 = _mm512_castps512_ps256(s);
                let s1 = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(s)));
                let s = _mm256_add_ps(s0, s1);
                let sum = halves_then_pairs(s) as f64;
                acc[i][j] = super::tail(sum, &w[i * cols..][..cols], &x[j * cols..][..cols], body);
            }
        }
    }

    // Twelve rows by two vectors of sixteen inputs: 24 of the 32 registers
    // hold sums.
    lane_kernel!(
        avx512,
        "avx512f",
        x86_64,
        __m512,
        16,
        12,
        _mm512_setzero_ps,
        _mm512_loadu_ps,
        _mm512_set1_ps,
        _mm512_fmadd_ps,
        _mm512_add_ps,
        _mm512_storeu_ps,
        super::transpose16,
        super::mask16,
        _mm512_mask_storeu_ps
    );
    // Six rows by two vectors of eight inputs: 12 of the 16 registers hold
    // sums.
    lane_kernel!(
        avx2,
        "avx2,fma",
        x86_64,
        __m256,
        8,
        6,
        _mm256_setzero_ps,
        _mm256_loadu_ps,
        _mm256_set1_ps,
        _mm256_fmadd_ps,
        _mm256_add_ps,
        _mm256_storeu_ps,
        super::transpose8,
        super::mask8,
        _mm256_maskstore_ps
    );
}

/// The block kernel with NEON: [`Kernel::block`]'s sums as the AVX2
/// kernel computes them, each of its eight-lane sums held in two four-lane
/// registers (a "quarter" of each 32 columns: quarter `u` covers columns
/// `4u..4u + 4`, the low or high half of AVX2's sum `u / 2`), fused as
/// AVX2 fuses them (`fmla`: one rounding, as `vfmadd`), and reduced in
/// GGML_F32x8_REDUCE's tree. Every lane therefore sums the same products
/// in the same order: the AVX2 kernel's bits.
#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    use super::super::ops::transpose::transpose4;
    use super::super::ops::{neon_fma, neon_zero, WeightElement};
    use super::LANES;

    /// Four lanes a register.
    const QUARTER: usize = 4;

    block_kernel!(
        "neon",
        float32x4_t,
        QUARTER,
        8,
        vdupq_n_f32(0.0),
        vld1q_f32,
        load4,
        fma,
        reduce,
        prefetch
    );

    /// `s + w · x`, rounded once (`fmla`).
    #[inline]
    #[target_feature(enable = "neon")]
    fn fma(s: float32x4_t, w: float32x4_t, x: float32x4_t) -> float32x4_t {
        vfmaq_f32(s, w, x)
    }

    /// GGML_F32x8_REDUCE over the dot product `i · j`'s eight quarters:
    /// (0 + 2) + (1 + 3) of AVX2's eight-lane sums, a half at a time; the
    /// two halves added; then pairwise, as `hadd` twice.
    #[inline]
    #[target_feature(enable = "neon")]
    fn reduce<const RN: usize, const CN: usize>(
        p: &[[[float32x4_t; CN]; RN]; 8],
        i: usize,
        j: usize,
    ) -> f32 {
        let half = |h: usize| {
            vaddq_f32(
                vaddq_f32(p[h][i][j], p[4 + h][i][j]),
                vaddq_f32(p[2 + h][i][j], p[6 + h][i][j]),
            )
        };
        let s = vaddq_f32(half(0), half(1));
        let pairs = vpaddq_f32(s, s);
        vgetq_lane_f32::<0>(pairs) + vgetq_lane_f32::<1>(pairs)
    }

    /// No prefetch: the weights stream in order, for the hardware's.
    #[inline]
    fn prefetch<T>(_: *const T) {}

    pack_by_lane_simd!(
        pack_by_lane128,
        "neon",
        float32x4_t,
        4,
        neon_zero,
        load4,
        transpose4,
        rows4,
        store4
    );

    /// The first `rn` of four lanes (no mask register on NEON: the count).
    #[inline]
    fn rows4(rn: usize) -> usize {
        rn
    }

    /// The first `rn` (at most 4) of `v`'s lanes stored from `d`.
    ///
    /// # Safety
    /// `d` is valid for writing `rn` floats.
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn store4(d: *mut f32, rn: usize, v: float32x4_t) {
        if rn == 4 {
            // SAFETY: four floats at `d` (the contract).
            unsafe { vst1q_f32(d, v) };
        } else {
            let mut lanes = [0f32; 4];
            // SAFETY: `lanes` holds four floats.
            unsafe { vst1q_f32(lanes.as_mut_ptr(), v) };
            // SAFETY: `rn` floats at `d` (the contract), `rn < 4`.
            unsafe { std::ptr::copy_nonoverlapping(lanes.as_ptr(), d, rn) };
        }
    }

    // Twelve rows by two vectors of four inputs: 24 of the 32 registers
    // hold sums.
    lane_kernel!(
        lanes,
        "neon",
        aarch64,
        float32x4_t,
        4,
        12,
        super::neon_zero,
        vld1q_f32,
        vdupq_n_f32,
        super::neon_fma,
        vaddq_f32,
        vst1q_f32,
        super::transpose4,
        super::rows4,
        super::store4
    );
}

#[cfg(test)]
mod tests {
    use super::super::ops::test_values as values;
    use super::*;
    use gguf_loader::f16;

    /// `kernel.rows` over a whole product of `n` inputs: `n × rows`
    /// outputs.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn product<T: WeightElement>(
        kernel: Kernel,
        w: &[T],
        cols: usize,
        x: &[f32],
        lanes: Option<&Lanes>,
        n: usize,
    ) -> Vec<f32> {
        let rows = w.len() / cols;
        let mut y = vec![0f32; n * rows];
        for mut out in Outputs::blocks(&mut y, n, rows, rows) {
            kernel.rows(w, cols, x, lanes, &mut out);
        }
        y
    }

    fn naive(w: &[f32], rows: usize, cols: usize, x: &[f32], n: usize) -> Vec<f32> {
        let mut y = vec![0f32; n * rows];
        for t in 0..n {
            for r in 0..rows {
                y[t * rows + r] = (0..cols).map(|k| w[r * cols + k] * x[t * cols + k]).sum();
            }
        }
        y
    }

    fn close(got: &[f32], want: &[f32], what: &str) {
        assert_eq!(got.len(), want.len());
        for (g, e) in got.iter().zip(want) {
            assert!(
                (g - e).abs() < 1e-4 * (1.0 + e.abs()),
                "{g} vs {e} ({what})"
            );
        }
    }

    /// Where the CPU has both the AVX-512 and the AVX2 kernels, values
    /// from `seed` (else `None`, saying the test is skipped).
    #[cfg(target_arch = "x86_64")]
    fn avx512_and_values(seed: u64) -> Option<impl FnMut() -> f32> {
        let (Kernel::Avx512, Kernel::Avx2) = (Kernel::widest(true), Kernel::widest(false)) else {
            eprintln!("skipped: no AVX-512 here");
            return None;
        };
        Some(values(seed))
    }

    /// The AVX-512 kernel gives the AVX2 kernel's bits (and the portable
    /// one's order), for f32 and f16 weights, every block shape, columns
    /// with and without a tail past the last 32; and whole products with
    /// f16 weights (widened once for several inputs) likewise.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512_kernel_is_the_avx2_kernels_bits() {
        let Some(mut next) = avx512_and_values(0x1234_5678_9abc_def0) else {
            return;
        };
        for cols in [32, 64, 70, 576, 640, 1000] {
            for (rn, cn) in [(R, 3), (R, 2), (R, 1), (1, 3), (1, 2), (1, 1)] {
                let w: Vec<f32> = (0..rn * cols).map(|_| next()).collect();
                let wh: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
                let x: Vec<f32> = (0..cn * cols).map(|_| next()).collect();
                let run = |k: Kernel, f16w: bool| {
                    let mut acc = [[0f32; C]; R];
                    if f16w {
                        k.block(&wh, &x, cols, &mut acc);
                    } else {
                        k.block(&w, &x, cols, &mut acc);
                    }
                    acc.map(|r| r.map(f32::to_bits))
                };
                for f16w in [false, true] {
                    let want = run(Kernel::Avx2, f16w);
                    assert_eq!(
                        run(Kernel::Avx512, f16w),
                        want,
                        "{rn}x{cn}, {cols} cols, f16 {f16w}"
                    );
                }
            }
        }
        let (rows, cols) = (37, 640);
        let w: Vec<f16> = (0..rows * cols).map(|_| f16::from_f32(next())).collect();
        for n in [1, 5, 50] {
            let x: Vec<f32> = (0..n * cols).map(|_| next()).collect();
            let a = product(Kernel::Avx2, &w, cols, &x, None, n);
            let b = product(Kernel::Avx512, &w, cols, &x, None, n);
            assert_eq!(
                a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{n} inputs"
            );
        }
    }

    /// The lane kernel, AVX-512's and AVX2's on x86-64 (each where the
    /// CPU has it), NEON's on aarch64, gives the block kernel's bits (AVX2's
    /// or NEON's, themselves the same), for f16 and f32 weights, rows that
    /// fill a tile or not, columns with and without a tail past the last
    /// 32, inputs that fill a tile or not; and so do whole products that
    /// take it.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[test]
    fn lane_kernel_is_the_block_kernels_bits() {
        let block = Kernel::widest(false);
        if block == Kernel::Portable {
            eprintln!("skipped: no AVX2 here");
            return;
        }
        let mut next = values(0x0bad_cafe_1234_5678);
        let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        let mut kernels = vec![block];
        kernels.extend(Some(Kernel::widest(true)).filter(|&k| k != block));
        for lane in kernels {
            let (tile_rows, tile_inputs) = lane.lane_tile(1 << 20, 32).unwrap();
            for cols in [32, 64, 70, 576, 640, 1000] {
                for rows in [1, 5, tile_rows, 13, 37] {
                    let w: Vec<f32> = (0..rows * cols).map(|_| next()).collect();
                    let wh: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
                    for n in [tile_inputs / 2, tile_inputs / 2 + 1, 33, 50, 80] {
                        let x: Vec<f32> = (0..n * cols).map(|_| next()).collect();
                        assert_eq!(lane.lane_tile(n, cols), Some((tile_rows, tile_inputs)));
                        let lanes = Lanes::pack(lane, &x, n, cols, tile_inputs);
                        for f16w in [false, true] {
                            let (a, b) = if f16w {
                                (
                                    product(block, &wh, cols, &x, None, n),
                                    product(lane, &wh, cols, &x, Some(&lanes), n),
                                )
                            } else {
                                (
                                    product(block, &w, cols, &x, None, n),
                                    product(lane, &w, cols, &x, Some(&lanes), n),
                                )
                            };
                            assert_eq!(
                                bits(&a),
                                bits(&b),
                                "{lane:?}: {rows} x {cols}, {n} inputs, f16 {f16w}"
                            );
                        }
                    }
                }
            }
            // Fewer inputs than half a tile, or fewer columns than 32, take
            // the block kernel.
            assert_eq!(lane.lane_tile(tile_inputs / 2 - 1, 640), None);
            assert_eq!(lane.lane_tile(tile_inputs, 31), None);
        }
        // Whole products: several matrices, chunks of whole tiles (by the
        // detected kernel: not where GGUF_LOADER_SIMD caps it to none).
        if Kernel::detect() == Kernel::Portable {
            return;
        }
        let cols = 640;
        let w1: Vec<f16> = (0..300 * cols).map(|_| f16::from_f32(next())).collect();
        let w2: Vec<f16> = (0..64 * cols).map(|_| f16::from_f32(next())).collect();
        let n = 40;
        let x: Vec<f32> = (0..n * cols).map(|_| next()).collect();
        let junk = || vec![f32::NAN; n * 1000];
        let mut ys = [junk(), junk()];
        ys[0].truncate(n * 300);
        ys[1].truncate(n * 64);
        let [y1, y2] = matmul_many([(&w1[..], 300), (&w2[..], 64)], cols, &x, n, ys);
        for (w, y) in [(&w1, y1), (&w2, y2)] {
            let want = product(block, &w[..], cols, &x, None, n);
            assert_eq!(bits(&want), bits(&y));
        }
    }

    /// The transposes in registers pack as the scalar loop does, every
    /// value of `dst` (a last group of fewer rows padded with zeros), from
    /// f32 and f16 rows, for groups of a lane tile's rows and inputs at
    /// every width (AVX-512's, AVX2's, NEON's).
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    #[test]
    fn packing_in_registers_is_the_scalar_packing() {
        let mut next = values(0x5eed_0f9a_7e00);
        let mut kernels = vec![Kernel::widest(false)];
        kernels.extend(Some(Kernel::widest(true)).filter(|&k| k != kernels[0]));
        for simd in kernels.into_iter().filter(|&k| k != Kernel::Portable) {
            for (cols, group, rows) in [
                (64, 12, 12),
                (70, 6, 13),
                (640, 32, 50),
                (96, 16, 3),
                (128, 32, 17),
                (96, 8, 13),
            ] {
                let steps = cols / (4 * LANES);
                let src: Vec<f32> = (0..rows * cols).map(|_| next()).collect();
                let src16: Vec<f16> = src.iter().map(|&v| f16::from_f32(v)).collect();
                let len = rows.div_ceil(group) * group * 4 * LANES * steps;
                let packed = |f: &dyn Fn(&mut [f32])| {
                    let mut dst = vec![-7.5f32; len];
                    f(&mut dst);
                    dst.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
                };
                let scalar =
                    packed(&|d| pack_by_lane(Kernel::Portable, &src, cols, steps, group, d));
                assert_eq!(
                    scalar,
                    packed(&|d| pack_by_lane(simd, &src, cols, steps, group, d)),
                    "{simd:?}: {rows} rows of {cols} in groups of {group}"
                );
                assert_eq!(
                    packed(&|d| pack_by_lane(Kernel::Portable, &src16, cols, steps, group, d)),
                    packed(&|d| pack_by_lane(simd, &src16, cols, steps, group, d)),
                    "{simd:?}: {rows} f16 rows of {cols} in groups of {group}"
                );
                // The padding rows of a last group are zeros.
                let last = &scalar[rows / group * group * 4 * LANES * steps..];
                for (l, run) in last.chunks_exact(group).enumerate() {
                    let pad = &run[rows % group..];
                    assert!(
                        rows.is_multiple_of(group) || pad.iter().all(|&b| b == 0),
                        "{rows} rows in groups of {group}: lane {l}'s padding"
                    );
                }
            }
        }
    }

    #[test]
    fn matmul_matches_naive_for_one_and_many_rows() {
        // 301 rows: a chunk that is not a multiple of R; 70 columns: a
        // tail past the last 8; 50 inputs: past one T_BLOCK, not a
        // multiple of C; 121: not a multiple of the lane tile's inputs.
        let (rows, cols) = (301, 70);
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let wh: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
        let wr: Vec<f32> = wh.iter().map(|v| v.to_f32()).collect();
        for n in [1, 2, 7, 50, 121] {
            let x: Vec<f32> = (0..n * cols)
                .map(|i| ((i * 13 % 29) as f32 - 14.0) / 14.0)
                .collect();
            close(
                &matmul(&w, rows, cols, &x, n),
                &naive(&w, rows, cols, &x, n),
                "f32",
            );
            close(
                &matmul(&wh, rows, cols, &x, n),
                &naive(&wr, rows, cols, &x, n),
                "f16",
            );
        }
    }

    /// Several inputs at once (their tiles' weights widened to f32 first)
    /// give each input's one-at-a-time products bit for bit: prompt
    /// processing and generation sum in the same order.
    #[test]
    fn many_inputs_equal_one_at_a_time_bit_for_bit() {
        let (rows, cols) = (70, 333);
        let w: Vec<f16> = (0..rows * cols)
            .map(|i| f16::from_f32(((i * 7919 % 1009) as f32 - 504.0) / 97.0))
            .collect();
        let n = 7;
        let x: Vec<f32> = (0..n * cols)
            .map(|i| ((i * 31 % 67) as f32 - 33.0) / 9.0)
            .collect();
        let all = matmul(&w, rows, cols, &x, n);
        for t in 0..n {
            let one = matmul(&w, rows, cols, &x[t * cols..(t + 1) * cols], 1);
            for r in 0..rows {
                assert_eq!(
                    all[t * rows + r].to_bits(),
                    one[r].to_bits(),
                    "input {t} row {r}"
                );
            }
        }
    }

    /// Every SIMD kernel the CPU has (AVX2 and AVX-512 on x86-64, NEON on
    /// aarch64) gives, bit for bit, the sums of [`Kernel::block`]'s order
    /// fused a value at a time: so the kernels of both architectures give
    /// the same bits. Every block shape, f32 and f16 weights, columns with
    /// and without a tail past the last 32.
    #[test]
    fn simd_kernels_are_the_fused_order_bits() {
        let mut kernels = vec![Kernel::widest(false)];
        kernels.extend(Some(Kernel::widest(true)).filter(|&k| k != kernels[0]));
        kernels.retain(|&k| k != Kernel::Portable);
        if kernels.is_empty() {
            eprintln!("skipped: no SIMD kernel on this CPU");
            return;
        }
        let mut next = values(0x0f0e_0d0c_0b0a_0908);
        for cols in [32, 64, 70, 576, 640, 1000] {
            for (rn, cn) in [(R, 3), (R, 2), (R, 1), (1, 3), (1, 2), (1, 1)] {
                let w: Vec<f32> = (0..rn * cols).map(|_| next()).collect();
                let wh: Vec<f16> = w.iter().map(|&v| f16::from_f32(v)).collect();
                let x: Vec<f32> = (0..cn * cols).map(|_| next()).collect();
                let want = |f16w: bool| {
                    let mut acc = [[0u32; C]; R];
                    for (i, row) in acc.iter_mut().enumerate().take(rn) {
                        for (j, v) in row.iter_mut().enumerate().take(cn) {
                            let x = &x[j * cols..][..cols];
                            *v = if f16w {
                                ordered_dot::<f16, true>(&wh[i * cols..][..cols], x)
                            } else {
                                ordered_dot::<f32, true>(&w[i * cols..][..cols], x)
                            }
                            .to_bits();
                        }
                    }
                    acc
                };
                for &k in &kernels {
                    for f16w in [false, true] {
                        let mut acc = [[0f32; C]; R];
                        if f16w {
                            k.block(&wh, &x, cols, &mut acc);
                        } else {
                            k.block(&w, &x, cols, &mut acc);
                        }
                        assert_eq!(
                            acc.map(|r| r.map(f32::to_bits)),
                            want(f16w),
                            "{k:?}: {rn}x{cn}, {cols} cols, f16 {f16w}"
                        );
                    }
                }
            }
        }
    }

    /// The SIMD kernel (where the CPU has one) and the portable one agree.
    #[test]
    fn simd_kernel_matches_portable() {
        let cols = 333;
        let w: Vec<f16> = (0..R * cols)
            .map(|i| f16::from_f32(((i * 7919 % 1009) as f32 - 504.0) / 97.0))
            .collect();
        let x: Vec<f32> = (0..C * cols)
            .map(|i| ((i * 31 % 67) as f32 - 33.0) / 9.0)
            .collect();
        let simd = Kernel::detect();
        if simd == Kernel::Portable {
            eprintln!("no SIMD kernel on this CPU: nothing to compare");
            return;
        }
        for (rn, cn) in [(R, C), (R, 2), (R, 1), (1, C), (1, 1)] {
            let (wb, xb) = (&w[..rn * cols], &x[..cn * cols]);
            let (mut a, mut b) = ([[0f32; C]; R], [[0f32; C]; R]);
            simd.block(wb, xb, cols, &mut a);
            Kernel::Portable.block(wb, xb, cols, &mut b);
            for (ra, rb) in a.iter().zip(&b) {
                close(ra, rb, &format!("{rn} x {cn}"));
            }
        }
    }
}
