"""`marrow simulate [DESIGN]`: operating characteristics of a trial design by simulation."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from marrow.commands.common import info

if TYPE_CHECKING:
    import pandas as pd

    from marrow.simulate.design import Design
    from marrow.simulate.study import Study, Term

RECORDS = "records.parquet"
STUDY_JSON = "study.json"
DESIGN_COPY = "design.toml"


@click.command("simulate")
@click.argument("design_path", metavar="[DESIGN]", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="Study folder: result blocks, records, tables, figures and provenance.",
)
@click.option("--replicates", type=int, default=None, help="Simulated trials per scenario (default: the design's).")
@click.option("--scheduler", default=None, help="Address (or scheduler file) of an existing Dask cluster.")
@click.option("--workers", "n_workers", type=int, default=None, help="Worker processes of the local cluster.")
@click.option("--in-process", is_flag=True, help="Run here, without Dask (chains of a fit in parallel).")
@click.option("--resume", is_flag=True, help="Run only the replicates the study folder does not hold yet.")
@click.option("--add", "add", type=int, default=None, help="Extend the finished study in --out by N replicates.")
@click.option("--estimate", is_flag=True, help="Time a few replicates and project the study's time; write nothing.")
@click.option("--force", is_flag=True, help="Delete the study in --out and start again.")
@click.option(
    "--calibrate", is_flag=True, help="Also choose the go threshold keeping P(go) under --null at most --alpha."
)
@click.option("--alpha", type=float, default=0.1, show_default=True, help="Type I error bound of --calibrate.")
@click.option("--null", "null", default=None, help="Null scenario of --calibrate (default: the design's first).")
@click.option("--block-size", type=int, default=25, show_default=True, help="Replicates per result block.")
@click.option("--quiet", is_flag=True, help="No progress messages.")
def simulate(
    design_path: Path | None,
    out_dir: Path,
    replicates: int | None,
    scheduler: str | None,
    n_workers: int | None,
    in_process: bool,
    resume: bool,
    add: int | None,
    estimate: bool,
    force: bool,
    calibrate: bool,
    alpha: float,
    null: str | None,
    block_size: int,
    quiet: bool,
) -> int:
    """Simulate a trial design many times under each of its scenarios, analyse every simulated trial at
    each interim and at the end, and report its operating characteristics.

    DESIGN is a design file (`marrow init --design` writes a commented one); default: the bundled
    trial's design. Results are kept in blocks in --out as they finish: Ctrl-C, then --resume, finishes
    the study; --add N extends it. Without --scheduler or --workers the study runs on a local Dask
    cluster of one worker per core.

    \b
    Examples:
      marrow init --design --out design.toml
      marrow simulate design.toml --out sim --estimate
      marrow simulate design.toml --out sim
      marrow simulate design.toml --out sim --add 1000
      marrow simulate design.toml --out sim --resume --calibrate --alpha 0.05
      marrow simulate design.toml --out sim --scheduler tcp://10.0.0.5:8786
    """
    from dataclasses import replace

    from marrow.errors import UsageError
    from marrow.formatting import plural
    from marrow.simulate import engine
    from marrow.simulate.design import read_design
    from marrow.simulate.study import Study, batch_size

    design = read_design(design_path)
    where, cores = _where(scheduler, n_workers, in_process)
    design = replace(design, settings=replace(design.settings, cores=cores))
    if block_size < 1:
        raise UsageError(f"--block-size must be at least 1, got {block_size}")
    if add is not None and (add < 1 or replicates is not None):
        raise UsageError("--add N extends the study by N >= 1 replicates; leave out --replicates")
    if calibrate and not 0 < alpha < 1:
        raise UsageError(f"--alpha must be between 0 and 1, got {alpha}")
    if null is not None and null not in design.scenario_names():
        raise UsageError(f"--null {null!r} is not a scenario of the design ({', '.join(design.scenario_names())})")
    # --calibrate on a finished study re-reads its blocks (nothing is refitted) and re-decides.
    resume = resume or (calibrate and add is None and not force and _previous_replicates(out_dir) is not None)
    n = _replicates(design, out_dir, replicates, add, resume or estimate)
    if n < 1:
        raise UsageError(f"--replicates must be at least 1, got {n}")
    terms = rule_terms(design)
    study = Study(design, _priors(design), terms)
    fn = _task_function(study)
    tasks = engine.tasks_for(design.seed, design.scenario_names(), n)
    batch = batch_size(design)
    if estimate:
        return _estimate(fn, tasks, n_workers, n, len(design.scenarios), batch)
    if add is None and not (resume or force):
        _check_new(out_dir)
    info(
        f"simulating {plural(n, 'trial')} x {plural(len(design.scenarios), 'scenario')} of {design.n_total} patients "
        f"({len(design.analysis_sizes)} analyses each) from {design.source} (seed {design.seed})",
        quiet,
    )
    # The study's size and provenance first: an interrupted study is resumed at its own size.
    _write_provenance(out_dir, study, n, None)
    start = time.perf_counter()
    try:
        records = engine.run_tasks(
            fn,
            tasks,
            out=out_dir,
            # A batch's replicates in one block: one worker simulates and fits each batch once.
            block_size=-(-block_size // batch) * batch,
            align=batch,
            scheduler=where,
            n_workers=n_workers,
            resume=resume or add is not None,
            force=force,
            progress=not quiet,
            fingerprint=fingerprint(design, terms),
        )
    except engine.StudyInterrupted as exc:
        # The finished blocks are kept; say how to finish (the CLI then prints "interrupted", exit 130).
        again = f"marrow simulate {design_path or ''} --out {out_dir} --resume".replace("  ", " ")
        info(f"{str(exc).split(';')[0]}: `{again}` runs only the missing replicates", False)
        raise
    elapsed = time.perf_counter() - start
    _write_study(out_dir, study, records, n, elapsed)
    errors = int(records["error"].notna().sum()) if "error" in records else 0
    if errors:
        info(f"{plural(errors, 'replicate')} failed (their `error` column says why); left out of the tables", False)
    report_study(design, records, out_dir, calibrate=calibrate, alpha=alpha, null=null)
    info(f"wrote {out_dir} ({elapsed:.0f} s of simulation)", quiet)
    return 0


# --- the study's parts ----------------------------------------------------------------------------


def _where(scheduler: str | None, n_workers: int | None, in_process: bool) -> tuple[str | None, int | None]:
    """The engine's `scheduler` and the sampler's cores: chains in parallel here, one by one on a worker."""
    from marrow.errors import UsageError

    if in_process and (scheduler is not None or n_workers is not None):
        raise UsageError("--in-process runs here; it cannot be combined with --scheduler or --workers")
    if scheduler is not None and n_workers is not None:
        raise UsageError("--workers sizes the local cluster; an existing cluster (--scheduler) has its own")
    if in_process or n_workers == 0:
        return "process", None
    return scheduler, 1


def _priors(design: Design):
    if not design.analysis.sampled:
        return None
    from marrow.priors import load_prior_set

    return load_prior_set(design.analysis.prior)


def _task_function(study):
    from functools import partial

    from marrow.simulate.study import run_replicate

    return partial(run_replicate, study)


def _replicates(design: Design, out_dir: Path, replicates: int | None, add: int | None, reuse: bool) -> int:
    """Replicates per scenario: --replicates, else the study's in --out (resume) plus --add, else the design's."""
    from marrow.errors import UsageError

    previous = _previous_replicates(out_dir)
    if add is not None:
        if previous is None:
            raise UsageError(f"--add extends a finished study, and {out_dir} holds none ({STUDY_JSON} is missing)")
        return previous + add
    if replicates is not None:
        return replicates
    if reuse and previous is not None:
        return previous
    return design.replicates


def _previous_replicates(out_dir: Path) -> int | None:
    path = out_dir / STUDY_JSON
    if not path.is_file():
        return None
    return int(json.loads(path.read_text(encoding="utf-8"))["replicates"])


def _check_new(out_dir: Path) -> None:
    """A new study needs an absent or empty folder (the engine refuses one with blocks, too)."""
    from marrow.errors import UsageError

    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise UsageError(
            f"{out_dir} already exists and is not empty: --resume or --add continue the study in it, "
            "--force replaces it"
        )


def _estimate(fn, tasks, n_workers: int | None, n: int, n_scenarios: int, batch: int) -> int:
    from marrow.formatting import plural
    from marrow.simulate import engine

    result = engine.estimate(fn, tasks, workers=n_workers, group=batch)
    minutes = 60.0
    elsewhere = (
        f", {result.on_workers_seconds / minutes:.1f} min on {plural(result.workers, 'worker')}"
        if result.workers != result.cpus
        else ""
    )
    click.echo(
        f"{len(tasks):,} simulated trials ({n:,} per scenario x {plural(n_scenarios, 'scenario')}), each analysed "
        f"at every analysis. Timed here: the first {result.warmup_seconds:.1f} s (building and compiling the "
        f"model), then {result.seconds_per_task:.2f} s per trial ({result.n_sampled} timed, {result.errors} failed).\n"
        f"Projected: {result.this_machine_seconds / minutes:.1f} min on this machine's "
        f"{plural(result.cpus, 'worker')}{elsewhere} (fewer when trials repeat data, which are fitted once)."
    )
    return 0


def fingerprint(design: Design, terms: tuple[Term, ...]) -> str:
    """What the records depend on (not the replicate count, nor the rules' decision thresholds: those
    are applied afterwards): a study resumed or extended under another fingerprint is refused."""
    import hashlib
    from dataclasses import asdict

    settings = {k: v for k, v in json.loads(design.settings.to_json()).items() if k not in ("seed", "cores")}
    payload = {
        "centers": [design.centers, design.center_values, design.fixed_sizes, design.n_total],
        "covariates": design.covariates,
        "analysis": {k: v for k, v in asdict(design.analysis).items() if k != "spec"},
        "spec": design.analysis.spec.to_json() if design.analysis.spec else None,
        "settings": settings,
        "analyses": design.analysis_sizes,
        "scenarios": [asdict(s) for s in design.scenarios],
        **({"timing": asdict(design.timing)} if design.timing else {}),
        "seed": design.seed,
        "terms": terms,
    }
    from marrow.simulate.study import batch_size

    if batch_size(design) > 1:  # batched fits: other draws, other records
        payload["batch"] = design.batch
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _write_study(out_dir: Path, study: Study, records: pd.DataFrame, n: int, elapsed: float) -> None:
    """The records (one row per replicate) and the study's provenance, each file atomically."""
    from marrow.fits.io import atomic_path

    with atomic_path(out_dir / RECORDS, force=True) as tmp:
        records.to_parquet(tmp, index=False)
    _write_provenance(out_dir, study, n, elapsed)


def _write_provenance(out_dir: Path, study: Study, n: int, elapsed: float | None) -> None:
    """design.toml and study.json; `elapsed` None while the study runs (`finished: false`)."""
    from marrow.fits.io import write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    write_text(out_dir / DESIGN_COPY, study.design.text, force=True)
    write_text(out_dir / STUDY_JSON, json.dumps(provenance(study, n, elapsed), indent=2) + "\n", force=True)


def provenance(study: Study, n: int, elapsed: float | None) -> dict[str, Any]:
    """Design file (name, SHA-256), versions, seeds, settings, prior and rule terms of a study; whether
    it finished (an interrupted study has `finished: false` and no `elapsed_s`)."""
    from importlib.metadata import PackageNotFoundError, version

    from marrow import __version__
    from marrow.simulate.study import batch_size

    design, terms = study.design, study.terms
    batched = batch_size(design) > 1

    def package(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    return {
        "design": design.source,
        "design_sha256": design.sha256,
        "replicates": n,
        "seed": design.seed,
        "seed_rule": "replicate: numpy SeedSequence([seed, scenario_index, replicate]); "
        "a fit: SeedSequence([seed, words of the SHA-256 of the analysed arrays])"
        + ("; a batched run: of the concatenated SHA-256s of its data sets" if batched else ""),
        "scenarios": design.scenario_names(),
        "analyses": list(design.analysis_sizes),
        "model": design.analysis.model,
        "spec": json.loads(design.analysis.spec.to_json()) if design.analysis.spec else None,
        "prior": study.priors.to_dict()
        if study.priors is not None
        else {"a": design.analysis.a, "b": design.analysis.b},
        "settings": json.loads(design.settings.to_json()),
        "batch": design.batch if batched else 1,
        "rules": design.rule_texts(),
        "terms": [list(t) for t in terms],
        "fingerprint": fingerprint(design, terms),
        "versions": {
            "marrow": __version__,
            **{p: package(p) for p in ("pymc", "nutpie", "numpy", "dask", "distributed")},
        },
        "finished": elapsed is not None,
        "elapsed_s": None if elapsed is None else round(elapsed, 1),
    }


# --- the calls into the operating-characteristics modules (marrow.simulate.rules, oc, calibrate,
# oc_outputs): these two functions are the only places that use them ------------------------------


def rule_terms(design: Design) -> tuple[Term, ...]:
    """Parse every rule of the design (names checked against the recorded quantities) and list the
    distinct P(quantity op threshold) terms, each with its record key."""
    from marrow.errors import UsageError
    from marrow.simulate import rules
    from marrow.simulate.study import quantities

    known = quantities(design)
    out: dict[str, Term] = {}
    for key, text in design.rules_by_key():
        try:
            parsed = rules.parse(text, known)
        except UsageError as exc:  # say where in the design file the rule is
            raise UsageError(f"{design.source}: {key}: {exc}") from None
        for term in rules.terms(parsed):
            out[term.key] = (term.key, term.quantity, term.op, float(term.threshold))
    return tuple(out.values())


def report_study(
    design: Design, records: pd.DataFrame, out_dir: Path, *, calibrate: bool, alpha: float, null: str | None
) -> None:
    """Decisions, the OC table (printed and written), and the calibration when asked."""
    from marrow.simulate import oc, oc_outputs, rules

    decision_rules = rules.as_rules(design, oc.recorded_quantities(records))
    table = oc.oc_table(records, decision_rules)
    title = f"Operating characteristics ({design.source})"
    calibration = None
    if calibrate:
        from marrow.simulate.calibrate import calibrate_go

        calibration = calibrate_go(records, decision_rules, null or design.scenarios[0].name, alpha)
    oc_outputs.write_outputs(
        out_dir, table, decision_rules, title=title, meta=_meta(design, records), calibration=calibration
    )
    click.echo(oc_outputs.render_tables(table, "table", title), nl=False)
    if calibration is not None:
        click.echo(f"\nCalibrated {calibration.describe()}")
        click.echo(
            oc_outputs.render_tables(calibration.oc, "table", "OC at the calibrated cut-off", estimation=False),
            nl=False,
        )


def _meta(design: Design, records: pd.DataFrame) -> dict[str, object]:
    """The study in a line of the HTML page: what was simulated and analysed, and how."""
    settings = design.settings
    analysis = design.analysis
    model = (
        f"{analysis.model}, prior {analysis.prior}, {settings.chains} chains x ({settings.tune} warm-up + "
        f"{settings.draws} draws)"
        if analysis.sampled
        else f"beta-binomial, Beta({analysis.a:g}, {analysis.b:g}) prior"
    )
    return {
        "design": f"{design.source} (SHA-256 {design.sha256[:12]})",
        "replicates per scenario": int(records.groupby("scenario").size().max()),
        "seed": design.seed,
        "patients analysed": ", ".join(str(n) for n in design.analysis_sizes),
        "model": model,
    }
