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


def parse_horizon(text: str | float | int | Decimal) -> Horizon:
    """Read a horizon given as text (``"100"``, ``"1e400"``) or a number; it must be > 0."""
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
    return Horizon(value=value, log10=log10)
