//! Error types. Every bad input becomes one of these, with a message that names what was
//! expected and what was found, instead of a panic deep inside a long run.

use thiserror::Error;

/// A malformed coalition row.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BatchError {
    #[error("player {player} is out of range: the game has {n_players} players (0..{n_players})")]
    PlayerOutOfRange { player: usize, n_players: usize },
    #[error("packed row has {found} words, expected {expected} for {n_players} players")]
    RowLength {
        expected: usize,
        found: usize,
        n_players: usize,
    },
    #[error("packed row sets bits past player {n_players}-1")]
    StrayBits { n_players: usize },
}

/// An estimator configuration that cannot run.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ConfigError {
    #[error("the game has no players: at least one player is needed")]
    NoPlayers,
    #[error("top_k must be at least 1 (got 0)")]
    ZeroTopK,
    #[error("top_k = {k} exceeds the number of players n = {n}")]
    TopKTooLarge { k: usize, n: usize },
    #[error("budget must be at least 1 game evaluation (got 0)")]
    ZeroBudget,
    #[error("exact enumeration supports at most {max} players, got n = {n}: use a sampling method (permutation, tmab, cmcs)")]
    TooManyPlayersForExact { n: usize, max: usize },
    #[error("exact enumeration of n = {n} players needs 2^{n} = {needed} evaluations, but the budget is {budget}: raise the budget or use a sampling method")]
    BudgetTooSmallForExact { n: usize, needed: u64, budget: u64 },
    #[error("leave-one-out needs n + 1 = {needed} evaluations, but the budget is {budget}")]
    BudgetTooSmallForLoo { needed: u64, budget: u64 },
    #[error("{name} = {value} is invalid: {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("unknown method {found:?}: expected one of auto, exact, certified, permutation, tmab, cmcs, loo, regression")]
    UnknownMethod { found: String },
    #[error("unknown interaction index {found:?}: expected one of moebius, sii")]
    UnknownInteractionIndex { found: String },
    #[error("a value table of n = {n} players needs 2^{n} = {expected} values, got {found}")]
    TableLength {
        n: usize,
        expected: usize,
        found: usize,
    },
    #[error("player {player} is out of range: the game has {n_players} players (0..{n_players})")]
    PlayerOutOfRange { player: usize, n_players: usize },
    #[error("one round of sampled SII needs 8 evaluations per pair, {needed} for {pairs} pairs, but the budget is {budget}")]
    BudgetTooSmallForSii {
        pairs: usize,
        needed: u64,
        budget: u64,
    },
}

impl ConfigError {
    pub(crate) fn invalid(
        name: &'static str,
        value: impl ToString,
        expected: &'static str,
    ) -> Self {
        ConfigError::Invalid {
            name,
            value: value.to_string(),
            expected,
        }
    }
}

/// A game that answered a batch with something unusable.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum EvalError {
    #[error("the game has {game} players but the estimator was built for {estimator}")]
    PlayerCount { game: usize, estimator: usize },
    #[error("the game returned {found} values for a batch of {expected} rows")]
    WrongLength { expected: usize, found: usize },
    #[error("the game returned a non-finite value ({value}) for row {row}")]
    NonFinite { row: usize, value: f64 },
    #[error("player {player}'s marginal contribution {value} lies outside the declared range [{low}, {high}]: the certificate assumes every marginal lies in it; declare a wider value range (CLI: --value-range)")]
    OutOfRange {
        player: usize,
        value: f64,
        low: f64,
        high: f64,
    },
    #[error("the estimator made no progress in {steps} steps and is not done (budget too small for one unit of work?)")]
    Stalled { steps: usize },
}

/// A saved state that cannot be restored.
#[derive(Debug, Error)]
pub enum StateError {
    #[error("saved estimator state is not valid: {0}")]
    Json(#[from] serde_json::Error),
    #[error("saved estimator state has format {found:?}, this build reads {expected:?}")]
    Format {
        found: String,
        expected: &'static str,
    },
}
