"""The whole run: prepare (scan -> faces -> embed -> quality) -> decide -> apply -> report.

This is the Python API the CLI wraps: `facesieve.pipeline.run(RunConfig(...))` from a notebook
does exactly what `facesieve run` does. The stages before the decisions are in
facesieve/preparation.py (cached per image, so a re-run or a run resumed after a crash only
computes what is new); this module decides on what they found, writes the output and the report.
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from facesieve.apply import check_paths, mark_output, relabel_targets, write_best_encodings, write_output
from facesieve.config import RunConfig
from facesieve.dataset import SKIPPED_COLUMNS, check_layout
from facesieve.decide import (
    KEEP,
    DecideSettings,
    identity_losses,
    initial_decisions,
    mark_cross_identity,
    mark_exact_duplicates,
    mark_identities,
    mark_near_duplicates,
    mark_outliers,
    mean_encodings,
    protect_identities,
    quality_weights,
    select_per_identity,
)
from facesieve.errors import UsageError
from facesieve.lock import run_lock
from facesieve.models.spec import spec_name
from facesieve.models.zoo import for_embedder, runs_on
from facesieve.overrides import apply_overrides
from facesieve.parallel import default_jobs
from facesieve.preparation import Keys, Prepared, faces_key, prepare, stage_name, validate
from facesieve.progress import Reporter
from facesieve.report import REPORT, write_report
from facesieve.select.crossid import cross_identity_pairs, identity_overlaps, index_for
from facesieve.select.identity import CUTS, match_floor
from facesieve.select.anchor import ImageKeypoints
from facesieve.select.samephoto import KEYPOINTS_FROM, SCORE_VERSION, FaceViews, SamePhotoCheck, face_scale
from facesieve.select.thresholds import (
    ANCHOR_MATCHES,
    ANCHOR_MOTION_CUT,
    ANCHOR_SCORE_CUT,
    COARSE_CUT,
    FACE_FIT_CUT,
    FACE_MATCHES,
    FACE_SCORE_CUT,
    HASH_BITS,
    HASH_SCORE_CUT,
    LONE_CUT,
    RARE_BITS,
    RARE_FLOOR,
    RARE_SCORE_CUT,
    RATIO_CUT,
    RATIO_SCORE_CUT,
    SAME_PHOTO_CUT,
    SHOT_CUT,
    WEB_FLOOR,
    WEB_HASH_BITS,
    WEB_HASH_FLOOR,
    WEB_HASH_MATCHES,
    WEB_MATCHES,
    WEB_MOTION_CUT,
    WEB_SCORE_CUT,
    WEB_SCORE_FLOOR,
)
from facesieve.stages import LANDMARK_COLUMNS
from facesieve.vectors import l2_normalise
from facesieve.workspace import Workspace, atomic_write_csv, atomic_write_text


@dataclass
class RunResult:
    manifest: pd.DataFrame
    summary: dict
    selection: pd.DataFrame = field(default_factory=pd.DataFrame)


def run(config: RunConfig, reporter: Reporter | None = None, keys: Keys | None = None) -> RunResult:
    """prepare -> decide -> apply -> report; a bad config or output folder stops before any work.
    `keys`: validate(config), when the caller has checked the config already."""
    rep = reporter or Reporter(quiet=True)
    keys = keys if keys is not None else validate(config)
    check_paths(config.dataset, config.out, config.workspace)
    check_layout(config.dataset, config.layout)  # images only at the top: exit 2 naming --layout flat
    with run_lock(config.out, config.workspace):  # a second run on this output stops with a message
        return _run_locked(config, rep, keys)


def _run_locked(config: RunConfig, rep: Reporter, keys: Keys) -> RunResult:
    mark_output(config.out)  # first: a run killed later still leaves a folder it may resume in
    t0 = time.perf_counter()
    prepared = prepare(config, rep, keys=keys)
    ws, files = prepared.ws, prepared.files

    with rep.stage("decide", None):
        frame = prepared.frame()
        fvec = file_vectors(frame, prepared.vectors, config.metric)
        decided = decide_all(frame, fvec, config, rep, prepared=prepared)
        manifest = build_manifest(frame, decided.decisions)
        selection = decided.selection
        if apply_overrides(manifest, ws):  # keep/remove set by hand in `facesieve serve`: reason "manual"
            decided.encodings = mean_encodings(manifest, frame["identity"].to_numpy().astype(str), fvec)

    n_place = int((manifest["action"] == "keep").sum() + (manifest["reason"] == "mislabeled").sum() * config.relabel)
    with rep.stage("apply", n_place) as advance:
        relabel = relabel_targets(manifest) if config.relabel else []
        applied = write_output(config.dataset, config.out, ws, manifest, config.mode, advance, extra=relabel)
        applied["relabeled"] = len(relabel)
        write_best_encodings(config.out, decided.encodings, ws)
        atomic_write_csv(config.out / "manifest.csv", manifest)
        write_side_tables(config.out, ws, decided, frame)

    summary = make_summary(config, files, manifest, selection, rep, time.perf_counter() - t0, applied)
    summary["duplicate_check"] = {"pairs": decided.pixel_pairs, "copies": decided.pixel_copies,
                                  "background_checks": decided.background_checks}
    summary["identities_kept_from_emptying"] = decided.restored
    ws.write_json("summary.json", summary)
    atomic_write_text(config.out / "summary.json", pd.Series(summary).to_json(indent=2))
    if config.report:
        write_run_report(config, ws, fvec, rep, keys.faces_stage)
    else:
        remove_report(config.out)
    return RunResult(manifest=manifest, summary=summary, selection=selection)


def write_run_report(config: RunConfig, ws: Workspace, fvec: np.ndarray, rep: Reporter, faces_stage: str) -> None:
    """OUT/report.html; a failure here is a warning: the cleaned output is already complete."""
    with rep.stage("report", None):
        try:
            write_report(config.out, config.dataset, ws, faces_stage=faces_stage, embeddings=fvec)
        except Exception as e:  # noqa: BLE001 - the report must never cost the user the run
            remove_report(config.out)  # an earlier run's page would show decisions this run changed
            rep.warn(f"report.html not written: {type(e).__name__}: {e}")


def remove_report(out: Path) -> None:
    """Delete an earlier run's report.html (a run without a report). Its thumbnails in
    report_files/ stay: a cache that `facesieve serve` and the next report reuse."""
    (out / REPORT).unlink(missing_ok=True)


def file_vectors(frame: pd.DataFrame, vectors: np.ndarray, metric: str) -> np.ndarray:
    """(n_files, d) float64: unit vectors (cosine) or raw ones (euclidean); zeros where no face."""
    rows = frame["vec_row"].to_numpy()
    out = np.zeros((len(frame), vectors.shape[1]), np.float64)
    has = rows >= 0
    out[has] = np.asarray(vectors)[rows[has]]
    if metric == "euclidean":
        out[has] *= frame["norm"].to_numpy(float)[has, None]
    return out


@dataclass
class Decided:
    decisions: pd.DataFrame
    selection: pd.DataFrame
    encodings: dict
    near_groups: pd.DataFrame
    cross_pairs: pd.DataFrame
    overlaps: pd.DataFrame
    outliers: pd.DataFrame
    pixel_pairs: int = 0  # pairs the face-crop test scored in this run (none on a re-run: cached)
    background_checks: int = 0  # pairs whose face-in-its-background test ran in this run (cached too)
    pixel_copies: int = 0  # pairs it grouped (same photo or near-identical shot)
    identity: pd.DataFrame = field(default_factory=pd.DataFrame)  # select/identity.py's verdicts (row = file row)
    restored: list = field(default_factory=list)  # identities whose last faces were given back


DUPLICATE_MODES = ("exact", "copies", "shots", "off")


def decide_settings(config: RunConfig) -> DecideSettings:
    """The run's thresholds: the user's, else the embedder's calibrated defaults.

    config.duplicates: exact (same bytes or pixels only), copies (and the same photo edited),
    shots (and near-identical shots too: the default), off. config.dedup=False turns off the
    cross-identity pass as well."""
    mode = config.duplicates if config.dedup else "off"
    if mode not in DUPLICATE_MODES:
        raise UsageError(f"unknown --duplicates {mode!r}; choose from {', '.join(DUPLICATE_MODES)}")
    near_on = mode in ("copies", "shots")
    need_defaults = (near_on and config.near_dup_threshold is None) or (
        config.dedup and (config.cross_id_threshold is None or config.overlap_threshold is None))
    try:
        t = for_embedder(spec_name(config.embedder))
    except KeyError as e:
        if need_defaults:
            raise UsageError(str(e).strip('"')) from None
        t = None  # every threshold given by the user: an uncalibrated embedder runs without the crop test

    def pick(user, default):
        return user if user is not None else default

    crop = bool(t and near_on and t.crop_min_sim is not None)
    # with the crop test the embedding alone groups only identical vectors; without it, its own cut
    near = (1.0 if crop else t.near_duplicate) if t else None
    extra = config.extra or {}
    return DecideSettings(
        keep=config.keep,
        metric=config.metric,
        max_exhaustive=config.max_exhaustive,
        exact_duplicates=mode != "off",
        near_duplicate=pick(config.near_dup_threshold, near) if near_on else None,
        phash_max_bits=t.phash_max_bits if t else 8,
        phash_min_sim=t.phash_min_sim if t else 0.7,
        crop_min_sim=t.crop_min_sim if crop else None,
        same_photo_cut=float(extra.get("same_photo_cut", SAME_PHOTO_CUT)),
        shot_cut=float(extra.get("shot_cut", SHOT_CUT)),
        ratio_score_cut=float(extra.get("ratio_score_cut", RATIO_SCORE_CUT)),
        ratio_cut=float(extra.get("ratio_cut", RATIO_CUT)),
        lone_cut=float(extra.get("lone_cut", LONE_CUT)),
        hash_score_cut=float(extra.get("hash_score_cut", HASH_SCORE_CUT)),
        hash_bits=int(extra.get("hash_bits", HASH_BITS)),
        coarse_cut=float(extra.get("coarse_cut", COARSE_CUT)),
        anchor_score=float(extra.get("anchor_score_cut", ANCHOR_SCORE_CUT)),
        anchor_motion=float(extra.get("anchor_motion_cut", ANCHOR_MOTION_CUT)),
        anchor_matches=int(extra.get("anchor_matches", ANCHOR_MATCHES)),
        face_score=float(extra.get("face_score_cut", FACE_SCORE_CUT)),
        face_fit=float(extra.get("face_fit_cut", FACE_FIT_CUT)),
        face_matches=int(extra.get("face_matches", FACE_MATCHES)),
        rare_score=float(extra.get("rare_score_cut", RARE_SCORE_CUT)),
        rare_bits=int(extra.get("rare_bits", RARE_BITS)),
        rare_floor=float(extra.get("rare_floor", RARE_FLOOR)),
        web_motion=float(extra.get("web_motion_cut", WEB_MOTION_CUT)),
        web_floor=float(extra.get("web_floor", WEB_FLOOR)),
        web_matches=int(extra.get("web_matches", WEB_MATCHES)),
        web_score=float(extra.get("web_score_cut", WEB_SCORE_CUT)),
        web_score_floor=float(extra.get("web_score_floor", WEB_SCORE_FLOOR)),
        web_hash_bits=int(extra.get("web_hash_bits", WEB_HASH_BITS)),
        web_hash_floor=float(extra.get("web_hash_floor", WEB_HASH_FLOOR)),
        web_hash_matches=int(extra.get("web_hash_matches", WEB_HASH_MATCHES)),
        group_shots=mode == "shots",
        cross_identity=pick(config.cross_id_threshold, t and t.cross_identity) if config.dedup else None,
        identity_overlap=pick(config.overlap_threshold, t and t.identity_overlap) if config.dedup else None,
        outliers=config.outliers,
        drop_outliers=config.drop_outliers,
        extra={k: v for k, v in extra.items() if k in ("crop_neighbours", "pair_hash_bits", "pair_nearest", "pair_view_nearest")},
        identity_cuts=_identity_cuts(config),
        match_floor=match_floor(spec_name(config.embedder)),
        empty_identities=config.empty_identities,
    )


def _identity_cuts(config: RunConfig) -> tuple[float, ...] | None:
    """The identity pass's cuts for this embedder (select/identity.py), None when it is off or the
    embedder has none calibrated (then copies across identities go to review, as before)."""
    if not config.identities:
        return None
    return CUTS.get(spec_name(config.embedder))


def _pair_cache_name(version: str = SCORE_VERSION) -> str:
    return f"pair-scores-{version}.parquet"


def same_photo_check(config: RunConfig, frame: pd.DataFrame, settings: DecideSettings, progress=None,
                     prepared: Prepared | None = None):
    """The face-crop test over the run's aligned crops (the faces stage's, read on demand), with
    the pair scores of earlier runs (workspace pair-scores-*.parquet) as its cache. Without
    `prepared`, the faces stage is read back from the workspace."""
    ws = Workspace(config.workspace)
    if prepared is not None:
        table, crops = prepared.faces, prepared.crops
    else:
        cfg = faces_key(config)
        files = ws.read_table("scan.parquet")
        todo = files[files["status"] == "ok"]  # exactly the faces stage's rows, so its stored part is read as it is
        wanted = pd.DataFrame({"image_id": todo["image_id"].to_numpy(), "key": (todo["sha256"] + "|" + cfg).to_numpy()})
        table, arrays = ws.stage(stage_name("faces", cfg)).collect(wanted, ["crops"], lazy=["crops"])
        crops = arrays["crops"]
    pos = pd.Series(np.arange(len(table)), index=table["image_id"].to_numpy())
    crop_row = frame["image_id"].map(pos).fillna(-1).astype(np.int64).to_numpy()
    keys = np.where(crop_row >= 0, table["key"].to_numpy()[np.maximum(crop_row, 0)], "").astype(object)
    lm = table[LANDMARK_COLUMNS].to_numpy(np.float64)
    views = FaceViews(crops, face_scale(lm), (lm, table["width"].to_numpy(np.float64), table["height"].to_numpy(np.float64)))
    cache, motions = {}, {}
    stored = ws.read_table(_pair_cache_name())
    if stored is not None:
        cache = dict(zip(zip(stored["key_a"], stored["key_b"]), stored["score"].astype(float)))
    else:  # a workspace of the previous crop score: its pairs are scored again, its keypoint answers kept
        stored = ws.read_table(_pair_cache_name(KEYPOINTS_FROM))
    if stored is not None:
        pairs = list(zip(stored["key_a"], stored["key_b"]))
        if "face_fit" in stored:  # the keypoint test, where it ran (kept before its face fit was: asked again)
            ran = stored["n_face"].notna().to_numpy()
            motions = {k: (float(m), int(f), int(b), float(e)) for k, m, f, b, e, r in zip(
                pairs, stored["motion"], stored["n_face"].fillna(0), stored["n_back"].fillna(0), stored["face_fit"], ran) if r}
    cut = settings.shot_cut if settings.group_shots else settings.same_photo_cut
    return SamePhotoCheck(views, crop_row, keys, cut, cache, cuts=settings.cuts(), hashes=whole_image_hashes(frame),
                          threads=config.jobs or default_jobs(), anchor=image_keypoints(config, frame, table, crop_row),
                          motions=motions)


def whole_image_hashes(frame: pd.DataFrame) -> np.ndarray:
    """(n, 4) uint64 per file row: its image's pHash, its mirror image's, and the same of the picture
    inside its frame (stages: phash_inner*). Where any row lacks the inner hashes (a faces stage
    cached before they were kept; a float column has lost their low bits), (n, 2): the image's
    alone for every row, one rule for the whole run."""
    cols = ("phash", "phash_mirror", "phash_inner", "phash_inner_mirror")
    have = all(c in frame and pd.api.types.is_integer_dtype(frame[c].dtype) for c in cols[2:])
    return np.stack([frame[c].fillna(0).to_numpy(np.int64) for c in (cols if have else cols[:2])], axis=1).view(np.uint64)


def image_keypoints(config: RunConfig, frame: pd.DataFrame, table: pd.DataFrame, crop_row: np.ndarray) -> ImageKeypoints:
    """The face-in-its-background test's view of each file row: its image (read again, on demand)
    and its face's detector box from the faces stage."""
    ok = crop_row >= 0
    at = np.maximum(crop_row, 0)
    boxes = np.stack([table[c].to_numpy(np.float64)[at] for c in ("box_x", "box_y", "box_w", "box_h")], axis=1) \
        if len(table) else np.full((len(frame), 4), np.nan)
    boxes[~ok] = np.nan
    paths = [config.dataset / p if k else None for p, k in zip(frame["path"].astype(str), ok)]
    return ImageKeypoints(paths, boxes)


def save_pair_scores(config: RunConfig, check) -> None:
    """Store the crop-test scores (old and new), so that a re-run scores no pair again."""
    if not check.scored and not check.anchored:
        return
    keys = list(check.cache)
    none = (np.nan, np.nan, np.nan, np.nan)
    motion = [check.motions.get(k, none) for k in keys]
    Workspace(config.workspace).write_table(_pair_cache_name(), pd.DataFrame({
        "key_a": [k[0] for k in keys], "key_b": [k[1] for k in keys], "score": list(check.cache.values()),
        "motion": [m[0] for m in motion], "n_face": [m[1] for m in motion], "n_back": [m[2] for m in motion],
        "face_fit": [m[3] for m in motion],
        "reference": [k[1] in check.neighbours.get(k[0], ()) for k in keys]}))


def same_photo_across(check, unit: np.ndarray, identities: np.ndarray, has_face: np.ndarray, min_sim: float) -> tuple[np.ndarray, np.ndarray]:
    """File-row pairs under different identities that the face-crop test calls one photo (the
    within-identity definition, same cuts): each face's nearest faces of other identities from
    `min_sim` up are scored, so an edited copy filed under another person is found even when its
    embedding has moved below the cross-identity cosine."""
    rows = np.flatnonzero(has_face & (check.crop_row >= 0))
    none = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    if len(rows) < 2 or len(pd.unique(identities[rows])) < 2:
        return none
    pairs = cross_identity_pairs(unit[rows].astype(np.float32), identities[rows], min_sim, index=index_for(len(rows)))
    if not len(pairs):
        return none
    a, b = rows[pairs["i"].to_numpy()], rows[pairs["j"].to_numpy()]
    check.prefetch(list(zip(a.tolist(), b.tolist())))
    one = np.array([check.same_photo(i, j) for i, j in zip(a.tolist(), b.tolist())], dtype=bool)
    return a[one], b[one]


def decide_all(frame: pd.DataFrame, fvec: np.ndarray, config: RunConfig, reporter: Reporter | None = None,
               prepared: Prepared | None = None) -> Decided:
    """All decisions for all files, from the assembled table and per-file vectors. The only I/O
    is the duplicate stage's: it reads the aligned crops of the faces stage and keeps its pair
    scores in the workspace.

    Order: errors and no-face; exact duplicates; same photos and near-identical shots within
    identities; identity decisions (folders holding two people, photos filed under several
    identities); outliers; the guard that no identity is emptied by these (unless asked); then the
    K-subset among the faces kept.
    """
    settings = decide_settings(config)
    decisions = initial_decisions(frame)
    identities = frame["identity"].to_numpy().astype(str)
    paths = frame["path"].to_numpy().astype(str)
    quality = frame["quality"].to_numpy(float) if "quality" in frame else np.full(len(frame), np.nan)
    has_face = frame["vec_row"].to_numpy() >= 0
    unit = l2_normalise(fvec)
    empty = pd.DataFrame()
    near_groups, cross, overlaps, outl, ident = empty, empty, empty, empty, empty
    check = None
    if settings.exact_duplicates:
        mark_exact_duplicates(
            decisions, frame["sha256"].fillna("").to_numpy(), frame["pixel_hash"].fillna("").to_numpy(), quality, paths, identities
        )
    if settings.near_duplicate is not None and np.count_nonzero(decisions["action"].to_numpy() == KEEP) > 1:
        phash = None
        bar = nullcontext(None)
        if settings.crop_min_sim is None:  # no crop test: the hash rule is the second signal
            phash = whole_image_hashes(frame)[:, :2]  # the image's own: that rule was calibrated on them
        else:
            check = same_photo_check(config, frame, settings, prepared=prepared)
            if reporter is not None and check.hashes is not None and check.hashes.shape[1] < 4:
                reporter.warn("this workspace's faces were found by an earlier facesieve, which kept no hash of the picture "
                              "inside a frame: copies re-published with a border are judged by the whole image's hash "
                              f"only. Remove {config.workspace}/faces-* to find the faces again with it.")
            if reporter is not None:  # a bar over the faces grouped, moving as identities finish
                bar = reporter.stage("duplicates", int(np.count_nonzero(decisions["action"].to_numpy() == KEEP)))
        with bar as advance:
            near_groups = mark_near_duplicates(decisions, unit, identities, quality, paths, phash, settings, check, advance)
    if settings.cross_identity is not None:
        cross = mark_cross_identity(decisions, unit, identities, paths, has_face, settings)
    if settings.identity_cuts is not None:
        # one photo under several identities: equal hashes (always), faces as close as one photo's
        # copies (the cross-identity cosine pairs), and pairs the face-crop test calls one photo
        same = (cross["row_a"].to_numpy(np.int64), cross["row_b"].to_numpy(np.int64)) if len(cross) else None
        if check is not None:
            a, b = same_photo_across(check, unit, identities, has_face, settings.crop_min_sim)
            same = (a, b) if same is None else (np.concatenate([same[0], a]), np.concatenate([same[1], b]))
        ident = mark_identities(decisions, unit, identities, paths, frame["sha256"].fillna("").to_numpy(),
                                frame["pixel_hash"].fillna("").to_numpy(), has_face, settings, same)
    if check is not None:
        save_pair_scores(config, check)
    if settings.outliers:
        outl = mark_outliers(decisions, unit, identities, has_face, settings)
    restored = [] if settings.empty_identities else protect_identities(decisions, identities, has_face)
    if settings.identity_overlap is not None and has_face.sum() > 1:
        overlaps = identity_overlaps(unit[has_face].astype(np.float32), identities[has_face], settings.identity_overlap)
    selection = pd.DataFrame(columns=["identity", "n_candidates", "k", "method", "score"])
    if config.keep:
        selection = select_per_identity(decisions, identities, paths, fvec, quality_weights(quality), settings)
    encodings = mean_encodings(decisions, identities, fvec)
    decisions["quality"] = quality
    decided = Decided(decisions, selection, encodings, near_groups, cross, overlaps, outl, identity=ident, restored=restored)
    if check is not None:  # reported as summary["duplicate_check"]: pairs scored this run, pairs grouped
        decided.pixel_pairs, decided.pixel_copies = check.scored, check.grouped
        decided.background_checks = check.anchored
    return decided


def write_side_tables(out: Path, ws: Workspace, decided: Decided, frame: pd.DataFrame) -> None:
    """selection.csv, identity_overlaps.csv, cross_identity.csv in the output; group tables in the
    workspace (for the report). A table this run has no content for is removed, never left from an
    earlier run (a --keep run's selection.csv would otherwise describe a run without --keep)."""
    if len(decided.selection):
        atomic_write_csv(out / "selection.csv", decided.selection)
    else:
        (out / "selection.csv").unlink(missing_ok=True)
    overlaps = decided.overlaps if len(decided.overlaps) else pd.DataFrame(
        columns=["identity_a", "identity_b", "n_a", "n_b", "similarity", "distance"])
    atomic_write_csv(out / "identity_overlaps.csv", overlaps)
    cols = ["path_a", "path_b", "identity_a", "identity_b", "similarity"]
    cross = decided.cross_pairs[cols] if len(decided.cross_pairs) else pd.DataFrame(columns=cols)
    atomic_write_csv(out / "cross_identity.csv", cross)
    write_skipped(out, ws)
    if len(decided.near_groups):
        g = decided.near_groups
        ws.write_table("near_groups.parquet", pd.DataFrame({
            "path": frame["path"].to_numpy()[g["row"].to_numpy()], "group": g["group"].to_numpy(),
            "is_kept": g["is_kept"].to_numpy(), "similarity": g["similarity"].to_numpy(), "signal": g["signal"].to_numpy(),
            "identity": frame["identity"].to_numpy()[g["row"].to_numpy()]}))
    elif ws.path("near_groups.parquet").exists():
        ws.path("near_groups.parquet").unlink()


def write_skipped(out: Path, ws: Workspace) -> None:
    """OUT/skipped.csv: every path under the dataset that has no manifest row, with why."""
    table = ws.read_table("skipped.parquet")
    if table is None:
        table = pd.DataFrame(columns=SKIPPED_COLUMNS)
    atomic_write_csv(out / "skipped.csv", table)


def build_manifest(frame: pd.DataFrame, decisions: pd.DataFrame) -> pd.DataFrame:
    cols = ["path", "identity", "action", "reason", "quality", "duplicate_of", "similarity", "outlier_score", "detail",
            "status", "image_id", "sha256", "det_score"]
    m = pd.concat([frame.drop(columns=[c for c in decisions.columns if c in frame]), decisions], axis=1)
    extra = [c for c in decisions.columns if c not in cols]
    return m[[c for c in cols if c in m] + extra]


def make_summary(config, files, manifest, selection, rep, seconds, applied) -> dict:
    actions = manifest["action"].value_counts().to_dict()
    reasons = manifest.groupby(["action", "reason"]).size()
    n_img = int((files["status"] == "ok").sum())
    summary = {
        "dataset": str(config.dataset),
        "output": str(config.out),
        "files": int(len(files)),
        "images": n_img,
        # a folder holding only files the scan set aside (notes, a README) is not an identity
        "identities": int(files.loc[(files["identity"] != "") & (files["status"] != "skipped"), "identity"].nunique()),
        "faces": int(manifest["status"].eq("ok").sum()),
        "no_face": int(manifest["status"].eq("no_face").sum()),
        "errors": int(actions.get("error", 0)),
        "ignored": int(actions.get("ignore", 0)),
        "kept": int(actions.get("keep", 0)),
        "removed": int(actions.get("remove", 0)),
        "review": int(actions.get("review", 0)),
        "by_reason": {f"{a}/{r}": int(n) for (a, r), n in reasons.items()},
        "skipped_paths": skipped_counts(config),
        "selection_methods": selection["method"].value_counts().to_dict() if len(selection) else {},
        "models": {"detector": config.detector, "embedder": config.embedder, "quality": config.quality, "metric": config.metric},
        "devices": model_devices(config),
        "keep_k": config.keep,
        "seconds": round(seconds, 3),
        "stage_seconds": {k: round(v, 3) for k, v in rep.timings.items()},
        "output_files": applied,
    }
    # no identity is emptied by duplicate or identity decisions unless asked; the ones that lost more
    # than half their files are listed for a person to check
    emptied, halved = identity_losses(manifest, manifest["identity"].fillna("").astype(str).to_numpy())
    summary["identities_emptied"] = emptied
    summary["identities_lost_over_half"] = halved
    summary["mislabeled"] = int(manifest["reason"].eq("mislabeled").sum())
    return summary


def model_devices(config) -> dict:
    """Where the detector and embedder ran (device and runtime), e.g. {"detector": "cpu (OpenCV DNN)"}."""
    return {"detector": runs_on(config.detector, "detect"), "embedder": runs_on(config.embedder, "embed")}


def skipped_counts(config) -> dict:
    """Paths with no manifest row (OUT/skipped.csv), counted by reason."""
    path = Path(config.out) / "skipped.csv"
    table = pd.read_csv(path, dtype=str, keep_default_na=False) if path.is_file() else pd.DataFrame(columns=SKIPPED_COLUMNS)
    return {str(k): int(v) for k, v in table["reason"].value_counts().sort_index().items()}


