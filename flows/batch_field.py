"""The rescaled vector field of many instances of one shape, evaluated as one batch.

An ensemble (:mod:`sambias.flows.ensemble`) holds ``B`` instances with the same depth
``L``, dimension ``d``, number of examples ``n``, algorithm and loss, but their own data,
``rho`` and initialisation.  The generated kernels of :mod:`sambias.symbolic` are
per-coordinate and element-wise (one kernel serves every ``d`` and data set), so the
batch calls them once on flat arrays of ``B * d`` coordinates; this module adds only the
couplings through the data, per instance (as ``GeneratedField`` does for one).  There is
no hand-written field here: every per-coordinate quantity comes from the kernels.

linf-SAM (``L = 2``, one example) runs in Filippov modes as in
:mod:`sambias.flows.filippov`: frozen signs ``pw``, coordinates ``pinned`` at 0 with their
equivalent controls, the Filippov combination of the two sides' fields and clocks.  With
one example ``g = -y x`` is constant, so a column's velocity depends on that column alone
and every column's two sides are evaluated in one kernel call.

>>> from sambias import Problem, Init
>>> ps = [Problem(depth=2, algorithm="gd", X=[[2.0, 1.0]], y=[1], init=Init(scale=s)) for s in (1.0, 2.0)]
>>> bf = BatchField(ps)
>>> f, log_S = bf.rescaled(np.stack([p.initial_weights() for p in ps]))
>>> f[1].ravel().tolist()
[4.0, 2.0, 4.0, 2.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np



class BatchUnsupported(ValueError):
    """The batch path does not cover this problem; the single-instance driver does."""


def shape_key(problem) -> tuple:
    """What instances of one ensemble share: ``(depth, d, n, algorithm, loss)``."""
    return (int(problem.depth), int(problem.dim), int(problem.n), str(problem.algorithm), str(problem.loss))


@dataclass
class Modes:
    """linf-SAM's discrete state of every instance: sides ``pw`` (``(B, L, d)``, +-1) and
    coordinates ``pinned`` at exactly 0 (``(B, L, d)`` bool)."""

    pw: np.ndarray
    pinned: np.ndarray

    def rows(self, idx) -> "Modes":
        return Modes(self.pw[idx], self.pinned[idx])


class BatchField:
    """``rescaled(W)`` for ``W`` of shape ``(m, L, d)`` (rows of the ensemble given by ``idx``).

    Raises :class:`BatchUnsupported` for shapes the batch path leaves to the single driver.
    """

    def __init__(self, problems, field=None) -> None:
        problems = list(problems)
        p0 = problems[0]
        key = shape_key(p0)
        if any(shape_key(p) != key for p in problems):
            raise BatchUnsupported("instances of an ensemble must share depth, d, n, algorithm and loss")
        if field is None:
            from sambias.symbolic import GeneratedField
            field = GeneratedField(p0)
        if getattr(field, "flat", None) is not None:
            raise BatchUnsupported("the algorithm has no per-coordinate kernels (general flat path)")
        self.k = field.kernels
        cf = self.k.coordinate
        self.L, self.d, self.n = key[0], key[1], key[2]
        self.B = len(problems)
        self.discontinuous = bool(field.discontinuous)
        self.uses_rho = bool(field.definition.uses_rho)
        self.A = np.ascontiguousarray(np.stack([np.asarray(p.signed_data, float) for p in problems]))  # (B, n, d)
        self.rho = np.array([float(p.rho) if self.uses_rho else 0.0 for p in problems])
        self._sums = tuple(cf.global_sums)
        self._share = tuple(getattr(self.k, f"share_{m}") for m in range(len(self._sums)))
        from sambias.symbolic.notation import SPEED
        self._share_uses_S = tuple(bool(gs.share.has(SPEED)) for gs in self._sums)
        self._sum_names = tuple(str(gs.symbol) for gs in self._sums)
        self._perturbs = cf.perturbation is not None and any(e != 0 for e in cf.perturbation)
        self._pargs = tuple(self.k.perturbation_args)
        known = {f"w_{l + 1}_j" for l in range(self.L)} | {f"sigma_{l + 1}_j" for l in range(self.L)} \
            | {"g_j", "S", "rho"} | {str(gs.symbol) for gs in self._sums}
        unknown = [a for a in self._pargs if a not in known]
        if unknown:
            raise BatchUnsupported(f"perturbation argument(s) {unknown} unknown to the batch path")
        if self.discontinuous and (self.L != 2 or self.n != 1):
            raise BatchUnsupported("linf-type (Filippov) flows run as a batch only for L = 2 and one example")
        # plain numpy kernels broadcast (m, d) against (m, 1); compiled ones get flat arrays
        self._direct = all(type(getattr(self.k, nm)).__name__ == "function" for nm in ("beta", "flow", "phi"))
        self._pert_needs_g = any(a == "g_j" for a in self._pargs) or bool(self._sums) or self.discontinuous
        # one example: g = -A[0] exactly (as GeneratedField)
        self.g_trivial = np.all(self.A == 0.0, axis=1)                     # (B, d)
        # one example: sign(g) = sign(-A[0]) for good (0 where the column of data is 0)
        self._G1 = np.where(self.g_trivial, 0.0, np.where(-self.A[:, 0, :] < 0, -1.0, 1.0))

    # --- kernel calls on flat arrays ----------------------------------------------------------------
    def _call(self, name: str, *args):
        """Run kernel ``name`` on ``(m, d)`` arrays (scalars per instance as ``(m, 1)``) and
        return its outputs as ``(m, d)`` arrays."""
        if self._direct:
            out = getattr(self.k, name)(*args)
            shape = args[0].shape          # every kernel's first argument is a full (m, d) array
            return [o if np.shape(o) == shape else np.broadcast_to(np.asarray(o, float), shape) for o in out]
        shape = np.broadcast_shapes(*(np.shape(a) for a in args))
        flat = [np.ascontiguousarray(np.broadcast_to(a, shape)).ravel() for a in args]
        out = getattr(self.k, name)(*flat)
        return [np.broadcast_to(np.asarray(o, float), (flat[0].size,)).reshape(shape) for o in out]

    def _coupling(self, beta, idx):
        """``(z, log S, g)`` per instance; ``beta`` ``(m, d)``."""
        A = self.A[idx]
        z = np.sum(A * beta[:, None, :], axis=-1)                          # (m, n)
        (phi,) = self._call("phi", z)
        if self.n == 1:
            return z, phi[:, 0], -A[:, 0, :]
        top = np.max(phi, axis=1, keepdims=True)
        e = np.exp(phi - top)
        s = np.sum(e, axis=1, keepdims=True)
        log_S = (top + np.log(s))[:, 0]
        g = -np.sum((e / s)[:, :, None] * A, axis=1)
        return z, log_S, g

    def beta(self, W) -> np.ndarray:
        return self._call("beta", *(W[:, l, :] for l in range(self.L)))[0]

    def normalised_gradient(self, W, idx) -> np.ndarray:
        """``F(W)`` as ``(m, L, d)``."""
        _, _, g = self._coupling(self.beta(W), idx)
        return np.stack(self._call("gradient", *(W[:, l, :] for l in range(self.L)), g), axis=1)

    def g(self, W, idx) -> np.ndarray:
        return self._coupling(self.beta(W), idx)[2]

    # --- the perturbed point and the flow ----------------------------------------------------------
    def perturbed(self, W, idx, sigma=None):
        """``(W~, collapsed)``: the perturbed weights ``(m, L, d)`` and the rows where a global
        sum that divides is 0 (l2-SAM at ``W = 0``: the perturbation is undefined)."""
        m = W.shape[0]
        bad = np.zeros(m, bool)
        if not self._perturbs:
            return W, bad
        rows = [W[:, l, :] for l in range(self.L)]
        named = {f"w_{l + 1}_j": rows[l] for l in range(self.L)}
        named["rho"] = self.rho[idx][:, None]
        if self._pert_needs_g:
            _, log_S, g = self._coupling(self.beta(W), idx)
            named["g_j"] = g
            S = np.exp(log_S)[:, None]
            named["S"] = S
            for gs, name, share, uses_S in zip(self._sums, self._sum_names, self._share, self._share_uses_S):
                extra = (S,) if uses_S else ()
                total = np.sum(share(*(np.ascontiguousarray(r).ravel() for r in rows), g.ravel(),
                                     *(np.broadcast_to(e, g.shape).ravel() for e in extra))[0]
                               .reshape(m, self.d), axis=1)
                if gs.const:
                    total = total + float(gs.const)
                value = total if gs.power == 1 else (np.sqrt(total) if gs.power == 2 else total ** (1.0 / gs.power))
                if gs.divides:
                    bad |= ~(value != 0.0)
                    value = np.where(value != 0.0, value, 1.0)
                named[name] = value[:, None]
        if self.discontinuous:
            if sigma is None:
                F = self.normalised_gradient(W, idx)
                sigma = np.sign(F)
            for l in range(self.L):
                named[f"sigma_{l + 1}_j"] = sigma[:, l, :]
        eps = self._call("perturbation", *(named[a] for a in self._pargs))
        return W + np.stack(eps, axis=1), bad

    def flow_at(self, Wt, idx):
        """``(dW/dtau, log S)`` evaluated at the perturbed point ``Wt``."""
        _, log_S, g_t = self._coupling(self.beta(Wt), idx)
        out = self._call("flow", *(Wt[:, l, :] for l in range(self.L)), g_t)
        return np.stack(out, axis=1), log_S

    def rescaled(self, W, idx=None, sigma=None):
        """``(dW/dtau (m, L, d), log S (m,))`` of the smooth flow (or with signs ``sigma``)."""
        idx = np.arange(W.shape[0]) if idx is None else idx
        Wt, _ = self.perturbed(W, idx, sigma)
        return self.flow_at(Wt, idx)

    def rescaled_checked(self, W, idx):
        """:meth:`rescaled` plus the rows where the perturbation is undefined (collapse)."""
        Wt, bad = self.perturbed(W, idx)
        f, log_S = self.flow_at(Wt, idx)
        return f, log_S, bad

    # --- linf-SAM (L = 2, one example) in Filippov modes --------------------------------------------
    def signs(self, W, idx, modes: Modes):
        """``(Pi, G)``: sides with the pinned coordinates' equivalent controls, and ``sign g``."""
        if self.n == 1:
            G = self._G1[idx]
        else:
            g = self.g(W, idx)
            G = np.where(g < 0, -1.0, 1.0)
            G[self.g_trivial[idx]] = 0.0
        Pi = modes.pw.astype(float).copy()
        pinned = modes.pinned
        if pinned.any():
            count = pinned.sum(axis=1)                                     # (m, d)
            rho = self.rho[idx][:, None]
            ok = (G != 0.0) & (rho > 0.0)
            for k in range(2):
                other = W[:, 1 - k, :]
                with np.errstate(divide="ignore", invalid="ignore"):
                    c = np.clip(-other / (rho * np.where(ok, G, 1.0)), -1.0, 1.0)
                alone = pinned[:, k, :] & (count == 1)
                Pi[:, k, :] = np.where(alone, np.where(ok, c, 0.0), Pi[:, k, :])
                Pi[:, k, :] = np.where(pinned[:, k, :] & (count >= 2), 0.0, Pi[:, k, :])
        return Pi, G

    def _sigma2(self, Pi, G):
        # L = 2: sigma[l] = G * Pi[1 - l]
        return G[:, None, :] * Pi[:, ::-1, :]

    def mode_flow(self, W, idx, modes: Modes):
        """``(dW/dtau, log S)`` of linf-SAM in ``modes``, as ``FilippovModel.flow`` (L = 2, n = 1)."""
        held = modes.pinned.any(axis=(1, 2))
        if not held.any():
            G = self._G1[idx]
            Wt = W + self.rho[idx][:, None, None] * self._sigma2(modes.pw, G)
            return self.flow_at(Wt, idx)
        if held.all():
            return self._held_flow(W, idx, modes)
        # only the instances with a coordinate held at 0 pay for the Filippov sides
        f = np.empty_like(W)
        log_S = np.empty(W.shape[0])
        free = ~held
        Wt = W[free] + self.rho[idx[free]][:, None, None] * self._sigma2(modes.pw[free], self._G1[idx[free]])
        f[free], log_S[free] = self.flow_at(Wt, idx[free])
        f[held], log_S[held] = self._held_flow(W[held], idx[held], modes.rows(held))
        return f, log_S

    def _held_flow(self, W, idx, modes: Modes):
        Pi, G = self.signs(W, idx, modes)
        Wt = W + self.rho[idx][:, None, None] * self._sigma2(Pi, G)
        f, log_S = self.flow_at(Wt, idx)
        pinned = modes.pinned
        count = pinned.sum(axis=1)                                         # (m, d)
        corners = count >= 2
        A0 = self.A[idx][:, 0, :]                                         # (m, d)
        rho = self.rho[idx][:, None]
        beta_t = self.beta(Wt)
        Pc = Pi
        z_base = np.sum(A0 * beta_t, axis=1)
        if corners.any():
            # clock of the corners: the sign pattern they arrived with (velocity stays 0)
            Pc = np.where(pinned & corners[:, None, :], modes.pw, Pi)
            Wc = W + rho[:, None, :] * self._sigma2(Pc, G)
            beta_c = self.beta(Wc)
            z_base = np.sum(A0 * beta_c, axis=1)
            log_S = self._call("phi", z_base[:, None])[0][:, 0]
            beta_t = beta_c
        phi_base = -log_S
        f = np.where(pinned, 0.0, f)
        alone = count == 1
        if not alone.any():
            return f, log_S
        sides = []
        for side in (1.0, -1.0):
            P = np.where(pinned & alone[:, None, :], side, Pi)
            Ws = W + rho[:, None, :] * self._sigma2(P, G)
            fs, _ = self.flow_at(Ws, idx)                                  # column-wise valid (n = 1)
            Pcs = np.where(pinned & alone[:, None, :], side, Pc)
            Wcs = W + rho[:, None, :] * self._sigma2(Pcs, G)
            bs = self.beta(Wcs)
            zs = z_base[:, None] + A0 * (bs - beta_t)                      # (m, d): column j on this side
            (ls,) = self._call("phi", zs)
            sides.append((fs, ls))
        (fp, lp), (fm, lm) = sides
        k_of = np.where(pinned[:, 0, :], 0, 1)                             # the pinned layer of a lone column
        fpk = np.take_along_axis(fp, k_of[:, None, :], axis=1)[:, 0, :]
        fmk = np.take_along_axis(fm, k_of[:, None, :], axis=1)[:, 0, :]
        den = fmk - fpk
        with np.errstate(divide="ignore", invalid="ignore"):
            mu = np.where(den != 0.0, np.clip(fmk / np.where(den != 0.0, den, 1.0), 0.0, 1.0), 0.5)
        comb = mu[:, None, :] * fp + (1.0 - mu[:, None, :]) * fm
        f = np.where(alone[:, None, :] & ~pinned, comb, f)
        # clock: log(mu e^{phi+} + (1 - mu) e^{phi-}) in place of phi, column by column
        php, phm = -lp, -lm
        top = np.maximum(np.where(mu > 0, php, -np.inf), np.where(mu < 1, phm, -np.inf))
        with np.errstate(under="ignore"):
            acc = np.where(mu > 0, mu * np.exp(php - top), 0.0) + np.where(mu < 1, (1 - mu) * np.exp(phm - top), 0.0)
        eff = top + np.log(acc)
        phi = phi_base + np.sum(np.where(alone, eff - phi_base[:, None], 0.0), axis=1)
        return f, -phi
