"""Horizons: physical or rescaled end times that may lie far past float64's range.

A horizon is kept as an exact decimal and its base-10 logarithm, so ``1e400`` or
``1e1000`` is a legal, exactly represented target.

>>> h = parse_horizon("1e400")
>>> h.log10
400.0
>>> h.as_float()
inf
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation, localcontext

from .errors import ProblemError

# The rescaled clock tau is carried as a float64 by the integrators, and t grows
# doubly exponentially in it (GD on the built-in example: log10 t ~ 1e296 by tau ~ 114),
# so a rescaled horizon past float64's range can neither be represented nor approached.
# Physical horizons have no such limit: 1e400 or 1e100000 is reached through log time.
MAX_RESCALED_LOG10 = 300.0


@dataclass(frozen=True)
class Horizon:
    """An end time ``T > 0`` held exactly: ``value`` (a Decimal) and ``log10`` (a float)."""

    value: Decimal
    log10: float

    def as_float(self) -> float:
        """``T`` as a float64 (``inf`` when it overflows)."""
        try:
            return float(self.value)
        except OverflowError:  # pragma: no cover - Decimal -> float gives inf, kept for safety
            return math.inf

    @property
    def ln(self) -> float:
        """Natural logarithm of ``T``."""
        return self.log10 * math.log(10.0)

    def __str__(self) -> str:
        return format(self.value, "g") if abs(self.log10) < 16 else f"1e{self.log10:.6g}"


def parse_horizon(text: str | float | int | Decimal, *, time: str = "physical") -> Horizon:
    """Read a horizon given as text (``"100"``, ``"1e400"``) or a number; it must be > 0.

    With ``time="rescaled"`` it must also be below ``1e300`` (tau is a float64).

    >>> parse_horizon("1e400", time="rescaled")
    Traceback (most recent call last):
    ...
    sambias.errors.ProblemError: horizon: a rescaled horizon (tau) must be below 1e300, got '1e400'; physical horizons such as 1e400 have no limit
    """
    if isinstance(text, bool):
        raise ProblemError(f"horizon: expected a positive number, got {text!r}")
    try:
        value = text if isinstance(text, Decimal) else Decimal(str(text).strip())
    except InvalidOperation:
        raise ProblemError(f"horizon: {text!r} is not a number") from None
    if not value.is_finite():
        raise ProblemError(f"horizon: must be a finite positive number, got {text!r}")
    if value <= 0:
        raise ProblemError(f"horizon: must be positive, got {text!r}")
    with localcontext() as ctx:
        ctx.prec = 40
        log10 = float(value.log10())
    if time == "rescaled" and log10 >= MAX_RESCALED_LOG10:
        raise ProblemError(f"horizon: a rescaled horizon (tau) must be below 1e{MAX_RESCALED_LOG10:g}, "
                           f"got {_shown(text)}; physical horizons such as 1e400 have no limit")
    return Horizon(value=value, log10=log10)


def _shown(text) -> str:
    shown = repr(text) if isinstance(text, str) else str(text)
    return shown if len(shown) <= 40 else shown[:37] + "..."
