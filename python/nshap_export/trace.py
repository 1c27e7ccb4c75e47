"""Tracing front ends: ``torch.export`` and ``torch.fx.symbolic_trace``.

Both produce a ``Traced``: the fx graph, and for every node that computes something a
``Call`` with a canonical op name (ATen's name without overload or in-place underscore),
arguments bound to ATen-style parameter names (``self`` is called ``input``), the module
scope it was called in (for naming) and the user source line (for reports).
"""

from __future__ import annotations

import operator
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from .errors import ExportError

_TORCH_DIR = os.path.dirname(os.path.realpath(torch.__file__)) + os.sep
# tracing machinery: never the line a user wants to see
_INTERNAL = tuple(_TORCH_DIR + d + os.sep for d in ("fx", "_dynamo", "_export", "export", "_subclasses", "utils",
                                                   "_functorch", "_higher_order_ops", "_library", "_ops"))
_FRAME_RE = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')


@dataclass
class Scope:
    """The module call a node belongs to."""

    key: str  # distinguishes repeated calls of one module ("layer1.0.relu@1")
    path: str  # module path a PyTorch user knows ("layer1.0.relu"), "" at top level
    mtype: str  # class name of that module
    leaf: bool  # the module has no submodules


@dataclass
class Call:
    node: fx.Node
    op: str  # canonical op name ("conv2d", "relu", "add", ...)
    args: Dict[str, Any]
    inplace: bool
    target: str  # what a PyTorch user would recognise, for reports ("aten.relu_.default")
    scope: Scope
    source: Optional[str]  # "file.py:123" of the innermost frame outside torch
    shape: Optional[tuple]  # full output shape (batch included) when the output is a tensor

    def a(self, name, default=None):
        return self.args.get(name, default)


@dataclass
class Traced:
    method: str  # "export" or "fx"
    graph: fx.Graph
    calls: Dict[fx.Node, Call]
    # placeholder / get_attr nodes: ("input",) | ("param", state_dict_name, tensor) | ("const", tensor)
    leaves: Dict[fx.Node, tuple]
    output: fx.Node  # the single node whose value the model returns
    run_capture: Callable  # x -> {fx.Node: value} for every node
    batch: int
    fallback_reason: Optional[str] = None
    module_paths: set = field(default_factory=set)


# ---------------------------------------------------------------------------------------
# helpers


def source_of(node: fx.Node) -> Optional[str]:
    """file:line of the innermost stack frame outside the torch package."""
    st = node.meta.get("stack_trace")
    if not st:
        return None
    frames = _FRAME_RE.findall(st)
    if not frames:
        return None
    real = [(os.path.realpath(p) if not p.startswith("<") else p, p, line) for p, line, _fn in frames]
    for rp, path, line in reversed(real):
        if not rp.startswith(_TORCH_DIR):
            return f"{path}:{line}"
    for rp, path, line in reversed(real):
        if not rp.startswith(_INTERNAL) and rp != _TORCH_DIR + "_ops.py":
            return f"{path}:{line}"
    return None


_BRACKET = re.compile(r"\[(\d+)\]")


def _clean_path(p: str) -> str:
    """Normalise the module paths older torch versions put in nn_module_stack."""
    p = str(p)
    for pre in ("L['self'].", "L['self']", "L__self__."):
        if p.startswith(pre):
            p = p[len(pre):]
    p = _BRACKET.sub(r".\1", p)
    p = re.sub(r"getattr\((.*?), ['\"](.*?)['\"]\)", r"\1.\2", p)
    return p.strip(".")


def _type_name(t) -> str:
    if isinstance(t, type):
        return t.__qualname__
    return str(t).rsplit(".", 1)[-1]


def scope_of(node: fx.Node, leaf_of: Callable[[str], bool]) -> Scope:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return Scope("", "", "", False)
    key, (path, mtype) = list(stack.items())[-1]
    path = _clean_path(path)
    if path == "":
        return Scope("", "", _type_name(mtype), False)
    return Scope(str(key), path, _type_name(mtype), leaf_of(path))


def meta_shape(node: fx.Node) -> Optional[tuple]:
    v = node.meta.get("val")
    if isinstance(v, (tuple, list)) and v and isinstance(v[0], torch.Tensor):
        v = v[0]
    if isinstance(v, torch.Tensor):
        try:
            return tuple(int(s) for s in v.shape)
        except Exception:  # symbolic sizes
            return None
    tm = node.meta.get("tensor_meta")
    if not hasattr(tm, "shape") and isinstance(tm, (tuple, list)) and tm and hasattr(tm[0], "shape"):
        tm = tm[0]
    if tm is not None and hasattr(tm, "shape"):
        return tuple(int(s) for s in tm.shape)
    return None


def _bind_schema(op, args, kwargs) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    sch = op._schema
    params = list(sch.arguments)
    for i, a in enumerate(args):
        if i < len(params):
            out["input" if params[i].name == "self" else params[i].name] = a
    for k, v in kwargs.items():
        out["input" if k == "self" else k] = v
    for p in params:
        nm = "input" if p.name == "self" else p.name
        if nm not in out and p.has_default_value():
            out[nm] = p.default_value
    return out


def _leaf_checker(module: Optional[nn.Module], graph: fx.Graph):
    if module is not None:
        mods = dict(module.named_modules())

        def leaf(path):
            m = mods.get(path)
            if m is None:
                return _observed(path)
            return len(list(m.children())) == 0
    else:
        leaf = None
    paths = set()
    for n in graph.nodes:
        for _k, (p, _t) in (n.meta.get("nn_module_stack") or {}).items():
            paths.add(_clean_path(p))

    def _observed(path):
        pre = path + "."
        return not any(q.startswith(pre) for q in paths)

    return (leaf or _observed), paths


class _Capture(fx.Interpreter):
    """Runs a graph and keeps a copy of every node's value (in-place ops mutate later)."""

    def __init__(self, gm, **kw):
        super().__init__(gm, **kw)
        self.values = {}

    def run_node(self, n):
        r = super().run_node(n)
        if isinstance(r, torch.Tensor):
            self.values[n] = r.detach().clone()
        elif isinstance(r, (tuple, list)):
            self.values[n] = type(r)(t.detach().clone() if isinstance(t, torch.Tensor) else t for t in r)
        else:
            self.values[n] = r
        return r


def _aten_target_str(t) -> str:
    if isinstance(t, torch._ops.OpOverload):
        return f"{t.namespace}.{t._schema.name.split('::')[-1]}.{t._overloadname}"
    if hasattr(t, "__module__") and hasattr(t, "__name__"):
        mod = t.__module__ or ""
        if mod in ("_operator", "operator"):
            mod = "operator"
        return f"{mod}.{t.__name__}" if mod else t.__name__
    return str(t)


# ---------------------------------------------------------------------------------------
# torch.export


def trace_export(module, x: torch.Tensor) -> Traced:
    """Trace with torch.export (or take an ExportedProgram as it is)."""
    if isinstance(module, torch.export.ExportedProgram):
        ep = module
        mod_for_leaf = None
    else:
        ep = torch.export.export(module, (x,), strict=False)
        mod_for_leaf = module
    return _from_exported(ep, mod_for_leaf)


def _from_exported(ep, module) -> Traced:
    from torch.export.graph_signature import InputKind

    gm = ep.graph_module
    graph = gm.graph
    leaf_of, paths = _leaf_checker(module, graph)
    sd = ep.state_dict
    consts = getattr(ep, "constants", {}) or {}
    by_name = {n.name: n for n in graph.nodes}
    leaves: Dict[fx.Node, tuple] = {}
    user_inputs = []
    run_args_spec = []
    for spec in ep.graph_signature.input_specs:
        n = by_name[spec.arg.name]
        if spec.kind == InputKind.USER_INPUT:
            leaves[n] = ("input",)
            user_inputs.append(n)
            run_args_spec.append(("input", None))
        elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
            t = sd[spec.target] if spec.target in sd else consts.get(spec.target)
            persistent = spec.kind == InputKind.PARAMETER or getattr(spec, "persistent", True)
            if spec.target in sd and persistent:
                leaves[n] = ("param", spec.target, t)
            else:
                leaves[n] = ("const", t, spec.target)
            run_args_spec.append(("tensor", t))
        elif spec.kind == InputKind.CONSTANT_TENSOR:
            t = consts[spec.target]
            leaves[n] = ("const", t, spec.target)
            run_args_spec.append(("tensor", t))
        else:
            raise ExportError(f"unsupported graph input kind {spec.kind} ({spec.arg.name})")
    if len(user_inputs) != 1:
        raise ExportError(f"the model must take exactly one tensor input, found {len(user_inputs)}")
    inp_shape = meta_shape(user_inputs[0])
    if inp_shape is None:
        raise ExportError("input shape is not static")
    batch = inp_shape[0]

    from torch.export.graph_signature import OutputKind

    user_outs = [s for s in ep.graph_signature.output_specs if s.kind == OutputKind.USER_OUTPUT]
    if len(user_outs) != 1:
        raise ExportError(
            f"the model returns {len(user_outs)} tensors in eval mode; nshap needs one "
            "[N, classes] logits tensor (wrap the model to return only the logits)"
        )
    out_node = by_name.get(user_outs[0].arg.name)
    if out_node is None:
        raise ExportError("the model's output is not a node of the graph (a constant?)")

    calls: Dict[fx.Node, Call] = {}
    for n in graph.nodes:
        if n.op != "call_function":
            continue
        t = n.target
        if isinstance(t, torch._ops.OpOverload):
            name = t._schema.name.split("::")[-1]
            inplace = name.endswith("_") and not name.endswith("__")
            canon = name[:-1] if inplace else name
            args = _bind_schema(t, n.args, n.kwargs)
        elif t is operator.getitem:
            canon, inplace, args = "getitem", False, {"input": n.args[0], "index": n.args[1]}
        else:
            canon, inplace = "pyfunc", False
            args = {"fn": t, "args": n.args, "kwargs": dict(n.kwargs)}
        calls[n] = Call(
            node=n,
            op=canon,
            args=args,
            inplace=inplace,
            target=_aten_target_str(t),
            scope=scope_of(n, leaf_of),
            source=source_of(n),
            shape=meta_shape(n),
        )

    def run_capture(xx):
        args = [xx.clone() if k == "input" else t for k, t in run_args_spec]
        cap = _Capture(gm)
        with torch.no_grad():
            cap.run(*args)
        return cap.values

    return Traced(
        method="export",
        graph=graph,
        calls=calls,
        leaves=leaves,
        output=out_node,
        run_capture=run_capture,
        batch=batch,
        module_paths=paths,
    )


# ---------------------------------------------------------------------------------------
# torch.fx.symbolic_trace

# function -> (canonical op, positional parameter names, extra fixed args)
_FX_FUNCS: Dict[Any, tuple] = {}


def _reg(fns, canon, names, **extra):
    for f in fns:
        if f is not None:
            _FX_FUNCS[f] = (canon, names, extra)


_g = getattr
_reg([F.relu, torch.relu], "relu", ["input", "inplace"])
_reg([_g(F, "relu_", None), torch.relu_], "relu", ["input"], inplace=True)
_reg([F.relu6], "relu6", ["input", "inplace"])
_reg([F.hardtanh], "hardtanh", ["input", "min_val", "max_val", "inplace"])
_reg([_g(F, "hardtanh_", None)], "hardtanh", ["input", "min_val", "max_val"], inplace=True)
_reg([F.leaky_relu], "leaky_relu", ["input", "negative_slope", "inplace"])
_reg([F.elu], "elu", ["input", "alpha", "inplace"])
_reg([F.prelu, torch.prelu], "prelu", ["input", "weight"])
_reg([F.gelu], "gelu", ["input", "approximate"])
_reg([F.sigmoid, torch.sigmoid], "sigmoid", ["input"])
_reg([torch.sigmoid_], "sigmoid", ["input"], inplace=True)
_reg([F.tanh, torch.tanh], "tanh", ["input"])
_reg([torch.tanh_], "tanh", ["input"], inplace=True)
_reg([F.silu], "silu", ["input", "inplace"])
_reg([F.hardswish], "hardswish", ["input", "inplace"])
_reg([F.hardsigmoid], "hardsigmoid", ["input", "inplace"])
_reg([F.conv2d, torch.conv2d], "conv2d", ["input", "weight", "bias", "stride", "padding", "dilation", "groups"])
_reg([F.linear], "linear", ["input", "weight", "bias"])
_reg([F.batch_norm], "batch_norm", ["input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps"])
_reg([F.layer_norm], "layer_norm", ["input", "normalized_shape", "weight", "bias", "eps"])
_reg([F.max_pool2d], "max_pool2d", ["input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"])
_reg([torch.max_pool2d], "max_pool2d", ["input", "kernel_size", "stride", "padding", "dilation", "ceil_mode"])
_reg([F.avg_pool2d], "avg_pool2d", ["input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"])
_reg([F.adaptive_avg_pool2d], "adaptive_avg_pool2d", ["input", "output_size"])
_reg([F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout], "dropout", ["input", "p", "training", "inplace"])
_reg([torch.flatten], "flatten", ["input", "start_dim", "end_dim"])
_reg([torch.cat, _g(torch, "concat", None), _g(torch, "concatenate", None)], "cat", ["tensors", "dim"])
_reg([torch.add, operator.add], "add", ["input", "other", "alpha"])
_reg([operator.iadd], "add", ["input", "other"], inplace=True)
_reg([torch.sub, operator.sub], "sub", ["input", "other", "alpha"])
_reg([torch.mul, operator.mul], "mul", ["input", "other"])
_reg([operator.imul], "mul", ["input", "other"], inplace=True)
_reg([torch.mean], "mean", ["input", "dim", "keepdim", "dtype"])
_reg([torch.chunk], "chunk", ["input", "chunks", "dim"])
_reg([torch.split], "split", ["input", "split_size", "dim"])
_reg([torch.narrow], "narrow", ["input", "dim", "start", "length"])
_reg([torch.transpose], "transpose", ["input", "dim0", "dim1"])
_reg([torch.permute], "permute", ["input", "dims"])
_reg([torch.reshape], "reshape", ["input", "shape"])
_reg([torch.squeeze], "squeeze", ["input", "dim"])
_reg([torch.unsqueeze], "unsqueeze", ["input", "dim"])
_reg([torch.clone], "clone", ["input"])
_reg([torch.detach], "detach", ["input"])
_reg([_g(torch, "channel_shuffle", None), _g(F, "channel_shuffle", None), _g(torch, "native_channel_shuffle", None)], "channel_shuffle", ["input", "groups"])
_reg([operator.getitem], "getitem", ["input", "index"])
_reg([torch.t], "t", ["input"])
_reg([torch.addmm], "addmm", ["input", "mat1", "mat2"])
_reg([torch.mm, torch.matmul, operator.matmul], "mm", ["input", "mat2"])

try:  # torchvision wraps stochastic_depth as an fx leaf function
    from torchvision.ops import stochastic_depth as _tv_sd

    _reg([_tv_sd], "stochastic_depth", ["input", "p", "mode", "training"])
except Exception:  # pragma: no cover - torchvision is optional
    pass

# tensor method -> (canonical op, parameter names after self, extra)
_FX_METHODS: Dict[str, tuple] = {
    "relu": ("relu", [], {}),
    "relu_": ("relu", [], {"inplace": True}),
    "sigmoid": ("sigmoid", [], {}),
    "sigmoid_": ("sigmoid", [], {"inplace": True}),
    "tanh": ("tanh", [], {}),
    "tanh_": ("tanh", [], {"inplace": True}),
    "view": ("view", ["*size"], {}),
    "reshape": ("reshape", ["*shape"], {}),
    "flatten": ("flatten", ["start_dim", "end_dim"], {}),
    "squeeze": ("squeeze", ["dim"], {}),
    "unsqueeze": ("unsqueeze", ["dim"], {}),
    "mean": ("mean", ["dim", "keepdim", "dtype"], {}),
    "chunk": ("chunk", ["chunks", "dim"], {}),
    "split": ("split", ["split_size", "dim"], {}),
    "narrow": ("narrow", ["dim", "start", "length"], {}),
    "transpose": ("transpose", ["dim0", "dim1"], {}),
    "permute": ("permute", ["*dims"], {}),
    "contiguous": ("contiguous", [], {}),
    "clone": ("clone", [], {}),
    "detach": ("detach", [], {}),
    "add": ("add", ["other", "alpha"], {}),
    "add_": ("add", ["other", "alpha"], {"inplace": True}),
    "sub": ("sub", ["other", "alpha"], {}),
    "mul": ("mul", ["other"], {}),
    "mul_": ("mul", ["other"], {"inplace": True}),
    "size": ("size", ["dim"], {}),
    "dim": ("ndim", [], {}),
    "expand": ("expand", ["*size"], {}),
    "expand_as": ("expand_as", ["other"], {}),
    "t": ("t", [], {}),
    "hardtanh": ("hardtanh", ["min_val", "max_val"], {}),
    "float": ("float", [], {}),
}


def _fx_bind(names, args, kwargs, extra):
    out = dict(extra)
    if names and names[-1].startswith("*"):
        fixed = names[:-1]
        for nm, a in zip(fixed, args):
            out[nm] = a
        rest = list(args[len(fixed):])
        if len(rest) == 1 and isinstance(rest[0], (list, tuple)):
            rest = list(rest[0])
        out[names[-1][1:]] = rest
    else:
        for nm, a in zip(names, args):
            out[nm] = a
    out.update(kwargs)
    return out


def _module_call(m: nn.Module, path: str, n: fx.Node):
    """(canonical op, args) for a leaf torch.nn module call; None when unknown."""
    x = n.args[0] if n.args else n.kwargs.get("input")
    P = lambda attr: ("param", f"{path}.{attr}") if getattr(m, attr, None) is not None else None  # noqa: E731
    if isinstance(m, nn.Conv2d):
        if m.padding_mode != "zeros":
            return "conv2d", {"input": x, "padding_mode": m.padding_mode}
        return "conv2d", {"input": x, "weight": P("weight"), "bias": P("bias"), "stride": list(m.stride),
                          "padding": m.padding if isinstance(m.padding, str) else list(m.padding),
                          "dilation": list(m.dilation), "groups": m.groups}
    if isinstance(m, nn.Linear):
        return "linear", {"input": x, "weight": P("weight"), "bias": P("bias")}
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        training = m.training or m.running_mean is None
        return "batch_norm", {"input": x, "weight": P("weight"), "bias": P("bias"),
                              "running_mean": P("running_mean"), "running_var": P("running_var"),
                              "training": training, "eps": m.eps}
    if isinstance(m, nn.LayerNorm):
        return "layer_norm", {"input": x, "normalized_shape": list(m.normalized_shape),
                              "weight": P("weight"), "bias": P("bias"), "eps": m.eps}
    simple = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid", nn.Tanh: "tanh", nn.SiLU: "silu",
              nn.Hardswish: "hardswish", nn.Hardsigmoid: "hardsigmoid"}
    for cls, op in simple.items():
        if type(m) is cls:
            return op, {"input": x, "inplace": getattr(m, "inplace", False)}
    if isinstance(m, nn.Hardtanh):  # ReLU6 is a Hardtanh
        return "hardtanh", {"input": x, "min_val": m.min_val, "max_val": m.max_val, "inplace": m.inplace}
    if isinstance(m, nn.LeakyReLU):
        return "leaky_relu", {"input": x, "negative_slope": m.negative_slope, "inplace": m.inplace}
    if type(m) is nn.ELU:
        return "elu", {"input": x, "alpha": m.alpha, "inplace": m.inplace}
    if isinstance(m, nn.PReLU):
        return "prelu", {"input": x, "weight": P("weight")}
    if isinstance(m, nn.GELU):
        return "gelu", {"input": x, "approximate": m.approximate}
    if isinstance(m, nn.MaxPool2d):
        return "max_pool2d", {"input": x, "kernel_size": m.kernel_size, "stride": m.stride, "padding": m.padding,
                              "dilation": m.dilation, "ceil_mode": m.ceil_mode, "return_indices": m.return_indices}
    if isinstance(m, nn.AvgPool2d):
        return "avg_pool2d", {"input": x, "kernel_size": m.kernel_size, "stride": m.stride, "padding": m.padding,
                              "ceil_mode": m.ceil_mode, "count_include_pad": m.count_include_pad,
                              "divisor_override": m.divisor_override}
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return "adaptive_avg_pool2d", {"input": x, "output_size": m.output_size}
    if isinstance(m, nn.Flatten):
        return "flatten", {"input": x, "start_dim": m.start_dim, "end_dim": m.end_dim}
    if isinstance(m, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)):
        return "dropout", {"input": x, "p": m.p, "training": m.training}
    if type(m).__name__ == "StochasticDepth":
        return "dropout", {"input": x, "p": getattr(m, "p", 0.0), "training": m.training}
    if isinstance(m, nn.Identity):
        return "identity", {"input": x}
    if isinstance(m, nn.ChannelShuffle):
        return "channel_shuffle", {"input": x, "groups": m.groups}
    return None


def trace_fx(module: nn.Module, x: torch.Tensor) -> Traced:
    from torch.fx.passes.shape_prop import ShapeProp

    if isinstance(module, torch.export.ExportedProgram):
        module = module.module()
    tracer = fx.Tracer()
    tracer.record_stack_traces = True
    graph = tracer.trace(module)
    gm = fx.GraphModule(tracer.root, graph)
    with torch.no_grad():
        ShapeProp(gm).propagate(x.clone())
    leaf_of, paths = _leaf_checker(module, graph)
    sd = module.state_dict(keep_vars=True)
    mods = dict(gm.named_modules())
    leaves: Dict[fx.Node, tuple] = {}
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    if len(placeholders) != 1:
        raise ExportError(f"the model must take exactly one tensor input, found {len(placeholders)}")
    leaves[placeholders[0]] = ("input",)
    calls: Dict[fx.Node, Call] = {}
    out_node = None
    for n in graph.nodes:
        if n.op == "get_attr":
            v = _fetch_attr(gm, n.target)
            if n.target in sd:
                leaves[n] = ("param", n.target, v)
            else:
                leaves[n] = ("const", v, n.target)
            continue
        if n.op == "output":
            o = n.args[0]
            if not isinstance(o, fx.Node):
                raise ExportError(
                    "the model returns a tuple/list/dict in eval mode; nshap needs one [N, classes] "
                    "logits tensor (wrap the model to return only the logits)"
                )
            out_node = o
            continue
        if n.op not in ("call_module", "call_function", "call_method"):
            continue
        inplace = False
        if n.op == "call_module":
            m = mods[n.target]
            r = _module_call(m, n.target, n)
            target = f"call_module {type(m).__module__}.{type(m).__qualname__} ({n.target})"
            if r is None:
                canon, args = "module:" + type(m).__qualname__, {}
            else:
                canon, args = r
                args = {k: (_ParamRef(v[1]) if isinstance(v, tuple) and len(v) == 2 and v[0] == "param" else v)
                        for k, v in args.items()}
                inplace = bool(args.pop("inplace", False))
        elif n.op == "call_function":
            target = _aten_target_str(n.target)
            spec = _FX_FUNCS.get(n.target)
            if spec is None:
                canon, args = "pyfunc", {"fn": n.target, "args": n.args, "kwargs": dict(n.kwargs)}
                if getattr(n.target, "__name__", "") == "getattr" or n.target is getattr:
                    canon, args = "getattr", {"input": n.args[0], "name": n.args[1]}
            else:
                canon, names, extra = spec
                args = _fx_bind(names, n.args, n.kwargs, extra)
                inplace = bool(args.pop("inplace", False))
        else:
            target = f"Tensor.{n.target}"
            spec = _FX_METHODS.get(n.target)
            if spec is None:
                canon, args = "method:" + n.target, {}
            else:
                canon, names, extra = spec
                args = _fx_bind(["input"] + names, n.args, n.kwargs, extra)
                inplace = bool(args.pop("inplace", False))
        calls[n] = Call(node=n, op=canon, args=args, inplace=inplace, target=target,
                        scope=scope_of(n, leaf_of), source=source_of(n), shape=meta_shape(n))
    # parameter references of call_module nodes become pseudo leaves
    for c in calls.values():
        for k, v in list(c.args.items()):
            if isinstance(v, _ParamRef):
                t = sd.get(v.name)
                c.args[k] = _ParamLeaf(v.name, t.detach() if t is not None else None)

    def run_capture(xx):
        cap = _Capture(gm)
        with torch.no_grad():
            cap.run(xx.clone())
        return cap.values

    return Traced(method="fx", graph=graph, calls=calls, leaves=leaves, output=out_node,
                  run_capture=run_capture, batch=int(x.shape[0]), module_paths=paths)


class _ParamRef:
    def __init__(self, name):
        self.name = name


class _ParamLeaf:
    """A state_dict tensor named directly by a call (fx call_module arguments)."""

    def __init__(self, name, tensor):
        self.name = name
        self.tensor = tensor


def _fetch_attr(gm, target):
    obj = gm
    for a in target.split("."):
        obj = getattr(obj, a)
    return obj
