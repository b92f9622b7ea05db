"""marrow: Bayesian models for multicenter phase II trials."""

__version__ = "0.1.0"

import os as _os
import warnings as _warnings

# PyTensor probes for a BLAS by compiling test programs in every new process (~1.1 s per `marrow fit`,
# docs/performance.md); the pip wheels have none it can link, and marrow's models only do small
# matrix-vector products, so skip the probe unless the user configured BLAS themselves.
_flags = _os.environ.get("PYTENSOR_FLAGS", "")
if "blas__ldflags" not in _flags and "blas.ldflags" not in _flags:
    _os.environ["PYTENSOR_FLAGS"] = ",".join(x for x in (_flags, "blas__ldflags=") if x)

# ArviZ 0.23 announces its 1.0 refactor on import (once a day); it is noise for marrow's users. Its
# text starts with a newline and `message` must match from the start, hence the leading \s*.
_warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning)

# The Python API (docs/api.md); light to import: pandas, PyMC and ArviZ load on first use.
from marrow.api import Refitter, diagnose, fit, from_frames, load_fit, load_trial, summarize  # noqa: E402

__all__ = ["Refitter", "__version__", "diagnose", "fit", "from_frames", "load_fit", "load_trial", "summarize"]
