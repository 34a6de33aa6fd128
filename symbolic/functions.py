"""The losses, and the overflow-free special functions their derivatives need.

``log |l'(z)|`` is what the flows need (THEORY.md, "Long horizons"): the rescaled
flow weights examples by ``softmax(log |l'(z~_i)|)``.  It is derived here with SymPy
from the loss and rewritten in terms of :class:`softplus` (``log(1 + e^x)``), whose
printers emit overflow-free code (``numpy.logaddexp(0, x)``): ``e^z`` itself
overflows past ``z ~ 709`` and ``e^{-z}`` underflows past ``z ~ 745``, and margins
reach ``1e6``.

>>> log_abs_loss_derivative("exp"), log_abs_loss_derivative("logistic")
(-z, -softplus(z))
"""

from __future__ import annotations

import functools

import sympy as sp

from .notation import Z

LOSSES = ("exp", "logistic")


class logistic(sp.Function):
    """The logistic sigmoid ``1 / (1 + e^{-x})`` (code: ``scipy.special.expit``)."""

    nargs = 1

    def fdiff(self, argindex=1):
        s = logistic(self.args[0])
        return s * (1 - s)

    def _eval_rewrite_as_exp(self, x, **kwargs):
        return 1 / (1 + sp.exp(-x))

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_positive(self):
        return True if self.args[0].is_real else None

    def _numpycode(self, printer):
        return f"_expit({printer._print(self.args[0])})"

    def _mpmathcode(self, printer):
        return f"_mp_expit({printer._print(self.args[0])})"

    def _latex(self, printer, exp=None):
        body = r"\operatorname{logistic}\left(%s\right)" % printer._print(self.args[0])
        return body if exp is None else r"%s^{%s}" % (body, exp)


class softplus(sp.Function):
    """``log(1 + e^x)`` (code: ``numpy.logaddexp(0, x)``, finite for any real ``x``)."""

    nargs = 1

    def fdiff(self, argindex=1):
        return logistic(self.args[0])

    def _eval_rewrite_as_log(self, x, **kwargs):
        return sp.log(1 + sp.exp(x))

    _eval_rewrite_as_exp = _eval_rewrite_as_log

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_positive(self):
        return True if self.args[0].is_real else None

    def _numpycode(self, printer):
        return f"numpy.logaddexp(0, {printer._print(self.args[0])})"

    def _mpmathcode(self, printer):
        return f"_mp_softplus({printer._print(self.args[0])})"

    def _latex(self, printer, exp=None):
        body = r"\log\left(1 + e^{%s}\right)" % printer._print(self.args[0])
        return body if exp is None else r"\left(%s\right)^{%s}" % (body, exp)


def loss_function(loss: str, z: sp.Symbol = Z) -> sp.Expr:
    """``l(z)``: ``e^{-z}`` or ``log(1 + e^{-z})``."""
    if loss == "exp":
        return sp.exp(-z)
    if loss == "logistic":
        return sp.log(1 + sp.exp(-z))
    raise ValueError(f"unknown loss {loss!r}; expected one of {', '.join(LOSSES)}")


def loss_derivative(loss: str, z: sp.Symbol = Z) -> sp.Expr:
    """``l'(z)``, by SymPy differentiation (negative for both losses)."""
    return sp.diff(loss_function(loss, z), z)


def _softplus_form(expr: sp.Expr) -> sp.Expr:
    """Replace every ``log(1 + e^u)`` by ``softplus(u)``."""
    def is_log1pexp(e):
        if not isinstance(e, sp.log):
            return False
        a = e.args[0]
        return isinstance(a, sp.Add) and len(a.args) == 2 and sp.S.One in a.args and any(
            isinstance(t, sp.exp) for t in a.args)

    def to_softplus(e):
        u = next(t for t in e.args[0].args if isinstance(t, sp.exp)).args[0]
        return softplus(u)

    return expr.replace(is_log1pexp, to_softplus)


@functools.lru_cache(maxsize=None)
def log_abs_loss_derivative(loss: str) -> sp.Expr:
    """``phi(z) = log |l'(z)|`` in overflow-free form, derived and checked by SymPy.

    The check rewrites :class:`softplus` back to ``log(1 + e^x)`` and lets SymPy
    show ``e^{phi} = -l'(z)``.
    """
    lam = sp.simplify(-loss_derivative(loss))            # |l'(z)| (l' < 0)
    phi = _softplus_form(sp.expand_log(sp.log(lam), force=True))
    if phi.has(sp.exp) or (phi.has(sp.log) and not isinstance(phi, softplus)):
        raise AssertionError(f"log|l'| not in overflow-free form: {phi}")
    if sp.simplify(sp.exp(phi.rewrite(sp.log)) - lam) != 0:
        raise AssertionError(f"log|l'| form {phi} does not match -l' = {lam}")
    return phi


@functools.lru_cache(maxsize=None)
def dlog_abs_loss_derivative(loss: str) -> sp.Expr:
    """``phi'(z)`` (SymPy derivative of :func:`log_abs_loss_derivative`)."""
    return sp.diff(log_abs_loss_derivative(loss), Z)
