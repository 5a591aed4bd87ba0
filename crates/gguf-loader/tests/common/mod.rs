//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod counting;

use std::path::PathBuf;

/// The repository root: `$GGUF_LOADER_REPO` where set (a test binary run
/// from another copy of the repository, as scripts/gpu-check.sh runs them on
/// the GPU machine), else two levels above this crate.
pub fn repo_root() -> PathBuf {
    if let Some(p) = std::env::var_os("GGUF_LOADER_REPO") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root (set GGUF_LOADER_REPO where the tests run from another copy)")
}

/// Runs the tests that take it one at a time within a test binary: the GPU
/// tests measure the GPU's free memory, which another test's load would
/// change. Hold the guard for the whole test.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Golden vectors for one type, written by the scripts under `scripts/`:
/// `tests/golden/<name>.raw` holds whole blocks of that type and
/// `tests/golden/<name>.f32` the little-endian f32 values ggml decodes them to.
pub struct Golden {
    pub raw: Vec<u8>,
    pub expected: Vec<f32>,
}

/// Loads the golden pair for a lower-case type name such as `"q4_0"`.
pub fn golden(name: &str) -> Golden {
    let dir = repo_root().join("tests/golden");
    let raw = std::fs::read(dir.join(format!("{name}.raw")))
        .unwrap_or_else(|e| panic!("golden {name}.raw: {e}"));
    let f = std::fs::read(dir.join(format!("{name}.f32")))
        .unwrap_or_else(|e| panic!("golden {name}.f32: {e}"));
    assert_eq!(f.len() % 4, 0, "{name}.f32 length");
    let expected = f
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    Golden { raw, expected }
}

/// The NaN an x86 CPU makes from non-NaN operands (`0 * inf`): the golden
/// `.f32` files were written on x86, where ggml's invalid operations give it.
const X86_DEFAULT_NAN: u32 = 0xFFC0_0000;

/// The NaN this CPU makes from non-NaN operands: `X86_DEFAULT_NAN` on x86,
/// `0x7FC0_0000` on aarch64 (and most others), where ggml gives that one.
fn default_nan_bits() -> u32 {
    (std::hint::black_box(0.0f32) * std::hint::black_box(f32::INFINITY)).to_bits()
}

/// Asserts two f32 slices are equal bit for bit (NaNs included), naming the
/// first differing index. The one allowance: where `want` is x86's default
/// NaN, `got` may be this CPU's default NaN instead (the same on x86, so
/// there the check is strict), since the golden vectors come from x86.
pub fn assert_bits_eq(name: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let default_nan = default_nan_bits();
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == w.to_bits()
                || (w.to_bits() == X86_DEFAULT_NAN && g.to_bits() == default_nan),
            "{name}: element {i} (block {}): got {g:e} ({:#010x}), want {w:e} ({:#010x})",
            i,
            g.to_bits(),
            w.to_bits()
        );
    }
}

/// The real SmolLM2 model: `$GGUF_LOADER_MODEL`, else the cache that
/// `scripts/fetch-model.sh` fills. `None` (the test is skipped) when missing,
/// unless `GGUF_LOADER_REQUIRE_MODEL` is set, as `scripts/test.sh` does.
pub fn model_path() -> Option<PathBuf> {
    cached(
        "GGUF_LOADER_MODEL",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "",
        "scripts/fetch-model.sh",
    )
}

/// The real Gemma-3-270M model (Q4_K_M): `$GGUF_LOADER_GEMMA`, else the
/// cache that `scripts/fetch-model.sh gemma3` fills; skipped like
/// [`model_path`].
pub fn gemma_path() -> Option<PathBuf> {
    cached(
        "GGUF_LOADER_GEMMA",
        "gemma-3-270m-q4_k_m.gguf",
        "",
        "scripts/fetch-model.sh gemma3",
    )
}

/// Both real models that are present.
pub fn real_models() -> Vec<PathBuf> {
    model_path().into_iter().chain(gemma_path()).collect()
}

/// `$var`, else `name` in the cache the fetch scripts fill
/// (`$GGUF_LOADER_CACHE`, else `~/.cache/gguf-loader`).
pub fn cache_path(var: &str, name: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(p) => PathBuf::from(p),
        None => std::env::var_os("GGUF_LOADER_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                    .join(".cache/gguf-loader")
            })
            .join(name),
    }
}

/// [`cache_path`]`(var, name)` when `probe` (a file inside it; empty: the
/// path itself) exists. Otherwise `None`, with a line saying the test is
/// skipped and which `fetch` script fills the cache, or a failure where
/// `GGUF_LOADER_REQUIRE_MODEL` is set (scripts/test.sh sets it).
pub fn cached(var: &str, name: &str, probe: &str, fetch: &str) -> Option<PathBuf> {
    let p = cache_path(var, name);
    let probe = if probe.is_empty() {
        p.clone()
    } else {
        p.join(probe)
    };
    if probe.exists() {
        return Some(p);
    }
    assert!(
        std::env::var_os("GGUF_LOADER_REQUIRE_MODEL").is_none(),
        "{} is missing (run {fetch})",
        probe.display()
    );
    eprintln!(
        "skipped: {} is missing (run {fetch}; it needs the network once)",
        probe.display()
    );
    None
}

/// The tests' pseudo-random source (a 64-bit LCG, Knuth's MMIX constants):
/// deterministic, seedable, no dependency.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn step(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0
    }

    /// The top byte (the best bits of an LCG).
    pub fn byte(&mut self) -> u8 {
        (self.step() >> 56) as u8
    }

    pub fn next_u32(&mut self) -> u32 {
        (self.step() >> 32) as u32
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }

    /// Roughly uniform in `0..n` (16 random bits).
    pub fn below(&mut self, n: usize) -> usize {
        let x = u32::from(self.byte()) << 8 | u32::from(self.byte());
        x as usize % n
    }
}

/// An f16 scale for random blocks: sane most of the time, sometimes a
/// special value (±0, negative, subnormal, NaN, ±inf, any bits).
pub fn special_f16_scale(rng: &mut Lcg) -> u16 {
    let r = rng.next_u32();
    match r % 16 {
        0 => 0x0000,                                        // +0
        1 => 0x8000 | (rng.next_u32() as u16 & 0x3bff),     // negative
        2 => rng.next_u32() as u16 & 0x03ff,                // subnormal
        3 => 0x7c00 | 1 | (rng.next_u32() as u16 & 0x03ff), // NaN
        4 => 0xfc00,                                        // -inf
        5 => rng.next_u32() as u16,                         // anything
        6 => 0x7c00,                                        // +inf
        7 => 0x8000,                                        // -0
        _ => gguf_loader::f16::from_f32((r >> 8) as f32 / (1u32 << 24) as f32 * 0.1).to_bits(),
    }
}

/// Writes the model `synth` makes of `preset` in `ty` with `seed` to
/// `dir/name`, and returns its path.
pub fn write_synth(
    dir: &std::path::Path,
    name: &str,
    preset: &gguf_loader::Preset,
    ty: gguf_loader::GgmlType,
    seed: u64,
) -> PathBuf {
    let path = dir.join(name);
    let w = gguf_loader::synthesize(preset, ty, seed).unwrap();
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    w.write_to(&mut f).unwrap();
    std::io::Write::flush(&mut f).unwrap();
    path
}

/// Runs one of the repository's Python oracle scripts (gguf-py) on `arg`
/// and returns its standard output; `$PYTHON` picks the interpreter. `None`
/// (the test is skipped, saying why) where gguf-py is not installed, unless
/// `GGUF_LOADER_REQUIRE_MODEL` is set, as `scripts/test.sh` does after
/// installing it.
pub fn python_oracle(script: &str, arg: &std::path::Path) -> Option<Vec<u8>> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let has_gguf = std::process::Command::new(&python)
        .args(["-c", "import gguf, numpy"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_gguf {
        assert!(
            std::env::var_os("GGUF_LOADER_REQUIRE_MODEL").is_none(),
            "{python} cannot import gguf-py (pip install -r scripts/requirements.txt)"
        );
        eprintln!(
            "skipped: {script} needs gguf-py, which {python} cannot import \
             (pip install -r scripts/requirements.txt; it needs the network once)"
        );
        return None;
    }
    let out = std::process::Command::new(&python)
        .arg(repo_root().join("scripts").join(script))
        .arg(arg)
        .output()
        .expect("run the oracle script");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(out.stdout)
}

/// The ordinary and the streaming variant of one kernel (`k.f32` and
/// `k.f32_stream`, or the f16 pair), named, where they exist.
pub fn variants<F>(plain: Option<F>, stream: Option<F>) -> Vec<(&'static str, F)> {
    [("plain", plain), ("stream", stream)]
        .into_iter()
        .filter_map(|(n, f)| Some((n, f?)))
        .collect()
}

/// Runs `f` on `n` outputs preset to `fill`, placed once on a 16-byte
/// boundary and once one element past it (where streaming kernels fall back
/// to ordinary stores), and returns both outputs.
pub fn run_placed<T: Copy>(n: usize, fill: T, f: impl Fn(&mut [T])) -> [Vec<T>; 2] {
    let size = std::mem::size_of::<T>();
    let mut buf = vec![fill; n + 32 / size];
    let aligned = (0..16 / size)
        .find(|o| (buf.as_ptr() as usize + o * size).is_multiple_of(16))
        .expect("some element of the first 16 bytes is 16-byte aligned");
    [aligned, aligned + 1].map(|o| {
        buf.fill(fill);
        f(&mut buf[o..o + n]);
        buf[o..o + n].to_vec()
    })
}

/// What `GGUF_LOADER_SIMD` leaves the decoders in this process: whether
/// they may use AVX2, and AVX-512 (where the CPU has them).
#[allow(dead_code)]
pub fn simd_allowed() -> (bool, bool) {
    let cap = std::env::var(gguf_loader::SIMD_ENV)
        .unwrap_or_default()
        .to_ascii_lowercase();
    match cap.as_str() {
        "scalar" | "none" => (false, false),
        "avx2" => (true, false),
        _ => (true, true),
    }
}

/// The names `simd::kernel_paths` gives a type built both eight and sixteen
/// lanes wide (the K-quants, the i-quants with grids, F32) on an x86-64 CPU
/// with AVX2: both builds where the CPU has AVX-512F/BW and
/// `GGUF_LOADER_SIMD` allows it, else the dispatcher's one pick.
#[cfg(target_arch = "x86_64")]
#[allow(dead_code)]
pub fn wide_path_names() -> &'static [&'static str] {
    let avx512 = std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && simd_allowed().1;
    if avx512 {
        &["avx2", "avx512"]
    } else {
        &["simd"]
    }
}

/// `f`'s result, run on another thread; the test fails, naming `what`,
/// rather than hanging where `f` is not done within `limit` (a panic in
/// `f` fails it too).
pub fn within<R: Send + 'static>(
    limit: std::time::Duration,
    what: &str,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    use std::sync::mpsc;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(r) => r,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: still waiting after {limit:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{what}: panicked"),
    }
}
