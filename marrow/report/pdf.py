"""report.pdf: the HTML report printed by headless Chromium (DevTools `Page.printToPDF`).

The PDF is the same HTML under its print style sheet (report.html's `@media print`): A4, each
endpoint section on a new page, no figure, table or box split across pages. Every page has a
footer with the report's title, the page number of the total and, for the bundled trial,
SYNTHETIC DATA, so a page that travels alone still says what it is.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from marrow.report.chromium import Browser, BrowserError, find_chromium, open_file

A4_INCHES = (8.27, 11.69)
MARGINS_INCHES = {"marginTop": 0.6, "marginBottom": 0.75, "marginLeft": 0.7, "marginRight": 0.7}


def footer_template(note: str = "") -> str:
    """The footer Chromium draws on every page: title, `note` (escaped), page N of M."""
    middle = f'<span style="font-weight:bold;color:#D55E00">{html.escape(note)}</span>' if note else "<span></span>"
    return (
        "<div style=\"font-family:'DejaVu Sans',Arial,sans-serif;font-size:7.5pt;color:#5c5c5c;width:100%;"
        'margin:0 0.7in;display:flex;justify-content:space-between;gap:1em">'
        '<span class="title" style="overflow:hidden;white-space:nowrap;text-overflow:ellipsis;max-width:45%">'
        f'</span>{middle}<span>page <span class="pageNumber"></span> of <span class="totalPages"></span></span></div>'
    )


def print_options(note: str = "") -> dict:
    """Page.printToPDF parameters: A4, margins room for the footer, backgrounds kept, headings as outline."""
    width, height = A4_INCHES
    return {
        "paperWidth": width,
        "paperHeight": height,
        **MARGINS_INCHES,
        "printBackground": True,
        "preferCSSPageSize": False,
        "displayHeaderFooter": True,
        "headerTemplate": "<span></span>",
        "footerTemplate": footer_template(note),
        "generateDocumentOutline": True,
    }


def print_pdf(html_path: Path | str, note: str = "", executable: str | None = None, timeout: float = 120.0) -> bytes:
    """The PDF bytes of a local HTML file, printed by headless Chromium."""
    with Browser(executable or find_chromium()) as browser:
        page = browser.new_page()
        open_file(page, Path(html_path), timeout=timeout)
        page.evaluate("document.fonts.ready.then(() => true)")
        reply = page.send("Page.printToPDF", timeout=timeout, **print_options(note))
    data = base64.b64decode(reply.get("data", ""))
    if not data.startswith(b"%PDF"):
        raise BrowserError("Chromium returned no PDF")
    return data


def page_count(pdf: bytes) -> int:
    """Pages of a PDF written by Chromium (its page objects are not compressed)."""
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf))


def write_pdf(html_path: Path | str, pdf_path: Path | str, note: str = "", executable: str | None = None) -> int:
    """Print `html_path` to `pdf_path` (written atomically, replacing any file there); returns the page count."""
    from marrow.fits.io import write_bytes

    data = print_pdf(html_path, note, executable)
    write_bytes(pdf_path, data, force=True)
    return page_count(data)
