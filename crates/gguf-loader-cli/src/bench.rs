//! `gguf-loader bench`: decode throughput per tensor type, on one thread and
//! on all, next to memcpy of the same output bytes measured in the same run.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use gguf_loader::{bf16, f16, Element, ElementKind, GgmlType, MmapGGUFLoader, Stores};
use gguf_loader::{dequantize_into_par_with, dequantize_into_with};

type BoxError = Box<dyn std::error::Error>;

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

pub fn run(
    path: &Path,
    dtype: ElementKind,
    threads: Option<usize>,
    stores: Stores,
) -> Result<(), BoxError> {
    match dtype {
        ElementKind::F32 => bench::<f32>(path, threads, stores),
        ElementKind::F16 => bench::<f16>(path, threads, stores),
        ElementKind::BF16 => bench::<bf16>(path, threads, stores),
    }
}

fn bench<T: Element>(path: &Path, threads: Option<usize>, stores: Stores) -> Result<(), BoxError> {
    let loader = MmapGGUFLoader::new(path)?;
    let mut by_type: BTreeMap<GgmlType, Vec<&str>> = BTreeMap::new();
    for t in loader.tensors() {
        by_type.entry(t.ty).or_default().push(t.name);
    }
    let n_threads = threads.unwrap_or_else(rayon::current_num_threads);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(n_threads)
        .build()?;
    let min = Duration::from_millis(300);
    println!(
        "{}: decode to {} ({} threads, {:?} stores), GB/s of output; memcpy = copying the same output bytes",
        path.display(),
        T::KIND.name(),
        n_threads,
        stores
    );
    println!(
        "{:<8} {:>8} {:>12} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7}",
        "type", "tensors", "out bytes", "1 thread", "memcpy 1", "all", "memcpy N", "1t/cpy", "N/1t"
    );
    for (ty, names) in by_type {
        let inputs: Vec<&[u8]> = names
            .iter()
            .map(|n| loader.get_tensor_data(n))
            .collect::<Result<_, _>>()?;
        let mut outputs: Vec<Vec<T>> = names
            .iter()
            .map(|n| {
                let info = loader.tensor_info(n).expect("listed");
                vec![T::default(); info.n_elements as usize]
            })
            .collect();
        let out_bytes: usize = outputs.iter().map(|o| o.len() * T::KIND.size()).sum();
        // memcpy of the output bytes, warm buffers, single thread and all.
        let src: Vec<Vec<T>> = outputs.clone();
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
        let stores = stores.resolve(out_bytes);
        let t_one = median_time(min, || {
            for (s, d) in inputs.iter().zip(outputs.iter_mut()) {
                dequantize_into_with(ty, s, d, stores).expect("validated");
            }
        });
        let t_all = pool.install(|| {
            median_time(min, || {
                for (s, d) in inputs.iter().zip(outputs.iter_mut()) {
                    dequantize_into_par_with(ty, s, d, stores).expect("validated");
                }
            })
        });
        println!(
            "{:<8} {:>8} {:>12} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>6.0}% {:>6.2}x",
            ty.name(),
            names.len(),
            out_bytes,
            gbps(out_bytes, t_one),
            gbps(out_bytes, t_cpy1),
            gbps(out_bytes, t_all),
            gbps(out_bytes, t_cpyn),
            100.0 * t_cpy1.as_secs_f64() / t_one.as_secs_f64(),
            t_one.as_secs_f64() / t_all.as_secs_f64(),
        );
    }
    Ok(())
}
