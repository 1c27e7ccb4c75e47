//! Property tests: exact enumeration equals the SOUM closed form for any small SOUM, and the
//! dedup helper equals evaluating every row.

use nshap_estimate::games::{ClosedForm, Noisy, Soum};
use nshap_estimate::{
    evaluate_unique, run, AnyEstimator, CoalitionBatch, CommonOptions, Game, Method,
};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn exact_equals_soum_closed_form(n in 1usize..9, terms in 1usize..12, seed in 0u64..1000) {
        let mut game = Soum::random(n, terms, 1..=n, seed);
        let opts = CommonOptions { top_k: 1, ..CommonOptions::default() };
        let mut est = AnyEstimator::new(Method::Exact, &opts, n, 0).unwrap();
        let r = run(&mut est, &mut game, |_, _| {}).unwrap();
        for (a, b) in r.values().iter().zip(game.shapley()) {
            prop_assert!((a - b).abs() < 1e-12);
        }
        prop_assert!(r.diagnostics.efficiency_residual.unwrap() < 1e-12);
    }

    #[test]
    fn dedup_equals_direct_evaluation(
        rows in prop::collection::vec((prop::collection::vec(0usize..70, 0..10), 0u64..4), 1..60),
        seed in 0u64..100,
    ) {
        let mut batch = CoalitionBatch::new(70);
        for (members, draw) in &rows {
            batch.push(members.iter().copied(), *draw).unwrap();
        }
        let mut game = Noisy::new(Soum::random(70, 40, 1..=2, seed), 16, seed);
        let direct = game.evaluate(&batch).unwrap();
        let deduped = evaluate_unique(&mut game, &batch).unwrap();
        prop_assert_eq!(&deduped.values, &direct);
        prop_assert!(deduped.evaluations as usize <= batch.len());
    }
}
