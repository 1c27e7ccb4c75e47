"""One small member per torchvision family through export + self-check (slow), and the zoo script."""

import json
import os
import sys

import pytest
import torch

from conftest import validate_spec
from nshap_export import export, interpret

tv = pytest.importorskip("torchvision")

SWEEP = ["resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2", "vgg11_bn", "alexnet", "squeezenet1_0",
         "squeezenet1_1", "densenet121", "mobilenet_v2", "mobilenet_v3_small", "mnasnet0_5", "shufflenet_v2_x0_5",
         "efficientnet_b0", "efficientnet_v2_s", "regnet_x_400mf", "regnet_y_400mf", "convnext_tiny", "googlenet",
         "inception_v3"]
SIZE = {"alexnet": 64, "inception_v3": 75}  # alexnet needs 63+, inception_v3 75+


@pytest.mark.slow
@pytest.mark.parametrize("name", SWEEP)
def test_zoo_member(name, tmp_path):
    from safetensors.torch import load_file

    torch.manual_seed(0)
    kw = {"init_weights": False} if name in ("googlenet", "inception_v3") else {}
    from nshap_export.zoo import calibrate_bn

    m = tv.models.get_model(name, weights=None, **kw).eval()
    s = SIZE.get(name, 32)
    calibrate_bn(m, torch.randn(8, 3, s, s))  # unit-scale activations, so the comparison means something
    res = export(m, torch.randn(2, 3, s, s), tmp_path / name)
    assert res.method == "export"
    assert res.check["passed"]
    spec = json.load(open(tmp_path / name / "model.json"))
    sd = load_file(str(tmp_path / name / "weights.safetensors"))
    validate_spec(spec, sd)
    names = [n["name"] for n in spec["nodes"]]
    assert len(set(names)) == len(names)
    x = torch.randn(3, 3, s, s)
    with torch.no_grad():
        want = m(x)
    got = interpret(spec, sd, x)
    assert float(want.abs().max()) > 1e-3  # not a vanishing random network
    assert float((got - want).abs().max()) <= 1e-4 * float(want.abs().max())


def test_zoo_script_with_fake_rust(tmp_path):
    from nshap_export import zoo

    fake = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_nshap.py")
    row = zoo.run_one("squeezenet1_1", work=str(tmp_path), rust_cmd=f"{sys.executable} {fake}", gpu=False,
                      examples=3)
    assert row["status"] == "ok", row
    assert row["cpu"] == 0.0 or row["cpu"] < 1e-5
    assert row["gpu"] == "not run"
    assert row["params"] == sum(p.numel() for p in tv.models.squeezenet1_1().parameters())
    assert row["flops"] > 0
    md = zoo.markdown([row, {"model": "regnet_y_128gf", "family": "regnet_y", "input": [3, 64, 64],
                             "params": 644_812_894, "flops": None, "method": None, "export_s": None,
                             "check": None, "status": "skipped (size)", "cpu": "skipped (size)",
                             "gpu": "skipped (size)", "nodes": None}],
                      {"date": "today", "torch": "x", "torchvision": "y", "threads": 1, "examples": 3})
    assert "| squeezenet1_1 | squeezenet | 3x64x64 |" in md
    assert "skipped (size)" in md
    row2 = zoo.run_one("resnet18", work=str(tmp_path), max_params=1e6)
    assert row2["status"] == "skipped (size)"


def test_zoo_list_and_families():
    from nshap_export import zoo

    names = zoo.zoo_models()
    assert "resnet18" in names and not any(n.startswith(("vit_", "swin_", "maxvit_")) for n in names)
    assert zoo.family_of("efficientnet_v2_s") == "efficientnet_v2"
    assert zoo.family_of("efficientnet_b3") == "efficientnet"
    assert zoo.family_of("vgg11_bn") == "vgg_bn"
    assert zoo.input_for("inception_v3") == (3, 75, 75)
