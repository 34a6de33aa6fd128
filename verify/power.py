"""Mutation power: wrong rules run through each claim's check on the claim's own runs.

A sound verifier rejects every plausible wrong variant of a theorem.  For each checked
claim this applies (no new simulations -- the claim's trajectories are reused):

* its rivals (:class:`~sambias.verify.claims.Rival`);
* the wrong rules of :data:`WRONG_RULES` -- threshold, exponent and formula changes a
  careless derivation (or a reviewer mutating the code) would make;
* the generic per-instance mutants of :func:`~sambias.verify.catalogue.prediction_mutants`
  (another basis vector, the negated or rotated target, 0, the reversed order, ...);
* code mutants (:func:`code_mutants`): parts of the checks switched off, a reference
  computed with the wrong exponent -- killed when some verdict of the claim changes (its
  instances', its rivals', the generic mutants' and the negative controls' that reuse the
  claim's runs).

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
    kind: str          # "rival" | "wrong rule" | "generic" | "code" (separated: verdicts compared)
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


# --- code mutants: wrong *code* behind the checks, not wrong predictions --------------------
@dataclass(frozen=True)
class CodeMutant:
    """A deliberate bug in the verifier: ``patch()`` returns the attribute patches
    (``(module, name, replacement)``) that plant it.  It is *killed* when, with the patches
    applied, some verdict on the quick catalogue's own runs changes (a claim's instance, a
    rival's, a generic mutant's or a negative control's on the same runs) -- i.e. the
    catalogue depends on the code it removes."""

    name: str
    claims: tuple[str, ...]
    patch: Any
    description: str = ""


def _drop_part(fn, prefixes: tuple[str, ...]):
    """``fn`` with the parts whose fail reasons start with ``prefixes`` switched off (a
    verdict they decided becomes "holds", as if the part were not there)."""
    from .verdict import Verdict

    def mutated(*a, **kw):
        v = fn(*a, **kw)
        if v.fails and v.reason.startswith(prefixes):
            return Verdict("holds", "[mutant] " + v.reason, 0.0, v.evidence)
        return v
    return mutated


def code_mutants() -> tuple[CodeMutant, ...]:
    """The issue's code mutants: amplification part (d) and the first-leader parts
    (i)/(ii) switched off, the depth-sensitivity subset test off, and the quasi-norm
    reference with p = 1 instead of 2/L."""
    import importlib

    C = importlib.import_module("sambias.verify.checks")
    K = importlib.import_module("sambias.verify.catalogue")
    R = importlib.import_module("sambias.verify.references")
    D = importlib.import_module("sambias.verify.claims_deep")

    def p_one(fn):
        return lambda X, y, depth, **kw: fn(X, y, 2, **kw) if depth >= 3 else fn(X, y, depth, **kw)

    def subset_off(check):
        from .verdict import Verdict

        def mutated(trajs, prediction):
            v = check(trajs, prediction)
            if v.fails and "but not at L = 3" in v.reason:
                return Verdict("holds", "[mutant] " + v.reason, 0.0, v.evidence)
            return v
        return mutated

    return (
        CodeMutant("amplification-(d)-off", ("l2sam-depth2-amplification",),
                   lambda: [(C, "check_amplification", _drop_part(C.check_amplification, ("(d)",)))],
                   "share-peak order (part d) not checked"),
        CodeMutant("amplification-(a)(e)-off", ("l2sam-depth2-amplification",),
                   lambda: [(C, "check_amplification", _drop_part(C.check_amplification, ("(a)", "(e)")))],
                   "first leader and minor phase (parts a, e) not checked"),
        CodeMutant("first-leaders-(i)-off", ("l2sam-depth2-amplification-init",),
                   lambda: [(C, "check_first_leaders", _drop_part(C.check_first_leaders, ("(i)",)))],
                   "per-run first leader (part i) not checked"),
        CodeMutant("first-leaders-(ii)-off", ("l2sam-depth2-amplification-init",),
                   lambda: [(C, "check_first_leaders", _drop_part(C.check_first_leaders, ("(ii)", "(iii)")))],
                   "rank order over the init scales (parts ii, iii) not checked"),
        CodeMutant("subset-test-off", ("linfsam-depth-sensitivity",),
                   lambda: [(K, "_check_sensitivity", subset_off(K._check_sensitivity)), ("check", None, subset_off)],
                   "the depth-sensitivity subset test not applied"),
        CodeMutant("quasi-norm-p1", ("gd-deep-kkt", "l2sam-deep-kkt"),
                   lambda: [(R, "quasi_norm_argmin", p_one(R.quasi_norm_argmin)),
                            (D, "quasi_norm_argmin", p_one(D.quasi_norm_argmin))],
                   "the global minimiser of |beta|_(2/L) computed with p = 1"),
    )


def _outcomes(res, check, generic: bool) -> list[str]:
    """Every verdict the power test reads off one claim's runs, in a fixed order."""
    from .catalogue import prediction_mutants

    out = []
    for ir in res.instance_results:
        if not ir.trajectories:
            continue
        out.append(safe_check(check, ir.trajectories, ir.instance.prediction).outcome)
        for rv in res.claim.rivals:
            try:
                pred = rv.predict(ir.instance.problems)
            except Exception:
                out.append("n/a")
                continue
            out.append(safe_check(check, ir.trajectories, pred).outcome)
        if generic:
            for _, wrong in (res.claim.mutants or prediction_mutants)(ir.instance.prediction, ir.instance):
                out.append(safe_check(check, ir.trajectories, wrong).outcome)
        out += _control_outcomes(res, ir, check)
    return out


def _control_outcomes(res, ir, check) -> list[str]:
    """The verdicts of the claim's negative controls on one instance, for the controls
    that need no new simulation: those whose mutated problems are all among the
    instance's own (another prediction, or the same runs regrouped).  A control that
    simulates other problems (GD instead of SAM) is left out: its runs are not kept."""
    import json

    runs = {json.dumps(p.to_dict(), sort_keys=True): tr for p, tr in zip(ir.instance.problems, ir.trajectories)}
    out = []
    for nc in res.claim.negative_controls:
        try:
            mutated = nc.mutate(ir.instance)
            if mutated is None:
                continue
            mutated = res.claim.complete(mutated)
            trajs = [runs.get(json.dumps(p.to_dict(), sort_keys=True)) for p in mutated.problems]
        except Exception:
            out.append("n/a")
            continue
        if any(t is None for t in trajs):
            continue
        out.append(safe_check(check, trajs, mutated.prediction).outcome)
    return out


def code_power(results: Sequence, mutants: Sequence[CodeMutant] | None = None) -> list[PowerRow]:
    """Each code mutant against the claims it targets (those in ``results``): killed
    (``rejected_on`` = number of verdicts that changed) or surviving."""
    rows = []
    by = {r.claim.id: r for r in results}
    for m in (code_mutants() if mutants is None else mutants):
        for cid in m.claims:
            res = by.get(cid)
            if res is None:
                continue
            base = _outcomes(res, res.claim.check, True)
            patches = m.patch()
            saved = [(mod, name, getattr(mod, name)) for mod, name, _ in patches if mod != "check"]
            wrap = [new for mod, _, new in patches if mod == "check"]
            check = wrap[0](res.claim.check) if wrap else res.claim.check
            try:
                for mod, name, new in patches:
                    if mod != "check":
                        setattr(mod, name, new)
                after = _outcomes(res, check, True)
            finally:
                for mod, name, old in saved:
                    setattr(mod, name, old)
            changed = sum(a != b for a, b in zip(base, after))
            rows.append(PowerRow(cid, m.name, "code", len(base), changed))
    return rows


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
    return rows + code_power(results)


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
