"""Priors as named, validated, swappable sets (see docs/priors.md)."""

from marrow.priors.prior import DISTRIBUTIONS, Prior
from marrow.priors.sets import DEFAULT_SET, PriorSet, available_sets, load_prior_set

__all__ = ["DEFAULT_SET", "DISTRIBUTIONS", "Prior", "PriorSet", "available_sets", "load_prior_set"]
