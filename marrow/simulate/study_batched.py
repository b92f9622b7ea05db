"""A design's replicates analysed in batches: B replicates' analyses sampled together in one run.

`run_replicate` comes here when the design's `[sampler] batch` B is above 1 (the response model).
The batch of a replicate is fixed by its index: replicates jB .. jB + B - 1 of its scenario, whichever
of them the study asks for (a study of 1,000 replicates with B = 32 also simulates and fits replicates
1,000 to 1,023, so extending it with `--add` gives the table of an uninterrupted run). The first task
of a batch to reach a process simulates the B trials (each from its own replicate seed, `seed_for`),
takes every analysis of every trial, fits each distinct data set once (identical data at small
interims are common), B data sets per run (`marrow.simulate.batched`; the last run of a batch is padded
with copies of its last data set), and keeps the B records; the batch's other tasks read them.
A run's seed derives from the study seed and its data sets, so the records depend on the design and
the replicate indices only: not on the number of workers, the blocks (`run_tasks` blocks are aligned
to batches by the command, so one worker fits each batch once) or the order of completion.

A divergence belongs to a run, not to one of its data sets: each data set of a run with a divergence
records the run's count, so the diagnostics flag all of them (docs/simulate.md).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

from marrow.simulate.engine import Task, seed_for
from marrow.simulate.study import (
    HEADLINE,
    Study,
    data_digest,
    draw_functionals,
    fit_seed,
    replicate_record,
    response_inputs,
    simulate_replicate,
)

CACHE_BATCHES = 8  # batches of records kept per process (a block's tasks read theirs in a row)
_BATCHES: OrderedDict[str, dict[int, dict[str, Any]] | Exception] = OrderedDict()


def batched_record(study: Study, task: Task) -> dict[str, Any]:
    """The record of `task`, from its batch's records (analysed at the batch's first task here)."""
    design = study.design
    if task.seed != seed_for(design.seed, task.scenario_index, task.replicate):
        raise ValueError(
            f"replicate {task.replicate} has seed {task.seed}, not the design's (batched studies derive every "
            "replicate's seed from the design seed, the scenario and the replicate)"
        )
    first = task.replicate - task.replicate % design.batch
    priors = study.priors.to_json() if study.priors is not None else None
    key = hashlib.sha256(repr((design, priors, study.terms, task.scenario_index, first)).encode()).hexdigest()
    found = _BATCHES.get(key)
    if found is None:
        try:
            found = analyse_batch(study, task.scenario_index, first)
        except Exception as exc:  # every task of the batch reports it; the batch is not fitted again
            found = exc
        _BATCHES[key] = found
        while len(_BATCHES) > CACHE_BATCHES:
            _BATCHES.popitem(last=False)
    else:
        _BATCHES.move_to_end(key)
    if isinstance(found, Exception):
        raise found
    return dict(found[task.replicate])


def analyse_batch(study: Study, scenario_index: int, first: int) -> dict[int, dict[str, Any]]:
    """Records of replicates `first` .. `first + B - 1` of the scenario, their distinct analyses' data
    sets fitted B at a time."""
    from marrow.simulate.batched import batched_refitter_for

    design = study.design
    size = design.batch
    assert design.analysis.spec is not None and study.priors is not None
    replicates = range(first, first + size)
    trials = [simulate_replicate(study, scenario_index, seed_for(design.seed, scenario_index, r)) for r in replicates]
    datasets: dict[bytes, Any] = {}  # digest -> inputs, in order of first appearance
    digests = []
    for trial in trials:
        own = []
        for n in design.analysis_sizes:
            inputs = response_inputs(design, trial, n)
            digest = data_digest(inputs)
            datasets.setdefault(digest, inputs)
            own.append(digest)
        digests.append(own)
    template = response_inputs(design)
    refitter = batched_refitter_for(design.analysis.spec, study.priors, design.settings, template, size)
    values: dict[bytes, dict[str, float]] = {}
    distinct = list(datasets)
    for start in range(0, len(distinct), size):
        run = distinct[start : start + size]
        padded = run + [run[-1]] * (size - len(run))
        fit = refitter.fit(
            [datasets[d] for d in padded], seed=fit_seed(design.seed, hashlib.sha256(b"".join(padded)).digest())
        )
        for i, digest in enumerate(run):
            out = draw_functionals({q: fit.replicate(q, i).ravel() for q in HEADLINE}, study.terms)
            out.update(
                divergences=fit.divergences,
                max_rhat=float(fit.max_rhat[i]),
                min_ess_bulk=float(fit.min_ess_bulk[i]),
                min_ess_tail=float(fit.min_ess_tail[i]),
            )
            values[digest] = out
    return {
        r: replicate_record(design, trial, [values[d] for d in own])
        for r, trial, own in zip(replicates, trials, digests, strict=True)
    }


def clear() -> None:
    """Forget the batches analysed in this process."""
    _BATCHES.clear()
