"""Exports the torchvision classification zoo and writes a markdown table.

    python -m nshap_export.zoo --out docs/zoo.md [--families-only] [--rust-cmd "nshap"]

For every model of ``torchvision.models.list_models(module=torchvision.models)`` except the
attention models (``vit_*``, ``swin_*``, ``maxvit_*``): build it with ``weights=None`` (random
init, no download), export it at a small input, count parameters and FLOPs, run the exporter's
self-check and, with ``--rust-cmd``, compare the Rust engine's logits
(``CMD logits --model M --weights W --data D --out L [--backend cpu|gpu]``) with PyTorch's.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

import torch

EXCLUDE = re.compile(r"^(vit_|swin_|maxvit_)")

FAMILIES = [
    (r"^alexnet$", "alexnet"),
    (r"^convnext_", "convnext"),
    (r"^densenet", "densenet"),
    (r"^efficientnet_b", "efficientnet"),
    (r"^efficientnet_v2_", "efficientnet_v2"),
    (r"^googlenet$", "googlenet"),
    (r"^inception_v3$", "inception"),
    (r"^mnasnet", "mnasnet"),
    (r"^mobilenet_v2$", "mobilenet_v2"),
    (r"^mobilenet_v3_", "mobilenet_v3"),
    (r"^regnet_x_", "regnet_x"),
    (r"^regnet_y_", "regnet_y"),
    (r"^resnet", "resnet"),
    (r"^resnext", "resnext"),
    (r"^wide_resnet", "wide_resnet"),
    (r"^shufflenet_v2_", "shufflenet_v2"),
    (r"^squeezenet", "squeezenet"),
    (r"^vgg\d+_bn$", "vgg_bn"),
    (r"^vgg\d+$", "vgg"),
]

# smallest valid inputs are 63 (alexnet) and 75 (inception_v3); 64 keeps every other family's
# last feature map at least 2x2
INPUTS = {"inception": (3, 75, 75)}
DEFAULT_INPUT = (3, 64, 64)


def family_of(name: str) -> str:
    for pat, fam in FAMILIES:
        if re.search(pat, name):
            return fam
    return name


def input_for(name: str):
    return INPUTS.get(family_of(name), DEFAULT_INPUT)


def model_kwargs(name: str) -> dict:
    if name in ("inception_v3", "googlenet"):
        return {"init_weights": False}  # scipy truncated-normal init is slow and irrelevant here
    return {}


def build(name: str, device=None):
    import torchvision

    kw = model_kwargs(name)
    if device == "meta":
        with torch.device("meta"):
            return torchvision.models.get_model(name, weights=None, **kw)
    return torchvision.models.get_model(name, weights=None, **kw)


def count_params(name: str) -> int:
    """Parameter count without allocating the weights."""
    try:
        m = build(name, "meta")
    except Exception:  # builders that compute with tensors (regnet) cannot run on meta
        import torch.nn as nn

        old = nn.Module.register_parameter

        def reg(self, pname, param):
            if param is not None:
                param = nn.Parameter(param.detach().to("meta"), requires_grad=param.requires_grad)
            old(self, pname, param)

        nn.Module.register_parameter = reg
        try:
            m = build(name)
        finally:
            nn.Module.register_parameter = old
    return sum(p.numel() for p in m.parameters())


def calibrate_bn(m, x) -> int:
    """Sets every BatchNorm's running statistics to those of its input on ``x`` (one eval pass).

    With random weights and the default statistics (mean 0, var 1) many families' activations
    shrink layer after layer (EfficientNet's logits are ~1e-19), which makes any error measure
    relative to max(1, max|logit|) vacuous. Calibrated, every layer sees unit-scale activations.
    """
    import torch.nn as nn

    bns = [b for b in m.modules() if isinstance(b, nn.modules.batchnorm._BatchNorm) and b.track_running_stats]

    def pre(mod, inp):
        t = inp[0]
        dims = [0] + list(range(2, t.dim()))
        mod.running_mean.copy_(t.mean(dims))
        mod.running_var.copy_(t.var(dims, unbiased=False))

    hooks = [b.register_forward_pre_hook(pre) for b in bns]
    try:
        m.eval()
        with torch.no_grad():
            m(x)
    finally:
        for h in hooks:
            h.remove()
    return len(bns)


def compared_inputs(shape, examples, seed):
    """The random examples whose logits are compared with PyTorch's."""
    g = torch.Generator().manual_seed(seed + 1)
    return torch.randn(examples, *shape, generator=g)


def zoo_models():
    import torchvision

    return [n for n in torchvision.models.list_models(module=torchvision.models) if not EXCLUDE.search(n)]


def spec_flops(spec, state_dict, shapes) -> int:
    """Multiply-adds x 2 of conv and linear nodes (per example)."""
    total = 0
    for n in spec["nodes"]:
        if n["op"] in ("conv2d", "linear"):
            w = state_dict[n["weight"]]
            out = shapes[n["name"]]
            per_out = w[0].numel()  # in/groups * kh * kw, or in
            spatial = out[1] * out[2] if len(out) == 3 else 1
            total += 2 * w.shape[0] * per_out * spatial
    return total


def human(v: float, unit="") -> str:
    for k, s in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if v >= k:
            return f"{v / k:.2f}{s}{unit}"
    return f"{v:.0f}{unit}"


def rust_logits(cmd, d, data, backend, timeout):
    out = os.path.join(d, f"logits-{backend}.safetensors")
    argv = shlex.split(cmd) + ["logits", "--model", os.path.join(d, "model.json"), "--weights",
                               os.path.join(d, "weights.safetensors"), "--data", data, "--out", out,
                               "--backend", backend]
    t0 = time.time()
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    dt = time.time() - t0
    if r.returncode != 0:
        msg = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"exit {r.returncode}: {msg}")
    from safetensors.torch import load_file

    return load_file(out)["logits"], dt


def rel_err(a, b) -> float:
    return float((a.float() - b.float()).abs().max()) / max(1.0, float(b.abs().max()))


def run_one(name, *, work, rust_cmd=None, gpu=False, examples=4, max_params=None, timeout=1200, keep=False,
            params=None, seed=0, calibrate=True):
    from safetensors.torch import save_file

    from .api import export
    from .errors import CheckFailed, UnsupportedOps
    from .interpret import node_shapes

    fam = family_of(name)
    shape = input_for(name)
    row = {"model": name, "family": fam, "input": list(shape), "params": params, "flops": None, "method": None,
           "export_s": None, "check": None, "status": None, "cpu": None, "gpu": None, "nodes": None,
           "max_logit": None}
    if params is None:
        params = row["params"] = count_params(name)
    if max_params is not None and params > max_params:
        row["status"] = "skipped (size)"
        row["cpu"] = row["gpu"] = "skipped (size)"
        return row
    torch.manual_seed(seed)
    d = os.path.join(work, name)
    m = None
    try:
        m = build(name).eval()
        if calibrate:
            # The compared examples among 64: with 16 random inputs only, a few near-constant
            # channels get huge 1/std gains on new inputs (efficientnet_v2_m: logits ~3e3, and
            # PyTorch's own output moves 2e-2 under 1e-7 input jitter); with these, ~2.
            calibrate_bn(m, torch.cat([torch.randn(64 - examples, *shape), compared_inputs(shape, examples, seed)]))
        x = torch.randn(2, *shape)
        t0 = time.time()
        res = export(m, x, d)
        row["export_s"] = time.time() - t0
        row["method"] = res.method
        row["nodes"] = res.nodes
        row["check"] = res.check["max_abs_diff"] / max(1.0, res.check["max_abs_logit"])
        row["max_logit"] = res.check["max_abs_logit"]
        sd = m.state_dict()
        row["flops"] = spec_flops(res.spec, sd, node_shapes(res.spec, sd, x[:1]))
        row["status"] = "ok"
    except UnsupportedOps as e:
        row["status"] = "unsupported: " + "; ".join(p.format() for p in e.problems[:3]) + (
            f" (+{len(e.problems) - 3} more)" if len(e.problems) > 3 else "")
    except CheckFailed as e:
        row["status"] = f"check failed: {e}"
    except Exception as e:
        row["status"] = f"error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        traceback.print_exc()
    if row["status"] == "ok" and rust_cmd:
        xs = compared_inputs(shape, examples, seed)
        g = torch.Generator().manual_seed(seed + 2)
        data = os.path.join(d, "data.safetensors")
        save_file({"inputs": xs.contiguous(), "labels": torch.zeros(examples, dtype=torch.int64)}, data)
        with torch.no_grad():
            ref = m(xs)
        row["max_logit"] = float(ref.abs().max())
        for backend in ("cpu", "gpu"):
            if backend == "gpu" and not gpu:
                row["gpu"] = "not run"
                continue
            try:
                lg, dt = rust_logits(rust_cmd, d, data, backend, timeout)
                if tuple(lg.shape) != tuple(ref.shape):
                    row[backend] = f"shape {list(lg.shape)} != {list(ref.shape)}"
                else:
                    row[backend] = rel_err(lg, ref)
                    row[backend + "_s"] = dt
            except subprocess.TimeoutExpired:
                row[backend] = f"timeout ({timeout}s)"
            except Exception as e:
                text = str(e)
                if "storage binding limit" in text:
                    # A conv weight larger than one storage binding may be (lavapipe: 128 MiB);
                    # linear weights are split over outputs, conv weights are not.
                    line = next(l for l in text.splitlines() if "binding limit" in l)
                    row[backend] = "not run: " + line.split("layer ", 1)[-1].split(" (linear")[0]
                else:
                    row[backend] = f"failed: {e}"
        try:  # the noise floor: PyTorch's own f32 vs f64 on the same inputs, or how much PyTorch's
            # f32 output moves when the inputs move by 1e-7 relative (float rounding), if larger:
            # random-init deep nets can amplify rounding chaotically, and any engine pays that.
            with torch.no_grad():
                moved = max(rel_err(m(xs * (1 + 1e-7 * torch.randn(xs.shape, generator=g))), ref)
                            for _ in range(3))
                row["f32_noise"] = max(rel_err(ref.double(), m.double()(xs.double())), moved)
        except Exception as e:  # pragma: no cover
            row["f32_noise"] = f"n/a ({type(e).__name__})"
    elif row["status"] == "ok":
        row["cpu"] = row["gpu"] = "not run"
    del m
    gc.collect()
    if not keep:
        shutil.rmtree(d, ignore_errors=True)
    return row


def _fmt_err(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.1e}"
    return str(v).replace("|", "\\|")


def markdown(rows, meta) -> str:
    out = ["# torchvision zoo through `nshap-export`", ""]
    out.append(
        f"Generated by `python -m nshap_export.zoo` on {meta['date']} with torch {meta['torch']}, torchvision "
        f"{meta['torchvision']}, {meta['threads']} CPU threads. Random init (`weights=None`), eval mode, one small "
        "input per family (alexnet needs 63+, inception_v3 75+). FLOPs are 2 x multiply-adds of the conv and "
        "linear nodes of the emitted spec at that input, per example. "
        + ("BatchNorm running statistics are calibrated on 64 random inputs including the compared ones (one eval "
           "pass), so that activations stay at unit scale through the random network. " if meta.get("calibrated") else "")
        + "*check* is the exporter's self-check (the spec interpreted in PyTorch vs the module), *CPU*/*GPU* the "
        f"Rust engine's logits vs PyTorch's on {meta['examples']} random examples; both as "
        "max|a-b| / max(1, max|b|); *max \\|logit\\|* is PyTorch's; *f32 noise* (with `--rust-cmd`) is the same "
        "measure between PyTorch in float32 and in float64, or between PyTorch's float32 outputs for the inputs and for "
        "the inputs moved by 1e-7 relative (the largest of three draws), whichever is larger: the error any float32 engine should expect. "
        f"*verdict*: pass when every backend that ran is within {meta.get('tolerance', 1e-4):g} "
        "(or twice the f32 noise, when that is larger)."
    )
    out.append("")
    out.append("| model | family | input | params | FLOPs | export | export time | nodes | max \\|logit\\| | check | "
               "CPU max err | GPU | f32 noise | verdict |")
    out.append("|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|---|---:|---|")
    for r in rows:
        ok = r["status"] == "ok"
        why = verdict(r, meta.get("tolerance", 1e-4))
        out.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
            r["model"], r["family"], "x".join(map(str, r["input"])),
            human(r["params"]) if r["params"] is not None else "",
            human(r["flops"]) if r["flops"] else "",
            r["method"] or ("" if ok else _fmt_err(r["status"])),
            f"{r['export_s']:.1f} s" if r["export_s"] is not None else "",
            r["nodes"] or "",
            f"{r['max_logit']:.3g}" if r.get("max_logit") is not None else "",
            _fmt_err(r["check"]) if ok else "",
            _fmt_err(r["cpu"]), _fmt_err(r["gpu"]), _fmt_err(r.get("f32_noise")),
            "pass" if why is None else "**FAIL**: " + _fmt_err(why),
        ))
    fams = {}
    for r in rows:
        fams.setdefault(r["family"], []).append(r)
    out += ["", "## Families", ""]
    for f, rs in fams.items():
        good = [r["model"] for r in rs if r["status"] == "ok"]
        bad = [r for r in rs if r["status"] != "ok"]
        line = f"- **{f}**: {len(good)}/{len(rs)} exported"
        if bad:
            line += "; " + "; ".join(f"{r['model']}: {r['status']}" for r in bad)
        out.append(line)
    out.append("")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nshap_export.zoo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="docs/zoo.md", help="markdown table to write")
    ap.add_argument("--json", help="also write the raw rows as JSON")
    ap.add_argument("--families-only", action="store_true", help="only the smallest member of each family")
    ap.add_argument("--only", help="comma-separated model names (overrides the zoo list)")
    ap.add_argument("--rust-cmd", help="the nshap command, e.g. 'nshap' or 'cargo run --release -p nshap-cli --'")
    ap.add_argument("--gpu", dest="gpu", action="store_true", default=True, help="also run --backend gpu (default)")
    ap.add_argument("--no-gpu", dest="gpu", action="store_false")
    ap.add_argument("--gpu-smallest-only", action="store_true", help="GPU only on the smallest member of each family")
    ap.add_argument("--max-params", type=float, help="skip models with more parameters (status 'skipped (size)')")
    ap.add_argument("--examples", type=int, default=4, help="examples in the logits comparison (default 4)")
    ap.add_argument("--work", help="directory for the exported models (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the exported models")
    ap.add_argument("--timeout", type=int, default=1200, help="seconds per Rust command")
    ap.add_argument("--tolerance", type=float, default=1e-4,
                    help="largest max|a-b| / max(1, max|b|) between Rust and PyTorch logits (default 1e-4; "
                         "twice PyTorch's own f32-vs-f64 error when that is larger); exit 1 above it")
    ap.add_argument("--no-calibrate-bn", dest="calibrate", action="store_false", default=True,
                    help="keep BatchNorm's default running statistics (mean 0, var 1)")
    a = ap.parse_args(argv)

    import datetime

    import torchvision

    names = a.only.split(",") if a.only else zoo_models()
    print(f"counting parameters of {len(names)} models", flush=True)
    params = {n: count_params(n) for n in names}
    smallest = {}
    for n in names:
        f = family_of(n)
        if f not in smallest or params[n] < params[smallest[f]]:
            smallest[f] = n
    if a.families_only:
        names = [n for n in names if smallest[family_of(n)] == n]
    work = a.work or tempfile.mkdtemp(prefix="nshap-zoo-")
    os.makedirs(work, exist_ok=True)
    rows = []
    meta = {"date": datetime.date.today().isoformat(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "threads": torch.get_num_threads(), "examples": a.examples,
            "calibrated": a.calibrate, "tolerance": a.tolerance}
    for i, n in enumerate(names):
        gpu = a.gpu and (not a.gpu_smallest_only or smallest[family_of(n)] == n)
        t0 = time.time()
        r = run_one(n, work=work, rust_cmd=a.rust_cmd, gpu=gpu, examples=a.examples,
                    max_params=a.max_params, timeout=a.timeout, keep=a.keep, params=params[n],
                    calibrate=a.calibrate)
        if a.rust_cmd and a.gpu and not gpu and r["status"] == "ok":
            r["gpu"] = "not run (--gpu-smallest-only)"
        rows.append(r)
        print(f"[{i + 1}/{len(names)}] {n}: {r['status']} method={r['method']} check={_fmt_err(r['check'])} "
              f"cpu={_fmt_err(r['cpu'])} gpu={_fmt_err(r['gpu'])} ({time.time() - t0:.1f} s)", flush=True)
        # write as we go, so a crash late in the zoo keeps the table so far
        _write(a.out, markdown(rows, meta))
        if a.json:
            _write(a.json, json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    if not a.work and not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {a.out}")
    failed = [f"{r['model']}: {why}" for r in rows if (why := verdict(r, a.tolerance))]
    for line in failed:
        print(f"FAIL {line}", flush=True)
    return 1 if failed else 0


def verdict(row, tolerance):
    """Why a row fails, or None: the export must work, and every Rust backend that ran must
    match PyTorch within `tolerance` (or twice PyTorch's own float32 error, when that is larger:
    no float32 engine can do better than the float32 reference itself)."""
    if row["status"] == "skipped (size)":
        return None
    if row["status"] != "ok":
        return row["status"]
    noise = row.get("f32_noise")
    bound = max(tolerance, 2 * noise) if isinstance(noise, float) else tolerance
    for backend in ("cpu", "gpu"):
        err = row.get(backend)
        if isinstance(err, float):
            if not err <= bound:
                return f"{backend} error {err:.2e} above {bound:.1e}"
        elif err is not None and not str(err).startswith("not run"):
            return f"{backend}: {err}"
    return None


def _write(path, text):
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
