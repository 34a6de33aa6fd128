"""pytest plugin: keep a proof's claims under regression tests.

Registered as the ``sambias`` pytest11 entry point, so every pytest run loads it; it
imports nothing beyond pytest until a fixture is used.

Fixtures:

* ``sambias_claim`` -- call it with a :class:`~sambias.verify.Claim`; the claim is
  checked (quick horizons and instance counts unless ``--sambias-full``), its negative
  controls must be rejected, each of its rivals (``Claim(rivals=(Rival(name, predict),))``)
  must be separated from it on some instance and rejected there, and a failure prints
  the verdict and the smallest counterexample found (shrunk: fewer coordinates/examples,
  rounder numbers)::

      def test_mine(sambias_claim):
          sambias_claim(Claim("my-claim", "one line", generate=gen, predict=pred, check=chk))

* ``sambias_simulate`` -- the integrator the claims use (``sambias.flows.simulate``).

Options: ``--sambias-full`` (full horizons and instance counts), ``--sambias-seed N``
(another draw of the instances), ``--sambias-no-shrink``.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser) -> None:
    group = parser.getgroup("sambias", "sambias claim checks")
    group.addoption("--sambias-full", action="store_true", default=False,
                    help="check claims with their full horizons and instance counts (default: quick)")
    group.addoption("--sambias-seed", type=int, default=0, metavar="N",
                    help="seed for the claims' instance generators (default 0)")
    group.addoption("--sambias-no-shrink", action="store_true", default=False,
                    help="report failing instances as found, without shrinking them")


@pytest.fixture
def sambias_simulate():
    """The integrator claims are checked with (``sambias.flows.simulate``)."""
    import sambias.flows as flows

    sim = getattr(flows, "simulate", None)
    if sim is None:
        pytest.skip("sambias.flows.simulate is not available")
    return sim


@pytest.fixture
def sambias_claim(request):
    """Check a claim: ``sambias_claim(claim, quick=None, allow_inconclusive=False,
    controls=True, simulate=None)`` returns its ``ClaimResult`` or fails the test with the
    smallest counterexample found."""
    config = request.config
    full = config.getoption("sambias_full")
    seed = config.getoption("sambias_seed")
    shrink = not config.getoption("sambias_no_shrink")

    def check(claim, *, quick: bool | None = None, allow_inconclusive: bool = False, controls: bool = True,
              simulate=None, budget: int = 60):
        from sambias.verify.shrink import ClaimFailed, assert_claim

        try:
            return assert_claim(claim, quick=(not full) if quick is None else quick, simulate=simulate, seed=seed,
                                shrink=shrink, allow_inconclusive=allow_inconclusive, controls=controls,
                                budget=budget)
        except ClaimFailed as exc:
            message = str(exc)
        pytest.fail(message, pytrace=False)  # outside the except: no chained traceback

    return check
