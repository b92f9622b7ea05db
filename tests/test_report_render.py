"""`marrow report` from the small stored fits, no sampling: every part written, the HTML self-contained
and escaped, the headline shown and the diagnostics of too-short chains flagged.

The sampler is the one stand-in: `fit_model` returns the stored fit of the step's spec (tests/data/fits,
real draws made by make_fits.py with the same specs). The end-to-end run with real sampling is in
test_report.py (tier `sampling`)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from conftest import load_stored_fit

STEPS = ["response", "ordinal", "recovery", "survival", "safety"]
# The plan whose steps are the stored fits' specs (make_fits.SPECS): the bundled trial, its default
# covariates, recovery with prior_atg only, the hierarchical safety model. A tiny sampler section,
# so a stand-in that stopped being called would cost seconds, not minutes (and fail below). No
# figures: drawing them doubles this test's time; test_plots.py draws every kind from the same fits,
# and test_report.py's end-to-end run checks them in the report.
PLAN = """title = "Stored fits <b>bold</b>"
[sampler]
chains = 1
draws = 20
tune = 20
seed = 3
[models.recovery]
covariates = ["prior_atg"]
[models.safety]
family = "hierarchical"
[report]
figures = false
"""


def resolved(spec):
    """`spec` with its family stated (a plan may leave the model's default family unstated)."""
    from marrow.spec import default_family

    return replace(spec, family=spec.family or default_family(spec.model))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The report folder, and the specs the stand-in sampler was asked for, in order."""
    import marrow.fits.run
    from marrow.cli import main

    asked = []

    def stored(data, spec, priors, settings, **_):
        name = "ordinal" if spec.outcome == "ordinal" else spec.model
        fit = load_stored_fit(name)
        assert resolved(spec) == resolved(fit.spec), (
            f"the plan's {name} step is not the stored fit's: {spec} != {fit.spec}"
        )
        asked.append(name)
        return fit

    folder = tmp_path_factory.mktemp("report")
    (folder / "plan.toml").write_text(PLAN, encoding="utf-8")
    out = folder / "rep"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(marrow.fits.run, "fit_model", stored)
        try:
            main(["report", "--plan", str(folder / "plan.toml"), "--out", str(out), "--quiet"])
            code = 0
        except SystemExit as exc:
            code = exc.code
    return code, out, asked


def test_every_step_used_its_stored_fit_and_wrote_its_parts(report):
    code, out, asked = report
    assert asked == STEPS  # no step sampled
    assert code == 0  # the report is written even when diagnostics fail (they are flagged in it)
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["name"] for s in manifest["steps"]] == STEPS
    assert all(s["status"] == "ok" for s in manifest["steps"]), [(s["name"], s["note"]) for s in manifest["steps"]]
    assert manifest["synthetic_data"] is True
    for name in STEPS:
        assert (out / "fits" / f"{name}.nc").is_file() and (out / "tables" / f"{name}-summary.csv").is_file()
    for name in ("report.html", "report.md", "tables/headline.csv", "tables/frequentist-comparison.csv"):
        assert (out / name).is_file(), name
    assert all(s["figures"] == [] for s in manifest["steps"]) and not any((out / "figures").iterdir())


def test_html_is_self_contained_escaped_and_flags_short_chains(report):
    _, out, _ = report
    html = (out / "report.html").read_text()
    for section in ("headline", "response", "recovery", "survival", "safety", "diagnostics", "frequentist"):
        assert f'<section id="{section}">' in html, section
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "SYNTHETIC DATA" in html
    headline = html.split('<section id="headline">')[1].split("</section>")[0]
    assert "Response rate (CR or PR)" in headline and "12-month overall survival" in headline
    assert "diagnostics FAILED" in html and "2 chains &times; 50 draws" in html
    assert "## Headline results" in (out / "report.md").read_text()
