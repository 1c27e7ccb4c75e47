#!/usr/bin/env python3
"""nshap CPU vs PyTorch on five kinds of network after the players, alternately, in one sitting.

    python benches/pytorch/suffixes.py [--nshap target/release/nshap] [--rounds 5] [--write]

Each model is defined below in PyTorch (seeded random weights, batchnorm statistics made
non-trivial), exported with `nshap_export` (so nshap and PyTorch run the same network), and given
a seeded random eval set. One *round* times, for every model, nshap (`nshap bench --backend cpu
--model ... --json`, its own median of 3) on random coalitions, nshap on permutation-walk
coalitions (`--walks`: one player fewer per row, as permutation sampling sends them), and PyTorch
(median of 3); the rounds alternate so both see the same machine load, and the table reports each
column's median over the rounds and the ratio of medians.

The PyTorch baseline is what a careful PyTorch user writes: the network up to the player node
runs once per example (an fx split of the same module), then chunks of coalitions apply
`torch.where(mask, h, baseline)` on `[chunk * B, C, H, W]` and run every node that depends on
the players; values the suffix reads from the prefix (a residual's skip) are repeated over the
chunk. `torch.set_num_threads(2)`, eval mode, `torch.inference_mode()`.

`--write` replaces the section between the `suffixes:begin` / `suffixes:end` markers of
docs/benchmarks.md with the table and the command.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.fx
import torch.nn as nn
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "python"))
from nshap_export import export  # noqa: E402


class DigitsCnn(nn.Module):
    """The shipped digits CNN's shape: players at relu2, then max-pool, flatten, linear."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU()
        self.conv2, self.bn2, self.relu2 = nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU()
        self.pool, self.fc = nn.MaxPool2d(2), nn.Linear(32 * 4 * 4, 10)

    def forward(self, x):
        x = self.relu2(self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x))))))
        return self.fc(torch.flatten(self.pool(x), 1))


class MnistCnn(nn.Module):
    """An MNIST CNN: 64 players after conv2, then pool, linear 3136 -> 128, ReLU, linear."""

    def __init__(self):
        super().__init__()
        self.conv1, self.relu1 = nn.Conv2d(1, 32, 3, padding=1), nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2, self.relu2 = nn.Conv2d(32, 64, 3, padding=1), nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.fc1, self.relu3, self.fc2 = nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10)

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        return self.fc2(self.relu3(self.fc1(torch.flatten(x, 1))))


class Block(nn.Module):
    """A ResNet basic block with one module per call (so every node has its own name)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1, self.relu1 = nn.BatchNorm2d(cout), nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2, self.relu2 = nn.BatchNorm2d(cout), nn.ReLU()
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        skip = x if self.downsample is None else self.downsample(x)
        return self.relu2(out + skip)


class SmallResnet(nn.Module):
    """3x32x32 -> stem 32 -> layer1 (32, 16x16) -> layer2 (64, stride 2, 1x1 shortcut) -> head."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self.bn1, self.relu = nn.BatchNorm2d(32), nn.ReLU()
        self.layer1 = nn.Sequential(Block(32, 32, 1))
        self.layer2 = nn.Sequential(Block(32, 64, 2))
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(64, 10)

    def forward(self, x):
        x = self.layer2(self.layer1(self.relu(self.bn1(self.conv1(x)))))
        return self.fc(torch.flatten(self.pool(x), 1))


def resnet18():
    import torchvision

    return torchvision.models.resnet18(num_classes=10)


# name, factory, input shape, player node (nshap's name), coalitions, examples, torch chunk, what
CASES = [
    ("digits-cnn", DigitsCnn, (1, 8, 8), "relu2", 1000, 200, 50,
     "max-pool, flatten, linear (the shipped digits CNN's shape)"),
    ("mnist-cnn", MnistCnn, (1, 28, 28), "relu2", 200, 64, 25,
     "pool, linear 3136->128, ReLU, linear (64 players after conv2)"),
    ("resnet-inner", SmallResnet, (3, 32, 32), "layer2.0.relu1", 64, 32, 16,
     "conv 3x3, BN, residual add, ReLU, pool, linear (players inside the last block)"),
    ("resnet-strided", SmallResnet, (3, 32, 32), "layer1.0.relu2", 64, 32, 16,
     "strided block with its 1x1 shortcut, then the head (players at a block output)"),
    ("resnet18-32", resnet18, (3, 32, 32), "layer1.0.relu_1", 64, 32, 16,
     "torchvision ResNet-18 at 32x32, players layer1.0's output: 7 blocks after them"),
]


def seeded(factory, seed=0):
    torch.manual_seed(seed)
    model = factory()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def fx_node(gm, name):
    """The fx node nshap calls `name`: a module path, `_k` for the module's (k+1)-th call."""
    path, k = name, 0
    base, _, tail = name.rpartition("_")
    if base and tail.isdigit():
        path, k = base, int(tail)
    calls = [n for n in gm.graph.nodes if n.op == "call_module" and n.target == path]
    if len(calls) <= k:
        raise SystemExit(f"no call {k} of module {path!r} in the traced model")
    return calls[k]


def torch_masked(model, player, x, y, masks, chunk):
    """Accuracy per coalition (zero baseline), prefix shared, dependent nodes per coalition."""
    gm = torch.fx.symbolic_trace(model)
    target = fx_node(gm, player)
    nodes = list(gm.graph.nodes)
    dep = set()
    for n in nodes:
        if n is target or any(a in dep for a in n.all_input_nodes):
            dep.add(n)
    interp = torch.fx.Interpreter(gm)
    interp.env = {}
    for n in nodes:
        if n.op == "placeholder":
            interp.env[n] = x
        elif n.op != "output" and (n not in dep or n is target):
            interp.env[n] = interp.run_node(n)
    shared = dict(interp.env)
    h = shared[target]
    b = x.shape[0]
    read_by_dep = {a for n in dep for a in n.all_input_nodes if a not in dep}
    out_node = next(n for n in nodes if n.op == "output")
    acc = torch.empty(masks.shape[0])
    for s in range(0, masks.shape[0], chunk):
        m = masks[s:s + chunk]
        k = m.shape[0]
        mm = m.view(k, 1, m.shape[1], *([1] * (h.dim() - 2)))
        env = dict(shared)
        for a in read_by_dep:
            v = shared[a]
            if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape[0] == b:
                env[a] = v.repeat(k, *([1] * (v.dim() - 1)))
        env[target] = torch.where(mm, h.unsqueeze(0), torch.zeros(())).reshape(k * b, *h.shape[1:])
        interp.env = env
        for n in nodes:
            if n in dep and n is not target and n.op != "output":
                env[n] = interp.run_node(n)
        logits = env[out_node.args[0]].view(k, b, -1)
        acc[s:s + k] = (logits.argmax(-1) == y).float().mean(1)
    return acc


def time_torch(model, player, x, y, masks, chunk, repeats=3):
    with torch.inference_mode():
        torch_masked(model, player, x, y, masks[:chunk], chunk)  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            torch_masked(model, player, x, y, masks, chunk)
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def time_nshap(nshap, d, player, m, b, walks):
    cmd = [nshap, "bench", "--backend", "cpu", "--name", os.path.basename(d), "--model", f"{d}/model.json", "--weights",
           f"{d}/weights.safetensors", "--data", f"{d}/eval.safetensors", "--players", player,
           "--coalitions", str(m), "--examples", str(b), "--reps", "3", "--json"]
    if walks:
        cmd.append("--walks")
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stderr}")
    plan = [line for line in res.stderr.splitlines() if " on cpu: " in line]
    return json.loads(res.stdout.strip().splitlines()[-1])["median_seconds"], plan


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nshap", default=os.path.join(ROOT, "target", "release", "nshap"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cases", default=",".join(c[0] for c in CASES))
    ap.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    ap.add_argument("--export", metavar="DIR",
                    help="only export the models (DIR/NAME/model.json, weights, eval data) and "
                         "print NAME DIR PLAYER per line, e.g. for the GPU cost model")
    args = ap.parse_args()
    torch.set_num_threads(2)
    wanted = args.cases.split(",")
    cases = [c for c in CASES if c[0] in wanted]
    work = args.export or tempfile.mkdtemp(prefix="nshap-suffixes-")
    prepared = []
    for name, factory, shape, player, m, b, chunk, what in cases:
        model = seeded(factory)
        d = os.path.join(work, name)
        export(model, torch.randn(*shape), d)
        g = torch.Generator().manual_seed(1)
        x = torch.randn(b, *shape, generator=g)
        y = torch.randint(0, 10, (b,), generator=g)
        save_file({"inputs": x.contiguous(), "labels": y.long().contiguous()}, f"{d}/eval.safetensors")
        prepared.append((name, model, player, m, b, chunk, what, d, x, y))
    if args.export:
        for name, _, player, *_rest in prepared:
            print(name, os.path.join(work, name), player)
        return
    rows = []
    for name, model, player, m, b, chunk, what, d, x, y in prepared:
        with torch.inference_mode():
            # Channel count of the player node from one forward pass.
            gm = torch.fx.symbolic_trace(model)
            interp = torch.fx.Interpreter(gm)
            target = fx_node(gm, player)
            interp.env = {}
            for n in gm.graph.nodes:
                if n.op == "placeholder":
                    interp.env[n] = x[:1]
                elif n.op != "output":
                    interp.env[n] = interp.run_node(n)
            c = interp.env[target].shape[1]
        masks = torch.rand(m, c, generator=torch.Generator().manual_seed(2)) < 0.5
        rows.append(dict(name=name, what=what, model=model, player=player, m=m, b=b, chunk=chunk,
                         d=d, x=x, y=y, masks=masks, channels=c, nshap=[], walks=[], torch=[], plan=[]))
    for r in range(args.rounds):
        for row in rows:
            t, plan = time_nshap(args.nshap, row["d"], row["player"], row["m"], row["b"], False)
            row["nshap"].append(t)
            row["plan"] = plan
            row["walks"].append(time_nshap(args.nshap, row["d"], row["player"], row["m"], row["b"], True)[0])
            row["torch"].append(time_torch(row["model"], row["player"], row["x"], row["y"],
                                           row["masks"], row["chunk"]))
            ce = row["m"] * row["b"]
            print(f"round {r + 1}: {row['name']}: nshap {ce / row['nshap'][-1]:,.0f}, walks "
                  f"{ce / row['walks'][-1]:,.0f}, torch {ce / row['torch'][-1]:,.0f} coalition-examples/s",
                  file=sys.stderr, flush=True)
    lines = [
        "| suffix after the players | model, players | M x B | nshap CPU | nshap CPU, walks | PyTorch | ratio | ratio, walks |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ce = row["m"] * row["b"]
        med = {k: statistics.median(row[k]) for k in ("nshap", "walks", "torch")}
        lines.append(
            f"| {row['what']} | {row['name']}, `{row['player']}` ({row['channels']}) | {row['m']} x {row['b']} "
            f"| {ce / med['nshap']:,.0f} | {ce / med['walks']:,.0f} | {ce / med['torch']:,.0f} "
            f"| {med['torch'] / med['nshap']:.2f}x | {med['torch'] / med['walks']:.2f}x |")
    lines.append("")
    lines.append("Coalition-examples per second, medians of "
                 f"{args.rounds} alternating rounds; torch {torch.__version__}, 2 threads.")
    lines.append("")
    lines.append("What the CPU backend picked (from `nshap bench`):")
    lines.append("")
    for row in rows:
        for p in row["plan"]:
            lines.append(f"- {p}")
    table = "\n".join(lines)
    print(table)
    if args.write:
        path = os.path.join(ROOT, "docs", "benchmarks.md")
        text = open(path).read()
        begin, end = "<!-- suffixes:begin -->", "<!-- suffixes:end -->"
        cmd = f"`python benches/pytorch/suffixes.py --rounds {args.rounds} --write`"
        block = f"{begin}\nCommand: {cmd}\n\n{table}\n{end}"
        if begin in text:
            text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
        else:
            text += "\n" + block + "\n"
        open(path, "w").write(text)
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
