"""The benchmark data generator writes trials that marrow's loader accepts (no timing here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from marrow.data import load_trial
from marrow.data.load import Needs

GENERATE = Path(__file__).resolve().parents[1] / "benchmarks" / "generate.py"


@pytest.fixture(scope="module")
def generate():
    spec = importlib.util.spec_from_file_location("marrow_bench_generate", GENERATE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_trial_loads(generate, tmp_path: Path) -> None:
    patients_path, recovery_path = generate.write(tmp_path, n_patients=120, n_centers=6, n_lineages=4,
                                                  n_covariates=3, seed=3)
    covariates = tuple(generate.covariate_names(3))
    assert covariates == ("prior_atg", "active_infection", "x3")
    needs = Needs(ordinal=True, followup=True, died=True, adverse_event=True, recovery=True, covariates=covariates)
    trial = load_trial(patients_path, recovery_path, needs)
    assert len(trial.patients) == 120
    assert len(trial.centers) == 6
    assert len(trial.recovery) == 120 * 4
    assert trial.lineages == ("leukocytic", "erythrocytic", "megakaryocytic", "lineage4")
    assert set(trial.patients["response"]) <= {"CR", "PR", "NR"}
    # only responders recover, never after follow-up
    rec = trial.recovery.merge(trial.patients[["patient_id", "response", "followup_days"]], on="patient_id")
    assert not ((rec["response"] == "NR") & (rec["recovered"] == 1)).any()
    assert (rec["day"] <= rec["followup_days"]).all()


def test_generator_is_seeded(generate) -> None:
    a = generate.generate(n_patients=50, n_centers=5, seed=11)
    b = generate.generate(n_patients=50, n_centers=5, seed=11)
    assert a[0].equals(b[0]) and a[1].equals(b[1])
    assert generate.center_sizes(50, 5, np.random.default_rng(0)).sum() == 50
