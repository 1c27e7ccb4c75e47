"""Converts a traced graph (``trace.Traced``) into an ``nshap.model.v1`` spec.

Every fx node's value becomes one of a few kinds of ``Val``: an activation ``T`` backed by
a spec node, a state_dict tensor ``Param``, a Python constant ``Const``, or a pending pattern
(the 5-D view of ShuffleNet's channel shuffle, the list of a ``chunk``/``split``). Permutes
between NCHW and NHWC only flip ``T.layout``; the spec is always NCHW.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.fx as fx

from .errors import ExportError, Problem, UnsupportedOps
from .trace import Call, Scope, Traced, _ParamLeaf


class Unsupported(Exception):
    pass


# ---------------------------------------------------------------------------------------
# values


@dataclass(eq=False)
class T:
    """An activation. ``shape`` is PyTorch's per-example shape; ``layout``:
    "std"  - storage is ``shape`` ([C, H, W] or [F]),
    "nhwc" - shape is [H, W, C], storage [C, H, W],
    "bcast" - shape is [F, 1, ...], storage [F] (a feature vector viewed for broadcasting).
    """

    node: Any  # spec node id (int) or "input"
    shape: tuple
    layout: str = "std"

    @property
    def storage(self) -> tuple:
        if self.layout == "nhwc":
            h, w, c = self.shape
            return (c, h, w)
        if self.layout == "bcast":
            return (self.shape[0],)
        return self.shape


@dataclass(eq=False)
class Param:
    name: Optional[str]  # state_dict name, None for a constant that is not in the state_dict
    tensor: Optional[torch.Tensor]
    transposed: bool = False
    what: str = ""


@dataclass(eq=False)
class Const:
    value: Any


@dataclass(eq=False)
class Grouped:
    """x.view(B, g, C/g, H, W) of a std [C, H, W] activation (optionally transpose(1, 2)'d)."""

    src: T
    groups: int
    transposed: bool = False


@dataclass(eq=False)
class Pieces:
    """The result of chunk/split: channel ranges of one activation, emitted as slices on use."""

    src: T
    ranges: List[Tuple[int, int]]
    call: Call
    emitted: Dict[int, Any] = field(default_factory=dict)


@dataclass(eq=False)
class Tup:
    items: list


@dataclass(eq=False)
class Unused:
    """A tuple item nshap cannot represent (BN's saved mean, max-pool indices...)."""

    what: str


@dataclass(eq=False)
class Expand:
    src: T
    shape: tuple


class _Poison:
    pass


POISON = _Poison()


@dataclass(eq=False)
class SpecNode:
    id: int
    op: str
    fields: dict
    inputs: list  # of ids / "input"
    scope: Scope
    opbase: str
    ref: Optional[tuple]  # (fx node, layout) whose captured value equals this node's output
    out_shape: tuple  # storage shape (for checks and FLOPs)
    name: str = ""


# ---------------------------------------------------------------------------------------
# converter


_UNARY = {"relu", "sigmoid", "tanh", "silu", "hardswish", "hardsigmoid"}
_ALIAS = {"clone", "contiguous", "detach", "alias", "lift_fresh_copy", "identity", "lift", "float"}
_DROPOUT = {"dropout", "feature_dropout", "alpha_dropout", "feature_alpha_dropout"}
_RESHAPE = {"view", "reshape", "_unsafe_view", "flatten", "squeeze", "unsqueeze", "view_copy",
            "_reshape_alias", "unflatten"}


def _pair(v, what="") -> Tuple[int, int]:
    if isinstance(v, (list, tuple)):
        if len(v) == 1:
            return int(v[0]), int(v[0])
        if len(v) == 2:
            return int(v[0]), int(v[1])
        raise Unsupported(f"{what} {list(v)} is not 2-D")
    return int(v), int(v)


def _pv(p: Tuple[int, int]):
    return p[0] if p[0] == p[1] else [p[0], p[1]]


class Converter:
    def __init__(self, traced: Traced, state_dict_names: Optional[set] = None):
        self.tr = traced
        self.B = traced.batch
        self.sd_names = state_dict_names
        self.env: Dict[fx.Node, Any] = {}
        self.nodes: List[SpecNode] = []
        self.problems: List[Problem] = []
        self.flat_memo: Dict[Any, int] = {}
        self.cur: Optional[Call] = None

    # -- plumbing -------------------------------------------------------------------------

    def emit(self, op, fields, inputs, out_shape, call=None, opbase=None, ref=True, layout="std") -> int:
        call = call or self.cur
        nid = len(self.nodes)
        self.nodes.append(
            SpecNode(id=nid, op=op, fields={k: v for k, v in fields.items() if v is not None},
                     inputs=list(inputs), scope=call.scope, opbase=opbase or call.op,
                     ref=(call.node, layout) if ref else None, out_shape=tuple(out_shape))
        )
        return nid

    def val(self, raw):
        if isinstance(raw, fx.Node):
            if raw not in self.env:
                raise Unsupported(f"reads {raw.name}, which was not converted")
            return self.env[raw]
        if isinstance(raw, _ParamLeaf):
            return Param(raw.name, raw.tensor, what=raw.name)
        if isinstance(raw, (list, tuple)):
            return type(raw)(self.val(r) for r in raw)
        return raw

    def lit(self, raw):
        """A Python literal argument (ints, lists of ints), with Const values resolved."""
        v = self.val(raw)
        return _unconst(v)

    def tensor(self, raw, what="input") -> T:
        v = self.val(raw)
        if isinstance(v, T):
            return v
        if isinstance(v, Param):
            raise Unsupported(f"{what} is a parameter/constant tensor ({v.what}), not an activation")
        if isinstance(v, (Grouped, Pieces, Tup, Expand)):
            raise Unsupported(f"{what} is an intermediate ({type(v).__name__}) nshap cannot represent here")
        raise Unsupported(f"{what} is not a tensor ({type(v).__name__})")

    def param(self, raw, what) -> Optional[Param]:
        v = self.val(raw)
        if v is None:
            return None
        if not isinstance(v, Param):
            raise Unsupported(f"{what} must be a parameter or buffer of the module (found a computed value)")
        if v.name is None:
            raise Unsupported(f"{what} ({v.what}) is a constant tensor that is not in the state_dict")
        if self.sd_names is not None and v.name not in self.sd_names:
            raise Unsupported(f"{what} ({v.name}) is not in the module's state_dict")
        return v

    def out_shape(self) -> tuple:
        s = self.cur.shape
        if s is None:
            raise Unsupported("output shape unknown")
        if len(s) == 0 or s[0] != self.B:
            raise Unsupported(f"output shape {list(s)} does not keep the batch dimension ({self.B})")
        return tuple(s[1:])

    def flatten_of(self, t: T) -> T:
        """t as a flat [F] vector (emitting a flatten node when t is [C, H, W])."""
        if t.layout == "nhwc":
            raise Unsupported("flattening a channels-last tensor")
        s = t.storage
        if len(s) == 1:
            return T(t.node, s, "std")
        if t.node in self.flat_memo:
            nid = self.flat_memo[t.node]
        else:
            nid = self.emit("flatten", {}, [t.node], (math.prod(s),), opbase="flatten")
            self.flat_memo[t.node] = nid
        return T(nid, (math.prod(s),), "std")

    # -- driver ---------------------------------------------------------------------------

    def run(self):
        g = self.tr.graph
        live = _live_nodes(g, self.tr.output)
        for n in g.nodes:
            if n in self.tr.leaves:
                lf = self.tr.leaves[n]
                if lf[0] == "input":
                    s = _shape_of(n)
                    self.env[n] = T("input", tuple(s[1:]))
                elif lf[0] == "param":
                    self.env[n] = Param(lf[1], lf[2], what=lf[1])
                else:
                    self.env[n] = Param(None, lf[1], what=str(lf[2]) if len(lf) > 2 else "constant")
                continue
            c = self.tr.calls.get(n)
            if c is None or n not in live:
                continue
            self.cur = c
            raw_inputs = list(_node_inputs(c.args))
            if any(self.env.get(r) is POISON for r in raw_inputs):
                self.env[n] = POISON
                continue
            try:
                v = self.dispatch(c)
            except Unsupported as e:
                self.problems.append(Problem(c.target, c.scope.path, c.source, str(e)))
                v = self.placeholder(c)
            except Exception as e:  # a bug of ours: still report every node
                self.problems.append(Problem(c.target, c.scope.path, c.source,
                                             f"exporter error {type(e).__name__}: {e}"))
                v = self.placeholder(c)
            self.env[n] = v
            if c.inplace and v is not POISON:
                first = c.args.get("input")
                if isinstance(first, fx.Node):
                    self.env[first] = v
        out = self.env.get(self.tr.output, POISON)
        if self.problems:
            raise UnsupportedOps(self.problems, self.tr.method)
        if not isinstance(out, T):
            raise ExportError(f"the model's output is not an activation nshap can represent ({type(out).__name__})")
        if out.layout != "std" or len(out.shape) != 1:
            s = _shape_of(self.tr.output)
            raise ExportError(
                f"the model's output has shape {list(s)}; nshap needs [N, classes] logits"
            )
        out_id = out.node
        if out_id == "input":
            c = Call(self.tr.output, "identity", {}, False, "output", Scope("", "", "", False), None, None)
            out_id = self.emit("identity", {}, ["input"], out.shape, call=c, opbase="identity", ref=False)
        return out_id

    def placeholder(self, c: Call):
        """Stands in for an unsupported node's output so later nodes are still checked."""
        try:
            return self._placeholder(c)
        except Exception:
            return POISON

    def _placeholder(self, c: Call):
        v = c.node.meta.get("val", c.node.meta.get("tensor_meta"))
        like = None
        for r in _node_inputs(c.args):
            if isinstance(self.env.get(r), T):
                like = self.env[r]
                break

        def one(meta):
            shp = getattr(meta, "shape", None)
            if shp is None:
                return POISON
            try:
                shp = tuple(int(d) for d in shp)
            except Exception:
                return POISON
            if not shp or shp[0] != self.B:
                return POISON
            per = shp[1:]
            lay = like.layout if like is not None and like.shape == per and like.layout != "bcast" else "std"
            t = T(None, per, lay)
            t.node = self.emit("?", {}, [], t.storage, ref=False)
            return t

        if not hasattr(v, "shape") and isinstance(v, (tuple, list)):
            return Tup([one(m) for m in v])
        return one(v)

    def dispatch(self, c: Call):
        op = c.op
        h = getattr(self, "op_" + op, None)
        if op in _UNARY:
            return self.unary(c, op, {})
        if op in _ALIAS:
            return self.val(c.a("input"))
        if op in _DROPOUT or op == "native_dropout":
            train = c.a("train", c.a("training", op != "native_dropout" and c.target.startswith("torch.nn.functional")))
            p = c.a("p", 0.0)
            if train and p:
                raise Unsupported("dropout with training=True in eval mode (pass training=self.training)")
            v = self.val(c.a("input"))
            return Tup([v, Unused("dropout mask")]) if op == "native_dropout" else v
        if op in _RESHAPE:
            return self.reshape(c)
        if h is not None:
            return h(c)
        if op.startswith("module:"):
            raise Unsupported(f"no nshap op for module {op[7:]}")
        if op.startswith("method:"):
            raise Unsupported(f"no nshap op for Tensor.{op[7:]}")
        raise Unsupported("nshap has no equivalent op")

    # -- elementwise ----------------------------------------------------------------------

    def unary(self, c, op, fields):
        x = self.tensor(c.a("input"))
        nid = self.emit(op, fields, [x.node], x.storage, layout=x.layout)
        return T(nid, x.shape, x.layout)

    def op_stochastic_depth(self, c):
        if self.lit(c.a("training", True)) and self.lit(c.a("p", 0.0)):
            raise Unsupported("stochastic depth with training=True in eval mode")
        return self.val(c.a("input"))

    def op_relu6(self, c):
        return self.unary(c, "hardtanh", {"min_val": 0.0, "max_val": 6.0})

    def op_hardtanh(self, c):
        return self.unary(c, "hardtanh", {"min_val": float(self.lit(c.a("min_val", -1.0))),
                                          "max_val": float(self.lit(c.a("max_val", 1.0)))})

    def op_leaky_relu(self, c):
        return self.unary(c, "leaky_relu", {"negative_slope": float(self.lit(c.a("negative_slope", 0.01)))})

    def op_elu(self, c):
        if float(c.a("scale", 1.0)) != 1.0 or float(c.a("input_scale", 1.0)) != 1.0:
            raise Unsupported("elu with scale/input_scale (selu/celu) has no nshap op")
        return self.unary(c, "elu", {"alpha": float(self.lit(c.a("alpha", 1.0)))})

    def op_gelu(self, c):
        approx = c.a("approximate", "none")
        if approx != "none":
            raise Unsupported(f"gelu(approximate={approx!r}) is not supported: nshap's gelu is the exact (erf) one")
        return self.unary(c, "gelu", {})

    def op_prelu(self, c):
        x = self.tensor(c.a("input"))
        w = self.param(c.a("weight"), "prelu weight")
        n = w.tensor.numel()
        if w.tensor.dim() != 1:
            raise Unsupported(f"prelu weight of shape {list(w.tensor.shape)}: nshap needs [C] or [1]")
        if n != 1:
            if x.layout != "std" or len(x.shape) not in (1, 3) or x.shape[0] != n:
                raise Unsupported(f"prelu with {n} slopes on a {x.layout} tensor of shape {list(x.shape)}")
        nid = self.emit("prelu", {"weight": w.name}, [x.node], x.storage, layout=x.layout)
        return T(nid, x.shape, x.layout)

    op__prelu_kernel = op_prelu

    # -- conv / linear / norms ------------------------------------------------------------

    def op_conv2d(self, c):
        if c.a("padding_mode", "zeros") != "zeros":
            raise Unsupported(f"conv2d padding_mode={c.a('padding_mode')!r}: only zero padding")
        x = self.tensor(c.a("input"))
        if x.layout != "std" or len(x.shape) != 3:
            raise Unsupported(f"conv2d on a {x.layout} tensor of shape {list(x.shape)}")
        w = self.param(c.a("weight"), "conv weight")
        b = self.param(c.a("bias"), "conv bias")
        if w.tensor.dim() != 4:
            raise Unsupported(f"conv weight of shape {list(w.tensor.shape)} is not 4-D")
        stride = _pair(self.lit(c.a("stride", 1)), "stride")
        dil = _pair(self.lit(c.a("dilation", 1)), "dilation")
        pad = self.lit(c.a("padding", 0))
        kh, kw = w.tensor.shape[2], w.tensor.shape[3]
        if isinstance(pad, str):
            if pad == "valid":
                pad = (0, 0)
            elif pad == "same":
                th, tw = dil[0] * (kh - 1), dil[1] * (kw - 1)
                if th % 2 or tw % 2:
                    raise Unsupported("padding='same' with an even kernel pads asymmetrically; nshap pads symmetrically")
                pad = (th // 2, tw // 2)
            else:
                raise Unsupported(f"padding={pad!r}")
        else:
            pad = _pair(pad, "padding")
        groups = int(self.lit(c.a("groups", 1)))
        out = self.out_shape()
        f = {"weight": w.name, "bias": b.name if b else None, "stride": _pv(stride), "padding": _pv(pad)}
        if dil != (1, 1):
            f["dilation"] = _pv(dil)
        if groups != 1:
            f["groups"] = groups
        nid = self.emit("conv2d", f, [x.node], out)
        return T(nid, out)

    def op_convolution(self, c):
        if self.lit(c.a("transposed", False)):
            raise Unsupported("transposed convolution has no nshap op")
        op_ = self.lit(c.a("output_padding", [0, 0]))
        if any(int(v) for v in (op_ or [])):
            raise Unsupported("convolution with output_padding")
        if len(self.lit(c.a("stride", [1, 1]))) != 2:
            raise Unsupported("only 2-D convolution")
        return self.op_conv2d(c)

    def op_linear(self, c):
        x = self.tensor(c.a("input"))
        w = self.param(c.a("weight"), "linear weight")
        b = self.param(c.a("bias"), "linear bias")
        if w.tensor.dim() != 2:
            raise Unsupported(f"linear weight of shape {list(w.tensor.shape)}")
        out = self.out_shape()
        if x.layout == "std" and len(x.shape) == 1:
            nid = self.emit("linear", {"weight": w.name, "bias": b.name if b else None}, [x.node], out)
            return T(nid, out)
        if x.layout == "nhwc":
            h, wd, _c = out
            nid = self.emit("conv2d", {"weight": w.name, "bias": b.name if b else None}, [x.node],
                            (out[2], h, wd), layout="nhwc")
            return T(nid, out, "nhwc")
        raise Unsupported(
            f"linear on a {x.layout} tensor of shape {list(x.shape)}: nshap applies linear to [F] vectors, "
            "or channels-last inside a permute(0,2,3,1)...permute(0,3,1,2) pair"
        )

    def op_addmm(self, c):
        if float(c.a("beta", 1)) != 1 or float(c.a("alpha", 1)) != 1:
            raise Unsupported("addmm with alpha/beta")
        b = self.param(c.a("input"), "addmm bias")
        if b.tensor.dim() != 1:
            raise Unsupported("addmm bias is not a vector")
        x = self.tensor(c.a("mat1"))
        w = self.val(c.a("mat2"))
        if not isinstance(w, Param) or not w.transposed or w.name is None:
            raise Unsupported("addmm with something other than a transposed weight of the state_dict")
        if x.layout != "std" or len(x.shape) != 1:
            raise Unsupported(f"addmm on a tensor of shape {list(x.shape)}")
        out = self.out_shape()
        nid = self.emit("linear", {"weight": w.name, "bias": b.name}, [x.node], out, opbase="linear")
        return T(nid, out)

    def op_mm(self, c):
        x = self.tensor(c.a("input"))
        w = self.val(c.a("mat2", c.a("other")))
        if not isinstance(w, Param) or not w.transposed or w.name is None:
            raise Unsupported("matrix product with something other than a transposed weight of the state_dict")
        if x.layout != "std" or len(x.shape) != 1:
            raise Unsupported(f"matrix product on a tensor of shape {list(x.shape)}")
        out = self.out_shape()
        nid = self.emit("linear", {"weight": w.name}, [x.node], out, opbase="linear")
        return T(nid, out)

    op_matmul = op_mm

    def op_batch_norm(self, c):
        x = self.tensor(c.a("input"))
        if self.lit(c.a("training", False)):
            raise Unsupported("batch norm using batch statistics (training mode, or track_running_stats=False)")
        names = {}
        for k in ("weight", "bias", "running_mean", "running_var"):
            p = self.param(c.a(k), f"batch norm {k}")
            if p is None:
                raise Unsupported(f"batch norm without {k} (affine=False?): nshap needs all four tensors")
            names[k] = p.name
        if x.layout != "std" or len(x.shape) not in (1, 3):
            raise Unsupported(f"batch norm on a {x.layout} tensor of shape {list(x.shape)}")
        op = "batchnorm2d" if len(x.shape) == 3 else "batchnorm1d"
        pre = names["weight"][: -len(".weight")] if names["weight"].endswith(".weight") else None
        if pre is not None and all(names[k] == f"{pre}.{k}" for k in names):
            f = {"prefix": pre}
        else:
            f = dict(names)
        f["eps"] = float(self.lit(c.a("eps", 1e-5)))
        nid = self.emit(op, f, [x.node], x.storage, opbase="batch_norm")
        return T(nid, x.shape)

    def op__native_batch_norm_legit_no_training(self, c):
        t = self.op_batch_norm(c)
        return Tup([t, Unused("batch norm saved mean"), Unused("batch norm saved invstd")])

    def op_layer_norm(self, c):
        x = self.tensor(c.a("input"))
        ns = list(self.lit(c.a("normalized_shape")))
        if len(ns) != 1 or ns[0] != x.shape[-1]:
            raise Unsupported(f"layer norm over {ns} of a tensor of shape {list(x.shape)}: nshap normalises over "
                              "channels only")
        ok = (x.layout == "nhwc") or (x.layout == "std" and len(x.shape) == 1)
        if not ok:
            raise Unsupported(
                f"layer norm over the last dim of a {x.layout} tensor of shape {list(x.shape)}: nshap's layernorm "
                "normalises over channels (channels-last inside permute(0,2,3,1)...permute(0,3,1,2), or [F])"
            )
        w = self.param(c.a("weight"), "layer norm weight")
        b = self.param(c.a("bias"), "layer norm bias")
        if w is None or b is None:
            raise Unsupported("layer norm without weight/bias (elementwise_affine=False or bias=False)")
        if w.name.endswith(".weight") and b.name == w.name[:-7] + ".bias":
            f = {"prefix": w.name[:-7]}
        else:
            f = {"weight": w.name, "bias": b.name}
        f["eps"] = float(self.lit(c.a("eps", 1e-5)))
        nid = self.emit("layernorm", f, [x.node], x.storage, layout=x.layout, opbase="layer_norm")
        return T(nid, x.shape, x.layout)

    def op_native_layer_norm(self, c):
        t = self.op_layer_norm(c)
        return Tup([t, Unused("layer norm mean"), Unused("layer norm rstd")])

    # -- pooling --------------------------------------------------------------------------

    def _std3(self, raw, what):
        x = self.tensor(raw)
        if x.layout != "std" or len(x.shape) != 3:
            raise Unsupported(f"{what} on a {x.layout} tensor of shape {list(x.shape)}")
        return x

    def op_max_pool2d(self, c):
        if self.lit(c.a("return_indices", False)):
            raise Unsupported("max pool returning indices")
        x = self._std3(c.a("input"), "max pool")
        k = _pair(self.lit(c.a("kernel_size")), "kernel")
        s = self.lit(c.a("stride", None))
        s = k if s is None or s == [] or s == () else _pair(s, "stride")
        p = _pair(self.lit(c.a("padding", 0)), "padding")
        d = _pair(self.lit(c.a("dilation", 1)), "dilation")
        out = self.out_shape()
        f = {"kernel": _pv(k), "stride": _pv(s), "padding": _pv(p)}
        if d != (1, 1):
            f["dilation"] = _pv(d)
        if self.lit(c.a("ceil_mode", False)):
            f["ceil_mode"] = True
        nid = self.emit("maxpool2d", f, [x.node], out, opbase="max_pool2d")
        return T(nid, out)

    def op_max_pool2d_with_indices(self, c):
        t = self.op_max_pool2d(c)
        return Tup([t, Unused("max pool indices")])

    def op_avg_pool2d(self, c):
        if self.lit(c.a("divisor_override", None)) is not None:
            raise Unsupported("avg pool with divisor_override")
        x = self._std3(c.a("input"), "avg pool")
        k = _pair(self.lit(c.a("kernel_size")), "kernel")
        s = self.lit(c.a("stride", None))
        s = k if s is None or s == [] or s == () else _pair(s, "stride")
        p = _pair(self.lit(c.a("padding", 0)), "padding")
        out = self.out_shape()
        f = {"kernel": _pv(k), "stride": _pv(s), "padding": _pv(p)}
        if self.lit(c.a("ceil_mode", False)):
            f["ceil_mode"] = True
        if not self.lit(c.a("count_include_pad", True)):
            f["count_include_pad"] = False
        nid = self.emit("avgpool2d", f, [x.node], out, opbase="avg_pool2d")
        return T(nid, out)

    def op_adaptive_avg_pool2d(self, c):
        x = self._std3(c.a("input"), "adaptive avg pool")
        os_ = self.lit(c.a("output_size"))
        if not isinstance(os_, (list, tuple)):
            os_ = [os_, os_]
        if len(os_) == 1:
            os_ = [os_[0], os_[0]]
        oh = x.shape[1] if os_[0] is None else int(os_[0])
        ow = x.shape[2] if os_[1] is None else int(os_[1])
        out = (x.shape[0], oh, ow)
        if (oh, ow) == (1, 1):
            nid = self.emit("global_avgpool", {}, [x.node], out, opbase="adaptive_avg_pool2d")
        else:
            nid = self.emit("adaptive_avgpool2d", {"output_size": _pv((oh, ow))}, [x.node], out,
                            opbase="adaptive_avg_pool2d")
        return T(nid, out)

    op__adaptive_avg_pool2d = op_adaptive_avg_pool2d

    def op_mean(self, c):
        x = self.tensor(c.a("input"))
        dims = self.lit(c.a("dim", None))
        if dims is None:
            raise Unsupported("mean over all dimensions")
        if isinstance(dims, int):
            dims = [dims]
        nd = len(x.shape) + 1
        dims = sorted(d % nd for d in dims)
        keep = bool(self.lit(c.a("keepdim", False)))
        if c.a("dtype", None) is not None:
            raise Unsupported("mean with a dtype")
        if x.layout == "std" and len(x.shape) == 3 and dims == [2, 3]:
            pass
        elif x.layout == "nhwc" and dims == [1, 2]:
            pass
        else:
            raise Unsupported(f"mean over dims {dims} of a {x.layout} tensor of shape {list(x.shape)} "
                              "(only the spatial mean is supported)")
        C = x.storage[0]
        nid = self.emit("global_avgpool", {}, [x.node], (C, 1, 1), ref=keep, layout=x.layout)
        if keep:
            return T(nid, (C, 1, 1) if x.layout == "std" else (1, 1, C), x.layout)
        fid = self.emit("flatten", {}, [nid], (C,), opbase="flatten")
        self.flat_memo[nid] = fid
        return T(fid, (C,))

    # -- add / mul ------------------------------------------------------------------------

    def op_add(self, c):
        a = self.val(c.a("input"))
        b = self.val(c.a("other"))
        alpha = self.lit(c.a("alpha", 1))
        if alpha != 1:
            raise Unsupported(f"add with alpha={alpha}")
        if not isinstance(a, T) or not isinstance(b, T):
            kinds = [_kind(v) for v in (a, b)]
            raise Unsupported(f"add of {kinds[0]} and {kinds[1]}: nshap adds two activations of the same shape")
        if a.layout != b.layout or a.shape != b.shape:
            raise Unsupported(f"add of shapes {list(a.shape)} ({a.layout}) and {list(b.shape)} ({b.layout}): "
                              "broadcasting adds are not supported")
        nid = self.emit("add", {}, [a.node, b.node], a.storage, layout=a.layout)
        return T(nid, a.shape, a.layout)

    def op_mul(self, c):
        a = self.val(c.a("input"))
        b = self.val(c.a("other"))
        if isinstance(a, Expand):
            a = a.src
        if isinstance(b, Expand):
            b = b.src
        if isinstance(a, T) and isinstance(b, T):
            out = self.out_shape()
            if a.layout == b.layout and a.shape == b.shape:
                nid = self.emit("mul", {}, [a.node, b.node], a.storage, layout=a.layout)
                return T(nid, a.shape, a.layout)
            big, small = (a, b) if math.prod(a.storage) >= math.prod(b.storage) else (b, a)
            if tuple(out) != tuple(big.shape):
                raise Unsupported(f"mul broadcasting {list(a.shape)} and {list(b.shape)} to {list(out)}")
            bs, ss = big.storage, small.storage
            ok = len(bs) == 3 and (ss == (bs[0], 1, 1) or ss == (bs[0],)) and (
                (big.layout == "std" and small.layout in ("std", "bcast") and small.shape == (bs[0], 1, 1))
                or (big.layout == "nhwc" and small.layout == "nhwc" and small.shape == (1, 1, bs[0]))
            )
            if not ok:
                raise Unsupported(f"mul of shapes {list(a.shape)} and {list(b.shape)}: nshap multiplies same shapes "
                                  "or broadcasts a per-channel [C,1,1] over [C,H,W]")
            nid = self.emit("mul", {}, [a.node, b.node], bs, layout=big.layout)
            return T(nid, big.shape, big.layout)
        if isinstance(a, T) or isinstance(b, T):
            x, p = (a, b) if isinstance(a, T) else (b, a)
            if isinstance(p, Param):
                return self._mul_param(x, p)
            if isinstance(p, (int, float, Const)):
                raise Unsupported(f"mul by a Python scalar ({_unconst(p)}): nshap's mul needs a weight tensor")
            raise Unsupported(f"mul of an activation and {_kind(p)}")
        raise Unsupported(f"mul of {_kind(a)} and {_kind(b)}")

    def _mul_param(self, x: T, p: Param):
        if p.name is None:
            raise Unsupported(f"mul by a constant tensor ({p.what}) that is not in the state_dict")
        if self.sd_names is not None and p.name not in self.sd_names:
            raise Unsupported(f"mul by {p.name}, which is not in the module's state_dict")
        ps = tuple(p.tensor.shape)
        C = x.storage[0]
        good = False
        if ps == (1,):
            good = True
        elif x.layout == "std" and len(x.shape) == 3:
            good = ps == (C, 1, 1)
        elif x.layout == "nhwc":
            good = ps == (C,)
        elif x.layout == "std" and len(x.shape) == 1:
            good = ps == (C,)
        if not good:
            raise Unsupported(
                f"mul of a {x.layout} activation of shape {list(x.shape)} by {p.name} of shape {list(ps)}: nshap's "
                "mul weight must be [C,1,1] (NCHW), [C] (channels-last or [F]) or [1]"
            )
        nid = self.emit("mul", {"weight": p.name}, [x.node], x.storage, layout=x.layout)
        return T(nid, x.shape, x.layout)

    def op_expand(self, c):
        x = self.tensor(c.a("input"))
        return Expand(x, self.out_shape())

    def op_expand_as(self, c):
        return self.op_expand(c)

    # -- concat / slices / shuffle --------------------------------------------------------

    def op_cat(self, c):
        ts = self.val(c.a("tensors"))
        if not all(isinstance(t, T) for t in ts):
            raise Unsupported("cat of something that is not an activation")
        ts = list(ts)
        d = int(self.lit(c.a("dim", 0)))
        lay = {t.layout for t in ts}
        nds = {len(t.shape) for t in ts}
        if len(lay) != 1 or len(nds) != 1:
            raise Unsupported("cat of tensors with different layouts/ranks")
        lay, nd = lay.pop(), nds.pop() + 1
        d = d % nd
        ch = 3 if lay == "nhwc" else 1
        if lay == "bcast" or d != ch:
            raise Unsupported(f"cat along dim {d} of {nd}-D tensors: nshap concatenates channels (dim 1)")
        if len(ts) == 1:
            return ts[0]
        out = self.out_shape()
        st = T(None, out, lay).storage
        nid = self.emit("concat", {}, [t.node for t in ts], st, layout=lay)
        return T(nid, out, lay)

    op_concat = op_cat
    op_concatenate = op_cat

    def _chan_dim(self, x: T, d: int) -> int:
        nd = len(x.shape) + 1
        d = d % nd
        ch = 3 if x.layout == "nhwc" else 1
        if x.layout == "bcast" or d != ch:
            raise Unsupported(f"slicing dim {d} of a {x.layout} tensor of shape {list(x.shape)}: only the channel "
                              "dim can be sliced")
        return d

    def _slice(self, x: T, start, end, call=None, opbase=None, ref=True):
        C = x.storage[0]
        if (start, end) == (0, C):
            return x
        nid = self.emit("slice", {"start": int(start), "end": int(end)}, [x.node],
                        (end - start,) + tuple(x.storage[1:]), call=call, opbase=opbase, ref=ref,
                        layout=x.layout)
        shp = list(x.shape)
        shp[-1 if x.layout == "nhwc" else 0] = end - start
        return T(nid, tuple(shp), x.layout)

    def op_slice(self, c):
        x = self.tensor(c.a("input"))
        d = int(self.lit(c.a("dim", 0)))
        nd = len(x.shape) + 1
        step = int(self.lit(c.a("step", 1)) or 1)
        start, end = self.lit(c.a("start", None)), self.lit(c.a("end", None))
        if d % nd == 0:
            if (start in (None, 0)) and (end is None or end >= self.B) and step == 1:
                return x
            raise Unsupported("slicing the batch dimension")
        self._chan_dim(x, d)
        if step != 1:
            raise Unsupported(f"slice with step {step}")
        C = x.storage[0]
        s, e, _ = slice(start, end).indices(C)
        return self._slice(x, s, max(s, e))

    def op_narrow(self, c):
        x = self.tensor(c.a("input"))
        self._chan_dim(x, int(self.lit(c.a("dim"))))
        C = x.storage[0]
        s = int(self.lit(c.a("start"))) % C if int(self.lit(c.a("start"))) < 0 else int(self.lit(c.a("start")))
        return self._slice(x, s, s + int(self.lit(c.a("length"))))

    def _pieces(self, c, sizes_fn):
        x = self.tensor(c.a("input"))
        self._chan_dim(x, int(self.lit(c.a("dim", 0))))
        C = x.storage[0]
        sizes = sizes_fn(C)
        ranges, s = [], 0
        for z in sizes:
            ranges.append((s, s + z))
            s += z
        if s != C:
            raise Unsupported(f"split sizes {sizes} do not add up to {C}")
        return Pieces(x, ranges, c)

    def op_chunk(self, c):
        k = int(self.lit(c.a("chunks")))

        def sizes(C):
            z = -(-C // k)
            out, s = [], 0
            while s < C:
                out.append(min(z, C - s))
                s += z
            return out

        return self._pieces(c, sizes)

    def op_split(self, c):
        sz = self.lit(c.a("split_size", c.a("split_size_or_sections", c.a("split_sizes"))))

        def sizes(C):
            if isinstance(sz, (list, tuple)):
                return [int(v) for v in sz]
            z = int(sz)
            return [min(z, C - s) for s in range(0, C, z)]

        return self._pieces(c, sizes)

    def op_split_with_sizes(self, c):
        return self.op_split(c)

    def op_tensor_split(self, c):
        raise Unsupported("tensor_split")

    def op_getitem(self, c):
        v = self.val(c.a("input"))
        idx = self.lit(c.a("index"))
        if isinstance(v, Tup):
            it = v.items[idx]
            if isinstance(it, Unused):
                raise Unsupported(f"uses the {it.what}")
            return it
        if isinstance(v, Pieces):
            if not isinstance(idx, int):
                raise Unsupported("indexing split pieces with a non-int")
            if idx < 0:
                idx += len(v.ranges)
            if idx not in v.emitted:
                s, e = v.ranges[idx]
                v.emitted[idx] = self._slice(v.src, s, e, call=Call(c.node, v.call.op, {}, False, v.call.target,
                                                                       v.call.scope, v.call.source, c.shape))
            return v.emitted[idx]
        if isinstance(v, (list, tuple)):
            return v[idx]
        if isinstance(v, Const):
            return Const(v.value[idx])
        if isinstance(v, T):
            return self._tensor_index(v, idx)
        raise Unsupported(f"indexing {_kind(v)}")

    def _tensor_index(self, x: T, idx):
        if not isinstance(idx, tuple):
            idx = (idx,)
        full = slice(None, None, None)
        items = list(idx)
        while items and (items[-1] is Ellipsis or items[-1] == full):
            items.pop()
        if not items:
            return x
        if len(items) == 2 and items[0] == full and isinstance(items[1], slice):
            if x.layout != "std":
                raise Unsupported("indexing a channels-last tensor")
            sl = items[1]
            if sl.step not in (None, 1):
                raise Unsupported("channel slice with a step")
            s, e, _ = sl.indices(x.storage[0])
            return self._slice(x, s, max(s, e))
        raise Unsupported(f"indexing with {idx!r}: only x[:, a:b] (a channel range) is supported")

    def op_channel_shuffle(self, c):
        x = self._std3(c.a("input"), "channel shuffle")
        g = int(self.lit(c.a("groups")))
        nid = self.emit("channel_shuffle", {"groups": g}, [x.node], x.storage)
        return T(nid, x.shape)

    op_native_channel_shuffle = op_channel_shuffle

    # -- layout changes and reshapes ------------------------------------------------------

    def op_permute(self, c):
        v = self.val(c.a("input"))
        dims = list(self.lit(c.a("dims")))
        return self._permute(v, dims)

    def _permute(self, v, dims):
        nd = len(dims)
        dims = [d % nd for d in dims]
        if isinstance(v, Param):
            if v.tensor is not None and v.tensor.dim() == 2 and dims == [1, 0]:
                return Param(v.name, v.tensor, not v.transposed, v.what)
            raise Unsupported("permute of a parameter")
        if isinstance(v, Grouped):
            if dims == [0, 2, 1, 3, 4]:
                return Grouped(v.src, v.groups, not v.transposed)
            raise Unsupported(f"permute {dims} of a grouped view")
        if not isinstance(v, T):
            raise Unsupported(f"permute of {_kind(v)}")
        if dims == list(range(nd)):
            return v
        if nd == 4 and v.layout == "std" and len(v.shape) == 3 and dims == [0, 2, 3, 1]:
            c_, h, w = v.shape
            return T(v.node, (h, w, c_), "nhwc")
        if nd == 4 and v.layout == "nhwc" and dims == [0, 3, 1, 2]:
            return T(v.node, v.storage, "std")
        raise Unsupported(f"permute {dims} of a {v.layout} tensor of shape {list(v.shape)}: only NCHW<->NHWC "
                          "permutes (0,2,3,1) and (0,3,1,2) are supported")

    def op_transpose(self, c):
        v = self.val(c.a("input"))
        nd = (v.tensor.dim() if isinstance(v, Param) else
              5 if isinstance(v, Grouped) else len(v.shape) + 1 if isinstance(v, T) else 0)
        if nd == 0:
            raise Unsupported(f"transpose of {_kind(v)}")
        d0, d1 = int(self.lit(c.a("dim0"))) % nd, int(self.lit(c.a("dim1"))) % nd
        dims = list(range(nd))
        dims[d0], dims[d1] = dims[d1], dims[d0]
        return self._permute(v, dims)

    def op_t(self, c):
        v = self.val(c.a("input"))
        return self._permute(v, [1, 0])

    def reshape(self, c):
        v = self.val(c.a("input"))
        full = c.shape
        if full is None:
            raise Unsupported("reshape with an unknown output shape")
        if isinstance(v, Param):
            raise Unsupported("reshape of a parameter")
        if len(full) == 0 or full[0] != self.B:
            raise Unsupported(f"reshape to {list(full)} changes the batch dimension")
        new = tuple(full[1:])
        if isinstance(v, Grouped):
            if new == v.src.shape:
                if not v.transposed:
                    return v.src
                nid = self.emit("channel_shuffle", {"groups": v.groups}, [v.src.node], v.src.storage,
                                opbase="channel_shuffle")
                return T(nid, v.src.shape)
            raise Unsupported(f"reshape of a grouped view to {list(new)}")
        if not isinstance(v, T):
            raise Unsupported(f"reshape of {_kind(v)}")
        if new == v.shape:
            return v
        if v.layout == "nhwc":
            raise Unsupported(f"reshape of a channels-last tensor {list(v.shape)} to {list(new)}")
        s = v.storage
        if len(new) == 1 and new[0] == math.prod(s):
            if len(s) == 1:
                return T(v.node, s, "std")
            if v.node in self.flat_memo:
                return T(self.flat_memo[v.node], new)
            nid = self.emit("flatten", {}, [v.node], new, opbase=c.op if c.op in ("flatten", "view", "reshape") else "flatten")
            self.flat_memo[v.node] = nid
            return T(nid, new)
        if len(new) >= 2 and all(z == 1 for z in new[1:]):
            if len(s) == 1 and new[0] == s[0]:
                return T(v.node, new, "bcast")
            if len(s) == 3 and s[1] == s[2] == 1 and new[0] == s[0]:
                if len(new) == 3:
                    return T(v.node, new, "std")
                f = self.flatten_of(v)
                return T(f.node, new, "bcast")
        if len(s) == 3 and len(new) == 4 and new[0] * new[1] == s[0] and tuple(new[2:]) == tuple(s[1:]) \
                and v.layout == "std":
            return Grouped(v, new[0])
        raise Unsupported(f"reshape of {list(v.shape)} to {list(new)}: nshap supports flattening [C,H,W] to "
                          "[C*H*W], [F] <-> [F,1,1] and ShuffleNet's channel shuffle")

    # -- shapes and Python arithmetic -----------------------------------------------------

    def op_sym_size(self, c):
        x = self.val(c.a("input"))
        d = int(self.lit(c.a("dim")))
        return Const(_full_shape(self, x, c)[d])

    def op_size(self, c):
        x = self.val(c.a("input"))
        full = _full_shape(self, x, c)
        d = c.a("dim", None)
        if d is None:
            return Const(tuple(full))
        return Const(full[int(self.lit(d))])

    def op_ndim(self, c):
        x = self.val(c.a("input"))
        return Const(len(_full_shape(self, x, c)))

    def op_getattr(self, c):
        x = self.val(c.a("input"))
        name = c.a("name")
        if name == "shape":
            return Const(tuple(_full_shape(self, x, c)))
        if name == "ndim":
            return Const(len(_full_shape(self, x, c)))
        raise Unsupported(f"getattr {name!r}")

    def op_pyfunc(self, c):
        fn = c.a("fn")
        args = self.val(tuple(c.a("args")))
        kwargs = {k: self.val(v) for k, v in c.a("kwargs").items()}
        mod = getattr(fn, "__module__", "") or ""
        flat = list(_flat(args)) + list(_flat(list(kwargs.values())))
        if mod in ("_operator", "operator", "builtins", "math") and not any(
                isinstance(a, (T, Param, Grouped, Pieces, Tup, Expand)) for a in flat):
            return Const(fn(*_unconst(args), **_unconst(kwargs)))
        if getattr(fn, "__name__", "").startswith("_assert") or mod.startswith("torch._assert"):
            return None
        raise Unsupported("nshap has no equivalent op")

    def op__assert_tensor_metadata(self, c):
        return None

    def op__to_copy(self, c):
        x = self.val(c.a("input"))
        dt = c.a("dtype", None)
        if dt not in (None, torch.float32):
            raise Unsupported(f"conversion to {dt}")
        return x

    def op_to(self, c):
        return self.op__to_copy(c)

    def op_type_as(self, c):
        return self.val(c.a("input"))


# ---------------------------------------------------------------------------------------
# helpers


def _kind(v):
    if isinstance(v, T):
        return f"an activation {list(v.shape)}"
    if isinstance(v, Param):
        return f"a tensor {v.what or ''} of shape {list(v.tensor.shape) if v.tensor is not None else '?'}"
    if isinstance(v, (int, float)):
        return f"a Python scalar {v}"
    if isinstance(v, Const):
        return f"a Python constant {v.value}"
    return type(v).__name__


def _unconst(v):
    if isinstance(v, Const):
        return v.value
    if isinstance(v, list):
        return [_unconst(x) for x in v]
    if isinstance(v, tuple):
        return tuple(_unconst(x) for x in v)
    if isinstance(v, dict):
        return {k: _unconst(x) for k, x in v.items()}
    return v


def _flat(v):
    if isinstance(v, (list, tuple)):
        for x in v:
            yield from _flat(x)
    else:
        yield v


def _node_inputs(args):
    for v in args.values() if isinstance(args, dict) else args:
        if isinstance(v, fx.Node):
            yield v
        elif isinstance(v, (list, tuple)):
            yield from _node_inputs(list(v))
        elif isinstance(v, dict):
            yield from _node_inputs(v)


def _shape_of(n: fx.Node):
    from .trace import meta_shape

    s = meta_shape(n)
    if s is None:
        raise ExportError(f"no shape recorded for {n.name}")
    return s


def _full_shape(conv, x, c):
    if isinstance(x, T):
        return (conv.B,) + tuple(x.shape)
    if isinstance(x, Param) and x.tensor is not None:
        return tuple(x.tensor.shape)
    if isinstance(x, Grouped):
        C, H, W = x.src.shape
        g = x.groups
        return (conv.B, C // g, g, H, W) if x.transposed else (conv.B, g, C // g, H, W)
    raise Unsupported(f"size of {_kind(x)}")


def _live_nodes(graph: fx.Graph, out: fx.Node):
    live = set()
    stack = [out]
    while stack:
        n = stack.pop()
        if n in live:
            continue
        live.add(n)
        stack.extend(n.all_input_nodes)
    # an in-place op on a live node is live too (it changes that node's value)
    changed = True
    order = list(graph.nodes)
    while changed:
        changed = False
        for n in order:
            if n in live or n.op != "call_function":
                continue
            t = n.target
            name = t._schema.name if isinstance(t, torch._ops.OpOverload) else getattr(t, "__name__", "")
            if name.endswith("_") and not name.endswith("__") and n.args and n.args[0] in live:
                live.add(n)
                stack = list(n.all_input_nodes)
                while stack:
                    m = stack.pop()
                    if m not in live:
                        live.add(m)
                        stack.extend(m.all_input_nodes)
                changed = True
    return live


# ---------------------------------------------------------------------------------------
# naming and JSON


def finalize(nodes: List[SpecNode], out_id: int) -> List[SpecNode]:
    """Drops nodes the output does not depend on, names the rest, returns them in order."""
    by_id = {n.id: n for n in nodes}
    keep = set()
    stack = [out_id]
    while stack:
        i = stack.pop()
        if i in keep or i == "input":
            continue
        keep.add(i)
        stack.extend(by_id[i].inputs)
    kept = [n for n in nodes if n.id in keep]
    per_group: Dict[str, int] = {}
    for n in kept:
        if n.scope.key:
            per_group[n.scope.key] = per_group.get(n.scope.key, 0) + 1
    used = {"input"}
    for n in kept:
        sc = n.scope
        if sc.path and sc.leaf and per_group.get(sc.key, 0) == 1:
            base = sc.path
        elif sc.path:
            base = f"{sc.path}.{n.opbase}"
        else:
            base = n.opbase
        name, k = base, 0
        while name in used:
            k += 1
            name = f"{base}_{k}"
        used.add(name)
        n.name = name
    return kept


def to_spec(kept: List[SpecNode], input_shape) -> dict:
    names = {n.id: n.name for n in kept}
    names["input"] = "input"
    out = []
    prev = "input"
    for n in kept:
        d = {"name": n.name, "op": n.op}
        d.update(n.fields)
        ins = [names[i] for i in n.inputs]
        if ins != [prev]:
            d["inputs"] = ins
        out.append(d)
        prev = n.name
    return {"format": "nshap.model.v1", "input": list(input_shape), "nodes": out}


def spec_json(spec: dict) -> str:
    import json

    lines = [
        '{"format": %s, "input": %s,' % (json.dumps(spec["format"]), json.dumps(spec["input"])),
        ' "nodes": [',
    ]
    body = []
    for n in spec["nodes"]:
        body.append("  " + json.dumps(n))
    lines.append(",\n".join(body))
    lines.append("]}")
    return "\n".join(lines) + "\n"


def convert(traced: Traced, state_dict_names=None):
    """Returns (spec dict, kept SpecNodes)."""
    cv = Converter(traced, state_dict_names)
    out_id = cv.run()
    kept = finalize(cv.nodes, out_id)
    inp = [n for n, lf in traced.leaves.items() if lf[0] == "input"][0]
    spec = to_spec(kept, _shape_of(inp)[1:])
    return spec, kept
