//! Errors of the GPU backend. Setup problems (no adapter, a missing feature) are reported when the
//! backend is created; device loss and driver errors when a batch runs. Nothing here panics.

use nshap_model::BackendError;

#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// No adapter at all (no GPU driver, no software Vulkan such as lavapipe).
    #[error("no GPU adapter found{hint}")]
    NoAdapter { hint: String },
    /// `NSHAP_ADAPTER` named an adapter that does not exist.
    #[error("no GPU adapter name contains {wanted:?}; available adapters: {available}")]
    AdapterNotFound { wanted: String, available: String },
    /// The adapter refused to create a device.
    #[error("could not open a device on adapter {adapter:?}: {message}")]
    RequestDevice { adapter: String, message: String },
    /// A requested option needs a feature the adapter lacks (e.g. f16 storage).
    #[error("adapter {adapter:?} does not support {what}")]
    Unsupported { adapter: String, what: String },
    /// A weight the backend cannot split (a conv's, or one linear output row) is larger than one
    /// storage binding may be on this adapter.
    #[error(
        "layer {layer:?}: its weight takes {bytes} bytes, more than the {limit}-byte storage binding limit of this adapter (linear weights are split over outputs; conv weights are not)"
    )]
    WeightTooLarge {
        layer: String,
        bytes: u64,
        limit: u64,
    },
    /// The device was lost (driver reset, GPU removed, out of memory) or reported an error.
    #[error("GPU device error: {0}")]
    Device(String),
}

impl From<GpuError> for BackendError {
    fn from(e: GpuError) -> BackendError {
        match e {
            GpuError::Unsupported { what, .. } => BackendError::Unsupported {
                backend: "gpu",
                what,
            },
            e @ GpuError::WeightTooLarge { .. } => BackendError::Unsupported {
                backend: "gpu",
                what: e.to_string(),
            },
            other => BackendError::Device(other.to_string()),
        }
    }
}
