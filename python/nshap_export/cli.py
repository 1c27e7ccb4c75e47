"""``nshap-export MODULE:FACTORY | file.py:FACTORY | model.pt2 --input C,H,W --out DIR``."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

EXIT_UNSUPPORTED = 2
EXIT_CHECK = 3
EXIT_ERROR = 1


def load_model(ref: str):
    """A ``torch.export`` ``.pt2`` file, ``module.path:factory`` or ``path/file.py:factory``."""
    import torch

    if ref.endswith(".pt2") and ":" not in os.path.basename(ref):
        return torch.export.load(ref)
    if ":" not in ref:
        raise SystemExit(f"nshap-export: {ref!r} is neither a .pt2 file nor MODULE:FACTORY")
    mod, _, fac = ref.rpartition(":")
    if mod.endswith(".py") or os.sep in mod or "/" in mod:
        path = os.path.abspath(mod)
        if not os.path.exists(path):
            raise SystemExit(f"nshap-export: no such file {mod!r}")
        name = "_nshap_user_" + os.path.splitext(os.path.basename(path))[0]
        spec = importlib.util.spec_from_file_location(name, path)
        m = importlib.util.module_from_spec(spec)
        sys.modules[name] = m
        sys.path.insert(0, os.path.dirname(path))
        spec.loader.exec_module(m)
    else:
        m = importlib.import_module(mod)
    obj = m
    for part in fac.split("."):
        if not hasattr(obj, part):
            raise SystemExit(f"nshap-export: {mod!r} has no attribute {fac!r}")
        obj = getattr(obj, part)
    model = obj()
    if isinstance(model, torch.export.ExportedProgram):
        return model
    if not isinstance(model, torch.nn.Module):
        raise SystemExit(f"nshap-export: {ref}() returned a {type(model).__name__}, not an nn.Module")
    return model


def parse_shape(s: str):
    try:
        dims = [int(v) for v in s.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--input wants C,H,W or F, got {s!r}")
    if len(dims) not in (1, 3) or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"--input wants C,H,W or F, got {s!r}")
    return dims


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="nshap-export",
        description="Export a PyTorch classifier to nshap's model.json + weights.safetensors.",
    )
    ap.add_argument("model", help="MODULE:FACTORY (e.g. torchvision.models:resnet18), path/file.py:FACTORY, or model.pt2")
    ap.add_argument("--input", required=True, type=parse_shape, help="shape of one example: C,H,W or F")
    ap.add_argument("--out", required=True, help="output directory (written atomically)")
    ap.add_argument("--method", choices=["auto", "export", "fx"], default="auto",
                    help="tracer: torch.export, torch.fx.symbolic_trace, or export falling back to fx (default)")
    ap.add_argument("--check", dest="check", action="store_true", default=True,
                    help="interpret the emitted spec in PyTorch and compare with the module (default)")
    ap.add_argument("--no-check", dest="check", action="store_false", help="skip the self-check")
    ap.add_argument("--batch", type=int, default=2, help="examples in the random check batch (default 2)")
    ap.add_argument("--seed", type=int, default=0, help="seed for the random example input (default 0)")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args(argv)

    import torch

    from .api import export
    from .errors import CheckFailed, ExportError, UnsupportedOps

    torch.manual_seed(a.seed)
    try:
        model = load_model(a.model)
    except SystemExit:
        raise
    except Exception as e:
        print(f"nshap-export: cannot build {a.model}: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_ERROR
    x = torch.randn(a.batch, *a.input)
    try:
        res = export(model, x, a.out, method=a.method, check=a.check, verbose=a.verbose)
    except UnsupportedOps as e:
        print(f"nshap-export: {a.model}: {e}", file=sys.stderr)
        print("nothing written", file=sys.stderr)
        return EXIT_UNSUPPORTED
    except CheckFailed as e:
        print(f"nshap-export: {a.model}: {e}", file=sys.stderr)
        print("nothing written", file=sys.stderr)
        return EXIT_CHECK
    except ExportError as e:
        print(f"nshap-export: {a.model}: {e}", file=sys.stderr)
        print("nothing written", file=sys.stderr)
        return EXIT_ERROR
    if res.fallback_reason:
        print(f"torch.export failed ({res.fallback_reason}); fell back to torch.fx.symbolic_trace")
    print(f"traced with {'torch.export' if res.method == 'export' else 'torch.fx.symbolic_trace'} (method {res.method})")
    chk = ""
    if res.check:
        chk = f", self-check max abs diff {res.check['max_abs_diff']:.2e} (tolerance {res.check['tolerance']:.1e})"
    print(f"{res.nodes} nodes, input {res.input_shape}{chk}")
    print(f"wrote {res.model_json}, {res.weights}, {res.sidecar}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
