"""Render tables as terminal tables (rich), CSV, Markdown, LaTeX (booktabs) or JSON."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

FORMATS = ("table", "csv", "markdown", "latex", "json")


def plural(count: int, word: str, many: str | None = None) -> str:
    """'1 center', '2 centers' (`many` for irregular plurals)."""
    return f"{count} {word if count == 1 else (many or word + 's')}"


def fmt_number(value, digits: int = 3) -> str:
    """Compact number: integers as integers, NaN as a dash, others to `digits` significant decimals."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (int,)) or (isinstance(value, float) and value.is_integer() and abs(value) >= 100):
        return f"{int(value)}"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if digits > 0 else f"{value:.0f}"
    return str(value)


def _display_frame(table: pd.DataFrame, digits: dict[str, int] | None = None) -> pd.DataFrame:
    import pandas as pd

    digits = digits or {}
    out = table.copy()
    for column in out.columns:
        if pd.api.types.is_numeric_dtype(out[column]) or out[column].dtype == object:
            places = digits.get(column, 0 if str(column).startswith("ess") else 3)
            out[column] = [
                fmt_number(v, places)
                if isinstance(v, (int, float)) and not isinstance(v, bool)
                else ("-" if v is None else v)
                for v in out[column]
            ]
    return out


def latex_escape(text: str) -> str:
    replacements = {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
    }
    return "".join(replacements.get(ch, ch) for ch in str(text))


def to_latex(table: pd.DataFrame, caption: str = "", label: str = "", digits: dict[str, int] | None = None) -> str:
    """A booktabs table ready for a manuscript."""
    shown = _display_frame(table, digits)
    columns = [latex_escape(c) for c in shown.columns]
    align = "l" + "r" * (len(columns) - 1)
    lines = [r"\begin{table}[htbp]", r"\centering"]
    if caption:
        lines.append(r"\caption{" + latex_escape(caption) + "}")
    if label:
        lines.append(r"\label{" + label + "}")
    lines += [r"\begin{tabular}{" + align + "}", r"\toprule", " & ".join(columns) + r" \\", r"\midrule"]
    for _, row in shown.iterrows():
        lines.append(" & ".join(latex_escape(v) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def render(
    table: pd.DataFrame, fmt: str, title: str = "", caption: str = "", digits: dict[str, int] | None = None
) -> str:
    """The table as text in format `fmt` (one of FORMATS)."""
    if fmt == "csv":
        return table.to_csv(index=False, lineterminator="\n")
    if fmt == "json":
        return json.dumps({"title": title, "rows": json.loads(table.to_json(orient="records"))}, indent=2) + "\n"
    if fmt == "markdown":
        text = _display_frame(table, digits).to_markdown(index=False, disable_numparse=True)
        return (f"**{title}**\n\n" if title else "") + text + "\n"
    if fmt == "latex":
        return to_latex(table, caption or title, digits=digits)
    if fmt == "table":
        return rich_table(table, title, digits)
    raise ValueError(f"unknown format {fmt}")


def rich_table(table: pd.DataFrame, title: str = "", digits: dict[str, int] | None = None, width: int = 140) -> str:
    """A boxed terminal table rendered to a string."""
    from io import StringIO

    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    shown = _display_frame(table, digits)
    grid = Table(title=title or None, title_justify="left", header_style="bold")
    for i, column in enumerate(shown.columns):
        grid.add_column(
            str(column), justify="left" if i == 0 or not pd.api.types.is_numeric_dtype(table[column]) else "right"
        )
    for _, row in shown.iterrows():
        grid.add_row(*[str(v) for v in row])
    buffer = StringIO()
    Console(file=buffer, width=width, force_terminal=False, color_system=None).print(grid)
    return buffer.getvalue()
