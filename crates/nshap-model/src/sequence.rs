//! Building the ops of sequence models (language models): token embedding, causal attention,
//! merging heads and reading one position.
//!
//! A sequence of `T` positions of `D` features is an ordinary `[D, 1, T]` activation, channel-major
//! like every other: layer norm over the channels is the per-token layer norm, a 1x1 convolution
//! is the per-token linear layer, and a player removes one feature (an MLP neuron) or one head at
//! every position.

use crate::build::{shape_of, Ctx};
use crate::error::ModelError;
use crate::graph::{Attention, Embedding, Node, Op, Source};
use crate::shape::Shape;

/// `embedding`: reads the token ids of the graph input; output `[D, 1, T]`.
pub(crate) fn embedding(
    ctx: &Ctx<'_>,
    inputs: &[Source],
    graph_input: Shape,
) -> Result<(Op, Shape), ModelError> {
    let ns = ctx.spec;
    let tokens = match (inputs, graph_input) {
        ([Source::Input], Shape::Features(n)) if n >= 2 => n - 1,
        _ => {
            return Err(ctx
                .err("reads the token ids: it must read \"input\" of a model with \"tokens\" set"))
        }
    };
    let wname = ctx.name(&ns.weight, "weight")?;
    let wshape = ctx.tensors.shape(wname)?;
    let [vocab, dim] = wshape[..] else {
        return Err(ctx.err(format!(
            "weight {wname:?}: expected shape [vocab, dim], found {wshape:?}"
        )));
    };
    let (weight, _) = ctx.tensors.f32(wname, Some(&[vocab, dim]))?;
    let positions = match &ns.position_weight {
        None => None,
        Some(pname) => {
            let pshape = ctx.tensors.shape(pname)?;
            match pshape[..] {
                [p, d] if d == dim && p >= tokens => {
                    let (all, _) = ctx.tensors.f32(pname, Some(&[p, d]))?;
                    Some(all[..tokens * dim].to_vec())
                }
                _ => {
                    return Err(ctx.err(format!(
                        "position_weight {pname:?}: expected shape [at least {tokens} positions, {dim}], found {pshape:?}"
                    )))
                }
            }
        }
    };
    let op = Op::Embedding(Embedding {
        vocab,
        dim,
        tokens,
        weight,
        positions,
    });
    Ok((
        op,
        Shape::Image {
            c: dim,
            h: 1,
            w: tokens,
        },
    ))
}

/// The `(channels, T)` of a `[channels, 1, T]` sequence.
fn sequence(ctx: &Ctx<'_>, shape: Shape, what: &str) -> Result<(usize, usize), ModelError> {
    match shape {
        Shape::Image { c, h: 1, w } => Ok((c, w)),
        other => Err(ctx.err(format!(
            "{what}: expected a [channels, 1, T] sequence, found {other}"
        ))),
    }
}

/// `attention`: one fused `[(heads + 2 kv_heads) d_head, 1, T]` input or three (`q`, `k`, `v`);
/// output `[heads, d_head, T]`.
pub(crate) fn attention(
    ctx: &Ctx<'_>,
    inputs: &[Source],
    nodes: &[Node],
    graph_input: Shape,
) -> Result<(Op, Shape), ModelError> {
    let ns = ctx.spec;
    let heads = ctx.field(ns.heads, "heads")?;
    let kv_heads = ns.kv_heads.unwrap_or(heads);
    if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 {
        return Err(ctx.err(format!(
            "heads = {heads} must be a positive multiple of kv_heads = {kv_heads}"
        )));
    }
    let shapes: Vec<Shape> = inputs
        .iter()
        .map(|&s| shape_of(s, nodes, graph_input))
        .collect();
    let dims: Vec<(usize, usize)> = shapes
        .iter()
        .enumerate()
        .map(|(k, &s)| sequence(ctx, s, &format!("input {k}")))
        .collect::<Result<_, _>>()?;
    let t = dims[0].1;
    if dims.iter().any(|d| d.1 != t) {
        return Err(ctx.err(format!(
            "inputs must have the same number of positions, found {dims:?}"
        )));
    }
    let d_head = match dims[..] {
        [(fused, _)] => {
            let parts = heads + 2 * kv_heads;
            if fused % parts != 0 {
                return Err(ctx.err(format!(
                    "the fused input has {fused} channels, not a multiple of heads + 2 kv_heads = {parts}"
                )));
            }
            fused / parts
        }
        [(q, _), (k, _), (v, _)] => {
            if q % heads != 0 || k != v || k * heads != q * kv_heads {
                return Err(ctx.err(format!(
                    "q, k, v have {q}, {k}, {v} channels: expected heads x d_head = {heads} x d and kv_heads x d = {kv_heads} x d for both k and v"
                )));
            }
            q / heads
        }
        _ => unreachable!("input count checked"),
    };
    if d_head == 0 {
        return Err(ctx.err("d_head is 0"));
    }
    let rope_theta = match ns.rope_theta {
        None => None,
        Some(th) if th.is_finite() && th > 0.0 => {
            if d_head % 2 != 0 {
                return Err(ctx.err(format!(
                    "a rotary embedding needs an even d_head, found {d_head}"
                )));
            }
            Some(th as f32)
        }
        Some(th) => {
            return Err(ctx.err(format!(
                "field \"rope_theta\" must be a positive number, found {th}"
            )))
        }
    };
    let rope_scaling = match (ns.rope_scaling, rope_theta) {
        (None, _) => None,
        (Some(_), None) => return Err(ctx.err("\"rope_scaling\" needs \"rope_theta\"")),
        (Some(s), Some(_)) => {
            let ok = [
                s.factor,
                s.low_freq_factor,
                s.high_freq_factor,
                s.original_max_position_embeddings,
            ]
            .iter()
            .all(|v| v.is_finite() && *v > 0.0)
                && s.high_freq_factor > s.low_freq_factor;
            if !ok {
                return Err(ctx.err(format!(
                    "field \"rope_scaling\": every value must be positive and high_freq_factor above low_freq_factor, found {s:?}"
                )));
            }
            Some(s)
        }
    };
    Ok((
        Op::Attention(Attention {
            heads,
            kv_heads,
            d_head,
            rope_theta,
            rope_scaling,
        }),
        Shape::Image {
            c: heads,
            h: d_head,
            w: t,
        },
    ))
}

/// `merge_heads`: `[heads, d_head, T] -> [heads * d_head, 1, T]`.
pub(crate) fn merge_heads(ctx: &Ctx<'_>, in_shape: Shape) -> Result<(Op, Shape), ModelError> {
    match in_shape {
        Shape::Image { c, h, w } => Ok((Op::MergeHeads, Shape::Image { c: c * h, h: 1, w })),
        other => Err(ctx.err(format!(
            "expects an attention output [heads, d_head, T], found {other}"
        ))),
    }
}

/// `select_position`: `[D, 1, T]` and the graph input -> `[D]` at the input's read position.
pub(crate) fn select_position(
    ctx: &Ctx<'_>,
    inputs: &[Source],
    in_shape: Shape,
) -> Result<(Op, Shape), ModelError> {
    let (d, _) = sequence(ctx, in_shape, "input 0")?;
    if inputs[1] != Source::Input {
        return Err(ctx.err("its second input must be \"input\" (which holds the read position)"));
    }
    Ok((Op::SelectPosition, Shape::Features(d)))
}
