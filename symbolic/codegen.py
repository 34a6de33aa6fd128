"""Python source for the flow, printed by SymPy from the derived expressions.

The generated *kernels* are per-coordinate: their arguments are the weights of a
generic coordinate ``j`` (``w_1_j .. w_L_j``), its coupling ``g_j`` and global scalars
(``rho``, ``N``, ``S``), and the same source runs on numpy arrays holding all ``d``
coordinates at once (float64) or on numpy object arrays of ``mpf`` (mpmath, with
element-wise mpmath functions).  So one kernel serves every ``d``, ``n`` and data
set: the data reach it only at call time, through the couplings computed by
:class:`~sambias.symbolic.generated.GeneratedField`.

Kernels (each a function returning a tuple):

* ``beta(w..)`` -> ``beta_j``;   ``dbeta(w..)`` -> ``d beta_j / d w^{(m)}_j`` for each ``m``
* ``gradient(w.., g)`` -> ``F^{(l)}_j`` for each ``l``; ``norm_share(w.., g)`` -> ``sum_l (F^{(l)}_j)^2``
* ``perturbation(w.., g, [N], [S], [sigma..], rho)`` -> ``eps^{(l)}_j``
* ``flow(wt.., gt)`` -> ``dw^{(l)}_j / dtau``
* ``phi(z)``, ``dphi(z)`` -> ``log |l'(z)|`` and its derivative (per example)
* Jacobian kernels, each the SymPy derivative of the expressions above:
  ``jac_perturbed`` (``d wt_l / d w_m``, ``d wt_l / d g``, ``d wt_l / d N|S``),
  ``jac_norm_share`` (``d (sum_l F_l^2) / d w_m``, ``/ d g``),
  ``jac_flow`` (``d out_l / d wt_r``, ``d out_l / d gt``).

Common subexpressions are eliminated per kernel with :func:`sympy.cse`.  The source
is compiled with :func:`compile` from text this module printed from its own
expressions -- no user text is ever compiled (the only strings spliced in are names
of the package's own symbols and of the kernels).

>>> k = generate_kernels(2, "gd", "exp", "float64")
>>> import numpy as np
>>> k.flow(np.array([1.0, 2.0]), np.array([3.0, 4.0]), np.array([-1.0, -1.0]))
(array([3., 4.]), array([1., 2.]))
"""

from __future__ import annotations

import functools
import itertools
import linecache
from dataclasses import dataclass, field

import mpmath
import numpy as np
import scipy.special
import sympy as sp
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.pycode import MpmathPrinter

from .coordinate import CoordinateForm, coordinate_form
from .notation import NORM, RHO, SPEED, Z

BACKENDS = ("float64", "mpmath")


# --- printers ---------------------------------------------------------------------------------
def _printer(backend: str):
    # "numba": the float64 printer, for scalar kernels compiled by sambias.symbolic.compiled
    if backend in ("float64", "numba"):
        return NumPyPrinter({"fully_qualified_modules": True, "allow_unknown_functions": False})
    if backend == "mpmath":
        return MpmathPrinter({"fully_qualified_modules": True, "allow_unknown_functions": False})
    raise ValueError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")


class _VectorMpmath:
    """``mpmath`` as generated mpmath code sees it: element-wise over object arrays.

    ``mpmath.exp`` etc. accept one number; wrapped in :func:`numpy.frompyfunc` they map
    over an object array of ``mpf`` (one value per coordinate) and still accept a scalar.
    """

    mpf = staticmethod(mpmath.mpf)
    pi = mpmath.pi

    def __init__(self) -> None:
        for name in ("exp", "log", "sqrt", "sign", "log1p", "fabs"):
            setattr(self, name, np.frompyfunc(getattr(mpmath, name), 1, 1))

    def __getattr__(self, name):  # only reached for names not set above
        raise AttributeError(f"generated mpmath code used mpmath.{name}, which has no element-wise wrapper")


def _mp_softplus_scalar(x):
    """``log(1 + e^x)`` in mpmath without cancellation on either side."""
    if x > 0:
        return x + mpmath.log1p(mpmath.exp(-x))
    return mpmath.log1p(mpmath.exp(x))


def _mp_expit_scalar(x):
    if x >= 0:
        return 1 / (1 + mpmath.exp(-x))
    e = mpmath.exp(x)
    return e / (1 + e)


def _full_float(value, like):
    return np.full(np.shape(like), float(value))


def _full_mp(value, like):
    return np.full(np.shape(like), mpmath.mpf(value), dtype=object)


def _load(specs, backend: str, header: str, filename: str) -> tuple[str, dict]:
    """Print ``specs`` as one module and run it: ``(source, namespace)``.  The only ``exec``
    of symbolic/: it runs text printed from the package's own SymPy expressions (user
    algorithms enter as SymPy objects built by their Python code, never as text)."""
    source = header + "\n\n".join(kernel_source(s, backend) for s in specs)
    # register the text so tracebacks through generated code show its lines
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = _namespace(backend)
    exec(compile(source, filename, "exec"), namespace)  # noqa: S102 - our own printed expressions
    return source, namespace


def _namespace(backend: str) -> dict:
    if backend == "float64":
        return {"numpy": np, "_expit": scipy.special.expit, "_full": _full_float,
                "__builtins__": {}}
    return {"mpmath": _VectorMpmath(), "_mp_softplus": np.frompyfunc(_mp_softplus_scalar, 1, 1),
            "_mp_expit": np.frompyfunc(_mp_expit_scalar, 1, 1), "_full": _full_mp,
            "__builtins__": {}}


# --- kernels ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class KernelSpec:
    """One kernel: its name, arguments (symbols) and output expressions."""

    name: str
    args: tuple
    outputs: tuple
    #: an argument whose shape every output must have (constant outputs are broadcast to it)
    shape_arg: sp.Symbol | None = None


def kernel_source(spec: KernelSpec, backend: str) -> str:
    """Python source of one kernel (CSE'd, printed by SymPy's numpy/mpmath printer)."""
    printer = _printer(backend)
    for a in spec.args:
        if not (isinstance(a, sp.Symbol) and a.name.isidentifier() and not a.name.startswith("_")):
            raise ValueError(f"kernel argument {a!r} is not one of the package's symbols")
    allowed = set(spec.args)
    outputs = []
    for e in spec.outputs:
        if not isinstance(e, sp.Basic):
            raise TypeError(f"kernel {spec.name}: output {e!r} is not a SymPy expression")
        stray = e.free_symbols - allowed
        if stray:
            raise ValueError(f"kernel {spec.name}: output uses {sorted(map(str, stray))} not among its arguments")
        outputs.append(e)
    temps = sp.numbered_symbols("_t")
    replacements, reduced = sp.cse(outputs, symbols=temps, optimizations="basic", order="none")
    lines = ["@_njit"] if backend == "numba" else []
    lines.append(f"def {spec.name}({', '.join(a.name for a in spec.args)}):")
    for sym, expr in replacements:
        lines.append(f"    {sym.name} = {printer.doprint(expr)}")
    # rho and the global scalars (N, S, ...) are one value; everything else is one per coordinate
    per_coordinate = {a for a in spec.args if a.name.split("_")[0] in ("w", "wt", "g", "gt", "sigma", "z")}
    outs = []
    for expr in reduced:
        text = printer.doprint(expr)
        # a constant output (e.g. d beta / d w = 1 at depth 1) must still be one value per coordinate
        if spec.shape_arg is not None and not _depends(expr, replacements, per_coordinate):
            # numba kernels are scalar: a constant is just a float there
            text = f"float({text})" if backend == "numba" else f"_full({text}, {spec.shape_arg.name})"
        outs.append(text)
    lines.append(f"    return ({', '.join(outs)},)")
    return "\n".join(lines) + "\n"


def _depends(expr, replacements, per_coordinate) -> bool:
    """Whether ``expr`` (possibly through CSE temporaries) depends on a per-coordinate argument."""
    table = dict(replacements)
    seen, stack = set(), list(expr.free_symbols)
    while stack:
        s = stack.pop()
        if s in per_coordinate:
            return True
        if s in seen or s not in table:
            continue
        seen.add(s)
        stack.extend(table[s].free_symbols)
    return False


def perturbation_args(cf: CoordinateForm) -> tuple:
    """The perturbation kernels' arguments: ``w..``, ``sigma..`` (discontinuous), ``g`` (when
    used), the global scalars (sums, then ``S``), ``rho``."""
    free = set().union(*(e.free_symbols for e in cf.perturbation))
    return (cf.w + (cf.sigma if cf.discontinuous else ()) + ((cf.g,) if cf.g in free else ())
            + cf.globals + (RHO,))


def share_args(cf: CoordinateForm, gs) -> tuple:
    """A global sum's share kernel arguments: ``w..``, ``g`` (and ``S``, when it occurs)."""
    return cf.w + (cf.g,) + ((SPEED,) if SPEED in gs.share.free_symbols else ())


def kernel_specs(cf: CoordinateForm) -> list[KernelSpec]:
    """The kernels of one coordinate form (see the module docstring)."""
    w, wt, g, gt, sigma = cf.w, cf.wt, cf.g, cf.gt, cf.sigma
    L = cf.depth
    specs = [
        KernelSpec("beta", w, (cf.beta,), w[0]),
        KernelSpec("dbeta", w, tuple(sp.diff(cf.beta, wm) for wm in w), w[0]),
        KernelSpec("gradient", w + (g,), cf.F, w[0]),
        KernelSpec("norm_share", w + (g,), (cf.norm_share,), w[0]),
        KernelSpec("flow", wt + (gt,), cf.rescaled, wt[0]),
        KernelSpec("phi", (Z,), (cf.phi,), Z),
        KernelSpec("dphi", (Z,), (cf.dphi,), Z),
    ]
    # d out_l / d wt_r (row-major l, r), then d out_l / d gt
    specs.append(KernelSpec("jac_flow", wt + (gt,),
                            tuple(sp.diff(o, r) for o in cf.rescaled for r in wt)
                            + tuple(sp.diff(o, gt) for o in cf.rescaled), wt[0]))
    if cf.perturbation is not None and any(e != 0 for e in cf.perturbation):
        pargs = perturbation_args(cf)
        specs.append(KernelSpec("perturbation", pargs, cf.perturbation, w[0]))
        wtil = cf.perturbed_point
        outs = [sp.diff(p, m) for p in wtil for m in w]             # L*L
        if g in pargs:
            outs += [sp.diff(p, g) for p in wtil]                      # L
        for s in cf.globals:
            outs += [sp.diff(p, s) for p in wtil]                      # L per global
        specs.append(KernelSpec("jac_perturbed", pargs, tuple(outs), w[0]))
    for m, gs in enumerate(cf.global_sums):
        sargs = share_args(cf, gs)
        specs.append(KernelSpec(f"share_{m}", sargs, (gs.share,), w[0]))
        specs.append(KernelSpec(f"jac_share_{m}", sargs, tuple(sp.diff(gs.share, a) for a in sargs), w[0]))
    if cf.norm_share is not None and NORM in cf.globals:
        specs.append(KernelSpec("jac_norm_share", w + (g,),
                                tuple(sp.diff(cf.norm_share, m) for m in w) + (sp.diff(cf.norm_share, g),),
                                w[0]))
    assert all(len(s.args) == len(set(s.args)) for s in specs), "duplicate kernel arguments"
    assert L == len(w)
    return specs


@dataclass
class Kernels:
    """Compiled kernels of one ``(depth, algorithm, loss, backend)``, with their source.

    Attributes are the kernel functions (``beta``, ``flow``, ...); ``source`` is the
    complete generated module text; ``perturbation_is_shift`` says the perturbed point's
    derivative in ``w`` is the identity (GD, linf-SAM with ``sigma`` held fixed).
    """

    depth: int
    algorithm: str
    loss: str
    backend: str
    source: str
    globals: tuple
    perturbation_is_shift: bool
    functions: dict = field(repr=False)
    #: the :class:`~sambias.symbolic.coordinate.CoordinateForm` the kernels were printed from
    coordinate: CoordinateForm | None = field(default=None, repr=False)
    #: the perturbation kernel's argument names (``()`` when there is none)
    perturbation_args: tuple = ()

    def __post_init__(self) -> None:
        # plain instance attributes: the vector field calls these on every evaluation
        for name, fn in self.functions.items():
            if name in self.__dict__:
                raise ValueError(f"kernel name {name!r} clashes with an attribute")
            self.__dict__[name] = fn


_counter = itertools.count()


@functools.lru_cache(maxsize=None)
def generate_kernels(depth: int, algorithm: str, loss: str, backend: str = "float64") -> Kernels:
    """Generate, compile and cache the kernels of ``(depth, algorithm, loss)``.

    Independent of ``d``, ``n`` and the data: one compiled kernel set serves every
    problem with this depth, algorithm and loss.
    """
    _printer(backend)  # validates the backend name
    cf = coordinate_form(depth, algorithm, loss)
    specs = kernel_specs(cf)
    header = (f"# generated by sambias.symbolic.codegen from the derived flow of\n"
              f"# depth {depth}, {algorithm}, {loss} loss, backend {backend}; do not edit\n")
    source, namespace = _load(specs, backend, header,
                              f"<sambias-generated-{depth}-{algorithm}-{loss}-{backend}-{next(_counter)}>")
    functions = {s.name: namespace[s.name] for s in specs}
    shift = cf.perturbed_point is not None and all(
        sp.diff(p - wl, m) == 0 for p, wl in zip(cf.perturbed_point, cf.w) for m in cf.w) and all(
        sp.diff(p, s) == 0 for p in cf.perturbed_point for s in (cf.g,) + cf.globals)
    pargs = next((tuple(a.name for a in s.args) for s in specs if s.name == "perturbation"), ())
    return Kernels(depth=depth, algorithm=algorithm, loss=loss, backend=backend, source=source,
                   globals=cf.globals, perturbation_is_shift=shift, functions=functions, coordinate=cf,
                   perturbation_args=pargs)


#: the general (flat) path handles at most this many weights ``L*d``
MAX_FLAT_WEIGHTS = 48


@dataclass
class FlatKernels:
    """The general path's perturbation of one ``(depth, dim, algorithm, backend)``.

    ``perturbation(w.., [sigma..], g_1..g_d, [S], rho)`` -> the ``L*d`` entries of ``eps``;
    ``jacobian(same)`` -> ``d eps / d w`` (``L*d x L*d``, row-major), then ``d eps / d g``
    (``L*d x d``), then ``d eps / d S`` (``L*d``, when ``S`` occurs).  Scalars in, scalars out.
    """

    depth: int
    dim: int
    algorithm: str
    backend: str
    source: str
    uses_speed: bool
    perturbation: object = field(repr=False)
    jacobian: object = field(repr=False)


@functools.lru_cache(maxsize=32)
def generate_flat_kernels(depth: int, dim: int, algorithm: str, backend: str = "float64") -> FlatKernels:
    """The flat perturbation of an algorithm without the generic-coordinate structure.

    The algorithm's definition is applied to the whole flat gradient ``G = g_j dbeta_j/dw^{(l)}_j``
    (times ``S`` unless ``eps`` is scale-free in the gradient), its signs replaced by the
    switching symbols when it is discontinuous, then CSE'd and printed with its Jacobian.
    """
    from .algorithms import AlgorithmError, get_algorithm, perturbation_degree
    from .coordinate import gradient_factor
    from .notation import switching, weight
    _printer(backend)
    L, d = int(depth), int(dim)
    if L * d > MAX_FLAT_WEIGHTS:
        raise AlgorithmError(f"algorithm {algorithm!r}: its perturbation couples coordinates beyond global "
                             f"sums, so it runs on the general flat path, which handles at most "
                             f"{MAX_FLAT_WEIGHTS} weights (L*d); this problem has {L * d}")
    definition = get_algorithm(algorithm)
    degree = perturbation_degree(definition, L)
    W = [weight(l, j) for l in range(1, L + 1) for j in range(1, d + 1)]
    gs = [sp.Symbol(f"g_{j}", real=True) for j in range(1, d + 1)]
    Gs = [sp.Symbol(f"G_{l}_{j}", real=True) for l in range(1, L + 1) for j in range(1, d + 1)]
    eps = list(definition.evaluate(sp.Matrix(Gs), sp.Matrix(W), RHO))
    sigma = []
    if definition.discontinuous:
        sigma = [switching(l, j) for l in range(1, L + 1) for j in range(1, d + 1)]
        eps = [e.xreplace({sp.sign(G): s for G, s in zip(Gs, sigma)}) for e in eps]
        if any(e.has(sp.sign) for e in eps):
            raise AlgorithmError(f"algorithm {algorithm!r}: a discontinuous perturbation may use sign() "
                                 "of gradient entries only")
    P = gradient_factor(L, "exp")
    to_F = {}
    for l in range(L):
        for j in range(d):
            Pj = P[l].xreplace({weight(m + 1, "j"): weight(m + 1, j + 1) for m in range(L)})
            to_F[Gs[l * d + j]] = (SPEED if degree is None else 1) * gs[j] * Pj
    factor = SPEED**degree if degree else sp.S.One
    eps = [factor * e.xreplace(to_F) for e in eps]
    uses_speed = any(e.has(SPEED) for e in eps)
    args = tuple(W) + tuple(sigma) + tuple(gs) + ((SPEED,) if uses_speed else ()) + (RHO,)
    jac = [sp.diff(e, v) for e in eps for v in W] + [sp.diff(e, v) for e in eps for v in gs]
    if uses_speed:
        jac += [sp.diff(e, SPEED) for e in eps]
    specs = [KernelSpec("perturbation", args, tuple(eps)), KernelSpec("jacobian", args, tuple(jac))]
    header = (f"# generated by sambias.symbolic.codegen (general flat path) from the definition of\n"
              f"# {algorithm}, depth {L}, d = {d}, backend {backend}; do not edit\n")
    source, namespace = _load(specs, backend, header,
                              f"<sambias-generated-flat-{L}-{d}-{algorithm}-{backend}-{next(_counter)}>")
    return FlatKernels(depth=L, dim=d, algorithm=algorithm, backend=backend, source=source,
                       uses_speed=uses_speed, perturbation=namespace["perturbation"],
                       jacobian=namespace["jacobian"])
