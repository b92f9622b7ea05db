"""InferenceData helpers that the models (their `augment`) and `marrow.fits` share: group names, the
chain/draw coords, flattened draws, replacing groups, and `Augmented`, what a model's `augment`
computed from the posterior draws (groups, posterior variables and notes for the provenance).

It lives beside the models, below `marrow.fits`, so that both import it and no model imports a fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

# The InferenceData groups marrow writes or reads.
POSTERIOR = "posterior"
POSTERIOR_PREDICTIVE = "posterior_predictive"
OBSERVED_DATA = "observed_data"
CONSTANT_DATA = "constant_data"
LOG_LIKELIHOOD = "log_likelihood"
LOG_PRIOR = "log_prior"
SAMPLE_STATS = "sample_stats"

CHAIN_DRAW = ("chain", "draw")  # the leading dims of every per-draw variable

# Pointwise log-likelihood values kept at most (8 bytes each): 40M is 320 MB in memory and on disk.
MAX_POINTWISE_VALUES = 40_000_000
# Provenance note (flat string attr) saying why a fit has no pointwise log-likelihood.
LOG_LIKELIHOOD_OMITTED = "log_likelihood_omitted"


def omitted_reason(size: int, limit: int = MAX_POINTWISE_VALUES) -> str:
    """Why a fit has no pointwise log-likelihood (shown by `marrow diagnose`)."""
    return (
        f"{size:,} pointwise values exceed the limit of {limit:,}; PSIS-LOO not computed "
        "(fewer --draws or a subsample of the data brings it back)"
    )


def chain_draw_coords(posterior) -> dict[str, np.ndarray]:
    """The chain and draw coords of a posterior group, for datasets built from its draws."""
    return {"chain": posterior["chain"].to_numpy(), "draw": posterior["draw"].to_numpy()}


def flat_draws(posterior, name: str, draws: slice = slice(None)) -> np.ndarray:
    """(sample, ...) array of a posterior variable: (chain, draw) flattened, samples `draws` of it."""
    values = posterior[name].to_numpy()
    return values.reshape((-1,) + values.shape[2:])[draws]


def replace_groups(idata, **groups) -> None:
    """Add groups to an InferenceData, replacing any of the same name (e.g. PyMC's observed_data)."""
    for name in groups:
        if name in idata.groups():
            delattr(idata, name)
    idata.add_groups(**groups)


@dataclass(frozen=True)
class Augmented:
    """What a model's `augment` computed from the posterior draws, for `marrow.fits.run` to add.

    `groups`: datasets by group name (posterior_predictive, observed_data, log_likelihood), each
    replacing a group of that name; `posterior`: derived variables added to the posterior, as
    (dims, values) or DataArrays; `notes`: provenance notes, e.g. `LOG_LIKELIHOOD_OMITTED` -> why.
    """

    groups: dict[str, Any]
    posterior: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)

    def apply(self, idata) -> None:
        """Add the groups (replacing those of the same name) and the posterior variables to `idata`."""
        replace_groups(idata, **self.groups)
        for name, value in self.posterior.items():
            idata.posterior[name] = value
