"""The reference interpreter: shipped assets, masking hook, op defaults."""

import os

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file

from conftest import SOURCE_ROOT
from models import Good
from nshap_export import export, interpret

ASSETS = os.path.join(os.path.dirname(SOURCE_ROOT), "assets")


@pytest.mark.parametrize("name,acc", [("digits-mlp", 0.97), ("digits-cnn", 0.998), ("digits-resnet", None)])
def test_shipped_assets(name, acc):
    d = os.path.join(ASSETS, name)
    if not os.path.isdir(d):
        pytest.skip("assets not in this checkout")
    data = load_file(os.path.join(d, "eval.safetensors"))
    y = interpret(os.path.join(d, "model.json"), os.path.join(d, "weights.safetensors"), data["inputs"].float())
    got = float((y.argmax(1) == data["labels"]).float().mean())
    if acc is not None:
        assert abs(got - acc) < 1e-6
    else:
        assert got > 0.95


def test_hook_masks_like_a_forward_hook():
    torch.manual_seed(0)
    m = Good().eval()
    with torch.no_grad():
        m.bn.running_mean.uniform_(-1, 1)
    spec = export(m, torch.randn(2, 3, 8, 8), None).spec
    x = torch.randn(5, 3, 8, 8)
    mask = torch.ones(4)
    mask[[1, 3]] = 0
    seen = []

    def hook(name, t):
        seen.append(name)
        if name == "relu":
            return t * mask.view(1, -1, 1, 1)
        return None  # unchanged

    got = interpret(spec, m.state_dict(), x, hook=hook)
    # the module's own masked forward pass: conv -> bn -> relu -> mask -> pool -> fc
    with torch.no_grad():
        z = torch.relu(m.bn(m.conv(x))) * mask.view(1, -1, 1, 1)
        want = m.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(z, 1), 1))
    torch.testing.assert_close(got, want)
    assert seen == [n["name"] for n in spec["nodes"]]


def test_defaults_and_aliases():
    torch.manual_seed(0)
    sd = {"w": torch.randn(4, 3, 3, 3), "p": torch.tensor([0.2]), "s": torch.rand(4), "fw": torch.randn(2, 4)}
    spec = {"format": "nshap.model.v1", "input": [3, 9, 9], "nodes": [
        {"name": "c", "op": "conv2d", "weight": "w"},
        {"name": "r6", "op": "relu6"},
        {"name": "mp", "op": "maxpool2d", "kernel": 2},
        {"name": "ap", "op": "avgpool2d", "kernel": [2, 1], "padding": [1, 0]},
        {"name": "pr", "op": "prelu", "weight": "p"},
        {"name": "m", "op": "mul", "weight": "s"},
        {"name": "g", "op": "global_avgpool"},
        {"name": "m2", "op": "mul", "inputs": ["mp", "g"]},
        {"name": "a", "op": "adaptive_avgpool2d", "output_size": 1},
        {"name": "f", "op": "flatten"},
        {"name": "fc", "op": "linear", "weight": "fw"},
    ]}
    x = torch.randn(2, 3, 9, 9)
    y = interpret(spec, sd, x)
    F = nn.functional
    c = F.hardtanh(F.conv2d(x, sd["w"]), 0, 6)
    mp = F.max_pool2d(c, 2, 2)
    ap = F.avg_pool2d(mp, (2, 1), (2, 1), (1, 0), count_include_pad=True)
    g = (F.prelu(ap, sd["p"]) * sd["s"].view(1, 4, 1, 1)).mean((2, 3), keepdim=True)
    want = F.linear(F.adaptive_avg_pool2d(mp * g, 1).flatten(1), sd["fw"])
    torch.testing.assert_close(y, want)
