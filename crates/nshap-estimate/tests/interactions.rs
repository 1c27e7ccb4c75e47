//! Interaction indices: exact Möbius and SII against SOUM closed forms and the definitions,
//! sampled pairwise SII for unbiasedness, rate, coverage, common random numbers and seeding.

mod common;

use std::collections::HashMap;
use std::time::Instant;

use common::{accuracy_soum, max_abs_diff, slope, Counting};
use nshap_estimate::games::{Additive, ClosedForm, FnGame, Noisy, Soum, Unanimity, WeightedVoting};
use nshap_estimate::{
    run, AnyEstimator, CoalitionBatch, CommonOptions, Game, GameError, Interaction,
    InteractionIndex, Method, SampledSii, SampledSiiConfig, ValueTable,
};

fn table(game: &mut dyn Game) -> ValueTable {
    ValueTable::enumerate(game, 1024, |_, _| {}).unwrap()
}

fn mask_of(players: &[usize]) -> usize {
    players.iter().fold(0, |m, &i| m | 1 << i)
}

/// A SOUM's coefficients by carrier mask (equal carriers add up).
fn coefficients(g: &Soum) -> HashMap<usize, f64> {
    let mut c = HashMap::new();
    for (t, a) in g.terms() {
        *c.entry(t.iter().fold(0, |m, &i| m | 1 << i)).or_insert(0.0) += a;
    }
    c
}

/// SII of a SOUM in closed form: `sum_{R ⊇ T} a_R / (|R| - |T| + 1)`.
fn soum_sii(g: &Soum, players: &[usize]) -> f64 {
    g.terms()
        .iter()
        .filter(|(r, _)| players.iter().all(|&i| r.contains(&(i as u32))))
        .map(|(r, a)| a / (r.len() - players.len() + 1) as f64)
        .sum()
}

fn factorial(k: usize) -> f64 {
    (1..=k).map(|x| x as f64).product()
}

/// SII straight from the definition: the factorial-weighted sum of discrete derivatives.
fn brute_sii(v: &[f64], n: usize, t: usize) -> f64 {
    let tn = t.count_ones() as usize;
    let mut total = 0.0;
    for s in 0..1usize << n {
        if s & t != 0 {
            continue;
        }
        let sn = s.count_ones() as usize;
        let w = factorial(n - sn - tn) * factorial(sn) / factorial(n - tn + 1);
        // Δ_T v(S) = sum_{L ⊆ T} (-1)^{|T|-|L|} v(S ∪ L)
        let mut delta = 0.0;
        let mut l = t;
        loop {
            let sign = if (tn - l.count_ones() as usize) % 2 == 0 {
                1.0
            } else {
                -1.0
            };
            delta += sign * v[s | l];
            if l == 0 {
                break;
            }
            l = (l - 1) & t;
        }
        total += w * delta;
    }
    total
}

#[test]
fn moebius_recovers_unanimity_coefficients() {
    let mut g = Unanimity::new(10, vec![1, 4, 7], 3.0);
    let t = table(&mut g);
    let m = t.moebius(10, None);
    assert_eq!(m.len(), (1 << 10) - 1);
    for d in &m {
        let want = if d.players == [1, 4, 7] { 3.0 } else { 0.0 };
        assert!(
            (d.value - want).abs() < 1e-12,
            "{:?}: {}",
            d.players,
            d.value
        );
        assert_eq!((d.stderr, d.samples), (0.0, 0));
    }
}

#[test]
fn moebius_recovers_soum_coefficients() {
    let hand = Soum::new(
        9,
        vec![
            (vec![], 0.25),
            (vec![0], 1.0),
            (vec![2, 5], -0.5),
            (vec![1, 3, 8], 2.0),
            (vec![0, 2, 4, 6], -1.5),
            (vec![2, 5], 0.125),
        ],
    );
    let games = [
        hand,
        Soum::random(8, 20, 1..=4, 0),
        Soum::random(10, 30, 1..=4, 1),
        Soum::random(12, 40, 1..=4, 2),
    ];
    for mut g in games {
        let n = g.n_players();
        let want = coefficients(&g);
        let t = table(&mut g);
        let mut checked = 0;
        for d in t.moebius(n, None) {
            let w = want.get(&mask_of(&d.players)).copied().unwrap_or(0.0);
            assert!(
                (d.value - w).abs() < 1e-12,
                "n {n} {:?}: {} vs {w}",
                d.players,
                d.value
            );
            checked += 1;
        }
        assert_eq!(checked, (1 << n) - 1);
        // orders above 4 are absent from these games: the order cap only drops zeros
        assert_eq!(
            t.moebius(4, None).len(),
            (1..=4).map(|k| binom(n, k)).sum::<usize>()
        );
    }
}

fn binom(n: usize, k: usize) -> usize {
    (0..k).fold(1, |acc, i| acc * (n - i) / (i + 1))
}

#[test]
fn sii_matches_soum_closed_form() {
    for (n, seed) in [(8, 3), (10, 4), (12, 5)] {
        let mut g = Soum::random(n, 3 * n, 1..=5, seed);
        let t = table(&mut g);
        let sii = t.sii(3, None);
        assert_eq!(sii.len(), binom(n, 2) + binom(n, 3));
        let mut err: f64 = 0.0;
        for d in &sii {
            assert!((2..=3).contains(&d.players.len()));
            err = err.max((d.value - soum_sii(&g, &d.players)).abs());
        }
        assert!(err < 1e-12, "n {n}: max error {err}");
        // order 1 of the same formula is the Shapley value
        let phi_err = max_abs_diff(&t.shapley(), &g.shapley());
        assert!(phi_err < 1e-12, "n {n}: shapley error {phi_err}");
    }
}

#[test]
fn table_shapley_is_the_exact_estimator() {
    let mut g = Soum::random(11, 30, 1..=5, 9);
    let t = table(&mut g);
    let opts = CommonOptions::default();
    let mut est = AnyEstimator::new(Method::Exact, &opts, 11, 0).unwrap();
    let r = run(&mut est, &mut g, |_, _| {}).unwrap();
    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&t.shapley()), bits(&r.values()));
    assert_eq!(bits(&t.banzhaf()), bits(r.banzhaf.as_ref().unwrap()));
    assert_eq!(t.evaluations(), 1 << 11);
}

#[test]
fn sii_matches_the_definition_on_non_soum_games() {
    let n = 7;
    let mut voting = WeightedVoting::new(vec![4.0, 3.0, 3.0, 2.0, 1.0, 1.0, 1.0], 8.0);
    let w = [0.3, -1.1, 0.7, 2.0, -0.4, 0.9, 1.3];
    let mut smooth = FnGame::new(n, move |row: &[u64]| {
        let s: f64 = (0..n).filter(|&i| row[0] >> i & 1 == 1).map(|i| w[i]).sum();
        s.sin() + 0.1 * s * s * s
    });
    for game in [&mut voting as &mut dyn Game, &mut smooth] {
        let t = table(game);
        let all = t.sii(n, None);
        assert_eq!(all.len(), (1 << n) - 1 - n);
        let mut err: f64 = 0.0;
        for d in &all {
            err = err.max((d.value - brute_sii(t.values(), n, mask_of(&d.players))).abs());
        }
        assert!(err < 1e-12, "max error {err}");
        // restricting to a subset of players gives the same numbers
        let within = [5, 1, 3, 1];
        let some = t.sii(3, Some(&within));
        let sets: Vec<&[usize]> = some.iter().map(|d| d.players.as_slice()).collect();
        assert_eq!(sets, vec![&[1, 3][..], &[1, 5], &[3, 5], &[1, 3, 5]]);
        for d in &some {
            let full = all.iter().find(|e| e.players == d.players).unwrap();
            assert_eq!(d.value.to_bits(), full.value.to_bits());
        }
        assert!(t.check_players(&within).is_ok());
        let e = t.check_players(&[2, 7]).unwrap_err();
        assert!(e.to_string().contains("player 7 is out of range"), "{e}");
        // the dispatcher
        assert_eq!(
            t.interactions(InteractionIndex::Sii, 3, Some(&within)),
            some
        );
    }
}

#[test]
fn additive_game_has_no_interactions() {
    let w = vec![0.5, -1.25, 3.0, 0.0, 2.0, -0.75, 1.0, 0.125, 0.3, -2.0];
    let mut g = Additive::new(w.clone());
    let t = table(&mut g);
    for d in t.moebius(10, None) {
        let want = if d.players.len() == 1 {
            w[d.players[0]]
        } else {
            0.0
        };
        assert!(
            (d.value - want).abs() < 1e-12,
            "{:?}: {}",
            d.players,
            d.value
        );
    }
    for d in t.sii(10, None) {
        assert!(d.value.abs() < 1e-12, "{:?}: {}", d.players, d.value);
    }

    let w: Vec<f64> = (0..50)
        .map(|i| ((i * 37) % 11) as f64 * 0.21 - 1.0)
        .collect();
    let mut g = Additive::new(w);
    let pairs = vec![(0, 1), (7, 3), (10, 49), (20, 21)];
    let r = sample(&mut g, pairs, 20_000, 1);
    for d in &r {
        assert!(d.samples > 100);
        assert!(d.value.abs() < 1e-12 && d.stderr < 1e-12, "{d:?}");
    }
}

/// Runs sampled SII to the budget.
fn sample(
    game: &mut dyn Game,
    pairs: Vec<(usize, usize)>,
    budget: u64,
    seed: u64,
) -> Vec<Interaction> {
    let config = SampledSiiConfig {
        budget,
        seed,
        ..SampledSiiConfig::default()
    };
    let mut est = SampledSii::new(config, game.n_players(), pairs).unwrap();
    while !est.is_done() {
        est.step(game).unwrap();
    }
    let p = est.progress();
    assert!(p.done && p.evaluations <= budget, "{p:?}");
    est.result()
}

/// A SOUM on 40 players with pairwise, third- and higher-order terms, and the pairs that share a
/// term of order >= 4 (the only ones the antithetic estimator is not exact on).
fn big_soum() -> (Soum, Vec<(usize, usize)>) {
    let g = Soum::random(40, 70, 2..=6, 21);
    let mut pairs = Vec::new();
    for (t, _) in g.terms().iter().filter(|(t, _)| t.len() >= 4) {
        let p = (t[0] as usize, t[1] as usize);
        if !pairs.contains(&p) {
            pairs.push(p);
        }
    }
    (g, pairs)
}

#[test]
fn sampled_sii_converges_at_the_monte_carlo_rate() {
    let (mut g, mut pairs) = big_soum();
    pairs.truncate(10);
    let exact: Vec<f64> = pairs.iter().map(|&(i, j)| soum_sii(&g, &[i, j])).collect();
    let b = 8 * pairs.len() as u64 * 50;
    let seeds = 32;
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for budget in [b, 4 * b, 16 * b] {
        let (mut sq, mut count, mut evals) = (0.0, 0, 0u64);
        let mut sums = vec![0.0; pairs.len()];
        let mut squares = vec![0.0; pairs.len()];
        for seed in 0..seeds {
            let config = SampledSiiConfig {
                budget,
                seed,
                ..SampledSiiConfig::default()
            };
            let mut est = SampledSii::new(config, 40, pairs.clone()).unwrap();
            while !est.is_done() {
                est.step(&mut g).unwrap();
            }
            evals += est.progress().evaluations;
            for (p, (d, want)) in est.result().iter().zip(&exact).enumerate() {
                sq += (d.value - want).powi(2);
                count += 1;
                sums[p] += d.value;
                squares[p] += (d.value - want).powi(2);
            }
        }
        let rmse = (sq / count as f64).sqrt();
        // unbiased: each pair's mean over seeds is within a few of its standard errors of the
        // truth (the spread of one run is its RMSE over seeds)
        for p in 0..pairs.len() {
            let bias = sums[p] / seeds as f64 - exact[p];
            let se = (squares[p] / seeds as f64).sqrt() / (seeds as f64).sqrt();
            assert!(bias.abs() < 4.0 * se, "pair {p}: bias {bias:e}, se {se:e}");
        }
        let mean_evals = evals as f64 / seeds as f64;
        println!("sampled SII, n = 40, {} pairs: budget {budget}, mean evaluations {mean_evals:.0}, RMSE {rmse:.3e}", pairs.len());
        xs.push(mean_evals.ln());
        ys.push(rmse.ln());
    }
    let s = slope(&xs, &ys);
    println!("sampled SII log-log slope of RMSE vs evaluations: {s:.3}");
    assert!((-0.7..=-0.3).contains(&s), "slope {s}");
}

#[test]
fn sampled_sii_intervals_cover() {
    let (mut g, mut pairs) = big_soum();
    pairs.truncate(20);
    let exact: Vec<f64> = pairs.iter().map(|&(i, j)| soum_sii(&g, &[i, j])).collect();
    let budget = 8 * pairs.len() as u64 * 120;
    let (mut covered, mut cases) = (0, 0);
    for seed in 0..100 {
        for (d, want) in sample(&mut g, pairs.clone(), budget, 1000 + seed)
            .iter()
            .zip(&exact)
        {
            assert!(d.stderr > 0.0 && d.stderr.is_finite(), "{d:?}");
            // 1e-12: rounding slack, in case a pair's observations are all equal
            if (d.value - want).abs() <= 1.96 * d.stderr + 1e-12 {
                covered += 1;
            }
            cases += 1;
        }
    }
    let coverage = covered as f64 / cases as f64;
    println!("sampled SII 95% interval coverage: {covered}/{cases} = {coverage:.3}");
    assert!(cases >= 1000);
    assert!((0.90..=0.99).contains(&coverage), "coverage {coverage}");
}

/// A stochastic game whose noise depends only on the draw id: `v(S, d) = inner(S) + 100 u(d)`.
/// Any estimate that mixes draws inside a derivative is off by about 100.
struct DrawNoise<G> {
    inner: G,
    draws: Vec<u64>,
}

impl<G: Game> Game for DrawNoise<G> {
    fn n_players(&self) -> usize {
        self.inner.n_players()
    }
    fn evaluate(&mut self, batch: &CoalitionBatch) -> Result<Vec<f64>, GameError> {
        self.draws.extend_from_slice(batch.draws());
        let v = self.inner.evaluate(batch)?;
        Ok(v.iter()
            .zip(batch.draws())
            .map(|(x, &d)| {
                let h = d.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                x + 100.0 * (h >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect())
    }
}

#[test]
fn stochastic_games_share_a_draw_per_derivative() {
    // pair and triple terms only: antithetic observations are then exact, so any error left
    // would be draw noise
    let inner = Soum::random(30, 40, 2..=3, 4);
    let pairs: Vec<(usize, usize)> = inner
        .terms()
        .iter()
        .take(8)
        .map(|(t, _)| (t[0] as usize, t[1] as usize))
        .collect();
    let exact: Vec<f64> = pairs
        .iter()
        .map(|&(i, j)| soum_sii(&inner, &[i, j]))
        .collect();
    let mut g = DrawNoise {
        inner,
        draws: Vec::new(),
    };
    let r = sample(&mut g, pairs, 10_000, 5);
    for (d, want) in r.iter().zip(&exact) {
        assert!((d.value - want).abs() < 1e-9, "{d:?} vs {want}");
        assert!(d.stderr < 1e-9, "{d:?}");
    }
    let distinct: std::collections::HashSet<u64> = g.draws.iter().copied().collect();
    assert!(
        distinct.len() as u64 == r[0].samples,
        "one fresh draw per permutation"
    );

    // exact enumeration: every coalition on draw 0
    let mut g = DrawNoise {
        inner: Soum::random(8, 10, 1..=3, 1),
        draws: Vec::new(),
    };
    let t = table(&mut g);
    assert!(g.draws.iter().all(|&d| d == 0) && g.draws.len() == 256);
    for d in t.sii(3, None) {
        let want = soum_sii(&g.inner, &d.players);
        assert!((d.value - want).abs() < 1e-9, "{d:?} vs {want}");
    }
}

#[test]
fn sampled_sii_on_a_noisy_accuracy_game() {
    let inner = accuracy_soum(20, 30, 3);
    // pairs that share a term, plus one that does not
    let mut pairs: Vec<(usize, usize)> = inner
        .terms()
        .iter()
        .filter(|(t, _)| t.len() >= 2)
        .map(|(t, _)| (t[0] as usize, t[1] as usize))
        .take(5)
        .collect();
    pairs.push((0, 1));
    let exact: Vec<f64> = pairs
        .iter()
        .map(|&(i, j)| soum_sii(&inner, &[i, j]))
        .collect();
    let mut g = Noisy::new(inner, 128, 9);
    let r = sample(&mut g, pairs, 100_000, 2);
    for (d, want) in r.iter().zip(&exact) {
        let z = (d.value - want) / d.stderr;
        println!(
            "noisy game: pair {:?} estimate {:.5} ± {:.5}, exact {want:.5}, z {z:.2}",
            d.players, d.value, d.stderr
        );
        assert!(z.abs() < 4.0, "{d:?} vs {want}");
    }
}

#[test]
fn sampled_sii_hands_the_game_big_batches_within_budget() {
    let n = 20;
    let pairs: Vec<(usize, usize)> = (0..n)
        .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
        .collect();
    let mut g = Counting::new(Noisy::new(accuracy_soum(n, 20, 1), 16, 2));
    // 190 pairs: 1520 rows per permutation before dedup, 8 permutations per call
    let config = SampledSiiConfig {
        budget: 100_000,
        batch_size: 8 * 1520,
        seed: 3,
    };
    let mut est = SampledSii::new(config, n, pairs).unwrap();
    let mut rounds = 0;
    while !est.is_done() {
        est.step(&mut g).unwrap();
        rounds += 1;
    }
    let p = est.progress();
    println!("190 pairs, rows per game call after dedup: {:?}", g.calls);
    assert_eq!(g.rows(), p.evaluations);
    assert_eq!(g.calls.len(), rounds, "one game call per round");
    // rows shared by pairs of one permutation are evaluated once, but a call is still big; the
    // last rounds shrink as the budget runs out (it is charged 1520 rows per permutation before
    // dedup, so it is never exceeded)
    assert!(g.calls[..20].iter().all(|&c| c >= 2000), "{:?}", g.calls);
    assert!(
        p.evaluations <= 100_000 && 100_000 - p.evaluations < 1520,
        "{p:?}"
    );
    assert!(est.result().iter().all(|d| d.samples == p.samples));
}

#[test]
fn same_seed_same_result_and_resume() {
    let (mut g, mut pairs) = big_soum();
    pairs.truncate(5);
    let bits = |r: &[Interaction]| {
        r.iter()
            .map(|d| (d.value.to_bits(), d.stderr.to_bits(), d.samples))
            .collect::<Vec<_>>()
    };
    let a = sample(&mut g, pairs.clone(), 20_000, 7);
    let b = sample(&mut g, pairs.clone(), 20_000, 7);
    let c = sample(&mut g, pairs.clone(), 20_000, 8);
    assert_eq!(bits(&a), bits(&b));
    assert_ne!(bits(&a), bits(&c));

    // a saved state continues bit for bit
    let config = SampledSiiConfig {
        budget: 20_000,
        batch_size: 200,
        seed: 7,
    };
    let mut est = SampledSii::new(config.clone(), 40, pairs.clone()).unwrap();
    est.step(&mut g).unwrap();
    est.step(&mut g).unwrap();
    let saved = serde_json::to_vec(&est).unwrap();
    let mut resumed: SampledSii = serde_json::from_slice(&saved).unwrap();
    while !est.is_done() {
        est.step(&mut g).unwrap();
    }
    while !resumed.is_done() {
        resumed.step(&mut g).unwrap();
    }
    assert_eq!(bits(&est.result()), bits(&resumed.result()));
}

#[test]
fn bad_inputs_are_errors() {
    let mut g = Additive::new(vec![1.0; 21]);
    let e = ValueTable::enumerate(&mut g, 1024, |_, _| {}).unwrap_err();
    assert!(e.to_string().contains("at most 20 players"), "{e}");
    let e = ValueTable::from_values(3, vec![0.0; 7]).unwrap_err();
    assert!(e.to_string().contains("needs 2^3 = 8 values, got 7"), "{e}");
    let e = ValueTable::from_values(1, vec![0.0, f64::NAN]).unwrap_err();
    assert!(e.to_string().contains("finite"), "{e}");
    let e = "foo".parse::<InteractionIndex>().unwrap_err();
    assert!(
        e.to_string().contains("\"foo\"") && e.to_string().contains("moebius, sii"),
        "{e}"
    );
    assert_eq!(
        "SII".parse::<InteractionIndex>().unwrap(),
        InteractionIndex::Sii
    );

    let cfg = SampledSiiConfig::default;
    let err = |n, pairs| SampledSii::new(cfg(), n, pairs).unwrap_err().to_string();
    let e = err(10, vec![(2, 10)]);
    assert!(e.contains("player 10 is out of range"), "{e}");
    let e = err(10, vec![(0, 1), (3, 3)]);
    assert!(e.contains("two distinct players"), "{e}");
    let e = err(10, vec![]);
    assert!(e.contains("at least one pair"), "{e}");
    let e = err(1, vec![(0, 0)]);
    assert!(e.contains("at least 2 players"), "{e}");
    let small = SampledSiiConfig {
        budget: 15,
        ..cfg()
    };
    let e = SampledSii::new(small, 10, vec![(0, 1), (1, 2)])
        .unwrap_err()
        .to_string();
    assert!(e.contains("16 for 2 pairs, but the budget is 15"), "{e}");
    let zero = SampledSiiConfig {
        batch_size: 0,
        ..cfg()
    };
    assert!(SampledSii::new(zero, 10, vec![(0, 1)]).is_err());

    // a game of the wrong size is an error, not a panic
    let mut est = SampledSii::new(cfg(), 10, vec![(0, 1)]).unwrap();
    let e = est.step(&mut Additive::new(vec![1.0; 9])).unwrap_err();
    assert!(e.to_string().contains("9 players"), "{e}");
}

#[test]
fn exact_pairwise_sii_is_fast_at_n_20() {
    let n = 20;
    let values: Vec<f64> = (0..1u64 << n)
        .map(|m| (m.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 11) as f64 / (1u64 << 53) as f64)
        .collect();
    let t = ValueTable::from_values(n, values).unwrap();
    let start = Instant::now();
    let sii = t.sii(2, None);
    let sii_time = start.elapsed();
    let start = Instant::now();
    let m = t.moebius(2, None);
    let moebius_time = start.elapsed();
    println!("n = 20, order 2: SII {sii_time:?}, Moebius {moebius_time:?}");
    assert_eq!(sii.len(), 190);
    assert_eq!(m.len(), 210);
    // spot check one pair against the definition
    let want = brute_sii(t.values(), n, mask_of(&sii[37].players));
    assert!(
        (sii[37].value - want).abs() < 1e-12,
        "{} vs {want}",
        sii[37].value
    );
    let limit = if cfg!(debug_assertions) { 10.0 } else { 1.0 };
    assert!(sii_time.as_secs_f64() < limit, "{sii_time:?}");
}

#[test]
fn enumeration_reports_progress() {
    let mut g = Soum::random(12, 20, 1..=3, 0);
    let mut seen = Vec::new();
    let t = ValueTable::enumerate(&mut g, 1000, |done, total| seen.push((done, total))).unwrap();
    assert_eq!(seen.len(), 5);
    assert_eq!(seen.last(), Some(&(4096, 4096)));
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(t.n_players(), 12);
    assert_eq!(t.values().len(), 4096);
    let copy = ValueTable::from_values(12, t.values().to_vec()).unwrap();
    assert_eq!(copy.evaluations(), 0);
    assert_eq!(copy.moebius(3, None), t.moebius(3, None));
}

/// What antithetic pairing buys, per evaluation, on pairs whose interactions have order 4..6 (on
/// orders <= 3 it is exact): plain observations `Δ(S)` (4 rows) against `(Δ(S) + Δ(S^c)) / 2`
/// (8 rows), drawn the way the estimator draws them.
#[test]
fn antithetic_observations_have_less_variance_per_evaluation() {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let (mut g, mut pairs) = big_soum();
    pairs.truncate(20);
    let n = 40;
    let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(1);
    let var = |v: &[f64]| {
        let m = v.iter().sum::<f64>() / v.len() as f64;
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64
    };
    let (mut plain, mut anti) = (0.0, 0.0);
    for &(i, j) in &pairs {
        let mut batch = CoalitionBatch::new(n);
        let draws = 4000;
        for _ in 0..draws {
            let mut order: Vec<usize> = (0..n).collect();
            order.shuffle(&mut rng);
            let at = order.iter().position(|&x| x == i).unwrap();
            let before = order[..at].iter().copied().filter(|&x| x != j);
            let after = order[at + 1..].iter().copied().filter(|&x| x != j);
            for set in [before.collect::<Vec<_>>(), after.collect()] {
                for extra in [&[][..], &[i], &[j], &[i, j]] {
                    batch.push(set.iter().chain(extra).copied(), 0).unwrap();
                }
            }
        }
        let v = g.evaluate(&batch).unwrap();
        let delta = |b: &[f64]| (b[3] - b[1]) - (b[2] - b[0]);
        let forward: Vec<f64> = v.chunks(8).map(|c| delta(&c[..4])).collect();
        let averaged: Vec<f64> = v
            .chunks(8)
            .map(|c| 0.5 * (delta(&c[..4]) + delta(&c[4..])))
            .collect();
        plain += 4.0 * var(&forward);
        anti += 8.0 * var(&averaged);
    }
    println!(
        "variance x rows per observation, summed over 20 pairs: plain {plain:.3}, antithetic {anti:.3} ({:.2}x less)",
        plain / anti
    );
    assert!(anti < plain);
}
