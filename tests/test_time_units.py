"""Time units (issue 11, item 4), one default family per model (item 16) and plan errors that name
the plan's key (item 8): pure tests, graph evaluations without sampling, and one tiny pair of fits."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from conftest import write_csv

from marrow import dims, time_units
from marrow.data import load_trial
from marrow.descriptor import REGISTRY
from marrow.errors import UsageError
from marrow.models import build_model, module_for
from marrow.priors import Prior, load_prior_set, units
from marrow.report.plan import load_plan
from marrow.spec import ModelSpec, SpecError

pytestmark = pytest.mark.filterwarnings("ignore:PyTensor could not link to a BLAS:UserWarning")


# --- conversions and default horizons -------------------------------------------------------------------


def test_default_horizons_in_each_unit():
    assert time_units.survival_horizons("days") == (182.6, 365.25, 730.5)
    assert time_units.survival_horizons("weeks") == (26.09, 52.18, 104.36)
    assert time_units.survival_horizons("months") == (6.0, 12.0, 24.0)
    assert time_units.recovery_horizons("weeks") == (4.29, 12.86, 25.71)
    assert time_units.rmst_horizon("months") == 24.0 and time_units.one_year("weeks") == 52.18
    assert time_units.to_days(52.18, "weeks") == pytest.approx(365.26)
    assert time_units.to_days(12, "months") == 365.25
    with pytest.raises(UsageError, match="time_unit"):
        time_units.from_days(30, "fortnights")


def test_given_horizons_replace_the_defaults():
    survival, recovery = module_for("survival"), module_for("recovery")
    assert survival.report_days(ModelSpec("survival")) == [182.6, 365.25, 730.5]
    assert survival.report_days(ModelSpec("survival", time_unit="months")) == [6, 12, 24]  # whole: ints
    assert survival.report_days(ModelSpec("survival", horizons=(90.0, 30.0))) == [30, 90]
    assert recovery.report_days(ModelSpec("recovery", time_unit="weeks", horizons=(2, 4))) == [2, 4]
    assert recovery.report_days(ModelSpec("recovery")) == [30, 90, 180]


def test_specs_without_time_unit_load_as_days_and_old_extra_days_keep_their_horizons():
    old = ModelSpec.from_json('{"model": "survival", "family": "weibull", "at_days": [90]}')
    assert old.time_unit == "days" and old.horizons == (90.0, 182.6, 365.25, 730.5)
    old = ModelSpec.from_json('{"model": "recovery", "by_days": [], "cure": true}')
    assert old.horizons == () and module_for("recovery").report_days(old) == [30, 90, 180]
    spec = ModelSpec("survival", time_unit="weeks", horizons=(52.0,))
    assert ModelSpec.from_json(spec.to_json()) == spec


def test_spec_rejects_bad_times_with_neutral_messages():
    with pytest.raises(SpecError, match="unknown time unit") as info:
        ModelSpec("survival", time_unit="years")
    assert info.value.field == "time_unit" and "--" not in str(info.value)
    with pytest.raises(SpecError, match="finite and > 0"):
        ModelSpec("recovery", horizons=(0.0,))
    with pytest.raises(SpecError, match="no times"):
        ModelSpec("response", time_unit="weeks")
    with pytest.raises(SpecError, match="threshold must be a rate") as info:
        ModelSpec("response", threshold=1.5)
    assert "--" not in str(info.value)


def test_labels_use_the_time_unit():
    weeks = ModelSpec("survival", time_unit="weeks")
    labels = {q.var: (q.label, q.scale) for q in module_for("survival").quantities(weeks)}
    assert labels["survival_at"][0] == "Overall survival at week {day}"
    assert labels["rmst"] == ("Restricted mean survival to week 104.36 (weeks)", "weeks")
    assert labels["median_days"] == ("Median survival (weeks), trial-average patient", "weeks")
    days = {q.var: q.label for q in module_for("survival").quantities(ModelSpec("survival"))}
    assert days["rmst"] == "Restricted mean survival to day 730.5 (days)"
    rec = {
        q.var: (q.label, q.scale) for q in module_for("recovery").quantities(ModelSpec("recovery", time_unit="months"))
    }
    assert rec["median_days"] == ("Median months to recovery, {lineage}", "months")
    assert rec["recovered_by"][0] == "P(recovered by month {day}), {lineage}"


# --- priors are stated in log days and moved to the unit ------------------------------------------------


def test_log_time_priors_move_to_the_unit_and_nothing_else_does():
    priors = load_prior_set()
    weeks = units.priors_in_unit(priors, "weeks")
    for key in units.LOG_TIME_PRIORS:
        assert weeks[key].args["mu"] == pytest.approx(priors[key].args["mu"] - math.log(7))
        assert weeks[key].args["sigma"] == priors[key].args["sigma"]
    untouched = set(priors.priors) - set(units.LOG_TIME_PRIORS)
    assert all(weeks[k] == priors[k] for k in untouched)
    assert units.priors_in_unit(priors, "days") is priors
    gamma = replace(
        priors, priors={**priors.priors, "survival.log_median": Prior("Gamma", {"alpha": 2.0, "beta": 1.0})}
    )
    with pytest.raises(UsageError, match="survival.log_median.*cannot be moved to weeks"):
        units.priors_in_unit(gamma, "weeks")


@pytest.fixture(scope="module")
def trials(tmp_path_factory):
    """The bundled trial recorded in days, and the same trial recorded in weeks."""
    from marrow import datasets

    folder = tmp_path_factory.mktemp("units")
    days = pd.read_csv(datasets.PATIENTS_CSV)
    weeks = days.assign(followup_days=days["followup_days"] / 7.0)
    return write_csv(days, folder / "days.csv"), write_csv(weeks, folder / "weeks.csv")


def _evaluate(model, point: dict, names: list[str]) -> dict:
    outs = model.replace_rvs_by_values([model[n] for n in names])
    fn = model.compile_fn(
        outs + [model.logp()], inputs=model.value_vars, point_fn=True, on_unused_input="ignore", mode="FAST_COMPILE"
    )  # evaluated once: no C compilation
    values = fn(point)
    return dict(zip(names + ["logp"], values, strict=True))


def test_a_trial_in_weeks_is_the_same_model_as_in_days(trials):
    """Same parameters (log median moved by log 7): S(52 weeks) = S(364 days) and the curves agree
    exactly; the log density differs only by the Jacobian log 7 per death."""
    days_path, weeks_path = trials
    priors = load_prior_set()
    specs = {
        "days": ModelSpec("survival", covariates=("age",), horizons=(364.0,)),
        "weeks": ModelSpec("survival", covariates=("age",), time_unit="weeks", horizons=(52.0,)),
    }
    data = {
        unit: load_trial(path, needs=specs[unit].needs()) for unit, path in zip(("days", "weeks"), trials, strict=True)
    }
    models = {unit: build_model(data[unit], specs[unit], priors) for unit in specs}
    point = {"log_median": np.array(6.9), "log_shape": np.array(-0.2), "beta": np.array([0.03])}
    out = {}
    for unit, model in models.items():
        moved = dict(point, log_median=point["log_median"] - time_units.log_days_per_unit(unit))
        out[unit] = _evaluate(model, moved, ["survival_at", "survival_curve", "median_days", "rmst"])
    np.testing.assert_allclose(out["weeks"]["survival_at"], out["days"]["survival_at"], rtol=1e-12)
    # The curve's first point is day 0, evaluated at 1e-6 of the unit (log 0 is not finite).
    np.testing.assert_allclose(out["weeks"]["survival_curve"][1:], out["days"]["survival_curve"][1:], rtol=1e-10)
    assert out["weeks"]["median_days"] * 7 == pytest.approx(out["days"]["median_days"], rel=1e-12)
    deaths = int(data["days"].patients["died"].sum())
    assert out["weeks"]["logp"] - out["days"]["logp"] == pytest.approx(deaths * math.log(7), rel=1e-9)
    assert list(models["weeks"].coords[dims.DAY]) == [52]
    grid_w = np.asarray(models["weeks"].coords[dims.GRID_DAY]) * 7
    np.testing.assert_allclose(grid_w, np.asarray(models["days"].coords[dims.GRID_DAY]), rtol=1e-12)


# --- one default family per model ------------------------------------------------------------------------


DEFAULT_FAMILIES = {d.name: d.default_family for d in REGISTRY if d.default_family}


@pytest.mark.parametrize("model", sorted(DEFAULT_FAMILIES))
def test_label_builder_and_cli_share_one_default_family(model):
    from marrow.commands.fit import fit as fit_group

    spec = ModelSpec(model)
    module = module_for(model)
    assert module.family_of(spec) == spec.resolved_family == DEFAULT_FAMILIES[model]
    assert DEFAULT_FAMILIES[model] in spec.label
    option = {p.name: p for p in fit_group.get_command(None, model).params}["family"]
    assert option.default == DEFAULT_FAMILIES[model]
    assert ModelSpec("recovery").label == "recovery (loglogistic cure)"


# --- plans: time_unit and horizons keys; errors name the plan's key ------------------------------------


def _plan(tmp_path, body: str):
    path = tmp_path / "plan.toml"
    path.write_text(body, encoding="utf-8")
    return load_plan(path)


def test_plan_time_unit_and_horizons(tmp_path):
    plan = _plan(
        tmp_path, '[data]\ntime_unit = "weeks"\n[models.survival]\nat = [13, 52]\n[models.recovery]\nby = [2]\n'
    )
    specs = {s.name: s.spec for s in plan.steps}
    assert specs["survival"].time_unit == "weeks" and specs["survival"].horizons == (13.0, 52.0)
    assert specs["recovery"].time_unit == "weeks" and specs["recovery"].horizons == (2.0,)
    assert specs["response"].time_unit == "days"  # no times in the response model
    plan = _plan(tmp_path, "[models.survival]\nat_days = [90]\n")  # the alias, in days
    assert {s.name: s.spec for s in plan.steps}["survival"].horizons == (90.0,)


@pytest.mark.parametrize(
    "body, message",
    [
        ("[thresholds]\nresponse_rate = 1.5\n", r"plan.toml \[thresholds\] response_rate: the threshold"),
        ("[thresholds]\nadverse_event_rate = 0\n", r"plan.toml \[thresholds\] adverse_event_rate: "),
        ("[models.safety]\nn_future = 0\n", r"plan.toml \[models.safety\] n_future: "),
        ("[models.survival]\nat = [-3]\n", r"plan.toml \[models.survival\] at: times must be"),
        ("[models.recovery]\nby_days = [0]\n", r"plan.toml \[models.recovery\] by_days: "),
        ('[data]\ntime_unit = "weeks"\n[models.survival]\nat_days = [90]\n', r"at_days takes days.*give at in weeks"),
        ('[data]\ntime_unit = "years"\n', r"\[data\] time_unit must be one of days, weeks, months"),
        ("[sampler]\nchains = 0\n", r"plan.toml \[sampler\] chains: chains must be at least 1"),
    ],
)
def test_plan_errors_name_the_plan_key_not_a_flag(tmp_path, body, message):
    with pytest.raises(UsageError, match=message) as info:
        _plan(tmp_path, body)
    assert "--" not in str(info.value)


def test_cli_time_options(marrow_cli, tmp_path, trials):
    code, _, err = marrow_cli("fit", "survival", "--time-unit", "weeks", "--at-days", "90", "--out", tmp_path / "a.nc")
    assert code == 2 and "--at-days takes days" in err and "--at" in err
    code, _, err = marrow_cli("fit", "survival", "--at", "3", "--at-days", "90", "--out", tmp_path / "a.nc")
    assert code == 2 and "not both" in err
    code, _, err = marrow_cli("fit", "recovery", "--by", "x", "--out", tmp_path / "a.nc")
    assert code == 2 and "--by" in err
    assert not (tmp_path / "a.nc").exists()


# --- one tiny real fit: a trial in weeks, fitted from the CLI ----------------------------------------


@pytest.mark.sampling
def test_weeks_fit_from_the_cli_matches_the_days_trial(marrow_cli, tmp_path, trials):
    """S(52.18 weeks) of the trial in weeks against lifelines' Weibull MLE of S(365.25 days) of the same
    trial in days (0.917; the model's days fit gives 0.92, docs/models.md)."""
    from lifelines import WeibullFitter

    from marrow.fits.fit import Fit
    from marrow.summaries import posterior_probabilities, posterior_summary

    days_path, weeks_path = trials
    out = tmp_path / "weeks.nc"
    code, _, err = marrow_cli(
        "fit",
        "survival",
        "--time-unit",
        "weeks",
        "--data",
        weeks_path,
        "--chains",
        "2",
        "--draws",
        "200",
        "--tune",
        "200",
        "--seed",
        "5",
        "--quiet",
        "--out",
        out,
    )
    assert code == 0, err
    weeks = Fit.load(out)
    assert weeks.spec.time_unit == "weeks"
    assert weeks.priors["survival.log_median"].args["mu"] == pytest.approx(7.5 - math.log(7))
    days = pd.read_csv(days_path)
    mle = float(WeibullFitter().fit(days["followup_days"], days["died"]).survival_function_at_times(365.25).iloc[0])
    year = weeks.idata.posterior["survival_at"].sel({dims.DAY: 52.18}).to_numpy().reshape(-1)
    lower, upper = np.quantile(year, [0.025, 0.975])
    assert lower < mle < upper and abs(np.median(year) - mle) < 0.03
    assert not lower < 0.75 < upper  # S(365.25 weeks), 7 years, is far lower: a unit mix-up fails
    quantities = set(posterior_summary(weeks)["quantity"])
    assert {"Overall survival at week 52.18", "Restricted mean survival to week 104.36 (weeks)"} <= quantities
    assert [text for text, _ in posterior_probabilities(weeks)] == ["P(12-month overall survival > 0.8)"]
    code, stdout, _ = marrow_cli("summarize", out)
    assert code == 0 and "week 26.09" in stdout and "day 365.25" not in stdout


def test_parameter_labels_of_summarize_all_follow_the_time_unit():
    from marrow.models.inputs import Quantity
    from marrow.summaries import _DERIVED_LABELS, PARAMETERS, _in_unit

    for model in ("recovery", "survival"):
        weeks = [_in_unit(q, "weeks") for q in PARAMETERS[model]]
        assert not any("days" in q.label or "days" in q.scale for q in weeks), model
        assert any(q.label.endswith("(log weeks)") or "log weeks" in q.label for q in weeks)
        assert [_in_unit(q, "days") for q in PARAMETERS[model]] == PARAMETERS[model]
    derived = [_in_unit(Quantity(name, label, scale), "months") for name, (label, scale) in _DERIVED_LABELS.items()]
    assert {"Median months, {lineage_group}", "log months"} <= {q.label for q in derived} | {q.scale for q in derived}
