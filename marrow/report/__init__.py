"""`marrow report`: run an analysis plan and write a self-contained report folder.

- `plan`: the TOML analysis plan, validated into a frozen `Plan` (`load_plan`);
- `run`: orchestration: fits, diagnostics, summaries, frequentist comparison, figures, the folder
  and its manifest (`run_report`);
- `content`: what the report shows: its sections and headline rows (from the model registry), figure
  titles, the tables it writes;
- `view`: the view model, plain values built from the run (`build_view`);
- `html`, `markdown`: the two renderers, reading only the view (template `report.html`; plan
  template `analysis.toml`); `pdf`, `chromium`: report.pdf printed by headless Chromium.
"""

from marrow.report.plan import Plan, load_plan
from marrow.report.run import run_report

__all__ = ["Plan", "load_plan", "run_report"]
