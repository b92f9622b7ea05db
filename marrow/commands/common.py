"""Options and helpers shared by commands. Imports only click and marrow's light modules."""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from marrow.formatting import FORMATS


def split_list(value: str | None) -> tuple[str, ...]:
    """'a, b,c' -> ('a', 'b', 'c'); empty or None -> ()."""
    if not value:
        return ()
    return tuple(part.strip() for part in value.split(",") if part.strip())


def split_days(value: str | None) -> tuple[float, ...]:
    items = split_list(value)
    try:
        return tuple(float(x) for x in items)
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers of days, got {value!r}") from None


def data_options(func):
    """--data and --recovery, and the ADaM options (`adam_options`)."""
    func = adam_options(func)
    func = click.option(
        "--recovery",
        "recovery_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Recovery table (long format: patient_id, lineage, day, recovered).",
    )(func)
    func = click.option(
        "--data",
        "data_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Patients table (CSV or Parquet). Default: the bundled synthetic trial.",
    )(func)
    return func


_ADAM_KEYS = ("adam_dir", "adsl_path", "adrs_path", "adtte_path", "adam_mapping")


def adam_options(func):
    """--adam DIR, --adsl/--adrs/--adtte FILE, --adam-mapping FILE; the command receives them as one
    keyword `adam`: a `marrow.data.adam.AdamInput`, or None when no ADaM dataset was given."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        given = [kwargs.pop(key) for key in _ADAM_KEYS]
        adam = None
        if any(value is not None for value in given):
            from marrow.data.adam import AdamInput

            adam = AdamInput.from_options(*given)
        return func(*args, adam=adam, **kwargs)

    file = click.Path(dir_okay=False, path_type=Path)
    wrapper = click.option(
        "--adam-mapping",
        "adam_mapping",
        type=file,
        help="ADaM mapping (TOML; write one with `marrow init --adam`). Default: documented defaults.",
    )(wrapper)
    for flag, key, what in (
        ("--adtte", "adtte_path", "ADTTE"),
        ("--adrs", "adrs_path", "ADRS"),
        ("--adsl", "adsl_path", "ADSL"),
    ):
        wrapper = click.option(flag, key, type=file, help=f"{what} dataset file (overrides the one in --adam).")(
            wrapper
        )
    return click.option(
        "--adam",
        "adam_dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Folder of CDISC ADaM datasets adsl, adrs, adtte (.xpt, .sas7bdat, .csv or .parquet) "
        "instead of --data/--recovery; see docs/data.md.",
    )(wrapper)


def format_options(func):
    """--format, --force and --out; the command checks that --out can be written before it starts."""

    command = func

    @functools.wraps(command)
    def checked(*args, **kwargs):
        if kwargs.get("out_path") is not None:
            from marrow.fits.io import check_writable

            check_writable(kwargs["out_path"], kwargs.get("force", False))  # before loading anything
        return command(*args, **kwargs)

    func = click.option(
        "--out",
        "out_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Write to this file (atomically) instead of the terminal.",
    )(checked)
    func = click.option("--force", is_flag=True, help="Overwrite an existing output file.")(func)
    func = click.option(
        "--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True, help="Output format."
    )(func)
    return func


def emit(text: str, out_path: Path | None, force: bool) -> None:
    """Print to stdout, or write atomically to out_path (refusing to overwrite without force)."""
    if out_path is None:
        click.echo(text, nl=not text.endswith("\n"))
        return
    from marrow.fits.io import write_text

    write_text(out_path, text, force)
    click.echo(f"wrote {out_path}", err=True)


def info(message: str, quiet: bool = False) -> None:
    if not quiet:
        click.echo(message, err=True)


def warn(message: str) -> None:
    """Loud warning on stderr, never silenced by --quiet."""
    style = click.style("WARNING", fg="red", bold=True) if sys.stderr.isatty() else "WARNING"
    click.echo(f"{style}: {message}", err=True)
