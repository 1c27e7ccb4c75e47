//! `--players` items: exact names, globs, `KIND:GLOB`, `filters` and `all`, resolved in graph
//! order, deduplicated, with errors that suggest near names.

use nshap_model::players::{classifier_convs, find_player_nodes, glob_match};
use nshap_model::{load_arch, load_model, Graph, PlayerLayer, Players};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn write_tensors(path: &Path, tensors: &[(String, Vec<usize>)]) {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, shape)| {
            let n: usize = shape.iter().product();
            (0..n)
                .flat_map(|i| (((i % 7) as f32 - 3.0) * 0.05).to_le_bytes())
                .collect()
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((n, s), b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn resnet18(dir: &Path) -> Graph {
    let w = dir.join("r18.safetensors");
    std::fs::write(
        &w,
        nshap_model::resnet::synthetic_state_dict("resnet18", 16, 10, 3).unwrap(),
    )
    .unwrap();
    load_arch("resnet18", &w, [3, 32, 32]).unwrap().0
}

/// A SqueezeNet-shaped net: features convs, then a classifier conv whose output is pooled into
/// the logits without another conv or linear.
fn squeezenet_like(dir: &Path) -> Graph {
    let spec = r#"{"format": "nshap.model.v1", "input": [3, 8, 8], "nodes": [
      {"name": "features.0", "op": "conv2d", "weight": "features.0.weight", "bias": "features.0.bias"},
      {"name": "features.1", "op": "relu"},
      {"name": "features.3.squeeze", "op": "conv2d", "weight": "features.3.squeeze.weight"},
      {"name": "features.3.squeeze_activation", "op": "relu"},
      {"name": "features.3.expand1x1", "op": "conv2d", "weight": "features.3.expand1x1.weight", "inputs": ["features.3.squeeze_activation"]},
      {"name": "features.3.expand3x3", "op": "conv2d", "weight": "features.3.expand3x3.weight", "padding": 1, "inputs": ["features.3.squeeze_activation"]},
      {"name": "features.3.cat", "op": "concat", "inputs": ["features.3.expand1x1", "features.3.expand3x3"]},
      {"name": "classifier.1", "op": "conv2d", "weight": "classifier.1.weight", "bias": "classifier.1.bias"},
      {"name": "classifier.2", "op": "relu"},
      {"name": "classifier.3", "op": "global_avgpool"},
      {"name": "flatten", "op": "flatten"}]}"#;
    let s = dir.join("squeeze.json");
    std::fs::write(&s, spec).unwrap();
    let w = dir.join("squeeze.safetensors");
    let t = |n: &str, s: &[usize]| (n.to_string(), s.to_vec());
    write_tensors(
        &w,
        &[
            t("features.0.weight", &[8, 3, 3, 3]),
            t("features.0.bias", &[8]),
            t("features.3.squeeze.weight", &[4, 8, 1, 1]),
            t("features.3.expand1x1.weight", &[6, 4, 1, 1]),
            t("features.3.expand3x3.weight", &[6, 4, 3, 3]),
            t("classifier.1.weight", &[5, 12, 1, 1]),
            t("classifier.1.bias", &[5]),
        ],
    );
    load_model(&s, &w).unwrap()
}

fn names(g: &Graph, nodes: &[usize]) -> Vec<String> {
    nodes.iter().map(|&i| g.nodes[i].name.clone()).collect()
}

fn items(list: &str) -> Vec<String> {
    list.split(',').map(str::to_owned).collect()
}

fn err(g: &Graph, list: &str) -> String {
    find_player_nodes(g, &items(list))
        .expect_err("expected an error")
        .to_string()
}

#[test]
fn globs_match_any_run_of_characters_including_dots() {
    assert!(glob_match("layer3.*.relu2", "layer3.0.relu2"));
    assert!(glob_match("layer*relu2", "layer3.1.relu2"));
    assert!(glob_match("*", "a.b.c"));
    assert!(glob_match("layer?.0.conv1", "layer4.0.conv1"));
    assert!(!glob_match("layer3.*.relu2", "layer3.0.relu1"));
    assert!(!glob_match("layer3.*", "layer4.0.relu2"));
    assert!(glob_match("a*b*c", "axxbyyc"));
    assert!(!glob_match("a*b*c", "axxbyy"));
}

#[test]
fn patterns_on_a_resnet18() {
    let dir = tempfile::tempdir().unwrap();
    let g = resnet18(dir.path());
    let found = find_player_nodes(&g, &items("layer3.*.relu2")).unwrap();
    assert_eq!(names(&g, &found), ["layer3.0.relu2", "layer3.1.relu2"]);
    // Kinds: conv/conv2d, bn/batchnorm, relu, linear; graph order.
    let convs = find_player_nodes(&g, &items("conv:*")).unwrap();
    assert_eq!(convs.len(), 20);
    assert_eq!(find_player_nodes(&g, &items("conv2d:*")).unwrap(), convs);
    assert!(convs.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(find_player_nodes(&g, &items("bn:*")).unwrap().len(), 20);
    assert_eq!(
        find_player_nodes(&g, &items("batchnorm:layer1.*")).unwrap(),
        find_player_nodes(&g, &items("bn:layer1.*")).unwrap()
    );
    let relus = find_player_nodes(&g, &items("relu:layer4.*")).unwrap();
    assert_eq!(
        names(&g, &relus),
        [
            "layer4.0.relu1",
            "layer4.0.relu2",
            "layer4.1.relu1",
            "layer4.1.relu2"
        ]
    );
    // The fc is the output node: never selected by a pattern.
    let e = err(&g, "linear:*");
    assert!(e.contains("\"linear:*\"") && e.contains("fc"), "{e}");
    // filters = every conv (no classifier conv in a ResNet), all = convs + non-output linears.
    assert_eq!(find_player_nodes(&g, &items("filters")).unwrap(), convs);
    assert_eq!(find_player_nodes(&g, &items("all")).unwrap(), convs);
    assert!(classifier_convs(&g).iter().all(|c| !c));
    // Exact names keep the order given; items overlap: deduplicated at first place.
    let found = find_player_nodes(&g, &items("layer2.0.relu2,relu,layer*.0.relu2")).unwrap();
    assert_eq!(
        names(&g, &found),
        [
            "layer2.0.relu2",
            "relu",
            "layer1.0.relu2",
            "layer3.0.relu2",
            "layer4.0.relu2"
        ]
    );
}

#[test]
fn filters_leave_out_classifier_convs() {
    let dir = tempfile::tempdir().unwrap();
    let g = squeezenet_like(dir.path());
    let filters = find_player_nodes(&g, &items("filters")).unwrap();
    assert_eq!(
        names(&g, &filters),
        [
            "features.0",
            "features.3.squeeze",
            "features.3.expand1x1",
            "features.3.expand3x3"
        ]
    );
    let convs = find_player_nodes(&g, &items("conv:*")).unwrap();
    assert_eq!(names(&g, &convs).last().unwrap(), "classifier.1");
    assert_eq!(find_player_nodes(&g, &items("all")).unwrap(), convs);
    // Exact names are still anything but the output.
    let one = find_player_nodes(&g, &items("classifier.1")).unwrap();
    assert_eq!(names(&g, &one), ["classifier.1"]);
}

#[test]
fn patterns_that_match_nothing_name_the_pattern_and_suggest() {
    let dir = tempfile::tempdir().unwrap();
    let g = resnet18(dir.path());
    let e = err(&g, "layer3.*.relu");
    assert!(
        e.contains("\"layer3.*.relu\"") && e.contains("matches no node") && e.contains("layer3."),
        "{e}"
    );
    // 69 nodes: the closest ~10 and the count, not the whole list.
    assert!(e.contains("of the model's 69 nodes"), "{e}");
    assert!(!e.contains("layer1.0.conv1"), "{e}");
    let e = err(&g, "layer3.0.relu");
    assert!(
        e.contains("unknown node \"layer3.0.relu\"")
            && e.contains("layer3.0.relu1")
            && e.contains("layer3.0.relu2")
            && e.contains("69 nodes"),
        "{e}"
    );
    assert!(e.split(", ").count() <= 12, "{e}");
    let e = err(&g, "maxpool2d:layer*");
    assert!(e.contains("matches no maxpool2d node"), "{e}");
    let e = err(&g, "convolution:*");
    assert!(
        e.contains("unknown op kind \"convolution\"") && e.contains("conv"),
        "{e}"
    );
    let e = err(&g, "relu2,,relu");
    assert!(
        e.contains("unknown node \"relu2\"") || e.contains("empty"),
        "{e}"
    );
    let e = err(&g, "conv");
    assert!(e.contains("conv2d:*"), "{e}");
    let e = err(&g, "filters,bogus*");
    assert!(e.contains("\"bogus*\""), "{e}");
}

#[test]
fn small_graphs_keep_the_full_node_list_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let g = squeezenet_like(dir.path());
    let e = err(&g, "conv9");
    assert!(
        e.contains("unknown node \"conv9\"; the model's nodes are: features.0, features.1"),
        "{e}"
    );
}

/// 94 conv player layers, 17,216 players (Inception-v3's count): resolving is instant.
#[test]
fn ninety_four_layers_and_17216_players_resolve_fast() {
    let dir = tempfile::tempdir().unwrap();
    let (spec, weights) = wide_model(dir.path());
    let g = load_model(&spec, &weights).unwrap();
    let t = Instant::now();
    let nodes = find_player_nodes(&g, &items("filters")).unwrap();
    let layers: Vec<PlayerLayer> = nodes
        .iter()
        .map(|&n| PlayerLayer {
            node: n,
            name: g.nodes[n].name.clone(),
            baseline: vec![0.0; g.nodes[n].shape.channels()],
        })
        .collect();
    let players = Players::new(layers).unwrap();
    let labels: Vec<(String, usize)> = (0..players.len())
        .map(|p| {
            let (n, c) = players.label(p);
            (n.to_owned(), c)
        })
        .collect();
    let took = t.elapsed();
    assert_eq!(nodes.len(), 94);
    assert_eq!(players.len(), 17_216);
    assert_eq!(labels[17_215], ("mixed.93.conv".to_string(), 196));
    assert!(took.as_secs_f64() < 0.5, "took {took:?}");
    assert_eq!(find_player_nodes(&g, &items("conv:*")).unwrap(), nodes);
    assert_eq!(
        find_player_nodes(&g, &items("mixed.1*.conv"))
            .unwrap()
            .len(),
        11
    );
}

/// 94 parallel convs of the input (93 x 183 channels + 197 = 17,216), concatenated, pooled, and
/// a linear classifier: small weights, many players.
pub fn wide_model(dir: &Path) -> (PathBuf, PathBuf) {
    let mut nodes = Vec::new();
    let mut tensors = Vec::new();
    let mut cat = Vec::new();
    for i in 0..94 {
        let c = if i == 93 { 197 } else { 183 };
        let name = format!("mixed.{i}.conv");
        nodes.push(format!(
            r#"{{"name": "{name}", "op": "conv2d", "weight": "{name}.weight", "inputs": ["input"]}}"#
        ));
        tensors.push((format!("{name}.weight"), vec![c, 3, 1, 1]));
        cat.push(format!("\"{name}\""));
    }
    nodes.push(format!(
        r#"{{"name": "cat", "op": "concat", "inputs": [{}]}}"#,
        cat.join(", ")
    ));
    nodes.push(r#"{"name": "pool", "op": "global_avgpool"}"#.into());
    nodes.push(r#"{"name": "flatten", "op": "flatten"}"#.into());
    nodes
        .push(r#"{"name": "fc", "op": "linear", "weight": "fc.weight", "bias": "fc.bias"}"#.into());
    tensors.push(("fc.weight".into(), vec![10, 17_216]));
    tensors.push(("fc.bias".into(), vec![10]));
    let spec = format!(
        r#"{{"format": "nshap.model.v1", "input": [3, 2, 2], "nodes": [{}]}}"#,
        nodes.join(",\n")
    );
    let s = dir.join("wide.json");
    std::fs::write(&s, spec).unwrap();
    let w = dir.join("wide.safetensors");
    write_tensors(&w, &tensors);
    (s, w)
}
