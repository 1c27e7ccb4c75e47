"""Shared helpers: export a module, validate the spec against docs/model-format.md, compare."""

import json
import os
import sys

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
try:  # the installed package (pip install ./python), else this checkout
    import nshap_export  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(HERE))
    import nshap_export  # noqa: F401

# where nshap_export lives: subprocesses get it on PYTHONPATH
PY_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(nshap_export.__file__)))
SOURCE_ROOT = os.path.dirname(HERE)

from nshap_export import export, interpret  # noqa: E402
from nshap_export.interpret import node_shapes  # noqa: E402

# docs/model-format.md: the fields each op accepts (besides name, op, inputs)
ALLOWED = {
    "linear": {"weight", "bias"},
    "conv2d": {"weight", "bias", "stride", "padding", "dilation", "groups"},
    "batchnorm1d": {"prefix", "weight", "bias", "running_mean", "running_var", "eps"},
    "batchnorm2d": {"prefix", "weight", "bias", "running_mean", "running_var", "eps"},
    "relu": set(), "gelu": set(), "sigmoid": set(), "tanh": set(), "identity": set(),
    "silu": set(), "hardswish": set(), "hardsigmoid": set(), "relu6": set(),
    "maxpool2d": {"kernel", "stride", "padding", "ceil_mode", "dilation"},
    "avgpool2d": {"kernel", "stride", "padding", "ceil_mode", "count_include_pad"},
    "global_avgpool": set(),
    "flatten": set(),
    "add": set(),
    "mul": {"weight"},
    "concat": set(),
    "slice": {"start", "end"},
    "channel_shuffle": {"groups"},
    "hardtanh": {"min_val", "max_val"},
    "leaky_relu": {"negative_slope"},
    "elu": {"alpha"},
    "prelu": {"weight"},
    "layernorm": {"weight", "bias", "prefix", "eps"},
    "adaptive_avgpool2d": {"output_size"},
}


def _pair(v, d):
    if v is None:
        v = d
    return tuple(v) if isinstance(v, list) else (v, v)


def validate_spec(spec, sd):
    """Checks what the Rust loader checks (as documented): fields, names, tensors, shapes."""
    assert spec["format"] == "nshap.model.v1"
    assert set(spec) == {"format", "input", "nodes"}
    names = ["input"]
    shapes = node_shapes(spec, sd)
    shapes["input"] = tuple(spec["input"])
    prev = "input"
    for n in spec["nodes"]:
        nm, op = n["name"], n["op"]
        assert nm not in names, f"duplicate or reserved name {nm}"
        assert op in ALLOWED, f"{nm}: unknown op {op}"
        extra = set(n) - {"name", "op", "inputs"} - ALLOWED[op]
        assert not extra, f"{nm} ({op}): fields not in docs/model-format.md: {extra}"
        ins = n.get("inputs", [prev])
        assert "inputs" not in n or n["inputs"] != [prev], f"{nm}: redundant inputs"
        for i in ins:
            assert i in names, f"{nm}: reads {i} before it exists"
        ish = [shapes[i] for i in ins]
        out = shapes[nm]

        def T(key):
            assert n[key] in sd, f"{nm}: tensor {n[key]} not in state_dict"
            return tuple(sd[n[key]].shape)

        if op in ("add", "mul", "concat") and not (op == "mul" and "weight" in n):
            assert len(ins) >= 2
        else:
            assert len(ins) == 1, f"{nm}: {op} reads {len(ins)} inputs"
        if op == "linear":
            assert len(ish[0]) == 1, f"{nm}: linear input {ish[0]} is not [F]"
            w = T("weight")
            assert w == (out[0], ish[0][0])
            if "bias" in n:
                assert T("bias") == (out[0],)
        elif op == "conv2d":
            assert len(ish[0]) == 3
            w = T("weight")
            g = n.get("groups", 1)
            assert w[:2] == (out[0], ish[0][0] // g), (nm, w, ish, out)
            assert len(w) in (2, 4)
            if "bias" in n:
                assert T("bias") == (out[0],)
        elif op.startswith("batchnorm"):
            C = ish[0][0]
            assert (op == "batchnorm2d") == (len(ish[0]) == 3)
            keys = ([f"{n['prefix']}.{k}" for k in ("weight", "bias", "running_mean", "running_var")]
                    if "prefix" in n else [n[k] for k in ("weight", "bias", "running_mean", "running_var")])
            for k in keys:
                assert k in sd and tuple(sd[k].shape) == (C,), (nm, k)
        elif op == "layernorm":
            C = ish[0][0]
            keys = [f"{n['prefix']}.weight", f"{n['prefix']}.bias"] if "prefix" in n else [n["weight"], n["bias"]]
            for k in keys:
                assert k in sd and tuple(sd[k].shape) == (C,), (nm, k)
        elif op == "add":
            assert len(ins) == 2 and ish[0] == ish[1], (nm, ish)
        elif op == "mul":
            if "weight" in n:
                w = T("weight")
                C = ish[0][0]
                assert w in ((C,), (C, 1, 1), (1,)), (nm, w, ish)
            else:
                assert len(ins) == 2
                a, b = ish
                if a != b:
                    big, small = (a, b) if len(a) == 3 and a[1:] != (1, 1) else (b, a)
                    assert len(big) == 3 and small in ((big[0], 1, 1), (big[0],)), (nm, ish)
        elif op == "concat":
            assert len({s[1:] for s in ish}) == 1, (nm, ish)
            assert len({len(s) for s in ish}) == 1
        elif op == "slice":
            assert 0 <= n["start"] < n["end"] <= ish[0][0]
        elif op == "channel_shuffle":
            assert ish[0][0] % n["groups"] == 0
        elif op == "prelu":
            assert T("weight") in ((ish[0][0],), (1,))
        elif op in ("maxpool2d", "avgpool2d"):
            k = _pair(n["kernel"], None)
            p = _pair(n.get("padding"), 0)
            assert p[0] <= k[0] // 2 and p[1] <= k[1] // 2
        elif op in ("global_avgpool", "adaptive_avgpool2d"):
            assert len(ish[0]) == 3
        elif op == "flatten":
            assert len(ish[0]) == 3
        names.append(nm)
        prev = nm
    assert len(shapes[prev]) == 1, f"the last node's output {shapes[prev]} is not [classes]"
    return shapes


def roundtrip(module, shape, method="export", tmp_path=None, batch=3, seed=0, atol=1e-5):
    """Exports, validates the spec, interprets it from the written files and compares."""
    torch.manual_seed(seed)
    module.eval()
    x = torch.randn(batch, *shape)
    out = None if tmp_path is None else os.path.join(str(tmp_path), f"exp-{method}")
    res = export(module, x, out, method=method)
    assert res.method == method
    if out is not None:
        from safetensors.torch import load_file

        spec = json.load(open(os.path.join(out, "model.json")))
        assert spec == res.spec
        sd = load_file(os.path.join(out, "weights.safetensors"))
        assert set(sd) == set(module.state_dict())
        side = json.load(open(os.path.join(out, "export.json")))
        assert side["method"] == method and side["nodes"] == len(spec["nodes"])
    else:
        spec = res.spec
        sd = module.state_dict()
    validate_spec(spec, sd)
    x2 = torch.randn(batch, *shape)
    with torch.no_grad():
        want = module(x2)
    got = interpret(spec, sd, x2)
    assert got.shape == want.shape
    err = float((got - want).abs().max())
    assert err <= atol * max(1.0, float(want.abs().max())), err
    return spec


def ops(spec):
    return [n["op"] for n in spec["nodes"]]


def by_name(spec):
    return {n["name"]: n for n in spec["nodes"]}


@pytest.fixture(params=["export", "fx"])
def method(request):
    return request.param
