#!/usr/bin/env python3
"""Train and export the three small sklearn-digits models nshap ships as assets.

    python assets/make_assets.py

Writes, for each of digits-mlp, digits-cnn and digits-resnet, a folder under assets/ with
  model.json          the nshap.model.v1 spec (node names, ops, state_dict tensor names)
  weights.safetensors the PyTorch state_dict (f32; num_batches_tracked kept as i64)
  eval.safetensors    the held-out test split: `inputs` f32 [N, ...input], `labels` i64 [N]
and regenerates assets/README.md with the architectures, parameter counts and test accuracies.

Data: sklearn.datasets.load_digits (ships with scikit-learn; UCI ML hand-written digits,
CC BY 4.0). Pixels 0..16 are scaled to [0, 1] by /16. Everything is seeded and runs on CPU with one
thread and deterministic algorithms, so reruns with the same library versions give the same bytes.
"""

import json
import os
import sys

import numpy as np
import sklearn
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = 0
TEST_SIZE = 500

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


def seed_all(seed):
    torch.manual_seed(seed)
    np.random.seed(seed)


def load_split():
    """The fixed, stratified train/test split (1297 / 500), inputs scaled to [0, 1]."""
    d = load_digits()
    x = (d.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(
        x, y, test_size=TEST_SIZE, random_state=SEED, stratify=y
    )
    return (torch.from_numpy(xtr), torch.from_numpy(ytr),
            torch.from_numpy(xte), torch.from_numpy(yte))


def upscale16(x):
    """[N,1,8,8] -> [N,1,16,16], bilinear (align_corners=False, PyTorch default)."""
    return F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False)


# ----------------------------------------------------------------------------- models


class DigitsMLP(nn.Module):
    """state_dict: 0.*, 2.*, 4.* (an nn.Sequential)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10)
        )

    def forward(self, x):
        return self.net(x.reshape(x.shape[0], -1))


MLP_SPEC = {
    "format": "nshap.model.v1",
    "input": [64],
    "nodes": [
        {"name": "fc1", "op": "linear", "weight": "0.weight", "bias": "0.bias"},
        {"name": "relu1", "op": "relu"},
        {"name": "fc2", "op": "linear", "weight": "2.weight", "bias": "2.bias"},
        {"name": "relu2", "op": "relu"},
        {"name": "fc3", "op": "linear", "weight": "4.weight", "bias": "4.bias"},
    ],
}


class DigitsCNN(nn.Module):
    """conv1(1->16) bn1 relu1 conv2(16->32) bn2 relu2 maxpool2 flatten fc(512->10)."""

    def __init__(self, c1=16, c2=32):
        super().__init__()
        self.conv1 = nn.Conv2d(1, c1, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(c1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(c2)
        self.fc = nn.Linear(c2 * 4 * 4, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.max_pool2d(x, 2)
        return self.fc(torch.flatten(x, 1))


CNN_SPEC = {
    "format": "nshap.model.v1",
    "input": [1, 8, 8],
    "nodes": [
        {"name": "conv1", "op": "conv2d", "weight": "conv1.weight", "bias": "conv1.bias",
         "stride": 1, "padding": 1},
        {"name": "bn1", "op": "batchnorm2d", "prefix": "bn1", "eps": 1e-5},
        {"name": "relu1", "op": "relu"},
        {"name": "conv2", "op": "conv2d", "weight": "conv2.weight", "bias": "conv2.bias",
         "stride": 1, "padding": 1},
        {"name": "bn2", "op": "batchnorm2d", "prefix": "bn2", "eps": 1e-5},
        {"name": "relu2", "op": "relu"},
        {"name": "pool", "op": "maxpool2d", "kernel": 2},
        {"name": "flat", "op": "flatten"},
        {"name": "fc", "op": "linear", "weight": "fc.weight", "bias": "fc.bias"},
    ],
}


class BasicBlock(nn.Module):
    """torchvision-style BasicBlock (conv3x3 no bias, BN, ReLU, conv3x3, BN, + shortcut, ReLU)."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x if self.downsample is None else self.downsample(x)
        return self.relu(out + short)


class DigitsResNet(nn.Module):
    """stem conv3x3(1->16)+bn+relu, layer1.0 BasicBlock(16->16), layer2.0 BasicBlock(16->32, s2,
    1x1-conv+bn downsample), global avgpool, fc(32->10). Input [1,16,16]."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU()
        self.layer1 = nn.Sequential(BasicBlock(16, 16, 1))
        self.layer2 = nn.Sequential(BasicBlock(16, 32, 2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def _conv(name, stride, padding, inputs=None):
    node = {"name": name, "op": "conv2d", "weight": f"{name}.weight",
            "stride": stride, "padding": padding}
    if inputs is not None:
        node["inputs"] = inputs
    return node


def _bn(name):
    return {"name": name, "op": "batchnorm2d", "prefix": name, "eps": 1e-5}


def resnet_spec_nodes():
    nodes = [_conv("conv1", 1, 1), _bn("bn1"), {"name": "relu", "op": "relu"}]
    block_in = "relu"
    for p, stride, down in (("layer1.0", 1, False), ("layer2.0", 2, True)):
        nodes += [
            _conv(f"{p}.conv1", stride, 1, [block_in]),
            _bn(f"{p}.bn1"),
            {"name": f"{p}.relu1", "op": "relu"},
            _conv(f"{p}.conv2", 1, 1),
            _bn(f"{p}.bn2"),
        ]
        short = block_in
        if down:
            nodes += [_conv(f"{p}.downsample.0", stride, 0, [block_in]), _bn(f"{p}.downsample.1")]
            short = f"{p}.downsample.1"
        nodes += [
            {"name": f"{p}.add", "op": "add", "inputs": [f"{p}.bn2", short]},
            {"name": f"{p}.relu2", "op": "relu"},
        ]
        block_in = f"{p}.relu2"
    nodes += [
        {"name": "avgpool", "op": "global_avgpool"},
        {"name": "flatten", "op": "flatten"},
        {"name": "fc", "op": "linear", "weight": "fc.weight", "bias": "fc.bias"},
    ]
    return nodes


RESNET_SPEC = {"format": "nshap.model.v1", "input": [1, 16, 16], "nodes": resnet_spec_nodes()}


# ----------------------------------------------------------------------------- training


def random_shift(x, max_shift, gen):
    """Translate each image by an integer (dy, dx) in [-max_shift, max_shift], zero fill."""
    n, c, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4)
    offs = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=gen)
    out = torch.empty_like(x)
    for i in range(n):
        dy, dx = int(offs[i, 0]), int(offs[i, 1])
        out[i] = padded[i, :, dy:dy + h, dx:dx + w]
    return out


def train(model, xtr, ytr, epochs, lr, seed, batch=32, wd=1e-4, augment=None):
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    steps = epochs * ((len(xtr) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=gen)
        for s in range(0, len(xtr), batch):
            idx = perm[s:s + batch]
            xb, yb = xtr[idx], ytr[idx]
            if augment is not None:
                xb = augment(xb, gen)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    return model


@torch.no_grad()
def accuracy(model, x, y):
    model.eval()
    return (model(x).argmax(1) == y).double().mean().item()


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def write_spec(spec, path):
    """Write a spec as JSON with one node per line."""
    lines = [
        "{" + f'"format": {json.dumps(spec["format"])}, "input": {json.dumps(spec["input"])},',
        ' "nodes": [',
    ]
    nodes = [json.dumps(n) for n in spec["nodes"]]
    lines += ["  " + n + ("," if i + 1 < len(nodes) else "") for i, n in enumerate(nodes)]
    lines.append("]}")
    text = "\n".join(lines) + "\n"
    assert json.loads(text) == spec
    with open(path, "w") as f:
        f.write(text)


def export(folder, spec, state_dict, x_eval, y_eval):
    os.makedirs(folder, exist_ok=True)
    sd = {k: v.detach().contiguous().clone() for k, v in state_dict.items()}
    for k, v in sd.items():
        if v.is_floating_point():
            sd[k] = v.float()
    save_file(sd, os.path.join(folder, "weights.safetensors"))
    save_file({"inputs": x_eval.float().contiguous(), "labels": y_eval.long().contiguous()},
              os.path.join(folder, "eval.safetensors"))
    write_spec(spec, os.path.join(folder, "model.json"))
    for name in ("weights.safetensors", "eval.safetensors"):
        os.chmod(os.path.join(folder, name), 0o644)


def main():
    xtr, ytr, xte, yte = load_split()
    results = {}

    # --- MLP
    seed_all(SEED)
    mlp = DigitsMLP()
    train(mlp, xtr, ytr, epochs=60, lr=1e-2, seed=SEED + 1)
    acc = accuracy(mlp, xte, yte)
    export(os.path.join(HERE, "digits-mlp"), MLP_SPEC, mlp.net.state_dict(),
           xte.reshape(len(xte), 64), yte)
    results["digits-mlp"] = {"params": n_params(mlp), "test_accuracy": acc}
    print(f"digits-mlp    params={n_params(mlp):6d} test_accuracy={acc:.4f}")

    # --- CNN
    seed_all(SEED)
    cnn = DigitsCNN()
    train(cnn, xtr, ytr, epochs=30, lr=5e-3, seed=SEED + 2)
    acc = accuracy(cnn, xte, yte)
    export(os.path.join(HERE, "digits-cnn"), CNN_SPEC, cnn.state_dict(), xte, yte)
    results["digits-cnn"] = {"params": n_params(cnn), "test_accuracy": acc}
    print(f"digits-cnn    params={n_params(cnn):6d} test_accuracy={acc:.4f}")

    # --- ResNet on 16x16 upscaled digits, random shifts of up to +-2 px as augmentation
    seed_all(SEED)
    res = DigitsResNet()
    xtr16, xte16 = upscale16(xtr), upscale16(xte)
    train(res, xtr16, ytr, epochs=40, lr=5e-3, seed=SEED + 3,
          augment=lambda xb, g: random_shift(xb, 2, g))
    acc = accuracy(res, xte16, yte)
    export(os.path.join(HERE, "digits-resnet"), RESNET_SPEC, res.state_dict(), xte16, yte)
    results["digits-resnet"] = {"params": n_params(res), "test_accuracy": acc}
    print(f"digits-resnet params={n_params(res):6d} test_accuracy={acc:.4f}")

    write_readme(results, len(xtr), len(xte))
    print(json.dumps(results))


README = """# nshap assets: three small trained sklearn-digits models

Generated by `python assets/make_assets.py` (deterministic: fixed seeds, CPU, one thread,
`torch.use_deterministic_algorithms(True)`; last run with torch {torch}, scikit-learn {sklearn},
numpy {numpy}, Python {python}). Other library versions may give slightly different weights.
`tests/fixtures/` reuses these weights and eval sets: after regenerating the assets, rerun
`python tests/fixtures/make_fixtures.py`.

Each folder holds

| file | contents |
|---|---|
| `model.json` | `nshap.model.v1` spec: node names, ops and the `state_dict` tensor names |
| `weights.safetensors` | the PyTorch `state_dict` (f32; BatchNorm `num_batches_tracked` kept as i64, unreferenced) |
| `eval.safetensors` | held-out test split: `inputs` f32 `[{n_test}, ...input]`, `labels` i64 `[{n_test}]` |

## Data

`sklearn.datasets.load_digits()` (1,797 8x8 grey images, pixel values 0..16), shipped with
scikit-learn, no download. Licence: UCI ML hand-written digits data set, CC BY 4.0
(Alpaydin & Kaynak, UCI Machine Learning Repository). Inputs are scaled to [0, 1] by /16.
Split: `train_test_split(test_size=500, random_state=0, stratify=y)` -> {n_train} train /
{n_test} test examples. The eval files hold exactly the {n_test} test examples (in split order).

Training: Adam (weight decay 1e-4) with a one-cycle learning-rate schedule, batch 32,
cross-entropy, on the train split only.

## digits-mlp

Input `[64]` (the 8x8 image flattened row-major). `nn.Sequential(Linear(64,32), ReLU,
Linear(32,16), ReLU, Linear(16,10))`, tensors `0.*`, `2.*`, `4.*`.
Spec nodes: `fc1, relu1, fc2, relu2, fc3`. Natural players: the 16 units of `relu2`.
60 epochs, max lr 1e-2.

- parameters: {mlp_params:,}
- test accuracy: {mlp_acc:.4f} ({mlp_acc_n}/{n_test})

## digits-cnn

Input `[1, 8, 8]`. `conv1` (1->16, 3x3, pad 1, bias) -> `bn1` -> `relu1` -> `conv2` (16->32, 3x3,
pad 1, bias) -> `bn2` -> `relu2` -> `pool` (maxpool 2, -> 32x4x4) -> `flat` (512) -> `fc` (512->10).
Tensor names = module names (`conv1.weight`, `bn1.running_mean`, ..., `fc.bias`).
Spec nodes: `conv1, bn1, relu1, conv2, bn2, relu2, pool, flat, fc`. Natural players: the 32 channels
of `relu2`. 30 epochs, max lr 5e-3.

- parameters: {cnn_params:,} (trainable; plus BatchNorm running statistics)
- test accuracy: {cnn_acc:.4f} ({cnn_acc_n}/{n_test})

## digits-resnet

Input `[1, 16, 16]`: the digits upscaled with `F.interpolate(x, size=(16,16), mode="bilinear",
align_corners=False)` (the eval file stores the upscaled inputs). Training augmentation: every
training image is translated by a random integer offset (dy, dx), each in [-2, 2] pixels of the
16x16 image, zero filled (seeded generator); no other augmentation. 40 epochs, max lr 5e-3.

Architecture (torchvision-style BasicBlocks, convs without bias):
stem `conv1` (1->16, 3x3, pad 1) -> `bn1` -> `relu`;
`layer1.0`: BasicBlock 16->16 (`conv1, bn1, relu1, conv2, bn2`, identity shortcut, `add`, `relu2`);
`layer2.0`: BasicBlock 16->32, stride 2 (16x16 -> 8x8), shortcut `downsample.0` (1x1 conv, stride 2)
-> `downsample.1` (bn), `add`, `relu2`; `avgpool` (global) -> `flatten` -> `fc` (32->10).
Spec node names: `conv1, bn1, relu, layer1.0.{{conv1,bn1,relu1,conv2,bn2,add,relu2}},
layer2.0.{{conv1,bn1,relu1,conv2,bn2,downsample.0,downsample.1,add,relu2}}, avgpool, flatten, fc`
(the same scheme the Rust `--arch resnet18` builder uses). Tensor names are the module names
(`layer2.0.downsample.1.running_var`, ...). Block outputs: `layer1.0.relu2` (16 ch, 16x16) and
`layer2.0.relu2` (32 ch, 8x8).

- parameters: {res_params:,} (trainable; plus BatchNorm running statistics)
- test accuracy: {res_acc:.4f} ({res_acc_n}/{n_test})
"""


def write_readme(results, n_train, n_test):
    r = results
    text = README.format(
        torch=torch.__version__, sklearn=sklearn.__version__, numpy=np.__version__,
        python=sys.version.split()[0], n_train=n_train, n_test=n_test,
        mlp_params=r["digits-mlp"]["params"], mlp_acc=r["digits-mlp"]["test_accuracy"],
        mlp_acc_n=round(r["digits-mlp"]["test_accuracy"] * n_test),
        cnn_params=r["digits-cnn"]["params"], cnn_acc=r["digits-cnn"]["test_accuracy"],
        cnn_acc_n=round(r["digits-cnn"]["test_accuracy"] * n_test),
        res_params=r["digits-resnet"]["params"], res_acc=r["digits-resnet"]["test_accuracy"],
        res_acc_n=round(r["digits-resnet"]["test_accuracy"] * n_test),
    )
    with open(os.path.join(HERE, "README.md"), "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
