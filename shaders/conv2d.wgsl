// 2-D convolution (NCHW, PyTorch weight layout) as an implicit GEMM.
//
// GEMM dimensions per group g: M = output channels of the group, K = (C_in / groups) x k_h x k_w,
// N = rows x H_out x W_out, i.e. coalitions x examples x output pixels are folded into N so that
// even layers with few channels and small images give the device large, regular tiles.
// The im2col matrix is never stored: each thread decodes its pixels once and gathers input values
// on the fly (zero outside the padded image).
//
// Workgroup 64x4 threads; a thread computes 4 pixels (p0 + 64i) x 4 channels (c0 + 4j), so a
// workgroup covers 256 pixels x 16 channels. Grid: x (+ z overflow) over pixel tiles, y over
// groups x channel tiles. Weights are transposed at upload to [groups][K][C_out / groups] so the
// four channel weights of one k are adjacent.
//
// An in-bounds read of input channel ch is `keep * x + shift` (padding stays 0), set per channel
// by params.in_mode: the value (0); the value minus the channel's baseline (1: building a table,
// see table_sum.wgsl); the baseline alone (2: the all-absent input); or, per pixel, the value when
// the pixel's coalition has player in_mask_offset + ch and its baseline when not (3: the mask
// applied on read of a shared tensor, so no masked copy per coalition is ever written).

@group(0) @binding(1) var<storage, read> x: array<store_t>;
@group(0) @binding(2) var<storage, read> wt: array<store_t>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<store_t>;

@compute @workgroup_size(64, 4)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let groups = params.groups;
    let cout_g = params.c_out / groups;
    let cin_g = params.c_in / groups;
    let oc_tiles = (cout_g + 15u) / 16u;
    let g = wid.y / oc_tiles;
    let c0 = (wid.y % oc_tiles) * 16u + lid.y;
    let tile = wid.z * params.grid_x + wid.x;

    let hw_out = params.h_out * params.w_out;
    let hw_in = params.h_in * params.w_in;
    let n_total = params.rows * hw_out;
    let k_len = cin_g * params.k_h * params.k_w;

    var base: array<u32, 4>;
    var iy0: array<i32, 4>;
    var ix0: array<i32, 4>;
    // The first mask word of each pixel's coalition (in_mode 3).
    var mask_row: array<u32, 4>;
    for (var i = 0u; i < 4u; i++) {
        let p = min(tile * 256u + lid.x + 64u * i, n_total - 1u);
        let row = p / hw_out;
        mask_row[i] = (params.mask_row0 + row / params.rows_per_coalition) * params.mask_words;
        let rem = p % hw_out;
        let oy = rem / params.w_out;
        let ox = rem % params.w_out;
        base[i] = ((row % params.in_rows0) * params.c_in + g * cin_g) * hw_in;
        iy0[i] = i32(oy * params.s_h) - i32(params.p_h);
        ix0[i] = i32(ox * params.s_w) - i32(params.p_w);
    }
    let oc = vec4<u32>(
        min(c0, cout_g - 1u),
        min(c0 + 4u, cout_g - 1u),
        min(c0 + 8u, cout_g - 1u),
        min(c0 + 12u, cout_g - 1u),
    );
    let h_in = i32(params.h_in);
    let w_in = i32(params.w_in);

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var k = 0u;
    for (var ci = 0u; ci < cin_g; ci++) {
        let plane = ci * hw_in;
        var keep = vec4<f32>(1.0);
        var shift = vec4<f32>(0.0);
        if params.in_mode != 0u {
            let player = params.in_mask_offset + g * cin_g + ci;
            let b = baselines[player];
            if params.in_mode == 1u {
                shift = vec4<f32>(-b);
            } else if params.in_mode == 2u {
                keep = vec4<f32>(0.0);
                shift = vec4<f32>(b);
            } else {
                for (var i = 0u; i < 4u; i++) {
                    let present = ((masks[mask_row[i] + player / 32u] >> (player % 32u)) & 1u) == 1u;
                    keep[i] = select(0.0, 1.0, present);
                    shift[i] = select(b, 0.0, present);
                }
            }
        }
        for (var ky = 0u; ky < params.k_h; ky++) {
            for (var kx = 0u; kx < params.k_w; kx++) {
                let wrow = (g * k_len + k) * cout_g;
                let b = vec4<f32>(f32(wt[wrow + oc.x]), f32(wt[wrow + oc.y]), f32(wt[wrow + oc.z]), f32(wt[wrow + oc.w]));
                let dy = i32(ky * params.d_h);
                let dx = i32(kx * params.d_w);
                var a = vec4<f32>(0.0);
                for (var i = 0u; i < 4u; i++) {
                    let iy = iy0[i] + dy;
                    let ix = ix0[i] + dx;
                    if iy >= 0 && iy < h_in && ix >= 0 && ix < w_in {
                        a[i] = fma(f32(x[base[i] + plane + u32(iy) * params.w_in + u32(ix)]), keep[i], shift[i]);
                    }
                }
                acc0 = fma(vec4<f32>(a.x), b, acc0);
                acc1 = fma(vec4<f32>(a.y), b, acc1);
                acc2 = fma(vec4<f32>(a.z), b, acc2);
                acc3 = fma(vec4<f32>(a.w), b, acc3);
                k++;
            }
        }
    }

    var acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i++) {
        let p = tile * 256u + lid.x + 64u * i;
        if p >= n_total {
            continue;
        }
        let row = p / hw_out;
        let rem = p % hw_out;
        for (var j = 0u; j < 4u; j++) {
            let c = c0 + 4u * j;
            if c < cout_g {
                let channel = g * cout_g + c;
                y[(row * params.c_out + channel) * hw_out + rem] = store_t(epilogue(row, channel, acc[i][j] + bias[channel]));
            }
        }
    }
}
