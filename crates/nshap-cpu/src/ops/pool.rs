//! Max, average and global average pooling (PyTorch floor mode; average counts padding).

use nshap_model::{Pool2d, Shape};

fn dims(s: Shape) -> (usize, usize, usize) {
    match s {
        Shape::Image { c, h, w } => (c, h, w),
        Shape::Features(f) => (f, 1, 1),
    }
}

/// Visit each output position with the in-bounds window range `(y0..y1, x0..x1)`.
fn windows(
    p: &Pool2d,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    mut f: impl FnMut(usize, [usize; 4]),
) {
    for oy in 0..oh {
        let ys = (oy * p.stride.0) as isize - p.padding.0 as isize;
        let (y0, y1) = (
            ys.max(0) as usize,
            ((ys + p.kernel.0 as isize) as usize).min(h),
        );
        for ox in 0..ow {
            let xs = (ox * p.stride.1) as isize - p.padding.1 as isize;
            let (x0, x1) = (
                xs.max(0) as usize,
                ((xs + p.kernel.1 as isize) as usize).min(w),
            );
            f(oy * ow + ox, [y0, y1, x0, x1]);
        }
    }
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
    for plane in 0..rows * c {
        let x = &input[plane * h * w..(plane + 1) * h * w];
        let y = &mut out[plane * oh * ow..(plane + 1) * oh * ow];
        windows(p, h, w, oh, ow, |o, [y0, y1, x0, x1]| {
            let mut m = f32::NEG_INFINITY;
            for iy in y0..y1 {
                for &v in &x[iy * w + x0..iy * w + x1] {
                    m = m.max(v);
                }
            }
            y[o] = m;
        });
    }
}

pub fn avg_pool(
    p: &Pool2d,
    input_shape: Shape,
    output_shape: Shape,
    input: &[f32],
    rows: usize,
    out: &mut [f32],
) {
    let (c, h, w) = dims(input_shape);
    let (_, oh, ow) = dims(output_shape);
    let area = (p.kernel.0 * p.kernel.1) as f32;
    for plane in 0..rows * c {
        let x = &input[plane * h * w..(plane + 1) * h * w];
        let y = &mut out[plane * oh * ow..(plane + 1) * oh * ow];
        windows(p, h, w, oh, ow, |o, [y0, y1, x0, x1]| {
            let mut s = 0.0;
            for iy in y0..y1 {
                s += x[iy * w + x0..iy * w + x1].iter().sum::<f32>();
            }
            y[o] = s / area;
        });
    }
}

pub fn global_avg_pool(input_shape: Shape, input: &[f32], out: &mut [f32]) {
    let spatial = input_shape.spatial();
    for (o, plane) in out.iter_mut().zip(input.chunks_exact(spatial)) {
        *o = plane.iter().sum::<f32>() / spatial as f32;
    }
}

/// Vector-Jacobian product of [`max_pool`] with respect to its input: each output's gradient is
/// added to the input position that produced the max. Ties go to the first position of the
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
    for plane in 0..rows * c {
        let x = &input[plane * h * w..(plane + 1) * h * w];
        let g = &grad_out[plane * oh * ow..(plane + 1) * oh * ow];
        let gi = &mut grad_in[plane * h * w..(plane + 1) * h * w];
        windows(p, h, w, oh, ow, |o, [y0, y1, x0, x1]| {
            let mut best = y0 * w + x0;
            let mut m = f32::NEG_INFINITY;
            for iy in y0..y1 {
                for ix in x0..x1 {
                    let v = x[iy * w + ix];
                    if v > m || v.is_nan() {
                        m = v;
                        best = iy * w + ix;
                    }
                }
            }
            gi[best] += g[o];
        });
    }
}

/// Vector-Jacobian product of [`avg_pool`]: each output's gradient, divided by the kernel area
/// (padding counts, as in the forward), is added to every in-bounds position of its window.
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
    let area = (p.kernel.0 * p.kernel.1) as f32;
    for plane in 0..rows * c {
        let g = &grad_out[plane * oh * ow..(plane + 1) * oh * ow];
        let gi = &mut grad_in[plane * h * w..(plane + 1) * h * w];
        windows(p, h, w, oh, ow, |o, [y0, y1, x0, x1]| {
            let v = g[o] / area;
            for iy in y0..y1 {
                gi[iy * w + x0..iy * w + x1]
                    .iter_mut()
                    .for_each(|d| *d += v);
            }
        });
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
