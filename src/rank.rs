//! Rank agreement between two scorings of the same players: Spearman's rho, Kendall's tau-b and
//! top-k overlap. Small enough to own; ties are handled the way SciPy does (average ranks for
//! Spearman, tau-b's tie correction for Kendall) so the numbers can be checked against it.

use nshap_estimate::top_k_indices;

/// Average ranks (1-based); tied values share the mean of the ranks they span.
pub fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // positions start..end (0-based) hold equal values: ranks start+1 ..= end
        let rank = (start + end + 1) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    (saa > 0.0 && sbb > 0.0).then(|| sab / (saa * sbb).sqrt())
}

/// Spearman's rank correlation (Pearson correlation of average ranks). `None` when either side is
/// constant or there are fewer than two players: the correlation is undefined, not zero.
pub fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    assert_eq!(a.len(), b.len(), "spearman: lengths differ");
    if a.len() < 2 {
        return None;
    }
    pearson(&average_ranks(a), &average_ranks(b))
}

/// Kendall's tau-b: (concordant - discordant) / sqrt((n0 - ties_a) (n0 - ties_b)).
/// `None` when undefined (a constant side, fewer than two players). O(n^2), fine for the
/// thousands of players a layer has.
pub fn kendall_tau_b(a: &[f64], b: &[f64]) -> Option<f64> {
    assert_eq!(a.len(), b.len(), "kendall: lengths differ");
    let n = a.len();
    let (mut concordant, mut discordant, mut ties_a, mut ties_b) = (0i64, 0i64, 0i64, 0i64);
    for i in 0..n {
        for j in i + 1..n {
            let da = a[i].total_cmp(&a[j]) as i64;
            let db = b[i].total_cmp(&b[j]) as i64;
            match (da, db) {
                (0, 0) => {
                    ties_a += 1;
                    ties_b += 1;
                }
                (0, _) => ties_a += 1,
                (_, 0) => ties_b += 1,
                _ if da == db => concordant += 1,
                _ => discordant += 1,
            }
        }
    }
    let pairs = (n * n.saturating_sub(1) / 2) as i64;
    let denom = (((pairs - ties_a) as f64) * ((pairs - ties_b) as f64)).sqrt();
    (denom > 0.0).then(|| (concordant - discordant) as f64 / denom)
}

/// Fraction of the top-`k` of `a` that is also in the top-`k` of `b` (ties broken by index).
pub fn top_k_overlap(a: &[f64], b: &[f64], k: usize) -> f64 {
    let k = k.min(a.len());
    if k == 0 {
        return 0.0;
    }
    let tb = top_k_indices(b, k);
    top_k_indices(a, k)
        .iter()
        .filter(|i| tb.contains(i))
        .count() as f64
        / k as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    // SciPy agrees: spearmanr(A, B) = 0.825301..., kendalltau(A, B) = 0.666666... (tau-b).
    const A: [f64; 8] = [1.0, 2.0, 2.0, 3.0, 5.0, 4.0, 7.0, 6.0];
    const B: [f64; 8] = [2.0, 1.0, 3.0, 3.0, 4.0, 6.0, 5.0, 8.0];

    #[test]
    fn ranks_average_ties() {
        assert_eq!(
            average_ranks(&[10.0, 20.0, 20.0, 5.0]),
            vec![2.0, 3.5, 3.5, 1.0]
        );
    }

    #[test]
    fn spearman_and_kendall_match_hand_computed_values() {
        // ranks A: 1, 2.5, 2.5, 4, 6, 5, 8, 7; ranks B: 2, 1, 3.5, 3.5, 5, 7, 6, 8
        let ra = average_ranks(&A);
        let rb = average_ranks(&B);
        assert_eq!(ra, vec![1.0, 2.5, 2.5, 4.0, 6.0, 5.0, 8.0, 7.0]);
        assert_eq!(rb, vec![2.0, 1.0, 3.5, 3.5, 5.0, 7.0, 6.0, 8.0]);
        // Pearson of those ranks, by hand: sum of centred products 34.25 / sqrt(41.5 * 41.5)
        let rho = spearman(&A, &B).unwrap();
        assert!((rho - 34.25 / 41.5).abs() < 1e-12, "{rho}");
        // 28 pairs: 1 tie in A only, 1 tie in B only, C = 22, D = 4 -> 18 / 27
        let tau = kendall_tau_b(&A, &B).unwrap();
        assert!((tau - 18.0 / 27.0).abs() < 1e-12, "{tau}");
    }

    #[test]
    fn perfect_and_reversed_orders() {
        let a: Vec<f64> = (0..20).map(|i| i as f64).collect();
        let rev: Vec<f64> = a.iter().map(|x| -x * x).collect();
        assert_eq!(spearman(&a, &a), Some(1.0));
        assert!((spearman(&a, &rev).unwrap() + 1.0).abs() < 1e-12);
        assert_eq!(kendall_tau_b(&a, &rev), Some(-1.0));
        assert_eq!(top_k_overlap(&a, &a, 5), 1.0);
        assert_eq!(top_k_overlap(&a, &rev, 5), 0.0);
    }

    #[test]
    fn constant_sides_are_undefined_not_zero() {
        assert_eq!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
        assert_eq!(kendall_tau_b(&[1.0, 2.0, 3.0], &[0.0, 0.0, 0.0]), None);
        assert_eq!(spearman(&[1.0], &[2.0]), None);
    }
}
