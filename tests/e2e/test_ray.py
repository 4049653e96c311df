"""The Ray engine on a local Ray instance started here: the same workspace tables and the same
manifest as the local engine."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tests.requires import require

from facesieve.config import RunConfig
from facesieve.pipeline import run

ray = require("ray")  # a skip without Ray; a failure under CI's FACESIEVE_REQUIRE_RAY=1

pytestmark = pytest.mark.heavy


@pytest.fixture(scope="module")
def small_set(shared_data, tmp_path_factory) -> Path:
    """30 real images (ORL crops, Essex frames, uncropped web photos) and one file that is not an image."""
    root = tmp_path_factory.mktemp("ray") / "data"
    for name, ids, per in (("orl_att40", 2, 6), ("essex_faces94_19", 2, 6), ("deepface13", 3, 4)):
        for ident in sorted(p for p in (shared_data / name).iterdir() if p.is_dir())[:ids]:
            (root / ident.name).mkdir(parents=True)
            for f in sorted(ident.iterdir())[:per]:
                shutil.copy2(f, root / ident.name / f.name)
    (next(p for p in root.iterdir() if p.is_dir()) / "broken.jpg").write_bytes(b"not a jpeg")
    return root


def tables(out: Path) -> dict[str, pd.DataFrame]:
    ws = out / ".facesieve"
    found = {}
    for stage in ("faces", "embed", "quality"):
        (folder,) = ws.glob(f"{stage}-*")
        (part,) = folder.glob("part-*.parquet")
        found[stage] = pd.read_parquet(part)
        for arr in folder.glob(f"{part.stem}.*.npy"):
            found[f"{stage}:{arr.name.split('.')[1]}"] = np.load(arr)
    return found


@pytest.fixture
def driver_embeddings(monkeypatch) -> list[int]:
    """Counts the faces this process (the driver) feeds to the embedder, by model call; Ray's
    workers are processes of their own and do not count here."""
    from facesieve import stages

    calls: list[int] = []
    cls = type(stages.embedder("sface"))
    original = cls.embed_batch

    def counted(self, batch, *a, **k):
        calls.append(len(batch))
        return original(self, batch, *a, **k)

    monkeypatch.setattr(cls, "embed_batch", counted)
    return calls


def test_ray_engine_matches_local(small_set, tmp_path, driver_embeddings):
    # --jobs 1: the local engine embeds in this process, so the counter sees its model calls
    local = run(RunConfig(small_set, tmp_path / "local", keep=2, jobs=1, report=False))
    n_local = sum(driver_embeddings)
    # every found face embedded at least once (the counter sees this process's model calls)
    assert n_local >= local.summary["faces"] > 0
    driver_embeddings.clear()
    assert not ray.is_initialized()
    remote = run(RunConfig(small_set, tmp_path / "ray", keep=2, engine="ray", jobs=2, report=False))
    assert remote.summary["stage_seconds"]["faces"] > 0 and remote.summary["faces"] >= 25
    # the run started its own Ray instance and shut it down after the faces pass
    assert not ray.is_initialized()
    # the faces, embed and quality parts came from Ray: the driver made no model call at all
    assert driver_embeddings == []
    pd.testing.assert_frame_equal(local.manifest, remote.manifest, check_exact=True)
    assert (tmp_path / "local" / "manifest.csv").read_bytes() == (tmp_path / "ray" / "manifest.csv").read_bytes()
    a, b = tables(tmp_path / "local"), tables(tmp_path / "ray")
    assert sorted(a) == sorted(b)
    for name in a:
        if isinstance(a[name], pd.DataFrame):
            pd.testing.assert_frame_equal(a[name], b[name], obj=name, check_exact=True)
        else:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    # a re-run with the Ray engine computes nothing
    again = run(RunConfig(small_set, tmp_path / "ray", keep=2, engine="ray", report=False))
    pd.testing.assert_frame_equal(again.manifest, remote.manifest)
    assert driver_embeddings == []


def test_connect_gives_workers_the_local_engine_settings(monkeypatch):
    """A Ray instance the run starts inherits the local engine's worker settings (one BLAS thread,
    malloc keeping image buffers) from the environment it starts in, and --jobs CPUs; this
    process's environment is restored after. A named cluster gets the settings through the job's
    runtime_env, and no CPU count."""
    import os

    from facesieve.engines import ray_engine
    from facesieve.parallel import worker_environment

    calls = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda address=None, **kw: calls.append((address, kw, dict(os.environ))))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "7")
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert ray_engine.connect(None, 3) and ray_engine.connect("ray://head:10001", 3)
    env = worker_environment()
    assert env["OPENBLAS_NUM_THREADS"] == "1" and env["MALLOC_MMAP_THRESHOLD_"] == str(64 << 20)
    (local_addr, local, local_env), (cluster_addr, cluster, _) = calls
    assert local_addr is None and local["num_cpus"] == 3 and "runtime_env" not in local
    assert all(local_env[k] == v for k, v in env.items())
    assert os.environ["OPENBLAS_NUM_THREADS"] == "7" and "MALLOC_MMAP_THRESHOLD_" not in os.environ
    assert cluster_addr == "ray://head:10001" and "num_cpus" not in cluster and cluster["runtime_env"] == {"env_vars": env}


def test_only_an_instance_the_run_started_is_shut_down(monkeypatch):
    """Ray started by the faces pass stops when the pass ends, an error included (its daemons and
    idle workers would otherwise share the cores with decide); one the caller started stays."""
    from types import SimpleNamespace

    from facesieve.engines import ray_engine

    events = []
    config, work = SimpleNamespace(ray_address=None, jobs=2), SimpleNamespace(missing=lambda: np.arange(3))
    monkeypatch.setattr(ray, "init", lambda address=None, **kw: events.append("init"))
    monkeypatch.setattr(ray, "shutdown", lambda: events.append("shutdown"))

    def broken(*args):
        events.append("faces")
        raise RuntimeError("a worker died")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray_engine, "_stream_faces", broken)
    with pytest.raises(RuntimeError, match="worker died"):
        ray_engine.compute_faces(config, work, None)
    assert events == ["init", "faces", "shutdown"]
    events.clear()
    monkeypatch.setattr(ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray_engine, "_stream_faces", lambda *args: events.append("faces"))
    ray_engine.compute_faces(config, work, None)
    assert events == ["faces"]
