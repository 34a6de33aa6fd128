"""Mutation power as a tool: every wrong rule (the claims' rivals, the named wrong rules of
verify/power.py and the generic per-instance mutants) must be rejected by the claim's
check on the quick catalogue's own runs; ``sambias verify --power`` reports it."""

from __future__ import annotations

import io
import json

import pytest

from sambias.verify import command, get_claim
from sambias.verify.power import PowerRow, format_power, power

from test_verify_sim import simulator


@pytest.fixture(scope="module")
def power_rows(quick_results):
    return power(quick_results)


def test_every_mutant_of_the_quick_catalogue_is_rejected(power_rows, quick_results):
    rows = [r for r in power_rows if r.kind != "code"]    # code mutants: the tests below
    survivors = [f"{r.claim}/{r.mutant} ({r.kind}): separated on {r.separated}, rejected on {r.rejected_on}"
                 for r in rows if not r.rejected]
    assert not survivors, "\n".join(survivors)
    named = [r for r in rows if r.kind != "generic"]
    assert len(named) >= 40 and len(rows) >= 100
    by_claim = {r.claim for r in named}
    assert by_claim == {r.claim.id for r in quick_results}
    print("\n" + format_power(rows))


def test_the_issue_mutants_are_rejected(power_rows):
    """The reviewer's surviving mutants: the max(u, v) > rho growth rule, Cor 3.5 with
    (alpha - rho)^(L-1), USAM's first leader for the normalisation claims."""
    rows = {(r.claim, r.mutant): r for r in power_rows if r.kind != "generic"}
    for key in (("linfsam-depth2-init-rule", "max-rule"), ("linfsam-depth2-any-limit", "max-rule"),
                ("linfsam-deep-init-rule", "exponent-L-1"), ("l2sam-depth2-amplification", "usam"),
                ("l2sam-depth2-amplification-init", "usam")):
        assert rows[key].separated >= 1 and rows[key].rejected, key


def test_power_row_and_format():
    rows = [PowerRow("c", "good", "rival", 2, 1), PowerRow("c", "bad", "wrong rule", 0, 0)]
    text = format_power(rows)
    assert "1/2 rejected" in text and "SURVIVING: bad (not separated)" in text
    assert rows[1].to_dict()["rejected"] is False


def test_verify_power_flag(tmp_path):
    out, path = io.StringIO(), tmp_path / "v.json"
    status = command(["gd-depth2-dominant"], quick=True, json_path=str(path), list_only=False, out=out,
                     err=io.StringIO(), simulate=simulator(), power=True)
    assert status == 0, out.getvalue()
    assert "mutation power" in out.getvalue()
    doc = json.loads(path.read_text())
    assert doc["power"] and all(r["rejected"] for r in doc["power"])
    assert {r["mutant"] for r in doc["power"]} >= {r.name for r in get_claim("gd-depth2-dominant").rivals}


# (d) is decided alone on the planted "major throughout" amplification instance (the
# reversed order passes (a), (b), (c), (e) there); the subset test alone rejects the
# sensitivity claim's "swapped-pairs" control (same counts, wrong pairing).
KILLED = ("amplification-(a)(e)-off", "first-leaders-(i)-off", "first-leaders-(ii)-off", "quasi-norm-p1",
          "amplification-(d)-off", "subset-test-off")


def test_code_mutants_of_the_issue_are_killed(power_rows):
    """Parts of the checks switched off and the quasi-norm with p = 1: each changes some
    verdict of its claim on the quick catalogue's runs."""
    code = {r.mutant: r for r in power_rows if r.kind == "code"}
    assert set(code) >= set(KILLED)
    for name in KILLED:
        assert code[name].separated > 0 and code[name].rejected, name


def test_part_d_and_the_subset_test_each_decide_alone(quick_results):
    """The two parts once never deciding anything: on the planted instances each is the
    part that rejects (evidence ``decided_by`` / the reason names it), so switching it off
    turns a "fails" into "holds"."""
    from sambias.verify import checks as C
    from sambias.verify.claims import safe_check

    by = {r.claim.id: r for r in quick_results}
    amp = by["l2sam-depth2-amplification"]
    (ir,) = [ir for ir in amp.instance_results if "part (d) decides" in ir.instance.label]
    pred = ir.instance.prediction
    assert ir.verdict.holds and not pred.minor_phase
    rev = C.check_amplification(ir.trajectories[0], C.Amplification(pred.first_leader, "major-to-minor", False))
    assert rev.fails and rev.evidence["decided_by"] == "(d)", rev.reason
    sens = by["linfsam-depth-sensitivity"]
    (ctrl,) = [c for c in sens.controls if c.control.name == "swapped-pairs"]
    assert ctrl.instances >= 1 and ctrl.rejected
    assert all("but not at L = 3" in v.reason for v in ctrl.parts)
    # negative control: the true pairing of the same runs holds
    ir = sens.instance_results[0]
    assert safe_check(sens.claim.check, ir.trajectories, "deeper-more-sensitive").holds


def test_a_harmless_code_mutant_survives(quick_results):
    """Negative control of the power tool itself: a 'mutant' that changes nothing must not
    count as killed."""
    from sambias.verify.power import CodeMutant, code_power
    from sambias.verify import checks as C

    noop = CodeMutant("noop", ("gd-depth2-dominant",), lambda: [(C, "check_limit", C.check_limit)])
    (row,) = code_power(quick_results, [noop])
    assert row.separated > 0 and not row.rejected
