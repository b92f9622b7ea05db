"""`marrow report`: run an analysis plan and write a self-contained report folder.

- `plan`: the TOML analysis plan, validated into a frozen `Plan` (`load_plan`);
- `run`: fits, diagnostics, summaries, frequentist comparison, figures, manifest (`run_report`);
- `html`, `markdown`: rendering (template `report.html`; plan template `analysis.toml`).
"""

from marrow.report.plan import Plan, load_plan
from marrow.report.run import run_report

__all__ = ["Plan", "load_plan", "run_report"]
