"""The compile levers of issue 15, cold and warm, each in a new process: how a model's log density
reaches the sampler, and what a new process pays before its first draw.

Levers (`--levers`):
  cfunc     nutpie's default: PyTensor's numba function wrapped in numba C callbacks (rebuilt in every process)
  frozen    the same with the data frozen in as constants (marrow.fits.compiled.FROZEN: a recovery fit done once)
  callback  marrow's other route: PyTensor's disk-cached numba function called from Python (marrow.fits.nutpie_callback)
  jax       nutpie's JAX backend, with JAX's persistent compilation cache (needs `pip install jax`)
  pymc-c    PyMC's own NUTS on PyTensor's C backend, whose compiled modules PyTensor keeps on disk

warm: a second process with the caches the first one filled; cold: empty PyTensor and JAX cache folders
(what a fresh machine pays on its first run). Same model (marrow's, bundled trial), 4 chains x (1000 +
1000), seed 2017. Run:

    .venv/bin/python benchmarks/lever_compile.py --runs 2 --json benchmarks/results/levers.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import marrow  # noqa: F401  (before PyMC: it turns numba's fast-math off, as in `marrow fit`)

LEVERS = ("cfunc", "frozen", "callback", "jax", "pymc-c")


def child(model: str, lever: str) -> dict:
    """Inside the measured process: import, build, compile, sample; the seconds of each."""
    start = time.perf_counter()
    import nutpie  # noqa: F401
    import pymc as pm

    from marrow.data import load_trial
    from marrow.fits import graph_order
    from marrow.fits.run import default_target_accept
    from marrow.models import build_model, model_inputs, module_for
    from marrow.priors import load_prior_set
    from marrow.spec import ModelSpec

    times = {"import_s": time.perf_counter() - start}
    graph_order.apply()
    spec = ModelSpec(model, covariates=("prior_atg", "active_infection"))
    start = time.perf_counter()
    data = load_trial(None, None, spec.needs())
    model_ = build_model(data, spec, load_prior_set())
    times["build_s"] = time.perf_counter() - start
    # marrow's own target_accept for the model (recovery 0.99: many leapfrog steps per draw)
    times["target_accept"] = default_target_accept(module_for(model), model_inputs(data, spec))
    settings = dict(draws=1000, tune=1000, chains=4, target_accept=times["target_accept"])
    start = time.perf_counter()
    if lever == "pymc-c":
        with model_:
            idata = pm.sample(
                **settings, cores=2, random_seed=2017, progressbar=False, compute_convergence_checks=False
            )
        total = time.perf_counter() - start
        times["sample_s"] = float(idata.posterior.attrs.get("sampling_time", 0.0))
        times["compile_s"] = total - times["sample_s"]
    else:
        import nutpie

        if lever == "cfunc":
            compiled = nutpie.compile_pymc_model(model_)
        elif lever == "frozen":
            from marrow.fits.compiled import FROZEN, compile_by_route

            compiled = compile_by_route(model_, None, FROZEN)
        elif lever == "callback":
            from marrow.fits.nutpie_callback import compile_callback_model

            compiled = compile_callback_model(model_)
        else:
            compiled = nutpie.compile_pymc_model(model_, backend="jax", gradient_backend="pytensor")
        times["compile_s"] = time.perf_counter() - start
        start = time.perf_counter()
        idata = nutpie.sample(compiled, **settings, cores=2, seed=2017, progress_bar=False)
        times["sample_s"] = time.perf_counter() - start
    import arviz as az

    times["min_ess_bulk"] = float(az.ess(idata.posterior).min().to_array().min())
    return times


def run(model: str, lever: str, cache: Path) -> dict:
    env = dict(os.environ)
    env["PYTENSOR_FLAGS"] = f"base_compiledir={cache / 'pytensor'}"
    env["JAX_COMPILATION_CACHE_DIR"] = str(cache / "jax")
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--child", model, lever], env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    if done.returncode != 0:
        return {"model": model, "lever": lever, "error": done.stderr.strip().splitlines()[-1:]}
    record = json.loads(done.stdout.strip().splitlines()[-1])
    return {"model": model, "lever": lever, "process_s": round(wall, 2), **{k: round(v, 2) for k, v in record.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "LEVER"), help=argparse.SUPPRESS)
    parser.add_argument("--models", default="response,recovery")
    parser.add_argument("--levers", default=",".join(LEVERS))
    parser.add_argument("--runs", type=int, default=2, help="warm runs after the cold one")
    parser.add_argument("--json", type=Path, help="append the records to this JSON-lines file")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    for model in args.models.split(","):
        for lever in args.levers.split(","):
            with tempfile.TemporaryDirectory(prefix="marrow-lever-") as folder:
                for index in range(1 + args.runs):
                    record = run(model, lever, Path(folder))
                    record.update(
                        cache="cold" if index == 0 else "warm",
                        utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        load=round(os.getloadavg()[0], 2),
                    )
                    print(json.dumps(record), flush=True)
                    if args.json:
                        with args.json.open("a") as handle:
                            handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
