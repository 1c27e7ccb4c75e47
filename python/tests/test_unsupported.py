"""Unsupported nodes are all reported at once; nothing is written."""

import os
import subprocess
import sys

import pytest
import torch

from conftest import PY_ROOT
from models import Bad, Flaky, Good, Tuple
from nshap_export import CheckFailed, ExportError, UnsupportedOps, export

MODELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models.py")


def _lines(substr):
    with open(MODELS) as f:
        return [i + 1 for i, line in enumerate(f) if substr in line]


@pytest.mark.parametrize("method", ["export", "fx"])
def test_all_problems_reported(method, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(UnsupportedOps) as ei:
        export(Bad(), torch.randn(2, 3, 8, 8), out, method=method)
    probs = ei.value.problems
    text = str(ei.value)
    assert len(probs) == 5, text
    mods = [p.module for p in probs]
    assert mods == ["block", "block", "up", "", ""], text
    assert "approximate='tanh'" in probs[1].reason
    assert "Python scalar" in probs[3].reason
    # the source line of each problem is in models.py
    want = [_lines("unsupported: sub")[0], _lines("tanh gelu")[0], _lines("unsupported: upsample")[0],
            _lines("Python scalar")[0], _lines("unsupported: softmax")[0]]
    for p, line in zip(probs, want):
        assert p.source == f"{MODELS}:{line}", (p.format(), line)
    # one line each, op / module / source
    for p in probs:
        assert p.format() in text
    assert not out.exists()
    assert os.listdir(tmp_path) == []


def _cli(*args, cwd=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = PY_ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "nshap_export", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


def test_cli_exit_2_nothing_written(tmp_path):
    out = tmp_path / "sub" / "out"
    r = _cli(f"{MODELS}:make_bad", "--input", "3,8,8", "--out", str(out))
    assert r.returncode == 2, r.stderr
    assert "5 unsupported operation(s)" in r.stderr
    for needle in ("aten.sub.Tensor", "aten.gelu.default", "aten.upsample_nearest2d", "aten.mul.Tensor",
                   "aten.softmax", "in module 'block'", "in module 'up'", "at top level", "models.py:"):
        assert needle in r.stderr, (needle, r.stderr)
    assert "nothing written" in r.stderr
    assert not out.exists()
    assert not (tmp_path / "sub").exists() or os.listdir(tmp_path / "sub") == []


def test_console_script_exit_2(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "nshap-export")
    if not os.path.exists(exe):
        pytest.skip("nshap-export console script not installed")
    r = subprocess.run([exe, f"{MODELS}:make_bad", "--input", "3,8,8", "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert not (tmp_path / "o").exists()


def test_tuple_output_is_a_clear_error(tmp_path):
    with pytest.raises(ExportError, match="returns a tuple"):
        export(Tuple(), torch.randn(2, 3, 8, 8), tmp_path / "o")
    r = _cli(f"{MODELS}:make_tuple", "--input", "3,8,8", "--out", str(tmp_path / "o"))
    assert r.returncode == 1 and "returns a tuple" in r.stderr
    assert not (tmp_path / "o").exists()


def test_check_failure_exit_3(tmp_path):
    with pytest.raises(CheckFailed, match="self-check failed"):
        export(Flaky(), torch.randn(2, 3, 2, 2), tmp_path / "o")
    r = _cli(f"{MODELS}:make_flaky", "--input", "3,2,2", "--out", str(tmp_path / "o"))
    assert r.returncode == 3, r.stderr
    assert "self-check failed" in r.stderr
    assert not (tmp_path / "o").exists()
    # --no-check writes it (the spec is the traced graph, the second call's)
    r = _cli(f"{MODELS}:make_flaky", "--input", "3,2,2", "--out", str(tmp_path / "o"), "--no-check")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o" / "model.json").exists()


def test_check_names_first_bad_node(monkeypatch):
    """A wrong op in the interpreter is caught at the node that produces it."""
    import importlib

    I = importlib.import_module("nshap_export.interpret")

    orig = I._op

    def broken(n, ins, sd):
        y = orig(n, ins, sd)
        return y + 1.0 if n["op"] == "batchnorm2d" else y

    monkeypatch.setattr(I, "_op", broken)
    with pytest.raises(CheckFailed) as ei:
        export(Good(), torch.randn(2, 3, 8, 8), None)
    assert ei.value.first_bad_node == "bn"
    assert "'bn'" in str(ei.value)


def test_gelu_tanh_message():
    m = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.GELU(approximate="tanh"))
    with pytest.raises(UnsupportedOps) as ei:
        export(m, torch.randn(2, 3), None)
    assert len(ei.value.problems) == 1
    assert ei.value.problems[0].module == "1"
    assert "exact (erf)" in ei.value.problems[0].reason


@pytest.mark.parametrize("method", ["export", "fx"])
def test_more_unsupported(method):
    import torch.nn as nn
    import torch.nn.functional as F

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect")
            self.c2 = nn.Conv2d(4, 4, 2, padding="same")
            self.ln = nn.LayerNorm(6)
            self.bn = nn.BatchNorm2d(4, affine=False)
            self.pool = nn.AvgPool2d(2, divisor_override=3)
            self.fc = nn.Linear(4, 2)
            self.pe = nn.Parameter(torch.zeros(1, 4, 1, 1))

        def forward(self, x):
            x = self.c2(self.c1(x))
            x = self.ln(x)  # over W of NCHW
            x = self.bn(x)
            x = self.pool(x)
            x = x + self.pe
            x = x.permute(0, 3, 2, 1).permute(0, 3, 2, 1)
            x = x.mean((2, 3))
            return F.dropout(self.fc(x), 0.5)  # training=True by default

    with pytest.raises(UnsupportedOps) as ei:
        export(M(), torch.randn(2, 3, 6, 6), None, method=method)
    reasons = [p.reason for p in ei.value.problems]
    text = "\n".join(p.format() for p in ei.value.problems)
    assert len(reasons) == 9, text
    assert ("padding_mode='reflect'" in text) or ("aten.pad.default in module 'c1'" in text)
    for s in ("padding='same' with an even kernel", "layer norm", "affine=False",
              "divisor_override", "add of", "permute [0, 3, 2, 1]", "training=True"):
        assert s in text, (s, text)
