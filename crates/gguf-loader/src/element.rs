//! The floats tensors decode to: f32, f16 and bf16.

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use crate::format::GgmlType;

/// Which float an [`Element`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElementKind {
    /// IEEE single precision.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16 (the top half of an f32).
    BF16,
}

impl ElementKind {
    /// `"f32"`, `"f16"` or `"bf16"`.
    pub fn name(self) -> &'static str {
        match self {
            ElementKind::F32 => "f32",
            ElementKind::F16 => "f16",
            ElementKind::BF16 => "bf16",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            ElementKind::F32 => 4,
            ElementKind::F16 | ElementKind::BF16 => 2,
        }
    }

    /// The ggml type that stores this float.
    pub fn ggml_type(self) -> GgmlType {
        match self {
            ElementKind::F32 => GgmlType::F32,
            ElementKind::F16 => GgmlType::F16,
            ElementKind::BF16 => GgmlType::BF16,
        }
    }
}

/// What a GPU buffer's values must be (feature `cuda`): cudarc's
/// `DeviceRepr`. Nothing without the feature.
#[cfg(feature = "cuda")]
pub trait DeviceValue: cudarc::driver::DeviceRepr {}
#[cfg(feature = "cuda")]
impl<T: cudarc::driver::DeviceRepr> DeviceValue for T {}
/// What a GPU buffer's values must be (feature `cuda`): nothing here.
#[cfg(not(feature = "cuda"))]
pub trait DeviceValue {}
#[cfg(not(feature = "cuda"))]
impl<T> DeviceValue for T {}

pub(crate) mod sealed {
    use super::*;

    /// What the decoders need of an output float; private, so that
    /// [`Element`](super::Element) has exactly the three implementations
    /// below (the zeroing allocator relies on all-zero bytes being a value).
    pub trait Sealed: Sized + bytemuck::Pod + DeviceValue {
        /// Converts a run of f32 values.
        fn from_f32_slice(src: &[f32], dst: &mut [Self]);

        /// The buffer as f32, when this is f32.
        fn as_f32_mut(_dst: &mut [Self]) -> Option<&mut [f32]> {
            None
        }

        /// The buffer as f16, when this is f16.
        fn as_f16_mut(_dst: &mut [Self]) -> Option<&mut [f16]> {
            None
        }

        /// The buffer as bf16, when this is bf16.
        fn as_bf16_mut(_dst: &mut [Self]) -> Option<&mut [bf16]> {
            None
        }
    }
}

/// A float that tensors decode to: `f32`, [`f16`](struct@half::f16) or [`bf16`](struct@half::bf16), and nothing
/// else (the trait is sealed). f16 and bf16 values are the f32 value rounded
/// to nearest-even, as ggml's `ggml_fp32_to_fp16` / `_to_bf16` do.
///
/// A type of the caller's cannot be one, even with every item written out:
/// the zeroing allocator and the decoders rely on the three floats' layout.
///
/// ```compile_fail,E0277
/// use gguf_loader::{Element, ElementKind};
///
/// #[derive(Clone, Copy, Default, PartialEq, Debug)]
/// struct Mine(u8);
///
/// impl Element for Mine {
///     const KIND: ElementKind = ElementKind::F32;
/// }
/// ```
pub trait Element:
    sealed::Sealed + Copy + Default + Send + Sync + PartialEq + std::fmt::Debug + 'static
{
    /// Which float this is.
    const KIND: ElementKind;

    /// The values' little-endian bytes (a copy; see also `Tensor::as_bytes`).
    fn to_le_bytes_vec(values: &[Self]) -> Vec<u8> {
        let mut out = bytemuck::cast_slice::<Self, u8>(values).to_vec();
        if cfg!(target_endian = "big") {
            for v in out.chunks_exact_mut(Self::KIND.size()) {
                v.reverse();
            }
        }
        out
    }
}

/// Copies `src`, little-endian values of type `ty`, into `dst` bit for bit
/// when `ty` is `T` itself (F32 → f32, F16 → f16, BF16 → bf16); `false`,
/// touching nothing, when it is not. Copies the whole values that fit both.
pub(crate) fn copy_same<T: Element>(ty: GgmlType, src: &[u8], dst: &mut [T]) -> bool {
    if ty != T::KIND.ggml_type() {
        return false;
    }
    let out: &mut [u8] = bytemuck::cast_slice_mut(dst);
    let n = out.len().min(src.len()) / T::KIND.size() * T::KIND.size();
    out[..n].copy_from_slice(&src[..n]);
    if cfg!(target_endian = "big") {
        for v in out[..n].chunks_exact_mut(T::KIND.size()) {
            v.reverse();
        }
    }
    true
}

impl Element for f32 {
    const KIND: ElementKind = ElementKind::F32;
}

impl sealed::Sealed for f32 {
    fn from_f32_slice(src: &[f32], dst: &mut [f32]) {
        dst.copy_from_slice(src);
    }

    fn as_f32_mut(dst: &mut [f32]) -> Option<&mut [f32]> {
        Some(dst)
    }
}

impl Element for f16 {
    const KIND: ElementKind = ElementKind::F16;
}

impl sealed::Sealed for f16 {
    fn from_f32_slice(src: &[f32], dst: &mut [f16]) {
        dst.convert_from_f32_slice(src);
    }

    fn as_f16_mut(dst: &mut [f16]) -> Option<&mut [f16]> {
        Some(dst)
    }
}

impl Element for bf16 {
    const KIND: ElementKind = ElementKind::BF16;
}

impl sealed::Sealed for bf16 {
    fn from_f32_slice(src: &[f32], dst: &mut [bf16]) {
        crate::decode::simd::f32_to_bf16(src, dst);
    }

    fn as_bf16_mut(dst: &mut [bf16]) -> Option<&mut [bf16]> {
        Some(dst)
    }
}
