"""Forest plot of covariate effects: Bayesian posterior beside the frequentist estimate on the same data.

Odds ratios (`odds_ratio`, recovery `cure_odds_ratio`) and time ratios (`time_ratio`), one panel
per kind of ratio, log-scaled axis with the null value 1 marked. Frequentist counterparts come from
`marrow.frequentist` when it provides them, else from a direct fit (statsmodels logistic regression,
lifelines Weibull AFT) without center effects.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd

from marrow.errors import UsageError
from marrow.plots import style
from marrow.plots._common import draws, interval

RATIOS = {
    "odds_ratio": "Odds ratio of response",
    "cure_odds_ratio": "Odds ratio of ever recovering",
    "time_ratio": "Time ratio",
}


def bayesian_effects(fit) -> pd.DataFrame:
    """Posterior median and 95% interval of every ratio in the fit: key, element, estimate, lower, upper."""
    posterior = fit.idata.posterior
    rows = []
    for key in RATIOS:
        if key not in posterior:
            continue
        da = posterior[key]
        extra = [d for d in da.dims if d not in ("chain", "draw")]
        samples = draws(da).reshape(da.sizes["chain"] * da.sizes["draw"], -1)
        labels = [": ".join(c) for c in itertools.product(*[[str(v) for v in da[d].to_numpy()] for d in extra])] or [
            key
        ]
        med, lo, hi = interval(samples)
        for j, label in enumerate(labels):
            rows.append(
                {"key": key, "element": label, "estimate": float(med[j]), "lower": float(lo[j]), "upper": float(hi[j])}
            )
    return pd.DataFrame(rows, columns=["key", "element", "estimate", "lower", "upper"])


def frequentist_effects(fit, data) -> pd.DataFrame:
    """Frequentist ratios with 95% CIs: key, element, estimate, lower, upper, method."""
    spec = fit.spec
    covariates = list(spec.covariates)
    columns = ["key", "element", "estimate", "lower", "upper", "method"]
    if not covariates:
        return pd.DataFrame(columns=columns)
    from_package = _from_marrow_frequentist(fit, data)
    if from_package is not None:
        return from_package[columns]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if spec.model == "response":
            return _logit(data, covariates)
        if spec.model == "survival":
            return _aft(data.patients, "followup_days", "died", covariates, "time_ratio")
    return pd.DataFrame(columns=columns)


def _from_marrow_frequentist(fit, data) -> pd.DataFrame | None:
    """Rows of `marrow.frequentist` for this fit's ratios (one method per covariate), when available."""
    spec = fit.spec
    try:
        if spec.model == "response":
            from marrow.frequentist.logistic import logistic_effects as source
        elif spec.model == "survival":
            from marrow.frequentist.survival import survival_aft as source
        elif spec.model == "recovery":
            from marrow.frequentist.survival import cure_model as source
        else:
            return None
    except ImportError:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = source(data, tuple(spec.covariates))
    except Exception:  # a frequentist failure must not cost the Bayesian figure
        return None
    needed = {"key", "element", "estimate", "lower", "upper", "method"}
    if table is None or table.empty or not needed <= set(table.columns):
        return None
    table = table[table["key"].isin(list(RATIOS))].copy()
    if spec.model == "survival" and "family" in table.columns and (table["family"] == spec.resolved_family).any():
        table = table[table["family"] == spec.resolved_family]  # the AFT MLE of the fit's own family
    # One method per estimate: profile likelihood where offered (better than Wald in small trials).
    table["_rank"] = [
        0 if "profile" in str(m) else 1 if "GEE" not in str(m) and "Fisher" not in str(m) else 2
        for m in table["method"]
    ]
    table = table.sort_values(["key", "element", "_rank"], kind="stable").drop_duplicates(["key", "element"])
    return table.drop(columns="_rank").reset_index(drop=True)


def _logit(data, covariates: list[str]) -> pd.DataFrame:
    import statsmodels.api as sm

    x = sm.add_constant(data.patients[covariates].astype(float), has_constant="add")
    y = data.patients["responder"].astype(float)
    try:
        result = sm.Logit(y, x).fit(disp=0)
    except Exception:  # perfect separation and singular designs
        return pd.DataFrame(columns=["key", "element", "estimate", "lower", "upper", "method"])
    ci = result.conf_int(0.05)
    return pd.DataFrame(
        [
            {
                "key": "odds_ratio",
                "element": c,
                "estimate": float(np.exp(result.params[c])),
                "lower": float(np.exp(ci.loc[c, 0])),
                "upper": float(np.exp(ci.loc[c, 1])),
                "method": "logistic regression (MLE, Wald CI)",
            }
            for c in covariates
        ]
    )


def _aft(
    frame: pd.DataFrame, duration: str, event: str, covariates: list[str], key: str, method: str = "Weibull AFT (MLE)"
) -> pd.DataFrame:
    from lifelines import WeibullAFTFitter

    table = frame[[duration, event, *covariates]].astype(float).copy()
    try:
        model = WeibullAFTFitter().fit(table, duration_col=duration, event_col=event)
    except Exception:  # convergence failures
        return pd.DataFrame(columns=["key", "element", "estimate", "lower", "upper", "method"])
    summary = model.summary.loc["lambda_"]
    return pd.DataFrame(
        [
            {
                "key": key,
                "element": c,
                "estimate": float(summary.loc[c, "exp(coef)"]),
                "lower": float(summary.loc[c, "exp(coef) lower 95%"]),
                "upper": float(summary.loc[c, "exp(coef) upper 95%"]),
                "method": method,
            }
            for c in covariates
        ]
    )


def plot_effects(fit, data, width: float = style.WIDTHS["double"]):
    """Per ratio and covariate: posterior median with 95% CrI (blue) and frequentist estimate with 95% CI (black)."""
    bayes = bayesian_effects(fit)
    if bayes.empty:
        raise UsageError(
            f"--kind effects needs odds ratios or time ratios; this {fit.spec.label} fit has no covariates"
        )
    freq = frequentist_effects(fit, data)
    keys = [k for k in RATIOS if k in set(bayes["key"])]
    counts = [int((bayes["key"] == k).sum()) for k in keys]
    fig = style.new_figure(width, 0.9 + 0.42 * sum(counts) + 0.35 * len(keys))
    axes = fig.subplots(len(keys), 1, squeeze=False, gridspec_kw={"height_ratios": counts})[:, 0]
    methods = sorted(set(freq["method"])) if len(freq) else []
    for ax, key in zip(axes, keys, strict=True):
        rows = bayes[bayes["key"] == key].reset_index(drop=True)
        y = np.arange(len(rows))[::-1].astype(float)
        ax.axvline(1.0, color=style.PRIOR, linewidth=0.8, linestyle="--")
        ax.hlines(y + 0.14, rows["lower"], rows["upper"], color=style.BAYES, linewidth=1.6)
        ax.plot(rows["estimate"], y + 0.14, "o", color=style.BAYES, label="Bayesian: median, 95% CrI")
        match = freq[freq["key"] == key].set_index("element") if len(freq) else pd.DataFrame()
        for yi, element in zip(y, rows["element"], strict=True):
            covariate = element.split(": ")[-1]
            if covariate in match.index and element == covariate:
                f = match.loc[covariate]
                f = f.iloc[0] if isinstance(f, pd.DataFrame) else f
                ax.hlines(yi - 0.14, f["lower"], f["upper"], color=style.OBSERVED, linewidth=1.0)
                ax.plot(
                    f["estimate"],
                    yi - 0.14,
                    "s",
                    markerfacecolor="white",
                    markeredgecolor=style.OBSERVED,
                    markersize=3.5,
                    label="frequentist: estimate, 95% CI",
                )
        ax.set_xscale("log")
        ax.set_yticks(y, [style.plain(e) for e in rows["element"]])
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.set_xlabel(RATIOS[key] + " (ratio, log scale)")
        style.light_grid(ax, "x")
        _ratio_ticks(ax)
    handles, labels = [], []
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    fig.legend(handles, labels, loc="outside lower center", ncol=style.legend_columns(width, 2), fontsize=6)
    note = ("; frequentist: " + ", ".join(methods)) if methods else "; no frequentist counterpart"
    style.suptitle(fig, f"Covariate effects: {fit.spec.label}{note}", width, fontsize=7)
    return fig


def _ratio_ticks(ax) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    lo, hi = ax.get_xlim()
    candidates = [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100]
    ticks = [t for t in candidates if lo <= t <= hi]
    if len(ticks) < 3:
        finer = [0.3, 0.4, 0.6, 0.7, 0.8, 0.9, 1.25, 1.5, 3, 4]
        ticks = sorted(set(ticks) | {t for t in finer if lo <= t <= hi}) or [1]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
