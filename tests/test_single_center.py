"""One center (issue 11, item 3): models leave out the center level they cannot estimate, say so and
record it; and `marrow report` on a table with only some models' columns (item 2, report part)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import write_csv

from marrow import dims
from marrow.data import load_trial
from marrow.errors import DataError, UsageError
from marrow.models import build_model, levels, model_inputs
from marrow.priors import load_prior_set
from marrow.report.plan import load_plan
from marrow.report.run import prepare
from marrow.spec import ModelSpec

pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS:UserWarning")
CENTER_TERMS = {"center_sd", "center_z", "center_effect", "new_center_z", "new_center_rate"}


@pytest.fixture(scope="module")
def one_center(tmp_path_factory):
    """The bundled trial with every patient in one center."""
    from marrow import datasets

    frame = pd.read_csv(datasets.PATIENTS_CSV, dtype=str).assign(center="Only site")
    return write_csv(frame, tmp_path_factory.mktemp("one") / "one-center.csv")


# --- the shared mechanism ------------------------------------------------------------------------------------


def test_dropped_levels_needs_two_groups_and_ignores_absent_levels():
    found = levels.dropped_levels({dims.CENTER: ["A"], dims.LINEAGE: ["x", "y"]}, {dims.CENTER: ("center_sd",)})
    assert found == (levels.DroppedLevel(dims.CENTER, "A", ("center_sd",)),)
    assert not levels.kept(dims.CENTER, found) and levels.kept(dims.LINEAGE, found)
    assert levels.dropped_levels({dims.LINEAGE: []}, {}) == ()  # no recovery table: nothing to say
    assert levels.dropped_levels({dims.LINEAGE: ["x"]}, {})[0].level == dims.LINEAGE
    provenance = {levels.ATTR: levels.to_json(found)}
    assert levels.from_provenance(provenance) == found
    assert "single center (A)" in levels.notes(provenance)[0] and "center_sd" in levels.notes(provenance)[0]
    assert levels.notes({}) == []  # fits made before the record
    stated = {levels.ATTR: levels.to_json([*found, "one lineage: no lineage sd"])}  # a model's own sentence
    assert levels.from_provenance(stated) == found and levels.notes(stated)[1] == "one lineage: no lineage sd"
    with pytest.raises(UsageError, match="dropped_levels.*damaged"):
        levels.notes({levels.ATTR: "[{not json"})


# --- graphs: one center leaves the level out, several keep it -------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [ModelSpec("response"), ModelSpec("response", outcome="ordinal"), ModelSpec("safety", family="hierarchical")],
    ids=lambda s: s.label,
)
def test_one_center_graph_has_no_center_level(spec, one_center):
    data = load_trial(one_center, needs=spec.needs())
    inputs = model_inputs(data, spec)
    assert [d.level for d in inputs.dropped] == [dims.CENTER] and inputs.dropped[0].label == "Only site"
    model = build_model(data, spec, load_prior_set())
    assert not CENTER_TERMS & set(model.named_vars)
    assert "center_rate" in model.named_vars  # the one center's rate is the trial's
    point = model.initial_point()
    fast = {"mode": "FAST_COMPILE"}  # evaluated once: no C compilation
    assert np.isfinite(model.compile_logp(**fast)(point)) and np.all(np.isfinite(model.compile_dlogp(**fast)(point)))

    several = load_trial(needs=spec.needs())  # the bundled trial: 7 centers
    assert model_inputs(several, spec).dropped == ()
    assert "center_sd" in build_model(several, spec, load_prior_set()).named_vars


def test_models_without_a_center_level_drop_nothing(one_center):
    for spec in (ModelSpec("safety"), ModelSpec("survival")):
        assert model_inputs(load_trial(one_center, needs=spec.needs()), spec).dropped == ()


# --- one tiny real fit from the CLI ----------------------------------------------------------------------


@pytest.mark.sampling
def test_one_center_fit_says_so_and_reports_no_center_sd(marrow_cli, tmp_path, one_center):
    from marrow.fits.fit import Fit
    from marrow.summaries import posterior_probabilities, posterior_summary

    out = tmp_path / "one.nc"
    code, _, err = marrow_cli(
        "fit",
        "response",
        "--data",
        one_center,
        "--sampler",
        "pymc",
        "--chains",
        "2",
        "--draws",
        "200",
        "--tune",
        "200",
        "--quiet",
        "--out",
        out,
    )
    assert code == 0, err
    assert "note: the data have a single center (Only site)" in err  # said even with --quiet
    fit = Fit.load(out)
    recorded = json.loads(fit.provenance[levels.ATTR])
    assert recorded == [
        {"level": "center", "label": "Only site", "variables": ["center_sd", "center_effect", "new_center_rate"]}
    ]
    table = posterior_summary(fit)
    assert not table["quantity"].str.contains("Center sd|new center").any()
    assert not CENTER_TERMS & set(fit.idata.posterior.data_vars)
    # The trial's rate is the center's, and near the observed share of responders.
    rate = fit.idata.posterior["response_rate"].to_numpy().reshape(-1)
    np.testing.assert_allclose(rate, fit.idata.posterior["center_rate"].to_numpy().reshape(-1), rtol=1e-12)
    observed = load_trial(one_center).patients["responder"].mean()
    assert abs(np.median(rate) - observed) < 0.03
    assert [text for text, _ in posterior_probabilities(fit)] == ["P(response rate > 0.15)"]
    # Every quantity it does report is estimable: the posterior predictive of the total is sane.
    assert fit.idata.posterior_predictive["total_responders"].mean() == pytest.approx(
        fit.idata.observed_data["total_responders"].item(), rel=0.15
    )


# --- report: each step decided from the data's columns -------------------------------------------------------


@pytest.fixture
def survival_only(tmp_path, patients_frame):
    """A survival-only table: no response, no adverse events (the loader keeps only columns present)."""
    frame = patients_frame[["patient_id", "center", "followup_days", "died", "age"]]
    return write_csv(frame, tmp_path / "survival-only.csv")


def test_report_runs_the_steps_whose_columns_exist(survival_only):
    steps = {s.name: s for s in prepare(load_plan(patients=survival_only))}
    assert steps["survival"].status == "pending" and steps["survival"].data is not None
    for name, column in (("response", "respon"), ("ordinal", "response"), ("safety", "adverse_event")):
        assert steps[name].status == "skipped", name
        assert column in steps[name].note, steps[name].note
    assert "recovery table" in steps["recovery"].note


def test_a_plan_naming_a_model_without_its_columns_fails_before_sampling(marrow_cli, tmp_path, survival_only):
    plan = tmp_path / "plan.toml"
    plan.write_text(f'[data]\npatients = "{survival_only.name}"\n[models]\nrun = ["survival", "safety"]\n')
    with pytest.raises(DataError) as info:
        prepare(load_plan(plan))
    text = str(info.value)
    assert "plan.toml: [models] run names 'safety'" in text and "adverse_event" in text
    code, _, err = marrow_cli("report", "--plan", plan, "--out", tmp_path / "rep")
    assert code == 2 and "run names 'safety'" in err
    assert not (tmp_path / "rep").exists()
