"""`report.html`: one self-contained page (styles, script and data inline; thumbnails and figures in
`report_files/`) that opens offline from the output folder, with no network access at all.

The page renders itself from the embedded JSON: identities are paginated and searchable, images
load lazily, so a dataset of 1,000 identities opens as fast as one of ten.
"""

from __future__ import annotations

import json
import os
import re
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import numpy as np

from facesieve.overrides import read_manifest
from facesieve.report.data import collect
from facesieve.report.plots import save_similarity, similarity_payload
from facesieve.report.thumbs import make_thumbnails
from facesieve.workspace import Workspace, atomic_write_text

REPORT = "report.html"


def _asset(name: str) -> str:
    return resources.files("facesieve.report").joinpath("assets", name).read_text("utf-8")


def _script_json(data: dict) -> str:
    """JSON safe inside <script>: no '</' can close the element, no '<!--' can open a comment."""
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.replace("<", "\\u003c").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def render_page(data: dict, *, title: str = "facesieve report") -> str:
    """The whole page as text; `data["app"]` switches on the review controls."""
    from html import escape

    parts = {"title": escape(title), "css": _asset("report.css"), "data": _script_json(data), "js": _asset("report.js")}
    # one pass over the template: text inside the data can never be taken for a placeholder
    return re.sub(r"\{\{(title|css|data|js)\}\}", lambda m: parts[m.group(1)], _asset("page.html"))


def report_data(out: Path, ws: Workspace, *, dataset: Path | None = None, app: bool = False,
                faces_stage: str | None = None) -> dict:
    """Thumbnails brought up to date, then the page's data (static report or app)."""
    out = Path(out)
    if dataset is None:
        info = ws.read_json("facesieve-workspace.json", default={}) or {}
        dataset = Path(info.get("dataset", ""))
    thumbs = make_thumbnails(out, dataset, ws, read_manifest(out), faces_stage)
    plots = {"similarity": similarity_payload(ws)}
    if app:
        href = "files/"
    else:
        # a URL, not a path: "#", "%", "?" or a space in a folder name would otherwise end or alter it
        href = quote(Path(os.path.relpath(dataset.resolve(), out.resolve())).as_posix() + "/") if str(dataset) else ""
    return collect(out, ws, thumbs, plots=plots, files_href=href, app=app)


def write_report(
    out_dir: Path,
    dataset_dir: Path | None,
    ws: Workspace,
    *,
    faces_stage: str | None = None,
    embeddings: np.ndarray | None = None,
) -> Path:
    """Write `<out>/report.html` (and `report_files/`) for a finished run; returns the page's path.

    `embeddings` (one row per manifest row, zeros where no face) recomputes the identity similarity
    matrix; without it the previous one, if any, is shown.
    """
    out = Path(out_dir)
    if embeddings is not None:
        manifest = read_manifest(out)
        if len(manifest) == len(embeddings):
            save_similarity(ws, embeddings, manifest["identity"].to_numpy())
    data = report_data(out, ws, dataset=None if dataset_dir is None else Path(dataset_dir), faces_stage=faces_stage)
    if dataset_dir is not None and not data["dataset"]:
        data["dataset"] = str(dataset_dir)
    name = Path(data["dataset"]).name or "dataset"
    page = out / REPORT
    atomic_write_text(page, render_page(data, title=f"facesieve report: {name}"))
    return page
