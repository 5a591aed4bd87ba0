//! gguf-loader: open GGUF model files (the llama.cpp / ggml format) through a
//! memory map, zero-copy, validate them completely, and decode their tensors,
//! quantized or not, to f32, f16 or bf16 exactly as ggml does.
//!
//! ```no_run
//! use gguf_loader::{load_model_f16, Device, MmapGGUFLoader};
//!
//! let loader = MmapGGUFLoader::new("model.gguf")?;            // mmap + parse + validate
//! let bytes: &[u8] = loader.get_tensor_data("blk.0.attn_q.weight")?; // zero-copy
//! let layers = loader.metadata().arch_u32("block_count")?;    // `{arch}.block_count`
//! let q = loader.load_tensor_f16("blk.0.attn_q.weight", Device::Cpu)?; // Tensor<f16>
//! let model = loader.load_f16_model(Device::Cpu)?;             // every tensor, in parallel
//! let same = load_model_f16("model.gguf")?;                    // the one-call form
//! # Ok::<(), gguf_loader::Error>(())
//! ```
//!
//! Data flows through the crate as through its folders: the format layer
//! parses and validates bytes ([`GgufFile`]), the loader maps files and split
//! shards ([`MmapGGUFLoader`]), the decoders turn ggml blocks into numbers
//! ([`dequantize_into`]), and the model layer builds [`Tensor`]s and
//! [`Model`]s from them, eagerly or lazily ([`LazyModel`]).
//!
//! Every name the crate offers is listed here, at its root.
//!
//! # Features
//! - `synth`: [`synthesize`] (or stream, [`write_synthetic`]) models with real shapes and random weights.
//! - `ndarray`: [`Tensor::view`] as an `ndarray::ArrayViewD` in row-major shape.
//! - `internals`: the per-type reference routines and SIMD kernel tables,
//!   for the fuzz targets, benchmarks and tests; not a stable API.
//! - `cuda`: tensors on NVIDIA GPUs ([`Device::Cuda`]): quantized bytes cross
//!   PCIe through a pinned staging ring and are decoded on the device, bit
//!   for bit like the CPU. The driver and NVRTC are loaded at run time, so a
//!   build with the feature runs (and says why it cannot use a GPU) where
//!   there is none. [`Tensor::cuda_slice`] hands a cudarc `CudaSlice` over,
//!   and [`cudarc`] is re-exported so that a caller uses the same version.

#![deny(missing_docs)]
// The feature list above links to gated items; a build without every feature
// (a plain `cargo doc`) would see those links dangle. docs.rs and CI document
// all features, where every link must resolve.
#![cfg_attr(
    not(all(feature = "synth", feature = "ndarray", feature = "cuda")),
    allow(rustdoc::broken_intra_doc_links)
)]

mod alloc;
mod check;
#[cfg(feature = "cuda")]
mod cuda;
mod decode;
mod element;
mod error;
mod format;
mod loader;
mod model;
#[cfg(feature = "synth")]
mod synth;
mod tensor;

pub use check::{
    check_model, check_model_report, check_model_report_with, check_tensor_data, checked_fields,
    count_tensor_data, DataProblem, ModelReport, ProblemKind, SkippedTensor,
};
#[cfg(feature = "cuda")]
pub use cuda::{cuda_memory, cuda_release_staging, cuda_setup, CudaSetup};
#[cfg(feature = "cuda")]
pub use cudarc;
pub use decode::simd::{simd_features, SIMD_CAPS, SIMD_ENV};
pub use decode::{
    dequantize, dequantize_into, dequantize_into_par, dequantize_into_par_with,
    dequantize_into_with, dequantize_rows_into, fresh_output, DecodeError, OutputMemory, Stores,
    STREAMING_MIN_BYTES,
};
pub use element::{Element, ElementKind};
pub use error::{Error, Result};
pub use format::Escaped;
pub use format::{
    ArrayIter, ArrayView, BlockLayout, Context, Endianness, FormatError, FormatErrorKind, GgmlType,
    GgufDataWriter, GgufFile, GgufStr, GgufWriter, MetaValue, Metadata, MetadataError, TensorInfo,
    TypeId, Value, ValueType, ALIGNMENT_KEY, ARCHITECTURE_KEY, DEFAULT_ALIGNMENT, GGUF_MAGIC,
    MAX_ARRAY_NESTING, MAX_DIMS,
};
pub use half::{bf16, f16};
pub use loader::{LoadMode, MmapGGUFLoader};
pub use model::{
    load_model_f16, max_threads, pool_threads, GpuStaging, IgnoredKey, Layer, LayerIter, LazyLayer,
    LazyModel, LoadOptions, Model, ModelConfig, ModelTensors, PoolThreads, Prefetch, Progress,
    ProgressFn, KNOWN_ARCHITECTURES, THREADS_PER_CORE,
};
#[cfg(feature = "synth")]
pub use synth::{synthesize, write_synthetic, Preset};
pub use tensor::{Device, ParseDeviceError, Tensor};

/// The pieces below the public API, for the fuzz targets, benchmarks and
/// tests (feature `internals`): per-type reference routines, the SIMD kernel
/// tables, block layouts. Not a stable API.
#[cfg(feature = "internals")]
#[doc(hidden)]
#[allow(missing_docs)]
pub mod internals {
    pub use crate::decode::cuda as cuda_kernels;
    pub use crate::decode::{float, fp4, iquants, kquants, legacy, simd, ternary};
    pub use crate::decode::{reference_row_fn, row_fn, RowFn};
    pub use crate::format::blocks;
    /// The decode kernels' sources, and (feature `cuda`) a GPU as the
    /// loader sets it up, for the GPU benchmarks.
    pub mod cuda {
        #[cfg(feature = "cuda")]
        pub use crate::cuda::{compile::nvrtc_present_for_test, gpu, Gpu};
        pub use crate::decode::cuda::*;
    }
}
