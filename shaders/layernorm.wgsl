// Layer normalisation over the C channels at every position (ConvNeXt's LayerNorm2d; a [F] tensor
// has one position): y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c], biased variance.
// One thread per (row, position) loops over the channels three times: the mean, then the sum of
// squared deviations (two-pass, no cancellation), then the output. aux = [weight (C) | bias (C) |
// eps]; total = rows x H x W (threads, not output elements).

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
    let cs = params.c_out;
    let row = idx / hw;
    let s = idx % hw;
    let base = (row % params.in_rows0) * cs * hw + s;
    var sum = 0.0;
    for (var c = 0u; c < cs; c++) {
        sum += f32(x[base + c * hw]);
    }
    let mean = sum / f32(cs);
    var sq = 0.0;
    for (var c = 0u; c < cs; c++) {
        let d = f32(x[base + c * hw]) - mean;
        sq = fma(d, d, sq);
    }
    let inv = inverseSqrt(sq / f32(cs) + aux[2u * cs]);
    let out = row * cs * hw + s;
    for (var c = 0u; c < cs; c++) {
        let v = (f32(x[base + c * hw]) - mean) * inv;
        y[out + c * hw] = store_t(epilogue(row, c, fma(v, aux[c], aux[cs + c])));
    }
}
