"""Verification: reference solutions, checks on trajectories, the claim catalogue, the
``sambias verify`` command and the pytest plugin.

Names are loaded on first use, so that importing this package (which every pytest run
does, through the plugin) stays cheap.

>>> from sambias.verify import catalogue, run_claims
>>> [r.verdict.outcome for r in run_claims(["l1-gd-maxmargin"], quick=True)]
['holds']
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_EXPORTS = {
    # data classes and the catalogue
    "Claim": "claims", "Instance": "claims", "SimSettings": "claims", "NegativeControl": "claims",
    "Rival": "claims", "RivalResult": "claims", "same_prediction": "claims", "FirstLeaders": "checks",
    "Fates": "checks", "check_fates": "checks", "predict_linf_fates": "checks", "direction_motion": "checks",
    "objective_progress": "checks",
    "ClaimResult": "claims", "InstanceResult": "claims", "ControlResult": "claims",
    "run_claim": "claims", "run_claims": "claims", "claim_rng": "claims",
    "Verdict": "verdict", "combine": "verdict",
    "catalogue": "catalogue", "get_claim": "catalogue", "prediction_mutants": "catalogue",
    # checks
    "Limit": "checks", "Amplification": "checks", "Trend": "checks", "PhaseDiagram": "checks",
    "AmplificationProfile": "checks", "PHASES": "checks",
    "check_direction": "checks", "check_collapse": "checks", "check_limit": "checks", "check_limits": "checks", "check_kkt": "checks", "check_init_rule": "checks",
    "check_amplification": "checks", "check_first_leaders": "checks", "amplification_profile": "checks",
    "amplification_phase": "checks", "amplification_phase_diagram": "checks", "observed_limit": "checks",
    "predict_linf_limit": "checks", "predict_gd_depth2_limit": "checks", "predict_first_leader": "checks",
    "angle_between": "checks", "fit_trend": "checks",
    # references
    "MaxMargin": "references", "KKTReport": "references", "l2_max_margin": "references",
    "l1_max_margin": "references", "kkt_check": "references", "quasi_norm_min": "references",
    # counterexamples and the command
    "Counterexample": "shrink", "find_counterexample": "shrink", "shrink_instance": "shrink",
    "assert_claim": "shrink", "ClaimFailed": "shrink",
    "command": "command", "verdicts_document": "command",
    "mutation_power": "power", "PowerRow": "power", "format_power": "power",
    "CodeMutant": "power", "code_mutants": "power", "code_power": "power",
    # the claim families in their own modules
    "KKTTarget": "claims_deep", "LeaderSequence": "claims_reduced", "Phases": "claims_reduced",
    "check_leader_sequence": "claims_reduced", "check_phases": "claims_reduced",
    "DiscreteOrder": "claims_discrete", "check_discrete_order": "claims_discrete",
    "collapse_ratio": "reduced", "reduced_leaders": "reduced", "quasi_norm_argmin": "references",
}
_MODULES = ("checks", "claims", "catalogue", "references", "verdict", "shrink", "command", "power", "reduced",
            "claims_deep", "claims_discrete", "claims_reduced", "claims_usam")

__all__ = sorted(_EXPORTS) + list(_MODULES)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    elif name in _MODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """Keeps ``catalogue`` and ``command`` the functions: importing the submodule of the same
    name (``from .catalogue import ...`` anywhere) makes the import system bind the *module*
    on this package, and ``from sambias.verify import catalogue`` would then return it."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and _EXPORTS.get(name) == name:
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
