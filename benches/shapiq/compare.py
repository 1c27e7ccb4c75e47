"""nshap's all-values estimators against every Shapley-value approximator in shapiq, on shapiq's
own SOUM games (docs/estimators.md, "Variance reduction").

    pip install shapiq
    python benches/shapiq/compare.py [--seeds 10] [--budget-per-player 20] [--out FILE.md]

For each SOUM family (n = 50 players; shapiq's `SOUM` generator, coefficients uniform in
[-1, 1]) and seed, the exact Shapley values come from the SOUM's terms; every approximator gets
the same budget of evaluations (20 n by default) and the table shows the median over seeds of
the mean squared error. nshap's estimators run through the Rust example
`crates/nshap-estimate/examples/soum_values.rs` on the same games (exported as JSON). Exits 1
when nshap's `regression` is more than 1.2x the best shapiq approximator's median MSE on any
family (the criterion of issue 13).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from importlib.metadata import version

warnings.filterwarnings("ignore")

import shapiq  # noqa: E402
from shapiq_games.synthetic.soum import SOUM  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
N = 50
FAMILIES = [
    ("60 terms of 1-3 members", 60, 1, 3),
    ("100 terms of 1-10 members", 100, 1, 10),
    ("50 terms of 0-50 members (shapiq default sizes)", 50, 0, 50),
]
SHAPIQ = [
    "PermutationSamplingSV",
    "KernelSHAP",
    "kADDSHAP",
    "UnbiasedKernelSHAP",
    "SVARM",
    "StratifiedSamplingSV",
    "OwenSamplingSV",
]
OURS = ["regression", "permutation"]


def soum_terms(game: SOUM) -> list[tuple[list[int], float]]:
    return [
        ([int(i) for i in ug.interaction], float(game.linear_coefficients[k]))
        for k, ug in game.unanimity_games.items()
    ]


def exact_shapley(n: int, terms) -> np.ndarray:
    phi = np.zeros(n)
    for members, a in terms:
        if members:
            phi[members] += a / len(members)
    return phi


def run_ours(games, budget: int) -> dict[str, list[np.ndarray]]:
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp, "in.json"), Path(tmp, "out.json")
        src.write_text(
            json.dumps(
                {
                    "budget": budget,
                    "methods": OURS,
                    "games": [{"n": N, "terms": t} for t in games],
                }
            )
        )
        binary = os.environ.get("NSHAP_SOUM_VALUES")
        cmd = (
            [binary, str(src), str(dst)]
            if binary
            else [
                "cargo", "run", "--quiet", "--release", "-p", "nshap-estimate",
                "--example", "soum_values", "--", str(src), str(dst),
            ]
        )
        subprocess.run(cmd, check=True, cwd=ROOT)
        out = json.loads(dst.read_text())
    return {k: [np.array(v) for v in rows] for k, rows in out.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--budget-per-player", type=int, default=20)
    ap.add_argument("--out", type=Path, help="also write the table to this markdown file")
    args = ap.parse_args()
    budget = args.budget_per_player * N
    lines = [
        f"n = {N}, budget = {budget} evaluations, {args.seeds} seeds, shapiq {version('shapiq')}; "
        "median MSE over seeds (ratio to the best shapiq approximator)",
        "",
        "| SOUM family | " + " | ".join(["nshap " + m for m in OURS] + SHAPIQ) + " |",
        "|---|" + "---|" * (len(OURS) + len(SHAPIQ)),
    ]
    failed = False
    started = time.time()
    for name, n_basis, lo, hi in FAMILIES:
        games = [
            SOUM(N, n_basis, min_interaction_size=lo, max_interaction_size=hi, random_state=s)
            for s in range(args.seeds)
        ]
        terms = [soum_terms(g) for g in games]
        truth = [exact_shapley(N, t) for t in terms]
        mse: dict[str, list[float]] = {}
        for method, rows in run_ours(terms, budget).items():
            mse["nshap " + method] = [float(np.mean((r - t) ** 2)) for r, t in zip(rows, truth)]
        for cls_name in SHAPIQ:
            errs = []
            for seed, (game, phi) in enumerate(zip(games, truth)):
                approx = getattr(shapiq, cls_name)
                kwargs = {"max_order": 2} if cls_name == "kADDSHAP" else {}
                values = approx(n=N, random_state=seed, **kwargs).approximate(budget=budget, game=game)
                est = np.array([values[(i,)] for i in range(N)])
                errs.append(float(np.mean((est - phi) ** 2)))
            mse[cls_name] = errs
        med = {k: float(np.median(v)) for k, v in mse.items()}
        best = min(med[c] for c in SHAPIQ)
        cells = [f"{med[k]:.2e} ({med[k] / best:.2f})" for k in ["nshap " + m for m in OURS] + SHAPIQ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
        if med["nshap regression"] > 1.2 * best:
            failed = True
    lines += ["", f"({time.time() - started:.0f} s)"]
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")
    if failed:
        print("FAIL: nshap regression is above 1.2x the best shapiq approximator", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
