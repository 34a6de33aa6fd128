"""Algorithms, defined once: each is its perturbation ``eps(g, w, rho)`` as SymPy.

An :class:`Algorithm` is a name, a Python function ``perturbation(g, w, rho)`` taking the
gradient and the weights as SymPy column matrices of the flat parameters (layer-major,
``L*d`` entries) and returning ``eps`` of the same shape, and whether it is
*discontinuous* (it uses ``sign`` of gradient entries; Filippov handles the switching).
Derivation, LaTeX, code generation (float64 and mpmath) and the flows all follow from
that one definition.  Nothing a user types is ever evaluated: definitions are Python
objects, registered with :func:`register_algorithm` or installed by a package through the
entry-point group ``sambias.algorithms`` (each entry point names an :class:`Algorithm`
object, or a sequence of them).

:func:`coordinate_structure` finds, once per depth, whether ``eps`` has the structure the
fast generic-coordinate kernels need: every entry ``eps^{(l)}_j`` a function of
coordinate ``j``'s own gradient and weights and of a few *global sums* over coordinates
(such as ``||g||_2^2``); and its degree of homogeneity in ``g`` (so the loss scale
``S`` can be factored out -- ``e^{-z}`` underflows at long horizons).  Built-ins and
ASAM have it; any other perturbation runs on the general flat path.

>>> import sympy as sp
>>> half = Algorithm("half-l2-demo", lambda g, w, rho: (rho / 2) * g / sp.sqrt((g.T * g)[0, 0]))
>>> s = coordinate_structure(half, 1)
>>> s.perturbation, s.degree, [str(x.symbol) for x in s.globals]
((g_j*rho/(2*N),), 0, ['N'])
"""

from __future__ import annotations

import functools
import random
import threading
from dataclasses import dataclass
from typing import Callable

import sympy as sp

from sambias.errors import ProblemError

from .notation import RHO, SPEED, coupling, switching, weight

#: the entry-point group through which installed packages register algorithms
ENTRY_POINT_GROUP = "sambias.algorithms"



def _valid_name(name) -> bool:
    """A letter, then letters, digits or '-' (ASCII, at most 40): safe in file names and LaTeX."""
    return (isinstance(name, str) and 0 < len(name) <= 40 and name.isascii() and name[0].isalpha()
            and all(c.isalnum() or c == "-" for c in name))
#: the coordinates of the probe used to discover the coordinate structure
_PROBE_D = 3


class AlgorithmError(ProblemError):
    """A bad algorithm definition, name or plugin (one-line message; CLI exit 2)."""


@dataclass(frozen=True, eq=False)
class Algorithm:
    """One optimisation algorithm: ``w~ = w + eps(w)`` with ``eps = perturbation(g, w, rho)``.

    ``g`` is the gradient ``grad L(w)`` and ``w`` the weights, both SymPy column matrices
    of the ``L*d`` flat parameters (``w[(l-1)*d + (j-1)] = w^{(l)}_j``); ``rho`` is a SymPy
    symbol.  ``discontinuous=True`` declares that ``eps`` uses ``sign`` of gradient entries
    (as ℓ∞-SAM; Filippov sliding where a sign switches).  ``title``/``title_latex`` name it
    in renderings, ``formula``/``formula_latex`` state ``eps`` there (optional).

    >>> import sympy as sp
    >>> a = Algorithm("twice-usam", lambda g, w, rho: 2 * rho * g)
    >>> a.evaluate(sp.Matrix([1, 2]), sp.Matrix([3, 4]), sp.Symbol("rho")).T
    Matrix([[2*rho, 4*rho]])
    """

    name: str
    perturbation: Callable
    discontinuous: bool = False
    title: str | None = None
    title_latex: str | None = None
    formula: str | None = None
    formula_latex: str | None = None
    uses_rho: bool = True

    def __post_init__(self) -> None:
        if not _valid_name(self.name):
            raise AlgorithmError(f"algorithm name {self.name!r}: use a letter then letters, digits or '-' "
                                 "(at most 40 characters)")
        if not callable(self.perturbation):
            raise AlgorithmError(f"algorithm {self.name!r}: perturbation must be callable "
                                 f"(g, w, rho) -> eps, got {type(self.perturbation).__name__}")
        if not isinstance(self.discontinuous, bool):
            raise AlgorithmError(f"algorithm {self.name!r}: discontinuous must be True or False")
        for attr in ("title", "title_latex", "formula", "formula_latex"):
            v = getattr(self, attr)
            if v is not None and (not isinstance(v, str) or "\n" in v):
                raise AlgorithmError(f"algorithm {self.name!r}: {attr} must be one line of text")
        if self.title is None:
            object.__setattr__(self, "title", self.name)
        if self.title_latex is None:
            object.__setattr__(self, "title_latex", rf"\texttt{{{self.name}}}")

    def __repr__(self) -> str:
        return f"Algorithm({self.name!r}{', discontinuous' if self.discontinuous else ''})"

    def evaluate(self, g: sp.Matrix, w: sp.Matrix, rho: sp.Expr = RHO) -> sp.Matrix:
        """``eps`` for gradient ``g`` and weights ``w``, checked: a SymPy column of their shape,
        in ``g``, ``w`` and ``rho`` only."""
        try:
            out = self.perturbation(g, w, rho)
        except Exception as exc:  # the user's code: report it as one line, never a traceback
            raise AlgorithmError(f"algorithm {self.name!r}: perturbation(g, w, rho) raised "
                                 f"{type(exc).__name__}: {exc}") from None
        if not isinstance(out, sp.MatrixBase):
            raise AlgorithmError(f"algorithm {self.name!r}: perturbation must return a SymPy Matrix, "
                                 f"got {type(out).__name__}")
        if out.shape != g.shape:
            raise AlgorithmError(f"algorithm {self.name!r}: perturbation returned shape {out.shape}, "
                                 f"expected {g.shape} (one entry per flat weight)")
        for e in out:
            if not isinstance(e, sp.Basic):
                raise AlgorithmError(f"algorithm {self.name!r}: perturbation entry {e!r} is not SymPy")
        allowed = set(g.free_symbols) | set(w.free_symbols) | ({rho} if isinstance(rho, sp.Symbol) else set())
        symbols, bad = _leaves(out)
        stray = {s for s in symbols if s not in allowed}
        if stray:
            raise AlgorithmError(f"algorithm {self.name!r}: perturbation uses symbols "
                                 f"{sorted(map(str, stray))} besides g, w and rho")
        if bad:
            raise AlgorithmError(f"algorithm {self.name!r}: perturbation is not real and finite "
                                 f"(it contains {sorted(map(str, bad))[0]})")
        return sp.ImmutableMatrix(out)


def _leaves(entries) -> tuple:
    """``(symbols, non-real constants)`` of expressions sharing subtrees, each node visited once
    (a norm repeated in every entry is walked once, not ``L*d`` times)."""
    seen, stack, symbols, bad = set(), list(entries), set(), set()
    while stack:
        e = stack.pop()
        if e in seen:
            continue
        seen.add(e)
        if isinstance(e, sp.Symbol):
            symbols.add(e)
        elif e in (sp.I, sp.zoo, sp.nan, sp.oo, sp.S.NegativeInfinity):
            bad.add(e)
        else:
            stack.extend(e.args)
    return symbols, bad


# --- the built-in algorithms ---------------------------------------------------------------------
def _gd(g, w, rho):
    return sp.zeros(*g.shape)


def _l2_sam(g, w, rho):
    return rho * g / sp.sqrt((g.T * g)[0, 0])


def _linf_sam(g, w, rho):
    return rho * g.applyfunc(sp.sign)


def _usam(g, w, rho):
    return rho * g


def _asam(g, w, rho):
    # Kwon et al. (2021): eps = rho T^2 g / ||T g||_2, T = diag(|w|)
    T = sp.diag(*[sp.Abs(x) for x in w])
    return rho * T**2 * g / sp.sqrt(((T * g).T * (T * g))[0, 0])


BUILTINS = (
    Algorithm("gd", _gd, title="GD", title_latex="GD", formula="ε(w) = 0", formula_latex=r"\varepsilon(w) &= 0",
              uses_rho=False),
    Algorithm("l2-sam", _l2_sam, title="ℓ2-SAM", title_latex=r"$\ell_2$-SAM",
              formula="ε(w) = ρ ∇𝓛(w)/‖∇𝓛(w)‖₂ = ρ F(w)/N   (S cancels: ε does not depend on the loss)",
              formula_latex=r"\varepsilon(w) &= \rho\,\frac{\nabla\mathcal{L}(w)}{\lVert\nabla\mathcal{L}(w)\rVert_2}"
                            r" = \rho\,\frac{F(w)}{N}, \qquad N = \lVert F(w)\rVert_2"),
    Algorithm("linf-sam", _linf_sam, discontinuous=True, title="ℓ∞-SAM", title_latex=r"$\ell_\infty$-SAM",
              formula="ε(w) = ρ sign(∇𝓛(w)) = ρ σ,  σ = sign(F(w))",
              formula_latex=r"\varepsilon(w) &= \rho\,\operatorname{sign}\big(\nabla\mathcal{L}(w)\big)"
                            r" = \rho\,\sigma, \qquad \sigma = \operatorname{sign}\big(F(w)\big)"),
    Algorithm("usam", _usam, title="USAM", title_latex="USAM", formula="ε(w) = ρ ∇𝓛(w) = ρ S F(w)",
              formula_latex=r"\varepsilon(w) &= \rho\,\nabla\mathcal{L}(w) = \rho\, S\, F(w)"),
    Algorithm("asam", _asam, title="ASAM", title_latex="ASAM",
              formula="ε(w) = ρ T²∇𝓛(w)/‖T∇𝓛(w)‖₂ = ρ T²F(w)/M,  T = diag(|w|),  M = ‖T F(w)‖₂",
              formula_latex=r"\varepsilon(w) &= \rho\,\frac{T^2\nabla\mathcal{L}(w)}{\lVert T\nabla\mathcal{L}(w)\rVert_2}"
                            r" = \rho\,\frac{T^2 F(w)}{M}, \qquad T = \operatorname{diag}(\lvert w\rvert),"
                            r" \quad M = \lVert T F(w)\rVert_2"),
)


# --- the registry -----------------------------------------------------------------------------------
class _Registry:
    """Name -> Algorithm: the built-ins, the user's, and entry points (scanned once, each
    loaded on first use)."""

    def __init__(self) -> None:
        self._algorithms = {a.name: a for a in BUILTINS}
        self._builtin = frozenset(self._algorithms)
        self._entry_points: dict | None = None
        self._lock = threading.Lock()

    def entry_points(self) -> dict:
        if self._entry_points is None:
            from importlib.metadata import entry_points
            found = {}
            for ep in entry_points(group=ENTRY_POINT_GROUP):
                found.setdefault(ep.name, ep)
            self._entry_points = found
        return self._entry_points

    def add(self, algorithm: Algorithm) -> Algorithm:
        if not isinstance(algorithm, Algorithm):
            raise AlgorithmError(f"register_algorithm expects a sambias.symbolic.Algorithm, got "
                                 f"{type(algorithm).__name__}")
        with self._lock:
            old = self._algorithms.get(algorithm.name)
            if old is algorithm:
                return algorithm
            if old is not None:
                raise AlgorithmError(f"algorithm {algorithm.name!r} is already registered"
                                     + (" (a built-in)" if algorithm.name in self._builtin else ""))
            _check_definition(algorithm)
            self._algorithms[algorithm.name] = algorithm
        return algorithm

    def remove(self, name: str) -> None:
        if name in self._builtin:
            raise AlgorithmError(f"algorithm {name!r} is a built-in and cannot be removed")
        with self._lock:
            if self._algorithms.pop(name, None) is not None:
                from .cache import clear_caches
                clear_caches()

    def get(self, name: str) -> Algorithm:
        if not isinstance(name, str):
            raise AlgorithmError(f"unknown algorithm {name!r}; expected one of {', '.join(self.names())}")
        hit = self._algorithms.get(name)
        if hit is not None:
            return hit
        ep = self.entry_points().get(name)
        if ep is None:
            raise AlgorithmError(f"unknown algorithm {name!r}; expected one of {', '.join(self.names())}")
        return self._load(name, ep)

    def _load(self, name: str, ep) -> Algorithm:
        try:
            obj = ep.load()
        except Exception as exc:  # a broken plugin: one clear line, not its traceback
            raise AlgorithmError(f"algorithm plugin {name!r} ({ep.value}, entry-point group "
                                 f"{ENTRY_POINT_GROUP}) failed to load: {type(exc).__name__}: {exc}") from None
        items = obj if isinstance(obj, (list, tuple)) else (obj,)
        if not items or not all(isinstance(a, Algorithm) for a in items):
            raise AlgorithmError(f"algorithm plugin {name!r} ({ep.value}) must name an Algorithm or a "
                                 f"sequence of them, got {type(obj).__name__}")
        for a in items:
            if self._algorithms.get(a.name) is not a:
                self.add(a)
        if name not in self._algorithms:
            raise AlgorithmError(f"algorithm plugin {name!r} ({ep.value}) defines "
                                 f"{', '.join(a.name for a in items)}, not {name!r}")
        return self._algorithms[name]

    def names(self) -> tuple:
        return tuple(self._algorithms) + tuple(n for n in sorted(self.entry_points()) if n not in self._algorithms)


_REGISTRY = _Registry()


def register_algorithm(algorithm: Algorithm) -> Algorithm:
    """Make ``algorithm`` available by name (``Problem(algorithm=name, ...)``, problem files, CLI).

    The definition is checked first (a probe derivation at depth 1 and 2); a name already
    in use is an error (re-registering the very same object is a no-op).

    >>> import sympy as sp
    >>> a = register_algorithm(Algorithm("doc-usam", lambda g, w, rho: rho * g))
    >>> get_algorithm("doc-usam") is a
    True
    >>> unregister_algorithm("doc-usam")
    """
    return _REGISTRY.add(algorithm)


def unregister_algorithm(name: str) -> None:
    """Forget a user-registered algorithm (and every cached derivation; built-ins stay)."""
    _REGISTRY.remove(name)


def get_algorithm(name: str) -> Algorithm:
    """The :class:`Algorithm` called ``name`` (built-in, registered, or from an entry point).

    >>> get_algorithm("linf-sam").discontinuous
    True
    """
    return _REGISTRY.get(name)


def algorithm_names() -> tuple:
    """Every known name: built-ins, registered ones, and installed entry points (not loaded)."""
    return _REGISTRY.names()


# --- the coordinate structure -------------------------------------------------------------------
@dataclass(frozen=True)
class GlobalSum:
    """A global scalar of the perturbation: ``symbol**power = const + sum_j share_j``.

    ``share`` is coordinate ``j``'s term, in the generic coordinate's weights ``w_l_j``, its
    coupling ``g_j`` (and ``S`` for a non-homogeneous perturbation); ``divides``: the
    perturbation divides by it (so ``0`` is a collapse, where ``eps`` is undefined).
    """

    symbol: sp.Symbol
    power: int
    share: sp.Expr
    const: sp.Expr
    divides: bool


@dataclass(frozen=True)
class CoordinateStructure:
    """``eps^{(l)}_j`` of a generic coordinate: ``perturbation`` (one entry per layer) in ``w_l_j``,
    ``g_j``, the ``globals``' symbols, ``S`` (``degree`` > 0 or ``None``), ``sigma_l_j``
    (discontinuous) and ``rho``.  ``degree``: ``eps(c g) = c^degree eps(g)`` for ``c > 0``
    (``None``: not homogeneous; ``S`` then enters through ``g = S F``)."""

    perturbation: tuple
    globals: tuple
    degree: int | None
    vanishes_at_rho_zero: bool


def _probe(depth: int, d: int):
    G = sp.Matrix([sp.Symbol(f"G_{l}_{j}", real=True) for l in range(1, depth + 1) for j in range(1, d + 1)])
    W = sp.Matrix([weight(l, j) for l in range(1, depth + 1) for j in range(1, d + 1)])
    return G, W


def _coordinate_of(sym) -> int | None:
    parts = sym.name.split("_")
    if parts[0] in ("G", "w", "sigma") and len(parts) == 3 and parts[2].isdigit():
        return int(parts[2])
    return None


def _generic(expr, k: int):
    """Rename coordinate ``k``'s probe symbols to the generic coordinate ``j``."""
    sub = {}
    for s in expr.free_symbols:
        if _coordinate_of(s) == k:
            kind, layer, _ = s.name.split("_")
            sub[s] = sp.Symbol(f"{kind}_{layer}_j", real=True)
    return expr.xreplace(sub)


def _homogeneity(algorithm: Algorithm, G, W) -> int | None:
    """The degree ``k`` with ``eps(c g) = c^k eps(g)`` (``c > 0``), found at random rational
    points in 40-digit arithmetic; ``None`` when there is none."""
    rng = random.Random(7)
    degree = None
    for _ in range(2):
        vals = {s: sp.Rational(rng.choice([-1, 1]) * rng.randint(1, 9), rng.randint(1, 5))
                for s in list(G) + list(W)}
        vals[RHO] = sp.Rational(rng.randint(1, 9), rng.randint(2, 7))
        base = [e.xreplace(vals).evalf(40) for e in algorithm.evaluate(G, W, RHO)]
        for c in (2, 3):
            scaled = algorithm.evaluate(c * G, W, RHO)
            for b, e in zip(base, scaled):
                e = e.xreplace(vals).evalf(40)
                if not (b.is_number and e.is_number and b.is_finite and e.is_finite):
                    return None
                if abs(b) < sp.Float("1e-30"):
                    if abs(e) > sp.Float("1e-30"):
                        return None
                    continue
                ratio = e / b
                if ratio <= 0:
                    return None
                k = int(round(float(sp.log(ratio) / sp.log(c))))
                if abs(ratio - sp.Integer(c) ** k) > sp.Float("1e-25") * abs(ratio):
                    return None
                if degree is not None and k != degree:
                    return None
                degree = k
    return 0 if degree is None else degree


class _NotCoordinatewise(Exception):
    pass


def _extract_globals(entries, d: int):
    """Replace every sum over all coordinates of one per-coordinate term by a symbol.

    Returns ``(entries, [(symbol, const, share)])``; raises :class:`_NotCoordinatewise`
    on any other coupling between coordinates."""
    found: dict = {}
    memo: dict = {}

    def coords(e) -> frozenset:
        return frozenset(c for c in (_coordinate_of(s) for s in e.free_symbols) if c is not None)

    def visit(e):
        if e in memo:
            return memo[e]
        if not e.args:
            memo[e] = e
            return e
        args = [visit(a) for a in e.args]
        new = e.func(*args) if any(a is not b for a, b in zip(args, e.args)) else e
        if isinstance(new, sp.Add) and len(coords(new)) >= 2 and all(len(coords(a)) <= 1 for a in new.args):
            groups: dict = {}
            for a in new.args:
                c = coords(a)
                groups.setdefault(next(iter(c)) if c else None, []).append(a)
            if set(groups) - {None} != set(range(1, d + 1)):
                raise _NotCoordinatewise("a sum over some coordinates only")
            shares = {_generic(sp.Add(*groups[k]), k) for k in range(1, d + 1)}
            if len(shares) != 1:
                raise _NotCoordinatewise("a sum of different per-coordinate terms")
            share = shares.pop()
            if any(s in share.free_symbols for s, *_ in found.values()):
                raise _NotCoordinatewise("nested global sums")
            key = (sp.Add(*groups.get(None, [])), share)
            if key not in found:
                found[key] = (sp.Dummy(f"Gamma{len(found)}", real=True), *key)
            new = found[key][0]
        memo[e] = new
        return new

    out = [visit(e) for e in entries]
    return out, list(found.values())


def _power_form(entries, globals_):
    """``Gamma -> X**2`` where ``Gamma`` occurs only under square roots (a norm ``X``)."""
    out, result = list(entries), []
    for sym, const, share in globals_:
        pows = [p for e in out for p in e.atoms(sp.Pow) if p.base == sym]
        half = pows and all(p.exp.is_Rational and p.exp.q == 2 for p in pows) and not _occurs_bare(out, sym)
        new = sp.Dummy(positive=True) if half else sp.Dummy(real=True)
        out = [e.xreplace({sym: new**2 if half else new}) for e in out]
        divides = any(p.base == new and p.exp.is_negative for e in out for p in e.atoms(sp.Pow))
        result.append((new, 2 if half else 1, const, share, divides))
    return out, result


def _names(globs, norm_share) -> dict:
    """Printable names for the global sums: ``N`` is reserved for ``||F||_2`` (the kernels' and
    flows' meaning of ``N``); other norms are ``M``, ``M_2``, ...; other sums ``Gamma``, ..."""
    names, used = {}, set()
    for sym, power, const, share, _ in globs:
        if power == 2 and const == 0 and "N" not in used and sp.expand(share - norm_share) == 0:
            name = "N"
        else:
            base = "M" if power == 2 else "Gamma"
            k = 1
            while (name := base if k == 1 else f"{base}_{k}") in used:
                k += 1
        used.add(name)
        names[sym] = sp.Symbol(name, positive=True) if power == 2 else sp.Symbol(name, real=True)
    return names


def _occurs_bare(entries, sym) -> bool:
    """Whether ``sym`` occurs other than as the base of a power."""
    def walk(e, under_pow):
        if e == sym:
            return not under_pow
        if isinstance(e, sp.Pow) and e.base == sym:
            return False
        return any(walk(a, False) for a in e.args)
    return any(walk(e, False) for e in entries)


@functools.lru_cache(maxsize=None)
def perturbation_degree(algorithm: Algorithm, depth: int) -> int | None:
    """``k`` with ``eps(c g, w) = c^k eps(g, w)`` for ``c > 0`` (``None``: not homogeneous).

    >>> perturbation_degree(get_algorithm("usam"), 2), perturbation_degree(get_algorithm("l2-sam"), 2)
    (1, 0)
    """
    G, W = _probe(int(depth), _PROBE_D)
    return _homogeneity(algorithm, G, W)


@functools.lru_cache(maxsize=None)
def coordinate_structure(algorithm: Algorithm, depth: int) -> CoordinateStructure | None:
    """The generic-coordinate form of ``algorithm``'s perturbation at ``depth``, or ``None`` when
    ``eps`` couples coordinates in some other way than through global sums (general path).

    Discovered on a ``d = 3`` probe; the gradient ``G`` of coordinate ``j`` becomes
    ``F^{(l)}_j = g_j dbeta_j/dw^{(l)}_j`` (times ``S`` when ``eps`` is not homogeneous).
    """
    from .coordinate import gradient_factor
    L, d = int(depth), _PROBE_D
    G, W = _probe(L, d)
    entries = list(algorithm.evaluate(G, W, RHO))
    degree = perturbation_degree(algorithm, L)
    signs = {s for e in entries for s in e.atoms(sp.sign)}
    g_syms = set(G)
    if algorithm.discontinuous:
        sign_sub = {}
        for s in signs:
            if s.args[0] not in g_syms:
                raise AlgorithmError(f"algorithm {algorithm.name!r}: a discontinuous perturbation may use "
                                     f"sign() of gradient entries only, found {s}")
            _, l, j = s.args[0].name.split("_")
            sign_sub[s] = switching(int(l), int(j))
        if not sign_sub:
            raise AlgorithmError(f"algorithm {algorithm.name!r} is declared discontinuous but uses no sign(g)")
        entries = [e.xreplace(sign_sub) for e in entries]
    elif any(s.args[0].free_symbols & g_syms for s in signs):
        raise AlgorithmError(f"algorithm {algorithm.name!r} uses sign() of the gradient: declare it "
                             "discontinuous=True (Filippov handles the switching)")
    vanishes = all(sp.simplify(e.xreplace({RHO: 0})) == 0 for e in entries)
    try:
        entries, globals_ = _extract_globals(entries, d)
        generic = []
        for l in range(L):
            forms = {_generic(entries[l * d + (k - 1)], k) for k in range(1, d + 1)}
            if len(forms) != 1:
                raise _NotCoordinatewise("entries differ between coordinates")
            generic.append(forms.pop())
            for k in range(1, d + 1):
                cs = {_coordinate_of(s) for s in entries[l * d + k - 1].free_symbols} - {None}
                if cs - {k}:
                    raise _NotCoordinatewise(f"entry of coordinate {k} uses coordinates {sorted(cs - {k})}")
    except _NotCoordinatewise:
        return None
    generic, globs = _power_form(generic, globals_)
    # G^{(l)}_j (generic) -> F^{(l)}_j = g_j P^{(l)} (x S without homogeneity)
    P = gradient_factor(L, "exp")
    g = coupling(False)
    scale = sp.S.One if degree is not None else SPEED
    to_F = {sp.Symbol(f"G_{l + 1}_j", real=True): scale * g * P[l] for l in range(L)}
    factor = SPEED**degree if degree else sp.S.One
    globs = [(sym, power, const, share.xreplace(to_F), divides) for sym, power, const, share, divides in globs]
    names = _names(globs, sp.Add(*[(g * p) ** 2 for p in P]))
    pert = tuple(factor * e.xreplace(to_F).xreplace(names) for e in generic)
    gsums = tuple(GlobalSum(names[sym], power, share, const, divides) for sym, power, const, share, divides in globs)
    return CoordinateStructure(perturbation=pert, globals=gsums, degree=degree, vanishes_at_rho_zero=vanishes)


def _check_definition(algorithm: Algorithm) -> None:
    """Probe the definition at depth 1 and 2 (shape, symbols, sign use): errors at registration."""
    for depth in (1, 2):
        G, W = _probe(depth, 2)
        algorithm.evaluate(G, W, RHO)
    coordinate_structure(algorithm, 1)


__all__ = ["Algorithm", "AlgorithmError", "BUILTINS", "CoordinateStructure", "ENTRY_POINT_GROUP", "GlobalSum",
           "algorithm_names", "coordinate_structure", "get_algorithm", "register_algorithm",
           "unregister_algorithm"]
