"""Provenance of a fit: flat string attrs (nested values as JSON), like cmdstanpy's run config."""

from __future__ import annotations

import json
import platform
import shlex
import sys
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

PREFIX = "marrow_"
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
    sources = [
        {"role": s.role, "path": s.path, "sha256": s.sha256, "rows": s.rows} for s in data.sources
    ]
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
        "created_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command_line": shlex.join(["marrow", *sys.argv[1:]]) if sys.argv else "",
    }
    attrs.update({k: (v if isinstance(v, str) else json.dumps(v)) for k, v in (extra or {}).items()})
    return attrs


def read_provenance(attrs: dict[str, Any]) -> dict[str, str]:
    """The marrow attrs of a group, without the prefix."""
    return {k[len(PREFIX):]: str(v) for k, v in attrs.items() if k.startswith(PREFIX)}
