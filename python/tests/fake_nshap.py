"""Stands in for the Rust CLI's `nshap logits` in the zoo tests (same interface, PyTorch inside)."""

import argparse
import os
import sys

try:
    import nshap_export  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("logits")
    p.add_argument("--model", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--backend", default="cpu", choices=["cpu", "gpu"])
    a = ap.parse_args()
    from safetensors.torch import load_file, save_file

    from nshap_export import interpret

    if a.backend == "gpu" and os.environ.get("FAKE_NSHAP_NO_GPU"):
        print("error: no GPU adapter found", file=sys.stderr)
        return 1
    d = load_file(a.data)
    y = interpret(a.model, a.weights, d["inputs"].float())
    save_file({"logits": y.contiguous()}, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
