//! Exact Shapley interaction index through the multilinear extension.
//!
//! With `f(x) = sum_S x^|S| (1-x)^(n-|S|) v(S)` the multilinear extension on the diagonal,
//! Grabisch & Roubens's weights are Beta integrals, so
//! `I(T) = ∫_0^1 ∂_T f(x, ..., x) dx`, since
//! `∫_0^1 x^s (1-x)^(n-t-s) dx = s! (n-t-s)! / (n-t+1)!` (Owen 1972 for the Shapley value;
//! Grabisch, Marichal & Roubens 2000 for interactions). For a fixed `x` one `O(n 2^n)` butterfly pass gives `∂_T f(x)` for *every* `T`
//! at once, and `∂_T f` is a polynomial of degree `n - |T|`, so Gauss–Legendre quadrature with
//! `n/2` nodes integrates it exactly. Total `O(n^2 2^n)` whatever the order (n = 20: 0.06 s),
//! against `3^n` for summing over subsets; and the pass only mixes values by convex
//! combinations and differences, never the large alternating sums of the Möbius route.

use crate::interactions::{subsets, Interaction, ValueTable};

impl ValueTable {
    /// Shapley interaction index of every `T ⊆ within` (all players when `None`) with
    /// `2 <= |T| <= max_order`, by order then lexicographically:
    /// `I(T) = sum_{S ⊆ N\T} (n-|S|-|T|)! |S|! / (n-|T|+1)! Δ_T v(S)`.
    /// Players of `within` that are not in the game are dropped ([`ValueTable::check_players`]).
    pub fn sii(&self, max_order: usize, within: Option<&[usize]>) -> Vec<Interaction> {
        self.sii_orders(2, max_order, within)
    }

    /// [`ValueTable::sii`] from order `min_order` (>= 1) on; order 1 is the Shapley value.
    pub(crate) fn sii_orders(
        &self,
        min_order: usize,
        max_order: usize,
        within: Option<&[usize]>,
    ) -> Vec<Interaction> {
        let n = self.n_players();
        let wanted = subsets(n, within, min_order.max(1), max_order);
        let Some(lowest) = wanted.iter().map(|(_, p)| p.len()).min() else {
            return Vec::new();
        };
        let mut sums = vec![0.0; wanted.len()];
        let mut work = vec![0.0; self.values().len()];
        for (x, w) in gauss_legendre_01((n - lowest) / 2 + 1) {
            work.copy_from_slice(self.values());
            derivatives_at(&mut work, n, x);
            for (sum, (mask, _)) in sums.iter_mut().zip(&wanted) {
                *sum += w * work[*mask];
            }
        }
        wanted
            .into_iter()
            .zip(sums)
            .map(|((_, players), value)| Interaction::exact(players, value))
            .collect()
    }
}

/// In place: `v -> g` with `g(T) = ∂_T f(x, ..., x)`. The pass for player `i` maps each pair
/// `(a, b) = (slot without i, slot with i)` to `((1-x) a + x b, b - a)`: it evaluates the
/// extension at `x_i = x` in the slot without `i` and differentiates in `x_i` in the slot with it.
/// Passes act on different coordinates, so they commute. At `x = 0` this is the Möbius transform.
pub(crate) fn derivatives_at(values: &mut [f64], n: usize, x: f64) {
    let y = 1.0 - x;
    for i in 0..n {
        let bit = 1usize << i;
        for block in values.chunks_exact_mut(2 * bit) {
            let (without, with) = block.split_at_mut(bit);
            for (a, b) in without.iter_mut().zip(with.iter_mut()) {
                let (va, vb) = (*a, *b);
                *a = y * va + x * vb;
                *b = vb - va;
            }
        }
    }
}

/// Nodes and weights of `m`-point Gauss–Legendre quadrature on `[0, 1]`: exact for polynomials
/// of degree `<= 2m - 1`. Newton's method on the Legendre recurrence (as in Numerical Recipes'
/// `gauleg`), to machine precision.
pub(crate) fn gauss_legendre_01(m: usize) -> Vec<(f64, f64)> {
    let mut nodes = Vec::with_capacity(m);
    for k in 0..m.div_ceil(2) {
        let mut z = (std::f64::consts::PI * (k as f64 + 0.75) / (m as f64 + 0.5)).cos();
        let mut dp = 1.0;
        for _ in 0..100 {
            // p1 = P_m(z), p2 = P_{m-1}(z)
            let (mut p1, mut p2) = (1.0f64, 0.0f64);
            for j in 1..=m {
                let p3 = p2;
                p2 = p1;
                p1 = ((2 * j - 1) as f64 * z * p2 - (j - 1) as f64 * p3) / j as f64;
            }
            dp = m as f64 * (z * p1 - p2) / (z * z - 1.0);
            let step = p1 / dp;
            z -= step;
            if step.abs() <= 1e-16 {
                break;
            }
        }
        // weight on [-1, 1] is 2 / ((1 - z^2) P'(z)^2); halved for [0, 1]
        let w = 1.0 / ((1.0 - z * z) * dp * dp);
        nodes.push(((1.0 - z) / 2.0, w));
        if 2 * k + 1 != m {
            nodes.push(((1.0 + z) / 2.0, w));
        }
    }
    nodes.sort_by(|a, b| a.0.total_cmp(&b.0));
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interactions::moebius::moebius_transform;

    #[test]
    fn quadrature_is_exact_up_to_degree_2m_minus_1() {
        for m in 1..=12 {
            let q = gauss_legendre_01(m);
            assert_eq!(q.len(), m);
            for d in 0..2 * m {
                let got: f64 = q.iter().map(|(x, w)| w * x.powi(d as i32)).sum();
                let want = 1.0 / (d + 1) as f64;
                assert!((got - want).abs() < 1e-14, "m {m} degree {d}: {got}");
            }
        }
    }

    #[test]
    fn derivatives_at_zero_are_the_moebius_transform() {
        let n = 6;
        let v: Vec<f64> = (0..1 << n)
            .map(|m: usize| (m as f64 * 0.61).sin())
            .collect();
        let (mut a, mut b) = (v.clone(), v);
        derivatives_at(&mut a, n, 0.0);
        moebius_transform(&mut b, n);
        assert_eq!(a, b);
    }

    #[test]
    fn order_one_is_the_shapley_value() {
        let n = 9;
        let v: Vec<f64> = (0..1 << n)
            .map(|m: usize| (m as f64 * 0.37).cos() * m.count_ones() as f64)
            .collect();
        let t = ValueTable::from_values(n, v).unwrap();
        let phi = t.shapley();
        let singles = t.sii_orders(1, 1, None);
        assert_eq!(singles.len(), n);
        for (s, p) in singles.iter().zip(&phi) {
            assert!((s.value - p).abs() < 1e-12, "{} vs {p}", s.value);
        }
    }
}
