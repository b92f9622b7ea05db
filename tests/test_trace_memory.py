"""Memory at registry size: nutpie's trace on disk for a large fit (`marrow.fits.run.trace_store`) gives
the fit the in-memory trace gives (same draws and sampler statistics; no warm-up, per-iteration
unconstrained point or gradient kept), leaves no folder behind; R-hat and ESS on blocks of elements
equal them computed at once."""

from __future__ import annotations

import tempfile
from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr
from test_recovery_scale import posterior_at_random_points

from marrow import convergence
from marrow.data import load_trial
from marrow.errors import UsageError
from marrow.fits import run
from marrow.models import build_model, model_inputs, recovery
from marrow.priors import load_prior_set
from marrow.spec import ModelSpec, SamplerSettings

pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS:UserWarning")


def test_only_a_large_trace_goes_to_disk(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    defaults = SamplerSettings()  # 4 chains x (1000 + 1000)
    # the 20,000-patient frailty fit (a patient effect each, plus the lineage and center levels) goes to disk,
    # a model of a few hundred parameters (200 center effects) stays in memory
    assert run.trace_values(20_000 + 220, defaults) > run.MAX_MEMORY_TRACE_VALUES
    assert run.trace_values(220, defaults) <= run.MAX_MEMORY_TRACE_VALUES
    with run.trace_store(100, limit=100) as store:
        assert store is None and not list(tmp_path.iterdir())
    with run.trace_store(101, limit=100) as store:
        assert store is not None
        (folder,) = tmp_path.iterdir()
        assert folder.name.startswith("marrow-trace-")
    assert not list(tmp_path.iterdir())  # removed on leaving


def test_no_room_for_a_disk_trace_is_a_clear_error_before_sampling(monkeypatch, tmp_path):
    from marrow.fits import io

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(io.shutil, "disk_usage", lambda path: SimpleNamespace(free=5_000_000))
    with pytest.raises(UsageError, match="needs about 8.0 MB and only 5.0 MB"), run.trace_store(1_000_000, limit=0):
        pytest.fail("sampled without room for the trace")
    assert not list(tmp_path.iterdir())


@pytest.mark.sampling
def test_disk_trace_gives_the_in_memory_fit(monkeypatch, tmp_path):
    spec = ModelSpec("recovery", frailty=True)  # a patient effect per patient
    data = load_trial(needs=spec.needs())
    settings = SamplerSettings(chains=2, draws=60, tune=60, seed=3, sampler="nutpie", cores=2)
    memory = run.fit_model(data, spec, load_prior_set(), settings, postprocess=False)

    monkeypatch.setattr(run, "MAX_MEMORY_TRACE_VALUES", 0)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    read = run.read_disk_trace
    on_disk = []

    def spy(idata):
        on_disk.append((sorted(p.name for p in tmp_path.iterdir()), set(idata.groups())))
        return read(idata)

    monkeypatch.setattr(run, "read_disk_trace", spy)
    disk = run.fit_model(data, spec, load_prior_set(), settings, postprocess=False)

    ((folders, groups),) = on_disk  # sampled to disk, warm-up and all, then read back once
    assert len(folders) == 1 and folders[0].startswith("marrow-trace-")
    assert {"warmup_posterior", "warmup_sample_stats"} <= groups
    assert not list(tmp_path.iterdir())
    assert disk.idata.groups() == memory.idata.groups()
    assert "frailty_z" in disk.idata.posterior  # the patient effects stay in the fit
    for group in ("posterior", "sample_stats"):
        xr.testing.assert_identical(getattr(disk.idata, group).drop_attrs(), getattr(memory.idata, group).drop_attrs())
    assert not set(run.DISK_ONLY_STATS) & set(disk.idata.sample_stats.variables)


@pytest.mark.parametrize("statistic", [convergence.rhat, convergence.ess_bulk, convergence.ess_tail])
def test_convergence_on_blocks_of_elements_equals_all_at_once(monkeypatch, statistic):
    rng = np.random.default_rng(5)
    x = np.cumsum(rng.normal(size=(4, 50, 23)), axis=1) * rng.uniform(0.5, 2.0, 23)  # elements differ
    posterior = xr.Dataset({"effect": (("chain", "draw", "patient"), x)})
    whole = convergence.per_variable(posterior, statistic)["effect"].to_numpy()
    monkeypatch.setattr(convergence, "BLOCK_VALUES", 4 * 50 * 5)  # blocks of 5 elements, the last of 3
    blocks = convergence.per_variable(posterior, statistic)["effect"].to_numpy()
    np.testing.assert_array_equal(blocks, whole)
    np.testing.assert_array_equal(whole, statistic(x))
    assert len(np.unique(whole)) == 23


def test_augment_forms_no_draw_by_patient_frailty_table():
    """The population quantities take every draw at once; their frailty tables are views of the drawn
    offsets (sd * z is formed per row and chunk of draws), not a (draw, patient) product: 640 MB at
    20,000 patients x 4,000 draws."""
    spec = ModelSpec("recovery", frailty=True, covariates=("prior_atg",))
    data = load_trial(needs=spec.needs())
    model = build_model(data, spec, load_prior_set())
    post = posterior_at_random_points(model, 2, 3).posterior
    tables = recovery._tables(post, model_inputs(data, spec), spec, slice(0, 6))
    assert np.shares_memory(tables["frailty"], post["frailty_z"].to_numpy())
    assert np.shares_memory(tables["frailty_scale"], post["frailty_sd"].to_numpy())
