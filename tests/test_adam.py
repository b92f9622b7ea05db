"""ADaM input: the bundled ADaM files give the same TrialData (and the same posterior) as the CSVs;
every format reads; the mapping overrides; bad ADaM data name the dataset, variable and USUBJIDs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyreadstat
import pytest

from marrow import datasets
from marrow.data import Needs, load_trial
from marrow.data.adam import (
    DEFAULT_MAPPING,
    AdamInput,
    adam_for_fits,
    load_adam,
    load_input,
    load_mapping,
    read_dataset,
    template_text,
)
from marrow.data.load import file_sha256
from marrow.datasets.reconstruct import write
from marrow.errors import DataError, ProblemList, UsageError
from marrow.spec import ModelSpec

BUNDLED = AdamInput.from_options(datasets.ADAM_DIR)
COVARIATES = ("prior_atg", "active_infection", "age")
SPECS = {  # every model's needs, with covariates where the model takes them
    "response": ModelSpec(model="response", covariates=COVARIATES),
    "ordinal": ModelSpec(model="response", outcome="ordinal", covariates=COVARIATES),
    "recovery": ModelSpec(model="recovery", covariates=("prior_atg", "active_infection")),
    "survival": ModelSpec(model="survival", covariates=("age",)),
    "safety": ModelSpec(model="safety"),
}


def read_xpt(name: str) -> pd.DataFrame:
    frame, _ = pyreadstat.read_xport(str(datasets.ADAM_DIR / f"{name}.xpt"))
    return frame


def write_adam(folder: Path, adsl=None, adrs=None, adtte=None, suffix=".xpt", version=5) -> Path:
    """The bundled datasets (or edited copies) written to `folder` in one format."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = {"adsl": adsl, "adrs": adrs, "adtte": adtte}
    for name, frame in frames.items():
        frame = read_xpt(name) if frame is None else frame
        path = folder / f"{name}{suffix}"
        if suffix == ".xpt":
            pyreadstat.write_xport(frame, str(path), table_name=name.upper(), file_format_version=version)
        elif suffix == ".csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
    return folder


def assert_same_trial(a, b) -> None:
    pd.testing.assert_frame_equal(a.patients, b.patients)
    if b.recovery is None:
        assert a.recovery is None
    else:
        pd.testing.assert_frame_equal(a.recovery, b.recovery)
    assert a.coords() == b.coords()
    assert a.covariates == b.covariates
    np.testing.assert_array_equal(a.center_index, b.center_index)
    np.testing.assert_array_equal(a.covariate_matrix(), b.covariate_matrix())


def problems(source: AdamInput, needs: Needs = Needs()) -> list[str]:  # noqa: B008 (Needs is a frozen dataclass: an immutable default)
    with pytest.raises(DataError) as info:
        load_adam(source, needs)
    return [p.describe() for p in info.value.problems]


# --- the bundled trial: same TrialData on both routes -----------------------------------------------------


@pytest.mark.parametrize("name", list(SPECS))
def test_bundled_adam_gives_the_csv_trial(name):
    needs = SPECS[name].needs()
    adam, csv = load_adam(BUNDLED, needs), load_trial(needs=needs)
    assert_same_trial(adam, csv)
    assert adam.synthetic and len(adam.patients) == 74
    hashes = adam.hashes()
    assert set(hashes) == {"adsl", "adrs", "adtte", "adam_mapping"}
    assert hashes["adtte"] == file_sha256(datasets.ADTTE_XPT)
    assert hashes["adam_mapping"] == file_sha256(DEFAULT_MAPPING)
    assert {s.role: s.rows for s in adam.sources}["adtte"] == 74 * 4


def test_bundled_adam_files_regenerate_byte_for_byte(tmp_path):
    write(tmp_path)
    for path in (datasets.ADSL_XPT, datasets.ADRS_XPT, datasets.ADTTE_XPT):
        assert (tmp_path / path.name).read_bytes() == path.read_bytes(), path.name
    assert pd.read_sas(datasets.ADSL_XPT, format="xport").shape == (74, 12)  # a valid XPORT v5 file


@pytest.mark.parametrize("suffix,version", [(".xpt", 8), (".csv", 5), (".parquet", 5)])
def test_other_formats_read_the_same(tmp_path, suffix, version):
    folder = write_adam(tmp_path / "adam", suffix=suffix, version=version)
    needs = Needs(ordinal=True, followup=True, died=True, adverse_event=True, recovery=True, covariates=COVARIATES)
    assert_same_trial(load_adam(AdamInput.from_options(folder), needs), load_trial(needs=needs))


def test_units_labels_formats_flags_and_codes(tmp_path):
    adsl, adrs, adtte = read_xpt("adsl"), read_xpt("adrs"), read_xpt("adtte")
    adsl["TRTSDT"] = pd.Timestamp("2015-03-01").date()  # a date variable with a SAS format rides along
    factor = {"OS": ("WEEKS", 7.0), "TTRLEUK": ("MONTHS", 365.25 / 12), "TTRERY": ("years", 365.25)}
    for paramcd, (unit, days) in factor.items():
        rows = adtte["PARAMCD"] == paramcd
        adtte.loc[rows, "AVAL"] = adtte.loc[rows, "AVAL"] / days
        adtte.loc[rows, "AVALU"] = unit
    adtte.loc[adtte["CNSR"] == 1, "CNSR"] = 2.0  # any whole number >= 1 is censored
    # A second BESTRSP record not flagged for analysis, and progressive disease counted as NR.
    extra = adrs.iloc[[0]].assign(AVALC="CR", ANL01FL="")
    adrs = pd.concat([adrs, extra], ignore_index=True)
    nr = adrs["AVALC"] == "NR"
    adrs.loc[nr, "AVALC"] = np.where(np.arange(nr.sum()) % 2 == 0, "PD", "NE")
    folder = tmp_path / "adam"
    folder.mkdir()
    pyreadstat.write_xport(
        adsl,
        str(folder / "ADSL.XPT"),
        column_labels={"USUBJID": "Unique Subject Identifier"},
        variable_format={"TRTSDT": "DATE9."},
        table_name="ADSL",
    )
    write_adam(folder, adsl=None, adrs=adrs, adtte=adtte)
    (folder / "adsl.xpt").unlink()  # the upper-case ADSL.XPT above is found instead
    source = AdamInput.from_options(folder)
    assert source.adsl.name == "ADSL.XPT"
    read = read_dataset("ADSL", source.adsl, ProblemList())
    assert read.table["TRTSDT"].iloc[0] == "2015-03-01" and read.labels["USUBJID"] == "Unique Subject Identifier"
    data = load_adam(source, Needs(ordinal=True, followup=True, died=True, recovery=True, covariates=("AGE",)))
    csv = load_trial(needs=Needs(ordinal=True, followup=True, died=True, recovery=True, covariates=("age",)))
    np.testing.assert_allclose(data.patients["followup_days"], csv.patients["followup_days"], rtol=1e-12)
    np.testing.assert_allclose(data.recovery["day"], csv.recovery["day"], rtol=1e-12)
    assert data.recovery["recovered"].tolist() == csv.recovery["recovered"].tolist()
    assert data.patients["died"].tolist() == csv.patients["died"].tolist()
    assert data.patients["response"].tolist() == csv.patients["response"].tolist()
    assert data.patients["AGE"].tolist() == csv.patients["age"].tolist()  # any ADSL variable, by its name


def test_population_flags_and_mapping_override(tmp_path):
    adsl = read_xpt("adsl").rename(columns={"SITEID": "SITEGR1", "PRATGFL": "PRIORATG"})
    adsl.loc[[0, 1], "SAFFL"] = "N"
    adsl.loc[[2], "EFFFL"] = ""  # SAS missing: blank text, not in the population
    folder = write_adam(tmp_path / "adam", adsl=adsl)
    mapping = tmp_path / "map.toml"
    mapping.write_text('[subjects]\ncenter = "sitegr1"\npopulation = "EFFFL"\n[covariates]\nprior_atg = "PRIORATG"\n')
    source = AdamInput.from_options(folder, mapping=mapping)
    safety = load_adam(source, Needs(adverse_event=True))
    efficacy = load_adam(source, Needs(covariates=("prior_atg",)))
    ids = list(adsl["USUBJID"])
    assert safety.patient_ids == tuple(ids[2:]) and efficacy.patient_ids == tuple(ids[:2] + ids[3:])
    assert efficacy.patients["prior_atg"].tolist() == (adsl["PRIORATG"].drop(index=2) == "Y").astype(float).tolist()
    assert not efficacy.synthetic and efficacy.hashes()["adam_mapping"] == file_sha256(mapping)
    with pytest.raises(DataError, match="active_infection"):  # the user's [covariates] replaced the default
        load_adam(source, Needs(covariates=("active_infection",)))
    mapping.write_text('[recovery]\nleukocytic = { paramcd = "ttrleuk" }\n')  # the table form, any case
    one = load_adam(AdamInput.from_options(datasets.ADAM_DIR, mapping=mapping), Needs(recovery=True))
    assert one.lineages == ("leukocytic",) and len(one.recovery) == 74
    mapping.write_text('[subjects]\ncentre = "SITEID"\n')
    with pytest.raises(UsageError, match=r"\[subjects\]: unknown key\(s\) centre"):
        load_adam(AdamInput.from_options(folder, mapping=mapping))
    mapping.write_text('[time_to_event]\ndefault_unit = "fortnights"\n')
    with pytest.raises(UsageError, match="DAYS, WEEKS, MONTHS or YEARS"):
        load_mapping(mapping)


def test_init_adam_writes_the_default_mapping(tmp_path, marrow_cli):
    code, _, err = marrow_cli("init", "--adam", "--out", tmp_path / "adam.toml")
    assert code == 0 and "--adam-mapping" in err
    assert (tmp_path / "adam.toml").read_text() == template_text()
    assert load_mapping(tmp_path / "adam.toml") == load_mapping()
    assert marrow_cli("init", "--adam", "--out", tmp_path / "adam.toml")[0] == 2  # no overwrite without --force


# --- bad ADaM data --------------------------------------------------------------------------------------------


def test_missing_usubjid_variable(tmp_path):
    folder = write_adam(tmp_path / "adam", adsl=read_xpt("adsl").drop(columns=["USUBJID"]))
    [message] = problems(AdamInput.from_options(folder))
    assert "adsl.xpt (ADSL)" in message and "'USUBJID'" in message and "required variable is missing" in message


def test_datasets_not_given_are_named():
    messages = problems(AdamInput(datasets.ADSL_XPT), Needs(followup=True, recovery=True))
    assert any(m.startswith("ADTTE (not given)") and "--adtte FILE" in m for m in messages)
    assert not any(m.startswith("ADRS") for m in messages)  # only the response model needs ADRS
    messages = problems(AdamInput(datasets.ADSL_XPT), Needs(response=True))
    assert any(m.startswith("ADRS (not given), column 'AVALC'") and "--adrs FILE" in m for m in messages)
    with pytest.raises(UsageError, match="needs ADSL"):
        AdamInput.from_options(adrs=datasets.ADRS_XPT)


def test_duplicated_usubjid_in_adsl(tmp_path):
    adsl = read_xpt("adsl")
    adsl.loc[4, "USUBJID"] = "P002"
    messages = problems(AdamInput.from_options(write_adam(tmp_path / "adam", adsl=adsl)))
    dup = [m for m in messages if "duplicated USUBJID" in m]
    assert len(dup) == 1 and "(ADSL), column 'USUBJID'" in dup[0] and "USUBJID P002" in dup[0]
    assert "rows 2, 5)" in dup[0]


def test_adtte_problems_name_variable_and_subjects(tmp_path):
    adtte = read_xpt("adtte")
    adtte.loc[adtte["USUBJID"] == "P003", "AVALU"] = "FORTNIGHTS"
    os_rows = adtte.index[adtte["PARAMCD"] == "OS"]
    adtte.loc[os_rows[9], "CNSR"] = 0.5
    adtte.loc[os_rows[10], "CNSR"] = -1.0
    adtte.loc[os_rows[11], "AVAL"] = np.nan  # SAS missing
    adtte.loc[len(adtte)] = adtte.loc[0].copy()
    adtte.loc[len(adtte) - 1, "USUBJID"] = "P999"
    source = AdamInput.from_options(write_adam(tmp_path / "adam", adtte=adtte))
    messages = problems(source, Needs(followup=True, died=True, recovery=True))
    text = "\n".join(messages)
    assert all("adtte.xpt (ADTTE)" in m for m in messages), text
    [unit] = [m for m in messages if "unknown time unit (FORTNIGHTS)" in m]
    assert "column 'AVALU'" in unit and "USUBJID P003" in unit and "rows 9, 10, 11, 12)" in unit
    [cnsr] = [m for m in messages if "censoring values" in m]
    assert "column 'CNSR'" in cnsr and "USUBJID P010, P011" in cnsr and "-1, 0.5" in cnsr
    [aval] = [m for m in messages if "column 'AVAL'" in m]
    assert "missing values" in aval and "USUBJID P012" in aval and f"row {os_rows[11] + 1})" in aval
    [unknown] = [m for m in messages if "not found in" in m]
    assert "column 'USUBJID'" in unknown and "USUBJID P999" in unknown and "adsl.xpt" in unknown
    assert len(messages) == 4, text  # no echoes of the same problems in marrow's column names
    assert load_adam(source, Needs(covariates=("prior_atg",))).patients.shape[0] == 74  # ADTTE not needed


def test_adrs_missing_and_unknown_records(tmp_path):
    adrs = read_xpt("adrs")
    adrs.loc[[5, 6], "ANL01FL"] = "N"
    adrs.loc[7, "AVALC"] = ""  # blank: SAS missing
    messages = problems(AdamInput.from_options(write_adam(tmp_path / "adam", adrs=adrs)), Needs(response=True))
    [missing] = messages
    assert "adrs.xpt (ADRS), column 'AVALC'" in missing and "USUBJID P006, P007, P008" in missing
    assert "no ADRS record with PARAMCD = 'BESTRSP' and ANL01FL = 'Y' for USUBJID P006, P007" in missing


def test_cli_bad_adam_exits_2_before_sampling(tmp_path, marrow_cli):
    adsl = read_xpt("adsl")
    adsl.loc[0, "USUBJID"] = "P002"
    folder = write_adam(tmp_path / "adam", adsl=adsl)
    code, _, err = marrow_cli("fit", "safety", "--adam", folder, "--out", tmp_path / "f.nc")
    assert code == 2 and "duplicated USUBJID" in err and "USUBJID P002" in err and "Traceback" not in err
    assert not (tmp_path / "f.nc").exists()
    code, _, err = marrow_cli(
        "fit", "safety", "--adam", folder, "--data", datasets.PATIENTS_CSV, "--out", tmp_path / "f.nc"
    )
    assert code == 2 and "one way" in err
    code, _, err = marrow_cli("compare", "--adam", tmp_path / "nowhere")
    assert code == 2 and "not a folder" in err
    code, _, err = marrow_cli(
        "fit", "survival", "--adam", datasets.ADAM_DIR, "--time-unit", "weeks", "--out", tmp_path / "w.nc"
    )
    assert code == 2 and "ADaM times are read in days" in err and not (tmp_path / "w.nc").exists()


# --- provenance: reloading a fit's ADaM data -----------------------------------------------------------------


class _Recorded:
    """A fit as far as reloading its data is concerned: recorded sources."""

    def __init__(self, data):
        self.data_sources = [{"role": s.role, "path": s.path, "sha256": s.sha256, "rows": s.rows} for s in data.sources]


def test_fits_reload_their_adam_files_checked_by_hash(tmp_path):
    folder = write_adam(tmp_path / "adam")
    fit = _Recorded(load_adam(AdamInput.from_options(folder)))
    again = adam_for_fits([fit], None, tables_given=False)
    assert again == AdamInput(folder / "adsl.xpt", folder / "adrs.xpt", folder / "adtte.xpt")
    with pytest.raises(UsageError, match="made from ADaM datasets"):
        adam_for_fits([fit], None, tables_given=True)
    with pytest.raises(UsageError, match="made from patients/recovery tables"):
        adam_for_fits([_Recorded(load_trial())], BUNDLED, tables_given=False)
    shutil.copy(datasets.ADSL_XPT, folder / "adsl.xpt")
    write_adam(folder, adsl=read_xpt("adsl").assign(AGE=30.0))
    with pytest.raises(UsageError, match="is not the ADSL file the fit was made from"):
        adam_for_fits([fit], None, tables_given=False)
    assert adam_for_fits([], None, tables_given=False) is None


def test_report_plan_key_adam(tmp_path):
    from marrow.report.plan import load_plan
    from marrow.report.run import prepare

    plan_path = tmp_path / "plan.toml"
    plan_path.write_text(f'[data]\nadam = "{datasets.ADAM_DIR}"\n[models]\nrun = ["ordinal", "recovery"]\n')
    plan = load_plan(plan_path)
    assert plan.adam == BUNDLED and plan.synthetic and plan.covariates == ("prior_atg", "active_infection")
    for out, step in zip(prepare(plan), plan.steps, strict=True):
        assert_same_trial(out.data, load_trial(needs=step.spec.needs()))
    from_cli = load_plan(plan_path, adam=AdamInput.from_options(adsl=datasets.ADSL_XPT))  # --adsl overrides the file
    assert from_cli.adam == AdamInput(datasets.ADSL_XPT) and from_cli.overrides["adam"] == {
        "adsl": str(datasets.ADSL_XPT)
    }
    shutil.copy(datasets.PATIENTS_CSV, tmp_path / "p.csv")
    plan_path.write_text('[data]\nadam = "adam"\npatients = "p.csv"\n')
    with pytest.raises(UsageError, match="either adam or patients"):
        load_plan(plan_path)


def test_load_input_routes():
    assert_same_trial(load_input(needs=Needs(recovery=True)), load_input(adam=BUNDLED, needs=Needs(recovery=True)))
    with pytest.raises(UsageError, match="one way"):
        load_input(datasets.PATIENTS_CSV, adam=BUNDLED)


# --- one tiny real fit from each route ------------------------------------------------------------------------


@pytest.mark.sampling
def test_same_posterior_from_adam_and_csv(tmp_path, marrow_cli):
    from marrow.fits import Fit

    common = ["--family", "hierarchical", "--chains", "1", "--draws", "60", "--tune", "60", "--seed", "5", "--quiet"]
    assert marrow_cli("fit", "safety", *common, "--adam", datasets.ADAM_DIR, "--out", tmp_path / "adam.nc")[0] == 0
    assert marrow_cli("fit", "safety", *common, "--out", tmp_path / "csv.nc")[0] == 0
    adam, csv = Fit.load(tmp_path / "adam.nc"), Fit.load(tmp_path / "csv.nc")
    for name in csv.idata.posterior.data_vars:
        np.testing.assert_array_equal(adam.idata.posterior[name].values, csv.idata.posterior[name].values)
    assert {s["role"] for s in adam.data_sources} == {"adsl", "adrs", "adtte", "adam_mapping"}
    code, out, _ = marrow_cli("compare", tmp_path / "adam.nc")  # the data found from the fit's provenance
    assert code == 0 and "[bundled SYNTHETIC trial]" in out and "data: adsl adsl.xpt (74 rows)" in out
