//! Layer normalisation over the channels at every spatial position (ConvNeXt's `LayerNorm2d`;
//! over the features of a `[F]` activation).
//!
//! Channel `c` of position `p` is at `c * S + p` (`S = H * W`), so the per-position statistics
//! are accumulated channel by channel over contiguous planes: two passes in f32, the mean first,
//! then the biased variance as the mean squared deviation, as PyTorch computes them.

use nshap_model::{LayerNorm, RmsNorm, Shape};

/// Per-position mean and `1 / sqrt(var + eps)` of one row (`channels` planes of `s` values).
fn stats(x: &[f32], channels: usize, s: usize, eps: f32, mean: &mut [f32], rstd: &mut [f32]) {
    mean.fill(0.0);
    for plane in x.chunks_exact(s) {
        mean.iter_mut().zip(plane).for_each(|(m, &v)| *m += v);
    }
    let inv = 1.0 / channels as f32;
    mean.iter_mut().for_each(|m| *m *= inv);
    rstd.fill(0.0);
    for plane in x.chunks_exact(s) {
        rstd.iter_mut()
            .zip(plane)
            .zip(&*mean)
            .for_each(|((q, &v), &m)| *q += (v - m) * (v - m));
    }
    rstd.iter_mut()
        .for_each(|q| *q = 1.0 / (*q * inv + eps).sqrt());
}

/// `y = (x - mean) / sqrt(var + eps) * weight[c] + bias[c]` at every position of every row.
pub fn layer_norm(ln: &LayerNorm, shape: Shape, input: &[f32], out: &mut [f32]) {
    let (channels, s) = (shape.channels(), shape.spatial());
    let (mut mean, mut rstd) = (vec![0.0f32; s], vec![0.0f32; s]);
    for (o, x) in out
        .chunks_exact_mut(shape.numel())
        .zip(input.chunks_exact(shape.numel()))
    {
        stats(x, channels, s, ln.eps, &mut mean, &mut rstd);
        for (c, (o, x)) in o.chunks_exact_mut(s).zip(x.chunks_exact(s)).enumerate() {
            let (w, b) = (ln.weight[c], ln.bias[c]);
            for (((o, &v), &m), &r) in o.iter_mut().zip(x).zip(&mean).zip(&rstd) {
                *o = (v - m) * r * w + b;
            }
        }
    }
}

/// Vector-Jacobian product of [`layer_norm`] with respect to its input (weight and bias are
/// constants), the full Jacobian of the normalisation: with `xhat = (x - mean) * rstd` and
/// `gh = grad_out * weight`, `grad_in += rstd * (gh - mean_c(gh) - xhat * mean_c(gh * xhat))`.
pub fn layer_norm_backward(
    ln: &LayerNorm,
    shape: Shape,
    input: &[f32],
    grad_out: &[f32],
    grad_in: &mut [f32],
) {
    let (channels, s) = (shape.channels(), shape.spatial());
    let n = shape.numel();
    let (mut mean, mut rstd) = (vec![0.0f32; s], vec![0.0f32; s]);
    let (mut mean_gh, mut mean_ghx) = (vec![0.0f32; s], vec![0.0f32; s]);
    let inv = 1.0 / channels as f32;
    for ((d, x), g) in grad_in
        .chunks_exact_mut(n)
        .zip(input.chunks_exact(n))
        .zip(grad_out.chunks_exact(n))
    {
        stats(x, channels, s, ln.eps, &mut mean, &mut rstd);
        mean_gh.fill(0.0);
        mean_ghx.fill(0.0);
        for (c, (x, g)) in x.chunks_exact(s).zip(g.chunks_exact(s)).enumerate() {
            let w = ln.weight[c];
            for p in 0..s {
                let gh = g[p] * w;
                mean_gh[p] += gh;
                mean_ghx[p] += gh * (x[p] - mean[p]) * rstd[p];
            }
        }
        for (c, (d, (x, g))) in d
            .chunks_exact_mut(s)
            .zip(x.chunks_exact(s).zip(g.chunks_exact(s)))
            .enumerate()
        {
            let w = ln.weight[c];
            for p in 0..s {
                let xhat = (x[p] - mean[p]) * rstd[p];
                d[p] += rstd[p] * (g[p] * w - mean_gh[p] * inv - xhat * mean_ghx[p] * inv);
            }
        }
    }
}

/// Per-position `1 / sqrt(mean_c(x^2) + eps)` of one row.
fn rms_stats(x: &[f32], channels: usize, s: usize, eps: f32, rstd: &mut [f32]) {
    rstd.fill(0.0);
    for plane in x.chunks_exact(s) {
        rstd.iter_mut().zip(plane).for_each(|(q, &v)| *q += v * v);
    }
    let inv = 1.0 / channels as f32;
    rstd.iter_mut()
        .for_each(|q| *q = 1.0 / (*q * inv + eps).sqrt());
}

/// RMS normalisation (Llama's `RMSNorm`): `y = x / sqrt(mean_c(x^2) + eps) * weight[c]`.
pub fn rms_norm(norm: &RmsNorm, shape: Shape, input: &[f32], out: &mut [f32]) {
    let (channels, s) = (shape.channels(), shape.spatial());
    let mut rstd = vec![0.0f32; s];
    for (o, x) in out
        .chunks_exact_mut(shape.numel())
        .zip(input.chunks_exact(shape.numel()))
    {
        rms_stats(x, channels, s, norm.eps, &mut rstd);
        for (c, (o, x)) in o.chunks_exact_mut(s).zip(x.chunks_exact(s)).enumerate() {
            let w = norm.weight[c];
            for ((o, &v), &r) in o.iter_mut().zip(x).zip(&rstd) {
                *o = v * r * w;
            }
        }
    }
}

/// Vector-Jacobian product of [`rms_norm`]: with `gh = grad_out * weight`,
/// `grad_in += rstd * gh - x * rstd^3 * mean_c(gh * x)`.
pub fn rms_norm_backward(
    norm: &RmsNorm,
    shape: Shape,
    input: &[f32],
    grad_out: &[f32],
    grad_in: &mut [f32],
) {
    let (channels, s) = (shape.channels(), shape.spatial());
    let n = shape.numel();
    let (mut rstd, mut mean_ghx) = (vec![0.0f32; s], vec![0.0f32; s]);
    let inv = 1.0 / channels as f32;
    for ((d, x), g) in grad_in
        .chunks_exact_mut(n)
        .zip(input.chunks_exact(n))
        .zip(grad_out.chunks_exact(n))
    {
        rms_stats(x, channels, s, norm.eps, &mut rstd);
        mean_ghx.fill(0.0);
        for (c, (x, g)) in x.chunks_exact(s).zip(g.chunks_exact(s)).enumerate() {
            let w = norm.weight[c];
            for p in 0..s {
                mean_ghx[p] += g[p] * w * x[p] * inv;
            }
        }
        for (c, (d, (x, g))) in d
            .chunks_exact_mut(s)
            .zip(x.chunks_exact(s).zip(g.chunks_exact(s)))
            .enumerate()
        {
            let w = norm.weight[c];
            for p in 0..s {
                let r = rstd[p];
                d[p] += r * g[p] * w - x[p] * r * r * r * mean_ghx[p];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layernorm_of_a_constant_vector_is_the_bias() {
        let ln = LayerNorm {
            weight: vec![2.0, -1.0, 0.5, 3.0],
            bias: vec![0.25, -0.5, 1.0, 0.0],
            eps: 1e-5,
        };
        // Exactly representable constants: the mean is exact, every deviation 0.
        for v in [0.0f32, 2.0, -7.5] {
            let mut y = vec![9.0; 4];
            layer_norm(&ln, Shape::Features(4), &[v; 4], &mut y);
            assert_eq!(y, ln.bias, "constant {v}");
        }
        // [C, H, W]: per position; position 0 constant 0.1 over the channels (inexact mean),
        // position 1 holds 0, 1, 2, 3.
        let shape = Shape::Image { c: 4, h: 1, w: 2 };
        let x = [0.1, 0.0, 0.1, 1.0, 0.1, 2.0, 0.1, 3.0];
        let mut y = vec![0.0; 8];
        layer_norm(&ln, shape, &x, &mut y);
        for c in 0..4 {
            assert!((y[2 * c] - ln.bias[c]).abs() < 1e-4, "{y:?}");
            // mean 1.5, biased variance 1.25
            let want = (c as f32 - 1.5) / (1.25f32 + 1e-5).sqrt() * ln.weight[c] + ln.bias[c];
            assert!(
                (y[2 * c + 1] - want).abs() < 1e-5,
                "{} vs {want}",
                y[2 * c + 1]
            );
        }
    }
}
