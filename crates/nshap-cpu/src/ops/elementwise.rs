//! Elementwise ops: per-channel affine (unfolded batchnorm), per-channel scale and PReLU,
//! activations, residual add and the (broadcasting) elementwise product.

use super::fastmath;
use super::{row, row_mut};
use nshap_model::{Activation, Shape};

/// `out = x * scale[c] + shift[c]` where `c` is the channel of each element.
pub fn affine(scale: &[f32], shift: &[f32], spatial: usize, input: &[f32], out: &mut [f32]) {
    let channels = scale.len();
    for (i, (o, x)) in out
        .chunks_exact_mut(spatial)
        .zip(input.chunks_exact(spatial))
        .enumerate()
    {
        let c = i % channels;
        for (o, &x) in o.iter_mut().zip(x) {
            *o = x * scale[c] + shift[c];
        }
    }
}

/// [`activation`] over `values` in place.
pub fn activation_in_place(act: Activation, values: &mut [f32]) {
    match act {
        Activation::Relu => values.iter_mut().for_each(|x| *x = x.max(0.0)),
        Activation::GeluTanh => values.iter_mut().for_each(|x| *x = fastmath::gelu_tanh(*x)),
        Activation::Silu => values.iter_mut().for_each(|x| *x = fastmath::silu(*x)),
        _ => values.iter_mut().for_each(|x| *x = act.apply(*x)),
    }
}

pub fn activation(act: Activation, input: &[f32], out: &mut [f32]) {
    match act {
        Activation::Relu => out
            .iter_mut()
            .zip(input)
            .for_each(|(o, &x)| *o = x.max(0.0)),
        Activation::GeluTanh => out
            .iter_mut()
            .zip(input)
            .for_each(|(o, &x)| *o = fastmath::gelu_tanh(x)),
        Activation::Silu => out
            .iter_mut()
            .zip(input)
            .for_each(|(o, &x)| *o = fastmath::silu(x)),
        _ => out
            .iter_mut()
            .zip(input)
            .for_each(|(o, &x)| *o = act.apply(x)),
    }
}

/// `out = x * w[c]` (a per-channel constant: ConvNeXt's layer scale).
pub fn scale(w: &[f32], spatial: usize, input: &[f32], out: &mut [f32]) {
    let channels = w.len();
    for (i, (o, x)) in out
        .chunks_exact_mut(spatial)
        .zip(input.chunks_exact(spatial))
        .enumerate()
    {
        let s = w[i % channels];
        o.iter_mut().zip(x).for_each(|(o, &x)| *o = x * s);
    }
}

/// PReLU: `out = x` where `x > 0`, else `slopes[c] * x`.
pub fn prelu(slopes: &[f32], spatial: usize, input: &[f32], out: &mut [f32]) {
    let channels = slopes.len();
    for (i, (o, x)) in out
        .chunks_exact_mut(spatial)
        .zip(input.chunks_exact(spatial))
        .enumerate()
    {
        let a = slopes[i % channels];
        o.iter_mut()
            .zip(x)
            .for_each(|(o, &x)| *o = if x > 0.0 { x } else { a * x });
    }
}

/// Sum of two inputs of `numel` values per row; either may hold fewer rows than `out` (the
/// module's row convention: output row `r` reads row `r % rows_k` of input `k`).
pub fn add(a: &[f32], b: &[f32], numel: usize, out: &mut [f32]) {
    for (r, o) in out.chunks_exact_mut(numel).enumerate() {
        let (a, b) = (row(a, numel, r), row(b, numel, r));
        for ((o, &x), &y) in o.iter_mut().zip(a).zip(b) {
            *o = x + y;
        }
    }
}

/// Elementwise product of two inputs with `spatial[k]` positions per channel: equal, or one of
/// them 1 (a `[C, 1, 1]` or `[C]` operand broadcast over the other's `[C, H, W]`). `out_shape` is
/// the larger shape; either input may hold fewer rows than `out`.
pub fn mul(inputs: [&[f32]; 2], spatial: [usize; 2], out_shape: Shape, out: &mut [f32]) {
    let (channels, s) = (out_shape.channels(), out_shape.spatial());
    let numel = channels * s;
    let [na, nb] = [channels * spatial[0], channels * spatial[1]];
    for (r, o) in out.chunks_exact_mut(numel).enumerate() {
        let (a, b) = (row(inputs[0], na, r), row(inputs[1], nb, r));
        match (spatial[0] == s, spatial[1] == s) {
            (true, true) => o
                .iter_mut()
                .zip(a)
                .zip(b)
                .for_each(|((o, &x), &y)| *o = x * y),
            (true, false) => {
                for ((o, a), &y) in o.chunks_exact_mut(s).zip(a.chunks_exact(s)).zip(b) {
                    o.iter_mut().zip(a).for_each(|(o, &x)| *o = x * y);
                }
            }
            (false, true) => {
                for ((o, &x), b) in o.chunks_exact_mut(s).zip(a).zip(b.chunks_exact(s)) {
                    o.iter_mut().zip(b).for_each(|(o, &y)| *o = x * y);
                }
            }
            (false, false) => unreachable!("mul: one operand has the output's size"),
        }
    }
}

/// Vector-Jacobian product of [`affine`]: `grad_in += grad_out * scale[c]`.
pub fn affine_backward(scale: &[f32], spatial: usize, grad_out: &[f32], grad_in: &mut [f32]) {
    let channels = scale.len();
    for (i, (gi, go)) in grad_in
        .chunks_exact_mut(spatial)
        .zip(grad_out.chunks_exact(spatial))
        .enumerate()
    {
        let s = scale[i % channels];
        gi.iter_mut().zip(go).for_each(|(d, &g)| *d += g * s);
    }
}

/// Derivative of an activation at input `x` whose output is `y` (`y = act.apply(x)`).
///
/// At kinks PyTorch's conventions: ReLU and leaky ReLU take the left side at 0 (0 and `slope`),
/// ELU's derivative at `x <= 0` is `alpha * exp(x)`, hardtanh passes the gradient only strictly
/// inside `(min, max)`, hardsigmoid only strictly inside `(-3, 3)`, and hardswish's is 0 below -3,
/// `(2x + 3) / 6` on `[-3, 3]` and 1 above.
pub fn activation_derivative(act: Activation, x: f32, y: f32) -> f32 {
    match act {
        Activation::Relu => {
            if x > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Activation::Gelu => {
            // d/dx [x Phi(x)] = Phi(x) + x phi(x)
            // Phi(x) = gelu(x) / x (the forward's own erf); near 0, its Taylor series
            // 1/2 + x / sqrt(2 pi) (next term -x^3 / (6 sqrt(2 pi)): below 1e-10 for |x| <= 1e-3).
            const INV_SQRT_2PI: f32 = 0.398_942_3;
            let cdf = if x.abs() > 1e-3 {
                act.apply(x) / x
            } else {
                0.5 + x * INV_SQRT_2PI
            };
            cdf + x * INV_SQRT_2PI * (-0.5 * x * x).exp()
        }
        Activation::GeluTanh => {
            // 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) u', u = c (x + 0.044715 x^3).
            let c = nshap_model::graph::GELU_TANH_C;
            let th = (c * (x + 0.044715 * x * x * x)).tanh();
            0.5 * (1.0 + th) + 0.5 * x * (1.0 - th * th) * c * (1.0 + 3.0 * 0.044715 * x * x)
        }
        Activation::Sigmoid => y * (1.0 - y),
        Activation::Tanh => 1.0 - y * y,
        Activation::Silu => {
            let s = 1.0 / (1.0 + (-x).exp());
            s * (1.0 + x * (1.0 - s))
        }
        Activation::Hardswish => {
            if x < -3.0 {
                0.0
            } else if x <= 3.0 {
                x / 3.0 + 0.5
            } else {
                1.0
            }
        }
        Activation::Hardsigmoid => {
            if x > -3.0 && x < 3.0 {
                1.0 / 6.0
            } else {
                0.0
            }
        }
        Activation::HardTanh { min, max } => {
            if x > min && x < max {
                1.0
            } else {
                0.0
            }
        }
        Activation::LeakyRelu { slope } => {
            if x > 0.0 {
                1.0
            } else {
                slope
            }
        }
        Activation::Elu { alpha } => {
            if x > 0.0 {
                1.0
            } else {
                alpha * x.exp()
            }
        }
    }
}

/// Vector-Jacobian product of [`activation`]: `grad_in += grad_out * act'(input)`; `output` is
/// the forward's output (sigmoid and tanh derive from it).
pub fn activation_backward(
    act: Activation,
    input: &[f32],
    output: &[f32],
    grad_out: &[f32],
    grad_in: &mut [f32],
) {
    match act {
        Activation::Relu => {
            grad_in
                .iter_mut()
                .zip(input)
                .zip(grad_out)
                .for_each(|((d, &x), &g)| {
                    if x > 0.0 {
                        *d += g
                    }
                })
        }
        _ => grad_in
            .iter_mut()
            .zip(input.iter().zip(output))
            .zip(grad_out)
            .for_each(|((d, (&x, &y)), &g)| *d += g * activation_derivative(act, x, y)),
    }
}

/// Vector-Jacobian product of [`add`] with respect to either input, and of every op that only
/// moves values (flatten, identity): `grad_in += grad_out`, where `grad_in` holds rows of
/// `numel` values, possibly fewer than `grad_out` (then each of its rows sums the output rows
/// that read it).
pub fn add_backward(grad_out: &[f32], numel: usize, grad_in: &mut [f32]) {
    if grad_in.len() == grad_out.len() {
        grad_in.iter_mut().zip(grad_out).for_each(|(d, &g)| *d += g);
        return;
    }
    for (r, g) in grad_out.chunks_exact(numel).enumerate() {
        let d = row_mut(grad_in, numel, r);
        d.iter_mut().zip(g).for_each(|(d, &g)| *d += g);
    }
}

/// Vector-Jacobian product of [`prelu`] with respect to its input (the slopes are constants):
/// `grad_in += grad_out` where `x > 0`, else `grad_out * slopes[c]` (PyTorch's rule at 0).
pub fn prelu_backward(
    slopes: &[f32],
    spatial: usize,
    input: &[f32],
    grad_out: &[f32],
    grad_in: &mut [f32],
) {
    let channels = slopes.len();
    for (i, ((d, x), g)) in grad_in
        .chunks_exact_mut(spatial)
        .zip(input.chunks_exact(spatial))
        .zip(grad_out.chunks_exact(spatial))
        .enumerate()
    {
        let a = slopes[i % channels];
        for ((d, &x), &g) in d.iter_mut().zip(x).zip(g) {
            *d += if x > 0.0 { g } else { a * g };
        }
    }
}

/// Vector-Jacobian product of [`mul`] with respect to one operand: `spatial[0]` is that
/// operand's positions per channel, `spatial[1]` the other's, whose forward values are `other`.
/// A broadcast (`[C, 1, 1]`) operand's gradient sums over the positions it was spread over.
/// `other` and `grad_in` may hold fewer rows than `grad_out`.
pub fn mul_backward(
    other: &[f32],
    spatial: [usize; 2],
    out_shape: Shape,
    grad_out: &[f32],
    grad_in: &mut [f32],
) {
    let (channels, s) = (out_shape.channels(), out_shape.spatial());
    let numel = channels * s;
    let [nk, no] = [channels * spatial[0], channels * spatial[1]];
    for (r, g) in grad_out.chunks_exact(numel).enumerate() {
        let y = row(other, no, r);
        let d = row_mut(grad_in, nk, r);
        match (spatial[0] == s, spatial[1] == s) {
            (true, true) => d
                .iter_mut()
                .zip(g)
                .zip(y)
                .for_each(|((d, &g), &y)| *d += g * y),
            (true, false) => {
                for ((d, g), &y) in d.chunks_exact_mut(s).zip(g.chunks_exact(s)).zip(y) {
                    d.iter_mut().zip(g).for_each(|(d, &g)| *d += g * y);
                }
            }
            (false, true) => {
                for ((d, g), y) in d.iter_mut().zip(g.chunks_exact(s)).zip(y.chunks_exact(s)) {
                    *d += g.iter().zip(y).map(|(&g, &y)| g * y).sum::<f32>();
                }
            }
            (false, false) => unreachable!("mul: one operand has the output's size"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rows` copies of `x` (what a shared operand broadcast over coalitions stands for).
    fn repeat(x: &[f32], rows: usize) -> Vec<f32> {
        x.iter().copied().cycle().take(x.len() * rows).collect()
    }

    fn values(n: usize, k: f32) -> Vec<f32> {
        (0..n).map(|i| ((i as f32 + 1.0) * k).sin()).collect()
    }

    /// A shared operand (one row, in either position) gives what its repetition gives, and its
    /// gradient is the sum over the rows that read it.
    #[test]
    fn operands_with_fewer_rows_are_broadcast() {
        let big = Shape::Image { c: 2, h: 2, w: 3 };
        let rows = 3;
        let dep = values(rows * 12, 0.7);
        for (spatial, n) in [(6, 12), (1, 2)] {
            let shared = values(n, 1.3);
            let full = repeat(&shared, rows);
            for shared_first in [false, true] {
                let (s, sp, f, fp) = if shared_first {
                    (
                        [shared.as_slice(), &dep],
                        [spatial, 6],
                        [full.as_slice(), &dep],
                        [spatial, 6],
                    )
                } else {
                    (
                        [dep.as_slice(), &shared],
                        [6, spatial],
                        [dep.as_slice(), &full],
                        [6, spatial],
                    )
                };
                let (mut a, mut b) = (vec![0.0; 36], vec![0.0; 36]);
                mul(s, sp, big, &mut a);
                mul(f, fp, big, &mut b);
                assert_eq!(a, b, "mul, spatial {spatial}, shared first {shared_first}");
                // Gradient w.r.t. the shared operand: 1 row vs the sum of `rows` rows.
                let g = values(36, 0.9);
                let mut one = vec![0.0; n];
                mul_backward(&dep, [spatial, 6], big, &g, &mut one);
                let mut each = vec![0.0; rows * n];
                mul_backward(&dep, [spatial, 6], big, &g, &mut each);
                for i in 0..n {
                    let sum: f32 = (0..rows).map(|r| each[r * n + i]).sum();
                    assert!((one[i] - sum).abs() < 1e-6, "{} vs {sum}", one[i]);
                }
            }
            if spatial == 6 {
                let (mut a, mut b) = (vec![0.0; 36], vec![0.0; 36]);
                add(&shared, &dep, 12, &mut a);
                add(&dep, &full, 12, &mut b);
                assert_eq!(a, b, "add");
                let mut one = vec![0.0; 12];
                add_backward(&dep, 12, &mut one);
                for (i, v) in one.iter().enumerate() {
                    let sum: f32 = (0..rows).map(|r| dep[r * 12 + i]).sum();
                    assert!((v - sum).abs() < 1e-6);
                }
            }
        }
    }
}
