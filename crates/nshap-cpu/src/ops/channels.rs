//! Ops that move whole channels: concatenation, channel slices and ShuffleNet's channel shuffle.
//!
//! A channel is a contiguous block of `H * W` values (one value for `[F]` activations), so each
//! op copies blocks; their backward passes route the gradient blocks back.

use super::{row, row_mut};
use nshap_model::{Op, Shape};

/// Channel concatenation: each output row is the inputs' rows one after the other (`numels[k]`
/// values each). An input may hold fewer rows than `out` (the module's row convention).
pub fn concat(inputs: &[&[f32]], numels: &[usize], out: &mut [f32]) {
    let numel: usize = numels.iter().sum();
    for (r, o) in out.chunks_exact_mut(numel).enumerate() {
        let mut at = 0;
        for (x, &n) in inputs.iter().zip(numels) {
            o[at..at + n].copy_from_slice(row(x, n, r));
            at += n;
        }
    }
}

/// Vector-Jacobian product of [`concat()`] with respect to the input whose values start at
/// `offset` of each output row (of `out_numel` values) and span `numel`.
pub fn concat_backward(
    offset: usize,
    numel: usize,
    out_numel: usize,
    grad_out: &[f32],
    grad_in: &mut [f32],
) {
    for (r, g) in grad_out.chunks_exact(out_numel).enumerate() {
        let d = row_mut(grad_in, numel, r);
        d.iter_mut()
            .zip(&g[offset..offset + numel])
            .for_each(|(d, &g)| *d += g);
    }
}

/// Channels `start..start + C_out` of each row.
pub fn slice(start: usize, in_shape: Shape, out_shape: Shape, input: &[f32], out: &mut [f32]) {
    let s = in_shape.spatial();
    let (n_in, n_out) = (in_shape.numel(), out_shape.numel());
    for (o, x) in out.chunks_exact_mut(n_out).zip(input.chunks_exact(n_in)) {
        o.copy_from_slice(&x[start * s..start * s + n_out]);
    }
}

/// Vector-Jacobian product of [`slice()`]: the gradient goes back to the sliced channels.
pub fn slice_backward(
    start: usize,
    in_shape: Shape,
    out_shape: Shape,
    grad_out: &[f32],
    grad_in: &mut [f32],
) {
    let s = in_shape.spatial();
    let (n_in, n_out) = (in_shape.numel(), out_shape.numel());
    for (d, g) in grad_in
        .chunks_exact_mut(n_in)
        .zip(grad_out.chunks_exact(n_out))
    {
        d[start * s..start * s + n_out]
            .iter_mut()
            .zip(g)
            .for_each(|(d, &g)| *d += g);
    }
}

/// ShuffleNet's channel shuffle: output channel `c` is input channel
/// [`Op::channel_source`]`(c)` (`a * groups + g` reads `g * (C / groups) + a`).
pub fn channel_shuffle(groups: usize, shape: Shape, input: &[f32], out: &mut [f32]) {
    let (channels, s) = (shape.channels(), shape.spatial());
    let op = Op::ChannelShuffle { groups };
    let source: Vec<usize> = (0..channels)
        .map(|c| op.channel_source(c, channels).expect("a channel-moving op"))
        .collect();
    for (o, x) in out
        .chunks_exact_mut(shape.numel())
        .zip(input.chunks_exact(shape.numel()))
    {
        for (c, o) in o.chunks_exact_mut(s).enumerate() {
            o.copy_from_slice(&x[source[c] * s..(source[c] + 1) * s]);
        }
    }
}

/// Vector-Jacobian product of [`channel_shuffle`]: each output channel's gradient goes back to
/// its source channel.
pub fn channel_shuffle_backward(
    groups: usize,
    shape: Shape,
    grad_out: &[f32],
    grad_in: &mut [f32],
) {
    let (channels, s) = (shape.channels(), shape.spatial());
    let op = Op::ChannelShuffle { groups };
    for (d, g) in grad_in
        .chunks_exact_mut(shape.numel())
        .zip(grad_out.chunks_exact(shape.numel()))
    {
        for (c, g) in g.chunks_exact(s).enumerate() {
            let src = op.channel_source(c, channels).expect("a channel-moving op");
            d[src * s..(src + 1) * s]
                .iter_mut()
                .zip(g)
                .for_each(|(d, &g)| *d += g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_shuffle_c6_g2_reads_0_3_1_4_2_5() {
        let shape = Shape::Image { c: 6, h: 1, w: 2 };
        // Channel c holds (10c, 10c + 1).
        let x: Vec<f32> = (0..6)
            .flat_map(|c| [10.0 * c as f32, 10.0 * c as f32 + 1.0])
            .collect();
        let mut y = vec![0.0; 12];
        channel_shuffle(2, shape, &x, &mut y);
        let order: Vec<f32> = y.chunks(2).map(|p| p[0] / 10.0).collect();
        assert_eq!(order, [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert_eq!(&y[2..4], &[30.0, 31.0]);
        // The backward routes each output channel's gradient to its source (the inverse map).
        let mut d = vec![0.0; 12];
        channel_shuffle_backward(2, shape, &y, &mut d);
        assert_eq!(d, x);
        // groups 3 on 6 channels: [0, 2, 4, 1, 3, 5].
        channel_shuffle(3, shape, &x, &mut y);
        let order: Vec<f32> = y.chunks(2).map(|p| p[0] / 10.0).collect();
        assert_eq!(order, [0.0, 2.0, 4.0, 1.0, 3.0, 5.0]);
    }

    #[test]
    fn concat_and_slice_move_channel_blocks() {
        // [2, 1, 2] ++ [1, 1, 2] over 2 rows; the second input is shared (1 row).
        let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let b = [9.0, 10.0];
        let mut y = vec![0.0; 12];
        concat(&[&a, &b], &[4, 2], &mut y);
        assert_eq!(
            y,
            [1.0, 2.0, 3.0, 4.0, 9.0, 10.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
        );
        // The shared input's gradient sums both rows.
        let mut db = vec![0.0; 2];
        concat_backward(4, 2, 6, &y, &mut db);
        assert_eq!(db, [18.0, 20.0]);
        let shape = Shape::Image { c: 3, h: 1, w: 2 };
        let out = Shape::Image { c: 2, h: 1, w: 2 };
        let mut s = vec![0.0; 8];
        slice(1, shape, out, &y, &mut s);
        assert_eq!(s, [3.0, 4.0, 9.0, 10.0, 7.0, 8.0, 9.0, 10.0]);
        let mut d = vec![0.0; 12];
        slice_backward(1, shape, out, &s, &mut d);
        assert_eq!(
            d,
            [0.0, 0.0, 3.0, 4.0, 9.0, 10.0, 0.0, 0.0, 7.0, 8.0, 9.0, 10.0]
        );
    }
}
