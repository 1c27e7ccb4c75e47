//! Exact enumeration against closed forms, published values and the Shapley axioms.

mod common;

use common::{max_abs_diff, Counting};
use nshap_estimate::games::{
    Additive, ClosedForm, SizeGame, Soum, Unanimity, WeightedVoting, WithNullPlayers,
};
use nshap_estimate::{run, AnyEstimator, CommonOptions, Estimates, Game, Method};

fn exact(game: &mut dyn Game, top_k: usize) -> Estimates {
    let n = game.n_players();
    let opts = CommonOptions {
        top_k,
        ..CommonOptions::default()
    };
    let mut est = AnyEstimator::new(Method::Exact, &opts, n, 0).unwrap();
    let r = run(&mut est, game, |_, _| {}).unwrap();
    assert_eq!(r.diagnostics.evaluations, 1 << n);
    let residual = r.diagnostics.efficiency_residual.unwrap();
    assert!(residual < 1e-12, "efficiency residual {residual}");
    for p in &r.players {
        assert_eq!(p.stderr, 0.0);
        assert_eq!((p.ci_low, p.ci_high), (p.value, p.value));
    }
    r
}

#[test]
fn additive_game_values_are_the_weights() {
    let w = vec![0.5, -1.25, 3.0, 0.0, 2.0, -0.75, 1.0, 0.125];
    let mut g = Additive::new(w.clone());
    let r = exact(&mut g, 3);
    assert!(max_abs_diff(&r.values(), &w) < 1e-12);
    assert!(max_abs_diff(r.banzhaf.as_ref().unwrap(), &w) < 1e-12);
    assert_eq!(r.top_k(3), vec![2, 4, 6]);
}

#[test]
fn unanimity_game_splits_evenly_among_the_carrier() {
    let mut g = Unanimity::new(10, vec![1, 4, 7], 3.0);
    let r = exact(&mut g, 3);
    let v = r.values();
    for (i, x) in v.iter().enumerate() {
        let want = if [1, 4, 7].contains(&i) { 1.0 } else { 0.0 };
        assert!((x - want).abs() < 1e-12, "player {i}: {x}");
    }
    // Banzhaf of a unanimity game: a / 2^(|T| - 1)
    let b = r.banzhaf.unwrap();
    assert!((b[4] - 0.75).abs() < 1e-12 && b[0].abs() < 1e-12);
}

#[test]
fn soum_matches_closed_form() {
    for seed in 0..3 {
        let mut g = Soum::random(12, 40, 1..=6, seed);
        let r = exact(&mut g, 4);
        let err = max_abs_diff(&r.values(), &g.shapley());
        assert!(err < 1e-12, "seed {seed}: {err}");
    }
}

#[test]
fn un_security_council_1954_matches_shapley_shubik() {
    let mut g = WeightedVoting::un_security_council_1954();
    let r = exact(&mut g, 5);
    let v = r.values();
    for (i, &x) in v.iter().enumerate() {
        let (exact, published) = if i < 5 {
            (76.0 / 385.0, 0.1974)
        } else {
            (1.0 / 462.0, 0.0022)
        };
        assert!((x - exact).abs() < 1e-12, "member {i}: {x}");
        assert!(
            (x - published).abs() < 5e-5,
            "member {i}: {x} vs published {published}"
        );
    }
    assert_eq!(r.diagnostics.grand_value, Some(1.0));
    assert_eq!(r.diagnostics.empty_value, Some(0.0));
}

#[test]
fn un_security_council_1965_matches_published_index() {
    let mut g = WeightedVoting::un_security_council();
    let r = exact(&mut g, 5);
    let v = r.values();
    for (i, &x) in v.iter().enumerate() {
        let (exact, published) = if i < 5 {
            (421.0 / 2145.0, 0.1963)
        } else {
            (4.0 / 2145.0, 0.0019)
        };
        assert!((x - exact).abs() < 1e-12, "member {i}: {x}");
        assert!(
            (x - published).abs() < 5e-5,
            "member {i}: {x} vs published {published}"
        );
    }
}

#[test]
fn symmetric_players_get_equal_values() {
    let by_size = vec![0.0, 0.3, -0.2, 1.7, 0.4, 2.2, 2.5, 0.1, 3.0, 4.5];
    let mut g = SizeGame::new(by_size);
    let r = exact(&mut g, 2);
    let want = g.shapley();
    assert!(max_abs_diff(&r.values(), &want) < 1e-12);
    assert!((want[0] - 0.5).abs() < 1e-15);
}

#[test]
fn null_players_get_zero() {
    let inner = Soum::random(9, 25, 1..=4, 11);
    let mut g = WithNullPlayers::new(inner, 3);
    let r = exact(&mut g, 2);
    let v = r.values();
    for &x in &v[9..] {
        assert!(x.abs() < 1e-14, "null player got {x}");
    }
    assert!(max_abs_diff(&v, &g.shapley()) < 1e-12);
}

#[test]
fn exact_hands_the_game_big_batches() {
    let mut g = Counting::new(Soum::random(14, 30, 1..=5, 2));
    let r = exact(&mut g, 3);
    assert_eq!(g.rows(), 1 << 14);
    assert_eq!(r.diagnostics.evaluations, g.rows());
    assert!(g.calls.iter().all(|&c| c == 1024), "{:?}", g.calls);
}

/// A finished exact run hands over its enumeration: the same table `ValueTable::enumerate`
/// builds, so interactions need no second pass over the 2^n coalitions.
#[test]
fn exact_run_exposes_its_coalition_table() {
    use nshap_estimate::interactions::ValueTable;
    use nshap_estimate::{Estimator, Exact, ExactConfig};
    let mut game = Soum::random(8, 12, 1..=4, 7);
    let mut est = Exact::new(
        ExactConfig {
            batch_size: 50,
            top_k: 3,
            ..ExactConfig::default()
        },
        8,
        0,
    )
    .unwrap();
    est.step(&mut game).unwrap();
    assert!(
        est.value_table().is_none(),
        "not before every coalition is in"
    );
    while !est.is_done() {
        est.step(&mut game).unwrap();
    }
    let from_run = est.value_table().unwrap();
    let enumerated = ValueTable::enumerate(&mut game, 64, |_, _| {}).unwrap();
    assert_eq!(from_run.values(), enumerated.values());
    assert_eq!(
        from_run.shapley(),
        est.result()
            .players
            .iter()
            .map(|p| p.value)
            .collect::<Vec<_>>()
    );
}
