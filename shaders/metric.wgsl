// Metric reduction on the device, so a chunk reads back one float per coalition instead of
// coalitions x examples x classes logits.
//
// One workgroup per coalition m of the chunk; its 64 threads stride over the chunk's examples,
// score each example from its logits (row m * B + b, or b when the logits are shared) and label,
// and sum in workgroup memory. results[out_offset + m] = sum of scores; the host adds the chunks
// in f64 and divides by the number of counted examples.
// mode 0: accuracy (argmax == label, first index on ties), 1: minus cross-entropy (log-sum-exp),
// 2: class accuracy (only examples whose label is class_index count).

@group(0) @binding(1) var<storage, read> logits: array<store_t>;
@group(0) @binding(3) var<storage, read> labels: array<u32>;
@group(0) @binding(4) var<storage, read_write> results: array<f32>;

var<workgroup> partial: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let m = flat_workgroup(wid);
    let valid = m < params.rows;
    let classes = params.c_out;
    let examples = params.rows_per_coalition;
    var sum = 0.0;
    if valid {
        for (var b = lid.x; b < examples; b += 64u) {
            let base = ((m * examples + b) % params.in_rows0) * classes;
            let label = labels[params.label_offset + b];
            var best = f32(logits[base]);
            var arg = 0u;
            for (var c = 1u; c < classes; c++) {
                let v = f32(logits[base + c]);
                if v > best {
                    best = v;
                    arg = c;
                }
            }
            let hit = select(0.0, 1.0, arg == label);
            if params.mode == 0u {
                sum += hit;
            } else if params.mode == 1u {
                var s = 0.0;
                for (var c = 0u; c < classes; c++) {
                    s += exp(f32(logits[base + c]) - best);
                }
                sum -= best + log(s) - f32(logits[base + label]);
            } else if label == params.class_index {
                sum += hit;
            }
        }
    }
    partial[lid.x] = sum;
    workgroupBarrier();
    for (var stride = 32u; stride > 0u; stride /= 2u) {
        if lid.x < stride {
            partial[lid.x] += partial[lid.x + stride];
        }
        workgroupBarrier();
    }
    if valid && lid.x == 0u {
        results[params.out_offset + m] = partial[0];
    }
}
