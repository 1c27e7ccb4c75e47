// Residual add y = epilogue(a + b). Either input may be shared (one row per example) while the
// other is per coalition: each is read at row % its own row count.

@group(0) @binding(1) var<storage, read> a: array<store_t>;
@group(0) @binding(2) var<storage, read> b: array<store_t>;
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
    let va = f32(a[(row % params.in_rows0) * per_row + within]);
    let vb = f32(b[(row % params.in_rows1) * per_row + within]);
    y[idx] = store_t(epilogue(row, within / hw, va + vb));
}
