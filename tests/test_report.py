"""`marrow report` and `marrow init`: plan validation, skipping, and one end-to-end run on a small trial."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from marrow.errors import DataError, UsageError
from marrow.report.plan import load_plan, template_text
from marrow.report.run import _swap, prepare

EVIL = "<script>alert(1)</script>"


def small_trial(folder: Path) -> tuple[Path, Path]:
    """40 patients in 4 centers (one named like an XSS probe), 2 lineages, all columns every model needs."""
    rng = np.random.default_rng(3)
    n = 40
    centers = np.repeat(["North", "South", "East", EVIL], n // 4)
    x = rng.binomial(1, 0.5, n)
    response = np.where(rng.uniform(size=n) < 0.25 + 0.3 * x, np.where(rng.uniform(size=n) < 0.3, "CR", "PR"), "NR")
    followup = rng.integers(60, 900, n)
    died = rng.binomial(1, 0.25, n)
    patients = pd.DataFrame(
        {
            "patient_id": [f"Q{i:03d}" for i in range(n)],
            "center": centers,
            "response": response,
            "followup_days": followup,
            "died": died,
            "adverse_event": rng.binomial(1, 0.2, n),
            "prior_atg": x,
        }
    )
    rows = []
    for pid, resp, follow in zip(patients["patient_id"], response, followup, strict=True):
        for lineage in ("leukocytic", "erythrocytic"):
            recovered = resp != "NR" and rng.uniform() < 0.8
            day = int(rng.integers(8, 40)) if recovered else int(follow)
            rows.append(
                {"patient_id": pid, "lineage": lineage, "day": min(day, int(follow)), "recovered": int(recovered)}
            )
    patients_path, recovery_path = folder / "patients.csv", folder / "recovery.csv"
    patients.to_csv(patients_path, index=False)
    pd.DataFrame(rows).to_csv(recovery_path, index=False)
    return patients_path, recovery_path


def write_plan(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


# --- plan validation (no sampling) ----------------------------------------------------------------------


def test_defaults_on_the_bundled_trial():
    plan = load_plan()
    assert [s.name for s in plan.steps] == ["response", "ordinal", "recovery", "survival", "safety"]
    assert plan.covariates == ("prior_atg", "active_infection") and plan.synthetic
    assert (plan.settings.chains, plan.settings.draws) == (4, 1000)
    quick = load_plan(quick=True)
    assert (quick.settings.chains, quick.settings.draws, quick.settings.tune) == (2, 200, 200)
    assert not any(s.explicit for s in plan.steps)
    assert plan.settings.sampler == "auto" and not any(s.sampler for s in plan.steps)  # each model's own default


def test_a_model_can_choose_its_sampler(tmp_path):
    plan = load_plan(write_plan(tmp_path / "p.toml", '[models.recovery]\nsampler = "pymc"\n'))
    assert {s.name: s.sampler for s in plan.steps}["recovery"] == "pymc"
    plan = load_plan(write_plan(tmp_path / "q.toml", '[sampler]\nsampler = "pymc"\n'))
    assert plan.settings.sampler == "pymc" and {s.name: s.sampler for s in plan.steps}["recovery"] is None  # plan-wide
    with pytest.raises(UsageError, match="unknown sampler 'stan'"):
        load_plan(write_plan(tmp_path / "r.toml", '[models.survival]\nsampler = "stan"\n'))


def test_user_data_has_no_default_covariates(tmp_path):
    patients, _ = small_trial(tmp_path)
    assert load_plan(patients=patients).covariates == ()
    assert load_plan(patients=patients, covariates=("prior_atg",)).covariates == ("prior_atg",)


def test_template_is_a_valid_plan(tmp_path):
    plan = load_plan(write_plan(tmp_path / "analysis.toml", template_text()))
    assert [s.name for s in plan.steps] == ["response", "ordinal", "recovery", "survival", "safety"]
    assert plan.text == template_text()
    assert "http" not in template_text()


@pytest.mark.parametrize(
    "body, message",
    [
        ('[models]\nrun = ["response", "cure"]\n', "unknown model.*cure"),
        ("[models.frailty]\n", "unknown model.*frailty"),
        ('[models.survival]\nfamily = "gompertz"\n', r"\[models.survival\].*unknown family 'gompertz'"),
        ('[models.recovery]\nfamily = "weibul"\n', "unknown family 'weibul'"),
        ('[data]\npatients = "nowhere.csv"\n', "patients data file .*nowhere.csv not found"),
        ("[sampler]\nchain = 4\n", r"unknown key\(s\) chain"),
        ("[sampler]\nchains = 0\n", "chains must be at least 1"),
        ('[priors]\nset = "sceptical-ish"\n', "unknown prior set"),
        ("[thresholds]\nresponse_rate = 1.5\n", "between 0 and 1"),
        ("title = [\n", "not valid TOML"),
    ],
)
def test_plan_errors_name_the_problem(tmp_path, body, message):
    with pytest.raises(UsageError, match=message):
        load_plan(write_plan(tmp_path / "plan.toml", body))


def test_plan_paths_are_relative_to_the_plan(tmp_path):
    patients, recovery = small_trial(tmp_path)
    (tmp_path / "sub").mkdir()
    plan = load_plan(
        write_plan(
            tmp_path / "sub" / "plan.toml", '[data]\npatients = "../patients.csv"\nrecovery = "../recovery.csv"\n'
        )
    )
    assert plan.patients.resolve() == patients.resolve() and plan.recovery.resolve() == recovery.resolve()


def test_cli_plan_errors_exit_2(marrow_cli, tmp_path):
    plan = write_plan(tmp_path / "plan.toml", '[models]\nrun = ["respons"]\n')
    code, _, err = marrow_cli("report", "--plan", plan, "--out", tmp_path / "rep")
    assert code == 2 and "unknown model(s) respons" in err
    code, _, err = marrow_cli("report", "--data", tmp_path / "missing.csv", "--out", tmp_path / "rep")
    assert code == 2 and "missing.csv not found" in err
    assert not (tmp_path / "rep").exists()


def test_missing_model_module_is_skipped(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "marrow.models.safety" else real(name, *a)
    )
    steps = {s.name: s for s in prepare(load_plan())}
    assert steps["safety"].status == "skipped" and "not available" in steps["safety"].note
    assert steps["response"].status == "pending"


def test_data_without_a_models_columns(tmp_path):
    frame = pd.DataFrame({"patient_id": ["a", "b", "c"], "center": ["X", "Y", "X"], "responder": [1, 0, 0]})
    path = tmp_path / "p.csv"
    frame.to_csv(path, index=False)
    steps = {s.name: s for s in prepare(load_plan(patients=path))}
    assert steps["response"].status == "pending"
    assert steps["ordinal"].status == "skipped" and "response" in steps["ordinal"].note
    assert steps["survival"].status == "skipped" and "followup_days" in steps["survival"].note
    assert steps["recovery"].status == "skipped" and "recovery table" in steps["recovery"].note
    explicit = load_plan(
        write_plan(tmp_path / "plan.toml", '[data]\npatients = "p.csv"\n[models]\nrun = ["survival"]\n')
    )
    with pytest.raises(DataError, match="followup_days"):
        prepare(explicit)


def test_swap_replaces_the_old_folder_whole(tmp_path):
    old, new = tmp_path / "rep", tmp_path / ".rep.building"
    old.mkdir()
    (old / "stale.txt").write_text("old")
    new.mkdir()
    (new / "report.html").write_text("new")
    _swap(new, old)
    assert sorted(p.name for p in old.iterdir()) == ["report.html"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rep"]


def test_init_writes_the_template_and_refuses_to_overwrite(marrow_cli, tmp_path):
    out = tmp_path / "analysis.toml"
    code, _, err = marrow_cli("init", "--out", out)
    assert code == 0 and out.read_text() == template_text()
    code, _, err = marrow_cli("init", "--out", out)
    assert code == 2 and "already exists" in err
    assert marrow_cli("init", "--out", out, "--force")[0] == 0


# --- end to end (real sampling, small) ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def report_run(tmp_path_factory):
    from marrow.cli import main

    folder = tmp_path_factory.mktemp("report")
    patients, recovery = small_trial(folder)
    plan = write_plan(
        folder / "plan.toml",
        "\n".join(
            [
                'title = "Small trial <b>bold</b>"',
                "[data]",
                'patients = "patients.csv"',
                'recovery = "recovery.csv"',
                'covariates = ["prior_atg"]',
                "[sampler]",
                "chains = 2",
                "draws = 150",
                "tune = 150",
                "seed = 3",
                "[report]",
                "dpi = 60",
                "",
            ]
        ),
    )
    out = folder / "rep"
    (out).mkdir()
    (out / "stale.txt").write_text("from an older report")
    try:
        main(["report", "--plan", str(plan), "--out", str(out), "--force", "--quiet"])
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, out


@pytest.mark.sampling
def test_report_writes_every_part(report_run):
    code, out = report_run
    assert code == 0
    assert not (out / "stale.txt").exists()  # --force replaced the folder whole
    for name in (
        "report.html",
        "report.md",
        "manifest.json",
        "tables/headline.csv",
        "tables/headline.tex",
        "tables/response-summary.csv",
        "tables/frequentist-comparison.csv",
        "fits/response.nc",
        "figures/response-centers.pdf",
        "figures/response-centers.png",
        "figures/recovery-recovery.png",
        "figures/survival-survival.pdf",
    ):
        assert (out / name).is_file(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["name"] for s in manifest["steps"]] == ["response", "ordinal", "recovery", "survival", "safety"]
    assert all(s["status"] == "ok" for s in manifest["steps"]), [(s["name"], s["note"]) for s in manifest["steps"]]
    assert manifest["synthetic_data"] is False and manifest["data"][0]["sha256"]
    assert manifest["steps"][0]["seed"] == 3 and "diagnostics" in manifest["steps"][0]
    assert "draws = 150" in manifest["plan_text"]


@pytest.mark.sampling
def test_report_html_is_self_contained_and_escaped(report_run):
    _, out = report_run
    html = (out / "report.html").read_text()
    for section in (
        "headline",
        "response",
        "recovery",
        "survival",
        "safety",
        "diagnostics",
        "frequentist",
        "plan",
        "provenance",
    ):
        assert f'<section id="{section}">' in html, section
    assert "http://" not in html and "https://" not in html
    assert "<link" not in html and "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html  # the plan's title is user text too
    assert "data:image/png;base64," in html
    assert "SYNTHETIC DATA" not in html
    headline = html.split('<section id="headline">')[1].split("</section>")[0]
    assert "Response rate (CR or PR)" in headline and "12-month overall survival" in headline
    assert "Adverse-event rate" in headline and "Odds ratio, prior_atg" in headline
    markdown = (out / "report.md").read_text()
    assert "## Headline results" in markdown and EVIL not in markdown


@pytest.mark.sampling
def test_report_refuses_an_existing_folder(marrow_cli, report_run):
    _, out = report_run
    before = sorted(p.name for p in out.iterdir())
    code, _, err = marrow_cli("report", "--out", out, "--quick")
    assert code == 2 and "already exists" in err
    assert sorted(p.name for p in out.iterdir()) == before
