#!/usr/bin/env python3
"""nshap CPU vs PyTorch with attention heads as players, on a GPT-2-shaped model, alternately.

    python benches/pytorch/gpt2_heads.py [--nshap target/release/nshap] [--dir target/bench-gpt2] [--rounds 3]

The model is a seeded random `GPT2LMHeadModel` (6 layers, 8 heads, width 256, vocabulary 1024,
64 positions, `gelu_new`, no dropout, eager attention; every weight N(0, 0.05), LayerNorm weights
1 and biases 0), saved with `save_pretrained` into `--dir` (read by nshap with `--hf`), with a
seeded eval set `DIR/eval.safetensors`: int64 `tokens` [B, T] (T = 16, B = 16, no padding),
`positions` [B] = T - 1, `labels` [B] and `distractors` [B] (never equal to the label).

Two player sets, each measured on random coalitions (every player present with probability 1/2)
and on permutation walks (`--walks`: the full coalition, then one player fewer per row in a random
order, as permutation sampling sends them):

- `transformer.h.*.attn.heads`: all 48 heads. Players in block 0, so everything after block 0's
  attention runs per coalition.
- `transformer.h.5.attn.heads`: the last block's 8 heads. nshap runs blocks 0..4 and block 5's
  attention once per example; the PyTorch hook user still runs the whole model per coalition.

The PyTorch baseline is what a practitioner writes: M coalitions x B examples as ONE batch of
M * B sequences, a forward pre-hook on each player block's `attn.c_proj` multiplying its input
[M * B, T, 256] by the row's head mask spread over each head's 32 channels (zero ablation), the
logits at position T - 1 only (`logits_to_keep=1`), and the logit difference label - distractor
per coalition (mean over the examples). `torch.no_grad()`, `torch.set_num_threads(2)`, eval mode.
Cost does not depend on the mask's contents, so PyTorch gets walks of the same shape as nshap's
(same generator structure, its own seed) rather than nshap's exact rows.

nshap: `nshap bench --backend cpu --hf DIR --data DIR/eval.safetensors --players P
--coalitions M --examples B --reps R --json [--walks]`, its own median of R after a warm-up.
(`nshap bench` scores accuracy, not the logit difference; both read the logits at the read
position only, the scoring itself is negligible next to the forward passes.)

One round times every row on both sides, alternating PyTorch and nshap; the table reports each
column's median over the rounds and the ratio of medians (nshap / PyTorch throughput).
FLOPs per coalition-example (2 per multiply-add) count what a dense masked forward runs after
the first player node: c_proj and MLP of the player block, every later block, and the lm_head
at position T - 1 (attention score/value products included; softmax, LayerNorm and GELU not).
PyTorch's rate is given on the whole forward it runs, whatever the players.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

N_LAYER, N_HEAD, N_EMBD, VOCAB, N_POS = 6, 8, 256, 1024, 64
HEAD_DIM = N_EMBD // N_HEAD
T, B = 16, 16


def build(d):
    """The seeded random GPT-2 in `d` (config.json + model.safetensors) and its eval set."""
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(n_layer=N_LAYER, n_head=N_HEAD, n_embd=N_EMBD, vocab_size=VOCAB, n_positions=N_POS,
                     activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     summary_first_dropout=0.0, bos_token_id=None, eos_token_id=None)
    cfg._attn_implementation = "eager"
    torch.manual_seed(0)
    model = GPT2LMHeadModel(cfg)
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.LayerNorm):
                mod.weight.fill_(1.0)
                mod.bias.zero_()
            else:
                for p in mod.parameters(recurse=False):
                    p.normal_(0.0, 0.05)
    model.tie_weights()
    model.eval()
    os.makedirs(d, exist_ok=True)
    try:
        model.save_pretrained(d, safe_serialization=True)
    except TypeError:  # transformers versions without the argument (safetensors is the default)
        model.save_pretrained(d)
    gen = os.path.join(d, "generation_config.json")
    if os.path.exists(gen):
        os.remove(gen)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, VOCAB, (B, T), generator=g, dtype=torch.int64)
    labels = torch.randint(0, VOCAB, (B,), generator=g, dtype=torch.int64)
    distractors = (labels + torch.randint(1, VOCAB, (B,), generator=g, dtype=torch.int64)) % VOCAB
    positions = torch.full((B,), T - 1, dtype=torch.int64)
    save_file({"tokens": tokens, "positions": positions, "labels": labels, "distractors": distractors},
              os.path.join(d, "eval.safetensors"))
    return model, tokens, labels, distractors


def coalitions(n, count, walks, seed):
    """`count` rows of `n` players: random (p = 1/2), or permutation walks from the full set down."""
    g = torch.Generator().manual_seed(seed)
    if not walks:
        return torch.rand(count, n, generator=g) < 0.5
    rows, row, order = [], None, []
    while len(rows) < count:
        if not order:
            order = torch.randperm(n, generator=g).tolist()
            row = torch.ones(n, dtype=torch.bool)
            rows.append(row.clone())
            continue
        row[order.pop()] = False
        rows.append(row.clone())
    return torch.stack(rows)


class HeadMasker:
    """Forward pre-hooks on `attn.c_proj` of `layers`: input * per-row head mask (zero ablation)."""

    def __init__(self, model, layers):
        self.layers = layers
        self.mask = {}
        self.handles = [model.transformer.h[l].attn.c_proj.register_forward_pre_hook(self.hook(l))
                        for l in layers]

    def hook(self, layer):
        def pre(_module, args):
            return (args[0] * self.mask[layer],) + tuple(args[1:])
        return pre

    def set(self, masks, b):
        """masks [M, len(layers) * N_HEAD] bool -> per layer [M * b, 1, N_EMBD] float."""
        m = masks.shape[0]
        for i, l in enumerate(self.layers):
            h = masks[:, i * N_HEAD:(i + 1) * N_HEAD].float()
            ch = h.repeat_interleave(HEAD_DIM, dim=1)  # head k -> channels k*32 .. k*32+31
            self.mask[l] = ch.repeat_interleave(b, dim=0).view(m * b, 1, N_EMBD)

    def remove(self):
        for h in self.handles:
            h.remove()


def torch_batch(model, masker, masks, ids, labels, distractors):
    """logit_diff per coalition: one forward over all M * B masked sequences."""
    m, b = masks.shape[0], ids.shape[0]
    masker.set(masks, b)
    logits = model(input_ids=ids.repeat(m, 1), logits_to_keep=1).logits[:, -1, :]
    diff = logits.gather(1, labels.repeat(m)[:, None]) - logits.gather(1, distractors.repeat(m)[:, None])
    return diff.view(m, b).mean(1)


def time_torch(model, layers, masks, ids, labels, distractors, reps):
    masker = HeadMasker(model, layers)
    try:
        with torch.no_grad():
            torch_batch(model, masker, masks, ids, labels, distractors)  # warm-up
            times = []
            for _ in range(reps):
                t = time.perf_counter()
                torch_batch(model, masker, masks, ids, labels, distractors)
                times.append(time.perf_counter() - t)
    finally:
        masker.remove()
    return statistics.median(times)


def time_nshap(nshap, d, players, m, b, reps, walks):
    cmd = [nshap, "bench", "--backend", "cpu", "--name", "gpt2-heads", "--hf", d,
           "--data", os.path.join(d, "eval.safetensors"), "--players", players,
           "--coalitions", str(m), "--examples", str(b), "--reps", str(reps), "--json"]
    if walks:
        cmd.append("--walks")
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr}")
    plan = [line for line in res.stderr.splitlines() if " on cpu: " in line]
    r = json.loads(res.stdout.strip().splitlines()[-1])
    if r["coalitions"] != m or r["examples"] != b:
        raise SystemExit(f"nshap measured {r['coalitions']} x {r['examples']}, asked {m} x {b}")
    return r["median_seconds"], r["dense_equivalent_gflops_per_second"], plan


def block_flops(t, d, first_part=False):
    """2 x multiply-adds of one GPT-2 block over t positions; `first_part=False`: c_proj + MLP only."""
    attn_in = 2 * t * d * 3 * d + 2 * t * t * d * 2  # c_attn, QK^T, AV (full T x T, as eager runs it)
    rest = 2 * t * d * d + 2 * 2 * t * d * 4 * d  # c_proj, c_fc + mlp.c_proj
    return rest + (attn_in if first_part else 0)


def masked_flops(first_layer):
    """Dense masked forward per coalition-example with players in block `first_layer`."""
    f = block_flops(T, N_EMBD)
    f += (N_LAYER - 1 - first_layer) * block_flops(T, N_EMBD, True)
    return f + 2 * N_EMBD * VOCAB  # lm_head at position T - 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nshap", default=os.path.join(ROOT, "target", "release", "nshap"))
    ap.add_argument("--dir", default=os.path.join(ROOT, "target", "bench-gpt2"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions per measurement (median)")
    ap.add_argument("--coalitions", type=int, default=24,
                    help="M (coalitions per batch); M x 16 sequences per PyTorch batch")
    args = ap.parse_args()
    torch.set_num_threads(2)
    model, ids, labels, distractors = build(args.dir)
    m = args.coalitions
    full = masked_flops(0)
    # name, player pattern, hooked layers, first player layer
    sets = [("all 48 heads", "transformer.h.*.attn.heads", list(range(N_LAYER)), 0),
            (f"last block's {N_HEAD} heads", f"transformer.h.{N_LAYER - 1}.attn.heads", [N_LAYER - 1], N_LAYER - 1)]
    rows = []
    for what, pattern, layers, first in sets:
        for walks in (False, True):
            masks = coalitions(len(layers) * N_HEAD, m, walks, 3)
            rows.append(dict(what=what, pattern=pattern, layers=layers, walks=walks, masks=masks,
                             flops=masked_flops(first), torch=[], nshap=[], gflops=[], plan=[]))
    ce = m * B
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", file=sys.stderr)
    t0 = time.perf_counter()
    for r in range(args.rounds):
        for row in rows:
            row["torch"].append(time_torch(model, row["layers"], row["masks"], ids, labels, distractors, args.reps))
            s, gf, plan = time_nshap(args.nshap, args.dir, row["pattern"], m, B, args.reps, row["walks"])
            row["nshap"].append(s)
            row["gflops"].append(gf)
            row["plan"] = plan
            kind = "walks" if row["walks"] else "random"
            print(f"round {r + 1}: {row['what']}, {kind}: torch {ce / row['torch'][-1]:,.0f}, "
                  f"nshap {ce / s:,.0f} coalition-examples/s", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - t0
    load = os.getloadavg()
    lines = [
        "| players | coalitions | M x B | masked MFLOP / coal-ex | PyTorch coal-ex/s | PyTorch GFLOP/s "
        "| nshap CPU coal-ex/s | nshap GFLOP/s (dense-equiv.) | nshap / PyTorch |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        tt, tn = statistics.median(row["torch"]), statistics.median(row["nshap"])
        # PyTorch's hook runs the whole model per coalition-example whatever the players.
        lines.append(
            f"| {row['what']} (`{row['pattern']}`) | {'walks' if row['walks'] else 'random'} | {m} x {B} "
            f"| {row['flops'] / 1e6:.1f} | {ce / tt:,.0f} | {ce * full / tt / 1e9:.1f} "
            f"| {ce / tn:,.0f} | {ce * row['flops'] / tn / 1e9:.1f} | {tt / tn:.2f}x |")
    lines.append("")
    lines.append(f"Coalition-examples per second, medians of {args.rounds} alternating rounds (each a median "
                 f"of {args.reps} after a warm-up); torch {torch.__version__}, 2 threads; "
                 f"T = {T}, GPT-2 {N_LAYER} x {N_HEAD} heads x {N_EMBD}, vocabulary {VOCAB}.")
    lines.append(f"PyTorch GFLOP/s counts the whole masked forward it runs ({full / 1e6:.1f} MFLOP per "
                 f"coalition-example, players or not); nshap's counts the dense masked part after the first "
                 f"player (column 4), so above the hardware rate where nshap skips work.")
    lines.append(f"Load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {elapsed:.0f} s of timing.")
    lines.append("")
    lines.append("What the CPU backend picked (from `nshap bench`):")
    lines.append("")
    seen = set()
    for row in rows:
        for p in row["plan"]:
            if (row["pattern"], p) not in seen:
                seen.add((row["pattern"], p))
                lines.append(f"- `{row['pattern']}`: {p}")
    if not seen:
        lines.append("- (no plan lines printed)")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
