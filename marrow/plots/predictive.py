"""Posterior predictive check of a response fit: responders per center and in total."""

from __future__ import annotations

import numpy as np

from marrow import dims
from marrow.plots import style
from marrow.plots._common import draws, interval, need


def plot_ppc(fit, width: float = style.WIDTHS["double"]):
    """Observed responders per center (points) against the 50% and 95% posterior predictive intervals
    (bars), and the predictive distribution of the trial's total responders with the observed total."""
    need(fit, "posterior_predictive", ["center_responders", "total_responders"], "ppc")
    need(fit, "observed_data", ["center_responders", "total_responders", "center_n"], "ppc")
    predictive = fit.idata.posterior_predictive
    observed = fit.idata.observed_data
    centers = [str(c) for c in predictive[dims.CENTER].to_numpy()]
    reps = draws(predictive["center_responders"])  # (samples, center)
    obs = observed["center_responders"].to_numpy()
    n = observed["center_n"].to_numpy()

    height = max(2.2, 0.9 + 0.24 * len(centers))
    if width >= 5:
        fig = style.new_figure(width, height)
        left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [2.2, 1]})
    else:  # one column: stack the panels
        fig = style.new_figure(width, height + 1.9)
        left, right = fig.subplots(2, 1, gridspec_kw={"height_ratios": [height - 0.4, 1.6]})
    y = np.arange(len(centers))[::-1]
    _, lo95, hi95 = interval(reps, 0.95)
    _, lo50, hi50 = interval(reps, 0.50)
    left.hlines(y, lo95, hi95, color=style.PREDICTIVE, linewidth=1.0, alpha=0.6, label="predictive 95%")
    left.hlines(y, lo50, hi50, color=style.PREDICTIVE, linewidth=3.0, label="predictive 50%")
    outside = (obs < lo95) | (obs > hi95)
    left.plot(obs, y, "o", color=style.OBSERVED, markersize=4, label="observed", zorder=3)
    if outside.any():
        left.plot(
            obs[outside],
            y[outside],
            "o",
            markerfacecolor="none",
            markeredgecolor=style.OKABE_ITO["vermillion"],
            markersize=8,
            linewidth=0,
            label="outside 95%",
            zorder=4,
        )
    left.set_yticks(y, [f"{style.plain(c)} (n={int(k)})" for c, k in zip(centers, n, strict=True)])
    left.set_xlabel("Responders per center (patients)")
    left.set_title("Responders by center")
    left.xaxis.get_major_locator().set_params(integer=True)
    style.light_grid(left, "x")

    total = draws(predictive["total_responders"]).reshape(-1)
    observed_total = int(observed["total_responders"].to_numpy())
    bins = np.arange(total.min() - 0.5, total.max() + 1.5)
    right.hist(total, bins=bins, color=style.PREDICTIVE, alpha=0.7, density=True, label="predictive total")
    p_low = float((total <= observed_total).mean())
    right.axvline(
        observed_total,
        color=style.OBSERVED,
        linewidth=1.4,
        label=f"observed = {observed_total}\nP(rep \u2264 obs) = {p_low:.2f}",
    )
    right.set_xlabel("Total responders (patients)")
    right.set_ylabel("Predictive probability")
    right.set_title("Trial total")
    right.xaxis.get_major_locator().set_params(integer=True)
    handles, labels = left.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    fig.legend(
        handles + more[0],
        labels + more[1],
        loc="outside lower center",
        ncol=style.legend_columns(width + 1.8, len(labels) + 2),
        fontsize=6,
    )
    return fig
