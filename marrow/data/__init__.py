"""Loading and validating trial data into an immutable `TrialData`."""

from marrow.data.load import Needs, load_frames, load_trial
from marrow.data.trial import SourceFile, TrialData

__all__ = ["Needs", "SourceFile", "TrialData", "load_frames", "load_trial"]
