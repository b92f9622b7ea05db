"""Prior predictive checks: what a prior set implies, on the user's design, on scales people think in.

The model is built on the trial's design (its centers, covariate patterns, patients, lineages);
outcomes are not used. `pm.sample_prior_predictive` draws parameters from the priors, and we
summarise the model's reported quantities (response rate, center rates, odds ratios, median
recovery days, ...) plus derived spreads (ratio of the highest to the lowest center rate, sd of
center rates) and the outcome a trial like this one would show (observed response proportion).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from marrow.models.effects import NONCENTRED

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
_SAMPLE_DIMS = ("chain", "draw")


@dataclass
class PriorCheck:
    """Quantile table (one row per scalar) and the flat draws behind each row (for plots)."""

    table: pd.DataFrame
    draws: dict[str, np.ndarray]
    notes: list[str]
    secondary: set[str] = field(default_factory=set)  # per-center rows, plotted only if there is room


def _flat(da) -> np.ndarray:
    return da.to_numpy().reshape(-1)


def _rows_for(label: str, values: np.ndarray, scale: str, out: list, draws: dict) -> None:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return
    q = np.quantile(values, QUANTILES)
    out.append({"quantity": label, "scale": scale, **{f"{p:.0%}": float(v) for p, v in zip(QUANTILES, q, strict=True)}})
    draws[label] = values


def _expand(quantity, da, rows: list, draws: dict, secondary: set, max_elements: int = 40) -> None:
    """One row per element of a quantity (labels as in marrow.summaries); huge grids are skipped."""
    from marrow import dims
    from marrow.summaries import quantity_labels

    extra = [d for d in da.dims if d not in _SAMPLE_DIMS]
    if extra and int(np.prod([da.sizes[d] for d in extra])) > max_elements:
        return
    for selection, label in quantity_labels(quantity, da):
        _rows_for(label, _flat(da.sel(selection)), quantity.scale, rows, draws)
        if dims.CENTER in extra or dims.DAY in extra:
            secondary.add(label)


def prior_predictive(model, draws: int, seed: int):
    """Prior and prior-predictive draws of a built model (InferenceData with `prior`, `prior_predictive`)."""
    import warnings

    import pymc as pm

    from marrow.fits.run import quiet_pymc_logs

    quiet_pymc_logs(False)
    with model, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*could not link to a BLAS.*")
        # Models that write their likelihood as a Potential (recovery) get this warning; a prior
        # check ignores the likelihood by design, so it is expected here.
        warnings.filterwarnings("ignore", message="The effect of Potentials on other parameters is ignored")
        return pm.sample_prior_predictive(draws=draws, random_seed=seed)


def summarise_prior(idata, spec, inputs) -> PriorCheck:
    """The quantile table of the model's quantities under the prior, plus derived spreads and outcomes."""
    from marrow import dims
    from marrow.models import module_for

    prior = idata.prior
    rows: list[dict] = []
    draws: dict[str, np.ndarray] = {}
    notes: list[str] = []
    secondary: set[str] = set()
    spreads = []
    for quantity in module_for(spec.model).quantities(spec):
        if quantity.var in prior:
            _expand(quantity, prior[quantity.var], rows, draws, secondary)
            da = prior[quantity.var]
            if (
                set(da.dims) - set(_SAMPLE_DIMS) == {dims.CENTER}
                and da.sizes[dims.CENTER] > 1
                and quantity.scale in ("rate", "probability")
                and "{center}" in quantity.label
            ):
                spreads.append((quantity, da))

    # How different centers may be, on the rate scale: the ratio of the extremes and the sd.
    for quantity, da in spreads:
        what = quantity.label.replace(", {center}", "").replace("{center}", "").strip()
        what = what[:1].lower() + what[1:]
        rates = da.transpose(*_SAMPLE_DIMS, dims.CENTER).to_numpy().reshape(-1, da.sizes[dims.CENTER])
        ratio = rates.max(axis=1) / np.clip(rates.min(axis=1), 1e-12, None)
        _rows_for(f"Highest / lowest center {what}", ratio, "ratio", rows, draws)
        _rows_for(f"Sd of center {what}s", rates.std(axis=1, ddof=1), "sd", rows, draws)

    predictive = getattr(idata, "prior_predictive", None)
    if spec.model == "response" and predictive is not None:
        n_total = float(inputs.arrays["cell_n"].sum())
        if "responders" in predictive:
            observed = predictive["responders"].sum(dims.CELL)
            _rows_for("Observed response proportion (prior predictive)", _flat(observed) / n_total, "rate", rows, draws)
        elif "response_counts" in predictive:
            counts = predictive["response_counts"].to_numpy()
            observed = counts[..., 1:].sum(axis=(-1, -2)).reshape(-1)
            _rows_for("Observed response proportion (prior predictive)", observed / n_total, "rate", rows, draws)

    if "response_rate" in prior:
        rate = _flat(prior["response_rate"])
        extreme = float(((rate < 0.02) | (rate > 0.98)).mean())
        if extreme > 0.1:
            notes.append(
                f"{extreme:.0%} of the prior puts the response rate below 2% or above 98%: "
                "probably wider than anyone believes"
            )
        notes.append(
            f"P(response rate > {spec.threshold:g}) under the prior = {float((rate > spec.threshold).mean()):.3f}"
        )
    table = pd.DataFrame(rows, columns=["quantity", "scale", *[f"{p:.0%}" for p in QUANTILES]])
    return PriorCheck(table, draws, notes, secondary)


def prior_check(data, spec, priors, draws: int = 1000, seed: int = 2017) -> PriorCheck:
    """Build the model on `data`'s design with `priors`, sample the prior predictive, summarise."""
    from marrow.models import module_for

    if draws < 10:
        from marrow.errors import UsageError

        raise UsageError(f"--draws must be at least 10 for a prior check, got {draws}")
    module = module_for(spec.model)
    inputs = module.inputs(data, spec)
    # The prior is the same in either form; only the non-centred one is a generative graph throughout
    # (a centred level's population mean is sampled from its conditional posterior: `effects.centred_with_mean`).
    inputs = replace(inputs, parameterisation=dict.fromkeys(inputs.parameterisation, NONCENTRED))
    model = module.build(inputs, spec, priors)
    idata = prior_predictive(model, draws, seed)
    return summarise_prior(idata, spec, inputs)


def plot_prior_check(check: PriorCheck, path, force: bool = False, title: str = "", max_panels: int = 12) -> None:
    """Histograms of the first `max_panels` quantities, written atomically (format from the suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from marrow.fits.io import atomic_path

    labels = [k for k in check.draws if k not in check.secondary] + [k for k in check.draws if k in check.secondary]
    labels = labels[:max_panels]
    scales = dict(zip(check.table["quantity"], check.table["scale"], strict=True))
    if not labels:
        from marrow.errors import UsageError

        raise UsageError("nothing to plot: the prior check produced no quantities")
    ncols = min(3, len(labels))
    nrows = int(np.ceil(len(labels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 2.8 * nrows), squeeze=False)
    # nrows * ncols axes, at least as many as labels: the spare ones are switched off below
    for ax, label in zip(axes.flat, labels, strict=False):
        values = check.draws[label]
        low, high = np.quantile(values, [0.005, 0.995])
        shown = values[(values >= low) & (values <= high)]
        if scales.get(label) == "ratio" and low > 0:  # ratios are read on a log axis
            ax.hist(shown, bins=np.geomspace(low, high, 41), color="#4c72b0", alpha=0.85)
            ax.set_xscale("log")
        else:
            ax.hist(shown, bins=40, color="#4c72b0", alpha=0.85)
        ax.set_title(label, fontsize=8)
        ax.tick_params(which="both", labelsize=7)
        ax.set_yticks([])
    for ax in list(axes.flat)[len(labels) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    suffix = str(path).rsplit(".", 1)[-1].lower() if "." in str(path) else "png"
    with atomic_path(path, force) as tmp:
        fig.savefig(tmp, format=suffix if suffix in ("png", "pdf", "svg") else "png", dpi=150)
    plt.close(fig)
