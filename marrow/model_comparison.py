"""PSIS-LOO comparison of saved fits on the same data (pure: no CLI, no PyMC)."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from marrow.errors import UsageError
from marrow.fits.fit import Fit

MAX_PARETO_K = 0.7
COLUMNS = ["model", "fit", "rank", "elpd_loo", "se", "p_loo", "elpd_diff", "dse", "weight", "warning"]


@dataclass(frozen=True)
class Comparison:
    """The comparison table (best first) and plain-word warnings about it."""

    table: pd.DataFrame
    warnings: list[str] = field(default_factory=list)


def fit_labels(paths: list[Path]) -> list[str]:
    """File names as labels; full paths where two files share a name."""
    names = [Path(p).name for p in paths]
    if len(set(names)) == len(names):
        return names
    return [str(p) for p in paths]


def _log_likelihood_shape(fit: Fit, label: str) -> dict[str, tuple[int, ...]]:
    if "log_likelihood" not in fit.idata.groups() or not fit.idata.log_likelihood.data_vars:
        raise UsageError(f"{label} has no log_likelihood group; refit it with this version of marrow")
    from marrow.loo import group_of_unit

    ll = fit.idata.log_likelihood
    groups = group_of_unit(fit.idata)
    if groups is not None:  # stored once per group of identical patients; LOO is per patient
        return {name: (int(groups.size),) for name in ll.data_vars}
    return {
        name: tuple(int(ll[name].sizes[d]) for d in ll[name].dims if d not in ("chain", "draw"))
        for name in ll.data_vars
    }


def check_comparable(fits: dict[str, Fit]) -> None:
    """Raise UsageError unless every fit has a log-likelihood over the same observations of the same data."""
    if len(fits) < 2:
        raise UsageError("compare-models needs at least two fits")
    labels = list(fits)
    first = labels[0]
    reference = fits[first]
    ref_data = (
        json.loads(reference.provenance.get("data_sha256", "{}")),
        json.loads(reference.provenance.get("data_rows", "{}")),
    )
    ref_ll = _log_likelihood_shape(reference, first)
    for label in labels[1:]:
        fit = fits[label]
        data = (json.loads(fit.provenance.get("data_sha256", "{}")), json.loads(fit.provenance.get("data_rows", "{}")))
        if data != ref_data:
            raise UsageError(
                f"{label} and {first} were fitted to different data (sha256 {_short(data[0])} and rows {data[1]} "
                f"vs sha256 {_short(ref_data[0])} and rows {ref_data[1]}); LOO compares models on the same data only"
            )
        shape = _log_likelihood_shape(fit, label)
        if shape != ref_ll:
            raise UsageError(
                f"{label} and {first} have log-likelihoods over different observations ({shape} vs {ref_ll}); "
                "compare fits of the same outcome (e.g. recovery families with each other)"
            )


def _short(hashes: dict[str, str]) -> str:
    return "{" + ", ".join(f"{k}: {v[:12]}" for k, v in hashes.items()) + "}"


def compare_fits(paths: list[Path | str]) -> Comparison:
    """Load fits, check they are comparable, run az.compare (PSIS-LOO, log scale) and collect warnings."""
    import arviz as az

    from marrow.loo import psis_loo

    paths = [Path(p) for p in paths]
    labels = fit_labels(paths)
    if len(set(labels)) != len(labels):
        raise UsageError("the same fit file is listed twice")
    fits = {label: Fit.load(path) for label, path in zip(labels, paths, strict=True)}
    check_comparable(fits)
    notes: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loos = {label: psis_loo(fit.idata, scale="log") for label, fit in fits.items()}
        table = az.compare(loos, ic="loo", scale="log")
    for label, loo in loos.items():
        k = np.asarray(loo.pareto_k).reshape(-1)
        bad = int((k > MAX_PARETO_K).sum())
        if bad:
            notes.append(
                f"{label}: {bad} of {k.size} observations have Pareto k > {MAX_PARETO_K} "
                f"(max {k.max():.2f}); its PSIS-LOO estimate is unreliable"
            )
    out = table.reset_index().rename(columns={"index": "fit"})
    out["model"] = [fits[label].spec.label for label in out["fit"]]
    out["warning"] = out["warning"].astype(bool)
    out["rank"] = out["rank"].astype(int)
    return Comparison(out[COLUMNS], notes)
