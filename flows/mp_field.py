"""The mp vector field: the kernels symbolic/ derives, compiled to straight-line libmp code.

``simulate(..., precision="mp:D")`` integrates :func:`mp_field`'s field.  Its arithmetic is
the per-coordinate SymPy expressions of :func:`sambias.symbolic.coordinate_form` (the same
:class:`~sambias.symbolic.codegen.KernelSpec` list the generated float64/mpmath kernels are
printed from), printed here once more as nested ``libmp`` calls (``mpf_mul(a, b, prec, "n")``)
over plain lists of mpmath's raw ``(sign, man, exp, bc)`` tuples.

Why a second printer for the same expressions: symbolic/'s mpmath kernels run on numpy object
arrays of ``mpf``, where every operation pays numpy's per-element dispatch and the ``mpf``
operator's type checks -- 3-10x the cost of the ``libmp`` call itself (measured in
``benchmarks/bench_mp.py``).  At the sizes of this toolkit (``L*d`` up to a few dozen) the
integrator's time is the field's time, so the mp driver runs the raw form.  An expression the
printer does not know (a user algorithm with an exotic function) makes the field fall back
to ``GeneratedField(problem, backend="mp")`` for the flow; both are checked against each
other and against the hand-written oracle in ``tests/oracles/mp_field.py``.

Conventions are :class:`~sambias.symbolic.GeneratedField`'s: flat layer-major states
(``w[l*d + j] = W[l, j]``), ``F = grad L / S``, the rescaled flow ``dW/dtau = -F(W~)`` and
``log S(W~) = log(dtau/dt)``.  Everything runs at the caller's ``mpmath.mp.prec``.

>>> import mpmath
>>> from sambias import Problem, Init
>>> f = mp_field(Problem(depth=2, algorithm="gd", X=[[2.0, 1.0]], y=[1], init=Init(scale=1.0)))
>>> with mpmath.workdps(30):
...     dw, log_S = f.rescaled_mp(f.to_mp([1, 1, 1, 1]))
>>> [float(v) for v in dw], float(log_S)
([2.0, 1.0, 2.0, 1.0], -3.0)
"""

from __future__ import annotations

import functools
import itertools
from typing import Sequence

import mpmath
from mpmath import mpf
from mpmath.libmp import (fzero, from_int, from_rational, from_str, mpf_abs, mpf_add, mpf_div, mpf_exp,
                          mpf_log, mpf_mul, mpf_neg, mpf_pow_int, mpf_sign, mpf_sqrt, mpf_sub)


class CollapseError(ArithmeticError):
    """The l2-SAM perturbation is undefined: the normalised gradient is exactly 0."""


class Unsupported(ValueError):
    """An expression the libmp printer cannot print (the field then falls back)."""


def mp_sign(v) -> int:
    """``sign`` with ``sign(0) = 0`` (numpy's convention)."""
    return (v > 0) - (v < 0)


# --- the libmp printer ----------------------------------------------------------------------------
def _softplus(x):
    """``log(1 + e^x)`` without cancellation on either side."""
    if x > 0:
        return x + mpmath.log1p(mpmath.exp(-x))
    return mpmath.log1p(mpmath.exp(x))


def _logistic(x):
    if x >= 0:
        return 1 / (1 + mpmath.exp(-x))
    e = mpmath.exp(x)
    return e / (1 + e)


def _scalar(fn):
    """A scalar mpmath function lifted to raw tuples (for the rare non-arithmetic node)."""
    mk = mpmath.mp.make_mpf

    def raw(x, prec):
        return fn(mk(x))._mpf_
    return raw


# the canonical raw +1 / -1 that sign memory is converted to (compared by identity)
_P1, _M1 = from_int(1), from_int(-1)
_SIGN_RAW = {1: _P1, -1: _M1, 0: fzero}

_RAW_FUNCTIONS = {
    "exp": "mpf_exp({0}, prec, 'n')",
    "log": "mpf_log({0}, prec, 'n')",
    "Abs": "mpf_abs({0})",
    "sign": "_SIGN_RAW[mpf_sign({0})]",
}
_SCALAR_FUNCTIONS = {"softplus": _scalar(_softplus), "logistic": _scalar(_logistic),
                     "log1p": _scalar(mpmath.log1p), "expm1": _scalar(mpmath.expm1)}
_NAMESPACE = {"fzero": fzero, "from_int": from_int, "from_rational": from_rational, "from_str": from_str,
              "mpf_abs": mpf_abs, "mpf_add": mpf_add, "mpf_div": mpf_div, "mpf_exp": mpf_exp,
              "mpf_log": mpf_log, "mpf_mul": mpf_mul, "mpf_neg": mpf_neg, "mpf_pow_int": mpf_pow_int,
              "mpf_sign": mpf_sign, "mpf_sqrt": mpf_sqrt, "mpf_sub": mpf_sub, "_ONE": from_int(1),
              "_P1": _P1, "_M1": _M1, "_SIGN_RAW": _SIGN_RAW,
              **{f"_fn_{k}": v for k, v in _SCALAR_FUNCTIONS.items()}, "__builtins__": {"zip": zip}}


def _fraction(e) -> tuple[list, list]:
    """A product's factors split into numerator and denominator (negative integer powers
    and unit fractions ``1/q`` go below), so both printers divide once."""
    import sympy as sp

    num, den = [], []
    for f in sp.Mul.make_args(e):
        if isinstance(f, sp.Pow) and f.exp.is_Integer and f.exp < 0:
            den.append(f.base ** (-f.exp))
        elif isinstance(f, sp.Rational) and not isinstance(f, sp.Integer) and f.p == 1:
            den.append(sp.Integer(f.q))
        else:
            num.append(f)
    return num, den


def _raw(e) -> str:
    """Python text evaluating the SymPy expression ``e`` on raw tuples at ``prec``."""
    import sympy as sp

    if isinstance(e, sp.Symbol):
        if not e.name.isidentifier():
            raise Unsupported(f"symbol {e.name!r}")
        return e.name
    if isinstance(e, sp.Integer):
        return f"from_int({int(e)})"
    if isinstance(e, sp.Rational):
        return f"from_rational({int(e.p)}, {int(e.q)}, prec, 'n')"
    if isinstance(e, sp.Float):
        return f"from_str({str(e)!r}, prec, 'n')"
    if isinstance(e, sp.Add):
        terms = list(e.args)
        out = _raw(terms[0])
        for t in terms[1:]:
            c, rest = t.as_coeff_Mul()
            if c.is_Number and c < 0:
                out = f"mpf_sub({out}, {_raw(-t)}, prec, 'n')"
            else:
                out = f"mpf_add({out}, {_raw(t)}, prec, 'n')"
        return out
    if isinstance(e, sp.Mul):
        c, rest = e.as_coeff_Mul()
        if c.is_Number and c < 0:
            return f"mpf_neg({_raw(-e)})"
        signs = [f for f in sp.Mul.make_args(e) if isinstance(f, sp.Symbol) and f.name.startswith("sigma_")]
        if signs and len(sp.Mul.make_args(e)) > 1:
            # a switching sign is +-1 on every segment but the sliding ones: skip the multiply
            s, rest = signs[0].name, _raw(e / signs[0])
            return f"({rest} if {s} is _P1 else mpf_neg({rest}) if {s} is _M1 else mpf_mul({s}, {rest}, prec, 'n'))"
        num, den = _fraction(e)
        out = _raw(num[0]) if num else "_ONE"
        for f in num[1:]:
            out = f"mpf_mul({out}, {_raw(f)}, prec, 'n')"
        if den:
            d = _raw(den[0])
            for f in den[1:]:
                d = f"mpf_mul({d}, {_raw(f)}, prec, 'n')"
            out = f"mpf_div({out}, {d}, prec, 'n')"
        return out
    if isinstance(e, sp.Pow):
        b, x = e.base, e.exp
        if x.is_Integer:
            n = int(x)
            body = f"mpf_mul({_raw(b)}, {_raw(b)}, prec, 'n')" if n in (2, -2) and b.is_Symbol else \
                f"mpf_pow_int({_raw(b)}, {abs(n)}, prec, 'n')"
            return body if n > 0 else f"mpf_div(_ONE, {body}, prec, 'n')"
        if x == sp.Rational(1, 2):
            return f"mpf_sqrt({_raw(b)}, prec, 'n')"
        if x == sp.Rational(-1, 2):
            return f"mpf_div(_ONE, mpf_sqrt({_raw(b)}, prec, 'n'), prec, 'n')"
        raise Unsupported(f"power {e}")
    if isinstance(e, sp.Function):
        name = type(e).__name__
        if len(e.args) == 1 and name in _RAW_FUNCTIONS:
            return _RAW_FUNCTIONS[name].format(_raw(e.args[0]))
        if len(e.args) == 1 and name in _SCALAR_FUNCTIONS:
            return f"_fn_{name}({_raw(e.args[0])}, prec)"
    raise Unsupported(f"{type(e).__name__}: {e}")


_counter = itertools.count()


def compile_raw(spec, scalar_names: frozenset = frozenset({"rho", "N", "S"})):
    """Compile one :class:`~sambias.symbolic.codegen.KernelSpec` to a raw-tuple function.

    The function takes the spec's arguments -- lists of raw tuples (one per coordinate or
    example) for per-coordinate symbols, one raw tuple for ``scalar_names`` -- then ``prec``,
    and returns one list per output.  Raises :class:`Unsupported` for unknown nodes.
    """
    return _compile(spec, scalar_names, _raw, _NAMESPACE, "raw")


def _compile(spec, scalar_names, printer, base_namespace: dict, tag: str):
    """The kernel ``spec`` printed by ``printer`` as a loop over coordinates, compiled."""
    import sympy as sp

    names = [a.name for a in spec.args]
    if any(not n.isidentifier() or n.startswith("_") for n in names):
        raise Unsupported(f"kernel {spec.name}: argument names {names}")
    loop = [n for n in names if n not in scalar_names]
    if not loop:
        raise Unsupported(f"kernel {spec.name} has no per-coordinate argument")
    replacements, reduced = sp.cse(list(spec.outputs), symbols=sp.numbered_symbols("_t"),
                                   optimizations="basic", order="none")
    params = [f"_a_{n}" if n in loop else n for n in names]
    outs = [f"_o{i}" for i in range(len(reduced))]
    lines = [f"def {spec.name}({', '.join(params)}, prec):"]
    lines += [f"    {o} = []" for o in outs]
    if len(loop) == 1:
        lines.append(f"    for {loop[0]} in _a_{loop[0]}:")
    else:
        lines.append(f"    for {', '.join(loop)} in zip({', '.join('_a_' + n for n in loop)}):")
    for sym, expr in replacements:
        lines.append(f"        {sym.name} = {printer(expr)}")
    for o, expr in zip(outs, reduced):
        lines.append(f"        {o}.append({printer(expr)})")
    lines.append(f"    return ({', '.join(outs)},)")
    source = "\n".join(lines) + "\n"
    namespace = dict(base_namespace)
    # our own printed text from the package's derived expressions: no user text is compiled
    exec(compile(source, f"<sambias-mp-{tag}-{spec.name}-{next(_counter)}>", "exec"), namespace)  # noqa: S102
    fn = namespace[spec.name]
    fn.source = source
    fn.arg_names = tuple(names)
    return fn


@functools.lru_cache(maxsize=None)
def raw_kernels(depth: int, algorithm: str, loss: str) -> dict:
    """The raw kernels of ``(depth, algorithm, loss)`` by name; a kernel the printer cannot
    handle is missing (the field falls back to symbolic/'s mpmath kernels for it)."""
    from sambias.symbolic.codegen import kernel_specs
    from sambias.symbolic.coordinate import coordinate_form

    out = {}
    for spec in kernel_specs(coordinate_form(depth, algorithm, loss)):
        if spec.name not in ("beta", "gradient", "norm_share", "perturbation", "flow", "phi", "dphi"):
            continue
        try:
            out[spec.name] = compile_raw(spec)
        except Unsupported:
            pass
    return out


def _wrap_generated(fn):
    """A symbolic/ mpmath kernel (object arrays of mpf) with the raw kernels' calling convention."""
    import numpy as np

    mk = mpmath.mp.make_mpf

    def raw(*args):
        prec = args[-1]
        with mpmath.workprec(prec):
            arrs = [np.array([mk(v) for v in a], dtype=object) if isinstance(a, list) else mk(a)
                    for a in args[:-1]]
            return tuple([mpf(v)._mpf_ for v in np.atleast_1d(o)] for o in fn(*arrs))
    return raw


# --- the gmpy2 printer (the fast path) -----------------------------------------------------------
# The same CSE'd kernels printed once more as operator code on gmpy2 ``mpfr`` (MPFR: correctly
# rounded, ~5-7x cheaper per operation from Python than a libmp call on raw tuples).  The
# printed function runs inside a gmpy2 context at the caller's precision; the ``prec`` argument
# is kept for the raw kernels' calling convention and ignored.
try:
    import gmpy2
    from gmpy2 import mpfr as _mpfr, mul_2exp as _mul_2exp
except ImportError:  # pragma: no cover - gmpy2 is a core dependency; the libmp path remains
    gmpy2 = None


def _fr_softplus(x):
    return x + gmpy2.log1p(gmpy2.exp(-x)) if x > 0 else gmpy2.log1p(gmpy2.exp(x))


def _fr_logistic(x):
    if x >= 0:
        return 1 / (1 + gmpy2.exp(-x))
    e = gmpy2.exp(x)
    return e / (1 + e)


def _fr_sign(x):
    return _FR_SIGN[(x > 0) - (x < 0)]


_FR_FUNCTIONS = {"exp": "_exp({0})", "log": "_log({0})", "Abs": "abs({0})", "sign": "_sign({0})",
                 "softplus": "_softplus({0})", "logistic": "_logistic({0})", "log1p": "_log1p({0})",
                 "expm1": "_expm1({0})"}
if gmpy2 is not None:
    _FR_SIGN = {1: _mpfr(1), -1: _mpfr(-1), 0: _mpfr(0)}
    _FR_NAMESPACE = {"_mpfr": _mpfr, "_exp": gmpy2.exp, "_log": gmpy2.log, "_sqrt": gmpy2.sqrt,
                     "_rec_sqrt": gmpy2.rec_sqrt, "_sign": _fr_sign, "_softplus": _fr_softplus,
                     "_logistic": _fr_logistic, "_log1p": gmpy2.log1p, "_expm1": gmpy2.expm1,
                     "__builtins__": {"zip": zip, "abs": abs}}


def _fr(e) -> str:
    """Python text evaluating the SymPy expression ``e`` on gmpy2 ``mpfr`` (context precision)."""
    import sympy as sp

    if isinstance(e, sp.Symbol):
        if not e.name.isidentifier():
            raise Unsupported(f"symbol {e.name!r}")
        return e.name
    if isinstance(e, sp.Integer):
        return f"_mpfr({int(e)})"
    if isinstance(e, sp.Rational):
        return f"(_mpfr({int(e.p)}) / {int(e.q)})"     # rounded once, as libmp's from_rational
    if isinstance(e, sp.Float):
        return f"_mpfr({str(e)!r})"
    if isinstance(e, sp.Add):
        terms = list(e.args)
        out = _fr(terms[0])
        for t in terms[1:]:
            c, _ = t.as_coeff_Mul()
            out = f"({out} - {_fr(-t)})" if c.is_Number and c < 0 else f"({out} + {_fr(t)})"
        return out
    if isinstance(e, sp.Mul):
        c, _ = e.as_coeff_Mul()
        if c.is_Number and c < 0:
            return f"(-{_fr(-e)})"
        num, den = _fraction(e)
        out = _fr(num[0]) if num else "_mpfr(1)"
        for f in num[1:]:
            out = f"({out} * {_fr(f)})"
        if den:
            d = _fr(den[0])
            for f in den[1:]:
                d = f"({d} * {_fr(f)})"
            out = f"({out} / {d})"
        return out
    if isinstance(e, sp.Pow):
        b, x = e.base, e.exp
        if x.is_Integer:
            n = int(x)
            body = f"({_fr(b)} * {_fr(b)})" if abs(n) == 2 and b.is_Symbol else f"({_fr(b)} ** {abs(n)})"
            return body if n > 0 else f"(1 / {body})"
        if x == sp.Rational(1, 2):
            return f"_sqrt({_fr(b)})"
        if x == sp.Rational(-1, 2):
            return f"_rec_sqrt({_fr(b)})"
        raise Unsupported(f"power {e}")
    if isinstance(e, sp.Function):
        name = type(e).__name__
        if len(e.args) == 1 and name in _FR_FUNCTIONS:
            return _FR_FUNCTIONS[name].format(_fr(e.args[0]))
    raise Unsupported(f"{type(e).__name__}: {e}")


def compile_fr(spec, scalar_names: frozenset = frozenset({"rho", "N", "S"})):
    """:func:`compile_raw`'s kernel printed for gmpy2 ``mpfr`` values (same arguments and
    outputs, ``prec`` ignored: call it inside a gmpy2 context).  Raises :class:`Unsupported`."""
    if gmpy2 is None:
        raise Unsupported("gmpy2 is not available")
    return _compile(spec, scalar_names, _fr, _FR_NAMESPACE, "fr")


@functools.lru_cache(maxsize=None)
def fr_kernels(depth: int, algorithm: str, loss: str) -> dict:
    """The gmpy2 kernels of ``(depth, algorithm, loss)`` by name (missing: not printable)."""
    from sambias.symbolic.codegen import kernel_specs
    from sambias.symbolic.coordinate import coordinate_form

    out = {}
    for spec in kernel_specs(coordinate_form(depth, algorithm, loss)):
        if spec.name not in ("beta", "gradient", "norm_share", "perturbation", "flow", "phi"):
            continue
        try:
            out[spec.name] = compile_fr(spec)
        except Unsupported:
            pass
    return out


@functools.lru_cache(maxsize=None)
def _fr_context(prec: int):
    # widest exponent range: mpmath has none, and a weight may legitimately pass 1e-323228496
    return gmpy2.context(precision=prec, emax=gmpy2.get_emax_max(), emin=gmpy2.get_emin_min())


def _to_fr(v) -> object:
    """An mpmath ``mpf`` as gmpy2 ``mpfr``, exactly (``None`` for inf/nan)."""
    sign, man, exp, bc = v._mpf_
    if not man and exp:
        return None
    x = _mul_2exp(man, exp)
    return -x if sign else x


def _from_fr(x, mk, create=None):
    m, e = x.as_mantissa_exp()
    return mk((create or gmpy2._mpmath_create)(m, int(e)))


# --- the field -----------------------------------------------------------------------------------
class DerivedMpField:
    """The rescaled flow of one problem in mpmath, from symbolic/'s derived kernels.

    ``rescaled_mp(w, sigma=None) -> (dW/dtau, log S(W~))`` on flat lists of ``mpf``;
    ``sigma`` (linf-SAM) replaces ``sign(F(W))`` entry by entry with numbers in ``[-1, 1]``
    (the driver's sign memory and Filippov equivalent controls).  ``beta``, ``g``,
    ``normalised_gradient`` and ``log_loss`` are the diagnostics the driver's events use.

    >>> import mpmath
    >>> from sambias import Problem, Init
    >>> f = DerivedMpField(Problem(depth=1, algorithm="gd", X=[[2.0]], y=[1], init=Init(scale=1.0)))
    >>> with mpmath.workdps(20):
    ...     [float(v) for v in f.g(f.to_mp([1]))]
    [-2.0]
    """

    def __init__(self, problem) -> None:
        self.problem = problem
        self.depth = L = int(problem.depth)
        self.dim = d = int(problem.dim)
        self.n = int(problem.n)
        self.size = L * d
        self.algorithm = problem.algorithm
        self.loss = problem.loss
        # float64 -> mpf is exact, so this field sees exactly the data the float64 field sees
        self.rho = mpf(float(problem.rho)) if problem.algorithm != "gd" else mpf(0)
        self._rho_raw = self.rho._mpf_
        A = problem.signed_data
        self._A = [[mpf(float(A[i, j]))._mpf_ for j in range(d)] for i in range(self.n)]
        self._g1 = [mpf_neg(a) for a in self._A[0]] if self.n == 1 else None
        self.perturbed = self.algorithm != "gd" and bool(self.rho)
        k = dict(raw_kernels(L, self.algorithm, self.loss))
        self._k = k
        self._fallback = None
        needed = ("beta", "gradient", "phi", "flow") + (("perturbation",) if self.perturbed else ())
        if not all(name in k for name in needed) or (self.perturbed and not self._couplings_known(k)):
            from sambias.symbolic.generated import GeneratedField
            try:
                self._fallback = GeneratedField(problem, backend="mp")
            except ValueError:  # symbolic/ before the "mp" alias
                self._fallback = GeneratedField(problem, backend="mpmath")
            for name in ("beta", "gradient", "phi"):
                if name not in k:   # the diagnostics, through the generated mpmath kernels
                    k[name] = _wrap_generated(getattr(self._fallback.kernels, name))
        self.uses_fallback = self._fallback is not None

    def _couplings_known(self, k: dict) -> bool:
        """Whether every argument of the perturbation kernel is a coupling this field forms."""
        L = self.depth
        known = {f"w_{l}_j" for l in range(1, L + 1)} | {f"sigma_{l}_j" for l in range(1, L + 1)} \
            | {"g_j", "N", "S", "rho"}
        names = set(k["perturbation"].arg_names)
        return names <= known and ("N" not in names or "norm_share" in k)

    def __repr__(self) -> str:
        return (f"DerivedMpField(L={self.depth}, d={self.dim}, n={self.n}, {self.algorithm}, {self.loss}"
                f"{', fallback' if self.uses_fallback else ''})")

    # --- conversions -----------------------------------------------------------------------------
    @staticmethod
    def to_mp(w: Sequence) -> list:
        """A flat list of mpf from numbers (floats convert exactly) or decimal strings."""
        return [v if isinstance(v, mpf) else mpf(v) if isinstance(v, str) else mpf(float(v)) for v in w]

    def _rows(self, W: list) -> list:
        d = self.dim
        return [W[l * d:(l + 1) * d] for l in range(self.depth)]

    # --- couplings (the data enter here) ------------------------------------------------------------
    def _beta_raw(self, rows: list, prec: int) -> list:
        return self._k["beta"](*rows, prec)[0]

    def _coupling_raw(self, beta: list, prec: int) -> tuple:
        """``(log S, g)`` at ``beta``: softmax weights in log space, ``g = -A^T q``."""
        zs = []
        for row in self._A:
            z = fzero
            for a, b in zip(row, beta):
                z = mpf_add(z, mpf_mul(a, b, prec, "n"), prec, "n")
            zs.append(z)
        phi = self._k["phi"](zs, prec)[0]
        if self.n == 1:
            # one example: q = 1 and g = -A[0] exactly, no exp/log round trip
            return phi[0], self._g1
        mk = mpmath.mp.make_mpf
        vals = [mk(p) for p in phi]
        m = max(vals)
        e = [mpmath.exp(v - m) for v in vals]
        s = mpmath.fsum(e)
        q = [(x / s)._mpf_ for x in e]
        g = []
        for j in range(self.dim):
            acc = fzero
            for i in range(self.n):
                acc = mpf_add(acc, mpf_mul(self._A[i][j], q[i], prec, "n"), prec, "n")
            g.append(mpf_neg(acc))
        return (m + mpmath.log(s))._mpf_, g

    def _sigma_rows(self, sigma) -> list:
        raw = [_SIGN_RAW[s] if type(s) is int else s._mpf_ if isinstance(s, mpf) else mpf(s)._mpf_
               for s in sigma]
        return self._rows(raw)

    def _perturbed_raw(self, rows: list, sigma, prec: int) -> list:
        """``W~ = W + eps(W)`` as rows of raw tuples."""
        k = self._k["perturbation"]
        env = {f"w_{l + 1}_j": r for l, r in enumerate(rows)}
        env["rho"] = self._rho_raw
        names = k.arg_names
        if any(n.startswith("sigma_") for n in names):
            if sigma is None:
                g = self._g1 if self.n == 1 else self._coupling_raw(self._beta_raw(rows, prec), prec)[1]
                F = self._k["gradient"](*rows, g, prec)
                srows = [[_SIGN_RAW[mpf_sign(f)] for f in row] for row in F]
            else:
                srows = self._sigma_rows(sigma)
            env.update({f"sigma_{l + 1}_j": r for l, r in enumerate(srows)})
        if "g_j" in names or "N" in names or "S" in names:
            if self.n == 1 and "S" not in names:
                log_S, g = None, self._g1   # one example: g = -A[0], no margin needed
            else:
                log_S, g = self._coupling_raw(self._beta_raw(rows, prec), prec)
            env["g_j"] = g
            if "N" in names:
                share = self._k["norm_share"](*rows, g, prec)[0]
                n2 = fzero
                for v in share:
                    n2 = mpf_add(n2, v, prec, "n")
                if n2 == fzero:
                    raise CollapseError("l2-SAM perturbation undefined: the gradient is 0 (collapse)")
                env["N"] = mpf_sqrt(n2, prec, "n")
            if "S" in names:
                env["S"] = mpf_exp(log_S, prec, "n")
        eps = k(*[env[n] for n in names], prec)
        return [[mpf_add(x, e, prec, "n") for x, e in zip(r, er)] for r, er in zip(rows, eps)]

    # --- the flow ---------------------------------------------------------------------------------
    def rescaled_mp(self, w: list, sigma: Sequence | None = None) -> tuple[list, mpf]:
        """``(dW/dtau, log S(W~))`` at the flat state ``w`` (lists of mpf)."""
        if self._fallback is not None:
            dw, log_S = self._fallback.rescaled_mp(w, sigma)
            return list(dw), log_S
        prec = mpmath.mp.prec
        rows = self._rows([v._mpf_ for v in w])
        if self.perturbed:
            rows = self._perturbed_raw(rows, sigma, prec)
        log_S, g = self._coupling_raw(self._beta_raw(rows, prec), prec)
        out = self._k["flow"](*rows, g, prec)
        mk = mpmath.mp.make_mpf
        return [mk(v) for row in out for v in row], mk(log_S)

    def physical_mp(self, w: list, sigma: Sequence | None = None) -> list:
        """``dW/dt = -grad L(W + eps(W))``."""
        dw, log_S = self.rescaled_mp(w, sigma)
        S = mpmath.exp(log_S)
        return [S * v for v in dw]

    # --- diagnostics ---------------------------------------------------------------------------------
    def beta(self, w: list) -> list:
        """``beta_j = prod_l W[l, j]``."""
        mk = mpmath.mp.make_mpf
        return [mk(v) for v in self._beta_raw(self._rows([v._mpf_ for v in w]), mpmath.mp.prec)]

    def g(self, w: list) -> list:
        """``g(W) = -A^T softmax(log |l'(z)|)``, the common factor of column ``j``'s switches."""
        prec, mk = mpmath.mp.prec, mpmath.mp.make_mpf
        return [mk(v) for v in self._coupling_raw(self._beta_raw(self._rows([v._mpf_ for v in w]), prec), prec)[1]]

    def g_rate(self, w: list, dw: list) -> list:
        """``dg/dtau`` along ``dW/dtau = dw``: ``-A^T dq`` with ``dq = q (phi' dz) - q (q . phi' dz)``,
        ``dz = A dbeta`` (linf-SAM's sliding on ``g_j = 0`` keeps this at 0)."""
        prec, mk = mpmath.mp.prec, mpmath.mp.make_mpf
        rows = self._rows([v._mpf_ for v in w])
        P = self._k["gradient"](*rows, [from_int(1)] * self.dim, prec)   # d beta / d W (g = 1)
        d, L = self.dim, self.depth
        dbeta = [mpmath.fsum(mk(P[l][j]) * dw[l * d + j] for l in range(L)) for j in range(d)]
        beta = [mk(v) for v in self._beta_raw(rows, prec)]
        A = [[mk(a) for a in row] for row in self._A]
        z = [mpmath.fdot(row, beta) for row in A]
        dz = [mpmath.fdot(row, dbeta) for row in A]
        if self.n == 1:
            return [mpf(0)] * d
        phi = [mk(v) for v in self._k["phi"]([v._mpf_ for v in z], prec)[0]]
        dphi = self._k["dphi"]([v._mpf_ for v in z], prec)[0] if "dphi" in self._k else None
        dphi = [mk(v) for v in dphi] if dphi is not None else [mpmath.diff(lambda x: mk(self._k["phi"]([mpf(x)._mpf_], prec)[0][0]), zi) for zi in z]
        m = max(phi)
        e = [mpmath.exp(v - m) for v in phi]
        ssum = mpmath.fsum(e)
        q = [v / ssum for v in e]
        u = [dp * dzi for dp, dzi in zip(dphi, dz)]
        mean = mpmath.fdot(q, u)
        dq = [qi * (ui - mean) for qi, ui in zip(q, u)]
        return [-mpmath.fsum(A[i][j] * dq[i] for i in range(self.n)) for j in range(d)]

    def log_S(self, w: list) -> mpf:
        """``log S(W) = log sum_i |l'(z_i)|``."""
        prec = mpmath.mp.prec
        return mpmath.mp.make_mpf(self._coupling_raw(self._beta_raw(self._rows([v._mpf_ for v in w]), prec), prec)[0])

    def normalised_gradient(self, w: list) -> list:
        """``F(W) = grad L(W) / S(W)``, flat; its signs are linf-SAM's switching functions."""
        prec, mk = mpmath.mp.prec, mpmath.mp.make_mpf
        rows = self._rows([v._mpf_ for v in w])
        g = self._coupling_raw(self._beta_raw(rows, prec), prec)[1]
        return [mk(v) for row in self._k["gradient"](*rows, g, prec) for v in row]

    def log_loss(self, w: list) -> mpf:
        """Natural log of ``sum_i l(z_i)`` -- finite at any margin (no underflow in mp)."""
        beta = self.beta(w)
        mk = mpmath.mp.make_mpf
        z = [mpmath.fsum(mk(a) * b for a, b in zip(row, beta)) for row in self._A]
        if self.loss == "exp":
            logs = [-zi for zi in z]
        else:
            # log l(z) = log log1p(e^-z); log1p keeps full relative precision for large z
            logs = [mpmath.log(mpmath.log1p(mpmath.exp(-zi))) for zi in z]
        if len(logs) == 1:
            return logs[0]
        m = max(logs)
        return m + mpmath.log(mpmath.fsum(mpmath.exp(x - m) for x in logs))


class FastMpField(DerivedMpField):
    """:class:`DerivedMpField` whose right-hand side runs on gmpy2 ``mpfr`` (the fast path).

    ``rescaled_mp`` converts the state to ``mpfr`` (exactly), evaluates the gmpy2-printed
    kernels inside a gmpy2 context at the caller's ``mpmath.mp.prec`` and converts the result
    back, so callers see lists of ``mpf`` as before.  MPFR rounds every operation correctly,
    as libmp does, so the two paths agree to a few units in the last place (exp/log may round
    differently); the libmp field stays the independent cross-check.  The diagnostics
    (``beta``, ``g``, ``normalised_gradient``, ``log_loss``, ...) are the libmp ones: they run
    once per step, not once per evaluation.  Falls back to the libmp path where a kernel is
    not printable or a value is not finite, and (unless ``always``) where the field is too
    small for the conversions to pay.

    >>> import mpmath
    >>> from sambias import Problem, Init
    >>> p = Problem(depth=2, algorithm="l2-sam", rho=0.5, X=[[2.0, 1.0]], y=[1], init=Init(scale=1.0))
    >>> fast, ref = FastMpField(p, always=True), DerivedMpField(p)
    >>> with mpmath.workdps(40):
    ...     w = fast.to_mp([0.3, -1.2, 0.7, 2.0])
    ...     (a, la), (b, lb) = fast.rescaled_mp(w), ref.rescaled_mp(w)
    >>> fast.fast, max(abs(u - v) / abs(v) for u, v in zip(a, b)) < 1e-38
    (True, True)
    """

    def __init__(self, problem, always: bool = False) -> None:
        super().__init__(problem)
        kf = {}
        if gmpy2 is not None and not self.uses_fallback:
            kf = dict(fr_kernels(self.depth, self.algorithm, self.loss))
        needed = {"beta", "phi", "flow"}
        args = set(kf["perturbation"].arg_names) if self.perturbed and "perturbation" in kf else set()
        if self.perturbed:
            needed |= {"perturbation"} | ({"norm_share"} if "N" in args else set())
            if any(n.startswith("sigma_") for n in args):
                needed |= {"gradient"}
        self._kf = kf
        # the gmpy2 path pays ~6 us per call (context switch, conversions both ways): it wins
        # where the field has work -- a normalisation (l2-SAM 47.6 -> 32.1 us at L = 2, d = 4,
        # 999 -> 512 us at L = 3, d = 16) or a softmax over examples -- and loses on the bare
        # one-example products (GD 12.7 vs 18 us), which stay on libmp unless ``always``
        heavy = self.n > 1 or bool(args & {"N", "S", "g_j"})
        self.fast = needed <= set(kf) and (heavy or always)
        # rescaled_fr (mpfr in and out, no conversions) needs only the kernels: an integrator
        # that keeps its own state in mpfr pays no conversions, so it wins on GD too
        self.fr_ok = needed <= set(kf)
        if self.fr_ok:
            # float64 data are exact in mpfr at any precision >= 53 (the default context's)
            A = problem.signed_data
            self._A_fr = [[_mpfr(float(A[i, j])) for j in range(self.dim)] for i in range(self.n)]
            self._g1_fr = [-a for a in self._A_fr[0]] if self.n == 1 else None

    def _coupling_fr(self, beta: list) -> tuple:
        zs = []
        for row in self._A_fr:
            z = _mpfr(0)
            for a, b in zip(row, beta):
                z = z + a * b
            zs.append(z)
        phi = self._kf["phi"](zs, 0)[0]
        if self.n == 1:
            return phi[0], self._g1_fr
        m = max(phi)
        e = [gmpy2.exp(v - m) for v in phi]
        ssum = gmpy2.fsum(e)
        q = [x / ssum for x in e]
        g = [-gmpy2.fsum([self._A_fr[i][j] * q[i] for i in range(self.n)]) for j in range(self.dim)]
        return m + gmpy2.log(ssum), g

    def _perturbed_fr(self, rows: list, sigma) -> list:
        k = self._kf["perturbation"]
        names = k.arg_names
        plan = self.__dict__.get("_pert_plan")
        if plan is None or plan[0] is not names:
            # what the kernel's arguments ask for, worked out once (not per evaluation: the
            # string tests were ~15 % of an l2-SAM evaluation on the all-mpfr path)
            plan = self._pert_plan = (names, [f"w_{l + 1}_j" for l in range(self.depth)],
                                      [f"sigma_{l + 1}_j" for l in range(self.depth)],
                                      any(n.startswith("sigma_") for n in names))
        env = dict(zip(plan[1], rows))
        env["rho"] = _to_fr(self.rho)   # read per call: rho is a public attribute
        if plan[3]:
            if sigma is None:
                g = self._g1_fr if self.n == 1 else self._coupling_fr(self._kf["beta"](*rows, 0)[0])[1]
                F = self._kf["gradient"](*rows, g, 0)
                srows = [[_fr_sign(f) for f in row] for row in F]
            else:
                flat = [_FR_SIGN[v] if type(v) is int else _to_fr(v if isinstance(v, mpf) else mpf(v))
                        for v in sigma]
                srows = self._rows(flat)
            env.update(zip(plan[2], srows))
        if "g_j" in names or "N" in names or "S" in names:
            if self.n == 1 and "S" not in names:
                log_S, g = None, self._g1_fr
            else:
                log_S, g = self._coupling_fr(self._kf["beta"](*rows, 0)[0])
            env["g_j"] = g
            if "N" in names:
                n2 = gmpy2.fsum(self._kf["norm_share"](*rows, g, 0)[0])
                if n2 == 0:
                    raise CollapseError("l2-SAM perturbation undefined: the gradient is 0 (collapse)")
                env["N"] = gmpy2.sqrt(n2)
            if "S" in names:
                env["S"] = gmpy2.exp(log_S)
        eps = k(*[env[n] for n in names], 0)
        return [[x + e for x, e in zip(r, er)] for r, er in zip(rows, eps)]

    def rescaled_fr(self, x: list, sigma: Sequence | None = None) -> tuple[list, object]:
        """:meth:`rescaled_mp` on ``mpfr`` in and out, in the caller's gmpy2 context (its
        precision and exponent range: :func:`_fr_context`), with no conversions -- for an
        integrator whose own arithmetic is gmpy2 (flows/mp_integrators.py's GBS).  Only when
        ``fr_ok``."""
        rows = self._rows(x)
        if self.perturbed:
            rows = self._perturbed_fr(rows, sigma)
        log_S, g = self._coupling_fr(self._kf["beta"](*rows, 0)[0])
        out = self._kf["flow"](*rows, g, 0)
        return [v for row in out for v in row], log_S

    def rescaled_mp(self, w: list, sigma: Sequence | None = None) -> tuple[list, mpf]:
        """``(dW/dtau, log S(W~))`` at the flat state ``w`` (lists of mpf), through gmpy2."""
        if not self.fast:
            return super().rescaled_mp(w, sigma)
        mk = mpmath.mp.make_mpf
        create = gmpy2._mpmath_create
        # set_context/restore: ~10x cheaper than ``with context`` (measured), and restored
        # on every exit so no gmpy2 user around us sees our precision
        old = gmpy2.get_context()
        gmpy2.set_context(_fr_context(mpmath.mp.prec))
        try:
            x = [_to_fr(v) for v in w]
            if any(v is None for v in x):
                return super().rescaled_mp(w, sigma)
            rows = self._rows(x)
            if self.perturbed:
                rows = self._perturbed_fr(rows, sigma)
            log_S, g = self._coupling_fr(self._kf["beta"](*rows, 0)[0])
            out = self._kf["flow"](*rows, g, 0)
            return [_from_fr(v, mk, create) for row in out for v in row], _from_fr(log_S, mk, create)
        finally:
            gmpy2.set_context(old)


def mp_field(problem, backend: str = "gmpy2") -> DerivedMpField:
    """The field ``simulate(..., precision="mp:D")`` integrates for ``problem`` (see the module doc).

    ``backend="gmpy2"`` (default): :class:`FastMpField`; ``"libmp"``: :class:`DerivedMpField`,
    the raw-tuple mpmath path it is cross-checked against.
    """
    if backend == "gmpy2":
        return FastMpField(problem)
    if backend == "libmp":
        return DerivedMpField(problem)
    raise ValueError(f"mp field backend: expected 'gmpy2' or 'libmp', got {backend!r}")
