//! Sequence ops of language models: token embedding, causal self-attention, reading one position.
//!
//! Sequences are `[D, 1, T]`, channel-major (see `nshap_model::sequence`); a token model's example
//! is its `T` token ids followed by the position its metric reads.

use super::{row, row_mut};
use nshap_model::{Attention, Embedding};

/// The token id at `t` of an example row, clamped into the vocabulary (ids are checked when the
/// eval set is made).
fn token(example: &[f32], t: usize, vocab: usize) -> usize {
    (example[t].max(0.0) as usize).min(vocab - 1)
}

/// The position an example's metric reads (its last value), clamped into `0..tokens`.
pub fn read_position(example: &[f32], tokens: usize) -> usize {
    (example[tokens].max(0.0) as usize).min(tokens - 1)
}

/// `out[d, t] = weight[id_t, d] + positions[t, d]`.
pub fn embedding(e: &Embedding, input: &[f32], rows: usize, out: &mut [f32]) {
    let (t_len, dim) = (e.tokens, e.dim);
    for r in 0..rows {
        let ex = row(input, t_len + 1, r);
        let o = &mut out[r * dim * t_len..(r + 1) * dim * t_len];
        for t in 0..t_len {
            let w = &e.weight[token(ex, t, e.vocab) * dim..][..dim];
            for (d, &v) in w.iter().enumerate() {
                o[d * t_len + t] = v;
            }
            if let Some(p) = &e.positions {
                for (d, &v) in p[t * dim..(t + 1) * dim].iter().enumerate() {
                    o[d * t_len + t] += v;
                }
            }
        }
    }
}

/// `out[d] = x[d, pos]` at each example's read position; `examples` holds the graph inputs.
pub fn select_position(
    x: &[f32],
    examples: &[f32],
    dim: usize,
    tokens: usize,
    rows: usize,
    out: &mut [f32],
) {
    for r in 0..rows {
        let pos = read_position(row(examples, tokens + 1, r), tokens);
        let xs = row(x, dim * tokens, r);
        let o = row_mut(out, dim, r);
        for (d, v) in o.iter_mut().enumerate() {
            *v = xs[d * tokens + pos];
        }
    }
}

/// Gradient of [`select_position`] with respect to the sequence.
pub fn select_position_backward(
    examples: &[f32],
    dim: usize,
    tokens: usize,
    grad_out: &[f32],
    grad_in: &mut [f32],
) {
    let rows = grad_out.len() / dim;
    for r in 0..rows {
        let pos = read_position(row(examples, tokens + 1, r), tokens);
        let g = &grad_out[r * dim..(r + 1) * dim];
        let gi = row_mut(grad_in, dim * tokens, r);
        for (d, &v) in g.iter().enumerate() {
            gi[d * tokens + pos] += v;
        }
    }
}

/// Where one row's queries, keys and values live: channel `c` at position `t` of tensor `k` is
/// `tensors[k][(first[k] + c) * T + t]`.
struct Qkv<'a> {
    q: (&'a [f32], usize),
    k: (&'a [f32], usize),
    v: (&'a [f32], usize),
}

impl<'a> Qkv<'a> {
    /// Row `r` of the attention inputs (one fused tensor or three).
    fn of_row(a: &Attention, inputs: &[&'a [f32]], t_len: usize, r: usize) -> Qkv<'a> {
        let (h, kv, dh) = (a.heads, a.kv_heads, a.d_head);
        match inputs {
            [fused] => {
                let x = row(fused, (h + 2 * kv) * dh * t_len, r);
                Qkv {
                    q: (x, 0),
                    k: (x, h * dh),
                    v: (x, (h + kv) * dh),
                }
            }
            [q, k, v] => Qkv {
                q: (row(q, h * dh * t_len, r), 0),
                k: (row(k, kv * dh * t_len, r), 0),
                v: (row(v, kv * dh * t_len, r), 0),
            },
            _ => unreachable!("attention reads 1 or 3 inputs"),
        }
    }
}

/// Head `head`'s `[T, d_head]` slice of a channel-major tensor whose head slices start at channel
/// `first`, position-major so each position's vector is contiguous.
fn gather_head(src: (&[f32], usize), head: usize, dh: usize, t_len: usize) -> Vec<f32> {
    let (x, first) = src;
    let mut out = vec![0.0; t_len * dh];
    for i in 0..dh {
        let ch = &x[(first + head * dh + i) * t_len..][..t_len];
        for (t, &v) in ch.iter().enumerate() {
            out[t * dh + i] = v;
        }
    }
    out
}

/// Rotary position embedding (Hugging Face's `rotate_half` convention) of `[T, d_head]` vectors;
/// `inv_freq[i]` is pair `i`'s frequency ([`Attention::inv_freq`]).
fn rope(x: &mut [f32], dh: usize, inv_freq: &[f32]) {
    let half = dh / 2;
    for (t, v) in x.chunks_exact_mut(dh).enumerate() {
        for (i, &f) in inv_freq.iter().enumerate() {
            let (sin, cos) = (t as f32 * f).sin_cos();
            let (a, b) = (v[i], v[i + half]);
            v[i] = a * cos - b * sin;
            v[i + half] = b * cos + a * sin;
        }
    }
}

/// Causal softmax attention of one head: `probs[t, s]` for `s <= t` (row-major `[T, T]`,
/// zero above the diagonal) and `out[t, :] = sum_s probs[t, s] v[s, :]`.
fn head_forward(q: &[f32], k: &[f32], v: &[f32], dh: usize, t_len: usize) -> (Vec<f32>, Vec<f32>) {
    let scale = 1.0 / (dh as f32).sqrt();
    let mut probs = vec![0.0f32; t_len * t_len];
    let mut out = vec![0.0f32; t_len * dh];
    for t in 0..t_len {
        let qt = &q[t * dh..(t + 1) * dh];
        let p = &mut probs[t * t_len..t * t_len + t + 1];
        for (s, ps) in p.iter_mut().enumerate() {
            let ks = &k[s * dh..(s + 1) * dh];
            *ps = qt.iter().zip(ks).map(|(a, b)| a * b).sum::<f32>() * scale;
        }
        let max = p.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for ps in p.iter_mut() {
            *ps = super::fastmath::exp(*ps - max);
            sum += *ps;
        }
        let o = &mut out[t * dh..(t + 1) * dh];
        for (s, ps) in p.iter_mut().enumerate() {
            *ps /= sum;
            for (oi, vi) in o.iter_mut().zip(&v[s * dh..(s + 1) * dh]) {
                *oi += *ps * vi;
            }
        }
    }
    (probs, out)
}

/// Queries, keys and values of one row, per head, rotary embedding applied.
struct Heads {
    q: Vec<Vec<f32>>,
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

fn heads_of(a: &Attention, src: &Qkv<'_>, t_len: usize) -> Heads {
    let dh = a.d_head;
    let mut q: Vec<Vec<f32>> = (0..a.heads)
        .map(|h| gather_head(src.q, h, dh, t_len))
        .collect();
    let mut k: Vec<Vec<f32>> = (0..a.kv_heads)
        .map(|g| gather_head(src.k, g, dh, t_len))
        .collect();
    let v = (0..a.kv_heads)
        .map(|g| gather_head(src.v, g, dh, t_len))
        .collect();
    if a.rope_theta.is_some() {
        let inv_freq: Vec<f32> = (0..dh / 2).map(|i| a.inv_freq(i)).collect();
        q.iter_mut()
            .chain(k.iter_mut())
            .for_each(|x| rope(x, dh, &inv_freq));
    }
    Heads { q, k, v }
}

/// Causal self-attention; output `[heads, d_head, T]` per row.
pub fn attention(a: &Attention, inputs: &[&[f32]], t_len: usize, rows: usize, out: &mut [f32]) {
    let (dh, group) = (a.d_head, a.heads / a.kv_heads);
    let numel = a.heads * dh * t_len;
    for r in 0..rows {
        let heads = heads_of(a, &Qkv::of_row(a, inputs, t_len, r), t_len);
        let o = &mut out[r * numel..(r + 1) * numel];
        for h in 0..a.heads {
            let g = h / group;
            let (_, y) = head_forward(&heads.q[h], &heads.k[g], &heads.v[g], dh, t_len);
            for t in 0..t_len {
                for i in 0..dh {
                    o[(h * dh + i) * t_len + t] = y[t * dh + i];
                }
            }
        }
    }
}

/// Undo [`rope`] on a gradient: the rotation's transpose.
fn rope_backward(g: &mut [f32], dh: usize, inv_freq: &[f32]) {
    let half = dh / 2;
    for (t, v) in g.chunks_exact_mut(dh).enumerate() {
        for (i, &f) in inv_freq.iter().enumerate() {
            let (sin, cos) = (t as f32 * f).sin_cos();
            let (a, b) = (v[i], v[i + half]);
            v[i] = a * cos + b * sin;
            v[i + half] = b * cos - a * sin;
        }
    }
}

/// Vector-Jacobian product of [`attention`] with respect to input `k` (the fused tensor, or one
/// of `q`, `k`, `v`), accumulated into `grad_in` (see the row convention in `ops`).
pub fn attention_backward(
    a: &Attention,
    inputs: &[&[f32]],
    k: usize,
    t_len: usize,
    grad_out: &[f32],
    grad_in: &mut [f32],
) {
    let (h_n, kv, dh) = (a.heads, a.kv_heads, a.d_head);
    let group = h_n / kv;
    let numel = h_n * dh * t_len;
    let scale = 1.0 / (dh as f32).sqrt();
    let rows = grad_out.len() / numel;
    for r in 0..rows {
        let heads = heads_of(a, &Qkv::of_row(a, inputs, t_len, r), t_len);
        let go = &grad_out[r * numel..(r + 1) * numel];
        let mut gq = vec![vec![0.0f32; t_len * dh]; h_n];
        let mut gk = vec![vec![0.0f32; t_len * dh]; kv];
        let mut gv = vec![vec![0.0f32; t_len * dh]; kv];
        for h in 0..h_n {
            let g = h / group;
            let (probs, _) = head_forward(&heads.q[h], &heads.k[g], &heads.v[g], dh, t_len);
            let mut dy = vec![0.0f32; t_len * dh];
            for t in 0..t_len {
                for i in 0..dh {
                    dy[t * dh + i] = go[(h * dh + i) * t_len + t];
                }
            }
            for t in 0..t_len {
                let p = &probs[t * t_len..t * t_len + t + 1];
                let dyt = &dy[t * dh..(t + 1) * dh];
                // dP[t, s] = dy_t . v_s; dS = P * (dP - sum_s P dP).
                let dp: Vec<f32> = (0..=t)
                    .map(|s| {
                        dyt.iter()
                            .zip(&heads.v[g][s * dh..(s + 1) * dh])
                            .map(|(x, y)| x * y)
                            .sum()
                    })
                    .collect();
                let dot: f32 = p.iter().zip(&dp).map(|(x, y)| x * y).sum();
                for s in 0..=t {
                    let ds = p[s] * (dp[s] - dot) * scale;
                    for i in 0..dh {
                        gv[g][s * dh + i] += p[s] * dyt[i];
                        gq[h][t * dh + i] += ds * heads.k[g][s * dh + i];
                        gk[g][s * dh + i] += ds * heads.q[h][t * dh + i];
                    }
                }
            }
        }
        if a.rope_theta.is_some() {
            let inv_freq: Vec<f32> = (0..dh / 2).map(|i| a.inv_freq(i)).collect();
            gq.iter_mut()
                .chain(gk.iter_mut())
                .for_each(|x| rope_backward(x, dh, &inv_freq));
        }
        // Scatter the per-head gradients into the input layout.
        let parts: [(&[Vec<f32>], usize, usize); 3] = match inputs.len() {
            1 => [(&gq, 0, 0), (&gk, 0, h_n * dh), (&gv, 0, (h_n + kv) * dh)],
            _ => [(&gq, 0, 0), (&gk, 1, 0), (&gv, 2, 0)],
        };
        let in_numel = match inputs.len() {
            1 => (h_n + 2 * kv) * dh * t_len,
            _ if k == 0 => h_n * dh * t_len,
            _ => kv * dh * t_len,
        };
        let gi = row_mut(grad_in, in_numel, r);
        for (grads, tensor, first) in parts {
            if tensor != k {
                continue;
            }
            for (head, gh) in grads.iter().enumerate() {
                for i in 0..dh {
                    let ch = &mut gi[(first + head * dh + i) * t_len..][..t_len];
                    for (t, v) in ch.iter_mut().enumerate() {
                        *v += gh[t * dh + i];
                    }
                }
            }
        }
    }
}
