//! Players: the channels/features of chosen nodes, and what a removed one is replaced by.

use crate::error::ModelError;
use crate::graph::{Graph, Op, Source};
use std::str::FromStr;

/// What a removed player's channel becomes (a per-channel constant, for every example and position).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Baseline {
    /// The channel outputs 0 (nshap's default).
    #[default]
    Zero,
    /// The channel's mean activation over the eval set (mean ablation).
    Mean,
    /// The published Neuron Shapley code's removal: a conv/BN channel outputs its BN bias
    /// (so after a ReLU, relu(beta)); a layer without BN outputs 0.
    Reference,
    /// Language models: each feature's mean at each position over the examples that reach it.
    MeanPosition,
    /// Language models: the player's output on the example's paired corrupted prompt
    /// (resample ablation, activation patching).
    Resample,
}

impl Baseline {
    pub fn name(self) -> &'static str {
        match self {
            Baseline::Zero => "zero",
            Baseline::Mean => "mean",
            Baseline::Reference => "reference",
            Baseline::MeanPosition => "mean_position",
            Baseline::Resample => "resample",
        }
    }
}

impl FromStr for Baseline {
    type Err = String;
    fn from_str(text: &str) -> Result<Baseline, String> {
        match text {
            "zero" => Ok(Baseline::Zero),
            "mean" => Ok(Baseline::Mean),
            "reference" => Ok(Baseline::Reference),
            "mean_position" => Ok(Baseline::MeanPosition),
            "resample" => Ok(Baseline::Resample),
            _ => Err(format!(
                "unknown baseline {text:?}: expected zero, mean, reference, or for language models mean_position, resample"
            )),
        }
    }
}

/// One player layer: a node whose output channels are players.
#[derive(Clone, Debug)]
pub struct PlayerLayer {
    pub node: usize,
    pub name: String,
    /// The value each removed channel takes; its length is the number of players of this layer.
    pub baseline: Vec<f32>,
}

impl PlayerLayer {
    pub fn channels(&self) -> usize {
        self.baseline.len()
    }
}

/// Removal values that are not one constant per channel, for sequence models: a removed
/// player's block (a head's `d_head x T` slice, a neuron's `T` positions) takes these values
/// instead of [`PlayerLayer::baseline`].
#[derive(Clone, Debug, PartialEq)]
pub enum BaselineValues {
    /// One value per element of the node's output, the same for every example (mean ablation
    /// per feature, pooled over positions or per position).
    Shared(Vec<f32>),
    /// The node's output for each eval-set example, `[examples, numel]` row-major (resample
    /// ablation: the value on the example's paired corrupted prompt).
    PerExample(Vec<f32>),
}

impl BaselineValues {
    /// The values of one example's row (`numel` long).
    pub fn row(&self, example: usize, numel: usize) -> &[f32] {
        match self {
            BaselineValues::Shared(v) => &v[..numel],
            BaselineValues::PerExample(v) => &v[example * numel..(example + 1) * numel],
        }
    }
}

/// All players of a run, layer after layer; global index = layer offset + channel.
#[derive(Clone, Debug, Default)]
pub struct Players {
    layers: Vec<PlayerLayer>,
    offsets: Vec<usize>,
    /// Per layer, removal values beyond one constant per channel (see [`BaselineValues`]).
    values: Vec<Option<std::sync::Arc<BaselineValues>>>,
}

impl Players {
    /// Layers must be distinct nodes; they are kept in the given order.
    pub fn new(layers: Vec<PlayerLayer>) -> Result<Players, ModelError> {
        let mut offsets = Vec::with_capacity(layers.len());
        let mut total = 0;
        for (i, layer) in layers.iter().enumerate() {
            if layers[..i].iter().any(|l| l.node == layer.node) {
                return Err(ModelError::Players(format!(
                    "node {:?} is named twice as a player layer",
                    layer.name
                )));
            }
            if layer.channels() == 0 {
                return Err(ModelError::Players(format!(
                    "node {:?} has no channels to use as players",
                    layer.name
                )));
            }
            offsets.push(total);
            total += layer.channels();
        }
        let values = vec![None; layers.len()];
        Ok(Players {
            layers,
            offsets,
            values,
        })
    }

    /// Layer `layer`'s removed players take `values` (see [`BaselineValues`]).
    pub fn with_values(mut self, layer: usize, values: BaselineValues) -> Players {
        self.values[layer] = Some(std::sync::Arc::new(values));
        self
    }

    /// The removal values of layer `layer`, when they are not one constant per channel.
    pub fn values(&self, layer: usize) -> Option<&BaselineValues> {
        self.values.get(layer)?.as_deref()
    }

    /// Whether any layer has [`BaselineValues`].
    pub fn has_values(&self) -> bool {
        self.values.iter().any(Option::is_some)
    }

    /// `self` with the removal values of `from`, layer by layer (after a rebuild that kept the
    /// layers and their order, such as folding batchnorms).
    pub fn keep_values_of(mut self, from: &Players) -> Players {
        if self.layers.len() == from.layers.len() {
            self.values = from.values.clone();
        }
        self
    }

    pub fn layers(&self) -> &[PlayerLayer] {
        &self.layers
    }

    /// Total number of players.
    pub fn len(&self) -> usize {
        self.layers
            .last()
            .map_or(0, |l| self.offsets[self.offsets.len() - 1] + l.channels())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Global index of the first player of layer `layer`.
    pub fn offset(&self, layer: usize) -> usize {
        self.offsets[layer]
    }

    /// The layer of a node, if it is a player layer.
    pub fn layer_of_node(&self, node: usize) -> Option<usize> {
        self.layers.iter().position(|l| l.node == node)
    }

    /// `(layer, channel)` of a global player index.
    pub fn locate(&self, player: usize) -> (usize, usize) {
        let layer = self.offsets.partition_point(|&o| o <= player) - 1;
        (layer, player - self.offsets[layer])
    }

    /// `(node name, channel)` of a global player index, for reports.
    pub fn label(&self, player: usize) -> (&str, usize) {
        let (layer, channel) = self.locate(player);
        (&self.layers[layer].name, channel)
    }
}

/// Op kinds a `KIND:GLOB` item may name besides [`Op::kind`]'s own names.
const KIND_ALIASES: &[(&str, &str)] = &[
    ("conv", "conv2d"),
    ("bn", "batchnorm"),
    ("batchnorm1d", "batchnorm"),
    ("batchnorm2d", "batchnorm"),
    ("relu6", "hardtanh"),
    ("fc", "linear"),
];

/// Every op kind a node can have ([`Op::kind`]).
const KINDS: &[&str] = &[
    "linear",
    "conv2d",
    "batchnorm",
    "relu",
    "gelu",
    "sigmoid",
    "tanh",
    "silu",
    "hardswish",
    "hardsigmoid",
    "hardtanh",
    "leaky_relu",
    "elu",
    "prelu",
    "maxpool2d",
    "avgpool2d",
    "global_avgpool",
    "adaptive_avgpool2d",
    "flatten",
    "add",
    "mul",
    "concat",
    "slice",
    "channel_shuffle",
    "layernorm",
    "identity",
];

/// The op kind a `KIND:` prefix means, if any.
fn canonical_kind(kind: &str) -> Option<&'static str> {
    let kind = kind.trim().to_ascii_lowercase();
    KIND_ALIASES
        .iter()
        .find(|(alias, _)| *alias == kind)
        .map(|(_, k)| *k)
        .or_else(|| KINDS.iter().find(|k| **k == kind).copied())
}

/// `*` matches any run of characters (dots included), `?` any one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// What one `--players` item asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlayerItem {
    /// One node by its exact name.
    Name(String),
    /// Nodes whose names match a glob (`layer3.*.relu`).
    Glob(String),
    /// Nodes of one op kind whose names match a glob (`conv:*`, `relu:layer4.*`).
    Kind { kind: &'static str, glob: String },
    /// `filters`: every conv2d node except classifier convs (the Neuron Shapley reference's set).
    Filters,
    /// `all`: every conv2d and linear node except the output node.
    All,
}

impl PlayerItem {
    /// Parse one item against a graph: a node's exact name always wins over a pattern reading.
    pub fn parse(graph: &Graph, item: &str) -> Result<PlayerItem, ModelError> {
        let item = item.trim();
        if item.is_empty() {
            return Err(ModelError::Players(
                "empty player item (two commas in a row?)".into(),
            ));
        }
        if graph.find(item).is_some() {
            return Ok(PlayerItem::Name(item.to_owned()));
        }
        match item {
            "filters" => return Ok(PlayerItem::Filters),
            "all" => return Ok(PlayerItem::All),
            _ => {}
        }
        if let Some((kind, glob)) = item.split_once(':') {
            let Some(kind) = canonical_kind(kind) else {
                return Err(ModelError::Players(format!(
                    "player pattern {item:?}: unknown op kind {kind:?}; kinds are conv (conv2d), linear, bn (batchnorm), {}",
                    KINDS
                        .iter()
                        .filter(|k| !["conv2d", "linear", "batchnorm"].contains(k))
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            let glob = if glob.is_empty() { "*" } else { glob };
            return Ok(PlayerItem::Kind {
                kind,
                glob: glob.to_owned(),
            });
        }
        if item.contains(['*', '?']) {
            return Ok(PlayerItem::Glob(item.to_owned()));
        }
        Ok(PlayerItem::Name(item.to_owned()))
    }
}

/// For each node: whether it is a conv from which the logits are reachable without passing
/// through another conv2d or linear (a classifier conv, as SqueezeNet's `classifier.1`).
pub fn classifier_convs(graph: &Graph) -> Vec<bool> {
    let n = graph.nodes.len();
    let mut consumers: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, node) in graph.nodes.iter().enumerate() {
        for s in &node.inputs {
            if let Source::Node(j) = *s {
                consumers[j].push(i);
            }
        }
    }
    let weighted = |i: usize| matches!(graph.nodes[i].op, Op::Conv2d(_) | Op::Linear(_));
    // reaches[i]: the logits are reachable from node i's output through weight-free nodes only.
    let mut reaches = vec![false; n];
    for i in (0..n).rev() {
        reaches[i] = i + 1 == n || consumers[i].iter().any(|&k| !weighted(k) && reaches[k]);
    }
    (0..n)
        .map(|i| matches!(graph.nodes[i].op, Op::Conv2d(_)) && reaches[i])
        .collect()
}

/// Nodes a pattern never selects: the output node (its logits are not players) and the
/// normalisation step a spec's `preprocess` adds.
fn pattern_eligible(graph: &Graph, i: usize) -> bool {
    i + 1 < graph.nodes.len()
        && !(i == 0
            && graph.nodes[0].name == crate::build::PREPROCESS_NAME
            && graph.nodes.len() > 1)
}

/// Nodes matching one item, in graph order.
pub fn match_item(graph: &Graph, item: &PlayerItem) -> Vec<usize> {
    let eligible = |i: &usize| pattern_eligible(graph, *i);
    let nodes = 0..graph.nodes.len();
    match item {
        PlayerItem::Name(name) => graph.find(name).into_iter().collect(),
        PlayerItem::Glob(glob) => nodes
            .filter(eligible)
            .filter(|&i| glob_match(glob, &graph.nodes[i].name))
            .collect(),
        PlayerItem::Kind { kind, glob } => nodes
            .filter(eligible)
            .filter(|&i| {
                graph.nodes[i].op.kind() == *kind && glob_match(glob, &graph.nodes[i].name)
            })
            .collect(),
        PlayerItem::Filters => {
            let classifier = classifier_convs(graph);
            nodes
                .filter(eligible)
                .filter(|&i| matches!(graph.nodes[i].op, Op::Conv2d(_)) && !classifier[i])
                .collect()
        }
        PlayerItem::All => nodes
            .filter(eligible)
            .filter(|&i| matches!(graph.nodes[i].op, Op::Conv2d(_) | Op::Linear(_)))
            .collect(),
    }
}

/// Resolve a `--players` list to player layer nodes.
///
/// Each item is a node's exact name or a pattern: a glob on node names (`*` matches any run of
/// characters, dots included: `layer3.*.relu2`), `KIND:GLOB` (nodes of one op kind:
/// `conv:*`, `linear:*`, `relu:layer4.*`, `bn:*`; any [`Op::kind`] name), `filters` (every
/// conv2d node except classifier convs, the Neuron Shapley reference's players) or `all`
/// (every conv2d and linear node except the output node). Patterns never select the output
/// node or the `preprocess` step. Each item's nodes come in graph order, items in the order
/// given; a node selected twice is kept once, at its first place.
///
/// A pattern that matches nothing, and an unknown exact name, are errors that suggest the
/// closest node names.
pub fn find_player_nodes(graph: &Graph, names: &[String]) -> Result<Vec<usize>, ModelError> {
    if names.iter().all(|n| n.trim().is_empty()) {
        return Err(ModelError::Players("no player layer given".into()));
    }
    let mut seen = vec![false; graph.nodes.len()];
    let mut out = Vec::new();
    for text in names {
        let item = PlayerItem::parse(graph, text)?;
        let found = match_item(graph, &item);
        if found.is_empty() {
            return Err(no_match(graph, text.trim(), &item));
        }
        for i in found {
            if !std::mem::replace(&mut seen[i], true) {
                out.push(i);
            }
        }
    }
    Ok(out)
}

/// How many node names an error lists in full before it shows only the closest ones.
const LIST_ALL_UP_TO: usize = 30;
const CLOSEST: usize = 10;

fn no_match(graph: &Graph, text: &str, item: &PlayerItem) -> ModelError {
    let message = match item {
        PlayerItem::Name(name) => {
            let hint = match canonical_kind(name) {
                Some(kind) => format!(" (every {kind} node: {kind}:*)"),
                None => String::new(),
            };
            format!("unknown node {name:?}{hint}; {}", suggest(graph, name))
        }
        PlayerItem::Glob(glob) => {
            let only = excluded(graph, |i| glob_match(glob, &graph.nodes[i].name));
            match only {
                Some(only) => format!("player pattern {text:?} matches only {only}"),
                None => format!(
                    "player pattern {text:?} matches no node; {}",
                    suggest(graph, &glob.replace(['*', '?'], ""))
                ),
            }
        }
        PlayerItem::Kind { kind, glob } => {
            let named: Vec<usize> = (0..graph.nodes.len())
                .filter(|&i| glob_match(glob, &graph.nodes[i].name))
                .collect();
            let mut kinds: Vec<&str> = Vec::new();
            for &i in &named {
                let k = graph.nodes[i].op.kind();
                if !kinds.contains(&k) {
                    kinds.push(k);
                }
            }
            let only = excluded(graph, |i| {
                graph.nodes[i].op.kind() == *kind && glob_match(glob, &graph.nodes[i].name)
            });
            match only {
                Some(only) => format!("player pattern {text:?} matches only {only}"),
                None if named.is_empty() => format!(
                    "player pattern {text:?}: no node name matches {glob:?}; {}",
                    suggest(graph, &glob.replace(['*', '?'], ""))
                ),
                None => format!(
                    "player pattern {text:?} matches no {kind} node: the {} node(s) named like {glob:?} are {}",
                    named.len(),
                    kinds.join(", ")
                ),
            }
        }
        PlayerItem::Filters => format!(
            "player pattern \"filters\" matches no node: the model has no conv2d node besides classifier convs{}",
            kinds_note(graph)
        ),
        PlayerItem::All => format!(
            "player pattern \"all\" matches no node: the model has no conv2d or linear node besides the output{}",
            kinds_note(graph)
        ),
    };
    ModelError::Players(message)
}

/// "fc (the output node), which a pattern never selects" when the item matched only nodes that
/// patterns leave out.
fn excluded(graph: &Graph, matches: impl Fn(usize) -> bool) -> Option<String> {
    let last = graph.nodes.len() - 1;
    let found: Vec<String> = (0..graph.nodes.len())
        .filter(|&i| !pattern_eligible(graph, i) && matches(i))
        .map(|i| {
            let what = if i == last {
                "the output node: its logits are not players"
            } else {
                "the input normalisation"
            };
            format!("{} ({what})", graph.nodes[i].name)
        })
        .collect();
    (!found.is_empty()).then(|| format!("{}, which a pattern never selects", found.join(" and ")))
}

fn kinds_note(graph: &Graph) -> String {
    let mut kinds: Vec<&str> = Vec::new();
    for n in &graph.nodes {
        if !kinds.contains(&n.op.kind()) {
            kinds.push(n.op.kind());
        }
    }
    format!(" (its ops: {})", kinds.join(", "))
}

/// "the model's nodes are: ..." for small graphs, else the closest names and the count.
pub fn suggest(graph: &Graph, wanted: &str) -> String {
    let names: Vec<&str> = graph.nodes.iter().map(|n| n.name.as_str()).collect();
    if names.len() <= LIST_ALL_UP_TO {
        return format!("the model's nodes are: {}", names.join(", "));
    }
    let close = closest(&names, wanted, CLOSEST);
    format!(
        "closest of the model's {} nodes: {} (nshap inspect lists them all)",
        names.len(),
        close.join(", ")
    )
}

/// The `k` names closest to `wanted` (edit distance, ties: names containing it, then order).
pub fn closest<'a>(names: &[&'a str], wanted: &str, k: usize) -> Vec<&'a str> {
    let mut scored: Vec<(usize, usize, &str)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let d = edit_distance(wanted, n);
            let d = if !wanted.is_empty() && n.contains(wanted) {
                d.min(n.len() - wanted.len())
            } else {
                d
            };
            (d, i, *n)
        })
        .collect();
    scored.sort();
    scored.into_iter().take(k).map(|(_, _, n)| n).collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for j in 0..b.len() {
            let cur = row[j + 1];
            row[j + 1] = if ca == b[j] {
                prev
            } else {
                1 + prev.min(row[j]).min(row[j + 1])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

/// The reference removal value of each channel of `node` (see [`Baseline::Reference`]).
pub fn reference_baseline(graph: &Graph, node: usize) -> Result<Vec<f32>, ModelError> {
    let n = &graph.nodes[node];
    let channels = n.shape.channels();
    match &n.op {
        Op::BatchNorm(bn) => Ok(bn.beta.clone()),
        Op::Linear(_) | Op::Conv2d(_) => {
            // When a BN reads only this node, the reference zeroes the filter and sets the BN
            // to mean 0 / var 1, so the BN outputs beta: feeding it running_mean does exactly that.
            let consumers = graph.consumers(node);
            if let [c] = consumers[..] {
                if let Op::BatchNorm(bn) = &graph.nodes[c].op {
                    return Ok(bn.running_mean.clone());
                }
            }
            Ok(vec![0.0; channels])
        }
        Op::Activation(_) | Op::Identity => {
            let Some(Source::Node(producer)) = n.inputs.first().copied() else {
                return Err(reference_error(graph, node));
            };
            if !matches!(
                graph.nodes[producer].op,
                Op::BatchNorm(_) | Op::Linear(_) | Op::Conv2d(_) | Op::Activation(_) | Op::Identity
            ) {
                return Err(reference_error(graph, node));
            }
            // The producer's reference value, as it would be seen downstream of its own BN.
            let inner = match &graph.nodes[producer].op {
                Op::Linear(_) | Op::Conv2d(_) => vec![0.0; channels],
                _ => reference_baseline(graph, producer)?,
            };
            Ok(match &n.op {
                Op::Activation(act) => inner.into_iter().map(|v| act.apply(v)).collect(),
                _ => inner,
            })
        }
        _ => Err(reference_error(graph, node)),
    }
}

fn reference_error(graph: &Graph, node: usize) -> ModelError {
    ModelError::Players(format!(
        "baseline reference is defined for conv/linear/batchnorm nodes and activations of them; \
         node {:?} is a {}",
        graph.nodes[node].name,
        graph.nodes[node].op.kind()
    ))
}
