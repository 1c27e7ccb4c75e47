//! Options of the GPU backend.

/// Storage precision of weights and activations. Accumulation is always f32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    #[default]
    F32,
    /// f16 storage (halves memory traffic); needs the adapter's `SHADER_F16` feature.
    /// See docs/gpu.md for the measured error against f32.
    F16,
}

impl Precision {
    /// Bytes of one stored activation or weight.
    pub fn bytes(self) -> usize {
        match self {
            Precision::F32 => 4,
            Precision::F16 => 2,
        }
    }
}

/// How the backend uses the device.
#[derive(Clone, Debug)]
pub struct GpuOptions {
    /// Target for the activation buffers of one chunk, in bytes. Chunks of coalitions and examples
    /// are sized to fit it (and the device's buffer limits); a soft target: one example of one
    /// coalition always runs even when it alone needs more.
    pub memory_budget_bytes: u64,
    pub precision: Precision,
    /// Substring of the adapter name to use; `None` reads `NSHAP_ADAPTER`, then picks the
    /// high-performance adapter.
    pub adapter: Option<String>,
    /// Most bytes of one weight buffer bound at once; `None`: the adapter's storage binding limit.
    /// Larger linear weights are split over output features into parts that fit (a conv weight
    /// that does not fit is an error naming it). Lower it to exercise the split on small models.
    pub max_weight_binding_bytes: Option<u64>,
    /// Masks moved past channel-wise ops, per-example tables for the conv and linear layers that
    /// read a player node, and the mask applied on read (see `plan.rs`). Off: every op of the
    /// network runs as written, the reference the fast paths are tested against.
    pub fast_paths: bool,
}

impl Default for GpuOptions {
    fn default() -> GpuOptions {
        GpuOptions {
            memory_budget_bytes: 1 << 30,
            precision: Precision::F32,
            adapter: None,
            max_weight_binding_bytes: None,
            fast_paths: true,
        }
    }
}
