"""Bundled SYNTHETIC trial data reconstructed from published aggregates (not patient records)."""

from pathlib import Path

PATIENTS_CSV: Path = Path(__file__).parent / "patients.csv"
RECOVERY_CSV: Path = Path(__file__).parent / "recovery.csv"
# The same trial as CDISC ADaM datasets (SAS transport v5), written by the same script.
ADAM_DIR: Path = Path(__file__).parent
ADSL_XPT: Path = ADAM_DIR / "adsl.xpt"
ADRS_XPT: Path = ADAM_DIR / "adrs.xpt"
ADTTE_XPT: Path = ADAM_DIR / "adtte.xpt"

__all__ = ["ADAM_DIR", "ADRS_XPT", "ADSL_XPT", "ADTTE_XPT", "PATIENTS_CSV", "RECOVERY_CSV"]
