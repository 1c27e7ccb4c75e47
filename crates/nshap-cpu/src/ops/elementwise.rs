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
