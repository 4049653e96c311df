"""The local engine: every core of one machine, stages overlapped, memory bounded.

Worker processes (one compute thread each) decode, detect and align; for an embedder that cuts
its own input from the original image (dlib) they also cut that chip, since they hold the decoded
image already. The main process takes their results through a bounded window, commits faces parts
of PART_ROWS images, and embeds the finished faces in batches while the workers go on detecting:
the two stages overlap, and at most `window x chunk` images are in flight. Tasks are generated
lazily and results are committed as they come, so nothing grows with the dataset but the list of
image ids the pipeline hands in.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from facesieve.engines import FacesWork
from facesieve.imaging import load_rgb
from facesieve.parallel import default_jobs, ordered_map
from facesieve.stages import ChipTask, FaceTask, chip_worker, detection_from_row, embedder, faces_worker
from facesieve.workspace import StageStore

PART_ROWS = 256  # images per committed part: the most work a crash can lose
CHUNK = 8  # images per worker task
WINDOW_PER_JOB = 8  # tasks in flight per worker: enough to keep workers busy through a batch of inference


@dataclass(frozen=True)
class ImageJob:
    """One image for a worker: its faces task, and the embedder whose chip to cut ("" for none)."""

    task: FaceTask
    chip_for: str = ""


def face_job(job: ImageJob) -> tuple[dict, np.ndarray, np.ndarray | None]:
    """faces_worker, plus the embedder's own chip where it needs the original image."""
    row, crop = faces_worker(job.task)
    chip = None
    if job.chip_for and row["status"] == "ok":
        emb = embedder(job.chip_for)
        if emb.needs_original:
            # decoded a second time: the file is in the page cache, and faces_worker keeps its image
            chip = emb.prepare(load_rgb(job.task.path), detection_from_row(row), None)
    return row, crop, chip


def embed_inputs(emb, inputs: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(raw norms float64, unit vectors float32) for model inputs, `batch_size` at a time.

    A vector must not depend on the batch its face landed in (a resumed run batches differently):
    OpenCV's int8 SFace rounds a batch of one differently from any larger batch, so a lone face is
    run as a pair of copies. Batches never exceed the model's own MAX_BATCH, so it never splits one.
    """
    size = max(2, min(batch_size, getattr(emb, "MAX_BATCH", batch_size)))
    raw = np.zeros((len(inputs), getattr(emb, "dim", 128)), np.float64)
    for s in range(0, len(inputs), size):
        batch = np.asarray(inputs[s : s + size])
        if len(batch) == 1:
            out = np.asarray(emb.embed_batch(np.concatenate([batch, batch])))[:1]
        else:
            out = np.asarray(emb.embed_batch(batch))
        raw[s : s + len(batch)] = out
    norm = np.linalg.norm(raw, axis=1)
    return norm, (raw / np.maximum(norm, 1e-12)[:, None]).astype(np.float32)


class PartWriter:
    """Rows (and array rows) gathered until `rows` of them, then committed as one part."""

    def __init__(self, store: StageStore, array_names: Iterable[str] = (), rows: int = PART_ROWS):
        self.store, self.limit = store, rows
        self.rows: list[dict] = []
        self.arrays: dict[str, list[np.ndarray]] = {n: [] for n in array_names}

    def add(self, row: dict, **arrays: np.ndarray) -> None:
        self.rows.append(row)
        for name, value in arrays.items():
            self.arrays[name].append(value)
        if len(self.rows) >= self.limit:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.store.write_part(pd.DataFrame(self.rows), {n: np.stack(v) for n, v in self.arrays.items()})
        self.rows = []
        self.arrays = {n: [] for n in self.arrays}


class EmbedBatcher:
    """Model inputs gathered into batches; each full batch is embedded and its rows committed."""

    def __init__(self, emb, batch_size: int, store: StageStore):
        self.emb, self.batch_size = emb, batch_size
        self.parts = PartWriter(store, ["vectors"])
        self.ids: list[str] = []
        self.keys: list[str] = []
        self.inputs: list[np.ndarray] = []
        self.done = 0

    def add(self, image_id: str, key: str, model_input: np.ndarray) -> None:
        self.ids.append(image_id)
        self.keys.append(key)
        self.inputs.append(model_input)
        if len(self.inputs) >= self.batch_size:
            self.run()

    def run(self) -> None:
        if not self.inputs:
            return
        norm, vec = embed_inputs(self.emb, np.stack(self.inputs), self.batch_size)
        for i, k, n, v in zip(self.ids, self.keys, norm, vec):
            self.parts.add({"image_id": i, "key": k, "norm": float(n)}, vectors=v)
        self.done += len(self.inputs)
        self.ids, self.keys, self.inputs = [], [], []

    def close(self) -> None:
        self.run()
        self.parts.flush()


def compute_faces(config, work: FacesWork, reporter) -> None:
    """Faces for every wanted image without one; with `work.embed`, the new faces' embeddings too,
    batched in this process while the workers go on detecting."""
    todo = work.missing()
    if not len(todo):
        return
    jobs = config.jobs or default_jobs()
    ids = work.wanted["image_id"].to_numpy()
    keys = work.wanted["key"].to_numpy()
    paths = work.wanted["path"].to_numpy()
    root = Path(work.dataset)

    batcher, embed_needed, suffix, chip_for = None, None, "", ""
    if work.embed is not None:
        suffix = work.embed.suffix
        ekeys = pd.DataFrame({"image_id": ids[todo], "key": pd.Series(keys[todo], dtype=object) + suffix})
        embed_needed = ~work.embed.store.done_mask(ekeys)
        del ekeys
        if embed_needed.any():
            emb = embedder(config.embedder)
            batcher = EmbedBatcher(emb, config.batch_size, work.embed.store)
            chip_for = config.embedder if emb.needs_original else ""

    def jobs_for() -> Iterator[ImageJob]:
        for j, n in enumerate(todo):
            task = FaceTask(ids[n], keys[n], str(root / paths[n]), config.detector, config.face_policy, config.aligned, True)
            yield ImageJob(task, chip_for if (batcher is not None and embed_needed[j]) else "")

    faces = PartWriter(work.store, ["crops"])
    results = ordered_map(face_job, jobs_for(), jobs, window=jobs * WINDOW_PER_JOB, chunk=CHUNK)
    with reporter.stage("faces", len(todo)) as advance:
        for j, (row, crop, chip) in enumerate(results):
            faces.add(row, crops=crop)
            if batcher is not None and embed_needed[j] and row["status"] == "ok":
                model_input = chip if chip is not None else batcher.emb.prepare(None, None, crop)
                batcher.add(row["image_id"], row["key"] + suffix, model_input)
            advance(1)
        faces.flush()
        if batcher is not None:
            batcher.close()


def compute_embeddings(
    config,
    faces: pd.DataFrame,
    crops,
    wanted: pd.DataFrame,
    store: StageStore,
    paths: pd.Series,
    reporter,
) -> None:
    """Embeddings for found faces that have none yet (a resumed run, a new embedder).

    `faces`: the faces-table rows of the found faces, `crops` their aligned crops (same order,
    any array-like), `wanted` their embed keys, `paths` each image's path in the dataset by image
    id (for embedders that cut their own chip from the original image).
    """
    need = np.flatnonzero(~store.done_mask(wanted))
    with reporter.stage("embed", len(need)) as advance:
        if not len(need):
            return
        emb = embedder(config.embedder)
        batcher = EmbedBatcher(emb, config.batch_size, store)
        ids, keys = wanted["image_id"].to_numpy(), wanted["key"].to_numpy()
        for n, model_input in zip(need, _model_inputs(config, emb, faces, crops, need, paths)):
            batcher.add(ids[n], keys[n], model_input)
            advance(1)
        batcher.close()


def _model_inputs(config, emb, faces: pd.DataFrame, crops, need: np.ndarray, paths: pd.Series) -> Iterator[np.ndarray]:
    if emb.needs_original:
        jobs = config.jobs or default_jobs()
        cols = list(faces.columns)
        tasks = (
            ChipTask(str(Path(config.dataset) / paths[faces["image_id"].iat[n]]), config.embedder, dict(zip(cols, faces.iloc[n].tolist())))
            for n in need
        )
        yield from ordered_map(chip_worker, tasks, jobs, window=jobs * WINDOW_PER_JOB, chunk=CHUNK)
        return
    for s in range(0, len(need), PART_ROWS):
        block = np.asarray(crops[need[s : s + PART_ROWS]])
        for crop in block:
            yield emb.prepare(None, None, crop)
