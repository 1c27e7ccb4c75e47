//! Every fixture model and case against PyTorch (tests/fixtures, made by make_fixtures.py), with
//! the default memory budget and with a tiny one that forces coalition and example chunking.

use crate::common::*;
use nshap_gpu::chunk::{self, ChunkLimits};
use nshap_gpu::plan::Plan;
use nshap_model::tensors::TensorFile;
use nshap_model::{Backend, EvalSet, Examples, Graph, MaskBatch, Metric, PlayerLayer, Players};
use std::path::{Path, PathBuf};

/// Small enough to chunk examples of the subset test.
const TINY_BUDGET: u64 = 16 << 10;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

struct Case {
    name: String,
    players: Vec<String>,
    masks: MaskBatch,
    baseline: Vec<f32>,
    logits: Vec<f32>,
    accuracy: Vec<f64>,
    neg_loss: Vec<f64>,
    class_accuracy_3: Vec<f64>,
}

fn f64s(file: &TensorFile, name: &str) -> Vec<f64> {
    let (_, _, bytes) = file.raw(name).unwrap();
    bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn load_model(dir: &Path) -> (Graph, EvalSet) {
    let weights = dir.join("weights.safetensors");
    let data_path = dir.join("data.safetensors");
    let graph = if dir.join("model.json").exists() {
        nshap_model::load_model(&dir.join("model.json"), &weights).unwrap_or_else(|e| panic!("{e}"))
    } else {
        let shape = TensorFile::open(&data_path)
            .unwrap()
            .shape("inputs")
            .unwrap();
        nshap_model::load_arch("resnet18", &weights, [shape[1], shape[2], shape[3]])
            .unwrap_or_else(|e| panic!("{e}"))
            .0
    };
    let data = nshap_model::load_eval_set(&data_path, &graph, &Default::default())
        .unwrap_or_else(|e| panic!("{e}"));
    (graph, data)
}

fn load_cases(dir: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(dir.join("cases.json")).unwrap();
    let specs: serde_json::Value = serde_json::from_str(&text).unwrap();
    specs
        .as_array()
        .unwrap()
        .iter()
        .map(|spec| {
            let file = TensorFile::open(&dir.join(spec["file"].as_str().unwrap())).unwrap();
            let (_, shape, bytes) = file.raw("masks").unwrap();
            let mut masks = MaskBatch::new(shape[1]);
            for row in bytes.chunks_exact(shape[1]) {
                masks.push_bools(&row.iter().map(|&b| b != 0).collect::<Vec<_>>());
            }
            Case {
                name: spec["name"].as_str().unwrap().into(),
                players: spec["players"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p.as_str().unwrap().into())
                    .collect(),
                masks,
                baseline: file.f32("baseline", None).unwrap().0,
                logits: file.f32("logits", None).unwrap().0,
                accuracy: f64s(&file, "accuracy"),
                neg_loss: f64s(&file, "neg_loss"),
                class_accuracy_3: f64s(&file, "class_accuracy_3"),
            }
        })
        .collect()
}

fn players(graph: &Graph, case: &Case) -> Players {
    let mut at = 0;
    let layers = case
        .players
        .iter()
        .map(|name| {
            let node = graph.find(name).unwrap_or_else(|| panic!("node {name}"));
            let c = graph.nodes[node].shape.channels();
            at += c;
            PlayerLayer {
                node,
                name: name.clone(),
                baseline: case.baseline[at - c..at].to_vec(),
            }
        })
        .collect();
    Players::new(layers).unwrap()
}

/// Accuracies may differ only where PyTorch's logits have a near-tie for the top class.
fn assert_accuracy(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got, want, "{what}");
}

/// A budget that splits `masks` coalitions into about three chunks (all examples together).
fn three_chunk_budget(plan: &Plan, examples: usize, coalitions: usize) -> u64 {
    let per_chunk = coalitions.div_ceil(3);
    4 * examples as u64
        * (plan.shared_row_elements() + per_chunk * plan.suffix_row_elements()) as u64
}

fn check_case(
    model: &str,
    graph: &Graph,
    data: &EvalSet,
    case: &Case,
    budget: u64,
    budget_name: &str,
) {
    let players = players(graph, case);
    // The budget really splits the work when it is meant to.
    let (folded, folded_players) = nshap_model::fold::fold_batchnorm(graph, &players);
    let plan = Plan::build(&folded, &folded_players);
    let limits = ChunkLimits {
        budget_bytes: budget,
        max_binding_bytes: 128 << 20,
        element_bytes: 4,
    };
    let budget = if budget == 0 {
        three_chunk_budget(&plan, data.len(), case.masks.len())
    } else {
        budget
    };
    if budget < 1 << 30 {
        let chunks = chunk::choose(
            &plan,
            data.len(),
            case.masks.len(),
            ChunkLimits {
                budget_bytes: budget,
                ..limits
            },
        );
        assert!(
            chunks.coalitions < case.masks.len(),
            "{model}/{}: budget does not chunk ({chunks:?})",
            case.name
        );
    }
    let backend = gpu_with_budget(budget).expect("checked by the caller");
    let what = format!("{model}/{}/{budget_name} budget", case.name);
    let mut ev = backend
        .prepare(job(graph, &players, data, Metric::Accuracy))
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let logits = ev
        .logits(Examples::All, &case.masks)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_close(
        &logits,
        &case.logits,
        1e-4,
        1e-4,
        &format!("{what}: logits"),
    );
    let acc = ev.evaluate(Examples::All, &case.masks).unwrap();
    assert_accuracy(&acc, &case.accuracy, &format!("{what}: accuracy"));

    let mut ev = backend
        .prepare(job(graph, &players, data, Metric::NegLoss))
        .unwrap();
    let nl = ev.evaluate(Examples::All, &case.masks).unwrap();
    for (m, (g, w)) in nl.iter().zip(&case.neg_loss).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 * w.abs().max(1.0),
            "{what}: neg_loss of coalition {m}: {g} vs {w}"
        );
    }
    let mut ev = backend
        .prepare(job(graph, &players, data, Metric::ClassAccuracy(3)))
        .unwrap();
    let ca = ev.evaluate(Examples::All, &case.masks).unwrap();
    assert_accuracy(
        &ca,
        &case.class_accuracy_3,
        &format!("{what}: class_accuracy_3"),
    );
}

/// Every case, with all coalitions in one chunk and split into about three chunks.
fn check_model(model: &str) {
    if gpu().is_none() {
        return;
    }
    let dir = fixtures().join(model);
    let (graph, data) = load_model(&dir);
    let cases = load_cases(&dir);
    assert!(!cases.is_empty(), "{model}: no cases");
    for case in &cases {
        check_case(model, &graph, &data, case, 1 << 30, "default");
        check_case(model, &graph, &data, case, 0, "three-chunk");
    }
}

/// A budget so small that examples are chunked too (one shared prefix per example chunk).
#[test]
fn cnn_with_example_chunks_matches_pytorch() {
    if gpu().is_none() {
        return;
    }
    let dir = fixtures().join("cnn");
    let (graph, data) = load_model(&dir);
    let cases = load_cases(&dir);
    let case = cases
        .iter()
        .find(|c| c.players.len() == 2)
        .expect("a two-layer case");
    let players = players(&graph, case);
    let (folded, folded_players) = nshap_model::fold::fold_batchnorm(&graph, &players);
    let plan = Plan::build(&folded, &folded_players);
    let budget = 4 * 16 * (plan.shared_row_elements() + 4 * plan.suffix_row_elements()) as u64;
    let limits = ChunkLimits {
        budget_bytes: budget,
        max_binding_bytes: 128 << 20,
        element_bytes: 4,
    };
    let chunks = chunk::choose(&plan, data.len(), case.masks.len(), limits);
    assert!(
        chunks.examples < data.len() && chunks.coalitions < case.masks.len(),
        "{chunks:?}"
    );
    check_case("cnn", &graph, &data, case, budget, "example-chunk");
}

#[test]
fn mlp_matches_pytorch() {
    check_model("mlp");
}

#[test]
fn cnn_matches_pytorch() {
    check_model("cnn");
}

#[test]
fn resnet_matches_pytorch() {
    check_model("resnet");
}

#[test]
fn tiny_resnet18_matches_pytorch() {
    check_model("tiny_resnet18");
}

/// A subset of examples (out of order, chunked) gives the same logits as those rows of the full set.
#[test]
fn example_subsets_match_full_set_rows() {
    let Some(backend) = gpu_with_budget(TINY_BUDGET) else {
        return;
    };
    let dir = fixtures().join("cnn");
    let (graph, data) = load_model(&dir);
    let case = &load_cases(&dir)[0];
    let players = players(&graph, case);
    let classes = graph.num_classes();
    let mut ev = backend
        .prepare(job(&graph, &players, &data, Metric::Accuracy))
        .unwrap();
    let subset = [5u32, 1, 9, 30, 1];
    let got = ev.logits(Examples::Subset(&subset), &case.masks).unwrap();
    for m in 0..case.masks.len() {
        for (k, &e) in subset.iter().enumerate() {
            let want = &case.logits[(m * data.len() + e as usize) * classes..][..classes];
            assert_close(
                &got[(m * subset.len() + k) * classes..][..classes],
                want,
                1e-4,
                1e-4,
                "subset row",
            );
        }
    }
    // The metric on the subset equals the metric recomputed from PyTorch's logits of those rows.
    let acc = ev.evaluate(Examples::Subset(&subset), &case.masks).unwrap();
    for (m, &value) in acc.iter().enumerate() {
        let hits = subset
            .iter()
            .filter(|&&e| {
                let row = &case.logits[(m * data.len() + e as usize) * classes..][..classes];
                nshap_model::metric::argmax(row) == data.labels[e as usize] as usize
            })
            .count();
        assert_eq!(
            value,
            hits as f64 / subset.len() as f64,
            "subset accuracy of coalition {m}"
        );
    }
}

/// f16 storage (f32 accumulation) against PyTorch's f32 logits: the error docs/gpu.md quotes.
#[test]
fn f16_storage_stays_close_to_f32() {
    let Some(gpu) = gpu() else { return };
    if !gpu.adapter_info().shader_f16 {
        eprintln!(
            "SKIPPED f16 test: adapter {} has no SHADER_F16",
            gpu.adapter_info().name
        );
        return;
    }
    let f16 = gpu
        .with_options(nshap_gpu::GpuOptions {
            precision: nshap_gpu::Precision::F16,
            ..Default::default()
        })
        .unwrap();
    for model in ["mlp", "cnn", "resnet", "tiny_resnet18"] {
        let dir = fixtures().join(model);
        let (graph, data) = load_model(&dir);
        let (mut max_abs, mut max_logit, mut flips, mut total) = (0f32, 0f32, 0usize, 0usize);
        for case in load_cases(&dir) {
            let players = players(&graph, &case);
            let mut ev = f16
                .prepare(job(&graph, &players, &data, Metric::Accuracy))
                .unwrap();
            let got = ev.logits(Examples::All, &case.masks).unwrap();
            for (g, w) in got.iter().zip(&case.logits) {
                max_abs = max_abs.max((g - w).abs());
                max_logit = max_logit.max(w.abs());
            }
            let acc = ev.evaluate(Examples::All, &case.masks).unwrap();
            for (a, w) in acc.iter().zip(&case.accuracy) {
                flips += ((a - w).abs() * data.len() as f64).round() as usize;
                total += data.len();
            }
        }
        eprintln!(
            "f16 storage, {model}: max |logit error| {max_abs:.2e} (largest |logit| {max_logit:.1}), \
             net change of correct predictions {flips} of {total} coalition-examples"
        );
        assert!(
            max_abs <= 2e-2 * max_logit.max(1.0),
            "{model}: f16 error {max_abs} too large"
        );
        assert!(
            flips * 100 <= total,
            "{model}: f16 changed {flips} of {total} predictions"
        );
    }
}
