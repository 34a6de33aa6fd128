"""The outcome of one check: a :class:`Verdict`.

>>> v = Verdict("holds", "angle 2e-07 rad <= tol 1e-04", margin=2.7, evidence={"angle": 2e-7})
>>> v.holds, v.to_dict()["outcome"]
(True, 'holds')
>>> combine([v, Verdict("inconclusive", "horizon too short")]).outcome
'inconclusive'
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

OUTCOMES = ("holds", "fails", "inconclusive")


@dataclass(frozen=True)
class Verdict:
    """``outcome`` (``"holds"`` | ``"fails"`` | ``"inconclusive"``), a one-line ``reason``,
    the ``margin`` of the deciding test and the measured ``evidence``.

    ``margin`` is the slack of the test that decided: positive when it holds with room to
    spare, negative when it fails (its units are named in ``evidence["margin_units"]``,
    mostly decades, ``log10(tolerance / measured)``); ``nan`` when no single number
    decided.  ``evidence`` holds the measured numbers, tolerances, precision and horizon.
    """

    outcome: str
    reason: str
    margin: float = math.nan
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")
        if "\n" in self.reason:
            raise ValueError("reason must be one line")
        object.__setattr__(self, "margin", float(self.margin))
        object.__setattr__(self, "evidence", dict(self.evidence))

    @property
    def holds(self) -> bool:
        return self.outcome == "holds"

    @property
    def fails(self) -> bool:
        return self.outcome == "fails"

    @property
    def inconclusive(self) -> bool:
        return self.outcome == "inconclusive"

    def with_evidence(self, **more: Any) -> "Verdict":
        """A copy with more evidence (existing keys are kept unless overwritten)."""
        return Verdict(self.outcome, self.reason, self.margin, {**self.evidence, **more})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (non-finite floats become ``None``)."""
        return {"outcome": self.outcome, "reason": self.reason, "margin": jsonable(self.margin),
                "evidence": jsonable(self.evidence)}


def combine(verdicts: Iterable[Verdict], reason: str | None = None) -> Verdict:
    """Conjunction: fails if any fails, else inconclusive if any is, else holds.

    The margin is the worst (smallest) margin among the deciding verdicts; the reason is
    the deciding verdict's unless ``reason`` is given.
    """
    vs = list(verdicts)
    if not vs:
        return Verdict("inconclusive", reason or "nothing was checked")
    for outcome in ("fails", "inconclusive", "holds"):
        group = [v for v in vs if v.outcome == outcome]
        if group:
            margins = [v.margin for v in group if not math.isnan(v.margin)]
            worst = min(margins) if margins else math.nan
            decider = min(group, key=lambda v: v.margin if not math.isnan(v.margin) else math.inf)
            counts = {o: sum(v.outcome == o for v in vs) for o in OUTCOMES}
            return Verdict(outcome, reason or decider.reason, worst,
                           {"counts": counts, "parts": [v.to_dict() for v in vs]})
    raise AssertionError("unreachable")


def jsonable(obj: Any) -> Any:
    """Turn numpy scalars/arrays, tuples and non-finite floats into plain JSON values."""
    import numpy as np

    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)
