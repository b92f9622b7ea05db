"""The side-by-side table: frequentist estimates computed from the data, Bayesian posterior summaries
read from saved fits, flags where they disagree.

`comparison_table(data, fits)` is what `marrow compare` and the report call. Its columns:
section, quantity, variable, element, bayes, bayes_lower, bayes_upper, freq, freq_lower,
freq_upper, freq_se, n, method, flag, scale. `display_table` turns it into the printed columns
(section, quantity, bayes, bayes 95% interval, freq, freq 95% interval, method, flag).

Sections run when the data have their columns (`sections`); the others are listed in
`table.attrs["skipped"]` as "skipped: <section> (<reason>)". A frequentist estimate that is not
estimable (`marrow.frequentist.estimable`) has its numbers removed (NaN) and the flag
"not estimable: <reason>".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from marrow import time_units
from marrow.data import TrialData
from marrow.descriptor import REGISTRY
from marrow.errors import UsageError


def section_title(model: str) -> str:
    """The comparison table's section of `model`: its descriptor's `section`, as the report names it."""
    return REGISTRY.get(model).section or model


COLUMNS = [
    "section",
    "quantity",
    "variable",
    "element",
    "bayes",
    "bayes_lower",
    "bayes_upper",
    "freq",
    "freq_lower",
    "freq_upper",
    "freq_se",
    "n",
    "method",
    "flag",
    "scale",
]
SMALL_N = 10
SHRINKAGE_MIN_GAP = 0.05  # |raw - pooled| below which shrinkage is not reported
PROB = 0.95
# posterior variable -> display scale (digits)
SCALES = {
    "odds_ratio": "ratio",
    "time_ratio": "ratio",
    "hazard_ratio": "ratio",
    "cure_odds_ratio": "ratio",
    "median_days": "days",
    "shape": "ratio",
    "intercept": "log-odds",
    "beta": "log-odds",
    "center_sd": "sd",
    "aft_intercept": "log",
}
# variable -> working scale of `marrow.frequentist.estimable` when a row does not give its own
WORKING = {
    "odds_ratio": "log",
    "time_ratio": "log",
    "hazard_ratio": "log",
    "cure_odds_ratio": "log",
    "shape": "log",
    "center_sd": "log",
    "intercept": "identity",
    "beta": "identity",
    "aft_intercept": "identity",
    "cure_fraction": "logit",
}


def sections(data: TrialData) -> tuple[list[str], list[str]]:
    """(models whose frequentist section the data support, ["skipped: <section> (<reason>)", ...]).

    Decided from the columns present: response needs `responder`, time to recovery a recovery table,
    overall survival `followup_days` and `died`, safety `adverse_event` (a column with missing
    values counts as absent)."""
    columns = data.patients.columns

    def missing(*names: str) -> str:
        absent = [n for n in names if n not in columns]
        if absent:
            return "no " + " or ".join(f"'{n}'" for n in absent) + (" column" if len(absent) == 1 else " columns")
        blank = [n for n in names if data.patients[n].isna().any()]
        return ", ".join(f"'{n}' has missing values" for n in blank)

    reasons = {
        "response": missing("responder"),
        "recovery": "" if data.recovery is not None else "no recovery table",
        "survival": missing("followup_days", "died"),
        "safety": missing("adverse_event"),
    }
    run = [model for model, reason in reasons.items() if not reason]
    skipped = [f"skipped: {section_title(model)} ({reason})" for model, reason in reasons.items() if reason]
    return run, skipped


# --- frequentist rows ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Horizons:
    """The time unit of the data and the times of the frequentist P(recovered by t) and S(t) rows."""

    unit: str = time_units.DEFAULT_UNIT
    recovery: tuple[float, ...] = time_units.RECOVERY_HORIZON_DAYS
    survival: tuple[float, ...] = time_units.SURVIVAL_HORIZON_DAYS


def horizons_of(fits: Sequence) -> Horizons:
    """The horizons of the fits compared, so both sides report the same times in the same unit:
    the union of the recovery fits' (and of the survival fits') horizons; the defaults of their
    unit where there is no such fit. Fits recorded in different units are refused."""
    timed = [f.spec for f in fits if f.spec.model in ("recovery", "survival")]
    units = sorted({getattr(s, "time_unit", time_units.DEFAULT_UNIT) for s in timed})
    if len(units) > 1:
        raise UsageError(
            f"the fits compared record time in different units ({', '.join(units)}); compare fits of one unit at a time"
        )
    unit = units[0] if units else time_units.DEFAULT_UNIT

    def union(model: str, defaults: tuple[float, ...]) -> tuple[float, ...]:
        chosen = [
            t for s in timed if s.model == model for t in time_units.horizons(getattr(s, "horizons", ()), defaults)
        ]
        return tuple(time_units.horizons(chosen, defaults))

    return Horizons(
        unit,
        union("recovery", time_units.recovery_horizons(unit)),
        union("survival", time_units.survival_horizons(unit)),
    )


# Frequentist rows of recently seen data (by content): `compare` and the report in one process, or
# the resident worker, refit nothing. A few MB at most.
_CACHE: dict[tuple, pd.DataFrame] = {}
CACHE_SIZE = 8


def _content_key(data: TrialData, covariates: tuple[str, ...]) -> tuple:
    def digest(frame: pd.DataFrame | None) -> tuple:
        if frame is None:
            return ()
        return (tuple(frame.columns), int(pd.util.hash_pandas_object(frame, index=False).sum()))

    return digest(data.patients), digest(data.recovery), covariates, tuple(data.covariates)


def frequentist_rows(
    data: TrialData, covariates: tuple[str, ...] | None = None, competing: bool = False, horizons: Horizons = Horizons()
) -> pd.DataFrame:
    """Every frequentist estimate the data support, tagged with the model and posterior variable it
    matches; Aalen-Johansen incidences only with `competing` (a --competing-death fit to compare);
    `attrs["skipped"]` lists the sections the data do not support. Pure in its inputs; results are
    kept for the last CACHE_SIZE distinct (data content, covariates, competing, horizons)."""
    covariates = tuple(data.covariates if covariates is None else covariates)
    key = (*_content_key(data, covariates), competing, horizons)
    if key not in _CACHE:
        if len(_CACHE) >= CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = _compute_rows(data, covariates, competing, horizons)
    rows = _CACHE[key].copy()
    rows.attrs["skipped"] = list(_CACHE[key].attrs["skipped"])
    return rows


def _compute_rows(data: TrialData, covariates: tuple[str, ...], competing: bool, horizons: Horizons) -> pd.DataFrame:
    from marrow.frequentist import binomial, glmm, interval, logistic, survival

    run, skipped = sections(data)
    unit = horizons.unit
    recovery_times, survival_times = tuple(map(float, horizons.recovery)), tuple(map(float, horizons.survival))
    producers = {
        "response": (
            lambda: binomial.response_rates(data),
            lambda: binomial.center_rates(data),
            lambda: logistic.logistic_effects(data, covariates),
            lambda: glmm.glmm_rows(data, covariates),
        ),
        "recovery": (
            lambda: survival.recovery_medians(data, unit=unit),
            lambda: survival.recovery_incidence(data, recovery_times, unit=unit),
            lambda: survival.cure_model(data, covariates),
            lambda: survival.recovery_aft(data, covariates, unit=unit),
            lambda: interval.turnbull_incidence(data, recovery_times, unit),  # these three: intervals only
            lambda: interval.interval_weibull_medians(data, unit=unit),
            lambda: interval.interval_aft(data, covariates),
            lambda: interval.competing_incidence(data, recovery_times, unit=unit) if competing else None,
        ),
        "survival": (
            lambda: survival.overall_survival(data, survival_times, unit=unit),
            lambda: survival.cox_effects(data, covariates),
            lambda: survival.survival_aft(data, covariates, unit=unit),
        ),
        "safety": (lambda: binomial.adverse_event_rate(data),),
    }
    frames = []
    for model in run:
        for produce in producers[model]:
            part = produce()
            if part is None or part.empty:
                continue
            part = part.copy()
            part["model"] = model
            for column, default in (("flag", ""), ("problem", ""), ("working", None), ("family", ""), ("se", np.nan)):
                if column not in part.columns:
                    part[column] = default
            if "events" in part.columns:
                few = (
                    part["events"].notna()
                    & (part["events"] < SMALL_N)
                    & part["key"].isin(["hazard_ratio", "time_ratio"])
                )
                part.loc[few, "flag"] = [
                    _join(f, f"few events ({int(e)})")
                    for f, e in zip(part.loc[few, "flag"], part.loc[few, "events"], strict=True)
                ]
            frames.append(part.astype(object))
    rows = (
        pd.concat(frames, ignore_index=True)
        if frames
        else pd.DataFrame(
            columns=[
                "key",
                "label",
                "element",
                "estimate",
                "lower",
                "upper",
                "n",
                "method",
                "flag",
                "problem",
                "working",
                "family",
                "se",
                "model",
            ]
        )
    )
    rows.attrs["skipped"] = skipped
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
    for dim, part in zip(extra, parts, strict=True):
        values = da[dim].to_numpy()
        hits = [i for i, v in enumerate(values) if _matches(v, part)]
        if not hits:
            return None
        selection[dim] = hits[0]
    return da.isel(selection).to_numpy().reshape(-1)


def _fit_family(fit) -> str:
    """The family a fit used (its spec's, else its model's default); '' for models without families."""
    family = getattr(fit.spec, "family", None)
    return family or REGISTRY.get(fit.spec.model).default_family or ""


def bayes_summary(fits: Sequence, model: str, variable: str, element: str, prob: float = PROB, family: str = ""):
    """(median, lower, upper) of the equal-tailed `prob` interval from the first fit of `model` that has the
    quantity (and, when `family` is given, that was fitted with that family)."""
    for fit in fits:
        if fit.spec.model != model:
            continue
        if family and _fit_family(fit) != family:
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


def comparison_table(
    data: TrialData, fits: Iterable = (), covariates: tuple[str, ...] | None = None, prob: float = PROB
) -> pd.DataFrame:
    """Bayesian (posterior median, equal-tailed `prob` interval) beside frequentist estimates, with flags.

    `fits` are loaded `marrow.fits.Fit`s of any model (none: frequentist side alone, Bayesian
    columns NaN). The frequentist side is computed from `data`; the caller makes sure `data` is
    what the fits were fitted to (`data_for_fits`). Flags: "disagree[: reason]" when one point
    estimate is outside the other's interval (reason: shrinkage for center rates, separation,
    small n < 10, few events < 10, AFT without cure fraction for the AFT among responders);
    "small n (n)"; "few events (k)"; "separation: Firth used (...)"; for center
    rates "shrinkage s" = (raw - posterior median) / (raw - pooled posterior median), the pooled
    median being that of `response_rate`, shown when |raw - pooled| >= 0.05.
    """
    from marrow.frequentist.estimable import not_estimable

    fits = list(fits)
    rows = frequentist_rows(
        data,
        covariates,
        competing=any(getattr(f.spec, "competing_death", False) for f in fits),
        horizons=horizons_of(fits),
    )
    out = []
    pooled = bayes_summary(fits, "response", "response_rate", "", prob)
    for _, row in rows.iterrows():
        bayes = bayes_summary(fits, row["model"], row["key"], row["element"], prob, row["family"] or "")
        b, bl, bu = bayes if bayes else (np.nan, np.nan, np.nan)
        n = int(row["n"]) if _finite(row.get("n")) else None
        flags = [row["flag"]] if isinstance(row["flag"], str) else []
        working = row["working"] if isinstance(row["working"], str) else WORKING.get(row["key"])
        reason = not_estimable(
            row["estimate"],
            row["lower"],
            row["upper"],
            working,
            row["problem"] if isinstance(row["problem"], str) else "",
        )
        freq = (np.nan, np.nan, np.nan, np.nan) if reason else (row["estimate"], row["lower"], row["upper"], row["se"])
        small = n is not None and n < SMALL_N
        if small:
            flags.append(f"small n ({n})")
        if row["key"] == "center_rate" and bayes and pooled:
            raw, denominator = float(row["estimate"]), float(row["estimate"]) - pooled[0]
            # Close to the pooled rate the ratio is noise; not shown there.
            if abs(denominator) >= SHRINKAGE_MIN_GAP:
                flags.append(f"shrinkage {(raw - b) / denominator:.2f}")
        if not reason and disagreement(b, bl, bu, row["estimate"], row["lower"], row["upper"]):
            text = " ".join(flags)
            if row["key"] == "center_rate":
                cause = "shrinkage"
            elif "separation" in text:
                cause = "separation"
            elif small:
                cause = "small n"
            elif "few events" in text:
                cause = "few events"
            elif (
                row["key"] in ("time_ratio", "median_days", "shape")
                and "AFT" in row["method"]
                and "among responders" in row["method"]
            ):
                cause = "AFT without cure fraction"
            else:
                cause = ""
            flags.insert(0, "disagree" + (f": {cause}" if cause else ""))
        if reason:
            flags.insert(0, f"not estimable: {reason}")
        out.append(
            {
                "section": section_title(row["model"]),
                "quantity": row["label"],
                "variable": row["key"],
                "element": row["element"],
                "bayes": b,
                "bayes_lower": bl,
                "bayes_upper": bu,
                "freq": freq[0],
                "freq_lower": freq[1],
                "freq_upper": freq[2],
                "freq_se": freq[3],
                "n": n,
                "method": row["method"],
                "flag": _join(*flags),
                "scale": SCALES.get(row["key"], "rate"),
            }
        )
    table = pd.DataFrame(out, columns=COLUMNS)
    for column in ("bayes", "bayes_lower", "bayes_upper", "freq", "freq_lower", "freq_upper", "freq_se"):
        table[column] = pd.to_numeric(table[column], errors="coerce").astype(float)
    table["n"] = table["n"].astype("Int64")
    table.attrs["interval"] = f"{prob:.0%} equal-tailed credible interval"
    table.attrs["skipped"] = list(rows.attrs.get("skipped", []))
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
    joiner = " to " if lower < 0 or upper < 0 else "-"
    return f"{_number(lower, scale)}{joiner}{_number(upper, scale)}"


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """Printed form (all text): numbers formatted by scale (rates 3 decimals, ratios 2, days whole),
    intervals as 'lower-upper'."""
    rows = []
    for _, row in table.iterrows():
        scale = row["scale"]
        rows.append(
            {
                "section": row["section"],
                "quantity": row["quantity"],
                "bayes": _number(row["bayes"], scale),
                "bayes 95% interval": _interval(row["bayes_lower"], row["bayes_upper"], scale),
                "freq": _number(row["freq"], scale),
                "freq 95% interval": _interval(row["freq_lower"], row["freq_upper"], scale),
                "method": row["method"],
                "flag": row["flag"] or "",
            }
        )
    return pd.DataFrame(
        rows,
        columns=["section", "quantity", "bayes", "bayes 95% interval", "freq", "freq 95% interval", "method", "flag"],
    )


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
    "time_ratio": "Weibull, log-logistic, log-normal and exponential accelerated failure time models",
    "center_sd": "a random-intercept logistic model by maximum likelihood (adaptive Gauss-Hermite quadrature)",
    "ae_rate": "an exact interval for the adverse-event rate",
}


def caption(table: pd.DataFrame) -> str:
    """A LaTeX caption naming the methods present."""
    present = set(table["variable"])
    methods = [text for variable, text in METHOD_FAMILIES.items() if variable in present]
    if table["method"].str.contains("Firth").any():
        methods.append("Firth's penalised logistic regression where the data are separated")
    if table["bayes"].notna().any():
        lead = (
            "Bayesian posterior medians with 95% equal-tailed credible intervals beside frequentist estimates "
            "with 95% confidence intervals"
        )
    else:
        lead = "Frequentist estimates with 95% confidence intervals (no Bayesian fit given)"
    text = f"{lead}. Methods: " + "; ".join(methods) + "."
    if table["flag"].str.contains("not estimable").any():
        text += " Rows marked not estimable have no finite, informative estimate (reason in the flag)."
    skipped = table.attrs.get("skipped", [])
    if skipped:
        text += " " + "; ".join(s[0].upper() + s[1:] for s in skipped) + "."
    return text


def latex_table(table: pd.DataFrame) -> str:
    """Booktabs LaTeX of the display table, text columns left-aligned, numbers right-aligned."""
    from marrow.formatting import to_latex

    text = to_latex(display_table(table), caption(table), label="tab:compare")
    return text.replace(r"\begin{tabular}{lrrrrrrr}", r"\begin{tabular}{llrlrlll}", 1)


# --- which data ------------------------------------------------------------------------------------------


def data_for_fits(
    fits: Sequence = (),
    data_path: Path | str | None = None,
    recovery_path: Path | str | None = None,
    covariates: tuple[str, ...] = (),
    announce: bool = False,
    adam=None,
) -> TrialData:
    """Load the data to compute the frequentist side from, checking it is the data the fits were fitted to.

    Paths: `data_path`/`recovery_path` if given, else the paths recorded in the fits' provenance,
    else the bundled trial (whose recovery table is used with the bundled patients). Every file's
    SHA-256 must equal the one each fit recorded for that role; a mismatch is a UsageError.
    ADaM datasets (`adam`, or those the fits recorded) are checked and read the same way.
    """
    from marrow import datasets
    from marrow.data import Needs, load_trial
    from marrow.data.adam import adam_for_fits, load_adam_all
    from marrow.data.load import file_sha256
    from marrow.errors import UsageError

    adam = adam_for_fits(fits, adam, tables_given=data_path is not None or recovery_path is not None)
    if adam is not None:
        return load_adam_all(adam, tuple(covariates), announce=announce)

    recorded: dict[str, tuple[str, str]] = {}  # role -> (path, sha256) from the first fit naming it
    for fit in fits:
        for source in fit.data_sources:
            role = source["role"]
            if role in recorded and recorded[role][1] != source["sha256"]:
                raise UsageError(
                    f"the fits were fitted to different {role} files ({recorded[role][0]} and "
                    f"{source['path']}); compare fits of the same data"
                )
            recorded.setdefault(role, (source["path"], source["sha256"]))
    patients = Path(data_path) if data_path else (Path(recorded["patients"][0]) if "patients" in recorded else None)
    recovery = (
        Path(recovery_path) if recovery_path else (Path(recorded["recovery"][0]) if "recovery" in recorded else None)
    )
    if patients is not None and recovery is None and patients.resolve() == Path(datasets.PATIENTS_CSV).resolve():
        recovery = Path(datasets.RECOVERY_CSV)
    for role, path in (("patients", patients), ("recovery", recovery)):
        if role not in recorded or path is None:
            continue
        if not path.exists():
            raise UsageError(
                f"the {role} file the fit was made from, {path}, is not there; pass it with "
                f"{'--data' if role == 'patients' else '--recovery'}"
            )
        if file_sha256(path) != recorded[role][1]:
            raise UsageError(
                f"{path} is not the {role} file the fit was made from (SHA-256 {file_sha256(path)[:12]} "
                f"on disk, {recorded[role][1][:12]} recorded); refit, or pass the original file"
            )
    # compare needs no column beyond patient and center: each section runs when its columns exist.
    optional = {"response": False} if "response" in getattr(Needs, "__dataclass_fields__", {}) else {}
    needs = Needs(recovery=recovery is not None or patients is None, covariates=tuple(covariates), **optional)
    first = load_trial(patients, recovery, needs, announce=announce)
    present = set(first.patients.columns)
    ordinal = "response" in present and first.patients["response"].notna().all()
    needs = Needs(
        ordinal=bool(ordinal),
        followup="followup_days" in present,
        died="died" in present and "followup_days" in present,
        adverse_event="adverse_event" in present,
        recovery=needs.recovery,
        covariates=tuple(covariates),
        **optional,
    )
    return load_trial(patients, recovery, needs)
