"""Sampler and model-check plots drawn by ArviZ: trace, rank, energy, LOO-PIT.

ArviZ draws through pyplot; each figure is detached from pyplot's registry at once, so these
functions keep no global state and return a plain Figure like the others.
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager

import numpy as np

from marrow.errors import UsageError
from marrow.plots import style
from marrow.plots._common import prior_variables

MAX_ELEMENTS = 12  # a vector longer than this is not a "top-level" parameter for these plots


def top_level(fit) -> list[str]:
    """Parameters with a prior (the model's free parameters), in prior-set order; else small variables."""
    posterior = fit.idata.posterior
    names = [name for _, name, _ in prior_variables(fit)]
    if not names:
        names = [n for n, da in posterior.data_vars.items() if da.size // (da.sizes["chain"] * da.sizes["draw"]) <= 3]
    return names


def _size(fit, names: list[str]) -> int:
    posterior = fit.idata.posterior
    return sum(posterior[n].size // (posterior.sizes["chain"] * posterior.sizes["draw"]) for n in names)


ALIAS_MAPPING_DEPRECATION = r"Passing a dict or None as alias_mapping to normalize_kwargs is deprecated"


@contextmanager
def _pyplot_figure():
    """Let ArviZ draw with pyplot, then detach its figure from pyplot; a fixed seed for its random bands.

    ArviZ 0.23's trace and energy plots call matplotlib's `normalize_kwargs` the way matplotlib 3.11
    deprecates (ALIAS_MAPPING_DEPRECATION): ArviZ's code, not the user's, so it is not shown."""
    import matplotlib.pyplot as plt

    state = np.random.get_state()
    np.random.seed(20170601)
    holder: dict = {}
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=ALIAS_MAPPING_DEPRECATION, category=DeprecationWarning)
            yield holder
    finally:
        np.random.set_state(state)
        figure = holder.get("figure")
        if figure is not None:
            plt.close(figure)


def _figure_of(axes):
    return np.asarray(axes).reshape(-1)[0].figure


def _finish(fig, title: str):
    style.suptitle(fig, title, fig.get_size_inches()[0])
    for ax in fig.axes:
        ax.spines["top"].set_visible(False)
        ax.spines["right"].set_visible(False)
        # ArviZ scales its text with the figure size; bring it back to marrow's sizes.
        for loc in ("left", "center", "right"):
            if ax.get_title(loc=loc):
                ax.set_title(ax.get_title(loc=loc), loc=loc, fontsize=7)
        for text in (ax.xaxis.label, ax.yaxis.label):
            text.set_fontsize(7)
        ax.tick_params(labelsize=7, width=0.6, length=3)
        legend = ax.get_legend()
        if legend is not None:
            for text in legend.get_texts():
                text.set_fontsize(6)
    fig.set_layout_engine("constrained")
    return fig


def plot_trace(fit, width: float = style.WIDTHS["double"]):
    """Per parameter: posterior density by chain (left) and the draws in sampling order (right)."""
    import arviz as az

    names = top_level(fit)
    height = 0.4 + 1.1 * len(names)
    with _pyplot_figure() as holder:
        axes = az.plot_trace(
            fit.idata,
            var_names=names,
            compact=True,
            combined=False,
            figsize=(width, height),
            chain_prop={"color": style.PALETTE[:4]},
            show=False,
        )
        fig = holder["figure"] = _figure_of(axes)
    for ax in np.asarray(axes)[:, 1]:
        ax.set_xlabel("iteration (draw)")
    return _finish(fig, f"Trace: {fit.spec.label}")


def plot_rank(fit, width: float = style.WIDTHS["double"]):
    """Rank histograms per chain: near-uniform bars mean the chains mix (Vehtari et al. 2021)."""
    import arviz as az

    names = top_level(fit)
    n_panels = _size(fit, names)
    ncols = min(n_panels, 3 if width >= 5 else 2)
    nrows = math.ceil(n_panels / ncols)
    with _pyplot_figure() as holder:
        axes = az.plot_rank(
            fit.idata,
            var_names=names,
            kind="bars",
            figsize=(width, 0.4 + 1.3 * nrows),
            grid=(nrows, ncols),
            colors=style.PALETTE[: fit.idata.posterior.sizes["chain"]],
            show=False,
        )
        fig = holder["figure"] = _figure_of(axes)
    for ax in np.asarray(axes).reshape(-1):
        if ax.has_data():
            ax.set_xlabel("rank (all chains)")
    return _finish(fig, f"Rank plots: {fit.spec.label}")


def plot_energy(fit, width: float = style.WIDTHS["double"]):
    """Marginal energy against energy transition distributions; unlike shapes mean poor exploration (low E-BFMI)."""
    import arviz as az

    if "energy" not in fit.idata.sample_stats:
        raise UsageError("--kind energy needs the sampler's energy statistics, which this fit does not have")
    with _pyplot_figure() as holder:
        ax = az.plot_energy(
            fit.idata,
            kind="kde",
            fill_color=(style.OKABE_ITO["sky"], style.OKABE_ITO["orange"]),
            figsize=(width, min(0.42 * width, 2.6) + 0.4),
            show=False,
        )
        fig = holder["figure"] = _figure_of(ax)
    ax = fig.axes[0]
    ax.set_xlabel("energy (centred, model units)")
    return _finish(fig, f"Energy: {fit.spec.label}")


def loo_pit_variables(idata) -> list[str]:
    """Variables with a per-observation log-likelihood AND posterior predictive draws on the same dims."""
    groups = idata.groups()
    if not all(g in groups for g in ("log_likelihood", "posterior_predictive", "observed_data")):
        return []
    out = []
    for name, ll in idata.log_likelihood.data_vars.items():
        if name in idata.posterior_predictive and name in idata.observed_data:
            if idata.posterior_predictive[name].dims == ll.dims:
                out.append(name)
    return out


def plot_loo_pit(fit, width: float = style.WIDTHS["double"]):
    """LOO probability integral transform against the uniform distribution (ECDF difference with a 95% band)."""
    import arviz as az

    names = loo_pit_variables(fit.idata)
    if not names:
        ll = list(fit.idata.log_likelihood.data_vars) if "log_likelihood" in fit.idata.groups() else []
        pp = list(fit.idata.posterior_predictive.data_vars) if "posterior_predictive" in fit.idata.groups() else []
        raise UsageError(
            f"--kind loo-pit is not available for this {fit.spec.label} fit: it needs the same variable in "
            f"log_likelihood ({', '.join(ll) or 'none'}) and posterior_predictive ({', '.join(pp) or 'none'}) with "
            "the same dims. Its likelihood is per patient but its predictive draws are counts per cell, and a PIT of "
            "a discrete or censored outcome is not uniform even under a correct model; use --kind ppc instead."
        )
    fig = None
    with _pyplot_figure() as holder:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(names), figsize=(width, 0.45 * width + 0.3), squeeze=False)
        holder["figure"] = fig
        for ax, name in zip(axes[0], names, strict=True):
            az.plot_loo_pit(fit.idata, y=name, ecdf=True, ax=ax, color=style.BAYES)
            ax.set_xlabel(f"LOO-PIT of {name} (probability)")
    return _finish(fig, f"LOO-PIT: {fit.spec.label}")
