//! Runs that stop on their budget say so: no player is settled by a spent budget, the top-k is
//! reported unresolved with an estimate of what it would take, intervals say what they are, and
//! a restored run can be given a larger budget and continue.

use nshap_estimate::games::PlantedTopK;
use nshap_estimate::{run, AnyEstimator, CommonOptions, Estimator, IntervalKind, Method, Status};

fn options(budget: u64) -> CommonOptions {
    CommonOptions {
        top_k: 5,
        budget,
        value_range: 4.0,
        ..CommonOptions::default()
    }
}

#[test]
fn a_spent_budget_settles_nobody_and_says_what_it_would_need() {
    for method in [Method::Cmcs, Method::Tmab] {
        let mut game = PlantedTopK::new(200, 5, 1).build();
        let mut est = AnyEstimator::new(method, &options(12_000), 200, 3).unwrap();
        let r = run(&mut est, &mut game, |_, _| {}).unwrap();
        let d = &r.diagnostics;
        assert!(d.evaluations <= 12_000);
        assert_eq!(d.top_k_resolved, Some(false), "{method}: budget-stopped");
        let active = r
            .players
            .iter()
            .filter(|p| p.status == Status::Active)
            .count();
        assert!(active > 0, "{method}: unresolved players must stay Active");
        assert_eq!(active, d.ambiguous, "{method}");
        let need = d.evaluations_needed.expect("an estimate when unresolved");
        assert!(need > 0, "{method}: needs more, says {need}");
    }
}

#[test]
fn intervals_are_labelled_for_what_they_are() {
    let cases = [
        (Method::Permutation, "ci95"),
        (Method::Tmab, "eb80"),
        (Method::Cmcs, "pac80"),
    ];
    for (method, stem) in cases {
        let mut game = PlantedTopK::new(30, 3, 2).build();
        let mut est = AnyEstimator::new(method, &options(3_000), 30, 1).unwrap();
        let r = run(&mut est, &mut game, |_, _| {}).unwrap();
        assert_eq!(r.diagnostics.interval.column_stem(), stem, "{method}");
    }
    assert_eq!(
        IntervalKind::ConfidenceSequence { delta: 0.05 }.column_stem(),
        "cs95"
    );
    assert_eq!(
        IntervalKind::Normal { confidence: 0.975 }.column_stem(),
        "ci97_5"
    );
}

#[test]
fn a_restored_run_continues_under_a_larger_budget() {
    for method in [Method::Tmab, Method::Cmcs, Method::Permutation] {
        let mut game = PlantedTopK::new(100, 5, 4).build();
        let mut est = AnyEstimator::new(method, &options(5_000), 100, 9).unwrap();
        run(&mut est, &mut game, |_, _| {}).unwrap();
        assert!(est.is_done());
        let spent = est.progress().evaluations;
        let mut restored = AnyEstimator::from_state(&est.save_state()).unwrap();
        restored.set_budget(40_000);
        assert!(
            !restored.is_done(),
            "{method}: a larger budget reopens the run"
        );
        let r = run(&mut restored, &mut game, |_, _| {}).unwrap();
        assert!(
            r.diagnostics.evaluations > spent && r.diagnostics.evaluations <= 40_000,
            "{method}: {spent} -> {}",
            r.diagnostics.evaluations
        );
        assert_eq!(restored.progress().budget, 40_000);
    }
}
