"""The HTML report: one self-contained page of charts and tables from run logs.

``render_page(runs, problems)`` takes the runs as ``carbontrack report`` reads them (with
``read_run_detail`` for our logs) and returns a page with inline CSS and SVG only: no script,
no font, nothing fetched. ``carbontrack report --format html`` writes it.
"""

from __future__ import annotations

from carbontrack.report_html._data import DeviceInfo, PowerStep, RunDetail, Summary, read_run_detail
from carbontrack.report_html._epochs import format_epochs
from carbontrack.report_html._page import render_page

__all__ = [
    "DeviceInfo",
    "PowerStep",
    "RunDetail",
    "Summary",
    "format_epochs",
    "read_run_detail",
    "render_page",
]
