// Max (mode 0) or average (mode 1) pooling, PyTorch floor mode. Max ignores padding; average
// counts it (count_include_pad = True): in floor mode every window lies inside the padded image,
// so the divisor is always k_h x k_w.

@group(0) @binding(1) var<storage, read> x: array<store_t>;
@group(0) @binding(4) var<storage, read_write> y: array<store_t>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let idx = flat_workgroup(wid) * 256u + lid.x;
    if idx >= params.total {
        return;
    }
    let ox = idx % params.w_out;
    let t = idx / params.w_out;
    let oy = t % params.h_out;
    let t2 = t / params.h_out;
    let c = t2 % params.c_out;
    let row = t2 / params.c_out;
    let base = ((row % params.in_rows0) * params.c_in + c) * params.h_in * params.w_in;
    let iy0 = i32(oy * params.s_h) - i32(params.p_h);
    let ix0 = i32(ox * params.s_w) - i32(params.p_w);
    var best = -3.4028235e38;
    var sum = 0.0;
    for (var ky = 0u; ky < params.k_h; ky++) {
        let iy = iy0 + i32(ky);
        if iy < 0 || iy >= i32(params.h_in) {
            continue;
        }
        for (var kx = 0u; kx < params.k_w; kx++) {
            let ix = ix0 + i32(kx);
            if ix < 0 || ix >= i32(params.w_in) {
                continue;
            }
            let v = f32(x[base + u32(iy) * params.w_in + u32(ix)]);
            best = max(best, v);
            sum += v;
        }
    }
    var v = best;
    if params.mode == 1u {
        v = sum / f32(params.k_h * params.k_w);
    }
    y[idx] = store_t(epilogue(row, c, v));
}
