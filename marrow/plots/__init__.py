"""Publication figures from saved fits: pure functions `Fit (+ data) -> matplotlib Figure`.

`render(kind, fit, ...)` builds one figure inside the deterministic style context;
`marrow.plots.style.save_figure` writes it (format from the suffix, no timestamps, atomically).
One module per plot family:

| kind | module | needs |
|---|---|---|
| ppc | `predictive` | a response fit (posterior_predictive + observed_data) |
| centers | `centers` | a response fit (center_rate, response_rate, new_center_rate) |
| recovery | `time_to_event` | a recovery fit (cumulative_incidence) and its data (KM) |
| survival | `time_to_event` | a survival fit (survival_curve) and its data (KM) |
| effects | `effects` | a fit with odds_ratio and/or time_ratio, and its data (frequentist fits) |
| prior-posterior | `priors` | any fit (its PriorSet is in the provenance) |
| trace, rank, energy, loo-pit | `sampler` | any fit (loo-pit: matching predictive and log-likelihood) |
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from marrow.errors import UsageError
from marrow.plots.style import context, format_for, freeze_layout, parse_width, save_figure

KINDS = ("ppc", "centers", "recovery", "survival", "effects", "prior-posterior", "trace", "rank", "energy", "loo-pit")
NEEDS_DATA = ("recovery", "survival", "effects")


_FUNCTIONS = {
    "ppc": ("predictive", "plot_ppc"),
    "centers": ("centers", "plot_centers"),
    "recovery": ("time_to_event", "plot_recovery"),
    "survival": ("time_to_event", "plot_survival"),
    "effects": ("effects", "plot_effects"),
    "prior-posterior": ("priors", "plot_prior_posterior"),
    "trace": ("sampler", "plot_trace"),
    "rank": ("sampler", "plot_rank"),
    "energy": ("sampler", "plot_energy"),
    "loo-pit": ("sampler", "plot_loo_pit"),
}


def _function(kind: str) -> Callable:
    import importlib

    module, name = _FUNCTIONS[kind]
    return getattr(importlib.import_module(f"marrow.plots.{module}"), name)


def render(kind: str, fit, data=None, width: str | float | None = "double", style: str | Path | None = None):
    """Build the figure of `kind` for `fit`; `data` (a TrialData) is loaded from the fit's provenance if needed."""
    if kind not in KINDS:
        raise UsageError(f"unknown plot kind '{kind}'; choose one of {', '.join(KINDS)}")
    inches = parse_width(width)
    if kind in NEEDS_DATA and data is None:
        data = data_for_fit(fit)
    function = _function(kind)
    with context(style):
        fig = function(fit, data, width=inches) if kind in NEEDS_DATA else function(fit, width=inches)
        return freeze_layout(fig)


# What each endpoint kind draws from: it is drawn only when the fit has one of these posterior variables
# (e.g. no 'centers' when a single center's level was left out); None = always.
_REQUIRES: dict[str, tuple[str, ...] | None] = {
    "ppc": None,
    "centers": ("new_center_rate",),
    "recovery": ("cumulative_incidence",),
    "survival": ("survival_curve",),
    "effects": ("odds_ratio", "time_ratio"),
}


def kinds_for(fit) -> list[str]:
    """The kinds that make sense for this fit (what `marrow report` draws): its model's endpoint kinds
    (its descriptor's `plots`) whose variables the fit has, then the sampler's."""
    from marrow.descriptor import REGISTRY

    posterior = fit.idata.posterior
    out = []
    for kind in REGISTRY.get(fit.spec.model).plots:
        needed = _REQUIRES.get(kind)
        if needed is None or any(v in posterior for v in needed):
            out.append(kind)
    out += ["prior-posterior", "trace", "rank", "energy"]
    from marrow.plots.sampler import loo_pit_variables

    if loo_pit_variables(fit.idata):
        out.append("loo-pit")
    return out


def data_for_fit(fit, patients: Path | str | None = None, recovery: Path | str | None = None, adam=None):
    """Reload the data a fit was made from (paths and SHA-256 in its provenance).

    Explicit paths override the provenance. A file whose hash differs from the one recorded is
    refused: the figure would show data the fit never saw. ADaM datasets (`adam`, or those the fit
    recorded) are checked against the recorded hashes and read the same way.
    """
    from marrow.data import load_trial
    from marrow.data.adam import adam_for_fits, load_adam
    from marrow.data.load import file_sha256

    adam = adam_for_fits([fit], adam, tables_given=patients is not None or recovery is not None)
    if adam is not None:
        return load_adam(adam, fit.spec.needs())

    sources = {s["role"]: s for s in fit.data_sources}
    chosen = {"patients": patients, "recovery": recovery}
    paths = {}
    for role, source in sources.items():
        path = Path(chosen.get(role) or source["path"])
        if not path.exists():
            raise UsageError(
                f"the {role} file this fit was made from ({path}) is not there; pass it with "
                f"--{'data' if role == 'patients' else 'recovery'}"
            )
        if chosen.get(role) is None and file_sha256(path) != source["sha256"]:
            raise UsageError(
                f"{path} changed since the fit was made (SHA-256 differs); refit, or pass the "
                f"original file with --{'data' if role == 'patients' else 'recovery'}"
            )
        paths[role] = path
    return load_trial(paths.get("patients"), paths.get("recovery"), fit.spec.needs())


__all__ = ["KINDS", "context", "data_for_fit", "format_for", "kinds_for", "render", "save_figure"]
