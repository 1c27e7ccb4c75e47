//! Cheap per-neuron importance measures, computed from one forward and two backward passes per
//! eval example: class selectivity, Jacobian sensitivity and the first-order Taylor estimate of the
//! loss increase when a unit is removed. They are baselines to compare Neuron Shapley values with.
//!
//! Units are the channels (of `[C, H, W]` nodes) or features (of `[F]` nodes) of each player node,
//! as for the Shapley players. `a(u, p)` is the unmasked network's activation of unit `u` at spatial
//! position `p` (the player node's output), `z` the logits, `y_n` the label of example `n`, and
//! `L_n` the cross-entropy of example `n`.

use crate::grad::{backward, forward_all};
use nshap_model::fold::fold_batchnorm;
use nshap_model::{BackendError, EvalSet, Graph, PlayerLayer, Players, Source};
use rayon::prelude::*;

/// Most examples per forward/backward batch (one rayon task each).
const MAX_CHUNK: usize = 16;
/// Memory budget of one batch: activations plus one set of gradients (and slack), in bytes.
const CHUNK_BYTES: usize = 64 << 20;

/// Added to the denominator of the selectivity index (Leavitt & Morcos 2020).
const SELECTIVITY_EPS: f64 = 1e-7;

/// The measures of one player node: one entry per channel (feature).
#[derive(Clone, Debug, PartialEq)]
pub struct LayerMeasures {
    /// The node's index in the graph given to [`neuron_measures`].
    pub node: usize,
    /// Class selectivity index (Leavitt & Morcos 2020).
    ///
    /// `mu_c` is the unit's activation averaged over its spatial positions and over the eval
    /// examples of class `c`; `SI = (mu_max - mu_rest) / (mu_max + mu_rest + 1e-7)` with
    /// `mu_max = max_c mu_c` and `mu_rest` the mean of `mu_c` over the other classes. Classes without
    /// an eval example are left out (when only one class occurs, `mu_rest = 0`). A unit whose
    /// activations are all exactly 0 gets 0.
    ///
    /// The index is meant for post-ReLU (non-negative) units, where it lies in `[0, 1]`. On a node
    /// with negative activations (e.g. before a ReLU) the same formula is applied to the raw values:
    /// it is then not bounded to `[0, 1]` and blows up when `mu_max + mu_rest` is close to 0.
    pub selectivity: Vec<f64>,
    /// Jacobian sensitivity: the mean over eval examples of `sum_p |d z_{y_n} / d a(u, p)|`, the
    /// total derivative of the true-class logit through everything downstream of the node.
    pub sensitivity: Vec<f64>,
    /// First-order Taylor estimate of how much the mean cross-entropy rises when the unit is
    /// zeroed: `-(1/N) sum_n sum_p a(u, p) * dL_n / d a(u, p)`.
    pub taylor: Vec<f64>,
}

/// Per-unit sums over a batch of examples, for one player layer.
#[derive(Clone)]
struct Sums {
    /// `[classes, channels]`: sum over examples of class `c` of the spatial mean activation.
    class_sums: Vec<f64>,
    sensitivity: Vec<f64>,
    taylor: Vec<f64>,
    /// Whether any activation of the unit is non-zero.
    active: Vec<bool>,
}

impl Sums {
    fn new(classes: usize, channels: usize) -> Sums {
        Sums {
            class_sums: vec![0.0; classes * channels],
            sensitivity: vec![0.0; channels],
            taylor: vec![0.0; channels],
            active: vec![false; channels],
        }
    }

    fn add(&mut self, other: &Sums) {
        let pairs = [
            (&mut self.class_sums, &other.class_sums),
            (&mut self.sensitivity, &other.sensitivity),
            (&mut self.taylor, &other.taylor),
        ];
        for (a, b) in pairs {
            a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
        }
        self.active
            .iter_mut()
            .zip(&other.active)
            .for_each(|(x, &y)| *x |= y);
    }
}

/// Class selectivity, Jacobian sensitivity and first-order Taylor importance of every channel of
/// each node in `player_nodes` (node indices, as resolved by
/// [`nshap_model::players::find_player_nodes`]), over the whole eval set `data`. One entry per
/// given node, in the given order. See [`LayerMeasures`] for the definitions.
///
/// The measures are computed on the unmasked network exactly as `graph` defines it (eval-mode
/// batchnorm that is not at a player's conv is folded first, as the backends do; this changes
/// neither the activations at player nodes nor their gradients). Per example: one forward pass,
/// one backward pass from `e_y` (sensitivity) and one from `softmax(z) - onehot(y)` (Taylor);
/// sums accumulate in f64, examples run in parallel batches with rayon and are reduced in a fixed
/// order, so results do not depend on the thread count.
///
/// Errors (no panics) when a node is out of range or is the output node, or when `data` does not
/// fit the graph. An empty `player_nodes` gives an empty result, an empty eval set zeros.
pub fn neuron_measures(
    graph: &Graph,
    data: &EvalSet,
    player_nodes: &[usize],
) -> Result<Vec<LayerMeasures>, BackendError> {
    let n_nodes = graph.nodes.len();
    for &node in player_nodes {
        if node >= n_nodes {
            return Err(BackendError::Invalid(format!(
                "player node index {node} is out of range: the graph has {n_nodes} nodes"
            )));
        }
        if node + 1 == n_nodes {
            return Err(BackendError::Invalid(format!(
                "node {:?} is the output layer; choose a hidden layer for neuron measures",
                graph.nodes[node].name
            )));
        }
    }
    if data.shape != graph.input {
        return Err(BackendError::Invalid(format!(
            "the eval set's examples have shape {}, the model takes {}",
            data.shape, graph.input
        )));
    }
    if data.inputs.len() != data.len() * graph.input.numel() {
        return Err(BackendError::Invalid(format!(
            "the eval set holds {} input values for {} labels of shape {}",
            data.inputs.len(),
            data.len(),
            graph.input
        )));
    }
    let classes = graph.num_classes();
    if let Some(&bad) = data.labels.iter().find(|&&l| l as usize >= classes) {
        return Err(BackendError::Invalid(format!(
            "label {bad} is out of range: the model has {classes} classes"
        )));
    }
    if player_nodes.is_empty() || data.is_empty() {
        return Ok(player_nodes
            .iter()
            .map(|&node| {
                let c = graph.nodes[node].shape.channels();
                LayerMeasures {
                    node,
                    selectivity: vec![0.0; c],
                    sensitivity: vec![0.0; c],
                    taylor: vec![0.0; c],
                }
            })
            .collect());
    }

    // Fold BN as the backends do, keeping the (distinct) player nodes unfolded.
    let mut distinct: Vec<usize> = player_nodes.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let layers = distinct
        .iter()
        .map(|&node| PlayerLayer {
            node,
            name: graph.nodes[node].name.clone(),
            baseline: vec![0.0; graph.nodes[node].shape.channels()],
        })
        .collect();
    let players = Players::new(layers).map_err(|e| BackendError::Invalid(e.to_string()))?;
    let (folded, folded_players) = fold_batchnorm(graph, &players);
    let nodes: Vec<usize> = folded_players.layers().iter().map(|l| l.node).collect();
    let lowest = *nodes.iter().min().expect("at least one player node");

    let per_example =
        folded.input.numel() + folded.nodes.iter().map(|n| n.shape.numel()).sum::<usize>();
    let chunk = (CHUNK_BYTES / (3 * 4 * per_example).max(1)).clamp(1, MAX_CHUNK);
    let chunks: Vec<(usize, usize)> = (0..data.len())
        .step_by(chunk)
        .map(|s| (s, (s + chunk).min(data.len())))
        .collect();
    let partials: Vec<Vec<Sums>> = chunks
        .par_iter()
        .map(|&(start, end)| chunk_sums(&folded, data, &nodes, lowest, start..end))
        .collect();
    let mut total: Vec<Sums> = nodes
        .iter()
        .map(|&n| Sums::new(classes, folded.nodes[n].shape.channels()))
        .collect();
    for part in &partials {
        total.iter_mut().zip(part).for_each(|(t, p)| t.add(p));
    }

    let mut counts = vec![0usize; classes];
    data.labels.iter().for_each(|&l| counts[l as usize] += 1);
    let n = data.len() as f64;
    Ok(player_nodes
        .iter()
        .map(|node| {
            let k = distinct
                .binary_search(node)
                .expect("node is among the distinct ones");
            let sums = &total[k];
            let channels = sums.taylor.len();
            LayerMeasures {
                node: *node,
                selectivity: (0..channels)
                    .map(|u| selectivity(sums, &counts, channels, u))
                    .collect(),
                sensitivity: sums.sensitivity.iter().map(|s| s / n).collect(),
                taylor: sums.taylor.iter().map(|s| -s / n).collect(),
            }
        })
        .collect())
}

fn selectivity(sums: &Sums, counts: &[usize], channels: usize, u: usize) -> f64 {
    if !sums.active[u] {
        return 0.0;
    }
    let means: Vec<f64> = counts
        .iter()
        .enumerate()
        .filter(|(_, &count)| count > 0)
        .map(|(c, &count)| sums.class_sums[c * channels + u] / count as f64)
        .collect();
    let (arg, &mu_max) = means
        .iter()
        .enumerate()
        .fold((0, &f64::NEG_INFINITY), |best, (i, m)| {
            if *m > *best.1 {
                (i, m)
            } else {
                best
            }
        });
    let mu_rest = if means.len() > 1 {
        let rest: f64 = means
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != arg)
            .map(|(_, m)| m)
            .sum();
        rest / (means.len() - 1) as f64
    } else {
        0.0
    };
    (mu_max - mu_rest) / (mu_max + mu_rest + SELECTIVITY_EPS)
}

/// Forward and two backward passes over examples `range`; per-layer sums.
fn chunk_sums(
    graph: &Graph,
    data: &EvalSet,
    nodes: &[usize],
    lowest: usize,
    range: std::ops::Range<usize>,
) -> Vec<Sums> {
    let rows = range.len();
    let classes = graph.num_classes();
    let input: Vec<f32> = range
        .clone()
        .flat_map(|e| data.example(e).iter().copied())
        .collect();
    let labels = &data.labels[range];
    let outputs = forward_all(graph, &input, rows);
    let logits = &outputs[graph.nodes.len() - 1];

    // Seeds: e_y (sensitivity) and softmax(z) - onehot(y) = dL/dz (Taylor), one row per example.
    let mut seed_y = vec![0.0f32; rows * classes];
    let mut seed_loss = vec![0.0f32; rows * classes];
    for (r, &y) in labels.iter().enumerate() {
        let z = &logits[r * classes..(r + 1) * classes];
        let max = z.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        let denom: f64 = z.iter().map(|&v| (v as f64 - max).exp()).sum();
        for (c, &v) in z.iter().enumerate() {
            let p = (v as f64 - max).exp() / denom;
            let onehot = if c == y as usize { 1.0 } else { 0.0 };
            seed_loss[r * classes + c] = (p - onehot) as f32;
        }
        seed_y[r * classes + y as usize] = 1.0;
    }
    // Keep only the player nodes' gradients of each pass (one full set alive at a time).
    let player_grads = |seed: &[f32]| -> Vec<Vec<f32>> {
        let mut g = backward(graph, &input, &outputs, rows, seed, Source::Node(lowest));
        nodes
            .iter()
            .map(|&n| std::mem::take(&mut g.nodes[n]))
            .collect()
    };
    let grad_y = player_grads(&seed_y);
    let grad_loss = player_grads(&seed_loss);

    nodes
        .iter()
        .enumerate()
        .map(|(k, &node)| {
            let shape = graph.nodes[node].shape;
            let (channels, spatial) = (shape.channels(), shape.spatial());
            let mut sums = Sums::new(classes, channels);
            let acts = &outputs[node];
            let (gy, gl) = (&grad_y[k], &grad_loss[k]);
            for (r, &y) in labels.iter().enumerate() {
                for u in 0..channels {
                    let at = (r * channels + u) * spatial..(r * channels + u + 1) * spatial;
                    let (a, gy, gl) = (&acts[at.clone()], &gy[at.clone()], &gl[at]);
                    let (mut sum_a, mut sens, mut tay) = (0.0f64, 0.0f64, 0.0f64);
                    let mut active = false;
                    for ((&a, &gy), &gl) in a.iter().zip(gy).zip(gl) {
                        sum_a += a as f64;
                        active |= a != 0.0;
                        sens += (gy as f64).abs();
                        tay += a as f64 * gl as f64;
                    }
                    sums.class_sums[y as usize * channels + u] += sum_a / spatial as f64;
                    sums.sensitivity[u] += sens;
                    sums.taylor[u] += tay;
                    sums.active[u] |= active;
                }
            }
            sums
        })
        .collect()
}
