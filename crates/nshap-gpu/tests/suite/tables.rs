//! The fast paths of the plan (`plan.rs`): per-example tables for the conv and linear layers that
//! read a player node (`table_sum.wgsl`, with its walk chains), the mask applied on read, and the
//! pushdown. Each case checks the plan chose the path, then holds the fast and the plain backend
//! to the reference on random coalitions and on permutation walks, chunked and not.

use crate::common::*;
use crate::ops::{conv, image, node};
use crate::reference;
use nshap_gpu::plan::{Plan, Read, StepOp};
use nshap_model::{
    Activation, Backend, EvalSet, Examples, Graph, MaskBatch, Metric, Op, Players, Pool2d, Shape,
    Source,
};
use rand::seq::SliceRandom;
use rand::Rng;

/// Walks of `n` players: from the empty coalition, one player added per row in a random order
/// (n + 1 rows), then the same walk back down, so rows differ by one player from the row before
/// (both signs), with a repeated row and a two-player jump between walks.
fn walk_masks(rng: &mut impl Rng, n: usize, walks: usize) -> MaskBatch {
    let mut masks = MaskBatch::new(n);
    for _ in 0..walks {
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(rng);
        let mut row = vec![false; n];
        masks.push_bools(&row);
        for &p in &order {
            row[p] = true;
            masks.push_bools(&row);
        }
        masks.push_bools(&row);
        for &p in order.iter().rev().step_by(2) {
            row[p] = false;
            masks.push_bools(&row);
        }
    }
    masks
}

/// Both backends against the reference on random coalitions and on walks, at a budget that
/// splits coalitions into chunks (so chunks start at offsets that are not multiples of 16) and
/// at the default budget; the metric of the fast backend equals the plain one's.
fn check_paths(what: &str, graph: &Graph, players: &Players, data: &EvalSet, seed: u64) {
    let mut rng = rng(seed);
    let n = players.len();
    let sets = [
        ("random", random_masks(&mut rng, n, 21)),
        ("walks", walk_masks(&mut rng, n, 2)),
    ];
    for (kind, masks) in &sets {
        let want = reference::logits(graph, players, &data.inputs, masks);
        let mut metrics = Vec::new();
        for (path, gpu) in gpu_both() {
            for budget in [None, Some(24_000)] {
                let gpu = match budget {
                    Some(b) => gpu
                        .with_options(nshap_gpu::GpuOptions {
                            memory_budget_bytes: b,
                            ..gpu.options().clone()
                        })
                        .expect("same device"),
                    None => gpu.with_options(gpu.options().clone()).expect("device"),
                };
                let what = format!("{what}, {kind}, {path}, budget {budget:?}");
                let mut ev = gpu
                    .prepare(job(graph, players, data, Metric::Accuracy))
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                let got = ev
                    .logits(Examples::All, masks)
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_close(&got, &want, 1e-4, 1e-5, &what);
                metrics.push(ev.evaluate(Examples::All, masks).expect("evaluate"));
            }
        }
        for m in &metrics[1..] {
            assert_eq!(m, &metrics[0], "{what}, {kind}: metrics of every path");
        }
    }
}

fn plan_of(graph: &Graph, players: &Players) -> Plan {
    Plan::build(graph, players)
}

fn table_sums(plan: &Plan) -> usize {
    plan.suffix_steps
        .iter()
        .filter(|s| matches!(s.op, StepOp::TableSum { .. }))
        .count()
}

fn broadcasts(plan: &Plan) -> usize {
    plan.steps()
        .filter(|s| s.label.ends_with("(mask, broadcast)"))
        .count()
}

/// input [3, 6, 5] -> stem conv to C channels (a player layer of 7 channels sits on a side
/// branch first, so the table layer's players start at global index 7) -> relu (players) ->
/// `body` -> head.
fn with_players(c: usize, body: &dyn Fn(usize) -> Vec<nshap_model::Node>) -> (Graph, Players) {
    let mut nodes = vec![
        node(
            "side",
            conv(3, 7, (1, 1), (1, 1), (0, 0), (1, 1), 1, 1),
            vec![Source::Input],
            image(7, 6, 5),
        ),
        node(
            "stem",
            conv(3, c, (3, 3), (1, 1), (1, 1), (1, 1), 1, 2),
            vec![Source::Input],
            image(c, 6, 5),
        ),
        node(
            "relu",
            Op::Activation(Activation::Relu),
            vec![Source::Node(1)],
            image(c, 6, 5),
        ),
    ];
    nodes.extend(body(nodes.len()));
    let graph = Graph {
        input: image(3, 6, 5),
        nodes,
    };
    let mut rng = rng(c as u64);
    let players = players_on(&graph, &["side", "relu"], &mut rng);
    (graph, players)
}

/// relu (`c` players) -> conv 3x3 pad 1 -> relu (fused) -> add of the side branch (so its
/// players matter too, through a 1x1 conv) -> pool -> head.
fn conv_case(c: usize) -> (Graph, Players) {
    with_players(c, &|at| {
        vec![
            node(
                "conv",
                conv(c, 8, (3, 3), (1, 1), (1, 1), (1, 1), 1, 3),
                vec![Source::Node(at - 1)],
                image(8, 6, 5),
            ),
            node(
                "act",
                Op::Activation(Activation::Relu),
                vec![Source::Node(at)],
                image(8, 6, 5),
            ),
            node(
                "side8",
                conv(7, 8, (1, 1), (1, 1), (0, 0), (1, 1), 1, 4),
                vec![Source::Node(0)],
                image(8, 6, 5),
            ),
            node(
                "sum",
                Op::Add,
                vec![Source::Node(at + 1), Source::Node(at + 2)],
                image(8, 6, 5),
            ),
            node(
                "gap",
                Op::GlobalAvgPool,
                vec![Source::Node(at + 3)],
                Shape::Features(8),
            ),
            node(
                "fc",
                random_linear(8, 4, 5),
                vec![Source::Node(at + 4)],
                Shape::Features(4),
            ),
        ]
    })
}

#[test]
fn a_conv_after_the_players_is_a_table_sum_and_matches_on_walks() {
    // 40 players: across a mask word, starting at global index 7.
    let (graph, players) = conv_case(40);
    let plan = plan_of(&graph, &players);
    assert_eq!(table_sums(&plan), 1, "{:?}", plan.suffix_steps);
    let sum = plan
        .suffix_steps
        .iter()
        .find(|s| matches!(s.op, StepOp::TableSum { .. }))
        .unwrap();
    assert_eq!(sum.act, Some(Activation::Relu), "relu fused into the sum");
    // Both player layers are read only by tables or masked reads: no masked copy.
    assert_eq!(
        broadcasts(&plan),
        0,
        "{:?}",
        plan.steps().collect::<Vec<_>>()
    );
    assert!(plan
        .steps()
        .any(|s| s.label == "side8" && s.read == Read::Masked { offset: 0 }));
    assert!(plan.choices.iter().any(|c| c.starts_with("conv: table")));
    let data = random_data(&graph, 3, &mut rng(9));
    check_paths("conv table", &graph, &players, &data, 10);
}

#[test]
fn a_grouped_strided_conv_table_matches() {
    // 12 players -> conv 3x3, stride 2, padding 1, 3 groups -> relu -> head.
    let c = 12;
    let (graph, players) = with_players(c, &|at| {
        vec![
            node(
                "conv",
                conv(c, 6, (3, 3), (2, 2), (1, 1), (1, 1), 3, 6),
                vec![Source::Node(at - 1)],
                image(6, 3, 3),
            ),
            node(
                "gap",
                Op::GlobalAvgPool,
                vec![Source::Node(at)],
                Shape::Features(6),
            ),
            node(
                "fc",
                random_linear(6, 3, 7),
                vec![Source::Node(at + 1)],
                Shape::Features(3),
            ),
        ]
    });
    // The side layer is read by nothing: its players are dummies, which the sum must ignore.
    let plan = plan_of(&graph, &players);
    assert_eq!(table_sums(&plan), 1);
    let data = random_data(&graph, 4, &mut rng(11));
    check_paths("grouped conv table", &graph, &players, &data, 12);
}

#[test]
fn a_linear_layer_after_pool_and_flatten_is_a_table_and_pushdown_passes_the_pool() {
    // relu (players) -> maxpool 2x2 -> flatten -> linear: the mask moves past the pool (shared
    // now), the flatten spreads each channel over 6 features, and the linear layer is a table.
    let c = 5;
    let (graph, players) = with_players(c, &|at| {
        vec![
            node(
                "pool",
                Op::MaxPool2d(Pool2d {
                    kernel: (2, 2),
                    stride: (2, 2),
                    padding: (0, 0),
                    dilation: (1, 1),
                    ceil_mode: true,
                    count_include_pad: true,
                }),
                vec![Source::Node(at - 1)],
                image(c, 3, 3),
            ),
            node(
                "flat",
                Op::Flatten,
                vec![Source::Node(at)],
                Shape::Features(c * 9),
            ),
            node(
                "fc",
                random_linear(c * 9, 4, 8),
                vec![Source::Node(at + 1)],
                Shape::Features(4),
            ),
        ]
    });
    let plan = plan_of(&graph, &players);
    assert_eq!(table_sums(&plan), 1, "{:?}", plan.suffix_steps);
    assert!(
        plan.shared_steps.iter().any(|s| s.label == "pool"),
        "the pool is shared after the pushdown"
    );
    assert!(plan.choices.iter().any(|c| c.contains("mask moved")));
    let data = random_data(&graph, 3, &mut rng(13));
    check_paths("linear table", &graph, &players, &data, 14);
}

#[test]
fn a_1x1_conv_reads_the_mask_and_a_residual_keeps_its_masked_copy() {
    // relu (players) -> 1x1 conv (mask on read) and relu -> add (needs the masked copy).
    let c = 6;
    let (graph, players) = with_players(c, &|at| {
        vec![
            node(
                "proj",
                conv(c, c, (1, 1), (1, 1), (0, 0), (1, 1), 1, 15),
                vec![Source::Node(at - 1)],
                image(c, 6, 5),
            ),
            node(
                "sum",
                Op::Add,
                vec![Source::Node(at), Source::Node(at - 1)],
                image(c, 6, 5),
            ),
            node(
                "gap",
                Op::GlobalAvgPool,
                vec![Source::Node(at + 1)],
                Shape::Features(c),
            ),
            node(
                "fc",
                random_linear(c, 3, 16),
                vec![Source::Node(at + 2)],
                Shape::Features(3),
            ),
        ]
    });
    let plan = plan_of(&graph, &players);
    assert_eq!(table_sums(&plan), 0);
    assert!(plan
        .steps()
        .any(|s| s.label == "proj" && s.read == Read::Masked { offset: 7 }));
    assert_eq!(broadcasts(&plan), 1, "the add reads the masked copy");
    let data = random_data(&graph, 3, &mut rng(17));
    check_paths("masked read", &graph, &players, &data, 18);
}

#[test]
fn the_cost_model_counts_one_add_per_output_along_walks() {
    let (graph, players) = conv_case(40);
    let costs = nshap_gpu::cost_per_coalition_example(&graph, &players);
    let sum = costs.iter().find(|c| c.label == "act").unwrap();
    let out = 8 * 30;
    assert_eq!(sum.kernel, "table_sum");
    assert!(!sum.shared);
    // A GEMM of the mask with the table: one add per channel per output, 9x fewer than the
    // conv's 2 x 9 x 40 FLOPs per output; one add per output along a walk (plus the fused relu).
    assert_eq!(sum.flops, out * 40 + out);
    assert_eq!(sum.walk_flops, out + out);
    let build = costs.iter().find(|c| c.label == "conv (table)").unwrap();
    assert!(build.shared);
    assert_eq!(build.flops, 2 * 40 * out * 9);
}
