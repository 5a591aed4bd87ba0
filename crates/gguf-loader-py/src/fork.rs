//! The pool the module decodes on, one per process: made at the
//! process's first decode, with [`gguf_loader::pool_threads`] threads
//! (`RAYON_NUM_THREADS` as rayon reads it, but cut at four per core: rayon's
//! own global pool would start ten thousand threads if asked, which takes
//! most of a minute).
//!
//! One per process because a pool does not survive `os.fork()`
//! (`multiprocessing`'s default start method on Linux before Python 3.14):
//! the child inherits the pool's state but none of its threads, so work
//! queued on it there would wait forever.

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

use pyo3::exceptions::PyRuntimeError;
use pyo3::PyResult;

/// This process's pool, with the process it belongs to (a child of a fork
/// makes its own again).
static POOL: Mutex<Option<(u32, Arc<rayon::ThreadPool>)>> = Mutex::new(None);

/// `lock`, or `None` when it cannot be had: it is only tried, a while
/// (another thread of this process may hold it for a moment), because a
/// lock held by a thread of the parent at an `os.fork()` stays held in the
/// child forever. A poisoned lock is taken as it is.
pub(crate) fn try_lock_a_while<T>(lock: &Mutex<T>) -> Option<MutexGuard<'_, T>> {
    for _ in 0..10_000 {
        match lock.try_lock() {
            Ok(guard) => return Some(guard),
            Err(TryLockError::Poisoned(p)) => return Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => std::thread::yield_now(),
        }
    }
    None
}

/// The pool this process decodes on.
fn process_pool() -> PyResult<Arc<rayon::ThreadPool>> {
    let pid = std::process::id();
    // A pool is made for this call where the lock cannot be had.
    let Some(mut slot) = try_lock_a_while(&POOL) else {
        return build(pid);
    };
    if let Some((owner, pool)) = slot.as_ref() {
        if *owner == pid {
            return Ok(pool.clone());
        }
    }
    let pool = build(pid)?;
    // The parent's pool (threads this process does not have) is left
    // alone, not dropped: dropping would signal threads that are not there.
    if let Some(old) = slot.replace((pid, pool.clone())) {
        std::mem::forget(old);
    }
    Ok(pool)
}

fn build(pid: u32) -> PyResult<Arc<rayon::ThreadPool>> {
    let pool = gguf_loader::pool_threads();
    if let Some(w) = pool.warning() {
        // Not eprintln!, which panics where standard error is closed or full.
        let _ = writeln!(std::io::stderr(), "gguf_loader: warning: {w}");
    }
    let n = pool.threads;
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .map(Arc::new)
        .map_err(|e| {
            PyRuntimeError::new_err(format!(
                "cannot start decoding threads in process {pid}: {e}"
            ))
        })
}

/// Runs `f`, whose parallel work goes to rayon's current pool, on this
/// process's pool.
pub(crate) fn run<R: Send>(f: impl FnOnce() -> R + Send) -> PyResult<R> {
    Ok(process_pool()?.install(f))
}
