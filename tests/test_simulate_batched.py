"""Batched refits: B replicates stacked in one model are B independent posteriors.

Graph tier: the stacked log density is the sum of the single models' (up to data-only constants: the
binomial coefficients, and the single model's new-center draw), at any point. Sampling tier: each
replicate's posterior from a batch agrees with a single fit of the same data within Monte Carlo error,
and a batch's numbers depend on its data and seed only.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pymc as pm
import pytest
from scipy import stats

from marrow.models import module_for, swap_data
from marrow.priors import load_prior_set
from marrow.simulate.batched import BatchedRefitter, batch_target_accept, build_batched, stack
from marrow.simulate.design import read_design
from marrow.simulate.scenarios import intercepts, simulate_trial
from marrow.simulate.study import response_inputs


def _design_and_data(n_replicates: int, scenario: int = 0, seed: int = 7):
    design = read_design()
    priors = load_prior_set(design.analysis.prior)
    truth = intercepts(design, design.scenarios[scenario])
    rng = np.random.default_rng(seed)
    trials = [simulate_trial(design, design.scenarios[scenario], rng, truth) for _ in range(n_replicates)]
    # Differently sized analyses (an interim and finals), so the replicates' posteriors differ.
    sizes = [design.n_total if b % 2 else design.analysis_sizes[0] for b in range(n_replicates)]
    return design, priors, [response_inputs(design, t, n) for t, n in zip(trials, sizes, strict=True)]


@pytest.mark.parametrize("parameterisation", ["noncentred", "centred"])
def test_stacked_log_density_is_the_sum_of_the_replicates(parameterisation):
    design, priors, data = _design_and_data(3)
    spec = design.analysis.spec
    template = replace(response_inputs(design), parameterisation={"center_effect": parameterisation})
    batched = build_batched(template, spec, priors, 3)
    with batched:
        pm.set_data(stack(data))
    single = module_for("response").build(template, spec, priors)
    batched_logp = batched.compile_logp()
    logp = single.compile_logp()  # its data are shared variables: swap_data changes what it computes
    rng = np.random.default_rng(0)
    differences = []
    for _ in range(2):
        point = {k: rng.normal(size=v.shape) for k, v in batched.initial_point().items()}
        total = 0.0
        for b, inputs in enumerate(data):
            swap_data(single, inputs)
            own = {k: point[k][b] if k in point else 0.0 for k in single.initial_point()}
            n, y = inputs.arrays["cell_n"], inputs.arrays["cell_responders"]
            constant = stats.norm.logpdf(0.0) + stats.binom.logpmf(y, n, 0.5).sum() + n.sum() * np.log(2)
            total += logp(own) - constant
        differences.append(batched_logp(point) - total)
    np.testing.assert_allclose(differences, 0.0, atol=1e-8)
    # A point that moves only replicate 1's intercept changes the density by replicate 1's change only.
    moved = {k: v.copy() for k, v in point.items()}
    moved["intercept"][1] += 0.3
    swap_data(single, data[1])
    own = {k: point[k][1] if k in point else 0.0 for k in single.initial_point()}
    own_moved = {**own, "intercept": own["intercept"] + 0.3}
    assert batched_logp(moved) - batched_logp(point) == pytest.approx(logp(own_moved) - logp(own), abs=1e-9)


def test_batch_target_accept_gives_each_block_a_single_fits_error():
    assert batch_target_accept(0.95, 1) == pytest.approx(0.95)
    assert batch_target_accept(0.95, 4) == pytest.approx(0.9)
    assert batch_target_accept(0.95, 16) == pytest.approx(0.8)
    assert batch_target_accept(0.95, 10_000) == pytest.approx(0.6)  # the floor


def test_only_the_binary_response_model_is_batched_centred_or_not():
    design, priors, _ = _design_and_data(1)
    template = response_inputs(design)
    with pytest.raises(ValueError, match="binary response"):
        build_batched(template, replace(design.analysis.spec, outcome="ordinal"), priors, 2)
    centred = build_batched(
        replace(template, parameterisation={"center_effect": "centred"}), design.analysis.spec, priors, 2
    )
    assert "center_effect" in {v.name for v in centred.free_RVs} and "center_z" not in centred.named_vars
    noncentred = build_batched(template, design.analysis.spec, priors, 2)
    assert "center_z" in {v.name for v in noncentred.free_RVs} and "center_effect" in noncentred.named_vars


@pytest.mark.sampling
def test_batched_posteriors_agree_with_single_fits():
    from marrow.simulate.refit import DesignRefitter
    from marrow.simulate.study import stored_variables

    design, priors, data = _design_and_data(4, scenario=1)
    settings = replace(design.settings, chains=2, tune=300, draws=300, cores=1)
    template = response_inputs(design)
    refitter = BatchedRefitter(design.analysis.spec, priors, settings, template, 4)
    batch = refitter.fit(data, seed=11)
    with pytest.raises(ValueError, match="holds 4"):
        refitter.fit(data[:3], seed=11)
    # The same data and seed give the same numbers (a batch depends on nothing else).
    again = refitter.fit(data, seed=11)
    np.testing.assert_array_equal(again.draws["response_rate"], batch.draws["response_rate"])
    single = DesignRefitter(design.analysis.spec, priors, settings, template, stored_variables(design))
    means = []
    for b, inputs in enumerate(data):
        fit = single.fit(inputs, seed=100 + b)
        for name in ("response_rate", "intercept", "center_sd"):
            mine = batch.replicate(name, b)
            theirs = fit.posterior[name].to_numpy()
            mcse = np.hypot(_mcse(mine), _mcse(theirs))
            assert abs(mine.mean() - theirs.mean()) < 4 * mcse, (b, name, mine.mean(), theirs.mean(), mcse)
        means.append(batch.replicate("response_rate", b).mean())
        assert batch.max_rhat[b] < 1.05 and batch.min_ess_bulk[b] > 100
    # The blocks are not one posterior repeated: interims (even b) and finals differ in spread.
    spreads = [batch.replicate("response_rate", b).std() for b in range(4)]
    assert min(spreads[0], spreads[2]) > max(spreads[1], spreads[3])
    assert len({round(m, 3) for m in means}) == 4


def _mcse(draws: np.ndarray) -> float:
    """Monte Carlo standard error of the mean of (chain, draw) draws, from their bulk ESS."""
    from marrow import convergence

    ess = float(convergence.ess_bulk(draws.reshape(draws.shape[0], draws.shape[1], 1))[0])
    return float(draws.std() / np.sqrt(ess))


# --- a batched study: records fixed by the replicate index ----------------------------------------

TINY_BATCHED = """
seed = 7
replicates = 8
[centers]
sizes = { "A" = 6, "B" = 5, "C" = 5 }
[covariates]
prior_atg = 0.5
[model]
name = "response"
covariates = ["prior_atg"]
[sampler]
chains = 2
tune = 150
draws = 150
batch = 4
[[interims]]
after = 1
futility = "P(response_rate > 0.25) < 0.10"
[decision]
go = "P(response_rate > 0.15) > 0.95"
[[scenarios]]
name = "target"
response_rate = 0.4
center_sd = 0.5
"""


@pytest.mark.sampling
def test_batched_study_records_depend_on_the_replicate_only(monkeypatch):
    import pandas as pd

    from marrow.simulate import batched, study_batched
    from marrow.simulate import study as st
    from marrow.simulate.design import parse_design
    from marrow.simulate.engine import tasks_for

    design = parse_design(TINY_BATCHED)
    assert design.batch == 4
    design = replace(design, settings=replace(design.settings, cores=1))
    study = st.Study(
        design, load_prior_set(design.analysis.prior), (("P(response_rate > 0.25)", "response_rate", ">", 0.25),)
    )
    runs = []
    fit = batched.BatchedRefitter.fit

    def spy(self, replicates, seed):  # calls the real fit; notes which data sets each run holds
        runs.append([st.data_digest(r) for r in replicates])
        return fit(self, replicates, seed)

    monkeypatch.setattr(batched.BatchedRefitter, "fit", spy)
    tasks = tasks_for(design.seed, ["target"], 8)
    study_batched.clear()
    in_order = pd.DataFrame([st.run_replicate(study, t) for t in tasks])
    # Each batch's distinct data sets fitted once: an interim after 1 patient repeats across trials.
    per_batch = []
    for first in (0, 4):
        trials = [st.simulate_replicate(study, 0, t.seed) for t in tasks[first : first + 4]]
        per_batch.append({st.data_digest(st.response_inputs(design, t, n)) for t in trials for n in (1, 16)})
    assert sum(len(found) for found in per_batch) < 16  # an interim repeats
    assert len(runs) == sum(-(-len(found) // 4) for found in per_batch)
    assert {d for run in runs for d in run} == per_batch[0] | per_batch[1]

    # Another order, another process's cache, a study asking for replicate 5 alone: the same records.
    study_batched.clear()
    backwards = pd.DataFrame([st.run_replicate(study, t) for t in reversed(tasks)][::-1])
    pd.testing.assert_frame_equal(in_order, backwards)
    study_batched.clear()
    alone = st.run_replicate(study, tasks[5])
    assert alone == in_order.iloc[5].to_dict()
    assert in_order["a2:mean:response_rate"].nunique() == 8
    # A task whose seed is not the design's is refused (a batch's members derive their own seeds).
    with pytest.raises(ValueError, match="seed"):
        st.run_replicate(study, replace(tasks[1], seed=tasks[1].seed + 1))
