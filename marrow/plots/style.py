"""Publication style shared by every figure, and the one function that saves a figure.

Figures are built and saved inside `context()`, a `matplotlib.rc_context` that fixes every setting
that affects the output bytes (fonts, sizes, colours, TrueType embedding, the SVG hash salt), so
the same fit and options give byte-identical files. Colours are the Okabe-Ito palette, which stays
distinguishable under the common colour-vision deficiencies.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a GUI backend (must run before pyplot is imported anywhere)

from matplotlib.figure import Figure  # noqa: E402

from marrow.errors import UsageError  # noqa: E402

# Okabe & Ito (2008), "Color Universal Design".
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky": "#56B4E9",
    "green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
    "grey": "#999999",
}
PALETTE = [OKABE_ITO[k] for k in ("blue", "orange", "green", "vermillion", "purple", "sky", "yellow", "black")]
BAYES = OKABE_ITO["blue"]  # posterior estimates everywhere
OBSERVED = OKABE_ITO["black"]  # data and frequentist estimates
FREQ = OKABE_ITO["vermillion"]
PREDICTIVE = OKABE_ITO["orange"]
PRIOR = OKABE_ITO["grey"]

WIDTHS = {"single": 3.5, "double": 7.2}  # journal column widths, inches
FORMATS = ("pdf", "svg", "png", "tiff")
RASTER = ("png", "tiff")
DEFAULT_DPI = 300

# Metadata keys each backend would otherwise fill with a timestamp or version string.
_METADATA = {
    "pdf": {"CreationDate": None, "ModDate": None, "Creator": None, "Producer": None},
    "svg": {"Date": None, "Creator": None},
    "png": {"Software": None},
    "tiff": None,
}

RC = {
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],  # shipped with matplotlib: the same glyphs on every machine
    "font.size": 8.0,
    "axes.titlesize": 8.0,
    "axes.labelsize": 8.0,
    "xtick.labelsize": 7.0,
    "ytick.labelsize": 7.0,
    "legend.fontsize": 7.0,
    "figure.titlesize": 9.0,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.linewidth": 0.6,
    "axes.grid": False,
    "grid.color": "#DDDDDD",
    "grid.linewidth": 0.5,
    "axes.axisbelow": True,
    "axes.titlelocation": "left",
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.major.size": 3.0,
    "ytick.major.size": 3.0,
    "lines.linewidth": 1.2,
    "lines.markersize": 4.0,
    "legend.frameon": False,
    "figure.dpi": 100.0,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "savefig.bbox": None,  # exact journal widths: constrained layout keeps everything inside the figure
    "savefig.pad_inches": 0.03,
    "pdf.fonttype": 42,  # TrueType, embedded (journals reject Type 3)
    "ps.fonttype": 42,
    "svg.fonttype": "path",
    "svg.hashsalt": "marrow",  # fixed ids in SVG output
    "path.simplify": True,
    "image.cmap": "cividis",
}


def parse_width(value: str | float | None) -> float:
    """'single' (3.5 in), 'double' (7.2 in) or a number of inches."""
    if value is None:
        return WIDTHS["double"]
    if isinstance(value, (int, float)):
        inches = float(value)
    elif str(value).lower() in WIDTHS:
        return WIDTHS[str(value).lower()]
    else:
        try:
            inches = float(value)
        except ValueError:
            raise UsageError(f"--width must be single, double or a number of inches, got {value!r}") from None
    if not 1.0 <= inches <= 20.0:
        raise UsageError(f"--width must be between 1 and 20 inches, got {inches:g}")
    return inches


def format_for(path: Path | str) -> str:
    """The output format from a file's suffix."""
    suffix = Path(path).suffix.lower().lstrip(".")
    suffix = {"tif": "tiff"}.get(suffix, suffix)
    if suffix not in FORMATS:
        raise UsageError(
            f"cannot tell the figure format from '{Path(path).name}'; use a .pdf, .svg, .png or .tiff file"
        )
    return suffix


def _style_params(style: str | Path | None) -> dict:
    """rcParams of a user style (a matplotlib style name or an rc/.mplstyle file), validated."""
    if not style:
        return {}
    import matplotlib.style as mstyle

    path = Path(style)
    if path.exists():
        try:
            return dict(matplotlib.rc_params_from_file(str(path), use_default_template=False))
        except Exception as exc:  # malformed rc files raise assorted errors
            raise UsageError(f"cannot read style file {path}: {exc}") from None
    if str(style) in mstyle.library:
        return dict(mstyle.library[str(style)])
    raise UsageError(f"unknown style '{style}': give a matplotlib style name (e.g. seaborn-v0_8-paper) or an rc file")


@contextmanager
def context(style: str | Path | None = None) -> Iterator[None]:
    """Deterministic rcParams: matplotlib defaults, marrow's style, then the user's override.

    The settings that make output reproducible (font embedding, hash salt) are applied last so a
    style cannot undo them.
    """
    override = _style_params(style)
    with matplotlib.rc_context():
        matplotlib.rcdefaults()
        matplotlib.rcParams.update(RC)
        matplotlib.rcParams.update(override)
        matplotlib.rcParams.update({"pdf.fonttype": 42, "ps.fonttype": 42, "svg.hashsalt": "marrow"})
        yield


def new_figure(width: float, height: float) -> Figure:
    """A figure outside pyplot's registry (no global state, nothing to close)."""
    return Figure(figsize=(width, height), layout="constrained")


def freeze_layout(fig: Figure) -> Figure:
    """Run the layout engine once, then fix the axes where it put them.

    Constrained layout is not idempotent (each draw starts from the last positions), so without
    this the second file saved from one figure would differ slightly from the first.
    """
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    return fig


def plain(text) -> str:
    """User text (center, lineage, covariate names) shown literally: a '$' would start mathtext."""
    return str(text).replace("$", r"\$")


def wrap(text: str, inches: float, fontsize: float = 8.0) -> str:
    """Break a title into lines that fit `inches` (DejaVu Sans averages about 0.55 em per character)."""
    import textwrap

    chars = max(12, int(inches * 72 / (fontsize * 0.58)))
    return "\n".join(textwrap.wrap(text, chars)) or text


def suptitle(fig: Figure, text: str, width: float, fontsize: float = 9.0) -> None:
    fig.suptitle(wrap(text, width - 0.2, fontsize), x=0.02, ha="left", fontsize=fontsize)


def legend_columns(width: float, entries: int) -> int:
    """Legend columns that fit the figure width (about 1.8 inches per entry)."""
    return max(1, min(entries, int(width // 1.8)))


def light_grid(ax, axis: str = "x") -> None:
    ax.grid(True, axis=axis, color="#E5E5E5", linewidth=0.5)


def figure_bytes(fig: Figure, fmt: str, dpi: int | None = None, style: str | Path | None = None) -> bytes:
    """The figure encoded as `fmt`, with no timestamps, so equal inputs give equal bytes."""
    import io

    if fmt not in FORMATS:
        raise UsageError(f"unknown figure format '{fmt}'; choose one of {', '.join(FORMATS)}")
    buffer = io.BytesIO()
    kwargs = {"format": fmt, "metadata": _METADATA[fmt]}
    if fmt in RASTER:
        kwargs["dpi"] = dpi or DEFAULT_DPI
    if fmt == "tiff":
        kwargs.pop("metadata")
        kwargs["pil_kwargs"] = {"compression": "tiff_lzw"}
    with context(style):
        fig.savefig(buffer, **kwargs)
    return buffer.getvalue()


def save_figure(
    fig: Figure,
    path: Path | str,
    dpi: int | None = None,
    force: bool = False,
    style: str | Path | None = None,
    fmt: str | None = None,
) -> Path:
    """Write `fig` to `path` atomically in the format its suffix names (pdf, svg, png, tiff)."""
    from marrow.fits.io import write_bytes

    path = Path(path)
    payload = figure_bytes(fig, fmt or format_for(path), dpi, style)
    write_bytes(path, payload, force)
    return path
