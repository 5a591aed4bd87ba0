//! `gguf-loader load`: decode a whole model (or walk it lazily by layer) and
//! report what it took.
//!
//! Before a whole-model load, the decoded size is checked against the
//! memory available, so that a model too big for the machine is one line
//! of error rather than an abort. Progress goes to standard error and
//! ignores write errors there.

use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gguf_loader::{
    Device, Element, ElementKind, Error, Escaped, GpuStaging, LazyModel, LoadMode, LoadOptions,
    MmapGGUFLoader, Prefetch, Progress, Stores,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::{host, memory, with_element, CliError};

/// What to load and how.
pub struct Args<'a> {
    /// The model (the first shard of a split model).
    pub file: &'a Path,
    /// The float to decode to.
    pub dtype: ElementKind,
    /// Where the tensors go.
    pub device: Device,
    /// Decoding threads (`None`: all cores).
    pub threads: Option<usize>,
    /// Mapped or read.
    pub mode: LoadMode,
    /// How decoded values are written.
    pub stores: Stores,
    /// Walk the model layer by layer instead of decoding it whole.
    pub lazy: bool,
    /// With `lazy`: prefetch the next layer.
    pub prefetch: bool,
    /// With `lazy`: simulated work per layer.
    pub work: Duration,
    /// Report as one JSON object.
    pub json: bool,
    /// Skip the check of the decoded size against the available memory.
    pub no_memory_check: bool,
    /// GPU loads: how the staging ring is filled.
    pub staging: GpuStaging,
    /// GPU loads: the ring's size in bytes (0: the default).
    pub ring_bytes: usize,
    /// No views of the file: every tensor copied or decoded.
    pub own_memory: bool,
    /// Only the tensors whose name matches this regular expression (an
    /// eager load).
    pub filter: Option<&'a str>,
}

/// Samples anonymous resident memory every millisecond while alive, where
/// the system gives that figure ([`memory::anonymous`]).
struct AnonSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl AnonSampler {
    fn start() -> Option<AnonSampler> {
        let peak = Arc::new(AtomicU64::new(memory::anonymous()?));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(memory::anonymous().unwrap_or(0), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Some(AnonSampler {
            peak,
            stop,
            handle: Some(handle),
        })
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.peak
            .load(Ordering::Relaxed)
            .max(memory::anonymous().unwrap_or(0))
    }
}

/// Loads the model as `a` says and reports times and memory on standard
/// output. Errs when the model cannot be opened or decoded, when its decoded
/// size exceeds the available memory (unless `no_memory_check`), or when
/// standard output cannot be written.
pub fn run(a: &Args<'_>) -> Result<(), CliError> {
    with_element!(a.dtype, T => load::<T>(a))
}

/// The tensors of `loader` whose name matches `filter` (a regular
/// expression; all without one), in file order. Errs on a bad expression
/// (its message on one line) and on one that matches no tensor.
pub fn selected<'l>(
    loader: &'l MmapGGUFLoader,
    filter: Option<&str>,
    file: &Path,
) -> Result<Vec<&'l gguf_loader::TensorInfo<'l>>, CliError> {
    let Some(f) = filter else {
        return Ok(loader.tensors().collect());
    };
    let re = regex::Regex::new(f).map_err(|e| {
        // regex's message spans lines (pattern, caret, reason).
        let text = e.to_string();
        let msg: Vec<&str> = text.lines().map(str::trim).collect();
        format!("--tensors: {}", msg.join(" "))
    })?;
    let tensors: Vec<&gguf_loader::TensorInfo<'_>> =
        loader.tensors().filter(|t| re.is_match(t.name)).collect();
    if tensors.is_empty() {
        return Err(format!(
            "--tensors '{f}' matches none of the {} tensors of {}",
            loader.tensor_count(),
            file.display()
        )
        .into());
    }
    Ok(tensors)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn load<T: Element>(a: &Args<'_>) -> Result<(), CliError> {
    let anon_before = memory::anonymous();
    let sampler = AnonSampler::start();
    let t0 = Instant::now();
    let loader = MmapGGUFLoader::open(a.file, a.mode)?;
    let open = t0.elapsed();

    if a.lazy && a.filter.is_some() {
        return Err("--tensors loads the tensors it names at once: not with --lazy".into());
    }
    let selected = selected(&loader, a.filter, a.file)?;
    let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
    for t in &selected {
        *by_type.entry(t.ty.name()).or_default() += 1;
    }
    let n_tensors = selected.len();
    let in_file = loader.tensor_count();
    let bytes_in: u64 = selected.iter().map(|t| t.n_bytes).sum();
    let bytes_out: u64 = selected
        .iter()
        .map(|t| t.n_elements.saturating_mul(T::KIND.size() as u64))
        .fold(0, u64::saturating_add);
    // Tensors the file holds as `T` already: views of the mapping, read in
    // but neither copied nor in memory of the process's own.
    let (views, view_bytes) = if a.own_memory || a.device != Device::Cpu {
        (0, 0)
    } else {
        selected
            .iter()
            .filter(|t| loader.loads_as_view::<T>(t.name))
            .fold((0usize, 0u64), |(n, b), t| {
                (n + 1, b.saturating_add(t.n_bytes))
            })
    };
    // A GPU is set up before the clock starts: its one-off costs (driver,
    // context, kernel compile) are reported apart from the load.
    let gpu = crate::gpu::setup(a.device)?;
    if !a.lazy && !a.no_memory_check && a.device == Device::Cpu {
        let what = format!("{} decoded to {}", a.file.display(), T::KIND.name());
        host::check_memory(bytes_out.saturating_sub(view_bytes), &what)?;
    }

    let terminal = std::io::stderr().is_terminal() && !a.json;
    let bar = if terminal {
        let b = ProgressBar::new(bytes_in);
        b.set_style(
            ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b
    } else {
        ProgressBar::hidden()
    };
    // Plain lines when not on a terminal: one per 10%.
    let last_decile = AtomicUsize::new(0);
    let report = |p: &Progress| {
        bar.set_position(p.bytes_done);
        bar.set_message(format!("{}/{} tensors", p.tensors_done, p.tensors_total));
        if !terminal && !a.json && p.bytes_total > 0 {
            let d = (p.bytes_done * 10 / p.bytes_total) as usize;
            if last_decile.fetch_max(d, Ordering::Relaxed) < d {
                // A closed or full standard error does not stop the load.
                let _ = writeln!(io::stderr().lock(), "loading: {}%", d * 10);
            }
        }
        true
    };

    let t1 = Instant::now();
    let mut lazy_stats = None;
    let mut vram_after = None;
    let opts = LoadOptions {
        threads: a.threads,
        stores: a.stores,
        gpu_staging: a.staging,
        gpu_ring_bytes: a.ring_bytes,
        own_memory: a.own_memory,
        ..LoadOptions::default()
    };
    if a.lazy {
        lazy_stats = Some(walk_lazily::<T>(
            loader, a.device, a.prefetch, a.work, opts,
        )?);
    } else if a.filter.is_some() {
        let names: Vec<&str> = selected.iter().map(|t| t.name).collect();
        let some = loader.load_tensors_with::<T, _>(&names, a.device, opts.progress(&report))?;
        std::hint::black_box(some.len());
        vram_after = crate::gpu::used_memory(a.device);
    } else {
        let model = loader.load_model_with::<T>(a.device, opts.progress(&report))?;
        std::hint::black_box(model.len());
        // Measured with the model alive: what it holds on the device.
        vram_after = crate::gpu::used_memory(a.device);
    }
    let load = t1.elapsed();
    bar.finish_and_clear();
    let peak_anon = sampler.map(AnonSampler::finish);
    let peak_rss = memory::peak_resident();
    let gbps = bytes_out as f64 / load.as_secs_f64() / 1e9;

    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut write = || -> io::Result<()> {
        if a.json {
            let mut j = json!({
                "file": a.file.display().to_string(),
                "dtype": T::KIND.name(),
                "mode": format!("{:?}", a.mode).to_lowercase(),
                "tensors": n_tensors,
                "tensors_in_file": in_file,
                "tensors_filter": a.filter,
                "tensors_by_type": by_type,
                "bytes_in": bytes_in,
                "bytes_out": bytes_out,
                "open_ms": ms(open),
                "load_ms": ms(load),
                "gb_per_s": gbps,
                "peak_rss_bytes": peak_rss,
                "peak_anon_bytes": peak_anon,
                "anon_bytes_before": anon_before,
                "views": views,
                "view_bytes": view_bytes,
            });
            if let Some(s) = &lazy_stats {
                j["lazy"] = s.to_json();
            }
            if let Some(g) = &gpu {
                j["device"] = json!(a.device.to_string());
                j["gpu"] = g.to_json();
                j["gb_per_s_in"] = json!(bytes_in as f64 / load.as_secs_f64() / 1e9);
                if let Some(after) = vram_after {
                    j["vram_used_before_bytes"] = json!(g.used_before);
                    j["vram_used_after_bytes"] = json!(after);
                }
            }
            return crate::json::write_line(&mut out, &j);
        }
        writeln!(out, "{}", Escaped(&a.file.display().to_string()))?;
        let types: Vec<String> = by_type.iter().map(|(t, n)| format!("{n} {t}")).collect();
        match a.filter {
            Some(f) => writeln!(
                out,
                "  tensors:      {n_tensors} of {in_file} matching '{}' ({})",
                Escaped(f),
                types.join(", ")
            )?,
            None => writeln!(out, "  tensors:      {n_tensors} ({})", types.join(", "))?,
        }
        writeln!(out, "  bytes read:   {bytes_in}")?;
        writeln!(out, "  bytes out:    {bytes_out} ({})", T::KIND.name())?;
        if views > 0 {
            writeln!(
                out,
                "  views:        {} ({view_bytes} bytes) of the file, read in, not copied \
                 (--own-memory copies)",
                crate::text::count(views as u64, "tensor"),
            )?;
        }
        writeln!(out, "  open:         {:.3} ms", ms(open))?;
        writeln!(
            out,
            "  load:         {:.1} ms ({gbps:.2} GB/s of output)",
            ms(load)
        )?;
        let bytes = |b: Option<u64>| {
            b.map_or("unknown on this system".to_string(), |b| {
                format!("{b} bytes")
            })
        };
        writeln!(
            out,
            "  peak RSS:     {} (file pages included)",
            bytes(peak_rss)
        )?;
        writeln!(out, "  peak anon:    {}", bytes(peak_anon))?;
        if let Some(g) = &gpu {
            writeln!(
                out,
                "  device:       {} ({}), quantized bytes in at {:.2} GB/s",
                a.device,
                g.name,
                bytes_in as f64 / load.as_secs_f64() / 1e9
            )?;
            writeln!(
                out,
                "  one-off:      context {:.1} ms, kernels {:.1} ms ({})",
                g.context_ms,
                g.compile_ms,
                if g.kernels_cached {
                    "from the disk cache"
                } else {
                    "compiled"
                }
            )?;
            if let Some(after) = vram_after {
                writeln!(
                    out,
                    "  VRAM used:    {} bytes before, {after} bytes with the model loaded (+{})",
                    g.used_before,
                    after.saturating_sub(g.used_before)
                )?;
            }
        }
        match &lazy_stats {
            Some(s) if s.layers == 0 => {
                writeln!(out, "  lazy:         no layers (no blk.N tensors) to walk")?;
            }
            Some(s) => writeln!(
                out,
                "  lazy:         {}: first ready in {:.1} ms, then {:.1} ms waited per layer \
                 (median)",
                crate::text::count(s.layers as u64, "layer"),
                s.first_ms,
                s.median_ms
            )?,
            None => {}
        }
        Ok(())
    };
    write().and_then(|()| out.flush()).map_err(CliError::stdout)
}

struct LazyStats {
    first_ms: f64,
    median_ms: f64,
    layers: usize,
}

impl LazyStats {
    fn to_json(&self) -> serde_json::Value {
        json!({"first_layer_ms": self.first_ms, "median_layer_ms": self.median_ms, "layers": self.layers})
    }
}

/// Decodes the tensors outside the layers (embeddings, output head and
/// norm: what a consumer takes first), then walks the layers (with or
/// without prefetch), timing the wait for each layer after `work` spent on
/// the previous one: every tensor is decoded once, so that the bytes and
/// speed reported are what was done (the globals were skipped, and a 4 GB
/// embedding counted as read in 6 ms).
fn walk_lazily<T: Element>(
    loader: MmapGGUFLoader,
    device: Device,
    prefetch: bool,
    work: Duration,
    opts: LoadOptions<'_>,
) -> Result<LazyStats, Error> {
    let model = LazyModel::<T>::with_options(Arc::new(loader), opts)?.on_device(device)?;
    for name in model.global_names() {
        std::hint::black_box(model.tensor(name)?.len());
        // Decoded once, as a consumer keeps it; not held for the walk.
        model.evict(name);
    }
    let mut times = Vec::new();
    let mut t = Instant::now();
    let prefetch = if prefetch {
        Prefetch::NextLayer
    } else {
        Prefetch::Off
    };
    for layer in model.layers(prefetch) {
        let layer = layer?;
        times.push(ms(t.elapsed()));
        std::hint::black_box(layer.tensors().len());
        std::thread::sleep(work);
        t = Instant::now();
    }
    let first_ms = times.first().copied().unwrap_or(0.0);
    let mut rest: Vec<f64> = times.iter().skip(1).copied().collect();
    rest.sort_by(f64::total_cmp);
    Ok(LazyStats {
        first_ms,
        median_ms: rest.get(rest.len() / 2).copied().unwrap_or(first_ms),
        layers: times.len(),
    })
}
