// The epilogue every producing kernel applies to each output value before storing it:
// a fused activation (when the next graph node is an activation that only this node feeds; its
// parameters, if any, are params.act_a and act_b),
// then the coalition mask (when this node is a player node): a removed player's channel takes
// its baseline constant, for every example and spatial position of that coalition.

@group(0) @binding(5) var<storage, read> masks: array<u32>;
@group(0) @binding(6) var<storage, read> baselines: array<f32>;

// erf by Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7): WGSL has no erf builtin.
fn erf_approx(x: f32) -> f32 {
    let a = abs(x);
    let t = 1.0 / (1.0 + 0.3275911 * a);
    let poly = ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t;
    return sign(x) * (1.0 - poly * exp(-a * a));
}

// exp(x) - 1 without the cancellation of the plain form near 0 (WGSL has no expm1 builtin):
// a cubic Taylor polynomial for |x| < 1e-2 (relative error < 5e-9), exp(x) - 1 otherwise.
fn expm1_approx(x: f32) -> f32 {
    if abs(x) < 1e-2 {
        return x * (1.0 + x * (0.5 + x * (1.0 / 6.0)));
    }
    return exp(x) - 1.0;
}

// 0 none, 1 relu, 2 gelu (exact erf form), 3 sigmoid, 4 tanh, 5 silu, 6 hardswish,
// 7 hardsigmoid, 8 hardtanh (clamp to [act_a, act_b]; relu6 is 0..6), 9 leaky_relu (slope act_a),
// 10 elu (alpha act_a). PyTorch's definitions, as `nshap_model::Activation::apply`.
fn activate(x: f32) -> f32 {
    switch params.act {
        case 1u: {
            return max(x, 0.0);
        }
        case 2u: {
            return 0.5 * x * (1.0 + erf_approx(x * 0.7071067811865476));
        }
        case 3u: {
            return 1.0 / (1.0 + exp(-x));
        }
        case 4u: {
            // Clamped: some drivers compute tanh from exp and return NaN for large |x|.
            return tanh(clamp(x, -15.0, 15.0));
        }
        case 5u: {
            // exp(-x) overflows to inf for x < -88: x / inf = -0, the limit.
            return x / (1.0 + exp(-x));
        }
        case 6u: {
            return x * clamp(x + 3.0, 0.0, 6.0) / 6.0;
        }
        case 7u: {
            return clamp(x + 3.0, 0.0, 6.0) / 6.0;
        }
        case 8u: {
            return clamp(x, params.act_a, params.act_b);
        }
        case 9u: {
            return select(params.act_a * x, x, x > 0.0);
        }
        case 10u: {
            return select(params.act_a * expm1_approx(min(x, 0.0)), x, x > 0.0);
        }
        case 11u: {
            // GPT-2's tanh GELU; the argument clamped as for tanh above.
            let u = 0.7978846 * (x + 0.044715 * x * x * x);
            return 0.5 * x * (1.0 + tanh(clamp(u, -15.0, 15.0)));
        }
        default: {
            return x;
        }
    }
}

fn epilogue(row: u32, channel: u32, x: f32) -> f32 {
    let v = activate(x);
    if params.mask_offset == NO_MASK {
        return v;
    }
    let coalition = params.mask_row0 + row / params.rows_per_coalition;
    let player = params.mask_offset + channel;
    let word = masks[coalition * params.mask_words + player / 32u];
    if ((word >> (player % 32u)) & 1u) == 1u {
        return v;
    }
    return baselines[player];
}
