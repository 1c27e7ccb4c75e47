//! Max, average, adaptive average and global average pooling, with PyTorch's options.
//!
//! Window `o` along an axis starts at `o * stride - padding` and has taps `start + k * dilation`,
//! `k < kernel`; taps outside the input are skipped (padding is never a candidate for the max).
//! The output size (ceil mode included) is the node's shape, computed by `Pool2d::out_len`.
//! Average pooling (dilation 1) divides by `Pool2d::avg_divisor`: the window clipped to the
//! padded input when `count_include_pad`, else the number of in-bounds taps.

use nshap_model::graph::adaptive_window;
use nshap_model::{Pool2d, Shape};

fn dims(s: Shape) -> (usize, usize, usize) {
    match s {
        Shape::Image { c, h, w } => (c, h, w),
        Shape::Features(f) => (f, 1, 1),
    }
}

/// The in-bounds taps of one window along one axis: `first, first + step, ...` (`count` taps).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Taps {
    first: usize,
    count: usize,
    step: usize,
}

impl Taps {
    fn iter(self) -> impl Iterator<Item = usize> {
        (0..self.count).map(move |k| self.first + k * self.step)
    }

    /// The taps' values in `line` (one row of the plane).
    #[inline]
    fn values(self, line: &[f32]) -> impl Iterator<Item = f32> + '_ {
        line[self.first..]
            .iter()
            .step_by(self.step)
            .take(self.count)
            .copied()
    }
}

/// The taps of the `out` windows along an axis of length `n`.
fn axis_taps(
    out: usize,
    n: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> Vec<Taps> {
    (0..out)
        .map(|o| {
            let start = (o * stride) as isize - padding as isize;
            let inside: Vec<usize> = (0..kernel)
                .map(|k| start + (k * dilation) as isize)
                .filter(|&t| t >= 0 && (t as usize) < n)
                .map(|t| t as usize)
                .collect();
            Taps {
                first: inside.first().copied().unwrap_or(0),
                count: inside.len(),
                step: dilation,
            }
        })
        .collect()
}

/// Taps of every window of a pooling node: `(rows[oy], cols[ox])`.
fn windows(p: &Pool2d, h: usize, w: usize, oh: usize, ow: usize) -> (Vec<Taps>, Vec<Taps>) {
    let rows = axis_taps(oh, h, p.kernel.0, p.stride.0, p.padding.0, p.dilation.0);
    let cols = axis_taps(ow, w, p.kernel.1, p.stride.1, p.padding.1, p.dilation.1);
    (rows, cols)
}

/// Position (in the plane) of the max of window `(ty, tx)`, scanning the in-bounds taps in
/// row-major order with PyTorch's CPU rule `v > max || isnan(v)`: among equal maxima the first
/// wins, and a NaN propagates (the last NaN of the window).
#[inline]
fn argmax(x: &[f32], w: usize, ty: Taps, tx: Taps) -> usize {
    debug_assert!(
        ty.count > 0 && tx.count > 0,
        "a window has an in-bounds tap"
    );
    let mut best = ty.first * w + tx.first;
    let mut m = f32::NEG_INFINITY;
    for iy in ty.iter() {
        let line = &x[iy * w..(iy + 1) * w];
        for ix in tx.iter() {
            let v = line[ix];
            if v > m || v.is_nan() {
                m = v;
                best = iy * w + ix;
            }
        }
    }
    best
}

pub fn max_pool(
    p: &Pool2d,
    input_shape: Shape,
    output_shape: Shape,
    input: &[f32],
    rows: usize,
    out: &mut [f32],
) {
    let (c, h, w) = dims(input_shape);
    let (_, oh, ow) = dims(output_shape);
    let (ty, tx) = windows(p, h, w, oh, ow);
    for plane in 0..rows * c {
        let x = &input[plane * h * w..(plane + 1) * h * w];
        let y = &mut out[plane * oh * ow..(plane + 1) * oh * ow];
        for (oy, &ry) in ty.iter().enumerate() {
            for (ox, &rx) in tx.iter().enumerate() {
                // The value `argmax` picks, without its branches: `f32::max` skips NaN, so a
                // NaN anywhere in the window is tracked on the side and propagated.
                let (mut m, mut nan) = (f32::NEG_INFINITY, false);
                for iy in ry.iter() {
                    let line = &x[iy * w..(iy + 1) * w];
                    if rx.step == 1 {
                        for &v in &line[rx.first..rx.first + rx.count] {
                            m = m.max(v);
                            nan |= v.is_nan();
                        }
                    } else {
                        for v in rx.values(line) {
                            m = m.max(v);
                            nan |= v.is_nan();
                        }
                    }
                }
                y[oy * ow + ox] = if nan { f32::NAN } else { m };
            }
        }
    }
}

/// The divisor of every window, row-major.
fn divisors(p: &Pool2d, h: usize, w: usize, oh: usize, ow: usize) -> Vec<f32> {
    (0..oh * ow)
        .map(|o| p.avg_divisor(h, w, o / ow, o % ow) as f32)
        .collect()
}

pub fn avg_pool(
    p: &Pool2d,
    input_shape: Shape,
    output_shape: Shape,
    input: &[f32],
    rows: usize,
    out: &mut [f32],
) {
    debug_assert_eq!(p.dilation, (1, 1), "average pooling has no dilation");
    let (c, h, w) = dims(input_shape);
    let (_, oh, ow) = dims(output_shape);
    let (ty, tx) = windows(p, h, w, oh, ow);
    let div = divisors(p, h, w, oh, ow);
    for plane in 0..rows * c {
        let x = &input[plane * h * w..(plane + 1) * h * w];
        let y = &mut out[plane * oh * ow..(plane + 1) * oh * ow];
        for (oy, &ry) in ty.iter().enumerate() {
            for (ox, &rx) in tx.iter().enumerate() {
                let mut s = 0.0;
                for iy in ry.iter() {
                    s += x[iy * w + rx.first..iy * w + rx.first + rx.count]
                        .iter()
                        .sum::<f32>();
                }
                y[oy * ow + ox] = s / div[oy * ow + ox];
            }
        }
    }
}

/// Adaptive average pooling to the output's `oh x ow`: window `o` along an axis is
/// [`adaptive_window`]`(o, n, out)`, divided by the window's area.
pub fn adaptive_avg_pool(
    input_shape: Shape,
    output_shape: Shape,
    input: &[f32],
    rows: usize,
    out: &mut [f32],
) {
    let (c, h, w) = dims(input_shape);
    let (_, oh, ow) = dims(output_shape);
    for plane in 0..rows * c {
        let x = &input[plane * h * w..(plane + 1) * h * w];
        let y = &mut out[plane * oh * ow..(plane + 1) * oh * ow];
        for oy in 0..oh {
            let (y0, y1) = adaptive_window(oy, h, oh);
            for ox in 0..ow {
                let (x0, x1) = adaptive_window(ox, w, ow);
                let mut s = 0.0;
                for iy in y0..y1 {
                    s += x[iy * w + x0..iy * w + x1].iter().sum::<f32>();
                }
                y[oy * ow + ox] = s / ((y1 - y0) * (x1 - x0)) as f32;
            }
        }
    }
}

pub fn global_avg_pool(input_shape: Shape, input: &[f32], out: &mut [f32]) {
    let spatial = input_shape.spatial();
    for (o, plane) in out.iter_mut().zip(input.chunks_exact(spatial)) {
        *o = plane.iter().sum::<f32>() / spatial as f32;
    }
}

/// Vector-Jacobian product of [`max_pool`] with respect to its input: each output's gradient is
/// added to the input position that produced the max. Ties go to the first in-bounds tap of the
/// window in row-major order (strict `>` while scanning), as PyTorch's CPU kernel does; padding
/// never wins.
pub fn max_pool_backward(
    p: &Pool2d,
    input_shape: Shape,
    output_shape: Shape,
    input: &[f32],
    grad_out: &[f32],
    rows: usize,
    grad_in: &mut [f32],
) {
    let (c, h, w) = dims(input_shape);
    let (_, oh, ow) = dims(output_shape);
    let (ty, tx) = windows(p, h, w, oh, ow);
    for plane in 0..rows * c {
        let x = &input[plane * h * w..(plane + 1) * h * w];
        let g = &grad_out[plane * oh * ow..(plane + 1) * oh * ow];
        let gi = &mut grad_in[plane * h * w..(plane + 1) * h * w];
        for (oy, &ry) in ty.iter().enumerate() {
            for (ox, &rx) in tx.iter().enumerate() {
                gi[argmax(x, w, ry, rx)] += g[oy * ow + ox];
            }
        }
    }
}

/// Vector-Jacobian product of [`avg_pool`]: each output's gradient, divided by its window's
/// divisor (as in the forward), is added to every in-bounds position of its window.
pub fn avg_pool_backward(
    p: &Pool2d,
    input_shape: Shape,
    output_shape: Shape,
    grad_out: &[f32],
    rows: usize,
    grad_in: &mut [f32],
) {
    let (c, h, w) = dims(input_shape);
    let (_, oh, ow) = dims(output_shape);
    let (ty, tx) = windows(p, h, w, oh, ow);
    let div = divisors(p, h, w, oh, ow);
    for plane in 0..rows * c {
        let g = &grad_out[plane * oh * ow..(plane + 1) * oh * ow];
        let gi = &mut grad_in[plane * h * w..(plane + 1) * h * w];
        for (oy, &ry) in ty.iter().enumerate() {
            for (ox, &rx) in tx.iter().enumerate() {
                let v = g[oy * ow + ox] / div[oy * ow + ox];
                for iy in ry.iter() {
                    gi[iy * w + rx.first..iy * w + rx.first + rx.count]
                        .iter_mut()
                        .for_each(|d| *d += v);
                }
            }
        }
    }
}

/// Vector-Jacobian product of [`adaptive_avg_pool`]: each output's gradient divided by its
/// window's area goes to every position of the window (windows may overlap).
pub fn adaptive_avg_pool_backward(
    input_shape: Shape,
    output_shape: Shape,
    grad_out: &[f32],
    rows: usize,
    grad_in: &mut [f32],
) {
    let (c, h, w) = dims(input_shape);
    let (_, oh, ow) = dims(output_shape);
    for plane in 0..rows * c {
        let g = &grad_out[plane * oh * ow..(plane + 1) * oh * ow];
        let gi = &mut grad_in[plane * h * w..(plane + 1) * h * w];
        for oy in 0..oh {
            let (y0, y1) = adaptive_window(oy, h, oh);
            for ox in 0..ow {
                let (x0, x1) = adaptive_window(ox, w, ow);
                let v = g[oy * ow + ox] / ((y1 - y0) * (x1 - x0)) as f32;
                for iy in y0..y1 {
                    gi[iy * w + x0..iy * w + x1]
                        .iter_mut()
                        .for_each(|d| *d += v);
                }
            }
        }
    }
}

/// Vector-Jacobian product of [`global_avg_pool`]: `grad_in[c, :] += grad_out[c] / (H * W)`.
pub fn global_avg_pool_backward(input_shape: Shape, grad_out: &[f32], grad_in: &mut [f32]) {
    let spatial = input_shape.spatial();
    for (&g, plane) in grad_out.iter().zip(grad_in.chunks_exact_mut(spatial)) {
        let v = g / spatial as f32;
        plane.iter_mut().for_each(|d| *d += v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(k: usize, s: usize, p: usize) -> Pool2d {
        Pool2d::new((k, k), (s, s), (p, p))
    }

    /// One row, one channel: `h x w` values, pooled to the size `Pool2d::out_len` gives.
    fn run(p: &Pool2d, max: bool, h: usize, w: usize, x: &[f32]) -> (usize, usize, Vec<f32>) {
        let (oh, ow) = (p.out_len(h, 0).unwrap(), p.out_len(w, 1).unwrap());
        let mut y = vec![0.0; oh * ow];
        let (i, o) = (
            Shape::Image { c: 1, h, w },
            Shape::Image { c: 1, h: oh, w: ow },
        );
        if max {
            max_pool(p, i, o, x, 1, &mut y);
        } else {
            avg_pool(p, i, o, x, 1, &mut y);
        }
        (oh, ow, y)
    }

    #[test]
    fn ceil_mode_last_window_h5_k2_s2() {
        // A 1 x 5 row, kernel 2 stride 2: floor gives 2 windows, ceil 3 (the last, [4, 6), holds
        // only input 4).
        let x = [1.0, 5.0, 2.0, 3.0, 7.0];
        let mut p = Pool2d::new((1, 2), (1, 2), (0, 0));
        assert_eq!(run(&p, true, 1, 5, &x).2, [5.0, 3.0]);
        p.ceil_mode = true;
        let (_, ow, y) = run(&p, true, 1, 5, &x);
        assert_eq!(ow, 3);
        assert_eq!(y, [5.0, 3.0, 7.0]);
        // Average: the hanging window divides by its one in-bounds tap (no padding to count).
        assert_eq!(run(&p, false, 1, 5, &x).2, [3.0, 2.5, 7.0]);
    }

    #[test]
    fn ceil_mode_h4_k3_s2_p1() {
        // Padded length 6, windows start at -1, 1, 3 (3 outputs with ceil; 2 with floor).
        // Window 2 covers [3, 6): input 3 plus right padding 4 and beyond the padded input 5.
        let x = [1.0, 2.0, 4.0, 8.0];
        let mut p = Pool2d::new((1, 3), (1, 2), (0, 1));
        assert_eq!(run(&p, false, 1, 4, &x).2.len(), 2);
        p.ceil_mode = true;
        let (_, ow, y) = run(&p, true, 1, 4, &x);
        assert_eq!(ow, 3);
        assert_eq!(y, [2.0, 8.0, 8.0]);
        // count_include_pad: divisors min(start + 3, 4 + 1) - start = 3, 3, 2 (PyTorch).
        let (_, _, y) = run(&p, false, 1, 4, &x);
        assert_eq!(y, [3.0 / 3.0, 14.0 / 3.0, 8.0 / 2.0]);
        // Without counting padding: 2, 3, 1 in-bounds taps.
        p.count_include_pad = false;
        let (_, _, y) = run(&p, false, 1, 4, &x);
        assert_eq!(y, [3.0 / 2.0, 14.0 / 3.0, 8.0]);
        // Both axes at once: 4 x 4, ceil, 3 x 3 windows stride 2 padding 1.
        let x: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let mut p = pool(3, 2, 1);
        p.ceil_mode = true;
        let (oh, ow, y) = run(&p, false, 4, 4, &x);
        assert_eq!((oh, ow), (3, 3));
        // Corner (2, 2): only input (3, 3) = 15, divisor 2 x 2 with padding, 1 without.
        assert_eq!(y[8], 15.0 / 4.0);
        p.count_include_pad = false;
        assert_eq!(run(&p, false, 4, 4, &x).2[8], 15.0);
    }

    #[test]
    fn count_include_pad_false_at_borders() {
        // 3 x 3 input of ones and a 3 x 3 window, stride 1, padding 1.
        let x = [1.0; 9];
        let mut p = pool(3, 1, 1);
        let (_, _, y) = run(&p, false, 3, 3, &x);
        // Counting padding: corners 4/9, edges 6/9, centre 1.
        assert_eq!(y[0], 4.0 / 9.0);
        assert_eq!(y[1], 6.0 / 9.0);
        assert_eq!(y[4], 1.0);
        p.count_include_pad = false;
        assert_eq!(run(&p, false, 3, 3, &x).2, [1.0; 9]);
        // Not counting padding, values 0..9: corner (0,0) averages 0, 1, 3, 4.
        let x: Vec<f32> = (0..9).map(|v| v as f32).collect();
        let (_, _, y) = run(&p, false, 3, 3, &x);
        assert_eq!(y[0], 2.0);
        assert_eq!(y[1], (0.0 + 1.0 + 2.0 + 3.0 + 4.0 + 5.0) / 6.0);
    }

    #[test]
    fn dilation_2_max_pool() {
        // 1 x 7 row, kernel 3 dilation 2 (span 5), stride 1: windows {0,2,4}, {1,3,5}, {2,4,6}.
        let x = [9.0, 1.0, 2.0, 8.0, 3.0, 0.0, 4.0];
        let mut p = Pool2d::new((1, 3), (1, 1), (0, 0));
        p.dilation = (1, 2);
        assert_eq!(run(&p, true, 1, 7, &x).2, [9.0, 8.0, 4.0]);
        // Padding 2: windows start at -2: taps {-2, 0, 2} ... {4, 6, 8}.
        p.padding = (0, 2);
        let (_, ow, y) = run(&p, true, 1, 7, &x);
        assert_eq!(ow, 7);
        assert_eq!(y, [9.0, 8.0, 9.0, 8.0, 4.0, 8.0, 4.0]);
        // 2-D: 5 x 5, kernel 2 dilation 2: the window of (0, 0) is {0, 2} x {0, 2}.
        let x: Vec<f32> = (0..25).map(|v| ((v * 7) % 25) as f32).collect();
        let mut p = pool(2, 1, 0);
        p.dilation = (2, 2);
        let (oh, ow, y) = run(&p, true, 5, 5, &x);
        assert_eq!((oh, ow), (3, 3));
        for oy in 0..3 {
            for ox in 0..3 {
                let want = [(0, 0), (0, 2), (2, 0), (2, 2)]
                    .iter()
                    .map(|(dy, dx)| x[(oy + dy) * 5 + ox + dx])
                    .fold(f32::NEG_INFINITY, f32::max);
                assert_eq!(y[oy * 3 + ox], want);
            }
        }
    }

    #[test]
    fn adaptive_pool_5_to_3_windows() {
        assert_eq!(
            (0..3).map(|o| adaptive_window(o, 5, 3)).collect::<Vec<_>>(),
            [(0, 2), (1, 4), (3, 5)]
        );
        // 1 x 5 -> 1 x 3 and 5 x 1 -> 3 x 1.
        let x = [1.0, 2.0, 4.0, 8.0, 16.0];
        let want = [1.5, 14.0 / 3.0, 12.0];
        for (i, o) in [
            (
                Shape::Image { c: 1, h: 1, w: 5 },
                Shape::Image { c: 1, h: 1, w: 3 },
            ),
            (
                Shape::Image { c: 1, h: 5, w: 1 },
                Shape::Image { c: 1, h: 3, w: 1 },
            ),
        ] {
            let mut y = vec![0.0; 3];
            adaptive_avg_pool(i, o, &x, 1, &mut y);
            assert_eq!(y, want);
            // Overlapping windows: input 1 is in windows 0 and 1, input 3 in windows 1 and 2.
            let mut d = vec![0.0; 5];
            adaptive_avg_pool_backward(i, o, &[6.0, 6.0, 6.0], 1, &mut d);
            assert_eq!(d, [3.0, 5.0, 2.0, 5.0, 3.0]);
        }
    }

    #[test]
    fn max_pool_ties_nan_and_padding_never_winning() {
        // All-negative input with padding: the max is an input value, never the padding's 0.
        let x = [-3.0, -1.0, -2.0, -5.0];
        let p = pool(2, 1, 1);
        let (_, _, y) = run(&p, true, 2, 2, &x);
        assert_eq!(y, [-3.0, -1.0, -1.0, -2.0, -1.0, -1.0, -2.0, -2.0, -5.0]);
        // Ties: window over [2, 2 / 2, 0] sends the gradient to its first 2 (row-major).
        let x = [2.0, 2.0, 2.0, 0.0];
        let mut d = vec![0.0; 4];
        let s = Shape::Image { c: 1, h: 2, w: 2 };
        let o = Shape::Image { c: 1, h: 1, w: 1 };
        max_pool_backward(&pool(2, 2, 0), s, o, &x, &[1.0], 1, &mut d);
        assert_eq!(d, [1.0, 0.0, 0.0, 0.0]);
        // A NaN propagates, and takes the gradient (PyTorch's `v > max || isnan(v)`).
        let x = [1.0, f32::NAN, 3.0, 2.0];
        let mut y = [0.0];
        max_pool(&pool(2, 2, 0), s, o, &x, 1, &mut y);
        assert!(y[0].is_nan());
        let mut d = vec![0.0; 4];
        max_pool_backward(&pool(2, 2, 0), s, o, &x, &[1.0], 1, &mut d);
        assert_eq!(d, [0.0, 1.0, 0.0, 0.0]);
    }
}
