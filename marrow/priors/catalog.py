"""Every parameter a marrow model takes a prior for: its key, support and meaning.

The parameters are their model's (`ModelDescriptor.priors`, marrow/models/descriptors/); this module
gathers the registered models' into one catalog. A prior set must give each of these; a key not listed
here is rejected as unknown.
"""

from __future__ import annotations

from marrow.descriptor import REGISTRY


def parameters() -> dict[str, tuple[str, str]]:
    """Prior key -> (support, meaning), over every registered model, in registry order."""
    return {p.key: (p.support, p.meaning) for d in REGISTRY for p in d.priors}
