//! Elementwise ops: per-channel affine (unfolded batchnorm), activations, residual add.

use nshap_model::Activation;

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

pub fn activation(act: Activation, input: &[f32], out: &mut [f32]) {
    match act {
        Activation::Relu => out
            .iter_mut()
            .zip(input)
            .for_each(|(o, &x)| *o = x.max(0.0)),
        _ => out
            .iter_mut()
            .zip(input)
            .for_each(|(o, &x)| *o = act.apply(x)),
    }
}

/// Sum of two inputs; `b` may hold fewer rows than `a` (a shared input broadcast over
/// coalitions): row `r` of `a` pairs with row `r % rows(b)` of `b`.
pub fn add(a: &[f32], b: &[f32], out: &mut [f32]) {
    for (chunk_out, chunk_a) in out.chunks_mut(b.len()).zip(a.chunks(b.len())) {
        for ((o, &x), &y) in chunk_out.iter_mut().zip(chunk_a).zip(b) {
            *o = x + y;
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
/// ReLU uses PyTorch's convention at the kink: the derivative at `x == 0` is 0.
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
        Activation::Sigmoid => y * (1.0 - y),
        Activation::Tanh => 1.0 - y * y,
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

/// Vector-Jacobian product of [`add`] with respect to either input (both rows-sized), and of
/// every op that only moves values (flatten, identity): `grad_in += grad_out`.
pub fn add_backward(grad_out: &[f32], grad_in: &mut [f32]) {
    grad_in.iter_mut().zip(grad_out).for_each(|(d, &g)| *d += g);
}
