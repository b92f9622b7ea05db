"""Recovery designs of `marrow simulate`: the design file, the simulated truth, interim censoring, the
fixed-shape analysis inputs, rules over recovery quantities, and one tiny study through the CLI."""

from __future__ import annotations

from dataclasses import replace
from importlib import resources

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from marrow.errors import UsageError
from marrow.models import latency
from marrow.simulate import recovery_analysis as ra
from marrow.simulate import recovery_trials as rt
from marrow.simulate.design import parse_design, read_design

EXAMPLE = resources.files("marrow.datasets").joinpath("design-recovery.toml").read_text(encoding="utf-8")

TINY = """
seed = 7
replicates = 1
[centers]
sizes = { "A" = 5, "B" = 4, "C" = 3 }
[covariates]
prior_atg = 0.5
[model]
name = "recovery"
covariates = ["prior_atg"]
lineages = ["leukocytic", "megakaryocytic"]
[timing]
accrual_days = 100
follow_up_days = 120
[sampler]
chains = 2
tune = 200
draws = 200
target_accept = 0.9
[[interims]]
after = 6
futility = "P(cure_fraction_leukocytic < 0.5) < 0.05"
[decision]
go = "P(recovered_by_90_leukocytic > 0.3) > 0.9"
[[scenarios]]
name = "null"
cure_fractions = { leukocytic = 0.6, megakaryocytic = 0.6 }
median_days = { leukocytic = 30, megakaryocytic = 50 }
[[scenarios]]
name = "target"
cure_fractions = { leukocytic = 0.2, megakaryocytic = 0.3 }
median_days = { leukocytic = 30, megakaryocytic = 50 }
shape = 3
center_sd = 0.4
log_odds_ratios = { prior_atg = 0.5 }
"""


def test_the_example_design_reads():
    design = parse_design(EXAMPLE, "design-recovery.toml")
    assert design.analysis.model == "recovery" and design.analysis.spec is not None
    assert design.analysis.spec.cure and design.analysis.spec.resolved_family == "loglogistic"
    assert design.timing is not None and design.timing.lineages == ("leukocytic", "erythrocytic", "megakaryocytic")
    assert design.timing.follow_up_days == 180 and design.analysis_sizes == (37, 74)
    null, target = design.scenarios
    assert isinstance(null, rt.RecoveryScenario) and dict(null.cure_fractions)["leukocytic"] == 0.5
    assert dict(target.median_days)["megakaryocytic"] == 60


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (('name = "recovery"', 'name = "recovery"\nfrailty = true'), "model.frailty"),
        (('name = "recovery"', 'name = "recovery"\ncompeting_death = true'), "model.competing_death"),
        (('name = "recovery"', 'name = "recovery"\nper_lineage_effects = true'), "model.per_lineage_effects"),
        (('name = "recovery"', 'name = "recovery"\nfamily = "gamma"'), "model.family"),
        (("follow_up_days = 120", ""), "timing.follow_up_days is missing"),
        (("megakaryocytic = 0.6 }", "platelets = 0.6 }"), "scenarios[0].cure_fractions"),
        (("median_days = { leukocytic = 30, megakaryocytic = 50 }\n[[", "[["), "scenarios[0].median_days"),
        (('lineages = ["leukocytic", "megakaryocytic"]', 'lineages = ["white cells"]'), "model.lineages"),
        (('name = "recovery"', 'name = "recovery"\nby_days = [7.5]'), "model.by_days"),
        (("[timing]", "[timing]\nafter = 3"), "timing.after"),
    ],
)
def test_a_bad_recovery_design_names_the_key(change, needle):
    with pytest.raises(UsageError) as err:
        parse_design(TINY.replace(*change), "tiny.toml")
    assert needle in str(err.value)


def test_frailty_is_refused_with_the_option_named():
    with pytest.raises(UsageError, match="do not simulate the option 'frailty' yet"):
        parse_design(TINY.replace('name = "recovery"', 'name = "recovery"\nfrailty = true'))


# --- the simulated truth --------------------------------------------------------------------------


def test_simulated_recovery_has_the_scenarios_cure_fractions_and_medians():
    """Many large trials: the share never recovering per lineage is the scenario's cure fraction (its
    expectation over center effects and covariates), each trial's observed share is binomial around the
    trial's true cure fraction, and the recovery days follow the family with the scenario's median and shape."""
    text = TINY.replace('sizes = { "A" = 5, "B" = 4, "C" = 3 }', 'weights = { "A" = 2, "B" = 1, "C" = 1 }\ntotal = 400')
    design = parse_design(text)
    scenario = design.scenarios[1]  # center sd 0.4, a covariate effect, shape 3
    intercepts = rt.cure_intercepts(design, scenario)
    rng = np.random.default_rng(11)
    trials = [rt.simulate_recovery_trial(design, scenario, rng, intercepts) for _ in range(300)]
    truth = np.array([t.true_cure_fractions for t in trials])  # (trial, lineage)
    cured = np.array([1.0 - t.recovers.mean(axis=0) for t in trials])
    wanted = np.array([v for _, v in scenario.cure_fractions])
    se = truth.std(axis=0, ddof=1) / np.sqrt(len(trials))
    assert np.all(np.abs(truth.mean(axis=0) - wanted) < 4 * se + 1e-3)
    binomial_se = np.sqrt((truth * (1 - truth)).sum(axis=0) / 400) / len(trials)
    assert np.all(np.abs((cured - truth).mean(axis=0)) < 4 * binomial_se)
    # A wrong intercept (logit of 1 - cure fraction, ignoring the center sd and the covariate) is off.
    naive = np.log((1 - wanted) / wanted)
    assert np.abs(naive - intercepts).max() > 0.05
    days = np.concatenate([t.latency for t in trials])  # every draw, recovering or not: the latency law
    for j, (_, median) in enumerate(scenario.median_days):
        law = latency.scipy_distribution("loglogistic", median, scenario.shape)
        assert stats.kstest(days[:, j], law.cdf).pvalue > 0.001
        assert abs(np.median(days[:, j]) / median - 1) < 0.03


# --- what an analysis sees ------------------------------------------------------------------------


def _hand_trial() -> rt.RecoveryTrial:
    # Three patients entering on days 0, 10 and 30; two lineages.
    return rt.RecoveryTrial(
        center=np.array([0, 1, 2]),
        x=np.array([[0.0], [1.0], [0.0]]),
        entry=np.array([0.0, 10.0, 30.0]),
        recovers=np.array([[True, True], [True, False], [True, True]]),
        latency=np.array([[5.0, 20.0], [3.0, 8.0], [70.0, 40.0]]),
        cure=np.full((3, 2), 0.3),
    )


def test_interim_censoring_by_hand():
    trial = _hand_trial()
    # An interim after 2 patients is held on day 10, when the second enters: patient 0 is followed 10
    # days (recovered on day 5 in lineage 0; censored at 10 in lineage 1, which recovers on day 20);
    # patient 1 has no follow-up yet and patient 2 is not enrolled: both weigh 0.
    seen = rt.observe(trial, 2, 50.0, 10.0)
    np.testing.assert_array_equal(seen.weight, [1, 0, 0])
    np.testing.assert_array_equal(seen.recovered, [[1, 0], [0, 0], [0, 0]])
    assert seen.day[0].tolist() == [5.0, 10.0]
    # On day 40 (all enrolled): patient 0 followed 40 (both recovered), patient 1 followed 30 (recovers
    # on day 3; never in lineage 1: censored at 30), patient 2 followed 10 (nothing yet).
    seen = rt.observe(trial, 3, 50.0, 40.0)
    np.testing.assert_array_equal(seen.weight, [1, 1, 1])
    np.testing.assert_array_equal(seen.recovered, [[1, 1], [1, 0], [0, 0]])
    np.testing.assert_array_equal(seen.day, [[5, 20], [3, 30], [10, 10]])
    # The final analysis: everyone followed 50 days (patient 2 recovers on day 40 in lineage 1 only).
    seen = rt.observe(trial, 3, 50.0, float("inf"))
    np.testing.assert_array_equal(seen.recovered, [[1, 1], [1, 0], [0, 1]])
    np.testing.assert_array_equal(seen.day, [[5, 20], [3, 50], [50, 40]])


def test_analysis_inputs_keep_the_template_shapes_and_weigh_out_later_patients():
    design = parse_design(TINY)
    rng = np.random.default_rng(3)
    trial = rt.simulate_recovery_trial(design, design.scenarios[0], rng)
    template = ra.template(design)
    for n in design.analysis_sizes:
        inputs = ra.analysis_inputs(design, trial, n)
        assert {k: v.shape for k, v in inputs.arrays.items()} == {k: v.shape for k, v in template.arrays.items()}
        seen = rt.observe(trial, n, 120.0, rt.analysis_time(design, trial, n))
        a = inputs.arrays
        # Every (patient, lineage) row with weight: an event or a censored row, never both.
        row_weight = a["event_weight"] + a["cure_weight"]
        np.testing.assert_array_equal(row_weight, np.repeat(seen.weight, 2))
        assert a["event_weight"].sum() == seen.recovered.sum()
        assert a["group_events"].sum() == seen.recovered.sum()
        assert a["group_censored"].sum() == seen.weight.sum() * 2 - seen.recovered.sum()
        # The population is the n enrolled patients; covariates centred at their mean.
        assert a["group_weight"].sum() == pytest.approx(1.0) and a["pattern_weight"].sum() == pytest.approx(1.0)
        mean = trial.x[:n, 0].mean()
        assert sorted(a["pattern_x"][:, 0] + mean) == pytest.approx([0.0, 1.0])
        recovered = np.flatnonzero(a["event_weight"] > 0)
        np.testing.assert_allclose(np.exp(a["event_log_day"][recovered]), seen.day.ravel()[recovered])
    assert rt.analysis_time(design, trial, 6) == trial.entry[5]


def test_stored_variables_exist_in_the_model_centred_or_not():
    """The refit's stored variables (recovery and response) are variables of the model built, whichever
    parameterisation the design's model resolves (the response design used to store center_z)."""
    from marrow.models import module_for
    from marrow.priors import load_prior_set
    from marrow.simulate import study as st

    priors = load_prior_set("weakly-informative")
    for option in ("centred", "noncentred"):
        design = parse_design(TINY.replace('name = "recovery"', f'name = "recovery"\nparameterisation = "{option}"'))
        assert design.analysis.spec is not None
        model = module_for("recovery").build(ra.template(design), design.analysis.spec, priors)
        assert set(ra.stored(design)) <= set(model.named_vars), option
        assert {"cure_center_effect", "log_median_sd", "cure_beta"} <= set(ra.stored(design))
        bundled = read_design(None)
        spec = replace(bundled.analysis.spec, parameterisation=option)
        response = replace(bundled, analysis=replace(bundled.analysis, spec=spec))
        inputs = st.response_inputs(response)
        assert inputs.parameterisation == {"center_effect": option}
        model = module_for("response").build(inputs, spec, priors)
        assert set(st.stored_variables(response)) <= set(model.named_vars), option


def test_stored_variables_without_cure_one_lineage_one_center():
    from marrow.models import module_for
    from marrow.priors import load_prior_set

    text = (
        TINY.replace('sizes = { "A" = 5, "B" = 4, "C" = 3 }', 'sizes = { "A" = 12 }')
        .replace('lineages = ["leukocytic", "megakaryocytic"]', 'lineages = ["leukocytic"]\ncure = false')
        .replace(
            'futility = "P(cure_fraction_leukocytic < 0.5) < 0.05"', 'futility = "P(median_days_leukocytic > 60) > 0.9"'
        )
        .replace(", megakaryocytic = 0.6 }", " }")
        .replace(", megakaryocytic = 0.3 }", " }")
        .replace(", megakaryocytic = 50 }", " }")
    )
    design = parse_design(text)
    assert design.analysis.spec is not None
    model = module_for("recovery").build(
        ra.template(design), design.analysis.spec, load_prior_set("weakly-informative")
    )
    names = ra.stored(design)
    assert set(names) <= set(model.named_vars) and not [n for n in names if "cure" in n or n.endswith("_sd")]
    assert ra.recorded_names(design)[0] == "median_days_leukocytic"
    assert ra.headline_names(design) == ["median_days_leukocytic"]


# --- rules ----------------------------------------------------------------------------------------


def test_rules_over_recovery_quantities_parse_and_unknown_names_are_refused():
    from marrow.commands.simulate import rule_terms

    design = parse_design(TINY)
    assert rule_terms(design) == (
        ("P(cure_fraction_leukocytic < 0.5)", "cure_fraction_leukocytic", "<", 0.5),
        ("P(recovered_by_90_leukocytic > 0.3)", "recovered_by_90_leukocytic", ">", 0.3),
    )
    assert "median_days_megakaryocytic" in ra.recorded_names(design)
    bad = parse_design(TINY.replace("recovered_by_90_leukocytic", "recovered_by_60_leukocytic"), "bad.toml")
    with pytest.raises(UsageError) as err:
        rule_terms(bad)
    message = str(err.value)
    assert "bad.toml: decision.go" in message and "unknown quantity 'recovered_by_60_leukocytic'" in message
    assert "did you mean 'recovered_by_90_leukocytic'" in message
    days = parse_design(TINY.replace('name = "recovery"', 'name = "recovery"\nby_days = [14, 60]'))
    assert [q for q in ra.recorded_names(days) if q.startswith("recovered_by")] == [
        f"recovered_by_{d}_{x}" for d in (14, 60) for x in ("leukocytic", "megakaryocytic")
    ]
    # No cure model: no cure fractions to name.
    with pytest.raises(UsageError, match="unknown quantity 'cure_fraction_leukocytic'"):
        rule_terms(parse_design(TINY.replace('name = "recovery"', 'name = "recovery"\ncure = false')))


# --- end to end -----------------------------------------------------------------------------------


@pytest.mark.sampling
def test_tiny_recovery_study_through_the_cli(tmp_path, marrow_cli):
    path = tmp_path / "design.toml"
    path.write_text(TINY, encoding="utf-8")
    out = tmp_path / "sim"
    code, stdout, err = marrow_cli("simulate", path, "--out", out, "--in-process", "--quiet")
    assert code == 0, err
    assert "P(go)" in stdout and "P(stop futility @1)" in stdout and "true cure_fraction_leukocytic" in stdout
    records = pd.read_parquet(out / "records.parquet")
    assert len(records) == 2 and "error" not in records
    assert (records["a1:n"] == 6).all() and (records["a2:n"] == 12).all()
    q = "cure_fraction_leukocytic"
    assert records[f"a2:quantile:0.025:{q}"].lt(records[f"a2:quantile:0.975:{q}"]).all()
    grid = records["a1:exceed:0.50:cure_fraction_leukocytic"]
    assert ((1 - grid) - records[f"a1:rule:P({q} < 0.5)"]).abs().max() < 0.01  # P(< t) = 1 - P(> t), ties aside
    assert "a1:exceed:0.50:median_days_leukocytic" not in records  # no 0..1 grid for days
    estimation = pd.read_csv(out / "estimation.csv", keep_default_na=False)
    assert set(estimation["quantity"]) == {
        f"{b}_{x}" for b in ("cure_fraction", "median_days") for x in ("leukocytic", "megakaryocytic")
    }
    truth = records.groupby("scenario")["true:median_days_megakaryocytic"].mean()
    assert truth.to_dict() == {"null": 50.0, "target": 50.0}
    oc = pd.read_csv(out / "oc.csv", keep_default_na=False).set_index("scenario")
    assert (oc["replicates"] == 1).all() and (out / "oc.html").exists() and (out / "oc.md").exists()
    code, stdout, err = marrow_cli("simulate", path, "--out", out, "--in-process", "--quiet", "--calibrate")
    assert code == 0, err
    assert "Calibrated go rule" in stdout
    pd.testing.assert_frame_equal(records, pd.read_parquet(out / "records.parquet"))  # re-read, not refitted
    assert r"cure\_fraction\_leukocytic" in (out / "oc.tex").read_text(encoding="utf-8")  # LaTeX-escaped


def test_init_design_model_recovery_writes_the_example(tmp_path, marrow_cli):
    out = tmp_path / "design-recovery.toml"
    code, _, err = marrow_cli("init", "--design", "--model", "recovery", "--out", out)
    assert code == 0, err
    assert out.read_text(encoding="utf-8") == EXAMPLE
    assert read_design(out).analysis.model == "recovery"
    assert marrow_cli("init", "--model", "recovery", "--out", tmp_path / "x.toml")[0] == 2  # needs --design


@pytest.mark.parametrize("cure", [True, False])
def test_interim_inputs_give_the_models_log_density_on_the_interims_own_data(cure):
    """The fixed-shape inputs of an interim (later patients weigh 0) give the recovery model the same
    log density as `marrow fit recovery`'s own inputs of the interim's data table (the enrolled patients,
    each censored at the interim), at random parameter values; with the cure model and without."""
    from marrow.data import TrialData
    from marrow.models import module_for
    from marrow.priors import load_prior_set

    text = TINY if cure else TINY.replace('name = "recovery"', 'name = "recovery"\ncure = false')
    design = parse_design(
        text.replace("P(cure_fraction_leukocytic < 0.5) < 0.05", "P(median_days_leukocytic > 60) > 0.9")
    )
    assert design.analysis.spec is not None
    spec, n = design.analysis.spec, 6
    trial = next(
        t
        for t in (rt.simulate_recovery_trial(design, design.scenarios[1], np.random.default_rng(s)) for s in range(50))
        if len(set(t.center[:n].tolist())) == 3 and len(set(t.x[:n, 0].tolist())) == 2
    )
    seen = rt.observe(trial, n, 120.0, rt.analysis_time(design, trial, n))
    day = np.where(seen.weight[:, None] > 0, seen.day, 1e-9)[:n]  # no follow-up yet: censored at ~0
    lineages = ["leukocytic", "megakaryocytic"]
    ids = [f"P{i}" for i in range(n)]
    patients = pd.DataFrame(
        {"patient_id": ids, "center": [design.centers[c] for c in trial.center[:n]], "prior_atg": trial.x[:n, 0]}
    )
    recovery = pd.DataFrame(
        {
            "patient_id": np.repeat(ids, 2),
            "lineage": lineages * n,
            "day": day.ravel(),
            "recovered": seen.recovered[:n].ravel(),
        }
    )
    recovery["day_lower"] = recovery["day_upper"] = recovery["day"]
    data = TrialData(patients, recovery, ("prior_atg",), sources=())
    priors = load_prior_set("weakly-informative")
    own = module_for("recovery").build(module_for("recovery").inputs(data, spec), spec, priors)
    fixed = module_for("recovery").build(ra.analysis_inputs(design, trial, n), spec, priors)
    rng = np.random.default_rng(0)
    logp_own, logp_fixed = own.compile_logp(), fixed.compile_logp()
    for _ in range(3):
        point = {k: v + rng.normal(0, 0.5, np.shape(v)) for k, v in own.initial_point().items()}
        assert logp_fixed(point) == pytest.approx(logp_own(point), rel=1e-9, abs=1e-6)
    # A wrong weighting (the not-enrolled patients counted as censored at the follow-up) differs.
    wrong = ra.analysis_inputs(design, trial, n)
    arrays = dict(wrong.arrays)
    name = "cure_weight" if cure else "censored_weight"
    arrays[name] = 1.0 - arrays["event_weight"]
    wrong_model = module_for("recovery").build(replace(wrong, arrays=arrays), spec, priors)
    assert abs(wrong_model.compile_logp()(point) - logp_own(point)) > 1.0
