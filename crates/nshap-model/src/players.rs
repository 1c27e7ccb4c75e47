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
}

impl Baseline {
    pub fn name(self) -> &'static str {
        match self {
            Baseline::Zero => "zero",
            Baseline::Mean => "mean",
            Baseline::Reference => "reference",
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
            _ => Err(format!(
                "unknown baseline {text:?}: expected zero, mean or reference"
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

/// All players of a run, layer after layer; global index = layer offset + channel.
#[derive(Clone, Debug, Default)]
pub struct Players {
    layers: Vec<PlayerLayer>,
    offsets: Vec<usize>,
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
        Ok(Players { layers, offsets })
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

/// Look up player layer names, with an error listing what exists.
pub fn find_player_nodes(graph: &Graph, names: &[String]) -> Result<Vec<usize>, ModelError> {
    if names.is_empty() {
        return Err(ModelError::Players("no player layer given".into()));
    }
    names
        .iter()
        .map(|name| {
            graph.find(name).ok_or_else(|| {
                let known: Vec<&str> = graph.nodes.iter().map(|n| n.name.as_str()).collect();
                ModelError::Players(format!(
                    "unknown node {name:?}; the model's nodes are: {}",
                    known.join(", ")
                ))
            })
        })
        .collect()
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
