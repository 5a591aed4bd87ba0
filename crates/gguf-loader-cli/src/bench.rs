//! `gguf-loader bench`: decode throughput per tensor type, on one thread and
//! on all, next to memcpy of the same output bytes measured in the same run.
//!
//! The outputs of one type (and their copy for memcpy) are held at once:
//! their size is checked against the available memory first, and they are
//! allocated fallibly.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use gguf_loader::Escaped;
use gguf_loader::{dequantize_into_par_with, dequantize_into_with};
use gguf_loader::{Element, ElementKind, Error, GgmlType, MmapGGUFLoader, Stores, TensorInfo};

use crate::{host, with_element, CliError};

/// What to benchmark and how.
pub struct Args<'a> {
    /// The model (the first shard of a split model).
    pub file: &'a Path,
    /// The float to decode to.
    pub dtype: ElementKind,
    /// Threads for the multithreaded figures (`None`: all cores).
    pub threads: Option<usize>,
    /// How decoded values are written.
    pub stores: Stores,
    /// Skip the check of the outputs' size against the available memory.
    pub no_memory_check: bool,
    /// One JSON object at the end instead of a table line per type.
    pub json: bool,
}

/// Runs `f` until at least `min` has passed (and at least 3 times) and
/// returns the median time of one run.
fn median_time(min: Duration, mut f: impl FnMut()) -> Duration {
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 3 || start.elapsed() < min {
        let t = Instant::now();
        f();
        times.push(t.elapsed());
        if times.len() >= 1000 {
            break;
        }
    }
    times.sort();
    times[times.len() / 2]
}

fn gbps(bytes: usize, t: Duration) -> f64 {
    bytes as f64 / t.as_secs_f64() / 1e9
}

/// Measures every tensor type of the model as `a` says and writes one line
/// per type to standard output as it goes. Errs when the model cannot be
/// opened, a tensor cannot be decoded, the outputs of one type exceed the
/// available memory (unless `no_memory_check`) or cannot be allocated, or
/// standard output cannot be written.
pub fn run(a: &Args<'_>) -> Result<(), CliError> {
    with_element!(a.dtype, T => bench::<T>(a))
}

/// A zeroed output for a tensor, allocated fallibly.
fn output<T: Element>(t: &TensorInfo<'_>) -> Result<Vec<T>, Error> {
    let oom = || Error::OutOfMemory {
        tensor: t.name.to_string(),
        bytes: t.n_elements.saturating_mul(T::KIND.size() as u64),
    };
    let n = usize::try_from(t.n_elements).map_err(|_| oom())?;
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| oom())?;
    v.resize(n, T::default());
    Ok(v)
}

fn bench<T: Element>(a: &Args<'_>) -> Result<(), CliError> {
    let loader = MmapGGUFLoader::new(a.file)?;
    if loader.endianness() == gguf_loader::Endianness::Big {
        crate::warn(format_args!(
            "warning: {} is big-endian: its bytes are decoded as stored, without the byte swap \
             of a load (which refuses its quantized tensors); the figures are the little-endian \
             decoders'",
            a.file.display()
        ));
    }
    let mut by_type: BTreeMap<GgmlType, Vec<&TensorInfo<'_>>> = BTreeMap::new();
    for t in loader.tensors() {
        by_type.entry(t.ty).or_default().push(t);
    }
    if !a.no_memory_check {
        // The outputs of the largest type, and their copy.
        let most = by_type
            .values()
            .map(|ts| {
                ts.iter()
                    .map(|t| t.n_elements.saturating_mul(T::KIND.size() as u64))
                    .fold(0, u64::saturating_add)
            })
            .max()
            .unwrap_or(0);
        let what = format!("{} benchmarked to {}", a.file.display(), T::KIND.name());
        host::check_memory(most.saturating_mul(2), &what)?;
    }
    let n_threads = a.threads.unwrap_or_else(rayon::current_num_threads);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(n_threads)
        .build()
        .map_err(|e| Error::ThreadPool(e.to_string()))?;
    let min = Duration::from_millis(300);
    // Unbuffered: each line is written as soon as it is measured.
    let mut out = io::stdout().lock();
    let mut rows = Vec::new();
    if !a.json {
        writeln!(
            out,
            "{}: decode to {} ({}, {:?} stores, SIMD: {}), GB/s of output; memcpy = copying \
             the same output bytes",
            Escaped(&a.file.display().to_string()),
            T::KIND.name(),
            crate::text::count(n_threads as u64, "thread"),
            a.stores,
            gguf_loader::simd_features()
        )
        .map_err(CliError::stdout)?;
        writeln!(
            out,
            "{:<8} {:>8} {:>12} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7}",
            "type",
            "tensors",
            "out bytes",
            "1 thread",
            "memcpy 1",
            "all",
            "memcpy N",
            "1t/cpy",
            "N/1t"
        )
        .map_err(CliError::stdout)?;
    }
    for (ty, tensors) in by_type {
        let inputs: Vec<&[u8]> = tensors
            .iter()
            .map(|t| loader.get_tensor_data(t.name))
            .collect::<Result<_, _>>()?;
        let mut outputs: Vec<Vec<T>> = tensors
            .iter()
            .map(|t| output(t))
            .collect::<Result<_, _>>()?;
        let out_bytes: usize = outputs.iter().map(|o| o.len() * T::KIND.size()).sum();
        // memcpy of the output bytes, warm buffers, single thread and all.
        let mut src: Vec<Vec<T>> = Vec::new();
        for (o, t) in outputs.iter().zip(&tensors) {
            let mut copy = output(t)?;
            copy.copy_from_slice(o);
            src.push(copy);
        }
        let t_cpy1 = median_time(min, || {
            for (d, s) in outputs.iter_mut().zip(&src) {
                d.copy_from_slice(s);
            }
        });
        let t_cpyn = pool.install(|| {
            median_time(min, || {
                use rayon::prelude::*;
                outputs.par_iter_mut().zip(&src).for_each(|(d, s)| {
                    d.par_chunks_mut(1 << 16)
                        .zip(s.par_chunks(1 << 16))
                        .for_each(|(d, s)| d.copy_from_slice(s))
                });
            })
        });
        // `Auto` judges all the tensors of the type together, as a model load does.
        let stores = a.stores.resolve(out_bytes);
        // Decoded once untimed, so that a failure is an error, not a panic.
        for ((s, d), t) in inputs.iter().zip(outputs.iter_mut()).zip(&tensors) {
            dequantize_into_with(ty, s, d, stores).map_err(|error| Error::Decode {
                tensor: t.name.to_string(),
                error,
            })?;
        }
        // The same calls as above, which succeeded.
        let t_one = median_time(min, || {
            for (s, d) in inputs.iter().zip(outputs.iter_mut()) {
                let _ = dequantize_into_with(ty, s, d, stores);
            }
        });
        let t_all = pool.install(|| {
            median_time(min, || {
                for (s, d) in inputs.iter().zip(outputs.iter_mut()) {
                    let _ = dequantize_into_par_with(ty, s, d, stores);
                }
            })
        });
        if a.json {
            rows.push(serde_json::json!({
                "type": ty.name(),
                "tensors": tensors.len(),
                "out_bytes": out_bytes,
                "gb_per_s_1_thread": gbps(out_bytes, t_one),
                "memcpy_gb_per_s_1_thread": gbps(out_bytes, t_cpy1),
                "gb_per_s_all": gbps(out_bytes, t_all),
                "memcpy_gb_per_s_all": gbps(out_bytes, t_cpyn),
            }));
            continue;
        }
        writeln!(
            out,
            "{:<8} {:>8} {:>12} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>6.0}% {:>6.2}x",
            ty.name(),
            tensors.len(),
            out_bytes,
            gbps(out_bytes, t_one),
            gbps(out_bytes, t_cpy1),
            gbps(out_bytes, t_all),
            gbps(out_bytes, t_cpyn),
            100.0 * t_cpy1.as_secs_f64() / t_one.as_secs_f64(),
            t_one.as_secs_f64() / t_all.as_secs_f64(),
        )
        .map_err(CliError::stdout)?;
    }
    if a.json {
        let report = serde_json::json!({
            "file": a.file.display().to_string(),
            "dtype": T::KIND.name(),
            "threads": n_threads,
            "stores": format!("{:?}", a.stores),
            "simd": gguf_loader::simd_features().to_string(),
            "types": rows,
        });
        crate::json::write_line(&mut out, &report).map_err(CliError::stdout)?;
    }
    Ok(())
}
