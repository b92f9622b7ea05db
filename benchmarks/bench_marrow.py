"""Time marrow: end to end (`marrow fit ...` as a subprocess) and phase by phase inside one process.

End to end (process start to saved fit), in one of three modes:
* warm: a benchmark compile dir already populated by an untimed run of the same command;
* cold: a fresh, empty compile dir (PYTENSOR_FLAGS=compiledir=<tmpdir>) and numba cache dir, so
  every C module / numba function is compiled again (JAX never caches between processes here);
* worker: a resident `marrow worker` (docs/worker.md) started for the case with the warm
  environment, filled by an untimed short run of the same command (which compiles the model and
  keeps it); each timed `marrow fit` is the client process that delegates to it, start to exit.
Warm and cold runs set MARROW_WORKER=off, so a worker the user has running never serves them.
Peak memory is the command's ru_maxrss measured by GNU time (the largest single process; PyMC's
sampler workers are separate processes, so their sum can be higher; see run_measured for why not
os.wait4 on the direct child); in worker mode it is the worker's own peak from `marrow worker
status` (the client's is kept as client_maxrss_mb).

The fit file is read afterwards (not timed) for: sampling time (the sampler's own clock,
posterior.attrs['sampling_time']), compile time (time inside `pm.sample` before sampling starts:
PyTensor rewrites + C compile, or the numba compile for nutpie; for NumPyro the JAX jit is inside
its sampling time), minimum bulk ESS and maximum R-hat over the model's parameters, divergences.

    python benchmarks/bench_marrow.py e2e --model response --sampler nutpie --cache cold
    python benchmarks/bench_marrow.py e2e --model response --sampler nutpie --cache worker --runs 3
    python benchmarks/bench_marrow.py phases --model recovery --data /tmp/trial-20k --sampler pymc
    python benchmarks/bench_marrow.py startup
    python benchmarks/bench_marrow.py newprocess --runs 3            # every model beside its hand-written script

newprocess: `marrow fit MODEL` (each model's defaults) and the hand-written PyMC + nutpie script of
the same model (benchmarks/scripts/MODEL.py) as fresh processes, alternating run by run, after one
untimed short run of each (warm) or each in fresh cache dirs (cold); the ratio marrow / script per model.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

from marrow.worker.protocol import process_alive  # standard library only

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
MARROW = str(BIN / "marrow") if (BIN / "marrow").exists() else shutil.which("marrow") or "marrow"
COVARIATES = "prior_atg,active_infection"
# The model's own parameters (not derived quantities) used for min ESS / max R-hat, as in brms.
KEY_VARS = {
    "response": ["intercept", "beta", "center_sd", "center_effect"],
    "ordinal": ["intercept", "beta", "center_sd", "center_effect", "cr_gap"],
    "recovery": ["log_median", "shape", "time_beta"],
    "recovery-cure": ["log_median", "shape", "time_beta", "cure_intercept", "cure_beta", "cure_center_sd"],
    "survival": ["log_median", "log_shape", "beta"],
    "safety": ["ae_rate"],
}
# `marrow fit` arguments of each benchmarked case: e2e, phases and the brms comparison fit recovery
# without cure (brms's model); `recovery-cure` is marrow's default recovery model (newprocess).
FIT_ARGS = {
    "response": ("response",),
    "ordinal": ("response", "--outcome", "ordinal"),
    # brms's model (bench_brms.R): a censored Weibull, no cure fraction (marrow's default family is log-logistic).
    "recovery": ("recovery", "--no-cure", "--family", "weibull"),
    "recovery-cure": ("recovery",),
    "survival": ("survival",),
    "safety": ("safety",),
}
NO_COVARIATES = ("safety",)  # its priors describe a rate, not effects
MODELS = tuple(FIT_ARGS)
SCRIPTS = HERE / "scripts"
# newprocess: model -> (its FIT_ARGS case: each model's defaults, the hand-written peer script)
NEWPROCESS = {
    "response": ("response", "response.py"),
    "ordinal": ("ordinal", "ordinal.py"),
    "recovery": ("recovery-cure", "recovery.py"),
    "survival": ("survival", "survival.py"),
    "safety": ("safety", "safety.py"),
}
CACHE_ROOT = Path(os.environ.get("MARROW_BENCH_CACHE", Path(tempfile.gettempdir()) / "marrow-bench-cache"))


def data_paths(data: str | Path | None) -> tuple[Path | None, Path | None]:
    """(patients.csv, recovery.csv) in a generated folder; (None, None) for the bundled trial."""
    if data in (None, "bundled"):
        return None, None
    folder = Path(data)
    return folder / "patients.csv", folder / "recovery.csv"


def fit_command(model: str, data: str | Path | None, sampler: str, out: Path, short: bool = False) -> list[str]:
    """`marrow fit MODEL` on `data`; `short` (10 + 10 draws) only populates the compile cache."""
    cmd = [MARROW, "fit", *FIT_ARGS[model], *covariate_args(model), "--sampler", sampler]
    cmd += ["--out", str(out), "--force", "--quiet"]
    if short:
        cmd += ["--tune", "10", "--draws", "10"]
    patients, recovery = data_paths(data)
    if patients is not None:
        cmd += ["--data", str(patients)]
        if model.startswith("recovery"):
            cmd += ["--recovery", str(recovery)]
    return cmd


def covariate_args(model: str) -> list[str]:
    return [] if model in NO_COVARIATES else ["--covariates", COVARIATES]


def bench_spec(model: str):
    """The ModelSpec of a FIT_ARGS case (what `marrow fit` builds from those arguments)."""
    from marrow.spec import ModelSpec

    covariates = () if model in NO_COVARIATES else tuple(COVARIATES.split(","))
    options = {"ordinal": {"outcome": "ordinal"}, "recovery": {"cure": False, "family": "weibull"}}.get(model, {})
    return ModelSpec(model=FIT_ARGS[model][0], covariates=covariates, **options)


def blas_flag(blas: str | None) -> str:
    """PyTensor flag for `blas`: None = not set (PyTensor probes for a BLAS in every process),
    '' = explicitly none (no probe), else the ldflags to link with."""
    return "" if blas is None else f"blas__ldflags={blas}"


def blas_label(blas: str | None) -> str:
    return "detect" if blas is None else ("none" if blas == "" else blas)


def cache_env(cache: str, extra_flags: str = "", env_extra: dict | None = None) -> tuple[dict, Path | None]:
    """Environment for a warm, cold or worker run; returns (env, tmpdir to delete afterwards or None).

    Warm and cold runs get MARROW_WORKER=off (a worker the user has running must not serve them);
    'worker' is the warm environment with delegation left on (the caller adds the socket path)."""
    env = dict(os.environ)
    env.update(env_extra or {})
    if cache == "worker":
        env.pop("MARROW_WORKER", None)
    else:
        env["MARROW_WORKER"] = "off"
    tmp = None
    if cache == "cold":
        tmp = Path(tempfile.mkdtemp(prefix="marrow-cold-"))
        compiledir = tmp / "pytensor"
        env["NUMBA_CACHE_DIR"] = str(tmp / "numba")
    else:
        key = extra_flags.replace("/", "_").replace(" ", "_").replace("=", "-").replace(",", "+")[:80] or "default"
        compiledir = CACHE_ROOT / key / "pytensor"
        env["NUMBA_CACHE_DIR"] = str(CACHE_ROOT / key / "numba")
    flags = f"compiledir={compiledir}"
    if tmp is not None:  # PyTensor keeps its numba cache under base_compiledir, not compiledir
        flags = f"base_compiledir={tmp / 'base'}," + flags
    if extra_flags:
        flags += "," + extra_flags
    env["PYTENSOR_FLAGS"] = flags
    return env, tmp


def run_timed(cmd: list[str], env: dict, cwd: Path | None = None, timeout: float | None = None) -> dict:
    """Run `cmd`; wall time from spawn to exit (no memory figure: see run_measured)."""
    load = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = "", ""
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    wall = time.perf_counter() - start
    return {"wall_s": wall, "returncode": proc.returncode, "stdout": stdout, "stderr": stderr, "load_before": load}


def _gnu_time() -> str | None:
    """/usr/bin/time when it is GNU time (apt-get install time), else None."""
    path = shutil.which("time", path="/usr/bin:/bin")
    if path is None:
        return None
    try:
        probe = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return path if "GNU" in probe.stdout + probe.stderr else None


GNU_TIME = _gnu_time()


def run_measured(cmd: list[str], env: dict | None, cwd: Path | None = None) -> dict:
    """Run `cmd`: wall time from spawn to exit, and the peak RSS of the largest single process.

    The peak is the child's ru_maxrss from wait4 (its own peak and that of the descendants it waited
    for, e.g. PyMC's sampler workers); getrusage(RUSAGE_CHILDREN) is a running maximum over every
    child ever waited for, so it cannot separate runs. On Linux a child's ru_maxrss also counts the
    memory image it replaced at exec, and subprocess (vfork) spawns from this process's image, so a
    direct child never shows less than this process's own peak (which grows once fits have been
    loaded here). So the command runs under GNU time (`/usr/bin/time -f %M`), a ~2 MB process that
    forks and waits for it, and its figure is the command's own. Without GNU time, os.wait4 on the
    direct child; maxrss_floor_mb then says how much of the figure may be this process's.
    """
    import resource

    load = os.getloadavg()[0]
    with (
        tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
        tempfile.NamedTemporaryFile("r", prefix="maxrss-", suffix=".txt") as rss,
    ):
        full = [GNU_TIME, "--quiet", "-f", "%M", "-o", rss.name, *cmd] if GNU_TIME else cmd
        start = time.perf_counter()
        proc = subprocess.Popen(full, env=env, cwd=cwd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        result = {
            "wall_s": wall,
            # user + system CPU of the command and the processes it waited for: on a loaded machine
            # (shared cores) far steadier than wall time, e.g. for a cold compile
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "returncode": proc.returncode,
            "stdout": out.read(),
            "stderr": err.read(),
            "load_before": load,
        }
        reported = rss.read().strip().splitlines()
        if GNU_TIME and reported and reported[-1].strip().isdigit():
            result.update(maxrss_mb=int(reported[-1]) / 1024, maxrss_how="GNU time")
        else:
            result.update(
                maxrss_mb=usage.ru_maxrss / 1024,
                maxrss_how="wait4",
                maxrss_floor_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            )
        return result


def run_checked(cmd: list[str], env: dict | None, cwd: Path | None = None, what: str = "run", check=None) -> dict:
    """run_measured, raising RuntimeError (with the end of stderr) on a non-zero exit or when
    `check()` is false afterwards (e.g. an expected output file is missing)."""
    result = run_measured(cmd, env, cwd=cwd)
    if result["returncode"] != 0 or (check is not None and not check()):
        raise RuntimeError(f"{what} failed (exit {result['returncode']}): {' '.join(cmd)}\n{result['stderr'][-3000:]}")
    return result


def run_in_cache(
    cmd: list[str],
    cache: str,
    extra_flags: str = "",
    env_extra: dict | None = None,
    cwd: Path | None = None,
    what: str = "run",
) -> dict:
    """run_checked in the environment of `cache` ('warm' or 'cold'); a cold run's fresh cache
    dirs are deleted afterwards."""
    env, tmp = cache_env(cache, extra_flags, env_extra)
    try:
        return run_checked(cmd, env, cwd=cwd, what=what)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


# --- the resident worker (docs/worker.md) ----------------------------------------------------------


def parse_worker_status(text: str) -> dict:
    """`marrow worker status` output ("name  value" lines) as a dict; adds peak_memory_mb (float),
    served and pid (int) and `note` (the line saying commands would run in their own process)."""
    info: dict = {}
    for line in text.splitlines():
        if line.startswith("note:"):
            info["note"] = line[len("note:") :].strip()
            continue
        parts = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        if len(parts) == 2:
            info[parts[0]] = parts[1].strip()
    peak = re.match(r"([0-9.]+)\s*MB", info.get("peak memory", ""))
    info["peak_memory_mb"] = float(peak.group(1)) if peak else None
    for name, key in (("commands served", "served"), ("pid", "pid")):
        info[key] = int(info[name]) if info.get(name, "").isdigit() else None
    return info


def append_jsonl(path: Path, records: list[dict]) -> None:
    """Append records to a JSON-lines results file, one line each."""
    with open(path, "a") as handle:
        for record in records:
            handle.write(json.dumps(record) + "\n")


def worker_status(env: dict) -> dict:
    """Parsed `marrow worker status` of the worker at env's MARROW_WORKER_SOCKET."""
    result = run_checked([MARROW, "worker", "status"], env, what="marrow worker status")
    return parse_worker_status(result["stdout"])


@contextmanager
def worker_running(env_base: dict, log=print):
    """A `marrow worker` on a socket of its own under /tmp (short: Unix socket paths are limited to
    ~100 bytes), started with `env_base`; yields the environment that delegates to it and always
    stops it (`marrow worker stop`; SIGTERM to its pid if it is still there afterwards)."""
    folder = Path(tempfile.mkdtemp(prefix="mw-", dir="/tmp"))
    env = dict(env_base)
    env["MARROW_WORKER_SOCKET"] = str(folder / "w.sock")
    env.pop("MARROW_WORKER", None)
    pid = None
    try:
        started = run_checked([MARROW, "worker", "start", "--idle-timeout", "30"], env, what="marrow worker start")
        first = (started["stdout"].strip().splitlines() or ["started"])[0]
        if "already running" in first:  # not ours: a fresh socket path should never have one
            raise RuntimeError(f"a worker was already running on {env['MARROW_WORKER_SOCKET']}: {first}")
        found = re.search(r"pid (\d+)", first)
        pid = int(found.group(1)) if found else worker_status(env)["pid"]
        log(f"  worker: {first}")
        yield env
    finally:
        stopped = run_measured([MARROW, "worker", "stop"], env)
        if stopped["returncode"] != 0:
            log(f"  worker: `marrow worker stop` exited {stopped['returncode']}: {stopped['stderr'][-500:]}")
        if pid is not None:
            deadline = time.monotonic() + 5
            while process_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if process_alive(pid):
                log(f"  worker: pid {pid} still running after `marrow worker stop`; sending SIGTERM")
                os.kill(pid, signal.SIGTERM)
        shutil.rmtree(folder, ignore_errors=True)


def run_through_worker(cmd: list[str], env: dict, cwd: Path | None = None, what: str = "run") -> dict:
    """Run `cmd` (a delegated marrow command) and check that the worker served it: its served count
    went up by one (a worker that restarted on changed files, or refused the command so that the
    client ran it itself, would make this an ordinary warm run under the wrong label).
    maxrss_mb becomes the worker's peak; the client's own is client_maxrss_mb."""
    before = worker_status(env)
    if before.get("note"):
        raise RuntimeError(f"the worker would not serve `{' '.join(cmd)}`: {before['note']}")
    result = run_checked(cmd, env, cwd=cwd, what=what)
    after = worker_status(env)
    if before["served"] is None or after["served"] != before["served"] + 1 or after["pid"] != before["pid"]:
        raise RuntimeError(
            f"{what} was not served by the worker (commands served {before['served']} -> "
            f"{after['served']}, pid {before['pid']} -> {after['pid']}): {' '.join(cmd)}; "
            "did marrow's files change while it ran?"
        )
    result["client_maxrss_mb"] = result["maxrss_mb"]
    result["maxrss_mb"] = after["peak_memory_mb"]
    result["worker_compiled_models"] = after.get("compiled models kept")
    return result


def fit_metrics(path: Path, model: str) -> dict:
    """Diagnostics and the sampler's own clock from a saved marrow fit."""
    import numpy as np

    from marrow.fits.fit import Fit

    fit = Fit.load(path)
    idata = fit.idata
    names = [v for v in KEY_VARS[model] if v in idata.posterior]
    timings = json.loads(fit.provenance.get("timings", "{}"))
    sampling = float(idata.posterior.attrs.get("sampling_time", float("nan")))
    out = {
        "sampling_s": sampling,
        "build_s": timings.get("build_s"),
        "sample_call_s": timings.get("sample_s"),
        "compile_s": (timings["sample_s"] - sampling) if "sample_s" in timings else None,
        "augment_s": timings.get("augment_s"),
        **_diagnostics(idata, names),
        "estimates": {v: np.round(idata.posterior[v].mean(("chain", "draw")).to_numpy(), 4).tolist() for v in names},
        "sampler": json.loads(fit.provenance.get("sampler", "{}")).get("sampler"),
    }
    fit.idata.close() if hasattr(fit.idata, "close") else None
    return out


def e2e(
    model: str,
    data,
    sampler: str,
    cache: str = "warm",
    runs: int = 1,
    blas: str | None = None,
    env_extra: dict | None = None,
    warmup: bool = True,
    log=print,
) -> list[dict]:
    """`runs` end-to-end timings of `marrow fit MODEL`. cache='warm': the compile dir is populated
    first by an untimed short run of the same command (the compiled graph does not depend on the
    number of draws); 'cold': fresh cache dirs for every run; 'worker': the short run goes through
    a worker started for this case, which then serves every timed run (see worker_running)."""
    if cache not in ("warm", "cold", "worker"):
        raise ValueError(f"cache must be warm, cold or worker, not {cache!r}")
    results = []
    extra_flags = blas_flag(blas)
    with tempfile.TemporaryDirectory(prefix="marrow-bench-") as work:
        work = Path(work)
        out = work / "fit.nc"
        cmd = fit_command(model, data, sampler, out)
        short = fit_command(model, data, sampler, out, short=True)
        worker_env = cache_env("worker", extra_flags, env_extra)[0] if cache == "worker" else None
        with worker_running(worker_env, log) if cache == "worker" else nullcontext() as env:
            if warmup and cache == "worker":
                run_through_worker(short, env, cwd=work, what="warm-up run through the worker")
            elif warmup and cache == "warm":
                run_in_cache(short, "warm", extra_flags, env_extra, cwd=work, what="warm-up run")
            for i in range(runs):
                if cache == "worker":
                    result = run_through_worker(cmd, env, cwd=work)
                else:
                    result = run_in_cache(cmd, cache, extra_flags, env_extra, cwd=work)
                record = {
                    "tool": "marrow",
                    "model": model,
                    "sampler": sampler,
                    "cache": cache,
                    "blas": blas_label(blas),
                    "wall_s": result["wall_s"],
                    "maxrss_mb": result["maxrss_mb"],
                    "load_before": result["load_before"],
                    "maxrss_how": "marrow worker status" if cache == "worker" else result.get("maxrss_how"),
                    **{k: v for k, v in (env_extra or {}).items() if k == "XLA_FLAGS"},
                }
                if cache == "worker":
                    record["client_maxrss_mb"] = result["client_maxrss_mb"]
                    record["worker_warmup"] = warmup
                record.update(fit_metrics(out, model))
                record["ess_per_s"] = record["ess_bulk_min"] / record["wall_s"]
                record["ess_per_sampling_s"] = record["ess_bulk_min"] / record["sampling_s"]
                memory = (
                    f"worker peak {_mb(record['maxrss_mb'])} MB, client {_mb(record['client_maxrss_mb'])} MB"
                    if cache == "worker"
                    else f"{_mb(record['maxrss_mb'])} MB"
                )
                log(
                    f"  marrow {model:8s} {sampler:7s} {cache:6s} run {i + 1}/{runs}: {record['wall_s']:.1f} s "
                    f"(compile {_num(record['compile_s'])}, sampling {_num(record['sampling_s'])}), "
                    f"min ESS {record['ess_bulk_min']:.0f}, {record['divergences']} divergences, "
                    f"{memory}, load {record['load_before']:.1f}"
                )
                results.append(record)
    return results


def _mb(value) -> str:
    return "?" if value is None else f"{value:.0f}"


def _num(value) -> str:
    return "?" if value is None else f"{value:.1f}"


# --- in-process phases ---------------------------------------------------------------------------


def _phases_child(model: str, data, sampler: str, out: Path, exclude: tuple[str, ...] = ()) -> dict:
    """Runs inside a fresh interpreter: time each phase of what `marrow fit` does.

    `exclude`: deterministics left out of sampling (pm.sample var_names), to measure what computing
    them at every draw costs."""
    t = time.perf_counter()
    phases: dict = {}
    import pymc  # noqa: F401  (marrow imports it lazily inside the fitting command)

    phases["import_s"] = time.perf_counter() - t
    import numpy as np

    from marrow.data import load_trial
    from marrow.descriptor import REGISTRY
    from marrow.fits.fit import Fit
    from marrow.fits.log_prior import add_log_prior
    from marrow.fits.provenance import build_provenance
    from marrow.fits.run import default_target_accept, resolve_sampler, sample_model
    from marrow.models import module_for
    from marrow.priors import load_prior_set
    from marrow.spec import SamplerSettings

    spec = bench_spec(model)
    t = time.perf_counter()
    priors = load_prior_set("weakly-informative")
    patients, recovery = data_paths(data)
    trial = load_trial(patients, recovery, spec.needs())
    phases["load_s"] = time.perf_counter() - t
    module = module_for(spec.model)
    t = time.perf_counter()
    inputs = module.inputs(trial, spec)
    pm_model = module.build(inputs, spec, priors)
    phases["build_s"] = time.perf_counter() - t
    extra = {}
    if exclude:
        extra["var_names"] = [v.name for v in pm_model.free_RVs + pm_model.deterministics if v.name not in exclude]
    settings = SamplerSettings(sampler=resolve_sampler(sampler, module), extra=extra)
    t = time.perf_counter()
    target_accept = default_target_accept(module, inputs)
    route = REGISTRY.get(spec.model).nutpie_route  # as `marrow fit` (fit_model) chooses it
    idata = sample_model(pm_model, settings, target_accept, False, compile_key="phases", route=route)
    call = time.perf_counter() - t
    phases["sampling_s"] = float(idata.posterior.attrs["sampling_time"])
    phases["compile_s"] = call - phases["sampling_s"]
    phases["sampler_used"] = settings.sampler
    t = time.perf_counter()
    add_log_prior(idata, pm_model, spec, priors)  # as `marrow fit` does, for `marrow sensitivity`
    phases["log_prior_s"] = time.perf_counter() - t
    t = time.perf_counter()
    module.augment(idata, inputs, spec, np.random.default_rng([settings.seed, 1])).apply(idata)
    phases["augment_s"] = time.perf_counter() - t
    t = time.perf_counter()
    provenance = build_provenance(trial, spec, priors, settings, extra={"target_accept": target_accept})
    fitted = Fit(idata, provenance)
    fitted.save(out, force=True)
    phases["save_s"] = time.perf_counter() - t
    t = time.perf_counter()
    from marrow.diagnostics import diagnose  # `marrow fit` checks the fit after saving it

    diagnose(fitted)
    phases["diagnose_s"] = time.perf_counter() - t
    return phases


def phases(
    model: str,
    data,
    sampler: str,
    cache: str = "warm",
    blas: str | None = None,
    env_extra: dict | None = None,
    exclude: tuple[str, ...] = (),
    log=print,
) -> dict:
    """Phase timings from a fresh interpreter (after an untimed warm-up when cache='warm')."""
    if cache not in ("warm", "cold"):
        raise ValueError(f"phases runs with cache warm or cold, not {cache!r}")
    with tempfile.TemporaryDirectory(prefix="marrow-bench-") as work:
        out = Path(work) / "fit.nc"
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "_phases",
            "--model",
            model,
            "--data",
            str(data or "bundled"),
            "--sampler",
            sampler,
            "--out",
            str(out),
        ] + (["--exclude", ",".join(exclude)] if exclude else [])
        extra_flags = blas_flag(blas)
        if cache == "warm":
            run_in_cache(
                fit_command(model, data, sampler, out, short=True),
                "warm",
                extra_flags,
                env_extra,
                cwd=Path(work),
                what="warm-up run",
            )
        result = run_in_cache(cmd, cache, extra_flags, env_extra, cwd=Path(work), what="phases run")
        record = json.loads(result["stdout"].strip().splitlines()[-1])
        record.update(
            {
                "tool": "marrow",
                "model": model,
                "sampler": sampler if sampler != "auto" else f"auto ({record.pop('sampler_used')})",
                "cache": cache,
                "blas": blas_label(blas),
                "excluded": ",".join(exclude),
                "process_s": result["wall_s"],
                "maxrss_mb": result["maxrss_mb"],
            }
        )
        record["startup_s"] = record["process_s"] - sum(
            v for k, v in record.items() if k.endswith("_s") and k not in ("process_s",)
        )
        log(
            f"  phases {model} {sampler}{' without ' + ','.join(exclude) if exclude else ''}: "
            + ", ".join(f"{k} {v:.2f}" for k, v in record.items() if k.endswith("_s"))
        )
        return record


# --- a new process beside the hand-written script -------------------------------------------------


def peer_command(model: str, out: Path, short: bool = False) -> list[str]:
    """The hand-written PyMC + nutpie script of `model` (NEWPROCESS), same data, covariates and seed."""
    case, script = NEWPROCESS[model]
    cmd = [sys.executable, str(SCRIPTS / script), *covariate_args(case), "--out", str(out), "--quiet"]
    return cmd + (["--tune", "10", "--draws", "10"] if short else [])


def _diagnostics(idata, names: list[str]) -> dict:
    """Minimum bulk ESS, maximum R-hat over `names` (those present) and divergences of a fit."""
    import warnings

    import arviz as az
    import numpy as np

    post = idata.posterior[[v for v in names if v in idata.posterior]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ess, rhat = az.ess(post, method="bulk"), az.rhat(post, method="rank")
    stats = idata.sample_stats
    return {
        "ess_bulk_min": min(float(np.nanmin(ess[v].to_numpy())) for v in post.data_vars),
        "rhat_max": max(float(np.nanmax(rhat[v].to_numpy())) for v in post.data_vars),
        "divergences": int(stats["diverging"].sum()) if "diverging" in stats else 0,
    }


def newprocess(models: list[str], cache: str = "warm", runs: int = 3, log=print) -> list[dict]:
    """Each model's `marrow fit` (its defaults) and its hand-written script, alternating run by run.

    warm: one untimed short run of each first fills the benchmark compile cache both use; cold: every
    run gets fresh, empty PyTensor and numba cache dirs (cache_env). Records: wall, peak memory, and
    the script's own phase times (its last stdout line) or marrow's (from the fit's provenance)."""
    import arviz as az

    if cache not in ("warm", "cold"):
        raise ValueError(f"newprocess runs with cache warm or cold, not {cache!r}")
    results = []
    with tempfile.TemporaryDirectory(prefix="marrow-bench-") as work:
        work = Path(work)
        for model in models:
            case = NEWPROCESS[model][0]
            out = {"marrow": work / f"{model}-marrow.nc", "script": work / f"{model}-script.nc"}
            commands = {
                "marrow": fit_command(case, None, "auto", out["marrow"]),
                "script": peer_command(model, out["script"]),
            }
            if cache == "warm":
                run_in_cache(
                    fit_command(case, None, "auto", out["marrow"], short=True), "warm", cwd=work, what="warm-up"
                )
                run_in_cache(peer_command(model, out["script"], short=True), "warm", cwd=work, what="warm-up")
            for i in range(runs):
                for tool in ("marrow", "script"):  # alternating, so both see the same drift of the machine
                    result = run_in_cache(commands[tool], cache, cwd=work, what=f"{tool} {model}")
                    record = {
                        "tool": tool,
                        "model": model,
                        "cache": cache,
                        "run": i + 1,
                        "wall_s": result["wall_s"],
                        "cpu_s": result["cpu_s"],
                        "maxrss_mb": result["maxrss_mb"],
                        "load_before": result["load_before"],
                    }
                    if tool == "marrow":
                        metrics = fit_metrics(out["marrow"], case)
                        record["phases"] = {k: metrics[k] for k in ("build_s", "compile_s", "sampling_s", "augment_s")}
                        record.update({k: metrics[k] for k in ("ess_bulk_min", "rhat_max", "divergences")})
                        record["sampler"] = metrics["sampler"]
                    else:
                        record["phases"] = json.loads(result["stdout"].strip().splitlines()[-1])
                        record.update(_diagnostics(az.from_netcdf(out["script"]), KEY_VARS[case]))
                        record["sampler"] = "nutpie"
                    log(
                        f"  {tool:6s} {model:8s} {cache} run {i + 1}/{runs}: {record['wall_s']:.1f} s "
                        f"({record['cpu_s']:.1f} s CPU), "
                        f"{_mb(record['maxrss_mb'])} MB, min ESS {record['ess_bulk_min']:.0f}, "
                        f"{record['divergences']} div., load {record['load_before']:.1f}; "
                        + ", ".join(f"{k[:-2]} {_num(v)}" for k, v in record["phases"].items())
                    )
                    results.append(record)
    log(newprocess_table(results))
    return results


def newprocess_table(records: list[dict]) -> str:
    """Markdown: per model and cache, the median wall time of marrow and of the script and their ratio."""
    lines = [
        "| model | cache | runs | marrow median s | script median s | marrow / script "
        "| marrow peak MB | script peak MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = list(dict.fromkeys((r["model"], r["cache"]) for r in records))
    for model, cache in keys:
        rows = {
            t: [r for r in records if (r["model"], r["cache"], r["tool"]) == (model, cache, t)]
            for t in ("marrow", "script")
        }
        if not rows["marrow"] or not rows["script"]:
            continue
        wall = {t: statistics.median(r["wall_s"] for r in rows[t]) for t in rows}
        peak = {t: statistics.median(r["maxrss_mb"] for r in rows[t]) for t in rows}
        lines.append(
            f"| {model} | {cache} | {len(rows['marrow'])} | {wall['marrow']:.1f} | {wall['script']:.1f} "
            f"| {wall['marrow'] / wall['script']:.2f} | {peak['marrow']:.0f} | {peak['script']:.0f} |"
        )
    return "\n".join(lines)


# --- gradient evaluation (BLAS lever) --------------------------------------------------------------


def _gradient_child(model: str, data, evals: int) -> dict:
    """Compile the model's logp + gradient with PyTensor's C backend and time one evaluation."""
    import warnings

    warnings.simplefilter("ignore")
    import pytensor
    from pymc.blocking import DictToArrayBijection

    from marrow.data import load_trial
    from marrow.models import module_for
    from marrow.priors import load_prior_set

    spec = bench_spec(model)
    patients, recovery = data_paths(data)
    module = module_for(spec.model)
    pm_model = module.build(
        module.inputs(load_trial(patients, recovery, spec.needs()), spec), spec, load_prior_set("weakly-informative")
    )
    t = time.perf_counter()
    fn = pm_model.logp_dlogp_function(ravel_inputs=True)
    fn.set_extra_values({})
    compile_s = time.perf_counter() - t
    point = pm_model.initial_point()
    x = DictToArrayBijection.map({k: point[k] for k in point}).data
    fn(x)
    t = time.perf_counter()
    for _ in range(evals):
        fn(x)
    return {
        "blas_ldflags": pytensor.config.blas__ldflags,
        "compile_s": compile_s,
        "gradient_us": (time.perf_counter() - t) / evals * 1e6,
    }


def gradient(model: str, data, blas: str | None = None, evals: int = 500, repeats: int = 3, log=print) -> dict:
    """Median time of one logp+gradient evaluation over `repeats` fresh processes (warm cache)."""
    values = []
    for _ in range(repeats + 1):  # the first populates the compile dir
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "_gradient",
            "--model",
            model,
            "--data",
            str(data or "bundled"),
            "--evals",
            str(evals),
        ]
        result = run_in_cache(cmd, "warm", blas_flag(blas), what="gradient run")
        values.append(json.loads(result["stdout"].strip().splitlines()[-1]))
    values = values[1:]
    record = {
        "tool": "marrow",
        "model": model,
        "blas": blas_label(blas),
        "repeats": repeats,
        "evals": evals,
        "gradient_us": statistics.median(v["gradient_us"] for v in values),
        "load_before": os.getloadavg()[0],
    }
    log(
        f"  gradient {model} blas={record['blas']}: {record['gradient_us']:.0f} us per logp+gradient "
        f"(median of {repeats})"
    )
    return record


# --- CLI start-up --------------------------------------------------------------------------------


def startup(runs: int = 10, log=print) -> list[dict]:
    """Median wall time of `marrow --help` and `marrow fit --help` (hyperfine when installed)."""
    results = []
    for args in (["--help"], ["fit", "--help"], ["fit", "response", "--help"]):
        cmd = [MARROW, *args]
        hyperfine = shutil.which("hyperfine")
        if hyperfine:
            with tempfile.NamedTemporaryFile(suffix=".json") as report:
                subprocess.run(
                    [
                        hyperfine,
                        "--warmup",
                        "2",
                        "--runs",
                        str(runs),
                        "-N",
                        "--export-json",
                        report.name,
                        " ".join(cmd),
                    ],
                    check=True,
                    capture_output=True,
                )
                data = json.load(open(report.name))["results"][0]
            median, low, high = data["median"], data["min"], data["max"]
            how = "hyperfine"
        else:
            times = []
            for _ in range(runs + 2):
                times.append(run_timed(cmd, dict(os.environ))["wall_s"])
            times = times[2:]
            median, low, high = statistics.median(times), min(times), max(times)
            how = "repeated"
        record = {
            "command": "marrow " + " ".join(args),
            "median_s": median,
            "min_s": low,
            "max_s": high,
            "runs": runs,
            "how": how,
        }
        log(f"  {record['command']}: median {median:.3f} s (min {low:.3f}, max {high:.3f}, {runs} runs, {how})")
        results.append(record)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    for name in ("e2e", "phases", "_phases"):
        p = sub.add_parser(name)
        p.add_argument("--model", choices=MODELS, default="response")
        p.add_argument("--data", default="bundled", help="'bundled' or a folder from benchmarks/generate.py")
        p.add_argument("--sampler", choices=["auto", "pymc", "nutpie", "numpyro"], default="pymc")
        p.add_argument("--exclude", default="", help="deterministics to leave out of sampling (phases only)")
        if name == "_phases":
            p.add_argument("--out", type=Path, required=True)
            continue
        p.add_argument(
            "--cache",
            choices=["warm", "cold", "worker"] if name == "e2e" else ["warm", "cold"],
            default="warm",
            help="warm or cold compile cache" + (", or a resident worker (docs/worker.md)" if name == "e2e" else ""),
        )
        p.add_argument(
            "--blas",
            default=None,
            help="PyTensor blas__ldflags ('' = none, no probe), e.g. "
            "'-L/usr/lib/x86_64-linux-gnu -l:libopenblas.so.0'; default: not set (PyTensor probes)",
        )
        p.add_argument(
            "--xla-devices", type=int, default=0, help="XLA_FLAGS host device count (NumPyro parallel chains)"
        )
        if name == "e2e":
            p.add_argument("--runs", type=int, default=1)
        p.add_argument("--json", type=Path, help="append the records to this JSON-lines file")
    p = sub.add_parser("_gradient")
    p.add_argument("--model", choices=MODELS, default="response")
    p.add_argument("--data", default="bundled")
    p.add_argument("--evals", type=int, default=500)
    p = sub.add_parser("gradient")
    p.add_argument("--model", choices=MODELS, default="response")
    p.add_argument("--data", default="bundled")
    p.add_argument("--blas", default=None)
    p.add_argument("--evals", type=int, default=500)
    p = sub.add_parser("startup")
    p.add_argument("--runs", type=int, default=10)
    p = sub.add_parser("newprocess", help="every model's `marrow fit` beside its hand-written script")
    p.add_argument("--models", default=",".join(NEWPROCESS), help="comma list of " + ", ".join(NEWPROCESS))
    p.add_argument("--cache", choices=["warm", "cold"], default="warm")
    p.add_argument("--runs", type=int, default=3, help="timed runs of each, alternating")
    p.add_argument("--json", type=Path, help="append the records to this JSON-lines file")
    args = parser.parse_args(argv)

    if args.what == "_phases":
        data = None if args.data == "bundled" else args.data
        exclude = tuple(x for x in args.exclude.split(",") if x)
        print(json.dumps(_phases_child(args.model, data, args.sampler, args.out, exclude)))
        return
    if args.what == "startup":
        startup(args.runs)
        return
    if args.what == "newprocess":
        models = [m for m in args.models.split(",") if m]
        unknown = [m for m in models if m not in NEWPROCESS]
        if unknown:
            parser.error(f"--models: unknown {', '.join(unknown)}; choose from {', '.join(NEWPROCESS)}")
        records = newprocess(models, args.cache, args.runs)
        if args.json:
            append_jsonl(args.json, records)
        return
    if args.what == "_gradient":
        print(json.dumps(_gradient_child(args.model, None if args.data == "bundled" else args.data, args.evals)))
        return
    if args.what == "gradient":
        gradient(args.model, None if args.data == "bundled" else args.data, args.blas, args.evals)
        return
    data = None if args.data == "bundled" else args.data
    env_extra = (
        {"XLA_FLAGS": f"--xla_force_host_platform_device_count={args.xla_devices}"} if args.xla_devices else None
    )
    if args.what == "e2e":
        records = e2e(args.model, data, args.sampler, args.cache, args.runs, args.blas, env_extra)
    else:
        exclude = tuple(x for x in args.exclude.split(",") if x)
        records = [phases(args.model, data, args.sampler, args.cache, args.blas, env_extra, exclude)]
    if args.json:
        append_jsonl(args.json, records)


if __name__ == "__main__":
    main()
