"""The pytest plugin and user-written claims: the README example passes, a false claim
fails with its smallest counterexample, the plugin imports cheaply, and the verify
modules' docstring examples run."""

from __future__ import annotations

import doctest
import importlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import sambias.flows
from sambias import Init, Problem
from sambias.verify import Claim, Instance, Limit, SimSettings, check_limit
from sambias.verify.shrink import ClaimFailed, assert_claim, find_counterexample, problem_toml

from test_verify_sim import simulator

# The README's example, verbatim (the lead pastes it into README.md).
README_EXAMPLE = '''
# test_my_claims.py -- the sambias pytest plugin provides the `sambias_claim` fixture
import numpy as np
from sambias import Init, Problem
from sambias.verify import Claim, Instance, Limit, check_limit

def instances(rng, n):  # seeded: rng -> n instances (shuffled x, random init scale)
    for _ in range(n):
        x = rng.permutation([3.0, 1.0, 0.5]).tolist()
        yield Instance((Problem(depth=2, algorithm="gd", X=[x], y=[1], init=Init(scale=rng.uniform(0.05, 0.5))),))

def test_gd_depth2_picks_the_largest_coordinate(sambias_claim):
    sambias_claim(Claim("my-gd-depth2", "L = 2 GD: beta/|beta| -> e_argmax|x|", generate=instances,
                        predict=lambda ps: Limit.basis(int(np.argmax(ps[0].X[0])), ps[0].dim),
                        check=lambda trajs, limit: check_limit(trajs[0], limit, tol=1e-2)))
'''

FALSE_CLAIM = README_EXAMPLE.replace("np.argmax(ps[0].X[0])", "np.argmin(ps[0].X[0])").replace(
    "test_gd_depth2_picks_the_largest", "test_gd_depth2_picks_the_smallest")

needs_simulate = pytest.mark.skipif(not hasattr(sambias.flows, "simulate"),
                                    reason="the user-facing plugin runs sambias.flows.simulate")


def run_pytest(tmp_path, source: str, *args: str) -> subprocess.CompletedProcess:
    path = tmp_path / "test_my_claims.py"
    path.write_text(textwrap.dedent(source))
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path), *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)


def test_readme_example_is_at_most_15_lines():
    assert len(README_EXAMPLE.strip().splitlines()) <= 15


@needs_simulate
def test_readme_example_passes_under_pytest(tmp_path):
    res = run_pytest(tmp_path, README_EXAMPLE)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 passed" in res.stdout


@needs_simulate
def test_false_claim_fails_with_a_shrunk_counterexample(tmp_path):
    res = run_pytest(tmp_path, FALSE_CLAIM)
    assert res.returncode == 1, res.stdout + res.stderr
    out = res.stdout
    assert "counterexample to my-gd-depth2" in out
    assert 'algorithm = "gd"' in out and "X = [[" in out and "shrunk from" in out
    assert "Traceback" not in out


def test_plugin_options_are_registered(tmp_path):
    res = subprocess.run([sys.executable, "-m", "pytest", "--help"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert "--sambias-full" in res.stdout and "--sambias-seed" in res.stdout


def test_plugin_imports_cheaply():
    code = ("import sys, sambias.verify.pytest_plugin as p; "
            "heavy = {'scipy', 'hypothesis', 'matplotlib', 'sympy', 'mpmath', 'tqdm'}; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & heavy))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stdout + res.stderr


def gd_instances(rng, n):
    for _ in range(n):
        x = rng.permutation([3.0, 1.0, 0.5]) * rng.uniform(0.8, 1.2)
        yield Instance((Problem(depth=2, algorithm="gd", X=[x.tolist()], y=[1], init=Init(scale=0.1)),))


def wrong_claim(generate=gd_instances) -> Claim:
    return Claim("gd-picks-minor", "L = 2 GD tends to e_argmin|x| (false)", generate=generate,
                 predict=lambda ps: Limit.basis(int(np.argmin(ps[0].X[0])), ps[0].dim),
                 check=lambda trs, lim: check_limit(trs[0], lim, tol=1e-2),
                 settings=SimSettings(horizon="1e400", instances=2, quick_instances=2))


def test_shrinking_finds_a_simpler_counterexample():
    cx = find_counterexample(wrong_claim(), simulate=simulator())
    assert cx is not None and cx.verdict.fails and cx.shrunk_verdict.fails
    small = cx.shrunk.problems[0]
    # two coordinates is the least a counterexample needs (with one, argmin = argmax)
    assert small.dim == 2 and cx.steps
    assert all(len(repr(float(v)).rstrip("0")) <= 4 for v in small.X[0])       # rounded to 1-2 digits
    text = cx.describe()
    assert "counterexample to gd-picks-minor" in text and "[init]" in text
    # the printed problem is a valid problem file
    from sambias.problem import problem_from_dict
    import tomllib
    assert problem_from_dict(tomllib.loads(problem_toml(small))).to_dict() == small.to_dict()


def test_assert_claim_raises_with_counterexample_and_passes_true_claims():
    with pytest.raises(ClaimFailed) as info:
        assert_claim(wrong_claim(), simulate=simulator(), budget=10)
    assert info.value.counterexample is not None and "counterexample" in str(info.value)
    true = Claim("gd-picks-major", "L = 2 GD tends to e_argmax|x|", generate=gd_instances,
                 predict=lambda ps: Limit.basis(int(np.argmax(ps[0].X[0])), ps[0].dim),
                 check=lambda trs, lim: check_limit(trs[0], lim, tol=1e-2),
                 settings=SimSettings(horizon="1e400", quick_instances=2))
    assert assert_claim(true, simulate=simulator()).verdict.holds


@pytest.mark.parametrize("module", ["verdict", "references", "checks", "claims", "catalogue", "command", "shrink",
                                    "power", "__init__", "claims_deep", "claims_discrete", "claims_usam",
                                    "claims_reduced"])
def test_docstring_examples(module):
    if module in ("claims", "command", "shrink", "power", "__init__") and not hasattr(sambias.flows, "simulate"):
        pytest.skip("needs sambias.flows.simulate")
    name = "sambias.verify" if module == "__init__" else f"sambias.verify.{module}"
    mod = importlib.import_module(name)
    failures, tried = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert tried > 0 and failures == 0
