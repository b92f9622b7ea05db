"""The report as a reader sees it: opened in headless Chromium, and printed to PDF.

One small real report (bundled trial, response model only, 2 chains x 200 draws, `--pdf`) is
shared by the module. The browser tests need Chromium and poppler-utils, which `make test` installs
when missing (tests/browser_check.sh); without them they skip, except in CI (CI=true), where they
fail. The tests at the top need no browser.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from browser_check import check_page, pdf_images, pdf_pages, pdf_text, print_layout

from marrow.errors import UsageError
from marrow.report.chromium import Browser, BrowserError, find_chromium
from marrow.report.pdf import footer_template, write_pdf
from marrow.report.plan import load_plan, template_text


def _words(text: str) -> str:
    return " ".join(text.split())


# --- no browser needed ----------------------------------------------------------------------------------


def test_plan_key_pdf(tmp_path):
    assert load_plan().pdf is False
    assert load_plan(_plan(tmp_path / "t.toml", template_text())).pdf is False  # the template shows the key
    plan = load_plan(_plan(tmp_path / "p.toml", "[report]\npdf = true\n"))
    assert plan.pdf is True and plan.to_dict()["pdf"] is True
    with pytest.raises(UsageError, match=r"\[report\] pdf must be true or false"):
        load_plan(_plan(tmp_path / "q.toml", '[report]\npdf = "yes"\n'))


def test_without_chromium_the_pdf_is_refused_before_fitting(marrow_cli, monkeypatch, tmp_path):
    monkeypatch.setenv("MARROW_CHROMIUM", str(tmp_path / "no-such-browser"))
    out = tmp_path / "rep"
    code, _, err = marrow_cli("report", "--out", out, "--quick", "--pdf")
    assert code == 2 and "apt-get install -y --no-install-recommends chromium" in err
    assert list(tmp_path.iterdir()) == []  # no report folder, not even the temporary one fitting happens in
    plan = _plan(tmp_path / "plan.toml", '[models]\nrun = ["response"]\n[report]\npdf = true\n')
    code, _, err = marrow_cli("report", "--plan", plan, "--out", out)
    assert code == 2 and "not an executable" in err and not out.exists()

    monkeypatch.delenv("MARROW_CHROMIUM")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(UsageError, match="headless Chromium, which is not installed: install it with"):
        find_chromium()


def test_a_browser_that_fails_leaves_no_pdf(tmp_path):
    page = tmp_path / "report.html"
    page.write_text("<!DOCTYPE html><title>t</title><p>text</p>")
    with pytest.raises(BrowserError, match="Chromium"):
        write_pdf(page, tmp_path / "report.pdf", executable=shutil.which("false"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_footer_escapes_its_note():
    footer = footer_template("<b>SYNTHETIC</b>")
    assert "&lt;b&gt;SYNTHETIC&lt;/b&gt;" in footer and "<b>" not in footer
    assert 'class="pageNumber"' in footer and 'class="totalPages"' in footer


def _plan(path: Path, body: str) -> Path:
    path.write_text(body, encoding="utf-8")
    return path


# --- in the browser ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tools():
    """Chromium and poppler-utils, or a skip (a failure in CI) saying what is missing."""
    missing = [tool for tool in ("pdfinfo", "pdftotext", "pdfimages") if shutil.which(tool) is None]
    try:
        find_chromium()
    except UsageError as exc:
        missing.append(str(exc))
    if missing:
        reason = (
            "browser tier needs Chromium and poppler-utils (run `bash tests/browser_check.sh` as root): "
            + "; ".join(missing)
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def browser(tools):
    with Browser() as running:
        yield running


@pytest.fixture(scope="module")
def report(tools, tmp_path_factory) -> Path:
    """A real report of the bundled trial (response model only, small sampling), with its PDF."""
    from marrow.cli import main

    folder = tmp_path_factory.mktemp("browser")
    plan = _plan(
        folder / "plan.toml",
        "\n".join(
            [
                "[sampler]",
                "chains = 2",
                "draws = 200",
                "tune = 200",
                "seed = 5",
                "[models]",
                'run = ["response"]',
                "[report]",
                "dpi = 80",
                "",
            ]
        ),
    )
    out = folder / "rep"
    try:
        main(["report", "--plan", str(plan), "--out", str(out), "--quiet", "--pdf"])
        code = 0
    except SystemExit as exc:
        code = exc.code
    assert code == 0
    return out


@pytest.fixture(scope="module")
def seen(report, browser):
    return check_page(report / "report.html", browser=browser)


def _figure_sizes(report: Path) -> list[tuple[int, int]]:
    from PIL import Image

    manifest = json.loads((report / "manifest.json").read_text())
    sizes = []
    for figure in manifest["steps"][0]["figures"]:
        assert figure["error"] is None, figure
        with Image.open(report / figure["png"]) as image:
            sizes.append(image.size)
    return sizes


@pytest.mark.browser
@pytest.mark.sampling
def test_the_report_reads_well_at_laptop_and_phone_width(seen, report):
    assert seen.problems() == []
    assert [w.width for w in seen.widths] == [1280, 390]
    sizes = _figure_sizes(report)
    assert len(sizes) >= 5
    for width in seen.widths:
        # every figure of the manifest is in the page, decoded at the size of its PNG file
        assert sorted(tuple(img["natural"]) for img in width.images) == sorted(sizes)
        assert all(img["decoded"] for img in width.images)
        assert set(width.layout["sections"]) >= {
            "headline",
            "response",
            "diagnostics",
            "frequentist",
            "plan",
            "provenance",
        }
        assert all(width.layout["sections"].values())
        assert width.layout["headline"]["cells"] > 0 and width.layout["scroll_width"] <= width.width
    phone = seen.widths[1]
    assert all(img["shown"][0] <= 390 for img in phone.images)  # figures shrink to the phone's width
    assert seen.console_errors == [] and seen.requests == []


@pytest.mark.browser
@pytest.mark.sampling
def test_the_checker_catches_a_broken_figure(seen, report, browser, tmp_path):
    """Corrupt one figure's base64, add an outside image and a console error: each one is reported."""
    html = (report / "report.html").read_text(encoding="utf-8")
    marker = 'src="data:image/png;base64,'
    start = html.index(marker) + len(marker)
    alt = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,', html)[0]
    broken = html[:start] + "A" * 64 + html[start + 64 :]  # the PNG signature and header are gone
    broken = broken.replace(
        "</body>",
        '<img alt="outside" src="http://127.0.0.1:9/x.png"><script>console.error("figure check: boom")</script></body>',
    )
    copy = tmp_path / "report.html"
    copy.write_text(broken, encoding="utf-8")

    problems = check_page(copy, browser=browser).problems()
    for width in (1280, 390):
        assert any(p.startswith(f"at {width} px: figure '{alt}' did not decode") for p in problems), problems
        assert any(p.startswith(f"at {width} px: figure 'outside' did not decode") for p in problems), problems
        assert sum("did not decode" in p and f"at {width} px" in p for p in problems) == 2  # the others are fine
    assert "request leaves the page: http://127.0.0.1:9/x.png" in problems
    assert any(p.startswith("console error:") and "figure check: boom" in p for p in problems)
    assert seen.problems() == []  # the same checker passes the intact page


@pytest.mark.browser
@pytest.mark.sampling
def test_the_pdf(report, browser):
    pdf = report / "report.pdf"
    pages = pdf_pages(pdf)
    layout = print_layout(report / "report.html", browser=browser)
    low, high = layout.expected_pages()
    assert low <= pages <= high, (low, pages, high)
    texts = [_words(pdf_text(pdf, page)) for page in range(1, pages + 1)]
    for number, text in enumerate(texts, start=1):
        assert f"page {number} of {pages}" in text and "SYNTHETIC DATA" in text  # the footer of every page

    first = texts[0]
    assert first.startswith("Bayesian analysis of a multicenter phase II trial")
    assert "SYNTHETIC DATA: this report analyses the bundled synthetic trial" in first and "Headline results" in first
    headline = pd.read_csv(report / "tables" / "headline.csv", dtype=str)
    assert len(headline) >= 3
    for _, row in headline.iterrows():  # the headline numbers, as the reader sees them, on the first page
        for column in ("posterior median", "95% CrI"):
            assert row[column] in first, (column, row[column])

    # every section that starts a new page does start one, and the headings are the PDF's outline
    assert [title for title, _ in layout.starts][:2] == ["Response", "Diagnostics"]
    for title, _ in layout.starts:
        assert any(text.startswith(title) for text in texts[1:]), title
    assert b"/Outlines" in pdf.read_bytes() and b"/Title (Headline results)" in pdf.read_bytes()

    # every figure embedded once, at its PNG's own pixel size: none split across two pages
    images = pdf_images(pdf)
    assert Counter((i["width"], i["height"]) for i in images) == Counter(_figure_sizes(report))
    assert all(i["page"] > 1 for i in images)


@pytest.mark.browser
@pytest.mark.sampling
def test_a_failed_print_keeps_the_report(report, marrow_cli, monkeypatch, tmp_path):
    """Chromium found but failing: the fits and the HTML are still written, with a warning and exit 3."""
    monkeypatch.setenv("MARROW_CHROMIUM", shutil.which("false"))
    plan = _plan(
        tmp_path / "plan.toml",
        "\n".join(
            [  # the fixture's model, compiled already in this process
                "[sampler]",
                "chains = 2",
                "draws = 200",
                "tune = 200",
                "seed = 5",
                "[models]",
                'run = ["response"]',
                "[report]",
                "figures = false",
                "pdf = true",
                "",
            ]
        ),
    )
    out = tmp_path / "rep"
    code, _, err = marrow_cli("report", "--plan", plan, "--out", out, "--quiet")
    assert code == 3 and "report.pdf could not be printed: Chromium exited (code 1)" in err
    assert (out / "report.html").is_file() and (out / "fits" / "response.nc").is_file()
    assert not (out / "report.pdf").exists()
