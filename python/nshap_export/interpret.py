"""A pure-PyTorch interpreter of ``nshap.model.v1`` specs.

``interpret(spec, state_dict, x, hook=None)`` runs the spec over a batch ``x`` of shape
``[N, *spec["input"]]`` with the tensors of ``state_dict`` (a dict of tensors, or the path of a
safetensors file). ``hook(name, tensor)`` is called on every node's output, in order; what it
returns replaces that output (``None`` leaves it as it is), so masking neurons is
``hook = lambda name, t: t * mask[name] if name in mask else t``.

This is the reference the exporter's self-check and the test fixtures use; it follows
``docs/model-format.md`` op by op, defaults included.
"""

from __future__ import annotations

import json
import os
from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F

__all__ = ["interpret", "load_spec", "node_shapes"]


def load_spec(spec) -> dict:
    if isinstance(spec, dict):
        return spec
    if isinstance(spec, (str, os.PathLike)):
        with open(spec) as f:
            return json.load(f)
    raise TypeError(f"spec must be a dict or a path, not {type(spec).__name__}")


def _load_sd(sd):
    if isinstance(sd, (str, os.PathLike)):
        from safetensors.torch import load_file

        return load_file(str(sd))
    return sd


def _pair(v, default):
    if v is None:
        v = default
    if isinstance(v, (list, tuple)):
        return (int(v[0]), int(v[1]))
    return (int(v), int(v))


def _tensor(sd, name, node):
    if name not in sd:
        raise KeyError(f"node {node['name']!r}: tensor {name!r} not in the state_dict")
    return sd[name].float()


def _bn_tensors(sd, n):
    if "prefix" in n:
        p = n["prefix"]
        names = [f"{p}.weight", f"{p}.bias", f"{p}.running_mean", f"{p}.running_var"]
    else:
        names = [n["weight"], n["bias"], n["running_mean"], n["running_var"]]
    return [_tensor(sd, k, n) for k in names]


def _ln_tensors(sd, n):
    if "prefix" in n:
        p = n["prefix"]
        return _tensor(sd, f"{p}.weight", n), _tensor(sd, f"{p}.bias", n)
    return _tensor(sd, n["weight"], n), _tensor(sd, n["bias"], n)


def _chan(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-channel [C] / [C,1,1] / [1] tensor shaped to broadcast over ``like`` ([N,C,H,W] or [N,F])."""
    if v.dim() == 1 and v.numel() != 1 and like.dim() == 4:
        return v.view(1, -1, 1, 1)
    if v.dim() == 2 and like.dim() == 4:  # [N, C] activation over [N, C, H, W]
        return v[:, :, None, None]
    return v


def _op(n: dict, ins, sd):
    op = n["op"]
    x = ins[0] if ins else None
    if op == "conv2d":
        w = _tensor(sd, n["weight"], n)
        if w.dim() == 2:
            w = w[:, :, None, None]
        b = _tensor(sd, n["bias"], n) if n.get("bias") else None
        return F.conv2d(x, w, b, _pair(n.get("stride"), 1), _pair(n.get("padding"), 0),
                        _pair(n.get("dilation"), 1), int(n.get("groups", 1)))
    if op == "linear":
        w = _tensor(sd, n["weight"], n)
        b = _tensor(sd, n["bias"], n) if n.get("bias") else None
        return F.linear(x, w, b)
    if op in ("batchnorm2d", "batchnorm1d"):
        w, b, m, v = _bn_tensors(sd, n)
        return F.batch_norm(x, m, v, w, b, False, 0.0, float(n.get("eps", 1e-5)))
    if op == "layernorm":
        w, b = _ln_tensors(sd, n)
        eps = float(n.get("eps", 1e-5))
        if x.dim() == 4:
            return F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), w, b, eps).permute(0, 3, 1, 2)
        return F.layer_norm(x, (x.shape[-1],), w, b, eps)
    if op == "relu":
        return F.relu(x)
    if op == "gelu":
        return F.gelu(x)
    if op == "sigmoid":
        return torch.sigmoid(x)
    if op == "tanh":
        return torch.tanh(x)
    if op == "silu":
        return F.silu(x)
    if op == "hardswish":
        return F.hardswish(x)
    if op == "hardsigmoid":
        return F.hardsigmoid(x)
    if op == "identity":
        return x
    if op == "relu6":
        return F.hardtanh(x, 0.0, 6.0)
    if op == "hardtanh":
        return F.hardtanh(x, float(n.get("min_val", -1.0)), float(n.get("max_val", 1.0)))
    if op == "leaky_relu":
        return F.leaky_relu(x, float(n.get("negative_slope", 0.01)))
    if op == "elu":
        return F.elu(x, float(n.get("alpha", 1.0)))
    if op == "prelu":
        return F.prelu(x, _tensor(sd, n["weight"], n))
    if op == "maxpool2d":
        k = _pair(n["kernel"], None)
        return F.max_pool2d(x, k, _pair(n.get("stride"), k), _pair(n.get("padding"), 0),
                            _pair(n.get("dilation"), 1), bool(n.get("ceil_mode", False)))
    if op == "avgpool2d":
        k = _pair(n["kernel"], None)
        return F.avg_pool2d(x, k, _pair(n.get("stride"), k), _pair(n.get("padding"), 0),
                            bool(n.get("ceil_mode", False)), bool(n.get("count_include_pad", True)))
    if op == "global_avgpool":
        return x.mean((2, 3), keepdim=True)
    if op == "adaptive_avgpool2d":
        return F.adaptive_avg_pool2d(x, _pair(n["output_size"], None))
    if op == "flatten":
        return x.flatten(1)
    if op == "add":
        a, b = ins
        if a.shape != b.shape:
            raise ValueError(f"node {n['name']!r}: add of shapes {list(a.shape)} and {list(b.shape)}")
        return a + b
    if op == "mul":
        if "weight" in n:
            w = _tensor(sd, n["weight"], n)
            if x.dim() == 4 and w.dim() == 1 and w.numel() != 1:
                w = w.view(1, -1, 1, 1)
            return x * w
        a, b = ins
        if a.dim() != b.dim():
            a, b = _chan(a, b), _chan(b, a)
        return a * b
    if op == "concat":
        return torch.cat(ins, 1)
    if op == "slice":
        return x[:, int(n["start"]):int(n["end"])]
    if op == "channel_shuffle":
        g = int(n["groups"])
        N, C = x.shape[0], x.shape[1]
        rest = x.shape[2:]
        return x.view(N, g, C // g, *rest).transpose(1, 2).reshape(N, C, *rest)
    raise ValueError(f"node {n['name']!r}: unknown op {op!r}")


def interpret(spec, state_dict, x: torch.Tensor, hook: Optional[Callable] = None) -> torch.Tensor:
    """Runs the spec on ``x`` ([N, *input]); returns the last node's output."""
    spec = load_spec(spec)
    sd = _load_sd(state_dict)
    vals: Dict[str, torch.Tensor] = {"input": x}
    prev = "input"
    with torch.no_grad():
        for n in spec["nodes"]:
            ins = [vals[i] for i in n.get("inputs", [prev])]
            y = _op(n, ins, sd)
            if hook is not None:
                r = hook(n["name"], y)
                if r is not None:
                    y = r
            vals[n["name"]] = y
            prev = n["name"]
    return vals[prev]


def node_shapes(spec, state_dict, x: Optional[torch.Tensor] = None) -> Dict[str, tuple]:
    """Per-example output shape of every node (runs one example)."""
    spec = load_spec(spec)
    if x is None:
        x = torch.zeros(1, *spec["input"])
    shapes = {}

    def rec(name, t):
        shapes[name] = tuple(t.shape[1:])

    interpret(spec, state_dict, x[:1], hook=rec)
    return shapes
