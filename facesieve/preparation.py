"""The stages every command starts with: validate -> workspace -> scan -> faces -> embed -> quality.

`prepare(config)` runs them over one workspace and returns what they found (`Prepared`);
`Prepared.frame()` is the per-file table the decisions read. `facesieve run` (pipeline.run),
`facesieve quality` (quality/scoring.py), `facesieve evaluate` (evaluate/run.py), `facesieve train`
(train/data.py) and the serve app all start here, so no other module sequences these stages.

Each per-image stage caches its results by image and by the settings it depends on, so a re-run
(or a run resumed after a crash) only computes what is new. The models are parsed, their weights
verified and the quality scorer built once (`validate` -> `Keys`); every cache key comes from there.

(Not `facesieve/prepare.py`: `facesieve.prepare` is the public function in facesieve/api.py, and a
submodule of that name would replace it on the package as soon as it was imported.)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np
import pandas as pd

from facesieve import __version__
from facesieve.config import DETECTORS, EMBEDDERS, ENGINES, FACE_POLICIES, METRICS, RunConfig
from facesieve.engines import compute_faces, hash_files
from facesieve.engines.work import FacesWork, QualityTarget, Target
from facesieve.errors import UsageError
from facesieve.models.zoo import check_choice, check_spec, model_identity
from facesieve.progress import Reporter
from facesieve.stages import CROP, FaceTask, empty_face_row
from facesieve.workspace import Workspace


# ---------------------------------------------------------------- the run's models, checked once


@dataclass(frozen=True)
class Keys:
    """The run's cache keys and quality scorer, from its model strings parsed once.

    faces: the faces stage's key (detector identity, face policy, alignment); embedder: the
    embedder's part of a key; method/scorer: the quality method and its scorer, built once."""

    faces: str
    embedder: str
    method: str
    scorer: object

    @property
    def faces_stage(self) -> str:
        """The workspace stage that holds the faces table and the aligned crops."""
        return stage_name("faces", self.faces)

    def embed_target(self, ws: Workspace):
        """The embed stage's store and key suffix (the faces key + the embedder)."""
        return Target(ws.stage(stage_name("embed", self.faces + "|" + self.embedder)), "|" + self.embedder)

    def quality_key(self) -> str:
        """The quality method's part of a key: the method, plus the embedder when it scores with it."""
        return self.scorer.key + (f"|{self.embedder}" if self.scorer.uses_embedder else "")

    def quality_store(self, ws: Workspace, qkey: str):
        return ws.stage(stage_name("quality", self.faces + "|" + qkey))

    def quality_target(self, ws: Workspace):
        """The quality stage's store and key suffix, as stage_quality keys them (for engines that
        score quality in their own pass); None for dataset-level methods, which see all faces at once."""
        if hasattr(self.scorer, "fit"):
            return None
        qkey = self.quality_key()
        return QualityTarget(self.quality_store(ws, qkey), "|" + qkey, self.method)

    def with_quality(self, method: str) -> Keys:
        """The same models with another quality method (its scorer built now: an unknown name is a UsageError)."""
        return replace(self, method=method, scorer=_scorer(method))


def validate(config: RunConfig) -> Keys:
    """Refuse a bad config (exit 2) before any work; the models' weights are found and verified now."""
    det = check_spec(check_choice(config.detector, DETECTORS, "detector"), "detect")
    emb = check_spec(check_choice(config.embedder, EMBEDDERS, "embedder"), "embed")
    detector, embedder = model_identity(det, "detect"), model_identity(emb, "embed")  # weights found and verified
    if config.metric not in METRICS:
        raise UsageError(f"unknown metric {config.metric!r}; choose from {', '.join(METRICS)}")
    if config.face_policy not in FACE_POLICIES:
        raise UsageError(f"unknown face policy {config.face_policy!r}; choose from {', '.join(FACE_POLICIES)}")
    if config.keep is not None and config.keep < 1:
        raise UsageError("--keep must be at least 1")
    if config.engine not in ENGINES:
        raise UsageError(f"unknown engine {config.engine!r}; choose from {', '.join(ENGINES)}")
    if config.jobs is not None and config.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    return Keys(_faces_key(detector, config), embedder, config.quality, _scorer(config.quality))


def _scorer(method: str):
    from facesieve.quality.registry import make_quality

    try:
        return make_quality(method)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _faces_key(detector: str, config: RunConfig) -> str:
    return f"{detector}|{config.face_policy}|aligned={config.aligned}|fallback=1|v3"


def faces_key(config: RunConfig) -> str:
    """The faces stage's key of a config (for callers that hold no `Keys`)."""
    return _faces_key(model_identity(config.detector, "detect"), config)


def _keys(config: RunConfig, keys: Keys | None) -> Keys:
    return keys if keys is not None else validate(config)


# ---------------------------------------------------------------- workspace and scan


def open_workspace(config: RunConfig, rep: Reporter) -> Workspace:
    """The run's workspace, created if new and stamped with the dataset; a workspace made for
    another dataset is reused (cached stages are keyed by image bytes), with a warning."""
    ws = Workspace(config.workspace)
    dataset = str(config.dataset.resolve())
    marker = ws.read_json("facesieve-workspace.json") if Workspace.is_workspace(config.workspace) else None
    if marker and marker.get("dataset") and marker["dataset"] != dataset:
        rep.warn(f"workspace {config.workspace} was made for {marker['dataset']}; its cached faces are reused only "
                 "where the image bytes match")
    ws.create({"version": __version__, "dataset": dataset})
    return ws


def stage_scan(config: RunConfig, ws: Workspace, rep: Reporter) -> pd.DataFrame:
    """List every file; reuse the previous scan's hashes for files whose size and mtime are unchanged."""
    from facesieve.dataset import scan, skipped_table

    skipped: list = []
    files = scan(config.dataset, layout=config.layout, hash_files=False, skipped=skipped)
    ws.write_table("skipped.parquet", skipped_table(skipped))  # paths with no row: OUT/skipped.csv
    previous = ws.read_table("scan.parquet")
    sha = pd.Series("", index=files.index, dtype=object)
    if previous is not None:
        cols = ["path", "size", "mtime_ns"]
        known = files[cols].merge(previous[cols + ["sha256"]].drop_duplicates(cols), on=cols, how="left")["sha256"]
        sha[:] = known.fillna("").to_numpy()
    # only files that are images (or meant to be) are hashed, as the scan itself does
    readable = (files["status"].to_numpy() != "skipped") & (files["reason"].to_numpy() != "unreadable")
    todo = np.flatnonzero((sha.to_numpy() == "") & (files["size"].to_numpy() > 0) & readable)
    with rep.stage("scan", len(files)) as advance:
        advance(len(files) - len(todo))
        paths = [str(config.dataset / p) for p in files["path"].to_numpy()[todo]]
        sha.iloc[todo] = hash_files(config, paths, advance)
    # a file that cannot be read (no permission, an I/O error) is that file's row, not the run's end
    failed = todo[sha.iloc[todo].to_numpy() == ""]
    if len(failed):
        files.loc[files.index[failed], ["status", "reason"]] = ["error", "unreadable"]
    files["sha256"] = sha.astype(str).to_numpy()
    ws.write_table("scan.parquet", files)
    return files


# ---------------------------------------------------------------- per-image stages


def stage_faces(config: RunConfig, ws: Workspace, files: pd.DataFrame, rep: Reporter,
                keys: Keys | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """Decode, detect and align every readable image; one table row and one 112x112 crop each.

    The engine (config.engine) embeds the new faces in the same pass (config.overlap), and the
    Ray engine scores their quality too, so the later stages only collect what it stored.
    The crops come back as rows read on demand (workspace.NpyRows), not a memory map.
    """
    keys = _keys(config, keys)
    todo = files[files["status"] == "ok"]
    wanted = pd.DataFrame({"image_id": todo["image_id"].to_numpy(), "key": (todo["sha256"] + "|" + keys.faces).to_numpy(),
                           "path": todo["path"].to_numpy()})
    store = ws.stage(keys.faces_stage)
    overlap = config.overlap or config.engine != "local"
    quality = keys.quality_target(ws) if overlap else None
    if quality is not None:  # faces this process scores in the same pass use the run's scorer
        from facesieve.engines.local import quality_scorer

        quality_scorer(config, keys.scorer)
    work = FacesWork(config.dataset, wanted, store, embed=keys.embed_target(ws) if overlap else None, quality=quality)
    compute_faces(config, work, rep)
    table, arrays = store.collect(wanted[["image_id", "key"]], ["crops"], {"crops": ((CROP, CROP, 3), np.uint8)}, lazy=["crops"])
    if table.empty:  # no file reached detection: the later stages still need the table's columns
        table = empty_faces_table()
    return table, arrays["crops"]


def empty_faces_table() -> pd.DataFrame:
    """A faces table with no rows and every column a worker's row has."""
    return pd.DataFrame(columns=list(empty_face_row(FaceTask("", "", "", "", "", False, True), "ok", "")))


def stage_embed(
    config: RunConfig, ws: Workspace, files: pd.DataFrame, faces: pd.DataFrame, crops: np.ndarray, rep: Reporter,
    keys: Keys | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Embed every found face not embedded yet, in batches; store unit vectors and the raw norm."""
    from facesieve.engines.local import compute_embeddings

    ok = np.flatnonzero(faces["status"].to_numpy() == "ok")
    sub = faces.iloc[ok].reset_index(drop=True)
    target = _keys(config, keys).embed_target(ws)
    wanted = pd.DataFrame({"image_id": sub["image_id"].to_numpy(), "key": (sub["key"] + target.suffix).to_numpy()})
    store = target.store
    compute_embeddings(config, sub, Rows(crops, ok), wanted, store, files.set_index("image_id")["path"], rep)
    dim = 128  # both embedders' size; used only when no face was found at all
    table, arrays = store.collect(wanted, ["vectors"], {"vectors": ((dim,), np.float32)})
    if "norm" not in table:  # no face at all
        table["norm"] = pd.Series(dtype=float)
    return table, arrays["vectors"]


def stage_quality(
    config: RunConfig, ws: Workspace, faces: pd.DataFrame, crops: np.ndarray, vectors: np.ndarray, rep: Reporter,
    files: pd.DataFrame | None = None, keys: Keys | None = None,
) -> pd.DataFrame:
    """Score every found face with the chosen method; rows aligned with the found faces.

    Dataset-level methods (with `fit`: SDD-FIQA, ERS, rank averages) see all faces at once, with
    their `path` and `identity` from `files`, and are keyed by the set of faces they saw.
    """
    keys = _keys(config, keys)
    scorer = keys.scorer
    if hasattr(scorer, "bind"):
        scorer.bind(config)  # methods that need the run's settings (e.g. to embed example images)
    ok = np.flatnonzero(faces["status"].to_numpy() == "ok")
    sub = faces.iloc[ok].reset_index(drop=True)
    qkey = keys.quality_key()
    if hasattr(scorer, "fit"):
        if files is not None:
            sub = sub.join(files.set_index("image_id")[["path", "identity"]], on="image_id")
        seen = sub[["image_id", "identity"]] if "identity" in sub else sub[["image_id"]]
        qkey += "|set=" + hashlib.sha1(pd.util.hash_pandas_object(seen, index=False).to_numpy().tobytes()).hexdigest()[:12]
    wanted = pd.DataFrame({"image_id": sub["image_id"], "key": sub["key"] + "|" + qkey})
    store = keys.quality_store(ws, qkey)
    done = store.done_keys()
    need = [n for n, (i, k) in enumerate(zip(wanted["image_id"], wanted["key"])) if (i, k) not in done]
    if hasattr(scorer, "fit"):
        # dataset-level methods (e.g. SDD-FIQA) see all faces at once
        need = list(range(len(sub))) if need else []
    with rep.stage("quality", len(need)) as advance:
        if need and hasattr(scorer, "fit"):
            scores = scorer.fit(sub, np.asarray(vectors), Rows(crops, ok))  # crops read on demand
            store.write_part(pd.concat([wanted, scores.reset_index(drop=True)], axis=1))
            advance(len(need))
        else:  # per-face methods: on the engine's pool (usually done already in the faces pass)
            from facesieve.engines.local import compute_quality, quality_scorer

            quality_scorer(config, scorer)  # faces this process scores use the run's scorer
            compute_quality(config, sub, Rows(crops, ok), vectors, wanted, np.asarray(need, dtype=np.int64), store, advance)
    table, _ = store.collect(wanted)
    return table


# ---------------------------------------------------------------- all of them


@dataclass
class Prepared:
    """What the stages found: one workspace, the scanned files, the faces (table and aligned crops),
    the embeddings (table and unit vectors) and, when asked, the quality of the run's method."""

    config: RunConfig
    keys: Keys
    ws: Workspace
    files: pd.DataFrame
    faces: pd.DataFrame
    crops: np.ndarray
    emb_table: pd.DataFrame
    vectors: np.ndarray
    reporter: Reporter
    quality: pd.DataFrame | None = None

    def score(self, keys: Keys | None = None) -> pd.DataFrame:
        """The found faces' quality by `keys`' method (default: the run's), cached as the run's is."""
        keys = keys or self.keys
        config = self.config if keys.method == self.config.quality else replace(self.config, quality=keys.method)
        return stage_quality(config, self.ws, self.faces, self.crops, self.vectors, self.reporter, self.files, keys=keys)

    def frame(self) -> pd.DataFrame:
        """One row per file (scan order) with face status, quality (when scored) and its embedding
        row (-1 if none)."""
        quality = self.quality if self.quality is not None else pd.DataFrame({"image_id": pd.Series([], dtype=str)})
        return assemble(self.files, self.faces, self.emb_table, quality)


def prepare(config: RunConfig, reporter: Reporter | None = None, *, keys: Keys | None = None, quality: bool = True,
            check: Callable[[pd.DataFrame], None] | None = None) -> Prepared:
    """validate -> open the workspace -> scan -> faces -> embed (-> quality), each stage cached.

    keys: the config's `validate` result when the caller has checked it already (pipeline.run checks
    before it takes its lock). quality=False skips the quality stage (score later with
    `Prepared.score`). check(files): called with the scanned files before any face is looked for;
    it raises UsageError to stop (e.g. a dataset with no images)."""
    rep = reporter or Reporter(quiet=True)
    keys = _keys(config, keys)
    ws = open_workspace(config, rep)
    files = stage_scan(config, ws, rep)
    if check is not None:
        check(files)
    faces, crops = stage_faces(config, ws, files, rep, keys)
    emb_table, vectors = stage_embed(config, ws, files, faces, crops, rep, keys)
    prepared = Prepared(config, keys, ws, files, faces, crops, emb_table, vectors, rep)
    if quality:
        prepared.quality = prepared.score()
    return prepared


def assemble(files: pd.DataFrame, faces: pd.DataFrame, emb_table: pd.DataFrame, quality: pd.DataFrame) -> pd.DataFrame:
    """One row per file (scan order) with face status, quality and its embedding row (-1 if none)."""
    frame = files[["image_id", "path", "identity", "size", "sha256", "format", "status", "reason"]].copy()
    f = faces.set_index("image_id")
    frame = frame.join(
        f[["status", "reason", "det_score", "box_w", "box_h", "fallback", "pixel_hash", "phash", "phash_mirror", "dhash", "n_faces"]
          + [c for c in ("phash_inner", "phash_inner_mirror") if c in f]].rename(
            columns={"status": "face_status", "reason": "face_reason"}
        ),
        on="image_id",
    )
    st = frame["face_status"].fillna("")
    frame.loc[st != "", "status"] = st[st != ""]
    has_reason = frame["face_reason"].fillna("") != ""
    frame.loc[has_reason, "reason"] = frame.loc[has_reason, "face_reason"]
    pos = pd.Series(np.arange(len(emb_table)), index=emb_table["image_id"].to_numpy())
    frame["vec_row"] = frame["image_id"].map(pos).fillna(-1).astype(int)
    frame["norm"] = frame["image_id"].map(emb_table.set_index("image_id")["norm"])
    qcols = [c for c in quality.columns if c not in ("image_id", "key")]
    frame = frame.join(quality.set_index("image_id")[qcols], on="image_id")
    return frame.reset_index(drop=True)


class Rows:
    """`base[rows[i]]` for an index array i, without copying `base` (crops of the found faces)."""

    def __init__(self, base, rows: np.ndarray):
        self.base, self.rows = base, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        return self.base[self.rows[i]]


def stage_name(stage: str, key: str) -> str:
    """A workspace stage's folder name: the stage and a digest of its full key."""
    return f"{stage}-{hashlib.sha1(key.encode()).hexdigest()[:12]}"
