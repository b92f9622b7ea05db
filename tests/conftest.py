"""Shared fixtures: CLI runner, small simulated trials, one shared fit per model per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from marrow import datasets

QUICK = {"chains": 2, "draws": 500, "tune": 500, "seed": 11, "cores": 2}


@pytest.fixture
def marrow_cli(capsys):
    """Run the CLI in-process: returns (exit code, stdout, stderr)."""
    from marrow.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def patients_frame() -> pd.DataFrame:
    """The bundled synthetic patients table, as strings (as a user's CSV would read)."""
    return pd.read_csv(datasets.PATIENTS_CSV, dtype=str)


@pytest.fixture
def recovery_frame() -> pd.DataFrame:
    return pd.read_csv(datasets.RECOVERY_CSV, dtype=str)


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_csv(path, index=False)
    return path


def simulate_response_trial(
    n_centers: int = 20,
    per_center: int = 40,
    intercept: float = -0.8,
    center_sd: float = 0.5,
    log_or: tuple[float, ...] = (1.0, -1.0),
    seed: int = 1,
) -> tuple[pd.DataFrame, dict]:
    """A trial with known truth: binary covariates, center effects, ordinal response with a CR gap of 1.5."""
    rng = np.random.default_rng(seed)
    centers = np.repeat([f"S{c:02d}" for c in range(n_centers)], per_center)
    effects = rng.normal(0, center_sd, n_centers)
    x = rng.binomial(1, 0.45, size=(len(centers), len(log_or)))
    eta = intercept + np.repeat(effects, per_center) + x @ np.array(log_or)
    p_resp = 1 / (1 + np.exp(-eta))
    p_cr = 1 / (1 + np.exp(-(eta - 1.5)))
    u = rng.uniform(size=len(centers))
    response = np.where(u < p_cr, "CR", np.where(u < p_resp, "PR", "NR"))
    frame = pd.DataFrame(
        {"patient_id": [f"X{i:04d}" for i in range(len(centers))], "center": centers, "response": response}
    )
    for j in range(len(log_or)):
        frame[f"x{j + 1}"] = x[:, j]
    truth = {"intercept": intercept, "center_sd": center_sd, "odds_ratio": np.exp(log_or), "rate": p_resp.mean()}
    return frame, truth
