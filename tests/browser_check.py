"""What a reader of an HTML report sees, asked of headless Chromium itself (DevTools protocol).

`check_page(html)` opens the file once, then at each width records: every <img> (decoded or not,
natural size, shown size), console errors and uncaught exceptions, every request other than the
page itself and data: URLs, whether each <section> and the headline table are visible without
horizontal scrolling of the text, and a screenshot. `PageCheck.problems()` lists what is wrong in
words, so a test asserts both that a good report has none and that a broken one is caught.
`print_layout(html)` measures the page under the print style sheet, to know how many PDF pages to
expect. The PDF helpers wrap poppler's pdfinfo, pdftotext and pdfimages.
"""

from __future__ import annotations

import io
import math
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from marrow.report.chromium import Browser, Page, open_file
from marrow.report.pdf import A4_INCHES, MARGINS_INCHES

WIDTHS = (1280, 390)
CSS_PX_PER_INCH = 96

IMAGES_JS = """
Promise.all([...document.images].map(img => img.decode().then(() => true, () => false))).then(decoded =>
  [...document.images].map((img, i) => {
    const r = img.getBoundingClientRect();
    return {alt: img.alt, src: img.src.slice(0, 40), decoded: decoded[i],
            natural: [img.naturalWidth, img.naturalHeight], shown: [r.width, r.height], right: r.right};
  }))
"""

LAYOUT_JS = """
(() => {
  const vw = document.documentElement.clientWidth;
  const shown = el => {
    const r = el.getBoundingClientRect(), st = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && st.display !== 'none' && st.visibility !== 'hidden';
  };
  const inside = el => { const r = el.getBoundingClientRect(); return r.left >= -1 && r.right <= vw + 1; };
  const sections = {};
  for (const s of document.querySelectorAll('section[id]'))
    sections[s.id] = shown(s) && inside(s) && s.innerText.trim().length > 0;
  // Text must fit the width; tables and code blocks may scroll inside their own box, except the headline.
  const text = [...document.querySelectorAll('h1, h2, h3, p, li, figcaption, .banner, .box')]
    .filter(el => !el.closest('.scroll, pre') && shown(el) && !inside(el))
    .map(el => el.tagName.toLowerCase() + ': ' + el.innerText.trim().slice(0, 60));
  const headline = document.querySelector('table.headline');
  let head = null;
  if (headline) {
    const box = headline.closest('.scroll') || headline;
    const cells = [...headline.querySelectorAll('td')].filter(shown);
    head = {shown: shown(headline), inside: inside(headline), scrolls: box.scrollWidth > box.clientWidth + 1,
            cells_outside: cells.filter(c => !inside(c)).length, cells: cells.length};
  }
  return {viewport: vw, scroll_width: document.documentElement.scrollWidth, sections, text_outside: text,
          headline: head};
})()
"""

PRINT_JS = """
(() => {
  const top = el => el.getBoundingClientRect().top + window.scrollY;
  const starts = [...document.querySelectorAll('h2.newpage')].map(h => ({title: h.innerText.trim(), top: top(h)}));
  const blocks = [...document.querySelectorAll('figure, .scroll, .box, .banner, pre')]
    .map(el => [top(el), el.getBoundingClientRect().height]);
  return {starts, blocks, height: document.documentElement.scrollHeight};
})()
"""


@dataclass
class WidthCheck:
    width: int
    layout: dict
    images: list[dict]
    screenshot_ink: float  # share of screenshot pixels that are not (near) white
    screenshot_colors: int


@dataclass
class PageCheck:
    path: Path
    widths: list[WidthCheck] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every URL requested other than the page and data: URLs
    headline: bool = True  # a headline table is required

    def problems(self) -> list[str]:
        """Everything a reader would find wrong, in words (empty when the page is fine)."""
        found = [f"console error: {m}" for m in self.console_errors]
        found += [f"request leaves the page: {u}" for u in self.requests]
        for w in self.widths:
            at = f"at {w.width} px"
            if not w.images:
                found.append(f"{at}: no <img> in the page")
            for img in w.images:
                name = img["alt"] or img["src"]
                if not img["decoded"] or min(img["natural"]) <= 0:
                    found.append(f"{at}: figure '{name}' did not decode (natural size {img['natural']})")
                elif min(img["shown"]) <= 0 or img["right"] > w.layout["viewport"] + 1:
                    found.append(f"{at}: figure '{name}' not shown within the page (shown {img['shown']})")
            layout = w.layout
            if layout["scroll_width"] > layout["viewport"] + 1:
                found.append(f"{at}: the page scrolls sideways ({layout['scroll_width']} px wide)")
            found += [f"{at}: text outside the page: {t}" for t in layout["text_outside"]]
            found += [f"{at}: section '{s}' not visible" for s, ok in layout["sections"].items() if not ok]
            head = layout["headline"]
            if head is None:
                if self.headline:
                    found.append(f"{at}: no headline table")
            elif not head["shown"] or not head["inside"] or head["scrolls"] or head["cells_outside"]:
                found.append(f"{at}: headline table not fully visible without scrolling: {head}")
            if w.screenshot_ink < 0.01 or w.screenshot_colors < 16:
                found.append(
                    f"{at}: the screenshot is blank ({w.screenshot_ink:.1%} ink, {w.screenshot_colors} colors)"
                )
        return found


def _screenshot_stats(page: Page) -> tuple[float, int]:
    import base64

    import numpy as np
    from PIL import Image

    shot = page.send("Page.captureScreenshot", format="png")
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB")).reshape(-1, 3)
    ink = float(np.mean(pixels.min(axis=1) < 235))
    colors = len(np.unique(pixels[:: max(1, len(pixels) // 200_000)], axis=0))
    return ink, colors


def _record(events: list[dict], page_url: str, check: PageCheck) -> None:
    for event in events:
        method, params = event["method"], event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            check.console_errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            check.console_errors.append(details.get("exception", {}).get("description", details.get("text", "")))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            check.console_errors.append(f"{params['entry']['text']} {params['entry'].get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if not url.startswith("data:") and url.split("#")[0] != page_url:
                check.requests.append(url)


def check_page(
    path: Path | str, widths: tuple[int, ...] = WIDTHS, browser: Browser | None = None, headline: bool = True
) -> PageCheck:
    """Open `path` in headless Chromium and record what a reader sees at each width (`headline`: the page
    must have a `table.headline`, as the report has; other marrow pages may not)."""
    path = Path(path).resolve()
    if browser is None:
        with Browser() as own:
            return check_page(path, widths, own, headline)
    check = PageCheck(path, headline=headline)
    page = browser.new_page(widths[0], 900)
    for domain in ("Runtime", "Log", "Network", "Page"):
        page.send(f"{domain}.enable")
    page.send("Emulation.setDeviceMetricsOverride", width=widths[0], height=900, deviceScaleFactor=1, mobile=False)
    open_file(page, path)
    for width in widths:
        page.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=900 if width > 600 else 844,
            deviceScaleFactor=1,
            mobile=width < 600,
        )
        images = page.evaluate(IMAGES_JS)
        layout = page.evaluate(LAYOUT_JS)
        ink, colors = _screenshot_stats(page)
        check.widths.append(WidthCheck(width, layout, images, ink, colors))
    _record(page.events(), path.as_uri(), check)
    page.close()
    return check


@dataclass
class PrintLayout:
    starts: list[tuple[str, float]]  # (heading, top in CSS px) of every heading that starts a new page
    blocks: list[tuple[float, float]]  # (top, height) of the blocks kept whole across pages, CSS px
    height: float  # the whole document, CSS px
    page_height: float  # the printable height of one page, CSS px

    def expected_pages(self) -> tuple[int, int]:
        """Fewest and most pages the print can take. Each forced break starts a page; between two, the
        content fills whole pages at best, and at worst every kept-whole block is pushed to the next
        page once, adding less than its own height (and less than a page), plus a repeated table header."""
        tops = [0.0] + [top for _, top in self.starts] + [self.height]
        low = high = 0
        for start, end in zip(tops[:-1], tops[1:], strict=True):
            if end - start <= 0:
                continue
            low += math.ceil((end - start) / self.page_height - 1e-6)
            pushed = sum(min(h, self.page_height) + 40 for top, h in self.blocks if start <= top < end)
            high += math.ceil((end - start + pushed) / self.page_height - 1e-6)
        return low, high


def print_layout(path: Path | str, browser: Browser | None = None) -> PrintLayout:
    """The report under its print style sheet, at the width of an A4 page's printable area."""
    path = Path(path).resolve()
    if browser is None:
        with Browser() as own:
            return print_layout(path, own)
    width = (A4_INCHES[0] - MARGINS_INCHES["marginLeft"] - MARGINS_INCHES["marginRight"]) * CSS_PX_PER_INCH
    height = (A4_INCHES[1] - MARGINS_INCHES["marginTop"] - MARGINS_INCHES["marginBottom"]) * CSS_PX_PER_INCH
    page = browser.new_page(int(width), int(height))
    page.send("Emulation.setEmulatedMedia", media="print")
    page.send(
        "Emulation.setDeviceMetricsOverride", width=int(width), height=int(height), deviceScaleFactor=1, mobile=False
    )
    open_file(page, path)
    found = page.evaluate(PRINT_JS)
    page.close()
    return PrintLayout(
        [(s["title"], s["top"]) for s in found["starts"]], [tuple(b) for b in found["blocks"]], found["height"], height
    )


# --- the PDF, read with poppler ------------------------------------------------------------------------


def _run(*command: str) -> str:
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=60).stdout


def pdf_pages(path: Path) -> int:
    return int(re.search(r"^Pages:\s+(\d+)", _run("pdfinfo", str(path)), re.M).group(1))


def pdf_text(path: Path, page: int | None = None) -> str:
    pages = ["-f", str(page), "-l", str(page)] if page else []
    return _run("pdftotext", *pages, str(path), "-")


def pdf_images(path: Path) -> list[dict]:
    """pdfimages -list: one row per image drawn (page, width, height in pixels, type)."""
    lines = _run("pdfimages", "-list", str(path)).splitlines()[2:]
    rows = []
    for line in lines:
        cells = line.split()
        rows.append({"page": int(cells[0]), "type": cells[2], "width": int(cells[3]), "height": int(cells[4])})
    return rows
