"""Node names are module paths a PyTorch user knows."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import by_name, ops, roundtrip, validate_spec
from nshap_export import export

tv = pytest.importorskip("torchvision")


def _names(spec):
    return [n["name"] for n in spec["nodes"]]


def _unique(spec):
    names = _names(spec)
    assert len(set(names)) == len(names)
    assert "input" not in names


@pytest.fixture(scope="module")
def resnet18():
    torch.manual_seed(0)
    return tv.models.resnet18(weights=None).eval()


@pytest.mark.parametrize("method", ["export", "fx"])
def test_resnet18_names(resnet18, method):
    res = export(resnet18, torch.randn(2, 3, 32, 32), None, method=method)
    spec = res.spec
    validate_spec(spec, resnet18.state_dict())
    _unique(spec)
    names = _names(spec)
    for want in ["conv1", "bn1", "relu", "maxpool", "layer1.0.conv1", "layer1.0.bn1", "layer1.0.relu",
                 "layer1.0.conv2", "layer1.0.bn2", "layer1.0.add", "layer1.0.relu_1", "layer3.1.relu",
                 "layer3.1.relu_1", "layer3.0.downsample.0", "layer3.0.downsample.1", "layer4.1.relu_1",
                 "avgpool", "flatten", "fc"]:
        assert want in names, want
    n = by_name(spec)
    assert n["layer2.0.add"]["inputs"] == ["layer2.0.bn2", "layer2.0.downsample.1"]
    assert n["layer1.0.add"]["inputs"] == ["layer1.0.bn2", "maxpool"]
    assert names[-1] == "fc"
    assert len(names) == 69


@pytest.fixture(scope="module")
def inception():
    torch.manual_seed(0)
    return tv.models.inception_v3(weights=None, init_weights=False).eval()


@pytest.mark.parametrize("method", ["export", "fx"])
def test_inception_v3_names(inception, method):
    res = export(inception, torch.randn(2, 3, 75, 75), None, method=method)
    spec = res.spec
    _unique(spec)
    n = by_name(spec)
    for want in ["Conv2d_1a_3x3.conv", "Conv2d_1a_3x3.bn", "Conv2d_1a_3x3.relu", "maxpool1",
                 "Mixed_5b.avg_pool2d", "Mixed_6e.branch7x7_2.conv", "Mixed_6e.branch7x7_2.bn",
                 "Mixed_6e.branch7x7_2.relu", "Mixed_6e.cat", "Mixed_7a.max_pool2d", "Mixed_7c.cat",
                 "avgpool", "flatten", "fc"]:
        assert want in n, want
    assert n["Mixed_6e.branch7x7_2.conv"]["padding"] == [0, 3]
    assert len(n["Mixed_6e.cat"]["inputs"]) == 4
    assert not any(k.startswith("AuxLogits") for k in n)  # not run in eval mode
    sd = inception.state_dict()
    convs = [x for x in spec["nodes"] if x["op"] == "conv2d"]
    assert len(convs) == 94
    # the Neuron Shapley paper's count of Inception-v3 filters
    assert sum(sd[c["weight"]].shape[0] for c in convs) == 17216


def test_functional_ops_in_modules_and_dedup():
    class Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 1)

        def forward(self, x):
            return F.relu(F.relu(self.conv(x)) + x)

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.input = nn.Conv2d(3, 4, 3, padding=1)  # a module called "input"
            self.blk = nn.Sequential(Inner(), Inner())
            self.fc = nn.Linear(8, 3)

        def forward(self, x):
            x = self.blk(self.input(x))
            x = torch.cat([x, torch.relu(x)], 1)
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    for method in ("export", "fx"):
        spec = roundtrip(M(), (3, 5, 5), method)
        assert _names(spec) == ["input_1", "blk.0.conv", "blk.0.relu", "blk.0.add", "blk.0.relu_1",
                                "blk.1.conv", "blk.1.relu", "blk.1.add", "blk.1.relu_1", "relu", "cat",
                                "adaptive_avg_pool2d", "flatten", "fc"], method
        assert by_name(spec)["blk.0.add"]["inputs"] == ["blk.0.relu", "input_1"]


def test_convnext_names():
    torch.manual_seed(0)
    m = tv.models.convnext_tiny(weights=None).eval()
    res = export(m, torch.randn(2, 3, 32, 32), None)
    n = by_name(res.spec)
    assert n["features.0.0"]["op"] == "conv2d"
    assert n["features.0.1"]["op"] == "layernorm"  # torchvision LayerNorm2d
    assert n["features.1.0.block.2"]["op"] == "layernorm"
    assert n["features.1.0.block.3"] == {"name": "features.1.0.block.3", "op": "conv2d",
                                         "weight": "features.1.0.block.3.weight", "bias": "features.1.0.block.3.bias"}
    assert n["features.1.0.block.4"]["op"] == "gelu"
    assert n["features.1.0.mul"] == {"name": "features.1.0.mul", "op": "mul", "weight": "features.1.0.layer_scale"}
    assert n["features.1.0.add"]["inputs"] == ["features.1.0.mul", "features.0.1"]
    assert [x["name"] for x in res.spec["nodes"][-4:]] == ["avgpool", "classifier.0", "classifier.1", "classifier.2"]
    assert ops(res.spec)[-4:] == ["global_avgpool", "layernorm", "flatten", "linear"]


def test_pt2_program_keeps_names(resnet18, tmp_path):
    x = torch.randn(2, 3, 32, 32)
    ep = torch.export.export(resnet18, (x,))
    p = tmp_path / "r18.pt2"
    torch.export.save(ep, str(p))
    loaded = torch.export.load(str(p))
    a = export(loaded, x, None).spec
    b = export(resnet18, x, None).spec
    assert a == b
