"""Provenance of a fit: flat string attrs (nested values as JSON), like cmdstanpy's run config."""

from __future__ import annotations

import json
import platform
import shlex
import sys
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from marrow.errors import MarrowError, UsageError

PREFIX = "marrow_"
VARIABLES_KEY = "variables"  # {group: [variable, ...]} as saved; `Fit.load` checks the file still has them
REQUIRED = ("spec", "sampler", "priors", "data_sources")
JSON_VALUED = (
    "spec",
    "sampler",
    "priors",
    "data_sources",
    "covariates",
    "data_sha256",
    "data_rows",
    "synthetic_data",
    "versions",
    "timings",
    VARIABLES_KEY,
)
TRACKED_PACKAGES = ("marrow", "pymc", "pytensor", "arviz", "numpy", "pandas", "xarray", "scipy", "nutpie", "numpyro")


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages a fit depends on (absent ones omitted)."""
    out = {"python": platform.python_version()}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def build_provenance(data, spec, priors, settings, extra: dict[str, Any] | None = None) -> dict[str, str]:
    """Everything needed to say what a fit is and to reproduce it, as flat string attrs (unprefixed;
    `Fit.save` adds PREFIX when writing them to the file)."""
    sources = [{"role": s.role, "path": s.path, "sha256": s.sha256, "rows": s.rows} for s in data.sources]
    attrs = {
        "model": spec.model,
        "model_label": spec.label,
        "spec": spec.to_json(),
        "covariates": json.dumps(list(spec.covariates)),
        "priors": priors.to_json(),
        "prior_set": priors.name,
        "data_sources": json.dumps(sources),
        "data_sha256": json.dumps({s["role"]: s["sha256"] for s in sources}),
        "data_rows": json.dumps({s["role"]: s["rows"] for s in sources}),
        "synthetic_data": json.dumps(bool(data.synthetic)),
        "sampler": settings.to_json(),
        "seed": str(settings.seed),
        "versions": json.dumps(package_versions()),
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command_line": shlex.join(["marrow", *sys.argv[1:]]) if sys.argv else "",
    }
    attrs.update({k: (v if isinstance(v, str) else json.dumps(v)) for k, v in (extra or {}).items()})
    return attrs


def read_provenance(attrs: dict[str, Any]) -> dict[str, str]:
    """The marrow attrs of a group, without the prefix."""
    return {k[len(PREFIX) :]: str(v) for k, v in attrs.items() if k.startswith(PREFIX)}


def saved_variables(idata) -> dict[str, list[str]]:
    """The variables of every group of `idata`, as recorded in a saved fit."""
    return {group: sorted(str(name) for name in getattr(idata, group).data_vars) for group in idata.groups()}


def _json(provenance: dict[str, str], key: str) -> Any:
    try:
        return json.loads(provenance[key])
    except (TypeError, ValueError) as exc:
        raise UsageError(f"attribute '{PREFIX}{key}' is not valid JSON ({exc})") from None


def check_provenance(provenance: dict[str, str], idata) -> None:
    """Raise `UsageError` saying what is wrong when a fit's provenance or variables do not hold together.

    Checks that the required attrs are there and parse (model spec, sampler settings, prior set,
    data sources), that every JSON attr is JSON, and that each group still holds the variables the
    fit was saved with (fits saved before marrow recorded them: a posterior with chain and draw)."""
    from marrow.priors import PriorSet
    from marrow.spec import ModelSpec, SamplerSettings

    missing = [PREFIX + key for key in REQUIRED if key not in provenance]
    if missing:
        raise UsageError(f"attribute(s) {', '.join(missing)} missing")
    values = {key: _json(provenance, key) for key in JSON_VALUED if key in provenance}
    parsers = (
        ("spec", ModelSpec.from_json),
        ("sampler", SamplerSettings.from_json),
        ("priors", lambda text: PriorSet.from_dict(json.loads(text))),
    )
    for key, parse in parsers:
        try:
            parse(provenance[key])
        except MarrowError as exc:
            raise UsageError(f"attribute '{PREFIX}{key}': {exc}") from None
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise UsageError(
                f"attribute '{PREFIX}{key}' does not describe a {key} ({type(exc).__name__}: {exc})"
            ) from None
    sources = values["data_sources"]
    if not isinstance(sources, list) or not all(
        isinstance(s, dict) and {"role", "path", "sha256", "rows"} <= set(s) for s in sources
    ):
        raise UsageError(f"attribute '{PREFIX}data_sources' must be a list of {{role, path, sha256, rows}} records")
    posterior = idata.posterior
    if not {"chain", "draw"} <= set(posterior.dims) or not posterior.data_vars:
        raise UsageError("the posterior group has no draws (no chain and draw dimensions or no variables)")
    recorded = values.get(VARIABLES_KEY)
    if recorded is None:
        return
    if not isinstance(recorded, dict):
        raise UsageError(f"attribute '{PREFIX}{VARIABLES_KEY}' must map each group to its variables")
    groups = set(idata.groups())
    lost = [f"group '{group}'" for group in recorded if group not in groups]
    lost += [
        f"'{group}/{name}'"
        for group, names in recorded.items()
        if group in groups
        for name in names
        if name not in getattr(idata, group).data_vars
    ]
    if lost:
        raise UsageError(f"{', '.join(lost)} missing, though marrow saved the fit with them (was the file edited?)")
