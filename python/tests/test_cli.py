"""The nshap-export command: model references, output files, sidecar, atomic writes."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from conftest import PY_ROOT, validate_spec
from nshap_export import interpret

MODELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models.py")


def cli(*args):
    env = dict(os.environ)
    env["PYTHONPATH"] = PY_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "nshap_export", *args], capture_output=True, text=True,
                          env=env, timeout=600)


def _check_dir(d, method):
    spec = json.load(open(d / "model.json"))
    sd = load_file(str(d / "weights.safetensors"))
    side = json.load(open(d / "export.json"))
    validate_spec(spec, sd)
    assert side["method"] == method
    assert side["nodes"] == len(spec["nodes"])
    assert side["input"] == spec["input"]
    assert side["torch"] == torch.__version__
    assert side["check"]["passed"] is True
    for k in ("trace_s", "convert_s", "check_s", "write_s", "total_s"):
        assert k in side["timings"]
    assert [p for p in os.listdir(d.parent) if ".tmp-" in p] == []
    return spec, sd, side


def test_torchvision_factory(tmp_path):
    pytest.importorskip("torchvision")
    out = tmp_path / "r18"
    r = cli("torchvision.models:resnet18", "--input", "3,32,32", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "traced with torch.export (method export)" in r.stdout
    spec, sd, side = _check_dir(out, "export")
    import torchvision

    m = torchvision.models.resnet18()
    assert set(sd) == set(m.state_dict())  # num_batches_tracked and running stats kept
    assert sd["bn1.running_var"].dtype == torch.float32
    assert sd["bn1.num_batches_tracked"].dtype == torch.int64
    assert spec["input"] == [3, 32, 32]
    assert spec["nodes"][-1]["name"] == "fc"


def test_file_factory_fx_and_rewrite(tmp_path):
    out = tmp_path / "good"
    r = cli(f"{MODELS}:make_good", "--input", "3,8,8", "--out", str(out), "--method", "fx")
    assert r.returncode == 0, r.stderr
    assert "torch.fx.symbolic_trace" in r.stdout
    spec, sd, _ = _check_dir(out, "fx")
    # exporting again into the existing directory replaces the files
    r = cli(f"{MODELS}:make_good", "--input", "3,8,8", "--out", str(out))
    assert r.returncode == 0, r.stderr
    spec2, sd2, side2 = _check_dir(out, "export")
    assert spec2 == spec
    assert sorted(os.listdir(out)) == ["export.json", "model.json", "weights.safetensors"]
    # the written files reproduce the module
    sys.path.insert(0, os.path.dirname(MODELS))
    import models

    m = models.make_good().eval()
    x = torch.randn(4, 3, 8, 8)
    torch.testing.assert_close(interpret(str(out / "model.json"), str(out / "weights.safetensors"), x), m(x))


def test_auto_falls_back_to_fx(tmp_path):
    out = tmp_path / "o"
    r = cli(f"{MODELS}:make_no_export", "--input", "3,8,8", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "fell back to torch.fx.symbolic_trace" in r.stdout
    _, _, side = _check_dir(out, "fx")
    assert "does not like torch.export" in side["fallback_reason"]
    r = cli(f"{MODELS}:make_no_export", "--input", "3,8,8", "--out", str(tmp_path / "o2"), "--method", "export")
    assert r.returncode == 1 and "torch.export failed" in r.stderr
    assert not (tmp_path / "o2").exists()


def test_pt2_file(tmp_path):
    sys.path.insert(0, os.path.dirname(MODELS))
    import models

    m = models.make_good().eval()
    x = torch.randn(2, 3, 8, 8)
    p = tmp_path / "good.pt2"
    torch.export.save(torch.export.export(m, (x,)), str(p))
    r = cli(str(p), "--input", "3,8,8", "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    spec, _, _ = _check_dir(tmp_path / "o", "export")
    assert [n["name"] for n in spec["nodes"]] == ["conv", "bn", "relu", "adaptive_avg_pool2d", "flatten", "fc"]


def test_bad_references(tmp_path):
    r = cli("no_such_module_xyz:make", "--input", "3,8,8", "--out", str(tmp_path / "o"))
    assert r.returncode != 0
    r = cli(f"{MODELS}:make_not_a_module", "--input", "3,8,8", "--out", str(tmp_path / "o"))
    assert r.returncode != 0 and "not an nn.Module" in r.stderr
    r = cli(f"{MODELS}:make_good", "--input", "3,8", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "--input" in r.stderr  # argparse usage error
    assert not (tmp_path / "o").exists()
