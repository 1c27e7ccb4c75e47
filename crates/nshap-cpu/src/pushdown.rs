//! Move each mask past the channel-wise ops that follow its player node.
//!
//! With a per-channel constant baseline, a channel-wise op `f` (activation, batchnorm affine,
//! max/average pooling without padding, global pooling, flatten, identity) commutes with masking:
//! `f(mask(x, b)) = mask(f(x), f(b))`. Moving the mask to the end of such a chain makes the chain
//! shared by every coalition (computed once per example) and leaves less per-coalition work.

use nshap_model::{Graph, Op, PlayerLayer, Players, Source};

/// The baseline after `op`, or `None` when `op` does not commute with channel masking.
fn through(op: &Op, baseline: &[f32]) -> Option<Vec<f32>> {
    match op {
        Op::Activation(a) => Some(baseline.iter().map(|&b| a.apply(b)).collect()),
        Op::BatchNorm(bn) => Some(
            baseline
                .iter()
                .enumerate()
                .map(|(c, &b)| b * bn.scale[c] + bn.shift[c])
                .collect(),
        ),
        // Max of a constant window is the constant (padding is -inf in max pooling).
        Op::MaxPool2d(_) | Op::GlobalAvgPool | Op::Flatten | Op::Identity => {
            Some(baseline.to_vec())
        }
        // Average pooling counts zero padding, which would mix 0 into the constant.
        Op::AvgPool2d(p) if p.padding == (0, 0) => Some(baseline.to_vec()),
        _ => None,
    }
}

/// Players moved as far down their channel-wise chains as possible.
pub fn push_down(graph: &Graph, players: &Players) -> Players {
    let layers = players
        .layers()
        .iter()
        .map(|layer| {
            let (mut node, mut baseline) = (layer.node, layer.baseline.clone());
            loop {
                let consumers = graph.consumers(node);
                let [next] = consumers[..] else { break };
                let n = &graph.nodes[next];
                let is_player = players.layer_of_node(next).is_some();
                if is_player || n.inputs != [Source::Node(node)] {
                    break;
                }
                match through(&n.op, &baseline) {
                    Some(b) => {
                        node = next;
                        baseline = b;
                    }
                    None => break,
                }
            }
            PlayerLayer {
                node,
                name: layer.name.clone(),
                baseline,
            }
        })
        .collect();
    // Two layers can only meet if one was downstream of the other through channel-wise ops,
    // which the loop refuses (it stops before another player node).
    Players::new(layers).unwrap_or_else(|_| players.clone())
}
