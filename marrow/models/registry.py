"""The registry's contents: every model family marrow offers, in the order of the report's sections.

Adding a model family = its implementation module, its descriptor module, and one line here.
Imported by `marrow/__init__.py`, so the registry is filled before any `ModelSpec` is made."""

from __future__ import annotations

from marrow.descriptor import REGISTRY
from marrow.models.descriptors import recovery, response, safety, survival

for _descriptor in (
    response.DESCRIPTOR,
    recovery.DESCRIPTOR,
    survival.DESCRIPTOR,
    safety.DESCRIPTOR,
):
    REGISTRY.register(_descriptor)

__all__ = ["REGISTRY"]
