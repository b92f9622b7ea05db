"""Simulation-based calibration (Talts et al. 2018; Modrak et al. 2023): the study, its task and the ranks.

Each simulation (one engine `Task`, seeded by it): draw parameters from the simulator's prior set
(`sim_priors`, by default the fitted model's own), simulate a trial on the design
(`marrow.simulate.generators`), refit the model with the lean refitter (compiled once per process,
arrays swapped), thin the posterior to about `n_ranks` draws and record the rank of each true
quantity among them (the number of draws below it; ties broken at random), with the sampler's
diagnostics. For a calibrated model and an exact sampler every rank is uniform on 0..L (L thinned draws).
The log-likelihood of the simulated data is ranked too: it is sensitive to miscalibration the
parameters alone can hide.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from marrow.simulate import engine
from marrow.simulate.engine import Task

if TYPE_CHECKING:
    import pandas as pd

    from marrow.priors import PriorSet
    from marrow.spec import ModelSpec, SamplerSettings

RANK_PREFIX = "rank:"
SCENARIO = "sbc"


@dataclass(frozen=True)
class SbcStudy:
    """Everything one simulation needs (small and picklable: a Dask worker receives it once).

    `priors` are the fitted model's, `sim_priors` the simulator's (the same set for a calibration
    check; a different one shows what miscalibration looks like). Both in the model's time unit."""

    spec: ModelSpec
    priors: PriorSet
    settings: SamplerSettings
    generator: Any
    n_ranks: int = 100
    sim_priors: PriorSet | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def simulator_priors(self) -> PriorSet:
        return self.sim_priors if self.sim_priors is not None else self.priors


def thin(values: np.ndarray, n: int) -> np.ndarray:
    """(chain, draw, ...) -> (about n, ...): draws evenly spaced within each chain (less autocorrelation)."""
    n_chains, n_draws = values.shape[:2]
    per_chain = min(n_draws, max(1, -(-n // n_chains)))
    index = np.unique(np.linspace(0, n_draws - 1, per_chain).round().astype(np.int64))
    return values[:, index].reshape((-1,) + values.shape[2:])


def ranks(truth: np.ndarray, draws: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rank of `truth` (shape (...)) among `draws` (shape (L, ...)): the number of draws below it plus a
    uniform share of the ties, an integer in 0..L."""
    below = (draws < truth).sum(axis=0)
    ties = (draws == truth).sum(axis=0)
    return below + rng.integers(0, ties + 1)


def posterior_params(posterior, names: Sequence[str], n: int) -> dict[str, np.ndarray]:
    """Thinned draws (sample first) of the posterior variables `names`."""
    return {name: thin(posterior[name].transpose("chain", "draw", ...).to_numpy(), n) for name in names}


def simulation_ranks(study: SbcStudy, posterior, truth_params: dict[str, np.ndarray], inputs, rng) -> dict[str, int]:
    """Ranks of every quantity the generator defines, truth against thinned posterior draws."""
    from marrow.simulate.generators import batch

    generator = study.generator
    draws = generator.quantities(posterior_params(posterior, list(truth_params), study.n_ranks), inputs)
    truth = generator.quantities(batch(truth_params), inputs)
    return {name: int(ranks(truth[name][0], draws[name], rng)) for name in truth}


def run_simulation(study: SbcStudy, task: Task) -> dict[str, Any]:
    """One simulation: draw, simulate, refit, rank. A flat record (ranks and diagnostics), never draws."""
    from marrow.simulate.refit import refitter_for

    rng = np.random.default_rng(task.seed)
    generator = study.generator
    params = generator.draw(study.simulator_priors, rng)
    inputs = generator.simulate(params, rng)
    refitter = refitter_for(study.spec, study.priors, study.settings, generator.template, var_names=None)
    refit = refitter.fit(inputs, seed=task.seed)
    with np.errstate(all="ignore"):
        rank = simulation_ranks(study, refit.posterior, params, inputs, rng)
    n = thin(np.zeros((study.settings.chains, study.settings.draws)), study.n_ranks).shape[0]
    return {
        "max_rank": n,
        "divergences": refit.divergences,
        "max_rhat": refit.max_rhat,
        "min_ess_bulk": refit.min_ess_bulk,
        "min_ess_tail": refit.min_ess_tail,
        **{RANK_PREFIX + name: value for name, value in rank.items()},
    }


def run_study(
    study: SbcStudy,
    n_sims: int,
    seed: int,
    *,
    scheduler: str | None = None,
    n_workers: int | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Run `n_sims` simulations through the engine; one row per simulation (ranks and diagnostics)."""
    tasks = engine.tasks_for(seed, [SCENARIO], n_sims)
    return engine.run_tasks(
        partial(run_simulation, study),
        tasks,
        out=None,
        scheduler=scheduler,
        n_workers=n_workers,
        progress=progress,
    )


def rank_table(records: pd.DataFrame) -> pd.DataFrame:
    """Just the rank columns, named by quantity."""
    columns = [c for c in records.columns if str(c).startswith(RANK_PREFIX)]
    return records[columns].rename(columns=lambda c: c[len(RANK_PREFIX) :])
