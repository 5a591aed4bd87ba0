//! The decode kernels' one compilation per process: NVRTC turns the CUDA C
//! sources (`decode/cuda/*.cu`) into a CUBIN for this device, cached on disk
//! keyed by everything that shapes it, so a second start loads the file.
//!
//! Settings (environment):
//! - `GGUF_LOADER_CUDA_INCLUDE`: NVRTC's include path (default
//!   `/usr/local/cuda/include`; the kernels include no header, so this only
//!   matters to a modified source).
//! - `GGUF_LOADER_CUDA_CACHE`: the cache folder, or `off` (default
//!   `$XDG_CACHE_HOME/gguf-loader/cuda`, else `~/.cache/gguf-loader/cuda`).

use std::ffi::{c_char, c_int, CString};
use std::path::PathBuf;

use cudarc::nvrtc::{result as nvrtc, sys as nvrtc_sys};

use crate::decode::cuda as kernels;

/// The compiled module, and how it was had.
pub(crate) struct Compiled {
    /// A CUBIN for this device, or PTX when NVRTC could not target it.
    pub image: Image,
    /// Whether it came from the disk cache.
    pub from_cache: bool,
    /// The cache file (written or read), when the cache is on.
    pub cache_file: Option<PathBuf>,
}

/// A compiled module's bytes.
pub(crate) enum Image {
    /// Machine code for the device.
    Cubin(Vec<u8>),
    /// PTX text, compiled by the driver at load.
    Ptx(String),
}

/// FNV-1a, 64 bits: a stable key for the cache file (not a security
/// boundary: the cache is the user's own folder).
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for p in parts {
        for &b in (p.len() as u64).to_le_bytes().iter().chain(p.iter()) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

fn cache_dir() -> Option<PathBuf> {
    match std::env::var_os("GGUF_LOADER_CUDA_CACHE") {
        Some(v) if v == "off" => None,
        Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
        _ => std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .map(|d| d.join("gguf-loader").join("cuda")),
    }
}

/// NVRTC's version, part of the cache key.
pub(crate) fn nvrtc_version() -> (c_int, c_int) {
    let (mut major, mut minor) = (0, 0);
    // SAFETY: two valid out-pointers; the library is present (checked by
    // the caller before anything else runs).
    unsafe {
        let _ = nvrtc_sys::nvrtcVersion(&mut major, &mut minor);
    }
    (major, minor)
}

/// The newest architecture (as `10 * major + minor`) this NVRTC can target
/// that is not newer than compute capability `cc`; `None` when it targets
/// none of them, or is too old (before 11.2) to say.
fn newest_arch_up_to(cc: (i32, i32)) -> Option<i32> {
    if nvrtc_version() < (11, 2) {
        return None;
    }
    let mut n: c_int = 0;
    // SAFETY: one valid out-pointer; NVRTC 11.2+ has this function.
    let r = unsafe { nvrtc_sys::nvrtcGetNumSupportedArchs(&mut n) };
    if r != nvrtc_sys::nvrtcResult::NVRTC_SUCCESS || !(1..=1024).contains(&n) {
        return None;
    }
    let mut archs = vec![0 as c_int; n as usize];
    // SAFETY: `archs` holds the `n` values NVRTC just said it writes.
    let r = unsafe { nvrtc_sys::nvrtcGetSupportedArchs(archs.as_mut_ptr()) };
    if r != nvrtc_sys::nvrtcResult::NVRTC_SUCCESS {
        return None;
    }
    let want = cc.0.saturating_mul(10).saturating_add(cc.1);
    archs.into_iter().filter(|&a| a <= want).max()
}

/// The NVRTC options: no contraction of `a*b+c` into an FMA (the CPU
/// rounds twice), IEEE division and square root, denormals kept.
pub(crate) fn options(arch: &str) -> Vec<String> {
    let include = std::env::var("GGUF_LOADER_CUDA_INCLUDE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "/usr/local/cuda/include".to_string());
    vec![
        format!("--gpu-architecture={arch}"),
        "--fmad=false".to_string(),
        "--ftz=false".to_string(),
        "--prec-div=true".to_string(),
        "--prec-sqrt=true".to_string(),
        "--std=c++17".to_string(),
        format!("--include-path={include}"),
    ]
}

/// Compiles `src` with `opts`; the CUBIN (`cubin`) or PTX, or NVRTC's log.
fn nvrtc_compile(src: &str, opts: &[String], cubin: bool) -> Result<Image, String> {
    let c_src = CString::new(src).map_err(|_| "kernel source holds a NUL byte".to_string())?;
    let prog = nvrtc::create_program(&c_src, Some(c"gguf_loader_decode.cu"))
        .map_err(|e| format!("nvrtcCreateProgram: {e:?}"))?;
    // SAFETY: `prog` was just created and is destroyed once, below; the
    // out-buffers are sized by the matching size queries.
    let out = unsafe {
        match nvrtc::compile_program(prog, opts) {
            Err(e) => {
                let log = nvrtc::get_program_log(prog)
                    .map(|l| {
                        let bytes: Vec<u8> = l.iter().map(|&c| c as u8).collect();
                        String::from_utf8_lossy(&bytes)
                            .trim_end_matches('\0')
                            .to_string()
                    })
                    .unwrap_or_default();
                Err(format!("NVRTC failed ({e:?}): {log}"))
            }
            Ok(()) if cubin => {
                let mut size = 0usize;
                let r = nvrtc_sys::nvrtcGetCUBINSize(prog, &mut size);
                if r != nvrtc_sys::nvrtcResult::NVRTC_SUCCESS || size == 0 {
                    Err(format!("nvrtcGetCUBINSize: {r:?}"))
                } else {
                    let mut buf = vec![0u8; size];
                    let r = nvrtc_sys::nvrtcGetCUBIN(prog, buf.as_mut_ptr() as *mut c_char);
                    if r == nvrtc_sys::nvrtcResult::NVRTC_SUCCESS {
                        Ok(Image::Cubin(buf))
                    } else {
                        Err(format!("nvrtcGetCUBIN: {r:?}"))
                    }
                }
            }
            Ok(()) => nvrtc::get_ptx(prog)
                .map(|p| {
                    let bytes: Vec<u8> = p.iter().map(|&c| c as u8).collect();
                    Image::Ptx(
                        String::from_utf8_lossy(&bytes)
                            .trim_end_matches('\0')
                            .to_string(),
                    )
                })
                .map_err(|e| format!("nvrtcGetPTX: {e:?}")),
        }
    };
    // SAFETY: created above, not destroyed before.
    unsafe {
        let _ = nvrtc::destroy_program(prog);
    }
    out
}

/// The decode module for a device of compute capability `cc` named `name`
/// under driver `driver_version`: from the cache when it holds it (and
/// `read_cache`), else compiled (to a CUBIN for `sm_XY`, or to PTX where
/// this NVRTC cannot target the device) and written to the cache.
pub(crate) fn compile(
    cc: (i32, i32),
    name: &str,
    driver_version: i32,
    read_cache: bool,
) -> Result<Compiled, String> {
    let src = kernels::source();
    let sm = format!("sm_{}{}", cc.0, cc.1);
    let opts = options(&sm);
    let (vmaj, vmin) = nvrtc_version();
    let key = fnv1a(&[
        src.as_bytes(),
        opts.join(" ").as_bytes(),
        name.as_bytes(),
        &vmaj.to_le_bytes(),
        &vmin.to_le_bytes(),
        &driver_version.to_le_bytes(),
        env!("CARGO_PKG_VERSION").as_bytes(),
    ]);
    let cache_file = cache_dir().map(|d| d.join(format!("decode-{sm}-{key:016x}.cubin")));
    let cached = cache_file
        .as_ref()
        .filter(|_| read_cache)
        .and_then(|f| std::fs::read(f).ok());
    if let Some(bytes) = cached {
        // An ELF image: anything else (a torn or foreign file) is ignored.
        if bytes.starts_with(b"\x7fELF") {
            return Ok(Compiled {
                image: Image::Cubin(bytes),
                from_cache: true,
                cache_file,
            });
        }
    }
    let image = match nvrtc_compile(&src, &opts, true) {
        Ok(image) => image,
        Err(cubin_err) => {
            // An NVRTC older than the device: PTX for the newest
            // architecture it knows that the device runs, for the driver to
            // finish.
            let arch = newest_arch_up_to(cc)
                .map(|a| format!("compute_{a}"))
                .unwrap_or_else(|| format!("compute_{}{}", cc.0, cc.1));
            nvrtc_compile(&src, &options(&arch), false)
                .map_err(|ptx_err| format!("{cubin_err}; as PTX for {arch}: {ptx_err}"))?
        }
    };
    if let (Some(file), Image::Cubin(bytes)) = (&cache_file, &image) {
        // Best effort: a cache that cannot be written is only slower.
        let _ = write_atomically(file, bytes);
    }
    Ok(Compiled {
        image,
        from_cache: false,
        cache_file,
    })
}

/// Writes `bytes` to a temporary file beside `path` and renames it into
/// place, so that a reader never sees half a file.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("cubin"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// For tests that compile kernels with NVRTC (no GPU needed): whether NVRTC
/// can be loaded. Where it cannot, the test `test` is to be skipped, and
/// this says so on stderr, unless `GGUF_LOADER_REQUIRE_NVRTC` is set
/// (scripts/test.sh sets it after fetching NVRTC with
/// scripts/fetch-nvrtc.sh): then it panics, failing the test.
#[cfg(any(test, feature = "internals"))]
pub fn nvrtc_present_for_test(test: &str) -> bool {
    // SAFETY: only tries to load the library.
    let present = unsafe { nvrtc_sys::is_culib_present() };
    if !present {
        assert!(
            std::env::var_os("GGUF_LOADER_REQUIRE_NVRTC").is_none(),
            "GGUF_LOADER_REQUIRE_NVRTC is set but libnvrtc cannot be loaded"
        );
        eprintln!("{test}: skipped, NVRTC not found (scripts/fetch-nvrtc.sh, then its folder on LD_LIBRARY_PATH)");
    }
    present
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::element::ElementKind;

    #[test]
    fn key_depends_on_every_part() {
        let a = fnv1a(&[b"ab", b"c"]);
        assert_ne!(a, fnv1a(&[b"a", b"bc"]));
        assert_ne!(a, fnv1a(&[b"ab", b"d"]));
        assert_eq!(a, fnv1a(&[b"ab", b"c"]));
    }

    /// The kernels compile with a real NVRTC, with the options a GPU load
    /// uses, no GPU needed: a CUBIN for sm_90 (the H200) and sm_75 (the
    /// oldest CUDA 13 targets), and PTX with one kernel per type and output
    /// and no fused multiply-add.
    #[test]
    fn kernels_compile_with_nvrtc() {
        if !super::nvrtc_present_for_test("kernels_compile_with_nvrtc") {
            return;
        }
        let src = kernels::source();
        for sm in ["sm_90", "sm_75"] {
            match nvrtc_compile(&src, &options(sm), true) {
                Ok(Image::Cubin(bytes)) => assert!(bytes.starts_with(b"\x7fELF"), "{sm}"),
                Ok(Image::Ptx(_)) => panic!("{sm}: PTX where a CUBIN was asked for"),
                Err(e) => panic!("{sm}: {e}"),
            }
        }
        let ptx = match nvrtc_compile(&src, &options("compute_90"), false) {
            Ok(Image::Ptx(p)) => p,
            Ok(Image::Cubin(_)) => panic!("a CUBIN where PTX was asked for"),
            Err(e) => panic!("compute_90: {e}"),
        };
        let entries = ptx.matches(".entry gl_").count();
        assert_eq!(entries, 35 * 3, "one kernel per ggml type and output");
        for ty in crate::format::GgmlType::ALL {
            for kind in [ElementKind::F32, ElementKind::F16, ElementKind::BF16] {
                let name = kernels::kernel_name(ty, kind);
                assert!(ptx.contains(&format!(".entry {name}(")), "{name} missing");
            }
        }
        assert!(!ptx.contains("fma."), "a fused multiply-add in the PTX");
    }

    /// The PTX fallback's choice of architecture, with a real NVRTC.
    #[test]
    fn newest_arch_is_the_devices_or_below() {
        if !super::nvrtc_present_for_test("newest_arch_is_the_devices_or_below") {
            return;
        }
        assert_eq!(newest_arch_up_to((9, 0)), Some(90));
        // A device newer than any this NVRTC knows: its newest.
        let newest = newest_arch_up_to((99, 9)).expect("some architecture");
        assert!(newest >= 90, "{newest}");
        assert_eq!(newest_arch_up_to((i32::MAX, i32::MAX)), Some(newest));
        // Older than any it knows (CUDA 13 starts at 7.5).
        assert_eq!(newest_arch_up_to((1, 0)), None);
        // What the fallback compiles for a device past this NVRTC.
        let arch = format!("compute_{newest}");
        match nvrtc_compile(&kernels::source(), &options(&arch), false) {
            Ok(Image::Ptx(p)) => assert!(p.contains(&format!(".target sm_{newest}"))),
            Ok(Image::Cubin(_)) => panic!("a CUBIN where PTX was asked for"),
            Err(e) => panic!("{arch}: {e}"),
        }
    }

    #[test]
    fn options_never_fuse() {
        let o = options("sm_90");
        assert!(o.contains(&"--fmad=false".to_string()));
        assert!(o.contains(&"--ftz=false".to_string()));
        assert!(o.iter().any(|s| s.starts_with("--include-path=")));
    }
}
