// Adaptive average pooling to 1x1: y[row, c] = mean over H x W of x[row, c]. One thread per
// (row, channel); the sum is accumulated in f32 whatever the storage precision.

@group(0) @binding(1) var<storage, read> x: array<store_t>;
@group(0) @binding(4) var<storage, read_write> y: array<store_t>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = flat_workgroup(wid) * 256u + lid.x;
    if idx >= params.total {
        return;
    }
    let c = idx % params.c_out;
    let row = idx / params.c_out;
    let hw = params.h_in * params.w_in;
    let base = ((row % params.in_rows0) * params.c_in + c) * hw;
    var sum = 0.0;
    for (var i = 0u; i < hw; i++) {
        sum += f32(x[base + i]);
    }
    y[idx] = store_t(epilogue(row, c, sum / f32(hw)));
}
