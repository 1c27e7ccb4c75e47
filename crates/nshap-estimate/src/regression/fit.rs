//! The surrogate: a linear game `f(S) = sum_{i in S} 2 w_i + c`, fitted by least squares to the
//! odd part of the game, `(v(S) - v(N \ S)) / 2 ≈ sum_i z_i w_i` with `z_i = ±1` for member /
//! non-member.
//!
//! The surrogate only moves the variance of the estimate, never its mean (the cross-fitted
//! correction in `estimate.rs` removes whatever it gets wrong), so the solver may be cheap:
//! * **exact**: the normal equations with the sample Gram matrix `Z^T Z`, whose entries are
//!   `rows - 2 popcount(column_a xor column_b)` on the packed membership bits, solved by
//!   Cholesky with a tiny ridge — `O(n^2 rows / 64 + n^3)`;
//! * **structured**: the population Gram matrix `(1 - rho) I + rho 11^T` instead, inverted in
//!   closed form — `O(n rows)`, used above `exact_fit_max_players` or with too few rows.

use crate::batch::members_of;

/// Membership bits per player over pairs: `data[i * words + q]` bit `b` = pair `64 q + b`
/// contains player `i`.
pub(crate) struct Columns {
    pub words: usize,
    pub data: Vec<u64>,
}

impl Columns {
    /// Transposes `rows` (one bit row of `row_words` words per pair) for `n` players.
    pub fn new(rows: &[u64], row_words: usize, n: usize) -> Self {
        let pairs = rows.len() / row_words.max(1);
        let words = pairs.div_ceil(64);
        let mut data = vec![0u64; n * words];
        for j in 0..pairs {
            let row = &rows[j * row_words..(j + 1) * row_words];
            let (q, b) = (j / 64, j % 64);
            for i in members_of(row) {
                data[i * words + q] |= 1u64 << b;
            }
        }
        Self { words, data }
    }

    fn column(&self, i: usize) -> &[u64] {
        &self.data[i * self.words..(i + 1) * self.words]
    }

    /// `sum_j z_ja z_jb` over the pairs in words `lo..hi` (`rows` of them), as a full
    /// symmetric `n x n` matrix.
    pub fn gram(&self, n: usize, lo: usize, hi: usize, rows: usize) -> Vec<i64> {
        let mut g = vec![0i64; n * n];
        for a in 0..n {
            let ca = &self.column(a)[lo..hi];
            g[a * n + a] = rows as i64;
            for b in 0..a {
                let cb = &self.column(b)[lo..hi];
                let differ: u32 = ca.iter().zip(cb).map(|(x, y)| (x ^ y).count_ones()).sum();
                let v = rows as i64 - 2 * differ as i64;
                g[a * n + b] = v;
                g[b * n + a] = v;
            }
        }
        g
    }
}

/// Solves `(G + ridge I) w = b` by Cholesky; `None` if the matrix is not positive definite.
pub(crate) fn solve_cholesky(g: &[f64], b: &[f64], n: usize, ridge: f64) -> Option<Vec<f64>> {
    // Row-oriented Cholesky, L stored row-major in the lower triangle: both rows of each inner
    // dot product are contiguous.
    let mut l = vec![0.0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let (li, lj) = (&l[i * n..i * n + j], &l[j * n..j * n + j]);
            let dot: f64 = li.iter().zip(lj).map(|(a, b)| a * b).sum();
            let s = g[i * n + j] + if i == j { ridge } else { 0.0 } - dot;
            if i == j {
                if !(s > 0.0 && s.is_finite()) {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    // forward: L y = b
    let mut y = b.to_vec();
    for i in 0..n {
        let row = &l[i * n..i * n + i];
        let s: f64 = row.iter().zip(&y[..i]).map(|(a, b)| a * b).sum();
        y[i] = (y[i] - s) / l[i * n + i];
    }
    // backward: L^T w = y
    for i in (0..n).rev() {
        let mut s = y[i];
        for k in (i + 1)..n {
            s -= l[k * n + i] * y[k];
        }
        y[i] = s / l[i * n + i];
    }
    y.iter().all(|v| v.is_finite()).then_some(y)
}

/// Solves `rows ((1 - rho) I + rho 11^T) w = b`: the population Gram matrix. Its eigenvalues
/// are `1 - rho` (orthogonal to `1`) and `1 - rho + rho n` (along `1`); a direction whose
/// eigenvalue vanishes (n = 2, where `z_0 = -z_1` always) gets no weight.
pub(crate) fn solve_structured(b: &[f64], n: usize, rows: usize, rho: f64) -> Vec<f64> {
    let scale = rows.max(1) as f64;
    let mean = b.iter().sum::<f64>() / n as f64;
    let across = 1.0 - rho;
    let along = 1.0 - rho + rho * n as f64;
    let along_part = if along > 1e-9 * across {
        mean / along
    } else {
        0.0
    };
    b.iter()
        .map(|&bi| ((bi - mean) / across + along_part) / scale)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gram_from_bits_matches_the_dense_product() {
        // 3 players, 70 pairs: crosses a word boundary
        let n = 3;
        let rows: Vec<u64> = (0..70u64).map(|j| (j * 7 + j / 3) % 8).collect();
        let cols = Columns::new(&rows, 1, n);
        let g = cols.gram(n, 0, cols.words, 70);
        for a in 0..n {
            for b in 0..n {
                let dense: i64 = rows
                    .iter()
                    .map(|r| {
                        let za = if r >> a & 1 == 1 { 1 } else { -1 };
                        let zb = if r >> b & 1 == 1 { 1 } else { -1 };
                        za * zb
                    })
                    .sum();
                assert_eq!(g[a * n + b], dense, "({a},{b})");
            }
        }
    }

    #[test]
    fn cholesky_solves_and_refuses_indefinite() {
        let g = [4.0, 2.0, 0.6, 2.0, 5.0, 1.0, 0.6, 1.0, 3.0];
        let b = [1.0, -2.0, 0.5];
        let w = solve_cholesky(&g, &b, 3, 0.0).unwrap();
        for i in 0..3 {
            let r: f64 = (0..3).map(|k| g[i * 3 + k] * w[k]).sum();
            assert!((r - b[i]).abs() < 1e-12);
        }
        assert!(solve_cholesky(&[1.0, 2.0, 2.0, 1.0], &[1.0, 1.0], 2, 0.0).is_none());
    }

    #[test]
    fn structured_solve_inverts_the_population_gram() {
        let (n, rho, rows) = (4, 0.3, 10);
        let b = [1.0, 2.0, -1.0, 0.5];
        let w = solve_structured(&b, n, rows, rho);
        let sum: f64 = w.iter().sum();
        for i in 0..n {
            let r = rows as f64 * ((1.0 - rho) * w[i] + rho * sum);
            assert!((r - b[i]).abs() < 1e-12);
        }
    }
}
