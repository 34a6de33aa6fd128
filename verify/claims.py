"""Claims, their instances and negative controls, and the runner that checks them.

A :class:`Claim` is a statement with everything needed to test it: a seeded instance
generator (``rng, n -> [Instance]``; an :class:`Instance` is a few problems plus the
prediction), the check (``trajectories, prediction -> Verdict``), simulation settings
and *negative controls* -- mutated predictions or problems that must come out "fails".
A claim of your own takes a few lines:

>>> import numpy as np
>>> from sambias import Problem, Init
>>> from sambias.verify import Claim, Instance, checks
>>> def gen(rng, n):
...     for _ in range(n):
...         x = rng.uniform(0.5, 3.0, size=3).tolist()
...         yield Instance((Problem(depth=1, algorithm="gd", X=[x], y=[1], init=Init(scale=0.0)),))
>>> mine = Claim("my-l1-gd", "L = 1 GD on one example tends to x / |x|", generate=gen,
...              predict=lambda ps: checks.Limit.direction(ps[0].X[0]),
...              check=lambda trs, lim: checks.check_limit(trs[0], lim),
...              settings=SimSettings(horizon="1e100", quick_horizon="1e100", instances=2))
>>> run_claim(mine, quick=True).verdict.outcome
'holds'
"""

from __future__ import annotations

import json
import math
import sys
import time
import zlib
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .verdict import Verdict, combine, jsonable

SOURCES = ("paper abstract", "secondary source", "derivation in THEORY.md", "known result cited in THEORY.md",
           "user")


@dataclass(frozen=True)
class Instance:
    """One test case: the problems to simulate (one run each) and the prediction the
    check receives (``None``: computed by ``Claim.predict`` from the problems)."""

    problems: tuple[Any, ...]
    prediction: Any = None
    label: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "problems", tuple(self.problems))
        if not self.problems:
            raise ValueError("an Instance needs at least one problem")


@dataclass(frozen=True)
class SimSettings:
    """How the runs of a claim are simulated: ``horizon`` (physical time unless
    ``time="rescaled"``; "1e400" is legal), ``quick_horizon`` for ``--quick``, solver
    tolerance and precision, how many instances to generate in each mode, and an optional
    cap on the integrator's steps (``max_steps``, passed on when set: a guard against a
    run that crawls)."""

    horizon: str = "1e1000"
    quick_horizon: str | None = None
    time: str = "physical"
    precision: str = "float64"
    rtol: float = 1e-9
    instances: int = 6
    quick_instances: int = 2
    max_steps: int | None = None

    def horizon_for(self, quick: bool) -> str:
        return (self.quick_horizon or self.horizon) if quick else self.horizon

    def instances_for(self, quick: bool) -> int:
        return self.quick_instances if quick else self.instances

    def to_dict(self) -> dict[str, Any]:
        return {"horizon": self.horizon, "quick_horizon": self.quick_horizon or self.horizon, "time": self.time,
                "precision": self.precision, "rtol": self.rtol, "instances": self.instances,
                "quick_instances": self.quick_instances, "max_steps": self.max_steps}


@dataclass(frozen=True)
class NegativeControl:
    """A false variant of a claim that the check must reject: ``mutate`` maps an instance
    to a mutated one (another prediction and/or other problems -- e.g. GD instead of
    l2-SAM) or ``None`` when it does not apply to that instance."""

    name: str
    description: str
    mutate: Callable[[Instance], Instance | None]


@dataclass(frozen=True)
class Rival:
    """A competing prediction: ``predict(problems)`` returns a prediction of the claim's
    type (or raises ``ValueError`` where the rival says nothing).  It is checked with the
    claim's own check on the claim's own trajectories; a claim holds only if every rival
    is separated from it (predicts differently) on some instance and rejected there.

    >>> from sambias.verify import checks
    >>> l2 = Rival("l2-target", lambda ps: checks.Limit.direction(ps[0].X[0]), "the L = 1 answer x/|x|")
    >>> l2.name
    'l2-target'
    """

    name: str
    predict: Callable[[tuple[Any, ...]], Any]
    description: str = ""


def same_prediction(a: Any, b: Any) -> bool:
    """Whether two predictions say the same thing (labels ignored; directions within
    1e-9 rad).

    >>> from sambias.verify.checks import Limit
    >>> same_prediction(Limit.basis(0, 2, label="x"), Limit.direction([1.0, 0.0]))
    True
    >>> same_prediction(Limit.basis(0, 2), Limit.zero(2))
    False
    """
    from .checks import Limit

    if isinstance(a, Limit) and isinstance(b, Limit):
        if (a.kind == "zero") != (b.kind == "zero") or a.dim != b.dim:
            return False
        if a.kind == "zero":
            return True
        u, v = np.array(a.vector), np.array(b.vector)
        return float(np.linalg.norm(u - v)) <= 1e-9
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(same_prediction(x, y) for x, y in zip(a, b))
    return a == b


@dataclass(frozen=True)
class Claim:
    """A checkable statement.

    ``generate(rng, n)`` yields up to ``n`` :class:`Instance` s; ``predict(problems)``
    computes a prediction (needed when instances carry none, and for shrinking
    counterexamples); ``check(trajectories, prediction) -> Verdict``.  ``rivals`` are
    competing predictions (:class:`Rival`) the instances must separate and the check
    reject.  ``mutants``
    (``prediction, instance -> [(name, wrong prediction)]``) feeds the power test;
    ``quick`` puts the claim in the ``--quick`` subset; ``admissible(problems)`` (optional)
    says whether problems satisfy the hypotheses -- counterexample shrinking never leaves
    them (``predict`` raising ``ValueError`` counts as inadmissible too).
    """

    id: str
    statement: str
    check: Callable[[Sequence[Any], Any], Verdict]
    generate: Callable[[np.random.Generator, int], Iterable[Instance]]
    predict: Callable[[tuple[Any, ...]], Any] | None = None
    latex: str = ""
    hypotheses: str = ""
    source: str = "user"
    settings: SimSettings = field(default_factory=SimSettings)
    negative_controls: tuple[NegativeControl, ...] = ()
    mutants: Callable[[Any, Instance], list[tuple[str, Any]]] | None = None
    quick: bool = True
    admissible: Callable[[tuple[Any, ...]], bool] | None = None
    rivals: tuple[Rival, ...] = ()

    def __post_init__(self) -> None:
        if not self.id or any(c.isspace() for c in self.id):
            raise ValueError(f"claim id must be a non-empty word, got {self.id!r}")
        if "\n" in self.statement:
            raise ValueError("statement must be one line")
        object.__setattr__(self, "negative_controls", tuple(self.negative_controls))
        object.__setattr__(self, "rivals", tuple(self.rivals))
        names = [r.name for r in self.rivals]
        if len(names) != len(set(names)):
            raise ValueError(f"claim {self.id}: rival names must be distinct, got {names}")

    def instances(self, rng: np.random.Generator, n: int) -> list[Instance]:
        """Up to ``n`` instances, each with its prediction filled in."""
        out = []
        for inst in self.generate(rng, n):
            out.append(self.complete(inst))
            if len(out) >= n:
                break
        return out

    def complete(self, inst: Instance) -> Instance:
        """``inst`` with its prediction (from ``predict`` when it has none)."""
        if inst.prediction is not None:
            return inst
        if self.predict is None:
            raise ValueError(f"claim {self.id}: instance without a prediction and no predict()")
        return replace(inst, prediction=self.predict(inst.problems))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "statement": self.statement, "latex": self.latex, "hypotheses": self.hypotheses,
                "source": self.source, "settings": self.settings.to_dict(),
                "negative_controls": [{"name": c.name, "description": c.description} for c in self.negative_controls],
                "rivals": [{"name": r.name, "description": r.description} for r in self.rivals]}


# --- results -------------------------------------------------------------------------------
@dataclass
class InstanceResult:
    """One instance checked: its verdict and the trajectories it rests on."""

    instance: Instance
    verdict: Verdict
    trajectories: list = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.instance.label, "verdict": self.verdict.outcome, "reason": self.verdict.reason,
                "margin": jsonable(self.verdict.margin),
                "problems": [p.to_dict() for p in self.instance.problems],
                "prediction": _describe(self.instance.prediction),
                "runs": [_run_summary(tr) for tr in self.trajectories],
                "evidence": jsonable(self.verdict.evidence)}


@dataclass
class ControlResult:
    """A negative control over the instances it applies to: each instance's verdict in
    ``parts``; the control is rejected when it applies somewhere and every one of those
    instances comes out "fails" (a control that applies to no instance is an error)."""

    control: NegativeControl
    verdict: Verdict
    instances: int
    parts: list = field(default_factory=list, repr=False)

    @property
    def rejected_instances(self) -> int:
        return sum(v.fails for v in self.parts) if self.parts else int(self.verdict.fails)

    @property
    def rejected(self) -> bool:
        return self.instances > 0 and self.rejected_instances == self.instances

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.control.name, "description": self.control.description, "verdict": self.verdict.outcome,
                "rejected": self.rejected, "instances": self.instances,
                "rejected_instances": self.rejected_instances, "reason": self.verdict.reason}


@dataclass(frozen=True)
class RivalOutcome:
    """A rival on one instance: its prediction, whether it ``disagrees`` with the
    claim's, and -- where it does -- the check's verdict on it (and the claim's)."""

    label: str
    prediction: Any
    disagrees: bool
    verdict: Verdict | None
    claim_outcome: str
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "prediction": _describe(self.prediction), "disagrees": self.disagrees,
                "verdict": None if self.verdict is None else self.verdict.outcome,
                "reason": self.note if self.verdict is None else self.verdict.reason,
                "claim_verdict": self.claim_outcome}


@dataclass
class RivalResult:
    """A rival run through the claim's check on the claim's trajectories.

    ``separated``: instances where it predicts something else; ``rejected_on``: those
    of them where the check says "fails"; the rival is ``rejected`` when that happens at
    least once and it is never accepted where the claim is rejected."""

    rival: Rival
    outcomes: list[RivalOutcome]

    @property
    def separated(self) -> int:
        return sum(o.disagrees for o in self.outcomes)

    @property
    def rejected_on(self) -> int:
        return sum(o.disagrees and o.verdict is not None and o.verdict.fails for o in self.outcomes)

    @property
    def accepted_where_claim_rejected(self) -> int:
        return sum(o.verdict is not None and o.verdict.holds and o.claim_outcome == "fails" for o in self.outcomes)

    @property
    def rejected(self) -> bool:
        return self.rejected_on >= 1 and self.accepted_where_claim_rejected == 0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.rival.name, "description": self.rival.description, "separated": self.separated,
                "rejected_on": self.rejected_on, "rejected": self.rejected,
                "accepted_where_claim_rejected": self.accepted_where_claim_rejected,
                "instances": [o.to_dict() for o in self.outcomes]}


@dataclass
class ClaimResult:
    """A claim checked: the combined ``verdict``, each instance (``instance_results``,
    with their trajectories) and each negative control (``controls``).

    ``instances`` is the number of instances, ``negative_controls`` the pair
    ``(run, rejected)`` counted over (control, instance) pairs, and ``rivals`` each
    rival's result -- the numbers of the ``sambias.verdicts/1`` entry.
    """

    claim: Claim
    verdict: Verdict
    instance_results: list[InstanceResult]
    controls: list[ControlResult]
    quick: bool
    seconds: float
    rivals: list[RivalResult] = field(default_factory=list)

    @property
    def instances(self) -> int:
        return len(self.instance_results)

    @property
    def negative_controls(self) -> tuple[int, int]:
        """``(run, rejected)``."""
        return self.negative_controls_run, self.negative_controls_rejected

    @property
    def negative_controls_run(self) -> int:
        # a control that applies to no instance still counts once, unrejected
        return sum(max(1, c.instances) for c in self.controls)

    @property
    def negative_controls_rejected(self) -> int:
        return sum(c.rejected_instances if c.instances else 0 for c in self.controls)

    @property
    def rivals_summary(self) -> dict[str, int]:
        """``{"run": n, "rejected": k, "separated": m}`` over the claim's rivals."""
        return {"run": len(self.rivals), "rejected": sum(r.rejected for r in self.rivals),
                "separated": sum(r.separated > 0 for r in self.rivals)}

    @property
    def ok(self) -> bool:
        """The claim holds and every negative control was rejected."""
        return (self.verdict.holds and self.negative_controls_rejected == self.negative_controls_run
                and all(r.rejected for r in self.rivals))

    @property
    def worst_margin(self) -> float:
        ms = [r.verdict.margin for r in self.instance_results if not math.isnan(r.verdict.margin)]
        return min(ms) if ms else math.nan

    @property
    def evidence(self) -> dict[str, Any]:
        s = self.claim.settings
        return {"reason": self.verdict.reason, "worst_margin": self.worst_margin,
                "margin_units": "decades of slack of each instance's deciding test (see instances[].evidence)",
                "horizon": s.horizon_for(self.quick), "time": s.time, "precision": s.precision, "rtol": s.rtol,
                "quick": self.quick, "seconds": round(self.seconds, 3),
                "instances": [r.to_dict() for r in self.instance_results],
                "negative_controls": [c.to_dict() for c in self.controls],
                "rivals": [r.to_dict() for r in self.rivals]}

    def to_dict(self) -> dict[str, Any]:
        """The ``sambias.verdicts/1`` entry of CONTRACT.md (plus extra fields)."""
        c = self.claim
        return jsonable({"id": c.id, "statement": c.statement, "verdict": self.verdict.outcome,
                         "instances": self.instances,
                         "negative_controls": {"run": self.negative_controls_run,
                                               "rejected": self.negative_controls_rejected},
                         "rivals": self.rivals_summary,
                         "evidence": self.evidence, "latex": c.latex, "hypotheses": c.hypotheses,
                         "source": c.source})


def _describe(prediction: Any) -> Any:
    if hasattr(prediction, "to_dict"):
        return prediction.to_dict()
    if isinstance(prediction, (list, tuple)):
        return [_describe(p) for p in prediction]
    return jsonable(prediction)


def _run_summary(tr) -> dict[str, Any]:
    d = tr.direction_final
    return {"status": tr.status, "log10_t_final": tr.log10_t_final, "tau_final": tr.tau_final,
            "direction_final": None if d is None else [float(v) for v in d],
            "beta_collapsed": tr.beta_collapsed, "dominant": [s.index for s in tr.dominant],
            "settings": tr.settings}


# --- running --------------------------------------------------------------------------------
class _Runs:
    """Simulations of one ``run_claims`` call, cached by problem and settings (a local
    cache: the runner keeps no global state)."""

    def __init__(self, simulate: Callable | None, bar=None) -> None:
        self.simulate = simulate
        self.cache: dict[str, Any] = {}
        self.bar = bar

    def _sim(self) -> Callable:
        if self.simulate is None:
            import sambias.flows as flows

            self.simulate = getattr(flows, "simulate", None)
            if self.simulate is None:
                from sambias.errors import SimulationError

                raise SimulationError("sambias.flows.simulate is not available")
        return self.simulate

    def run(self, problem, settings: SimSettings, quick: bool):
        horizon = settings.horizon_for(quick)
        key = json.dumps([problem.to_dict(), horizon, settings.time, settings.precision, settings.rtol,
                          settings.max_steps],
                         sort_keys=True)
        if key not in self.cache:
            extra = {} if settings.max_steps is None else {"max_steps": settings.max_steps}
            self.cache[key] = self._sim()(problem, horizon, time=settings.time, precision=settings.precision,
                                          rtol=settings.rtol, **extra)
            if self.bar is not None:
                self.bar.update(1)
        return self.cache[key]


def check_instance(claim: Claim, inst: Instance, runs: _Runs, quick: bool) -> InstanceResult:
    """Simulate an instance's problems and check its prediction (never raises: errors of
    the simulator or the check become an "inconclusive" verdict naming them)."""
    try:
        trajs = [runs.run(p, claim.settings, quick) for p in inst.problems]
    except Exception as exc:  # a simulator error is a finding about the run, not a crash
        return InstanceResult(inst, Verdict("inconclusive", f"simulation error: {_one_line(exc)}"), [])
    return InstanceResult(inst, safe_check(claim.check, trajs, inst.prediction), trajs)


def safe_check(check: Callable, trajs: Sequence, prediction: Any) -> Verdict:
    try:
        v = check(trajs, prediction)
    except Exception as exc:
        return Verdict("inconclusive", f"check raised {type(exc).__name__}: {_one_line(exc)}")
    if not isinstance(v, Verdict):
        return Verdict("inconclusive", f"check returned {type(v).__name__}, not a Verdict")
    return v


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def claim_rng(claim_id: str, seed: int = 0) -> np.random.Generator:
    """The claim's own generator: seeded by its id (and ``seed``), independent of order."""
    return np.random.default_rng([zlib.crc32(claim_id.encode()), int(seed)])


def run_claim(claim: Claim, *, quick: bool = False, simulate: Callable | None = None, seed: int = 0,
              controls: bool = True, progress: bool = False, _runs: _Runs | None = None) -> ClaimResult:
    """Generate the claim's instances (seeded by its id), simulate and check each, then run
    its negative controls on the same instances.  ``simulate`` defaults to
    ``sambias.flows.simulate``."""
    start = time.perf_counter()
    runs = _runs or _Runs(simulate, _bar(progress, claim.id))
    insts = claim.instances(claim_rng(claim.id, seed), claim.settings.instances_for(quick))
    results = [check_instance(claim, inst, runs, quick) for inst in insts]
    verdict = combine([r.verdict for r in results]) if results else Verdict("inconclusive", "no instances")
    verdict = Verdict(verdict.outcome, verdict.reason, verdict.margin,
                      {"counts": verdict.evidence.get("counts", {})})
    ctrl = []
    if controls:
        for nc in claim.negative_controls:
            parts = []
            for inst in insts:
                try:
                    mutated = nc.mutate(inst)
                except Exception as exc:
                    parts.append(Verdict("inconclusive", f"mutation raised {type(exc).__name__}: {_one_line(exc)}"))
                    continue
                if mutated is None:
                    continue
                parts.append(check_instance(claim, claim.complete(mutated), runs, quick).verdict)
            v = combine(parts) if parts else Verdict("inconclusive", "control applies to no instance")
            ctrl.append(ControlResult(nc, v, len(parts), parts))
    rivals = [run_rival(claim, rv, results) for rv in claim.rivals]
    verdict = rival_verdict(verdict, rivals)
    if _runs is None and runs.bar is not None:
        runs.bar.close()
    return ClaimResult(claim, verdict, results, ctrl, quick, time.perf_counter() - start, rivals)


def run_rival(claim: Claim, rival: Rival, results: Sequence[InstanceResult]) -> RivalResult:
    """Check ``rival`` on every instance where it disagrees with the claim, with the
    claim's check on the trajectories already simulated for the claim."""
    out = []
    for r in results:
        inst = r.instance
        try:
            pred = rival.predict(inst.problems)
        except Exception as exc:  # the rival says nothing about this instance
            out.append(RivalOutcome(inst.label, None, False, None, r.verdict.outcome,
                                    f"rival does not apply: {_one_line(exc)}"))
            continue
        if pred is None or same_prediction(pred, inst.prediction):
            out.append(RivalOutcome(inst.label, pred, False, None, r.verdict.outcome, "same prediction as the claim"))
            continue
        if not r.trajectories:
            out.append(RivalOutcome(inst.label, pred, True, Verdict("inconclusive", "no trajectories"),
                                    r.verdict.outcome))
            continue
        out.append(RivalOutcome(inst.label, pred, True, safe_check(claim.check, r.trajectories, pred),
                                r.verdict.outcome))
    return RivalResult(rival, out)


def rival_verdict(verdict: Verdict, rivals: Sequence[RivalResult]) -> Verdict:
    """The claim's verdict given its rivals: "holds" stays only if every rival is
    separated and rejected; else "inconclusive" naming the first rival left standing."""
    ev = {**verdict.evidence, "rivals": {r.rival.name: {"separated": r.separated, "rejected_on": r.rejected_on}
                                         for r in rivals}}
    if verdict.fails:
        beaten = [r.rival.name for r in rivals if r.accepted_where_claim_rejected]
        more = f"; rival(s) {', '.join(beaten)} hold where the claim fails" if beaten else ""
        return Verdict("fails", verdict.reason + more, verdict.margin, ev)
    if not verdict.holds:
        return Verdict(verdict.outcome, verdict.reason, verdict.margin, ev)
    for r in rivals:
        if r.separated == 0:
            return Verdict("inconclusive", f"instances do not separate rival {r.rival.name}", math.nan,
                           {**ev, "decided_by": "rivals"})
        if not r.rejected:
            return Verdict("inconclusive", f"rival {r.rival.name} is not rejected on any of the {r.separated} "
                                           f"instance(s) where it disagrees", math.nan, {**ev, "decided_by": "rivals"})
    return Verdict("holds", verdict.reason, verdict.margin, ev)


def run_claims(ids: Sequence[str] | None = None, quick: bool = False, progress: bool = False, *,
               claims: Sequence[Claim] | None = None, simulate: Callable | None = None,
               seed: int = 0) -> list[ClaimResult]:
    """Check catalogue claims (all by default, or those with the given ``ids``, in the
    catalogue's order unless ids are given); ``quick`` uses the quick horizons and
    instance counts (and only the claims marked quick when no ids are given).
    ``progress`` draws a tqdm bar on stderr.  Unknown ids raise ``KeyError`` naming them.

    >>> [r.verdict.outcome for r in run_claims(["gd-depth2-dominant"], quick=True)]
    ['holds']
    """
    from .catalogue import catalogue

    pool = list(claims) if claims is not None else list(catalogue())
    by_id = {c.id: c for c in pool}
    if ids:
        unknown = [i for i in ids if i not in by_id]
        if unknown:
            raise KeyError(unknown[0])
        chosen = [by_id[i] for i in dict.fromkeys(ids)]
    else:
        chosen = [c for c in pool if c.quick or not quick]
    bar = _bar(progress, "sambias verify")
    runs = _Runs(simulate, bar)
    out = []
    for c in chosen:
        if bar is not None:
            bar.set_description(c.id)
        out.append(run_claim(c, quick=quick, seed=seed, _runs=runs))
    if bar is not None:
        bar.close()
    return out


def _bar(progress: bool, desc: str):
    if not progress:
        return None
    from tqdm import tqdm

    return tqdm(desc=desc, unit="run", file=sys.stderr, leave=False)
