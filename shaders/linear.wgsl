// Linear layer as a register-blocked GEMM: y[r, o] = bias[o] + sum_k x[r % in_rows0, k] * wt[k, o].
// One dispatch may compute only outputs out_offset .. out_offset + c_out of a row of out_stride
// features (a weight larger than one binding is split over outputs; wt and bias are that part's).
//
// The weight is transposed at upload to [in, out] so that neighbouring threads (neighbouring
// outputs) read neighbouring addresses. A 16x16 workgroup computes a 64x64 output tile, each
// thread a 4x4 block (rows r0 + 16i, outputs o0 + 16j) held in four vec4 accumulators: 16 FMAs
// per 8 loads. Out-of-range rows/outputs are clamped on load and skipped on store, so the inner
// loop has no branches.

@group(0) @binding(1) var<storage, read> x: array<store_t>;
@group(0) @binding(2) var<storage, read> wt: array<store_t>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<store_t>;

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let k_len = params.c_in;
    let n_out = params.c_out;
    let rows = params.rows;
    let o0 = wid.x * 64u + lid.x;
    let r0 = wid.y * 64u + lid.y;

    var xrow: array<u32, 4>;
    for (var i = 0u; i < 4u; i++) {
        xrow[i] = (min(r0 + 16u * i, rows - 1u) % params.in_rows0) * k_len;
    }
    let oc = vec4<u32>(
        min(o0, n_out - 1u),
        min(o0 + 16u, n_out - 1u),
        min(o0 + 32u, n_out - 1u),
        min(o0 + 48u, n_out - 1u),
    );

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k = 0u; k < k_len; k++) {
        let wrow = k * n_out;
        let b = vec4<f32>(f32(wt[wrow + oc.x]), f32(wt[wrow + oc.y]), f32(wt[wrow + oc.z]), f32(wt[wrow + oc.w]));
        acc0 = fma(vec4<f32>(f32(x[xrow[0] + k])), b, acc0);
        acc1 = fma(vec4<f32>(f32(x[xrow[1] + k])), b, acc1);
        acc2 = fma(vec4<f32>(f32(x[xrow[2] + k])), b, acc2);
        acc3 = fma(vec4<f32>(f32(x[xrow[3] + k])), b, acc3);
    }

    var acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i++) {
        let r = r0 + 16u * i;
        if r >= rows {
            continue;
        }
        for (var j = 0u; j < 4u; j++) {
            let o = o0 + 16u * j;
            if o < n_out {
                let f = params.out_offset + o;
                y[r * params.out_stride + f] = store_t(epilogue(r, f, acc[i][j] + bias[o]));
            }
        }
    }
}
