"""Per-image work the faces pass saves without changing a result: one reduction for the three image
hashes, the decoded image reused for dlib's chip, tail chunks that shrink, one thread per worker."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from facesieve.engines.local import chunk_spans
from facesieve.imaging import dhash, image_hashes, load_rgb, phash
from facesieve.parallel import ordered_map
from facesieve.stages import FaceTask, faces_worker


def _separate(a: np.ndarray) -> tuple[int, int, int]:
    return phash(a), dhash(a), phash(np.ascontiguousarray(a[:, ::-1]))


def test_image_hashes_equal_the_separate_calls_on_real_images(shared_data):
    files = []
    for name in ("deepface13", "orl_att40", "yaleB_cropped10", "seed_vggface/dataset", "essex_faces94_19"):
        ident = sorted(p for p in (shared_data / name).iterdir() if p.is_dir())[0]
        files += sorted(f for f in ident.iterdir() if f.is_file())[:4]
    for f in files:
        rgb = load_rgb(f)
        assert image_hashes(rgb) == _separate(rgb), f


@pytest.mark.parametrize("shape", [(300, 301, 3), (513, 777, 3), (257, 258), (1000, 259, 1), (90, 700, 3), (384, 385, 3)])
def test_image_hashes_equal_the_separate_calls_when_the_cut_is_uneven(shape):
    # widths where the columns the reduction drops differ between the image and its mirror
    rng = np.random.default_rng(sum(shape))
    a = rng.integers(0, 256, shape, np.uint8)
    a = (a // 2 + np.roll(a, 3, axis=1) // 2).astype(np.uint8)  # some structure, not pure noise
    assert image_hashes(a) == _separate(a)


def test_chunk_spans_cover_every_image_once_and_shrink_at_the_end():
    for n, jobs, size in ((200, 2, 16), (600, 2, 16), (7, 4, 16), (1, 2, 16), (50, 8, 1)):
        spans = list(chunk_spans(n, jobs, size))
        assert [s for s, _ in spans] == [0] + [e for _, e in spans[:-1]] and spans[-1][1] == n
        sizes = [e - s for s, e in spans]
        assert max(sizes) <= size and sizes == sorted(sizes, reverse=True)
    sizes = [e - s for s, e in chunk_spans(200, 2, 16)]
    assert sizes[0] == 16 and sizes[-1] <= 2


def test_faces_worker_hands_back_the_image_it_decoded(shared_data, tmp_path):
    f = sorted((shared_data / "orl_att40" / "s01").iterdir())[0]
    task = FaceTask("x", "k", str(f), "yunet", "central", False, True)
    row, crop, rgb = faces_worker(task, with_image=True)
    assert np.array_equal(rgb, load_rgb(f)) and row["status"] == "ok"
    row2, crop2 = faces_worker(task)
    assert row2 == row and np.array_equal(crop2, crop)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    row, _, rgb = faces_worker(FaceTask("b", "k", str(bad), "yunet", "central", False, True), with_image=True)
    assert row["status"] == "error" and rgb is None


def _worker_threads(_: int) -> tuple[str | None, int, int]:
    a = np.random.default_rng(0).random((300, 300))
    a @ a  # a BLAS call large enough for OpenBLAS to use its threads
    return os.environ.get("OPENBLAS_NUM_THREADS"), len(os.listdir("/proc/self/task")), threading.active_count()


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="needs Linux /proc")
def test_pool_workers_run_blas_on_one_thread():
    for env, threads, python_threads in ordered_map(_worker_threads, range(2), jobs=2, chunk=1):
        # every OS thread of the worker is a Python one (its main thread and the parent watchdog):
        # BLAS started none of its own
        assert env == "1" and threads == python_threads <= 2
