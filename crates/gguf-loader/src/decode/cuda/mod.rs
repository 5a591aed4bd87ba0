//! PLACEHOLDER until the kernels land (h-cuk): the CUDA sources and names.
use crate::element::ElementKind;
use crate::format::GgmlType;

/// The one NVRTC source.
pub fn source() -> String {
    String::new()
}

/// The kernel decoding `ty` to `out`.
pub fn kernel_name(ty: GgmlType, out: ElementKind) -> String {
    format!("gl_{}_to_{}", ty.name().to_lowercase(), out.name())
}
