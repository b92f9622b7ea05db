"""What an SBC study shows: uniformity tests per quantity, the verdict, tables and the ECDF figure.

Ranks r in 0..L of N simulations are uniform on the L + 1 values when the model is calibrated. Two
tests per quantity, each at level alpha / (2K) for K quantities (Bonferroni), so a calibrated model
fails with probability at most alpha:
- the ECDF of the ranks must stay inside the simultaneous band of the discrete uniform ECDF
  (Sailynoja, Burkner and Vehtari 2022; computed by ArviZ's `ecdf_confidence_band`, "optimized");
  it catches shifts (bias) and over- or under-dispersion (posteriors too narrow or too wide);
- a chi-square test of the ranks in `bins` equal-width bins catches other shapes.
The figure is ArviZ's ECDF-difference plot with the same simultaneous band, one panel per quantity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

DEFAULT_ALPHA = 0.01


@dataclass(frozen=True)
class Verdict:
    """Pass when no quantity fails; `failed` names those that do."""

    passed: bool
    failed: tuple[str, ...]
    alpha: float
    level: float  # per-test level alpha / (2K)

    def describe(self) -> str:
        if self.passed:
            return f"PASS: every rank distribution is consistent with uniform (family-wise alpha {self.alpha:g})"
        return f"FAIL: ranks not uniform for {', '.join(self.failed)} (family-wise alpha {self.alpha:g})"


def n_bins(n_sims: int, max_rank: int) -> int:
    """Bins for the chi-square test: about 10 simulations expected per bin, between 4 and 20, at most L + 1."""
    return int(min(max_rank + 1, 20, max(4, n_sims // 10)))


def chi_square(ranks: np.ndarray, max_rank: int, bins: int) -> tuple[float, float]:
    """(statistic, p-value) of the ranks 0..max_rank in `bins` bins against the discrete uniform."""
    from scipy import stats

    values = np.arange(max_rank + 1)
    bin_of = values * bins // (max_rank + 1)
    expected = np.bincount(bin_of, minlength=bins) / (max_rank + 1) * len(ranks)
    observed = np.bincount(np.asarray(ranks, dtype=np.int64) * bins // (max_rank + 1), minlength=bins)
    statistic, p = stats.chisquare(observed, expected)
    return float(statistic), float(p)


def uniform_cdf(max_rank: int):
    """CDF of the discrete uniform on 0..max_rank."""

    def cdf(x):
        return np.clip((np.floor(np.asarray(x, dtype=np.float64)) + 1.0) / (max_rank + 1), 0.0, 1.0)

    return cdf


def eval_points(max_rank: int) -> np.ndarray:
    """Where the ECDF is compared (independent of the ranks, as simultaneous bands require): 0..L-1."""
    return np.arange(max_rank, dtype=np.float64)


def ecdf_band(n_sims: int, max_rank: int, prob: float) -> tuple[np.ndarray, np.ndarray]:
    """ArviZ's simultaneous `prob` band of the ECDF of n_sims uniform ranks at `eval_points`."""
    from arviz.stats.ecdf_utils import ecdf_confidence_band

    points = eval_points(max_rank)
    return ecdf_confidence_band(n_sims, points, uniform_cdf(max_rank)(points), prob=prob, method="optimized")


def uniformity(ranks: pd.DataFrame, max_rank: int, alpha: float = DEFAULT_ALPHA) -> tuple[pd.DataFrame, Verdict]:
    """One row per quantity: mean rank (as a fraction of L), chi-square p, the largest ECDF excursion
    beyond the band, and the result; plus the verdict."""
    import pandas as pd

    n_sims = len(ranks)
    level = alpha / (2 * max(1, ranks.shape[1]))
    bins = n_bins(n_sims, max_rank)
    lower, upper = ecdf_band(n_sims, max_rank, 1.0 - level)
    points = eval_points(max_rank)
    rows = []
    for name in ranks.columns:
        r = ranks[name].to_numpy()
        statistic, p = chi_square(r, max_rank, bins)
        ecdf = (r[None, :] <= points[:, None]).mean(axis=1)
        outside = float(np.max(np.maximum(lower - ecdf, ecdf - upper)))
        ok = p >= level and outside <= 1e-12
        rows.append(
            {
                "quantity": name,
                "sims": n_sims,
                "mean rank / L": float(r.mean() / max_rank),
                "sd rank / L": float(r.std(ddof=1) / max_rank) if n_sims > 1 else float("nan"),
                "chi2": statistic,
                "bins": bins,
                "p (chi2)": p,
                "ECDF in band": bool(outside <= 1e-12),
                "result": "pass" if ok else "fail",
            }
        )
    table = pd.DataFrame(rows)
    failed = tuple(table.loc[table["result"] == "fail", "quantity"])
    return table, Verdict(not failed, failed, alpha, level)


def diagnostics_table(records: pd.DataFrame) -> pd.DataFrame:
    """Sampler diagnostics over the simulations: how many had divergences, R-hat > 1.01, bulk ESS < 100."""
    import pandas as pd

    n = len(records)
    rows = [
        ("simulations", n),
        ("with divergences", int((records["divergences"] > 0).sum())),
        ("with max R-hat > 1.01", int((records["max_rhat"] > 1.01).sum())),
        ("with min bulk ESS < 100", int((records["min_ess_bulk"] < 100).sum())),
        ("median min bulk ESS", float(records["min_ess_bulk"].median()) if n else float("nan")),
    ]
    return pd.DataFrame(rows, columns=["diagnostic", "value"], dtype=object)


def figure(ranks: pd.DataFrame, max_rank: int, level: float, title: str = "") -> Figure:
    """ArviZ ECDF-difference plots of the ranks with the simultaneous 1 - `level` band, one panel each."""
    import warnings

    import arviz as az
    import matplotlib.pyplot as plt

    names = list(ranks.columns)
    n_cols = min(4, len(names))
    n_rows = -(-len(names) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.2 * n_cols, 2.6 * n_rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ArviZ's deprecation notes about its future defaults
            az.plot_ecdf(
                ranks[name].to_numpy(),
                cdf=uniform_cdf(max_rank),
                eval_points=eval_points(max_rank),
                difference=True,
                confidence_bands="optimized",
                ci_prob=1.0 - level,
                ax=ax,
            )
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(f"rank (0..{max_rank})", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
