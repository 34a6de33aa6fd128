"""The paper's experiments: its synthetic single-example setting and a real-data run on digits.

*Synthetic.* One example with increasing coordinates ``0 < mu_1 < ... < mu_d`` (the major
coordinate is the last), logistic loss, depth 2 -- :func:`synthetic_problem`.

*Digits.* A two-class subset of scikit-learn's bundled 8x8 digits (shipped with the
package, no download), pixels scaled to [0, 1] and optionally 2x2-pooled, depth 2,
logistic loss -- :func:`digits_data`.  With many examples there is no single ``x`` whose
coordinates say which feature is "major", so features are ranked by the l1 max-margin
solution ``beta*`` (the limit THEORY.md predicts for GD and l2-SAM at depth 2): the
*major* features are its support, ordered by ``|beta*_j|``; the *minor* ones are the rest.
:func:`feature_series` measures, along a run, how much of ``|beta|_1`` sits on minor
features and where the current leader ranks in that order.

>>> import numpy as np
>>> r = rank_features(np.array([[2.0, 1.0, 0.5]]), np.array([1]))
>>> r.order.tolist(), r.major.tolist()
([0, 1, 2], [True, False, False])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

PAPER_MU = (0.5, 1.0, 2.0, 3.0)      # increasing, as the paper writes it (major = last)
SUPPORT_RTOL = 1e-6                  # |beta*_j| below this times max|beta*| is off the support


@dataclass(frozen=True)
class DigitsData:
    """Two digit classes as a separable problem: ``X`` (n x d, in [0, 1]), ``y`` in {-1, +1}.

    ``pixels[j]`` is the (row, col) of feature ``j`` in the ``side x side`` image it came from.
    """

    X: np.ndarray
    y: np.ndarray
    classes: tuple[int, int]
    side: int
    pixels: tuple[tuple[int, int], ...]

    def describe(self) -> str:
        return (f"digits {self.classes[0]} (y=-1) vs {self.classes[1]} (y=+1): n = {self.X.shape[0]} examples, "
                f"d = {self.X.shape[1]} pixels of {self.side}x{self.side} images scaled to [0, 1]")


@dataclass(frozen=True)
class FeatureRanking:
    """Features ranked by the l1 max-margin solution: ``order[0]`` is the most major;
    ``major[j]`` says whether ``j`` is on its support; ``rank[j]`` is ``j``'s place in ``order``."""

    beta_star: np.ndarray
    order: np.ndarray
    major: np.ndarray
    rank: np.ndarray
    unique: bool


def synthetic_problem(algorithm: str, scale: float, *, mu=PAPER_MU, rho: float = 0.5, depth: int = 2,
                      loss: str = "logistic"):
    """The paper's single example ``x = mu`` (increasing), ``y = +1``, uniform init ``scale``.

    >>> synthetic_problem("l2-sam", 0.2).X.tolist()
    [[0.5, 1.0, 2.0, 3.0]]
    """
    from sambias import Init, Problem

    return Problem(depth=depth, algorithm=algorithm, rho=rho if algorithm != "gd" else 0.0, loss=loss,
                   X=[list(map(float, mu))], y=[1], init=Init(scale=float(scale)),
                   name=f"paper-synthetic-{algorithm}")


def digits_data(classes: tuple[int, int] = (0, 1), *, pool: int = 2, per_class: int | None = 40,
                seed: int = 0) -> DigitsData:
    """A two-class subset of the bundled 8x8 digits.

    ``pool`` averages ``pool x pool`` blocks (``pool=2``: 4x4 images, 16 features);
    ``per_class`` keeps that many examples of each class (seeded choice; ``None`` keeps
    all); pixels that are constant over the kept examples are dropped (they carry no
    signal and only slow the flow).

    >>> data = digits_data((0, 1), pool=2, per_class=10)
    >>> data.X.shape[0], data.side, set(data.y.tolist())
    (20, 4, {1, -1})
    """
    from sklearn.datasets import load_digits

    if len(classes) != 2 or classes[0] == classes[1]:
        raise ValueError(f"classes: need two different digits, got {classes!r}")
    if 8 % pool:
        raise ValueError(f"pool: must divide 8, got {pool}")
    images, labels = load_digits(return_X_y=True)
    images = images.reshape(-1, 8, 8) / 16.0
    rng = np.random.default_rng(seed)
    chosen = []
    for c in classes:
        idx = np.flatnonzero(labels == c)
        if per_class is not None:
            idx = np.sort(rng.choice(idx, size=min(per_class, idx.size), replace=False))
        chosen.append(idx)
    idx = np.concatenate(chosen)
    side = 8 // pool
    pooled = images[idx].reshape(-1, side, pool, side, pool).mean(axis=(2, 4)).reshape(len(idx), -1)
    keep = np.flatnonzero(pooled.std(axis=0) > 0)
    y = np.where(labels[idx] == classes[1], 1, -1)
    return DigitsData(X=pooled[:, keep], y=y, classes=(int(classes[0]), int(classes[1])), side=side,
                      pixels=tuple((int(k // side), int(k % side)) for k in keep))


def rank_features(X, y) -> FeatureRanking:
    """Rank features by ``|beta*_j|`` of the l1 max-margin solution (support = major)."""
    from sambias.verify import l1_max_margin

    mm = l1_max_margin(np.asarray(X, float), np.asarray(y, float))
    b = np.abs(np.asarray(mm.beta, float))
    major = b > SUPPORT_RTOL * b.max()
    order = np.lexsort((np.arange(b.size), -b))
    rank = np.empty_like(order)
    rank[order] = np.arange(b.size)
    return FeatureRanking(beta_star=np.asarray(mm.beta, float), order=order, major=major, rank=rank,
                          unique=bool(mm.unique))


@dataclass(frozen=True)
class FeatureSeries:
    """Along one run: ``minor_share`` (fraction of ``|beta|_1`` on minor features),
    ``leader_rank`` (rank of ``argmax_j |beta_j|`` in the l1-max-margin order, 0 = most major)
    and ``cosine`` to ``beta*``, at ``log10_t``."""

    log10_t: np.ndarray
    minor_share: np.ndarray
    leader_rank: np.ndarray
    cosine: np.ndarray

    def peak_minor_share(self, after: float = -np.inf) -> tuple[float, float]:
        """``(largest minor share, log10 t where it occurs)`` over ``log10 t >= after``."""
        ok = np.isfinite(self.log10_t) & np.isfinite(self.minor_share) & (self.log10_t >= after)
        if not ok.any():
            return float("nan"), float("nan")
        k = int(np.argmax(np.where(ok, self.minor_share, -np.inf)))
        return float(self.minor_share[k]), float(self.log10_t[k])


def feature_series(tr, ranking: FeatureRanking) -> FeatureSeries:
    """Minor share, leader rank and cosine to ``beta*`` along a trajectory.

    >>> import numpy as np
    >>> from sambias import Problem, Init
    >>> from sambias.flows import Trajectory
    >>> p = Problem(depth=1, algorithm="gd", X=[[2.0, 1.0]], y=[1], init=Init(scale=0.1))
    >>> tr = Trajectory(problem=p, tau=np.array([0.0, 1.0]), log10_t=np.array([-1.0, 0.0]),
    ...                 weights=np.array([[[0.1, 0.3]], [[3.0, 1.0]]]), log10_loss=np.zeros(2))
    >>> s = feature_series(tr, rank_features(p.X, p.y))
    >>> s.minor_share.round(6).tolist(), s.leader_rank.tolist()
    ([0.75, 0.25], [1.0, 0.0])
    """
    b = np.abs(tr.beta)
    total = b.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        minor = np.where(total > 0, b[:, ~ranking.major].sum(axis=1) / total, np.nan)
        star = ranking.beta_star / np.linalg.norm(ranking.beta_star)
        cos = tr.directions() @ star
    leader = ranking.rank[np.argmax(b, axis=1)].astype(float)
    leader[total == 0] = np.nan
    return FeatureSeries(log10_t=np.asarray(tr.log10_t, float), minor_share=minor, leader_rank=leader, cosine=cos)


@dataclass(frozen=True)
class DigitsSettings:
    """The digits experiment's knobs (the quick report uses fewer examples and a shorter horizon)."""

    classes: tuple[int, int] = (0, 1)
    pool: int = 2
    per_class: int | None = 25      # linf-SAM's Filippov flow on 50 x 32 data costs ~1 min to t = 1e3
    scale: float = 0.1
    algorithms: tuple[tuple[str, float], ...] = (("gd", 0.0), ("l2-sam", 0.3), ("l2-sam", 0.5), ("linf-sam", 0.05))
    horizon: str = "1e3"
    eta: float = 0.01
    steps: int = 10_000
    rtol: float = 1e-6

    @classmethod
    def of(cls, quick: bool) -> "DigitsSettings":
        return cls(per_class=15, horizon="1e3", steps=2_000, eta=0.02, rtol=1e-5) if quick else cls()


def signed_features(X) -> np.ndarray:
    """``[X, -X]``: with a balanced positive init every ``beta_j = w_j^L >= 0`` for all time
    (``w^(1)_j^2 - w^(2)_j^2`` is conserved at depth 2), so a feature whose weight must be
    negative needs its negated copy; ``beta = beta[:d] - beta[d:]`` folds back.

    >>> signed_features([[1.0, 2.0]]).tolist()
    [[1.0, 2.0, -1.0, -2.0]]
    """
    X = np.asarray(X, float)
    return np.hstack([X, -X])


@dataclass(frozen=True)
class DigitsRun:
    label: str
    flow: object
    discrete: object
    series: FeatureSeries
    discrete_series: FeatureSeries


def digits_runs(settings: DigitsSettings, *, tick: Callable[[str], None] = lambda s: None):
    """Run GD, l2-SAM and linf-SAM on the digits subset: flow to ``settings.horizon`` and the
    discrete algorithm (``eta``, ``steps``).  Returns ``(data, ranking, runs)``."""
    from sambias import Init, Problem
    from sambias.flows import iterate, simulate

    data = digits_data(settings.classes, pool=settings.pool, per_class=settings.per_class)
    X = signed_features(data.X)
    ranking = rank_features(X, data.y)
    runs = []
    for alg, rho in settings.algorithms:
        label = {"gd": "GD", "l2-sam": f"ℓ2-SAM ρ={rho:g}", "linf-sam": f"ℓ∞-SAM ρ={rho:g}"}.get(alg, alg)
        p = Problem(depth=2, algorithm=alg, rho=rho, loss="logistic", X=X, y=data.y,
                    init=Init(scale=settings.scale), name=f"digits-{alg}")
        tick(f"digits {label} flow")
        flow = simulate(p, settings.horizon, rtol=settings.rtol)
        tick(f"digits {label} discrete")
        disc = iterate(p, settings.eta, settings.steps, record_every=max(1, settings.steps // 200))
        runs.append(DigitsRun(label, flow, disc, feature_series(flow, ranking), feature_series(disc, ranking)))
    return data, ranking, runs


def digits_figure(data: DigitsData, ranking: FeatureRanking, runs, settings: DigitsSettings, footer: str):
    """Minor share and cosine to ``beta*`` against log10 t (flow: lines, discrete: dots), and
    pixel maps of ``beta*`` and of each flow's final ``beta``."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11.0, 6.2), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.25, 1.0])
    ax_minor, ax_cos, ax_rank = top.subplots(1, 3)
    for k, run in enumerate(runs):
        stop = "" if run.flow.ok else f" ({run.flow.status.split(':')[0]} at log10 t={run.flow.log10_t_final:.2g})"
        for s, style, lab in ((run.series, "-", f"{run.label} flow{stop}"),
                              (run.discrete_series, ".", f"{run.label} discrete η={settings.eta:g}")):
            ok = np.isfinite(s.log10_t)
            kw = dict(color=f"C{k}", label=lab) | ({"ms": 3} if style == "." else {"lw": 1.4})
            ax_minor.plot(s.log10_t[ok], s.minor_share[ok], style, **kw)
            ax_cos.plot(s.log10_t[ok], s.cosine[ok], style, **kw)
            ax_rank.step(s.log10_t[ok], s.leader_rank[ok], where="post", color=f"C{k}",
                         ls="-" if style == "-" else ":", lw=1.2 if style == "-" else 1.0)
    ax_minor.set_ylabel("share of ‖β‖₁ on minor features")
    ax_cos.set_ylabel("cosine to ℓ1 max-margin β*")
    ax_rank.set_ylabel("rank of leader argmax|β_j| in β* order")
    ax_rank.invert_yaxis()
    for ax in (ax_minor, ax_cos, ax_rank):
        ax.set_xlabel(r"$\log_{10} t$")
    ax_minor.legend(fontsize=6)
    d = data.X.shape[1]
    maps = [("β* (ℓ1 max-margin)", ranking.beta_star)] + [(f"{r.label}: β(T)", r.flow.beta_final) for r in runs]
    axes = bottom.subplots(1, len(maps))
    for ax, (title, b) in zip(axes, maps):
        img = np.zeros((data.side, data.side))
        folded = np.asarray(b, float)[:d] - np.asarray(b, float)[d:]
        for j, (r_, c_) in enumerate(data.pixels):
            img[r_, c_] = folded[j]
        lim = float(np.max(np.abs(img))) or 1.0
        ax.imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.text(0.5, -0.01, footer, ha="center", va="top", fontsize=7)
    return fig
