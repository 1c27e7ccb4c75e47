#!/usr/bin/env python3
"""PyTorch side-by-side baseline: masked torchvision ResNet-18 (random weights) at 32x32.

    python benches/pytorch/masked_resnet18.py [--coalitions 16] [--examples 8] [--repeats 7]

Players: the 64 channels of the layer1.0 block output (after its residual add and ReLU; node
`layer1.0.relu2` in nshap's --arch resnet18 naming). Weights: torchvision.models.resnet18
(num_classes=1000) with torch.manual_seed(0) default init, eval mode (running stats at their
defaults 0/1). Inputs N(0,1) [3,32,32], labels uniform in 0..999, masks seeded with keep
probability U(0.15, 0.85) per row. Each timed run computes the prefix (conv1 .. layer1.0) once,
then per chunk of coalitions applies torch.where(m, h, baseline) and runs layer1.1, layer2..4,
avgpool and fc on [chunk*examples, 64, 8, 8], reducing to accuracy per coalition.

GFLOP/s counts the FLOPs actually performed (2 x multiply-accumulates of conv and linear layers
only): prefix FLOPs x examples + suffix FLOPs x coalitions x examples.
"""

import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torchvision


def conv_linear_macs(modules, x):
    """MACs per example of running `modules` in sequence on x (batch 1)."""
    macs = [0]

    def hook(mod, inp, out):
        if isinstance(mod, nn.Conv2d):
            kh, kw = mod.kernel_size
            macs[0] += out[0].numel() * (mod.in_channels // mod.groups) * kh * kw
        elif isinstance(mod, nn.Linear):
            macs[0] += mod.in_features * mod.out_features

    hs = []
    for m in modules:
        hs += [s.register_forward_hook(hook) for s in m.modules() if isinstance(s, (nn.Conv2d, nn.Linear))]
    with torch.inference_mode():
        for m in modules:
            x = m(x)
            if isinstance(m, nn.AdaptiveAvgPool2d):
                x = torch.flatten(x, 1)
    for h in hs:
        h.remove()
    return macs[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--coalitions", type=int, default=16)
    ap.add_argument("--examples", type=int, default=8)
    ap.add_argument("--chunk", type=int, default=16)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=1000).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(args.examples, 3, args.size, args.size, generator=g)
    y = torch.randint(0, 1000, (args.examples,), generator=g)

    pre = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool, model.layer1[0])
    post_mods = [model.layer1[1], model.layer2, model.layer3, model.layer4, model.avgpool, model.fc]

    def post(h):
        for m in post_mods[:-1]:
            h = m(h)
        return model.fc(torch.flatten(h, 1))

    with torch.inference_mode():
        h0 = pre(x)
    C = h0.shape[1]
    pre_macs = conv_linear_macs([pre], torch.zeros(1, 3, args.size, args.size))
    post_macs = conv_linear_macs(post_mods, h0[:1])
    baseline = torch.zeros(1, 1, C, 1, 1)
    p = 0.15 + 0.7 * torch.rand(args.coalitions, 1, generator=g)
    masks = torch.rand(args.coalitions, C, generator=g) < p
    masks[0] = True

    def once():
        h = pre(x)
        B = h.shape[0]
        acc = torch.empty(args.coalitions, dtype=torch.float64)
        for s in range(0, args.coalitions, args.chunk):
            m = masks[s:s + args.chunk].view(-1, 1, C, 1, 1)
            hm = torch.where(m, h.unsqueeze(0), baseline).reshape(-1, *h.shape[1:])
            logits = post(hm).view(m.shape[0], B, -1)
            acc[s:s + args.chunk] = (logits.argmax(-1) == y).double().mean(1)
        return acc

    with torch.inference_mode():
        acc = once()
        full = (model(x).argmax(1) == y).double().mean()
        assert abs(acc[0].item() - full.item()) < 1e-12
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            acc = once()
            times.append(time.perf_counter() - t0)

    med = statistics.median(times)
    ce = args.coalitions * args.examples
    flops = 2 * (pre_macs * args.examples + post_macs * ce)
    print(json.dumps({
        "bench": "pytorch_masked_resnet18", "model": "torchvision resnet18 (random weights, 1000 classes)",
        "players": "layer1.0.relu2", "num_players": C, "baseline": "zero", "input": [3, args.size, args.size],
        "coalitions": args.coalitions, "examples": args.examples, "chunk": args.chunk,
        "threads": args.threads, "repeats": args.repeats, "median_s": med, "min_s": min(times),
        "coalition_examples_per_s": ce / med,
        "flops_per_run": flops, "prefix_flops_per_example": 2 * pre_macs,
        "suffix_flops_per_coalition_example": 2 * post_macs,
        "gflops_per_s": flops / med / 1e9, "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
