//! Finite-difference checks of every op's backward (vector-Jacobian product w.r.t. its inputs)
//! and of whole-graph backward passes, on small random graphs built directly as `Graph` values.
//!
//! Each check draws a random cotangent `r` at the last node, defines the scalar
//! `f(x) = sum(r * graph(x))` (accumulated in f64 over f32 forward passes) and compares
//! `grad::backward` with the central difference `(f(x + h e_i) - f(x - h e_i)) / (2h)`, h = 1e-2,
//! for input elements `i` and, with a forward that overrides one node's output, for node outputs
//! (total derivatives through everything downstream, fan-out included). Two examples per batch
//! (rows = 2), so row offsets are checked too. Per-op inputs avoid kinks by construction (inputs
//! of piecewise activations and PReLU at least 0.05 from every kink, max-pool inputs distinct by
//! 0.05); in whole graphs an element whose step crosses a kink of a piecewise activation or
//! PReLU, or changes a max-pool argmax, is skipped (at most 5% of them).
//!
//! Tolerance: `max_i |fd_i - analytic_i| <= TOL_REL * max_i |analytic_i|`, TOL_REL = 2e-3.
//! Why a right gradient passes: the truncation error is ~h^2 |f'''| / 6 ~ 2e-5 and the f32
//! rounding of f (relative ~6e-8 per term) divided by 2h is ~1e-5..1e-4 of the gradient scale.
//! Observed (printed with `--nocapture`): <= 6e-5 of the scale for single ops, <= 8e-4 for the
//! whole graphs (where each input element's gradient is smallest relative to f).
//! Why a wrong one fails: a transposed or flipped kernel, an off-by-one padding offset or a wrong
//! stride/dilation/group offset in col2im sends O(1) weight-times-cotangent terms to the wrong
//! input positions, which changes single gradient elements by a sizeable fraction of the scale
//! (tens of percent for random weights): ~100x the tolerance. A wrong factor (avgpool divisor,
//! GELU derivative, BN scale, global-pool 1/HW) of even 2% exceeds it on the largest element.
//! `the_tolerance_rejects_wrong_gradients` checks this on mutants: transposed kernel (error ~0.9
//! of the scale), flipped kernel, gradient shifted by one pixel as an off-by-one padding would
//! (both > 1x the scale), and a 2% scale error (10x the tolerance).

use nshap_cpu::grad::{backward, forward_all};
use nshap_cpu::ops;
use nshap_model::{
    Activation, BatchNorm, Conv2d, Graph, LayerNorm, Linear, Node, Op, Pool2d, Shape, Source,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const ROWS: usize = 2;
const STEP: f32 = 1e-2;
const TOL_REL: f64 = 2e-3;

// ------------------------------------------------------------------ graph building

struct Builder {
    input: Shape,
    nodes: Vec<Node>,
    rng: StdRng,
}

impl Builder {
    fn new(input: Shape, seed: u64) -> Builder {
        Builder {
            input,
            nodes: Vec::new(),
            rng: StdRng::seed_from_u64(seed),
        }
    }

    fn last(&self) -> Source {
        if self.nodes.is_empty() {
            Source::Input
        } else {
            Source::Node(self.nodes.len() - 1)
        }
    }

    fn shape(&self, s: Source) -> Shape {
        match s {
            Source::Input => self.input,
            Source::Node(i) => self.nodes[i].shape,
        }
    }

    fn uniform(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| self.rng.random_range(-scale..scale))
            .collect()
    }

    /// Add a node reading `inputs` (default: the previous node); its shape is inferred.
    fn push(&mut self, op: Op, inputs: &[Source]) -> Source {
        self.push_shaped(op, inputs, None)
    }

    /// [`Builder::push`] with the output shape given (required for adaptive pooling).
    fn push_shaped(&mut self, op: Op, inputs: &[Source], shape: Option<Shape>) -> Source {
        let inputs = if inputs.is_empty() {
            vec![self.last()]
        } else {
            inputs.to_vec()
        };
        let in_shape = self.shape(inputs[0]);
        let shapes: Vec<Shape> = inputs.iter().map(|&s| self.shape(s)).collect();
        let image = |s: Shape| match s {
            Shape::Image { c, h, w } => (c, h, w),
            Shape::Features(f) => panic!("image expected, found [{f}]"),
        };
        let shape = shape.unwrap_or_else(|| match &op {
            Op::Linear(l) => Shape::Features(l.out_features),
            Op::Conv2d(c) => {
                let (_, h, w) = image(in_shape);
                let out = |n: usize, k, s, p, d| (n + 2 * p - d * (k - 1) - 1) / s + 1;
                Shape::Image {
                    c: c.out_channels,
                    h: out(h, c.kernel.0, c.stride.0, c.padding.0, c.dilation.0),
                    w: out(w, c.kernel.1, c.stride.1, c.padding.1, c.dilation.1),
                }
            }
            Op::MaxPool2d(p) | Op::AvgPool2d(p) => {
                let (c, h, w) = image(in_shape);
                Shape::Image {
                    c,
                    h: p.out_len(h, 0).expect("window fits"),
                    w: p.out_len(w, 1).expect("window fits"),
                }
            }
            Op::GlobalAvgPool => Shape::Image {
                c: in_shape.channels(),
                h: 1,
                w: 1,
            },
            Op::AdaptiveAvgPool2d => panic!("adaptive pooling needs push_shaped"),
            Op::Flatten => Shape::Features(in_shape.numel()),
            // The larger operand (the other one may be a broadcast [C, 1, 1] or [C]).
            Op::Mul => *shapes.iter().max_by_key(|s| s.numel()).unwrap(),
            Op::Concat => {
                let c = shapes.iter().map(Shape::channels).sum();
                match in_shape {
                    Shape::Image { h, w, .. } => Shape::Image { c, h, w },
                    Shape::Features(_) => Shape::Features(c),
                }
            }
            Op::Slice { start, end } => match in_shape {
                Shape::Image { h, w, .. } => Shape::Image {
                    c: end - start,
                    h,
                    w,
                },
                Shape::Features(_) => Shape::Features(end - start),
            },
            Op::BatchNorm(_)
            | Op::Activation(_)
            | Op::Prelu(_)
            | Op::Scale(_)
            | Op::ChannelShuffle { .. }
            | Op::LayerNorm(_)
            | Op::RmsNorm(_)
            | Op::Add
            | Op::Identity => in_shape,
            Op::MergeHeads => {
                let (c, h, w) = image(in_shape);
                Shape::Image { c: c * h, h: 1, w }
            }
            Op::Embedding(_) | Op::Attention(_) | Op::SelectPosition => {
                panic!("sequence ops need push_shaped")
            }
        });
        let name = format!("n{}_{}", self.nodes.len(), op.kind());
        self.nodes.push(Node {
            name,
            op,
            inputs,
            shape,
        });
        self.last()
    }

    fn linear(&mut self, out: usize) -> Source {
        let inf = self.shape(self.last()).numel();
        let s = 1.0 / (inf as f32).sqrt();
        let op = Op::Linear(Linear {
            in_features: inf,
            out_features: out,
            weight: self.uniform(out * inf, s),
            bias: self.uniform(out, 0.5),
            has_bias: true,
        });
        self.push(op, &[])
    }

    /// Conv with kernel `k`, stride `s`, padding `p`, dilation `d`, `groups`, reading `from`.
    #[allow(clippy::too_many_arguments)]
    fn conv_from(
        &mut self,
        from: Source,
        out: usize,
        k: (usize, usize),
        s: (usize, usize),
        p: (usize, usize),
        d: (usize, usize),
        groups: usize,
    ) -> Source {
        let cin = self.shape(from).channels();
        let fan = cin / groups * k.0 * k.1;
        let scale = 1.5 / (fan as f32).sqrt();
        let op = Op::Conv2d(Conv2d {
            in_channels: cin,
            out_channels: out,
            kernel: k,
            stride: s,
            padding: p,
            dilation: d,
            groups,
            weight: self.uniform(out * fan, scale),
            bias: self.uniform(out, 0.5),
            has_bias: true,
        });
        self.push(op, &[from])
    }

    fn conv(
        &mut self,
        out: usize,
        k: usize,
        s: usize,
        p: usize,
        d: usize,
        groups: usize,
    ) -> Source {
        let last = self.last();
        self.conv_from(last, out, (k, k), (s, s), (p, p), (d, d), groups)
    }

    fn batchnorm(&mut self) -> Source {
        let c = self.shape(self.last()).channels();
        let scale: Vec<f32> = (0..c).map(|_| self.rng.random_range(0.5..1.5)).collect();
        let shift = self.uniform(c, 0.5);
        let op = Op::BatchNorm(BatchNorm {
            scale,
            shift: shift.clone(),
            beta: shift,
            running_mean: vec![0.0; c],
        });
        self.push(op, &[])
    }

    fn act(&mut self, a: Activation) -> Source {
        self.push(Op::Activation(a), &[])
    }

    fn pool(
        &mut self,
        max: bool,
        k: (usize, usize),
        s: (usize, usize),
        p: (usize, usize),
    ) -> Source {
        self.pool_with(max, Pool2d::new(k, s, p))
    }

    fn pool_with(&mut self, max: bool, pool: Pool2d) -> Source {
        self.push(
            if max {
                Op::MaxPool2d(pool)
            } else {
                Op::AvgPool2d(pool)
            },
            &[],
        )
    }

    fn layernorm(&mut self) -> Source {
        let c = self.shape(self.last()).channels();
        let weight: Vec<f32> = (0..c).map(|_| self.rng.random_range(0.5..1.5)).collect();
        let bias = self.uniform(c, 0.5);
        self.push(
            Op::LayerNorm(LayerNorm {
                weight,
                bias,
                eps: 1e-5,
            }),
            &[],
        )
    }

    fn prelu(&mut self) -> Source {
        let c = self.shape(self.last()).channels();
        let slopes = self.uniform(c, 0.8);
        self.push(Op::Prelu(slopes), &[])
    }

    fn scale(&mut self) -> Source {
        let c = self.shape(self.last()).channels();
        let w = self.uniform(c, 1.5);
        self.push(Op::Scale(w), &[])
    }

    fn graph(&self) -> Graph {
        Graph {
            input: self.input,
            nodes: self.nodes.clone(),
        }
    }
}

// ------------------------------------------------------------------ finite differences

/// Every node's output, with node `over`'s output replaced by `value` (None: plain forward).
fn forward_override(
    graph: &Graph,
    input: &[f32],
    rows: usize,
    over: Option<(usize, &[f32])>,
) -> Vec<Vec<f32>> {
    let mut outs: Vec<Vec<f32>> = Vec::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        let out = match over {
            Some((j, v)) if j == i => v.to_vec(),
            _ => {
                let inputs: Vec<&[f32]> = node
                    .inputs
                    .iter()
                    .map(|s| match *s {
                        Source::Input => input,
                        Source::Node(j) => outs[j].as_slice(),
                    })
                    .collect();
                let mut out = vec![0.0; rows * node.shape.numel()];
                ops::run(graph, node, &inputs, rows, &mut out);
                out
            }
        };
        outs.push(out);
    }
    outs
}

/// Which side of every kink the forward is on: the piece of each piecewise activation's input
/// (ReLU, leaky ReLU, ELU, PReLU, hardtanh, hardswish, hardsigmoid) and, for each max-pool, how
/// often each input position is a window's argmax.
fn branches(graph: &Graph, input: &[f32], rows: usize, outs: &[Vec<f32>]) -> Vec<u8> {
    let mut pattern = Vec::new();
    for node in &graph.nodes {
        let x = match node.inputs[0] {
            Source::Input => input,
            Source::Node(j) => outs[j].as_slice(),
        };
        let in_shape = graph.shape_of(node.inputs[0]);
        match &node.op {
            Op::Activation(a) => pattern.extend(x.iter().map(|&v| kink_side(*a, v))),
            Op::Prelu(_) => pattern.extend(x.iter().map(|&v| (v > 0.0) as u8)),
            Op::MaxPool2d(p) => {
                let ones = vec![1.0; rows * node.shape.numel()];
                let mut hits = vec![0.0; x.len()];
                ops::pool::max_pool_backward(p, in_shape, node.shape, x, &ones, rows, &mut hits);
                pattern.extend(hits.iter().map(|&h| h as u8));
            }
            _ => {}
        }
    }
    pattern
}

/// Which piece of a piecewise activation `x` is on (0 for the smooth ones).
fn kink_side(act: Activation, x: f32) -> u8 {
    let side = |t: f32| (x > t) as u8;
    match act {
        Activation::Relu | Activation::LeakyRelu { .. } | Activation::Elu { .. } => side(0.0),
        Activation::HardTanh { min, max } => side(min) + 2 * side(max),
        Activation::Hardswish | Activation::Hardsigmoid => side(-3.0) + 2 * side(3.0),
        Activation::Gelu
        | Activation::GeluTanh
        | Activation::Sigmoid
        | Activation::Tanh
        | Activation::Silu => 0,
    }
}

fn dot(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// Central differences of `f` (value and kink pattern) at `x` for the elements `idx`; also
/// returns, per element, whether `x - h` or `x + h` is on another side of a ReLU or max-pool kink
/// than `x` (there the function is not differentiable along the step and the element is skipped).
fn central(
    x: &[f32],
    idx: &[usize],
    step: f32,
    f: impl Fn(&[f32]) -> (f64, Vec<u8>),
) -> (Vec<f64>, Vec<bool>) {
    let (_, p0) = f(x);
    let mut fd = Vec::with_capacity(idx.len());
    let mut kink = Vec::with_capacity(idx.len());
    let mut xp = x.to_vec();
    for &i in idx {
        let (plus, minus) = (x[i] + step, x[i] - step);
        xp[i] = plus;
        let (fp, pp) = f(&xp);
        xp[i] = minus;
        let (fm, pm) = f(&xp);
        xp[i] = x[i];
        fd.push((fp - fm) / (plus as f64 - minus as f64));
        kink.push(pp != p0 || pm != p0);
    }
    (fd, kink)
}

/// `Ok(error / scale)` when `max |fd - analytic| <= TOL_REL * max |analytic|`.
fn compare(fd: &[f64], analytic: &[f64], what: &str) -> Result<f64, String> {
    let scale = analytic.iter().fold(0f64, |m, v| m.max(v.abs()));
    assert!(
        scale > 0.0,
        "{what}: zero gradient, the check would be vacuous"
    );
    let (worst, err) = fd
        .iter()
        .zip(analytic)
        .map(|(f, a)| (f - a).abs())
        .enumerate()
        .fold((0, 0f64), |b, (i, e)| if e > b.1 { (i, e) } else { b });
    if err <= TOL_REL * scale {
        Ok(err / scale)
    } else {
        Err(format!(
            "{what}: element {worst}: finite difference {} vs backward {} (max error {err:.3e} > {:.3e} = {TOL_REL} x scale {scale:.3e})",
            fd[worst], analytic[worst], TOL_REL * scale
        ))
    }
}

/// Up to `max` indices of `0..n`, evenly spread (all when n <= max).
fn sample(n: usize, max: usize) -> Vec<usize> {
    if n <= max {
        (0..n).collect()
    } else {
        (0..max).map(|k| k * n / max).collect()
    }
}

struct Check<'a> {
    graph: &'a Graph,
    input: Vec<f32>,
    seed: Vec<f32>,
}

impl<'a> Check<'a> {
    fn new(graph: &'a Graph, input: Vec<f32>, rng: &mut StdRng) -> Check<'a> {
        let n = ROWS * graph.nodes.last().unwrap().shape.numel();
        let seed = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        Check { graph, input, seed }
    }

    fn analytic_input(&self) -> Vec<f64> {
        let outs = forward_all(self.graph, &self.input, ROWS);
        let g = backward(
            self.graph,
            &self.input,
            &outs,
            ROWS,
            &self.seed,
            Source::Input,
        );
        g.input.iter().map(|&v| v as f64).collect()
    }

    /// The seeded output and kink pattern with node `over`'s output replaced.
    fn eval(&self, input: &[f32], over: Option<(usize, &[f32])>) -> (f64, Vec<u8>) {
        let outs = forward_override(self.graph, input, ROWS, over);
        let f = dot(outs.last().unwrap(), &self.seed);
        (f, branches(self.graph, input, ROWS, &outs))
    }

    fn fd_input(&self, idx: &[usize], step: f32) -> (Vec<f64>, Vec<bool>) {
        central(&self.input, idx, step, |x| self.eval(x, None))
    }

    /// Check the gradient with respect to the input, on every element.
    fn input(&self, what: &str) -> f64 {
        let idx: Vec<usize> = (0..self.input.len()).collect();
        let (fd, kink) = self.fd_input(&idx, STEP);
        let an = self.analytic_input();
        let rel = compare_away_from_kinks(&fd, &an, &kink, what);
        println!("{what}: input gradient max error / scale = {rel:.2e}");
        rel
    }

    /// Check the gradient with respect to node `j`'s output (on up to 300 elements).
    fn node(&self, j: usize, what: &str) {
        let outs = forward_all(self.graph, &self.input, ROWS);
        let g = backward(
            self.graph,
            &self.input,
            &outs,
            ROWS,
            &self.seed,
            Source::Node(j),
        );
        let idx = sample(outs[j].len(), 300);
        let (fd, kink) = central(&outs[j], &idx, STEP, |v| {
            self.eval(&self.input, Some((j, v)))
        });
        let an: Vec<f64> = idx.iter().map(|&i| g.nodes[j][i] as f64).collect();
        let rel = compare_away_from_kinks(&fd, &an, &kink, what);
        println!(
            "{what}: gradient at node {j} ({}) max error / scale = {rel:.2e}",
            self.graph.nodes[j].name
        );
    }
}

/// [`compare`] on the elements whose step does not straddle a kink; at most 5% may be skipped.
fn compare_away_from_kinks(fd: &[f64], an: &[f64], kink: &[bool], what: &str) -> f64 {
    let keep: Vec<usize> = (0..fd.len()).filter(|&k| !kink[k]).collect();
    let skipped = fd.len() - keep.len();
    assert!(
        skipped * 20 <= fd.len(),
        "{what}: {skipped} of {} elements straddle a kink",
        fd.len()
    );
    if skipped > 0 {
        println!(
            "{what}: {skipped} of {} elements straddle a kink (piecewise activation or max-pool argmax), skipped",
            fd.len()
        );
    }
    let pick = |v: &[f64]| keep.iter().map(|&k| v[k]).collect::<Vec<f64>>();
    compare(&pick(fd), &pick(an), what).unwrap_or_else(|e| panic!("{e}"))
}

fn random_input(shape: Shape, rng: &mut StdRng) -> Vec<f32> {
    (0..ROWS * shape.numel())
        .map(|_| rng.random_range(-1.0..1.0))
        .collect()
}

/// Inputs at least 0.05 away from 0 (ReLU kink) with step 1e-2.
fn away_from_zero(shape: Shape, rng: &mut StdRng) -> Vec<f32> {
    (0..ROWS * shape.numel())
        .map(|_| {
            let v: f32 = rng.random_range(0.05..1.0);
            if rng.random_bool(0.5) {
                v
            } else {
                -v
            }
        })
        .collect()
}

/// Distinct values 0.05 apart (a random permutation of a grid), so no max-pool window changes its
/// argmax under a step of 1e-2.
fn distinct(shape: Shape, rng: &mut StdRng) -> Vec<f32> {
    let n = ROWS * shape.numel();
    let mut v: Vec<f32> = (0..n).map(|i| (i as f32 - n as f32 / 2.0) * 0.05).collect();
    for i in (1..n).rev() {
        v.swap(i, rng.random_range(0..=i));
    }
    v
}

/// A graph of one op on `input` (built by `f`), checked at its input.
fn single_op(input: Shape, seed: u64, what: &str, f: impl FnOnce(&mut Builder)) -> f64 {
    let mut b = Builder::new(input, seed);
    f(&mut b);
    let graph = b.graph();
    let mut rng = StdRng::seed_from_u64(seed + 1000);
    let x = random_input(input, &mut rng);
    Check::new(&graph, x, &mut rng).input(what)
}

const IMG: Shape = Shape::Image { c: 4, h: 7, w: 6 };

// ------------------------------------------------------------------ per-op checks

#[test]
fn linear_backward() {
    single_op(Shape::Features(7), 1, "linear", |b| {
        b.linear(5);
    });
    // A linear layer reading a flattened image (the classifier head of a CNN).
    single_op(IMG, 2, "flatten+linear", |b| {
        b.push(Op::Flatten, &[]);
        b.linear(3);
    });
}

/// Causal attention over `[channels, 1, T]` sequences: fused `q, k, v` and separate ones,
/// grouped-query heads, rotary embeddings; the heads merged and flattened after it.
#[test]
fn attention_backward() {
    use nshap_model::Attention;
    let (t, dh) = (5, 4);
    let seq = |c: usize| Shape::Image { c, h: 1, w: t };
    let cases = [
        ("fused, 2 heads", 2, 2, None),
        ("fused, 4 heads on 2 kv heads", 4, 2, None),
        ("fused, rotary", 2, 1, Some(10_000.0)),
    ];
    for (k, (what, heads, kv_heads, rope_theta)) in cases.into_iter().enumerate() {
        let attention = Attention {
            heads,
            kv_heads,
            d_head: dh,
            rope_theta,
            rope_scaling: None,
        };
        single_op(seq((heads + 2 * kv_heads) * dh), 60 + k as u64, what, |b| {
            b.push_shaped(
                Op::Attention(attention),
                &[],
                Some(Shape::Image {
                    c: heads,
                    h: dh,
                    w: t,
                }),
            );
            b.push(Op::MergeHeads, &[]);
            b.push(Op::Flatten, &[]);
        });
    }
    // q, k and v as three inputs (Llama's separate projections), sliced from one tensor.
    single_op(seq(16), 64, "q, k, v apart, rotary", |b| {
        let q = b.push(Op::Slice { start: 0, end: 8 }, &[Source::Input]);
        let k = b.push(Op::Slice { start: 8, end: 12 }, &[Source::Input]);
        let v = b.push(Op::Slice { start: 12, end: 16 }, &[Source::Input]);
        let attention = Attention {
            heads: 2,
            kv_heads: 1,
            d_head: dh,
            rope_theta: Some(100.0),
            // Llama 3's scaling, with a wavelength band that covers these four frequencies.
            rope_scaling: Some(nshap_model::RopeScaling {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 64.0,
            }),
        };
        b.push_shaped(
            Op::Attention(attention),
            &[q, k, v],
            Some(Shape::Image { c: 2, h: dh, w: t }),
        );
        b.push(Op::Flatten, &[]);
    });
}

#[test]
fn conv_backward_variants() {
    type Pair = (usize, usize);
    let mut seed = 10;
    // kernel, stride, padding, dilation, groups, output channels (input [4, 7, 6])
    let mut conv = |what: &str, k: Pair, s: Pair, p: Pair, d: Pair, groups: usize, out: usize| {
        seed += 1;
        single_op(IMG, seed, what, |b| {
            b.conv_from(Source::Input, out, k, s, p, d, groups);
        });
    };
    conv("conv 3x3", (3, 3), (1, 1), (0, 0), (1, 1), 1, 5);
    conv("conv 3x3 padding 1", (3, 3), (1, 1), (1, 1), (1, 1), 1, 5);
    conv(
        "conv 3x3 stride 2 padding 1",
        (3, 3),
        (2, 2),
        (1, 1),
        (1, 1),
        1,
        5,
    );
    conv(
        "conv 3x3 dilation 2 padding 2",
        (3, 3),
        (1, 1),
        (2, 2),
        (2, 2),
        1,
        3,
    );
    conv(
        "conv 3x3 groups 2 padding 1",
        (3, 3),
        (1, 1),
        (1, 1),
        (1, 1),
        2,
        6,
    );
    conv(
        "conv 3x3 depthwise padding 1",
        (3, 3),
        (1, 1),
        (1, 1),
        (1, 1),
        4,
        4,
    );
    conv(
        "conv 3x3 depthwise x2 stride 2",
        (3, 3),
        (2, 2),
        (1, 1),
        (1, 1),
        4,
        8,
    );
    let odd = "conv 3x2 stride (2,1) padding (1,0) dilation (1,2)";
    conv(odd, (3, 2), (2, 1), (1, 0), (1, 2), 1, 3);
    conv("conv 1x1 (pointwise)", (1, 1), (1, 1), (0, 0), (1, 1), 1, 6);
    conv(
        "conv 1x1 stride 2 (downsample)",
        (1, 1),
        (2, 2),
        (0, 0),
        (1, 1),
        1,
        6,
    );
}

#[test]
fn batchnorm_backward() {
    single_op(IMG, 30, "batchnorm [C,H,W]", |b| {
        b.batchnorm();
    });
    single_op(Shape::Features(9), 31, "batchnorm [F]", |b| {
        b.batchnorm();
    });
}

#[test]
fn activation_backward() {
    for (i, act) in [
        Activation::Gelu,
        Activation::GeluTanh,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Relu,
    ]
    .into_iter()
    .enumerate()
    {
        let mut b = Builder::new(IMG, 40 + i as u64);
        b.act(act);
        let graph = b.graph();
        let mut rng = StdRng::seed_from_u64(140 + i as u64);
        // Inputs in [-3, 3] (GELU/sigmoid/tanh curve there) but away from ReLU's kink.
        let x: Vec<f32> = away_from_zero(IMG, &mut rng)
            .into_iter()
            .map(|v| 3.0 * v)
            .collect();
        Check::new(&graph, x, &mut rng).input(&format!("{act:?}"));
    }
}

#[test]
fn pool_backward() {
    type Pair = (usize, usize);
    // name, max (else average), kernel, stride, padding
    let cases: [(&str, bool, Pair, Pair, Pair); 6] = [
        ("maxpool 2x2", true, (2, 2), (2, 2), (0, 0)),
        (
            "maxpool 3x3 stride 2 padding 1",
            true,
            (3, 3),
            (2, 2),
            (1, 1),
        ),
        (
            "maxpool 3x2 stride 1 padding (1,1)",
            true,
            (3, 2),
            (1, 1),
            (1, 1),
        ),
        ("avgpool 2x2", false, (2, 2), (2, 2), (0, 0)),
        (
            "avgpool 3x3 stride 2 padding 1",
            false,
            (3, 3),
            (2, 2),
            (1, 1),
        ),
        (
            "avgpool 2x3 stride (1,2) padding (1,1)",
            false,
            (2, 3),
            (1, 2),
            (1, 1),
        ),
    ];
    for (i, (what, max, k, s, p)) in cases.into_iter().enumerate() {
        let mut b = Builder::new(IMG, 50 + i as u64);
        b.pool(max, k, s, p);
        let graph = b.graph();
        let mut rng = StdRng::seed_from_u64(150 + i as u64);
        let x = distinct(IMG, &mut rng);
        Check::new(&graph, x, &mut rng).input(what);
    }
}

/// Max-pool ties go to the first position of the window (row-major), as in PyTorch.
#[test]
fn maxpool_ties_go_to_the_first_position() {
    let mut b = Builder::new(Shape::Image { c: 1, h: 2, w: 4 }, 60);
    b.pool(true, (2, 2), (2, 2), (0, 0));
    let graph = b.graph();
    // Window 0: all zeros -> (0, 0); window 1: max 2 at (0, 3) and (1, 2) -> (0, 3) first.
    let x = [0.0, 0.0, 1.0, 2.0, 0.0, 0.0, 2.0, -1.0];
    let outs = forward_all(&graph, &x, 1);
    let g = backward(&graph, &x, &outs, 1, &[10.0, 20.0], Source::Input);
    assert_eq!(g.input, [10.0, 0.0, 0.0, 20.0, 0.0, 0.0, 0.0, 0.0]);
}

#[test]
fn global_avgpool_flatten_identity_backward() {
    single_op(IMG, 70, "global avgpool", |b| {
        b.push(Op::GlobalAvgPool, &[]);
    });
    single_op(IMG, 71, "flatten", |b| {
        b.push(Op::Flatten, &[]);
    });
    single_op(IMG, 72, "identity", |b| {
        b.push(Op::Identity, &[]);
    });
}

/// Add with fan-out: a node read by a conv and by the add (residual), and `x + x`.
#[test]
fn add_backward_with_fan_out() {
    single_op(IMG, 80, "residual add (fan-out)", |b| {
        let t = b.act(Activation::Tanh);
        let c = b.conv(4, 3, 1, 1, 1, 1);
        b.push(Op::Add, &[c, t]);
    });
    single_op(IMG, 81, "add(x, x) of one node", |b| {
        let t = b.act(Activation::Sigmoid);
        b.push(Op::Add, &[t, t]);
    });
    single_op(IMG, 82, "add(input, node)", |b| {
        let c = b.conv(4, 3, 1, 1, 1, 1);
        b.push(Op::Add, &[Source::Input, c]);
    });
}

/// Inputs in `[lo, hi]` at least 0.05 from every point of `kinks` (step 1e-2).
fn away_from(shape: Shape, lo: f32, hi: f32, kinks: &[f32], rng: &mut StdRng) -> Vec<f32> {
    (0..ROWS * shape.numel())
        .map(|_| loop {
            let v: f32 = rng.random_range(lo..hi);
            if kinks.iter().all(|k| (v - k).abs() >= 0.05) {
                break v;
            }
        })
        .collect()
}

#[test]
fn new_activations_backward() {
    let acts = [
        (Activation::Silu, vec![]),
        (Activation::Hardswish, vec![-3.0, 3.0]),
        (Activation::Hardsigmoid, vec![-3.0, 3.0]),
        (
            Activation::HardTanh {
                min: -0.5,
                max: 0.7,
            },
            vec![-0.5, 0.7],
        ),
        (Activation::HardTanh { min: 0.0, max: 6.0 }, vec![0.0, 6.0]),
        (Activation::LeakyRelu { slope: 0.1 }, vec![0.0]),
        (Activation::LeakyRelu { slope: -0.3 }, vec![0.0]),
        (Activation::Elu { alpha: 1.0 }, vec![0.0]),
        (Activation::Elu { alpha: 0.6 }, vec![0.0]),
    ];
    for (i, (act, kinks)) in acts.into_iter().enumerate() {
        let mut b = Builder::new(IMG, 200 + i as u64);
        b.act(act);
        let graph = b.graph();
        let mut rng = StdRng::seed_from_u64(300 + i as u64);
        // [-4, 7]: both sides of hardswish/hardsigmoid's -3 and 3 and of ReLU6's 6.
        let x = away_from(IMG, -4.0, 7.0, &kinks, &mut rng);
        let what = format!("{act:?}");
        Check::new(&graph, x.clone(), &mut rng).input(&what);
        // Every piece of the activation is visited (the check covers all branches).
        let pieces: std::collections::BTreeSet<u8> = x.iter().map(|&v| kink_side(act, v)).collect();
        assert_eq!(pieces.len(), kinks.len() + 1, "{what}: pieces {pieces:?}");
    }
}

/// PyTorch's derivatives at the kinks themselves (the finite differences cannot see them).
#[test]
fn activation_derivatives_at_kinks_follow_pytorch() {
    use nshap_cpu::ops::elementwise::activation_derivative as d;
    let at = |a: Activation, x: f32| d(a, x, a.apply(x));
    assert_eq!(at(Activation::Relu, 0.0), 0.0);
    assert_eq!(at(Activation::LeakyRelu { slope: 0.1 }, 0.0), 0.1);
    assert_eq!(at(Activation::Elu { alpha: 0.5 }, 0.0), 0.5);
    let relu6 = Activation::HardTanh { min: 0.0, max: 6.0 };
    assert_eq!(
        (at(relu6, 0.0), at(relu6, 6.0), at(relu6, 3.0)),
        (0.0, 0.0, 1.0)
    );
    assert_eq!(at(Activation::Hardsigmoid, -3.0), 0.0);
    assert_eq!(at(Activation::Hardsigmoid, 3.0), 0.0);
    assert_eq!(at(Activation::Hardsigmoid, 0.0), 1.0 / 6.0);
    assert_eq!(at(Activation::Hardswish, -3.0), -0.5);
    assert_eq!(at(Activation::Hardswish, 3.0), 1.5);
    assert_eq!(at(Activation::Hardswish, -3.01), 0.0);
    assert_eq!(at(Activation::Hardswish, 3.01), 1.0);
    assert_eq!(at(Activation::Silu, 0.0), 0.5);
}

#[test]
fn prelu_and_scale_backward() {
    for (i, shape) in [IMG, Shape::Features(9)].into_iter().enumerate() {
        let mut b = Builder::new(shape, 210 + i as u64);
        b.prelu();
        let graph = b.graph();
        let mut rng = StdRng::seed_from_u64(310 + i as u64);
        let x = away_from_zero(shape, &mut rng);
        Check::new(&graph, x, &mut rng).input(&format!("prelu {shape}"));
        single_op(shape, 212 + i as u64, &format!("scale {shape}"), |b| {
            b.scale();
        });
    }
}

#[test]
fn pool_options_backward() {
    let p = |k: usize, s: usize, pad: usize| Pool2d::new((k, k), (s, s), (pad, pad));
    let with = |mut pool: Pool2d, f: &dyn Fn(&mut Pool2d)| {
        f(&mut pool);
        pool
    };
    // Input [4, 7, 6]: ceil mode adds a window along H for 2x2 s2 and along W for 3x3 s2 p1.
    let cases: Vec<(&str, bool, Pool2d)> = vec![
        (
            "maxpool 3x3 dilation 2",
            true,
            with(p(3, 1, 0), &|q| q.dilation = (2, 2)),
        ),
        (
            "maxpool 3x2 dilation (2,3) padding (2,1) stride 2",
            true,
            with(Pool2d::new((3, 2), (2, 2), (2, 1)), &|q| {
                q.dilation = (2, 3)
            }),
        ),
        (
            "maxpool 2x2 ceil",
            true,
            with(p(2, 2, 0), &|q| q.ceil_mode = true),
        ),
        (
            "maxpool 3x3 s2 p1 ceil",
            true,
            with(p(3, 2, 1), &|q| q.ceil_mode = true),
        ),
        (
            "maxpool 3x3 s2 p1 dilation 2 ceil",
            true,
            with(p(3, 2, 1), &|q| {
                q.ceil_mode = true;
                q.dilation = (2, 2)
            }),
        ),
        (
            "avgpool 2x2 ceil",
            false,
            with(p(2, 2, 0), &|q| q.ceil_mode = true),
        ),
        (
            "avgpool 3x3 s2 p1 ceil (divisor clipped to the padded input)",
            false,
            with(p(3, 2, 1), &|q| q.ceil_mode = true),
        ),
        (
            "avgpool 3x3 s1 p1 count_include_pad=false",
            false,
            with(p(3, 1, 1), &|q| q.count_include_pad = false),
        ),
        (
            "avgpool 3x3 s2 p1 ceil count_include_pad=false",
            false,
            with(p(3, 2, 1), &|q| {
                q.ceil_mode = true;
                q.count_include_pad = false
            }),
        ),
    ];
    for (i, (what, max, pool)) in cases.into_iter().enumerate() {
        let mut b = Builder::new(IMG, 220 + i as u64);
        b.pool_with(max, pool);
        let graph = b.graph();
        let Shape::Image { h, w, .. } = graph.nodes[0].shape else {
            unreachable!()
        };
        let floor = Pool2d {
            ceil_mode: false,
            ..pool
        };
        if pool.ceil_mode {
            let more = (floor.out_len(7, 0).unwrap(), floor.out_len(6, 1).unwrap()) != (h, w);
            assert!(more, "{what}: ceil mode should add a window here");
        }
        let mut rng = StdRng::seed_from_u64(320 + i as u64);
        let x = distinct(IMG, &mut rng);
        Check::new(&graph, x, &mut rng).input(what);
    }
}

#[test]
fn adaptive_avgpool_backward() {
    // 7 x 6 to 3 x 4 (overlapping windows on both axes), 5 x 5, 2 x 1, 1 x 1, 7 x 6 (identity).
    for (i, (h, w)) in [(3, 4), (5, 5), (2, 1), (1, 1), (7, 6)]
        .into_iter()
        .enumerate()
    {
        let what = format!("adaptive avgpool to {h}x{w}");
        single_op(IMG, 230 + i as u64, &what, |b| {
            b.push_shaped(
                Op::AdaptiveAvgPool2d,
                &[],
                Some(Shape::Image { c: 4, h, w }),
            );
        });
    }
}

#[test]
fn mul_backward_with_broadcasting() {
    single_op(IMG, 240, "mul(x, y) same shape", |b| {
        let t = b.act(Activation::Tanh);
        let c = b.conv(4, 3, 1, 1, 1, 1);
        b.push(Op::Mul, &[t, c]);
    });
    single_op(IMG, 241, "mul(x, x)", |b| {
        let t = b.act(Activation::Tanh);
        b.push(Op::Mul, &[t, t]);
    });
    // Squeeze-and-excitation: the [C, 1, 1] gate as the second and as the first operand.
    for (i, gate_first) in [false, true].into_iter().enumerate() {
        let what = format!("mul with a [C,1,1] operand (gate first: {gate_first})");
        single_op(IMG, 242 + i as u64, &what, |b| {
            let x = b.act(Activation::Silu);
            b.push(Op::GlobalAvgPool, &[]);
            b.conv(4, 1, 1, 0, 1, 1);
            let gate = b.act(Activation::Sigmoid);
            let inputs = if gate_first { [gate, x] } else { [x, gate] };
            b.push(Op::Mul, &inputs);
        });
    }
    // A [C] operand broadcast over [C, H, W].
    single_op(IMG, 244, "mul with a [C] operand", |b| {
        let x = b.act(Activation::Tanh);
        b.push(Op::GlobalAvgPool, &[]);
        b.push(Op::Flatten, &[]);
        let v = b.act(Activation::Sigmoid);
        b.push(Op::Mul, &[v, x]);
    });
    single_op(Shape::Features(6), 245, "mul [F] x [F]", |b| {
        let t = b.act(Activation::Tanh);
        b.push(Op::Mul, &[t, Source::Input]);
    });
}

#[test]
fn concat_slice_shuffle_backward() {
    single_op(IMG, 250, "concat(conv, input, conv)", |b| {
        let c = b.conv(3, 3, 1, 1, 1, 1);
        b.push(Op::Concat, &[c, Source::Input, c]);
    });
    single_op(Shape::Features(5), 251, "concat [F]", |b| {
        let t = b.act(Activation::Tanh);
        b.linear(3);
        let l = b.last();
        b.push(Op::Concat, &[l, t]);
    });
    single_op(IMG, 252, "slice 1..3", |b| {
        b.push(Op::Slice { start: 1, end: 3 }, &[]);
    });
    single_op(Shape::Features(7), 253, "slice [F] 2..7", |b| {
        b.push(Op::Slice { start: 2, end: 7 }, &[]);
    });
    let six = Shape::Image { c: 6, h: 3, w: 4 };
    for (i, groups) in [2, 3, 1, 6].into_iter().enumerate() {
        single_op(
            six,
            254 + i as u64,
            &format!("channel shuffle g{groups}"),
            |b| {
                b.push(Op::ChannelShuffle { groups }, &[]);
            },
        );
    }
}

#[test]
fn layernorm_backward() {
    for (i, shape) in [
        Shape::Image { c: 8, h: 3, w: 4 },
        Shape::Features(10),
        Shape::Image { c: 1, h: 2, w: 2 },
    ]
    .into_iter()
    .enumerate()
    {
        single_op(shape, 260 + i as u64, &format!("layernorm {shape}"), |b| {
            b.layernorm();
            if shape.channels() == 1 {
                // One channel normalises to the bias: zero Jacobian; add a path that is not.
                let ln = b.last();
                b.push(Op::Mul, &[ln, Source::Input]);
            }
        });
    }
}

#[test]
fn rmsnorm_backward() {
    for (i, shape) in [Shape::Image { c: 8, h: 1, w: 5 }, Shape::Features(10)]
        .into_iter()
        .enumerate()
    {
        single_op(shape, 270 + i as u64, &format!("rmsnorm {shape}"), |b| {
            let c = shape.channels();
            let weight = b.uniform(c, 1.5);
            b.push(Op::RmsNorm(nshap_model::RmsNorm { weight, eps: 1e-6 }), &[]);
        });
    }
}

// ------------------------------------------------------------------ whole graphs

/// A small random graph using every op kind, with residual fan-out, checked at the input and at
/// every node (total derivatives through everything downstream).
#[test]
fn whole_graph_backward() {
    // Small input: the f32 rounding noise of f relative to one element's gradient grows with the
    // number of elements feeding each logit.
    let input = Shape::Image { c: 2, h: 7, w: 7 };
    let mut b = Builder::new(input, 90);
    b.conv(6, 3, 2, 1, 1, 1); // 0: [6, 4, 4]
    b.batchnorm(); // 1
    let stem = b.act(Activation::Relu); // 2: read by 3, 6 and 8
    b.conv(6, 3, 1, 2, 2, 2); // 3: dilation 2, groups 2
    b.act(Activation::Gelu); // 4
    let dw = b.conv(6, 3, 1, 1, 1, 6); // 5: depthwise
    b.push(Op::Add, &[dw, stem]); // 6
    let main = b.push(Op::Identity, &[]); // 7
    let short = b.conv_from(stem, 6, (1, 1), (2, 2), (0, 0), (1, 1), 1); // 8: [6, 2, 2]
    let pooled = b.push(Op::MaxPool2d(Pool2d::new((3, 3), (2, 2), (1, 1))), &[main]); // 9: [6, 2, 2]
    b.push(Op::Add, &[pooled, short]); // 10
    b.pool(false, (3, 3), (1, 1), (1, 1)); // 11: [6, 2, 2]
    b.act(Activation::Tanh); // 12
    b.push(Op::GlobalAvgPool, &[]); // 13
    b.push(Op::Flatten, &[]); // 14
    b.linear(8); // 15
    b.act(Activation::Sigmoid); // 16
    b.batchnorm(); // 17: [F]
    b.linear(5); // 18: logits
    let graph = b.graph();
    let mut rng = StdRng::seed_from_u64(190);
    let x = random_input(input, &mut rng);
    let check = Check::new(&graph, x, &mut rng);
    check.input("whole graph");
    for j in 0..graph.nodes.len() {
        check.node(j, "whole graph");
    }
}

/// The digits-resnet-like pattern: a node read by both a conv and an Add, a strided shortcut,
/// and a player-style node upstream of another.
#[test]
fn residual_block_backward() {
    let input = Shape::Image { c: 2, h: 8, w: 8 };
    let mut b = Builder::new(input, 95);
    b.conv(4, 3, 1, 1, 1, 1);
    let stem = b.act(Activation::Tanh);
    b.conv(4, 3, 1, 1, 1, 1);
    b.batchnorm();
    b.act(Activation::Gelu);
    let c2 = b.conv(4, 3, 1, 1, 1, 1);
    b.push(Op::Add, &[c2, stem]);
    let r1 = b.act(Activation::Sigmoid);
    let main = b.conv(6, 3, 2, 1, 1, 1);
    let short = b.conv_from(r1, 6, (1, 1), (2, 2), (0, 0), (1, 1), 1);
    b.push(Op::Add, &[main, short]);
    b.push(Op::GlobalAvgPool, &[]);
    b.push(Op::Flatten, &[]);
    b.linear(4);
    let graph = b.graph();
    let mut rng = StdRng::seed_from_u64(195);
    let x = random_input(input, &mut rng);
    let check = Check::new(&graph, x, &mut rng);
    check.input("residual block");
    for j in 0..graph.nodes.len() {
        check.node(j, "residual block");
    }
}

/// Graphs of the ops added for MobileNet/ShuffleNet/ConvNeXt/EfficientNet-style models, checked
/// at the input and at every node. First: dilated ceil-mode max pooling, layer norm, hardswish,
/// squeeze-and-excitation (a broadcast mul), PReLU, concat, channel shuffle, a slice and a layer
/// scale. Second: ceil-mode average pooling without counting padding, ELU, adaptive average
/// pooling, leaky ReLU, SiLU and layer norm over features. (Two graphs rather than one: each node's gradient
/// is then large enough against the f32 rounding of f for the 2e-3 tolerance.)
#[test]
fn whole_graphs_of_new_ops_backward() {
    let input = Shape::Image { c: 2, h: 8, w: 8 };
    let mut b = Builder::new(input, 270);
    b.conv(6, 3, 1, 1, 1, 1); // 0: [6, 8, 8]
                              // Max pooling early, on values that do not depend on every input (so that few steps change
                              // an argmax): 3x3 dilation 2, stride 2, padding 1, ceil mode (4 windows instead of 3).
    let mut pool = Pool2d::new((3, 3), (2, 2), (1, 1));
    pool.dilation = (2, 2);
    pool.ceil_mode = true;
    let stem = b.pool_with(true, pool); // 1: [6, 4, 4]
    b.layernorm(); // 2
    let x = b.act(Activation::Hardswish); // 3
    b.push(Op::GlobalAvgPool, &[]); // 4: [6, 1, 1]
    b.conv(6, 1, 1, 0, 1, 1); // 5
    let gate = b.act(Activation::Hardsigmoid); // 6
    let se = b.push(Op::Mul, &[x, gate]); // 7: [6, 4, 4]
    b.conv_from(stem, 4, (1, 1), (1, 1), (0, 0), (1, 1), 1); // 8: [4, 4, 4]
    let side = b.prelu(); // 9
    b.push(Op::Concat, &[se, side]); // 10: [10, 4, 4]
    b.push(Op::ChannelShuffle { groups: 2 }, &[]); // 11
    b.push(Op::Slice { start: 2, end: 8 }, &[]); // 12: [6, 4, 4]
    b.scale(); // 13
    b.push(Op::Flatten, &[]); // 14
    b.linear(5); // 15: logits
    let graph = b.graph();
    let mut rng = StdRng::seed_from_u64(370);
    // Inputs in [-3, 3]: the layer norm's input then varies over the channels by much more than
    // the step at every position (the FD truncation error grows as (step / std)^2).
    let x: Vec<f32> = random_input(input, &mut rng)
        .into_iter()
        .map(|v| 3.0 * v)
        .collect();
    let check = Check::new(&graph, x, &mut rng);
    check.input("new-ops graph 1");
    for j in 0..graph.nodes.len() {
        check.node(j, "new-ops graph 1");
    }

    let input = Shape::Image { c: 2, h: 6, w: 6 };
    let mut b = Builder::new(input, 271);
    b.conv(6, 3, 1, 1, 1, 1); // 0: [6, 6, 6]
    let mut avg = Pool2d::new((3, 3), (2, 2), (1, 1));
    avg.count_include_pad = false;
    avg.ceil_mode = true;
    b.pool_with(false, avg); // 1: [6, 4, 4] (ceil mode: 3 without)
    b.act(Activation::Elu { alpha: 0.7 }); // 2
    b.push_shaped(
        Op::AdaptiveAvgPool2d,
        &[],
        Some(Shape::Image { c: 6, h: 3, w: 3 }),
    ); // 3: overlapping windows
    b.act(Activation::LeakyRelu { slope: 0.2 }); // 4
    b.push(Op::Flatten, &[]); // 5
    b.linear(8); // 6
    b.act(Activation::Silu); // 7
    b.layernorm(); // 8: [F]
    b.linear(5); // 9: logits
    let graph = b.graph();
    let mut rng = StdRng::seed_from_u64(371);
    // [-3, 3] too: fewer values of the averages within a step of ELU's and leaky ReLU's kink.
    let x: Vec<f32> = random_input(input, &mut rng)
        .into_iter()
        .map(|v| 3.0 * v)
        .collect();
    let check = Check::new(&graph, x, &mut rng);
    check.input("new-ops graph 2");
    for j in 0..graph.nodes.len() {
        check.node(j, "new-ops graph 2");
    }
}

// ------------------------------------------------------------------ the check has teeth

/// Wrong gradients fail the tolerance: the analytic gradient of a conv with transposed or
/// flipped kernel, the right gradient shifted by one pixel (what an off-by-one padding in col2im
/// does), and the right gradient scaled by 1.02.
#[test]
fn the_tolerance_rejects_wrong_gradients() {
    let mut b = Builder::new(IMG, 99);
    b.conv_from(Source::Input, 5, (3, 3), (1, 1), (1, 1), (1, 1), 1);
    let graph = b.graph();
    let mut rng = StdRng::seed_from_u64(199);
    let x = random_input(IMG, &mut rng);
    let check = Check::new(&graph, x, &mut rng);
    let idx: Vec<usize> = (0..check.input.len()).collect();
    let (fd, _) = check.fd_input(&idx, STEP);
    let right = check.analytic_input();
    compare(&fd, &right, "right gradient").unwrap();

    let mutant = |f: &dyn Fn(usize, usize, usize, usize) -> (usize, usize)| {
        let mut g = graph.clone();
        let Op::Conv2d(c) = &mut g.nodes[0].op else {
            unreachable!()
        };
        let w = c.weight.clone();
        let cin = c.in_channels;
        for o in 0..c.out_channels {
            for i in 0..cin {
                for ky in 0..3 {
                    for kx in 0..3 {
                        let (sy, sx) = f(o, i, ky, kx);
                        c.weight[((o * cin + i) * 3 + ky) * 3 + kx] =
                            w[((o * cin + i) * 3 + sy) * 3 + sx];
                    }
                }
            }
        }
        Check {
            graph: &g,
            input: check.input.clone(),
            seed: check.seed.clone(),
        }
        .analytic_input()
    };
    let transposed = mutant(&|_, _, ky, kx| (kx, ky));
    let flipped = mutant(&|_, _, ky, kx| (2 - ky, 2 - kx));
    let (Shape::Image { w, .. }, n) = (IMG, right.len()) else {
        unreachable!()
    };
    let shifted: Vec<f64> = (0..n)
        .map(|i| if i % w == 0 { 0.0 } else { right[i - 1] })
        .collect();
    let scaled: Vec<f64> = right.iter().map(|v| v * 1.02).collect();
    for (what, wrong) in [
        ("transposed kernel", transposed),
        ("flipped kernel", flipped),
        ("shifted by one pixel", shifted),
        ("scaled by 1.02", scaled),
    ] {
        let err = compare(&fd, &wrong, what).expect_err(what);
        println!("rejected as it should: {err}");
    }
}
