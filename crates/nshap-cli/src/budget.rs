//! Is the budget enough to give every player a value? Checked before any forward pass by
//! running the estimator on a free stand-in game: what it spends before every player has its
//! first sample depends on how the method schedules its work (walks run side by side, anchors
//! and their flips), so it is measured, not guessed.

use anyhow::{bail, Result};
use nshap::estimate::{
    AnyEstimator, CoalitionBatch, CommonOptions, Estimator, Game, GameError, Method,
};

/// Errors when `options.budget` ends the run before every player has one sample.
pub fn check(
    method: Method,
    options: &CommonOptions,
    n: usize,
    deterministic: bool,
    seed: u64,
) -> Result<()> {
    // Exact enumeration checks its own budget (it needs all 2^n coalitions).
    if method == Method::Exact {
        return Ok(());
    }
    let budget = options.budget;
    let cost = |b: u64| first_values_cost(method, options, n, deterministic, seed, b);
    // The estimator's own checks (budget 0, k > n, ...) come first, with their messages.
    if cost(budget)?.is_some() {
        return Ok(());
    }
    let what = unit_of_work(method, options, n);
    // Without a limit, the spend until every player has a sample is a budget that suffices.
    let Some(enough) = cost(NO_LIMIT)? else {
        bail!(
            "--budget {budget} is too small to give any value: {method} on {n} players never gives every player a sample ({what})"
        );
    };
    // A tighter one can suffice too (the last batch is trimmed to the budget, first work
    // first): find the least one where that is cheap; past that, the gap is under a batch.
    if enough > BISECT_LIMIT {
        bail!(
            "--budget {budget} is too small to give any value: {method} on {n} players needs about {enough} evaluations before every player has one sample ({what}); pass --budget {enough}"
        );
    }
    let (mut lo, mut hi) = (budget, enough.max(budget + 1)); // lo fails, hi suffices
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if cost(mid)?.is_some() {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    bail!(
        "--budget {budget} is too small to give any value: {method} on {n} players needs at least {hi} evaluations before every player has one sample ({what}); pass --budget {hi} or more"
    )
}

/// Largest sufficient budget below which the least one is searched for (by repeated stand-in
/// runs, each at most this long).
const BISECT_LIMIT: u64 = 200_000;

/// A budget no run reaches, for measuring the cost of the first values.
const NO_LIMIT: u64 = 1 << 50;

/// Evaluations `method` spends before every player has a sample, if it gets there within
/// `budget` (on a constant game without truncation: truncation only shortens walks).
fn first_values_cost(
    method: Method,
    options: &CommonOptions,
    n: usize,
    deterministic: bool,
    seed: u64,
    budget: u64,
) -> Result<Option<u64>> {
    let opts = CommonOptions {
        budget,
        chance_level: None,
        ..options.clone()
    };
    let mut est = AnyEstimator::new(method, &opts, n, seed)?;
    let mut game = StandIn { n, deterministic };
    let mut last = 0;
    while !est.is_done() {
        let p = est
            .step(&mut game)
            .map_err(|e| anyhow::anyhow!("checking the budget: {e}"))?;
        if est.result().players.iter().all(|p| p.samples > 0) {
            return Ok(Some(p.evaluations));
        }
        if p.evaluations == last && !p.done {
            return Ok(None); // no progress: the budget cannot buy the next unit of work
        }
        last = p.evaluations;
    }
    let all = est.result().players.iter().all(|p| p.samples > 0);
    Ok(all.then(|| est.progress().evaluations))
}

/// What one sample for every player costs, in words.
fn unit_of_work(method: Method, options: &CommonOptions, n: usize) -> String {
    match method {
        Method::Permutation if options.antithetic != Some(false) => format!(
            "a sample is a permutation walk and its reverse, {} coalitions each, and walks run side by side in batches",
            n + 1
        ),
        Method::Permutation | Method::Tmab => format!(
            "a sample is a permutation walk of {} coalitions, and walks run side by side in batches",
            n + 1
        ),
        Method::Cmcs | Method::Certified => {
            format!("a sample is an anchor coalition and its {n} flips")
        }
        Method::Loo => format!("all players and the {n} coalitions missing one player"),
        Method::Regression => {
            "the empty and full coalitions, then coalitions and their complements in batches (each pair informs every player)".into()
        }
        _ => "the method's first round".into(),
    }
}

/// A free game with the real one's player count and determinism (what deduplication sees).
struct StandIn {
    n: usize,
    deterministic: bool,
}

impl Game for StandIn {
    fn n_players(&self) -> usize {
        self.n
    }
    fn evaluate(&mut self, batch: &CoalitionBatch) -> Result<Vec<f64>, GameError> {
        Ok(vec![0.0; batch.len()])
    }
    fn is_deterministic(&self) -> bool {
        self.deterministic
    }
}
