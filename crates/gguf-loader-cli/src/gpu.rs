//! The GPU as the CLI reports it: set up before a load (so its one-off
//! costs are apart from the load's time) and its memory before and after.
//! Without the `cuda` feature there is nothing to set up, and a load on a
//! GPU answers the library's one-line "not available in this build".

use gguf_loader::Device;
use serde_json::json;

use crate::CliError;

/// A GPU set up for a load.
pub struct GpuInfo {
    /// The card's name.
    pub name: String,
    /// Milliseconds to create the context.
    pub context_ms: f64,
    /// Milliseconds to compile (or read from the cache) and load the kernels.
    pub compile_ms: f64,
    /// Whether the kernels came from the disk cache.
    pub kernels_cached: bool,
    /// Device memory in use before the load, in bytes (all processes).
    pub used_before: usize,
}

impl GpuInfo {
    /// The JSON object `load --json` reports under `"gpu"`.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "name": self.name,
            "context_ms": self.context_ms,
            "kernels_ms": self.compile_ms,
            "kernels_cached": self.kernels_cached,
        })
    }
}

/// Sets up `device` when it is a GPU (`None` for the CPU, and for a GPU in
/// a build without the `cuda` feature: the load itself then says so).
pub fn setup(device: Device) -> Result<Option<GpuInfo>, CliError> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(i) = device {
        let s = gguf_loader::cuda_setup(i)?;
        let (free, total) = gguf_loader::cuda_memory(i)?;
        return Ok(Some(GpuInfo {
            name: s.name,
            context_ms: s.context_ms,
            compile_ms: s.compile_ms,
            kernels_cached: s.kernels_cached,
            used_before: total.saturating_sub(free),
        }));
    }
    let _ = device;
    Ok(None)
}

/// Device memory in use now on `device`, in bytes (`None` for the CPU or
/// when the driver cannot say).
pub fn used_memory(device: Device) -> Option<usize> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(i) = device {
        return gguf_loader::cuda_memory(i)
            .ok()
            .map(|(free, total)| total.saturating_sub(free));
    }
    let _ = device;
    None
}

/// Frees the loader's staging ring on `device` when it is a GPU (a program
/// that loads once has no more use for it).
pub fn release_staging(device: Device) {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(i) = device {
        gguf_loader::cuda_release_staging(i);
    }
    let _ = device;
}
