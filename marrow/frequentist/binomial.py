"""Binomial proportions with exact (Clopper-Pearson), Wilson and Jeffreys 95% intervals (statsmodels).

Every function returns a tidy DataFrame, one row per (quantity, method), with columns
`key` (what is estimated), `label`, `element`, `successes`, `n`, `estimate`, `lower`, `upper`, `method`.
"""

from __future__ import annotations

import pandas as pd

from marrow.data import TrialData

LEVEL = 0.95
# statsmodels method name -> readable name, in the order shown.
METHODS = {
    "beta": "exact (Clopper-Pearson)",
    "wilson": "Wilson score",
    "jeffreys": "Jeffreys",
}


def proportion(successes: int, n: int, methods: tuple[str, ...] = tuple(METHODS), level: float = LEVEL) -> pd.DataFrame:
    """`successes / n` with one interval per statsmodels `proportion_confint` method (two-sided, `level`)."""
    from statsmodels.stats.proportion import proportion_confint

    rows = []
    for method in methods:
        lower, upper = proportion_confint(successes, n, alpha=1 - level, method=method)
        rows.append(
            {
                "successes": int(successes),
                "n": int(n),
                "estimate": successes / n if n else float("nan"),
                "lower": float(lower),
                "upper": float(upper),
                "method": METHODS.get(method, method),
            }
        )
    return pd.DataFrame(rows)


def _rows(key: str, label: str, element: str, successes: int, n: int, methods: tuple[str, ...]) -> pd.DataFrame:
    table = proportion(successes, n, methods)
    table.insert(0, "element", element)
    table.insert(0, "label", label)
    table.insert(0, "key", key)
    return table


def response_rates(data: TrialData, methods: tuple[str, ...] = tuple(METHODS)) -> pd.DataFrame:
    """Overall response (CR or PR), and CR and PR rates when the ordinal response is known."""
    patients = data.patients
    n = len(patients)
    parts = [_rows("response_rate", "Response rate (CR or PR)", "", int(patients["responder"].sum()), n, methods)]
    if "response" in patients.columns and patients["response"].notna().all():
        for code, key, label in (
            ("CR", "cr_rate", "Complete response rate"),
            ("PR", "pr_rate", "Partial response rate"),
        ):
            parts.append(_rows(key, label, "", int((patients["response"] == code).sum()), n, methods))
    return pd.concat(parts, ignore_index=True)


def center_rates(data: TrialData) -> pd.DataFrame:
    """Raw response proportion per center with its exact interval (no pooling across centers)."""
    patients = data.patients
    parts = []
    for center in data.centers:
        mine = patients["center"] == center
        parts.append(
            _rows(
                "center_rate",
                f"Response rate, {center}",
                center,
                int(patients.loc[mine, "responder"].sum()),
                int(mine.sum()),
                ("beta",),
            )
        )
    return pd.concat(parts, ignore_index=True)


def adverse_event_rate(data: TrialData) -> pd.DataFrame:
    """Proportion of patients with an adverse event, exact interval; empty when the column is absent."""
    patients = data.patients
    if "adverse_event" not in patients.columns or patients["adverse_event"].isna().any():
        return pd.DataFrame(
            columns=["key", "label", "element", "successes", "n", "estimate", "lower", "upper", "method"]
        )
    return _rows("ae_rate", "Adverse-event rate", "", int(patients["adverse_event"].sum()), len(patients), ("beta",))
