"""The local engine: same results whatever the jobs, batching or overlap; bounded windows; the
workspace's on-demand rows and crash-safe compaction."""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facesieve.config import RunConfig
from facesieve.parallel import ordered_map
from facesieve.pipeline import run
from facesieve.preparation import stage_embed, stage_faces, stage_quality, stage_scan
from facesieve.progress import Reporter
from facesieve.workspace import NpyRows, Workspace


@pytest.fixture(scope="module")
def small_set(shared_data, tmp_path_factory) -> Path:
    """24 real images: 3 ORL identities and 3 Essex ones, 4 each."""
    root = tmp_path_factory.mktemp("engine") / "data"
    for name in ("orl_att40", "essex_faces94_19"):
        for ident in sorted(p for p in (shared_data / name).iterdir() if p.is_dir())[:3]:
            (root / ident.name).mkdir(parents=True)
            for f in sorted(ident.iterdir())[:4]:
                shutil.copy2(f, root / ident.name / f.name)
    return root


def stages(config: RunConfig):
    ws = Workspace(config.workspace)
    ws.create({})
    rep = Reporter(quiet=True)
    files = stage_scan(config, ws, rep)
    faces, crops = stage_faces(config, ws, files, rep)
    table, vectors = stage_embed(config, ws, files, faces, crops, rep)
    quality = stage_quality(config, ws, faces, crops, vectors, rep, files)
    return ws, files, faces, np.asarray(crops), table, np.asarray(vectors), rep, quality


@pytest.fixture(scope="module")
def two_jobs(small_set, tmp_path_factory):
    out = tmp_path_factory.mktemp("two") / "out"
    return stages(RunConfig(small_set, out, jobs=2, batch_size=5))


def test_jobs_batching_and_overlap_do_not_change_results(small_set, two_jobs, tmp_path):
    _, _, faces2, crops2, table2, vec2, rep, q2 = two_jobs
    assert len(faces2) == 24 and (faces2["status"] == "ok").sum() >= 20
    # embedded and scored in the faces pass
    assert rep.counts["faces"] == 24 and rep.counts.get("embed", 0) == 0 and rep.counts.get("quality", 0) == 0
    # one process, other batches, and the stages one after the other: bit-identical
    _, _, faces1, crops1, table1, vec1, rep1, q1 = stages(RunConfig(small_set, tmp_path / "one", jobs=1, batch_size=7, overlap=False))
    assert rep1.counts["embed"] == rep1.counts["quality"] == (faces1["status"] == "ok").sum()
    pd.testing.assert_frame_equal(q1, q2, check_exact=True)
    pd.testing.assert_frame_equal(faces1, faces2, check_exact=True)
    np.testing.assert_array_equal(crops1, crops2)
    pd.testing.assert_frame_equal(table1, table2, check_exact=True)
    np.testing.assert_array_equal(vec1, vec2)
    assert vec2.dtype == np.float32 and np.allclose(np.linalg.norm(vec2, axis=1), 1, atol=1e-5)


def test_rerun_computes_nothing_and_a_new_embedder_only_embeds(two_jobs, small_set):
    ws, files, faces, crops, table, vec, _, _ = two_jobs
    config = RunConfig(small_set, ws.root.parent, jobs=2, batch_size=5)
    _, _, faces_b, _, table_b, vec_b, rep, _ = stages(config)
    assert rep.counts["faces"] == 0 and rep.counts["embed"] == 0
    np.testing.assert_array_equal(vec_b, vec)
    # the embed stage's own pass (faces found, vectors missing) reproduces the overlapped one
    shutil.rmtree(next(ws.root.glob("embed-*")))
    _, _, _, _, table_c, vec_c, rep, _ = stages(config)
    assert rep.counts["faces"] == 0 and rep.counts["embed"] == len(table)
    np.testing.assert_array_equal(vec_c, vec)


def test_crops_are_read_on_demand(two_jobs, tmp_path):
    ws, _, faces, crops, *_ = two_jobs
    store = ws.stage(next(p.name for p in ws.root.glob("faces-*")))
    wanted = faces[["image_id", "key"]]
    _, arrays = store.collect(wanted, ["crops"], lazy=["crops"])
    rows = arrays["crops"]
    assert isinstance(rows, NpyRows) and rows.shape == crops.shape and len(rows) == len(crops)
    np.testing.assert_array_equal(rows[3], crops[3])
    np.testing.assert_array_equal(rows[-1], crops[-1])
    np.testing.assert_array_equal(rows[2:9:3], crops[2:9:3])
    idx = np.array([5, 1, 5, 0])
    np.testing.assert_array_equal(rows[idx], crops[idx])
    mask = np.arange(len(crops)) % 3 == 0
    np.testing.assert_array_equal(rows[mask], crops[mask])
    np.testing.assert_array_equal(rows[idx, 10:20, :, 1], crops[idx, 10:20, :, 1])
    np.testing.assert_array_equal(np.asarray(rows), crops)
    with pytest.raises(IndexError):
        rows[len(crops)]
    # it travels to a worker by name, and keeps reading its file once compaction unlinked it
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(rows))[idx], crops[idx])
    copy = tmp_path / "crops.npy"
    shutil.copyfile(rows.path, copy)
    held = NpyRows(copy)
    os.unlink(copy)
    np.testing.assert_array_equal(held[idx], crops[idx])


def test_compaction_drops_orphan_arrays_and_keeps_first_copy(tmp_path):
    store = Workspace(tmp_path / "ws").stage("s")
    a = np.arange(12, dtype=np.float32).reshape(6, 2)
    store.write_part(pd.DataFrame({"image_id": list("abc"), "key": ["k"] * 3}), {"v": a[:3]})
    store.write_part(pd.DataFrame({"image_id": list("cdef"), "key": ["k"] * 4}), {"v": a[2:]})
    # a killed run wrote a part's array but never its table: not a part, and removed on compaction
    np.save(store.root / "part-deadbeef.v.npy", np.full((2, 2), 99, np.float32))
    wanted = pd.DataFrame({"image_id": list("fedcba"), "key": ["k"] * 6})
    assert store.done_mask(wanted).all()
    assert not store.done_mask(pd.DataFrame({"image_id": ["a", "z"], "key": ["other", "k"]})).any()
    table, arrays = store.collect(wanted, ["v"])
    np.testing.assert_array_equal(arrays["v"], a[::-1])
    assert not (store.root / "part-deadbeef.v.npy").exists()
    assert len(list(store.root.glob("part-*.parquet"))) == 1 and len(list(store.root.glob("part-*.npy"))) == 1


def _pulled(counter: list[int], n: int):
    for i in range(n):
        counter[0] += 1
        yield i


def _square(x: int) -> int:
    return x * x


def test_ordered_map_keeps_order_and_a_bounded_window():
    pulled = [0]
    results = ordered_map(_square, _pulled(pulled, 1000), jobs=2, window=3, chunk=4, buffer=5)
    first = next(results)
    assert first == 0 and pulled[0] <= 5 * 4 + 1  # never the whole task list in memory
    rest = list(results)
    assert [first, *rest] == [i * i for i in range(1000)]


def _head_waits_for_a_later_item(arg: tuple[int, str]) -> bool:
    """Item 0 waits (up to 20 s) for a file that only item 5 writes."""
    i, folder = arg
    marker = Path(folder) / "marker"
    if i == 5:
        marker.touch()
    if i == 0:
        deadline = time.monotonic() + 20
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return marker.exists()
    return True


def test_ordered_map_keeps_workers_busy_behind_a_slow_head(tmp_path):
    """A slow first chunk (one huge photo) must not stop later chunks from being submitted: with a
    window of 2, item 5 only runs while item 0 is still running if finished chunks do not hold
    the window (the engine's workers idled seconds at a time behind such a chunk)."""
    got = list(ordered_map(_head_waits_for_a_later_item, [(i, str(tmp_path)) for i in range(8)], jobs=2, window=2, chunk=1))
    assert got == [True] * 8


def _worker_settings(_: int) -> dict[str, str]:
    import numpy  # noqa: F401 - loaded in the worker, as the engine's functions load it

    from facesieve.parallel import THREAD_VARIABLES

    return {v: os.environ.get(v, "") for v in THREAD_VARIABLES}


def test_pool_workers_run_one_blas_thread():
    """worker_env (the fork server's first import) gives every worker one BLAS/OpenMP thread
    before numpy loads; the values come from parallel.worker_environment, which Ray's workers get
    too."""
    from facesieve.parallel import worker_environment

    want = {k: v for k, v in worker_environment().items() if not k.startswith("MALLOC_")}
    got = list(ordered_map(_worker_settings, range(4), jobs=2, chunk=1))
    assert got == [want] * 4 and set(want.values()) == {"1"}


def test_engine_hashes_match_hashlib(small_set):
    from facesieve.engines import hash_files

    paths = [str(p) for p in sorted(small_set.rglob("*.*"))][:10]
    got = hash_files(RunConfig(small_set, small_set.parent / "o", jobs=2), paths)
    assert got == [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths]


def test_bad_engine_and_jobs_are_usage_errors(small_set, tmp_path):
    from facesieve.errors import UsageError

    with pytest.raises(UsageError, match="unknown engine"):
        run(RunConfig(small_set, tmp_path / "o", engine="spark"))
    with pytest.raises(UsageError, match="--jobs"):
        run(RunConfig(small_set, tmp_path / "o", jobs=0))
