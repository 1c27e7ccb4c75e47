//! Diagnostics and run-loop behaviour: evaluations are what the game saw, batches are big,
//! statuses and progress mean what they say.

mod common;

use common::Counting;
use nshap_estimate::games::{Additive, PlantedTopK, Soum};
use nshap_estimate::{run, AnyEstimator, CommonOptions, Estimator, Method, Status};

#[test]
fn evaluations_are_the_rows_the_game_saw_and_stay_within_budget() {
    for m in [Method::Permutation, Method::Tmab, Method::Cmcs, Method::Loo] {
        let spec = PlantedTopK::new(400, 5, 1);
        let mut game = Counting::new(spec.build());
        let opts = CommonOptions {
            top_k: 5,
            budget: 60_000,
            value_range: spec.build().marginal_range(),
            ..CommonOptions::default()
        };
        let mut est = AnyEstimator::new(m, &opts, 400, 3).unwrap();
        let mut last = 0;
        let r = run(&mut est, &mut game, |p, _| {
            assert!(p.evaluations >= last, "{m}: progress went backwards");
            assert!(p.evaluations <= p.budget);
            last = p.evaluations;
        })
        .unwrap();
        assert_eq!(r.diagnostics.evaluations, game.rows(), "{m}");
        assert!(game.rows() <= 60_000, "{m}");
        // hundreds of rows per call, never one at a time (the last call may be short)
        let calls = game.calls.len();
        let small = game.calls.iter().filter(|&&c| c < 100).count();
        assert!(small <= 1 + calls / 20, "{m}: {:?}", game.calls);
        println!("{m}: {} evaluations in {calls} calls", game.rows());
    }
}

#[test]
fn loo_is_exact_on_additive_games_in_n_plus_one_evaluations() {
    let w: Vec<f64> = (0..300).map(|i| (i as f64).sqrt()).collect();
    let mut game = Counting::new(Additive::new(w.clone()));
    let opts = CommonOptions {
        top_k: 3,
        ..CommonOptions::default()
    };
    let mut est = AnyEstimator::new(Method::Loo, &opts, 300, 0).unwrap();
    let r = run(&mut est, &mut game, |_, _| {}).unwrap();
    assert_eq!(r.diagnostics.evaluations, 301);
    for (p, x) in r.players.iter().zip(&w) {
        assert!((p.value - x).abs() < 1e-9);
    }
    assert_eq!(r.top_k(3), vec![299, 298, 297]);
    assert_eq!(r.players[299].status, Status::SettledIn);
    assert_eq!(r.players[0].status, Status::SettledOut);
}

#[test]
fn bandits_report_active_players_while_running_and_ranks_at_the_end() {
    let spec = PlantedTopK::new(300, 5, 2);
    let mut game = spec.build();
    let opts = CommonOptions {
        top_k: 5,
        budget: 1_000_000,
        value_range: spec.build().marginal_range(),
        epsilon: spec.gap / 2.0,
        ..CommonOptions::default()
    };
    for m in [Method::Tmab, Method::Cmcs] {
        let mut est = AnyEstimator::new(m, &opts, 300, 1).unwrap();
        let p = est.step(&mut game).unwrap();
        assert!(!p.done && p.active > 5, "{m}: {p:?}");
        let mid = est.result();
        assert!(
            mid.players.iter().any(|q| q.status == Status::Active),
            "{m}"
        );
        let r = run(&mut est, &mut game, |_, _| {}).unwrap();
        let ins: Vec<usize> = (0..300)
            .filter(|&i| r.players[i].status == Status::SettledIn)
            .collect();
        let mut top = r.top_k(5);
        top.sort_unstable();
        assert_eq!(ins, top, "{m}");
        assert!(r.diagnostics.ambiguous <= 1, "{m}: {:?}", r.diagnostics);
    }
}

#[test]
fn k_equal_to_n_puts_everyone_in() {
    for m in Method::ALL {
        let mut game = Soum::random(6, 10, 1..=3, 4);
        let opts = CommonOptions {
            top_k: 6,
            budget: 5_000,
            ..CommonOptions::default()
        };
        let mut est = AnyEstimator::new(m, &opts, 6, 0).unwrap();
        let r = run(&mut est, &mut game, |_, _| {}).unwrap();
        assert!(
            r.players.iter().all(|p| p.status == Status::SettledIn),
            "{m}: {:?}",
            r.players
        );
    }
}
