"""marrow: Bayesian models for multicenter phase II trials."""

__version__ = "0.1.0"

import warnings as _warnings

# ArviZ 0.23 announces its 1.0 refactor on import; it is noise for marrow's users.
_warnings.filterwarnings("ignore", message="ArviZ is undergoing a major refactor")
