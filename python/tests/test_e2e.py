"""End to end, as a user runs it: `nshap-export` then the Rust `nshap` binary, as real processes.

Needs the built binary: `NSHAP_BIN=target/release/nshap` (`.ci/run` builds it); without it these
tests are skipped with a message (`NSHAP_REQUIRE_BIN=1` makes that a failure, as CI sets).
The GPU half runs wherever the binary finds an adapter (lavapipe in CI, with NSHAP_REQUIRE_GPU=1).
"""

import csv
import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("NSHAP_BIN")
if not BIN or not os.path.exists(BIN):
    if os.environ.get("NSHAP_REQUIRE_BIN") == "1":
        raise RuntimeError(f"NSHAP_REQUIRE_BIN=1 but NSHAP_BIN={BIN!r} is not a built binary")
    pytestmark = pytest.mark.skip(reason="NSHAP_BIN not set: build with cargo build --release -p nshap-cli")

USER_MODEL = '''
import torch
import torch.nn as nn


class Net(nn.Module):
    """A VGG-style net with BatchNorm, Dropout and a concat of two branches."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
            nn.MaxPool2d(2))
        self.left = nn.Sequential(nn.Conv2d(8, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.right = nn.Sequential(nn.Conv2d(8, 4, 1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(nn.Dropout(0.5), nn.Linear(10 * 4, 16), nn.ReLU(),
                                        nn.Dropout(0.5), nn.Linear(16, 10))

    def forward(self, x):
        x = self.features(x)
        x = torch.cat([self.left(x), self.right(x)], dim=1)
        return self.classifier(torch.flatten(self.pool(x), 1))


def make_net():
    """The trained network, as a user's factory would load it."""
    net = Net()
    net.load_state_dict(torch.load("mynet.pt", map_location="cpu"))
    return net
'''


def sh(*args, cwd, check=True, timeout=1200):
    env = dict(os.environ)
    env.setdefault("XDG_RUNTIME_DIR", "/tmp")
    p = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, env=env,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def export_cmd():
    """`nshap-export` as installed, else the module of this checkout."""
    exe = os.path.join(os.path.dirname(sys.executable), "nshap-export")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "nshap_export"]


def train_user_model(path):
    """A few hundred Adam steps on a synthetic task (an image is one of ten fixed patterns plus
    noise; the class is which), so the network's neurons matter for its accuracy."""
    scope = {}
    exec(USER_MODEL, scope)
    torch.manual_seed(0)
    net = scope["Net"]()
    g = torch.Generator().manual_seed(1)
    patterns = torch.randn(10, 3, 16, 16, generator=g)
    y = torch.randint(0, 10, (512,), generator=g)
    x = patterns[y] + 1.5 * torch.randn(512, 3, 16, 16, generator=g)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    for step in range(300):
        batch = torch.randint(0, 448, (64,), generator=g)
        loss = torch.nn.functional.cross_entropy(net(x[batch]), y[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.save(net.state_dict(), path)
    return x[448:], y[448:]


def eval_set(path, shape, n, classes, seed=0):
    g = torch.Generator().manual_seed(seed)
    save_file({"inputs": torch.rand(n, *shape, generator=g),
               "labels": torch.randint(0, classes, (n,), generator=g)}, str(path))


def read_values(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_a_user_made_model_goes_from_module_to_values_with_two_commands(tmp_path):
    (tmp_path / "mynet.py").write_text(USER_MODEL)
    x, y = train_user_model(tmp_path / "mynet.pt")
    save_file({"inputs": x[:48], "labels": y[:48]}, str(tmp_path / "eval.safetensors"))
    # The README's two commands.
    sh(*export_cmd(), "mynet.py:make_net", "--input", "3,16,16", "--out", "mynet", cwd=tmp_path)
    sh(BIN, "run", "--model", "mynet/model.json", "--weights", "mynet/weights.safetensors",
       "--data", "eval.safetensors", "--players", "conv:*", "--method", "permutation",
       "--budget", "400", "--out", "run", cwd=tmp_path)
    rows = read_values(tmp_path / "run" / "values.csv")
    # conv:* = every conv output channel: 8 + 6 + 4
    assert len(rows) == 18
    assert {r["node"] for r in rows} == {"features.0", "left.0", "right.0"}
    values = [float(r["value"]) for r in rows]
    assert sum(1 for v in values if v != 0) >= 9, values
    report = json.load(open(tmp_path / "run" / "report.json"))
    assert report["evaluations"] <= 400, report["evaluations"]


def run_both_backends(tmp_path, model_dir, data, players, extra, codes=(0,)):
    out = {}
    for backend in ("cpu", "gpu"):
        p = sh(BIN, "run", "--model", f"{model_dir}/model.json",
               "--weights", f"{model_dir}/weights.safetensors", "--data", data,
               "--players", players, "--backend", backend, "--seed", "7",
               "--out", f"run_{backend}", *extra, cwd=tmp_path, check=False)
        assert p.returncode in codes, f"exit {p.returncode}\n{p.stdout}\n{p.stderr}"
        out[backend] = read_values(tmp_path / f"run_{backend}" / "values.csv")
    return out


def assert_same_values(runs, rel=1e-3):
    """Both backends give every player the same value (to float error; players whose values
    agree that closely may swap places in values.csv's order)."""
    cpu = {(r["node"], r["index"]): float(r["value"]) for r in runs["cpu"]}
    gpu = {(r["node"], r["index"]): float(r["value"]) for r in runs["gpu"]}
    assert len(cpu) == len(runs["cpu"]) and cpu.keys() == gpu.keys()
    scale = max(abs(v) for v in cpu.values()) or 1.0
    worst = max(abs(cpu[k] - gpu[k]) for k in cpu)
    assert worst <= rel * scale, f"CPU and GPU values differ by {worst} (scale {scale})"


def test_inception_v3_with_all_17216_filters_as_players(tmp_path):
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.inception_v3(weights=None, init_weights=True)
    from nshap_export import export

    export(model, torch.randn(1, 3, 75, 75), str(tmp_path / "inception"))
    eval_set(tmp_path / "eval.safetensors", (3, 75, 75), 2, 1000)
    p = sh(BIN, "inspect", "--model", "inception/model.json",
           "--weights", "inception/weights.safetensors", "--players", "filters", cwd=tmp_path)
    assert "total: 17216 players in 94 layers" in p.stdout, p.stdout[-2000:]
    # Any method needs at least 17,217 masked forward passes of the whole network before every
    # filter has a value (too many for CI); 12 evaluations used to write 17,216 zeros and exit 0.
    # Now the run refuses before any work, naming what it would need. (A run and `nshap report`
    # at 17,216 players: crates/nshap-cli/tests/cli.rs, ninety_four_layers_and_17216_players...)
    for backend in ("cpu", "gpu"):
        p = sh(BIN, "run", "--model", "inception/model.json",
               "--weights", "inception/weights.safetensors", "--data", "eval.safetensors",
               "--players", "filters", "--backend", backend, "--metric", "neg_loss",
               "--method", "tmab", "--top-k", "10", "--budget", "12", "--batch-size", "12",
               "--out", f"run_{backend}", cwd=tmp_path, check=False)
        assert p.returncode == 2, p.stderr
        assert "--budget 12 is too small to give any value: tmab on 17216 players" in p.stderr, \
            p.stderr
        assert "permutation walk of 17217 coalitions" in p.stderr, p.stderr
        assert not (tmp_path / f"run_{backend}").exists()


def test_resnet50_layer4_top_k_on_cpu_and_gpu(tmp_path):
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None)
    from nshap_export import export

    export(model, torch.randn(1, 3, 32, 32), str(tmp_path / "resnet50"))
    eval_set(tmp_path / "eval.safetensors", (3, 32, 32), 4, 1000)
    # Too small a budget is refused before any work: TMAB's walks need far more than 48
    # evaluations before each of the 6144 channels has a value.
    p = sh(BIN, "run", "--model", "resnet50/model.json", "--weights", "resnet50/weights.safetensors",
           "--data", "eval.safetensors", "--players", "layer4.*.conv3", "--method", "tmab",
           "--budget", "48", "--out", "small", cwd=tmp_path, check=False)
    assert p.returncode == 2, p.stderr
    assert "--budget 48 is too small to give any value" in p.stderr, p.stderr
    assert not (tmp_path / "small" / "values.csv").exists()
    # CMCS: one anchor coalition and its 2048 flips give every channel of the last block one
    # sample. The run is not certified (exit 3, said on the console and in report.json), and
    # both backends agree.
    runs = run_both_backends(tmp_path, "resnet50", "eval.safetensors", "layer4.2.conv3",
                             ["--metric", "neg_loss", "--method", "cmcs", "--top-k", "5",
                              "--budget", "2049", "--batch-size", "16"], codes=(3,))
    assert len(runs["cpu"]) == 2048
    assert_same_values(runs)
    assert all(r["samples"] == "1" and r["status"] == "unresolved" for r in runs["cpu"])
    assert "pac80_low" in runs["cpu"][0]
    tops = {}
    for backend in ("cpu", "gpu"):
        report = json.load(open(tmp_path / f"run_{backend}" / "report.json"))
        assert report["evaluations"] <= 2049
        assert report["top_k_resolved"] is False and report["unresolved"] == 2048
        tops[backend] = report["top_k"]
        assert len(tops[backend]) == 5
        assert all(t["node"] == "layer4.2.conv3" for t in tops[backend])
    # Same top values (players whose values agree to float error may swap places).
    cpu = [t["value"] for t in tops["cpu"]]
    gpu = [t["value"] for t in tops["gpu"]]
    scale = max(abs(v) for v in cpu) or 1.0
    assert all(abs(a - b) <= 1e-3 * scale for a, b in zip(cpu, gpu)), (cpu, gpu)
