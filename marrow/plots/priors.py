"""Prior against posterior for every parameter that has a prior in the fit's PriorSet."""

from __future__ import annotations

import math

import numpy as np

from marrow.errors import UsageError
from marrow.plots import style
from marrow.plots._common import draws, prior_variables


def panels(fit) -> list[tuple[str, str, object, np.ndarray]]:
    """(parameter, element label, frozen scipy prior, posterior samples) for each panel."""
    posterior = fit.idata.posterior
    out = []
    for key, name, prior in prior_variables(fit):
        da = posterior[name]
        extra = [d for d in da.dims if d not in ("chain", "draw")]
        samples = draws(da)
        if not extra:
            out.append((key, name, prior, samples.reshape(-1)))
            continue
        flat = samples.reshape(samples.shape[0], -1)
        labels = _element_labels(da, extra)
        for j, label in enumerate(labels):
            out.append((key, f"{name}[{label}]", prior, flat[:, j]))
    return out


def _element_labels(da, extra: list[str]) -> list[str]:
    import itertools

    values = [[str(v) for v in da[d].to_numpy()] for d in extra]
    return [", ".join(combo) for combo in itertools.product(*values)]


def plot_prior_posterior(fit, width: float = style.WIDTHS["double"]):
    """One panel per parameter element: prior density (grey, filled) and posterior density (blue, KDE)."""
    from scipy.stats import gaussian_kde

    items = panels(fit)
    if not items:
        raise UsageError(f"no parameter of this {fit.spec.label} fit has a prior in its prior set")
    prior_set = fit.priors
    ncols = 3 if width >= 5 else 2
    nrows = math.ceil(len(items) / ncols)
    fig = style.new_figure(width, 0.4 + 1.45 * nrows)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).reshape(-1)
    # the grid has nrows * ncols axes, at least as many as items: the spare ones are hidden below
    for ax, (name, label, prior, samples) in zip(axes, items, strict=False):
        dist = prior.scipy()
        lo, hi = np.quantile(samples, [0.001, 0.999])
        p_lo, p_hi = dist.ppf(0.005), dist.ppf(0.995)
        x_lo, x_hi = min(lo, p_lo), max(hi, p_hi)
        if prior.support in ("positive", "unit"):
            x_lo = max(x_lo, 0.0)
        if prior.support == "unit":
            x_hi = min(x_hi, 1.0)
        grid = np.linspace(x_lo, x_hi, 300)
        ax.fill_between(grid, dist.pdf(grid), color=style.PRIOR, alpha=0.35, linewidth=0, label="prior")
        if np.std(samples) > 0:
            kde = gaussian_kde(samples)
            post = kde(grid)
            if prior.support in ("positive", "unit"):  # reflect at the boundary so the KDE keeps its mass
                post = post + kde(2 * x_lo - grid) * (grid >= x_lo)
            ax.plot(grid, post, color=style.BAYES, label="posterior")
        ax.set_title(style.plain(label), fontsize=7)
        ax.set_xlabel(_unit(fit.spec.model, name))
        ax.set_yticks([])
        ax.spines["left"].set_visible(False)
    for ax in axes[len(items) :]:
        ax.set_visible(False)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncol=2, fontsize=6)
    style.suptitle(fig, f"Prior ('{prior_set.name}') and posterior: {fit.spec.label}", width)
    return fig


UNITS = {
    "response.intercept": "log-odds",
    "response.beta": "log odds ratio",
    "response.center_sd": "sd (log-odds)",
    "response.cr_gap": "log-odds",
    "recovery.cure_intercept_mu": "log-odds",
    "recovery.cure_intercept_sd": "sd (log-odds)",
    "recovery.cure_beta": "log odds ratio",
    "recovery.cure_center_sd": "sd (log-odds)",
    "recovery.log_median_mu": "log days",
    "recovery.log_median_sd": "sd (log days)",
    "recovery.log_shape_mu": "log shape",
    "recovery.log_shape_sd": "sd (log shape)",
    "recovery.time_beta": "log time ratio",
    "recovery.frailty_sd": "sd (log time)",
    "survival.log_median": "log days",
    "survival.log_shape": "log shape",
    "survival.beta": "log time ratio",
    "safety.rate": "probability",
    "safety.intercept": "log-odds",
    "safety.center_sd": "sd (log-odds)",
}


def _unit(model: str, name: str) -> str:
    """Axis label: the parameter's scale."""
    return UNITS.get(f"{model}.{name}", "value")
