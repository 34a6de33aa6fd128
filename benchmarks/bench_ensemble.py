"""Ensembles: instances/s of the l-inf SAM L = 2 basin grid to t = 1e400 (issue 11.3).

`python benchmarks/bench_ensemble.py [--quick]` builds basin grids (x = linspace(3, 0.5, d),
rho = 0.5, layer 1 = (a, b, 0.3, ...), layer 2 = (0.5, 0.5, 0.3, ...), (a, b) on a square grid
over [0.05, 1.45]^2 that avoids the predicted boundaries a = 0.5, b = 0.5) for B = 100 and
1000 instances and d = 4 and 16, and measures in the same run:

* the ensemble (`simulate_ensemble`) wall time and instances/s per grid;
* one-by-one `simulate` on a seeded subset of each grid (same instances): per-instance time
  and the ratio one-by-one / ensemble per instance;
* agreement on that subset (`disagreements(single, batch) == []`: status, direction to 1e-6,
  tau at the horizon to 1e-5 relative, leader sequence and switch times) and, on the whole
  grid, the observed limit (direction within 1e-2 of a basis vector, or collapse) against
  THEORY's prediction (`sweep.predict.linf_basin`): matches, contradictions, and undecided
  points (direction not yet within 1e-2 of e_k at t = 1e400, e.g. both coordinates growing).

Writes benchmarks/results/ensemble.json.  The machine may be shared: compare the ratios.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from sambias import Init, Problem
from sambias.flows import simulate
from sambias.flows.ensemble import disagreements, simulate_ensemble
from sambias.sweep.predict import linf_basin
from sambias.sweep.record import judge, limit_index

ROOT = Path(__file__).resolve().parent.parent
HORIZON = "1e400"


def basin_grid(count: int, d: int) -> list[Problem]:
    side = int(round(count ** 0.5))
    grid = np.linspace(0.05, 1.45, side)
    x = np.linspace(3.0, 0.5, d).tolist()
    out = []
    for a in grid:
        for b in grid:
            u = [float(a), float(b)] + [0.3] * (d - 2)
            v = [0.5, 0.5] + [0.3] * (d - 2)
            out.append(Problem(depth=2, algorithm="linf-sam", rho=0.5, X=[x], y=[1], init=Init(layers=[u, v])))
    return out


def run(count: int, d: int, n_single: int, seed: int = 0) -> dict:
    ps = basin_grid(count, d)
    simulate_ensemble(ps[:2], HORIZON)                     # kernels generated and warm
    start = time.perf_counter()
    batch = simulate_ensemble(ps, HORIZON)
    wall = time.perf_counter() - start
    paths = [t.stats["ensemble"]["path"] for t in batch]
    observed = [limit_index(t.direction_final, t.beta_collapsed, 1e-2) for t in batch]
    predicted = [linf_basin(p) for p in ps]
    verdicts = [judge(p, o) for p, o in zip(predicted, observed)]
    pick = np.random.default_rng(seed).choice(len(ps), size=min(n_single, len(ps)), replace=False)
    start = time.perf_counter()
    single = [simulate(ps[i], HORIZON) for i in pick]
    wall_single = time.perf_counter() - start
    diffs = [disagreements(s, batch[i]) for s, i in zip(single, pick)]
    per_single = wall_single / len(pick)
    per_batch = wall / len(ps)
    out = {
        "instances": len(ps), "d": d, "horizon": HORIZON,
        "ensemble_wall_s": round(wall, 3), "instances_per_s": round(len(ps) / wall, 2),
        "batch_path": paths.count("batch"), "handed_to_single": paths.count("single"),
        "single_subset": int(len(pick)), "single_s_per_instance": round(per_single, 4),
        "ratio_single_over_ensemble": round(per_single / per_batch, 1),
        "agree_with_single": sum(not x for x in diffs), "disagreements": [x for x in diffs if x][:5],
        "limit_matches_prediction": verdicts.count(True), "limit_contradicts_prediction": verdicts.count(False),
        "limit_undecided": verdicts.count(None),
        # how far past THEORY's boundary the predicted winner started, where the observation
        # contradicts the prediction (a slow grower still behind at t = 1e400 sits near 0)
        "contradiction_max_excess": max((float(np.sum(ps[i].initial_weights()[:, predicted[i]]) - 2 * ps[i].rho)
                                         for i, v in enumerate(verdicts) if v is False), default=None),
        "max_steps": int(max(t.stats["steps"] for t in batch)),
    }
    print(f"B = {len(ps):5d}, d = {d:2d}: ensemble {wall:7.2f} s = {len(ps) / wall:8.1f} instances/s; "
          f"one by one {per_single:.3f} s/instance (x{out['ratio_single_over_ensemble']}); "
          f"agree {out['agree_with_single']}/{len(pick)}; limit = prediction "
          f"{out['limit_matches_prediction']}, contradicts {out['limit_contradicts_prediction']}, undecided "
          f"{out['limit_undecided']} (contradictions start <= {out['contradiction_max_excess']} past the boundary); "
          f"handed over {out['handed_to_single']}", flush=True)
    return out


def main(quick: bool = False) -> dict:
    sizes = [(100, 4), (100, 16)] if quick else [(100, 4), (1000, 4), (100, 16), (1000, 16)]
    results = {"runs": [run(count, d, n_single=5 if quick else 20) for count, d in sizes]}
    if not quick:
        (ROOT / "benchmarks" / "results" / "ensemble.json").write_text(json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main(quick="--quick" in sys.argv[1:])
