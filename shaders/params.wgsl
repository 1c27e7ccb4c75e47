// Per-dispatch parameters shared by every nshap kernel.
//
// Each dispatch owns one slot of a dynamic-offset uniform buffer, so a whole evaluate call
// (every chunk, every layer) is written with one upload and recorded without host round trips.
// Shapes are uniforms rather than `override` constants so one pipeline per kernel serves every
// layer: pipeline compilation dominates on software adapters.
//
// "rows" are batch entries: B examples for the shared prefix, (coalitions x B) after the first
// player node, with row = coalition * B + example. A kernel reads input row `r % in_rows`, which
// broadcasts a shared (prefix) tensor to every coalition without copying it.
struct Params {
    rows: u32,
    in_rows0: u32,
    in_rows1: u32,
    grid_x: u32,
    c_in: u32,
    h_in: u32,
    w_in: u32,
    c_out: u32,
    h_out: u32,
    w_out: u32,
    k_h: u32,
    k_w: u32,
    s_h: u32,
    s_w: u32,
    p_h: u32,
    p_w: u32,
    d_h: u32,
    d_w: u32,
    groups: u32,
    act: u32,
    mask_offset: u32,
    mask_words: u32,
    mask_row0: u32,
    rows_per_coalition: u32,
    mode: u32,
    class_index: u32,
    out_offset: u32,
    label_offset: u32,
    total: u32,
    // Parameters of the fused activation (epilogue.wgsl): hardtanh min/max, leaky_relu slope,
    // elu alpha; 0 otherwise.
    act_a: f32,
    act_b: f32,
    // channel_copy.wgsl: the first input channel read (a slice's start). The first output channel
    // written travels in out_offset (the metric's first result slot otherwise).
    in_channel0: u32,
    // linear.wgsl: features per output row; c_out is the width of this part of the layer (a
    // weight too large for one binding is split over outputs) and out_offset its first feature.
    out_stride: u32,
    // conv2d.wgsl: what an in-bounds read of input channel ch becomes. 0 the value; 1 the value
    // minus baselines[in_mask_offset + ch] (a table's build); 2 that baseline (the all-absent
    // input); 3 the value if player in_mask_offset + ch is in the row's coalition, else its
    // baseline (the mask applied on read, instead of a masked copy per coalition).
    // table_sum.wgsl: in_mask_offset is the global index of the table layer's first player.
    in_mode: u32,
    in_mask_offset: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;

const NO_MASK: u32 = 0xffffffffu;

// Linear index of a workgroup of a 1-D kernel launched as a 2-D grid (at most 65,535 per dimension).
fn flat_workgroup(wid: vec3<u32>) -> u32 {
    return wid.y * params.grid_x + wid.x;
}
