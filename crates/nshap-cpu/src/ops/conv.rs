//! 2-D convolution as im2col + GEMM, batched over rows so each GEMM is large.

use nshap_model::{Conv2d, Shape};
use std::cell::RefCell;
use std::sync::OnceLock;

/// Target size of the im2col buffer (floats): about one core's L2, so the columns are still
/// cached when the GEMM packs them (at 4M floats, 16 MiB per thread, im2col and packing
/// ran from memory and took half the time of a ResNet block; measured in docs/benchmarks.md).
const COL_BUDGET: usize = 1 << 18;

/// Fewest GEMM columns per call where the image is small (deep layers with few positions):
/// the weights are packed on every call, which only pays off over enough columns.
const MIN_COLUMNS: usize = 256;

thread_local! {
    /// Per-thread (im2col columns, GEMM operand) scratch, grown as needed and reused across
    /// calls. A fresh multi-megabyte `vec!` per call is returned to the OS and faulted in again
    /// each time: on the digits ResNet with players in layer1 that was a quarter of all CPU time
    /// spent in the kernel.
    static SCRATCH: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Run `f` with this thread's scratch buffers of (at least) the given lengths. Their contents are
/// stale: every caller writes each entry before reading it.
pub(super) fn with_scratch<R>(
    col_len: usize,
    tmp_len: usize,
    f: impl FnOnce(&mut [f32], &mut [f32]) -> R,
) -> R {
    let (mut col, mut tmp) = take_scratch(col_len, tmp_len);
    let result = f(&mut col[..col_len], &mut tmp[..tmp_len]);
    put_scratch(col, tmp);
    result
}

/// This thread's scratch buffers, taken out for a caller whose loops must stay in its own body
/// (a closure is compiled without the vector extensions of the function that defines it, see
/// [`conv2d_cached`]); hand them back with [`put_scratch`].
#[inline(always)]
pub(super) fn take_scratch(col_len: usize, tmp_len: usize) -> (Vec<f32>, Vec<f32>) {
    let (mut col, mut tmp) = SCRATCH.with(|cell| std::mem::take(&mut *cell.borrow_mut()));
    if col.len() < col_len {
        col.resize(col_len, 0.0);
    }
    if tmp.len() < tmp_len {
        tmp.resize(tmp_len, 0.0);
    }
    (col, tmp)
}

/// Return buffers from [`take_scratch`] for the next call on this thread.
#[inline(always)]
pub(super) fn put_scratch(col: Vec<f32>, tmp: Vec<f32>) {
    SCRATCH.with(|cell| *cell.borrow_mut() = (col, tmp));
}

/// Sizes shared by the forward and its backward: images `h x w -> oh x ow`, per-group channels,
/// the patch length `k`, output positions `p`, per-example strides, and rows per GEMM.
struct Geometry {
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    cin_g: usize,
    cout_g: usize,
    k: usize,
    p: usize,
    in_row: usize,
    out_row: usize,
    /// 1x1, stride 1, no padding: im2col is a plain copy.
    pointwise: bool,
    /// Rows per GEMM: as many as fit the column budget.
    batch: usize,
}

impl Geometry {
    fn new(c: &Conv2d, in_shape: Shape, out_shape: Shape, rows: usize) -> Geometry {
        let (Shape::Image { h, w, .. }, Shape::Image { h: oh, w: ow, .. }) = (in_shape, out_shape)
        else {
            unreachable!("conv2d shapes are images (checked at load)");
        };
        let (cin_g, cout_g) = (c.in_channels / c.groups, c.out_channels / c.groups);
        let k = cin_g * c.kernel.0 * c.kernel.1;
        let p = oh * ow;
        Geometry {
            h,
            w,
            oh,
            ow,
            cin_g,
            cout_g,
            k,
            p,
            in_row: c.in_channels * h * w,
            out_row: c.out_channels * p,
            pointwise: c.kernel == (1, 1) && c.stride == (1, 1) && c.padding == (0, 0),
            batch: (COL_BUDGET / (k * p).max(1))
                .max(MIN_COLUMNS.div_ceil(p.max(1)))
                .clamp(1, rows.max(1)),
        }
    }
}

/// Per-layer work that a convolution's calls share, made on first use: the conv without its
/// padding-only taps and its Winograd weights. Made per call, the Winograd transform alone was
/// 14% of a ResNet-18 suffix's time (every work item transforms every layer's weights again).
#[derive(Debug, Default)]
pub struct ConvCache {
    reduced: OnceLock<Option<Conv2d>>,
    winograd: OnceLock<Vec<f32>>,
}

/// A convolution of `rows` examples.
pub fn conv2d(
    c: &Conv2d,
    in_shape: Shape,
    out_shape: Shape,
    input: &[f32],
    rows: usize,
    out: &mut [f32],
) {
    conv2d_cached(
        c,
        &ConvCache::default(),
        in_shape,
        out_shape,
        input,
        rows,
        out,
    )
}

/// [`conv2d`] with the layer's shared work kept in `cache` (one per layer, shared by every
/// call and thread). The im2col and Winograd paths run compiled for the widest vector
/// extension the CPU has (AVX-512 or AVX2): the crate is built for baseline x86-64 (SSE2), and
/// their copies, transforms and bias scatter are a large share of a ResNet's time next to the
/// GEMMs (which `matrixmultiply` dispatches itself). The results are the same bits: only the
/// vector width changes, not the order of any float operation.
pub fn conv2d_cached(
    c: &Conv2d,
    cache: &ConvCache,
    in_shape: Shape,
    out_shape: Shape,
    input: &[f32],
    rows: usize,
    out: &mut [f32],
) {
    let reduced = cache
        .reduced
        .get_or_init(|| without_padding_taps(c, in_shape, out_shape));
    let Shape::Image { h: oh, w: ow, .. } = out_shape else {
        unreachable!("conv2d shapes are images (checked at load)");
    };
    let path = match reduced {
        Some(smaller) => Path::Im2col(smaller),
        None if super::winograd::applies(c) && super::winograd::pays(c, oh, ow, rows) => {
            Path::Winograd(
                cache
                    .winograd
                    .get_or_init(|| super::winograd::transform_weights(c)),
            )
        }
        None => Path::Im2col(c),
    };
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { conv2d_avx512(c, path, in_shape, out_shape, input, rows, out) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { conv2d_avx2(c, path, in_shape, out_shape, input, rows, out) };
        }
    }
    conv2d_on(c, path, in_shape, out_shape, input, rows, out)
}

/// How one call computes the convolution.
#[derive(Clone, Copy)]
enum Path<'a> {
    Im2col(&'a Conv2d),
    /// With the layer's transformed weights.
    Winograd(&'a [f32]),
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn conv2d_avx512(
    c: &Conv2d,
    path: Path<'_>,
    in_shape: Shape,
    out_shape: Shape,
    input: &[f32],
    rows: usize,
    out: &mut [f32],
) {
    conv2d_on(c, path, in_shape, out_shape, input, rows, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn conv2d_avx2(
    c: &Conv2d,
    path: Path<'_>,
    in_shape: Shape,
    out_shape: Shape,
    input: &[f32],
    rows: usize,
    out: &mut [f32],
) {
    conv2d_on(c, path, in_shape, out_shape, input, rows, out)
}

#[inline(always)]
fn conv2d_on(
    c: &Conv2d,
    path: Path<'_>,
    in_shape: Shape,
    out_shape: Shape,
    input: &[f32],
    rows: usize,
    out: &mut [f32],
) {
    match path {
        Path::Im2col(conv) => conv2d_im2col(conv, in_shape, out_shape, input, rows, out),
        Path::Winograd(u) => super::winograd::conv3x3(c, u, in_shape, out_shape, input, rows, out),
    }
}

/// The same convolution without the kernel rows and columns that only ever read padding, when
/// there are any: a 3x3 conv with padding 1 on a 1x1 image (ResNet's last stage at 32x32) is
/// its centre tap, a ninth of the work. The kept taps form a rectangle; the conv over it with
/// the padding reduced accordingly has the same output when that padding stays symmetric.
fn without_padding_taps(c: &Conv2d, in_shape: Shape, out_shape: Shape) -> Option<Conv2d> {
    let (Shape::Image { h, w, .. }, Shape::Image { h: oh, w: ow, .. }) = (in_shape, out_shape)
    else {
        return None;
    };
    // The first and one past the last tap that reads the input for some output.
    let used = |k: usize, n_out: usize, n_in: usize, s: usize, d: usize, pad: usize| {
        let mut ok = (0..k).filter(|&t| {
            let (lo, hi) = valid_range(n_out, n_in, s, t * d, pad);
            lo < hi
        });
        let first = ok.next()?;
        Some((first, ok.next_back().unwrap_or(first) + 1))
    };
    let (y0, y1) = used(c.kernel.0, oh, h, c.stride.0, c.dilation.0, c.padding.0)?;
    let (x0, x1) = used(c.kernel.1, ow, w, c.stride.1, c.dilation.1, c.padding.1)?;
    if (y1 - y0, x1 - x0) == c.kernel {
        return None;
    }
    // Output (o) reads input o * s + t * d - pad: dropping taps below t0 shifts pad by t0 * d.
    let pad_y = c.padding.0.checked_sub(y0 * c.dilation.0)?;
    let pad_x = c.padding.1.checked_sub(x0 * c.dilation.1)?;
    let out_len = |n: usize, pad: usize, k: usize, d: usize, s: usize| {
        (n + 2 * pad)
            .checked_sub(d * (k - 1) + 1)
            .map(|v| v / s + 1)
    };
    let same = out_len(h, pad_y, y1 - y0, c.dilation.0, c.stride.0) == Some(oh)
        && out_len(w, pad_x, x1 - x0, c.dilation.1, c.stride.1) == Some(ow);
    // Kept tap t reads o * s + t * d - pad = o * s + (t - t0) * d - (pad - t0 * d): the same
    // input positions, over the same outputs when the sizes agree.
    if !same {
        return None;
    }
    let (kh, kw) = c.kernel;
    let cin_g = c.in_channels / c.groups;
    let mut weight = Vec::with_capacity(c.out_channels * cin_g * (y1 - y0) * (x1 - x0));
    for oc_ci in 0..c.out_channels * cin_g {
        let taps = &c.weight[oc_ci * kh * kw..(oc_ci + 1) * kh * kw];
        for ky in y0..y1 {
            weight.extend_from_slice(&taps[ky * kw + x0..ky * kw + x1]);
        }
    }
    Some(Conv2d {
        in_channels: c.in_channels,
        out_channels: c.out_channels,
        kernel: (y1 - y0, x1 - x0),
        stride: c.stride,
        padding: (pad_y, pad_x),
        dilation: c.dilation,
        groups: c.groups,
        weight,
        bias: c.bias.clone(),
        has_bias: c.has_bias,
    })
}

/// Any convolution as im2col + one GEMM per group and batch of rows.
#[inline(always)]
pub(super) fn conv2d_im2col(
    c: &Conv2d,
    in_shape: Shape,
    out_shape: Shape,
    input: &[f32],
    rows: usize,
    out: &mut [f32],
) {
    let Geometry {
        h,
        w,
        oh,
        ow,
        cin_g,
        cout_g,
        k,
        p,
        in_row,
        out_row,
        pointwise,
        batch,
    } = Geometry::new(c, in_shape, out_shape, rows);
    let (mut col_buf, mut tmp_buf) = take_scratch(k * p * batch, cout_g * p * batch);
    {
        let (col, tmp) = (&mut col_buf[..], &mut tmp_buf[..]);
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
                        im2col(c, x, (h, w), (oh, ow), col, ld, r * p);
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
    put_scratch(col_buf, tmp_buf);
}

/// Write the patches of one example's channel group into columns `offset..offset + oh*ow` of `col`.
#[inline(always)]
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
    let (sy, sx) = c.stride;
    // Calls to memcpy/memset per output line dominate on small images, so lines are copied
    // in one block where the layout allows it and padding columns are zeroed with strided
    // stores across all lines.
    let same_width = sx == 1 && ow == w;
    for ci in 0..cin_g {
        let plane = &x[ci * h * w..(ci + 1) * h * w];
        for ky in 0..kh {
            let (oy0, oy1) = valid_range(oh, h, sy, ky * c.dilation.0, c.padding.0);
            for kx in 0..kw {
                // Output columns whose input column is in bounds: the rest read padding.
                let (ox0, ox1) = valid_range(ow, w, sx, kx * c.dilation.1, c.padding.1);
                let krow = (ci * kh + ky) * kw + kx;
                let dst = &mut col[krow * ld + offset..krow * ld + offset + oh * ow];
                dst[..oy0 * ow].fill(0.0);
                dst[oy1 * ow..].fill(0.0);
                let lines = &mut dst[oy0 * ow..oy1 * ow];
                if lines.is_empty() {
                    continue;
                }
                let dy = (ky * c.dilation.0) as isize - c.padding.0 as isize;
                let dx = (kx * c.dilation.1) as isize - c.padding.1 as isize;
                if same_width {
                    // Output (oy, ox) reads input index (oy + dy) * w + ox + dx: one contiguous
                    // run; entries that wrap into a neighbouring line are padding columns,
                    // zeroed below.
                    let base = (oy0 as isize + dy) * w as isize + dx;
                    let j0 = (-base).max(0) as usize;
                    let j1 = ((h * w) as isize - base).clamp(0, lines.len() as isize) as usize;
                    let j0 = j0.min(j1);
                    lines[..j0].fill(0.0);
                    lines[j1..].fill(0.0);
                    if j1 > j0 {
                        let from = (base + j0 as isize) as usize;
                        lines[j0..j1].copy_from_slice(&plane[from..from + (j1 - j0)]);
                    }
                } else {
                    for (k, line) in lines.chunks_exact_mut(ow).enumerate() {
                        let iy = ((oy0 + k) as isize * sy as isize + dy) as usize;
                        let src = &plane[iy * w..(iy + 1) * w];
                        if ox1 > ox0 {
                            let ix0 = (ox0 as isize * sx as isize + dx) as usize;
                            let valid = src[ix0..].iter().step_by(sx);
                            line[ox0..ox1]
                                .iter_mut()
                                .zip(valid)
                                .for_each(|(d, s)| *d = *s);
                        }
                    }
                }
                for x in (0..ox0).chain(ox1..ow) {
                    lines[x..].iter_mut().step_by(ow).for_each(|v| *v = 0.0);
                }
            }
        }
    }
}

/// Vector-Jacobian product of [`conv2d`] with respect to its input (the weights are constants):
/// `grad_in += conv2d^T(grad_out)` for `rows` examples, accumulated into `grad_in`.
///
/// Per channel group and batch of rows, one GEMM `col = W_g^T · grad_out_g` (`[k, rows * oh*ow]`)
/// followed by col2im, the transpose of `im2col`: every column entry is added back to the input
/// position its patch element was read from (out-of-bounds, i.e. padding, entries are dropped).
/// This handles stride, padding, dilation and groups exactly as the forward does.
pub fn conv2d_backward(
    c: &Conv2d,
    in_shape: Shape,
    out_shape: Shape,
    grad_out: &[f32],
    rows: usize,
    grad_in: &mut [f32],
) {
    let Geometry {
        h,
        w,
        oh,
        ow,
        cin_g,
        cout_g,
        k,
        p,
        in_row,
        out_row,
        pointwise,
        batch,
    } = Geometry::new(c, in_shape, out_shape, rows);
    with_scratch(k * p * batch, cout_g * p * batch, |col, tmp| {
        for start in (0..rows).step_by(batch) {
            let nb = batch.min(rows - start);
            let ld = nb * p;
            for g in 0..c.groups {
                // tmp: [cout_g, nb * p], column (r, pos): this group's output gradient.
                for r in 0..nb {
                    for o in 0..cout_g {
                        let src = &grad_out[(start + r) * out_row + (g * cout_g + o) * p..][..p];
                        tmp[o * ld + r * p..o * ld + (r + 1) * p].copy_from_slice(src);
                    }
                }
                let wg = &c.weight[g * cout_g * k..(g + 1) * cout_g * k];
                // SAFETY: wg is [cout_g, k] row-major, read transposed as [k, cout_g] (row stride 1,
                // column stride k); tmp is [cout_g, ld]; col is [k, ld]. All hold enough values.
                unsafe {
                    matrixmultiply::sgemm(
                        k,
                        cout_g,
                        ld,
                        1.0,
                        wg.as_ptr(),
                        1,
                        k as isize,
                        tmp.as_ptr(),
                        ld as isize,
                        1,
                        0.0,
                        col.as_mut_ptr(),
                        ld as isize,
                        1,
                    );
                }
                for r in 0..nb {
                    let x =
                        &mut grad_in[(start + r) * in_row + g * cin_g * h * w..][..cin_g * h * w];
                    if pointwise {
                        for ci in 0..cin_g {
                            let src = &col[ci * ld + r * p..ci * ld + (r + 1) * p];
                            x[ci * p..(ci + 1) * p]
                                .iter_mut()
                                .zip(src)
                                .for_each(|(d, &s)| *d += s);
                        }
                    } else {
                        col2im(c, col, ld, r * p, (h, w), (oh, ow), x);
                    }
                }
            }
        }
    });
}

/// The output positions `o` (of `n_out`) whose input coordinate `o * stride + offset - pad` lies
/// in `0..n_in`, as a range.
fn valid_range(
    n_out: usize,
    n_in: usize,
    stride: usize,
    offset: usize,
    pad: usize,
) -> (usize, usize) {
    // o * stride + offset >= pad  <=>  o >= ceil((pad - offset) / stride)
    let lo = if offset >= pad {
        0
    } else {
        (pad - offset).div_ceil(stride)
    };
    // o * stride + offset < n_in + pad  <=>  o < ceil((n_in + pad - offset) / stride)
    let hi = if offset >= n_in + pad {
        0
    } else {
        (n_in + pad - offset).div_ceil(stride)
    };
    (lo.min(n_out), hi.min(n_out).max(lo.min(n_out)))
}

/// Add columns `offset..offset + oh*ow` of `col` (`[k, ld]`) back into one example's channel
/// group `x` (`[cin_g, h, w]`): the transpose of [`im2col`].
fn col2im(
    c: &Conv2d,
    col: &[f32],
    ld: usize,
    offset: usize,
    (h, w): (usize, usize),
    (oh, ow): (usize, usize),
    x: &mut [f32],
) {
    let cin_g = c.in_channels / c.groups;
    let (kh, kw) = c.kernel;
    let (sy, sx) = c.stride;
    for ci in 0..cin_g {
        let plane = &mut x[ci * h * w..(ci + 1) * h * w];
        for ky in 0..kh {
            let (oy0, oy1) = valid_range(oh, h, sy, ky * c.dilation.0, c.padding.0);
            for kx in 0..kw {
                let (ox0, ox1) = valid_range(ow, w, sx, kx * c.dilation.1, c.padding.1);
                let krow = (ci * kh + ky) * kw + kx;
                let src = &col[krow * ld + offset..krow * ld + offset + oh * ow];
                for oy in oy0..oy1 {
                    let iy = oy * sy + ky * c.dilation.0 - c.padding.0;
                    let line = &mut plane[iy * w..(iy + 1) * w];
                    let s = &src[oy * ow..(oy + 1) * ow];
                    for ox in ox0..ox1 {
                        line[ox * sx + kx * c.dilation.1 - c.padding.1] += s[ox];
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// The textbook loop nest.
    fn naive_conv(
        c: &Conv2d,
        (h, w): (usize, usize),
        (oh, ow): (usize, usize),
        x: &[f32],
        rows: usize,
    ) -> Vec<f32> {
        let (cin_g, cout_g) = (c.in_channels / c.groups, c.out_channels / c.groups);
        let (kh, kw) = c.kernel;
        let mut out = Vec::new();
        for r in 0..rows {
            for o in 0..c.out_channels {
                let g = o / cout_g;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = c.bias[o];
                        for ci in 0..cin_g {
                            for ky in 0..kh {
                                for kx in 0..kw {
                                    let iy = (oy * c.stride.0 + ky * c.dilation.0) as isize
                                        - c.padding.0 as isize;
                                    let ix = (ox * c.stride.1 + kx * c.dilation.1) as isize
                                        - c.padding.1 as isize;
                                    if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                        continue;
                                    }
                                    let wgt = c.weight[((o * cin_g + ci) * kh + ky) * kw + kx];
                                    let ch = g * cin_g + ci;
                                    acc += wgt
                                        * x[((r * c.in_channels + ch) * h + iy as usize) * w
                                            + ix as usize];
                                }
                            }
                        }
                        out.push(acc);
                    }
                }
            }
        }
        out
    }

    /// Dropping the taps that only read padding changes no output: every small image, kernel,
    /// stride, padding and dilation combination, against the full im2col convolution.
    #[test]
    fn dropping_padding_only_taps_changes_nothing() {
        let mut rng = StdRng::seed_from_u64(4);
        let mut reduced = 0;
        for (h, w) in [
            (1usize, 1usize),
            (1, 3),
            (2, 2),
            (3, 1),
            (4, 5),
            (8, 8),
            (7, 5),
        ] {
            for (k, pad, stride, dil) in [
                (3usize, 1usize, 1usize, 1usize),
                (3, 2, 1, 1),
                (3, 1, 2, 1),
                (5, 2, 1, 1),
                (3, 2, 1, 2),
                (3, 3, 1, 1),
                (1, 0, 1, 1),
            ] {
                let (oh, ow) = match (
                    (h + 2 * pad).checked_sub(dil * (k - 1) + 1),
                    (w + 2 * pad).checked_sub(dil * (k - 1) + 1),
                ) {
                    (Some(a), Some(b)) => (a / stride + 1, b / stride + 1),
                    _ => continue,
                };
                let (cin, cout, groups) = (4, 6, 2);
                let c = Conv2d {
                    in_channels: cin,
                    out_channels: cout,
                    kernel: (k, k),
                    stride: (stride, stride),
                    padding: (pad, pad),
                    dilation: (dil, dil),
                    groups,
                    weight: (0..cout * cin / groups * k * k)
                        .map(|_| rng.random_range(-1.0..1.0))
                        .collect(),
                    bias: (0..cout).map(|_| rng.random_range(-1.0..1.0)).collect(),
                    has_bias: true,
                };
                let in_shape = Shape::Image { c: cin, h, w };
                let out_shape = Shape::Image {
                    c: cout,
                    h: oh,
                    w: ow,
                };
                reduced += usize::from(without_padding_taps(&c, in_shape, out_shape).is_some());
                let rows = 3;
                let x: Vec<f32> = (0..rows * cin * h * w)
                    .map(|_| rng.random_range(-1.0..1.0))
                    .collect();
                let mut got = vec![f32::NAN; rows * cout * oh * ow];
                conv2d(&c, in_shape, out_shape, &x, rows, &mut got);
                let mut want = vec![f32::NAN; got.len()];
                conv2d_im2col(&c, in_shape, out_shape, &x, rows, &mut want);
                let naive = naive_conv(&c, (h, w), (oh, ow), &x, rows);
                for (i, (a, b)) in want.iter().zip(&naive).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                        "{h}x{w} k{k} p{pad} s{stride} d{dil}: im2col output {i} = {a}, naive {b}"
                    );
                }
                for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                        "{h}x{w} k{k} p{pad} s{stride} d{dil}: output {i} = {a}, full {b}"
                    );
                }
            }
        }
        assert!(reduced >= 5, "only {reduced} cases had taps to drop");
    }
}
