"""Score a dataset without selecting anything: the Python API behind `facesieve quality` and
`facesieve labels sdd-fiqa`.

Both start with the run's own stages (facesieve/preparation.py: scan -> faces -> embed
(-> quality)) on a workspace, so a re-run reuses every face, crop and embedding already
computed, and `facesieve run` on the same workspace reuses them too.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from facesieve.config import RunConfig
from facesieve.errors import UsageError
from facesieve.progress import Reporter

LEADING = ["path", "identity", "quality"]
TRAILING = ["status", "reason"]


@dataclass
class Scored:
    table: pd.DataFrame  # one row per scanned file: path, identity, quality, components..., status, reason
    summary: dict = field(default_factory=dict)


def check_output(dataset: Path, out: Path) -> None:
    """The output file must not land inside the dataset (it would be scanned as input next time)."""
    d, o = Path(dataset).resolve(), Path(out).resolve()
    if not d.is_dir():
        raise UsageError(f"dataset folder not found: {dataset}")
    if d in o.parents or o == d:
        raise UsageError(f"refusing to write {out} inside the input dataset; choose a path outside {dataset}")
    if o.is_dir():
        raise UsageError(f"--out must be a file path, and {out} is a folder")


def score_dataset(config: RunConfig, reporter: Reporter | None = None) -> Scored:
    """Every file's quality by `config.quality`, with the method's components as columns."""
    from facesieve.preparation import prepare

    rep = reporter or Reporter(quiet=True)
    t0 = time.perf_counter()
    prepared = prepare(config, rep)
    frame = prepared.frame()
    components = [c for c in prepared.quality.columns if c not in ("image_id", "key", "quality")]
    table = frame[LEADING + components + TRAILING].copy()
    no_score = table["status"] != "ok"
    table.loc[no_score, "quality"] = np.nan
    q = table["quality"].to_numpy(float)
    summary = {
        "dataset": str(config.dataset),
        "method": config.quality,
        "files": int(len(table)),
        "faces": int((table["status"] == "ok").sum()),
        "scored": int(np.isfinite(q).sum()),
        "by_status": table["status"].value_counts().to_dict(),
        "quality_mean": float(np.nanmean(q)) if np.isfinite(q).any() else None,
        "quality_min": float(np.nanmin(q)) if np.isfinite(q).any() else None,
        "quality_max": float(np.nanmax(q)) if np.isfinite(q).any() else None,
        "models": {"detector": config.detector, "embedder": config.embedder},
        "workspace": str(config.workspace),
        "seconds": round(time.perf_counter() - t0, 3),
        "stage_seconds": {k: round(v, 3) for k, v in rep.timings.items()},
    }
    if "ers_source" in table:
        src = table["ers_source"].dropna().unique()
        summary["ers_source"] = str(src[0]) if len(src) else None
    return Scored(table, summary)


def sdd_fiqa_dataset(
    config: RunConfig, reporter: Reporter | None = None, *, n_pos: int = 24, n_neg: int = 24, runs: int = 12, seed: int = 0
) -> Scored:
    """SDD-FIQA pseudo-labels of every found face (columns path, identity, quality; NaN for faces
    of one-image identities) and the labeller's report in `summary`."""
    from facesieve.preparation import prepare
    from facesieve.quality.sddfiqa import sdd_fiqa_labels

    rep = reporter or Reporter(quiet=True)
    t0 = time.perf_counter()
    prepared = prepare(config, rep, quality=False)
    files, faces, emb_table, vectors = prepared.files, prepared.faces, prepared.emb_table, prepared.vectors
    ok = faces["status"].to_numpy() == "ok"
    ids_by_image = files.set_index("image_id")
    image_ids = emb_table["image_id"].to_numpy()
    identities = ids_by_image.loc[image_ids, "identity"].astype(str).to_numpy()
    if len(identities) and (identities == "").all():
        raise UsageError("SDD-FIQA needs identities: use a dataset with one folder per identity")
    with rep.stage("sdd-fiqa", runs) as advance:
        last = [0]

        def progress(done: int, total: int) -> None:
            step = done * runs // max(total, 1)
            advance(step - last[0])
            last[0] = step

        scores, report = sdd_fiqa_labels(np.asarray(vectors), identities, n_pos=n_pos, n_neg=n_neg, runs=runs, seed=seed,
                                         progress=progress)
    table = pd.DataFrame({"path": ids_by_image.loc[image_ids, "path"].to_numpy(), "identity": identities, "quality": scores})
    single = report.get("single_image_identities", [])
    summary = {
        "dataset": str(config.dataset),
        "method": "sdd-fiqa",
        "files": int(len(files)),
        "faces": int(ok.sum()),
        "labelled": int(np.isfinite(scores).sum()),
        "unlabelled_faces": int((~np.isfinite(scores)).sum()),
        "single_image_identities": [str(s) for s in single],
        "no_face": int((faces["status"].to_numpy() != "ok").sum()),
        "n_pos": n_pos, "n_neg": n_neg, "runs": runs, "seed": seed,
        "models": {"detector": config.detector, "embedder": config.embedder},
        "workspace": str(config.workspace),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    return Scored(table, summary)
