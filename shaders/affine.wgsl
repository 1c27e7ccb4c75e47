// Per-channel affine map y = scale[c] * x + shift[c]: eval-mode batchnorm where it could not be
// folded into the conv/linear before it (e.g. that conv is itself a player node, or the BN reads
// the input or an add). aux = [scale (C) | shift (C)].

@group(0) @binding(1) var<storage, read> x: array<store_t>;
@group(0) @binding(3) var<storage, read> aux: array<f32>;
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
    let c = within / hw;
    let v = f32(x[(row % params.in_rows0) * per_row + within]);
    y[idx] = store_t(epilogue(row, c, fma(v, aux[c], aux[params.c_out + c])));
}
