//! Method names and the options every estimator shares, with their documented defaults.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// The estimators this crate offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Exact Shapley (and Banzhaf) by enumerating all `2^n` coalitions, `n <= 20`.
    Exact,
    /// Certified top-k: anytime-valid confidence sequences, union bound, LUCB stopping.
    Certified,
    /// Antithetic permutation sampling with Neuron-Shapley truncation.
    Permutation,
    /// TMAB-Shapley: truncated permutation walks plus a multi-armed-bandit top-k stopping rule.
    Tmab,
    /// Comparable marginal contributions sampling for top-k identification (PAC stopping).
    Cmcs,
    /// Leave-one-out: `v(N) - v(N \ i)`.
    Loo,
    /// Regression-adjusted Monte Carlo: all values, every evaluation used for every player.
    Regression,
}

impl Method {
    /// Every method, in documentation order.
    pub const ALL: [Method; 7] = [
        Method::Exact,
        Method::Certified,
        Method::Permutation,
        Method::Tmab,
        Method::Cmcs,
        Method::Loo,
        Method::Regression,
    ];

    /// The canonical lowercase name (what `FromStr` and `Display` use).
    pub fn name(self) -> &'static str {
        match self {
            Method::Exact => "exact",
            Method::Certified => "certified",
            Method::Permutation => "permutation",
            Method::Tmab => "tmab",
            Method::Cmcs => "cmcs",
            Method::Loo => "loo",
            Method::Regression => "regression",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = ConfigError;
    /// Case-insensitive; also accepts `perm`, `tmc`, `tmab-shapley`, `leave-one-out`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "exact" => Ok(Method::Exact),
            "certified" | "certified-top-k" | "lucb" => Ok(Method::Certified),
            "permutation" | "perm" | "tmc" => Ok(Method::Permutation),
            "tmab" | "tmab-shapley" => Ok(Method::Tmab),
            "cmcs" => Ok(Method::Cmcs),
            "loo" | "leave-one-out" => Ok(Method::Loo),
            "regression" | "rmc" | "regression-mc" => Ok(Method::Regression),
            _ => Err(ConfigError::UnknownMethod {
                found: s.to_string(),
            }),
        }
    }
}

/// Options shared by every estimator (the CLI's flags). Each method's own `Config` is built from
/// these with `from_common` and can then be adjusted field by field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CommonOptions {
    /// How many top players to identify. Default 10 (the reference uses 100 on 17k filters).
    pub top_k: usize,
    /// Hard cap on game evaluations (rows that reach the game). Default 2,000,000 (enough for exact enumeration of 20 players).
    pub budget: u64,
    /// The metric's chance level (1/classes for accuracy). `None` disables truncation.
    pub chance_level: Option<f64>,
    /// A walk counts a step as "at chance" when `v - chance_level <= tolerance`. Default 0.2,
    /// the reference's rule for accuracy.
    pub truncation_tolerance: f64,
    /// A walk stops once more than `patience` consecutive steps are at chance. Default 5
    /// (reference).
    pub truncation_patience: usize,
    /// `R`: a bound on the spread of one marginal contribution, used by TMAB's Bernstein bound.
    /// Default 1 (accuracy; the reference uses ln(1000) for log-loss and 10 for logits).
    pub value_range: f64,
    /// Failure probability of the stopping rules. Default 0.2 (the reference's TMAB value).
    pub delta: f64,
    /// Tolerance at the top-k boundary: players within epsilon of it may settle either way.
    /// Default 0.
    pub epsilon: f64,
    /// Coverage of the reported normal intervals (permutation). Default 0.95.
    pub confidence: f64,
    /// Target rows per game call. Default 1024.
    pub batch_size: usize,
    /// Pair each permutation with its reverse. `None`: the method's default (on for
    /// permutation sampling, off for TMAB as in the reference).
    pub antithetic: Option<bool>,
    /// TMAB: spend delta over all players and all rounds (a real PAC guarantee) instead of per
    /// player per round (the reference). Default false.
    pub union_bound: bool,
}

impl Default for CommonOptions {
    fn default() -> Self {
        Self {
            top_k: 10,
            budget: 2_000_000,
            chance_level: None,
            truncation_tolerance: 0.2,
            truncation_patience: 5,
            value_range: 1.0,
            delta: 0.2,
            epsilon: 0.0,
            confidence: 0.95,
            batch_size: 1024,
            antithetic: None,
            union_bound: false,
        }
    }
}

/// When a permutation walk may stop early (Neuron Shapley's truncation rule).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Truncation {
    /// The metric's chance level.
    pub chance_level: f64,
    /// A step is "at chance" when `v - chance_level <= tolerance`.
    pub tolerance: f64,
    /// The walk stops once the run of at-chance steps exceeds this.
    pub patience: usize,
}

impl CommonOptions {
    /// The truncation rule these options describe, if any.
    pub fn truncation(&self) -> Option<Truncation> {
        self.chance_level.map(|chance_level| Truncation {
            chance_level,
            tolerance: self.truncation_tolerance,
            patience: self.truncation_patience,
        })
    }
}

/// Checks shared by every estimator; the messages name the offending value.
pub(crate) fn check_common(
    n_players: usize,
    top_k: usize,
    budget: u64,
    batch_size: usize,
) -> Result<(), ConfigError> {
    if n_players == 0 {
        return Err(ConfigError::NoPlayers);
    }
    if top_k == 0 {
        return Err(ConfigError::ZeroTopK);
    }
    if top_k > n_players {
        return Err(ConfigError::TopKTooLarge {
            k: top_k,
            n: n_players,
        });
    }
    if budget == 0 {
        return Err(ConfigError::ZeroBudget);
    }
    if batch_size == 0 {
        return Err(ConfigError::invalid("batch_size", 0, "must be at least 1"));
    }
    if n_players > u32::MAX as usize {
        return Err(ConfigError::invalid(
            "n_players",
            n_players,
            "must fit in 32 bits",
        ));
    }
    Ok(())
}

/// Checks a probability-like parameter lies strictly inside (0, 1).
pub(crate) fn check_open_unit(name: &'static str, x: f64) -> Result<(), ConfigError> {
    if x > 0.0 && x < 1.0 {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            name,
            x,
            "must lie strictly between 0 and 1",
        ))
    }
}

/// Checks a parameter is finite and >= 0.
pub(crate) fn check_non_negative(name: &'static str, x: f64) -> Result<(), ConfigError> {
    if x.is_finite() && x >= 0.0 {
        Ok(())
    } else {
        Err(ConfigError::invalid(name, x, "must be finite and >= 0"))
    }
}

/// Checks a truncation rule is usable.
pub(crate) fn check_truncation(t: &Option<Truncation>) -> Result<(), ConfigError> {
    if let Some(t) = t {
        if !t.chance_level.is_finite() {
            return Err(ConfigError::invalid(
                "chance_level",
                t.chance_level,
                "must be finite",
            ));
        }
        check_non_negative("truncation_tolerance", t.tolerance)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_round_trip() {
        for m in Method::ALL {
            assert_eq!(m.name().parse::<Method>().unwrap(), m);
        }
        assert_eq!("LOO".parse::<Method>().unwrap(), Method::Loo);
        let e = "kernelshap".parse::<Method>().unwrap_err();
        assert!(e
            .to_string()
            .contains("exact, certified, permutation, tmab, cmcs, loo, regression"));
    }

    #[test]
    fn options_deserialize_with_defaults() {
        let o: CommonOptions = serde_json::from_str(r#"{"top_k": 3}"#).unwrap();
        assert_eq!(o.top_k, 3);
        assert_eq!(o.delta, 0.2);
    }
}
