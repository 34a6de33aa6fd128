"""The numba text of the lean float64 loop (:mod:`.compiled_loop`), kept apart from its glue.

Printed after ``from <kernel module> import evaluate as _kernel`` into one module per shape
(numba cannot disk-cache a loop that takes the kernel as an argument: it recompiles it in
every process).  Nothing here depends on the shape: ``N`` is the weights' length.

The system (THEORY.md's rescaled flow, :mod:`.logtime`'s clock ``nu``) without the stiff
clock variable: ``y = (W, r)``, ``dW/dnu = f/D``, ``dr/dnu = b/D`` (``D = b + |f|/w_scale``,
``b = e^{-r}``), stepped by DOP853 (scipy's tableau, error norm and step control);
``s = ln(1 + t)`` by quadrature of ``dt/dnu = e^{phi(W)}/D`` on each step's dense output
(adaptive Gauss-Kronrod 7-15 in logs), so ``s`` needs no stiff relaxation.
"""

SOURCE = r'''
import math
import numpy
from numba import njit

_njit = njit(cache=True, nogil=True, error_model="numpy")

_LOG_C_MAX = 690.0
# QUADPACK's 15-point Kronrod rule and its 7-point Gauss rule (nodes on [-1, 1])
_XK = numpy.array([-0.991455371120812639206854697526329, -0.949107912342758524526189684047851,
                   -0.864864423359769072789712788640926, -0.741531185599394439863864773280788,
                   -0.586087235467691130294144845693013, -0.405845151377397166906606412076961,
                   -0.207784955007898467600689403773245, 0.0,
                   0.207784955007898467600689403773245, 0.405845151377397166906606412076961,
                   0.586087235467691130294144845693013, 0.741531185599394439863864773280788,
                   0.864864423359769072789712788640926, 0.949107912342758524526189684047851,
                   0.991455371120812639206854697526329])
_WK = numpy.array([0.022935322010529224963732008058970, 0.063092092629978553290700663189204,
                   0.104790010322250183839876322541518, 0.140653259715525918745189590510238,
                   0.169004726639267902826583426598550, 0.190350578064785409913256402421014,
                   0.204432940075298892414161999234649, 0.209482141084727828012999174891714,
                   0.204432940075298892414161999234649, 0.190350578064785409913256402421014,
                   0.169004726639267902826583426598550, 0.140653259715525918745189590510238,
                   0.104790010322250183839876322541518, 0.063092092629978553290700663189204,
                   0.022935322010529224963732008058970])
_WG = numpy.array([0.0, 0.129484966168869693270611432679082, 0.0, 0.279705391489276667901467771423780,
                   0.0, 0.381830050505118944950369775488975, 0.0, 0.417959183673469387755102040816327,
                   0.0, 0.381830050505118944950369775488975, 0.0, 0.279705391489276667901467771423780,
                   0.0, 0.129484966168869693270611432679082, 0.0])


@_njit
def _logaddexp(a, b):
    hi = a if a >= b else b
    lo = b if a >= b else a
    if lo == -math.inf:
        return hi
    return hi + math.log1p(math.exp(lo - hi))


@_njit
def rhs(y, N, A, rho, sig, has_sigma, pert_on, w_scale, out):
    """dy/dnu into ``out``; returns (status, log S, max|f|, log D)."""
    w = numpy.ascontiguousarray(y[:N])
    f, log_S, _g, _J, status = _kernel(0, w, A, rho, sig, has_sigma, pert_on)
    if status != 0:
        return status, 0.0, 0.0, 0.0
    m = 0.0
    n2 = 0.0
    for i in range(N):
        a = abs(f[i])
        if a > m:
            m = a
    if m > 0.0:
        for i in range(N):
            q = f[i] / m
            n2 += q * q
    nf = m * math.sqrt(n2)
    r = y[N]
    log_D = _logaddexp(-r, math.log(nf / w_scale) if nf > 0.0 else -math.inf)
    inv_D = math.exp(min(-log_D, _LOG_C_MAX))
    for i in range(N):
        out[i] = f[i] * inv_D
    out[N] = math.exp(-r - log_D)
    if not (math.isfinite(log_S) and math.isfinite(log_D)):
        return 3, log_S, m, log_D
    for i in range(N + 1):
        if not math.isfinite(out[i]):
            return 3, log_S, m, log_D
    return 0, log_S, m, log_D


@_njit
def dense_eval(F, y_old, x, out):
    """DOP853's interpolant (scipy's ``Dop853DenseOutput``) at ``x = (nu - nu_old)/h``."""
    n = y_old.size
    P = F.shape[0]
    for j in range(n):
        out[j] = 0.0
    for i in range(P):
        row = P - 1 - i
        for j in range(n):
            out[j] += F[row, j]
            if i % 2 == 0:
                out[j] *= x
            else:
                out[j] *= 1.0 - x
    for j in range(n):
        out[j] += y_old[j]


@_njit
def _log_integrand(F, y_old, x, N, A, rho, sig, has_sigma, pert_on, w_scale, ybuf, dbuf):
    """ln(e^{phi}/D) at x of the step (phi = -log S): ln of dt/dnu."""
    dense_eval(F, y_old, x, ybuf)
    st, log_S, m, log_D = rhs(ybuf, N, A, rho, sig, has_sigma, pert_on, w_scale, dbuf)
    if st != 0:
        return math.nan
    return -log_S - log_D


@_njit
def log_quad(F, y_old, x0, x1, h, N, A, rho, sig, has_sigma, pert_on, w_scale, tol, ybuf, dbuf):
    """ln of int_{x0}^{x1} e^{phi}/D dnu over the step (x in step units, h its length), by
    global adaptive Gauss-Kronrod 7-15 in logs (the integrand may grow by e^{hundreds}
    across a step: intervals that cannot matter are never split).  Returns (ln I, status)."""
    if x1 <= x0:
        return -math.inf, 0
    MAXI = 256
    lo = numpy.empty(MAXI)
    hi = numpy.empty(MAXI)
    lk = numpy.empty(MAXI)        # ln of the Kronrod value of the interval
    le = numpy.empty(MAXI)        # ln of its error estimate
    lg = numpy.empty(15)
    n = 1
    lo[0] = x0
    hi[0] = x1
    k = 0
    while True:
        # (re-)evaluate interval k (new intervals are k and n - 1 after a split)
        for idx in range(2):
            j = k if idx == 0 else n - 1
            if idx == 1 and n - 1 == k:
                break
            c = 0.5 * (lo[j] + hi[j])
            hw = 0.5 * (hi[j] - lo[j])
            mx = -math.inf
            for q in range(15):
                v = _log_integrand(F, y_old, c + hw * _XK[q], N, A, rho, sig, has_sigma, pert_on,
                                   w_scale, ybuf, dbuf)
                if not (v == v):
                    return math.nan, 3
                lg[q] = v
                if v > mx:
                    mx = v
            if mx == -math.inf:
                lk[j] = -math.inf
                le[j] = -math.inf
                continue
            sk = 0.0
            sg = 0.0
            for q in range(15):
                e = math.exp(lg[q] - mx)
                sk += _WK[q] * e
                sg += _WG[q] * e
            base = mx + math.log(hw * abs(h))
            lk[j] = base + math.log(sk)
            d = abs(sk - sg)
            le[j] = base + math.log(d) if d > 0.0 else -math.inf
            # the ends, which the nodes do not see: e^{g} may grow by e^{hundreds} (or, ln t
            # ~ 1e130, by far more) across an interval, and then its last 1 % is all of it.
            # There the rule is the exact integral of e^{g} with g linear between neighbouring
            # points (ends included), and its distance from the Kronrod value is the error.
            g_lo = _log_integrand(F, y_old, lo[j], N, A, rho, sig, has_sigma, pert_on, w_scale, ybuf, dbuf)
            g_hi = _log_integrand(F, y_old, hi[j], N, A, rho, sig, has_sigma, pert_on, w_scale, ybuf, dbuf)
            if not (g_lo == g_lo and g_hi == g_hi):
                return math.nan, 3
            gmin = min(g_lo, g_hi)
            gmax = max(g_lo, g_hi, mx)
            for q in range(15):
                if lg[q] < gmin:
                    gmin = lg[q]
            if gmax - gmin > 30.0:
                le_exp = -math.inf
                xa = lo[j]
                ga = g_lo
                for q in range(16):
                    if q < 15:
                        xb = c + hw * _XK[q]
                        gb = lg[q]
                    else:
                        xb = hi[j]
                        gb = g_hi
                    dg = abs(gb - ga)
                    top = max(ga, gb)
                    if top > -math.inf and xb > xa:
                        fac = 1.0 if dg < 1e-12 else -math.expm1(-dg) / dg
                        le_exp = _logaddexp(le_exp, top + math.log((xb - xa) * abs(h) * fac))
                    xa = xb
                    ga = gb
                hi_l = max(le_exp, lk[j])
                lo_l = min(le_exp, lk[j])
                diff = hi_l + math.log(-math.expm1(lo_l - hi_l)) if hi_l > lo_l else -math.inf
                lk[j] = le_exp
                le[j] = _logaddexp(le[j], diff)
        total = -math.inf
        err = -math.inf
        worst = 0
        for j in range(n):
            total = _logaddexp(total, lk[j])
            err = _logaddexp(err, le[j])
            if le[j] > le[worst]:
                worst = j
        # s = ln(1 + t) is a float: ln I is needed to tol relative to its own size (ln t may
        # be 1e130 at tau = 50 of a growing run, where no finite rule resolves e^{g})
        if total == -math.inf or math.log1p(math.exp(min(err - total, 700.0))) <= tol * max(1.0, abs(total)) \
                or n >= MAXI:
            return total, 0
        # split the worst interval in two
        k = worst
        mid = 0.5 * (lo[k] + hi[k])
        if not (lo[k] < mid < hi[k]):
            return total, 0           # at rounding: as good as it gets
        lo[n] = mid
        hi[n] = hi[k]
        hi[k] = mid
        n += 1


@_njit
def s_at(F, y_old, s_old, h, x, N, A, rho, sig, has_sigma, pert_on, w_scale, tol):
    """(s, -log S) at x of a stored step: s by quadrature from the step's start."""
    ybuf = numpy.empty(N + 1)
    dbuf = numpy.empty(N + 1)
    li, st = log_quad(F, y_old, 0.0, x, h, N, A, rho, sig, has_sigma, pert_on, w_scale, tol, ybuf, dbuf)
    dense_eval(F, y_old, x, ybuf)
    st2, log_S, m, log_D = rhs(ybuf, N, A, rho, sig, has_sigma, pert_on, w_scale, dbuf)
    return _logaddexp(s_old, li), -log_S, st + st2


@_njit
def _event_values(y, N, A, rho, sig, has_sigma, pert_on, w_scale, ev, dbuf):
    """Values of the terminal events at y (s handled apart): overflow, frozen, collapse
    (each crosses 0 downwards); ev = (w_max, log_rel, scale0, collapse_on, norm0, crtol)."""
    m = 0.0
    for i in range(N):
        a = abs(y[i])
        if a > m:
            m = a
    v_over = ev[0] - m
    st, log_S, nf, log_D = rhs(y, N, A, rho, sig, has_sigma, pert_on, w_scale, dbuf)
    scale = max(m, ev[2], 1e-300)
    left = (math.log(nf / scale) + y[N]) if nf > 0.0 else -math.inf
    v_frozen = min(max(left - ev[1], -50.0), 50.0)
    v_coll = 1.0
    if ev[3] != 0.0:
        w = numpy.ascontiguousarray(y[:N])
        g, _l, _g, _J, st2 = _kernel(0, w, A, rho, sig, has_sigma, False)
        mg = 0.0
        for i in range(N):
            a = abs(g[i])
            if a > mg:
                mg = a
        n2 = 0.0
        if mg > 0.0:
            for i in range(N):
                q = g[i] / mg
                n2 += q * q
        v_coll = (mg * math.sqrt(n2)) / ev[4] / ev[5] - 1.0
    return v_over, v_frozen, v_coll, float(st)


@_njit
def run(y0, s0, nu0, h0, N, A, rho, sig, has_sigma, pert_on, w_scale, rtol, atol, physical,
        s_target, r_target, ev, max_steps, capacity, stiff_steps,
        Cc, Aa, Bb, E3, E5, Dd, NU, Y, S, FF, H):
    """Step from (nu0, y0 = (W, r), s0) until an event, the step budget or trouble.

    Saves every accepted step: NU[k], Y[k], S[k] its end, FF[k] its interpolant's
    coefficients, H[k] its length (k = 1..n; index 0 is the start).  Returns (code, n, nfev,
    which) -- code 0: a terminal event (which: 0 horizon, 1 overflow, 2 frozen, 3 collapse)
    located at the last saved point; 1: the step budget; 2: handed back (stiff, a step at
    rounding, a non-finite value, the field failing, the save buffer full).
    """
    n = N + 1
    K = numpy.zeros((16, n))
    ytmp = numpy.empty(n)
    ynew = numpy.empty(n)
    ybuf = numpy.empty(n)
    dbuf = numpy.empty(n)
    yv = numpy.empty(n)
    y = y0.copy()
    nu = nu0
    s = s0
    nfev = 0
    st, log_S, mf, log_D = rhs(y, N, A, rho, sig, has_sigma, pert_on, w_scale, K[0])
    nfev += 1
    if st != 0:
        return 2, 0, nfev, -1
    NU[0] = nu
    S[0] = s
    for j in range(n):
        Y[0, j] = y[j]
    ev_old = _event_values(y, N, A, rho, sig, has_sigma, pert_on, w_scale, ev, dbuf)
    hor_old = (s - s_target) if physical else (y[N] - r_target)
    h = h0
    steps = 0
    rejected_streak = 0
    step_rejected = False
    quad_tol = 0.01 * rtol
    while True:
        if steps >= max_steps:
            return 1, steps, nfev, -1
        if steps + 1 >= capacity or steps >= stiff_steps:
            return 2, steps, nfev, -1
        if h <= 16.0 * 2.220446049250313e-16 * max(abs(nu), 1.0):
            return 2, steps, nfev, -1
        # --- one DOP853 attempt (scipy's rk_step) ---
        for si in range(1, 12):
            for j in range(n):
                acc = 0.0
                for q in range(si):
                    acc += Aa[si, q] * K[q, j]
                ytmp[j] = y[j] + h * acc
            st, _a, _b, _c = rhs(ytmp, N, A, rho, sig, has_sigma, pert_on, w_scale, K[si])
            nfev += 1
            if st != 0:
                break
        if st == 0:
            for j in range(n):
                acc = 0.0
                for q in range(12):
                    acc += Bb[q] * K[q, j]
                ynew[j] = y[j] + h * acc
            st, log_S1, mf1, log_D1 = rhs(ynew, N, A, rho, sig, has_sigma, pert_on, w_scale, K[12])
            nfev += 1
        if st != 0:
            # a stage left the field's domain or float64: a smaller step
            h *= 0.25
            step_rejected = True
            rejected_streak += 1
            if rejected_streak > 40:
                return 2, steps, nfev, -1
            continue
        e5 = 0.0
        e3 = 0.0
        for j in range(n):
            sc = (atol[j] + max(abs(y[j]), abs(ynew[j])) * rtol)
            a5 = 0.0
            a3 = 0.0
            for q in range(13):
                a5 += E5[q] * K[q, j]
                a3 += E3[q] * K[q, j]
            a5 /= sc
            a3 /= sc
            e5 += a5 * a5
            e3 += a3 * a3
        if e5 == 0.0 and e3 == 0.0:
            err = 0.0
        else:
            err = h * e5 / math.sqrt((e5 + 0.01 * e3) * n)
        if not (err < 1.0):
            if not (err == err):
                fac = 0.2
            else:
                fac = max(0.2, 0.9 * err ** (-1.0 / 8.0))
            h *= fac
            step_rejected = True
            rejected_streak += 1
            if rejected_streak > 60:
                return 2, steps, nfev, -1
            continue
        # --- accepted: dense output (3 extra stages) ---
        for si in range(13, 16):
            for j in range(n):
                acc = 0.0
                for q in range(si):
                    acc += Aa[si, q] * K[q, j]
                ytmp[j] = y[j] + h * acc
            st, _a, _b, _c = rhs(ytmp, N, A, rho, sig, has_sigma, pert_on, w_scale, K[si])
            nfev += 1
            if st != 0:
                return 2, steps, nfev, -1
        k = steps + 1
        Fk = FF[k]
        for j in range(n):
            dy = ynew[j] - y[j]
            Fk[0, j] = dy
            Fk[1, j] = h * K[0, j] - dy
            Fk[2, j] = 2.0 * dy - h * (K[12, j] + K[0, j])
            for p in range(4):
                acc = 0.0
                for q in range(16):
                    acc += Dd[p, q] * K[q, j]
                Fk[3 + p, j] = h * acc
        li, qst = log_quad(Fk, y, 0.0, 1.0, h, N, A, rho, sig, has_sigma, pert_on, w_scale, quad_tol, ybuf, dbuf)
        if qst != 0:
            return 2, steps, nfev, -1
        s_new = _logaddexp(s, li)
        nu_new = nu + h
        H[k] = h
        ev_new = _event_values(ynew, N, A, rho, sig, has_sigma, pert_on, w_scale, ev, dbuf)
        hor_new = (s_new - s_target) if physical else (ynew[N] - r_target)
        # --- events over the step: the earliest root of any that crossed ---
        best = 2.0
        which = -1
        if hor_old <= 0.0 and hor_new >= 0.0:
            if hor_old == 0.0:
                xr = 0.0
            elif hor_new == 0.0:
                xr = 1.0
            elif physical:
                # s(x) = s_target: s is increasing; Newton from the right end (s is convex
                # where it matters) with ds/dx = h e^{ln(dt/dnu) - s}, s(x) by quadrature
                # from the bracket's left end, bisection whenever Newton leaves the bracket
                a = 0.0
                sa = s
                b = 1.0
                sb = s_new
                gb = _log_integrand(Fk, y, 1.0, N, A, rho, sig, has_sigma, pert_on, w_scale, ybuf, dbuf)
                xr = 1.0
                for it in range(200):
                    slope = h * math.exp(gb - sb)
                    xm = b - (sb - s_target) / slope if slope > 0.0 else 0.5 * (a + b)
                    if not (a < xm < b):
                        xm = 0.5 * (a + b)
                    li2, st3 = log_quad(Fk, y, a, xm, h, N, A, rho, sig, has_sigma, pert_on, w_scale,
                                        quad_tol, ybuf, dbuf)
                    sm = _logaddexp(sa, li2)
                    if sm < s_target:
                        a = xm
                        sa = sm
                    else:
                        b = xm
                        sb = sm
                        gb = _log_integrand(Fk, y, b, N, A, rho, sig, has_sigma, pert_on, w_scale, ybuf, dbuf)
                    if sm == s_target or b - a <= 4.0 * 2.220446049250313e-16 * (1.0 + abs(nu) / h) \
                            or b - a <= 1e-15 or abs(sm - s_target) <= 2.220446049250313e-16 * abs(s_target):
                        break
                xr = b
            else:
                a = 0.0
                b = 1.0
                for it in range(200):
                    xm = 0.5 * (a + b)
                    dense_eval(Fk, y, xm, yv)
                    if yv[N] < r_target:
                        a = xm
                    else:
                        b = xm
                    if b - a <= 4.0 * 2.220446049250313e-16 * (1.0 + abs(nu) / h) or b - a <= 1e-15:
                        break
                xr = b
            best = xr
            which = 0
        for e in range(3):
            g0 = ev_old[e]
            g1 = ev_new[e]
            if e == 2 and ev[3] == 0.0:
                continue
            if g0 >= 0.0 and g1 <= 0.0:
                if g0 == 0.0:
                    xr = 0.0
                elif g1 == 0.0:
                    xr = 1.0
                else:
                    a = 0.0
                    b = 1.0
                    for it in range(200):
                        xm = 0.5 * (a + b)
                        dense_eval(Fk, y, xm, yv)
                        vals = _event_values(yv, N, A, rho, sig, has_sigma, pert_on, w_scale, ev, dbuf)
                        if vals[e] > 0.0:
                            a = xm
                        else:
                            b = xm
                        if b - a <= 4.0 * 2.220446049250313e-16 * (1.0 + abs(nu) / h) or b - a <= 1e-15:
                            break
                    xr = b
                if xr < best:
                    best = xr
                    which = e + 1
        if which >= 0:
            if best >= 1.0:
                nu_e = nu_new
                for j in range(n):
                    yv[j] = ynew[j]
                s_e = s_new
            else:
                nu_e = nu + best * h
                dense_eval(Fk, y, best, yv)
                s_e, _p, st3 = s_at(Fk, y, s, h, best, N, A, rho, sig, has_sigma, pert_on, w_scale, quad_tol)
            NU[k] = nu_e
            S[k] = s_e
            for j in range(n):
                Y[k, j] = yv[j]
            return 0, k, nfev, which
        NU[k] = nu_new
        S[k] = s_new
        for j in range(n):
            Y[k, j] = ynew[j]
            y[j] = ynew[j]
            K[0, j] = K[12, j]
        nu = nu_new
        s = s_new
        ev_old = ev_new
        hor_old = hor_new
        steps = k
        rejected_streak = 0
        # scipy's step-size update after an accepted step
        if err == 0.0:
            fac = 10.0
        else:
            fac = min(10.0, 0.9 * err ** (-1.0 / 8.0))
        if step_rejected:
            fac = min(1.0, fac)
        step_rejected = False
        h *= fac
'''
