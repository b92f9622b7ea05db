"""`ModelInputs`: the numeric arrays and coords one model is built from, and swapped into it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: `marrow.models` is imported light, for its registry (marrow/__init__.py)
    import numpy as np


@dataclass(frozen=True)
class Quantity:
    """A reported posterior quantity: variable name in the fit and its readable label."""

    var: str
    label: str
    scale: str = "rate"  # rate, ratio, days, weeks, months (a time in the fit's unit), log-odds, sd, probability, count


@dataclass(frozen=True)
class ModelInputs:
    """Arrays held in `pm.Data` containers (`arrays`), coords for every dim, and extras for post-processing.

    A model built from one `ModelInputs` accepts another of the same structure through
    `marrow.models.swap_data`, without being rebuilt (simulation studies refit this way).
    `dropped` lists the hierarchy levels left out because the data cannot estimate them;
    `parameterisation` says how each kept level is sampled, resolved from the data and the spec's
    option (`marrow.models.effects.resolve`: level -> 'centred' or 'noncentred'; a level not listed is
    non-centred). It changes the graph, so it is part of the compiled model's key.
    """

    arrays: dict[str, np.ndarray]
    coords: dict[str, list[str]]
    extra: dict[str, Any] = field(default_factory=dict)
    dropped: tuple = ()  # `marrow.models.levels.DroppedLevel`s: hierarchy levels the data cannot estimate
    parameterisation: dict[str, str] = field(default_factory=dict)
