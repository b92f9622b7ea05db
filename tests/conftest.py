"""Shared fixtures: CLI runner, small simulated trials, the small stored fits, one shared fit per session.

Under `make test` (pytest-xdist, `--dist loadfile`) a session fixture lives once per worker process,
so a fit shared by two files is made once when both files run in the same worker."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from marrow import datasets

QUICK = {"chains": 2, "draws": 500, "tune": 500, "seed": 11, "cores": 2}
ROOT = Path(__file__).resolve().parents[1]
STORED_FITS = Path(__file__).resolve().parent / "data" / "fits"
# The ordinal response fit of the bundled trial through the CLI (`ordinal_cli_fit`).
ORDINAL_FIT_ARGS = ("--outcome", "ordinal", "--covariates", "prior_atg,active_infection")
ORDINAL_SAMPLING = ("--chains", "4", "--draws", "500", "--tune", "500", "--quiet")


@contextmanager
def _refuse_sampling(item: pytest.Item) -> Iterator[None]:
    """Outside the `sampling` tier, sampling in this process fails the test, naming the marker: through
    `marrow.fits.run.sample_model` always (every fit and refit), and through `pymc.sample` and
    `nutpie.sample` when those are already imported. (A `marrow fit` run in a subprocess is not seen.)"""
    if item.get_closest_marker("sampling") is not None:
        yield
        return
    import marrow.fits.run

    def refuse(*args, **kwargs):
        raise AssertionError(
            f"{item.nodeid} samples (or a fixture it uses does): mark it @pytest.mark.sampling, or use a "
            "stored fit (CONTRIBUTING.md, test tiers)"
        )

    targets = [(marrow.fits.run, "sample_model")]
    targets += [(sys.modules[name], "sample") for name in ("pymc", "nutpie") if name in sys.modules]
    with pytest.MonkeyPatch.context() as patch:
        for module, name in targets:
            patch.setattr(module, name, refuse)  # raises if marrow renamed it: update this guard
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item: pytest.Item):
    with _refuse_sampling(item):  # fixtures too: a module fixture that samples is set up here
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    with _refuse_sampling(item):
        yield


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


def load_stored_fit(name: str):
    """A stored fit of tests/data/fits (made by make_fits.py there), its bundled-data paths resolved
    against this checkout so figures can reload the data through the fit's provenance."""
    from marrow.fits import Fit

    fit = Fit.load(STORED_FITS / f"{name}.nc")
    sources = json.loads(fit.provenance["data_sources"])
    for source in sources:
        source["path"] = str(ROOT / source["path"])
    fit.provenance["data_sources"] = json.dumps(sources)
    return fit


@pytest.fixture(scope="session")
def stored_fit() -> Callable[[str], object]:
    """`stored_fit(name)`: the small stored fit `name` (response, ordinal, recovery, survival, safety),
    loaded once per session. Real draws, too few to prove anything about a posterior; no sampling."""
    cache: dict[str, object] = {}

    def get(name: str):
        if name not in cache:
            cache[name] = load_stored_fit(name)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def ordinal_cli_fit(tmp_path_factory) -> Path:
    """One ordinal response fit of the bundled trial through the CLI, in a subprocess as a user runs it
    (4 chains x 500 draws, default seed), made once per session (test_cli_response.py). Read-only:
    tests that write copy it first."""
    out = tmp_path_factory.mktemp("cli") / "ordinal.nc"
    command = [sys.executable, "-m", "marrow", "fit", "response", *ORDINAL_FIT_ARGS, *ORDINAL_SAMPLING, "--out", out]
    result = subprocess.run([str(a) for a in command], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    assert "SYNTHETIC" in result.stderr  # says so when the bundled trial is used
    return out
