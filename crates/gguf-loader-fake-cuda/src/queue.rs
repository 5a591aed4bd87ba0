//! Streams and events, asynchronous as on a GPU: each stream is a host
//! thread running its queue in order, after a random delay per operation,
//! so that host code which reuses a buffer before the work reading it is
//! done, or reads a result before the work writing it is, sees wrong bytes
//! instead of passing by luck of timing.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Work queued on a stream.
pub type Op = Box<dyn FnOnce() + Send>;

/// A stream: the sending end of its worker's queue.
pub struct Stream {
    tx: Mutex<Option<Sender<Op>>>,
}

/// An event: how many times it was recorded, how many of those records
/// the streams have reached, and when the last was reached.
pub struct Event {
    state: Mutex<EventState>,
    cv: Condvar,
}

struct EventState {
    recorded: u64,
    done: u64,
    at: Option<Instant>,
}

static STREAMS: Mutex<Vec<usize>> = Mutex::new(Vec::new());
/// Operations queued and not yet run, on every stream (destroyed ones
/// included: their queues still run), and its condition.
static PENDING: Mutex<usize> = Mutex::new(0);
static PENDING_CV: Condvar = Condvar::new();
static EVENTS: Mutex<Option<HashSet<usize>>> = Mutex::new(None);
static SEED: AtomicU64 = AtomicU64::new(0x9e37_79b9_7f4a_7c15);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The longest delay before an operation, from `GL_FAKE_CUDA_DELAY_US`
/// (default 300 µs; 0 runs every queue without delay).
fn max_delay_us() -> u64 {
    static D: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *D.get_or_init(|| {
        std::env::var("GL_FAKE_CUDA_DELAY_US")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300)
    })
}

/// A delay for the next operation: none half of the time, else up to the
/// maximum (a splitmix64 stream, shared by all streams).
fn delay() -> Option<Duration> {
    let max = max_delay_us();
    if max == 0 {
        return None;
    }
    let mut z = SEED.fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z & 1 == 0).then(|| Duration::from_micros((z >> 1) % (max + 1)))
}

impl Stream {
    /// A stream with its worker thread; the handle the driver API hands out.
    pub fn create() -> usize {
        let (tx, rx) = channel::<Op>();
        std::thread::Builder::new()
            .name("fake-cuda-stream".into())
            .spawn(move || {
                for op in rx {
                    if let Some(d) = delay() {
                        std::thread::sleep(d);
                    }
                    op();
                    *lock(&PENDING) -= 1;
                    PENDING_CV.notify_all();
                }
            })
            .expect("spawn a stream thread");
        let p = Box::into_raw(Box::new(Stream {
            tx: Mutex::new(Some(tx)),
        })) as usize;
        lock(&STREAMS).push(p);
        p
    }

    /// The live stream of handle `h`.
    pub fn get(h: usize) -> Option<&'static Stream> {
        // SAFETY: a handle in the list is a live `Box<Stream>` leaked by
        // `create`, freed only by `destroy`, which takes it out first. (A
        // destroy racing with a use of the same handle is the caller's bug,
        // as with the real driver.)
        lock(&STREAMS)
            .contains(&h)
            .then(|| unsafe { &*(h as *const Stream) })
    }

    /// Destroys stream `h`: work already queued still runs. False for an
    /// unknown handle.
    pub fn destroy(h: usize) -> bool {
        let mut list = lock(&STREAMS);
        let Some(i) = list.iter().position(|&s| s == h) else {
            return false;
        };
        list.swap_remove(i);
        // SAFETY: `h` was leaked by `create` and is now out of the list, so
        // no one else frees it.
        drop(unsafe { Box::from_raw(h as *mut Stream) });
        true
    }

    /// Queues `op`.
    pub fn push(&self, op: Op) {
        if let Some(tx) = lock(&self.tx).as_ref() {
            *lock(&PENDING) += 1;
            if tx.send(op).is_err() {
                *lock(&PENDING) -= 1;
            }
        }
    }

    /// Waits until everything queued so far has run.
    pub fn synchronize(&self) {
        let (tx, rx) = channel::<()>();
        self.push(Box::new(move || {
            let _ = tx.send(());
        }));
        let _ = rx.recv();
    }

    /// Waits until every operation queued so far, on any stream (destroyed
    /// ones too), has run.
    pub fn synchronize_all() {
        let mut n = lock(&PENDING);
        while *n > 0 {
            n = PENDING_CV.wait(n).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Event {
    /// An event never recorded; its handle.
    pub fn create() -> usize {
        let e = Arc::new(Event {
            state: Mutex::new(EventState {
                recorded: 0,
                done: 0,
                at: None,
            }),
            cv: Condvar::new(),
        });
        let p = Arc::into_raw(e) as usize;
        lock(&EVENTS).get_or_insert_with(HashSet::new).insert(p);
        p
    }

    /// The live event of handle `h`.
    pub fn get(h: usize) -> Option<Arc<Event>> {
        let set = lock(&EVENTS);
        if !set.as_ref().is_some_and(|s| s.contains(&h)) {
            return None;
        }
        // SAFETY: a handle in the set holds one strong count of an `Arc`
        // leaked by `create`, released only by `destroy` after taking it
        // out of the set (under this lock).
        unsafe {
            Arc::increment_strong_count(h as *const Event);
            Some(Arc::from_raw(h as *const Event))
        }
    }

    /// Destroys event `h` (queued work holding it keeps it alive); false
    /// for an unknown handle.
    pub fn destroy(h: usize) -> bool {
        let mut set = lock(&EVENTS);
        if !set.as_mut().is_some_and(|s| s.remove(&h)) {
            return false;
        }
        // SAFETY: the set's strong count, taken out of the set above.
        drop(unsafe { Arc::from_raw(h as *const Event) });
        true
    }

    /// Records the event on `stream` (`None`: now, the work before it
    /// having been waited for by the caller).
    pub fn record(self: &Arc<Event>, stream: Option<&Stream>) {
        let g = {
            let mut s = lock(&self.state);
            s.recorded += 1;
            s.recorded
        };
        let e = self.clone();
        let mark = move || {
            let mut s = lock(&e.state);
            if g > s.done {
                s.done = g;
                s.at = Some(Instant::now());
            }
            e.cv.notify_all();
        };
        match stream {
            Some(st) => st.push(Box::new(mark)),
            None => mark(),
        }
    }

    /// The generation a wait begun now waits for (the last record).
    pub fn generation(&self) -> u64 {
        lock(&self.state).recorded
    }

    /// Waits until record `g` has been reached.
    pub fn wait_for(&self, g: u64) {
        let mut s = lock(&self.state);
        while s.done < g {
            s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Whether the last record has been reached (an event never recorded
    /// has).
    pub fn is_done(&self) -> bool {
        let s = lock(&self.state);
        s.done >= s.recorded
    }

    /// When the last record was reached.
    pub fn reached_at(&self) -> Option<Instant> {
        let s = lock(&self.state);
        (s.done >= s.recorded).then_some(s.at).flatten()
    }
}
