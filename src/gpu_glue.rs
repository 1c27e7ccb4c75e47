//! Building the GPU backend (kept apart so the rest of the facade does not depend on its API).

use anyhow::Result;
use nshap_model::Backend;

/// The GPU backend; with `hardware_only`, refuse software adapters (lavapipe): on such a
/// machine the CPU backend is faster.
pub fn gpu_backend(hardware_only: bool) -> Result<Box<dyn Backend>> {
    let _ = hardware_only;
    anyhow::bail!("the GPU backend is not built yet")
}

/// Adapter descriptions for `nshap devices`.
pub fn list_adapters() -> Vec<String> {
    Vec::new()
}
