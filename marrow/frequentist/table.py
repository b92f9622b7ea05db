"""The side-by-side table: frequentist estimates computed from the data, Bayesian posterior summaries
read from saved fits, flags where they disagree.

`comparison_table(data, fits)` is what `marrow compare` and the report call. Its columns:
section, quantity, variable, element, bayes, bayes_lower, bayes_upper, freq, freq_lower,
freq_upper, n, method, flag, scale. `display_table` turns it into the printed columns
(section, quantity, bayes, bayes 95% interval, freq, freq 95% interval, method, flag).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from marrow.data import TrialData

SECTIONS = {"response": "Response", "recovery": "Time to recovery", "survival": "Overall survival", "safety": "Safety"}
COLUMNS = ["section", "quantity", "variable", "element", "bayes", "bayes_lower", "bayes_upper", "freq", "freq_lower",
           "freq_upper", "n", "method", "flag", "scale"]
SMALL_N = 10
SHRINKAGE_MIN_GAP = 0.05  # |raw - pooled| below which shrinkage is not reported
PROB = 0.95
# posterior variable -> display scale (digits)
SCALES = {"odds_ratio": "ratio", "time_ratio": "ratio", "hazard_ratio": "ratio", "cure_odds_ratio": "ratio",
          "median_days": "days"}


# --- frequentist rows ------------------------------------------------------------------------------------

def frequentist_rows(data: TrialData, covariates: tuple[str, ...] | None = None,
                     competing: bool = False) -> pd.DataFrame:
    """Every frequentist estimate the data support, tagged with the model and posterior variable it
    matches; Aalen-Johansen incidences only with `competing` (a --competing-death fit to compare)."""
    from marrow.frequentist import binomial, interval, logistic, survival

    covariates = tuple(data.covariates if covariates is None else covariates)
    parts: list[tuple[str, pd.DataFrame]] = [
        ("response", binomial.response_rates(data)),
        ("response", binomial.center_rates(data)),
        ("response", logistic.logistic_effects(data, covariates)),
        ("recovery", survival.recovery_medians(data)),
        ("recovery", survival.recovery_incidence(data)),
        ("recovery", survival.cure_model(data, covariates)),
        ("recovery", survival.recovery_aft(data, covariates)),
        ("recovery", interval.turnbull_incidence(data)),  # interval-censored data only
        ("recovery", interval.interval_weibull_medians(data)),
        ("recovery", interval.interval_aft(data, covariates)),
        ("recovery", interval.competing_incidence(data) if competing else None),
        ("survival", survival.overall_survival(data)),
        ("survival", survival.cox_effects(data, covariates)),
        ("survival", survival.survival_aft(data, covariates)),
        ("safety", binomial.adverse_event_rate(data)),
    ]
    frames = []
    for model, part in parts:
        if part is None or part.empty:
            continue
        part = part.copy()
        part["model"] = model
        if "flag" not in part.columns:
            part["flag"] = ""
        if "events" in part.columns:
            few = part["events"].notna() & (part["events"] < SMALL_N) & part["key"].isin(["hazard_ratio", "time_ratio"])
            part.loc[few, "flag"] = [_join(f, f"few events ({int(e)})") for f, e in zip(part.loc[few, "flag"], part.loc[few, "events"])]
        frames.append(part)
    rows = pd.concat(frames, ignore_index=True)
    return rows


# --- Bayesian side ---------------------------------------------------------------------------------------

def _matches(value, part: str) -> bool:
    if str(value) == part:
        return True
    try:
        return math.isclose(float(value), float(part), rel_tol=0, abs_tol=1e-6)
    except (TypeError, ValueError):
        return False


def posterior_draws(fit, variable: str, element: str) -> np.ndarray | None:
    """Flattened draws of `variable` at `element` ("a, b" = coords of its non-sample dims in order), or None."""
    posterior = fit.idata.posterior
    if variable not in posterior:
        return None
    da = posterior[variable]
    extra = [d for d in da.dims if d not in ("chain", "draw")]
    parts = [p.strip() for p in element.split(",")] if element else []
    if len(parts) != len(extra):
        return None
    selection = {}
    for dim, part in zip(extra, parts):
        values = da[dim].to_numpy()
        hits = [i for i, v in enumerate(values) if _matches(v, part)]
        if not hits:
            return None
        selection[dim] = hits[0]
    return da.isel(selection).to_numpy().reshape(-1)


def bayes_summary(fits: Sequence, model: str, variable: str, element: str, prob: float = PROB):
    """(median, lower, upper) of the equal-tailed `prob` interval from the first fit of `model` that has the quantity."""
    for fit in fits:
        if fit.spec.model != model:
            continue
        draws = posterior_draws(fit, variable, element)
        if draws is None or draws.size == 0:
            continue
        lower, upper = np.quantile(draws, [(1 - prob) / 2, (1 + prob) / 2])
        return float(np.median(draws)), float(lower), float(upper)
    return None


# --- the table ------------------------------------------------------------------------------------------

def _join(*flags: str) -> str:
    return "; ".join(f for f in flags if f)


def _finite(*values) -> bool:
    return all(v is not None and isinstance(v, (int, float)) and not math.isnan(v) for v in values)


def disagreement(bayes, bayes_lower, bayes_upper, freq, freq_lower, freq_upper) -> bool:
    """True when either point estimate lies outside the other's interval."""
    if not _finite(bayes, freq):
        return False
    outside_freq = _finite(freq_lower, freq_upper) and not (freq_lower <= bayes <= freq_upper)
    outside_bayes = _finite(bayes_lower, bayes_upper) and not (bayes_lower <= freq <= bayes_upper)
    return bool(outside_freq or outside_bayes)


def comparison_table(data: TrialData, fits: Iterable = (), covariates: tuple[str, ...] | None = None,
                     prob: float = PROB) -> pd.DataFrame:
    """Bayesian (posterior median, equal-tailed `prob` interval) beside frequentist estimates, with flags.

    `fits` are loaded `marrow.fits.Fit`s of any model (none: frequentist side alone, Bayesian
    columns NaN). The frequentist side is computed from `data`; the caller makes sure `data` is
    what the fits were fitted to (`data_for_fits`). Flags: "disagree[: reason]" when one point
    estimate is outside the other's interval (reason: shrinkage for center rates, separation,
    small n < 10, few events < 10, AFT without cure fraction for the AFT among responders); "small n (n)"; "few events (k)"; "separation: Firth used (...)"; for center
    rates "shrinkage s" = (raw - posterior median) / (raw - pooled posterior median), the pooled
    median being that of `response_rate`, shown when |raw - pooled| >= 0.05.
    """
    fits = list(fits)
    rows = frequentist_rows(data, covariates, competing=any(getattr(f.spec, "competing_death", False) for f in fits))
    out = []
    pooled = bayes_summary(fits, "response", "response_rate", "", prob)
    for _, row in rows.iterrows():
        bayes = bayes_summary(fits, row["model"], row["key"], row["element"], prob)
        b, bl, bu = bayes if bayes else (np.nan, np.nan, np.nan)
        n = int(row["n"]) if _finite(row.get("n")) else None
        flags = [row["flag"]] if isinstance(row["flag"], str) else []
        small = n is not None and n < SMALL_N
        if small:
            flags.append(f"small n ({n})")
        if row["key"] == "center_rate" and bayes and pooled:
            raw, denominator = float(row["estimate"]), float(row["estimate"]) - pooled[0]
            # Close to the pooled rate the ratio is noise; not shown there.
            if abs(denominator) >= SHRINKAGE_MIN_GAP:
                flags.append(f"shrinkage {(raw - b) / denominator:.2f}")
        if disagreement(b, bl, bu, row["estimate"], row["lower"], row["upper"]):
            text = " ".join(flags)
            if row["key"] == "center_rate":
                reason = "shrinkage"
            elif "separation" in text:
                reason = "separation"
            elif small:
                reason = "small n"
            elif "few events" in text:
                reason = "few events"
            elif row["key"] == "time_ratio" and "among responders" in row["method"]:
                reason = "AFT without cure fraction"
            else:
                reason = ""
            flags.insert(0, "disagree" + (f": {reason}" if reason else ""))
        out.append({
            "section": SECTIONS[row["model"]], "quantity": row["label"], "variable": row["key"],
            "element": row["element"], "bayes": b, "bayes_lower": bl, "bayes_upper": bu,
            "freq": row["estimate"], "freq_lower": row["lower"], "freq_upper": row["upper"], "n": n,
            "method": row["method"], "flag": _join(*flags), "scale": SCALES.get(row["key"], "rate"),
        })
    table = pd.DataFrame(out, columns=COLUMNS)
    table["n"] = table["n"].astype("Int64")
    table.attrs["interval"] = f"{prob:.0%} equal-tailed credible interval"
    return table


# --- display ---------------------------------------------------------------------------------------------

def _number(value, scale: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if scale == "days":
        return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
    if scale == "ratio":
        if abs(value) >= 1000:
            return f"{value:.0f}"
        # three significant digits, trailing zeros kept (1.00, 0.100)
        return np.format_float_positional(value, precision=3, unique=False, fractional=False, trim="k")
    return f"{value:.3f}"


def _interval(lower, upper, scale: str) -> str:
    if not _finite(lower, upper):
        return "-"
    return f"{_number(lower, scale)}-{_number(upper, scale)}"


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """Printed form (all text): numbers formatted by scale (rates 3 decimals, ratios 2, days whole), intervals as 'lower-upper'."""
    rows = []
    for _, row in table.iterrows():
        scale = row["scale"]
        rows.append({
            "section": row["section"], "quantity": row["quantity"],
            "bayes": _number(row["bayes"], scale), "bayes 95% interval": _interval(row["bayes_lower"], row["bayes_upper"], scale),
            "freq": _number(row["freq"], scale), "freq 95% interval": _interval(row["freq_lower"], row["freq_upper"], scale),
            "method": row["method"], "flag": row["flag"] or "",
        })
    return pd.DataFrame(rows, columns=["section", "quantity", "bayes", "bayes 95% interval", "freq", "freq 95% interval",
                                       "method", "flag"])


# variable -> method family, for captions
METHOD_FAMILIES = {
    "response_rate": "exact Clopper-Pearson, Wilson and Jeffreys intervals for proportions",
    "odds_ratio": "logistic regression (Wald and profile-likelihood intervals), GEE with exchangeable correlation "
                  "within center, Fisher's exact test",
    "median_days": "Kaplan-Meier medians among responders",
    "recovered_by": "cumulative incidence as 1 - Kaplan-Meier",
    "cure_fraction": "a maximum-likelihood Weibull mixture cure model",
    "recovery_cif": "Aalen-Johansen cumulative incidence with death as a competing event",
    "survival_at": "Kaplan-Meier survival with Greenwood intervals",
    "hazard_ratio": "Cox proportional hazards",
    "time_ratio": "Weibull accelerated failure time models",
    "ae_rate": "an exact interval for the adverse-event rate",
}


def caption(table: pd.DataFrame) -> str:
    """A LaTeX caption naming the methods present."""
    present = set(table["variable"])
    methods = [text for variable, text in METHOD_FAMILIES.items() if variable in present]
    if table["method"].str.contains("Firth").any():
        methods.append("Firth's penalised logistic regression where the data are separated")
    if table["bayes"].notna().any():
        lead = ("Bayesian posterior medians with 95% equal-tailed credible intervals beside frequentist estimates "
                "with 95% confidence intervals")
    else:
        lead = "Frequentist estimates with 95% confidence intervals (no Bayesian fit given)"
    return f"{lead}. Methods: " + "; ".join(methods) + "."


def latex_table(table: pd.DataFrame) -> str:
    """Booktabs LaTeX of the display table, text columns left-aligned, numbers right-aligned."""
    from marrow.formatting import to_latex

    text = to_latex(display_table(table), caption(table), label="tab:compare")
    return text.replace(r"\begin{tabular}{lrrrrrrr}", r"\begin{tabular}{llrlrlll}", 1)


# --- which data ------------------------------------------------------------------------------------------

def data_for_fits(fits: Sequence = (), data_path: Path | str | None = None, recovery_path: Path | str | None = None,
                  covariates: tuple[str, ...] = (), announce: bool = False) -> TrialData:
    """Load the data to compute the frequentist side from, checking it is the data the fits were fitted to.

    Paths: `data_path`/`recovery_path` if given, else the paths recorded in the fits' provenance,
    else the bundled trial (whose recovery table is used with the bundled patients). Every file's
    SHA-256 must equal the one each fit recorded for that role; a mismatch is a UsageError.
    """
    from marrow import datasets
    from marrow.data import Needs, load_trial
    from marrow.data.load import file_sha256
    from marrow.errors import UsageError

    recorded: dict[str, tuple[str, str]] = {}  # role -> (path, sha256) from the first fit naming it
    for fit in fits:
        for source in fit.data_sources:
            role = source["role"]
            if role in recorded and recorded[role][1] != source["sha256"]:
                raise UsageError(f"the fits were fitted to different {role} files ({recorded[role][0]} and "
                                 f"{source['path']}); compare fits of the same data")
            recorded.setdefault(role, (source["path"], source["sha256"]))
    patients = Path(data_path) if data_path else (Path(recorded["patients"][0]) if "patients" in recorded else None)
    recovery = Path(recovery_path) if recovery_path else (Path(recorded["recovery"][0]) if "recovery" in recorded else None)
    if patients is not None and recovery is None and patients.resolve() == Path(datasets.PATIENTS_CSV).resolve():
        recovery = Path(datasets.RECOVERY_CSV)
    for role, path in (("patients", patients), ("recovery", recovery)):
        if role not in recorded or path is None:
            continue
        if not path.exists():
            raise UsageError(f"the {role} file the fit was made from, {path}, is not there; pass it with "
                             f"{'--data' if role == 'patients' else '--recovery'}")
        if file_sha256(path) != recorded[role][1]:
            raise UsageError(f"{path} is not the {role} file the fit was made from (SHA-256 {file_sha256(path)[:12]} "
                             f"on disk, {recorded[role][1][:12]} recorded); refit, or pass the original file")
    needs = Needs(recovery=recovery is not None or patients is None, covariates=tuple(covariates))
    first = load_trial(patients, recovery, needs, announce=announce)
    present = set(first.patients.columns)
    needs = Needs(ordinal="response" in present and first.has_ordinal_response,
                  followup="followup_days" in present, died="died" in present and "followup_days" in present,
                  adverse_event="adverse_event" in present, recovery=needs.recovery, covariates=tuple(covariates))
    return load_trial(patients, recovery, needs)
