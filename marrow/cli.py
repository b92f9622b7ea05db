"""The `marrow` command line: a thin layer over the library. PyMC is imported only by commands that fit.

Commands live in `marrow.commands.*` and are imported when used (their modules import only click
at the top), so `marrow --help` stays fast. Errors become messages and exit codes here, in one place:
0 ok, 1 failed diagnostics, 2 data or usage error, 3 internal error, 130 interrupted (Ctrl-C),
143 terminated (SIGTERM). SIGTERM is turned into an interrupt, so the same cleanup runs: no
temporary file or half-built report folder is left behind.
"""

from __future__ import annotations

import importlib
import importlib.util
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

import click

from marrow import __version__

# name -> (module:attribute, one-line help). Order is the order shown in --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "fit": ("marrow.commands.fit:fit", "Fit a model (`marrow fit --help` lists them) and save it."),
    "summarize": ("marrow.commands.inspect:summarize", "Posterior summary of a saved fit."),
    "diagnose": ("marrow.commands.inspect:diagnose", "Sampler diagnostics of a saved fit; exit 1 on failure."),
    "compare-models": ("marrow.commands.compare_models:compare_models", "PSIS-LOO comparison of saved fits."),
    "compare": ("marrow.commands.compare:compare", "Bayesian estimates beside frequentist ones."),
    "priors": ("marrow.commands.priors:priors", "List, show and derive prior sets."),
    "prior-check": ("marrow.commands.prior_check:prior_check", "Prior predictive check of a model on your design."),
    "sensitivity": ("marrow.commands.sensitivity:sensitivity", "Prior and likelihood sensitivity of a fit."),
    "sbc": ("marrow.commands.sbc:sbc", "Simulation-based calibration of a model on your design."),
    "simulate": ("marrow.commands.simulate:simulate", "Operating characteristics of a trial design by simulation."),
    "plot": ("marrow.commands.plot:plot", "Publication figures from a saved fit."),
    "report": ("marrow.commands.report:report", "Run the whole analysis and write an HTML report."),
    "init": ("marrow.commands.report:init", "Write a commented analysis-plan template."),
    "worker": ("marrow.commands.worker:worker", "Keep PyMC loaded in the background for fast commands."),
}

EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_TERMINATED = 143  # 128 + SIGTERM


def _on_sigterm(signum, frame) -> None:
    from marrow.fits.io import Terminated, note_interrupt

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    note_interrupt(Terminated)
    raise Terminated()


def _on_sigint(signum, frame) -> None:
    from marrow.fits.io import note_interrupt

    note_interrupt(KeyboardInterrupt)
    signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt, as Python always does


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises `Terminated` (a KeyboardInterrupt) in the main thread, and both it
    and Ctrl-C are remembered so that no output is written afterwards: PyMC and nutpie stop sampling
    on an interrupt and return the draws so far, which must not be saved as a finished fit.
    Outside the main thread this does nothing."""
    from marrow.fits.io import note_interrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {
        sig: signal.signal(sig, handler)
        for sig, handler in ((signal.SIGTERM, _on_sigterm), (signal.SIGINT, _on_sigint))
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        note_interrupt(None)


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when listed or invoked."""

    def __init__(self, *args, lazy: dict[str, tuple[str, str]] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in self.lazy if self._available(name)] + sorted(super().list_commands(ctx))

    def _available(self, name: str) -> bool:
        module = self.lazy[name][0].split(":")[0]
        return importlib.util.find_spec(module) is not None

    def get_command(self, ctx: click.Context, name: str):
        if name in self.lazy and self._available(name):
            module_name, attribute = self.lazy[name][0].split(":")
            return getattr(importlib.import_module(module_name), attribute)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, self.lazy[name][1]) for name in self.lazy if self._available(name)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="""\b
Example (the bundled synthetic trial):
  marrow fit response --covariates prior_atg,active_infection --out response.nc
  marrow summarize response.nc
  marrow diagnose response.nc
  marrow report --out marrow-report

Exit codes: 0 ok, 1 failed diagnostics, 2 data or usage error, 3 internal error,
130 interrupted, 143 terminated (SIGTERM).""",
)
@click.version_option(__version__, prog_name="marrow")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors (the exit code stays the same).")
@click.option("--no-worker", is_flag=True, help="Run in this process even when a worker is running (`marrow worker`).")
def cli(debug: bool, no_worker: bool) -> None:
    """marrow: Bayesian analysis of multicenter phase II trials.

    Hierarchical response models across centers, lineage-specific time to recovery with cure
    fractions, overall survival and safety; priors as named sets; diagnostics, frequentist
    comparisons, publication figures and a one-command report. Without --data every command
    uses the bundled SYNTHETIC trial (74 patients, 7 centers), reconstructed from published
    aggregates; it holds no patient records.
    """


def main(argv: list[str] | None = None) -> None:
    """Console entry point: hand the command to a running worker if there is one, else run it here.

    Only a real command line (argv None) is ever delegated: a caller passing argv, such as a test
    that patches marrow in-process, always runs in this process."""
    if argv is None:
        from marrow.worker.client import delegate  # standard library only

        code = delegate(sys.argv[1:])
        if code is not None:
            sys.exit(code)
        with sigterm_as_interrupt():
            code = run(sys.argv[1:])
        exit_now(code)
    with sigterm_as_interrupt():
        code = run(list(argv))
    sys.exit(code)


def exit_now(code: int) -> None:
    """End a command-line process without tearing down its modules one by one.

    After a fit the interpreter holds PyMC's graphs and compiled functions; the ordinary shutdown
    spends ~1.5 s freeing them. Every output has been written and closed by now (atomically); the
    atexit handlers (logging, temporary files) still run and the standard streams are flushed."""
    import atexit
    import os

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


def run(argv: list[str]) -> int:
    """Run the CLI in this process and map errors to exit codes (with --debug, also print the traceback)."""
    from marrow.errors import MarrowError

    argv = list(argv)
    debug = "--debug" in argv
    try:
        code = cli.main(args=argv, prog_name="marrow", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except click.exceptions.Abort as exc:  # click turns an interrupt inside a command into Abort
        cause = exc.__cause__ if isinstance(exc.__cause__, KeyboardInterrupt) else None
        code = _interrupted(cause, "aborted" if cause is None else "interrupted")
    except KeyboardInterrupt as exc:
        code = _interrupted(exc, "interrupted")
    except Exception as exc:
        if _after_interrupt() is not None:  # e.g. a sampler stopped early and its partial draws broke a step
            if debug:
                traceback.print_exc(file=sys.stderr)
            code = _interrupted(_after_interrupt()(), "interrupted")
        elif isinstance(exc, MarrowError):
            if debug:
                traceback.print_exc(file=sys.stderr)
            click.echo(f"marrow: error: {exc}", err=True)
            code = exc.exit_code
        else:
            code = _internal_error(exc, debug)
    return code if isinstance(code, int) else 0


def _after_interrupt() -> type[KeyboardInterrupt] | None:
    """The interrupt received while the command ran (PyMC and nutpie swallow it and return early)."""
    from marrow.fits.io import received_interrupt

    return received_interrupt()


def _internal_error(exc: Exception, debug: bool) -> int:
    """The last line of defence: one line, no traceback unless asked; exit 3."""
    if debug:
        traceback.print_exc(file=sys.stderr)
        click.echo(f"marrow: internal error: {type(exc).__name__}: {exc}", err=True)
    else:
        click.echo(
            f"marrow: internal error: {type(exc).__name__}: {exc}\n(rerun with --debug for the traceback)", err=True
        )
    return EXIT_INTERNAL


def _interrupted(exc: KeyboardInterrupt | None, word: str) -> int:
    """Message and exit code of an interrupt: 143 for SIGTERM, 130 for Ctrl-C (or an aborted prompt)."""
    from marrow.fits.io import Terminated

    if isinstance(exc, Terminated):
        click.echo("marrow: terminated (SIGTERM)", err=True)
        return EXIT_TERMINATED
    click.echo(f"marrow: {word}", err=True)
    return EXIT_INTERRUPTED
