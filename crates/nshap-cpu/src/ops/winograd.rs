//! 3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray, 2016):
//! each 2x2 output tile costs 16 multiply-adds per input and output channel instead of 36.
//!
//! Per batch of rows: every 4x4 input patch (stride 2, zero padded) is transformed to
//! `V = Bᵀ d B`, the weights once per call to `U = G g Gᵀ`; the 16 entries of the tile become 16
//! GEMMs `M[ξ] = U[ξ] (cout x cin) · V[ξ] (cin x tiles)`, and each output tile is `Aᵀ M A`
//! plus the bias. Rounding differs from the direct sum by a few ulps (the entries of the
//! transforms are 0, ±1 and ±1/2).
//!
//! The examples of a batch are the innermost dimension of every transform (the input is first
//! copied to `[channel, y, x, example]`, zero padded): on the small images after the first
//! stages a tile row is only a few tiles wide, and transforms looping over tiles spent more
//! time than the GEMMs saved; looping over examples makes every transform a run of vector adds.

use super::conv::{put_scratch, take_scratch};
use nshap_model::{Conv2d, Shape};

/// Fewest input channels: each of the 16 GEMMs has depth `cin`, too thin to pay below this
/// (measured gains are on 64- to 256-channel layers; the tables' one-channel convs stay on
/// im2col).
const MIN_CHANNELS: usize = 16;

/// Target floats of the transformed input of one batch (about one core's L2, as im2col's).
const V_BUDGET: usize = 1 << 18;

/// Fewest tiles per GEMM (see `conv::MIN_COLUMNS`).
const MIN_TILES: usize = 128;

/// Whether `c` is computed here: 3x3, stride 1, no dilation, one group, enough channels.
pub fn applies(c: &Conv2d) -> bool {
    c.kernel == (3, 3)
        && c.stride == (1, 1)
        && c.dilation == (1, 1)
        && c.groups == 1
        && c.in_channels >= MIN_CHANNELS
}

/// `U[ξ][o][i] = (G g_{o,i} Gᵀ)[ξ]`, row-major `[16, cout, cin]`.
pub fn transform_weights(c: &Conv2d) -> Vec<f32> {
    let (cout, cin) = (c.out_channels, c.in_channels);
    let mut u = vec![0.0f32; 16 * cout * cin];
    for o in 0..cout {
        for i in 0..cin {
            let g = &c.weight[(o * cin + i) * 9..][..9];
            // G g: 4 x 3.
            let mut gg = [[0.0f32; 3]; 4];
            for x in 0..3 {
                let (g0, g1, g2) = (g[x], g[3 + x], g[6 + x]);
                gg[0][x] = g0;
                gg[1][x] = 0.5 * (g0 + g1 + g2);
                gg[2][x] = 0.5 * (g0 - g1 + g2);
                gg[3][x] = g2;
            }
            // (G g) Gᵀ: 4 x 4.
            for (y, row) in gg.iter().enumerate() {
                let (a, b, d) = (row[0], row[1], row[2]);
                let vals = [a, 0.5 * (a + b + d), 0.5 * (a - b + d), d];
                for (x, v) in vals.into_iter().enumerate() {
                    u[((y * 4 + x) * cout + o) * cin + i] = v;
                }
            }
        }
    }
    u
}

/// Whether the Winograd path pays for `rows` rows of output `oh x ow`: the weight transform is
/// redone per call, which needs enough tiles to amortise, and 1-wide outputs waste most of a
/// 2x2 tile.
///
/// Only for images whose transformed input fits the batch budget with one example: the
/// transforms run over examples as vectors, and on large images (56x56 at 64 channels: 0.8M
/// floats per example) they ran from memory with one example per batch and the conv was 1.6x
/// slower than im2col (ResNet-18 at 224x224, measured side by side).
pub fn pays(c: &Conv2d, oh: usize, ow: usize, rows: usize) -> bool {
    let tiles = oh.div_ceil(2) * ow.div_ceil(2);
    oh >= 2 && ow >= 2 && rows * tiles >= MIN_TILES && 16 * c.in_channels * tiles <= V_BUDGET
}

/// The convolution, with `u` the layer's [`transform_weights`].
#[inline(always)]
pub fn conv3x3(
    c: &Conv2d,
    u: &[f32],
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
    let (cin, cout) = (c.in_channels, c.out_channels);
    let (pad_y, pad_x) = c.padding;
    let (th, tw) = (oh.div_ceil(2), ow.div_ceil(2));
    let tiles = th * tw;
    // The padded plane covers every tile's 4x4 patch.
    let (hp, wp) = (2 * th + 2, 2 * tw + 2);
    let (in_row, out_row) = (cin * h * w, cout * oh * ow);
    let batch = (V_BUDGET / (16 * cin * tiles).max(1))
        .max(MIN_TILES.div_ceil(tiles.max(1)))
        .clamp(1, rows.max(1));
    let mut padded = vec![0.0f32; cin * hp * wp * batch];
    let (mut v_buf, mut m_buf) = take_scratch(16 * cin * tiles * batch, 16 * cout * tiles * batch);
    {
        let (v, m) = (&mut v_buf[..], &mut m_buf[..]);
        {
            for start in (0..rows).step_by(batch) {
                let nb = batch.min(rows - start);
                let n = nb * tiles;
                // X[i][y][x][r], zero padded. Channel by channel, so the strided writes of all
                // examples stay in one channel's plane (a few KiB, in L1); example by example
                // they swept the whole buffer once per example.
                let xs = &mut padded[..cin * hp * wp * nb];
                xs.fill(0.0);
                for i in 0..cin {
                    let plane = &mut xs[i * hp * wp * nb..][..hp * wp * nb];
                    for r in 0..nb {
                        let x = &input[(start + r) * in_row + i * h * w..][..h * w];
                        for y in 0..h.min(hp - pad_y) {
                            let src = &x[y * w..][..w.min(wp - pad_x)];
                            let row = (y + pad_y) * wp + pad_x;
                            for (k, &val) in src.iter().enumerate() {
                                plane[(row + k) * nb + r] = val;
                            }
                        }
                    }
                }
                // V[ξ][i][t * nb + r] = (Bᵀ d B)[ξ] of tile t of example r.
                let mut t = vec![0.0f32; 16 * nb];
                for i in 0..cin {
                    for ty in 0..th {
                        for tx in 0..tw {
                            let d = |dy: usize, dx: usize| {
                                let at = ((i * hp + 2 * ty + dy) * wp + 2 * tx + dx) * nb;
                                &xs[at..at + nb]
                            };
                            // Bᵀ d: rows.
                            for dx in 0..4 {
                                let (d0, d1, d2, d3) = (d(0, dx), d(1, dx), d(2, dx), d(3, dx));
                                let (t0, rest) = t.split_at_mut(4 * nb);
                                let (t1, rest) = rest.split_at_mut(4 * nb);
                                let (t2, t3) = rest.split_at_mut(4 * nb);
                                let lane = dx * nb..(dx + 1) * nb;
                                let (t0, t1, t2, t3) = (
                                    &mut t0[lane.clone()],
                                    &mut t1[lane.clone()],
                                    &mut t2[lane.clone()],
                                    &mut t3[lane],
                                );
                                let rows = t0
                                    .iter_mut()
                                    .zip(t1.iter_mut())
                                    .zip(t2.iter_mut())
                                    .zip(t3.iter_mut());
                                let ins = d0.iter().zip(d1).zip(d2).zip(d3);
                                for ((((t0, t1), t2), t3), (((a, b), c2), c3)) in rows.zip(ins) {
                                    *t0 = a - c2;
                                    *t1 = b + c2;
                                    *t2 = c2 - b;
                                    *t3 = b - c3;
                                }
                            }
                            // (Bᵀ d) B: columns, written to the 16 planes of V.
                            let col = (ty * tw + tx) * nb;
                            for k in 0..4 {
                                let tk = &t[k * 4 * nb..(k + 1) * 4 * nb];
                                let (e0, e1, e2, e3) = (
                                    &tk[..nb],
                                    &tk[nb..2 * nb],
                                    &tk[2 * nb..3 * nb],
                                    &tk[3 * nb..],
                                );
                                let plane = |j: usize| ((k * 4 + j) * cin + i) * n + col;
                                let (p0, p1, p2, p3) = (plane(0), plane(1), plane(2), plane(3));
                                let pairs: [(&[f32], &[f32], f32); 4] = [
                                    (e0, e2, -1.0),
                                    (e1, e2, 1.0),
                                    (e2, e1, -1.0),
                                    (e1, e3, -1.0),
                                ];
                                for ((p, q, sign), at) in pairs.into_iter().zip([p0, p1, p2, p3]) {
                                    for ((d, a), b) in v[at..at + nb].iter_mut().zip(p).zip(q) {
                                        *d = a + sign * b;
                                    }
                                }
                            }
                        }
                    }
                }
                for xi in 0..16 {
                    // SAFETY: U[ξ] is [cout, cin], V[ξ] is [cin, n] and M[ξ] is [cout, n], all
                    // row-major inside buffers of at least 16 times those sizes.
                    unsafe {
                        matrixmultiply::sgemm(
                            cout,
                            cin,
                            n,
                            1.0,
                            u.as_ptr().add(xi * cout * cin),
                            cin as isize,
                            1,
                            v.as_ptr().add(xi * cin * n),
                            n as isize,
                            1,
                            0.0,
                            m.as_mut_ptr().add(xi * cout * n),
                            n as isize,
                            1,
                        );
                    }
                }
                // Y = Aᵀ M A + bias per tile, vectors over the examples, clipped at odd edges.
                let mut a = vec![0.0f32; 8 * nb];
                let mut y = vec![0.0f32; 4 * nb];
                // One output channel's values of every example, `[oh * ow][nb]`, written out
                // example by example as contiguous runs (written straight into `out`, each
                // value of a tile went to a different example's row: a cache line per value).
                let mut plane = vec![0.0f32; oh * ow * nb];
                for o in 0..cout {
                    let b = c.bias[o];
                    for ty in 0..th {
                        for tx in 0..tw {
                            let col = (ty * tw + tx) * nb;
                            let e = |xi: usize| &m[(xi * cout + o) * n + col..][..nb];
                            // Aᵀ M: a[dy][x].
                            for x in 0..4 {
                                let (m0, m1, m2, m3) = (e(x), e(4 + x), e(8 + x), e(12 + x));
                                let (a0, a1) = a.split_at_mut(4 * nb);
                                let (a0, a1) = (&mut a0[x * nb..][..nb], &mut a1[x * nb..][..nb]);
                                let ins = m0.iter().zip(m1).zip(m2).zip(m3);
                                for ((a0, a1), (((m0, m1), m2), m3)) in
                                    a0.iter_mut().zip(a1.iter_mut()).zip(ins)
                                {
                                    *a0 = m0 + m1 + m2;
                                    *a1 = m1 - m2 - m3;
                                }
                            }
                            // (Aᵀ M) A: y[dy * 2 + dx].
                            for dy in 0..2 {
                                let ar = &a[dy * 4 * nb..(dy + 1) * 4 * nb];
                                let (r0, r1, r2, r3) = (
                                    &ar[..nb],
                                    &ar[nb..2 * nb],
                                    &ar[2 * nb..3 * nb],
                                    &ar[3 * nb..],
                                );
                                let (y0, y1) = y[dy * 2 * nb..(dy + 1) * 2 * nb].split_at_mut(nb);
                                let ins = r0.iter().zip(r1).zip(r2).zip(r3);
                                for ((y0, y1), (((r0, r1), r2), r3)) in
                                    y0.iter_mut().zip(y1.iter_mut()).zip(ins)
                                {
                                    *y0 = r0 + r1 + r2 + b;
                                    *y1 = r1 - r2 - r3 + b;
                                }
                            }
                            for dy in 0..2 {
                                let oy = 2 * ty + dy;
                                if oy >= oh {
                                    break;
                                }
                                for dx in 0..2 {
                                    let ox = 2 * tx + dx;
                                    if ox >= ow {
                                        break;
                                    }
                                    plane[(oy * ow + ox) * nb..][..nb]
                                        .copy_from_slice(&y[(dy * 2 + dx) * nb..][..nb]);
                                }
                            }
                        }
                    }
                    for r in 0..nb {
                        let dst = &mut out[(start + r) * out_row + o * oh * ow..][..oh * ow];
                        for (pos, d) in dst.iter_mut().enumerate() {
                            *d = plane[pos * nb + r];
                        }
                    }
                }
            }
        }
    }
    put_scratch(v_buf, m_buf);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Matches the im2col convolution on even and odd sizes, padding 0, 1 and 2, and channel
    /// counts around the GEMM blocking.
    #[test]
    fn matches_the_im2col_convolution() {
        let mut rng = StdRng::seed_from_u64(11);
        for &(cin, cout, h, w, pad, rows) in &[
            (16, 16, 8, 8, 1, 3),
            (17, 5, 7, 9, 1, 2),
            (32, 24, 5, 4, 0, 4),
            (16, 33, 6, 3, 2, 1),
            (20, 8, 1, 1, 1, 5),
            (64, 64, 8, 8, 1, 40),
        ] {
            let c = Conv2d {
                in_channels: cin,
                out_channels: cout,
                kernel: (3, 3),
                stride: (1, 1),
                padding: (pad, pad),
                dilation: (1, 1),
                groups: 1,
                weight: (0..cout * cin * 9)
                    .map(|_| rng.random_range(-0.3..0.3))
                    .collect(),
                bias: (0..cout).map(|_| rng.random_range(-0.5..0.5)).collect(),
                has_bias: true,
            };
            assert!(applies(&c));
            let (oh, ow) = (h + 2 * pad - 2, w + 2 * pad - 2);
            let in_shape = Shape::Image { c: cin, h, w };
            let out_shape = Shape::Image {
                c: cout,
                h: oh,
                w: ow,
            };
            let x: Vec<f32> = (0..rows * cin * h * w)
                .map(|_| rng.random_range(-2.0..2.0))
                .collect();
            let mut fast = vec![f32::NAN; rows * cout * oh * ow];
            conv3x3(
                &c,
                &transform_weights(&c),
                in_shape,
                out_shape,
                &x,
                rows,
                &mut fast,
            );
            let mut direct = vec![0.0; fast.len()];
            super::super::conv::conv2d_im2col(&c, in_shape, out_shape, &x, rows, &mut direct);
            for (k, (a, b)) in fast.iter().zip(&direct).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-5 * b.abs().max(1.0),
                    "{cin}->{cout} {h}x{w} pad {pad}: output {k} = {a}, im2col {b}"
                );
            }
        }
    }
}
