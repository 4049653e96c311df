"""The HTML report of a run (its data, page, plots and thumbnails); the review app that edits its
decisions is facesieve/serve/. Nothing here imports the pipeline or the app."""

from facesieve.report.html import REPORT, render_page, report_data, write_report

__all__ = ["REPORT", "render_page", "report_data", "write_report"]
