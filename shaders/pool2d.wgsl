// Window pooling with PyTorch's rules. One thread per output element; sums accumulate in f32.
//   mode 0  max: window o along an axis starts at o * stride - padding and has k taps spaced
//           dilation (d_h, d_w) apart; taps outside the input are skipped (padding never wins).
//   mode 1  average, count_include_pad = True: divisor = the window clipped to the padded input,
//           per axis min(start + k, n + padding) - start. In floor mode that is always k_h x k_w;
//           in ceil mode the last window may hang over the padded input and count less.
//   mode 2  average, count_include_pad = False: divisor = the number of taps inside the input.
//   mode 3  adaptive average to h_out x w_out: window floor(o * n / out) .. ceil((o + 1) * n / out)
//           along each axis, divisor = its area (stride/padding/kernel unused).
// Ceil mode needs nothing here: the output size (h_out, w_out) already has the extra window, and
// PyTorch guarantees that every window starts inside the input or its left padding, so it has at
// least one tap inside the input.

@group(0) @binding(1) var<storage, read> x: array<store_t>;
@group(0) @binding(4) var<storage, read_write> y: array<store_t>;

// The (exclusive) end of an average-pooling window starting at `start` along an axis of length
// n, clipped to the padded input [-p, n + p): min(start + k, n + p) (average pooling: dilation 1).
fn padded_end(start: i32, k: u32, n: u32, p: u32) -> i32 {
    return min(start + i32(k), i32(n + p));
}

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

    if params.mode == 3u {
        let y0 = oy * params.h_in / params.h_out;
        let y1 = ((oy + 1u) * params.h_in + params.h_out - 1u) / params.h_out;
        let x0 = ox * params.w_in / params.w_out;
        let x1 = ((ox + 1u) * params.w_in + params.w_out - 1u) / params.w_out;
        var acc = 0.0;
        for (var iy = y0; iy < y1; iy++) {
            for (var ix = x0; ix < x1; ix++) {
                acc += f32(x[base + iy * params.w_in + ix]);
            }
        }
        y[idx] = store_t(epilogue(row, c, acc / f32((y1 - y0) * (x1 - x0))));
        return;
    }

    let iy0 = i32(oy * params.s_h) - i32(params.p_h);
    let ix0 = i32(ox * params.s_w) - i32(params.p_w);
    var best = -3.4028235e38;
    var sum = 0.0;
    var inside = 0u;
    for (var ky = 0u; ky < params.k_h; ky++) {
        let iy = iy0 + i32(ky * params.d_h);
        if iy < 0 || iy >= i32(params.h_in) {
            continue;
        }
        for (var kx = 0u; kx < params.k_w; kx++) {
            let ix = ix0 + i32(kx * params.d_w);
            if ix < 0 || ix >= i32(params.w_in) {
                continue;
            }
            let v = f32(x[base + u32(iy) * params.w_in + u32(ix)]);
            best = max(best, v);
            sum += v;
            inside += 1u;
        }
    }
    var v = best;
    if params.mode == 1u {
        let rows_in = padded_end(iy0, params.k_h, params.h_in, params.p_h) - iy0;
        let cols_in = padded_end(ix0, params.k_w, params.w_in, params.p_w) - ix0;
        v = sum / f32(rows_in * cols_in);
    } else if params.mode == 2u {
        v = sum / f32(max(inside, 1u));
    }
    y[idx] = store_t(epilogue(row, c, v));
}
