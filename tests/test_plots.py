"""Figures: every kind renders from a small stored fit (tests/data/fits: real draws, no sampling here),
shows what it should, and gives the same bytes twice."""

from __future__ import annotations

import struct

import pytest

from marrow.data import load_trial
from marrow.errors import UsageError
from marrow.plots import KINDS, kinds_for, render
from marrow.plots.style import figure_bytes, format_for, parse_width

COVARIATES = ("prior_atg", "active_infection")
LINEAGES = ["leukocytic", "erythrocytic", "megakaryocytic"]


def _fit(stored_fit, name: str):
    """A small stored fit (tests/data/fits) and the bundled trial it was made from."""
    fit = stored_fit(name)
    return fit, load_trial(needs=fit.spec.needs())


@pytest.fixture(scope="session")
def response_fit(stored_fit):
    return _fit(stored_fit, "response")


@pytest.fixture(scope="session")
def recovery_fit(stored_fit):
    return _fit(stored_fit, "recovery")


@pytest.fixture(scope="session")
def survival_fit(stored_fit):
    return _fit(stored_fit, "survival")


@pytest.fixture(scope="session")
def saved_response(response_fit, tmp_path_factory):
    path = tmp_path_factory.mktemp("fits") / "response.nc"
    response_fit[0].save(path)
    return path


def _ytick_labels(ax) -> list[str]:
    return [t.get_text() for t in ax.get_yticklabels()]


def test_ppc_shows_every_center_and_the_total(response_fit):
    fit, _ = response_fit
    fig = render("ppc", fit)
    left, right = fig.axes
    labels = _ytick_labels(left)
    assert len(labels) == 7 and labels[0].startswith("Center A (n=")
    assert left.get_xlabel() == "Responders per center (patients)"
    assert right.get_xlabel() == "Total responders (patients)"
    observed = int(fit.idata.observed_data["total_responders"])
    assert any(line.get_xdata()[0] == observed for line in right.get_lines())


def test_centers_shows_raw_and_pooled_rate_per_center(response_fit):
    fit, _ = response_fit
    fig = render("centers", fit)
    (ax,) = fig.axes
    labels = _ytick_labels(ax)
    assert len(labels) == 7
    assert all("/" in label for label in labels)  # k/n beside each center
    assert ax.get_xlabel() == "Response rate (%)"
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("observed" in t for t in legend) and any("partially pooled" in t for t in legend)
    assert any("new center" in t for t in legend) and any("pooled rate" in t for t in legend)


def test_clopper_pearson_matches_scipy():
    from scipy.stats import binomtest

    from marrow.plots.centers import clopper_pearson

    for k, n in [(0, 5), (3, 10), (7, 7), (1, 4)]:
        ci = binomtest(k, n).proportion_ci(0.95, method="exact")
        assert clopper_pearson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_effects_puts_bayesian_beside_frequentist(response_fit, survival_fit):
    fit, data = response_fit
    fig = render("effects", fit, data)
    (ax,) = fig.axes
    assert ax.get_xscale() == "log"
    assert _ytick_labels(ax) == list(COVARIATES)
    assert "Odds ratio" in ax.get_xlabel()
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("Bayesian" in t for t in legend) and any("frequentist" in t for t in legend)
    fit, data = survival_fit
    (ax,) = render("effects", fit, data).axes
    assert "Time ratio" in ax.get_xlabel()


def test_recovery_draws_each_lineage_with_numbers_at_risk(recovery_fit):
    fit, data = recovery_fit
    fig = render("recovery", fit, data)
    assert len(fig.axes) == 2 * len(LINEAGES)  # curve panel + at-risk strip per lineage
    titles = [ax.get_title(loc="left") for ax in fig.axes if ax.get_title(loc="left")]
    assert [t.split(" (")[0] for t in titles] == LINEAGES
    assert fig.axes[0].get_ylabel() == "Recovered (%)"
    risk_texts = [t.get_text() for t in fig.axes[1].texts]
    assert "Number at risk" in risk_texts and "74" in risk_texts


def test_recovery_reloads_data_from_provenance(recovery_fit):
    fit, _ = recovery_fit
    fig = render("recovery", fit)  # data found through the fit's data_sources
    assert len(fig.axes) == 6


def test_survival_km_with_posterior_band(survival_fit):
    fit, data = survival_fit
    fig = render("survival", fit, data)
    ax, risk = fig.axes
    assert ax.get_ylabel() == "Alive (%)"
    assert risk.get_xlabel() == "Days since treatment"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "Kaplan\u2013Meier" in labels and "censored" in labels and "model, 95% CrI" in labels


def test_prior_posterior_has_a_panel_per_parameter_element(response_fit):
    fit, _ = response_fit
    fig = render("prior-posterior", fit)
    titles = sorted(ax.get_title(loc="left") for ax in fig.axes if ax.get_visible())
    assert titles == sorted(["intercept", "center_sd", "beta[prior_atg]", "beta[active_infection]"])


@pytest.mark.parametrize("kind", ["trace", "rank", "energy"])
def test_arviz_kinds_render(response_fit, kind):
    fit, _ = response_fit
    fig = render(kind, fit)
    assert len(fig.axes) >= 1
    assert fig.get_size_inches()[0] == pytest.approx(7.2)


def test_loo_pit_errors_clearly_for_count_predictive(response_fit):
    fit, _ = response_fit
    with pytest.raises(UsageError, match="loo-pit is not available.*per patient"):
        render("loo-pit", fit)
    assert "loo-pit" not in kinds_for(fit)


def test_wrong_kind_for_the_fit_is_a_usage_error(response_fit):
    fit, _ = response_fit
    with pytest.raises(UsageError, match="cumulative_incidence"):
        render("recovery", fit)


@pytest.mark.parametrize("kind", ["centers", "recovery", "trace"])
def test_same_fit_same_bytes(response_fit, recovery_fit, kind):
    fit, data = recovery_fit if kind == "recovery" else response_fit
    for fmt in ("pdf", "svg", "png"):
        first = figure_bytes(render(kind, fit, data), fmt, dpi=100)
        second = figure_bytes(render(kind, fit, data), fmt, dpi=100)
        assert first == second, fmt


def test_pdf_embeds_truetype_and_no_timestamps(response_fit):
    fit, _ = response_fit
    fig = render("centers", fit)
    pdf = figure_bytes(fig, "pdf")
    assert b"/FontFile2" in pdf and b"/Type3" not in pdf
    assert b"/CreationDate" not in pdf
    svg = figure_bytes(fig, "svg")
    assert b"<dc:date>" not in svg


def test_width_and_format_parsing():
    assert parse_width("single") == 3.5 and parse_width("double") == 7.2 and parse_width("5") == 5.0
    with pytest.raises(UsageError):
        parse_width("wide")
    assert format_for("a.PDF") == "pdf" and format_for("b.tif") == "tiff"
    with pytest.raises(UsageError, match="jpg"):
        format_for("c.jpg")
    assert set(KINDS) >= {"ppc", "centers", "recovery", "survival", "effects", "prior-posterior", "loo-pit"}


def _png_size(path) -> tuple[int, int]:
    return struct.unpack(">II", path.read_bytes()[16:24])


def test_cli_plot_writes_refuses_and_overwrites(marrow_cli, saved_response, tmp_path):
    out = tmp_path / "fig.png"
    code, _, err = marrow_cli(
        "plot", saved_response, "--kind", "centers", "--out", out, "--width", "single", "--dpi", "100"
    )
    assert code == 0, err
    width, _ = _png_size(out)
    assert width == 350  # exactly 3.5 in at 100 dpi: journal column width
    code, _, err = marrow_cli("plot", saved_response, "--kind", "centers", "--out", out)
    assert code == 2 and "already exists" in err
    code, _, err = marrow_cli("plot", saved_response, "--kind", "ppc", "--out", out, "--force", "--style", "ggplot")
    assert code == 0, err
    code, _, err = marrow_cli("plot", saved_response, "--kind", "ppc", "--out", tmp_path / "fig.jpg")
    assert code == 2 and ".pdf, .svg, .png or .tiff" in err
    code, _, err = marrow_cli("plot", saved_response, "--kind", "loo-pit", "--out", tmp_path / "l.pdf")
    assert code == 2 and "loo-pit is not available" in err
    code, _, err = marrow_cli("plot", saved_response, "--kind", "trace", "--out", tmp_path / "t.svg", "--style", "nope")
    assert code == 2 and "unknown style" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png"]  # no temp files left behind
