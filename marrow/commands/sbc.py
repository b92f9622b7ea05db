"""`marrow sbc MODEL`: simulation-based calibration of a model on your design."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from marrow.commands.common import data_options, info, split_list
from marrow.commands.model_options import given, model_argument, model_options
from marrow.spec import SAMPLERS


@click.command("sbc")
@model_argument
@click.option("--sims", type=int, default=200, show_default=True, help="Number of simulated trials.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Folder for the ranks, tables and figures (written atomically).",
)
@click.option("--force", is_flag=True, help="Replace an existing --out folder.")
@click.option("--prior", default="weakly-informative", show_default=True, help="Prior set of the fitted model.")
@click.option(
    "--simulate-prior",
    default=None,
    help="Prior set the true parameters are drawn from (default: --prior). A different set shows what a "
    "miscalibrated model looks like.",
)
@click.option("--covariates", default="", help="Comma-separated covariate columns, e.g. prior_atg,active_infection.")
@model_options(("outcome", "family", "cure"))
@click.option("--chains", type=int, default=2, show_default=True, help="Chains per refit.")
@click.option("--draws", type=int, default=500, show_default=True, help="Draws per chain per refit.")
@click.option("--tune", type=int, default=500, show_default=True, help="Warm-up iterations per chain.")
@click.option(
    "--ranks", "n_ranks", type=int, default=100, show_default=True, help="Thinned posterior draws ranked against."
)
@click.option("--alpha", type=float, default=0.01, show_default=True, help="Family-wise level of the uniformity tests.")
@click.option("--sampler", type=click.Choice(list(SAMPLERS)), default="auto", show_default=True)
@click.option("--target-accept", type=float, default=None, help="NUTS target acceptance. Default: the model's own.")
@click.option(
    "--seed", type=int, default=2017, show_default=True, help="Study seed (each simulation's derives from it)."
)
@click.option("--scheduler", default=None, help="Dask scheduler address (default: this machine).")
@click.option("--workers", "n_workers", type=int, default=None, help="Worker processes (default: the engine's).")
@click.option("--quiet", is_flag=True, help="No progress messages.")
@data_options
def sbc(
    model: str,
    sims: int,
    out_dir: Path,
    force: bool,
    prior: str,
    simulate_prior: str | None,
    covariates: str,
    outcome: str | None,
    family: str | None,
    cure: bool | None,
    chains: int,
    draws: int,
    tune: int,
    n_ranks: int,
    alpha: float,
    sampler: str,
    target_accept: float | None,
    seed: int,
    scheduler: str | None,
    n_workers: int | None,
    quiet: bool,
    data_path: Path | None,
    recovery_path: Path | None,
    adam=None,
) -> int:
    """Simulation-based calibration: draw parameters from the prior, simulate trials on your design,
    refit the model to each and test that the ranks of the truth among the posterior draws are uniform.

    The design (centers, sizes, covariates, lineages, follow-up) is that of --data, or the bundled
    trial. Writes ranks.csv, uniformity.csv/.md, diagnostics.csv, sbc.png, sbc.pdf and study.json
    into --out. Exit 0 when every quantity passes, 1 when one fails.

    \b
    Examples:
      marrow sbc response --sims 200 --out sbc-response
      marrow sbc recovery --sims 100 --out sbc-recovery
      marrow sbc response --simulate-prior enthusiastic --sims 100 --out sbc-wrong   # should fail
    """
    from marrow.data.adam import load_input
    from marrow.errors import UsageError
    from marrow.fits.io import check_writable
    from marrow.formatting import plural, render
    from marrow.priors import load_prior_set
    from marrow.priors.units import priors_in_unit
    from marrow.simulate import sbc_report
    from marrow.simulate.generators import check_supported, generator_for
    from marrow.simulate.sbc import SbcStudy, rank_table, run_study
    from marrow.spec import ModelSpec, SamplerSettings

    if sims < 2:
        raise UsageError(f"--sims must be at least 2, got {sims}")
    if n_ranks < 1 or not 0 < alpha < 1:
        raise UsageError("--ranks must be at least 1 and --alpha between 0 and 1")
    if recovery_path is not None and data_path is None:
        raise UsageError("--recovery needs --data (the patients table it belongs to)")
    check_writable(out_dir, force, folder=True)
    chosen = given({"outcome": outcome, "family": family, "cure": cure})
    spec = ModelSpec(model=model, covariates=split_list(covariates), **chosen)
    check_supported(spec)
    # In this process the chains of a refit run in parallel; on Dask workers (one thread each, and daemonic
    # processes, where PyMC's sampler cannot start chain processes) one by one. No --scheduler and no
    # --workers is a local cluster, not this process.
    from marrow.simulate.cluster import PROCESS, mode

    cores = None if mode(scheduler, n_workers) == PROCESS else 1
    settings = SamplerSettings(
        chains=chains, draws=draws, tune=tune, seed=seed, sampler=sampler, target_accept=target_accept, cores=cores
    )
    priors = priors_in_unit(load_prior_set(prior), spec.time_unit)
    sim_priors = priors_in_unit(load_prior_set(simulate_prior), spec.time_unit) if simulate_prior else None
    design = load_input(data_path, recovery_path, spec.needs(), adam=adam, announce=not quiet, time_unit=spec.time_unit)
    study = SbcStudy(spec, priors, settings, generator_for(spec, design), n_ranks=n_ranks, sim_priors=sim_priors)
    info(
        f"SBC of {spec.label} on {plural(len(design.patients), 'patient')}, {plural(len(design.centers), 'center')}: "
        f"{plural(sims, 'simulation')}, {plural(chains, 'chain')} x {plural(draws, 'draw')} each, "
        f"prior '{priors.name}'" + (f", simulated from '{sim_priors.name}'" if sim_priors else "") + f" (seed {seed})",
        quiet,
    )
    start = time.perf_counter()
    records = run_study(study, sims, seed, scheduler=scheduler, n_workers=n_workers, progress=not quiet)
    elapsed = time.perf_counter() - start
    if "max_rank" not in records or records["max_rank"].isna().all():
        first = records["error"].dropna().iloc[0] if "error" in records else "no record"
        raise RuntimeError(f"every simulation failed; the first said: {first}")
    ranks = rank_table(records)
    max_rank = int(records["max_rank"].dropna().iloc[0])
    table, verdict = sbc_report.uniformity(ranks, max_rank, alpha)
    diagnostics = sbc_report.diagnostics_table(records)
    title = f"SBC: {spec.label}, {plural(sims, 'simulation')}, ranks 0..{max_rank}"
    fig = sbc_report.figure(ranks, max_rank, verdict.level, title)
    study_json = {
        "model": json.loads(spec.to_json()),
        "settings": json.loads(settings.to_json()),
        "prior": priors.to_dict(),
        "simulate_prior": (sim_priors or priors).to_dict(),
        "sims": sims,
        "seed": seed,
        "n_ranks": max_rank,
        "alpha": alpha,
        "per_test_level": verdict.level,
        "verdict": "pass" if verdict.passed else "fail",
        "failed": list(verdict.failed),
        "elapsed_s": round(elapsed, 1),
        "design": {s.role: s.sha256 for s in design.sources},
    }
    write_outputs(out_dir, force, records, table, diagnostics, fig, study_json, title)
    click.echo(render(table, "table", title=title), nl=False)
    click.echo(render(diagnostics, "table", title="Sampler diagnostics over the simulations"), nl=False)
    click.echo(verdict.describe())
    info(f"wrote {out_dir} ({elapsed:.0f} s of simulation)", quiet)
    return 0 if verdict.passed else 1


def write_outputs(out_dir: Path, force: bool, records, table, diagnostics, fig, study_json: dict, title: str) -> None:
    """Every output in one new folder that replaces `out_dir` in one step (nothing half-written is left)."""
    from marrow.fits.io import atomic_folder
    from marrow.formatting import render
    from marrow.plots.style import figure_bytes

    with atomic_folder(out_dir, force) as work:
        records.to_csv(work / "ranks.csv", index=False)
        (work / "uniformity.csv").write_text(render(table, "csv"), encoding="utf-8")
        (work / "uniformity.md").write_text(
            render(table, "markdown", title=title) + "\n" + render(diagnostics, "markdown"), encoding="utf-8"
        )
        (work / "diagnostics.csv").write_text(render(diagnostics, "csv"), encoding="utf-8")
        for suffix in ("png", "pdf"):
            (work / f"sbc.{suffix}").write_bytes(figure_bytes(fig, suffix, None, None))
        (work / "study.json").write_text(json.dumps(study_json, indent=2, default=str) + "\n", encoding="utf-8")
