// Elementwise map y = epilogue(x): an activation that could not be fused into its producer, an
// identity/flatten that is a player node, and the broadcast of a shared (prefix) tensor to every
// coalition of the chunk with the mask applied (in_rows0 = B < rows = coalitions x B).

@group(0) @binding(1) var<storage, read> x: array<store_t>;
@group(0) @binding(4) var<storage, read_write> y: array<store_t>;

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
    let v = f32(x[(row % params.in_rows0) * per_row + within]);
    y[idx] = store_t(epilogue(row, within / hw, v));
}
