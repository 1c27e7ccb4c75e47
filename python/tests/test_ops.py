"""Every op mapping on small hand-made modules, traced with torch.export and with torch.fx."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from conftest import by_name, ops, roundtrip

torch.manual_seed(0)


def _randomize_bn(m):
    for mod in m.modules():
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
            with torch.no_grad():
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.5, 0.5)
    return m


class Head(nn.Module):
    """global pool + flatten + linear to 5 classes."""

    def __init__(self, c):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c, 5)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(x), 1))


class Wrap(nn.Module):
    def __init__(self, body, c, fn=None):
        super().__init__()
        self.body = body
        self.fn = fn
        self.head = Head(c)

    def forward(self, x):
        x = self.body(x) if self.fn is None else self.fn(self, x)
        return self.head(x)


# -------------------------------------------------------------------------------- conv


@pytest.mark.parametrize(
    "conv,expect",
    [
        (nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), {"stride": 2, "padding": 1}),
        (nn.Conv2d(3, 8, (3, 5), stride=(1, 2), padding=(1, 2)), {"stride": [1, 2], "padding": [1, 2]}),
        (nn.Conv2d(3, 6, 3, padding=2, dilation=2, groups=3), {"dilation": 2, "groups": 3}),
        (nn.Conv2d(3, 8, 5, padding="same"), {"padding": 2}),
        (nn.Conv2d(3, 8, 3, padding="valid"), {"padding": 0}),
        (nn.Conv2d(3, 8, 3, padding="same", dilation=2), {"padding": 2, "dilation": 2}),
    ],
)
def test_conv2d(conv, expect, method):
    m = Wrap(conv, conv.out_channels)
    spec = roundtrip(m, (3, 12, 12), method)
    n = by_name(spec)["body"]
    assert n["op"] == "conv2d" and n["weight"] == "body.weight"
    assert ("bias" in n) == (conv.bias is not None)
    for k, v in expect.items():
        assert n[k] == v, (k, n)


def test_depthwise_and_functional_conv(method):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.randn(4, 1, 3, 3))
            self.b = nn.Parameter(torch.randn(4))
            self.head = Head(4)

        def forward(self, x):
            x = F.conv2d(x, self.w, self.b, stride=1, padding=1, groups=4)
            return self.head(x)

    spec = roundtrip(M(), (4, 8, 8), method)
    n = spec["nodes"][0]
    assert n == {"name": "conv2d", "op": "conv2d", "weight": "w", "bias": "b", "stride": 1, "padding": 1, "groups": 4}


# -------------------------------------------------------------------------------- linear / bn


def test_mlp_bn1d(method, tmp_path):
    m = nn.Sequential(nn.Linear(10, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 4))
    _randomize_bn(m)
    spec = roundtrip(m, (10,), method, tmp_path)
    assert ops(spec) == ["linear", "batchnorm1d", "relu", "linear"]
    assert [n["name"] for n in spec["nodes"]] == ["0", "1", "2", "4"]
    assert spec["nodes"][1] == {"name": "1", "op": "batchnorm1d", "prefix": "1", "eps": 1e-5}
    assert spec["input"] == [10]


def test_bn2d_prefix_and_eps(method):
    body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8, eps=1e-3))
    m = _randomize_bn(Wrap(body, 8))
    spec = roundtrip(m, (3, 8, 8), method)
    n = by_name(spec)["body.1"]
    assert n == {"name": "body.1", "op": "batchnorm2d", "prefix": "body.1", "eps": 1e-3}


def test_functional_bn_explicit_names(method):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.register_buffer("mu", torch.randn(4))
            self.register_buffer("var", torch.rand(4) + 0.5)
            self.gamma = nn.Parameter(torch.rand(4) + 0.5)
            self.beta = nn.Parameter(torch.randn(4))
            self.head = Head(4)

        def forward(self, x):
            x = F.batch_norm(self.conv(x), self.mu, self.var, self.gamma, self.beta, False, 0.1, 1e-4)
            return self.head(x)

    spec = roundtrip(M(), (3, 6, 6), method)
    n = spec["nodes"][1]
    assert n["op"] == "batchnorm2d"
    assert (n["weight"], n["bias"], n["running_mean"], n["running_var"], n["eps"]) == ("gamma", "beta", "mu", "var", 1e-4)


# -------------------------------------------------------------------------------- activations


class Act(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.fn = fn
        self.head = Head(6)

    def forward(self, x):
        x = self.conv(x)
        x = self.fn(x)
        return self.head(x)


ACTS = [
    ("relu_module", nn.ReLU(), "relu", {}),
    ("relu_inplace_module", nn.ReLU(inplace=True), "relu", {}),
    ("F.relu", F.relu, "relu", {}),
    ("F.relu_inplace", lambda x: F.relu(x, inplace=True), "relu", {}),
    ("torch.relu", torch.relu, "relu", {}),
    ("relu_method_inplace", lambda x: x.relu_(), "relu", {}),
    ("relu6_module", nn.ReLU6(), "hardtanh", {"min_val": 0.0, "max_val": 6.0}),
    ("F.relu6", F.relu6, "hardtanh", {"min_val": 0.0, "max_val": 6.0}),
    ("F.hardtanh_0_6", lambda x: F.hardtanh(x, 0, 6), "hardtanh", {"min_val": 0.0, "max_val": 6.0}),
    ("hardtanh", nn.Hardtanh(-0.5, 0.25), "hardtanh", {"min_val": -0.5, "max_val": 0.25}),
    ("leaky_relu", nn.LeakyReLU(0.2), "leaky_relu", {"negative_slope": 0.2}),
    ("F.leaky_relu_inplace", lambda x: F.leaky_relu(x, 0.05, inplace=True), "leaky_relu", {"negative_slope": 0.05}),
    ("elu", nn.ELU(0.7), "elu", {"alpha": 0.7}),
    ("F.elu", F.elu, "elu", {"alpha": 1.0}),
    ("gelu", nn.GELU(), "gelu", {}),
    ("F.gelu", F.gelu, "gelu", {}),
    ("sigmoid", nn.Sigmoid(), "sigmoid", {}),
    ("torch.sigmoid", torch.sigmoid, "sigmoid", {}),
    ("sigmoid_method", lambda x: x.sigmoid(), "sigmoid", {}),
    ("tanh", nn.Tanh(), "tanh", {}),
    ("torch.tanh", torch.tanh, "tanh", {}),
    ("silu", nn.SiLU(), "silu", {}),
    ("F.silu_inplace", lambda x: F.silu(x, inplace=True), "silu", {}),
    ("hardswish", nn.Hardswish(inplace=True), "hardswish", {}),
    ("F.hardswish", F.hardswish, "hardswish", {}),
    ("hardsigmoid", nn.Hardsigmoid(), "hardsigmoid", {}),
    ("F.hardsigmoid_inplace", lambda x: F.hardsigmoid(x, inplace=True), "hardsigmoid", {}),
]


@pytest.mark.parametrize("label,fn,op,fields", ACTS, ids=[a[0] for a in ACTS])
def test_activation(label, fn, op, fields, method):
    spec = roundtrip(Act(fn), (3, 6, 6), method)
    n = spec["nodes"][1]
    assert n["op"] == op, n
    for k, v in fields.items():
        assert n[k] == v
    assert set(n) - {"name", "op"} == set(fields)
    # a module call is named by its path; a functional op inside Act.forward by Act's path + op
    if isinstance(fn, nn.Module):
        assert n["name"] == "fn"
    else:
        assert n["name"] in (op, "relu", "relu6", "hardtanh", "leaky_relu", "silu", "hardswish", "hardsigmoid",
                             "sigmoid", "tanh", "gelu", "elu"), n["name"]


@pytest.mark.parametrize("shared", [False, True])
def test_prelu(shared, method):
    m = Act(nn.PReLU(1 if shared else 6, init=0.1))
    with torch.no_grad():
        m.fn.weight.uniform_(-0.5, 0.5)
    spec = roundtrip(m, (3, 6, 6), method)
    assert spec["nodes"][1] == {"name": "fn", "op": "prelu", "weight": "fn.weight"}


# -------------------------------------------------------------------------------- pooling


@pytest.mark.parametrize(
    "pool,fields",
    [
        (nn.MaxPool2d(2), {"kernel": 2, "stride": 2, "padding": 0}),
        (nn.MaxPool2d(3, 2, 1), {"kernel": 3, "stride": 2, "padding": 1}),
        (nn.MaxPool2d(3, 2, ceil_mode=True), {"kernel": 3, "stride": 2, "padding": 0, "ceil_mode": True}),
        (nn.MaxPool2d((3, 2), (2, 1), (1, 0), dilation=(1, 2)),
         {"kernel": [3, 2], "stride": [2, 1], "padding": [1, 0], "dilation": [1, 2]}),
        (nn.AvgPool2d(2), {"kernel": 2, "stride": 2, "padding": 0}),
        (nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False),
         {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True, "count_include_pad": False}),
        (nn.AvgPool2d(3, 1, 1), {"kernel": 3, "stride": 1, "padding": 1}),
    ],
)
def test_pool_modules(pool, fields, method):
    spec = roundtrip(Act(pool), (3, 11, 11), method)
    n = spec["nodes"][1]
    assert n["op"] == ("maxpool2d" if isinstance(pool, nn.MaxPool2d) else "avgpool2d")
    assert {k: v for k, v in n.items() if k not in ("name", "op")} == fields


def test_pool_functional(method):
    fn = lambda x: F.avg_pool2d(F.max_pool2d(x, 3, stride=1, padding=1), kernel_size=2, ceil_mode=True)  # noqa: E731
    spec = roundtrip(Act(fn), (3, 9, 9), method)
    assert ops(spec)[1:3] == ["maxpool2d", "avgpool2d"]
    assert [n["name"] for n in spec["nodes"][1:3]] == ["max_pool2d", "avg_pool2d"]


@pytest.mark.parametrize(
    "fn,want",
    [
        (nn.AdaptiveAvgPool2d(1), ["global_avgpool"]),
        (nn.AdaptiveAvgPool2d((1, 1)), ["global_avgpool"]),
        (nn.AdaptiveAvgPool2d((2, 3)), ["adaptive_avgpool2d"]),
        (lambda x: F.adaptive_avg_pool2d(x, 3), ["adaptive_avgpool2d"]),
        (lambda x: x.mean((2, 3), keepdim=True), ["global_avgpool"]),
    ],
)
def test_adaptive_pool(fn, want, method):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fn = fn

        def forward(self, x):
            return torch.flatten(self.fn(self.conv(x)), 1)

    m = M()
    spec = roundtrip(m, (3, 10, 9), method)
    assert ops(spec) == ["conv2d"] + want + ["flatten"]
    if want == ["adaptive_avgpool2d"]:
        assert spec["nodes"][1]["output_size"] in ([2, 3], 3)


@pytest.mark.parametrize("dims", [(2, 3), [-1, -2], [3, 2]])
def test_mean_without_keepdim(dims, method):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4, 5)

        def forward(self, x):
            return self.fc(self.conv(x).mean(dims))

    spec = roundtrip(M(), (3, 8, 8), method)
    assert ops(spec) == ["conv2d", "global_avgpool", "flatten", "linear"]
    assert [n["name"] for n in spec["nodes"]] == ["conv", "mean", "flatten", "fc"]


# -------------------------------------------------------------------------------- flatten / reshape


@pytest.mark.parametrize(
    "fn",
    [
        lambda x: torch.flatten(x, 1),
        lambda x: x.view(x.size(0), -1),
        lambda x: x.reshape(x.shape[0], -1),
        lambda x: x.flatten(1),
        nn.Flatten(),
    ],
    ids=["torch.flatten", "view", "reshape", "method", "module"],
)
def test_flatten_forms(fn, method):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, stride=2)
            self.fn = fn
            self.fc = nn.Linear(4 * 3 * 3, 5)

        def forward(self, x):
            return self.fc(self.fn(self.conv(x)))

    spec = roundtrip(M(), (3, 7, 7), method)
    assert ops(spec) == ["conv2d", "flatten", "linear"]


# -------------------------------------------------------------------------------- removed nodes


@pytest.mark.parametrize(
    "fn",
    [
        nn.Dropout(0.5), nn.Dropout2d(0.5), nn.AlphaDropout(0.5), nn.Identity(),
        lambda x: F.dropout(x, 0.5, training=False),
        lambda x: x.clone(), lambda x: x.contiguous(), lambda x: x.detach(),
    ],
    ids=["dropout", "dropout2d", "alpha_dropout", "identity", "F.dropout", "clone", "contiguous", "detach"],
)
def test_removed(fn, method):
    spec = roundtrip(Act(fn), (3, 6, 6), method)
    assert ops(spec) == ["conv2d", "global_avgpool", "flatten", "linear"]
    assert "inputs" not in spec["nodes"][1]


def test_stochastic_depth(method):
    tvops = pytest.importorskip("torchvision.ops")
    spec = roundtrip(Act(tvops.StochasticDepth(0.5, "row")), (3, 6, 6), method)
    assert ops(spec) == ["conv2d", "global_avgpool", "flatten", "linear"]


def test_identity_model_keeps_identity(method):
    class M(nn.Module):
        def forward(self, x):
            return nn.functional.dropout(x.clone(), 0.1, training=False)

    spec = roundtrip(M(), (7,), method)
    assert spec["nodes"] == [{"name": "identity", "op": "identity"}]


# -------------------------------------------------------------------------------- add / mul


class Res(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.a = nn.Conv2d(4, 4, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 1)
        self.head = Head(4)

    def forward(self, x):
        a, b = self.a(x), self.b(x)
        if self.kind == "plus":
            y = a + b
        elif self.kind == "torch.add":
            y = torch.add(a, b)
        elif self.kind == "iadd":
            a += b
            y = a
        elif self.kind == "sum3":
            y = a + b + x
        elif self.kind == "mul":
            y = a * b
        elif self.kind == "torch.mul":
            y = torch.mul(a, torch.sigmoid(b))
        return self.head(y)


@pytest.mark.parametrize("kind,want", [("plus", ["add"]), ("torch.add", ["add"]), ("iadd", ["add"]),
                                       ("sum3", ["add", "add"]), ("mul", ["mul"]), ("torch.mul", ["sigmoid", "mul"])])
def test_binary(kind, want, method):
    spec = roundtrip(Res(kind), (4, 6, 6), method)
    assert ops(spec)[2:-3] == want
    node = spec["nodes"][2 + len(want) - 1]
    assert len(node["inputs"]) == 2
    if kind == "sum3":
        assert spec["nodes"][3]["inputs"] == ["add", "input"]
        assert [n["name"] for n in spec["nodes"][2:4]] == ["add", "add_1"]


class SE(nn.Module):
    """torchvision-style squeeze-excitation: conv-based, or Linear + view(b, c, 1, 1)."""

    def __init__(self, c, linear=False):
        super().__init__()
        self.linear = linear
        self.pool = nn.AdaptiveAvgPool2d(1)
        if linear:
            self.fc1, self.fc2 = nn.Linear(c, 2), nn.Linear(2, c)
        else:
            self.fc1, self.fc2 = nn.Conv2d(c, 2, 1), nn.Conv2d(2, c, 1)

    def forward(self, x):
        s = self.pool(x)
        if self.linear:
            b, c, _, _ = x.shape
            s = self.fc2(F.relu(self.fc1(s.view(b, c)))).view(b, c, 1, 1)
        else:
            s = self.fc2(F.relu(self.fc1(s)))
        return x * torch.sigmoid(s)


@pytest.mark.parametrize("linear", [False, True])
def test_squeeze_excitation(linear, method):
    m = Wrap(nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), SE(6, linear)), 6)
    spec = roundtrip(m, (3, 6, 6), method)
    mul = by_name(spec)["body.1.mul"]
    assert mul["op"] == "mul" and mul["inputs"] == ["body.0", "body.1.sigmoid"]


def test_mul_by_parameter(method):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.scale = nn.Parameter(torch.rand(4, 1, 1) + 0.5)
            self.one = nn.Parameter(torch.tensor([1.5]))
            self.fc = nn.Linear(4, 3)
            self.v = nn.Parameter(torch.rand(3))

        def forward(self, x):
            x = self.scale * self.conv(x)
            x = x * self.one
            return self.fc(x.mean((2, 3))) * self.v

    spec = roundtrip(M(), (3, 5, 5), method)
    muls = [n for n in spec["nodes"] if n["op"] == "mul"]
    assert [m["weight"] for m in muls] == ["scale", "one", "v"]
    assert all("inputs" not in m for m in muls)


# -------------------------------------------------------------------------------- concat / slices


def test_concat_three_and_features(method):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c = nn.Conv2d(3, 2, 1), nn.Conv2d(3, 3, 3, padding=1), nn.Conv2d(3, 4, 1)
            self.fc = nn.Linear(18, 5)

        def forward(self, x):
            y = torch.cat([self.a(x), self.b(x), self.c(x)], dim=1)
            v = y.mean((2, 3))
            return self.fc(torch.cat((v, torch.sigmoid(v)), 1))

    spec = roundtrip(M(), (3, 5, 5), method)
    cats = [n for n in spec["nodes"] if n["op"] == "concat"]
    assert cats[0]["inputs"] == ["a", "b", "c"] and cats[0]["name"] == "cat"
    assert cats[1]["name"] == "cat_1" and len(cats[1]["inputs"]) == 2


def _chunk3(x):
    a, b, c = x.chunk(3, dim=1)
    return [a, b, c]


def _tchunk2(x):
    a, b = torch.chunk(x, 2, 1)
    return [a, b]


def _split2(x):
    a, b, c = x.split(2, dim=1)
    return [a, b, c]


def _split_sizes(x):
    a, b, c = torch.split(x, [1, 4, 1], dim=1)
    return [a, b, c]


def _narrow(x):
    return [x.narrow(1, 1, 3), x.narrow(1, 4, 2), x[:, :1]]


def _getitem(x):
    return [x[:, 2:5], x[:, :2], x[:, 5:]]


def _chunk_uneven(x):
    a, b = x.chunk(2, dim=1)  # 6 -> 3 + 3
    p, q = torch.split(a, 2, 1)  # 3 -> 2 + 1
    return [p, q, b]


SLICES = {"chunk": _chunk3, "torch.chunk": _tchunk2, "split": _split2, "split_sizes": _split_sizes,
          "narrow": _narrow, "getitem": _getitem, "nested": _chunk_uneven}


@pytest.mark.parametrize("kind", list(SLICES))
def test_slices(kind, method):
    fn = SLICES[kind]

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 6, 3, padding=1)
            self.head = Head(6)

        def forward(self, x):
            y = self.conv(x)
            parts = fn(y)
            z = torch.cat([torch.relu(parts[1]), parts[0]] + parts[2:], 1)
            return self.head(z)

    spec = roundtrip(M(), (3, 5, 5), method)
    sl = [n for n in spec["nodes"] if n["op"] == "slice"]
    assert sl and all(set(n) - {"name", "op", "inputs"} == {"start", "end"} for n in sl)
    if kind == "chunk":
        assert [(n["start"], n["end"]) for n in sl] == [(0, 2), (2, 4), (4, 6)]
        assert [n["name"] for n in sl] == ["chunk", "chunk_1", "chunk_2"]


def test_shufflenet_channel_shuffle(method):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 6, 3, padding=1)
            self.head = Head(6)

        def forward(self, x):
            x = self.conv(x)
            b, c, h, w = x.size()
            x = x.view(b, 3, c // 3, h, w)
            x = torch.transpose(x, 1, 2).contiguous()
            x = x.view(b, -1, h, w)
            return self.head(x)

    spec = roundtrip(M(), (3, 4, 4), method)
    assert spec["nodes"][1] == {"name": "channel_shuffle", "op": "channel_shuffle", "groups": 3}


def test_channel_shuffle_module(method):
    spec = roundtrip(Act(nn.ChannelShuffle(2)), (3, 4, 4), method)
    assert spec["nodes"][1] == {"name": "fn", "op": "channel_shuffle", "groups": 2}


# -------------------------------------------------------------------------------- layer norm / channels last


class CNBlock(nn.Module):
    """ConvNeXt's block: dwconv, permute, LayerNorm, Linear, GELU, Linear, *gamma, permute back."""

    def __init__(self, c, gamma_nhwc):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c, eps=1e-6)
        self.pw1 = nn.Linear(c, 4 * c)
        self.pw2 = nn.Linear(4 * c, c)
        self.gamma_nhwc = gamma_nhwc
        self.gamma = nn.Parameter(torch.rand(c) + 0.5) if gamma_nhwc else nn.Parameter(torch.rand(c, 1, 1) + 0.5)

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.pw2(F.gelu(self.pw1(self.norm(y))))
        if self.gamma_nhwc:
            y = (y * self.gamma).permute(0, 3, 1, 2)
        else:
            y = self.gamma * y.permute(0, 3, 1, 2)
        return x + y


@pytest.mark.parametrize("gamma_nhwc", [False, True])
def test_convnext_block(gamma_nhwc, method):
    m = Wrap(nn.Sequential(nn.Conv2d(3, 8, 2, stride=2), CNBlock(8, gamma_nhwc)), 8)
    spec = roundtrip(m, (3, 8, 8), method, atol=2e-5)
    n = by_name(spec)
    assert n["body.1.norm"] == {"name": "body.1.norm", "op": "layernorm", "prefix": "body.1.norm", "eps": 1e-6}
    assert n["body.1.pw1"] == {"name": "body.1.pw1", "op": "conv2d", "weight": "body.1.pw1.weight",
                               "bias": "body.1.pw1.bias"}
    assert n["body.1.mul"]["weight"] == "body.1.gamma"
    assert "permute" not in "".join(ops(spec))


def test_torchvision_layernorm2d(method):
    cv = pytest.importorskip("torchvision.models.convnext")
    m = Wrap(nn.Sequential(nn.Conv2d(3, 6, 3), cv.LayerNorm2d(6, eps=1e-6)), 6)
    with torch.no_grad():
        m.body[1].weight.uniform_(0.5, 1.5)
        m.body[1].bias.uniform_(-0.5, 0.5)
    spec = roundtrip(m, (3, 6, 6), method)
    assert by_name(spec)["body.1"] == {"name": "body.1", "op": "layernorm", "prefix": "body.1", "eps": 1e-6}


def test_layernorm_features(method):
    m = nn.Sequential(nn.Linear(6, 8), nn.LayerNorm(8), nn.Tanh(), nn.Linear(8, 3))
    spec = roundtrip(m, (6,), method)
    assert ops(spec) == ["linear", "layernorm", "tanh", "linear"]


def test_layernorm_functional_explicit_names(method):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(5, 6)
            self.g = nn.Parameter(torch.rand(6) + 0.5)
            self.b = nn.Parameter(torch.randn(6))

        def forward(self, x):
            return F.layer_norm(self.fc(x), (6,), self.g, self.b, 1e-3)

    spec = roundtrip(M(), (5,), method)
    assert spec["nodes"][1] == {"name": "layer_norm", "op": "layernorm", "weight": "g", "bias": "b", "eps": 1e-3}


def test_channels_last_mean(method):
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x).permute(0, 2, 3, 1)).mean((1, 2)))

    spec = roundtrip(M(), (3, 6, 6), method)
    assert ops(spec) == ["conv2d", "relu", "global_avgpool", "flatten", "linear"]


# -------------------------------------------------------------------------------- core ATen / .pt2 input


def test_decomposed_program(tmp_path):
    """A program after run_decompositions() (convolution, native BN, addmm with a transposed weight)."""
    from nshap_export import export, interpret

    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                      nn.Linear(4, 3)).eval()
    _randomize_bn(m)
    x = torch.randn(2, 3, 6, 6)
    ep = torch.export.export(m, (x,)).run_decompositions()
    res = export(ep, x, None)
    assert ops(res.spec) == ["conv2d", "batchnorm2d", "relu", "global_avgpool", "flatten", "linear"]
    assert [n["name"] for n in res.spec["nodes"]] == ["0", "1", "2", "3", "4", "5"]
    torch.testing.assert_close(interpret(res.spec, m.state_dict(), x), m(x))
