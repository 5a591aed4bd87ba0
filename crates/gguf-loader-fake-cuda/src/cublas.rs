//! The part of cuBLAS (`libcublas.so`) the GPU forward pass uses: a handle
//! bound to a stream, and `cublasGemmEx` with f16 or f32 inputs, f32
//! output and f32 accumulation, run in that stream's order. Every matrix's
//! extent (from its shape, transposition and leading dimension) is checked
//! against the device allocations before it runs.

use std::ffi::{c_int, c_void};

use half::f16;

use crate::{enqueue, fault, mem};

type Status = c_int;
const SUCCESS: Status = 0;
const NOT_INITIALIZED: Status = 1;
const INVALID_VALUE: Status = 7;
const NOT_SUPPORTED: Status = 15;

/// `cudaDataType_t` values.
const R_32F: c_int = 0;
const R_16F: c_int = 2;
/// `cublasComputeType_t`: CUBLAS_COMPUTE_32F.
const COMPUTE_32F: c_int = 68;

/// A handle: the stream its work goes to.
struct Handle {
    stream: usize,
}

#[no_mangle]
pub unsafe extern "C" fn cublasCreate_v2(h: *mut *mut c_void) -> Status {
    if h.is_null() {
        return INVALID_VALUE;
    }
    // SAFETY: the caller's out-pointer, checked non-null.
    unsafe { *h = Box::into_raw(Box::new(Handle { stream: 0 })).cast() };
    SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cublasDestroy_v2(h: *mut c_void) -> Status {
    if h.is_null() {
        return NOT_INITIALIZED;
    }
    // SAFETY: a handle of `cublasCreate_v2`, destroyed once (the caller's
    // contract).
    drop(unsafe { Box::from_raw(h.cast::<Handle>()) });
    SUCCESS
}

#[no_mangle]
pub unsafe extern "C" fn cublasSetStream_v2(h: *mut c_void, stream: usize) -> Status {
    if h.is_null() {
        return NOT_INITIALIZED;
    }
    // SAFETY: a live handle (the caller's contract).
    unsafe { (*h.cast::<Handle>()).stream = stream };
    SUCCESS
}

/// One matrix operand: its address, element type, stored rows (the leading
/// dimension) and the extent in elements it spans.
struct Operand {
    p: u64,
    ty: c_int,
    ld: usize,
}

impl Operand {
    /// Element `(r, c)` of the stored (column-major) matrix, as f32.
    ///
    /// # Safety
    /// The operand's extent was checked to lie in device memory.
    unsafe fn get(&self, r: usize, c: usize) -> f32 {
        let i = c * self.ld + r;
        // SAFETY: the caller's.
        unsafe {
            if self.ty == R_16F {
                f16::from_bits(*(self.p as *const u16).add(i)).to_f32()
            } else {
                *(self.p as *const f32).add(i)
            }
        }
    }

    /// Writes element `(r, c)`, rounded to the operand's type.
    ///
    /// # Safety
    /// As [`Operand::get`].
    unsafe fn set(&self, r: usize, c: usize, v: f32) {
        let i = c * self.ld + r;
        // SAFETY: the caller's.
        unsafe {
            if self.ty == R_16F {
                *(self.p as *mut u16).add(i) = f16::from_f32(v).to_bits();
            } else {
                *(self.p as *mut f32).add(i) = v;
            }
        }
    }

    /// Whether the stored `rows × cols` matrix lies in one device
    /// allocation.
    fn fits(&self, rows: usize, cols: usize) -> bool {
        let size = if self.ty == R_16F { 2 } else { 4 };
        if rows == 0 || cols == 0 {
            return true;
        }
        let elems = (cols - 1)
            .checked_mul(self.ld)
            .and_then(|e| e.checked_add(rows));
        elems
            .and_then(|e| e.checked_mul(size))
            .is_some_and(|bytes| self.ld >= rows && mem::is_device(self.p as usize, bytes))
    }
}

#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn cublasGemmEx(
    h: *mut c_void,
    transa: c_int,
    transb: c_int,
    m: c_int,
    n: c_int,
    k: c_int,
    alpha: *const c_void,
    a: *const c_void,
    a_type: c_int,
    lda: c_int,
    b: *const c_void,
    b_type: c_int,
    ldb: c_int,
    beta: *const c_void,
    c: *mut c_void,
    c_type: c_int,
    ldc: c_int,
    compute: c_int,
    _algo: c_int,
) -> Status {
    if h.is_null() {
        return NOT_INITIALIZED;
    }
    if m < 0 || n < 0 || k < 0 || lda < 1 || ldb < 1 || ldc < 1 || alpha.is_null() || beta.is_null()
    {
        return INVALID_VALUE;
    }
    if !(0..=1).contains(&transa) || !(0..=1).contains(&transb) {
        return NOT_SUPPORTED;
    }
    let ok_in = |t| t == R_16F || t == R_32F;
    if !ok_in(a_type) || !ok_in(b_type) || !ok_in(c_type) || compute != COMPUTE_32F {
        return NOT_SUPPORTED;
    }
    // SAFETY: a live handle; host scalars (the default pointer mode), read
    // now as cuBLAS reads them at the call.
    let (stream, alpha, beta) = unsafe {
        (
            (*h.cast::<Handle>()).stream,
            *alpha.cast::<f32>(),
            *beta.cast::<f32>(),
        )
    };
    let (m, n, k) = (m as usize, n as usize, k as usize);
    let a = Operand {
        p: a as u64,
        ty: a_type,
        ld: lda as usize,
    };
    let b = Operand {
        p: b as u64,
        ty: b_type,
        ld: ldb as usize,
    };
    let cp = c as u64;
    let ldc = ldc as usize;
    let (ta, tb) = (transa == 1, transb == 1);
    let op = move || {
        // Stored shapes: op(A) is m × k, op(B) k × n.
        let (ar, ac) = if ta { (k, m) } else { (m, k) };
        let (br, bc) = if tb { (n, k) } else { (k, n) };
        let out = Operand {
            p: cp,
            ty: c_type,
            ld: ldc,
        };
        if !a.fits(ar, ac) || !b.fits(br, bc) || !out.fits(m, n) {
            return fault(format!(
                "cublasGemmEx m={m} n={n} k={k} lda={} ldb={} ldc={ldc}: an operand is not inside one live device allocation",
                a.ld, b.ld
            ));
        }
        gemm(&a, &b, &out, (m, n, k), (ta, tb), (alpha, beta));
    };
    match enqueue(stream, Box::new(op)) {
        0 => SUCCESS,
        _ => INVALID_VALUE,
    }
}

/// C = alpha · op(A) · op(B) + beta · C, accumulated in f32 (eight lanes,
/// then their sum: cuBLAS's order is its own too), over the host's cores.
fn gemm(
    a: &Operand,
    b: &Operand,
    c: &Operand,
    (m, n, k): (usize, usize, usize),
    (ta, tb): (bool, bool),
    (alpha, beta): (f32, f32),
) {
    // SAFETY (both closures): the extents were checked by the caller.
    let row_a = |i: usize| -> Vec<f32> {
        (0..k)
            .map(|kk| unsafe {
                if ta {
                    a.get(kk, i)
                } else {
                    a.get(i, kk)
                }
            })
            .collect()
    };
    let col_b: Vec<Vec<f32>> = (0..n)
        .map(|j| {
            (0..k)
                .map(|kk| unsafe {
                    if tb {
                        b.get(j, kk)
                    } else {
                        b.get(kk, j)
                    }
                })
                .collect()
        })
        .collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |t| t.get())
        .min(16);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (row_a, col_b) = (&row_a, &col_b);
            s.spawn(move || {
                for i in (t..m).step_by(threads) {
                    let ar = row_a(i);
                    for (j, bc) in col_b.iter().enumerate() {
                        let mut lanes = [0f32; 8];
                        let (ac, bcs) = (ar.chunks_exact(8), bc.chunks_exact(8));
                        let (at, bt) = (ac.remainder(), bcs.remainder());
                        for (x, y) in ac.zip(bcs) {
                            for l in 0..8 {
                                lanes[l] += x[l] * y[l];
                            }
                        }
                        let mut s: f32 = lanes.iter().sum();
                        for (x, y) in at.iter().zip(bt) {
                            s += x * y;
                        }
                        // SAFETY: (i, j) lies in C's checked extent; each
                        // element is written by one thread.
                        unsafe {
                            let v = if beta == 0.0 {
                                alpha * s
                            } else {
                                alpha * s + beta * c.get(i, j)
                            };
                            c.set(i, j, v);
                        }
                    }
                }
            });
        }
    });
}
