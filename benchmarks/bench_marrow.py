"""Time marrow: end to end (`marrow fit ...` as a subprocess) and phase by phase inside one process.

End to end (process start to saved fit), with the PyTensor compile cache either
* warm: a benchmark compile dir already populated by an untimed run of the same command, or
* cold: a fresh, empty compile dir (PYTENSOR_FLAGS=compiledir=<tmpdir>) and numba cache dir, so
  every C module / numba function is compiled again (JAX never caches between processes here).
Peak memory is ru_maxrss of the child from os.wait4 (the largest single process; PyMC's sampler
workers are separate processes, so their sum can be higher).

The fit file is read afterwards (not timed) for: sampling time (the sampler's own clock,
posterior.attrs['sampling_time']), compile time (time inside `pm.sample` before sampling starts:
PyTensor rewrites + C compile, or the numba compile for nutpie; for NumPyro the JAX jit is inside
its sampling time), minimum bulk ESS and maximum R-hat over the model's parameters, divergences.

    python benchmarks/bench_marrow.py e2e --model response --sampler nutpie --cache cold
    python benchmarks/bench_marrow.py phases --model recovery --data /tmp/trial-20k --sampler pymc
    python benchmarks/bench_marrow.py startup
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
MARROW = str(BIN / "marrow") if (BIN / "marrow").exists() else shutil.which("marrow") or "marrow"
COVARIATES = "prior_atg,active_infection"
# The model's own parameters (not derived quantities) used for min ESS / max R-hat, as in brms.
KEY_VARS = {
    "response": ["intercept", "beta", "center_sd", "center_effect"],
    "recovery": ["log_median", "shape", "time_beta"],
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
    cmd = [MARROW, "fit", model, "--covariates", COVARIATES, "--sampler", sampler,
           "--out", str(out), "--force", "--quiet"]
    if short:
        cmd += ["--tune", "10", "--draws", "10"]
    patients, recovery = data_paths(data)
    if patients is not None:
        cmd += ["--data", str(patients)]
        if model == "recovery":
            cmd += ["--recovery", str(recovery)]
    if model == "recovery":
        cmd.append("--no-cure")
    return cmd


def blas_flag(blas: str | None) -> str:
    """PyTensor flag for `blas`: None = not set (PyTensor probes for a BLAS in every process),
    '' = explicitly none (no probe), else the ldflags to link with."""
    return "" if blas is None else f"blas__ldflags={blas}"


def blas_label(blas: str | None) -> str:
    return "detect" if blas is None else ("none" if blas == "" else blas)


def cache_env(cache: str, extra_flags: str = "", env_extra: dict | None = None) -> tuple[dict, Path | None]:
    """Environment for a warm or cold run; returns (env, tmpdir to delete afterwards or None)."""
    env = dict(os.environ)
    env.update(env_extra or {})
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


def run_measured(cmd: list[str], env: dict, cwd: Path | None = None) -> dict:
    """Run `cmd`, reaping it with os.wait4 to get this child's own ru_maxrss.

    getrusage(RUSAGE_CHILDREN).ru_maxrss is a running maximum over every child ever waited for, so
    it cannot separate runs; wait4 returns the rusage of one child (its own peak and that of the
    descendants it waited for, e.g. PyMC's sampler workers), i.e. the largest single process.
    """
    load = os.getloadavg()[0]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {"wall_s": wall, "returncode": proc.returncode, "maxrss_mb": usage.ru_maxrss / 1024,
                "stdout": out.read(), "stderr": err.read(), "load_before": load}


def fit_metrics(path: Path, model: str) -> dict:
    """Diagnostics and the sampler's own clock from a saved marrow fit."""
    import warnings

    import arviz as az
    import numpy as np

    from marrow.fits.fit import Fit

    fit = Fit.load(path)
    idata = fit.idata
    names = [v for v in KEY_VARS[model] if v in idata.posterior]
    post = idata.posterior[names]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ess = az.ess(post, method="bulk")
        rhat = az.rhat(post, method="rank")
    ess_min = min(float(np.nanmin(ess[v].to_numpy())) for v in names)
    rhat_max = max(float(np.nanmax(rhat[v].to_numpy())) for v in names)
    stats = idata.sample_stats
    divergences = int(stats["diverging"].sum()) if "diverging" in stats else 0
    timings = json.loads(fit.provenance.get("timings", "{}"))
    sampling = float(idata.posterior.attrs.get("sampling_time", float("nan")))
    out = {
        "sampling_s": sampling,
        "build_s": timings.get("build_s"),
        "sample_call_s": timings.get("sample_s"),
        "compile_s": (timings["sample_s"] - sampling) if "sample_s" in timings else None,
        "augment_s": timings.get("augment_s"),
        "ess_bulk_min": ess_min,
        "rhat_max": rhat_max,
        "divergences": divergences,
        "estimates": {v: np.round(post[v].mean(("chain", "draw")).to_numpy(), 4).tolist() for v in names},
    }
    fit.idata.close() if hasattr(fit.idata, "close") else None
    return out


def e2e(model: str, data, sampler: str, cache: str = "warm", runs: int = 1, blas: str | None = None,
        env_extra: dict | None = None, warmup: bool = True, log=print) -> list[dict]:
    """`runs` end-to-end timings of `marrow fit MODEL`; a warm cache is populated first by an untimed
    short run of the same command (the compiled graph does not depend on the number of draws)."""
    results = []
    with tempfile.TemporaryDirectory(prefix="marrow-bench-") as work:
        out = Path(work) / "fit.nc"
        cmd = fit_command(model, data, sampler, out)
        extra_flags = blas_flag(blas)
        if cache == "warm" and warmup:
            env, _ = cache_env("warm", extra_flags, env_extra)
            first = run_measured(fit_command(model, data, sampler, out, short=True), env, cwd=Path(work))
            if first["returncode"] != 0:
                raise RuntimeError(f"warm-up run failed: {' '.join(cmd)}\n{first['stderr'][-3000:]}")
        for i in range(runs):
            env, tmp = cache_env(cache, extra_flags, env_extra)
            try:
                result = run_measured(cmd, env, cwd=Path(work))
            finally:
                if tmp is not None:
                    shutil.rmtree(tmp, ignore_errors=True)
            if result["returncode"] != 0:
                raise RuntimeError(f"run failed: {' '.join(cmd)}\n{result['stderr'][-3000:]}")
            record = {"tool": "marrow", "model": model, "sampler": sampler, "cache": cache, "blas": blas_label(blas),
                      "wall_s": result["wall_s"], "maxrss_mb": result["maxrss_mb"], "load_before": result["load_before"],
                      **{k: v for k, v in (env_extra or {}).items() if k == "XLA_FLAGS"}}
            record.update(fit_metrics(out, model))
            record["ess_per_s"] = record["ess_bulk_min"] / record["wall_s"]
            record["ess_per_sampling_s"] = record["ess_bulk_min"] / record["sampling_s"]
            log(f"  marrow {model:8s} {sampler:7s} {cache:4s} run {i + 1}/{runs}: {record['wall_s']:.1f} s "
                f"(compile {record['compile_s']:.1f}, sampling {record['sampling_s']:.1f}), "
                f"min ESS {record['ess_bulk_min']:.0f}, {record['divergences']} divergences, "
                f"{record['maxrss_mb']:.0f} MB, load {record['load_before']:.1f}")
            results.append(record)
    return results


# --- in-process phases ---------------------------------------------------------------------------

def _phases_child(model: str, data, sampler: str, out: Path, exclude: tuple[str, ...] = ()) -> dict:
    """Runs inside a fresh interpreter: time each phase of what `marrow fit` does.

    `exclude`: deterministics left out of sampling (pm.sample var_names), to measure what computing
    them at every draw costs."""
    t = time.perf_counter()
    phases: dict[str, float] = {}
    import pymc  # noqa: F401  (marrow imports it lazily inside the fitting command)

    phases["import_s"] = time.perf_counter() - t
    import numpy as np

    from marrow.data import load_trial
    from marrow.fits.fit import Fit
    from marrow.fits.provenance import build_provenance
    from marrow.fits.run import default_target_accept, sample_model
    from marrow.models import module_for
    from marrow.priors import load_prior_set
    from marrow.spec import ModelSpec, SamplerSettings

    spec = ModelSpec(model=model, covariates=tuple(COVARIATES.split(",")), **({"cure": False} if model == "recovery" else {}))
    t = time.perf_counter()
    priors = load_prior_set("weakly-informative")
    patients, recovery = data_paths(data)
    trial = load_trial(patients, recovery, spec.needs())
    phases["load_s"] = time.perf_counter() - t
    module = module_for(model)
    t = time.perf_counter()
    inputs = module.inputs(trial, spec)
    pm_model = module.build(inputs, spec, priors)
    phases["build_s"] = time.perf_counter() - t
    extra = {}
    if exclude:
        extra["var_names"] = [v.name for v in pm_model.free_RVs + pm_model.deterministics if v.name not in exclude]
    settings = SamplerSettings(sampler=sampler, extra=extra)
    t = time.perf_counter()
    target_accept = default_target_accept(module, inputs)
    idata = sample_model(pm_model, settings, target_accept, False)
    call = time.perf_counter() - t
    phases["sampling_s"] = float(idata.posterior.attrs["sampling_time"])
    phases["compile_s"] = call - phases["sampling_s"]
    t = time.perf_counter()
    module.augment(idata, inputs, spec, np.random.default_rng([settings.seed, 1]))
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


def phases(model: str, data, sampler: str, cache: str = "warm", blas: str | None = None, env_extra: dict | None = None,
           exclude: tuple[str, ...] = (), log=print) -> dict:
    """Phase timings from a fresh interpreter (after an untimed warm-up when cache='warm')."""
    with tempfile.TemporaryDirectory(prefix="marrow-bench-") as work:
        out = Path(work) / "fit.nc"
        cmd = [sys.executable, str(Path(__file__).resolve()), "_phases", "--model", model, "--data", str(data or "bundled"),
               "--sampler", sampler, "--out", str(out)] + (["--exclude", ",".join(exclude)] if exclude else [])
        extra_flags = blas_flag(blas)
        if cache == "warm":
            env, _ = cache_env("warm", extra_flags, env_extra)
            run_measured(fit_command(model, data, sampler, out, short=True), env, cwd=Path(work))
        env, tmp = cache_env(cache, extra_flags, env_extra)
        try:
            result = run_measured(cmd, env, cwd=Path(work))
        finally:
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
        if result["returncode"] != 0:
            raise RuntimeError(f"phases run failed:\n{result['stderr'][-3000:]}")
        record = json.loads(result["stdout"].strip().splitlines()[-1])
        record.update({"tool": "marrow", "model": model, "sampler": sampler, "cache": cache, "blas": blas_label(blas),
                       "excluded": ",".join(exclude), "process_s": result["wall_s"], "maxrss_mb": result["maxrss_mb"]})
        record["startup_s"] = record["process_s"] - sum(v for k, v in record.items() if k.endswith("_s") and k not in ("process_s",))
        log(f"  phases {model} {sampler}{' without ' + ','.join(exclude) if exclude else ''}: " + ", ".join(f"{k} {v:.2f}" for k, v in record.items() if k.endswith("_s")))
        return record


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
    from marrow.spec import ModelSpec

    spec = ModelSpec(model=model, covariates=tuple(COVARIATES.split(",")), **({"cure": False} if model == "recovery" else {}))
    patients, recovery = data_paths(data)
    module = module_for(model)
    pm_model = module.build(module.inputs(load_trial(patients, recovery, spec.needs()), spec), spec,
                            load_prior_set("weakly-informative"))
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
    return {"blas_ldflags": pytensor.config.blas__ldflags, "compile_s": compile_s,
            "gradient_us": (time.perf_counter() - t) / evals * 1e6}


def gradient(model: str, data, blas: str | None = None, evals: int = 500, repeats: int = 3, log=print) -> dict:
    """Median time of one logp+gradient evaluation over `repeats` fresh processes (warm cache)."""
    values = []
    for _ in range(repeats + 1):  # the first populates the compile dir
        env, _ = cache_env("warm", blas_flag(blas))
        cmd = [sys.executable, str(Path(__file__).resolve()), "_gradient", "--model", model,
               "--data", str(data or "bundled"), "--evals", str(evals)]
        result = run_measured(cmd, env)
        if result["returncode"] != 0:
            raise RuntimeError(f"gradient run failed:\n{result['stderr'][-3000:]}")
        values.append(json.loads(result["stdout"].strip().splitlines()[-1]))
    values = values[1:]
    record = {"tool": "marrow", "model": model, "blas": blas_label(blas), "repeats": repeats, "evals": evals,
              "gradient_us": statistics.median(v["gradient_us"] for v in values), "load_before": os.getloadavg()[0]}
    log(f"  gradient {model} blas={record['blas']}: {record['gradient_us']:.0f} us per logp+gradient (median of {repeats})")
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
                subprocess.run([hyperfine, "--warmup", "2", "--runs", str(runs), "-N", "--export-json", report.name,
                                " ".join(cmd)], check=True, capture_output=True)
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
        record = {"command": "marrow " + " ".join(args), "median_s": median, "min_s": low, "max_s": high, "runs": runs, "how": how}
        log(f"  {record['command']}: median {median:.3f} s (min {low:.3f}, max {high:.3f}, {runs} runs, {how})")
        results.append(record)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    for name in ("e2e", "phases", "_phases"):
        p = sub.add_parser(name)
        p.add_argument("--model", choices=["response", "recovery"], default="response")
        p.add_argument("--data", default="bundled", help="'bundled' or a folder from benchmarks/generate.py")
        p.add_argument("--sampler", choices=["pymc", "nutpie", "numpyro"], default="pymc")
        p.add_argument("--exclude", default="", help="deterministics to leave out of sampling (phases only)")
        if name == "_phases":
            p.add_argument("--out", type=Path, required=True)
            continue
        p.add_argument("--cache", choices=["warm", "cold"], default="warm")
        p.add_argument("--blas", default=None, help="PyTensor blas__ldflags ('' = none, no probe), e.g. "
                       "'-L/usr/lib/x86_64-linux-gnu -l:libopenblas.so.0'; default: not set (PyTensor probes)")
        p.add_argument("--xla-devices", type=int, default=0, help="XLA_FLAGS host device count (NumPyro parallel chains)")
        if name == "e2e":
            p.add_argument("--runs", type=int, default=1)
        p.add_argument("--json", type=Path, help="append the records to this JSON-lines file")
    p = sub.add_parser("_gradient")
    p.add_argument("--model", choices=["response", "recovery"], default="response")
    p.add_argument("--data", default="bundled")
    p.add_argument("--evals", type=int, default=500)
    p = sub.add_parser("gradient")
    p.add_argument("--model", choices=["response", "recovery"], default="response")
    p.add_argument("--data", default="bundled")
    p.add_argument("--blas", default=None)
    p.add_argument("--evals", type=int, default=500)
    p = sub.add_parser("startup")
    p.add_argument("--runs", type=int, default=10)
    args = parser.parse_args(argv)

    if args.what == "_phases":
        data = None if args.data == "bundled" else args.data
        exclude = tuple(x for x in args.exclude.split(",") if x)
        print(json.dumps(_phases_child(args.model, data, args.sampler, args.out, exclude)))
        return
    if args.what == "startup":
        startup(args.runs)
        return
    if args.what == "_gradient":
        print(json.dumps(_gradient_child(args.model, None if args.data == "bundled" else args.data, args.evals)))
        return
    if args.what == "gradient":
        gradient(args.model, None if args.data == "bundled" else args.data, args.blas, args.evals)
        return
    data = None if args.data == "bundled" else args.data
    env_extra = {"XLA_FLAGS": f"--xla_force_host_platform_device_count={args.xla_devices}"} if args.xla_devices else None
    if args.what == "e2e":
        records = e2e(args.model, data, args.sampler, args.cache, args.runs, args.blas, env_extra)
    else:
        exclude = tuple(x for x in args.exclude.split(",") if x)
        records = [phases(args.model, data, args.sampler, args.cache, args.blas, env_extra, exclude)]
    if args.json:
        with open(args.json, "a") as handle:
            for record in records:
                handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
