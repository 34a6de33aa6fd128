"""Sweep throughput: points/s of the l-inf SAM basin sweep on 1 vs 2 local workers.

`python benchmarks/bench_sweep.py [N]` runs N seeded points (default 200) drawn inside the
ranges of examples/linf-basin.sweep.toml (L = 2, d = 3, tau horizon 20, rtol 1e-6) once serially
(`--workers 1`) and once on a pool of 2, checks that both stores hold identical records, and
writes benchmarks/results/sweep.json.  Points/s include the pool's start-up (spawned workers
import numpy/scipy once) but not the up-front validation of the points.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

from sambias.sweep import PoolExecutor, SerialExecutor, Store, load_sweep, run_sweep
from sambias.sweep.spec import Sample

ROOT = Path(__file__).resolve().parent.parent


def main(n: int = 200) -> dict:
    sweep = load_sweep(ROOT / "examples" / "linf-basin.sweep.toml")
    sweep = dataclasses.replace(sweep, sample=Sample(n=n, seed=1))
    out = {"points": n, "horizon": f"{sweep.time} {sweep.horizon}", "rtol": sweep.rtol, "runs": {}}
    records = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, executor in (("workers=1", SerialExecutor()), ("workers=2", PoolExecutor(2))):
            path = Path(tmp) / f"{name}.sqlite"
            cpu = time.process_time()
            result = run_sweep(sweep, path, executor=executor, progress=False)
            with Store.open(path) as store:
                records[name] = store.records()
                compute = sum(t[1] for t in store.timings())
            out["runs"][name] = {"wall_s": round(result.wall_s, 2), "points_per_s": round(result.points_per_s, 4),
                                 "sum_point_wall_s": round(compute, 2),
                                 "parent_cpu_s": round(time.process_time() - cpu, 2)}
            print(f"{name}: {n} points in {result.wall_s:.1f} s = {result.points_per_s:.3f} points/s", flush=True)
    out["identical_records"] = records["workers=1"] == records["workers=2"]
    out["speedup"] = round(out["runs"]["workers=2"]["points_per_s"] / out["runs"]["workers=1"]["points_per_s"], 3)
    print(f"speed-up {out['speedup']}x; identical records: {out['identical_records']}")
    (ROOT / "benchmarks" / "results" / "sweep.json").write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
