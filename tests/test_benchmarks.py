"""The benchmark scripts: the data generator writes trials marrow's loader accepts; the table, the
worker mode, the brms variants and the reuse of earlier brms records work (no real benchmark runs)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from marrow.data import load_trial
from marrow.data.load import Needs

GENERATE = Path(__file__).resolve().parents[1] / "benchmarks" / "generate.py"


@pytest.fixture(scope="module")
def generate():
    spec = importlib.util.spec_from_file_location("marrow_bench_generate", GENERATE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_trial_loads(generate, tmp_path: Path) -> None:
    patients_path, recovery_path = generate.write(
        tmp_path, n_patients=120, n_centers=6, n_lineages=4, n_covariates=3, seed=3
    )
    covariates = tuple(generate.covariate_names(3))
    assert covariates == ("prior_atg", "active_infection", "x3")
    needs = Needs(ordinal=True, followup=True, died=True, adverse_event=True, recovery=True, covariates=covariates)
    trial = load_trial(patients_path, recovery_path, needs)
    assert len(trial.patients) == 120
    assert len(trial.centers) == 6
    assert len(trial.recovery) == 120 * 4
    assert trial.lineages == ("leukocytic", "erythrocytic", "megakaryocytic", "lineage4")
    assert set(trial.patients["response"]) <= {"CR", "PR", "NR"}
    # only responders recover, never after follow-up
    rec = trial.recovery.merge(trial.patients[["patient_id", "response", "followup_days"]], on="patient_id")
    assert not ((rec["response"] == "NR") & (rec["recovered"] == 1)).any()
    assert (rec["day"] <= rec["followup_days"]).all()


def test_generator_is_seeded(generate) -> None:
    a = generate.generate(n_patients=50, n_centers=5, seed=11)
    b = generate.generate(n_patients=50, n_centers=5, seed=11)
    assert a[0].equals(b[0]) and a[1].equals(b[1])
    assert generate.center_sizes(50, 5, np.random.default_rng(0)).sum() == 50


# --- bench_marrow / bench_brms / run_all: cheap checks, no real benchmark runs -----------------------

BENCHMARKS = GENERATE.parent


@pytest.fixture(scope="module")
def bench():
    """The benchmark scripts as modules (they import each other by their file names)."""
    import sys

    sys.path.insert(0, str(BENCHMARKS))
    try:
        import bench_brms
        import bench_marrow
        import run_all
    finally:
        sys.path.remove(str(BENCHMARKS))
    return {"marrow": bench_marrow, "brms": bench_brms, "run_all": run_all}


def _marrow_record(size, model, sampler, cache, wall, ess_per_s, **extra):
    return {
        "kind": "e2e",
        "size": size,
        "utc": "10:00:00",
        "tool": "marrow",
        "model": model,
        "sampler": sampler,
        "cache": cache,
        "blas": "detect",
        "wall_s": wall,
        "compile_s": 1.0,
        "sampling_s": 2.0,
        "ess_bulk_min": 2000.0,
        "ess_per_s": ess_per_s,
        "ess_per_sampling_s": 1000.0,
        "divergences": 0,
        "rhat_max": 1.002,
        "maxrss_mb": 500.0,
        "load_before": 1.0,
        **extra,
    }


def _brms_record(size, model, wall, ess_per_s, variant=None, **extra):
    record = {
        "kind": "e2e",
        "size": size,
        "utc": "09:00:00",
        "tool": "brms",
        "model": model,
        "sampler": "stan",
        "cache": "-",
        "wall_s": wall,
        "compile_s": 30.0,
        "sampling_s": 5.0,
        "ess_bulk_min": 2000.0,
        "ess_per_s": ess_per_s,
        "ess_per_sampling_s": 400.0,
        "divergences": 0,
        "rhat_max": 1.003,
        "maxrss_mb": 2200.0,
        "load_before": 1.0,
        **extra,
    }
    if variant:
        record["variant"] = variant
    return record


def _row(table: str, *needles: str) -> list[str]:
    rows = [line.split(" | ") for line in table.splitlines() if all(n in line for n in needles)]
    assert len(rows) == 1, (needles, rows)
    return [cell.strip(" |") for cell in rows[0]]


def test_table_has_both_brms_variants_and_worker_rows(bench) -> None:
    records = [
        _brms_record("large", "response", 80.0, 20.0, "cells"),
        _brms_record("large", "response", 160.0, 10.0, "per patient"),
        _brms_record("large", "recovery", 1000.0, 1.0),
        _marrow_record("large", "response", "nutpie", "warm", 40.0, 40.0),
        _marrow_record("large", "response", "nutpie", "worker", 20.0, 80.0, client_maxrss_mb=15.0),
        _marrow_record("large", "response", "nutpie", "worker", 10.0, 160.0, client_maxrss_mb=15.0),
        _marrow_record("large", "recovery", "nutpie", "warm", 500.0, 2.0),
    ]
    table = bench["run_all"].render(records)
    header = [cell.strip(" |") for cell in table.splitlines()[0].split(" | ")]
    assert "brms / wall" in header and "brms per patient / wall" in header and "ESS/s vs brms per patient" in header
    col = {name: i for i, name in enumerate(header)}
    cells = _row(table, "brms (Stan), binomial cells")
    assert cells[col["brms / wall"]] == "-"
    per_patient = _row(table, "brms (Stan), one row per patient")
    assert per_patient[col["wall s"]] == "160.0"
    warm = _row(table, "| response | nutpie | warm |")
    assert warm[col["brms / wall"]] == "2.0x" and warm[col["brms per patient / wall"]] == "4.0x"
    assert warm[col["ESS/s vs brms"]] == "2.0x" and warm[col["ESS/s vs brms per patient"]] == "4.0x"
    worker = _row(table, "| response | nutpie | worker |")
    assert worker[col["runs"]] == "2" and worker[col["wall s"]] == "15.0"  # median of the two runs
    assert worker[col["brms per patient / wall"]] == "10.7x"
    recovery = _row(table, "| recovery | nutpie | warm |")
    assert recovery[col["brms / wall"]] == "2.0x" and recovery[col["brms per patient / wall"]] == "-"
    assert _row(table, "| recovery | brms (Stan) |")
    assert "worker: a resident `marrow worker`" in table
    # brms rows before marrow rows, cells before per patient; warm before worker
    order = [line for line in table.splitlines() if line.startswith("| 20,000")]
    assert [("per patient" in line, "worker" in line) for line in order if "response" in line] == [
        (False, False),
        (True, False),
        (False, False),
        (False, True),
    ]


def test_old_brms_records_count_as_cells(bench) -> None:
    """Results files from before the variants: the response model was fitted on cell counts."""
    run_all = bench["run_all"]
    rows = run_all.summarise(
        [_brms_record("bundled", "response", 48.0, 44.0), _brms_record("bundled", "recovery", 48.0, 70.0)]
    )
    assert {(r["model"], r["variant"]) for r in rows} == {("response", "cells"), ("recovery", None)}


def test_reference_brms_rows_are_reused_and_marked(bench, tmp_path, monkeypatch) -> None:
    run_all = bench["run_all"]
    earlier = tmp_path / "brms-earlier.jsonl"
    earlier.write_text(
        "\n".join(
            json.dumps(r)
            for r in [
                {"kind": "machine", "size": "-", "utc": "08:00:00", "cpus": 2},
                _brms_record("large", "recovery", 3847.4, 0.7),
                _brms_record("large", "response", 398.6, 3.1),  # no variant: cells
                _brms_record("bundled", "response", 48.0, 44.0),  # another size: not copied
            ]
        )
        + "\n"
    )
    brms_calls, e2e_calls = [], []

    def fake_brms(model, data=None, runs=1, seed=2017, variant=None, log=print):
        brms_calls.append((model, variant))
        return [_brms_record("x", model, 700.0, 2.0, variant)]

    def fake_e2e(model, data, sampler, cache="warm", runs=1, **kwargs):
        e2e_calls.append((model, sampler, cache, runs))
        return [_marrow_record("x", model, sampler, cache, 100.0, 10.0)]

    monkeypatch.setattr(run_all.bench_brms, "run", fake_brms)
    monkeypatch.setattr(run_all.bench_marrow, "e2e", fake_e2e)
    monkeypatch.setattr(run_all, "data_dir", lambda size, root: "/nonexistent/trial")
    results = tmp_path / "today.jsonl"
    run_all.main(
        [
            "--sizes",
            "large",
            "--models",
            "response,recovery",
            "--samplers",
            "nutpie",
            "--caches",
            "warm,worker",
            "--only",
            "brms:large,e2e:large",
            "--reference-brms",
            str(earlier),
            "--results",
            str(results),
        ]
    )
    assert brms_calls == [("response", "per patient")]  # cells and recovery come from the earlier file
    assert e2e_calls == [
        ("response", "nutpie", "warm", 1),
        ("response", "nutpie", "worker", 1),
        ("recovery", "nutpie", "warm", 1),
        ("recovery", "nutpie", "worker", 1),
    ]
    saved = run_all.load(results)
    reused = [r for r in saved if r.get("reused_from")]
    assert {(r["model"], r.get("variant")) for r in reused} == {("recovery", None), ("response", "cells")}
    assert all(r["reused_from"] == "brms-earlier.jsonl" and r["utc"] == "09:00:00" for r in reused)
    table = results.with_suffix(".md").read_text()
    assert "brms (Stan) (earlier run: brms-earlier.jsonl, 09:00:00 UTC)" in table
    assert "brms (Stan), binomial cells (earlier run: brms-earlier.jsonl" in table
    assert "brms (Stan), one row per patient |" in table  # measured in this run: not marked
    assert "--reference-brms" in table


def test_cache_env_keeps_warm_and_cold_runs_off_any_worker(bench, monkeypatch) -> None:
    bm = bench["marrow"]
    monkeypatch.setenv("MARROW_WORKER", "on")
    warm, _ = bm.cache_env("warm")
    cold, tmp = bm.cache_env("cold")
    worker, _ = bm.cache_env("worker")
    tmp.rmdir() if tmp.exists() else None
    assert warm["MARROW_WORKER"] == "off" and cold["MARROW_WORKER"] == "off"
    assert "MARROW_WORKER" not in worker
    assert worker["PYTENSOR_FLAGS"] == warm["PYTENSOR_FLAGS"] and worker["NUMBA_CACHE_DIR"] == warm["NUMBA_CACHE_DIR"]


STATUS = """\
pid                   4242
uptime                12 s (since 2026-11-26T10:00:00Z)
commands served       {served}
running now           nothing
queued                0
compiled models kept  1
peak memory           {peak} MB
marrow version        0.9.0
python                /work/main/.venv/bin/python
idle timeout          30 min
socket                /tmp/mw-abc/w.sock
log                   /tmp/mw-abc/w.log
"""


def test_parse_worker_status(bench) -> None:
    info = bench["marrow"].parse_worker_status(
        STATUS.format(served=3, peak=612) + "note: commands run in their own process instead: changed\n"
    )
    assert info["pid"] == 4242 and info["served"] == 3 and info["peak_memory_mb"] == 612.0
    assert info["compiled models kept"] == "1" and info["note"].endswith("instead: changed")


class FakeMarrow:
    """Stands in for run_measured: answers `marrow worker start|status|stop` and `marrow fit`."""

    def __init__(self, serve: bool = True):
        self.calls: list[tuple[list[str], dict]] = []
        self.served = 0
        self.serve = serve

    def __call__(self, cmd, env, cwd=None):
        self.calls.append((cmd, dict(env or {})))
        args = cmd[1:]
        out = ""
        if args[:2] == ["worker", "start"]:
            out = f"marrow worker started in 3.0 s: pid 4242, socket {env['MARROW_WORKER_SOCKET']}\n"
        elif args[:2] == ["worker", "status"]:
            out = STATUS.format(served=self.served, peak=600 + self.served)
        elif args[:2] == ["worker", "stop"]:
            out = "marrow worker stopped (pid 4242)\n"
        elif args[0] == "fit":
            self.served += self.serve
        return {"wall_s": 1.25, "returncode": 0, "maxrss_mb": 15.0, "stdout": out, "stderr": "", "load_before": 0.5}


def test_worker_mode_starts_warms_times_and_stops_the_worker(bench, monkeypatch) -> None:
    bm = bench["marrow"]
    fake = FakeMarrow()
    monkeypatch.setattr(bm, "run_measured", fake)
    monkeypatch.setattr(
        bm,
        "fit_metrics",
        lambda path, model: {
            "sampling_s": 0.5,
            "compile_s": 0.0,
            "ess_bulk_min": 2000.0,
            "divergences": 0,
            "rhat_max": 1.0,
        },
    )
    monkeypatch.setattr(bm, "process_alive", lambda pid: False)
    monkeypatch.setenv("MARROW_WORKER", "off")  # the user's setting must not stop delegation in worker mode
    records = bm.e2e("response", None, "nutpie", "worker", runs=2, log=lambda *a: None)
    commands = [" ".join(cmd[1:3]) for cmd, _ in fake.calls]
    assert commands == [
        "worker start",  # start, then the warm-up:
        "worker status",
        "fit response",
        "worker status",  # short run through it
        "worker status",
        "fit response",
        "worker status",  # timed run 1
        "worker status",
        "fit response",
        "worker status",  # timed run 2
        "worker stop",
    ]
    fits = [(cmd, env) for cmd, env in fake.calls if cmd[1] == "fit"]
    assert "--tune" in fits[0][0] and all("--tune" not in cmd for cmd, _ in fits[1:])
    sockets = {env["MARROW_WORKER_SOCKET"] for _, env in fake.calls}
    assert len(sockets) == 1
    socket = sockets.pop()
    assert socket.startswith("/tmp/mw-") and len(socket) < 100 and not Path(socket).parent.exists()  # removed
    assert all("MARROW_WORKER" not in env and "compiledir=" in env["PYTENSOR_FLAGS"] for _, env in fake.calls)
    assert [r["cache"] for r in records] == ["worker", "worker"]
    assert [r["maxrss_mb"] for r in records] == [602.0, 603.0]  # the worker's peak after each run
    assert all(r["client_maxrss_mb"] == 15.0 and r["wall_s"] == 1.25 and r["ess_per_s"] == 1600.0 for r in records)


def test_worker_mode_refuses_runs_the_worker_did_not_serve_and_still_stops_it(bench, monkeypatch) -> None:
    bm = bench["marrow"]
    fake = FakeMarrow(serve=False)  # e.g. the worker refused the command and the client ran it itself
    monkeypatch.setattr(bm, "run_measured", fake)
    monkeypatch.setattr(bm, "process_alive", lambda pid: False)
    with pytest.raises(RuntimeError, match="not served by the worker"):
        bm.e2e("response", None, "nutpie", "worker", runs=1, log=lambda *a: None)
    assert " ".join(fake.calls[-1][0][1:3]) == "worker stop"


def test_brms_variants_map_to_the_r_models(bench, monkeypatch, tmp_path) -> None:
    brms, bm = bench["brms"], bench["marrow"]
    seen = []

    def fake_run_checked(cmd, env, cwd=None, what="run", check=None):
        seen.append(cmd[2])
        Path(cmd[6]).write_text(
            json.dumps(
                {
                    "tool": "brms",
                    "model": cmd[2],
                    "compile_s": 30.0,
                    "sample_s": 5.0,
                    "in_process_s": 40.0,
                    "ess_bulk_min": 2000.0,
                    "divergences": 0,
                    "rhat_max": 1.0,
                }
            )
        )
        assert check()
        return {"wall_s": 42.0, "returncode": 0, "maxrss_mb": 2000.0, "load_before": 0.1, "stdout": "", "stderr": ""}

    monkeypatch.setattr(brms, "availability", lambda: None)
    monkeypatch.setattr(bm, "run_checked", fake_run_checked)
    quiet = {"log": lambda *a: None}
    per_patient = brms.run("response", None, variant="per-patient", **quiet)[0]
    cells = brms.run("response", None, **quiet)[0]
    recovery = brms.run("recovery", None, **quiet)[0]
    assert seen == ["response-bernoulli", "response", "recovery"]
    assert (per_patient["model"], per_patient["variant"]) == ("response", "per patient")
    assert (cells["model"], cells["variant"]) == ("response", "cells")
    assert recovery["model"] == "recovery" and "variant" not in recovery
    assert 'model == "response-bernoulli"' in (BENCHMARKS / "bench_brms.R").read_text()
    with pytest.raises(ValueError):
        brms.run("response", None, variant="aggregated", **quiet)


def test_run_measured_reports_the_commands_own_peak(bench) -> None:
    """Not this (large) process's peak, which a directly spawned child's ru_maxrss would include."""
    import resource
    import sys

    bm = bench["marrow"]
    if bm.GNU_TIME is None:
        pytest.skip("GNU time is not installed")
    ballast = bytearray(200 * 2**20)
    ballast[::4096] = b"x" * len(ballast[::4096])
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 > 200
    result = bm.run_measured([sys.executable, "-c", "import sys; sys.exit(3)"], None)
    del ballast
    assert result["returncode"] == 3 and result["maxrss_how"] == "GNU time"
    assert result["maxrss_mb"] < 100


def test_run_measured_reports_the_commands_own_cpu(bench) -> None:
    """cpu_s is the command's CPU time (a sleeping command has almost none), not its wall time or ours."""
    import sys
    import time

    bm = bench["marrow"]
    end = time.process_time() + 0.3
    while time.process_time() < end:  # this process's CPU, which the figure must not include
        pass
    idle = bm.run_measured([sys.executable, "-c", "import time; time.sleep(0.5)"], None)
    busy = bm.run_measured(
        [sys.executable, "-c", "import time\nend = time.process_time() + 0.5\nwhile time.process_time() < end: pass"],
        None,
    )
    assert idle["wall_s"] > 0.5 and idle["cpu_s"] < 0.3
    assert busy["cpu_s"] >= 0.5


@pytest.mark.worker
def test_real_worker_start_status_stop(bench) -> None:
    """A real `marrow worker start`, its parsed status, and `stop` (a few seconds, no fit)."""
    bm = bench["marrow"]
    env, _ = bm.cache_env("worker")
    with bm.worker_running(env, log=lambda *a: None) as running:
        socket = Path(running["MARROW_WORKER_SOCKET"])
        status = bm.worker_status(running)
        assert status["pid"] > 0 and status["served"] == 0 and status["peak_memory_mb"] > 50
        assert status["socket"] == str(socket) and "note" not in status
    assert not socket.parent.exists() and not bm.process_alive(status["pid"])


def test_newprocess_pairs_each_model_with_its_script(bench, tmp_path: Path) -> None:
    """Each model's `marrow fit` command and its hand-written script get the same covariates (none for
    safety, whose script takes none), and the table gives median marrow / median script per model."""
    bm = bench["marrow"]
    for model, (case, script) in bm.NEWPROCESS.items():
        marrow = bm.fit_command(case, None, "auto", tmp_path / "m.nc")
        peer = bm.peer_command(model, tmp_path / "s.nc")
        assert marrow[2 : 2 + len(bm.FIT_ARGS[case])] == list(bm.FIT_ARGS[case])
        assert peer[1] == str(bm.SCRIPTS / script) and Path(peer[1]).exists()
        takes = "--covariates" in Path(peer[1]).read_text()
        assert ("--covariates" in peer) == ("--covariates" in marrow) == takes
    assert "--no-cure" not in bm.fit_command(bm.NEWPROCESS["recovery"][0], None, "auto", tmp_path / "m.nc")
    records = [
        {"tool": tool, "model": model, "cache": "warm", "wall_s": wall, "maxrss_mb": 500.0}
        for tool, model, wall in [
            ("marrow", "response", 10.0),
            ("script", "response", 7.0),
            ("marrow", "response", 14.0),
            ("script", "response", 9.0),
            ("marrow", "response", 12.0),
            ("script", "response", 8.0),
            ("marrow", "ordinal", 20.0),  # no script run: no ratio
        ]
    ]
    table = bm.newprocess_table(records)
    assert "| response | warm | 3 | 12.0 | 8.0 | 1.50 | 500 | 500 |" in table
    assert "ordinal" not in table
