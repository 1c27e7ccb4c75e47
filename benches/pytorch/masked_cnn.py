#!/usr/bin/env python3
"""PyTorch side-by-side baseline for the Rust CPU benchmark on assets/digits-cnn.

    python benches/pytorch/masked_cnn.py [--coalitions 1000] [--chunk 10] [--repeats 7]

Players: the channels of node relu2 (32). 1,000 random coalitions (seeded; each row's keep
probability drawn from U(0.15, 0.85)) x the 500 eval examples. Each timed run computes the shared
prefix input -> relu2 once (eval mode), then, chunk by chunk of coalitions, applies
`h*m + (1-m)*baseline` to relu2 (as torch.where(m, h, baseline)) and runs the rest of the network (maxpool 2, flatten, fc) on the
[chunk*500, 32, 8, 8] batch, and reduces to accuracy per coalition. torch.set_num_threads(2).
Prints one JSON line with the median seconds over the repeats and coalition-examples per second.
"""

import argparse
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def bn(W, p, x):
    return F.batch_norm(x, W[f"{p}.running_mean"], W[f"{p}.running_var"], W[f"{p}.weight"],
                        W[f"{p}.bias"], training=False, eps=1e-5)


def prefix(W, x):
    h = F.relu(bn(W, "bn1", F.conv2d(x, W["conv1.weight"], W["conv1.bias"], padding=1)))
    return F.relu(bn(W, "bn2", F.conv2d(h, W["conv2.weight"], W["conv2.bias"], padding=1)))


def masked_accuracy(W, x, y, masks, baseline, chunk):
    """accuracy [K] for coalitions masks [K, C] over examples x."""
    h = prefix(W, x)                                            # [B, C, 8, 8], shared
    B, C = h.shape[:2]
    base = baseline.view(1, 1, C, 1, 1)
    out = torch.empty(masks.shape[0], dtype=torch.float64)
    for s in range(0, masks.shape[0], chunk):
        m = masks[s:s + chunk].view(-1, 1, C, 1, 1)             # [k, 1, C, 1, 1] bool
        # h*m + (1-m)*baseline for a 0/1 mask, as one select kernel
        hm = torch.where(m, h.unsqueeze(0), base).reshape(-1, C, *h.shape[2:])
        z = torch.flatten(F.max_pool2d(hm, 2), 1)
        logits = F.linear(z, W["fc.weight"], W["fc.bias"]).view(m.shape[0], B, -1)
        out[s:s + chunk] = (logits.argmax(-1) == y).double().mean(1)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--coalitions", type=int, default=1000)
    ap.add_argument("--chunk", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--baseline", choices=["zero", "mean"], default="zero")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    folder = os.path.join(ROOT, "assets", "digits-cnn")
    W = load_file(os.path.join(folder, "weights.safetensors"))
    ev = load_file(os.path.join(folder, "eval.safetensors"))
    x, y = ev["inputs"], ev["labels"]

    with torch.inference_mode():
        h = prefix(W, x)
        C = h.shape[1]
        baseline = torch.zeros(C) if args.baseline == "zero" else h.mean(dim=(0, 2, 3))
        g = torch.Generator().manual_seed(12345)
        p = 0.15 + 0.7 * torch.rand(args.coalitions, 1, generator=g)
        masks = torch.rand(args.coalitions, C, generator=g) < p
        masks[0] = True

        acc = masked_accuracy(W, x, y, masks, baseline, args.chunk)       # warm-up
        full = (F.linear(torch.flatten(F.max_pool2d(h, 2), 1), W["fc.weight"], W["fc.bias"])
                .argmax(1) == y).double().mean()
        assert abs(acc[0].item() - full.item()) < 1e-12
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            acc = masked_accuracy(W, x, y, masks, baseline, args.chunk)
            times.append(time.perf_counter() - t0)

    med = statistics.median(times)
    ce = args.coalitions * len(y)
    print(json.dumps({
        "bench": "pytorch_masked_cnn", "model": "assets/digits-cnn", "players": "relu2",
        "num_players": C, "baseline": args.baseline, "coalitions": args.coalitions,
        "examples": int(len(y)), "chunk": args.chunk, "threads": args.threads,
        "repeats": args.repeats, "median_s": med, "min_s": min(times),
        "coalition_examples_per_s": ce / med, "mean_accuracy": acc.mean().item(),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
