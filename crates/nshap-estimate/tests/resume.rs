//! Stop-and-resume: a run saved half way, restored and continued gives the same result, to the
//! bit, as an uninterrupted run with the same seed.

mod common;

use common::{accuracy_soum, assert_same_bits};
use nshap_estimate::games::{Noisy, PlantedTopK};
use nshap_estimate::{run, AnyEstimator, CommonOptions, Estimator, EstimatorConfig, Game, Method};

fn check_resume(make_est: impl Fn() -> AnyEstimator, make_game: impl Fn() -> Box<dyn Game>) {
    let mut a = make_est();
    let mut game = make_game();
    let ra = run(&mut a, &mut *game, |_, _| {}).unwrap();
    let total = ra.diagnostics.evaluations;

    let mut b = make_est();
    let mut game = make_game();
    let mut steps = 0;
    while !b.is_done() && b.progress().evaluations < total / 2 {
        b.step(&mut *game).unwrap();
        steps += 1;
    }
    assert!(!b.is_done(), "interrupted run finished early");
    assert!(steps >= 1);
    let bytes = b.save_state();
    drop(b);

    let mut c = AnyEstimator::from_state(&bytes).unwrap();
    let mut game = make_game(); // a fresh game: nothing may live outside the saved state
    let rc = run(&mut c, &mut *game, |_, _| {}).unwrap();
    assert_same_bits(&ra, &rc);
    assert_eq!(a.save_state(), c.save_state(), "final states differ");
}

fn opts(top_k: usize, budget: u64) -> CommonOptions {
    CommonOptions {
        top_k,
        budget,
        ..CommonOptions::default()
    }
}

#[test]
fn exact_resumes_bit_for_bit() {
    check_resume(
        || AnyEstimator::new(Method::Exact, &opts(3, 1 << 12), 12, 1).unwrap(),
        || Box::new(Noisy::new(accuracy_soum(12, 20, 1), 32, 9)),
    );
}

#[test]
fn permutation_with_truncation_resumes_bit_for_bit() {
    let mut o = opts(5, 40_000);
    o.chance_level = Some(0.05);
    o.truncation_tolerance = 0.15;
    o.truncation_patience = 2;
    check_resume(
        || AnyEstimator::new(Method::Permutation, &o, 40, 2).unwrap(),
        || Box::new(Noisy::new(accuracy_soum(40, 60, 2), 64, 10)),
    );
}

#[test]
fn tmab_resumes_bit_for_bit() {
    let spec = PlantedTopK::new(300, 5, 3);
    let range = spec.build().marginal_range();
    let mut o = opts(5, 400_000);
    o.value_range = range;
    check_resume(
        || AnyEstimator::new(Method::Tmab, &o, 300, 3).unwrap(),
        || Box::new(spec.build()),
    );
}

#[test]
fn tmab_on_a_noisy_game_resumes_bit_for_bit() {
    let mut o = opts(3, 60_000);
    o.value_range = 0.5;
    o.antithetic = Some(true);
    check_resume(
        || AnyEstimator::new(Method::Tmab, &o, 40, 4).unwrap(),
        || Box::new(Noisy::new(accuracy_soum(40, 60, 4), 64, 11)),
    );
}

#[test]
fn cmcs_resumes_bit_for_bit() {
    check_resume(
        || AnyEstimator::new(Method::Cmcs, &opts(5, 400_000), 300, 5).unwrap(),
        || Box::new(PlantedTopK::new(300, 5, 5).build()),
    );
}

#[test]
fn cmcs_on_a_noisy_game_resumes_bit_for_bit() {
    check_resume(
        || AnyEstimator::new(Method::Cmcs, &opts(3, 50_000), 40, 6).unwrap(),
        || Box::new(Noisy::new(accuracy_soum(40, 60, 6), 64, 12)),
    );
}

#[test]
fn loo_resumes_bit_for_bit() {
    let mut o = opts(3, 10_000);
    o.batch_size = 256;
    check_resume(
        || AnyEstimator::new(Method::Loo, &o, 1000, 7).unwrap(),
        || Box::new(Noisy::new(accuracy_soum(1000, 300, 7), 64, 13)),
    );
}

#[test]
fn a_restored_state_saves_identically() {
    let cfg = EstimatorConfig::from_common(Method::Permutation, &opts(2, 5_000));
    let mut e = AnyEstimator::from_config(cfg, 20, 8).unwrap();
    let mut g = accuracy_soum(20, 30, 8);
    e.step(&mut g).unwrap();
    let bytes = e.save_state();
    let back = AnyEstimator::from_state(&bytes).unwrap();
    assert_eq!(back, e);
    assert_eq!(back.save_state(), bytes);
}

#[test]
fn regression_resumes_bit_for_bit() {
    check_resume(
        || AnyEstimator::new(Method::Regression, &opts(3, 6_000), 40, 9).unwrap(),
        || Box::new(Noisy::new(accuracy_soum(40, 60, 9), 64, 14)),
    );
}
