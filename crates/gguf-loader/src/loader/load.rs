//! Decoding a mapped tensor into a [`Tensor`].

use half::f16;

use super::MmapGGUFLoader;
use crate::decode::{self, Element};
use crate::error::{Error, Result};
use crate::format::{Endianness, GgmlType};
use crate::tensor::{Device, Tensor};

impl MmapGGUFLoader {
    /// Decodes one tensor to f16 on `device` (the design's entry point).
    pub fn load_tensor_f16(&self, name: &str, device: &Device) -> Result<Tensor<f16>> {
        self.load_tensor::<f16>(name, device)
    }

    /// Decodes one tensor to `T` (f32, f16 or bf16) on `device`, using every
    /// rayon thread for large tensors.
    pub fn load_tensor<T: Element>(&self, name: &str, device: &Device) -> Result<Tensor<T>> {
        if *device != Device::Cpu {
            return Err(Error::UnsupportedDevice(*device));
        }
        let info = self
            .tensor_info(name)
            .ok_or_else(|| Error::TensorNotFound(name.to_string()))?;
        let bytes = self.get_tensor_data(name)?;
        let decode_err = |source| Error::Decode {
            tensor: name.to_string(),
            source,
        };
        let data = if self.endianness() == Endianness::Big {
            let le = to_little_endian(info.ty, bytes).ok_or_else(|| Error::BigEndianData {
                tensor: name.to_string(),
                ty: info.ty,
            })?;
            decode::dequantize::<T>(info.ty, &le).map_err(decode_err)?
        } else {
            decode::dequantize::<T>(info.ty, bytes).map_err(decode_err)?
        };
        Ok(Tensor::from_vec(info.dims().to_vec(), data).expect("decoded length matches dims"))
    }
}

/// Byte-swaps the data of a plain number type from a big-endian file;
/// `None` for block-quantized types, whose big-endian layout is not defined
/// by ggml.
fn to_little_endian(ty: GgmlType, bytes: &[u8]) -> Option<Vec<u8>> {
    if ty.is_quantized() {
        return None;
    }
    let size = ty.type_size() as usize;
    let mut out = bytes.to_vec();
    for chunk in out.chunks_exact_mut(size) {
        chunk.reverse();
    }
    Some(out)
}
