//! The stand-in's forward kernels (this crate's Rust writing of them)
//! against the kernel text itself (`gguf-loader-llm`'s `kernels.cu`, the
//! one NVRTC compiles), run as host C++ with its thread blocks emulated
//! (`gguf_loader_cuda_host::forward`): the same launch, the same inputs,
//! every output bit for bit. The stand-in drives the whole GPU forward pass
//! in the tests (golden logits, the CPU's); this is what ties those results
//! to the CUDA source rather than to a copy of it.

use std::ffi::c_void;

use gguf_loader_cuda_host::forward as source;
use half::f16;

use super::{prepare, Kernel, ATT_TILE, THREADS};
use crate::mem;

/// xorshift64*: a fixed stream of test values.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn f32s(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.unit() * scale).collect()
    }
    fn f16s(&mut self, n: usize, scale: f32) -> Vec<u16> {
        (0..n)
            .map(|_| f16::from_f32(self.unit() * scale).to_bits())
            .collect()
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A kernel argument: a buffer (by its bytes), or a scalar.
enum Arg {
    Buf(Vec<u8>),
    I32(i32),
    U64(u64),
    F32(f32),
}

fn f32_buf(v: &[f32]) -> Arg {
    Arg::Buf(v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

fn u16_buf(v: &[u16]) -> Arg {
    Arg::Buf(v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

fn u32_buf(v: &[u32]) -> Arg {
    Arg::Buf(v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

/// The value behind one launch parameter (a pointer's, or a scalar's).
#[derive(Clone, Copy)]
#[repr(C, align(8))]
union Slot {
    u: u64,
    i: i32,
    f: f32,
}

/// A launch of `name`: `grid` blocks of 256 threads, `shared` bytes.
struct Case<'a> {
    name: &'a str,
    grid: u32,
    shared: usize,
    args: Vec<Arg>,
}

impl Case<'_> {
    /// The buffers after the stand-in's run of the launch.
    fn run_stand_in(&self) -> Vec<Vec<u8>> {
        let kernel = Kernel::find(self.name).expect("a forward kernel");
        let mut ptrs = Vec::new();
        let mut slots: Vec<Slot> = self
            .args
            .iter()
            .map(|a| match a {
                Arg::Buf(b) => {
                    let p = mem::alloc(b.len(), mem::Kind::Device, 0xEE).expect("fake memory");
                    // SAFETY: a fresh device allocation of b.len() bytes.
                    unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), p as *mut u8, b.len()) };
                    ptrs.push((p, b.len()));
                    Slot { u: p as u64 }
                }
                Arg::I32(i) => Slot { i: *i },
                Arg::U64(u) => Slot { u: *u },
                Arg::F32(f) => Slot { f: *f },
            })
            .collect();
        let params: Vec<*mut c_void> = slots
            .iter_mut()
            .map(|s| s as *mut Slot as *mut c_void)
            .collect();
        // SAFETY: one slot per parameter, each holding the parameter's type.
        let launch = unsafe { prepare(kernel, params.as_ptr(), self.grid, self.shared as u32) };
        launch
            .run()
            .unwrap_or_else(|e| panic!("{}: the stand-in refused: {e}", self.name));
        ptrs.into_iter()
            .map(|(p, len)| {
                // SAFETY: the live allocation made above.
                let out = unsafe { std::slice::from_raw_parts(p as *const u8, len) }.to_vec();
                assert!(mem::free(p, mem::Kind::Device));
                out
            })
            .collect()
    }

    /// The buffers after the kernel text's run of the launch, its threads
    /// resumed in `order`.
    fn run_source(&self, order: source::Order) -> Vec<Vec<u8>> {
        // u64 storage: every buffer 8-aligned, as device memory is (256).
        let mut bufs: Vec<Vec<u64>> = self
            .args
            .iter()
            .filter_map(|a| match a {
                Arg::Buf(b) => {
                    let mut w = vec![0u64; b.len().div_ceil(8).max(1)];
                    // SAFETY: `w` holds at least b.len() bytes.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            b.as_ptr(),
                            w.as_mut_ptr() as *mut u8,
                            b.len(),
                        )
                    };
                    Some(w)
                }
                _ => None,
            })
            .collect();
        let mut next = 0;
        let mut slots: Vec<Slot> = self
            .args
            .iter()
            .map(|a| match a {
                Arg::Buf(_) => {
                    next += 1;
                    Slot {
                        u: bufs[next - 1].as_mut_ptr() as u64,
                    }
                }
                Arg::I32(i) => Slot { i: *i },
                Arg::U64(u) => Slot { u: *u },
                Arg::F32(f) => Slot { f: *f },
            })
            .collect();
        let mut params: Vec<*mut c_void> = slots
            .iter_mut()
            .map(|s| s as *mut Slot as *mut c_void)
            .collect();
        // SAFETY: one slot per parameter of the kernel's signature; every
        // buffer is as large as the stand-in (which checks every range
        // against its allocations) found the launch to need.
        unsafe {
            source::launch(
                self.name,
                self.grid,
                THREADS as u32,
                self.shared,
                order,
                &mut params,
            )
        }
        .unwrap_or_else(|e| panic!("{}: the kernel text's run failed: {e}", self.name));
        let lens = self.args.iter().filter_map(|a| match a {
            Arg::Buf(b) => Some(b.len()),
            _ => None,
        });
        bufs.iter()
            .zip(lens)
            .map(|(w, len)| {
                // SAFETY: `w` holds at least `len` bytes.
                unsafe { std::slice::from_raw_parts(w.as_ptr() as *const u8, len) }.to_vec()
            })
            .collect()
    }

    /// The stand-in's run, and the kernel text's in each thread order,
    /// every buffer compared byte for byte (f32 and f16 values alike: a
    /// difference is reported at its byte).
    fn check(&self, what: &str) {
        // The stand-in first: it checks every range the launch touches, so
        // the unchecked host C++ runs never read outside their buffers.
        let ours = self.run_stand_in();
        for order in source::Order::ALL {
            self.compare(what, order, &ours, &self.run_source(order));
        }
    }

    fn compare(&self, what: &str, order: source::Order, ours: &[Vec<u8>], theirs: &[Vec<u8>]) {
        for (b, (o, t)) in ours.iter().zip(theirs).enumerate() {
            if let Some(at) = o.iter().zip(t).position(|(a, b)| a != b) {
                panic!(
                    "{} ({what}, threads {order:?}): buffer {b} differs at byte {at}: stand-in {:02x?}, kernel text {:02x?}",
                    self.name,
                    &o[at & !3..(at & !3) + 4.min(o.len() - (at & !3))],
                    &t[at & !3..(at & !3) + 4.min(t.len() - (at & !3))],
                );
            }
        }
    }
}

/// Blocks for `n` values at 256 per block, as the GPU host code launches
/// its element-wise kernels (grid-stride beyond 65535 blocks).
fn elementwise_grid(n: usize) -> u32 {
    n.div_ceil(THREADS).clamp(1, 65535) as u32
}

#[test]
fn the_kernel_text_lists_every_kernel_of_the_stand_in() {
    for name in source::FORWARD_KERNELS {
        assert!(Kernel::find(name).is_some(), "{name}: not in the stand-in");
    }
    assert_eq!(source::FORWARD_KERNELS.len(), 10);
}

#[test]
fn embed_rms_norm_to_f16_match_the_kernel_text() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    for &(rows, d, scale) in &[(1, 1, 1.0f32), (3, 64, 1.0), (5, 576, 24.0), (2, 300, 0.5)] {
        let vocab = 17;
        let table = r.f16s(vocab * d, 2.0);
        let ids: Vec<u32> = (0..rows).map(|_| r.below(vocab) as u32).collect();
        Case {
            name: "embed",
            grid: rows as u32,
            shared: 0,
            args: vec![
                u16_buf(&table),
                u32_buf(&ids),
                f32_buf(&vec![0.0; rows * d]),
                Arg::I32(d as i32),
                Arg::F32(scale),
            ],
        }
        .check(&format!("{rows} rows of {d}"));
    }
    for &(rows, dim, eps) in &[
        (1, 1, 1e-5f32),
        (2, 7, 1e-6),
        (3, 256, 1e-5),
        (4, 576, 1e-5),
        (2, 1000, 1e-6),
        (1, 2048, 1e-5),
    ] {
        let x = r.f32s(rows * dim, 3.0);
        let w = r.f32s(dim, 1.5);
        Case {
            name: "rms_norm",
            grid: rows as u32,
            shared: 0,
            args: vec![
                f32_buf(&x),
                f32_buf(&w),
                Arg::I32(dim as i32),
                Arg::F32(eps),
            ],
        }
        .check(&format!("{rows} rows of {dim}"));
    }
    for &n in &[1usize, 255, 256, 257, 5000] {
        let mut x = r.f32s(n, 70000.0);
        // Edges: overflow to infinity, subnormal f16, ties, NaN.
        let edges = [
            65520.0f32,
            65519.0,
            1e-7,
            6.0e-8,
            2.9e-8,
            -0.0,
            f32::NAN,
            1.0 + 1.0 / 2048.0,
        ];
        for (v, e) in x.iter_mut().zip(edges) {
            *v = e;
        }
        Case {
            name: "to_f16",
            grid: elementwise_grid(n),
            shared: 0,
            args: vec![f32_buf(&x), u16_buf(&vec![0; n]), Arg::U64(n as u64)],
        }
        .check(&format!("{n} values"));
    }
}

#[test]
fn rope_and_elementwise_kernels_match_the_kernel_text() {
    let mut r = Rng(0x0123_4567_89ab_cdef);
    // (rows, heads, head dim, rotated pairs, neox)
    for &(rows, heads, hd, half, neox) in &[
        (1, 1, 2, 1, 0),
        (3, 9, 64, 32, 0),
        (2, 4, 64, 32, 1),
        (2, 3, 128, 16, 1),
        (1, 8, 256, 128, 1),
    ] {
        let x = r.f32s(rows * heads * hd, 2.0);
        let cs = r.f32s(rows * half * 2, 1.0);
        Case {
            name: "rope",
            grid: (rows * heads) as u32,
            shared: 0,
            args: vec![
                f32_buf(&x),
                f32_buf(&cs),
                Arg::I32(heads as i32),
                Arg::I32(hd as i32),
                Arg::I32(half as i32),
                Arg::I32(neox),
            ],
        }
        .check(&format!(
            "{rows} x {heads} heads of {hd}, {half} pairs, neox {neox}"
        ));
    }
    for &n in &[1usize, 300, 1536, 70_000] {
        for gelu in [0, 1] {
            let g = r.f32s(n, 8.0);
            let u = r.f32s(n, 2.0);
            Case {
                name: "act_mul",
                grid: elementwise_grid(n),
                shared: 0,
                args: vec![f32_buf(&g), f32_buf(&u), Arg::U64(n as u64), Arg::I32(gelu)],
            }
            .check(&format!("{n} values, gelu {gelu}"));
        }
        let x = r.f32s(n, 4.0);
        let y = r.f32s(n, 4.0);
        Case {
            name: "add",
            grid: elementwise_grid(n),
            shared: 0,
            args: vec![f32_buf(&x), f32_buf(&y), Arg::U64(n as u64)],
        }
        .check(&format!("{n} values"));
        let x = r.f32s(n, 100.0);
        Case {
            name: "softcap",
            grid: elementwise_grid(n),
            shared: 0,
            args: vec![f32_buf(&x), Arg::U64(n as u64), Arg::F32(30.0)],
        }
        .check(&format!("{n} values"));
        let mut x = r.f32s(n, 1.0);
        for i in (0..n).step_by(97) {
            x[i] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][i % 3];
        }
        Case {
            name: "count_nonfinite",
            grid: elementwise_grid(n),
            shared: 0,
            // The count starts at 5: the kernel adds to it.
            args: vec![f32_buf(&x), Arg::U64(n as u64), u32_buf(&[5])],
        }
        .check(&format!("{n} values"));
    }
}

#[test]
fn attention_matches_the_kernel_text() {
    let mut r = Rng(0xfeed_face_cafe_beef);
    // (query rows, heads, group, head dim, start, window, shift: position
    // p at row p - shift, as in a sliding-window layer's ring)
    for &(rows, n_head, group, hd, start, window, shift) in &[
        (1, 1, 1, 2, 0, 0, 0),
        (1, 9, 3, 64, 0, 0, 0),
        (4, 9, 3, 64, 0, 0, 0),
        (3, 9, 3, 64, 20, 0, 0),
        (2, 4, 4, 256, 300, 0, 0),
        (2, 4, 2, 64, 600, 512, 0),
        (2, 4, 2, 64, 600, 512, 89),
        (5, 3, 1, 32, 7, 4, 0),
        (5, 3, 1, 32, 7, 4, 4),
        // Past a tile of scores: two tiles, three, a window wider than a
        // tile (and shifted), and a batch whose rows cross from one path
        // to the other.
        (2, 2, 1, 16, 8200, 0, 0),
        (1, 2, 2, 64, 16400, 0, 0),
        (2, 2, 1, 8, 9000, 8500, 0),
        (2, 2, 1, 8, 9000, 8500, 500),
        (4, 2, 1, 16, 8190, 0, 0),
    ] {
        let kv_dim = n_head / group * hd;
        let span = start + rows;
        let q = r.f32s(rows * n_head * hd, 2.0);
        let k = r.f16s((span - shift) * kv_dim, 2.0);
        let v = r.f16s((span - shift) * kv_dim, 1.0);
        Case {
            name: "attention",
            grid: (rows * n_head) as u32,
            shared: if span <= ATT_TILE {
                span * 4
            } else {
                (ATT_TILE + hd) * 4
            },
            args: vec![
                f32_buf(&q),
                u16_buf(&k),
                u16_buf(&v),
                f32_buf(&vec![0.0; rows * n_head * hd]),
                Arg::I32(n_head as i32),
                Arg::I32(group as i32),
                Arg::I32(hd as i32),
                Arg::I32(kv_dim as i32),
                Arg::I32(start as i32),
                Arg::I32(window),
                Arg::I32(shift as i32),
                Arg::F32(1.0 / (hd as f32).sqrt()),
            ],
        }
        .check(&format!(
            "{rows} rows x {n_head} heads / {group}, head {hd}, from {start}, window {window}, \
             shift {shift}"
        ));
    }
}

#[test]
fn matmul_ggml_matches_the_kernel_text() {
    let mut r = Rng(0x5151_5151_2323_2323);
    // (rows, cols, inputs): whole 32s, tails only, both, SmolLM2's 576.
    for &(rows, cols, n) in &[
        (1, 1, 1),
        (3, 31, 1),
        (5, 32, 2),
        (7, 100, 3),
        (9, 576, 2),
        (2, 1536, 1),
    ] {
        let w = r.f16s(rows * cols, 1.0);
        let x = r.f16s(n * cols, 4.0);
        Case {
            name: "matmul_ggml",
            grid: (rows * n * 32).div_ceil(THREADS) as u32,
            shared: 0,
            args: vec![
                u16_buf(&w),
                u16_buf(&x),
                f32_buf(&vec![0.0; rows * n]),
                Arg::I32(rows as i32),
                Arg::I32(cols as i32),
                Arg::I32(n as i32),
            ],
        }
        .check(&format!("{rows} x {cols}, {n} inputs"));
    }
}

#[test]
fn the_emulation_catches_a_misused_launch() {
    let mut params: Vec<*mut c_void> = Vec::new();
    // SAFETY: the names are refused before any argument is read.
    let e = unsafe {
        source::launch(
            "no_such_kernel",
            1,
            256,
            0,
            source::Order::Ascending,
            &mut params,
        )
    };
    assert_eq!(
        e,
        Err(source::ForwardError::NoKernel("no_such_kernel".into()))
    );
    let mut x = [0f32; 4];
    let mut p = x.as_mut_ptr() as u64;
    let mut n = 4u64;
    let mut c = 1f32;
    let mut params = [
        &mut p as *mut u64 as *mut c_void,
        &mut n as *mut u64 as *mut c_void,
        &mut c as *mut f32 as *mut c_void,
    ];
    for (grid, block) in [(0, 256), (1, 0), (1, 1025)] {
        // SAFETY: softcap's arguments; 4 values of x.
        let e = unsafe {
            source::launch(
                "softcap",
                grid,
                block,
                0,
                source::Order::Ascending,
                &mut params,
            )
        };
        assert_eq!(e, Err(source::ForwardError::BadLaunch), "{grid} x {block}");
    }
    assert_eq!(
        source::selftest_diverged(),
        Err(source::ForwardError::Diverged)
    );
}
