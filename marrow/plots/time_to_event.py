"""Time-to-event figures: observed Kaplan-Meier curves with the model's posterior band.

`recovery`: per lineage, the KM cumulative incidence of recovery (1 - KM of time to recovery,
censored when not recovered) as a step curve with censoring ticks and the number at risk beneath,
with the posterior median and 95% band of the model's `cumulative_incidence`. With visit intervals
in the data the observed curve is the Turnbull estimate; for a --competing-death fit it is the
Aalen-Johansen estimate against `recovery_cif_curve`, with death before recovery (model band and
Aalen-Johansen, dashed) in the same panel.
`survival`: the same for overall survival (KM of followup_days/died against `survival_curve`).
Times are in the fit's unit (`spec.time_unit`), and so is the x-axis title.
"""

from __future__ import annotations

import numpy as np

from marrow import dims
from marrow.errors import UsageError
from marrow.formatting import plural
from marrow.plots import style
from marrow.plots._common import draws, interval, need, other_dim


def kaplan_meier(durations: np.ndarray, events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """KM survival as step points (times from 0, survival just after each time), via lifelines."""
    from lifelines import KaplanMeierFitter

    kmf = KaplanMeierFitter().fit(durations, events)
    frame = kmf.survival_function_
    times = frame.index.to_numpy(dtype=float)
    values = frame.iloc[:, 0].to_numpy(dtype=float)
    return times, values


def step_value(times: np.ndarray, values: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Right-continuous step function value at `at`."""
    idx = np.searchsorted(times, at, side="right") - 1
    return values[np.clip(idx, 0, len(values) - 1)]


def at_risk(durations: np.ndarray, ticks: np.ndarray) -> list[int]:
    """Number still at risk (not yet event or censored) at each tick."""
    return [int((durations >= t).sum()) for t in ticks]


def _ticks(xmax: float) -> np.ndarray:
    from matplotlib.ticker import MaxNLocator

    ticks = MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10], integer=True).tick_values(0, xmax)
    return ticks[(ticks >= 0) & (ticks <= xmax + 1e-9)]


def time_axis_label(fit) -> str:
    """x-axis title in the fit's time unit, e.g. 'Weeks since treatment'."""
    return f"{fit.spec.time_unit.capitalize()} since treatment"


def _panel(
    ax,
    risk_ax,
    durations,
    events,
    grid,
    band,
    cumulative: bool,
    xmax: float,
    title: str,
    ylabel: str,
    xlabel: str,
    observed: tuple | None = None,
) -> None:
    """One curve panel; `observed` = (times, curve, label) replaces the Kaplan-Meier step curve."""
    if observed is None:
        times, surv = kaplan_meier(durations, events)
        curve, observed_label = (1.0 - surv if cumulative else surv), "Kaplan\u2013Meier"
    else:
        times, curve, observed_label = observed
    med, lo, hi = band
    ax.fill_between(grid, 100 * lo, 100 * hi, color=style.BAYES, alpha=0.22, linewidth=0, label="model, 95% CrI")
    ax.plot(grid, 100 * med, color=style.BAYES, linewidth=1.2, label="model, median")
    ax.step(times, 100 * curve, where="post", color=style.OBSERVED, linewidth=1.0, label=observed_label)
    censored = np.sort(durations[events == 0])
    censored = censored[censored <= xmax]
    if censored.size:
        y = step_value(times, curve, censored)
        ax.plot(
            censored,
            100 * y,
            linestyle="none",
            marker="|",
            markersize=5,
            markeredgewidth=0.8,
            color=style.OBSERVED,
            label="censored",
        )
    ticks = _ticks(xmax)
    ax.set_xlim(0, xmax)
    ax.set_ylim(0, 100)
    ax.set_xticks(ticks)
    ax.tick_params(labelbottom=False)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    style.light_grid(ax, "y")
    risk_ax.set_xlim(0, xmax)
    risk_ax.set_xticks(ticks)
    risk_ax.set_ylim(0, 1)
    risk_ax.set_yticks([])
    for spine in ("left", "top", "right"):
        risk_ax.spines[spine].set_visible(False)
    for t, n in zip(ticks, at_risk(durations, ticks), strict=True):
        risk_ax.text(t, 0.55, str(n), ha="center", va="center", fontsize=6.5)
    risk_ax.text(
        0.0, 1.02, "Number at risk", transform=risk_ax.transAxes, ha="left", va="bottom", fontsize=6.5, color="#444444"
    )
    risk_ax.set_xlabel(xlabel)


def _band(da, exclude: tuple[str, ...] = ()) -> tuple[np.ndarray, tuple]:
    day_dim = other_dim(da, exclude)
    grid = da[day_dim].to_numpy().astype(float)
    return grid, interval(draws(da))


def plot_recovery(fit, data, width: float = style.WIDTHS["double"]):
    """Per lineage: observed cumulative incidence of recovery (%) against the posterior band."""
    need(fit, "posterior", ["cumulative_incidence"], "recovery")
    if data.recovery is None:
        raise UsageError("--kind recovery needs the recovery table of the fit's data")
    posterior = fit.idata.posterior
    competing = "recovery_cif_curve" in posterior and "death_before_recovery_curve" in posterior
    ci = posterior["recovery_cif_curve" if competing else "cumulative_incidence"]
    lineages = [str(v) for v in ci[dims.LINEAGE].to_numpy()]
    rec = data.recovery
    n = len(lineages)
    ncols = n if width >= 5 or n == 1 else 1
    nrows = int(np.ceil(n / ncols))
    panel_height = 2.1 if ncols > 1 else 1.9
    fig = style.new_figure(width, 0.5 + nrows * panel_height)
    grid_spec = fig.add_gridspec(2 * nrows, ncols, height_ratios=[4, 1] * nrows)
    day_dim = other_dim(ci, (dims.LINEAGE,))
    grid = ci[day_dim].to_numpy().astype(float)
    xmax = float(grid.max())
    first = None
    for i, lineage in enumerate(lineages):
        r, c = divmod(i, ncols)
        ax = fig.add_subplot(grid_spec[2 * r, c], sharey=first)
        risk_ax = fig.add_subplot(grid_spec[2 * r + 1, c])
        first = first or ax
        rows = rec[rec["lineage"] == lineage]
        key = {dims.LINEAGE: ci[dims.LINEAGE].to_numpy()[i]}
        band = interval(draws(ci.sel(key)))
        observed = _observed_incidence(data, rows, lineage, competing)
        _panel(
            ax,
            risk_ax,
            rows["day"].to_numpy(float),
            rows["recovered"].to_numpy(int),
            grid,
            band,
            True,
            xmax,
            f"{style.plain(lineage)} (n={len(rows)}, {int(rows['recovered'].sum())} recovered)",
            "Recovered (%)" if c == 0 else "",
            time_axis_label(fit),
            observed,
        )
        if competing:
            _death_curves(ax, data, lineage, grid, interval(draws(posterior["death_before_recovery_curve"].sel(key))))
        if c > 0:
            ax.tick_params(labelleft=False)
    handles, labels = first.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=style.legend_columns(width, 4), fontsize=6)
    what = (
        "Cumulative incidence of recovery and of death before recovery"
        if competing
        else "Cumulative incidence of recovery"
    )
    style.suptitle(fig, f"{what}: {fit.spec.label}", width)
    return fig


def _observed_incidence(data, rows, lineage: str, competing: bool) -> tuple | None:
    """(times, cumulative incidence, label) drawn beside the model: Aalen-Johansen with death
    competing, Turnbull for interval-censored rows, else None (Kaplan-Meier)."""
    from marrow.frequentist import interval as freq

    if competing and freq.has_deaths(data):
        time, event = freq.competing_events(data, lineage)
        if (event == freq.RECOVERED).any():
            fitter, _ = freq.aalen_johansen(time, event, freq.RECOVERED)
            cif = fitter.cumulative_density_
            return cif.index.to_numpy(float), cif.iloc[:, 0].to_numpy(float), "Aalen\u2013Johansen"
    lower, upper = freq.bounds(rows)
    if (np.isfinite(upper) & (lower < upper)).any():
        times, f_low, f_high = freq.turnbull(lower, upper)
        return times, 0.5 * (f_low + f_high), "Turnbull"
    return None


def _death_curves(ax, data, lineage: str, grid, band) -> None:
    """Death before recovery: the posterior band and the Aalen-Johansen estimate, dashed."""
    from marrow.frequentist import interval as freq

    med, lo, hi = band
    ax.fill_between(
        grid, 100 * lo, 100 * hi, color=style.PREDICTIVE, alpha=0.22, linewidth=0, label="model, died first, 95% CrI"
    )
    ax.plot(grid, 100 * med, color=style.PREDICTIVE, linewidth=1.2, linestyle="--", label="model, died first")
    time, event = freq.competing_events(data, lineage)
    if (event == freq.DIED).any():
        fitter, _ = freq.aalen_johansen(time, event, freq.DIED)
        cif = fitter.cumulative_density_
        ax.step(
            cif.index.to_numpy(float),
            100 * cif.iloc[:, 0].to_numpy(float),
            where="post",
            color=style.OBSERVED,
            linewidth=1.0,
            linestyle="--",
            label="Aalen\u2013Johansen, died first",
        )


def plot_survival(fit, data, width: float = style.WIDTHS["double"]):
    """Overall survival (%): KM with censoring ticks and numbers at risk, against the posterior band."""
    need(fit, "posterior", ["survival_curve"], "survival")
    patients = data.patients
    if "followup_days" not in patients or "died" not in patients:
        raise UsageError("--kind survival needs followup_days and died in the fit's patients table")
    curve = fit.idata.posterior["survival_curve"]
    grid, band = _band(curve)
    main = 2.2 if width < 5 else 2.6  # inches of curve; the at-risk strip stays about 0.5 in
    fig = style.new_figure(width, main + 0.95)
    grid_spec = fig.add_gridspec(2, 1, height_ratios=[main, 0.5])
    ax = fig.add_subplot(grid_spec[0])
    risk_ax = fig.add_subplot(grid_spec[1])
    durations = patients["followup_days"].to_numpy(float)
    events = patients["died"].to_numpy(int)
    _panel(
        ax,
        risk_ax,
        durations,
        events,
        grid,
        band,
        False,
        float(grid.max()),
        style.wrap(f"Overall survival (n={len(durations)}, {plural(int(events.sum()), 'death')})", width - 0.6),
        "Alive (%)",
        time_axis_label(fit),
    )
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles, labels, loc="lower left", fontsize=6)
    return fig
