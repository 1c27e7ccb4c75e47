//! How many examples and coalitions go through the device together.
//!
//! A chunk of B examples and M coalitions needs `B x shared_row + M x B x suffix_row` elements of
//! activation memory (see [`crate::plan::Plan`]). Chunks are as large as the memory budget allows,
//! and small enough that no single buffer exceeds the device's `max_storage_buffer_binding_size`
//! and `max_buffer_size`, and no dispatch exceeds 65,535 workgroups in a dimension.

use crate::plan::Plan;

/// The most rows a linear-layer dispatch covers (65,535 workgroups of 64 rows along y).
pub const MAX_ROWS: u64 = 65_535 * 64;

/// Device and budget limits that bound a chunk.
#[derive(Clone, Copy, Debug)]
pub struct ChunkLimits {
    /// Soft target for activation memory, bytes.
    pub budget_bytes: u64,
    /// Largest buffer that can be bound as one storage binding, bytes.
    pub max_binding_bytes: u64,
    /// Bytes per stored element (4 for f32, 2 for f16).
    pub element_bytes: u64,
}

/// Examples and coalitions per chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunks {
    pub examples: usize,
    pub coalitions: usize,
}

/// Choose chunk sizes for a request of `examples` x `coalitions`. Prefers all examples in one
/// chunk (the shared prefix then runs once), then as many coalitions as fit.
pub fn choose(plan: &Plan, examples: usize, coalitions: usize, limits: ChunkLimits) -> Chunks {
    let e = limits.element_bytes.max(1);
    // Keep every element index within u32 arithmetic in the kernels.
    let binding = limits.max_binding_bytes.min(u64::from(u32::MAX));
    let shared_row = plan.shared_row_elements() as u64 * e;
    let suffix_row = plan.suffix_row_elements() as u64 * e;
    let widest_shared = (plan.shared_slots.iter().copied().max().unwrap_or(0))
        .max(plan.tensors[0].shape.numel()) as u64
        * e;
    let widest_suffix = plan.suffix_slots.iter().copied().max().unwrap_or(0) as u64 * e;
    let rows_per_binding = |widest: u64| binding.checked_div(widest).unwrap_or(u64::MAX);

    let max_suffix_rows = rows_per_binding(widest_suffix).clamp(1, MAX_ROWS);
    let per_example = (shared_row + suffix_row).max(1);
    let b = (examples as u64)
        .min(rows_per_binding(widest_shared))
        .min(max_suffix_rows)
        .min(limits.budget_bytes / per_example)
        .max(1);
    let left = limits.budget_bytes.saturating_sub(b * shared_row);
    let by_budget = if suffix_row == 0 {
        u64::MAX
    } else {
        left / (b * suffix_row)
    };
    let m = (coalitions as u64)
        .min(by_budget)
        .min(max_suffix_rows / b)
        .max(1);
    Chunks {
        examples: b as usize,
        coalitions: m as usize,
    }
}

/// `[start, end)` ranges of `total` items in chunks of `size`.
pub fn ranges(total: usize, size: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let size = size.max(1);
    (0..total.div_ceil(size)).map(move |i| i * size..((i + 1) * size).min(total))
}
