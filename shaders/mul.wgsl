// Elementwise product y = epilogue(a * b) (squeeze-and-excitation gates, gated units).
// The operands have the output's shape [C, H, W], or one of them has one value per channel
// ([C, 1, 1] or [C]) and is broadcast over the other's positions: mode bit 0 says a is such a
// per-channel operand, bit 1 says b is. Either input may be shared (one row per example) while the
// other is per coalition: each is read at row % its own row count (in_rows0, in_rows1).

@group(0) @binding(1) var<storage, read> a: array<store_t>;
@group(0) @binding(2) var<storage, read> b: array<store_t>;
@group(0) @binding(4) var<storage, read_write> y: array<store_t>;

// Index of element `within` (of an output row) in row `r` of an operand.
fn operand_index(r: u32, within: u32, c: u32, per_channel: bool) -> u32 {
    if per_channel {
        return r * params.c_out + c;
    }
    return r * params.c_out * params.h_out * params.w_out + within;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = flat_workgroup(wid) * 256u + lid.x;
    if idx >= params.total {
        return;
    }
    let hw = params.h_out * params.w_out;
    let per_row = params.c_out * hw;
    let row = idx / per_row;
    let within = idx % per_row;
    let c = within / hw;
    let va = f32(a[operand_index(row % params.in_rows0, within, c, (params.mode & 1u) != 0u)]);
    let vb = f32(b[operand_index(row % params.in_rows1, within, c, (params.mode & 2u) != 0u)]);
    y[idx] = store_t(epilogue(row, c, va * vb));
}
