"""Machine-code kernels for the float64 hot path: numba, compiled from the generated source.

:class:`~sambias.symbolic.generated.GeneratedField` evaluates the flow with numpy calls on
the per-coordinate kernels; at small ``d`` each RHS is some thirty numpy calls and their
Python overhead is the whole cost.  Here the same SymPy-printed kernels (scalar form) and
one fixed orchestration -- couplings through the data, the perturbation, its
vector-Jacobian product and the full Jacobian -- are printed as one module per
``(depth, algorithm, loss)`` and compiled with numba, so one Python -> machine-code
crossing serves one ``rescaled_with_grad`` (RHS, ``log S`` and its gradient), one
``rescaled`` or one ``rescaled_jac``.  Results agree with the numpy path to rounding
(the same formulas; only summation orders differ).

On-disk cache (so a second process pays no compile): the module is written to
``$SAMBIAS_CACHE_DIR`` (else ``$XDG_CACHE_HOME/sambias``, else ``~/.cache/sambias``),
sub-directory ``kernels``, as ``sk_<key>.py`` where ``key`` hashes the source and the
versions of Python, numpy, numba and this format.  numba keeps its compiled code beside it
(``__pycache__``) and checks its index against the source file; because those files are
pickles, the directory must be the user's own and private (mode 0700, owned by the user,
else a private temporary directory is used for this process), the module's text must equal
the text printed now (whose hash names it), and every numba cache file must match the
SHA-256 manifest written when it was made -- anything else is deleted and recompiled, never
loaded; where numba would cache elsewhere (``NUMBA_CACHE_DIR``) it gets no disk cache.

When (``SAMBIAS_JIT``): ``0`` (or numba missing) -- the numpy path; ``1`` -- compile at a
field's first hot call; unset or ``auto`` -- a compile costs 5-15 s of CPU, so a shape runs
numpy until it has been busy (after :data:`PROBE_CALLS` hot calls in this process a verified
cache entry is loaded, after :data:`COMPILE_CALLS` the module is compiled).  The general flat
path (user algorithms coupling coordinates beyond global sums) and the mpmath backend stay numpy.

>>> from sambias import Init, Problem
>>> from sambias.symbolic import GeneratedField
>>> f = GeneratedField(Problem(depth=2, algorithm="gd", X=[[2.0, 1.0]], y=[1], init=Init(scale=1.0)))
>>> jit = compiled_field(f)          # None when SAMBIAS_JIT=0 or numba is missing
>>> jit is None or bool(np.allclose(jit.rescaled(np.ones(4))[0], [2.0, 1.0, 2.0, 1.0]))
True
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re
import stat
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import sympy as sp

from .codegen import kernel_source, kernel_specs
from .coordinate import coordinate_form
from .notation import RHO, SPEED

#: bump when the generated module's layout changes (part of the cache key)
FORMAT = 1
_SUBDIR = "kernels"
_PREFIX = "sk_"


def jit_mode() -> str:
    """``SAMBIAS_JIT``: ``0`` (off: the numpy path), ``1`` (compile at a field's first hot call)
    or unset/``auto`` (compile once the shape has earned it, see :class:`JitSlot`); ``off``
    also when numba does not import."""
    raw = os.environ.get("SAMBIAS_JIT", "auto").strip().lower()
    if raw in ("0", "false", "no", "off") or _numba_version() is None:
        return "off"
    return "eager" if raw in ("1", "true", "yes", "on", "eager") else "auto"


def jit_enabled() -> bool:
    """Whether compiled kernels may be used at all (``SAMBIAS_JIT`` not ``0``, numba imports)."""
    return jit_mode() != "off"


@functools.lru_cache(maxsize=1)
def _numba_version() -> str | None:
    try:
        import numba
    except Exception:  # pragma: no cover - the numpy path then serves
        return None
    return numba.__version__


# --- the cache directory ----------------------------------------------------------------------
def cache_root() -> Path:
    """``$SAMBIAS_CACHE_DIR``, else ``$XDG_CACHE_HOME/sambias``, else ``~/.cache/sambias``."""
    explicit = os.environ.get("SAMBIAS_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "sambias"


def _private(path: Path) -> bool:
    """Owned by this user and writable by nobody else (numba's cache holds pickles)."""
    try:
        st = path.lstat()
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode) or (hasattr(os, "getuid") and st.st_uid != os.getuid()):
        return False
    return not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _make_private_dir(path: Path, restrict: bool) -> bool:
    """Create ``path`` (mode 0700); ``True`` when it is ours and no one else may write in it.
    ``restrict`` also takes away others' read access (only for the directory we own outright:
    a ``SAMBIAS_CACHE_DIR`` the user chose keeps its permissions)."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return False
    if not _private(path):
        return False
    if restrict:
        try:
            path.chmod(0o700)
        except OSError:
            return False
    return True


@functools.lru_cache(maxsize=None)
def _fallback_dir() -> Path:
    # one private directory per process, when the configured one cannot be trusted
    return Path(tempfile.mkdtemp(prefix="sambias-kernels-"))


def kernel_dir() -> Path:
    """The directory compiled modules live in: private, or a per-process temporary one."""
    root = cache_root()
    target = root / _SUBDIR
    if _make_private_dir(root, restrict=False) and _make_private_dir(target, restrict=True):
        return target
    return _fallback_dir()


# --- the generated module -----------------------------------------------------------------------
_HEADER = '''\
# generated by sambias.symbolic.compiled from the derived flow of
# depth {depth}, {algorithm}, {loss} loss (numba); do not edit
import math
import numpy
from numba import njit

_njit = njit(cache=True, nogil=True, error_model="numpy")


@_njit
def _expit(x):
    # scipy.special.expit's formula, so both paths round alike
    return 1.0 / (1.0 + math.exp(-x))

'''


class _Inliner:
    """Kernel bodies (CSE'd, SymPy-printed) spliced into loops: one numba function instead of
    dozens (numba's compile cost is mostly per function)."""

    def __init__(self, specs) -> None:
        self.specs = {s.name: s for s in specs}
        self.sites = 0

    def has(self, name: str) -> bool:
        return name in self.specs

    def args(self, name: str) -> tuple:
        return tuple(a.name for a in self.specs[name].args)

    def __call__(self, name: str, argmap: dict, assign) -> list[str]:
        """Statements evaluating kernel ``name`` with its arguments replaced per ``argmap``;
        ``assign(r)`` gives the lines consuming the output tuple named ``r``."""
        text = kernel_source(self.specs[name], "numba")
        body = text.splitlines()[2:]          # drop the decorator and the def line
        self.sites += 1
        r = f"_r{self.sites}"
        subst = {a: argmap[a] for a in self.args(name)}
        pattern = re.compile(r"\b(" + "|".join(map(re.escape, sorted(subst, key=len, reverse=True)))
                             + r"|_t\d+)\b")

        def repl(m):
            tok = m.group(1)
            return subst[tok] if tok in subst else f"_k{self.sites}{tok}"
        lines = []
        for line in body:
            line = pattern.sub(repl, line.strip())
            if line.startswith("return "):
                line = f"{r} = {line[len('return '):]}"
            lines.append(line)
        return lines + list(assign(r))


def _indent(lines, n: int) -> list[str]:
    return [" " * n + ln if ln else ln for ln in lines]


def _module_body(cf, specs) -> str:
    L = cf.depth
    K = _Inliner(specs)
    sums = cf.global_sums
    sum_names = [str(gs.symbol) for gs in sums]
    pargs = K.args("perturbation") if K.has("perturbation") else ()
    pert_g, pert_s = "g_j" in pargs, "S" in pargs
    share_s = [gs.share.has(SPEED) for gs in sums]
    need_g, need_s = pert_g or bool(sums), pert_s or any(share_s)
    shift = cf.perturbed_point is not None and all(
        sp.diff(p - wl, m) == 0 for p, wl in zip(cf.perturbed_point, cf.w) for m in cf.w) and all(
        sp.diff(p, s) == 0 for p in cf.perturbed_point for s in (cf.g,) + cf.globals)
    npg = len(cf.globals) if pargs else 0
    if pargs and npg != len(sums) + int(pert_s):
        raise ValueError(f"unexpected global scalars {cf.globals} for {cf.algorithm}")

    def amap(W="W", sig="sig", g="g"):
        m = {f"w_{l + 1}_j": f"{W}[{l}, j]" for l in range(L)}
        m.update({f"wt_{l + 1}_j": f"{W}[{l}, j]" for l in range(L)})
        m.update({f"sigma_{l + 1}_j": f"{sig}[{l}, j]" for l in range(L)})
        m.update({"g_j": f"{g}[j]", "gt_j": f"{g}[j]", "S": "S", str(RHO): "rho", "z": "zi"})
        m.update({s: f"X[{i}]" for i, s in enumerate(sum_names)})
        return m

    def loop(name, argmap, assign, var="j", rng="d"):
        return [f"for {var} in range({rng}):"] + _indent(K(name, argmap, assign), 4)

    rows = lambda target: (lambda r: [f"{target}[{l}, j] = {r}[{l}]" for l in range(L)])

    # --- helpers shared by both points (phi, dphi inlined) ---
    phi_lines = _indent(K("phi", {"z": "zi"}, lambda r: [f"p = {r}[0]"]), 8)
    dphi_h = _indent(K("dphi", {"z": "zi"}, lambda r: [f"c = q[i] * {r}[0]"]), 8)
    dphi_m = _indent(K("dphi", {"z": "zi"}, lambda r: [f"c[i] = q[i] * {r}[0]"]), 8)
    dphi_u = _indent(K("dphi", {"z": "zi"}, lambda r: [f"c = q[i] * {r}[0]"]), 8)
    phi_one = _indent(K("phi", {"z": "zi"}, lambda r: [f"p0 = {r}[0]"]), 8)
    src = [
        "", f"L = {L}", f"DISC = {bool(cf.discontinuous)}", f"SHIFT = {bool(shift)}",
        f"NPG = {npg}", "", "",
        "@_njit", "def _coupling(A, beta, z, q, g):",
        "    # z = A beta, q = softmax(phi(z)), g = -A^T q; returns log S",
        "    n, d = A.shape",
        "    for i in range(n):", "        s = 0.0", "        for j in range(d):",
        "            s += A[i, j] * beta[j]", "        z[i] = s",
        "    if n == 1:", "        for j in range(d):", "            g[j] = -A[0, j]",
        "        q[0] = 1.0", "        zi = z[0]", *phi_one, "        return p0",
        "    m = -numpy.inf", "    for i in range(n):", "        zi = z[i]", *phi_lines,
        "        q[i] = p", "        if p > m:", "            m = p",
        "    s = 0.0", "    for i in range(n):", "        e = math.exp(q[i] - m)", "        q[i] = e",
        "        s += e",
        "    for i in range(n):", "        q[i] /= s",
        "    for j in range(d):", "        g[j] = 0.0",
        "    for i in range(n):", "        qi = q[i]", "        for j in range(d):",
        "            g[j] -= qi * A[i, j]",
        "    return m + math.log(s)", "", "",
        "@_njit", "def _dlogS(A, z, q):", "    # d log S / d beta = A^T (q phi'(z))",
        "    n, d = A.shape", "    h = numpy.zeros(d)",
        "    for i in range(n):", "        zi = z[i]", *dphi_h,
        "        for j in range(d):", "            h[j] += c * A[i, j]", "    return h", "", "",
        "@_njit", "def _dg(A, z, q):",
        "    # M = dg/dbeta = (A^T q)(A^T c)^T - A^T diag(c) A, c = q phi'(z)  (n > 1)",
        "    n, d = A.shape", "    c = numpy.empty(n)",
        "    for i in range(n):", "        zi = z[i]", *dphi_m,
        "    a = numpy.zeros(d)", "    b = numpy.zeros(d)", "    M = numpy.zeros((d, d))",
        "    for i in range(n):", "        for j in range(d):", "            a[j] += q[i] * A[i, j]",
        "            b[j] += c[i] * A[i, j]",
        "        for j in range(d):", "            cij = c[i] * A[i, j]", "            for k in range(d):",
        "                M[j, k] -= cij * A[i, k]",
        "    for j in range(d):", "        for k in range(d):", "            M[j, k] += a[j] * b[k]",
        "    return M", "", "",
        "@_njit", "def _uM(A, z, q, u):",
        "    # u @ M in O(n d), M never formed: (u . A^T q) A^T c - A^T (c * (A u))",
        "    n, d = A.shape", "    ua = 0.0", "    out = numpy.zeros(d)", "    b = numpy.zeros(d)",
        "    for i in range(n):", "        zi = z[i]", *dphi_u,
        "        s = 0.0", "        for j in range(d):", "            s += u[j] * A[i, j]",
        "        ua += q[i] * s", "        cs = c * s",
        "        for k in range(d):", "            b[k] += c * A[i, k]", "            out[k] -= cs * A[i, k]",
        "    for k in range(d):", "        out[k] += ua * b[k]",
        "    return out", "", "",
    ]
    ev = []
    ev += ["n, d = A.shape", "N = L * d", "W = w.reshape((L, d))", "SG = sig_in.reshape((L, d))",
           "Wt = numpy.empty((L, d))", "z = numpy.empty(n)", "q = numpy.empty(n)", "g = numpy.zeros(d)",
           "sig = numpy.zeros((L, d))", "X = numpy.zeros(max(NPG, 1))", "F = numpy.zeros((L, d))",
           "bw = numpy.empty(d)", "out = numpy.zeros((L, d))", "grad = numpy.zeros((L, d))",
           "nJ = N if kind == 2 else 0", "J = numpy.zeros((nJ, nJ))",
           "status = 0", "S = 0.0", "log_S0 = 0.0", "computed = False"]
    # --- the perturbed point Wt = W + eps(W) ---
    pert = []
    if pargs:
        at_w = loop("beta", amap(), lambda r: [f"bw[j] = {r}[0]"]) + ["log_S0 = _coupling(A, bw, z, q, g)"]
        if need_g or need_s or cf.discontinuous:
            cond = "True" if need_g or need_s else "not has_sigma"
            pert += [f"if {cond}:"] + _indent(at_w + loop("gradient", amap(), rows("F"))
                                              + ["computed = True"], 4)
        if need_s:
            pert += ["S = math.exp(log_S0)"]
        if cf.discontinuous:
            pert += ["for l in range(L):", "    for j in range(d):",
                     "        sig[l, j] = SG[l, j] if has_sigma else numpy.sign(F[l, j])"]
        for m, gs in enumerate(sums):
            pert += ["total = 0.0"] + loop(f"share_{m}", amap(), lambda r: [f"total += {r}[0]"])
            if float(gs.const) != 0.0:
                pert += [f"total = total + {float(gs.const)!r}"]
            p = float(gs.power)
            pert += ["value = " + ("total" if p == 1.0 else "math.sqrt(total)" if p == 2.0
                                   else f"total ** (1.0 / {p!r})")]
            if gs.divides:
                pert += ["if value == 0.0:", "    status = 1"]
            pert += [f"X[{m}] = value"]
        if pert_s:
            pert += [f"X[{len(sums)}] = S"]
        pert += loop("perturbation", amap(), lambda r: [f"Wt[{l}, j] = W[{l}, j] + {r}[{l}]" for l in range(L)])
    ev += ["if not pert_on:", "    for l in range(L):", "        for j in range(d):",
           "            Wt[l, j] = W[l, j]"]
    if pert:
        ev += ["else:"] + _indent(pert, 4)
    ev += ["if status != 0:", "    return out.reshape(N), 0.0, grad.reshape(N), J, status",
           "identity = (not pert_on) or SHIFT"]
    # --- the pieces of d Wt / d W (E, Eg, P, M, per global value Es, DX) ---
    ev += ["P = numpy.zeros((L, d))", "M = numpy.zeros((1, 1))", "E = numpy.zeros((L, L, d))",
           "Eg = numpy.zeros((L, d))", "Es = numpy.zeros((max(NPG, 1), L, d))",
           "DX = numpy.zeros((max(NPG, 1), L, d))"]
    parts = []
    if pargs and not shift:
        parts += ["if not computed:"] + _indent(
            loop("beta", amap(), lambda r: [f"bw[j] = {r}[0]"]) + ["log_S0 = _coupling(A, bw, z, q, g)"]
            + (["S = math.exp(log_S0)"] if need_s else []), 4)
        parts += loop("dbeta", amap(), rows("P"))
        parts += ["if n > 1 and kind == 2:", "    M = _dg(A, z, q)", "dS = numpy.zeros((L, d))"]
        if need_s:
            parts += ["h0 = _dlogS(A, z, q)", "for l in range(L):", "    for j in range(d):",
                      "        dS[l, j] = S * h0[j] * P[l, j]"]

        def jp(r):
            lines = [f"E[{l}, {m}, j] = {r}[{l * L + m}]" for l in range(L) for m in range(L)]
            at = L * L
            if pert_g:
                lines += [f"Eg[{l}, j] = {r}[{at + l}]" for l in range(L)]
                at += L
            for p in range(npg):
                lines += [f"Es[{p}, {l}, j] = {r}[{at + p * L + l}]" for l in range(L)]
            return lines
        parts += loop("jac_perturbed", amap(), jp)
        for m, gs in enumerate(sums):
            sargs = K.args(f"share_{m}")
            uses_s = "S" in sargs
            parts += ["dw = numpy.zeros((L, d))", "dgs = numpy.zeros(d)", "dSs = numpy.zeros(d)"]

            def js(r, uses_s=uses_s):
                return ([f"dw[{l}, j] = {r}[{l}]" for l in range(L)] + [f"dgs[j] = {r}[{L}]"]
                        + ([f"dSs[j] = {r}[{L + 1}]"] if uses_s else []))
            parts += loop(f"jac_share_{m}", amap(), js)
            parts += ["if n > 1:", "    uM = _uM(A, z, q, dgs)", "    for k in range(d):",
                      "        for l in range(L):", "            dw[l, k] += uM[k] * P[l, k]"]
            if uses_s:
                parts += ["tot = 0.0", "for j in range(d):", "    tot += dSs[j]", "for l in range(L):",
                          "    for j in range(d):", "        dw[l, j] += tot * dS[l, j]"]
            p = float(gs.power)
            expr = ("dw[l, j] / (2 * X[{m}])" if p == 2.0 else "dw[l, j]" if p == 1.0
                    else f"dw[l, j] * (X[{{m}}] ** (1 - {p!r}) / {p!r})").format(m=m)
            parts += ["for l in range(L):", "    for j in range(d):", f"        DX[{m}, l, j] = {expr}"]
        if pert_s:
            parts += ["for l in range(L):", "    for j in range(d):", f"        DX[{len(sums)}, l, j] = dS[l, j]"]
        ev += ["if not identity and kind != 0:"] + _indent(parts, 4)
    # --- at the perturbed point ---
    ev += ["zt = numpy.empty(n)", "qt = numpy.empty(n)", "gt = numpy.zeros(d)"]
    ev += loop("beta", amap("Wt"), lambda r: [f"bw[j] = {r}[0]"])
    ev += ["log_S = _coupling(A, bw, zt, qt, gt)"]
    ev += ["if kind != 2:"] + _indent(loop("flow", amap("Wt", g="gt"), rows("out")), 4)
    ev += ["if kind == 0:", "    return out.reshape(N), log_S, grad.reshape(N), J, 0"]
    ev += ["Pt = numpy.zeros((L, d))"] + loop("dbeta", amap("Wt"), rows("Pt"))
    ev += ["if kind == 1:"] + _indent([
        "h = _dlogS(A, zt, qt)", "V = numpy.empty((L, d))",
        "for l in range(L):", "    for j in range(d):", "        V[l, j] = h[j] * Pt[l, j]",
        "if identity:", "    return out.reshape(N), log_S, V.reshape(N), J, 0",
        # the vector-Jacobian product V . d Wt / d W without forming the Jacobian
        "for m in range(L):", "    for j in range(d):", "        s = 0.0", "        for l in range(L):",
        "            s += V[l, j] * E[l, m, j]", "        grad[m, j] = s",
        "if PERT_G and n > 1:", "    u = numpy.zeros(d)", "    for l in range(L):", "        for j in range(d):",
        "            u[j] += V[l, j] * Eg[l, j]",
        "    uM = _uM(A, z, q, u)", "    for k in range(d):",
        "        for m in range(L):", "            grad[m, k] += uM[k] * P[m, k]",
        "for p in range(NPG):", "    s = 0.0", "    for l in range(L):", "        for j in range(d):",
        "            s += V[l, j] * Es[p, l, j]",
        "    for m in range(L):", "        for k in range(d):", "            grad[m, k] += s * DX[p, m, k]",
        "return out.reshape(N), log_S, grad.reshape(N), J, 0"], 4)
    # kind == 2: the Jacobian
    ev += ["D = numpy.zeros((L, L, d))", "C = numpy.zeros((L, d))"]
    ev += loop("jac_flow", amap("Wt", g="gt"),
               lambda r: [f"D[{l}, {k}, j] = {r}[{l * L + k}]" for l in range(L) for k in range(L)]
               + [f"C[{l}, j] = {r}[{L * L + l}]" for l in range(L)])
    ev += ["Mt = _dg(A, zt, qt) if n > 1 else numpy.zeros((1, 1))",
           "if identity:",
           "    for l in range(L):", "        for j in range(d):", "            for m in range(L):",
           "                J[l * d + j, m * d + j] = D[l, m, j]",
           "    if n > 1:", "        for l in range(L):", "            for j in range(d):",
           "                c = C[l, j]", "                for m in range(L):", "                    for k in range(d):",
           "                        J[l * d + j, m * d + k] += c * (Mt[j, k] * Pt[m, k])",
           "    return out.reshape(N), log_S, grad.reshape(N), J, 0",
           # T[(l, j), (m, k)] = d Wt[l, j] / d W[m, k]
           "T = numpy.zeros((N, N))",
           "for l in range(L):", "    for j in range(d):", "        for m in range(L):",
           "            T[l * d + j, m * d + j] = E[l, m, j]",
           "if PERT_G and n > 1:", "    for l in range(L):", "        for j in range(d):", "            e = Eg[l, j]",
           "            for m in range(L):", "                for k in range(d):",
           "                    T[l * d + j, m * d + k] += e * (M[j, k] * P[m, k])",
           "for p in range(NPG):", "    for l in range(L):", "        for j in range(d):", "            e = Es[p, l, j]",
           "            for m in range(L):", "                for k in range(d):",
           "                    T[l * d + j, m * d + k] += e * DX[p, m, k]",
           "for l in range(L):", "    for j in range(d):", "        for r in range(L):", "            c = D[l, r, j]",
           "            for c2 in range(N):", "                J[l * d + j, c2] += c * T[r * d + j, c2]",
           "if n > 1:", "    Tb = numpy.zeros((d, N))", "    for i in range(d):", "        for r in range(L):",
           "            c = Pt[r, i]", "            for c2 in range(N):", "                Tb[i, c2] += c * T[r * d + i, c2]",
           "    for j in range(d):", "        for i in range(d):", "            c = Mt[j, i]",
           "            for c2 in range(N):", "                e = c * Tb[i, c2]",
           "                for l in range(L):", "                    J[l * d + j, c2] += C[l, j] * e",
           "return out.reshape(N), log_S, grad.reshape(N), J, 0"]
    src[5:5] = [f"PERT_G = {pert_g}"]
    src += ["@_njit", "def evaluate(kind, w, A, rho, sig_in, has_sigma, pert_on):",
            '    """kind 0: rescaled, 1: with the gradient of log S, 2: the Jacobian;',
            '    returns (dW/dtau, log S(Wt), grad log S, J, status); status 1: a dividing sum is 0."""']
    src += _indent(ev, 4)
    return "\n".join(src) + "\n"


@functools.lru_cache(maxsize=None)
def module_source(depth: int, algorithm: str, loss: str) -> str:
    """The complete numba module of one ``(depth, algorithm, loss)`` (text only)."""
    cf = coordinate_form(depth, algorithm, loss)
    if cf.perturbation is None:
        raise ValueError(f"algorithm {algorithm!r} runs on the general flat path, which is not compiled")
    specs = kernel_specs(cf)
    return _HEADER.format(depth=depth, algorithm=algorithm, loss=loss) + _module_body(cf, specs)



def cache_key(source: str) -> str:
    """SHA-256 of the source and everything its compiled form depends on."""
    import numba
    ident = "\0".join((str(FORMAT), sys.version, np.__version__, numba.__version__, source))
    return hashlib.sha256(ident.encode()).hexdigest()[:40]


# --- loading with validation ---------------------------------------------------------------------
def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _numba_files(directory: Path, modname: str) -> list[Path]:
    cache = directory / "__pycache__"
    if not cache.is_dir():
        return []
    return sorted(p for p in cache.iterdir() if p.name.startswith(modname + ".") and p.suffix in (".nbi", ".nbc"))


def _manifest_path(directory: Path, modname: str) -> Path:
    return directory / f"{modname}.manifest"


def _read_manifest(path: Path) -> dict[str, str] | None:
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    entries = {}
    for line in lines:
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name or "/" in name or name.startswith("."):
            return None
        entries[name] = digest
    return entries


def _purge(directory: Path, modname: str) -> None:
    for p in _numba_files(directory, modname) + [_manifest_path(directory, modname)]:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


def _cache_state(directory: Path, modname: str, source: str) -> str:
    """``"ok"`` (module text and every numba file verified), ``"missing"`` (no compiled code
    yet) or ``"bad"`` (something does not match: delete, never load)."""
    try:
        text_ok = (directory / f"{modname}.py").read_bytes() == source.encode()
    except OSError:
        return "missing"
    files = _numba_files(directory, modname)
    manifest = _read_manifest(_manifest_path(directory, modname))
    if not text_ok:
        return "bad"
    if not files and manifest is None:
        return "missing"
    if manifest is None or sorted(manifest) != [p.name for p in files] or any(
            _sha(p) != manifest[p.name] for p in files):
        return "bad"
    return "ok"


def validate_cache(directory: Path, modname: str, source: str) -> bool:
    """Make ``directory`` safe to import ``modname`` from; ``True`` when a complete, verified
    numba cache is there (no compile needed).  A module text that differs from ``source``,
    or numba files not matching the manifest, are deleted (numba then recompiles)."""
    state = _cache_state(directory, modname, source)
    if state == "ok":
        return True
    _purge(directory, modname)
    try:
        if (directory / f"{modname}.py").read_bytes() == source.encode():
            return False   # rewriting would only disturb a concurrent compile of the same text
    except OSError:
        pass
    tmp = directory / f".{modname}.{os.getpid()}.tmp"
    tmp.write_bytes(source.encode())
    os.replace(tmp, directory / f"{modname}.py")
    return False


def is_cached(depth: int, algorithm: str, loss: str) -> bool:
    """Whether the module of ``(depth, algorithm, loss)`` is in the disk cache, verified."""
    source = module_source(depth, algorithm, loss)
    return _cache_state(kernel_dir(), _PREFIX + cache_key(source), source) == "ok"


def _write_manifest(directory: Path, modname: str) -> None:
    files = _numba_files(directory, modname)
    if not files:
        return
    text = "".join(f"{_sha(p)}  {p.name}\n" for p in files)
    tmp = directory / f".{modname}.manifest.{os.getpid()}.tmp"
    tmp.write_text(text, encoding="ascii")
    os.replace(tmp, _manifest_path(directory, modname))


@dataclass
class CompiledModule:
    """The compiled entry points of one ``(depth, algorithm, loss)`` and where they came from."""

    depth: int
    algorithm: str
    loss: str
    path: Path
    #: ``True`` when the machine code came from a verified disk cache (no compile)
    from_cache: bool
    functions: dict = field(repr=False)


_ENTRY = ("evaluate",)


def _warm(functions: dict, depth: int) -> None:
    """Compile (or load) every entry point for the one signature the field uses."""
    w = np.full(depth * 2, 0.5)
    A = np.array([[1.0, 0.5], [0.25, 1.0]])
    sig = np.ones(depth * 2)
    for kind in (0, 1, 2):
        functions["evaluate"](kind, w, A, 0.1, sig, False, True)


@functools.lru_cache(maxsize=None)
def load_module(depth: int, algorithm: str, loss: str) -> CompiledModule:
    """Compile (or load from the disk cache) the module of ``(depth, algorithm, loss)``."""
    source = module_source(depth, algorithm, loss)
    modname = _PREFIX + cache_key(source)
    directory = kernel_dir()
    cached = validate_cache(directory, modname, source)
    spec = importlib.util.spec_from_file_location(modname, directory / f"{modname}.py")
    module = importlib.util.module_from_spec(spec)
    # numba's cached code re-imports its module by name to rebuild its environment
    sys.modules[modname] = module
    spec.loader.exec_module(module)  # our own printed text, checked byte for byte above
    if not _numba_caches_in(module, directory / "__pycache__"):
        cached = False
    functions = {name: getattr(module, name) for name in _ENTRY}
    _warm(functions, depth)
    if not cached:
        _write_manifest(directory, modname)
    return CompiledModule(depth, algorithm, loss, directory / f"{modname}.py", cached, functions)


def _numba_caches_in(module, expected: Path) -> bool:
    """Whether numba keeps this module's code where it was verified (``expected``).  Elsewhere
    (``NUMBA_CACHE_DIR`` set, or the directory not writable) nothing checked it, so that
    module's dispatchers get no disk cache at all: compiled in memory, never loaded."""
    from numba.core.caching import NullCache
    from numba.core.registry import CPUDispatcher
    dispatchers = [v for v in vars(module).values() if isinstance(v, CPUDispatcher)]
    paths = {getattr(getattr(d, "_cache", None), "_cache_path", None) for d in dispatchers}
    if paths == {str(expected)}:
        return True
    for d in dispatchers:
        d._cache = NullCache()
    return False


def _entry_point(dispatcher):
    """The compiled function itself, past numba's per-call type dispatch (a third of a call at
    d = 4).  Safe because every call passes exactly the warmed signature's types (``_w``,
    ``_sigma`` and the constructor coerce them); the dispatcher serves if there is not one."""
    if len(dispatcher.signatures) != 1:
        return dispatcher
    return dispatcher.overloads[dispatcher.signatures[0]].entry_point


class CompiledField:
    """The hot methods of one float64 :class:`GeneratedField`, in machine code.

    Same signatures and results (to rounding) as the field's ``rescaled``,
    ``rescaled_with_grad`` and ``rescaled_jac``.
    """

    def __init__(self, field, module: CompiledModule) -> None:
        self.field = field
        self.module = module
        self.A = np.ascontiguousarray(field.A, dtype=np.float64)
        self.rho = float(field.rho)
        self.size = field.size
        self.pert_on = bool(field._perturbs and not (field.rho == 0 and field._rho_off))
        self._no_sigma = np.zeros(self.size)
        self._eval = _entry_point(module.functions["evaluate"])
        self._collapse = (f"{field.definition.title} perturbation undefined: a global sum is 0 "
                          "(the gradient is 0: collapse)")

    def _w(self, w) -> np.ndarray:
        if type(w) is np.ndarray and w.dtype == np.float64 and w.ndim == 1 and w.flags.c_contiguous \
                and w.size == self.size:
            return w
        return np.ascontiguousarray(np.asarray(w, dtype=np.float64).reshape(self.size))

    def _sigma(self, sigma):
        if sigma is None:
            return self._no_sigma, False
        return np.ascontiguousarray(np.asarray(sigma, dtype=np.float64).reshape(self.size)), True

    def _fail(self):
        from .generated import CollapseError
        raise CollapseError(self._collapse)

    def rescaled(self, w, sigma=None):
        """``(dW/dtau, log S(W~))``."""
        sig, has = self._sigma(sigma)
        out, log_S, _, _, status = self._eval(0, self._w(w), self.A, self.rho, sig, has, self.pert_on)
        if status:
            self._fail()
        return out, log_S

    def rescaled_with_grad(self, w, sigma=None):
        """``(dW/dtau, log S(W~), d log S(W~(W))/dW)``."""
        sig, has = self._sigma(sigma)
        out, log_S, grad, _, status = self._eval(1, self._w(w), self.A, self.rho, sig, has, self.pert_on)
        if status:
            self._fail()
        return out, log_S, grad

    def rescaled_jac(self, w, sigma=None):
        """Jacobian of ``dW/dtau`` (``(L*d, L*d)``, ``sigma`` held fixed)."""
        sig, has = self._sigma(sigma)
        _, _, _, J, status = self._eval(2, self._w(w), self.A, self.rho, sig, has, self.pert_on)
        if status:
            self._fail()
        return J


def _eligible(field) -> bool:
    return field.backend == "float64" and field.flat is None


def compiled_field(field) -> CompiledField | None:
    """The compiled twin of a float64 ``GeneratedField`` (compiled now, or loaded from the
    disk cache), or ``None`` where the numpy path serves (``SAMBIAS_JIT=0``, numba missing,
    the mpmath backend, the general flat path)."""
    if not _eligible(field) or not jit_enabled():
        return None
    return CompiledField(field, load_module(field.depth, field.algorithm, field.loss))


# --- when to compile ---------------------------------------------------------------------------
#: hot calls of one shape (in this process) before the disk cache is looked at.  Loading costs
#: ~0.3-0.7 s of CPU (importing numba, printing the module, numba's loader) against ~30 us
#: saved per call on an idle machine, i.e. ~10,000-20,000 calls: a single short run (1,000-5,000
#: calls) is cheaper on the numpy path, a sweep of one shape switches early on
PROBE_CALLS = 10_000
#: ... and before a missing module is compiled (~10 s of CPU, ~300,000 calls' savings): buy when
#: the rent paid would have bought it (ski rental: never more than twice the better choice's
#: cost); the disk cache then serves every later process
COMPILE_CALLS = 300_000


@dataclass
class _Demand:
    calls: int = 0
    probed: bool = False
    module: CompiledModule | None = None


# the one registry here: hot calls per shape, so a sweep's many short fields add up
_DEMAND: dict[tuple, _Demand] = {}


class JitSlot:
    """A field's choice, per hot call, between its numpy path and compiled code.

    ``use()`` returns the :class:`CompiledField` once there is one, else ``None`` (run numpy).
    ``eager`` compiles at the first call; ``auto`` counts the shape's calls: after
    :data:`PROBE_CALLS` a verified disk-cache entry is loaded, after :data:`COMPILE_CALLS`
    the module is compiled.
    """

    __slots__ = ("field", "compiled", "demand", "eager")

    def __init__(self, field, eager: bool) -> None:
        self.field = field
        self.compiled: CompiledField | None = None
        self.eager = eager
        self.demand = _DEMAND.setdefault((field.depth, field.algorithm, field.loss), _Demand())

    def use(self) -> CompiledField | None:
        if self.compiled is not None:
            return self.compiled
        d = self.demand
        if d.module is None:
            d.calls += 1
            key = (self.field.depth, self.field.algorithm, self.field.loss)
            if self.eager or d.calls >= COMPILE_CALLS:
                d.module = load_module(*key)
            elif d.calls >= PROBE_CALLS and not d.probed:
                d.probed = True
                if is_cached(*key):
                    d.module = load_module(*key)
            if d.module is None:
                return None
        self.compiled = CompiledField(self.field, d.module)
        return self.compiled


def attach(field) -> JitSlot | None:
    """The slot ``GeneratedField`` consults on its hot calls (``None``: numpy path only)."""
    if not _eligible(field):
        return None
    mode = jit_mode()
    if mode == "off":
        return None
    return JitSlot(field, eager=mode == "eager")
