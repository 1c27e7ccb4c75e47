//! Fold eval-mode batchnorm into the conv/linear before it, so backends run one op instead of two.

use crate::graph::{Graph, Node, Op, Source};
use crate::players::{PlayerLayer, Players};

/// Fold every BN whose input is a conv/linear read by nothing else and not itself a player layer
/// (masking must still see the unfolded conv output there). The folded node keeps the BN's name,
/// so player layers on the BN stay valid. Returns the new graph and the players remapped to it.
pub fn fold_batchnorm(graph: &Graph, players: &Players) -> (Graph, Players) {
    let is_player = |i: usize| players.layer_of_node(i).is_some();
    let mut folded_into: Vec<Option<usize>> = vec![None; graph.nodes.len()];
    let mut nodes: Vec<Option<Node>> = graph.nodes.iter().cloned().map(Some).collect();
    for (j, node) in graph.nodes.iter().enumerate() {
        let (Op::BatchNorm(bn), [Source::Node(i)]) = (&node.op, node.inputs.as_slice()) else {
            continue;
        };
        let i = *i;
        if is_player(i) || graph.consumers(i) != [j] {
            continue;
        }
        let mut producer = graph.nodes[i].clone();
        match &mut producer.op {
            Op::Conv2d(conv) => {
                let per_out = conv.weight.len() / conv.out_channels;
                scale_rows(
                    &mut conv.weight,
                    &mut conv.bias,
                    per_out,
                    &bn.scale,
                    &bn.shift,
                );
            }
            Op::Linear(lin) => {
                scale_rows(
                    &mut lin.weight,
                    &mut lin.bias,
                    lin.in_features,
                    &bn.scale,
                    &bn.shift,
                );
            }
            _ => continue,
        }
        producer.name = node.name.clone();
        producer.shape = node.shape;
        nodes[j] = Some(producer);
        nodes[i] = None;
        folded_into[i] = Some(j);
    }
    // Reindex: removed producers vanish; readers of a removed node cannot exist (sole consumer).
    let mut new_index = vec![usize::MAX; graph.nodes.len()];
    let mut kept = Vec::new();
    for (old, n) in nodes.into_iter().enumerate() {
        if let Some(n) = n {
            new_index[old] = kept.len();
            kept.push(n);
        }
    }
    for n in &mut kept {
        for s in &mut n.inputs {
            if let Source::Node(k) = s {
                *k = new_index[*k];
            }
        }
    }
    let layers = players
        .layers()
        .iter()
        .map(|l| PlayerLayer {
            node: new_index[l.node],
            name: l.name.clone(),
            baseline: l.baseline.clone(),
        })
        .collect();
    let players = Players::new(layers)
        .expect("remapping keeps player layers distinct")
        .keep_values_of(players);
    (
        Graph {
            input: graph.input,
            nodes: kept,
        },
        players,
    )
}

fn scale_rows(weight: &mut [f32], bias: &mut [f32], per_out: usize, scale: &[f32], shift: &[f32]) {
    for (o, row) in weight.chunks_exact_mut(per_out).enumerate() {
        row.iter_mut().for_each(|w| *w *= scale[o]);
        bias[o] = bias[o] * scale[o] + shift[o];
    }
}
