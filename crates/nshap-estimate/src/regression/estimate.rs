//! The cross-fitted, regression-adjusted estimate from the stored pairs.
//!
//! For any game `f`, `phi_i(v) = phi_i(f) + phi_i(v - f)`, and for the residual `r = v - f`
//!
//! `phi_i(r) = (r(N) - r(∅)) / n + (n - 1) / n · E[ r(S) c(s) W_i(S) ]`,
//! `W_i(S) = n / s` if `i ∈ S`, `-n / (n - s)` otherwise,
//!
//! with `S` drawn by the design (`c(s)` its importance weight). A pair `(S, N \ S)` contributes
//! `r_odd(S) c(s) W_i(S)`, so only the odd part of the residual matters. Because
//! `E[W_i(S) | s] = 0`, any function of the size alone may be subtracted from `r_odd` at no
//! cost in bias: `h(s)`, the residual's mean at that size.
//!
//! **Cross-fitting** (Chernozhukov et al. 2018): the pairs are cut into `K` folds; fold `k`'s
//! correction uses a surrogate and an `h` fitted on the other folds only, so each fold's
//! estimate is unbiased whatever the fit, and the estimate is their pair-weighted mean.
//! Efficiency holds exactly: `sum_i W_i(S) = 0`, so the corrections sum to zero.

use super::design::SizeLaw;
use super::fit::{solve_cholesky, solve_structured, Columns};
use super::Pairs;

/// Per-player values and standard errors.
pub(crate) struct Fitted {
    pub values: Vec<f64>,
    pub stderr: Vec<f64>,
}

/// Everything the estimate needs besides the pairs.
pub(crate) struct Setting<'a> {
    pub law: &'a SizeLaw,
    pub grand_minus_empty: f64,
    pub folds: usize,
    pub exact_fit_max_players: usize,
}

/// `sum_j z_ji y_j` over pairs `lo..hi`.
fn zty(pairs: &Pairs, lo: usize, hi: usize) -> Vec<f64> {
    let mut b = vec![0.0; pairs.n];
    let mut total = 0.0;
    for j in lo..hi {
        let y = pairs.y[j];
        total += y;
        for i in pairs.members(j) {
            b[i] += 2.0 * y;
        }
    }
    b.iter_mut().for_each(|x| *x -= total);
    b
}

/// `y_j - z_j . w` for pair `j`.
fn residual(pairs: &Pairs, j: usize, w: &[f64], w_sum: f64) -> f64 {
    let inside: f64 = pairs.members(j).map(|i| w[i]).sum();
    pairs.y[j] - (2.0 * inside - w_sum)
}

pub(crate) fn cross_fit(pairs: &Pairs, set: &Setting<'_>) -> Fitted {
    let n = pairs.n;
    let p = pairs.len();
    let nf = n as f64;
    // Folds are runs of whole 64-pair words (the Gram matrix is summed per word range).
    let words = p.div_ceil(64);
    let k = set.folds.min(words);
    let folds: Vec<(usize, usize)> = (0..k.max(1))
        .map(|f| {
            let lo = f * words / k.max(1) * 64;
            let hi = ((f + 1) * words / k.max(1) * 64).min(p);
            (lo.min(p), hi)
        })
        .collect();
    let cross_fit = k >= 2;
    // The sample Gram matrix is used for a fold with more than 2n training pairs (fewer leave
    // it near singular); build the per-fold Grams only if some fold gets that far.
    let smallest_fold = folds.iter().map(|(lo, hi)| hi - lo).min().unwrap_or(0);
    let exact = cross_fit && n <= set.exact_fit_max_players && p - smallest_fold > 2 * n;
    let cols = exact.then(|| Columns::new(&pairs.bits, pairs.words, n));
    let grams: Vec<Vec<i64>> = match &cols {
        Some(c) => folds
            .iter()
            .map(|&(lo, hi)| c.gram(n, lo / 64, hi.div_ceil(64), hi - lo))
            .collect(),
        None => Vec::new(),
    };
    let bs: Vec<Vec<f64>> = folds.iter().map(|&(lo, hi)| zty(pairs, lo, hi)).collect();

    let mut sum_phi = vec![0.0; n];
    let mut pooled_ss = vec![0.0; n];
    for (f, &(lo, hi)) in folds.iter().enumerate() {
        let rows_here = hi - lo;
        if rows_here == 0 {
            continue;
        }
        let train_rows = p - rows_here;
        // the surrogate fitted on the other folds
        let w: Vec<f64> = if !cross_fit {
            vec![0.0; n]
        } else {
            let mut b = vec![0.0; n];
            for (g, bg) in bs.iter().enumerate() {
                if g != f {
                    b.iter_mut().zip(bg).for_each(|(x, y)| *x += y);
                }
            }
            let exact_w = if exact && train_rows > 2 * n {
                let mut gram = vec![0.0f64; n * n];
                for (g, gg) in grams.iter().enumerate() {
                    if g != f {
                        gram.iter_mut().zip(gg).for_each(|(x, &y)| *x += y as f64);
                    }
                }
                solve_cholesky(&gram, &b, n, 1e-9 * train_rows as f64)
            } else {
                None
            };
            exact_w.unwrap_or_else(|| solve_structured(&b, n, train_rows, set.law.rho))
        };
        let w_sum: f64 = w.iter().sum();
        // h(s): the training residual's mean by size; a pair of size s is the pair of size
        // n - s with both signs flipped, so both keys learn from it.
        let mut h_sum = vec![0.0; n + 1];
        let mut h_count = vec![0u32; n + 1];
        if cross_fit {
            for j in (0..p).filter(|&j| j < lo || j >= hi) {
                let r = residual(pairs, j, &w, w_sum);
                let s = pairs.sizes[j] as usize;
                h_sum[s] += r;
                h_count[s] += 1;
                h_sum[n - s] -= r;
                h_count[n - s] += 1;
            }
        }
        // this fold's correction terms t_ji = (r_j - h(s_j)) c(s_j) W_i(S_j)
        let mut sum_t = vec![0.0; n];
        let mut sum_t2 = vec![0.0; n];
        let mut inside = vec![false; n];
        for j in lo..hi {
            let s = pairs.sizes[j] as usize;
            let h = if h_count[s] > 0 {
                h_sum[s] / h_count[s] as f64
            } else {
                0.0
            };
            let r = residual(pairs, j, &w, w_sum) - h;
            let c = r * set.law.weight(s);
            let (t_in, t_out) = (c * nf / s as f64, -c * nf / (nf - s as f64));
            inside.iter_mut().for_each(|x| *x = false);
            for i in pairs.members(j) {
                inside[i] = true;
            }
            for i in 0..n {
                let t = if inside[i] { t_in } else { t_out };
                sum_t[i] += t;
                sum_t2[i] += t * t;
            }
        }
        let m = rows_here as f64;
        let base = (set.grand_minus_empty - 2.0 * w_sum) / nf;
        for i in 0..n {
            let mean_t = sum_t[i] / m;
            let phi_fold = 2.0 * w[i] + base + (nf - 1.0) / nf * mean_t;
            sum_phi[i] += phi_fold * m;
            pooled_ss[i] += (sum_t2[i] - m * mean_t * mean_t).max(0.0);
        }
    }
    let used_folds = folds.iter().filter(|(lo, hi)| hi > lo).count();
    let pf = p as f64;
    let values = if p == 0 {
        vec![set.grand_minus_empty / nf; n]
    } else {
        sum_phi.iter().map(|s| s / pf).collect()
    };
    let dof = p.saturating_sub(used_folds);
    let stderr = pooled_ss
        .iter()
        .map(|&ss| {
            if dof == 0 {
                f64::INFINITY
            } else {
                (nf - 1.0) / nf * (ss / dof as f64 / pf).sqrt()
            }
        })
        .collect();
    Fitted { values, stderr }
}
