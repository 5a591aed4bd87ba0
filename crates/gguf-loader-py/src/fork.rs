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
use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyRuntimeError;
use pyo3::PyResult;

/// This process's pool, with the process it belongs to (a child of a fork
/// makes its own again).
static POOL: Mutex<Option<(u32, Arc<rayon::ThreadPool>)>> = Mutex::new(None);

/// The pool this process decodes on.
fn process_pool() -> PyResult<Arc<rayon::ThreadPool>> {
    let pid = std::process::id();
    // A lock held by a thread of the parent at the fork stays held in the
    // child forever: it is only tried, a while (another thread of this
    // process holds it for a moment), then a pool is made for this call.
    let mut tries = 0;
    let mut slot = loop {
        match POOL.try_lock() {
            Ok(slot) => break slot,
            Err(std::sync::TryLockError::Poisoned(p)) => break p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) if tries < 10_000 => {
                tries += 1;
                std::thread::yield_now();
            }
            Err(std::sync::TryLockError::WouldBlock) => return build(pid),
        }
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
    let (n, asked) = gguf_loader::pool_threads();
    if let Some(asked) = asked {
        // Not eprintln!, which panics where standard error is closed or full.
        let _ = writeln!(
            std::io::stderr(),
            "gguf_loader: warning: RAYON_NUM_THREADS={asked} is more than {n} ({} per available \
             core); starting {n} threads",
            gguf_loader::THREADS_PER_CORE
        );
    }
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
