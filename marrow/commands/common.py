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
    """--data and --recovery."""
    func = click.option("--recovery", "recovery_path", type=click.Path(dir_okay=False, path_type=Path),
                        help="Recovery table (long format: patient_id, lineage, day, recovered).")(func)
    func = click.option("--data", "data_path", type=click.Path(dir_okay=False, path_type=Path),
                        help="Patients table (CSV or Parquet). Default: the bundled synthetic trial.")(func)
    return func


def format_options(func):
    """--format, --force and --out; the command checks that --out can be written before it starts."""

    command = func

    @functools.wraps(command)
    def checked(*args, **kwargs):
        if kwargs.get("out_path") is not None:
            from marrow.fits.io import check_writable

            check_writable(kwargs["out_path"], kwargs.get("force", False))  # before loading anything
        return command(*args, **kwargs)

    func = click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path),
                        help="Write to this file (atomically) instead of the terminal.")(checked)
    func = click.option("--force", is_flag=True, help="Overwrite an existing output file.")(func)
    func = click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
                        help="Output format.")(func)
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
