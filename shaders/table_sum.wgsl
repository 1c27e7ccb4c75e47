// A conv or linear layer that reads a player node, per coalition, from per-example tables:
//   y[m, e, j] = base[e, j] + sum over present players c of j's group of T[e, c, j mod block]
// where T[e, c] is the layer applied to channel c minus its baseline alone (no bias), and base the
// layer on the all-absent input (bias included); both are shared steps (conv2d.wgsl, in_mode 1
// and 2). The layer is linear in the mask, so this is exact; it costs channels-per-group adds per
// output instead of channels x taps multiply-adds.
//
// Along a permutation walk consecutive coalitions differ by one player: such a row is the row
// before it plus or minus one table entry, one add per output (and a row that changed only in
// other layers' players is the row before). Each thread owns one output j of one
// example for a tile of TILE consecutive coalitions: it finds which rows of the tile changed by
// exactly one player of this layer since the row before, sums the others over all channels (each
// T value read once for the whole tile), then walks the chain. A tile always starts from a full
// sum, so values do not depend on how a request is split beyond the chunk's coalition offsets.
//
// params: rows = coalitions x examples (row = coalition * examples + example), rows_per_coalition =
// examples, c_in = channels (players) of the layer, groups = the layer's groups (1 for linear),
// out_stride = block (outputs of one group), in_mask_offset = global index of player 0 of the
// layer, h_out x w_out = output positions (the epilogue's channel is j / positions).

@group(0) @binding(1) var<storage, read> table: array<store_t>;
@group(0) @binding(2) var<storage, read> base: array<store_t>;
@group(0) @binding(4) var<storage, read_write> y: array<store_t>;

const TILE: u32 = 16u;
const FULL: u32 = 0xffffffffu;
// The row before, unchanged in this layer's players (a walk step of another layer).
const SAME: u32 = 0xfffffffeu;

// 32 membership bits of coalition `coalition` (chunk-local) for players first .. first + 32.
fn bits32(coalition: u32, first: u32) -> u32 {
    let row = (params.mask_row0 + coalition) * params.mask_words;
    let w = first / 32u;
    let s = first % 32u;
    let lo = masks[row + w] >> s;
    if s == 0u || w + 1u >= params.mask_words {
        return lo;
    }
    return lo | (masks[row + w + 1u] << (32u - s));
}

// SAME when coalition `cur` has the same `count` players starting at layer channel `c0` as
// `cur - 1`; (player << 1) | present when it differs in exactly one of them; FULL otherwise.
fn single_change(cur: u32, c0: u32, count: u32) -> u32 {
    var changed = 0u;
    var which = 0u;
    for (var c = 0u; c < count; c += 32u) {
        let first = params.in_mask_offset + c0 + c;
        var diff = bits32(cur, first) ^ bits32(cur - 1u, first);
        let left = count - c;
        if left < 32u {
            diff &= (1u << left) - 1u;
        }
        let n = countOneBits(diff);
        if n > 0u {
            which = c + firstTrailingBit(diff);
        }
        changed += n;
    }
    if changed == 0u {
        return SAME;
    }
    if changed != 1u {
        return FULL;
    }
    let present = (bits32(cur, params.in_mask_offset + c0 + which) & 1u);
    return ((c0 + which) << 1u) | present;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let channels = params.c_in;
    let block = params.out_stride;
    let cin_g = channels / params.groups;
    let n_out = params.groups * block;
    let examples = params.rows_per_coalition;
    let coalitions = params.rows / examples;
    let j_tiles = (n_out + 63u) / 64u;
    let id = flat_workgroup(wid);
    let rest = id / j_tiles;
    let e = rest % examples;
    let m0 = (rest / examples) * TILE;
    if m0 >= coalitions {
        return;
    }
    let j_raw = (id % j_tiles) * 64u + lid.x;
    let j = min(j_raw, n_out - 1u);
    let c0 = (j / block) * cin_g;
    let t0 = e * channels * block + j % block;
    let count = min(TILE, coalitions - m0);

    var kind: array<u32, TILE>;
    var acc: array<f32, TILE>;
    let b = f32(base[e * n_out + j]);
    for (var i = 0u; i < TILE; i++) {
        acc[i] = b;
        kind[i] = FULL;
        if i > 0u && i < count {
            kind[i] = single_change(m0 + i, c0, cin_g);
        }
    }
    // Full sums, 32 channels of membership bits at a time.
    for (var c = 0u; c < cin_g; c += 32u) {
        var bits: array<u32, TILE>;
        for (var i = 0u; i < TILE; i++) {
            bits[i] = 0u;
            if i < count && kind[i] == FULL {
                bits[i] = bits32(m0 + i, params.in_mask_offset + c0 + c);
            }
        }
        let span = min(32u, cin_g - c);
        for (var k = 0u; k < span; k++) {
            let t = f32(table[t0 + (c0 + c + k) * block]);
            for (var i = 0u; i < TILE; i++) {
                if ((bits[i] >> k) & 1u) == 1u {
                    acc[i] += t;
                }
            }
        }
    }
    // The chain: one table entry per step.
    for (var i = 1u; i < count; i++) {
        if kind[i] == SAME {
            acc[i] = acc[i - 1u];
        } else if kind[i] != FULL {
            let t = f32(table[t0 + (kind[i] >> 1u) * block]);
            acc[i] = acc[i - 1u] + select(-t, t, (kind[i] & 1u) == 1u);
        }
    }
    if j_raw >= n_out {
        return;
    }
    let positions = params.h_out * params.w_out;
    for (var i = 0u; i < count; i++) {
        let row = (m0 + i) * examples + e;
        y[row * n_out + j] = store_t(epilogue(row, j / positions, acc[i]));
    }
}
