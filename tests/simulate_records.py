"""Synthetic records of a simulation study (the columns of docs/simulate.md), analysed exactly with a
conjugate Beta(a, b) model: no sampler, so the operating characteristics have a closed form."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from marrow.simulate import rules as R

QUANTILES = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.975)
GRID = np.round(np.arange(0.0, 1.0001, 0.01), 2)


def conjugate_records(
    scenarios: Mapping[str, float],
    sizes: Sequence[int],
    replicates: int,
    seed: int,
    rules: R.DecisionRules | None = None,
    a: float = 1.0,
    b: float = 1.0,
    quantity: str = "response_rate",
    grid: bool = True,
) -> pd.DataFrame:
    """One row per (scenario, replicate): responders drawn stage by stage at the scenario's true rate,
    every functional of the Beta posterior at every analysis, the exact P terms of `rules`."""
    rng = np.random.default_rng(seed)
    frames = []
    for index, (name, rate) in enumerate(scenarios.items()):
        columns: dict[str, object] = {
            "scenario": name,
            "scenario_index": index,
            "replicate": np.arange(replicates),
            "seed": rng.integers(0, 2**31, replicates),
        }
        x = np.zeros(replicates, dtype=np.int64)
        previous = 0
        for k, n in enumerate(sizes, start=1):
            x = x + rng.binomial(n - previous, rate, size=replicates)
            previous = n
            post = stats.beta(a + x, b + n - x)
            columns[f"a{k}:n"] = np.full(replicates, n)
            columns[f"a{k}:mean:{quantity}"] = post.mean()
            for p in QUANTILES:
                columns[f"a{k}:quantile:{p}:{quantity}"] = post.ppf(p)
            if grid:
                sf = stats.beta.sf(GRID[None, :], (a + x)[:, None], (b + n - x)[:, None])
                for j, t in enumerate(GRID):
                    columns[f"a{k}:exceed:{t:.2f}:{quantity}"] = sf[:, j]
            if rules is not None:
                for term in rules.terms_at(k):
                    if isinstance(term, R.Prob):
                        above = post.sf(term.threshold)
                        columns[f"a{k}:rule:{term.key}"] = above if term.op in (">", ">=") else 1 - above
            columns[f"a{k}:divergences"] = np.zeros(replicates, dtype=np.int64)
            columns[f"a{k}:max_rhat"] = np.ones(replicates)
            columns[f"a{k}:min_ess_bulk"] = np.full(replicates, 1000.0)
            columns[f"a{k}:min_ess_tail"] = np.full(replicates, 1000.0)
        columns[f"true:{quantity}"] = np.full(replicates, rate)
        columns["diagnostics_failed"] = np.zeros(replicates, dtype=bool)
        frames.append(pd.DataFrame(columns))
    return pd.concat(frames, ignore_index=True)
