//! The CUDA C sources of the GPU decoders, as strings: one file per family,
//! mirroring the scalar routines of `decode/` formula for formula, so that
//! a kernel's output is bit for bit the CPU's (see `common.cuh` for the
//! kernel ABI, the work unit of each family and the conversions).
//!
//! Nothing here compiles CUDA: the host side hands [`source`] to NVRTC
//! (with `--fmad=false`), and the `gguf-loader-cuda-host` crate compiles the
//! same text as host C++ to test it without a GPU.

// Used by the `internals` API and the CUDA host side only.
#![cfg_attr(not(feature = "internals"), allow(dead_code))]

use crate::element::ElementKind;
use crate::format::GgmlType;

/// The first line of [`source`]: it tells the files they are compiled by
/// NVRTC as one translation unit (so they include nothing). A host build
/// replaces it with `#define GL_HOST 1\n`.
pub const NVRTC_PRELUDE: &str = "#define GL_NVRTC 1\n";

/// Every source file, in the order [`source`] concatenates them: (file
/// name, text). `common.cuh` first (portability layer, byte readers,
/// conversions, stores, the work loop), then the generated tables, then one
/// file per family.
pub const SOURCES: [(&str, &str); 8] = [
    ("common.cuh", include_str!("common.cuh")),
    ("tables.cuh", include_str!("tables.cuh")),
    ("legacy.cu", include_str!("legacy.cu")),
    ("kquants.cu", include_str!("kquants.cu")),
    ("iquants.cu", include_str!("iquants.cu")),
    ("ternary.cu", include_str!("ternary.cu")),
    ("fp4.cu", include_str!("fp4.cu")),
    ("float.cu", include_str!("float.cu")),
];

/// The one translation unit NVRTC compiles: [`NVRTC_PRELUDE`] followed by
/// every file of [`SOURCES`] in order. Never fails.
pub fn source() -> String {
    let len = NVRTC_PRELUDE.len() + SOURCES.iter().map(|(_, s)| s.len() + 1).sum::<usize>();
    let mut out = String::with_capacity(len);
    out.push_str(NVRTC_PRELUDE);
    for (_, text) in SOURCES {
        out.push_str(text);
        if !text.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// The kernel that decodes `ty` to `out`: `gl_<type>_to_<out>` with the
/// type's name lowercased (`gl_q4_0_to_f16`, `gl_iq2_xxs_to_bf16`). Every
/// [`GgmlType`] has one kernel per [`ElementKind`]; never fails.
pub fn kernel_name(ty: GgmlType, out: ElementKind) -> String {
    format!("gl_{}_to_{}", ty.name().to_ascii_lowercase(), out.name())
}
