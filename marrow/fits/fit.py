"""`Fit`: an inert wrapper of an ArviZ InferenceData plus provenance; saves atomically, loads without PyMC."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from marrow.errors import MarrowError, UsageError
from marrow.fits.io import atomic_path
from marrow.fits.provenance import (
    PREFIX,
    VARIABLES_KEY,
    check_provenance,
    read_provenance,
    saved_variables,
)
from marrow.spec import ModelSpec, SamplerSettings


@dataclass
class Fit:
    """A sampled model: `idata` holds the draws, `provenance` what produced them."""

    idata: Any  # arviz.InferenceData
    provenance: dict[str, str]

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec.from_json(self.provenance["spec"])

    @property
    def settings(self) -> SamplerSettings:
        return SamplerSettings.from_json(self.provenance["sampler"])

    @property
    def priors(self):
        from marrow.priors import PriorSet

        return PriorSet.from_dict(json.loads(self.provenance["priors"]))

    @property
    def data_sources(self) -> list[dict[str, Any]]:
        return json.loads(self.provenance["data_sources"])

    def save(self, path: Path | str, force: bool = False) -> Path:
        """Write NetCDF atomically; refuses to overwrite without `force`.

        Also records which variables each group holds, so `load` can tell a file edited since."""
        path = Path(path)
        self.provenance[VARIABLES_KEY] = json.dumps(saved_variables(self.idata), sort_keys=True)
        self.idata.posterior.attrs.update({PREFIX + k: v for k, v in self.provenance.items()})
        # A NetCDF file of draws is about as large as the arrays (random floats do not compress).
        size = int(1.05 * sum(getattr(self.idata, group).nbytes for group in self.idata.groups())) + 2**16
        with atomic_path(path, force, size_hint=size) as tmp:
            self.idata.to_netcdf(str(tmp))
        return path

    @classmethod
    def load(cls, path: Path | str) -> Fit:
        """Read a fit saved by marrow; a `UsageError` (exit 2) naming the file and what is wrong for a
        missing, foreign, truncated or edited file."""
        import arviz as az

        path = Path(path)
        if not path.exists():
            raise UsageError(f"fit file {path} not found")
        if path.is_dir():
            raise UsageError(f"fit file {path} is a folder, not a NetCDF file")
        try:  # HDF5 checks the file's recorded length on opening, so a truncated file fails here
            idata = az.from_netcdf(str(path))
        except Exception as exc:  # netCDF/HDF5 raise assorted errors for foreign files
            raise UsageError(f"{path} is not a readable fit file ({type(exc).__name__}: {exc})") from None
        if "posterior" not in idata.groups():
            raise UsageError(f"{path} has no posterior group; is it a marrow fit?")
        provenance = read_provenance(dict(idata.posterior.attrs))
        if "spec" not in provenance:
            raise UsageError(f"{path} was not written by marrow (no marrow provenance attrs)")
        try:
            check_provenance(provenance, idata)
        except MarrowError as exc:
            raise UsageError(f"{path} is a damaged marrow fit: {exc}") from None
        return cls(idata, provenance)
