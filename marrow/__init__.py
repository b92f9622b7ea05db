"""marrow: Bayesian models for multicenter phase II trials."""

import os as _os
import warnings as _warnings

# PyTensor probes for a BLAS by compiling test programs in every new process (~1.1 s per `marrow fit`,
# docs/performance.md); the pip wheels have none it can link, and marrow's models only do small
# matrix-vector products, so skip the probe unless the user configured BLAS themselves.
_flags = _os.environ.get("PYTENSOR_FLAGS", "")
if "blas__ldflags" not in _flags and "blas.ldflags" not in _flags:
    _flags = ",".join(x for x in (_flags, "blas__ldflags=") if x)
# Numba's fast-math lets LLVM reassociate sums across the functions it inlines. PyTensor compiles a
# model's functions fresh in one process and loads them from its numba cache in the next, inlined
# differently, so with fast-math the same seed gave other draws on a first run than on later runs (and on
# a fresh Dask worker than in this process). Without it both are IEEE-exact and equal; sampling is no
# slower on marrow's models (docs/performance.md).
if "numba__fastmath" not in _flags and "numba.fastmath" not in _flags:
    _flags = ",".join(x for x in (_flags, "numba__fastmath=False") if x)
_os.environ["PYTENSOR_FLAGS"] = _flags

# ArviZ 0.23 announces its 1.0 refactor on import (once a day); it is noise for marrow's users. Its
# text starts with a newline and `message` must match from the start, hence the leading \s*.
_warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning)

# The model registry (marrow.descriptor.REGISTRY) is filled here, before anything can make a ModelSpec:
# `marrow.spec` (core) reads it but may not import `marrow.models`, the layer that declares its values.
import marrow.models.registry  # noqa: E402, F401

# The Python API (docs/api.md); light to import: pandas, PyMC and ArviZ load on first use.
from marrow.api import Refitter, diagnose, fit, from_frames, load_fit, load_trial, summarize  # noqa: E402
from marrow.version import __version__  # noqa: E402

__all__ = ["Refitter", "__version__", "diagnose", "fit", "from_frames", "load_fit", "load_trial", "summarize"]
