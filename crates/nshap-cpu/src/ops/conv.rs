//! 2-D convolution as im2col + GEMM, batched over rows so each GEMM is large.

use nshap_model::{Conv2d, Shape};

/// Upper bound on the im2col buffer (floats) so large images don't blow memory.
const COL_BUDGET: usize = 4 << 20;

pub fn conv2d(
    c: &Conv2d,
    in_shape: Shape,
    out_shape: Shape,
    input: &[f32],
    rows: usize,
    out: &mut [f32],
) {
    let (Shape::Image { h, w, .. }, Shape::Image { h: oh, w: ow, .. }) = (in_shape, out_shape)
    else {
        unreachable!("conv2d shapes are images (checked at load)");
    };
    let (cin_g, cout_g) = (c.in_channels / c.groups, c.out_channels / c.groups);
    let k = cin_g * c.kernel.0 * c.kernel.1;
    let p = oh * ow;
    let in_row = c.in_channels * h * w;
    let out_row = c.out_channels * p;
    let pointwise = c.kernel == (1, 1) && c.stride == (1, 1) && c.padding == (0, 0);
    // Rows per GEMM: as many as fit the column budget.
    let batch = (COL_BUDGET / (k * p).max(1)).clamp(1, rows.max(1));
    let mut col = vec![0.0f32; k * p * batch];
    let mut tmp = vec![0.0f32; cout_g * p * batch];
    for start in (0..rows).step_by(batch) {
        let nb = batch.min(rows - start);
        for g in 0..c.groups {
            // col: [k, nb * p]; column (r, pos).
            let ld = nb * p;
            for r in 0..nb {
                let x = &input[(start + r) * in_row + g * cin_g * h * w..][..cin_g * h * w];
                if pointwise {
                    for ci in 0..cin_g {
                        col[ci * ld + r * p..ci * ld + (r + 1) * p]
                            .copy_from_slice(&x[ci * p..(ci + 1) * p]);
                    }
                } else {
                    im2col(c, x, (h, w), (oh, ow), &mut col, ld, r * p);
                }
            }
            let wg = &c.weight[g * cout_g * k..(g + 1) * cout_g * k];
            // SAFETY: wg is [cout_g, k], col is [k, ld], tmp is [cout_g, ld]; strides match.
            unsafe {
                matrixmultiply::sgemm(
                    cout_g,
                    k,
                    ld,
                    1.0,
                    wg.as_ptr(),
                    k as isize,
                    1,
                    col.as_ptr(),
                    ld as isize,
                    1,
                    0.0,
                    tmp.as_mut_ptr(),
                    ld as isize,
                    1,
                );
            }
            for r in 0..nb {
                for o in 0..cout_g {
                    let oc = g * cout_g + o;
                    let dst = &mut out[(start + r) * out_row + oc * p..][..p];
                    let src = &tmp[o * ld + r * p..o * ld + (r + 1) * p];
                    let b = c.bias[oc];
                    dst.iter_mut().zip(src).for_each(|(d, &s)| *d = s + b);
                }
            }
        }
    }
}

/// Write the patches of one example's channel group into columns `offset..offset + oh*ow` of `col`.
fn im2col(
    c: &Conv2d,
    x: &[f32],
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
    col: &mut [f32],
    ld: usize,
    offset: usize,
) {
    let cin_g = c.in_channels / c.groups;
    let (kh, kw) = c.kernel;
    for ci in 0..cin_g {
        for ky in 0..kh {
            for kx in 0..kw {
                let krow = (ci * kh + ky) * kw + kx;
                let dst = &mut col[krow * ld + offset..krow * ld + offset + oh * ow];
                for oy in 0..oh {
                    let iy = (oy * c.stride.0 + ky * c.dilation.0) as isize - c.padding.0 as isize;
                    let line = &mut dst[oy * ow..(oy + 1) * ow];
                    if iy < 0 || iy >= h as isize {
                        line.fill(0.0);
                        continue;
                    }
                    let src = &x[ci * h * w + iy as usize * w..][..w];
                    for (ox, d) in line.iter_mut().enumerate() {
                        let ix =
                            (ox * c.stride.1 + kx * c.dilation.1) as isize - c.padding.1 as isize;
                        *d = if ix < 0 || ix >= w as isize {
                            0.0
                        } else {
                            src[ix as usize]
                        };
                    }
                }
            }
        }
    }
}
