// Channel moves: y[row, out_offset + j, :] = epilogue(x[row % in_rows0, src(j), :]) for the
// n = min(c_in, c_out) channels j this dispatch writes, with
//   src(j) = in_channel0 + (j % groups) * (n / groups) + j / groups.
// - concat: one dispatch per input, writing its c_in channels at output channel out_offset
//   (in_channel0 = 0, groups = 1); the output is per coalition if any input is, and a shared
//   input is broadcast by the row % in_rows0 read;
// - slice: the c_out channels starting at input channel in_channel0 (groups = 1);
// - channel shuffle: output channel a * groups + g = input channel g * (C / groups) + a.
// The mask (epilogue) sees the output channel, so a concat, slice or shuffle can be a player node.

@group(0) @binding(1) var<storage, read> x: array<store_t>;
@group(0) @binding(4) var<storage, read_write> y: array<store_t>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = flat_workgroup(wid) * 256u + lid.x;
    if idx >= params.total {
        return;
    }
    let hw = params.h_out * params.w_out;
    let n = min(params.c_in, params.c_out);
    let per_row = n * hw;
    let row = idx / per_row;
    let within = idx % per_row;
    let j = within / hw;
    let s = within % hw;
    let src = params.in_channel0 + (j % params.groups) * (n / params.groups) + j / params.groups;
    let out_c = params.out_offset + j;
    let v = f32(x[((row % params.in_rows0) * params.c_in + src) * hw + s]);
    y[(row * params.c_out + out_c) * hw + s] = store_t(epilogue(row, out_c, v));
}
