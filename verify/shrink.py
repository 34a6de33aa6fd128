"""Counterexamples: search a claim's instances for a failure, then shrink it.

Shrinking is hypothesis-style and greedy: starting from a failing instance it tries
simpler variants -- drop a coordinate, drop an example, round the data, the init and
``rho`` to fewer significant digits, turn equal init layers into a scale -- recomputes the
prediction with the claim's ``predict`` (so the claim is asked about the *new* problem),
and keeps a variant whenever the check still fails.  The result is the smallest failing
instance found, printed as problem files.

>>> import numpy as np
>>> from sambias import Problem, Init
>>> from sambias.verify import Claim, Instance, Limit, check_limit
>>> def gen(rng, n):          # a false claim: GD picks the *smallest* |x_j|
...     for _ in range(n):
...         yield Instance((Problem(depth=2, algorithm="gd", X=[rng.uniform(0.5, 3, 3).tolist()], y=[1],
...                                 init=Init(scale=0.1)),))
>>> bad = Claim("gd-picks-minor", "GD picks argmin |x|", generate=gen,
...             predict=lambda ps: Limit.basis(int(np.argmin(ps[0].X[0])), ps[0].dim),
...             check=lambda trs, lim: check_limit(trs[0], lim, tol=1e-2))
>>> cx = find_counterexample(bad, quick=True)
>>> cx.shrunk.problems[0].dim        # shrunk to two coordinates (one would be argmin = argmax)
2
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .claims import Claim, ClaimResult, Instance, _Runs, check_instance, claim_rng, run_claim
from .verdict import Verdict


@dataclass
class Counterexample:
    """A failing instance of a claim and the smallest failing variant found."""

    claim_id: str
    instance: Instance
    verdict: Verdict
    shrunk: Instance
    shrunk_verdict: Verdict
    steps: list[str] = field(default_factory=list)
    simulations: int = 0

    def describe(self) -> str:
        """Several lines: the verdict and the shrunk instance as problem files."""
        lines = [f"counterexample to {self.claim_id}: {self.shrunk_verdict.reason}",
                 f"  prediction: {_pred(self.shrunk.prediction)}"]
        for i, p in enumerate(self.shrunk.problems):
            lines.append(f"  problem {i + 1} of {len(self.shrunk.problems)}:")
            lines += ["    " + row for row in problem_toml(p).splitlines()]
        if self.steps:
            lines.append(f"  shrunk from {self.instance.label or 'a generated instance'} by: "
                         + "; ".join(self.steps))
        else:
            lines.append(f"  (not shrunk: {self.instance.label or 'as generated'})")
        return "\n".join(lines)


def _pred(prediction: Any) -> str:
    if hasattr(prediction, "describe"):
        return prediction.describe()
    if isinstance(prediction, tuple):
        return "(" + ", ".join(_pred(p) for p in prediction) + ")"
    if hasattr(prediction, "to_dict"):
        return str(prediction.to_dict())
    return repr(prediction)


def problem_toml(p) -> str:
    """A problem as the TOML of a problem file (CONTRACT.md)."""
    def num(v: float) -> str:
        return repr(float(v)) if float(v) != int(v) or abs(v) >= 1e15 else f"{int(v)}.0"

    rows = ", ".join("[" + ", ".join(num(v) for v in r) + "]" for r in p.X)
    out = [f"depth = {p.depth}", f'algorithm = "{p.algorithm}"', f"rho = {num(p.rho)}", f'loss = "{p.loss}"',
           f"X = [{rows}]", "y = [" + ", ".join(str(int(v)) for v in p.y) + "]", "[init]"]
    if p.init.scale is not None:
        out.append(f"scale = {num(p.init.scale)}")
    else:
        out.append("layers = [" + ", ".join("[" + ", ".join(num(v) for v in r) + "]" for r in p.init.layers) + "]")
    return "\n".join(out)


# --- shrinking -------------------------------------------------------------------------------------
def _round_sig(v, digits: int) -> np.ndarray:
    # via decimal text, so that 0.3 stays 0.3 (not 0.30000000000000004)
    return np.array([float(f"{float(a):.{digits}g}") for a in np.ravel(v)]).reshape(np.shape(v))


def _variants(problems: tuple) -> Iterable[tuple[str, Callable[[Any], Any]]]:
    """Simplifications, each a function applied to every problem of an instance."""
    from sambias.problem import Init

    p0 = problems[0]
    d, n = p0.dim, p0.n
    if all(p.dim == d for p in problems) and d > 1:
        for j in range(d):
            def drop_col(p, j=j):
                keep = [k for k in range(p.dim) if k != j]
                init = p.init if p.init.scale is not None else Init(layers=np.array(p.init.layers)[:, keep].tolist())
                return p.replace(X=np.asarray(p.X)[:, keep], init=init)
            yield f"drop coordinate {j}", drop_col
    if all(p.n == n for p in problems) and n > 1:
        for i in range(n):
            def drop_row(p, i=i):
                keep = [k for k in range(p.n) if k != i]
                return p.replace(X=np.asarray(p.X)[keep], y=np.asarray(p.y)[keep])
            yield f"drop example {i}", drop_row
    for digits in (1, 2):
        yield f"data to {digits} significant digit(s)", lambda p, g=digits: p.replace(X=_round_sig(p.X, g))
    for digits in (1, 2):
        def init_round(p, g=digits):
            if p.init.scale is not None:
                return p.replace(init=Init(scale=float(_round_sig([p.init.scale], g)[0])))
            return p.replace(init=Init(layers=_round_sig(np.array(p.init.layers), g).tolist()))
        yield f"init to {digits} significant digit(s)", init_round
    yield "equal layers -> init scale", _layers_to_scale
    for digits in (1, 2):
        yield f"rho to {digits} significant digit(s)", lambda p, g=digits: p.replace(rho=float(_round_sig([p.rho], g)[0]))


def _layers_to_scale(p):
    from sambias.problem import Init

    if p.init.scale is not None:
        return p
    W = np.array(p.init.layers)
    if np.all(W == W.flat[0]):
        return p.replace(init=Init(scale=float(W.flat[0])))
    return p


def _size(inst: Instance) -> tuple:
    """Complexity: dimensions first, then how many significant digits the numbers need."""
    p0 = inst.problems[0]
    digits = 0
    for p in inst.problems:
        nums = list(np.ravel(p.X)) + [p.rho] + ([p.init.scale] if p.init.scale is not None
                                                 else list(np.ravel(p.init.layers)))
        digits += sum(_digits(v) for v in nums)
        digits += 0 if p.init.scale is not None else 1
    return (p0.dim, p0.n, digits)


def _digits(v: float) -> int:
    v = float(v)
    for g in range(1, 17):
        if v == 0 or abs(_round_sig([v], g)[0] - v) <= 1e-12 * abs(v):
            return g
    return 17


def shrink_instance(claim: Claim, instance: Instance, verdict: Verdict, *, quick: bool = True,
                    simulate: Callable | None = None, budget: int = 60,
                    _runs: _Runs | None = None) -> tuple[Instance, Verdict, list[str], int]:
    """Greedily simplify a failing instance while the check still fails.

    Needs ``claim.predict`` (the prediction must be recomputed for each simpler problem);
    without it the instance is returned as is.  ``budget`` caps the simulations.
    Returns ``(instance, verdict, steps, simulations)``."""
    from sambias.errors import ProblemError

    runs = _runs or _Runs(simulate)
    if claim.predict is None:
        return instance, verdict, [], 0
    best, best_v, steps, sims = instance, verdict, [], 0
    improved = True
    while improved and sims < budget:
        improved = False
        for name, f in _variants(best.problems):
            try:
                problems = tuple(f(p) for p in best.problems)
            except (ProblemError, ValueError):
                continue
            cand = Instance(problems, None, best.label)
            if _size(cand) >= _size(best):
                continue
            if claim.admissible is not None and not claim.admissible(problems):
                continue
            try:
                cand = claim.complete(cand)
            except (ValueError, ProblemError):
                continue  # the simpler problem leaves the claim's hypotheses
            before = len(runs.cache)
            res = check_instance(claim, cand, runs, quick)
            sims += len(runs.cache) - before
            if res.verdict.fails:
                best, best_v = cand, res.verdict
                steps.append(name)
                improved = True
                break
            if sims >= budget:
                break
    return best, best_v, steps, sims


def find_counterexample(claim: Claim, *, quick: bool = True, simulate: Callable | None = None,
                        seeds: Sequence[int] = (0, 1, 2), instances_per_seed: int | None = None,
                        shrink: bool = True, budget: int = 60) -> Counterexample | None:
    """Search the claim's generator (several seeds) for an instance whose check fails,
    then shrink the smallest one found; ``None`` when every instance holds or is
    inconclusive."""
    runs = _Runs(simulate)
    n = instances_per_seed or claim.settings.instances_for(quick)
    failures = []
    for seed in seeds:
        for inst in claim.instances(claim_rng(claim.id, seed), n):
            res = check_instance(claim, inst, runs, quick)
            if res.verdict.fails:
                failures.append((inst, res.verdict))
        if failures:
            break
    if not failures:
        return None
    return _counterexample(claim, failures, quick=quick, runs=runs, shrink=shrink, budget=budget)


def _counterexample(claim: Claim, failures: list[tuple[Instance, Verdict]], *, quick: bool, runs: _Runs,
                    shrink: bool, budget: int) -> Counterexample:
    inst, v = min(failures, key=lambda f: _size(f[0]))
    if shrink:
        small, sv, steps, sims = shrink_instance(claim, inst, v, quick=quick, budget=budget, _runs=runs)
    else:
        small, sv, steps, sims = inst, v, [], 0
    return Counterexample(claim.id, inst, v, small, sv, steps, sims)


class ClaimFailed(AssertionError):
    """A claim did not hold (or a negative control was not rejected); the message holds
    the verdict and the smallest counterexample found."""

    def __init__(self, message: str, result: ClaimResult, counterexample: Counterexample | None = None):
        super().__init__(message)
        self.result = result
        self.counterexample = counterexample


def assert_claim(claim: Claim, *, quick: bool = True, simulate: Callable | None = None, seed: int = 0,
                 shrink: bool = True, allow_inconclusive: bool = False, controls: bool = True,
                 budget: int = 60) -> ClaimResult:
    """Check a claim; raise :class:`ClaimFailed` with the smallest counterexample found
    when it fails (or is inconclusive, unless ``allow_inconclusive``), when a rival is
    not separated from it and rejected, or when one of its negative controls is not
    rejected.  Returns the :class:`ClaimResult` otherwise."""
    runs = _Runs(simulate)
    res = run_claim(claim, quick=quick, seed=seed, controls=controls, _runs=runs)
    if res.verdict.fails:
        failures = [(r.instance, r.verdict) for r in res.instance_results if r.verdict.fails]
        cx = _counterexample(claim, failures, quick=quick, runs=runs, shrink=shrink, budget=budget)
        raise ClaimFailed(f"claim {claim.id!r} fails on {len(failures)} of {res.instances} instance(s)\n"
                          + cx.describe(), res, cx)
    standing = [r for r in res.rivals if not r.rejected]
    if standing and not res.verdict.fails:
        raise ClaimFailed(f"claim {claim.id!r}: {res.verdict.reason if res.verdict.inconclusive else ''} -- "
                          "rival(s) left standing: "
                          + "; ".join(f"{r.rival.name} (separated on {r.separated}, rejected on {r.rejected_on} "
                                      f"of {len(r.outcomes)} instance(s))" for r in standing)
                          + "; add instances where the claim and the rival disagree", res)
    if res.verdict.inconclusive and not allow_inconclusive:
        bad = [r for r in res.instance_results if r.verdict.inconclusive]
        raise ClaimFailed(f"claim {claim.id!r} is inconclusive on {len(bad)} of {res.instances} instance(s): "
                          f"{bad[0].verdict.reason}\n  (a longer horizon may decide it; "
                          f"or pass allow_inconclusive=True)", res)
    missed = [c for c in res.controls if not c.rejected]
    if missed:
        raise ClaimFailed(f"claim {claim.id!r}: negative control(s) not rejected -- the check cannot tell them "
                          f"apart: " + "; ".join(f"{c.control.name} ({c.verdict.outcome}: {c.verdict.reason})"
                                                 for c in missed), res)
    return res
