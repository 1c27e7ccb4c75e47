//! Move each mask past the channel-wise ops that follow its player node.
//!
//! With a per-channel constant baseline, a channel-wise op `f` commutes with masking:
//! `f(mask(x, b)) = mask(f(x), f(b))`, where `f(b)` is what `f` makes of a channel that is `b`
//! at every position. Moving the mask to the end of such a chain makes the chain shared by every
//! coalition (computed once per example) and leaves less per-coalition work.
//!
//! Ops that commute: every activation, PReLU and `Scale` (per-channel maps), the batchnorm
//! affine, max pooling of any kind (the max of a constant window is the constant; padding never
//! counts), average pooling whose divisor counts only in-bounds taps (no padding, or
//! `count_include_pad` off), adaptive and global average pooling, flatten and identity.
//! Ops that do not: layer norm (mixes channels), `Mul`, `Add` and `Concat` (several inputs),
//! `Slice` and `ChannelShuffle` (they move channels: the players would have to be renumbered),
//! linear and conv.
//!
//! Both backends use it: the CPU also moves masks through a flatten that spreads a channel over
//! many features (its tables know a player's feature block); the GPU stops there, because its
//! kernels index players by the channel of the tensor the mask is applied to.

use crate::{Graph, Op, PlayerLayer, Players, Source};

/// `params[c]` for each player channel, when the op's per-channel parameters are indexed by the
/// same channels as the players (not after a flatten, where one player spans many features).
fn per_channel<'a>(params: &'a [f32], baseline: &[f32]) -> Option<&'a [f32]> {
    (params.len() == baseline.len()).then_some(params)
}

/// The baseline after `op`, or `None` when `op` does not commute with channel masking.
fn through(op: &Op, baseline: &[f32]) -> Option<Vec<f32>> {
    let map = |params: &[f32], f: &dyn Fn(f32, f32) -> f32| {
        per_channel(params, baseline)
            .map(|p| baseline.iter().zip(p).map(|(&b, &w)| f(b, w)).collect())
    };
    match op {
        Op::Activation(a) => Some(baseline.iter().map(|&b| a.apply(b)).collect()),
        Op::BatchNorm(bn) => {
            let scale = per_channel(&bn.scale, baseline)?;
            let shift = per_channel(&bn.shift, baseline)?;
            let after = baseline.iter().zip(scale).zip(shift);
            Some(after.map(|((&b, &s), &t)| b * s + t).collect())
        }
        Op::Prelu(slopes) => map(slopes, &|b, a| if b > 0.0 { b } else { a * b }),
        Op::Scale(w) => map(w, &|b, w| b * w),
        // Max of a constant window is the constant (padding is never a candidate).
        Op::MaxPool2d(_)
        | Op::GlobalAvgPool
        | Op::AdaptiveAvgPool2d
        | Op::Flatten
        | Op::Identity => Some(baseline.to_vec()),
        // A divisor counting padding (zeros) would mix 0 into the constant; with padding 0 the
        // divisor is the number of in-bounds taps, ceil mode included.
        Op::AvgPool2d(p) if p.padding == (0, 0) || !p.count_include_pad => Some(baseline.to_vec()),
        Op::AvgPool2d(_)
        | Op::Linear(_)
        | Op::Conv2d(_)
        | Op::Add
        | Op::Mul
        | Op::Concat
        | Op::Slice { .. }
        | Op::ChannelShuffle { .. }
        | Op::LayerNorm(_)
        | Op::RmsNorm(_)
        | Op::Embedding(_)
        | Op::Attention(_)
        | Op::SelectPosition => None,
        // A head spreads over `d_head` channels after it: the players would have to be renumbered.
        Op::MergeHeads => None,
    }
}

/// Where a pushed mask may land.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flatten {
    /// Through every flatten (a player then spans `features / channels` features).
    Through,
    /// Only through a flatten that keeps one feature per channel (of a `[C, 1, 1]` tensor).
    KeepChannels,
}

/// Players moved as far down their channel-wise chains as possible.
pub fn push_down(graph: &Graph, players: &Players, flatten: Flatten) -> Players {
    let layers = players
        .layers()
        .iter()
        .enumerate()
        .map(|(k, layer)| {
            let (mut node, mut baseline) = (layer.node, layer.baseline.clone());
            // Values beyond one constant per channel stay at their node.
            while players.values(k).is_none() {
                let consumers = graph.consumers(node);
                let [next] = consumers[..] else { break };
                let n = &graph.nodes[next];
                let is_player = players.layer_of_node(next).is_some();
                if is_player || n.inputs != [Source::Node(node)] {
                    break;
                }
                let spreads = n.shape.channels() != baseline.len();
                if flatten == Flatten::KeepChannels && spreads {
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
    Players::new(layers)
        .map(|p| p.keep_values_of(players))
        .unwrap_or_else(|_| players.clone())
}
