//! Ablation curves: the metric after removing the first k players of an ordering, for several
//! orderings at once. The check that tells whether a ranking of neurons means anything: a good
//! ranking's curve falls faster than a random one's.

use nshap_model::{BackendError, Evaluator, Examples, MaskBatch};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The coalition with the `removed` players absent.
fn without(n: usize, removed: &[usize]) -> Vec<bool> {
    let mut present = vec![true; n];
    removed.iter().for_each(|&i| present[i] = false);
    present
}

/// `curves[o][k]` = metric with the first `k` players of `orders[o]` removed, `k = 0..=k_max`
/// (all examples; one backend call for every ordering, so the backend sees one big batch).
///
/// Errors when an ordering is shorter than `k_max` or names a player out of range.
pub fn ablation_curves(
    evaluator: &mut dyn Evaluator,
    n_players: usize,
    orders: &[Vec<usize>],
    k_max: usize,
) -> Result<Vec<Vec<f64>>, BackendError> {
    let mut masks = MaskBatch::new(n_players);
    for (o, order) in orders.iter().enumerate() {
        if order.len() < k_max || order.iter().any(|&p| p >= n_players) {
            return Err(BackendError::Invalid(format!(
                "ablation order {o} must list at least {k_max} players below {n_players}"
            )));
        }
        for k in 0..=k_max {
            masks.push_bools(&without(n_players, &order[..k]));
        }
    }
    let values = evaluator.evaluate(Examples::All, &masks)?;
    Ok(values.chunks(k_max + 1).map(<[f64]>::to_vec).collect())
}

/// Leave-one-out: `(v(N), [v(N) - v(N \ {i}) for every i])`, one batch of `n + 1` coalitions on
/// every example (exact, no sampling).
pub fn leave_one_out(
    evaluator: &mut dyn Evaluator,
    n_players: usize,
) -> Result<(f64, Vec<f64>), BackendError> {
    let mut masks = MaskBatch::new(n_players);
    masks.push_full();
    for i in 0..n_players {
        masks.push_bools(&without(n_players, &[i]));
    }
    let values = evaluator.evaluate(Examples::All, &masks)?;
    let full = values[0];
    Ok((full, values[1..].iter().map(|v| full - v).collect()))
}

/// Players sorted by `scores`, largest first (lower index first on ties): the order in which a
/// ranking says to remove them.
pub fn order_by(scores: &[f64]) -> Vec<usize> {
    nshap_estimate::result::ranking(scores)
}

/// `count` seeded random orderings of `n_players` players (seed `seed + 1000 + r` for the r-th,
/// as `nshap ablate` always drew them).
pub fn random_orders(n_players: usize, count: u64, seed: u64) -> Vec<Vec<usize>> {
    (0..count)
        .map(|r| {
            let mut o: Vec<usize> = (0..n_players).collect();
            o.shuffle(&mut ChaCha8Rng::seed_from_u64(seed.wrapping_add(1000 + r)));
            o
        })
        .collect()
}

/// Mean, minimum and maximum of several curves at each k (the random-order band).
pub struct Band {
    pub mean: Vec<f64>,
    pub low: Vec<f64>,
    pub high: Vec<f64>,
}

impl Band {
    /// `None` for no curves.
    pub fn of(curves: &[Vec<f64>]) -> Option<Band> {
        let len = curves.first()?.len();
        let at = |k: usize| curves.iter().map(move |c| c[k]);
        Some(Band {
            mean: (0..len)
                .map(|k| at(k).sum::<f64>() / curves.len() as f64)
                .collect(),
            low: (0..len)
                .map(|k| at(k).fold(f64::INFINITY, f64::min))
                .collect(),
            high: (0..len)
                .map(|k| at(k).fold(f64::NEG_INFINITY, f64::max))
                .collect(),
        })
    }
}
