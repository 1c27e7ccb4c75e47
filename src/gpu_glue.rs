//! Building the GPU backend.

use anyhow::{bail, Result};
use nshap_gpu::{GpuBackend, GpuOptions};
use nshap_model::Backend;

/// The GPU backend; with `hardware_only`, refuse software adapters (lavapipe): on such a
/// machine the CPU backend is faster.
pub fn gpu_backend(hardware_only: bool, options: GpuOptions) -> Result<Box<dyn Backend>> {
    let gpu = GpuBackend::new(options)?;
    if hardware_only && gpu.is_cpu_adapter() {
        bail!(
            "the only adapter is a software one ({})",
            gpu.adapter_info().name
        );
    }
    Ok(Box::new(gpu))
}

/// Adapter descriptions for `nshap devices`.
pub fn list_adapters() -> Vec<String> {
    nshap_gpu::list_adapters()
        .iter()
        .map(|a| a.to_string())
        .collect()
}
