"""The non-centred group effect every hierarchical model uses: loc + sd * z, z ~ Normal(0, 1) per
group, so that NUTS samples z and sd without the funnel of the centred form."""

from __future__ import annotations

from typing import Any


def noncentred(z_name: str, sd: Any, dims: str | None = None, loc: Any = None, name: str | None = None) -> Any:
    """`loc + sd * z` (`sd * z` without `loc`), z = `z_name` ~ Normal(0, 1) over `dims` (a scalar
    without). `sd` (and `loc`) are created by the caller first, so the model's variables keep their
    order. Stored as the Deterministic `name` (with `dims`) when given; returns the effect."""
    import pymc as pm

    z = pm.Normal(z_name, 0.0, 1.0, dims=dims)
    effect = sd * z if loc is None else loc + sd * z
    return effect if name is None else pm.Deterministic(name, effect, dims=dims)
