// Per-channel maps with constants in aux (f32), one thread per element:
//   mode 0  affine y = scale[c] * x + shift[c], aux = [scale (C) | shift (C)]: eval-mode
//           batchnorm where it could not be folded into the conv/linear before it (that conv is a
//           player node, or the BN reads the input or an add), and a per-channel scale ("mul"
//           with a weight, ConvNeXt's layer scale) with shift 0;
//   mode 1  prelu y = x if x > 0 else slope[c] * x, aux = [slope (C)].

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
    var r: f32;
    if params.mode == 1u {
        r = select(aux[c] * v, v, v > 0.0);
    } else {
        r = fma(v, aux[c], aux[params.c_out + c]);
    }
    y[idx] = store_t(epilogue(row, c, r));
}
