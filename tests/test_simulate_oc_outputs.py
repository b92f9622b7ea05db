"""The OC outputs: tables in every format, the figure's points and bands, the HTML page (escaped, loud
about diagnostic failures), all written into the study folder."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from simulate_records import conjugate_records

from marrow.simulate import calibrate, oc, oc_outputs
from marrow.simulate import rules as R

Q = ["response_rate"]
HOSTILE = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def result():
    rules = R.decision_rules(
        "P(response_rate > 0.15) > 0.9", Q, no_go="P(response_rate > 0.15) < 0.5",
        interims=[("P(response_rate > 0.3) < 0.1", None)],
    )  # fmt: skip
    records = conjugate_records({"null": 0.15, HOSTILE: 0.35}, [12, 30], 200, seed=2, rules=rules, grid=False)
    records.loc[records.index[:7], "diagnostics_failed"] = True
    return records, rules, oc.oc_table(records, rules)


def test_display_puts_each_mcse_beside_its_value(result):
    _, _, table = result
    shown = oc_outputs.display(table.table)
    assert "P(go) mcse" not in shown.columns
    row = table.table.iloc[0]
    assert shown.iloc[0]["P(go)"] == f"{row['P(go)']:.3f} ({row['P(go) mcse']:.3f})"
    assert shown.iloc[0]["replicates"] == "200" and shown.iloc[0]["diagnostics failed"] == "7"
    est = oc_outputs.display(table.estimation)
    assert est.iloc[0]["coverage 95%"].endswith(f"({table.estimation.iloc[0]['coverage mcse']:.3f})")


def test_tables_in_every_format_show_both_tables_when_diagnostics_failed(result):
    _, _, table = result
    markdown = oc_outputs.render_tables(table, "markdown")
    assert "without the 7 replicates that failed a diagnostic" in markdown
    assert "Note: 7 replicates failed a sampler diagnostic" in markdown
    latex = oc_outputs.render_tables(table, "latex")
    # OC and estimation, each with and without the failures
    assert latex.count(r"\begin{tabular}") == 4 and r"\toprule" in latex
    terminal = oc_outputs.render_tables(table, "table")
    assert "P(go)" in terminal and "null" in terminal
    # In the terminal one column per scenario: the P(go) row holds each scenario's value (MCSE).
    row = next(line for line in terminal.splitlines() if line.startswith("│ P(go) "))
    cells = [c.strip() for c in row.strip("│").split("│")[1:]]
    assert cells == [f"{p:.3f} ({m:.3f})" for p, m in zip(table.table["P(go)"], table.table["P(go) mcse"], strict=True)]
    assert len(oc_outputs.render_tables(table, "table", estimation=False).split("Estimation")) == 1
    csv = oc_outputs.render_tables(table, "csv")
    assert "P(go) mcse" in csv.splitlines()[0]


def test_figure_plots_p_go_at_the_true_rates_with_2_mcse_bars(result):
    _, _, table = result
    fig = oc_outputs.figure(table, "OC")
    ax = fig.axes[0]
    line = ax.lines[0]
    assert np.allclose(line.get_xdata(), [0.15, 0.35])
    assert np.allclose(line.get_ydata(), table.table["P(go)"])
    bars = ax.collections[0].get_segments()  # the first errorbar's vertical bars
    half = [(seg[1][1] - seg[0][1]) / 2 for seg in bars]
    assert np.allclose(half, 2 * table.table["P(go) mcse"])


def test_write_outputs_writes_every_file_with_escaped_user_text(result, tmp_path):
    records, rules, table = result
    cal = calibrate.calibrate_go(records, rules, "null", 0.05)
    paths = oc_outputs.write_outputs(tmp_path / "study", table, rules, title="OC of <b>design</b>", calibration=cal)
    assert sorted(p.name for p in paths) == sorted(oc_outputs.FILES)
    html = (tmp_path / "study" / "oc.html").read_text()
    assert HOSTILE not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "OC of &lt;b&gt;design&lt;/b&gt;" in html
    assert "7 replicates failed a sampler diagnostic" in html and 'class="box warn"' in html
    assert "P(response_rate &gt; 0.15) &gt; 0.9" in html and "Calibration" in html
    assert "data:image/png;base64," in html and "--warn" in html  # the figure inline, the report's stylesheet
    back = pd.read_csv(tmp_path / "study" / "oc.csv")
    assert np.allclose(back["P(go)"], table.table["P(go)"])
    assert (tmp_path / "study" / "oc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "study" / "oc.pdf").read_bytes()[:5] == b"%PDF-"
    # written again (a resumed study): replaced, no temporary files left
    oc_outputs.write_outputs(tmp_path / "study", table, rules)
    assert not [p for p in (tmp_path / "study").iterdir() if p.name.startswith(".")]


def test_no_warning_box_when_every_replicate_passed(result, tmp_path):
    records, rules, _ = result
    clean = oc.oc_table(records.assign(diagnostics_failed=False), rules)
    png = b"\x89PNG"
    html = oc_outputs.html_page(clean, rules, png)
    assert 'id="warnings"' not in html and "Without the replicates" not in html
