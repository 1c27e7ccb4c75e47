//! Bad inputs give errors with messages that say what is wrong, never panics.

use nshap_estimate::games::{Additive, FnGame};
use nshap_estimate::{
    run, AnyEstimator, CmcsConfig, CoalitionBatch, CommonOptions, Estimator, EstimatorConfig, Game,
    GameError, Method, TmabConfig,
};

fn build_err(method: Method, opts: &CommonOptions, n: usize) -> String {
    match AnyEstimator::new(method, opts, n, 0) {
        Ok(_) => panic!("{method} accepted a bad configuration: {opts:?}, n = {n}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn k_zero_and_k_above_n_are_rejected_by_every_method() {
    for m in Method::ALL {
        let zero = CommonOptions {
            top_k: 0,
            ..CommonOptions::default()
        };
        assert!(build_err(m, &zero, 8).contains("top_k must be at least 1"));
        let big = CommonOptions {
            top_k: 9,
            ..CommonOptions::default()
        };
        assert!(build_err(m, &big, 8).contains("top_k = 9 exceeds the number of players n = 8"));
        // k = n is fine: everyone is in
        let all = CommonOptions {
            top_k: 8,
            ..CommonOptions::default()
        };
        assert!(AnyEstimator::new(m, &all, 8, 0).is_ok(), "{m}");
    }
}

#[test]
fn zero_budget_no_players_and_zero_batch_are_rejected() {
    for m in Method::ALL {
        let o = CommonOptions {
            budget: 0,
            ..CommonOptions::default()
        };
        assert!(build_err(m, &o, 20).contains("budget must be at least 1"));
        assert!(build_err(m, &CommonOptions::default(), 0).contains("no players"));
        let o = CommonOptions {
            batch_size: 0,
            top_k: 1,
            ..CommonOptions::default()
        };
        assert!(build_err(m, &o, 20).contains("batch_size = 0 is invalid"));
    }
}

#[test]
fn exact_refuses_large_games_and_short_budgets() {
    let e = build_err(Method::Exact, &CommonOptions::default(), 21);
    assert!(e.contains("at most 20 players, got n = 21"), "{e}");
    let o = CommonOptions {
        budget: 1000,
        top_k: 2,
        ..CommonOptions::default()
    };
    let e = build_err(Method::Exact, &o, 12);
    assert!(
        e.contains("needs 2^12 = 4096 evaluations, but the budget is 1000"),
        "{e}"
    );
    let e = build_err(
        Method::Loo,
        &CommonOptions {
            budget: 5,
            top_k: 2,
            ..CommonOptions::default()
        },
        12,
    );
    assert!(e.contains("n + 1 = 13"), "{e}");
}

#[test]
fn out_of_range_parameters_are_named() {
    let o = CommonOptions {
        delta: 1.5,
        ..CommonOptions::default()
    };
    assert!(build_err(Method::Tmab, &o, 50).contains("delta = 1.5 is invalid"));
    assert!(build_err(Method::Cmcs, &o, 50).contains("delta = 1.5 is invalid"));
    let o = CommonOptions {
        value_range: 0.0,
        ..CommonOptions::default()
    };
    assert!(build_err(Method::Tmab, &o, 50).contains("value_range = 0 is invalid"));
    let o = CommonOptions {
        confidence: 1.0,
        ..CommonOptions::default()
    };
    assert!(build_err(Method::Permutation, &o, 50).contains("confidence = 1 is invalid"));
    let o = CommonOptions {
        chance_level: Some(f64::NAN),
        ..CommonOptions::default()
    };
    assert!(build_err(Method::Permutation, &o, 50).contains("chance_level"));
    let o = CommonOptions {
        epsilon: -1.0,
        ..CommonOptions::default()
    };
    assert!(build_err(Method::Cmcs, &o, 50).contains("epsilon = -1 is invalid"));
    let c = CmcsConfig {
        t_min: 1,
        ..CmcsConfig::default()
    };
    let e = AnyEstimator::from_config(EstimatorConfig::Cmcs(c), 50, 0).unwrap_err();
    assert!(e.to_string().contains("t_min = 1 is invalid"));
    let t = TmabConfig {
        max_walks_in_flight: 0,
        ..TmabConfig::default()
    };
    let e = AnyEstimator::from_config(EstimatorConfig::Tmab(t), 50, 0).unwrap_err();
    assert!(e.to_string().contains("max_walks_in_flight"));
}

#[test]
fn unknown_method_names_list_the_valid_ones() {
    let e = "shapley".parse::<Method>().unwrap_err().to_string();
    assert!(e.contains("unknown method \"shapley\""), "{e}");
    assert!(
        e.contains("exact, certified, permutation, tmab, cmcs, loo, regression"),
        "{e}"
    );
}

#[test]
fn a_game_of_the_wrong_size_is_an_error() {
    for m in Method::ALL {
        let opts = CommonOptions {
            top_k: 2,
            ..CommonOptions::default()
        };
        let mut est = AnyEstimator::new(m, &opts, 10, 0).unwrap();
        let mut g = Additive::new(vec![1.0; 11]);
        let e = est.step(&mut g).unwrap_err().to_string();
        assert!(
            e.contains("11 players but the estimator was built for 10"),
            "{m}: {e}"
        );
    }
}

struct Broken {
    mode: u8,
}
impl Game for Broken {
    fn n_players(&self) -> usize {
        10
    }
    fn evaluate(&mut self, b: &CoalitionBatch) -> Result<Vec<f64>, GameError> {
        match self.mode {
            0 => Ok(vec![0.5; b.len() - 1]),
            1 => Ok((0..b.len())
                .map(|r| if r == 3 { f64::NAN } else { 0.5 })
                .collect()),
            _ => Err("the GPU caught fire".into()),
        }
    }
}

#[test]
fn broken_games_give_errors_not_panics() {
    for m in Method::ALL {
        let opts = CommonOptions {
            top_k: 2,
            ..CommonOptions::default()
        };
        for (mode, want) in [
            (0, "values for a batch of"),
            (1, "non-finite value (NaN) for row 3"),
            (2, "the GPU caught fire"),
        ] {
            let mut est = AnyEstimator::new(m, &opts, 10, 0).unwrap();
            let e = run(&mut est, &mut Broken { mode }, |_, _| {})
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{m}: {e}");
        }
    }
}

#[test]
fn garbage_states_are_errors() {
    let e = AnyEstimator::from_state(b"not json")
        .unwrap_err()
        .to_string();
    assert!(e.contains("saved estimator state is not valid"), "{e}");
    let e =
        AnyEstimator::from_state(br#"{"format":"nshap-estimate/state/0","estimator":{"Loo":{}}}"#)
            .unwrap_err()
            .to_string();
    assert!(e.contains("not valid") || e.contains("format"), "{e}");
    let est = AnyEstimator::new(
        Method::Loo,
        &CommonOptions {
            top_k: 1,
            ..CommonOptions::default()
        },
        3,
        0,
    )
    .unwrap();
    let good = String::from_utf8(est.save_state()).unwrap();
    let old = good.replace("nshap-estimate/state/1", "nshap-estimate/state/0");
    let e = AnyEstimator::from_state(old.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(e.contains("has format \"nshap-estimate/state/0\""), "{e}");
}

#[test]
fn bad_batch_rows_are_errors() {
    let mut b = CoalitionBatch::new(5);
    assert!(b
        .push([7], 0)
        .unwrap_err()
        .to_string()
        .contains("player 7 is out of range"));
    assert!(b.push_row_bits(&[1, 2], 0).is_err());
    assert!(b.push_row_bits(&[1 << 5], 0).is_err());
    assert!(b.is_empty());
    // contains() out of range answers false instead of panicking
    assert!(!b.contains(3, 9));
    // test games refuse batches of another width instead of indexing out of bounds
    let mut wide = CoalitionBatch::new(200);
    wide.push([150], 0).unwrap();
    let e = FnGame::new(5, |_: &[u64]| 0.0).evaluate(&wide).unwrap_err();
    assert!(e.to_string().contains("5 players"), "{e}");
    assert!(Additive::new(vec![1.0; 5]).evaluate(&wide).is_err());
}
