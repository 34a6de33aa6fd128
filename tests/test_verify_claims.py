"""The claim catalogue end to end: its structure, the quick run (every claim holds and
every negative control is rejected), the power test (every mutated prediction is
rejected), the ``sambias verify`` command and its JSON, and the full catalogue (slow)."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest

from sambias.verify import (Claim, Instance, Limit, NegativeControl, SimSettings, Verdict, catalogue, check_limit,
                            command, get_claim, prediction_mutants, run_claims)
from sambias.verify.claims import SOURCES, claim_rng, safe_check
from sambias.verify.command import SCHEMA, verdicts_document

from test_verify_sim import simulator

REQUIRED = {  # the brief's minimum, by id
    "l1-gd-maxmargin", "l1-l2sam-maxmargin", "l1-linfsam-maxmargin", "gd-depth2-dominant",
    "linfsam-depth2-init-rule", "linfsam-depth2-any-limit", "l2sam-depth2-limit", "l2sam-depth2-amplification",
    "l2sam-depth2-amplification-init", "gd-depth2-points-l1",
}


def test_catalogue_structure():
    claims = catalogue()
    ids = [c.id for c in claims]
    assert len(ids) == len(set(ids)) and REQUIRED <= set(ids)
    for c in claims:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)+", c.id), c.id
        assert c.statement and "\n" not in c.statement and c.latex and c.hypotheses
        assert c.source in SOURCES and c.source != "user"
        assert c.negative_controls, f"{c.id} has no negative control"
        s = c.settings
        assert s.instances >= s.quick_instances >= 1
    assert get_claim("linfsam-deep-init-rule").source == "secondary source"
    with pytest.raises(KeyError):
        get_claim("nope")


# the phases claim's generator bisects the collapse threshold with full flows (minutes on 2 cores)
_COSTLY_GENERATORS = {"l2sam-depth2-phases"}


@pytest.mark.parametrize("claim_id", [
    pytest.param(c.id, marks=pytest.mark.slow) if c.id in _COSTLY_GENERATORS else c.id for c in catalogue()])
def test_generators_are_seeded_and_respect_hypotheses(claim_id):
    for c in [get_claim(claim_id)]:
        a = c.instances(claim_rng(c.id), c.settings.instances)
        b = c.instances(claim_rng(c.id), c.settings.instances)
        assert len(a) == c.settings.instances
        assert [[p.to_dict() for p in i.problems] for i in a] == [[p.to_dict() for p in i.problems] for i in b]
        other = c.instances(claim_rng(c.id, seed=1), c.settings.instances)
        assert [p.to_dict() for i in other for p in i.problems] != [p.to_dict() for i in a for p in i.problems]
        for inst in a:
            assert inst.prediction is not None


def test_claims_are_order_agnostic():
    # the major coordinate is not always first: the generators shuffle coordinates
    majors = set()
    for cid in ("gd-depth2-dominant", "linfsam-depth2-init-rule", "l2sam-depth2-amplification"):
        c = get_claim(cid)
        for inst in c.instances(claim_rng(c.id), c.settings.instances):
            p = inst.problems[0]
            majors.add(int(np.argmax(np.abs(p.X[0]))))
    assert len(majors) >= 3


# quick_results: the quick catalogue, run once per session (tests/conftest.py)


def test_quick_catalogue_holds_and_rejects_every_control(quick_results):
    assert [r.claim.id for r in quick_results] == [c.id for c in catalogue() if c.quick]
    assert len(quick_results) >= len(catalogue()) - 2   # two heavy claims run by id / in full
    for r in quick_results:
        assert r.verdict.holds, f"{r.claim.id}: {r.verdict.reason}"
        assert r.negative_controls_run >= 1
        for ctrl in r.controls:
            assert ctrl.rejected, f"{r.claim.id}: control {ctrl.control.name} not rejected: {ctrl.verdict.reason}"
        assert r.ok and r.instances == len(r.instance_results) >= 1
        assert r.negative_controls == (r.negative_controls_run, r.negative_controls_rejected)


def test_power_every_mutated_prediction_is_rejected(quick_results):
    """Item 6: wrong index, wrong limit, reversed order, wrong target direction -- every
    mutant of every instance's prediction must come out "fails" on the same runs."""
    total = 0
    survivors = []
    kinds = set()
    for r in quick_results:
        for ir in r.instance_results:
            mutants = (r.claim.mutants or prediction_mutants)(ir.instance.prediction, ir.instance)
            assert mutants, f"{r.claim.id}: no mutants for {ir.instance.prediction!r}"
            for name, wrong in mutants:
                kinds.add(name.split("-")[0])
                total += 1
                v = safe_check(r.claim.check, ir.trajectories, wrong)
                if not v.fails:
                    survivors.append(f"{r.claim.id}/{ir.instance.label}/{name}: {v.outcome} ({v.reason})")
    assert not survivors, "\n".join(survivors)
    assert total >= 80
    assert {"wrong", "negated", "zero", "reversed", "rotated", "basis", "first", "item"} <= kinds
    print(f"\n{total} mutants, all rejected")


def test_command_json_and_exit_status(tmp_path, quick_results):
    out, err = io.StringIO(), io.StringIO()
    path = tmp_path / "verdicts.json"
    status = command(["l2sam-depth2-collapse", "l1-gd-maxmargin"], quick=True, json_path=str(path),
                     list_only=False, out=out, err=err, simulate=simulator())
    assert status == 0, out.getvalue() + err.getvalue()
    doc = json.loads(path.read_text())
    assert doc["schema"] == SCHEMA and [c["id"] for c in doc["claims"]] == ["l2sam-depth2-collapse", "l1-gd-maxmargin"]
    for entry in doc["claims"]:
        assert set(entry) >= {"id", "statement", "verdict", "instances", "negative_controls", "evidence"}
        assert entry["verdict"] == "holds" and entry["instances"] >= 2
        assert entry["negative_controls"]["run"] == entry["negative_controls"]["rejected"] >= 1
        assert {"horizon", "precision", "worst_margin"} <= set(entry["evidence"])
    table = out.getvalue()
    assert "l2sam-depth2-collapse" in table and "2/2 claims hold" in table
    # the whole quick catalogue as one document
    doc = verdicts_document(quick_results, quick=True)
    json.dumps(doc, allow_nan=False)
    assert doc["all_hold"]


def test_command_bad_input_and_list(tmp_path):
    err = io.StringIO()
    assert command(["l1-gd-maxmargin", "no-such-claim"], quick=True, json_path=None, list_only=False,
                   out=io.StringIO(), err=err) == 2
    assert err.getvalue().count("\n") == 1 and "no-such-claim" in err.getvalue()
    err = io.StringIO()
    assert command([], quick=True, json_path=str(tmp_path / "missing" / "v.json"), list_only=False,
                   out=io.StringIO(), err=err) == 2
    assert "no such directory" in err.getvalue()
    out = io.StringIO()
    assert command([], quick=False, json_path=None, list_only=True, out=out) == 0
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == len(catalogue()) and all(line.split()[0] in {c.id for c in catalogue()} for line in lines)


def test_command_exit_1_when_a_claim_fails_or_a_control_survives():
    from sambias import Init, Problem

    def gen(rng, n):
        yield Instance((Problem(depth=1, algorithm="gd", X=[[2.0, 1.0]], y=[1], init=Init(scale=0.0)),))

    false = Claim("false-claim", "L = 1 GD tends to e_1", generate=gen, predict=lambda ps: Limit.basis(1, 2),
                  check=lambda trs, lim: check_limit(trs[0], lim),
                  settings=SimSettings(horizon="1e100", instances=1, quick_instances=1))
    powerless = Claim("powerless", "a check that says yes to everything", generate=gen,
                      predict=lambda ps: Limit.basis(0, 2), check=lambda trs, p: Verdict("holds", "yes"),
                      settings=SimSettings(horizon="1e10", instances=1, quick_instances=1),
                      negative_controls=(NegativeControl("anything", "anything at all", lambda inst: inst),))
    out = io.StringIO()
    assert command([], quick=True, json_path=None, list_only=False, out=out, err=io.StringIO(),
                   claims=[false, powerless], simulate=simulator()) == 1
    text = out.getvalue()
    assert "fails" in text and "not rejected" in text


def test_simulator_errors_become_inconclusive():
    def broken(*a, **k):
        raise RuntimeError("integrator exploded\nsecond line")

    [r] = run_claims(["l2sam-depth2-collapse"], quick=True, simulate=broken)
    assert r.verdict.inconclusive and "integrator exploded" in r.instance_results[0].verdict.reason
    assert not r.ok


@pytest.mark.slow
def test_full_catalogue():
    results = run_claims(quick=False, simulate=simulator())
    bad = [f"{r.claim.id}: {r.verdict.outcome} {r.verdict.reason} "
           f"controls {r.negative_controls_rejected}/{r.negative_controls_run}" for r in results if not r.ok]
    assert not bad, "\n".join(bad)
