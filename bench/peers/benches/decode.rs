//! Decoding to f16: gguf-loader on one thread and on all, memcpy of the same
//! output bytes, and candle-core's `QTensor::dequantize_f16`, in one run, on
//! the same tensors. Also writes the synthetic file so that
//! `scripts/bench_gguf_py_decode.py` can time gguf-py on it.
//!
//! `cargo bench --manifest-path bench/peers/Cargo.toml --bench decode`
//!
//! gguf-loader's columns use the default `Stores::Auto` (streaming stores for
//! these outputs); the "cached stores" columns force ordinary stores.
//!
//! Environment: `GGUF_BENCH_ELEMENTS` (elements per type, a multiple of 4096;
//! default 16 Mi), `GGUF_BENCH_DIR` (where the synthetic file goes; default
//! this crate's `target/`), `GGUF_BENCH_NO_CANDLE=1` (skip candle, e.g. on a
//! machine where only the ratios to the hardware matter), and rayon's
//! `RAYON_NUM_THREADS` for "all".

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gguf_loader::{
    dequantize_into, dequantize_into_par, dequantize_into_par_with, dequantize_into_with, Stores,
};
use gguf_loader::{GgufWriter, MetaValue};
use gguf_loader::{f16, GgmlType, MmapGGUFLoader};

/// Elements per synthetic tensor by default: 16 Mi (32 MiB of f16 output).
const DEFAULT_N: u64 = 1 << 24;
const ROW: u64 = 4096;

/// Byte offsets of the f16 scale fields to make sane in each block.
fn scale_fields(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::Q4_0 | GgmlType::Q8_0 => &[0],
        GgmlType::Q4_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q6_K => &[208],
        _ => &[],
    }
}

fn synth(path: &Path, types: &[GgmlType], n: u64) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut w = GgufWriter::new();
    w.add("general.architecture", MetaValue::String("bench".into()));
    for ty in types {
        let n_bytes = ty.byte_size(n).unwrap() as usize;
        let mut data = vec![0u8; n_bytes];
        for b in data.iter_mut() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *b = state as u8;
        }
        let ts = ty.type_size() as usize;
        for block in data.chunks_exact_mut(ts) {
            for off in scale_fields(*ty) {
                block[*off..*off + 2].copy_from_slice(&f16::from_f32(0.0123).to_le_bytes());
            }
        }
        w.add_tensor(ty.name(), &[ROW, n / ROW], *ty, data).unwrap();
    }
    let mut f = std::io::BufWriter::new(File::create(path).unwrap());
    w.write_to(&mut f).unwrap();
}

fn median(reps: usize, mut f: impl FnMut()) -> Duration {
    f(); // warm
    let mut t: Vec<Duration> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    t.sort();
    t[reps / 2]
}

/// Medians of paired runs: one-thread time, two-thread time, and the
/// median, min and max of the per-pair speed-ups.
struct Paired {
    one: Duration,
    two: Duration,
    ratio: f64,
    min: f64,
    max: f64,
}

/// Runs `f(false)` (one thread) and `f(true)` (two) back to back `pairs`
/// times (after a warm-up pair), so that slow drifts of a shared machine hit
/// both sides of each ratio.
fn paired(pairs: usize, mut f: impl FnMut(bool)) -> Paired {
    f(false);
    f(true);
    let mut t1 = Vec::with_capacity(pairs);
    let mut t2 = Vec::with_capacity(pairs);
    let mut r = Vec::with_capacity(pairs);
    for _ in 0..pairs {
        let s = Instant::now();
        f(false);
        let a = s.elapsed();
        let s = Instant::now();
        f(true);
        let b = s.elapsed();
        t1.push(a);
        t2.push(b);
        r.push(a.as_secs_f64() / b.as_secs_f64());
    }
    t1.sort();
    t2.sort();
    r.sort_by(f64::total_cmp);
    Paired {
        one: t1[pairs / 2],
        two: t2[pairs / 2],
        ratio: r[pairs / 2],
        min: r[0],
        max: r[pairs - 1],
    }
}

fn main() {
    let types = [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ];
    let n: u64 = std::env::var("GGUF_BENCH_ELEMENTS")
        .ok()
        .map(|v| v.parse().expect("GGUF_BENCH_ELEMENTS: a number"))
        .unwrap_or(DEFAULT_N);
    assert!(
        n > 0 && n % ROW == 0,
        "GGUF_BENCH_ELEMENTS: a multiple of {ROW}"
    );
    let with_candle = std::env::var_os("GGUF_BENCH_NO_CANDLE").is_none();
    let dir = std::env::var_os("GGUF_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bench-decode.gguf");
    synth(&path, &types, n);
    let loader = MmapGGUFLoader::new(&path).unwrap();
    let mut reader = BufReader::new(File::open(&path).unwrap());
    let content = candle_core::quantized::gguf_file::Content::read(&mut reader).unwrap();
    let cpu = candle_core::Device::Cpu;
    let threads = rayon::current_num_threads();
    let reps = 9;
    let pairs = 15;

    println!(
        "decode to f16, {n} elements per type, median of {reps}, {threads} threads; GB/s of f16 output"
    );
    println!(
        "memcpy copies the output bytes; fill only writes them (memset: the machine's write limit, no reads)"
    );
    println!(
        "| type | memcpy 1 thread | fill 1 thread | gguf-loader 1 thread | % of memcpy | memcpy all | fill all | gguf-loader all | all / 1 thread | all / fill all | 1 thread, cached stores | all, cached stores | candle dequantize_f16 | gguf-loader 1t / candle |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let out_bytes = (n * 2) as f64;
    let gbps = |d: Duration| out_bytes / d.as_secs_f64() / 1e9;
    let mut out = vec![f16::ZERO; n as usize];
    let src_copy = vec![f16::ONE; n as usize];
    for ty in types {
        use rayon::prelude::*;
        let bytes = loader.get_tensor_data(ty.name()).unwrap();
        let memcpy1 = median(reps, || out.copy_from_slice(&src_copy));
        let fill1 = median(reps, || out.fill(std::hint::black_box(f16::ZERO)));
        let memcpy_all = median(reps, || {
            out.par_chunks_mut(1 << 16)
                .zip(src_copy.par_chunks(1 << 16))
                .for_each(|(d, s)| d.copy_from_slice(s));
        });
        let fill_all = median(reps, || {
            out.par_chunks_mut(1 << 16)
                .for_each(|d| d.fill(std::hint::black_box(f16::ZERO)));
        });
        let one = median(reps, || dequantize_into(ty, bytes, &mut out).unwrap());
        let all = median(reps, || dequantize_into_par(ty, bytes, &mut out).unwrap());
        let one_cached = median(reps, || {
            dequantize_into_with(ty, bytes, &mut out, Stores::Cached).unwrap()
        });
        let all_cached = median(reps, || {
            dequantize_into_par_with(ty, bytes, &mut out, Stores::Cached).unwrap()
        });
        let candle = if with_candle {
            let qt = content.tensor(&mut reader, ty.name(), &cpu).unwrap();
            let t = median(reps, || {
                std::hint::black_box(qt.dequantize_f16(&cpu).unwrap());
            });
            format!("{:.2} | {:.1}x", gbps(t), gbps(one) / gbps(t))
        } else {
            "- | -".to_string()
        };
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.0}% | {:.2} | {:.2} | {:.2} | {:.2}x | {:.0}% | {:.2} | {:.2} | {candle} |",
            ty.name(),
            gbps(memcpy1),
            gbps(fill1),
            gbps(one),
            100.0 * gbps(one) / gbps(memcpy1),
            gbps(memcpy_all),
            gbps(fill_all),
            gbps(all),
            gbps(all) / gbps(one),
            100.0 * gbps(all) / gbps(fill_all),
            gbps(one_cached),
            gbps(all_cached),
        );
    }
    println!();
    println!("two cores, paired: {pairs} back-to-back pairs of (1 thread, 2 threads) runs, median of the per-pair ratios (min–max)");
    println!("out of cache: the whole tensor, dequantize_into vs dequantize_into_par in a 2-thread pool (the product paths)");
    println!("in cache: each thread decodes its own 64 Ki-element (128 KiB f16) slice 200 times (two plain threads)");
    println!("| type | out of cache: 1 thread GB/s | 2 threads GB/s | 2 / 1 | in cache: 1 thread GB/s | 2 threads GB/s | 2 / 1 |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let pool2 = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    const SMALL: usize = 1 << 16;
    let rounds = 200;
    for ty in types {
        let bytes = loader.get_tensor_data(ty.name()).unwrap();
        let big = paired(pairs, |two| {
            if two {
                pool2.install(|| dequantize_into_par(ty, bytes, &mut out).unwrap())
            } else {
                dequantize_into(ty, bytes, &mut out).unwrap()
            }
        });
        let in_len = ty.byte_size(SMALL as u64).unwrap() as usize;
        let (a, b) = (&bytes[..in_len], &bytes[in_len..2 * in_len]);
        let mut da = vec![f16::ZERO; SMALL];
        let mut db = vec![f16::ZERO; SMALL];
        let small = paired(pairs, |two| {
            let (da, db) = (&mut da, &mut db);
            if two {
                std::thread::scope(|s| {
                    s.spawn(|| (0..rounds).for_each(|_| dequantize_into(ty, a, da).unwrap()));
                    (0..rounds).for_each(|_| dequantize_into(ty, b, db).unwrap());
                });
            } else {
                for _ in 0..rounds {
                    dequantize_into(ty, a, da).unwrap();
                    dequantize_into(ty, b, db).unwrap();
                }
            }
        });
        let small_bytes = (2 * SMALL * 2 * rounds) as f64;
        let g = |bytes: f64, d: Duration| bytes / d.as_secs_f64() / 1e9;
        println!(
            "| {} | {:.2} | {:.2} | {:.2}x ({:.2}–{:.2}) | {:.2} | {:.2} | {:.2}x ({:.2}–{:.2}) |",
            ty.name(),
            g(out_bytes, big.one),
            g(out_bytes, big.two),
            big.ratio,
            big.min,
            big.max,
            g(small_bytes, small.one),
            g(small_bytes, small.two),
            small.ratio,
            small.min,
            small.max,
        );
    }
    println!("synthetic file: {}", path.display());
}
