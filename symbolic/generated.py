"""A vector field built from generated kernels -- a drop-in for ``NumpyField``.

:class:`GeneratedField` has exactly the attributes and methods of
:class:`sambias.flows.field.NumpyField` (same conventions: flat layer-major states,
``F = grad L / S``, loss-free rescaled flow, log-space softmax weights, ``sigma`` as
linf-SAM's switching vector, ``FloatingPointError`` at an l2-SAM collapse), so an
integrator can use either.  The per-coordinate arithmetic runs in the generated
kernels (:mod:`~sambias.symbolic.codegen`); this module adds only the couplings
between coordinates, which go through the data:

* margins ``z = A beta`` (``A = y[:, None] * X``);
* ``log S = logsumexp(phi(z))``, ``q = softmax(phi(z))`` with ``phi = log |l'|``
  (never ``e^{-z}`` itself, which underflows past ``z ~ 745``);
* ``g = -A^T q``, and its derivative ``M = dg/dbeta = -A^T (diag q - q q^T) diag(phi') A``;
* the global scalars of the algorithm's perturbation: its global sums (``N = ||F||`` for
  l2-SAM, ``M = ||T F||`` for ASAM, ...) from per-coordinate share kernels, and ``S`` (USAM).

Every algorithm runs here, from its one definition (:mod:`~sambias.symbolic.algorithms`):
a perturbation without the per-coordinate structure uses the general flat kernels of its
shape (:func:`~sambias.symbolic.codegen.generate_flat_kernels`, at most 48 weights).
``backend="mp"`` is an alias of ``"mpmath"``; ``discontinuous`` says whether ``switching``
and ``sigma`` apply (ℓ∞-SAM and user algorithms using ``sign(g)``).

Jacobians are assembled by the chain rule from the kernels' SymPy derivatives: for a
per-coordinate quantity ``Q_j(w_j, g_j, N, S)``,
``dQ_j/dW[m, k] = delta_jk dQ/dw_m + dQ/dg (dg_j/dW[m, k]) + dQ/dN dN/dW[m, k] + dQ/dS dS/dW[m, k]``.

The ``backend="mpmath"`` field takes lists (or object arrays) of numbers and returns
lists of ``mpf`` (Jacobians: ``(L*d, L*d)`` object arrays), at the caller's ``mp.dps``;
it also answers ``rescaled_mp``/``physical_mp`` so it can stand in for
``sambias.flows.mp_field.MpField``.

>>> from sambias import Problem, Init
>>> f = GeneratedField(Problem(depth=2, algorithm="gd", X=[[2.0, 1.0]], y=[1], init=Init(scale=1.0)))
>>> f.rescaled(np.ones(4))[0]
array([2., 1., 2., 1.])
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import mpmath
import numpy as np

from . import compiled as _compiled
from .codegen import BACKENDS, Kernels, generate_kernels
from .large import blas_threads, data_curvature, field_blas_threads, rescaled_jac_operator, rescaled_jvp
from .notation import SPEED

try:  # the mp integrator stops cleanly on its own CollapseError; be catchable as that too
    from sambias.flows.mp_field import CollapseError as _MpCollapse
except Exception:  # pragma: no cover - flows may be mid-rewrite; FloatingPointError suffices
    _MpCollapse = ArithmeticError


#: up to this many examples the softmax of the hot path runs on Python floats
_SCALAR_SOFTMAX = 32
#: softmax weights below e^_LOG_TINY of the largest are flushed to 0 (no denormals)
_LOG_TINY = -690.0


class CollapseError(FloatingPointError, _MpCollapse):
    """l2-SAM's perturbation is undefined: the normalised gradient is exactly 0."""


def _field_blas(method):
    """Run a float64 evaluation of a large problem on one BLAS thread (``field._blas``)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        if not self._blas:
            return method(self, *args, **kwargs)
        with blas_threads(self._blas):
            return method(self, *args, **kwargs)
    return wrapper


class GeneratedField:
    """The SAM vector fields of one problem, evaluated by generated code.

    ``backend`` is ``"float64"`` (numpy arrays) or ``"mpmath"`` (mpf at the current
    precision).  Methods take flat states of length ``L*d`` (``w[l*d + j] = W[l, j]``).
    """

    def __init__(self, problem, backend: str = "float64", kernels: Kernels | None = None) -> None:
        backend = {"mp": "mpmath"}.get(backend, backend)
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of float64, mp ({', '.join(BACKENDS)})")
        self.problem = problem
        self.backend = backend
        self.depth = int(problem.depth)
        self.dim = int(problem.dim)
        self.n = int(problem.n)
        self.algorithm = problem.algorithm
        self.loss = problem.loss
        self.kernels = kernels or generate_kernels(self.depth, self.algorithm, self.loss, backend)
        k = self.kernels
        if (k.depth, k.algorithm, k.loss, k.backend) != (self.depth, self.algorithm, self.loss, backend):
            raise ValueError("kernels were generated for a different depth/algorithm/loss/backend")
        cf = k.coordinate
        self.definition = cf.definition
        #: whether the perturbation uses sign(F) (switching functions; Filippov)
        self.discontinuous = cf.discontinuous
        self._sums = cf.global_sums
        pargs = set(k.perturbation_args)
        self._pert_uses_g, self._pert_uses_S = "g_j" in pargs, "S" in pargs
        self._share_fns = tuple(getattr(k, f"share_{m}") for m in range(len(self._sums)))
        self._jac_share_fns = tuple(getattr(k, f"jac_share_{m}") for m in range(len(self._sums)))
        self._share_uses_S = tuple(gs.share.has(SPEED) for gs in self._sums)
        self._needs_g = self._pert_uses_g or bool(self._sums)
        self._needs_S = self._pert_uses_S or any(self._share_uses_S)
        self._consts = tuple(mpmath.mpf(float(gs.const)) if backend == "mpmath" else float(gs.const)
                             for gs in self._sums)
        names = [str(gs.symbol) for gs in self._sums]
        self._norm_index = names.index("N") if "N" in names else None
        self._perturbs = cf.perturbation is None or any(e != 0 for e in cf.perturbation)
        # rho = 0 switches the perturbation off only where eps vanishes with rho (all built-ins)
        self._rho_off = cf.structure is None or cf.structure.vanishes_at_rho_zero
        self.flat = None
        if cf.perturbation is None:  # the general path: the flat perturbation of this shape
            from .codegen import generate_flat_kernels
            self.flat = generate_flat_kernels(self.depth, self.dim, self.algorithm, backend)
        A = np.ascontiguousarray(problem.signed_data, dtype=float)
        rho = float(problem.rho) if self.definition.uses_rho else 0.0
        self._mp = backend == "mpmath"
        if self._mp:
            # float64 -> mpf is exact: the mp field sees exactly the data the float field sees
            self.A = np.array([[mpmath.mpf(v) for v in row] for row in A.tolist()], dtype=object)
            self.rho = mpmath.mpf(rho)
        else:
            self.A = A
            self.rho = rho
        self.size = self.depth * self.dim
        self._minus_a0 = -self.A[0]
        # large data: the passes over A run on one BLAS thread (symbolic/large.py says why)
        self._blas = False if self._mp else field_blas_threads(self.n, self.dim)
        # machine code for the hot methods (symbolic/compiled.py); None: numpy path only
        self._jit = _compiled.attach(self)

    def __repr__(self) -> str:
        return (f"GeneratedField(L={self.depth}, d={self.dim}, n={self.n}, {self.algorithm}, "
                f"{self.loss}, backend={self.backend})")

    @property
    def source(self) -> str:
        """The generated kernel source this field runs."""
        return self.kernels.source

    # --- conversions ------------------------------------------------------------------------
    def _vec(self, w) -> np.ndarray:
        if not self._mp:
            return np.asarray(w, dtype=float).reshape(self.size)
        out = np.empty(self.size, dtype=object)
        flat = np.asarray(w, dtype=object).reshape(self.size)
        for i, v in enumerate(flat):
            if isinstance(v, mpmath.mpf):
                out[i] = v
            elif isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
                out[i] = mpmath.mpf(float(v)) if not isinstance(v, (int, np.integer)) else mpmath.mpf(int(v))
            else:
                raise TypeError(f"state entries must be numbers or mpf, got {type(v).__name__}")
        return out

    def shape(self, w) -> np.ndarray:
        """The ``(L, d)`` view of a flat state."""
        return self._vec(w).reshape(self.depth, self.dim)

    def _rows(self, w) -> tuple:
        if not self._mp and type(w) is np.ndarray and w.dtype == np.float64:
            return tuple(w.reshape(self.depth, self.dim))   # the hot path: no copy, no checks
        return tuple(self.shape(w))

    def _out(self, rows) -> np.ndarray | list:
        flat = np.concatenate(rows)
        return list(flat) if self._mp else flat

    def to_mp(self, w: Sequence) -> list:
        """A flat list of mpf (floats convert exactly)."""
        return list(self._vec(w)) if self._mp else [mpmath.mpf(float(v)) for v in w]

    # --- scalar helpers that differ between backends ------------------------------------------
    def _exp(self, x):
        return mpmath.exp(x) if self._mp else np.exp(x)

    def _sqrt(self, x):
        return mpmath.sqrt(x) if self._mp else math.sqrt(x)

    def _sum(self, arr):
        return mpmath.fsum(arr) if self._mp else float(arr.sum())

    def _zeros(self, shape):
        return np.full(shape, mpmath.mpf(0), dtype=object) if self._mp else np.zeros(shape)

    # --- couplings -------------------------------------------------------------------------------
    def _coupling(self, beta, need_q: bool = True):
        """``(z, log S, q, g)`` at ``beta`` -- softmax weights in log space.

        ``need_q=False`` skips forming ``q`` (``None`` is returned): ``g = -A^T e / s``
        needs only the unnormalised weights, one array operation less on the hot path.
        """
        k = self.kernels
        z = self.A @ beta
        (phi,) = k.phi(z)
        if self.n == 1:
            # one example: q = 1 and g = -A[0] exactly (no exp/log round trip)
            return z, phi[0], None, self._minus_a0
        if self._mp:
            m = max(phi)
            e = np.array([mpmath.exp(p - m) for p in phi], dtype=object)
            s = mpmath.fsum(e)
            log_S = m + mpmath.log(s)
            q = e / s
            return z, log_S, q, -(q @ self.A)
        if self.n <= _SCALAR_SOFTMAX and not need_q:
            # a few examples: Python floats beat numpy's per-call overhead (same arithmetic)
            vals = phi.tolist()
            m = max(vals)
            e = [math.exp(v - m) for v in vals]
            s = math.fsum(e)
            return z, m + math.log(s), None, np.dot(e, self.A) * (-1.0 / s)
        m = phi.max()
        # weights below e^-690 of the largest are set to 0 (a change below 1e-299 relative):
        # as denormals they would slow every operation on them ~100x (x86 microcode assists)
        x = phi - m
        e = np.exp(np.where(x > _LOG_TINY, x, -np.inf))
        s = e.sum()
        log_S = float(m + math.log(s))
        if not need_q:
            return z, log_S, None, (e @ self.A) * (-1.0 / s)
        q = e / s
        return z, log_S, q, -(q @ self.A)

    def _dg_dbeta(self, z, q):
        """``M = dg/dbeta`` (``d x d``); ``None`` for one example (``g`` is constant)."""
        if q is None:
            return None
        if not self._mp:
            # dq/dz = (diag q - q q^T) diag phi' is never formed: it is n x n (800 MB at n = 1e4);
            # the centred form needs an n x d temporary and keeps its accuracy when q saturates
            return data_curvature(self, z, q).todense()
        (dphi,) = self.kernels.dphi(z)
        Jq = (np.diag(q) - np.outer(q, q)) * dphi[None, :]       # mp problems are small
        return -(self.A.T @ Jq @ self.A)

    def _dlogS_dbeta(self, z, q, g=None):
        """``d log S / d beta = A^T (q phi'(z))``; with ``g = -A^T q`` given and ``phi'``
        constant (the exponential loss) it is ``-phi' g``: no pass over the data (large n)."""
        (dphi,) = self.kernels.dphi(z)
        if q is None:
            return dphi[0] * self.A[0]
        if g is not None and not self._mp and dphi.min() == dphi.max():
            return -dphi[0] * np.asarray(g, dtype=float)
        return (q * dphi) @ self.A

    # --- the point W and its perturbation ----------------------------------------------------------
    def _at(self, W, need_q: bool = True):
        """Everything at ``W`` the perturbation needs: ``(z, log_S, q, g, F rows, None)``."""
        k = self.kernels
        (beta,) = k.beta(*W)
        z, log_S, q, g = self._coupling(beta, need_q)
        F = k.gradient(*W, g)
        return z, log_S, q, g, F, None

    def _signs(self, F):
        return tuple((np.frompyfunc(mpmath.sign, 1, 1)(f) if self._mp else np.sign(f)) for f in F)

    def _sigma_rows(self, sigma):
        return self._rows(sigma) if self._mp else tuple(np.asarray(sigma, dtype=float).reshape(self.depth, self.dim))

    def _global_values(self, W, info) -> list:
        """The global sums' values (``symbol = (const + sum_j share_j)^(1/power)``), in order."""
        out = []
        for gs, share, uses_S, const in zip(self._sums, self._share_fns, self._share_uses_S, self._consts):
            extra = (info["S"],) if uses_S else ()
            total = self._sum(share(*W, info["g"], *extra)[0])
            if const:
                total = total + const
            if gs.power == 1:
                value = total
            elif self._mp:
                value = mpmath.root(total, gs.power)
            else:
                value = math.sqrt(total) if gs.power == 2 else total ** (1.0 / gs.power)
            if gs.divides and value == 0:
                raise CollapseError(f"{self.definition.title} perturbation undefined: {gs.symbol} = 0 "
                                    "(the gradient is 0: collapse)")
            out.append(value)
        info["globals"] = out
        if self._norm_index is not None:
            info["N"] = out[self._norm_index]
        return out

    def _num(self, value):
        return mpmath.mpf(float(value)) if self._mp else float(value)

    def _perturb(self, W, sigma, need_q: bool = True):
        """``(eps rows, info)``; ``eps`` is ``None`` when the flow is unperturbed."""
        k = self.kernels
        if not self._perturbs or (self.rho == 0 and self._rho_off):
            return None, None
        if self.flat is not None:
            return self._flat_perturb(W, sigma, need_q)
        info: dict = {}
        if self._needs_g or (self.discontinuous and sigma is None):
            z, log_S, q, g, F, _ = self._at(W, need_q)
            info.update(z=z, log_S=log_S, q=q, g=g, F=F)
        if self._needs_S:
            info["S"] = self._exp(info["log_S"])
        args = list(W)
        if self.discontinuous:
            s = self._signs(info["F"]) if sigma is None else self._sigma_rows(sigma)
            info["sigma"] = s
            args += list(s)
        if self._pert_uses_g:
            args.append(info["g"])
        args += self._global_values(W, info)
        if self._pert_uses_S:
            args.append(info["S"])
        return k.perturbation(*args, self.rho), info

    def _flat_args(self, W, sigma, info):
        rows = [list(r) for r in W]
        args = [v for r in rows for v in r]
        if self.discontinuous:
            s = self._signs(info["F"]) if sigma is None else self._sigma_rows(sigma)
            info["sigma"] = s
            args += [v for r in s for v in r]
        args += list(info["g"])
        if self.flat.uses_speed:
            info["S"] = self._exp(info["log_S"])
            args.append(info["S"])
        return args + [self.rho]

    def _flat_perturb(self, W, sigma, need_q):
        z, log_S, q, g, F, _ = self._at(W, need_q)
        info = {"z": z, "log_S": log_S, "q": q, "g": g, "F": F}
        try:
            flat = self.flat.perturbation(*self._flat_args(W, sigma, info))
        except ZeroDivisionError:
            raise CollapseError(f"{self.definition.title} perturbation undefined (division by zero)") from None
        out = np.array(flat, dtype=object if self._mp else float).reshape(self.depth, self.dim)
        if not self._mp and not np.all(np.isfinite(out)):
            raise CollapseError(f"{self.definition.title} perturbation undefined (not finite)")
        return tuple(out), info

    def _perturbed_rows(self, W, sigma, need_q: bool = True):
        eps, info = self._perturb(W, sigma, need_q)
        if eps is None:
            return W, eps, info
        return tuple(a + b for a, b in zip(W, eps)), eps, info

    # --- the NumpyField interface ---------------------------------------------------------------------
    def normalised_gradient(self, w):
        """``F(W) = grad L(W) / S(W)``, flat; its signs are linf-SAM's switching functions."""
        return self._out(self._at(self._rows(w))[4])

    def switching(self, w):
        """The switching functions of a discontinuous algorithm such as linf-SAM (``F(W)``);
        empty for the continuous ones."""
        if not self.discontinuous:
            return [] if self._mp else np.zeros(0)
        return self.normalised_gradient(w)

    def perturbation(self, w, sigma=None):
        """``eps(W)`` as a flat vector."""
        W = self._rows(w)
        eps, _ = self._perturb(W, sigma)
        if eps is None:
            return self._out([self._zeros(self.dim) for _ in W])
        return self._out(eps)

    @_field_blas
    def rescaled(self, w, sigma=None):
        """``(dW/dtau, log S(W~))``: the loss-free flow and the log of ``dtau/dt``."""
        jit = self._jit and self._jit.use()
        if jit is not None:
            return jit.rescaled(w, sigma)
        k = self.kernels
        Wt, _, _ = self._perturbed_rows(self._rows(w), sigma, need_q=False)
        (beta_t,) = k.beta(*Wt)
        _, log_S, _, g_t = self._coupling(beta_t, need_q=False)
        return self._out(k.flow(*Wt, g_t)), log_S

    def physical(self, w, sigma=None):
        """``dW/dt = -grad L(W + eps(W))``."""
        dw, log_S = self.rescaled(w, sigma)
        if self._mp:
            S = mpmath.exp(log_S)
            return [S * v for v in dw]
        # math.exp is the cheap call; past its range numpy gives inf (and warns) as NumpyField does
        return (math.exp(log_S) if log_S < 709.0 else np.exp(log_S)) * dw

    rescaled_mp = rescaled
    physical_mp = physical

    # --- Jacobians ------------------------------------------------------------------------------------
    def _jacobian_parts(self, W, sigma, operator: bool = False):
        """``(Wt rows, parts)``; ``parts`` is ``None`` when ``d wt / dW`` is the identity (no
        perturbation, or linf-SAM with its signs held fixed), else a dict of
        ``E`` (``d wt_l/d w_m`` local, ``(L, L, d)``; general path: ``d eps/d W`` full,
        ``(L*d, L*d)``), ``Eg`` (``d wt/d g``: ``(L, d)``; general path ``(L*d, d)``; ``None``
        when unused), ``globals`` (``[(d wt / d X as (L, d), dX/dW as (L, d))]``), ``P``, ``M``.
        ``operator=True`` (float64): ``M`` is a :class:`~sambias.symbolic.large.DataCurvature`
        (``M @ v``, ``u @ M`` in ``O(n d)``) instead of the dense ``d x d`` matrix.
        Each ``globals`` entry is ``(Es, dX, r)``: ``d X / dW = dX + (r @ M)[None, :] * P``;
        ``r`` is ``None`` (``dX`` complete) except with ``operator=True``, where the product
        with ``M`` is left to the caller, which folds it into its own product with ``M`` (one
        pass over the data instead of one per global sum)."""
        L, d, k = self.depth, self.dim, self.kernels
        Wt, eps, info = self._perturbed_rows(W, sigma)
        if eps is None or (self.flat is None and k.perturbation_is_shift):
            return Wt, None
        if "g" not in info:  # linf-type with sigma given: the couplings were not needed for eps
            z, log_S, q, g, F, _ = self._at(W)
            info.update(z=z, log_S=log_S, q=q, g=g, F=F)
        P = np.array(k.dbeta(*W))                            # d beta / d w_m at W, (L, d)
        if operator and not self._mp:
            M = data_curvature(self, info["z"], info["q"], info["g"])
        else:
            M = self._dg_dbeta(info["z"], info["q"])
        if M is not None and M.dtype != object and self._mp:
            M = M.astype(object)
        dS = None
        if "S" in info:
            dS = info["S"] * self._dlogS_dbeta(info["z"], info["q"])[None, :] * P   # dS / dW[m, k]
        if self.flat is not None:
            parts = self.flat.jacobian(*self._flat_args(W, sigma, dict(info)))
            n = L * d
            E = np.array(parts[:n * n]).reshape(n, n)
            Eg = np.array(parts[n * n:n * n + n * d]).reshape(n, d)
            glob = [(np.array(parts[n * n + n * d:]).reshape(L, d), dS, None)] if self.flat.uses_speed else []
            return Wt, {"E": E, "Eg": Eg, "globals": glob, "P": P, "M": M, "flat": True}
        args = list(W)
        if self.discontinuous:
            args += list(info["sigma"])
        if self._pert_uses_g:
            args.append(info["g"])
        args += info["globals"]
        if self._pert_uses_S:
            args.append(info["S"])
        parts = k.jac_perturbed(*args, self.rho)
        E = np.array(parts[:L * L]).reshape(L, L, d)        # d wt_l / d w_m (local)
        at = L * L
        Eg = None
        if self._pert_uses_g:
            Eg = np.array(parts[at:at + L])                  # d wt_l / d g
            at += L
        glob = []
        for gs, X, jac_share, uses_S in zip(self._sums, info["globals"], self._jac_share_fns, self._share_uses_S):
            Es = np.array(parts[at:at + L])                  # d wt_l / d X
            at += L
            jn = jac_share(*W, info["g"], *((info["S"],) if uses_S else ()))
            dT = np.array(jn[:L])                            # d share_k / d w_m  -> d total / dW[m, k]
            lazy = M is not None and operator and not self._mp
            if M is not None and not lazy:
                dT = dT + (jn[L] @ M)[None, :] * P
            if uses_S:
                dT = dT + self._sum(jn[L + 1]) * dS
            r = np.asarray(jn[L], dtype=float) if lazy else None
            if gs.power == 2:
                dX, r = dT / (2 * X), (None if r is None else r / (2 * X))
            elif gs.power == 1:
                dX = dT
            else:
                factor = X ** (1 - gs.power) / gs.power
                dX, r = dT * factor, (None if r is None else r * factor)
            glob.append((Es, dX, r))
        if self._pert_uses_S:
            glob.append((np.array(parts[at:at + L]), dS, None))
        return Wt, {"E": E, "Eg": Eg, "globals": glob, "P": P, "M": M, "flat": False}

    def _perturbed_jacobian(self, W, sigma):
        """``(Wt rows, T)`` with ``T[l, j, m, k] = d wt[l, j] / d W[m, k]``; ``T`` is ``None``
        when it is the identity (no perturbation, or linf-SAM with its signs held fixed)."""
        L, d = self.depth, self.dim
        Wt, parts = self._jacobian_parts(W, sigma)
        if parts is None:
            return Wt, None
        P, M, E, Eg = parts["P"], parts["M"], parts["E"], parts["Eg"]
        idx = np.arange(d)
        if parts["flat"]:
            T = (E + np.eye(L * d, dtype=E.dtype)).reshape(L, d, L, d)
        else:
            T = self._zeros((L, d, L, d))
            T[:, idx, :, idx] = E.transpose(2, 0, 1)
        if M is not None and Eg is not None:
            dg = M[:, None, :] * P[None, :, :]                   # dg_i / dW[m, k]
            if parts["flat"]:
                T += (Eg @ dg.reshape(d, L * d)).reshape(L, d, L, d)
            else:
                T += Eg[:, :, None, None] * dg[None]
        for Es, dX, _ in parts["globals"]:       # (r is None: operator=False)
            T += Es[:, :, None, None] * dX[None, None, :, :]
        return Wt, T

    def _flow_jacobian(self, w, sigma):
        """``(J as (L, d, L, d), dlogS~/dW as (L, d), dW/dtau flat, log S~)``."""
        L, d, k = self.depth, self.dim, self.kernels
        Wt, T = self._perturbed_jacobian(self._rows(w), sigma)
        (beta_t,) = k.beta(*Wt)
        z_t, log_S, q_t, g_t = self._coupling(beta_t)
        out = k.flow(*Wt, g_t)
        parts = k.jac_flow(*Wt, g_t)
        D = np.array(parts[:L * L]).reshape(L, L, d)             # d out_l / d wt_r
        Cgt = np.array(parts[L * L:])                             # d out_l / d gt
        Pt = np.array(k.dbeta(*Wt))                               # d beta~ / d wt_r
        Mt = self._dg_dbeta(z_t, q_t)
        h = self._dlogS_dbeta(z_t, q_t, g_t)
        idx = np.arange(d)
        if T is None:
            J = self._zeros((L, d, L, d))
            J[:, idx, :, idx] = D.transpose(2, 0, 1)
            if Mt is not None:
                J += Cgt[:, :, None, None] * (Mt[:, None, :] * Pt[None, :, :])[None]
            grad_logS = h[None, :] * Pt
        else:
            Tb = np.einsum("rj,rjmk->jmk", Pt, T)                 # d beta~_j / dW[m, k]
            J = np.einsum("lrj,rjmk->ljmk", D, T)
            if Mt is not None:
                dgt = (Mt @ Tb.reshape(d, L * d)).reshape(d, L, d)
                J += Cgt[:, :, None, None] * dgt[None]
            grad_logS = np.einsum("j,jmk->mk", h, Tb)
        return J, grad_logS, np.concatenate(out), log_S

    @_field_blas
    def rescaled_jac(self, w, sigma=None) -> np.ndarray:
        """Jacobian of ``dW/dtau`` (``sigma`` held fixed for linf-SAM)."""
        jit = self._jit and self._jit.use()
        if jit is not None:
            return jit.rescaled_jac(w, sigma)
        J = self._flow_jacobian(w, sigma)[0]
        return J.reshape(self.size, self.size)

    def _perturbed_vjp(self, W, sigma):
        """``(Wt rows, vjp)``: ``vjp(V)`` is ``sum_{l,j} V[l, j] d wt[l, j] / dW`` for ``V`` of
        shape ``(L, d)`` -- the row-vector product without forming ``T`` (O(L^2 d + n d))."""
        L, d = self.depth, self.dim
        # M only ever multiplies vectors here: O(n d) instead of O(n d^2) per right-hand side
        Wt, parts = self._jacobian_parts(W, sigma, operator=True)
        if parts is None:
            return Wt, lambda V: V
        P, M, E, Eg = parts["P"], parts["M"], parts["E"], parts["Eg"]

        def vjp(V):
            if parts["flat"]:
                out = V + (V.reshape(L * d) @ E).reshape(L, d)
                u = V.reshape(L * d) @ Eg
            else:
                out = np.einsum("lj,lmj->mj", V, E)
                u = None if Eg is None else np.sum(V * Eg, axis=0)   # sum_l V[l, j] d wt_l / d g_j
            # every product with M folded into one row vector: one pass over the data
            row = None if (M is None or u is None) else u
            for Es, dX, r in parts["globals"]:
                s = np.sum(V * Es)
                out = out + s * dX
                if r is not None:
                    row = s * r if row is None else row + s * r
            if row is not None:
                out = out + (row @ M)[None, :] * P
            return out
        return Wt, vjp

    @_field_blas
    def rescaled_with_grad(self, w, sigma=None):
        """``(dW/dtau, log S(W~), d log S(W~(W))/dW)`` in one pass (as ``NumpyField``)."""
        jit = self._jit and self._jit.use()
        if jit is not None:
            return jit.rescaled_with_grad(w, sigma)
        k = self.kernels
        Wt, vjp = self._perturbed_vjp(self._rows(w), sigma)
        (beta_t,) = k.beta(*Wt)
        z_t, log_S, q_t, g_t = self._coupling(beta_t)
        out = k.flow(*Wt, g_t)
        Pt = np.array(k.dbeta(*Wt))
        h = self._dlogS_dbeta(z_t, q_t, g_t)
        grad = vjp(h[None, :] * Pt).reshape(self.size)
        if self._mp:
            return list(np.concatenate(out)), log_S, list(grad)
        return np.concatenate(out), log_S, grad

    def rescaled_log_speed_grad(self, w, sigma=None):
        """Gradient in ``W`` of ``log S(W~(W))`` (for the log-time row of a Jacobian)."""
        return self.rescaled_with_grad(w, sigma)[2]

    @_field_blas
    def rescaled_jvp(self, w, v, sigma=None) -> np.ndarray:
        """``rescaled_jac(w, sigma) @ v`` without forming the Jacobian (float64; memory
        ``O(n d + L^2 d)``: :func:`~sambias.symbolic.large.rescaled_jvp`)."""
        return rescaled_jvp(self, w, v, sigma)

    def rescaled_jac_operator(self, w, sigma=None):
        """The Jacobian of ``dW/dtau`` as a scipy ``LinearOperator`` (matrix-free)."""
        return rescaled_jac_operator(self, w, sigma)

    def physical_jac(self, w, sigma=None) -> np.ndarray:
        """Jacobian of ``dW/dt``."""
        J, grad_logS, out, log_S = self._flow_jacobian(w, sigma)
        S = self._exp(log_S)
        J = J.reshape(self.size, self.size)
        return S * (J + np.outer(out, grad_logS.reshape(self.size)))
