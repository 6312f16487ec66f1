"""`factlab report RUN_DIR... -o report.html`: one self-contained HTML page about finished runs (html.py says
what is on it).

runs.py reads the run folders, plots.py draws the figures, attention.py runs each model for its attention maps,
html.py writes the page."""

from .html import build_report, write_report

__all__ = ["build_report", "write_report"]
