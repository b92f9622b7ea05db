"""Fits: sampling, provenance and atomic NetCDF storage."""

from marrow.fits.fit import Fit

__all__ = ["Fit"]
