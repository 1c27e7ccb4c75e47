//! The common estimator interface, the enum that builds and restores any estimator, and the
//! run loop.

use serde::{Deserialize, Serialize};

use crate::certified::{Certified, CertifiedConfig};
use crate::cmcs::{Cmcs, CmcsConfig};
use crate::config::{CommonOptions, Method};
use crate::error::{ConfigError, EvalError, StateError};
use crate::exact::{Exact, ExactConfig};
use crate::game::{Game, GameError};
use crate::loo::{Loo, LooConfig};
use crate::permutation::{Permutation, PermutationConfig};
use crate::regression::{Regression, RegressionConfig};
use crate::result::{Estimates, Progress};
use crate::tmab::{Tmab, TmabConfig};

/// Version tag written into every saved state, so a state from an incompatible build is refused
/// with a clear message instead of being misread.
pub const STATE_FORMAT: &str = "nshap-estimate/state/1";

/// What every estimator does. Drive it with [`run`] or call [`Estimator::step`] yourself (e.g. to
/// checkpoint between steps or stop on Ctrl-C).
pub trait Estimator {
    /// Which method this is.
    fn method(&self) -> Method;
    /// Number of players.
    fn n_players(&self) -> usize;
    /// Does one batch of work (one game call, hundreds to thousands of rows). A no-op once done.
    fn step(&mut self, game: &mut dyn Game) -> Result<Progress, GameError>;
    /// True once converged, the stopping rule is met, or the budget is spent.
    fn is_done(&self) -> bool;
    /// Progress without doing any work.
    fn progress(&self) -> Progress;
    /// Current per-player results and diagnostics (meaningful at any time).
    fn result(&self) -> Estimates;
    /// Changes the evaluation budget, e.g. of a restored run (`nshap run --resume DIR --budget
    /// N`): a run that stopped only because its budget was spent continues on the next `step`.
    /// A budget below what was already spent stops it.
    fn set_budget(&mut self, budget: u64);
    /// The full state as JSON bytes: [`AnyEstimator::from_state`] restores it, and the restored
    /// estimator continues bit-for-bit as if never stopped.
    fn save_state(&self) -> Vec<u8>;
}

/// Any estimator, by value: what a CLI holds, saves and restores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum AnyEstimator {
    Exact(Exact),
    Certified(Certified),
    Permutation(Permutation),
    Tmab(Tmab),
    Cmcs(Cmcs),
    Loo(Loo),
    Regression(Regression),
}

/// Borrowed twin of [`AnyEstimator`]: same variant names, so it serialises to the same JSON
/// without cloning the estimator.
#[derive(Serialize)]
pub(crate) enum AnyRef<'a> {
    Exact(&'a Exact),
    Certified(&'a Certified),
    Permutation(&'a Permutation),
    Tmab(&'a Tmab),
    Cmcs(&'a Cmcs),
    Loo(&'a Loo),
    Regression(&'a Regression),
}

#[derive(Serialize)]
struct SavedRef<'a> {
    format: &'static str,
    estimator: AnyRef<'a>,
}

#[derive(Deserialize)]
struct Saved {
    format: String,
    estimator: AnyEstimator,
}

/// Serialises an estimator's state. Cannot fail for these types (plain structs, string keys);
/// should it ever, the bytes are empty and `from_state` reports the error.
pub(crate) fn save(estimator: AnyRef<'_>) -> Vec<u8> {
    serde_json::to_vec(&SavedRef {
        format: STATE_FORMAT,
        estimator,
    })
    .unwrap_or_default()
}

/// A method's full configuration (for per-method overrides on top of [`CommonOptions`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum EstimatorConfig {
    Exact(ExactConfig),
    Certified(CertifiedConfig),
    Permutation(PermutationConfig),
    Tmab(TmabConfig),
    Cmcs(CmcsConfig),
    Loo(LooConfig),
    Regression(RegressionConfig),
}

impl EstimatorConfig {
    /// The configuration of `method` implied by the shared options (method defaults elsewhere).
    pub fn from_common(method: Method, opts: &CommonOptions) -> Self {
        match method {
            Method::Exact => Self::Exact(ExactConfig::from_common(opts)),
            Method::Certified => Self::Certified(CertifiedConfig::from_common(opts)),
            Method::Permutation => Self::Permutation(PermutationConfig::from_common(opts)),
            Method::Tmab => Self::Tmab(TmabConfig::from_common(opts)),
            Method::Cmcs => Self::Cmcs(CmcsConfig::from_common(opts)),
            Method::Loo => Self::Loo(LooConfig::from_common(opts)),
            Method::Regression => Self::Regression(RegressionConfig::from_common(opts)),
        }
    }

    /// Which method this configures.
    pub fn method(&self) -> Method {
        match self {
            Self::Exact(_) => Method::Exact,
            Self::Certified(_) => Method::Certified,
            Self::Permutation(_) => Method::Permutation,
            Self::Tmab(_) => Method::Tmab,
            Self::Cmcs(_) => Method::Cmcs,
            Self::Loo(_) => Method::Loo,
            Self::Regression(_) => Method::Regression,
        }
    }
}

impl AnyEstimator {
    /// Builds `method` for `n_players` players from the shared options; `seed` fixes every random
    /// choice. Errors on configurations that cannot run (k = 0, k > n, budget 0, n > 20 for exact,
    /// ...).
    pub fn new(
        method: Method,
        opts: &CommonOptions,
        n_players: usize,
        seed: u64,
    ) -> Result<Self, ConfigError> {
        Self::from_config(EstimatorConfig::from_common(method, opts), n_players, seed)
    }

    /// Builds an estimator from a full per-method configuration.
    pub fn from_config(
        config: EstimatorConfig,
        n_players: usize,
        seed: u64,
    ) -> Result<Self, ConfigError> {
        Ok(match config {
            EstimatorConfig::Exact(c) => Self::Exact(Exact::new(c, n_players, seed)?),
            EstimatorConfig::Certified(c) => Self::Certified(Certified::new(c, n_players, seed)?),
            EstimatorConfig::Permutation(c) => {
                Self::Permutation(Permutation::new(c, n_players, seed)?)
            }
            EstimatorConfig::Tmab(c) => Self::Tmab(Tmab::new(c, n_players, seed)?),
            EstimatorConfig::Cmcs(c) => Self::Cmcs(Cmcs::new(c, n_players, seed)?),
            EstimatorConfig::Loo(c) => Self::Loo(Loo::new(c, n_players, seed)?),
            EstimatorConfig::Regression(c) => {
                Self::Regression(Regression::new(c, n_players, seed)?)
            }
        })
    }

    /// Restores an estimator from [`Estimator::save_state`] bytes.
    pub fn from_state(bytes: &[u8]) -> Result<Self, StateError> {
        let saved: Saved = serde_json::from_slice(bytes)?;
        if saved.format != STATE_FORMAT {
            return Err(StateError::Format {
                found: saved.format,
                expected: STATE_FORMAT,
            });
        }
        Ok(saved.estimator)
    }

    /// The estimator as a trait object.
    pub fn as_dyn(&self) -> &dyn Estimator {
        match self {
            Self::Exact(e) => e,
            Self::Certified(e) => e,
            Self::Permutation(e) => e,
            Self::Tmab(e) => e,
            Self::Cmcs(e) => e,
            Self::Loo(e) => e,
            Self::Regression(e) => e,
        }
    }

    /// The estimator as a mutable trait object.
    pub fn as_dyn_mut(&mut self) -> &mut dyn Estimator {
        match self {
            Self::Exact(e) => e,
            Self::Certified(e) => e,
            Self::Permutation(e) => e,
            Self::Tmab(e) => e,
            Self::Cmcs(e) => e,
            Self::Loo(e) => e,
            Self::Regression(e) => e,
        }
    }
}

impl Estimator for AnyEstimator {
    fn method(&self) -> Method {
        self.as_dyn().method()
    }
    fn n_players(&self) -> usize {
        self.as_dyn().n_players()
    }
    fn step(&mut self, game: &mut dyn Game) -> Result<Progress, GameError> {
        self.as_dyn_mut().step(game)
    }
    fn is_done(&self) -> bool {
        self.as_dyn().is_done()
    }
    fn progress(&self) -> Progress {
        self.as_dyn().progress()
    }
    fn result(&self) -> Estimates {
        self.as_dyn().result()
    }
    fn set_budget(&mut self, budget: u64) {
        self.as_dyn_mut().set_budget(budget)
    }
    fn save_state(&self) -> Vec<u8> {
        self.as_dyn().save_state()
    }
}

/// Steps `est` until done, calling `on_progress` after every step (checkpoint or report there),
/// and returns the final estimates.
///
/// Errors if the game fails, or if the estimator stops making progress without being done (a
/// guard against a budget too small for one unit of work looping forever).
pub fn run(
    est: &mut dyn Estimator,
    game: &mut dyn Game,
    mut on_progress: impl FnMut(&Progress, &dyn Estimator),
) -> Result<Estimates, GameError> {
    const MAX_IDLE_STEPS: usize = 1000;
    let mut idle = 0;
    let mut last = est.progress().evaluations;
    while !est.is_done() {
        let progress = est.step(game)?;
        on_progress(&progress, &*est);
        if progress.evaluations == last && !progress.done {
            idle += 1;
            if idle >= MAX_IDLE_STEPS {
                return Err(Box::new(EvalError::Stalled { steps: idle }));
            }
        } else {
            idle = 0;
        }
        last = progress.evaluations;
    }
    Ok(est.result())
}
