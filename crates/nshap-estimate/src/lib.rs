//! # nshap-estimate — games and Shapley estimators
//!
//! Knows nothing of networks or GPUs: a [`Game`] maps a batch of coalitions (a bit matrix, see
//! [`CoalitionBatch`]) to values, and an [`Estimator`] decides which coalitions to ask for.
//!
//! * Estimators: [`Exact`] (n <= 20, also Banzhaf), [`Certified`] (top-k with an anytime-valid
//!   1 - δ certificate), [`Permutation`] (antithetic, truncated),
//!   [`Tmab`] (TMAB-Shapley top-k bandit), [`Cmcs`] (comparable marginal contributions, PAC
//!   top-k), [`Loo`] (leave-one-out), [`Regression`] (regression-adjusted Monte Carlo: all
//!   values, each evaluation used for every player).
//! * [`interactions`]: Harsanyi dividends and the Shapley interaction index, exact from a
//!   [`ValueTable`] (n <= 20) or sampled pairwise for any n ([`SampledSii`]).
//! * [`choose_method`] is `--method auto`: exact when it is cheaper, else certified top-k, else
//!   the regression-adjusted estimator (permutation sampling when truncating), with the reason
//!   in words.
//! * Build any of them by name with [`AnyEstimator::new`]`(method, &CommonOptions, n, seed)`,
//!   drive it with [`run`] or [`Estimator::step`], checkpoint with [`Estimator::save_state`] and
//!   restore with [`AnyEstimator::from_state`]: the restored run continues bit-for-bit.
//! * Games always receive big batches, deduplicated by [`evaluate_unique`]; the budget counts the
//!   rows that reach the game.
//! * [`games`] holds test games with known values (additive, unanimity, SOUM, weighted voting,
//!   symmetric, null players, a noisy accuracy wrapper).
//!
//! See `docs/estimators.md` for guarantees, defaults and measured costs.
//!
//! ```
//! use nshap_estimate::games::{ClosedForm, PlantedTopK};
//! use nshap_estimate::{run, AnyEstimator, CommonOptions, Estimator, Method};
//!
//! let mut game = PlantedTopK::new(200, 5, 1).build(); // any `Game`
//! let method: Method = "tmab".parse()?;
//! let opts = CommonOptions { top_k: 5, budget: 300_000, value_range: 4.0, ..Default::default() };
//! let mut est = AnyEstimator::new(method, &opts, 200, 42)?;
//!
//! // a few steps, then checkpoint (write `bytes` to disk atomically) ...
//! for _ in 0..3 {
//!     let p = est.step(&mut game)?;
//!     println!("{} / {} evaluations, {} active", p.evaluations, p.budget, p.active);
//! }
//! let bytes = est.save_state();
//! // ... and later resume exactly where it stopped
//! let mut est = AnyEstimator::from_state(&bytes)?;
//! let result = run(&mut est, &mut game, |progress, _est| { let _ = progress.top_k.len(); })?;
//! assert_eq!(result.top_k(5).len(), 5);
//! # Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
//! ```

pub mod auto;
pub mod batch;
pub mod certified;
pub mod cmcs;
pub mod config;
pub mod cs;
pub mod error;
pub mod estimator;
pub mod exact;
mod flips;
pub mod game;
pub mod games;
pub mod interactions;
pub mod loo;
pub mod permutation;
pub mod regression;
pub mod result;
pub mod stats;
pub mod tmab;
mod walk;

pub use auto::{choose as choose_method, choose_for as choose_method_for, AutoChoice};
pub use batch::CoalitionBatch;
pub use certified::{Certified, CertifiedConfig};
pub use cmcs::{Cmcs, CmcsConfig, Selection};
pub use config::{CommonOptions, Method, Truncation};
pub use error::{BatchError, ConfigError, EvalError, StateError};
pub use estimator::{run, AnyEstimator, Estimator, EstimatorConfig, STATE_FORMAT};
pub use exact::{Exact, ExactConfig, MAX_EXACT_PLAYERS};
pub use game::{evaluate_unique, Evaluated, Game, GameError};
pub use interactions::{
    Interaction, InteractionIndex, SampledSii, SampledSiiConfig, SiiProgress, ValueTable,
};
pub use loo::{Loo, LooConfig};
pub use permutation::{Permutation, PermutationConfig};
pub use regression::{Regression, RegressionConfig};
pub use result::{
    precision_at_k, samples_needed, top_k_indices, Diagnostics, Estimates, IntervalKind,
    PlayerEstimate, Progress, Status,
};
pub use tmab::{Threshold, Tmab, TmabConfig};
