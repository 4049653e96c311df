"""The local engine: every core of one machine, stages overlapped, memory bounded.

Work goes to a process pool in chunks of images. A worker decodes, detects and aligns each image
of its chunk, then embeds the chunk's faces as one inference batch (an embedder that cuts its own
input from the original image, dlib, gets it while the decoded image is at hand). Workers run at
different points of their chunks, so decoding, detection and inference overlap across the pool,
while the main process only commits finished results as parts. A bounded window of chunks is in
flight and tasks are generated lazily: nothing grows with the dataset but the list of image ids.

Every model call runs on one thread (parallel.one_thread): that is where the parallelism belongs
anyway, and OpenCV's results depend on its thread count, so a vector is the same whichever engine,
machine or --jobs computed it, and a resumed run reproduces an uninterrupted one exactly.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from facesieve import stages
from facesieve.digest import sha256_file
from facesieve.embed import embed_inputs
from facesieve.engines.work import FacesWork
from facesieve.parallel import default_jobs, one_thread, ordered_map
from facesieve.stages import ChipTask, FaceTask, detection_from_row
from facesieve.workspace import StageStore

PART_ROWS = 256  # images per committed part: the most work a crash can lose
WINDOW_PER_JOB = 3  # chunks in flight per worker: one running, the next ones queued


@dataclass(frozen=True)
class FacesChunk:
    """Images for one worker task: faces tasks; which of them to embed with `embedder`; and, with
    `quality` (the run's config), which to score with its per-face quality method."""

    tasks: tuple[FaceTask, ...]
    embedder: str = ""  # "" for faces only
    embed: tuple[bool, ...] = ()
    quality: object | None = None  # RunConfig
    score: tuple[bool, ...] = ()


@dataclass
class ChunkResult:
    rows: list[dict]
    crops: np.ndarray  # (n, 112, 112, 3) uint8
    embedded: np.ndarray  # positions (into rows) of the faces embedded
    norms: np.ndarray
    vectors: np.ndarray
    scored: np.ndarray  # positions (into rows) of the faces scored
    scores: pd.DataFrame  # one row per scored face


def process_chunk(chunk: FacesChunk) -> ChunkResult:
    """Faces of every image in the chunk, then one inference batch for the faces to embed, then
    their quality: the whole per-image work while the crops are in memory."""
    rows, crops, inputs, found = [], [], [], []
    want_embed = chunk.embed or (False,) * len(chunk.tasks)
    want_score = chunk.score or (False,) * len(chunk.tasks)
    with one_thread():
        emb = stages.embedder(chunk.embedder) if chunk.embedder and any(want_embed + want_score) else None
        for n, task in enumerate(chunk.tasks):
            row, crop, rgb = stages.faces_worker(task, with_image=True)
            rows.append(row)
            crops.append(crop)
            if emb is not None and (want_embed[n] or want_score[n]) and row["status"] == "ok":
                if emb.needs_original:  # the image the faces were found on, not decoded again
                    inputs.append(emb.prepare(rgb, detection_from_row(row), None))
                else:
                    inputs.append(emb.prepare(None, None, crop))
                found.append(n)
        norms, vectors = embed_inputs(emb, inputs) if inputs else (np.zeros(0), np.zeros((0, 128), np.float32))
        found_arr = np.array(found, np.int64)
        crops_arr = np.stack(crops)
        keep = np.array([want_embed[n] for n in found], bool)
        scored = found_arr[np.array([want_score[n] for n in found], bool)] if found else found_arr
        scores = pd.DataFrame()
        if chunk.quality is not None and len(scored):
            at = np.searchsorted(found_arr, scored)
            scores = score_faces(chunk.quality, pd.DataFrame([rows[n] for n in scored]), crops_arr[scored], vectors[at], norms[at])
    if not found:
        keep = np.zeros(0, bool)
    return ChunkResult(rows, crops_arr, found_arr[keep], norms[keep], vectors[keep], scored, scores)


_scorers: dict[str, object] = {}


def quality_scorer(config, scorer=None):
    """The run's per-face quality scorer, built and bound once per process (`scorer`: the one the
    caller built already for this config, so the main process does not build a second)."""
    from facesieve.quality.registry import make_quality

    key = repr(sorted(config.to_dict().items()))
    if key not in _scorers:
        scorer = scorer if scorer is not None else make_quality(config.quality)
        if hasattr(scorer, "bind"):
            scorer.bind(config)
        _scorers.clear()
        _scorers[key] = scorer
    return _scorers[key]


def score_faces(config, faces: pd.DataFrame, crops: np.ndarray, vectors: np.ndarray, norms: np.ndarray | None = None) -> pd.DataFrame:
    """The per-face quality method's columns for these faces (rows as in the faces table). `norms`:
    the embeddings' raw norms when the caller has them (the default quality uses them; without them
    it embeds the crops once more)."""
    from facesieve.quality.base import QualityInput

    scorer = quality_scorer(config)
    with one_thread():
        emb = stages.embedder(config.embedder) if scorer.uses_embedder else None
        data = QualityInput(crops=np.asarray(crops), faces=faces.reset_index(drop=True), embedder=emb, embeddings=np.asarray(vectors),
                            norms=None if norms is None else np.asarray(norms))
        return scorer.score(data).reset_index(drop=True)


@dataclass(frozen=True)
class QualityChunk:
    """Faces whose quality is missing (their rows, crops and unit vectors), for a worker."""

    config: object
    faces: pd.DataFrame
    crops: np.ndarray
    vectors: np.ndarray


def quality_chunk(chunk: QualityChunk) -> pd.DataFrame:
    return score_faces(chunk.config, chunk.faces, chunk.crops, chunk.vectors)


@dataclass(frozen=True)
class EmbedChunk:
    """Faces to embed on a worker: their aligned crops, or (dlib) the images to cut chips from."""

    embedder: str
    crops: np.ndarray | None = None
    chips: tuple[ChipTask, ...] = ()


def embed_chunk(chunk: EmbedChunk) -> tuple[np.ndarray, np.ndarray]:
    with one_thread():
        emb = stages.embedder(chunk.embedder)
        if chunk.chips:
            inputs = [stages.chip_worker(t) for t in chunk.chips]
        else:
            inputs = [emb.prepare(None, None, c) for c in chunk.crops]
        return embed_inputs(emb, inputs)


class PartWriter:
    """Rows and array rows gathered until `rows` of them, then committed as one part."""

    def __init__(self, store: StageStore, array_names: Iterable[str] = (), rows: int = PART_ROWS):
        self.store, self.limit = store, rows
        self.tables: list[pd.DataFrame] = []
        self.arrays: dict[str, list[np.ndarray]] = {n: [] for n in array_names}
        self.count = 0

    def add(self, table: pd.DataFrame, **arrays: np.ndarray) -> None:
        if not len(table):
            return
        self.tables.append(table)
        for name, value in arrays.items():
            self.arrays[name].append(value)
        self.count += len(table)
        if self.count >= self.limit:
            self.flush()

    def flush(self) -> None:
        if self.count:
            self.store.write_part(pd.concat(self.tables, ignore_index=True), {n: np.concatenate(v) for n, v in self.arrays.items()})
        self.tables, self.count = [], 0
        self.arrays = {n: [] for n in self.arrays}


def readable_sha256(path: str) -> str:
    """Hex sha256 of a file; "" when it cannot be read (the scan then records it as unreadable)."""
    try:
        return sha256_file(path)
    except OSError:
        return ""


def hash_files(config, paths: list[str], progress=None) -> list[str]:
    """sha256 of each file on a few threads (reading and hashing release the GIL), a bounded
    window of files at a time."""
    threads = max(2, min(8, 2 * (config.jobs or default_jobs())))
    out: list[str] = []
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for s in range(0, len(paths), 1024):
            block = list(pool.map(readable_sha256, paths[s : s + 1024]))
            out.extend(block)
            if progress:
                progress(len(block))
    return out


def part_rows(n: int) -> int:
    """Rows per committed part for a pass over n images: PART_ROWS, or fewer on a small pass so
    that even it commits its progress several times (a crash loses at most ~1/8 of it)."""
    return max(16, min(PART_ROWS, math.ceil(n / 8)))


def chunk_size(n: int, jobs: int, batch_size: int) -> int:
    """Images per task: a full inference batch, but small enough that every worker gets several
    tasks (a small run must not leave one worker idle while another does it all)."""
    return max(1, min(batch_size, math.ceil(n / (jobs * 4))))


def chunk_spans(n: int, jobs: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of each task's images: `size` at a time, then fewer as the end nears (at most
    a 2*jobs-th of what is left, at least 2), so that the workers run out of work together instead
    of one of them finishing a whole chunk alone while the others idle."""
    s = 0
    while s < n:
        step = min(size, max(2, math.ceil((n - s) / (2 * jobs))))
        yield s, min(n, s + step)
        s += step


def compute_faces(config, work: FacesWork, reporter) -> None:
    """Faces for every wanted image without one; with `work.embed` and `work.quality`, the new
    faces' embeddings and per-face quality too, in the same worker pass."""
    todo = work.missing()
    if not len(todo):
        with reporter.stage("faces", 0):
            return
    jobs = config.jobs or default_jobs()
    ids = work.wanted["image_id"].to_numpy()
    keys = work.wanted["key"].to_numpy()
    paths = work.wanted["path"].to_numpy()
    root = Path(work.dataset)
    no = np.zeros(len(todo), dtype=bool)
    embed_needed, score_needed = no, no
    if work.embed is not None:
        embed_needed = ~work.embed.store.done_mask(_keyed(ids[todo], keys[todo], work.embed.suffix))
        if work.quality is not None:
            score_needed = ~work.quality.store.done_mask(_keyed(ids[todo], keys[todo], work.quality.suffix))
    size = chunk_size(len(todo), jobs, config.batch_size)

    def chunks() -> Iterator[FacesChunk]:
        for s, e in chunk_spans(len(todo), jobs, size):
            sel = todo[s:e]
            tasks = tuple(
                FaceTask(ids[n], keys[n], str(root / paths[n]), config.detector, config.face_policy, config.aligned, True) for n in sel
            )
            embed = tuple(bool(b) for b in embed_needed[s:e])
            score = tuple(bool(b) for b in score_needed[s:e])
            yield FacesChunk(tasks, config.embedder if any(embed + score) else "", embed, config if any(score) else None, score)

    rows = part_rows(len(todo))
    faces = PartWriter(work.store, ["crops"], rows=np.inf)
    vectors = PartWriter(work.embed.store, ["vectors"], rows=np.inf) if work.embed is not None else None
    quality = PartWriter(work.quality.store, rows=np.inf) if work.quality is not None else None

    def commit() -> None:
        # a face's embedding and quality before the face: a face committed without them would be
        # left to the later stages; these without their face are simply found done on resume
        for w in (vectors, quality, faces):
            if w is not None:
                w.flush()

    with reporter.stage("faces", len(todo)) as advance:
        for res in ordered_map(process_chunk, chunks(), jobs, window=jobs * WINDOW_PER_JOB, chunk=1):
            table = pd.DataFrame(res.rows)
            if vectors is not None and len(res.embedded):
                vectors.add(_keyed(table["image_id"].to_numpy()[res.embedded], table["key"].to_numpy()[res.embedded],
                                   work.embed.suffix).assign(norm=res.norms), vectors=res.vectors)
            if quality is not None and len(res.scored):
                quality.add(pd.concat([_keyed(table["image_id"].to_numpy()[res.scored], table["key"].to_numpy()[res.scored],
                                              work.quality.suffix), res.scores], axis=1))
            faces.add(table, crops=res.crops)
            if faces.count >= rows:
                commit()
            advance(len(table))
        commit()


def _keyed(ids: np.ndarray, keys: np.ndarray, suffix: str) -> pd.DataFrame:
    """(image_id, key + suffix) rows: a later stage's keys for these faces."""
    return pd.DataFrame({"image_id": ids, "key": pd.Series(keys, dtype=object).to_numpy() + suffix})


def compute_quality(config, faces: pd.DataFrame, crops, vectors, wanted: pd.DataFrame, need: np.ndarray, store: StageStore,
                    progress=None) -> None:
    """Per-face quality for the faces at positions `need` (a new quality method on faces already
    found), on the pool. `faces`, `crops`, `vectors`: the found faces' rows, crops and unit
    vectors (same order); `wanted`: their quality keys."""
    if not len(need):
        return
    jobs = config.jobs or default_jobs()
    size = chunk_size(len(need), jobs, config.batch_size)
    starts = range(0, len(need), size)
    chunks = (QualityChunk(config, faces.iloc[need[s : s + size]].reset_index(drop=True), np.asarray(crops[need[s : s + size]]),
                           np.asarray(vectors[need[s : s + size]])) for s in starts)
    out = PartWriter(store, rows=part_rows(len(need)))
    for scores, s in zip(ordered_map(quality_chunk, chunks, jobs, window=jobs * WINDOW_PER_JOB, chunk=1), starts):
        sel = need[s : s + size]
        out.add(pd.concat([wanted.iloc[sel].reset_index(drop=True), scores], axis=1))
        if progress:
            progress(len(sel))
    out.flush()


def compute_embeddings(
    config,
    faces: pd.DataFrame,
    crops,
    wanted: pd.DataFrame,
    store: StageStore,
    paths: pd.Series,
    reporter,
) -> None:
    """Embeddings for found faces that have none yet (a new embedder on faces already found).

    `faces`: the faces-table rows of the found faces, `crops` their aligned crops (same order,
    any array-like), `wanted` their embed keys, `paths` each image's path in the dataset by image
    id (for embedders that cut their own chip from the original image).
    """
    need = np.flatnonzero(~store.done_mask(wanted))
    with reporter.stage("embed", len(need)) as advance:
        if not len(need):
            return
        jobs = config.jobs or default_jobs()
        size = chunk_size(len(need), jobs, config.batch_size)
        needs_original = stages.embedder(config.embedder).needs_original
        cols = list(faces.columns)

        def chunks() -> Iterator[EmbedChunk]:
            for s in range(0, len(need), size):
                sel = need[s : s + size]
                if needs_original:
                    chips = tuple(
                        ChipTask(str(Path(config.dataset) / paths[faces["image_id"].iat[n]]), config.embedder,
                                 dict(zip(cols, faces.iloc[n].tolist())))
                        for n in sel
                    )
                    yield EmbedChunk(config.embedder, chips=chips)
                else:
                    yield EmbedChunk(config.embedder, crops=np.asarray(crops[sel]))

        out = PartWriter(store, ["vectors"], part_rows(len(need)))
        ids, keys = wanted["image_id"].to_numpy(), wanted["key"].to_numpy()
        starts = iter(range(0, len(need), size))
        for (norms, vecs), s in zip(ordered_map(embed_chunk, chunks(), jobs, window=jobs * WINDOW_PER_JOB, chunk=1), starts):
            sel = need[s : s + size]
            out.add(pd.DataFrame({"image_id": ids[sel], "key": keys[sel], "norm": norms}), vectors=vecs)
            advance(len(sel))
        out.flush()
