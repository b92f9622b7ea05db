"""Sampler diagnostics with thresholds: R-hat, ESS, divergences, E-BFMI, tree depth, Pareto k."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from marrow import convergence
from marrow.fits.fit import Fit


@dataclass(frozen=True)
class Thresholds:
    max_rhat: float = 1.01
    min_ess: float = 400.0
    max_divergences: int = 0
    min_bfmi: float = 0.3
    max_treedepth_share: float = 0.01
    max_pareto_k: float = 0.7


@dataclass(frozen=True)
class Check:
    name: str
    value: str
    threshold: str
    passed: bool
    detail: str = ""
    advice: str = ""
    skipped: bool = False

    @property
    def status(self) -> str:
        return "skipped" if self.skipped else ("ok" if self.passed else "FAILED")


def _worst(dataset, reducer) -> tuple[float, str]:
    """Worst value over every element of every variable, with where it is."""
    worst, where = None, ""
    for name, da in dataset.data_vars.items():
        values = da.to_numpy()
        if values.size == 0 or np.all(np.isnan(values)):
            continue
        idx = reducer(values)
        flat = np.unravel_index(idx, values.shape) if values.ndim else ()
        value = float(values[flat]) if values.ndim else float(values)
        if worst is None or (reducer is np.nanargmax and value > worst) or (reducer is np.nanargmin and value < worst):
            label = name
            if values.ndim:
                label += "[" + ", ".join(str(da[d].to_numpy()[i]) for d, i in zip(da.dims, flat, strict=True)) + "]"
            worst, where = value, label
    return (float("nan") if worst is None else worst), where


def diagnose(fit: Fit, thresholds: Thresholds = Thresholds()) -> list[Check]:
    """Evaluate every diagnostic; each `Check` says whether it passed and what to try if not."""
    idata = fit.idata
    stats = idata.sample_stats
    checks: list[Check] = []
    rhat = convergence.per_variable(idata.posterior, convergence.rhat)
    ess_bulk = convergence.per_variable(idata.posterior, convergence.ess_bulk)
    ess_tail = convergence.per_variable(idata.posterior, convergence.ess_tail)

    value, where = _worst(rhat, np.nanargmax)
    checks.append(
        Check(
            "R-hat (max)",
            f"{value:.3f}",
            f"<= {thresholds.max_rhat}",
            not value > thresholds.max_rhat,
            where,
            "run longer chains (--draws, --tune) or reparameterise; chains disagree",
        )
    )
    for label, dataset in (("bulk ESS (min)", ess_bulk), ("tail ESS (min)", ess_tail)):
        value, where = _worst(dataset, np.nanargmin)
        checks.append(
            Check(
                label,
                f"{value:.0f}",
                f">= {thresholds.min_ess:.0f}",
                not value < thresholds.min_ess,
                where,
                "draw more (--draws) or more chains (--chains)",
            )
        )

    divergences = int(stats["diverging"].sum()) if "diverging" in stats else 0
    total = int(stats.sizes["chain"] * stats.sizes["draw"])
    checks.append(
        Check(
            "divergences",
            f"{divergences} of {total}",
            f"<= {thresholds.max_divergences}",
            divergences <= thresholds.max_divergences,
            "",
            "raise --target-accept (0.99, or 0.995 if it was 0.99) or, in a hierarchical model, try the other "
            "--parameterisation: a group sd that few groups (centers, lineages) identify makes a funnel",
        )
    )

    if "energy" in stats:
        bfmi = convergence.bfmi(stats["energy"].transpose("chain", "draw").to_numpy())
        low = float(np.min(bfmi))
        checks.append(
            Check(
                "E-BFMI (min over chains)",
                f"{low:.2f}",
                f">= {thresholds.min_bfmi}",
                low >= thresholds.min_bfmi,
                "",
                "heavy tails or funnel geometry: reparameterise or use stronger priors on scales",
            )
        )

    for name in ("reaching_max_treedepth", "maxdepth_reached"):
        if name in stats:
            share = float(stats[name].mean())
            checks.append(
                Check(
                    "tree depth saturation",
                    f"{share:.1%}",
                    f"<= {thresholds.max_treedepth_share:.0%}",
                    share <= thresholds.max_treedepth_share,
                    "",
                    "the posterior is hard to traverse: check scaling of covariates, or raise max_treedepth",
                )
            )
            break

    if "log_likelihood" in idata.groups():
        from marrow.loo import psis_loo

        loo = psis_loo(idata)
        k = np.asarray(loo.pareto_k).reshape(-1)
        bad = int((k > thresholds.max_pareto_k).sum())
        checks.append(
            Check(
                "PSIS-LOO Pareto k (max)",
                f"{np.max(k):.2f} ({bad} of {k.size} > {thresholds.max_pareto_k})",
                f"<= {thresholds.max_pareto_k}",
                bad == 0,
                "",
                "influential observations: LOO estimates are unreliable; consider K-fold CV or a more robust model",
            )
        )
    else:
        reason = fit.provenance.get("log_likelihood_omitted", "the fit has no log_likelihood group")
        checks.append(
            Check(
                "PSIS-LOO Pareto k (max)", "not computed", f"<= {thresholds.max_pareto_k}", True, reason, skipped=True
            )
        )
    return checks


def failed(checks: list[Check]) -> list[Check]:
    return [c for c in checks if not c.passed]
