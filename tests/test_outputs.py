"""Outputs: checked before any work, written atomically with one permission rule, nothing left behind
on failure or SIGTERM; damaged fits are usage errors; --debug keeps the exit code; cores; warnings."""

from __future__ import annotations

import errno
import functools
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from marrow import cli
from marrow.errors import OutputExistsError, UsageError
from marrow.fits import io

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture
def umask():
    """Set the umask for one test, restored afterwards."""
    saved = os.umask(0o022)
    os.umask(saved)
    yield os.umask
    os.umask(saved)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*"))


@functools.lru_cache(maxsize=1)
def _provenance() -> tuple[tuple[str, str], ...]:
    from marrow.data import load_trial
    from marrow.fits.provenance import build_provenance
    from marrow.priors import load_prior_set
    from marrow.spec import ModelSpec, SamplerSettings

    spec = ModelSpec("response")
    data = load_trial(None, None, spec.needs())
    return tuple(build_provenance(data, spec, load_prior_set(), SamplerSettings(chains=2, draws=50, tune=50)).items())


def tiny_fit(tmp_path: Path):
    """A small saved-fit stand-in with full provenance (random draws, no sampling)."""
    import arviz as az

    from marrow.fits import Fit

    rng = np.random.default_rng(5)
    idata = az.from_dict(
        posterior={
            "response_rate": rng.beta(3, 7, (2, 50)),
            "intercept": rng.normal(-1, 0.3, (2, 50)),
            "center_sd": np.abs(rng.normal(0, 0.5, (2, 50))),
        },
        sample_stats={
            "diverging": np.zeros((2, 50), dtype=bool),
            "energy": rng.normal(0, 1, (2, 50)),
            "tree_depth": np.full((2, 50), 3),
        },
    )
    return Fit(idata, dict(_provenance()))


# ---- checked before the work, and nothing created ----------------------------------------------


def test_check_writable_creates_nothing_and_refuses_what_cannot_be_written(tmp_path):
    io.check_writable(tmp_path / "new" / "sub" / "o.nc", force=False)
    assert leftovers(tmp_path) == []
    (tmp_path / "o.nc").write_text("x")
    with pytest.raises(OutputExistsError):
        io.check_writable(tmp_path / "o.nc", force=False)
    io.check_writable(tmp_path / "o.nc", force=True)
    (tmp_path / "blocker").write_text("a file, not a folder")
    with pytest.raises(UsageError, match="is not a folder"):
        io.check_writable(tmp_path / "blocker" / "sub" / "o.nc", force=False)
    (tmp_path / "adir").mkdir()
    with pytest.raises(UsageError, match="it is a folder"):
        io.check_writable(tmp_path / "adir", force=True)
    with pytest.raises(UsageError, match="a file of that name exists"):
        io.check_writable(tmp_path / "o.nc", force=True, folder=True)
    assert leftovers(tmp_path) == ["adir", "blocker", "o.nc"]


def test_a_folder_without_write_permission_is_refused(tmp_path, monkeypatch):
    def denied(folder, name):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(io, "_create_file", denied)
    with pytest.raises(UsageError, match=r"cannot write .*o\.nc: cannot create files in .*Permission denied"):
        io.check_writable(tmp_path / "o.nc", force=False)


@pytest.mark.skipif(IS_ROOT, reason="root may write into a read-only folder")
def test_a_read_only_folder_is_refused_for_real(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(UsageError, match="cannot create files in"):
            io.check_writable(locked / "sub" / "o.nc", force=False)
    finally:
        locked.chmod(0o755)


# Each command names an input that does not exist: the output check must come first, so the error
# is about the output, never about the missing input (which loading would report).
COMMANDS = [
    ["fit", "response", "--data", "{missing}", "--out", "{out}"],
    ["summarize", "{missing}", "--out", "{out}"],
    ["compare", "{missing}", "--out", "{out}"],
    ["compare-models", "{missing}", "{missing}", "--out", "{out}"],
    ["plot", "{missing}", "--kind", "centers", "--out", "{out}.pdf"],
    ["sensitivity", "{missing}", "--out", "{out}"],
    ["priors", "map", "--history", "{missing}", "--out", "{out}.toml"],
    ["prior-check", "response", "--data", "{missing}", "--out", "{out}"],
    ["report", "--data", "{missing}", "--out", "{out}"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_every_output_is_checked_before_any_input_is_read(argv, tmp_path, marrow_cli):
    (tmp_path / "blocker").write_text("a file, not a folder")
    out = tmp_path / "blocker" / "sub" / "o"
    args = [a.format(missing=tmp_path / "missing.csv", out=out) for a in argv]
    code, _, err = marrow_cli(*args)
    assert code == 2, err
    assert "cannot write" in err and "is not a folder" in err and "missing.csv" not in err
    assert leftovers(tmp_path) == ["blocker"]


def test_a_rejected_fit_creates_no_folders(tmp_path, marrow_cli):
    bad = tmp_path / "bad.csv"
    bad.write_text("patient_id,center\nP1,A\n")
    code, _, err = marrow_cli("fit", "response", "--data", bad, "--out", tmp_path / "newdir" / "sub" / "o.nc")
    assert code == 2 and "bad.csv" in err, err
    assert leftovers(tmp_path) == ["bad.csv"]


def test_a_report_that_fails_removes_the_folders_it_created(tmp_path, monkeypatch):
    from marrow.errors import DataError, Problem
    from marrow.report import run
    from marrow.report.plan import load_plan

    def rejected(plan, work, progress):
        (work / "report.html").write_text("half")
        raise DataError([Problem("trial.csv", "bad")])

    monkeypatch.setattr(run, "_build", rejected)
    with pytest.raises(DataError):
        run.run_report(load_plan(None, None, None, None, True), tmp_path / "newdir" / "sub" / "report")
    assert leftovers(tmp_path) == []


# ---- written atomically; a failed write leaves nothing -------------------------------------------


def test_a_full_disk_is_exit_2_naming_the_file_and_leaves_nothing(tmp_path, monkeypatch, marrow_cli):
    real = Path.write_text

    def full_disk(self, *args, **kwargs):
        real(self, "half a tab")  # what a full disk leaves: a partial temporary file
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full_disk)
    target = tmp_path / "newdir" / "sets.txt"
    code, _, err = marrow_cli("priors", "list", "--out", target)
    assert code == 2, err
    assert f"cannot write {target}: No space left on device" in err and "internal error" not in err
    assert leftovers(tmp_path) == []


def test_a_fit_that_fails_half_written_leaves_nothing_and_keeps_the_old_file(tmp_path, monkeypatch):
    fit = tiny_fit(tmp_path)
    target = tmp_path / "fit.nc"
    target.write_text("the old fit")

    def partial(path, *args, **kwargs):
        Path(path).write_bytes(b"\x89HDF partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fit.idata, "to_netcdf", partial)
    with pytest.raises(UsageError, match=r"fit\.nc: No space left on device; nothing was written"):
        fit.save(target, force=True)
    assert leftovers(tmp_path) == ["fit.nc"] and target.read_text() == "the old fit"


def test_a_fit_too_large_for_the_free_space_is_refused_before_writing(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    fit = tiny_fit(tmp_path)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 4000, 4000))
    with pytest.raises(UsageError, match=r"new/fit\.nc: it needs about \d+ kB and only 4 kB are free"):
        fit.save(tmp_path / "new" / "fit.nc")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, io.Terminated])
def test_an_interrupted_write_removes_its_temporary_file_and_new_folders(tmp_path, interrupt):
    target = tmp_path / "a" / "b" / "o.txt"
    with pytest.raises(interrupt), io.atomic_path(target) as tmp:
        tmp.write_text("half")
        assert tmp.parent == target.parent and tmp.name.startswith(".o.txt.")
        raise interrupt()
    assert leftovers(tmp_path) == []


def test_atomic_folder_swaps_in_complete_folders_only(tmp_path):
    target = tmp_path / "new" / "report"
    with pytest.raises(io.Terminated), io.atomic_folder(target) as work:
        (work / "report.html").write_text("half")
        raise io.Terminated()
    assert leftovers(tmp_path) == []
    with io.atomic_folder(target) as work:
        (work / "report.html").write_text("first")
    with pytest.raises(OutputExistsError):
        io.check_writable(target, force=False, folder=True)
    with io.atomic_folder(target, force=True) as work:
        (work / "report.html").write_text("second")
    assert leftovers(tmp_path) == ["new", "report", "report.html"]
    assert (target / "report.html").read_text() == "second"


# ---- one permission rule -----------------------------------------------------------------------


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_every_output_is_created_like_an_ordinary_file(tmp_path, umask, mask):
    umask(mask)
    io.write_text(tmp_path / "new" / "table.csv", "a,b\n")
    io.write_bytes(tmp_path / "figure.png", b"\x89PNG")
    names = ["new/table.csv", "figure.png"]
    if mask == 0o027:  # HDF5 writes the file itself: check it once
        tiny_fit(tmp_path).save(tmp_path / "fit.nc")
        names.append("fit.nc")
    assert io.output_mode() == 0o666 & ~mask and io.output_mode(folder=True) == 0o777 & ~mask
    for name in names:
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask, name
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o777 & ~mask


def test_the_worker_log_is_no_more_readable_than_its_socket(tmp_path, umask):
    from marrow.worker.protocol import open_private_log

    umask(0o000)
    log = tmp_path / "worker.log"
    log.write_text("an old log, world-readable")
    log.chmod(0o644)
    with open_private_log(log) as handle:
        handle.write("started\n")
    assert log.stat().st_mode & 0o777 == 0o600 and log.read_text() == "started\n"


# ---- SIGTERM cleans up like Ctrl-C -------------------------------------------------------------


def test_sigterm_becomes_an_interrupt_inside_and_is_restored_outside():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with pytest.raises(io.Terminated), cli.sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)  # the handler runs at the next bytecode
        for _ in range(1000):
            pass
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    assert issubclass(io.Terminated, KeyboardInterrupt)  # every Ctrl-C cleanup also runs on SIGTERM


@pytest.mark.parametrize(("sig", "interrupt"), [(signal.SIGTERM, io.Terminated), (signal.SIGINT, KeyboardInterrupt)])
def test_no_output_is_written_after_an_interrupt_a_sampler_swallowed(tmp_path, sig, interrupt):
    """PyMC and nutpie catch KeyboardInterrupt and return the draws so far: these must not be saved."""
    with cli.sigterm_as_interrupt():
        try:
            os.kill(os.getpid(), sig)
            for _ in range(1000):
                pass
        except KeyboardInterrupt:
            pass  # what the sampler does
        with pytest.raises(interrupt):
            io.write_text(tmp_path / "new" / "o.txt", "partial draws")
    assert leftovers(tmp_path) == []
    io.write_text(tmp_path / "o.txt", "a later, complete run")  # outside, the interrupt is forgotten
    assert leftovers(tmp_path) == ["o.txt"]


def test_a_terminated_command_exits_143_and_ctrl_c_130(monkeypatch, capsys):
    import marrow.commands.priors as priors_command

    for raised, code, word in ((io.Terminated, 143, "terminated"), (KeyboardInterrupt, 130, "interrupted")):

        def stop(*args, raised=raised, **kwargs):
            raise raised()

        monkeypatch.setattr(priors_command, "emit", stop)
        assert cli.run(["priors", "list"]) == code
        assert f"marrow: {word}" in capsys.readouterr().err


def test_an_error_caused_by_an_interrupt_the_sampler_swallowed_is_reported_as_the_interrupt(monkeypatch, capsys):
    import marrow.commands.priors as priors_command

    def sampler_stopped_early(*args, **kwargs):
        io.note_interrupt(io.Terminated)  # what the SIGTERM handler records
        raise ValueError("p < 0, p > 1 or p contains NaNs")  # what partial draws did downstream

    monkeypatch.setattr(priors_command, "emit", sampler_stopped_early)
    try:
        assert cli.run(["priors", "list"]) == 143
    finally:
        io.note_interrupt(None)
    err = capsys.readouterr().err
    assert "terminated" in err and "internal error" not in err


SLOW_WRITE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    real = Path.write_text
    def slow(self, *args, **kwargs):
        real(self, "half")
        print("writing", flush=True)
        time.sleep(30)
    Path.write_text = slow
    from marrow.cli import main
    main(["priors", "list", "--out", sys.argv[1]])
""")


def test_sigterm_during_a_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "newdir" / "sets.txt"
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITE, str(target)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().strip() == "writing"
        assert any(p.name.endswith(".tmp") for p in (tmp_path / "newdir").iterdir())
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 143 and "terminated" in err
    assert leftovers(tmp_path) == []


# ---- --debug keeps the exit code ---------------------------------------------------------------


def test_debug_prints_the_traceback_and_keeps_the_exit_code(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("patient_id,center\nP1,A\n")
    assert cli.run(["--debug", "fit", "response", "--data", str(bad), "--out", str(tmp_path / "o.nc")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "bad.csv" in err
    import marrow.commands.priors as priors_command

    monkeypatch.setattr(priors_command, "emit", lambda *a, **k: 1 / 0)
    assert cli.run(["--debug", "priors", "list"]) == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError" in err


# ---- damaged fits are usage errors -------------------------------------------------------------


@pytest.fixture(scope="module")
def pristine_fit(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pristine")
    return tiny_fit(folder).save(folder / "fit.nc")


@pytest.fixture
def saved_fit(pristine_fit, tmp_path):
    """A fresh copy of a saved fit, for a test to damage."""
    import shutil

    return Path(shutil.copy(pristine_fit, tmp_path / "fit.nc"))


def _set_attr(path: Path, name: str, value: str) -> None:
    import h5netcdf

    with h5netcdf.File(path, "a") as handle:
        handle["posterior"].attrs[name] = value


def _drop(path: Path, out: Path, group: str, variable: str | None) -> None:
    import arviz as az

    idata = az.from_netcdf(str(path))
    if variable is None:
        delattr(idata, group)
    else:
        setattr(idata, group, getattr(idata, group).drop_vars(variable))
    idata.to_netcdf(str(out))


def test_a_good_fit_loads_and_summarizes(saved_fit, marrow_cli):
    code, out, err = marrow_cli("summarize", saved_fit)
    assert code == 0, err
    assert "Response rate" in out


@pytest.mark.parametrize(
    ("attr", "value", "expected"),
    [
        ("marrow_spec", '{"model": "response", "outcome"', "attribute 'marrow_spec' is not valid JSON"),
        ("marrow_spec", '{"model": "regression"}', "attribute 'marrow_spec': unknown model 'regression'"),
        ("marrow_sampler", '{"chains": 0}', "attribute 'marrow_sampler': chains must be at least 1, got 0"),
        ("marrow_sampler", "[1, 2]", "attribute 'marrow_sampler' does not describe a sampler"),
        ("marrow_priors", "not json", "attribute 'marrow_priors' is not valid JSON"),
        (
            "marrow_priors",
            '{"name": "x", "priors": {"response.intercept": {"dist": "Normal", "mu": 0, "sigma": -1}}}',
            "argument 'sigma' of Normal must be > 0",
        ),
        ("marrow_data_sources", '{"role": "patients"}', "'marrow_data_sources' must be a list"),
    ],
)
def test_damaged_provenance_is_exit_2_naming_the_file_and_the_attribute(saved_fit, marrow_cli, attr, value, expected):
    _set_attr(saved_fit, attr, value)
    code, _, err = marrow_cli("summarize", saved_fit)
    assert code == 2, err
    assert f"{saved_fit} is a damaged marrow fit" in err and expected in err and "internal error" not in err


@pytest.mark.parametrize(
    ("group", "variable", "expected"),
    [
        ("posterior", "response_rate", "'posterior/response_rate' missing"),
        ("sample_stats", None, "group 'sample_stats' missing"),
    ],
)
def test_a_fit_missing_a_variable_is_exit_2(saved_fit, tmp_path, marrow_cli, group, variable, expected):
    edited = tmp_path / "edited.nc"
    _drop(saved_fit, edited, group, variable)
    code, _, err = marrow_cli("summarize", edited)
    assert code == 2, err
    assert expected in err and "was the file edited?" in err


def test_truncated_foreign_and_unmarked_files_are_exit_2(saved_fit, tmp_path, marrow_cli):
    truncated = tmp_path / "truncated.nc"
    truncated.write_bytes(saved_fit.read_bytes()[: saved_fit.stat().st_size // 2])
    csv = tmp_path / "table.nc"
    csv.write_text("a,b\n1,2\n")
    plain = tmp_path / "plain.nc"
    import xarray as xr

    xr.Dataset({"x": ("i", [1.0, 2.0])}).to_netcdf(plain, engine="h5netcdf", group="posterior")
    for path, expected in (
        (truncated, "is not a readable fit file"),
        (csv, "is not a readable fit file"),
        (plain, "was not written by marrow"),
        (tmp_path, "is a directory"),
    ):
        code, _, err = marrow_cli("diagnose", path)
        assert code == 2 and expected in err and str(path) in err, err


def test_a_fit_saved_before_variables_were_recorded_still_loads(saved_fit, tmp_path):
    from marrow.fits import Fit

    _set_attr(
        saved_fit,
        "marrow_sampler",
        json.dumps(
            {
                "chains": 2,
                "draws": 50,
                "tune": 50,
                "seed": 1,
                "sampler": "nutpie",
                "target_accept": None,
                "cores": 2,
                "extra": {},
            }
        ),
    )
    import h5netcdf

    with h5netcdf.File(saved_fit, "a") as handle:
        del handle["posterior"].attrs["marrow_variables"]
    fit = Fit.load(saved_fit)
    assert fit.settings.cores == 2 and "variables" not in fit.provenance


# ---- cores -------------------------------------------------------------------------------------


def test_cores_default_to_the_available_cpus_capped_at_the_chains(monkeypatch):
    from marrow import spec

    monkeypatch.setattr(spec.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert spec.SamplerSettings(chains=4).cores == 4 and spec.SamplerSettings(chains=16).cores == 8
    monkeypatch.setattr(spec.os, "sched_getaffinity", lambda pid: {3}, raising=False)
    assert spec.SamplerSettings(chains=4).cores == 1
    assert spec.SamplerSettings(chains=4, cores=3).cores == 3 and spec.SamplerSettings(chains=2, cores=3).cores == 2
    with pytest.raises(UsageError, match="cores must be at least 1, got 0"):
        spec.SamplerSettings(cores=0)
    settings = spec.SamplerSettings(chains=4, cores=3)
    assert spec.SamplerSettings.from_json(settings.to_json()) == settings


def test_fit_passes_cores_through(monkeypatch, tmp_path, marrow_cli):
    import marrow.commands.fit as fit_command

    seen = {}

    def capture(spec, settings, *args, **kwargs):
        seen["cores"] = settings.cores
        raise UsageError("stop here")

    monkeypatch.setattr(fit_command, "fit_and_save", capture)
    code, _, err = marrow_cli("fit", "response", "--chains", "3", "--cores", "2", "--out", tmp_path / "o.nc")
    assert code == 2 and "stop here" in err and seen == {"cores": 2}


# ---- a normal run shows no third-party warning -------------------------------------------------

# What ArviZ 0.23 prints once a day on import (arviz/__init__.py); note the leading newline.
ARVIZ_NOTICE = (
    "\nArviZ is undergoing a major refactor to improve flexibility and extensibility while maintaining "
    "a user-friendly interface.\nSome upcoming changes may be backward incompatible."
)


def test_marrow_silences_exactly_the_arviz_refactor_notice():
    import importlib
    import warnings

    import marrow

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        importlib.reload(marrow)  # puts marrow's filters in front again, as importing marrow does
        warnings.warn(ARVIZ_NOTICE, FutureWarning, stacklevel=1)
        warnings.warn("some other future change", FutureWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["some other future change"]
