"""Bundled SYNTHETIC trial data reconstructed from published aggregates (not patient records)."""

from pathlib import Path

PATIENTS_CSV: Path = Path(__file__).parent / "patients.csv"
RECOVERY_CSV: Path = Path(__file__).parent / "recovery.csv"

__all__ = ["PATIENTS_CSV", "RECOVERY_CSV"]
