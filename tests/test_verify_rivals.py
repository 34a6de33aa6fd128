"""Rivals (competing predictions), discriminating instances, and verdicts that mean what
they say: a claim holds only when every rival is separated from it and rejected; "fails"
only on contradicting evidence at a converged horizon."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest

from sambias import Init, Problem
from sambias.verify import (Claim, Instance, Limit, NegativeControl, Rival, SimSettings, catalogue, check_limit,
                            claim_rng, run_claim, same_prediction)
from sambias.verify.command import verdicts_document
from sambias.verify.shrink import ClaimFailed, assert_claim

from test_verify_sim import simulator

cat = importlib.import_module("sambias.verify.catalogue")


# --- the rule, on a tiny claim of one's own ------------------------------------------------------
def _gen(rng, n):
    for x in ([2.0, 1.0], [1.0, 3.0])[:n]:
        yield Instance((Problem(depth=1, algorithm="gd", X=[x], y=[1], init=Init(scale=0.0)),))


def _claim(*rivals, **kw) -> Claim:
    return Claim("l1-gd-one-example", "L = 1 GD, one example: beta/|beta| -> x/|x|", generate=_gen,
                 predict=lambda ps: Limit.direction(ps[0].X[0]),
                 check=lambda trs, lim: check_limit(trs[0], lim, tol=1e-3),
                 settings=SimSettings(horizon="1e300", instances=2, quick_instances=2), rivals=rivals, **kw)


def test_rival_separated_and_rejected_keeps_holds():
    major = Rival("major-basis", lambda ps: Limit.basis(int(np.argmax(ps[0].X[0])), 2), "e_argmax")
    r = run_claim(_claim(major), quick=True, simulate=simulator())
    assert r.verdict.holds and r.ok, r.verdict.reason
    [rv] = r.rivals
    assert (rv.separated, rv.rejected_on, rv.rejected) == (2, 2, True)
    assert r.rivals_summary == {"run": 1, "rejected": 1, "separated": 1}
    entry = r.to_dict()
    assert entry["rivals"] == {"run": 1, "rejected": 1, "separated": 1}
    assert entry["evidence"]["rivals"][0]["instances"][0]["verdict"] == "fails"


def test_rival_that_never_disagrees_makes_the_claim_inconclusive():
    twin = Rival("twin", lambda ps: Limit.direction(2.0 * np.asarray(ps[0].X[0])), "the same direction, rescaled")
    r = run_claim(_claim(twin), quick=True, simulate=simulator())
    assert r.verdict.inconclusive and not r.ok
    assert r.verdict.reason == "instances do not separate rival twin"
    assert r.rivals_summary == {"run": 1, "rejected": 0, "separated": 0}


def test_rival_the_check_cannot_reject_makes_the_claim_inconclusive():
    # 1e-5 rad away: the instances separate it, but the check (tol 1e-3) accepts both
    near = Rival("near", lambda ps: Limit.direction(np.asarray(ps[0].X[0]) + [0.0, 1e-5]), "x/|x| nudged")
    r = run_claim(_claim(near), quick=True, simulate=simulator())
    assert r.verdict.inconclusive and "rival near is not rejected" in r.verdict.reason
    assert r.rivals_summary == {"run": 1, "rejected": 0, "separated": 1}
    with pytest.raises(ClaimFailed, match="rival\\(s\\) left standing: near"):
        assert_claim(_claim(near), simulate=simulator())


def test_rival_that_does_not_apply_is_not_separated():
    def only_d3(ps):
        raise ValueError("this rival is about d = 3")

    r = run_claim(_claim(Rival("d3", only_d3)), quick=True, simulate=simulator())
    assert r.verdict.inconclusive and r.rivals[0].outcomes[0].note.startswith("rival does not apply")


def test_rival_names_are_distinct():
    a = Rival("a", lambda ps: None)
    with pytest.raises(ValueError, match="distinct"):
        _claim(a, a)


def test_same_prediction():
    assert same_prediction(Limit.basis(1, 3, label="a"), Limit.direction([0, 1, 0], label="b"))
    assert not same_prediction(Limit.basis(1, 3), Limit.basis(1, 3, sign=-1))
    assert not same_prediction(Limit.zero(3), Limit.basis(0, 3))
    assert same_prediction((Limit.zero(2), "x"), (Limit.zero(2), "x"))
    assert not same_prediction((Limit.zero(2),), (Limit.zero(2), Limit.zero(2)))


def test_controls_count_instances_and_one_that_applies_nowhere_is_an_error():
    shift = NegativeControl("other-basis", "e_argmin", lambda inst: Instance(
        inst.problems, Limit.basis(int(np.argmin(inst.problems[0].X[0])), 2)))
    nowhere = NegativeControl("nowhere", "applies to no instance", lambda inst: None)
    r = run_claim(_claim(negative_controls=(shift,)), quick=True, simulate=simulator())
    assert r.negative_controls == (2, 2) and r.ok
    r = run_claim(_claim(negative_controls=(shift, nowhere)), quick=True, simulate=simulator())
    assert r.negative_controls == (3, 2) and not r.ok
    assert r.controls[1].verdict.reason == "control applies to no instance"


# --- the catalogue: every claim, its rivals separated and rejected on the quick subset ------------
def test_every_builtin_claim_has_at_least_two_rivals():
    for c in catalogue():
        assert len(c.rivals) >= 2, c.id
        assert all(r.description for r in c.rivals), c.id


def test_quick_catalogue_separates_and_rejects_every_rival(quick_results):
    table = []
    for r in quick_results:
        for rv in r.rivals:
            assert rv.separated >= 1, f"{r.claim.id}: no quick instance separates rival {rv.rival.name}"
            assert rv.rejected, (f"{r.claim.id}: rival {rv.rival.name} not rejected: "
                                 f"{[o.to_dict() for o in rv.outcomes]}")
        s = r.rivals_summary
        assert s["run"] == s["separated"] == s["rejected"] >= 2, (r.claim.id, s)
        table.append(f"{r.claim.id}: {s}")
    doc = json.loads(json.dumps(verdicts_document(quick_results), allow_nan=False))
    assert all(set(c["rivals"]) == {"run", "rejected", "separated"} for c in doc["claims"])
    print("\n" + "\n".join(table))


def test_planted_instances_separate_the_issue_rivals():
    """The rules a reviewer slipped in unnoticed: on the quick instances the claim and the
    rival now predict different limits."""
    for cid, rival in (("linfsam-depth2-init-rule", "max-rule"), ("linfsam-deep-init-rule", "exponent-L-1"),
                       ("linfsam-depth2-any-limit", "max-rule"), ("l2sam-depth2-amplification", "usam")):
        c = cat.get_claim(cid)
        rv = next(r for r in c.rivals if r.name == rival)
        insts = c.instances(claim_rng(c.id), c.settings.quick_instances)
        assert any(not same_prediction(rv.predict(i.problems), i.prediction) for i in insts), (cid, rival)


def test_sensitivity_subset_test_is_not_vacuous_on_quick_instances():
    c = cat.get_claim("linfsam-depth-sensitivity")
    insts = c.instances(claim_rng(c.id), c.settings.quick_instances)
    assert len(insts) == 2 and insts[1].problems[0].loss == "logistic"       # the logistic-loss copy
    for inst in insts:
        half = len(inst.problems) // 2
        # some member has no growing major at L = 2 (u_j + v_j = 2 alpha_j <= 2 rho): off the dominant e_k there
        off2 = [cat.C.predict_linf_limit(p).describe() != f"e_{int(np.argmax(p.X[0]))}" for p in inst.problems[:half]]
        assert any(off2)


# --- verdicts that mean what they say ----------------------------------------------------------------
# Six separable examples, d = 4, unbalanced init u = 0.5, v = 0: the l1 max-margin's dual
# slack off its support is ~0.01, so GD at L = 2 approaches it like (log t)^-0.01.
SLOW_X = [[-1.246, -0.079, -1.475, -2.974], [0.83, -2.413, 0.88, -0.248], [2.621, -2.534, 1.239, 3.225],
          [1.232, -0.728, -3.137, -2.108], [0.387, 1.272, -0.734, 1.123], [0.874, -0.162, -1.245, -0.544]]
SLOW_Y = [1, 1, 1, 1, -1, 1]


@pytest.fixture(scope="module")
def slow_gd_run():
    p = Problem(depth=2, algorithm="gd", X=SLOW_X, y=SLOW_Y, init=Init(layers=[[0.5] * 4, [0.0] * 4]))
    return simulator()(p, "1e400")


def test_slow_multi_example_gd_is_inconclusive_not_fails(slow_gd_run):
    tr = slow_gd_run
    ref = cat.l1_max_margin(SLOW_X, SLOW_Y)
    assert ref.unique and cat._l1_dual_slack(SLOW_X, SLOW_Y, ref) < 0.02
    v = cat._check_limit([tr], cat._predict_l1((tr.problem,)))
    assert v.outcome == "inconclusive", v.reason
    assert v.evidence["angle_final"] > 0.1                      # far from the target at t = 1e400 ...
    obj = v.evidence["objective"]                              # ... but still approaching it
    assert obj["approaching"] and 0 < obj["gap_relative"] < 0.01
    assert v.evidence["decided_by"] == "horizon (not converged)" and v.evidence["log10_t_needed"] > 400
    assert "still falling towards" in v.reason


def test_slow_run_still_rejects_wrong_limits(slow_gd_run):
    """Negative controls on the same slow run: the l2 max-margin, far basis vectors and
    0 are contradicted by the evidence there, so "inconclusive" is not a blanket answer."""
    tr = slow_gd_run
    p = tr.problem
    wrong = [cat._rival_l2_mm((p,)), Limit.zero(4)] + [Limit.basis(k, 4, s) for k in range(4) for s in (1, -1)]
    for lim in wrong:
        v = cat._check_limit([tr], lim)
        assert v.fails, f"{lim.describe()}: {v.outcome} ({v.reason})"


def test_plugin_fixture_checks_rivals(sambias_claim):
    major = Rival("major-basis", lambda ps: Limit.basis(int(np.argmax(ps[0].X[0])), 2), "e_argmax")
    res = sambias_claim(_claim(major), simulate=simulator())
    assert res.rivals_summary == {"run": 1, "rejected": 1, "separated": 1}


# --- the logistic loss (issue 8 item 4) ------------------------------------------------------------
# claims whose logistic instances are in the full run only (L >= 3 runs, or outside --quick)
LOGISTIC_FULL_ONLY = {"gd-deep-kkt", "l2sam-deep-kkt", "l2sam-depth2-leader-sequence", "l2sam-depth2-phases"}


def test_every_claim_has_logistic_loss_instances():
    """Every built-in claim should hold for the logistic loss too (exponential tail; one
    example: the normalised/sign perturbation does not involve l'): each has a logistic
    instance in its quick run, or (LOGISTIC_FULL_ONLY) in its full run, and says so."""
    for c in cat.catalogue():
        full_only = c.id in LOGISTIC_FULL_ONLY
        if full_only and c.id in ("l2sam-depth2-leader-sequence", "l2sam-depth2-phases"):
            assert "logistic" in c.hypotheses, c.id     # generating their full sets is slow (bisections)
            continue
        n = c.settings.instances if full_only else c.settings.quick_instances
        insts = c.instances(claim_rng(c.id), n)
        assert any(p.loss == "logistic" for i in insts for p in i.problems), c.id
        assert "logistic" in c.hypotheses, c.id
    # negative control of the test itself: the unwrapped claim has no logistic instance
    insts = cat.GD_DOMINANT.instances(claim_rng("gd-depth2-dominant"), cat.GD_DOMINANT.settings.quick_instances)
    assert not any(p.loss == "logistic" for i in insts for p in i.problems)
