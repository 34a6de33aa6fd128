"""Shared fixtures of the verify tests: the quick catalogue, run once per session (the
claims, rivals and power tests all judge the same trajectories)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def quick_results():
    from sambias.verify import run_claims
    from test_verify_sim import simulator

    return run_claims(quick=True, simulate=simulator())
