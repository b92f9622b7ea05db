"""compare's frequentist rows follow the fits' time unit and horizons; Turnbull rows keep their estimate."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest

from marrow.data import load_trial
from marrow.errors import UsageError
from marrow.frequentist.table import Horizons, comparison_table, frequentist_rows, horizons_of
from marrow.spec import ModelSpec
from marrow.time_units import recovery_horizons

NEEDS = ModelSpec("recovery").needs()


def _fit(**spec):
    return SimpleNamespace(spec=ModelSpec(**spec))


def _in_weeks(data):
    def weeks(frame, columns):
        return frame.assign(**{c: frame[c] / 7 for c in columns})

    return replace(
        data,
        patients=weeks(data.patients, ["followup_days"]),
        recovery=weeks(data.recovery, ["day", "day_lower", "day_upper"]),
    )


def test_horizons_are_those_of_the_fits_in_their_unit():
    assert horizons_of([]) == Horizons()
    weeks = horizons_of(
        [_fit(model="recovery", time_unit="weeks"), _fit(model="survival", time_unit="weeks", horizons=(26, 52))]
    )
    assert weeks.unit == "weeks" and weeks.recovery == tuple(recovery_horizons("weeks")) and weeks.survival == (26, 52)
    both = horizons_of([_fit(model="recovery", horizons=(60,)), _fit(model="recovery", horizons=(14, 60))])
    assert both.recovery == (14, 60)
    with pytest.raises(UsageError, match="different units"):
        horizons_of([_fit(model="recovery"), _fit(model="survival", time_unit="months")])


def test_rows_in_weeks_are_kaplan_meier_at_those_weeks():
    from lifelines import KaplanMeierFitter

    data = _in_weeks(load_trial(needs=replace(NEEDS, followup=True, died=True)))
    rows = frequentist_rows(data, (), horizons=Horizons("weeks", (2.0, 8.0), (52.0,)))
    rec = rows[rows["key"] == "recovered_by"].set_index("element")
    assert set(rec.index) == {f"{lineage}, {t}" for lineage in data.lineages for t in ("2", "8")}
    assert rec.loc["leukocytic, 8", "label"] == "Recovered by week 8, leukocytic"
    mine = data.recovery[data.recovery["lineage"] == "leukocytic"]
    km = KaplanMeierFitter().fit(mine["day"], mine["recovered"])
    assert rec.loc["leukocytic, 8", "estimate"] == pytest.approx(1 - float(km.survival_function_at_times(8.0).iloc[0]))
    survival = rows[rows["key"] == "survival_at"]
    assert list(survival["label"]) == ["Survival at week 52 (12 months)"]
    assert (rows.loc[rows["key"] == "median_days", "label"].str.contains("Median weeks")).any()


def test_turnbull_rows_show_their_estimate_without_an_interval():
    data = load_trial(needs=NEEDS)
    rec = data.recovery.copy()
    recovered = rec["recovered"] == 1
    rec.loc[recovered, "day_lower"] = np.maximum(rec.loc[recovered, "day"] - 10, 0)  # seen 10 days late
    data = replace(data, recovery=rec)
    table = comparison_table(data, [], covariates=())
    turnbull = table[table["method"].str.startswith("Turnbull")]
    assert len(turnbull) == 3 * len(data.lineages)
    assert turnbull["freq"].notna().all() and turnbull["freq_lower"].isna().all()
    assert not turnbull["flag"].str.contains("not estimable").any()


def test_kaplan_meier_rows_of_visit_data_say_they_read_the_upper_day():
    data = load_trial(needs=NEEDS)
    plain = frequentist_rows(data, ())
    assert not plain.loc[plain["key"].isin(["median_days", "recovered_by"]), "flag"].str.contains("visit").any()
    rec = data.recovery.copy()
    recovered = rec["recovered"] == 1
    rec.loc[recovered, "day_lower"] = np.maximum(rec.loc[recovered, "day"] - 10, 0)
    rows = frequentist_rows(replace(data, recovery=rec), ())
    km = rows[rows["method"].str.contains("Kaplan-Meier") & rows["key"].isin(["median_days", "recovered_by"])]
    assert len(km) and km["flag"].str.contains("upper visit day").all()
