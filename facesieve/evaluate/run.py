"""Embeddings and quality scores of a dataset for evaluation, through the pipeline's own stages.

Evaluation runs the same stages as `facesieve run` (facesieve/preparation.py: scan -> faces ->
embed -> quality) over a workspace, so every face is detected, aligned and embedded once: a second
evaluation of the same dataset, or one pointed at a run's workspace
(`--workspace cleaned/.facesieve`), reads the stored parts back and calls no model.

Default workspace: ``$FACESIEVE_HOME/eval/<dataset name>-<hash of its absolute path>``
(FACESIEVE_HOME defaults to ~/.cache/facesieve), one per dataset, shared by every evaluate
sub-command and every model (the stage keys name the models, so they never mix).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from facesieve.errors import UsageError


def facesieve_home() -> Path:
    home = os.environ.get("FACESIEVE_HOME")
    return Path(home).expanduser() if home else Path("~/.cache/facesieve").expanduser()


def default_workspace(dataset: Path | str) -> Path:
    """One cache folder per dataset (by absolute path) under $FACESIEVE_HOME/eval."""
    resolved = Path(dataset).resolve()
    digest = hashlib.sha1(str(resolved).encode()).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", resolved.name)[:40] or "dataset"
    return facesieve_home() / "eval" / f"{name}-{digest}"


@dataclass
class EvalSet:
    """Every image of a dataset (one row each, scan order) with its embedding when a face was found.

    Rows cover the files meant to be images inside identity folders (scan status ok or error);
    sidecar files the scan skips (README.txt, files at the root) are not rows. `status` is "ok" for
    an embedded face, else why there is none ("no_face", or the decode / scan error). Nothing is
    dropped: the failed rows stay, and `valid` masks them out of pairs.
    """

    dataset: Path
    workspace: Path
    detector: str
    embedder: str
    paths: np.ndarray  # (n,) str, relative to dataset
    identities: np.ndarray  # (n,) str
    status: np.ndarray  # (n,) str
    reason: np.ndarray  # (n,) str
    fallback: np.ndarray  # (n,) bool: no detection, the whole (tight-crop) image was used
    unit: np.ndarray  # (n, d) float32 unit vectors, zero rows where no face
    norm: np.ndarray  # (n,) float64 raw embedding norm, NaN where no face
    quality: dict[str, np.ndarray] = field(default_factory=dict)  # method -> (n,) float64, NaN where none

    @property
    def valid(self) -> np.ndarray:
        return self.status == "ok"

    def vectors(self, metric: str = "cosine") -> np.ndarray:
        """Unit vectors (cosine) or the embedder's raw vectors (euclidean); zero rows where no face."""
        if metric == "cosine":
            return self.unit
        if metric == "euclidean":
            return self.unit * np.nan_to_num(self.norm, nan=0.0)[:, None].astype(np.float32)
        raise UsageError(f"unknown metric {metric!r}; choose cosine or euclidean")

    def failed(self) -> pd.DataFrame:
        """path, identity, status, reason of every image without an embedding."""
        bad = ~self.valid
        return pd.DataFrame({"path": self.paths[bad], "identity": self.identities[bad], "status": self.status[bad],
                             "reason": self.reason[bad]})

    def failed_by_reason(self) -> dict[str, int]:
        f = self.failed()
        label = np.where(f["reason"].to_numpy(str) != "", f["reason"].to_numpy(str), f["status"].to_numpy(str))
        return {str(k): int(v) for k, v in sorted(pd.Series(label).value_counts().items())}


def load_eval_set(
    dataset: Path | str,
    *,
    detector: str = "yunet",
    embedder: str = "sface",
    qualities: tuple[str, ...] | list[str] = (),
    face_policy: str = "central",
    aligned: bool = False,
    jobs: int | None = None,
    batch_size: int = 64,
    workspace: Path | str | None = None,
    reporter=None,
) -> EvalSet:
    """Scan, detect, embed (and score with each quality method) every image of `dataset`, reusing
    whatever `workspace` holds already; return one row per image. Needs one folder per identity."""
    from facesieve.config import RunConfig
    from facesieve.preparation import prepare, validate
    from facesieve.progress import Reporter

    rep = reporter or Reporter(quiet=True)
    dataset = Path(dataset)
    if not dataset.is_dir():
        raise UsageError(f"dataset folder not found: {dataset}" if not dataset.exists() else f"dataset is not a folder: {dataset}")
    ws_path = Path(workspace) if workspace is not None else default_workspace(dataset)
    qualities = list(dict.fromkeys(qualities))
    config = RunConfig(dataset=dataset, out=ws_path, workspace=ws_path, detector=detector, embedder=embedder,
                       quality=qualities[0] if qualities else "uniform", face_policy=face_policy, aligned=aligned,
                       jobs=jobs, batch_size=batch_size, report=False)
    keys = validate(config)
    # every method checked (its scorer built, once) before any work
    methods = {q: keys if q == config.quality else keys.with_quality(q) for q in qualities}

    def has_images(files: pd.DataFrame) -> None:
        if not (files["status"].to_numpy(str) != "skipped").any():
            raise UsageError(f"no images in identity folders under {dataset} (layout: DATASET/<identity>/<image>)")

    prepared = prepare(config, rep, keys=keys, quality=False, check=has_images)
    vectors = prepared.vectors
    scored = {q: prepared.score(k) for q, k in methods.items()}

    frame = prepared.frame()
    frame = frame[frame["status"].to_numpy(str) != "skipped"].reset_index(drop=True)
    rows = frame["vec_row"].to_numpy()
    has = rows >= 0
    dim = vectors.shape[1] if vectors.ndim == 2 else 128
    unit = np.zeros((len(frame), dim), np.float32)
    if has.any():
        unit[has] = np.asarray(vectors)[rows[has]]
    norm = frame["norm"].to_numpy(float)
    status = frame["status"].fillna("").to_numpy(str)
    status = np.where(has | (status != "ok"), status, "no_embedding")  # never "ok" without a vector
    quality = {}
    for q, table in scored.items():
        by_id = pd.to_numeric(table.set_index("image_id")["quality"], errors="coerce")
        quality[q] = frame["image_id"].map(by_id).to_numpy(np.float64)
    return EvalSet(
        dataset=dataset,
        workspace=ws_path,
        detector=detector,
        embedder=embedder,
        paths=frame["path"].to_numpy(str),
        identities=frame["identity"].fillna("").to_numpy(str),
        status=status,
        reason=frame["reason"].fillna("").to_numpy(str),
        fallback=frame["fallback"].fillna(False).to_numpy(bool),
        unit=unit,
        norm=norm,
        quality=quality,
    )
