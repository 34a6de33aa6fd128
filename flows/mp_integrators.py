"""Adaptive one-step integrators in mpmath for autonomous systems ``y' = f(y)``.

Two methods, both working on plain lists of ``mpf`` in the current mpmath context:

* ``"gbs"`` -- Gragg-Bulirsch-Stoer extrapolation of the explicit midpoint rule with
  adaptive order *and* step size (Hairer-Norsett-Wanner's ODEX strategy, step-number
  sequence 2, 4, 6, ...).  Extrapolation column ``k`` is an embedded pair of orders
  ``2k`` / ``2k-2``, i.e. an explicit Runge-Kutta method of order ``2k`` whose
  embedded error estimate comes for free.  This is the default for ``digits > 20``.
* ``"rkf78"`` -- Fehlberg's 7(8) pair (13 stages, exact rational coefficients,
  propagating the 8th-order solution).  Default for ``digits <= 20``.

Why extrapolation for high precision: to reach a tolerance ``10^-D`` a fixed-order-``p``
method needs steps ``h ~ 10^(-D/(p+1))``, i.e. a cost growing like ``10^(D/(p+1))``.
At D = 45 an order-8 pair needs ~10^5 steps per unit of smooth time (13 evaluations
each); the order must grow with D to keep the cost polynomial.  Extrapolation gives any
even order from the same kernel, and its work-per-unit-step model picks order ~20-40 at
50-100 digits, so a step covers a large stretch of the trajectory and the total number
of right-hand-side evaluations stays within a small factor of a float64 DOP853 solve.
Fixed high-order RK tableaux (Feagin 10/12/14) would also work but their coefficients
are irrational decimals that must themselves be known to the working precision; the
extrapolation tableau is exact at any precision.

Exactness at mp precision (issue 11.4).  Every step runs ``GUARD_DIGITS`` above the
caller's precision (the right-hand side the stepper calls reads ``mpmath.mp.prec``, so it
runs there too), and GBS asks its local error for ``GBS_SAFETY`` times the requested
``rtol``.  Why: at 50 digits a local tolerance of 1e-46 sits 10^4 above the unit round-off,
and the extrapolation tableau's error estimates are then polluted by rounding (steps
shrink, digits stall at 40-44 on the l2-SAM d = 4 example); and a run to t = 10 takes
20-90 steps whose local errors add up.  With both, mp:50 keeps >= 45 correct digits in
every coordinate -- relative ones, since the driver's ``atol`` floor is far below any
weight (checked against heyoka.py's Taylor integrator at 300 bits and against mp:80 in
tests/test_flows_mp_exact.py and benchmarks/bench_mp.py).

Both steppers expose the same interface: ``attempt(f, y, f0, h)`` (one controlled step:
accepted or not, the proposed next step), ``redo(f, y, f0, h)`` (the step the last
accepted attempt used, repeated with another ``h`` -- for event location, where the
result must be a smooth function of ``h``) and ``short_step(f, y, f0, h)`` (one step of
any sign under the error control, ``None`` if it fails: a short hop from a state already
known, for the dense output of :class:`~sambias.flows.steppers.MpStepper`).

>>> import mpmath
>>> with mpmath.workdps(40):
...     st = make_stepper("gbs", rtol=mpmath.mpf(10)**-35, atol=mpmath.mpf(10)**-35, digits=40)
...     y, h, tau = [mpmath.mpf(1)], mpmath.mpf("0.5"), mpmath.mpf(0)
...     while tau < 1:
...         h = min(h, 1 - tau)
...         r = st.attempt(lambda v: [v[0]], y, [y[0]], h)
...         if r.accepted:
...             tau, y = tau + h, r.y
...         h = r.h_next
...     bool(abs(y[0] - mpmath.e) < mpmath.mpf(10)**-33)
True
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction as Fr
from typing import Callable

import mpmath
from mpmath import mpf
from mpmath.libmp import mpf_add, mpf_mul, mpf_sub

# The hot loops work on mpmath's raw (sign, man, exp, bc) tuples: the mpf operators spend
# most of their ~1 us per operation on dispatch and context look-ups, raw libmp calls
# halve the integrator's own cost.  Results are bit-identical (same rounding, same prec).
_mk = mpmath.mp.make_mpf

Vec = list
RHS = Callable[[Vec], Vec]

GUARD_DIGITS = 10          # extra working digits inside a step (see the module doc)
GBS_SAFETY = "1e-3"        # GBS local tolerance = GBS_SAFETY * rtol (global error headroom)
# GBS's extrapolation tableau and error norm in gmpy2 mpfr: ~5x cheaper than libmp calls
# (measured: 10 Neville updates 27 -> 5 us).  When the right-hand side also offers itself on
# mpfr (``f.fr``: flows/mp.py's smooth flows) the midpoint sums run in mpfr too and a step
# converts only its start and end (l2-SAM L = 2, d = 4 to t = 10: 1.83 -> 0.92 s CPU, same
# evaluations; GD 4x).  Values beyond mpfr's exponent range (|e| > 2^62, which mpmath allows)
# send that call back to libmp (GBS._in_tableau_context): that was the "step size underflow"
# of USAM on data near 1e308 (tests/test_flows_reliability.py) that had this switched off.
FAST_TABLEAU = True
# After a rejected step GBS keeps its order and shrinks H by that column's predicted factor.
# ODEX drops to the column of least predicted work, but at 1e-49 those predictions come from a
# step far too long: the order fell to its floor, H by 100x in two rejections, and the run
# spent ~20 steps climbing back (l2-SAM L = 2, d = 4 to t = 10: 59 -> 44 steps, -7 % evaluations)
REJECT_KEEPS_ORDER = True
_RAISE = 0.97
_LOWER = 0.8
_KMAX_ADD = 10     # kmax = digits // 2 + _KMAX_ADD (see make_stepper)

try:
    import gmpy2
except ImportError:  # pragma: no cover - a core dependency; the libmp tableau remains
    gmpy2 = None


def _work_prec(guard_digits: int) -> int:
    """Bits of the caller's precision plus ``guard_digits`` decimal digits."""
    return mpmath.mp.prec + int(guard_digits * 3.33) + 1


class OutOfRange(Exception):
    """A value outside gmpy2 mpfr's exponent range met the fast tableau (see GBS); raised by
    an mpfr right-hand side too, so the step runs on mpf instead."""


@dataclass
class StepResult:
    accepted: bool
    y: Vec | None            # the new state (None when rejected)
    err: float               # scaled error estimate (<= 1 means accepted)
    h_next: mpf              # proposed next step
    nfev: int
    order: int               # order of the solution returned / attempted


def _axpy(y: Vec, c, k: Vec) -> Vec:
    """``y + c k`` (lists of mpf) at the current precision, rounding like ``a + c*b``."""
    prec = mpmath.mp.prec
    cm = c._mpf_
    return [_mk(mpf_add(a._mpf_, mpf_mul(cm, b._mpf_, prec, "n"), prec, "n")) for a, b in zip(y, k)]


def _extrapolate(a: Vec, b: Vec, c) -> Vec:
    """Neville step ``a + c (a - b)``."""
    prec = mpmath.mp.prec
    cm = c._mpf_
    out = []
    for u, v in zip(a, b):
        um = u._mpf_
        out.append(_mk(mpf_add(um, mpf_mul(cm, mpf_sub(um, v._mpf_, prec, "n"), prec, "n"), prec, "n")))
    return out


def _err_norm_fr(e: Vec, y0: Vec, y1: Vec, rtol, atols: Vec) -> float:
    """:func:`_err_norm` on gmpy2 ``mpfr`` (``atols`` one per component)."""
    worst = 0
    for ei, a, b, at in zip(e, y0, y1, atols):
        r = abs(ei) / (at + rtol * max(abs(a), abs(b)))
        if r > worst:
            worst = r
    w = float(worst)
    return w if w < 1e300 else float("inf")


def _err_norm(e: Vec, y0: Vec, y1: Vec, rtol: mpf, atol) -> float:
    """Max-norm of ``e / (atol + rtol max(|y0|, |y1|))`` (max, not RMS: cross-checks
    compare component by component).  ``atol`` is one number or one per component: a
    tiny per-coordinate floor makes the control relative, so a coordinate driven to
    1e-38 keeps ``rtol`` relative accuracy instead of being lost below an absolute one."""
    worst = mpf(0)
    atols = atol if isinstance(atol, (list, tuple)) else [atol] * len(e)
    for ei, a, b, at in zip(e, y0, y1, atols):
        r = abs(ei) / (at + rtol * max(abs(a), abs(b)))
        if r > worst:
            worst = r
    return float(worst) if worst < mpf("1e300") else float("inf")


# --- embedded Runge-Kutta ---------------------------------------------------------
# Fehlberg (1968), NASA TR R-287, Table X: the 7(8) pair.  c, A, b8 (propagated),
# b7 - b8 gives the error estimate 41/840 (k0 + k10 - k11 - k12).
_RKF78_C = [Fr(0), Fr(2, 27), Fr(1, 9), Fr(1, 6), Fr(5, 12), Fr(1, 2), Fr(5, 6), Fr(1, 6),
            Fr(2, 3), Fr(1, 3), Fr(1), Fr(0), Fr(1)]
_RKF78_A = [
    [],
    [Fr(2, 27)],
    [Fr(1, 36), Fr(1, 12)],
    [Fr(1, 24), Fr(0), Fr(1, 8)],
    [Fr(5, 12), Fr(0), Fr(-25, 16), Fr(25, 16)],
    [Fr(1, 20), Fr(0), Fr(0), Fr(1, 4), Fr(1, 5)],
    [Fr(-25, 108), Fr(0), Fr(0), Fr(125, 108), Fr(-65, 27), Fr(125, 54)],
    [Fr(31, 300), Fr(0), Fr(0), Fr(0), Fr(61, 225), Fr(-2, 9), Fr(13, 900)],
    [Fr(2), Fr(0), Fr(0), Fr(-53, 6), Fr(704, 45), Fr(-107, 9), Fr(67, 90), Fr(3)],
    [Fr(-91, 108), Fr(0), Fr(0), Fr(23, 108), Fr(-976, 135), Fr(311, 54), Fr(-19, 60), Fr(17, 6),
     Fr(-1, 12)],
    [Fr(2383, 4100), Fr(0), Fr(0), Fr(-341, 164), Fr(4496, 1025), Fr(-301, 82), Fr(2133, 4100),
     Fr(45, 82), Fr(45, 164), Fr(18, 41)],
    [Fr(3, 205), Fr(0), Fr(0), Fr(0), Fr(0), Fr(-6, 41), Fr(-3, 205), Fr(-3, 41), Fr(3, 41),
     Fr(6, 41), Fr(0)],
    [Fr(-1777, 4100), Fr(0), Fr(0), Fr(-341, 164), Fr(4496, 1025), Fr(-289, 82), Fr(2193, 4100),
     Fr(51, 82), Fr(33, 164), Fr(12, 41), Fr(0), Fr(1)],
]
_RKF78_B7 = [Fr(41, 840), Fr(0), Fr(0), Fr(0), Fr(0), Fr(34, 105), Fr(9, 35), Fr(9, 35), Fr(9, 280),
             Fr(9, 280), Fr(41, 840), Fr(0), Fr(0)]
_RKF78_B8 = [Fr(0), Fr(0), Fr(0), Fr(0), Fr(0), Fr(34, 105), Fr(9, 35), Fr(9, 35), Fr(9, 280),
             Fr(9, 280), Fr(0), Fr(41, 840), Fr(41, 840)]

# Dormand-Prince 5(4) (exact rationals; a low-order reference for tests).
_DP5_C = [Fr(0), Fr(1, 5), Fr(3, 10), Fr(4, 5), Fr(8, 9), Fr(1), Fr(1)]
_DP5_A = [
    [],
    [Fr(1, 5)],
    [Fr(3, 40), Fr(9, 40)],
    [Fr(44, 45), Fr(-56, 15), Fr(32, 9)],
    [Fr(19372, 6561), Fr(-25360, 2187), Fr(64448, 6561), Fr(-212, 729)],
    [Fr(9017, 3168), Fr(-355, 33), Fr(46732, 5247), Fr(49, 176), Fr(-5103, 18656)],
    [Fr(35, 384), Fr(0), Fr(500, 1113), Fr(125, 192), Fr(-2187, 6784), Fr(11, 84)],
]
_DP5_B5 = [Fr(35, 384), Fr(0), Fr(500, 1113), Fr(125, 192), Fr(-2187, 6784), Fr(11, 84), Fr(0)]
_DP5_B4 = [Fr(5179, 57600), Fr(0), Fr(7571, 16695), Fr(393, 640), Fr(-92097, 339200), Fr(187, 2100),
           Fr(1, 40)]

_TABLEAUX = {
    "rkf78": (_RKF78_A, _RKF78_B8, _RKF78_B7, 8, 7),
    "dopri5": (_DP5_A, _DP5_B5, _DP5_B4, 5, 4),
}


def _mpq(fr: Fr) -> mpf:
    return mpf(fr.numerator) / fr.denominator


class EmbeddedRK:
    """An explicit embedded RK pair with the standard step-size controller."""

    def __init__(self, name: str, rtol: mpf, atol: mpf, guard_digits: int | None = None) -> None:
        A, b, bhat, p, q = _TABLEAUX[name]
        self.name = name
        self.work_prec = _work_prec(GUARD_DIGITS if guard_digits is None else guard_digits)
        with mpmath.workprec(self.work_prec):
            self.A = [[_mpq(a) for a in row] for row in A]
            self.b = [_mpq(v) for v in b]
            self.e = [_mpq(u - v) for u, v in zip(b, bhat)]
        self.order, self.err_order = p, q
        self.rtol, self.atol = rtol, atol
        self.stages = len(b)

    def _step(self, f: RHS, y: Vec, f0: Vec, h: mpf) -> tuple[Vec, Vec, int]:
        ks = [f0]
        for i in range(1, self.stages):
            yi = list(y)
            for a, k in zip(self.A[i], ks):
                if a:
                    yi = _axpy(yi, h * a, k)
            ks.append(f(yi))
        y1 = list(y)
        err = [mpf(0)] * len(y)
        for bi, ei, k in zip(self.b, self.e, ks):
            if bi:
                y1 = _axpy(y1, h * bi, k)
            if ei:
                err = _axpy(err, h * ei, k)
        return y1, err, self.stages - 1

    def attempt(self, f: RHS, y: Vec, f0: Vec, h: mpf) -> StepResult:
        with mpmath.workprec(self.work_prec):
            return self._attempt(f, y, f0, h)

    def _attempt(self, f: RHS, y: Vec, f0: Vec, h: mpf) -> StepResult:
        y1, e, nfev = self._step(f, y, f0, h)
        err = _err_norm(e, y, y1, self.rtol, self.atol)
        if err == 0.0:
            fac = 5.0
        else:
            fac = min(5.0, max(0.2, 0.9 * err ** (-1.0 / (self.err_order + 1))))
        if err > 1.0:
            fac = min(fac, 0.9)
        return StepResult(err <= 1.0, y1 if err <= 1.0 else None, err, h * mpf(fac), nfev, self.order)

    def redo(self, f: RHS, y: Vec, f0: Vec, h: mpf) -> tuple[Vec, int]:
        with mpmath.workprec(self.work_prec):
            y1, _, nfev = self._step(f, y, f0, h)
        return y1, nfev

    def short_step(self, f: RHS, y: Vec, f0: Vec, h: mpf, rtol=None) -> tuple[Vec | None, int]:
        """One step of length ``h`` (either sign) under the run's error control (or ``rtol``),
        or ``None`` if its estimate fails (event location: a short hop from a known state)."""
        with mpmath.workprec(self.work_prec):
            y1, e, nfev = self._step(f, y, f0, h)
            ok = _err_norm(e, y, y1, self.rtol if rtol is None else rtol, self.atol) <= 1.0
        return (y1 if ok else None), nfev


# --- extrapolation ------------------------------------------------------------------
class GBS:
    """Gragg-Bulirsch-Stoer extrapolation with ODEX-style order and step control."""

    name = "gbs"

    def __init__(self, rtol: mpf, atol: mpf, kmax: int, guard_digits: int | None = None,
                 safety=None) -> None:
        # None: the module's settings, read at construction (benchmarks/bench_mp.py sets them
        # to 0 and 1 to time the path as it was before issue 11.4)
        self.work_prec = _work_prec(GUARD_DIGITS if guard_digits is None else guard_digits)
        with mpmath.workprec(self.work_prec):
            self._setup(rtol * mpf(GBS_SAFETY if safety is None else safety), atol, kmax)
        self.rtol_requested = rtol

    def _setup(self, rtol: mpf, atol, kmax: int) -> None:
        self.rtol, self.atol = rtol, atol
        self.kmax = kmax = max(4, kmax)
        self.nseq = [2 * (j + 1) for j in range(kmax + 1)]  # n_1..: 2, 4, 6, ...
        # A[j]: evaluations to build column j+1 (f(y0) shared by all sequences)
        self.cost = []
        acc = 1
        for n in self.nseq:
            acc += n - 1
            self.cost.append(acc)
        # Neville weights 1 / ((n_j / n_{j-m})^2 - 1), exact
        self.coef = [[mpf(0)] * (j + 1) for j in range(kmax + 1)]
        for j in range(kmax + 1):
            for m in range(1, j + 1):
                r = Fr(self.nseq[j], self.nseq[j - m]) ** 2 - 1
                self.coef[j][m] = _mpq(1 / r)
        # Order window from the requested accuracy: low orders are never efficient at
        # 10^-D, and after a rejection ODEX's rule would walk the order down column by
        # column (each step then needs a tiny H), so the order never drops below kmin.
        D = max(1.0, -float(mpmath.log10(rtol)))
        self.kmin = max(2, min(kmax - 2, int(D / 6)))
        self.k = max(self.kmin, min(kmax - 1, int(D / 4)))  # target column (0-based)
        self.k_used = self.k      # column of the last accepted step (redo uses it)
        self.last_rejected = False
        self.fast = FAST_TABLEAU and gmpy2 is not None
        if self.fast:
            from .mp_field import _fr_context, _to_fr
            self._ctx = _fr_context(mpmath.mp.prec)
            old = gmpy2.get_context()
            gmpy2.set_context(self._ctx)
            try:
                self.coef_fr = [[_to_fr(c) for c in row] for row in self.coef]
                self.rtol_fr = _to_fr(rtol)
            finally:
                gmpy2.set_context(old)

    def _tableau(self, y: Vec):
        """``(to, back, y_t, atols_t)``: the tableau's number type (mpfr or mpf) for this step."""
        if not self.fast:
            atols = self.atol if isinstance(self.atol, (list, tuple)) else [self.atol] * len(y)
            return (lambda v: v), (lambda v: v), y, atols
        from .mp_field import _from_fr, _to_fr
        mk, create = mpmath.mp.make_mpf, gmpy2._mpmath_create

        def to(vec):
            try:
                out = [_to_fr(v) for v in vec]
            except OverflowError:    # |exponent| past mpfr's 2^62: mpmath has no such limit
                raise OutOfRange from None
            if any(v is None for v in out):
                raise ValueError("non-finite value in an mp step")
            return out

        def back(vec):
            return [_from_fr(v, mk, create) for v in vec]
        atols = self.atol if isinstance(self.atol, (list, tuple)) else [self.atol] * len(y)
        return to, back, to(y), to(atols)

    def _midpoint(self, f: RHS, y0: Vec, f0: Vec, H: mpf, n: int) -> Vec:
        h = H / n
        h2 = 2 * h
        zp = y0
        z = _axpy(y0, h, f0)
        for _ in range(n - 1):
            zp, z = z, _axpy(zp, h2, f(z))
        return z

    @staticmethod
    def _midpoint_fr(ffr, y0: Vec, f0: Vec, H, n: int) -> Vec:
        """:meth:`_midpoint` on mpfr lists with the right-hand side ``ffr`` on mpfr (same
        operations, same roundings; no conversions)."""
        h = H / n
        h2 = 2 * h
        zp = y0
        z = [a + h * b for a, b in zip(y0, f0)]
        for _ in range(n - 1):
            zp, z = z, [a + h2 * b for a, b in zip(zp, ffr(z))]
        return z

    def _sequences(self, f: RHS, y: Vec, f0: Vec, H, to):
        """``T_j1(n_j)`` for j = 0, 1, ... (a generator), in the tableau's number type:
        all-mpfr when the right-hand side offers ``.fr`` and the tableau is gmpy2."""
        ffr = getattr(f, "fr", None) if self.fast else None
        if ffr is not None:
            y_t, f_t, H_t = to(y), to(f0), to([H])[0]
            for n in self.nseq:
                yield self._midpoint_fr(ffr, y_t, f_t, H_t, n)
            return
        for n in self.nseq:
            yield to(self._midpoint(f, y, f0, H, n))

    def _row(self, j: int, Tj1: Vec, prev: list[Vec] | None) -> list[Vec]:
        row = [Tj1]
        if self.fast:
            for m in range(1, j + 1):
                c = self.coef_fr[j][m]
                row.append([a + c * (a - b) for a, b in zip(row[m - 1], prev[m - 1])])
            return row
        for m in range(1, j + 1):
            row.append(_extrapolate(row[m - 1], prev[m - 1], self.coef[j][m]))
        return row

    def _in_tableau_context(self, fn, *args):
        """Run ``fn`` at the working precision, with our gmpy2 context for the tableau.

        A value whose binary exponent is beyond mpfr's range (|e| > 2^62: e.g. dtau/dnu =
        e^(-4e306) for data near 1e308) cannot enter the gmpy2 tableau; that call runs on the
        libmp tableau instead.  (This was FAST_TABLEAU's "step size underflow": the conversion
        raised OverflowError, which the stepper took for a failed step and halved h forever.)
        """
        with mpmath.workprec(self.work_prec):
            if not self.fast:
                return fn(*args)
            old = gmpy2.get_context()
            gmpy2.set_context(self._ctx)
            try:
                return fn(*args)
            except OutOfRange:
                pass
            finally:
                gmpy2.set_context(old)
            self.fast = False
            try:
                return fn(*args)
            finally:
                self.fast = True

    def _fac(self, err: float, j: int) -> float:
        """Step factor for column ``j`` (0-based; its error estimate is O(H^(2j+1)))."""
        expo = 1.0 / (2 * j + 1)
        if err == 0.0:
            return 4.0
        return min(4.0, max(0.1, 0.94 * (0.65 / err) ** expo))

    def attempt(self, f: RHS, y: Vec, f0: Vec, H: mpf) -> StepResult:
        return self._in_tableau_context(self._attempt, f, y, f0, H)

    def _attempt(self, f: RHS, y: Vec, f0: Vec, H: mpf) -> StepResult:
        to, back, y_t, atols = self._tableau(y)
        rtol = self.rtol_fr if self.fast else self.rtol
        norm = _err_norm_fr if self.fast else _err_norm
        k = self.k  # 0-based target column: solution order 2(k+1)
        jmax = min(k + 1, self.kmax)
        prev = None
        nfev = 0
        err_col: dict[int, float] = {}
        hopt: dict[int, float] = {}
        work: dict[int, float] = {}
        acc = None
        seqs = self._sequences(f, y, f0, H, to)
        for j in range(0, jmax + 1):
            Tj1 = next(seqs)
            nfev += self.nseq[j] - 1
            row = self._row(j, Tj1, prev)
            prev = row
            if j == 0:
                continue
            err = norm([u - v for u, v in zip(row[j], row[j - 1])], y_t, row[j], rtol, atols)
            err_col[j], hopt[j] = err, self._fac(err, j)
            work[j] = self.cost[j] / hopt[j]
            if j >= k - 1 and err <= 1.0:
                acc = j
                break
        if acc is not None:
            j = acc
            knew = j
            if j - 1 >= self.kmin and work[j - 1] < _LOWER * work[j]:
                knew = j - 1
            elif (j - 1 not in work or work[j] < _RAISE * work[j - 1]) and not self.last_rejected:
                # ODEX raises the order only below 0.9x the work; at 10^-45 the work curve
                # is flat over many columns and 0.9 stalls the order too low
                knew = min(j + 1, self.kmax - 1)
            knew = max(self.kmin, knew)
            if knew <= j:
                fac = hopt.get(knew, hopt[j])
            else:
                fac = hopt[j] * self.cost[knew] / self.cost[j]
            if self.last_rejected:
                fac = min(fac, 1.0)
            self.k_used, self.k, self.last_rejected = j, knew, False
            return StepResult(True, back(prev[j]), err_col[j], H * mpf(fac), nfev, 2 * (j + 1))
        # no column converged: keep the order (unless a lower one is predicted cheaper)
        best = min((c for c in work if c >= self.kmin), key=lambda c: work[c], default=jmax)
        knew = max(self.kmin, min(k, best))
        if REJECT_KEEPS_ORDER:
            knew = k
        fac = min(0.7, hopt.get(knew, hopt[jmax]))
        self.k, self.last_rejected = knew, True
        return StepResult(False, None, err_col[jmax], H * mpf(fac), nfev, 2 * (jmax + 1))

    def redo(self, f: RHS, y: Vec, f0: Vec, H: mpf) -> tuple[Vec, int]:
        """The extrapolated solution of the last accepted column, with step ``H``."""
        return self._in_tableau_context(self._redo, f, y, f0, H)

    def _redo(self, f: RHS, y: Vec, f0: Vec, H: mpf) -> tuple[Vec, int]:
        to, back, _, _ = self._tableau(y)
        prev = None
        nfev = 0
        seqs = self._sequences(f, y, f0, H, to)
        for j in range(0, self.k_used + 1):
            Tj1 = next(seqs)
            nfev += self.nseq[j] - 1
            prev = self._row(j, Tj1, prev)
        return back(prev[self.k_used]), nfev

    def short_step(self, f: RHS, y: Vec, f0: Vec, H: mpf, rtol=None) -> tuple[Vec | None, int]:
        """``y(H)`` from ``y`` (``H`` of either sign), the tableau's columns added from the
        first until the embedded estimate passes the run's local tolerance; ``None`` if none
        does.  For event location: a hop of 1e-5..1e-30 of a step from a state already known
        converges at a low column (tens of evaluations) where re-taking the step from its start
        costs its full column (hundreds).  ``rtol`` replaces the run's local tolerance (the
        leaders' dense output in float64 asks for ~1e-24 only).  Leaves the order/step
        control untouched."""
        return self._in_tableau_context(self._short, f, y, f0, H, rtol)

    def _short(self, f: RHS, y: Vec, f0: Vec, H: mpf, rtol_arg=None) -> tuple[Vec | None, int]:
        to, back, y_t, atols = self._tableau(y)
        rtol = self.rtol_fr if self.fast else self.rtol
        if rtol_arg is not None:
            rtol = to([rtol_arg])[0] if self.fast else rtol_arg
        norm = _err_norm_fr if self.fast else _err_norm
        prev = None
        nfev = 0
        seqs = self._sequences(f, y, f0, H, to)
        for j in range(0, self.kmax + 1):
            Tj1 = next(seqs)
            nfev += self.nseq[j] - 1
            prev = self._row(j, Tj1, prev)
            if j and norm([u - v for u, v in zip(prev[j], prev[j - 1])], y_t, prev[j], rtol, atols) <= 1.0:
                return back(prev[j]), nfev
        return None, nfev


METHODS = ("gbs", "rkf78", "dopri5")


def default_method(digits: int) -> str:
    return "rkf78" if digits <= 20 else "gbs"


def make_stepper(method: str, *, rtol: mpf, atol: mpf, digits: int):
    """A stepper by name (``"gbs"``, ``"rkf78"``, ``"dopri5"``); call inside ``workdps``."""
    if method == "gbs":
        # orders up to ~digits + 20: at 50 digits the work model settles near order 40-70 late
        # in a run (measured: 23% fewer evaluations than a cap at order ~2*digits/3, and on
        # l2-SAM L = 2, d = 4 to t = 10 another 7 % from digits + 8 to digits + 20; no gain above)
        return GBS(rtol, atol, kmax=int(min(60, max(8, digits // 2 + _KMAX_ADD))))
    if method in _TABLEAUX:
        return EmbeddedRK(method, rtol, atol)
    raise ValueError(f"unknown mp method {method!r}; expected one of {', '.join(METHODS)}")
