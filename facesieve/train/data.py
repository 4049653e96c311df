"""Training data for quality distillation, taken from a facesieve workspace.

The run's own stages do the work (facesieve/preparation.py: scan -> faces -> embed -> quality), so
the crops, embeddings and teacher scores a student learns from are exactly the ones
`facesieve run` would compute, cached in the same workspace: a second training run, or one
pointed at an existing run's workspace, only reads them back. Nothing here needs torch.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from facesieve.errors import UsageError


@dataclass
class TrainData:
    """Faces a student trains on, one row each.

    crops: uint8 (M,112,112,3), usually a read-only memmap of *all* aligned crops of the workspace;
    crop_index maps each row to its crop (so nothing is copied). embeddings are the teacher
    embedder's unit vectors, labels the teacher's raw quality (higher is better).
    """

    crops: np.ndarray
    embeddings: np.ndarray
    labels: np.ndarray
    identities: np.ndarray
    paths: np.ndarray
    crop_index: np.ndarray | None = None
    teacher: str = ""
    embedder: str = ""
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.crop_index is None:
            self.crop_index = np.arange(len(self.crops), dtype=np.int64)
        self.crop_index = np.asarray(self.crop_index, dtype=np.int64)
        self.labels = np.asarray(self.labels, dtype=np.float64)
        self.identities = np.asarray(self.identities).astype(str)
        self.paths = np.asarray(self.paths).astype(str)
        for name in ("embeddings", "identities", "paths", "crop_index"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"TrainData: {name} has {len(getattr(self, name))} rows, labels {n}")
        if np.asarray(self.embeddings).ndim != 2:
            raise ValueError("TrainData: embeddings must be a 2-D (faces, dim) array")
        crops_shape = tuple(np.shape(self.crops)[1:])
        if crops_shape != (112, 112, 3):
            raise ValueError(f"TrainData: crops must be (n,112,112,3) uint8, got rows of shape {crops_shape}")
        if n and (self.crop_index.min() < 0 or self.crop_index.max() >= len(self.crops)):
            raise ValueError("TrainData: crop_index points outside crops")

    def __len__(self) -> int:
        return len(self.labels)

    def take_crops(self, rows: np.ndarray) -> np.ndarray:
        """uint8 crops for `rows` (positions in this table), read from the memmap in sorted order."""
        idx = self.crop_index[np.asarray(rows, dtype=np.int64)]
        order = np.argsort(idx, kind="stable")
        out = np.empty((len(idx), 112, 112, 3), np.uint8)
        out[order] = np.asarray(self.crops[idx[order]])
        return out

    def subset(self, rows: np.ndarray) -> TrainData:
        rows = np.asarray(rows, dtype=np.int64)
        return TrainData(self.crops, np.asarray(self.embeddings)[rows], self.labels[rows], self.identities[rows],
                         self.paths[rows], self.crop_index[rows], self.teacher, self.embedder, dict(self.info))


def is_csv_teacher(teacher: str) -> bool:
    """A teacher given as a file of scores rather than a quality method name."""
    return teacher.lower().endswith(".csv") or Path(teacher).is_file()


def read_teacher_csv(path: Path | str, paths: np.ndarray, dataset: Path | None = None) -> np.ndarray:
    """Scores for `paths` (dataset-relative) from a CSV of path,score rows; NaN where a path is absent.

    A header row is optional (recognised when its second field is not a number). Paths may be
    relative to the dataset folder or absolute inside it; separators may be either slash.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"teacher score file not found: {path}")
    root = Path(dataset).resolve() if dataset is not None else None
    scores: dict[str, float] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        for n, row in enumerate(csv.reader(f)):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 2:
                raise UsageError(f"{path.name} line {n + 1}: expected path,score")
            try:
                value = float(row[1])
            except ValueError:
                if n == 0:  # header
                    continue
                raise UsageError(f"{path.name} line {n + 1}: score {row[1]!r} is not a number") from None
            scores[_norm_path(row[0], root)] = value
    if not scores:
        raise UsageError(f"{path.name} holds no scores")
    return np.array([scores.get(_norm_path(p, None), np.nan) for p in paths], dtype=np.float64)


def _norm_path(p: str, root: Path | None) -> str:
    p = p.strip().replace("\\", "/")
    if root is not None and Path(p).is_absolute():
        try:
            p = Path(p).resolve().relative_to(root).as_posix()
        except ValueError:
            pass
    return str(PurePosixPath(p))  # also drops a leading "./" and doubled slashes


def prepare(
    dataset: Path | str,
    workspace: Path | str,
    *,
    teacher: str = "offline",
    embedder: str = "sface",
    detector: str = "yunet",
    face_policy: str = "central",
    aligned: bool = False,
    layout: str = "folders",
    jobs: int | None = None,
    batch_size: int = 64,
    reporter=None,
) -> TrainData:
    """Run scan, faces, embed and (for a method teacher) quality into `workspace`; return the faces
    that have a crop, an embedding and a teacher score. Cached stages are read back, not recomputed."""
    from facesieve.config import RunConfig
    from facesieve.preparation import prepare as prepare_stages
    from facesieve.progress import Reporter

    rep = reporter or Reporter(quiet=True)
    dataset = Path(dataset)
    if not dataset.is_dir():
        raise UsageError(f"dataset folder not found: {dataset}")
    csv_teacher = is_csv_teacher(teacher)
    workspace = Path(workspace)
    config = RunConfig(dataset=dataset, out=workspace.parent, workspace=workspace, detector=detector,
                       embedder=embedder, quality="uniform" if csv_teacher else teacher, face_policy=face_policy,
                       aligned=aligned, layout=layout, jobs=jobs, batch_size=batch_size)

    def has_images(files: pd.DataFrame) -> None:
        if len(files) == 0 or not (files["status"] == "ok").any():
            raise UsageError(f"no readable images in {dataset}")

    prepared = prepare_stages(config, rep, quality=False, check=has_images)
    files, faces, crops, vectors = prepared.files, prepared.faces, prepared.crops, prepared.vectors
    ok = np.flatnonzero(faces["status"].to_numpy() == "ok")
    meta = files.set_index("image_id")
    image_ids = faces["image_id"].to_numpy()[ok]
    paths = meta.loc[image_ids, "path"].to_numpy().astype(str)
    identities = meta.loc[image_ids, "identity"].fillna("").to_numpy().astype(str)

    info: dict = {"files": len(files), "faces": len(ok)}
    if csv_teacher:
        labels = read_teacher_csv(teacher, paths, dataset)
    else:
        before = rep.timings.get("quality", 0.0), rep.counts.get("quality", 0)
        t0 = time.perf_counter()
        quality = prepared.score()
        computed = rep.counts.get("quality", 0) - before[1]
        if computed:
            info["teacher_seconds_per_face"] = (time.perf_counter() - t0) / computed
        labels = pd.to_numeric(quality["quality"], errors="coerce").to_numpy(np.float64)

    keep = np.isfinite(labels)
    info["no_label"] = int((~keep).sum())
    if not keep.any():
        raise UsageError(f"the teacher {teacher!r} gave no score to any of the {len(ok)} faces")
    return TrainData(
        crops=crops,
        embeddings=np.asarray(vectors)[keep],
        labels=labels[keep],
        identities=identities[keep],
        paths=paths[keep],
        crop_index=ok[keep],
        teacher=str(teacher),
        embedder=embedder,
        info=info,
    )
