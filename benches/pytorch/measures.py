#!/usr/bin/env python3
"""PyTorch side-by-side baseline for `cargo bench --bench measures`.

    python benches/pytorch/measures.py [--repeats 7] [--threads 2]

The same work as nshap's `neuron_measures`: per example, one forward pass and two backward passes
(seeds e_y for the Jacobian sensitivity and softmax - onehot for the Taylor estimate) down to the
player nodes (the lowest one detached, so no backward runs below it), reduced to per-channel selectivity sums, sum |grad| and
sum a * grad. Two cases, as in the Rust bench:
  * digits-cnn, players relu2, its 500 eval examples (the shipped weights);
  * torchvision ResNet-18 (10 classes, random weights) at 32x32, players layer1.0.relu (after
    the first conv of block 1) and layer4.1.relu (block output), 128 inputs.
Batched over examples (the whole eval set in one batch: PyTorch's best case). Prints one JSON line
per case with the median seconds over the repeats.
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


def reduce(acts, y, classes):
    """The per-channel sums nshap reduces to (selectivity class means, |grad|, a * grad)."""
    out = []
    for a in acts:
        spatial = a.flatten(2).mean(2) if a.dim() == 4 else a
        onehot = F.one_hot(y, classes).double()
        class_sums = onehot.T @ spatial.double()
        out.append((class_sums, a.grad_sens.abs().flatten(2).sum(2).sum(0),
                    (a * a.grad_taylor).flatten(2).sum(2).sum(0)))
    return out


def measure(forward, x, y, classes):
    acts = []
    logits = forward(x, acts)
    z_y = logits.gather(1, y[:, None]).sum()
    grads_s = torch.autograd.grad(z_y, acts, retain_graph=True)
    loss = F.cross_entropy(logits, y, reduction="sum")
    grads_t = torch.autograd.grad(loss, acts)
    for a, gs, gt in zip(acts, grads_s, grads_t):
        a.grad_sens, a.grad_taylor = gs, gt
    return reduce(acts, y, classes)


def cnn_case():
    d = os.path.join(ROOT, "assets", "digits-cnn")
    W = load_file(os.path.join(d, "weights.safetensors"))
    ev = load_file(os.path.join(d, "eval.safetensors"))
    x, y = ev["inputs"].float(), ev["labels"].long()

    def bn(p, h):
        return F.batch_norm(h, W[f"{p}.running_mean"], W[f"{p}.running_var"], W[f"{p}.weight"],
                            W[f"{p}.bias"], training=False, eps=1e-5)

    def forward(x, acts):
        h = F.relu(bn("bn1", F.conv2d(x, W["conv1.weight"], W["conv1.bias"], padding=1)))
        h = F.relu(bn("bn2", F.conv2d(h, W["conv2.weight"], W["conv2.bias"], padding=1)))
        h = h.detach().requires_grad_()               # backward stops here, as in nshap
        acts.append(h)
        return F.linear(torch.flatten(F.max_pool2d(h, 2), 1), W["fc.weight"], W["fc.bias"])

    return "digits-cnn_relu2", forward, x, y, 10


def resnet18_case():
    import torchvision
    torch.manual_seed(0)
    m = torchvision.models.resnet18(num_classes=10).eval()
    n = 128
    x = torch.linspace(-1, 1, n * 3 * 32 * 32).reshape(n, 3, 32, 32)
    y = torch.arange(n) % 10
    for p in m.parameters():
        p.requires_grad_(False)

    def forward(x, acts):
        b0, b1 = m.layer1[0], m.layer4[1]
        h = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        r = F.relu(b0.bn1(b0.conv1(h)))               # layer1.0.relu1
        r = r.detach().requires_grad_()               # backward stops here, as in nshap
        acts.append(r)
        h = F.relu(b0.bn2(b0.conv2(r)) + h)
        h = m.layer1[1](h)
        h = m.layer4[0](m.layer3(m.layer2(h)))
        out = b1.bn2(b1.conv2(F.relu(b1.bn1(b1.conv1(h))))) + h
        out = F.relu(out)                             # layer4.1.relu2
        acts.append(out)
        return m.fc(torch.flatten(m.avgpool(out), 1))

    return "resnet18@32_layer1.0.relu1+layer4.1.relu2", forward, x.requires_grad_(False), y, 10


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for name, forward, x, y, classes in (cnn_case(), resnet18_case()):
        times = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            with torch.enable_grad():
                measure(forward, x, y, classes)
            times.append(time.perf_counter() - t)
        med = statistics.median(times)
        print(json.dumps({"case": name, "examples": len(y), "median_seconds": med,
                          "examples_per_second": len(y) / med, "torch": torch.__version__,
                          "threads": args.threads}))


if __name__ == "__main__":
    main()
