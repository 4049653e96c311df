"""The Ray engine: the per-image stages on a Ray cluster, through Ray Data.

The image list becomes a Ray Dataset; `map_batches` runs the same functions the local engine runs
(faces_worker, the embedder's prepare/embed_batch, the quality scorer's score) on the cluster's
workers, and the driver streams the results back and commits them as parts in the same workspace
stores, under the same keys. The collected tables, decide, the report and the output are therefore
those of a local run. Ray Data streams: only a bounded number of batches is in flight, and the
driver never holds more than one part.

Requirements on a real cluster: facesieve installed on every node (`pip install "facesieve[ray]"`)
and the dataset readable at the same path on every node (shared storage). The workspace is written
by the driver only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from facesieve.engines.work import FacesWork
from facesieve.errors import UsageError

PART_ROWS = 256  # rows per part the driver commits
BATCH = 32  # images per map_batches call (and per inference batch on a worker), at most --batch-size
# images per Ray task (one block): Ray Data spends about 0.16 s scheduling each task (measured on
# 2 cores, Ray 2.60), which at one 16-image batch a task left the cores idle a quarter of the time;
# a task of 128 images is 2-4 s of work. Fewer when the images would not give every CPU 4 tasks.
TASK_IMAGES = 128
TENSORS = ("crop", "vector")


def require_ray():
    """The ray module, or a usage error that says how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 - the Data library is a separate extra of ray
    except ImportError:
        raise UsageError('--engine ray needs Ray Data: pip install "facesieve[ray]"') from None
    return ray


def local_instance(address: str | None) -> bool:
    """True when this run starts its own Ray instance on this machine (no cluster named)."""
    return address is None and not os.environ.get("RAY_ADDRESS")


def connect(address: str | None, jobs: int | None = None) -> bool:
    """Join the cluster at `address` ("auto", "ray://host:10001", ...); without one, a running
    cluster named by RAY_ADDRESS, else a new local instance with `jobs` CPUs (default: all).
    True when this call connected (False: Ray was already initialised, by this run or its caller).

    The workers get the local engine's worker settings (parallel.worker_environment: one BLAS
    thread, malloc keeping image buffers), which must be in place before a worker loads numpy. A
    local instance inherits them from this process's environment while it starts (its raylet
    starts every worker, the ones it starts ahead included); a cluster gets them through the job's
    runtime_env, which on a local instance would leave those early workers idle and start others."""
    ray = require_ray()
    if ray.is_initialized():
        return False
    from facesieve.parallel import worker_environment

    kwargs: dict = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    env = worker_environment()
    if not local_instance(address):
        ray.init(address=address, runtime_env={"env_vars": env}, **kwargs)
        return True
    if jobs:
        kwargs["num_cpus"] = jobs
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        ray.init(address=address, **kwargs)
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return True


# ---------------------------------------------------------------- functions run on the workers


def faces_batch(batch: pd.DataFrame, config, embed: bool, score: bool) -> dict:
    """The local engine's worker task (engines.local.process_chunk) on one batch: faces, then one
    inference batch for the found faces, then their per-face quality. Vector rows are zeros and
    quality rows empty where no face was found; quality travels as one JSON object per row (the
    columns differ between methods: JSON keeps one schema, and floats exact)."""
    from facesieve.engines.local import FacesChunk, process_chunk
    from facesieve.stages import FaceTask

    tasks = tuple(FaceTask(str(i), str(k), str(p), config.detector, config.face_policy, config.aligned, True)
                  for i, k, p in zip(batch["image_id"], batch["key"], batch["path"]))
    n = len(tasks)
    res = process_chunk(FacesChunk(tasks, config.embedder if embed else "", (embed,) * n, config if score else None, (score,) * n))
    out = _columns(pd.DataFrame(res.rows))
    out["crop"] = res.crops
    if embed:
        vectors = np.zeros((n, res.vectors.shape[1]), np.float32)
        norms = np.zeros(n, np.float64)
        vectors[res.embedded], norms[res.embedded] = res.vectors, res.norms
        out["vector"], out["norm"] = vectors, norms
    if score:
        scores = [""] * n
        types = {c: res.scores[c].dtype.str for c in res.scores.columns if res.scores[c].dtype.kind in "biuf"}
        for i, rec in zip(res.scored, res.scores.to_dict("records")):
            scores[i] = json.dumps({"values": {k: _plain(v) for k, v in rec.items()}, "dtypes": types})
        out["quality_json"] = np.array(scores, dtype=object)
    return out


def hash_batch(batch: dict) -> dict:
    from facesieve.engines.local import readable_sha256

    return {"n": batch["n"], "sha256": np.array([readable_sha256(str(p)) for p in batch["path"]], dtype=object)}


# ---------------------------------------------------------------- the driver


def hash_files(config, paths: list[str], progress=None) -> list[str]:
    """sha256 of each file, hashed on the cluster's workers; with a Ray instance of this machine,
    on the local engine's threads (the same cores, without a Ray Data pass to schedule)."""
    if local_instance(config.ray_address):
        from facesieve.engines.local import hash_files as local_hash_files

        return local_hash_files(config, paths, progress)
    ray = require_ray()
    connect(config.ray_address, config.jobs)
    ray.data.DataContext.get_current().enable_progress_bars = False
    per_block = max(256, -(-len(paths) // 1000))
    blocks = [pd.DataFrame({"n": np.arange(s, min(s + per_block, len(paths))), "path": paths[s : s + per_block]})
              for s in range(0, len(paths), per_block)]
    ds = ray.data.from_pandas(blocks).map_batches(hash_batch, batch_size=256, batch_format="numpy", num_cpus=1)
    out = [""] * len(paths)
    for batch in ds.iter_batches(batch_size=1024, batch_format="numpy"):
        for n, h in zip(batch["n"], batch["sha256"]):
            out[int(n)] = str(h)
        if progress:
            progress(len(batch["n"]))
    return out


def task_images(n: int, batch: int, cpus: int) -> int:
    """Images per Ray task: TASK_IMAGES, fewer when `n` images would not give each CPU 4 tasks,
    more when there would be over ~1000 tasks; whole inference batches."""
    per = max(min(TASK_IMAGES, -(-n // (4 * max(1, cpus)))), -(-n // 1000), 1)
    return -(-per // batch) * batch


def compute_faces(config, work: FacesWork, reporter) -> None:
    """Faces, embeddings (work.embed) and per-face quality (work.quality) of every wanted image
    without a face yet, computed by Ray Data and committed by this process."""
    todo = work.missing()
    if not len(todo):
        with reporter.stage("faces", 0):
            return
    ray = require_ray()
    connected = connect(config.ray_address, config.jobs)
    try:
        _stream_faces(ray, config, work, todo, reporter)
    finally:
        # nothing after the faces pass uses Ray: an instance this run started would otherwise keep
        # its daemons, idle workers (models loaded) and Ray Data's actors through decide
        if connected:
            ray.shutdown()


def _stream_faces(ray, config, work: FacesWork, todo: np.ndarray, reporter) -> None:
    """The faces pass as one Ray Data pipeline, its results committed as they stream back."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # facesieve's own bar counts the committed images
    wanted = work.wanted.iloc[todo]
    items = pd.DataFrame({
        "image_id": wanted["image_id"].to_numpy(),
        "key": wanted["key"].to_numpy(),
        "path": [str(Path(work.dataset) / p) for p in wanted["path"]],
    })
    batch = min(config.batch_size, BATCH)
    per_block = task_images(len(items), batch, int(ray.cluster_resources().get("CPU", 1)))
    ds = ray.data.from_pandas([items.iloc[s : s + per_block] for s in range(0, len(items), per_block)])
    embed = work.embed is not None
    ds = ds.map_batches(faces_batch, batch_size=batch, batch_format="pandas", num_cpus=1,
                        fn_kwargs={"config": config, "embed": embed, "score": embed and work.quality is not None})
    with reporter.stage("faces", len(todo)) as advance:
        for batch in ds.iter_batches(batch_size=PART_ROWS, batch_format="numpy", prefetch_batches=2):
            commit(work, batch)
            advance(len(batch["image_id"]))


def commit(work: FacesWork, batch: dict) -> None:
    """One batch of results into the faces, embed and quality stores (the faces last: a crash
    in between leaves faces to recompute, never a face whose other stages look done)."""
    faces = _table({k: v for k, v in batch.items() if k not in TENSORS + ("norm", "quality_json")})
    ok = np.flatnonzero(faces["status"].to_numpy() == "ok")
    if work.embed is not None and "vector" in batch and len(ok):
        table = pd.DataFrame({"image_id": faces["image_id"].to_numpy()[ok],
                              "key": (faces["key"].iloc[ok] + work.embed.suffix).to_numpy(),
                              "norm": np.asarray(batch["norm"], np.float64)[ok]})
        work.embed.store.write_part(table, {"vectors": np.asarray(batch["vector"], np.float32)[ok]})
    if work.quality is not None and "quality_json" in batch and len(ok):
        records = [json.loads(batch["quality_json"][i]) for i in ok]
        scores = pd.DataFrame([r["values"] for r in records]).astype(records[0]["dtypes"])
        table = pd.DataFrame({"image_id": faces["image_id"].to_numpy()[ok], "key": (faces["key"].iloc[ok] + work.quality.suffix).to_numpy()})
        work.quality.store.write_part(pd.concat([table, scores], axis=1))
    work.store.write_part(faces, {"crops": np.asarray(batch["crop"], np.uint8)})


# ---------------------------------------------------------------- columns


def _columns(df: pd.DataFrame) -> dict:
    """A faces table as a dict of numpy columns (strings as object arrays)."""
    return {c: (df[c].astype(object).to_numpy() if df[c].dtype == object or pd.api.types.is_string_dtype(df[c]) else df[c].to_numpy())
            for c in df.columns}


def _table(columns: dict) -> pd.DataFrame:
    """The faces-table rows from numpy columns, with the dtypes faces_worker's rows give locally."""
    from facesieve.stages import FaceTask, empty_face_row

    template = empty_face_row(FaceTask("", "", "", "", "", False, False), "", "")
    data = {}
    for name in template:
        if name not in columns:
            continue
        col = np.asarray(columns[name])
        sample = template[name]
        if isinstance(sample, str):
            data[name] = [str(v) for v in col]
        elif isinstance(sample, bool):
            data[name] = col.astype(bool)
        elif isinstance(sample, int):
            data[name] = col.astype(np.int64)
        else:
            data[name] = col.astype(np.float64)
    extra = [c for c in columns if c not in template]
    for name in extra:
        data[name] = np.asarray(columns[name])
    return pd.DataFrame(data)


def _plain(v):
    """A JSON-ready Python value (numpy scalars to Python; NaN kept as NaN)."""
    if isinstance(v, np.generic):
        return v.item()
    return v
