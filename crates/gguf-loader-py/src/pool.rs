//! Freed `dequantize` outputs, kept for the next call of the same size.
//!
//! A new output of megabytes costs a page fault and a page of kernel
//! zeroing per page before the decoder writes it: as much time as the
//! decoding itself on most types. Converting a model tensor by tensor asks
//! for the same few sizes again and again, so the last few freed outputs
//! (at most [`MAX_BUFFERS`], [`max_bytes`] in all, each at least
//! [`MIN_BYTES`]) are kept and decoded into again. `set_max_bytes(0)`
//! (Python: `gguf_loader.set_dequantize_cache(0)`) turns this off and
//! frees them.

use std::sync::{Mutex, MutexGuard};

use numpy::ndarray::ArrayView1;
use numpy::PyArray1;
use pyo3::prelude::*;

/// Outputs smaller than this come from malloc, which reuses them anyway.
pub(crate) const MIN_BYTES: usize = 1 << 20;
/// At most this many freed outputs are kept.
pub(crate) const MAX_BUFFERS: usize = 4;
/// The default bound on the bytes kept.
pub(crate) const DEFAULT_MAX_BYTES: usize = 256 << 20;

struct Pool {
    /// Most recently freed last.
    free: Vec<Vec<f32>>,
    max_bytes: usize,
}

impl Pool {
    fn bytes(&self) -> usize {
        self.free.iter().map(|v| v.len() * 4).sum()
    }

    fn trim(&mut self) {
        while self.free.len() > MAX_BUFFERS || self.bytes() > self.max_bytes {
            self.free.remove(0);
        }
    }
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    free: Vec::new(),
    max_bytes: DEFAULT_MAX_BYTES,
});

/// The pool, or `None` when its lock cannot be had
/// ([`try_lock_a_while`](crate::fork::try_lock_a_while)): the cache is then
/// skipped, not waited for.
fn pool() -> Option<MutexGuard<'static, Pool>> {
    crate::fork::try_lock_a_while(&POOL)
}

/// A kept buffer of exactly `n` values, if there is one. Its values are
/// old outputs: the caller overwrites every one.
pub(crate) fn take(n: usize) -> Option<Vec<f32>> {
    let mut pool = pool()?;
    let i = pool.free.iter().rposition(|v| v.len() == n)?;
    Some(pool.free.remove(i))
}

fn give(v: Vec<f32>) {
    if v.len() * 4 < MIN_BYTES {
        return;
    }
    if let Some(mut pool) = pool() {
        if v.len() * 4 <= pool.max_bytes {
            pool.free.push(v);
            pool.trim();
        }
    }
}

/// Sets the bound on the bytes kept (0: keep none) and returns the old one.
pub(crate) fn set_max_bytes(max: usize) -> usize {
    match pool() {
        Some(mut pool) => {
            let old = std::mem::replace(&mut pool.max_bytes, max);
            pool.trim();
            old
        }
        None => 0,
    }
}

/// Owns a `dequantize` output for the numpy array that views it (the
/// array's `base`), and hands it back to the pool when the last view goes.
#[pyclass(module = "gguf_loader._native", frozen)]
pub(crate) struct PooledOutput {
    /// The vector's parts: numpy writes through this pointer, so no Rust
    /// reference to the values is kept while the arrays live.
    ptr: usize,
    len: usize,
    cap: usize,
}

impl Drop for PooledOutput {
    fn drop(&mut self) {
        // SAFETY: the parts of a `Vec<f32>` taken apart by `into_array`
        // (`ManuallyDrop`), put together once, here, when the last numpy
        // array viewing it is gone.
        let v = unsafe { Vec::from_raw_parts(self.ptr as *mut f32, self.len, self.cap) };
        give(v);
    }
}

/// `v` as a 1-D, writeable numpy array without a copy; its memory goes back
/// to the pool with the array.
pub(crate) fn into_array(py: Python<'_>, v: Vec<f32>) -> PyResult<Bound<'_, PyArray1<f32>>> {
    let mut v = std::mem::ManuallyDrop::new(v);
    let (ptr, len, cap) = (v.as_mut_ptr(), v.len(), v.capacity());
    let owner = Bound::new(
        py,
        PooledOutput {
            ptr: ptr as usize,
            len,
            cap,
        },
    );
    let owner = match owner {
        Ok(o) => o,
        Err(e) => {
            // SAFETY: the parts just taken from `v`, which nothing else owns.
            drop(unsafe { Vec::from_raw_parts(ptr, len, cap) });
            return Err(e);
        }
    };
    // SAFETY: the `len` f32s at `ptr` are initialized and owned by `owner`,
    // which becomes the array's base: they are freed (or kept in the pool)
    // only when the array and every view of it are gone. Nothing in Rust
    // reads or writes them meanwhile, so numpy may write them.
    let view = unsafe { ArrayView1::from_shape_ptr(len, ptr as *const f32) };
    // SAFETY: as above; the memory outlives the array through `owner`.
    Ok(unsafe { PyArray1::borrow_from_array(&view, owner.into_any()) })
}
