//! One conformance suite, run on every backend: each fixture model and case against PyTorch.

mod common;

use common::*;
use nshap::model::players::reference_baseline;
use nshap::model::{Backend, EvalJob, Examples, Metric};
use std::sync::Arc;

const MODELS: [&str; 4] = ["mlp", "cnn", "resnet", "tiny_resnet18"];

/// The models made of the newer ops (activations, pooling options, squeeze-excitation,
/// Inception branches, ShuffleNet units, a ConvNeXt block, LayerNorm on features), exported from
/// PyTorch by `nshap_export` with masked logits from the real `nn.Module`
/// (`tests/fixtures/make_op_fixtures.py`).
const OP_MODELS: [&str; 7] = [
    "acts", "pools", "se", "branches", "shuffle", "convnext", "dense_ln",
];

#[test]
fn every_backend_matches_pytorch_on_every_fixture_case() {
    for (backend_name, backend) in backends() {
        for model in MODELS {
            check_model(
                backend_name,
                backend.as_ref(),
                &fixtures().join(model),
                model,
            );
        }
    }
}

#[test]
fn every_backend_matches_pytorch_on_the_op_models() {
    for (backend_name, backend) in backends() {
        for model in OP_MODELS {
            let dir = fixtures().join("ops").join(model);
            check_model(
                backend_name,
                backend.as_ref(),
                &dir,
                &format!("ops/{model}"),
            );
        }
    }
}

/// Every case of one fixture folder: logits, accuracy, loss and class accuracy.
fn check_model(backend_name: &str, backend: &dyn Backend, dir: &std::path::Path, model: &str) {
    let (graph, data) = load_fixture_model(dir);
    let graph = Arc::new(graph);
    let data = Arc::new(data);
    for spec in read_cases(dir) {
        let case = load_case(dir, &spec);
        let what = format!("{backend_name}/{model}/{}", spec.name);
        let players = players_with_baseline(&graph, &spec.players, &case.baseline);
        let job = |metric| EvalJob {
            graph: graph.clone(),
            players: players.clone(),
            data: data.clone(),
            metric,
        };
        let mut ev = backend
            .prepare(job(Metric::Accuracy))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let logits = ev.logits(Examples::All, &case.masks).unwrap();
        assert_close(&logits, &case.logits, 1e-4, 1e-4, &format!("{what} logits"));
        let acc = ev.evaluate(Examples::All, &case.masks).unwrap();
        assert_eq!(acc, case.accuracy, "{what} accuracy");
        let mut ev = backend.prepare(job(Metric::NegLoss)).unwrap();
        let nl = ev.evaluate(Examples::All, &case.masks).unwrap();
        for (g, w) in nl.iter().zip(&case.neg_loss) {
            assert!(
                (g - w).abs() <= 1e-4 * w.abs().max(1.0),
                "{what} neg_loss: {g} vs {w}"
            );
        }
        let mut ev = backend.prepare(job(Metric::ClassAccuracy(3))).unwrap();
        assert_eq!(
            ev.evaluate(Examples::All, &case.masks).unwrap(),
            case.class_accuracy_3,
            "{what} class 3"
        );
    }
}

/// nshap's mean baselines on the op models equal the module's mean activation per channel.
#[test]
fn mean_baselines_of_the_op_models_resolve_like_pytorch() {
    for model in OP_MODELS {
        check_baselines(&fixtures().join("ops").join(model), &format!("ops/{model}"));
    }
}

/// Every case's baseline, resolved by nshap from its kind (zero / mean / reference), against the
/// fixture's.
fn check_baselines(dir: &std::path::Path, model: &str) {
    let (graph, data) = load_fixture_model(dir);
    for spec in read_cases(dir) {
        let case = load_case(dir, &spec);
        let baseline = spec.baseline.parse().unwrap();
        let players = nshap::resolve_players(&graph, &data, &spec.players, baseline)
            .unwrap_or_else(|e| panic!("{model}/{}: {e}", spec.name));
        let ours: Vec<f32> = players
            .layers()
            .iter()
            .flat_map(|l| l.baseline.clone())
            .collect();
        assert_close(
            &ours,
            &case.baseline,
            1e-4,
            1e-5,
            &format!("{model}/{} baseline", spec.name),
        );
    }
}

/// nshap's own baseline resolution (zero / mean / reference) gives the fixture's baselines.
#[test]
fn baselines_resolve_like_pytorch() {
    for model in MODELS {
        check_baselines(&fixtures().join(model), model);
    }
    // Reference removal needs a conv/BN producer: a pooling node is refused with a clear message.
    let (graph, _) = load_fixture_model(&fixtures().join("cnn"));
    let pool = graph.find("pool").unwrap();
    let err = reference_baseline(&graph, pool).unwrap_err().to_string();
    assert!(err.contains("pool") && err.contains("maxpool2d"), "{err}");
}

/// Subsets of examples give the same values as evaluating the subset alone.
#[test]
fn example_subsets_match_the_full_set_rows() {
    let dir = fixtures().join("cnn");
    let (graph, data) = load_fixture_model(&dir);
    let spec = &read_cases(&dir)[0];
    let case = load_case(&dir, spec);
    let players = players_with_baseline(&graph, &spec.players, &case.baseline);
    let classes = graph.num_classes();
    let b = data.len();
    for (name, backend) in backends() {
        let job = EvalJob {
            graph: Arc::new(graph.clone()),
            players: players.clone(),
            data: Arc::new(data.clone()),
            metric: Metric::Accuracy,
        };
        let mut ev = backend.prepare(job).unwrap();
        let subset: Vec<u32> = vec![5, 1, 9, 30];
        let got = ev.logits(Examples::Subset(&subset), &case.masks).unwrap();
        for m in 0..case.masks.len() {
            for (k, &e) in subset.iter().enumerate() {
                let want = &case.logits[(m * b + e as usize) * classes..][..classes];
                let have = &got[(m * subset.len() + k) * classes..][..classes];
                assert_close(have, want, 1e-4, 1e-4, &format!("{name} subset m{m} e{e}"));
            }
        }
    }
}

/// f16 and bf16 state_dicts load (converted to f32) and match PyTorch run on the rounded weights.
#[test]
fn half_precision_weights_match_pytorch() {
    #[derive(serde::Deserialize)]
    struct HalfCase {
        name: String,
        players: Vec<String>,
        baseline: String,
        file: String,
        weights: String,
    }
    let dir = fixtures().join("cnn");
    let cases: Vec<HalfCase> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("half_cases.json")).unwrap())
            .unwrap();
    for hc in cases {
        let graph =
            nshap::model::load_model(&dir.join("model.json"), &dir.join(&hc.weights)).unwrap();
        let data =
            nshap::model::load_eval_set(&dir.join("data.safetensors"), &graph, &Default::default())
                .unwrap();
        let spec = CaseSpec {
            name: hc.name.clone(),
            players: hc.players,
            baseline: hc.baseline,
            file: hc.file,
        };
        let case = load_case(&dir, &spec);
        let players = players_with_baseline(&graph, &spec.players, &case.baseline);
        for (name, backend) in backends() {
            let job = EvalJob {
                graph: Arc::new(graph.clone()),
                players: players.clone(),
                data: Arc::new(data.clone()),
                metric: Metric::Accuracy,
            };
            let mut ev = backend.prepare(job).unwrap();
            let logits = ev.logits(Examples::All, &case.masks).unwrap();
            assert_close(
                &logits,
                &case.logits,
                1e-4,
                1e-4,
                &format!("{name}/{}", hc.name),
            );
            assert_eq!(
                ev.evaluate(Examples::All, &case.masks).unwrap(),
                case.accuracy,
                "{name}/{}",
                hc.name
            );
        }
    }
}
