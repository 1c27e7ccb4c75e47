//! Which nodes depend on the coalition and which are shared by all coalitions.
//!
//! A node is *dependent* when it is a player node or reads a dependent node; everything else is
//! computed once per example and shared. A player node whose inputs are all shared is a
//! *boundary*: its unmasked value is shared too, and each coalition only applies its mask to it.

use nshap_model::fold::fold_batchnorm;
use nshap_model::{BackendError, Graph, Op, Players, Source};

pub struct Plan {
    pub graph: Graph,
    pub players: Players,
    pub dependent: Vec<bool>,
    pub boundary: Vec<bool>,
    /// Shared values the dependent stage reads (kept in the shared cache).
    pub retained: Vec<bool>,
    /// Index of the last node that reads each node (for freeing buffers early).
    pub last_use: Vec<usize>,
    /// Largest dependent activation (floats per example), for sizing work items.
    pub max_dependent_numel: usize,
    /// Floats per example the shared cache keeps.
    pub retained_numel: usize,
    /// Set when the only per-coalition work is one player layer feeding the output linear layer.
    pub linear_suffix: Option<LinearSuffix>,
}

/// The output is `linear(mask(x))`: logits = `W b_full + bias + sum over present channels c of
/// W[:, c] (x_c - b_c)`, so a coalition costs (present channels x classes) adds per example
/// given a per-example table of each channel's contribution.
pub struct LinearSuffix {
    /// The masked node (a boundary player, shared unmasked value).
    pub player_node: usize,
    /// The output node.
    pub linear_node: usize,
    /// `bias + W * baseline` (the logits when every player is absent).
    pub base_logits: Vec<f32>,
}

impl Plan {
    pub fn new(graph: &Graph, players: &Players) -> Result<Plan, BackendError> {
        Plan::build(graph, players, true)
    }

    /// The plan without moving masks past channel-wise ops: every op after a player node runs
    /// per coalition. Slower, and the reference the pushed-down plan is tested against.
    #[cfg(test)]
    pub fn without_pushdown(graph: &Graph, players: &Players) -> Result<Plan, BackendError> {
        Plan::build(graph, players, false)
    }

    fn build(graph: &Graph, players: &Players, pushdown: bool) -> Result<Plan, BackendError> {
        let (graph, players) = fold_batchnorm(graph, players);
        let players = if pushdown {
            crate::pushdown::push_down(&graph, &players)
        } else {
            players
        };
        let n = graph.nodes.len();
        let mut dependent = vec![false; n];
        let mut boundary = vec![false; n];
        for (i, node) in graph.nodes.iter().enumerate() {
            let reads_dependent = node
                .inputs
                .iter()
                .any(|s| matches!(s, Source::Node(j) if dependent[*j]));
            let is_player = players.layer_of_node(i).is_some();
            dependent[i] = is_player || reads_dependent;
            boundary[i] = is_player && !reads_dependent;
        }
        if !dependent[n - 1] {
            let names: Vec<&str> = players.layers().iter().map(|l| l.name.as_str()).collect();
            return Err(BackendError::Invalid(format!(
                "player layer(s) {} do not reach the output node {:?}",
                names.join(", "),
                graph.nodes[n - 1].name
            )));
        }
        let mut retained = boundary.clone();
        let mut last_use = vec![0; n];
        for (i, node) in graph.nodes.iter().enumerate() {
            for s in &node.inputs {
                if let Source::Node(j) = *s {
                    last_use[j] = i;
                    if dependent[i] && !dependent[j] {
                        retained[j] = true;
                    }
                }
            }
        }
        last_use[n - 1] = n;
        let max_dependent_numel = (0..n)
            .filter(|&i| dependent[i])
            .map(|i| graph.nodes[i].shape.numel())
            .max()
            .unwrap_or(1);
        let retained_numel = (0..n)
            .filter(|&i| retained[i])
            .map(|i| graph.nodes[i].shape.numel())
            .sum();
        let linear_suffix = linear_suffix(&graph, &players, &dependent, &boundary);
        Ok(Plan {
            graph,
            players,
            dependent,
            boundary,
            retained,
            last_use,
            max_dependent_numel,
            retained_numel,
            linear_suffix,
        })
    }
}

fn linear_suffix(
    graph: &Graph,
    players: &Players,
    dependent: &[bool],
    boundary: &[bool],
) -> Option<LinearSuffix> {
    let [layer] = players.layers() else {
        return None;
    };
    let last = graph.nodes.len() - 1;
    let Op::Linear(lin) = &graph.nodes[last].op else {
        return None;
    };
    let p = layer.node;
    let only_two = (0..graph.nodes.len())
        .filter(|&i| dependent[i])
        .eq([p, last]);
    if !only_two || !boundary[p] || graph.nodes[last].inputs != [Source::Node(p)] {
        return None;
    }
    let block = lin.in_features / layer.channels();
    let mut base_logits = lin.bias.clone();
    for (o, out) in base_logits.iter_mut().enumerate() {
        let row = &lin.weight[o * lin.in_features..(o + 1) * lin.in_features];
        *out += row
            .iter()
            .enumerate()
            .map(|(k, w)| w * layer.baseline[k / block])
            .sum::<f32>();
    }
    Some(LinearSuffix {
        player_node: p,
        linear_node: last,
        base_logits,
    })
}
