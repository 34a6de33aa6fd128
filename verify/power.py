"""Mutation power: wrong rules run through each claim's check on the claim's own runs.

A sound verifier rejects every plausible wrong variant of a theorem.  For each checked
claim this applies (no new simulations -- the claim's trajectories are reused):

* its rivals (:class:`~sambias.verify.claims.Rival`);
* the wrong rules of :data:`WRONG_RULES` -- threshold, exponent and formula changes a
  careless derivation (or a reviewer mutating the code) would make;
* the generic per-instance mutants of :func:`~sambias.verify.catalogue.prediction_mutants`
  (another basis vector, the negated or rotated target, 0, the reversed order, ...).

A mutant is *rejected* when the check says "fails" on at least one instance where it
disagrees with the claim (a mutant that never disagrees is reported as not separated:
the instances cannot tell it apart).  ``sambias verify --power`` prints the table.

>>> from sambias.verify import run_claims
>>> rows = power(run_claims(["gd-depth2-dominant"], quick=True))
>>> all(r.rejected for r in rows), len(rows) >= 4
(True, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .claims import Rival, run_rival, safe_check, same_prediction


@dataclass(frozen=True)
class PowerRow:
    """One wrong rule against one claim: instances where it disagrees with the claim
    (``separated``) and where the check rejected it (``rejected_on``)."""

    claim: str
    mutant: str
    kind: str          # "rival" | "wrong rule" | "generic"
    separated: int
    rejected_on: int

    @property
    def rejected(self) -> bool:
        return self.rejected_on >= 1

    def to_dict(self) -> dict[str, Any]:
        return {"claim": self.claim, "mutant": self.mutant, "kind": self.kind, "separated": self.separated,
                "rejected_on": self.rejected_on, "rejected": self.rejected}


def _wrong_rules() -> dict[str, tuple[Rival, ...]]:
    """Wrong rules per claim id (beyond the claims' rivals)."""
    import importlib

    K = importlib.import_module("sambias.verify.catalogue")
    from . import checks as C

    def linf_threshold(factor: float):
        def predict(ps):
            p = ps[0]
            C.predict_linf_limit(p)
            grows = p.initial_weights().sum(axis=0) > factor * p.rho
            if not grows.any():
                return C.Limit.zero(p.dim)
            ax = np.abs(p.X[0])
            return C.Limit.basis(int(np.flatnonzero(grows)[np.argmax(ax[grows])]), p.dim)
        return predict

    def deep_exponent(e: int):
        def predict(ps):
            p = ps[0]
            base = C.predict_linf_limit(p)
            alpha, rho = p.initial_weights()[0], p.rho
            if not (alpha > rho).any():
                return base
            score = np.where(alpha > rho, np.abs(p.X[0]) * np.abs(alpha - rho) ** (p.depth - 2 + e), -np.inf)
            return C.Limit.basis(int(np.argmax(score)), p.dim)
        return predict

    def first_leader_rho(factor: float):
        def predict(ps):
            p = ps[0]
            k = C.predict_first_leader(p, rho=factor * p.rho)
            major = int(np.argmax(np.abs(p.X[0])))
            return C.Amplification(k, "minor-to-major", k != major)
        return predict

    def second_largest(ps):
        p = ps[0]
        u = K._rival_l1_mm(ps).target()
        k = int(np.argsort(-np.abs(u))[1])
        return C.Limit.basis(k, p.dim, np.sign(u[k]) or 1.0)

    linf = (Rival("threshold-rho", linf_threshold(1.0), "j grows iff u_j + v_j > rho"),
            Rival("threshold-3rho", linf_threshold(3.0), "j grows iff u_j + v_j > 3 rho"),
            Rival("max-rule", K._linf_depth2_variant("max"), "max(u_j, v_j) > rho"))
    return {
        "linfsam-depth2-init-rule": linf,
        "linfsam-depth2-any-limit": tuple(Rival(r.name, K._each(r.predict), r.description) for r in linf),
        "linfsam-deep-init-rule": (Rival("exponent-L", deep_exponent(2), "(alpha_j - rho)^L"),
                                   Rival("exponent-L-1", deep_exponent(1), "(alpha_j - rho)^(L-1)")),
        "l2sam-depth2-amplification": (Rival("rho-doubled", first_leader_rho(2.0), "1 - 2 rho |x_j| / N0"),
                                       Rival("rho-halved", first_leader_rho(0.5), "1 - rho |x_j| / (2 N0)")),
        "l2sam-depth2-limit": (Rival("second-largest", second_largest, "the l1 max-margin's second coordinate"),),
        "gd-depth2-points-l1": (Rival("second-largest", second_largest, "the l1 max-margin's second coordinate"),),
    }


def power(results: Sequence, *, generic: bool = True) -> list[PowerRow]:
    """Every mutant of every claim in ``results`` (``ClaimResult`` s), checked on the
    claim's own trajectories."""
    from .catalogue import prediction_mutants

    rules = _wrong_rules()
    rows: list[PowerRow] = []
    for res in results:
        cid = res.claim.id
        named = [("rival", rv) for rv in res.claim.rivals] + [("wrong rule", rv) for rv in rules.get(cid, ())]
        for kind, rv in named:
            rr = run_rival(res.claim, rv, res.instance_results)
            rows.append(PowerRow(cid, rv.name, kind, rr.separated, rr.rejected_on))
        if not generic:
            continue
        tally: dict[str, list[int]] = {}
        for ir in res.instance_results:
            if not ir.trajectories:
                continue
            mutants = (res.claim.mutants or prediction_mutants)(ir.instance.prediction, ir.instance)
            for name, wrong in mutants:
                t = tally.setdefault(name, [0, 0])
                if same_prediction(wrong, ir.instance.prediction):
                    continue
                t[0] += 1
                t[1] += safe_check(res.claim.check, ir.trajectories, wrong).fails
        rows += [PowerRow(cid, name, "generic", s, k) for name, (s, k) in tally.items()]
    return rows


def format_power(rows: Sequence[PowerRow]) -> str:
    """Per claim: mutants rejected / run and the survivors by name."""
    lines = ["mutation power (wrong rules checked on the claims' own runs)"]
    by: dict[str, list[PowerRow]] = {}
    for r in rows:
        by.setdefault(r.claim, []).append(r)
    width = max((len(c) for c in by), default=5)
    for cid, rs in by.items():
        ok = sum(r.rejected for r in rs)
        named = [r for r in rs if r.kind != "generic"]
        survivors = [f"{r.mutant} ({'not separated' if not r.separated else 'accepted'})" for r in rs
                     if not r.rejected]
        lines.append(f"  {cid:<{width}}  {ok}/{len(rs)} rejected ({sum(r.rejected for r in named)}/{len(named)} "
                     f"named)" + (f"; SURVIVING: {', '.join(survivors)}" if survivors else ""))
    total = sum(r.rejected for r in rows)
    lines.append(f"{total}/{len(rows)} mutants rejected")
    return "\n".join(lines)


mutation_power = power  # the package-level name (``sambias.verify.power`` is this module)
