"""`marrow simulate`, the study side: the design file, scenario simulation, the per-replicate record and the
command's mechanics (blocks, resume/add, provenance, reproducibility).

The command's tests run the real operating-characteristics modules (`marrow.simulate.rules`, `oc`,
`oc_outputs`, `calibrate`), which have their own tests.
"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from marrow.errors import UsageError
from marrow.simulate import scenarios as sc
from marrow.simulate import study as st
from marrow.simulate.design import bundled_text, parse_design, read_design
from marrow.simulate.engine import Task, tasks_for

# --- the design file ------------------------------------------------------------------------------


def test_bundled_design_is_the_bundled_trial():
    from marrow.data import Needs, load_trial

    design = read_design()
    trial = load_trial(None, None, Needs(covariates=("prior_atg", "active_infection")))
    sizes = trial.patients["center"].value_counts()
    assert design.fixed_sizes and design.n_total == len(trial.patients) == 74
    assert dict(zip(design.centers, design.center_values, strict=True)) == {c: float(n) for c, n in sizes.items()}
    prevalence = dict(design.covariates)
    for name in ("prior_atg", "active_infection"):
        assert prevalence[name] == pytest.approx(trial.patients[name].mean(), abs=0.001)
    assert design.analysis_sizes == (37, 74)
    assert design.interims[0].futility and design.go
    assert [(s.name, s.response_rate) for s in design.scenarios] == [("null", 0.15), ("target", 0.35)]
    assert (design.settings.chains, design.settings.tune, design.settings.draws) == (4, 500, 500)


def test_accrual_weights_and_interim_after_n():
    text = bundled_text().replace(
        'sizes = { "Center A" = 20, "Center B" = 15, "Center C" = 12, "Center D" = 10, "Center E" = 8, '
        '"Center F" = 5, "Center G" = 4 }',
        'weights = { "A" = 2, "B" = 1 }\ntotal = 30',
    )
    text = text.replace("after = 0.5", "after = 10").replace('"Center A" = 0.2', "")
    design = parse_design(text)
    assert not design.fixed_sizes and design.centers == ("A", "B") and design.center_weights == (2 / 3, 1 / 3)
    assert design.analysis_sizes == (10, 30)


SIZES = (
    'sizes = { "Center A" = 20, "Center B" = 15, "Center C" = 12, "Center D" = 10, "Center E" = 8, '
    '"Center F" = 5, "Center G" = 4 }'
)
BAD = {
    "unknown top key": ("replicates = 1000", "replicate = 1000", "replicate"),
    "sizes and weights": (SIZES, SIZES + '\nweights = { "A" = 1 }', "centers"),
    "size not a count": ('"Center G" = 4 }', '"Center G" = 0 }', "centers.sizes.Center G"),
    "prevalence": ("prior_atg = 0.5", "prior_atg = 1.5", "covariates.prior_atg"),
    "model name": ('name = "response"', 'name = "logistic"', "model.name"),
    "model covariate": ('covariates = ["prior_atg", "active_infection"]', 'covariates = ["age"]', "model.covariates"),
    "model key": ('outcome = "binary"', 'outcom = "binary"', "model.outcom"),
    "interim too late": ("after = 0.5\nfutility", "after = 80\nfutility", "interims[0].after"),
    "interim fraction": ("after = 0.5\nfutility", "after = 1.5\nfutility", "interims[0].after"),
    "interim without rule": ('futility = "P(response_rate > 0.25) < 0.10"', "", "interims[0]"),
    "no go rule": ('go = "P(response_rate > 0.15) > 0.95"', "", "decision.go"),
    "chains": ("chains = 4", "chains = 0", "sampler.chains"),
    "rate and center rates": (
        "response_rate = 0.15",
        'response_rate = 0.15\ncenter_rates = { "Center A" = 0.2 }',
        "scenarios[0]",
    ),
    "center rates incomplete": (
        "response_rate = 0.15\ncenter_sd = 0.5",
        'center_rates = { "Center A" = 0.2 }',
        "scenarios[0].center_rates",
    ),
    "scenario rate": ("response_rate = 0.35", "response_rate = 35", "scenarios[1].response_rate"),
    "odds ratio name": (
        "log_odds_ratios = { active_infection = -0.5 }\n\n[[scenarios]]",
        "log_odds_ratios = { age = -0.5 }\n\n[[scenarios]]",
        "scenarios[0].log_odds_ratios",
    ),
    "not toml": ("seed = 2024", "seed = = 2024", "not valid TOML"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_design_names_the_key(case):
    old, new, key = BAD[case]
    text = bundled_text()
    assert old in text, case
    with pytest.raises(UsageError) as err:
        parse_design(text.replace(old, new, 1), "bad.toml")
    assert key in str(err.value) and "bad.toml" in str(err.value)
    if case != "not toml":
        assert "expected" in str(err.value)


def test_bad_design_on_the_command_line_exits_2(tmp_path, marrow_cli):
    path = tmp_path / "bad.toml"
    path.write_text(bundled_text().replace("prior_atg = 0.5", "prior_atg = 2"), encoding="utf-8")
    code, _, err = marrow_cli("simulate", path, "--out", tmp_path / "sim")
    assert code == 2 and "covariates.prior_atg" in err and "Traceback" not in err
    assert not (tmp_path / "sim").exists()


def test_a_bad_rule_names_its_key_and_column(tmp_path, marrow_cli):
    path = tmp_path / "bad.toml"
    path.write_text(bundled_text().replace("P(response_rate > 0.25) < 0.10", "P(respons_rate > 0.25) < 0.10"))
    code, _, err = marrow_cli("simulate", path, "--out", tmp_path / "sim")
    assert code == 2 and "Traceback" not in err
    assert "bad.toml: interims[0].futility: rule 'P(respons_rate > 0.25) < 0.10', column 3" in err
    assert "did you mean 'response_rate'" in err and not (tmp_path / "sim").exists()


def test_init_design_writes_the_template(tmp_path, marrow_cli):
    out = tmp_path / "design.toml"
    code, _, _ = marrow_cli("init", "--design", "--out", out)
    assert code == 0 and out.read_text(encoding="utf-8") == bundled_text()
    assert read_design(out).n_total == 74
    assert marrow_cli("init", "--design", "--out", out)[0] == 2  # no overwrite without --force


# --- scenarios ------------------------------------------------------------------------------------


def _many(design, scenario, n_trials: int, seed: int = 5):
    rng = np.random.default_rng(seed)
    alpha = sc.intercepts(design, scenario)
    return [sc.simulate_trial(design, scenario, rng, alpha) for _ in range(n_trials)]


def test_simulated_trials_recover_the_population_rate():
    # A large center sd: the intercept logit(rate) would miss the population rate by far more than MC error.
    design = read_design()
    scenario = replace(design.scenarios[0], response_rate=0.2, center_sd=1.2)
    trials = _many(design, scenario, 3000)
    observed = np.array([t.responder.mean() for t in trials])
    truth = np.array([t.true_response_rate for t in trials])
    se = observed.std(ddof=1) / np.sqrt(len(observed))
    assert abs(observed.mean() - 0.2) < 4 * se
    assert abs(truth.mean() - 0.2) < 4 * truth.std(ddof=1) / np.sqrt(len(truth))
    assert truth.std() > 0.02  # the center effects vary per replicate
    assert abs(sc.intercepts(design, scenario)[0] - np.log(0.2 / 0.8)) > 0.1
    for t in trials[:20]:
        assert np.array_equal(np.bincount(t.center, minlength=7), np.array(design.center_values))
    prevalence = np.concatenate([t.x for t in trials]).mean(axis=0)
    assert np.allclose(prevalence, [p for _, p in design.covariates], atol=0.01)


def test_center_rates_and_accrual_weights():
    text = bundled_text().replace(SIZES, 'weights = { "A" = 3, "B" = 1 }\ntotal = 40')
    text = text.replace("response_rate = 0.15\ncenter_sd = 0.5", 'center_rates = { "A" = 0.1, "B" = 0.6 }')
    design = parse_design(text)
    scenario = design.scenarios[0]
    assert sc.scenario_rate(design, scenario) == pytest.approx(0.75 * 0.1 + 0.25 * 0.6)
    trials = _many(design, scenario, 2000)
    centers = np.concatenate([t.center for t in trials])
    responders = np.concatenate([t.responder for t in trials])
    assert all(len(t.center) == 40 for t in trials)
    assert abs((centers == 0).mean() - 0.75) < 0.01
    for c, rate in enumerate((0.1, 0.6)):
        got = responders[centers == c].mean()
        assert abs(got - rate) < 4 * np.sqrt(rate * (1 - rate) / (centers == c).sum())


# --- the response model's inputs at an interim ------------------------------------------------------


def test_interim_inputs_keep_the_design_shapes_with_fewer_patients():
    design = read_design()
    trial = sc.simulate_trial(design, design.scenarios[1], np.random.default_rng(3))
    template = st.response_inputs(design)
    full = st.response_inputs(design, trial, 74)
    early = st.response_inputs(design, trial, 9)
    for inputs in (full, early):
        assert {k: v.shape for k, v in inputs.arrays.items()} == {k: v.shape for k, v in template.arrays.items()}
        assert inputs.coords == template.coords
        assert inputs.arrays["cell_weight"].sum() == pytest.approx(1.0)
        assert np.allclose(inputs.arrays["center_weight"].sum(axis=1), 1.0)
    assert full.arrays["cell_n"].sum() == 74 and early.arrays["cell_n"].sum() == 9
    assert early.arrays["cell_responders"].sum() == trial.responder[:9].sum()
    assert (early.arrays["cell_n"] == 0).any()
    # The cells follow marrow.models.response.inputs: a real fit's cells of the same patients agree.
    from marrow.api import from_frames
    from marrow.models.response import inputs as model_inputs

    frame = pd.DataFrame(
        {
            "patient_id": [f"P{i}" for i in range(74)],
            "center": [design.centers[c] for c in trial.center],
            "response": np.where(trial.responder == 1, "PR", "NR"),
            "prior_atg": trial.x[:, 0].astype(int),
            "active_infection": trial.x[:, 1].astype(int),
        }
    )
    data = from_frames(frame, covariates=design.analysis.spec.covariates)
    real = model_inputs(data, design.analysis.spec)
    ours = dict(
        zip(full.coords["cell"], zip(full.arrays["cell_n"], full.arrays["cell_responders"], strict=True), strict=True)
    )
    for label, n, y in zip(real.coords["cell"], real.arrays["cell_n"], real.arrays["cell_responders"], strict=True):
        assert ours[label] == (n, y)


# --- the conjugate beta-binomial analysis ------------------------------------------------------------


def _beta_design(a: float = 0.5, b: float = 1.5):
    text = bundled_text().replace(
        'name = "response"\noutcome = "binary"\n', f'name = "beta-binomial"\na = {a}\nb = {b}\n'
    )
    text = re.sub(r'covariates = \["prior_atg", "active_infection"\]\nprior = .*\n', "", text)
    return parse_design(text)


TERMS = (
    ("P(response_rate > 0.25)", "response_rate", ">", 0.25),
    ("P(response_rate <= 0.15)", "response_rate", "<=", 0.15),
)


def test_beta_binomial_gives_the_exact_beta_posterior():
    design = _beta_design()
    study = st.Study(design, None, TERMS)
    task = Task("target", 1, 0, 777)
    record = st.run_replicate(study, task)
    trial = sc.simulate_trial(design, design.scenarios[1], np.random.default_rng(777))
    for k, n in ((1, 37), (2, 74)):
        y = trial.responder[:n].sum()
        post = stats.beta(0.5 + y, 1.5 + n - y)
        assert record[f"a{k}:n"] == n
        assert record[f"a{k}:mean:response_rate"] == pytest.approx((0.5 + y) / (2 + n))
        for t in (0.05, 0.15, 0.3, 0.6):
            assert record[f"a{k}:exceed:{t:.2f}:response_rate"] == pytest.approx(post.sf(t), abs=1e-12)
        assert record[f"a{k}:quantile:0.025:response_rate"] == pytest.approx(post.ppf(0.025))
        assert record[f"a{k}:rule:P(response_rate > 0.25)"] == pytest.approx(post.sf(0.25))
        assert record[f"a{k}:rule:P(response_rate <= 0.15)"] == pytest.approx(post.cdf(0.15))
    assert record["diagnostics_failed"] is False
    assert record["true:response_rate"] == pytest.approx(trial.probability.mean())
    # The interim sees half the patients: its posterior is wider.
    width = {
        k: record[f"a{k}:quantile:0.975:response_rate"] - record[f"a{k}:quantile:0.025:response_rate"] for k in (1, 2)
    }
    assert width[1] > width[2]


def test_draw_functionals_match_their_definitions():
    draws = np.random.default_rng(0).beta(3, 7, 4000)
    out = st.draw_functionals({"response_rate": draws}, TERMS)
    assert out["exceed:0.30:response_rate"] == (draws > 0.3).mean()
    assert out["rule:P(response_rate <= 0.15)"] == (draws <= 0.15).mean()
    assert out["quantile:0.5:response_rate"] == np.median(draws)
    assert len([k for k in out if k.startswith("exceed:")]) == 101


# --- fits of identical data are made once, with a seed from the data ---------------------------------


def test_identical_data_are_fitted_once_with_a_seed_from_the_data(monkeypatch):
    import json

    import xarray as xr

    from marrow.simulate import refit

    seeds = []

    class FakeRefitter:  # plumbing only: a mocked sampler, it proves nothing about a posterior
        def fit(self, inputs, seed):
            seeds.append(seed)
            rate = np.random.default_rng(seed).uniform(size=(2, 50))
            return refit.Refit(xr.Dataset({"response_rate": (("chain", "draw"), rate)}), 0, 1.0, 500.0, 500.0)

    monkeypatch.setattr(refit, "refitter_for", lambda *a, **k: FakeRefitter())
    monkeypatch.setattr(st, "_FITS", st.OrderedDict())
    design = read_design()
    study = st.Study(design, object(), TERMS)  # priors are only hashed here
    monkeypatch.setattr(refit, "design_key", lambda *a, **k: json.dumps(a[2].to_json()))  # settings
    one = sc.simulate_trial(design, design.scenarios[0], np.random.default_rng(1))
    other = sc.simulate_trial(design, design.scenarios[0], np.random.default_rng(2))
    first = st.analyse_response(study, st.response_inputs(design, one, 37))
    again = st.analyse_response(study, st.response_inputs(design, one, 37))
    third = st.analyse_response(study, st.response_inputs(design, other, 37))
    assert first == again and len(seeds) == 2 and seeds[0] != seeds[1]
    st._FITS.clear()  # another process: fitted anew, with the same seed, so the same result
    assert st.analyse_response(study, st.response_inputs(design, one, 37)) == first and seeds[2] == seeds[0]
    assert third != first
    # Workers sample chains one by one (cores=1), this process in parallel: the same seed either way.
    serial = st.Study(replace(design, settings=replace(design.settings, cores=1)), object(), TERMS)
    assert st.analyse_response(serial, st.response_inputs(design, one, 37)) == first and seeds[3] == seeds[0]


# --- the command: a tiny real study --------------------------------------------------------------------


TINY = """
seed = 7
replicates = 2
[centers]
sizes = { "A" = 6, "B" = 5, "C" = 5 }
[covariates]
prior_atg = 0.5
[model]
name = "response"
covariates = ["prior_atg"]
[sampler]
chains = 2
tune = 100
draws = 100
[[interims]]
after = 0.5
futility = "P(response_rate > 0.25) < 0.10"
[decision]
go = "P(response_rate > 0.15) > 0.95"
[[scenarios]]
name = "null"
response_rate = 0.15
center_sd = 0.5
[[scenarios]]
name = "target"
response_rate = 0.4
center_sd = 0.5
log_odds_ratios = { prior_atg = 0.5 }
"""


def contract_columns(k_max: int, terms: list[str]) -> set[str]:
    cols = {"scenario", "scenario_index", "replicate", "seed", "true:response_rate", "diagnostics_failed"}
    for k in range(1, k_max + 1):
        cols |= {f"a{k}:n", f"a{k}:mean:response_rate", f"a{k}:divergences", f"a{k}:max_rhat"}
        cols |= {f"a{k}:min_ess_bulk", f"a{k}:min_ess_tail"}
        cols |= {
            f"a{k}:quantile:{p}:response_rate"
            for p in ("0.025", "0.05", "0.1", "0.25", "0.5", "0.75", "0.9", "0.95", "0.975")
        }
        cols |= {f"a{k}:exceed:{t / 100:.2f}:response_rate" for t in range(101)}
        cols |= {f"a{k}:rule:{term}" for term in terms}
    return cols


def _go(records: pd.DataFrame, cutoff: float = 0.95) -> pd.Series:
    """TINY's decisions, written out: stop for futility at the interim when P(rate > 0.25) < 0.10,
    else go when P(rate > 0.15) > cutoff at the final analysis."""
    stopped = records["a1:rule:P(response_rate > 0.25)"] < 0.10
    return ~stopped & (records["a2:rule:P(response_rate > 0.15)"] > cutoff)


def _printed_row(stdout: str, label: str) -> list[str]:
    """The cells of a row of the printed (one column per scenario) OC table."""
    line = next(line for line in stdout.splitlines() if line.startswith(f"│ {label} "))
    return [cell.strip() for cell in line.strip("│").split("│")[1:]]


@pytest.mark.sampling
def test_tiny_study_through_the_cli(tmp_path, marrow_cli):
    import json

    design_path = tmp_path / "design.toml"
    design_path.write_text(TINY, encoding="utf-8")
    out = tmp_path / "sim"
    code, stdout, err = marrow_cli(
        "simulate", design_path, "--out", out, "--in-process", "--quiet", "--replicates", "1"
    )
    assert code == 0, err
    assert "P(go)" in stdout and "P(stop futility @1)" in stdout
    assert "P(stop efficacy" not in stdout and "P(gray)" not in stdout  # TINY has neither rule
    code, stdout, err = marrow_cli("simulate", design_path, "--out", out, "--in-process", "--quiet", "--add", "1")
    assert code == 0, err
    records = pd.read_parquet(out / "records.parquet")
    assert len(records) == 4 and "error" not in records
    assert set(records.columns) == contract_columns(2, ["P(response_rate > 0.25)", "P(response_rate > 0.15)"])
    assert (records["a1:n"] == 8).all() and (records["a2:n"] == 16).all()
    assert records["a2:quantile:0.025:response_rate"].lt(records["a2:quantile:0.975:response_rate"]).all()
    assert ((records["a1:exceed:0.25:response_rate"] - records["a1:rule:P(response_rate > 0.25)"]).abs() < 1e-12).all()
    study = json.loads((out / "study.json").read_text())
    assert study["replicates"] == 2 and study["design_sha256"] and study["versions"]["marrow"]
    assert study["prior"]["name"] == "weakly-informative" and study["settings"]["draws"] == 100
    assert (out / "design.toml").read_text() == TINY and (out / "oc.csv").exists()
    assert len(list((out / "blocks").glob("*.parquet"))) == 4
    # The OC table printed and written: P(go) per scenario as the rules decide it from the records.
    go = _go(records).groupby(records["scenario"]).mean()
    table = pd.read_csv(out / "oc.csv", keep_default_na=False).set_index("scenario")  # "null" is a name
    assert list(table.index) == ["null", "target"] and (table["replicates"] == 2).all()
    for name in ("null", "target"):
        assert table.loc[name, "P(go)"] == pytest.approx(go[name])
        assert table.loc[name, "P(go) mcse"] == pytest.approx(np.sqrt(go[name] * (1 - go[name]) / 2))
    assert _printed_row(stdout, "P(go)") == [
        f"{table.loc[s, 'P(go)']:.3f} ({table.loc[s, 'P(go) mcse']:.3f})" for s in ("null", "target")
    ]
    assert _printed_row(stdout, "replicates") == ["2", "2"]
    html = (out / "oc.html").read_text(encoding="utf-8")
    assert "P(response_rate &gt; 0.15) &gt; 0.95" in html and "Operating characteristics" in html
    assert (out / "oc.png").read_bytes().startswith(b"\x89PNG")

    # --calibrate on the finished study re-reads its records: no refit.
    def no_refit(*args, **kwargs):
        raise AssertionError("refitted")

    st._FITS.clear()  # no cached fit either
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("marrow.simulate.refit.refitter_for", no_refit)
        code, stdout, err = marrow_cli("simulate", design_path, "--out", out, "--in-process", "--quiet", "--calibrate")
    assert code == 0, err
    # The calibrated cut-off keeps P(go | null) <= alpha = 0.1, checked on the records themselves.
    found = re.search(r"cut-off 0\.95 -> ([0-9.]+); P\(go\) under 'null' \(the type I error\) = ([0-9.]+)", stdout)
    assert found, stdout
    cutoff, achieved = float(found[1]), float(found[2])
    null = records[records["scenario"] == "null"]
    assert achieved <= 0.1 and _go(null, cutoff).mean() == pytest.approx(achieved, abs=5e-4)
    assert cutoff == 0 or _go(null, cutoff - 1e-3).mean() > 0.1  # the smallest such cut-off
    assert "OC at the calibrated cut-off" in stdout and "Calibration" in (out / "oc.html").read_text(encoding="utf-8")
    pd.testing.assert_frame_equal(records, pd.read_parquet(out / "records.parquet"))

    # Without --resume/--add/--force the folder is refused; a fresh run of 2 (no fit cache) is identical.
    assert marrow_cli("simulate", design_path, "--out", out, "--in-process", "--quiet")[0] == 2
    st._FITS.clear()
    again = tmp_path / "again"
    code, _, err = marrow_cli("simulate", design_path, "--out", again, "--in-process", "--quiet")
    assert code == 0, err
    pd.testing.assert_frame_equal(records, pd.read_parquet(again / "records.parquet"))


def test_same_task_same_record_and_tasks_from_the_design_seed():
    design = _beta_design()
    study = st.Study(design, None, TERMS)
    tasks = tasks_for(design.seed, design.scenario_names(), 3)
    first = pd.DataFrame([st.run_replicate(study, t) for t in tasks])
    backwards = pd.DataFrame([st.run_replicate(study, t) for t in reversed(tasks)][::-1])
    pd.testing.assert_frame_equal(first, backwards)
    assert first["a2:mean:response_rate"].nunique() > 1


def _single_arm(rate: float, n: int = 40):
    """A beta-binomial design with no center or covariate effects: responders ~ Binomial(n, rate) exactly."""
    return parse_design(
        f"""
seed = 3
[centers]
sizes = {{ "A" = {n // 2}, "B" = {n - n // 2} }}
[model]
name = "beta-binomial"
a = 1
b = 1
[decision]
go = "P(response_rate > 0.2) > 0.9"
[[scenarios]]
name = "s"
response_rate = {rate}
"""
    )


@pytest.mark.parametrize("rate", [0.2, 0.3, 0.4])
def test_simulated_go_agrees_with_the_closed_form_within_3_mcse(rate):
    design = _single_arm(rate)
    study = st.Study(design, None, (("P(response_rate > 0.2)", "response_rate", ">", 0.2),))
    records = pd.DataFrame([st.run_replicate(study, t) for t in tasks_for(design.seed, ["s"], 1500)])
    go = (records["a1:rule:P(response_rate > 0.2)"] > 0.9).to_numpy()
    n = 40
    critical = min(y for y in range(n + 1) if stats.beta(1 + y, 1 + n - y).sf(0.2) > 0.9)
    exact = stats.binom(n, rate).sf(critical - 1)
    mcse = np.sqrt(exact * (1 - exact) / len(go))
    assert abs(go.mean() - exact) < 3 * mcse


def test_local_cluster_and_in_process_give_the_same_records():
    from functools import partial

    from marrow.simulate.engine import run_tasks

    design = _beta_design()
    study = st.Study(design, None, TERMS)
    tasks = tasks_for(design.seed, design.scenario_names(), 6)
    here = run_tasks(partial(st.run_replicate, study), tasks, scheduler="process")
    there = run_tasks(partial(st.run_replicate, study), tasks, n_workers=1, block_size=4)
    pd.testing.assert_frame_equal(here, there)


def test_estimate_writes_nothing(tmp_path, marrow_cli):
    path = tmp_path / "design.toml"
    path.write_text(_beta_design().text, encoding="utf-8")
    code, out, err = marrow_cli("simulate", path, "--out", tmp_path / "sim", "--estimate", "--in-process")
    assert code == 0, err
    assert "Projected" in out and not (tmp_path / "sim").exists()
    assert "2,000 simulated trials (1,000 per scenario x 2 scenarios)" in out  # the design's 1,000 replicates


def test_ctrl_c_says_how_to_resume_and_resume_keeps_the_studys_size(tmp_path, marrow_cli, monkeypatch):
    import json

    from marrow.simulate import engine

    path, out = tmp_path / "design.toml", tmp_path / "sim"
    path.write_text(_beta_design().text, encoding="utf-8")  # replicates = 1000 in the file

    def interrupted(*args, **kwargs):
        raise engine.StudyInterrupted(f"interrupted: 0 of 2 blocks finished in {out / 'blocks'}")

    with monkeypatch.context() as patch:
        patch.setattr(engine, "run_tasks", interrupted)
        code, _, err = marrow_cli("simulate", path, "--out", out, "--in-process", "--replicates", "3")
    assert code == 130 and f"`marrow simulate {path} --out {out} --resume`" in err and "Traceback" not in err
    study = json.loads((out / "study.json").read_text())
    assert study["replicates"] == 3 and study["finished"] is False and study["elapsed_s"] is None
    code, _, err = marrow_cli("simulate", path, "--out", out, "--in-process", "--resume", "--quiet")
    assert code == 0, err
    assert len(pd.read_parquet(out / "records.parquet")) == 6  # 3 per scenario, not the file's 1000
    assert json.loads((out / "study.json").read_text())["finished"] is True
