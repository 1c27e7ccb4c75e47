"""``export(module, example_input, out_dir)``: the exporter's entry point."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from typing import Optional

import torch

from .convert import convert, spec_json
from .errors import CheckFailed, ExportError
from .interpret import interpret
from .trace import trace_export, trace_fx

TRACE_BATCH = 2


@dataclass
class ExportResult:
    out_dir: Optional[str]
    model_json: Optional[str]
    weights: Optional[str]
    sidecar: Optional[str]
    method: str  # "export" or "fx"
    spec: dict
    nodes: int
    input_shape: list
    timings: dict
    check: Optional[dict]
    fallback_reason: Optional[str] = None
    info: dict = field(default_factory=dict)


def _eager(module, x):
    with torch.no_grad():
        if isinstance(module, torch.export.ExportedProgram):
            return module.module()(x.clone())
        return module(x.clone())


def _trace_input(x: torch.Tensor, batch: int) -> torch.Tensor:
    if x.shape[0] == batch:
        return x
    reps = -(-batch // x.shape[0])
    return x.repeat(reps, *([1] * (x.dim() - 1)))[:batch]


def _ep_batch(ep):
    from torch.export.graph_signature import InputKind

    for s in ep.graph_signature.input_specs:
        if s.kind == InputKind.USER_INPUT:
            for n in ep.graph.nodes:
                if n.name == s.arg.name:
                    v = n.meta.get("val")
                    if isinstance(v, torch.Tensor):
                        try:
                            return tuple(int(d) for d in v.shape)
                        except Exception:
                            return None
    return None


def _state_dict(module):
    if isinstance(module, torch.export.ExportedProgram):
        return dict(module.state_dict)
    return module.state_dict()


def _save_weights(sd, path):
    from safetensors.torch import save_file

    out = {}
    seen = set()
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            continue
        t = v.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        if not t.is_contiguous():
            t = t.contiguous()
        if t.numel():
            ptr = t.untyped_storage().data_ptr()
            if ptr in seen:
                t = t.clone()  # safetensors refuses tensors that share memory (tied weights)
            else:
                seen.add(ptr)
        out[k] = t
    save_file(out, path)


def self_check(spec, sd, traced, x, y_ref, kept, tol_rel=1e-4):
    """Interprets the spec on x; compares with the module's output (and intermediates)."""
    vals = {}

    def rec(name, t):
        vals[name] = t

    t0 = time.time()
    y = interpret(spec, sd, x, hook=rec)
    y_ref = y_ref.detach().float()
    if y.shape != y_ref.shape:
        raise CheckFailed(f"self-check: the spec's output has shape {list(y.shape)}, the module's {list(y_ref.shape)}")
    scale = max(1.0, float(y_ref.abs().max()))
    diff = float((y - y_ref).abs().max())
    tol = tol_rel * scale
    res = {"max_abs_diff": diff, "max_abs_logit": float(y_ref.abs().max()), "tolerance": tol,
           "passed": diff <= tol, "seconds": None}
    if not (diff <= tol):  # also catches NaN
        first = None
        detail = ""
        try:
            cap = traced.run_capture(x)
            for n in kept:
                if n.ref is None:
                    continue
                fxn, layout = n.ref
                r = cap.get(fxn)
                if isinstance(r, (tuple, list)):
                    r = r[0] if r and isinstance(r[0], torch.Tensor) else None
                if not isinstance(r, torch.Tensor):
                    continue
                r = r.float()
                if layout == "nhwc" and r.dim() == 4:
                    r = r.permute(0, 3, 1, 2)
                got = vals.get(n.name)
                if got is None or tuple(r.shape) != tuple(got.shape):
                    continue
                s = max(1.0, float(r.abs().max()))
                d = float((got - r).abs().max())
                if not (d <= tol_rel * s):
                    first = n.name
                    detail = f"; first differing node: {n.name!r} ({n.op}, max abs diff {d:.3g} vs tolerance {tol_rel * s:.3g})"
                    break
        except Exception as e:  # pragma: no cover - diagnostics only
            detail = f"; intermediates not compared ({type(e).__name__}: {e})"
        res["seconds"] = time.time() - t0
        raise CheckFailed(
            f"self-check failed: max |spec - module| = {diff:.4g} > tolerance {tol:.3g}{detail}",
            max_abs_diff=diff, tolerance=tol, first_bad_node=first,
        )
    res["seconds"] = time.time() - t0
    return res


def export(module, example_input: torch.Tensor, out_dir=None, *, method: str = "auto", check: bool = True,
           verbose: bool = False) -> ExportResult:
    """Exports ``module`` (an ``nn.Module`` or a ``torch.export.ExportedProgram``) to
    ``out_dir/model.json`` + ``out_dir/weights.safetensors`` (+ ``export.json``).

    ``example_input`` is one example ``[C, H, W]`` / ``[F]`` or a batch ``[N, ...]``.
    ``method``: ``"export"`` (torch.export), ``"fx"`` (torch.fx.symbolic_trace) or ``"auto"``
    (torch.export, falling back to fx when it fails). Raises ``UnsupportedOps`` listing every
    node nshap cannot represent, ``CheckFailed`` when the spec does not reproduce the module, and
    writes nothing in either case. ``out_dir=None`` converts and checks without writing.
    """
    if method not in ("auto", "export", "fx"):
        raise ValueError(f"method must be auto, export or fx, not {method!r}")
    t_start = time.time()
    timings = {}
    is_ep = isinstance(module, torch.export.ExportedProgram)
    if not is_ep:
        module.eval()
    x = example_input.detach().float()
    if not is_ep:
        p0 = next(iter(module.parameters()), None)
        if p0 is not None and p0.device != x.device:
            x = x.to(p0.device)
    ep_shape = _ep_batch(module) if is_ep else None
    if ep_shape is not None:
        if tuple(x.shape) == tuple(ep_shape[1:]):
            x = x.unsqueeze(0)
        per = tuple(ep_shape[1:])
        if tuple(x.shape[1:]) != per:
            raise ExportError(f"example input shape {list(x.shape)} does not match the program's input {list(ep_shape)}")
        x = _trace_input(x, ep_shape[0])
        xt = x
    else:
        if x.dim() in (1, 3):
            x = x.unsqueeze(0)
        if x.dim() not in (2, 4):
            raise ExportError(f"example input must be [C,H,W], [F] or a batch of them; got {list(example_input.shape)}")
        xt = _trace_input(x, TRACE_BATCH)

    t0 = time.time()
    y_ref = _eager(module, x)
    timings["eager_s"] = time.time() - t0
    if not isinstance(y_ref, torch.Tensor):
        raise ExportError(
            f"the model returns a {type(y_ref).__name__} in eval mode; nshap needs one [N, classes] logits "
            "tensor (wrap the model so that forward returns only the logits)"
        )
    if y_ref.dim() != 2:
        raise ExportError(f"the model's output has shape {list(y_ref.shape)}; nshap needs [N, classes] logits")

    fallback_reason = None
    traced = None
    t0 = time.time()
    if method in ("auto", "export"):
        try:
            traced = trace_export(module, xt)
        except ExportError:
            raise
        except Exception as e:
            if method == "export":
                raise ExportError(f"torch.export failed: {type(e).__name__}: {e}") from e
            fallback_reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            if verbose:
                traceback.print_exc()
    if traced is None:
        try:
            traced = trace_fx(module, xt)
        except ExportError:
            raise
        except Exception as e:
            msg = f"torch.fx.symbolic_trace failed: {type(e).__name__}: {e}"
            if fallback_reason:
                msg = f"torch.export failed ({fallback_reason}); {msg}"
            raise ExportError(msg) from e
    traced.fallback_reason = fallback_reason
    if fallback_reason:
        import warnings

        warnings.warn(f"torch.export failed ({fallback_reason}); traced with torch.fx.symbolic_trace instead",
                      stacklevel=2)
    timings["trace_s"] = time.time() - t0

    sd = _state_dict(module)
    t0 = time.time()
    spec, kept = convert(traced, set(sd.keys()))
    timings["convert_s"] = time.time() - t0

    chk = None
    if check:
        t0 = time.time()
        chk = self_check(spec, sd, traced, x, y_ref, kept)
        timings["check_s"] = time.time() - t0

    res = ExportResult(out_dir=None, model_json=None, weights=None, sidecar=None, method=traced.method, spec=spec,
                       nodes=len(spec["nodes"]), input_shape=list(spec["input"]), timings=timings, check=chk,
                       fallback_reason=fallback_reason)
    if out_dir is not None:
        t0 = time.time()
        _write(res, spec, sd, str(out_dir), t_start)
        timings["write_s"] = time.time() - t0
    timings["total_s"] = time.time() - t_start
    if res.sidecar:
        _write_sidecar(res, res.sidecar)
    return res


def _sidecar(res: ExportResult) -> dict:
    try:
        import torchvision

        tv = torchvision.__version__
    except Exception:
        tv = None
    return {
        "method": res.method,
        "fallback_reason": res.fallback_reason,
        "torch": torch.__version__,
        "torchvision": tv,
        "input": res.input_shape,
        "nodes": res.nodes,
        "timings": {k: round(v, 4) for k, v in res.timings.items()},
        "check": res.check,
    }


def _write_sidecar(res, path):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(_sidecar(res), f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def _write(res, spec, sd, out_dir, t_start):
    out_dir = os.path.abspath(out_dir)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(out_dir) + ".tmp-", dir=parent)
    try:
        with open(os.path.join(tmp, "model.json"), "w") as f:
            f.write(spec_json(spec))
        _save_weights(sd, os.path.join(tmp, "weights.safetensors"))
        res.timings["total_s"] = time.time() - t_start
        _write_sidecar(res, os.path.join(tmp, "export.json"))
        if os.path.isdir(out_dir):
            for fn in ("model.json", "weights.safetensors", "export.json"):
                os.replace(os.path.join(tmp, fn), os.path.join(out_dir, fn))
            os.rmdir(tmp)
        else:
            os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    res.out_dir = out_dir
    res.model_json = os.path.join(out_dir, "model.json")
    res.weights = os.path.join(out_dir, "weights.safetensors")
    res.sidecar = os.path.join(out_dir, "export.json")
