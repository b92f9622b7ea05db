"""The study engine: the same table in process, on a local Dask cluster and on a real `dask scheduler`
with two `dask worker` processes; blocks on disk, resume and extension, refusals, failures, estimates;
real refits on two workers with their own compile folders."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from marrow.errors import UsageError
from marrow.simulate import blocks
from marrow.simulate.engine import Task, estimate, run_one, run_tasks, tasks_for
from marrow.simulate.engine_worker import claim_folder, flags_with_folder

SCENARIOS = ["null", "target"]
TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
STOP_AT: list[int] = []  # replicate at which `draws` raises KeyboardInterrupt (in process only)


def draws(task: Task) -> dict:
    """A cheap pure task: numbers drawn from the task's seed; one replicate fails on purpose."""
    if STOP_AT and task.replicate == STOP_AT[0]:
        raise KeyboardInterrupt
    rng = np.random.default_rng(task.seed)
    x = rng.normal(0.1 * task.scenario_index, 1, 200)
    if task.scenario == "target" and task.replicate == 4:
        raise ValueError("no convergence")
    return {"mean": x.mean(), "positives": int((x > 0).sum()), "go": bool(x.mean() > 0.05)}


def big(task: Task) -> dict:
    return {"draws": np.zeros(4000)}


def pause(task: Task) -> dict:
    time.sleep(0.02)
    return {"x": 1.0}


@pytest.mark.cluster
def test_same_table_in_process_on_a_local_cluster_and_on_dask_workers(tmp_path, dask_scheduler):
    tasks = tasks_for(7, SCENARIOS, 10)
    here = run_tasks(draws, tasks, scheduler="process", block_size=4)
    local = run_tasks(draws, tasks, n_workers=2, block_size=4, out=tmp_path / "local", compile_root=tmp_path / "c")
    remote = run_tasks(draws, tasks, scheduler=dask_scheduler, block_size=3)
    pd.testing.assert_frame_equal(here, local, check_exact=True)
    pd.testing.assert_frame_equal(here, remote, check_exact=True)
    assert list(here.columns) == ["scenario", "scenario_index", "replicate", "seed", "mean", "positives", "go", "error"]
    assert here["seed"].tolist() == [t.seed for t in tasks]
    failed = here[here["error"].notna()]
    assert failed[["scenario", "replicate"]].values.tolist() == [["target", 4]]
    assert failed["error"].iloc[0] == "ValueError: no convergence" and np.isnan(failed["mean"].iloc[0])
    names = sorted(p.name for p in (tmp_path / "local" / "blocks").iterdir())
    assert names[:3] == ["s000-r000000-000003.parquet", "s000-r000004-000007.parquet", "s000-r000008-000009.parquet"]
    assert len(names) == 6  # no temporary files left


def test_resume_after_ctrl_c_and_after_a_lost_block_gives_the_uninterrupted_table(tmp_path):
    tasks = tasks_for(3, SCENARIOS, 12)
    full = run_tasks(draws, tasks, scheduler="process", block_size=5)
    out = tmp_path / "study"
    STOP_AT.append(7)
    try:
        with pytest.raises(KeyboardInterrupt, match="1 of 6 blocks finished"):
            run_tasks(draws, tasks, scheduler="process", block_size=5, out=out, fingerprint="d1")
    finally:
        STOP_AT.clear()
    assert [p.name for p in (out / "blocks").iterdir()] == ["s000-r000000-000004.parquet"]
    with pytest.raises(UsageError, match="already holds results; resume"):
        run_tasks(draws, tasks, scheduler="process", block_size=5, out=out, fingerprint="d1")
    resumed = run_tasks(draws, tasks, scheduler="process", block_size=5, out=out, fingerprint="d1", resume=True)
    pd.testing.assert_frame_equal(resumed, full, check_exact=True)

    (out / "blocks" / "s001-r000005-000009.parquet").unlink()
    again = run_tasks(draws, tasks, scheduler="process", block_size=5, out=out, fingerprint="d1", resume=True)
    pd.testing.assert_frame_equal(again, full, check_exact=True)
    # Everything done: nothing runs (no cluster is started), the table is read back.
    done = run_tasks(draws, tasks, out=out, fingerprint="d1", resume=True)
    pd.testing.assert_frame_equal(done, full, check_exact=True)


def test_adding_replicates_makes_new_blocks_and_equals_one_long_run(tmp_path):
    out = tmp_path / "study"
    first = tasks_for(5, SCENARIOS, 6)
    run_tasks(draws, first, scheduler="process", block_size=4, out=out, fingerprint="d")
    more = first + tasks_for(5, SCENARIOS, 3, first=6)  # --add 3
    extended = run_tasks(draws, more, scheduler="process", block_size=4, out=out, fingerprint="d", resume=True)
    pd.testing.assert_frame_equal(extended, run_tasks(draws, tasks_for(5, SCENARIOS, 9), scheduler="process"))
    assert (out / "blocks" / "s001-r000006-000008.parquet").exists()
    # A run that asks for fewer replicates than the folder holds gets only those.
    fewer = run_tasks(draws, first, out=out, fingerprint="d", resume=True)
    assert len(fewer) == 12


def test_refuses_another_study_in_the_folder_and_force_starts_again(tmp_path):
    out = tmp_path / "study"
    tasks = tasks_for(1, SCENARIOS, 4)
    run_tasks(draws, tasks, scheduler="process", out=out, fingerprint="design-a")
    with pytest.raises(UsageError, match="written for another study"):
        run_tasks(draws, tasks, scheduler="process", out=out, fingerprint="design-b", resume=True)
    with pytest.raises(UsageError, match="with seed"):
        run_tasks(draws, tasks_for(2, SCENARIOS, 4), scheduler="process", out=out, fingerprint="design-a", resume=True)
    with pytest.raises(UsageError, match="choose one"):
        run_tasks(draws, tasks, scheduler="process", out=out, resume=True, force=True)
    with pytest.raises(UsageError, match="needs the output folder"):
        run_tasks(draws, tasks, scheduler="process", resume=True)
    forced = run_tasks(draws, tasks_for(2, SCENARIOS, 4), scheduler="process", out=out, fingerprint="b", force=True)
    assert forced["seed"].tolist() == [t.seed for t in tasks_for(2, SCENARIOS, 4)]
    assert len(list((out / "blocks").iterdir())) == 2


def test_usage_errors_for_conflicting_options():
    tasks = tasks_for(1, SCENARIOS, 2)
    with pytest.raises(UsageError, match="listed twice"):
        run_tasks(draws, tasks + tasks[:1], scheduler="process")
    with pytest.raises(UsageError, match="n_workers sizes the local cluster"):
        run_tasks(draws, tasks, scheduler="tcp://127.0.0.1:1", n_workers=2)
    with pytest.raises(UsageError, match="block_size"):
        run_tasks(draws, tasks, scheduler="process", block_size=0)
    zero = run_tasks(draws, tasks, n_workers=0, progress=True)  # n_workers=0: in process, with a bar
    assert len(zero) == 4


def test_records_hold_scalars_only_and_failures_are_rows():
    task = tasks_for(1, ["a"], 1)[0]
    assert run_one(big, task)["error"].startswith("TypeError: record value 'draws' is a ndarray")
    assert run_one(draws, task)["positives"] > 0 and isinstance(run_one(draws, task)["mean"], float)


def test_estimate_times_a_few_tasks_after_a_warm_up():
    tasks = tasks_for(1, SCENARIOS, 50)
    guess = estimate(pause, tasks, n_sample=3, workers=4)
    assert (guess.n_tasks, guess.n_sampled, guess.errors, guess.workers) == (100, 3, 0, 4)
    assert 0.015 < guess.seconds_per_task < 0.5
    assert guess.on_workers_seconds < guess.seconds_on(1) and guess.seconds_on(1) == pytest.approx(
        guess.warmup_seconds + 99 * guess.seconds_per_task
    )


def test_each_worker_claims_its_own_compile_folder(tmp_path):
    first, second = claim_folder(tmp_path), claim_folder(tmp_path)  # two open locks: two folders
    assert first != second and first.parent == second.parent and first.name == "worker-0"
    flags = flags_with_folder("floatX=float64,compiledir=/x,blas__ldflags=", first)
    assert flags == f"floatX=float64,blas__ldflags=,base_compiledir={first}"


def test_block_tables_round_trip_without_depending_on_the_split():
    records = [
        {"scenario": "a", "scenario_index": 0, "replicate": 0, "seed": 1, "x": 1.5, "n": 2},
        {"scenario": "a", "scenario_index": 0, "replicate": 1, "seed": 2, "error": "ValueError: e"},
    ]
    together = blocks.from_table(blocks.to_table(records, "f", 0.0))
    apart = [r for rec in records for r in blocks.from_table(blocks.to_table([rec], "f", 0.0))]
    assert together == apart == records
    assert blocks.to_table(records, "f", 1.0).schema.metadata[blocks.FINGERPRINT_KEY] == b"f"


# --- a real `dask scheduler` and two `dask worker` processes on loopback ---------------------------


@pytest.fixture(scope="module")
def dask_scheduler(tmp_path_factory):
    """The address of a `dask scheduler` with two single-thread `dask worker` processes (stopped after)."""
    from distributed import Client

    folder = tmp_path_factory.mktemp("dask")
    dask = str(Path(sys.executable).with_name("dask"))
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")]),
        MARROW_COMPILE_ROOT=str(folder / "compile"),
    )
    file = folder / "scheduler.json"
    common = {"env": env, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "start_new_session": True}
    procs = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(file)],
            **common,
        )
    ]
    try:
        deadline = time.monotonic() + 60
        while not file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        address = json.loads(file.read_text())["address"]
        for name in ("w0", "w1"):
            worker = [dask, "worker", address, "--nthreads", "1", "--nworkers", "1", "--name", name]
            procs.append(subprocess.Popen([*worker, "--host", "127.0.0.1", "--no-dashboard"], **common))
        with Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for proc in procs:  # each in its own session: its group is the nanny and its worker process
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


# --- real refits: the bundled response model on two workers and in process -------------------------

_CACHE: dict[str, object] = {}


def refit_response(task: Task) -> dict:
    """Refit the response model with the responders redrawn from the task's seed (one `Refitter` per
    process, built at its first task; each build is logged to $ENGINE_TEST_BUILDS)."""
    import marrow

    if "refitter" not in _CACHE:
        _CACHE["data"] = marrow.load_trial()
        _CACHE["refitter"] = marrow.Refitter("response", chains=2, draws=100, tune=100, seed=1, cores=1)
        with open(os.environ["ENGINE_TEST_BUILDS"], "a") as log:
            log.write(f"{os.getpid()}\n")
    data, refitter = _CACHE["data"], _CACHE["refitter"]
    rng = np.random.default_rng(task.seed)
    patients = data.patients.copy()
    patients["responder"] = rng.binomial(1, 0.2 + 0.3 * task.scenario_index, len(patients))
    fit = refitter.refit(replace(data, patients=patients), seed=task.seed)
    posterior = fit.idata.posterior
    return {
        "response_rate": float(posterior["response_rate"].mean()),
        "divergences": int(fit.idata.sample_stats["diverging"].sum()),
    }


def test_blocks_break_at_batch_boundaries_and_estimates_count_a_batch_once():
    tasks = [Task("s", 0, r, r) for r in range(2, 14)]
    planned = [[t.replicate for t in b.tasks] for b in blocks.plan_blocks(tasks, 8, align=4)]
    assert planned == [[2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13]]
    assert [len(b.tasks) for b in blocks.plan_blocks(tasks, 8)] == [8, 4]
    timed = []

    def batch_of_four(task: Task) -> dict:  # the first task of a batch does its work, the others read it
        if task.replicate % 4 == 0:
            time.sleep(0.04)
            timed.append((task.scenario_index, task.replicate))
        return {"x": 1.0}

    guess = estimate(batch_of_four, tasks_for(1, SCENARIOS, 16), n_sample=3, group=4)
    # The warm-up is replicate 0 of the first scenario; the timed ones start other batches.
    assert timed[0] == (0, 0) and len(timed) == 4 and len(set(timed)) == 4
    assert 0.009 < guess.seconds_per_task < 0.03


@pytest.mark.sampling
@pytest.mark.cluster
def test_real_refits_on_two_workers_equal_those_in_process(tmp_path, monkeypatch):
    builds = tmp_path / "builds.txt"
    monkeypatch.setenv("ENGINE_TEST_BUILDS", str(builds))  # the local workers inherit it
    tasks = tasks_for(11, SCENARIOS, 4)
    here = run_tasks(refit_response, tasks, scheduler="process", block_size=2)
    root = tmp_path / "compile"
    cluster = run_tasks(refit_response, tasks, n_workers=2, block_size=2, out=tmp_path / "out", compile_root=root)
    assert "error" not in here.columns
    # The workers compile into new folders while this process may load from its numba cache: with
    # fast-math off (marrow/__init__.py) both give the same bits, so the tables are equal exactly.
    pd.testing.assert_frame_equal(here, cluster, check_exact=True)
    assert here.groupby("scenario_index")["response_rate"].mean().diff().iloc[1] > 0.15  # the data were swapped
    pids = builds.read_text().split()
    assert len(pids) == len(set(pids)) == 3  # built once in this process and once in each worker
    folders = sorted(p.name for p in next(root.iterdir()).iterdir())
    assert folders == ["worker-0", "worker-1"]
    assert all(any((root / h / f).glob("numba")) for h in os.listdir(root) for f in folders)


# --- `marrow simulate` itself: the per-replicate study task on the real cluster and in process ------

SMALL_DESIGN = """
seed = 5
replicates = 3
[centers]
sizes = { "A" = 6, "B" = 5, "C" = 5 }
[model]
name = "response"
[sampler]
chains = 2
tune = 100
draws = 100
batch = 2
[[interims]]
after = 0.5
futility = "P(response_rate > 0.25) < 0.10"
[decision]
go = "P(response_rate > 0.15) > 0.9"
[[scenarios]]
name = "null"
response_rate = 0.15
center_sd = 0.5
[[scenarios]]
name = "target"
response_rate = 0.45
center_sd = 0.5
"""


@pytest.mark.sampling
def test_simulate_on_dask_workers_equals_the_study_in_process(tmp_path, dask_scheduler, marrow_cli):
    design = tmp_path / "design.toml"
    design.write_text(SMALL_DESIGN, encoding="utf-8")
    here, there = tmp_path / "here", tmp_path / "there"
    code, _, err = marrow_cli("simulate", design, "--out", here, "--in-process", "--quiet")
    assert code == 0, err
    code, stdout, err = marrow_cli(
        "simulate", design, "--out", there, "--scheduler", dask_scheduler, "--quiet", "--block-size", "2"
    )
    assert code == 0, err
    records = pd.read_parquet(here / "records.parquet")
    assert len(records) == 6 and "error" not in records.columns
    assert records["a2:mean:response_rate"].nunique() == 6  # six different trials were fitted
    # Every replicate's posterior functionals, bit for bit, and so the same decisions and OC table.
    pd.testing.assert_frame_equal(records, pd.read_parquet(there / "records.parquet"), check_exact=True)
    for name in ("oc.csv", "estimation.csv", "decisions.csv"):
        assert (here / name).read_text() == (there / name).read_text(), name
    # Blocks of 2 on the cluster, 3 here; batches of 2 (replicates 0-1 and 2-3, replicate 3 fitted but
    # not kept) analysed on whichever worker: the same records.
    assert len(list((there / "blocks").glob("*.parquet"))) == 4
    assert "P(go)" in stdout


def test_time_left_is_the_runs_average_pace_not_the_last_burst():
    from marrow.simulate.engine_progress import time_left

    # 100 of 2,000 done in 187 s after resuming from 0: about 59 minutes left, however close together
    # the last two blocks of 25 arrived (rich's recent-speed estimate said 1 minute).
    assert time_left(187.0, 100, 1900) == pytest.approx(187 / 100 * 1900)
    assert time_left(30.0, 0, 50) is None and time_left(None, 5, 5) is None
    assert time_left(60.0, 20, 0) == 0.0
