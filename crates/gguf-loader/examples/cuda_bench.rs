//! The GPU benchmarks of scripts/gpu-check.sh, printed as one Markdown
//! report: host→device rates (pinned, pageable) and the device-to-device
//! copy rate; every decode kernel's rate (bytes read + written per second,
//! output in VRAM) against that copy rate; whole-model loads in every
//! staging mode against the floor (quantized bytes ÷ pinned rate) and
//! against decoding on the CPU with every thread then uploading f16; VRAM
//! and host memory held; a cold page cache where it can be dropped.
//!
//!     cuda_bench [--quick] MODEL.gguf...
//!
//! Needs the features `cuda` and `internals`, and a GPU.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gguf_loader::cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut};
use gguf_loader::internals::cuda::gpu;
use gguf_loader::{
    cuda_setup, f16, Device, ElementKind, GgmlType, GpuStaging, LoadOptions, MmapGGUFLoader,
};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const GPU: Device = Device::Cuda(0);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn status_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Peak anonymous resident memory while `f` runs.
fn peak_anon<R>(f: impl FnOnce() -> R) -> (R, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(status_bytes("RssAnon:")));
    let (s, p) = (stop.clone(), peak.clone());
    let h = std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            p.fetch_max(status_bytes("RssAnon:"), Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let r = f();
    stop.store(true, Ordering::Relaxed);
    let _ = h.join();
    (r, peak.load(Ordering::Relaxed))
}

/// Reads the whole file (into the page cache), returns the seconds taken.
fn read_file(path: &str, threads: usize) -> Res<f64> {
    #[cfg(unix)]
    use std::os::unix::fs::FileExt;
    #[cfg(windows)]
    use std::os::windows::fs::FileExt;
    let f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let t = Instant::now();
    let chunk = 16u64 << 20;
    let next = AtomicU64::new(0);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut buf = vec![0u8; chunk as usize];
                loop {
                    let off = next.fetch_add(chunk, Ordering::Relaxed);
                    if off >= len {
                        break;
                    }
                    let n = chunk.min(len - off) as usize;
                    #[cfg(unix)]
                    let _ = f.read_exact_at(&mut buf[..n], off);
                    #[cfg(windows)]
                    let _ = f.seek_read(&mut buf[..n], off);
                }
            });
        }
    });
    Ok(t.elapsed().as_secs_f64())
}

fn drop_caches() -> bool {
    #[cfg(unix)]
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe {
        libc::sync()
    };
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

fn main() -> Res<()> {
    let mut quick = false;
    let mut models = Vec::new();
    for a in std::env::args().skip(1) {
        if a == "--quick" {
            quick = true;
        } else {
            models.push(a);
        }
    }
    let reps = if quick { 3 } else { 5 };
    let setup = cuda_setup(0)?;
    let g = gpu(0)?;
    let stream = g.ctx.new_stream()?;
    println!(
        "## GPU: {} (sm_{}{}, {} SMs, {:.0} GiB), driver {}",
        setup.name,
        setup.compute_capability.0,
        setup.compute_capability.1,
        g.sm_count,
        setup.total_memory as f64 / (1u64 << 30) as f64,
        setup.driver_version
    );
    println!(
        "context {:.0} ms, kernels {:.0} ms ({}), host threads {}\n",
        setup.context_ms,
        setup.compile_ms,
        if setup.kernels_cached {
            "from the disk cache"
        } else {
            "compiled"
        },
        rayon_threads()
    );

    // Transfer rates.
    let n = 256usize << 20;
    let mut dev = stream.alloc_zeros::<u8>(n)?;
    // SAFETY: filled right below, before any read.
    let mut pinned = unsafe { g.ctx.alloc_pinned_with_flags::<u8>(n, 0)? };
    pinned.as_mut_slice()?.fill(7);
    let pageable = vec![7u8; n];
    let time = |f: &mut dyn FnMut() -> Res<()>| -> Res<f64> {
        f()?;
        let mut v = Vec::new();
        for _ in 0..reps {
            let t = Instant::now();
            f()?;
            v.push(t.elapsed().as_secs_f64());
        }
        Ok(median(v))
    };
    let t_pinned = time(&mut || {
        stream.memcpy_htod(&pinned, &mut dev)?;
        stream.synchronize()?;
        Ok(())
    })?;
    let t_pageable = time(&mut || {
        stream.memcpy_htod(&pageable, &mut dev)?;
        stream.synchronize()?;
        Ok(())
    })?;
    let big = 1usize << 30;
    let src = stream.alloc_zeros::<u8>(big)?;
    let mut dst = stream.alloc_zeros::<u8>(big)?;
    let t_d2d = time(&mut || {
        stream.memcpy_dtod(&src, &mut dst)?;
        stream.synchronize()?;
        Ok(())
    })?;
    drop((src, dst));
    let pinned_rate = n as f64 / t_pinned;
    let d2d_rate = 2.0 * big as f64 / t_d2d;
    println!("| transfer | GB/s |\n|---|---:|");
    println!("| host→device, pinned | {:.1} |", pinned_rate / 1e9);
    println!(
        "| host→device, pageable | {:.1} |",
        n as f64 / t_pageable / 1e9
    );
    println!(
        "| device→device copy (read + write) | {:.0} |\n",
        d2d_rate / 1e9
    );
    drop((dev, pinned, pageable));

    // Kernels: every type to f16 (and f32 / bf16 for the four named ones).
    println!("| type | out | GB/s read+written | % of d2d copy |\n|---|---|---:|---:|");
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for ty in GgmlType::ALL {
        let ts = ty.type_size() as usize;
        let bs = ty.block_size() as usize;
        let n_blocks = (256usize << 20) / (bs * 2).max(ts);
        let bytes: Vec<u8> = (0..n_blocks * ts)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Small finite scales where the bytes are f16 (most are).
                (x >> 56) as u8 & 0x3b
            })
            .collect();
        let input: CudaSlice<u8> = stream.clone_htod(&bytes)?;
        let kinds: &[ElementKind] = if matches!(
            ty,
            GgmlType::Q4_0 | GgmlType::Q8_0 | GgmlType::Q4_K | GgmlType::Q6_K
        ) {
            &[ElementKind::F16, ElementKind::BF16, ElementKind::F32]
        } else {
            &[ElementKind::F16]
        };
        for &kind in kinds {
            let f = g.function(ty, kind)?;
            let out_bytes = n_blocks * bs * kind.size();
            let mut out = stream.alloc_zeros::<u8>(out_bytes)?;
            let (src_p, _a) = input.device_ptr(&stream);
            let (dst_p, _b) = out.device_ptr_mut(&stream);
            let t = time(&mut || {
                // SAFETY: `input` holds `n_blocks` blocks of `ty`, `out` room
                // for their values as `kind`.
                unsafe { g.launch(&f, &stream, src_p, dst_p, n_blocks as u64, bs as u64)? };
                stream.synchronize()?;
                Ok(())
            })?;
            let rate = (n_blocks * ts + out_bytes) as f64 / t;
            println!(
                "| {} | {} | {:.0} | {:.0}% |",
                ty.name(),
                kind.name(),
                rate / 1e9,
                100.0 * rate / d2d_rate
            );
        }
    }
    println!();

    // Whole models.
    for path in &models {
        let loader = MmapGGUFLoader::new(path)?;
        let q: u64 = loader.tensors().map(|t| t.n_bytes).sum();
        let f16_bytes: u64 = loader.tensors().map(|t| t.n_elements * 2).sum();
        let floor = q as f64 / pinned_rate * 1e3;
        read_file(path, 8)?; // warm the page cache
        println!("### {path}: {} tensors, {:.0} MB quantized, {:.0} MB as f16; floor {floor:.1} ms (pinned)\n",
            loader.tensor_count(), q as f64 / 1e6, f16_bytes as f64 / 1e6);
        println!("| GPU f16 load, warm cache | ms | × floor | GB/s in |\n|---|---:|---:|---:|");
        let mut best = f64::MAX;
        for staging in [GpuStaging::Pread, GpuStaging::Mapping, GpuStaging::Register] {
            let opts = LoadOptions::default().gpu_staging(staging);
            drop(loader.load_model_with::<f16>(GPU, opts)?);
            let mut v = Vec::new();
            for _ in 0..reps {
                let t = Instant::now();
                let m = loader.load_model_with::<f16>(GPU, opts)?;
                v.push(ms(t.elapsed()));
                drop(m);
            }
            let t = median(v);
            best = best.min(t);
            println!(
                "| {staging:?} | {t:.1} | {:.2} | {:.1} |",
                t / floor,
                q as f64 / t / 1e6
            );
        }
        let (free0, _) = g.memory()?;
        let anon0 = status_bytes("RssAnon:");
        let (m, peak) = peak_anon(|| loader.load_model_with::<f16>(GPU, LoadOptions::default()));
        let m = m?;
        let (free1, _) = g.memory()?;
        let vram = free0.saturating_sub(free1);
        drop(m);
        println!("\nVRAM for the model: {:.0} MB (f16 bytes {:.0} MB, {:+.1}%); host anon memory beyond the start: {:.0} MB",
            vram as f64 / 1e6, f16_bytes as f64 / 1e6, 100.0 * (vram as f64 / f16_bytes as f64 - 1.0), peak.saturating_sub(anon0) as f64 / 1e6);

        // The CPU path: decode with every thread, then upload f16 (pageable).
        let cpu_reps = if f16_bytes > (4u64 << 30) { 1 } else { 3 };
        let mut v = Vec::new();
        for _ in 0..cpu_reps {
            let t = Instant::now();
            let m = loader.load_model::<f16>(Device::Cpu)?;
            let mut held = Vec::new();
            for (_, t) in m.tensors() {
                held.push(stream.clone_htod(t.data())?);
            }
            stream.synchronize()?;
            v.push(ms(t.elapsed()));
        }
        let cpu = median(v);
        println!(
            "CPU decode (all threads) + f16 upload: {cpu:.0} ms; the GPU load is {:.1}× faster\n",
            cpu / best
        );

        if drop_caches() {
            let raw = read_file(path, 8)?;
            drop_caches();
            let t = Instant::now();
            drop(loader.load_model_with::<f16>(GPU, LoadOptions::default())?);
            let cold = t.elapsed().as_secs_f64();
            println!("cold page cache: raw read {:.2} GB/s, GPU load {:.2} GB/s ({:.0}% of the raw read)\n",
                q as f64 / raw / 1e9, q as f64 / cold / 1e9, 100.0 * raw / cold);
        } else {
            println!("cold page cache: not measured (cannot write /proc/sys/vm/drop_caches)\n");
        }
    }
    Ok(())
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
