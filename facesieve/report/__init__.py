"""The HTML report of a run and the local review app that edits its decisions."""

from facesieve.report.html import REPORT, render_page, report_data, write_report

__all__ = ["REPORT", "render_page", "report_data", "write_report"]
