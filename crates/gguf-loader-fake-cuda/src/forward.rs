//! The forward pass's kernels (`gguf-loader-llm`'s `forward/cuda.rs`),
//! written again in Rust from their CUDA source, block by block, with the
//! same reductions (256 strided partial sums, then a tree), so that the
//! GPU forward pass's host code (buffer sizes, offsets into the KV cache,
//! arguments in signature order, launch shapes) runs against the stand-in
//! driver. Every range a kernel would touch is checked against the device
//! allocations before it runs: a launch that would read or write outside
//! them is a fault, not a wrong number. `forward_tests.rs` holds every
//! kernel here equal, bit for bit, to the CUDA text itself run as host C++.

use half::f16;

use crate::mem;

/// Threads per block of every forward kernel (their `THREADS`).
const THREADS: usize = 256;

/// The attention's tile of scores (its `ATT_TILE`).
const ATT_TILE: usize = 8192;

/// The forward kernels, by their symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    Embed,
    RmsNorm,
    ToF16,
    Rope,
    Attention,
    ActMul,
    Add,
    Softcap,
    CountNonfinite,
    MatmulGgml,
}

impl Kernel {
    /// The kernel of symbol `name`.
    pub fn find(name: &str) -> Option<Kernel> {
        Some(match name {
            "embed" => Kernel::Embed,
            "rms_norm" => Kernel::RmsNorm,
            "to_f16" => Kernel::ToF16,
            "rope" => Kernel::Rope,
            "attention" => Kernel::Attention,
            "act_mul" => Kernel::ActMul,
            "add" => Kernel::Add,
            "softcap" => Kernel::Softcap,
            "count_nonfinite" => Kernel::CountNonfinite,
            "matmul_ggml" => Kernel::MatmulGgml,
            _ => return None,
        })
    }

    /// The kinds of its parameters, in signature order.
    fn params(self) -> &'static [P] {
        use P::*;
        match self {
            Kernel::Embed => &[Ptr, Ptr, Ptr, I32, F32],
            Kernel::RmsNorm => &[Ptr, Ptr, I32, F32],
            Kernel::ToF16 => &[Ptr, Ptr, U64],
            Kernel::Rope => &[Ptr, Ptr, I32, I32, I32, I32],
            Kernel::Attention => &[Ptr, Ptr, Ptr, Ptr, I32, I32, I32, I32, I32, I32, I32, F32],
            Kernel::ActMul => &[Ptr, Ptr, U64, I32],
            Kernel::Add => &[Ptr, Ptr, U64],
            Kernel::Softcap => &[Ptr, U64, F32],
            Kernel::CountNonfinite => &[Ptr, U64, Ptr],
            Kernel::MatmulGgml => &[Ptr, Ptr, Ptr, I32, I32, I32],
        }
    }
}

/// A parameter's C type.
#[derive(Debug, Clone, Copy)]
enum P {
    /// A device pointer (64 bits).
    Ptr,
    /// `unsigned long long`.
    U64,
    /// `int`.
    I32,
    /// `float`.
    F32,
}

/// A launch's arguments, read when it was made.
#[derive(Debug, Clone, Copy)]
enum Arg {
    U(u64),
    I(i32),
    F(f32),
}

impl Arg {
    fn u(self) -> u64 {
        match self {
            Arg::U(v) => v,
            _ => unreachable!("by the signature"),
        }
    }
    fn i(self) -> i32 {
        match self {
            Arg::I(v) => v,
            _ => unreachable!("by the signature"),
        }
    }
    fn f(self) -> f32 {
        match self {
            Arg::F(v) => v,
            _ => unreachable!("by the signature"),
        }
    }
}

/// One launch, ready to run on a stream.
pub struct Launch {
    kernel: Kernel,
    args: Vec<Arg>,
    grid: usize,
    shared: usize,
}

/// Reads the launch's arguments from the driver's parameter array.
///
/// # Safety
/// `params` holds one pointer per parameter of `kernel`, each to a value of
/// the parameter's type (the driver API's contract).
pub unsafe fn prepare(
    kernel: Kernel,
    params: *const *mut std::ffi::c_void,
    grid: u32,
    shared: u32,
) -> Launch {
    let args = kernel
        .params()
        .iter()
        .enumerate()
        .map(|(i, p)| {
            // SAFETY: the caller's: parameter `i` points to a value of type `p`.
            unsafe {
                let a = *params.add(i);
                match p {
                    P::Ptr | P::U64 => Arg::U(*(a as *const u64)),
                    P::I32 => Arg::I(*(a as *const i32)),
                    P::F32 => Arg::F(*(a as *const f32)),
                }
            }
        })
        .collect();
    Launch {
        kernel,
        args,
        grid: grid as usize,
        shared: shared as usize,
    }
}

/// A typed view of device memory, checked to lie in one live allocation.
fn view<'a, T>(what: &str, p: u64, len: usize) -> Result<&'a mut [T], String> {
    let bytes = len
        .checked_mul(std::mem::size_of::<T>())
        .ok_or_else(|| format!("{what}: {len} values overflow"))?;
    if !(p as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(format!("{what}: {p:#x} misaligned"));
    }
    if !mem::is_device(p as usize, bytes) {
        return Err(format!(
            "{what}: {bytes} bytes at {p:#x} are not inside one live device allocation"
        ));
    }
    // SAFETY: a live device allocation holds the range (checked above), and
    // only this stream's kernel works on it now (the host code's stream
    // order, which the real GPU would need as well).
    Ok(unsafe { std::slice::from_raw_parts_mut(p as *mut T, len) })
}

fn nonneg(what: &str, v: i32) -> Result<usize, String> {
    usize::try_from(v).map_err(|_| format!("{what} = {v}"))
}

/// The sum of `f(i)` over `0..n` as a 256-thread block sums it: each thread
/// its strided share, then a tree over the threads.
fn block_sum<T: Copy + std::ops::Add<Output = T>>(n: usize, zero: T, f: impl Fn(usize) -> T) -> T {
    let mut part = [zero; THREADS];
    for (t, p) in part.iter_mut().enumerate() {
        let mut s = zero;
        let mut i = t;
        while i < n {
            s = s + f(i);
            i += THREADS;
        }
        *p = s;
    }
    let mut k = THREADS / 2;
    while k > 0 {
        for t in 0..k {
            part[t] = part[t] + part[t + k];
        }
        k /= 2;
    }
    part[0]
}

fn r16(x: f32) -> f32 {
    f16::from_f32(x).to_f32()
}

impl Launch {
    /// Runs the launch: every block, in order. `Err` names what it would
    /// have touched outside device memory (the blocks before it may have
    /// been written).
    pub fn run(&self) -> Result<(), String> {
        let a = &self.args;
        let name = format!("{:?}", self.kernel);
        let n_blocks = self.grid;
        match self.kernel {
            Kernel::Embed => {
                let d = nonneg("d", a[3].i())?;
                let ids = view::<u32>(&name, a[1].u(), n_blocks)?.to_vec();
                let out = view::<f32>(&name, a[2].u(), n_blocks * d)?;
                let scale = a[4].f();
                for (b, &id) in ids.iter().enumerate() {
                    let row = view::<u16>(&name, a[0].u() + id as u64 * d as u64 * 2, d)?;
                    for (o, &h) in out[b * d..(b + 1) * d].iter_mut().zip(row.iter()) {
                        *o = f16::from_bits(h).to_f32() * scale;
                    }
                }
            }
            Kernel::RmsNorm => {
                let dim = nonneg("dim", a[2].i())?;
                let x = view::<f32>(&name, a[0].u(), n_blocks * dim)?;
                let w = view::<f32>(&name, a[1].u(), dim)?.to_vec();
                let eps = a[3].f();
                for row in x.chunks_exact_mut(dim.max(1)).take(n_blocks) {
                    let s = block_sum(dim, 0f64, |i| {
                        let v = row[i] as f64;
                        v * v
                    });
                    let mean = (s / dim as f64) as f32;
                    let scale = 1.0f32 / (mean + eps).sqrt();
                    for (v, w) in row.iter_mut().zip(&w) {
                        *v = *v * scale * *w;
                    }
                }
            }
            Kernel::ToF16 => {
                let n = a[2].u() as usize;
                let x = view::<f32>(&name, a[0].u(), n)?;
                let y = view::<u16>(&name, a[1].u(), n)?;
                for (y, &x) in y.iter_mut().zip(x.iter()) {
                    *y = f16::from_f32(x).to_bits();
                }
            }
            Kernel::Rope => {
                let (n_heads, hd, half) = (
                    nonneg("n_heads", a[2].i())?,
                    nonneg("hd", a[3].i())?,
                    nonneg("half", a[4].i())?,
                );
                let neox = a[5].i() != 0;
                if n_heads == 0 || 2 * half > hd {
                    return Err(format!(
                        "{name}: n_heads {n_heads}, half {half} of head {hd}"
                    ));
                }
                let x = view::<f32>(&name, a[0].u(), n_blocks * hd)?;
                let rows = n_blocks.div_ceil(n_heads);
                let cs = view::<f32>(&name, a[1].u(), rows * half * 2)?.to_vec();
                for (blk, head) in x.chunks_exact_mut(hd.max(1)).take(n_blocks).enumerate() {
                    let t = &cs[blk / n_heads * half * 2..];
                    for i in 0..half {
                        let (ia, ib) = if neox {
                            (i, i + half)
                        } else {
                            (2 * i, 2 * i + 1)
                        };
                        let (c, s, x0, x1) = (t[2 * i], t[2 * i + 1], head[ia], head[ib]);
                        head[ia] = x0 * c - x1 * s;
                        head[ib] = x0 * s + x1 * c;
                    }
                }
            }
            Kernel::Attention => self.attention(&name)?,
            Kernel::ActMul => {
                let n = a[2].u() as usize;
                let g = view::<f32>(&name, a[0].u(), n)?;
                let u = view::<f32>(&name, a[1].u(), n)?;
                let gelu = a[3].i() != 0;
                for (g, &u) in g.iter_mut().zip(u.iter()) {
                    let x = *g;
                    let act = if gelu {
                        0.5f32
                            * x
                            * (1.0f32
                                + (0.797_884_6f32 * x * (1.0f32 + 0.044715f32 * x * x)).tanh())
                    } else {
                        x / (1.0f32 + (-x).exp())
                    };
                    *g = act * u;
                }
            }
            Kernel::Add => {
                let n = a[2].u() as usize;
                let x = view::<f32>(&name, a[0].u(), n)?;
                let y = view::<f32>(&name, a[1].u(), n)?;
                for (x, &y) in x.iter_mut().zip(y.iter()) {
                    *x += y;
                }
            }
            Kernel::Softcap => {
                let n = a[1].u() as usize;
                let c = a[2].f();
                for x in view::<f32>(&name, a[0].u(), n)? {
                    *x = (*x / c).tanh() * c;
                }
            }
            Kernel::MatmulGgml => {
                let (rows, cols, n) = (
                    nonneg("rows", a[3].i())?,
                    nonneg("cols", a[4].i())?,
                    nonneg("n", a[5].i())?,
                );
                if self.grid * THREADS / 32 < rows * n {
                    return Err(format!(
                        "{name}: {} warps for {rows} x {n} dot products",
                        self.grid * THREADS / 32
                    ));
                }
                let w = view::<u16>(&name, a[0].u(), rows * cols)?.to_vec();
                let x = view::<u16>(&name, a[1].u(), n * cols)?.to_vec();
                let y = view::<f32>(&name, a[2].u(), rows * n)?;
                let h2f = |h: u16| f16::from_bits(h).to_f32();
                let body = cols - cols % 32;
                for j in 0..n {
                    let xr = &x[j * cols..(j + 1) * cols];
                    for i in 0..rows {
                        let wr = &w[i * cols..(i + 1) * cols];
                        // Lane t: the fused sum of columns t, t + 32, ...
                        let mut p = [0f32; 32];
                        for k in 0..body {
                            p[k % 32] = h2f(wr[k]).mul_add(h2f(xr[k]), p[k % 32]);
                        }
                        // The warp's shuffles: +16, +8, +4, +1, +2.
                        for off in [16, 8, 4, 1, 2] {
                            for t in 0..32 - off {
                                p[t] += p[t + off];
                            }
                        }
                        let mut t = p[0] as f64;
                        for k in body..cols {
                            t += (h2f(wr[k]) * h2f(xr[k])) as f64;
                        }
                        y[j * rows + i] = t as f32;
                    }
                }
            }
            Kernel::CountNonfinite => {
                let n = a[1].u() as usize;
                let bad = view::<f32>(&name, a[0].u(), n)?
                    .iter()
                    .filter(|v| !v.is_finite())
                    .count();
                let count = view::<u32>(&name, a[2].u(), 1)?;
                count[0] = count[0].wrapping_add(bad as u32);
            }
        }
        Ok(())
    }

    /// One block per (query row, head), position `p` at row `p - shift` of
    /// the cache: scores into the dynamic shared memory (checked to hold
    /// them), softmax, the weighted values; a span
    /// past [`ATT_TILE`] tile by tile, with a running maximum and sum and
    /// the outputs after the tile in shared memory.
    fn attention(&self, name: &str) -> Result<(), String> {
        let a = &self.args;
        let n_head = nonneg("n_head", a[4].i())?;
        let group = nonneg("group", a[5].i())?;
        let hd = nonneg("hd", a[6].i())?;
        let kv_dim = nonneg("kv_dim", a[7].i())?;
        let start = nonneg("start", a[8].i())?;
        let window = nonneg("window", a[9].i())?;
        let shift = nonneg("shift", a[10].i())?;
        let scale = a[11].f();
        if n_head == 0 || group == 0 || n_head % group != 0 || (n_head / group) * hd > kv_dim {
            return Err(format!(
                "{name}: {n_head} heads in groups of {group}, head {hd}, kv_dim {kv_dim}"
            ));
        }
        let rows = self.grid.div_ceil(n_head);
        let q = view::<f32>(name, a[0].u(), self.grid * hd)?.to_vec();
        // Position p at row p - shift: the rows from the first query's
        // first position to the last query's.
        let span = start + rows;
        let first = if window > 0 {
            (start + 1).saturating_sub(window)
        } else {
            0
        };
        if shift > first {
            return Err(format!(
                "{name}: shift {shift} puts position {first} before the cache"
            ));
        }
        let k = view::<u16>(name, a[1].u(), (span - shift) * kv_dim)?.to_vec();
        let v = view::<u16>(name, a[2].u(), (span - shift) * kv_dim)?.to_vec();
        let out = view::<f32>(name, a[3].u(), self.grid * hd)?;
        let h2f = |h: u16| f16::from_bits(h).to_f32();
        for blk in 0..self.grid {
            let (i, h) = (blk / n_head, blk % n_head);
            let pos = start + i;
            let lo = if window > 0 {
                (pos + 1).saturating_sub(window)
            } else {
                0
            };
            let len = pos - lo + 1;
            let need = if len <= ATT_TILE {
                len * 4
            } else {
                (ATT_TILE + hd) * 4
            };
            if need > self.shared {
                return Err(format!(
                    "{name}: {len} positions need {need} bytes of shared memory, the launch gave {}",
                    self.shared
                ));
            }
            let qh = &q[blk * hd..(blk + 1) * hd];
            let kvh = h / group;
            let row0 = lo - shift;
            let score = |j: usize| {
                let kj = &k[(row0 + j) * kv_dim + kvh * hd..][..hd];
                let mut s = 0f32;
                for d in 0..hd {
                    s += r16(qh[d]) * h2f(kj[d]);
                }
                s * scale
            };
            let value = |j: usize, d: usize| h2f(v[(row0 + j) * kv_dim + kvh * hd + d]);
            let o = &mut out[blk * hd..(blk + 1) * hd];
            if len <= ATT_TILE {
                let mut sc: Vec<f32> = (0..len).map(score).collect();
                let m = sc.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                for x in sc.iter_mut() {
                    *x = (*x - m).exp();
                }
                let inv = 1.0f32 / block_sum(len, 0f32, |j| sc[j]);
                for (d, o) in o.iter_mut().enumerate() {
                    let mut acc = 0f32;
                    for (j, &s) in sc.iter().enumerate() {
                        acc += s * inv * value(j, d);
                    }
                    *o = acc;
                }
                continue;
            }
            let mut acc = vec![0f32; hd];
            let (mut m_run, mut s_run) = (f32::NEG_INFINITY, 0f32);
            let mut t0 = 0;
            while t0 < len {
                let tl = ATT_TILE.min(len - t0);
                let mut sc: Vec<f32> = (0..tl).map(|j| score(t0 + j)).collect();
                let m = sc.iter().fold(m_run, |m, &x| m.max(x));
                let corr = (m_run - m).exp();
                for x in sc.iter_mut() {
                    *x = (*x - m).exp();
                }
                s_run = s_run * corr + block_sum(tl, 0f32, |j| sc[j]);
                m_run = m;
                for (d, a) in acc.iter_mut().enumerate() {
                    let mut x = *a * corr;
                    for (j, &s) in sc.iter().enumerate() {
                        x += s * value(t0 + j, d);
                    }
                    *a = x;
                }
                t0 += ATT_TILE;
            }
            let inv = 1.0f32 / s_run;
            for (o, a) in o.iter_mut().zip(&acc) {
                *o = a * inv;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "forward_tests.rs"]
mod tests;
