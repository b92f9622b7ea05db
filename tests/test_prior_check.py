"""Prior predictive checks on the bundled design: quantiles on familiar scales, sets compared, CLI and plot."""

from __future__ import annotations

import json
import math

import pytest

from marrow.prior_check import QUANTILES

COLUMNS = [f"{q:.0%}" for q in QUANTILES]


@pytest.fixture(scope="session")
def checks():
    """Prior checks of the response model (two covariates) under the three shipped sets."""
    from marrow.data import load_trial
    from marrow.prior_check import prior_check
    from marrow.priors import load_prior_set
    from marrow.spec import ModelSpec

    spec = ModelSpec("response", covariates=("prior_atg", "active_infection"))
    data = load_trial(None, None, spec.needs())
    return {
        name: prior_check(data, spec, load_prior_set(name), draws=1000, seed=1)
        for name in ("weakly-informative", "skeptical", "enthusiastic")
    }


def rows(check):
    return check.table.set_index("quantity")


def test_quantile_table_on_the_scales_people_think_in(checks):
    table = rows(checks["weakly-informative"])
    for label in [
        "Response rate (trial population)",
        "Response rate, Center A",
        "Response rate, new center (predictive)",
        "Odds ratio, prior_atg",
        "Highest / lowest center response rate",
        "Sd of center response rates",
        "Observed response proportion (prior predictive)",
        "Intercept (log-odds)",
    ]:
        assert label in table.index, label
    values = table[COLUMNS].to_numpy()
    assert (values[:, 1:] >= values[:, :-1]).all()  # quantiles increase
    rate = table.loc["Response rate (trial population)"]
    assert 0 < rate["5%"] < 0.2 and 0.8 < rate["95%"] < 1  # wide: close to uniform on the rate
    assert table.loc["Highest / lowest center response rate", "5%"] >= 1
    # the odds ratio of Normal(0, 1) on the log scale: median 1, 95% quantile exp(1.645)
    odds = table.loc["Odds ratio, prior_atg"]
    assert abs(math.log(odds["50%"])) < 0.15 and abs(odds["95%"] - math.exp(1.645)) < 1.0


def test_sets_differ_as_designed(checks):
    medians = {name: rows(c).loc["Response rate (trial population)", "50%"] for name, c in checks.items()}
    assert medians["skeptical"] < 0.22 < medians["weakly-informative"]
    assert 0.3 < medians["enthusiastic"] < 0.45
    spread = {name: rows(c).loc["Odds ratio, prior_atg", "95%"] for name, c in checks.items()}
    assert spread["skeptical"] < 2.2 < spread["weakly-informative"] < spread["enthusiastic"]
    assert any("P(response rate > 0.15)" in note for note in checks["skeptical"].notes)


def test_recovery_median_days_when_the_model_defines_them():
    import importlib.util

    if importlib.util.find_spec("marrow.models.recovery") is None:
        pytest.skip("recovery model not written yet")
    from marrow.data import load_trial
    from marrow.models import module_for
    from marrow.prior_check import prior_check
    from marrow.priors import load_prior_set
    from marrow.spec import ModelSpec

    spec = ModelSpec("recovery")
    module = module_for("recovery")
    if "median_days" not in [q.var for q in module.quantities(spec)]:
        pytest.skip("recovery model reports no median_days")
    data = load_trial(None, None, spec.needs())
    table = rows(prior_check(data, spec, load_prior_set(), draws=300, seed=2))
    median = [label for label in table.index if label.startswith("Median days to recovery")]
    assert len(median) == len(data.lineages)
    # log_median_mu ~ Normal(3.4, 1): the median of the medians is about exp(3.4) = 30 days
    assert all(15 < table.loc[label, "50%"] < 60 for label in median)


def test_prior_check_cli_table_plot_and_refusals(marrow_cli, tmp_path):
    plot = tmp_path / "prior-check.png"
    code, out, err = marrow_cli(
        "prior-check",
        "response",
        "--prior",
        "skeptical",
        "--draws",
        "200",
        "--covariates",
        "prior_atg",
        "--plot",
        plot,
        "--format",
        "json",
    )
    assert code == 0, err
    labels = [r["quantity"] for r in json.loads(out)["rows"]]
    assert "Odds ratio, prior_atg" in labels and "SYNTHETIC" in err
    assert plot.exists() and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))  # atomic: no temporary left behind
    code, _, err = marrow_cli("prior-check", "response", "--draws", "200", "--plot", plot)
    assert code == 2 and "already exists" in err
    code, out, _ = marrow_cli("prior-check", "response", "--draws", "200", "--outcome", "ordinal")
    assert code == 0 and "Complete response rate" in out and "note: P(response rate > 0.15)" in out


def test_prior_check_cli_errors(marrow_cli, tmp_path):
    code, _, err = marrow_cli("prior-check", "response", "--covariates", "height", "--draws", "200")
    assert code == 2 and "height" in err and "covariate asked for is absent" in err
    code, _, err = marrow_cli("prior-check", "response", "--prior", "nonsense")
    assert code == 2 and "unknown prior set 'nonsense'" in err
    code, _, err = marrow_cli("prior-check", "response", "--draws", "3")
    assert code == 2 and "--draws must be at least 10" in err
