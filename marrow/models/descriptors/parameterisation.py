"""The `parameterisation` option every hierarchical model family declares (one source for its help)."""

from __future__ import annotations

from marrow.descriptor import Option
from marrow.models.effects import CENTRED_FROM, PARAMETERISATIONS

OPTION = Option(
    "parameterisation",
    "auto",
    "How group effects are sampled: auto = per level from the data (centred where every group has at "
    f"least {CENTRED_FROM} events or minority outcomes, else non-centred; docs/models.md), or forced for "
    "every level.",
    choices=PARAMETERISATIONS,
)
