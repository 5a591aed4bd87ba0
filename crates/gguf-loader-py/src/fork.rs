//! Decoding in a child of `os.fork()` (`multiprocessing`'s default start
//! method on Linux before Python 3.14).
//!
//! rayon's global thread pool does not survive a fork: the child inherits
//! the pool's state but none of its threads, so work queued on it there
//! would wait forever. A process other than the one that imported the
//! module therefore decodes on a pool of its own, made at its first decode
//! (as many threads as the global pool would have).

use std::sync::{Arc, Mutex, OnceLock};

use pyo3::exceptions::PyRuntimeError;
use pyo3::PyResult;

/// The process that imported the module.
static IMPORTER: OnceLock<u32> = OnceLock::new();

/// A forked process's own pool, with the process it belongs to (a child of
/// a child makes its own again).
static CHILD_POOL: Mutex<Option<(u32, Arc<rayon::ThreadPool>)>> = Mutex::new(None);

/// Notes the importing process (at module initialization).
pub(crate) fn init() {
    IMPORTER.get_or_init(std::process::id);
}

/// The pool a forked process decodes on (`None` in the importing process,
/// which uses rayon's global pool).
fn child_pool() -> PyResult<Option<Arc<rayon::ThreadPool>>> {
    let pid = std::process::id();
    if IMPORTER.get().is_none_or(|&p| p == pid) {
        return Ok(None);
    }
    // A lock held by a thread of the parent at the fork stays held in the
    // child: it is poisoned-or-not, never waited on (try_lock).
    let mut slot = match CHILD_POOL.try_lock() {
        Ok(slot) => slot,
        Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return build(pid).map(Some),
    };
    if let Some((owner, pool)) = slot.as_ref() {
        if *owner == pid {
            return Ok(Some(pool.clone()));
        }
    }
    let pool = build(pid)?;
    // The parent's pool (threads this process does not have) is left
    // alone, not dropped: dropping would signal threads that are not there.
    if let Some(old) = slot.replace((pid, pool.clone())) {
        std::mem::forget(old);
    }
    Ok(Some(pool))
}

fn build(pid: u32) -> PyResult<Arc<rayon::ThreadPool>> {
    rayon::ThreadPoolBuilder::new()
        .build()
        .map(Arc::new)
        .map_err(|e| {
            PyRuntimeError::new_err(format!(
                "cannot start decoding threads in process {pid}: {e}"
            ))
        })
}

/// Runs `f`, whose parallel work goes to rayon's global pool, or to this
/// process's own pool in a forked child.
pub(crate) fn run<R: Send>(f: impl FnOnce() -> R + Send) -> PyResult<R> {
    Ok(match child_pool()? {
        Some(pool) => pool.install(f),
        None => f(),
    })
}
