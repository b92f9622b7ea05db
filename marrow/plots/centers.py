"""Shrinkage plot of a response fit: raw center proportions beside partially pooled estimates."""

from __future__ import annotations

import numpy as np

from marrow import dims
from marrow.plots import style
from marrow.plots._common import draws, interval, need


def clopper_pearson(k: int, n: int, prob: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval for k responders of n."""
    from scipy.stats import beta

    alpha = 1 - prob
    lower = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    upper = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return lower, upper


def plot_centers(fit, width: float = style.WIDTHS["double"]):
    """Per center: raw proportion with exact 95% Clopper-Pearson interval (open, black) and the
    partially pooled posterior `center_rate` with 95% interval (filled, blue); vertical band: pooled
    `response_rate`; shaded band: 95% predictive interval for a new center (`new_center_rate`)."""
    need(fit, "posterior", ["center_rate", "response_rate", "new_center_rate"], "centers")
    need(fit, "observed_data", ["center_responders", "center_n"], "centers")
    posterior = fit.idata.posterior
    observed = fit.idata.observed_data
    centers = [str(c) for c in posterior[dims.CENTER].to_numpy()]
    k = observed["center_responders"].sel({dims.CENTER: posterior[dims.CENTER]}).to_numpy()
    n = observed["center_n"].sel({dims.CENTER: posterior[dims.CENTER]}).to_numpy()
    med, lo, hi = interval(draws(posterior["center_rate"]))
    pooled = interval(draws(posterior["response_rate"]).reshape(-1))
    new = interval(draws(posterior["new_center_rate"]).reshape(-1))

    height = max(2.2, 1.1 + 0.28 * len(centers))
    fig = style.new_figure(width, height)
    ax = fig.subplots()
    y = np.arange(len(centers))[::-1].astype(float)
    ax.axvspan(
        100 * new[1],
        100 * new[2],
        color=style.OKABE_ITO["sky"],
        alpha=0.18,
        linewidth=0,
        label="new center, 95% predictive",
    )
    ax.axvline(
        100 * pooled[0],
        color=style.BAYES,
        linewidth=0.9,
        linestyle="--",
        label=f"pooled rate {100 * pooled[0]:.0f}% ({100 * pooled[1]:.0f}\u2013{100 * pooled[2]:.0f})",
    )
    raw = np.where(n > 0, k / np.maximum(n, 1), np.nan)
    cp = np.array([clopper_pearson(int(a), int(b)) for a, b in zip(k, n, strict=True)])
    offset = 0.17
    ax.hlines(y + offset, 100 * cp[:, 0], 100 * cp[:, 1], color=style.OBSERVED, linewidth=0.9)
    ax.plot(
        100 * raw,
        y + offset,
        "o",
        markerfacecolor="white",
        markeredgecolor=style.OBSERVED,
        label="observed, exact 95% CI",
    )
    ax.hlines(y - offset, 100 * lo, 100 * hi, color=style.BAYES, linewidth=1.6)
    ax.plot(100 * med, y - offset, "o", color=style.BAYES, label="partially pooled, 95% CrI")
    for yi, r, m in zip(y, raw, med, strict=True):
        if np.isfinite(r):
            ax.annotate(
                "",
                xy=(100 * m, yi - offset),
                xytext=(100 * r, yi + offset),
                arrowprops={"arrowstyle": "-", "color": style.PRIOR, "linewidth": 0.5, "linestyle": ":"},
            )
    ax.set_yticks(y, [f"{style.plain(c)} ({int(a)}/{int(b)})" for c, a, b in zip(centers, k, n, strict=True)])
    ax.set_xlim(0, 100)
    ax.set_xlabel("Response rate (%)")
    ax.set_title(style.wrap("Center response rates: observed and partially pooled", width - 1.3))
    style.light_grid(ax, "x")
    fig.legend(loc="outside lower center", ncol=style.legend_columns(width, 2), fontsize=6)
    return fig
