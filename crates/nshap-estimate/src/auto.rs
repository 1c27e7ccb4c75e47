//! `--method auto`: pick the estimator for a question, and say why.
//!
//! * Exact enumeration when `2^n` evaluations fit the budget and cost no more than a sampling
//!   run is expected to: it gives every value with no error, and a top-k with nothing to
//!   certify.
//! * Otherwise, with a top-k asked for: the certified top-k ([`crate::Certified`]).
//! * Otherwise (all values): the regression-adjusted estimator ([`crate::Regression`]), with
//!   95% intervals — unless walks are needed (truncation asked for) or its stored pairs would
//!   not fit [`REGRESSION_MAX_PAIR_BYTES`]: then antithetic permutation sampling.
//!
//! The sampling estimate is [`SAMPLING_EVALS_PER_PLAYER`] evaluations per player: the certified
//! top-k spent 500-1,000 per player on the audit's test games at delta 0.05 (`tests/
//! certificate_audit.rs`), and real networks' marginals are noisier.

use serde::{Deserialize, Serialize};

use crate::config::Method;
use crate::exact::MAX_EXACT_PLAYERS;

/// Evaluations per player a sampling run is expected to need (see the module docs).
pub const SAMPLING_EVALS_PER_PLAYER: u64 = 5_000;

/// Most memory the regression estimator's pairs may take (`budget / 2` pairs of `n` bits)
/// before `auto` prefers permutation sampling, which keeps only per-player sums. The pairs are
/// also in every checkpoint.
pub const REGRESSION_MAX_PAIR_BYTES: u64 = 64 << 20;

/// The method `auto` chose and the reason, in words (printed and recorded in reports).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AutoChoice {
    pub method: Method,
    pub reason: String,
}

/// Chooses the method for `n` players, an optional top-k, and a budget (no truncation).
pub fn choose(n: usize, top_k: Option<usize>, budget: u64) -> AutoChoice {
    choose_for(n, top_k, budget, false)
}

/// As [`choose`]; `truncation` says the user asked for truncated walks, which only the walk
/// estimators have.
pub fn choose_for(n: usize, top_k: Option<usize>, budget: u64, truncation: bool) -> AutoChoice {
    let sampling = SAMPLING_EVALS_PER_PLAYER.saturating_mul(n as u64);
    if n <= MAX_EXACT_PLAYERS {
        let exact = 1u64 << n;
        if exact <= budget && exact <= sampling {
            return AutoChoice {
                method: Method::Exact,
                reason: format!(
                    "exact: 2^{n} = {exact} evaluations give every value with no error, no more than a sampling run is expected to need (about {sampling}) and within the budget {budget}"
                ),
            };
        }
    }
    let why_not_exact = if n > MAX_EXACT_PLAYERS {
        format!("{n} players are too many to enumerate (at most {MAX_EXACT_PLAYERS})")
    } else if (1u64 << n) > budget {
        format!(
            "2^{n} = {} evaluations exceed the budget {budget}",
            1u64 << n
        )
    } else {
        format!(
            "2^{n} = {} evaluations cost more than a sampling run is expected to (about {sampling})",
            1u64 << n
        )
    };
    match top_k {
        Some(k) if k < n => AutoChoice {
            method: Method::Certified,
            reason: format!(
                "certified top-{k}: {why_not_exact}; the certified top-k stops as soon as its confidence sequences separate the top {k} from the rest"
            ),
        },
        _ => {
            let pair_bytes = (budget / 2).saturating_mul(n.div_ceil(64) as u64 * 8);
            if truncation {
                AutoChoice {
                    method: Method::Permutation,
                    reason: format!(
                        "permutation sampling (all values, 95% intervals): {why_not_exact}, no top-k was asked for, and truncation needs permutation walks"
                    ),
                }
            } else if pair_bytes > REGRESSION_MAX_PAIR_BYTES {
                AutoChoice {
                    method: Method::Permutation,
                    reason: format!(
                        "permutation sampling (all values, 95% intervals): {why_not_exact}, no top-k was asked for, and the regression estimator would store {} MiB of coalitions (at most {} MiB)",
                        pair_bytes >> 20,
                        REGRESSION_MAX_PAIR_BYTES >> 20
                    ),
                }
            } else {
                AutoChoice {
                    method: Method::Regression,
                    reason: format!(
                        "regression-adjusted sampling (all values, 95% intervals; every evaluation informs every player): {why_not_exact}, and no top-k was asked for"
                    ),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_players_enumerate_and_wide_layers_certify() {
        let c = choose(16, Some(3), 200_000);
        assert_eq!(c.method, Method::Exact, "{}", c.reason);
        assert!(c.reason.contains("2^16 = 65536"), "{}", c.reason);
        let c = choose(512, Some(10), 200_000);
        assert_eq!(c.method, Method::Certified);
        assert!(c.reason.contains("too many to enumerate"), "{}", c.reason);
        let c = choose(18, Some(10), 100_000);
        assert_eq!(c.method, Method::Certified);
        assert!(
            c.reason.contains("exceed the budget 100000"),
            "{}",
            c.reason
        );
        let c = choose(20, Some(5), 2_000_000);
        assert_eq!(c.method, Method::Certified, "{}", c.reason);
        assert!(c.reason.contains("cost more"), "{}", c.reason);
        let c = choose(64, None, 200_000);
        assert_eq!(c.method, Method::Regression);
        assert!(c.reason.contains("no top-k"), "{}", c.reason);
        // k = n: nothing to separate, so all values.
        assert_eq!(choose(40, Some(40), 10).method, Method::Regression);
        // truncation needs walks; a huge layer's pairs would not fit in memory
        let c = choose_for(64, None, 200_000, true);
        assert_eq!(c.method, Method::Permutation);
        assert!(c.reason.contains("truncation"), "{}", c.reason);
        let c = choose(17_216, None, 1_000_000);
        assert_eq!(c.method, Method::Permutation);
        assert!(c.reason.contains("MiB"), "{}", c.reason);
    }
}
