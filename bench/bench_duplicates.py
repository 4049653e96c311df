"""Duplicates on data nobody tuned them on: web-style copies injected into every shared set,
leave-one-set-out thresholds, natural pairs from the READMEs, and the cost beside the faces pass.

    python bench/bench_duplicates.py [--root /tmp/bench15] [--sets a,b,...] [--seed 0] [--no-cost]
    python bench/bench_duplicates.py --root /tmp/bench15-seeds --seeds 0,1,2 --no-cost

Everything is cached under ROOT: the injected sets (ROOT/data), each set's faces pass
(ROOT/ws/<set>: a facesieve workspace, reused by every later run) and its pair scores. One
injection seed's figures move by a few copies a set with the seed: judge a change of rule on
several (`--seeds`, each under ROOT/seed-N, then the figures side by side with their mean). See
docs/thresholds.md for what the printed tables mean.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dupdata import SETS, SMALL, build_set, natural_pairs, originals, small_version  # noqa: E402

from facesieve.config import RunConfig  # noqa: E402
from facesieve.evaluate.injection import DUP_REASONS, kept_face  # noqa: E402
from facesieve.imaging import load_rgb  # noqa: E402
from facesieve.progress import Reporter  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def set_config(root: Path, name: str, **kw) -> RunConfig:
    return RunConfig(dataset=root / "data" / name, out=root / "out" / name, workspace=root / "ws" / name,
                     report=False, jobs=kw.pop("jobs", 2), **kw)


def faces_pass(config: RunConfig):
    """scan, faces, embed, quality (cached in the workspace); the assembled frame and vectors."""
    from facesieve import pipeline as pl
    from facesieve.preparation import prepare

    rep = Reporter(quiet=True)
    prepared = prepare(config, rep)
    frame = prepared.frame()
    return frame, pl.file_vectors(frame, prepared.vectors, config.metric), rep.timings


def face_boxes(config: RunConfig) -> dict:
    """path -> face box (x, y, w, h) of every face found in the set (its faces pass, cached)."""
    from facesieve.preparation import open_workspace, stage_faces, stage_scan

    rep = Reporter(quiet=True)
    ws = open_workspace(config, rep)
    files = stage_scan(config, ws, rep)
    faces, _ = stage_faces(config, ws, files, rep)
    ok = faces[faces["status"] == "ok"].merge(files[["image_id", "path"]], on="image_id")
    return {p: (x, y, w, h) for p, x, y, w, h in zip(ok["path"], ok["box_x"], ok["box_y"], ok["box_w"], ok["box_h"])}


def prepare(root: Path, name: str, seed: int, share: float) -> pd.DataFrame:
    """Build the set (once) and run its faces pass (once; its time is kept in ROOT/<set>.faces.json).
    The seed and share it was built with are kept beside it (ROOT/data/<set>.build.json): a root
    built with others is refused, not read as if it were this seed's (each seed needs its own root)."""
    dst = root / "data" / name
    copies_csv = root / "data" / f"{name}.copies.csv"
    built = root / "data" / f"{name}.build.json"
    want = {"seed": int(seed), "share": float(share)}
    have = json.loads(built.read_text()) if copies_csv.exists() and built.exists() else want
    if have != want:
        raise SystemExit(f"{root}: {name} was built with {have}, not {want}; give each seed and share its own --root")
    if not copies_csv.exists():
        if name in SMALL:
            base = SMALL[name]
            boxes = {}
            if base == "celeb5_web":  # uncropped photos: cut the face out first
                boxes = face_boxes(set_config(root, base))

            def transform(p: Path) -> np.ndarray:
                return small_version(load_rgb(p), boxes.get(f"{p.parent.name}/{p.name}"))

            srcs = [p for p in originals(root / "data", base) if "copy" not in p.name]
            srcs = [p for p in srcs if base != "celeb5_web" or f"{p.parent.name}/{p.name}" in boxes]
            table = build_set(srcs, dst, share, seed + 1, transform=transform)
        else:
            table = build_set(originals(DATA, name), dst, share, seed)
        table.to_csv(copies_csv, index=False)
    if not built.exists():  # (a root built before the seed was kept: taken to be the one asked for)
        built.write_text(json.dumps(want))
    faces_seconds(root, name)
    return pd.read_csv(copies_csv)


def _machine() -> str:
    """This machine, as far as a timing depends on it: its name, CPU model and cores."""
    import os
    import platform

    model = platform.processor()
    try:
        model = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{platform.node()}, {model}, {os.cpu_count()} cpus"


def faces_seconds(root: Path, name: str, fresh: bool = False) -> float:
    """The set's faces pass, in seconds, timed on this machine (ROOT/<set>.faces.json). A timing
    kept from another machine, or any kept timing when `fresh` (the cost table: a machine of one
    name runs faster on one day than on another, docs/thresholds.md), is timed again, on a
    scratch workspace, so that the cost table's ratios never divide by a stale figure."""
    import shutil
    import tempfile

    timing = root / f"{name}.faces.json"
    kept = json.loads(timing.read_text()) if timing.exists() else {}
    if kept.get("machine") == _machine() and not fresh:
        return float(kept["total"])
    config = set_config(root, name)
    if config.workspace.exists():  # the bench's own workspace keeps its cache; time a fresh one
        scratch = Path(tempfile.mkdtemp(dir=root))
        config = RunConfig(dataset=config.dataset, out=scratch / "out", workspace=scratch / "ws", report=False, jobs=config.jobs)
    else:
        scratch = None
    t0 = time.perf_counter()
    _, _, stages = faces_pass(config)
    stages["total"] = time.perf_counter() - t0
    stages["machine"] = _machine()
    timing.write_text(json.dumps(stages))
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)
    return float(stages["total"])


# ---------------------------------------------------------------- labels


class Photos:
    """Which files are one photo (a copy and its source, README same-photo pairs: union-find) and
    which are one burst (README consecutive frames)."""

    def __init__(self, copies: pd.DataFrame, same: list, bursts: list):
        self.parent: dict[str, str] = {}
        for a, b in zip(copies["path"], copies["source"]):
            self.union(a, b)
        for a, b in same:
            self.union(a, b)
        self.burst = {}
        for n, g in enumerate(bursts):
            for p in g:
                self.burst[self.photo(p)] = n
        self.copy_paths = set(copies["path"])

    def photo(self, p: str) -> str:
        while self.parent.get(p, p) != p:
            p = self.parent[p]
        return p

    def union(self, a: str, b: str) -> None:
        ra, rb = self.photo(a), self.photo(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def relation(self, a: str, b: str) -> str:
        pa, pb = self.photo(a), self.photo(b)
        if pa == pb:
            return "same"
        if pa in self.burst and self.burst.get(pa) == self.burst.get(pb):
            return "burst"
        return "distinct"


def labels(root: Path, name: str) -> tuple[pd.DataFrame, Photos]:
    copies = pd.read_csv(root / "data" / f"{name}.copies.csv")
    base = SMALL.get(name, name)
    same, bursts = natural_pairs(DATA, base)
    if name in SMALL:  # the small versions were saved as PNG
        same = [tuple(str(Path(p).with_suffix(".png")) for p in pr) for pr in same]
        bursts = [[str(Path(p).with_suffix(".png")) for p in g] for g in bursts]
    return copies, Photos(copies, same, bursts)


# whose pairs nobody labelled: essex holds video frames (near-identical shots or not), seed_vggface
# several crops of one source photo (docs/thresholds.md); their pairs never count as distinct
UNKNOWN_SHOTS = ("essex_faces94_19", "seed_vggface")


# ---------------------------------------------------------------- pair scores (cached in each workspace)


def pair_table(root: Path, name: str) -> pd.DataFrame:
    """The set's candidate pairs as the run forms them, with their crop scores and true relation."""
    from facesieve import pipeline as pl
    from facesieve.select.samephoto import SamePhotoCheck

    config = set_config(root, name)
    frame, fvec, _ = faces_pass(config)
    formed: set = set()  # the pairs this run forms (the workspace cache also keeps those of runs with other settings)
    prefetch = SamePhotoCheck.prefetch

    def recording(check, pairs, companions=()):
        pairs = list(pairs)
        formed.update(check._key(int(i), int(j))[:2] for i, j in pairs)
        return prefetch(check, pairs, companions)

    SamePhotoCheck.prefetch = recording
    try:
        pl.decide_all(frame, fvec, config, None)  # scores every candidate pair once, into the workspace cache
    finally:
        SamePhotoCheck.prefetch = prefetch
    stored = pd.read_parquet(config.workspace / pl._pair_cache_name())
    stored = stored[[k in formed for k in zip(stored["key_a"], stored["key_b"])]].reset_index(drop=True)
    key_path = {}
    files = pd.read_parquet(config.workspace / "scan.parquet")
    cfg = pl.faces_key(config)
    for p, h in zip(files["path"], files["sha256"]):
        key_path.setdefault(f"{h}|{cfg}", p)
    copies, photos = labels(root, name)
    kind = dict(zip(copies["path"], copies["kind"]))
    a = stored["key_a"].map(key_path)
    b = stored["key_b"].map(key_path)
    from facesieve.select.samephoto import neighbour_ratio

    t = pd.DataFrame({"a": a, "b": b, "score": stored["score"],
                      "ratio": neighbour_ratio(stored["key_a"], stored["key_b"], stored["score"].to_numpy(),
                                               stored["reference"] if "reference" in stored else None)})
    from facesieve.select.neardup import hash_distance

    ph = pl.whole_image_hashes(frame)  # as the run's check holds them
    row = {p: r for r, p in enumerate(frame["path"])}
    t = t.dropna(subset=["a", "b", "score"])
    ra, rb = t["a"].map(row).to_numpy(np.int64), t["b"].map(row).to_numpy(np.int64)
    t["hash_bits"] = hash_distance(ph, ra, rb)
    # each face's hash floor over its identity's faces (neardup.hash_floors), the lower of the pair's
    # two; a run takes it over the faces left after the exact-duplicate pass (here: every face)
    from facesieve.select.neardup import hash_floors

    faces = np.flatnonzero(frame["vec_row"].to_numpy() >= 0)
    floors = np.full(len(frame), np.nan)
    floors[faces] = hash_floors(ph[faces], frame["identity"].to_numpy()[faces])
    t["floor"] = np.minimum(floors[ra], floors[rb]) if len(t) else np.nan  # NaN where either is unknown, as a run
    from facesieve.select.samephoto import pair_side

    check = pl.same_photo_check(config, frame, pl.decide_settings(config))  # the faces' scales, as a run sees them
    t["side"] = pair_side(check.views.scales, check.crop_row[ra], check.crop_row[rb])
    # the face-in-its-background test, on every pair it could be asked about (kept in the workspace)
    t["motion"], t["n_face"], t["n_back"], t["face_fit"] = np.nan, 0.0, 0.0, np.nan
    # (and any score within the hash grid's bits: the face fit needs no ceiling there, samephoto.anchored)
    ask = np.flatnonzero((t["score"].to_numpy() <= max(ANCHOR_SCORE_GRID + FACE_SCORE_GRID)) | (t["hash_bits"].to_numpy() <= max(HASH_BITS_GRID)))
    check.answer_motions(zip(ra[ask], rb[ask]))  # those not kept in the workspace, on the threads
    m = [check.motion(int(x), int(y)) for x, y in zip(ra[ask], rb[ask])]
    if m:
        t.iloc[ask, [t.columns.get_loc(c) for c in MOTION]] = np.array(m, np.float64)
    if "reference" in stored:  # this check prefetched nothing: keep the run's neighbour-ratio references as stored
        for ka, kb in zip(stored.loc[stored["reference"], "key_a"], stored.loc[stored["reference"], "key_b"]):
            check.neighbours.setdefault(ka, set()).add(kb)
            check.neighbours.setdefault(kb, set()).add(ka)
    pl.save_pair_scores(config, check)
    t["relation"] = [photos.relation(x, y) for x, y in zip(t["a"], t["b"])]
    if name in UNKNOWN_SHOTS:
        t.loc[t["relation"] != "same", "relation"] = "unknown"
    t["kind"] = [kind.get(x) or kind.get(y) or "natural" for x, y in zip(t["a"], t["b"])]
    t.attrs["originals"] = int(((frame["vec_row"] >= 0) & ~frame["path"].isin(photos.copy_paths)).sum())
    return t


# ---------------------------------------------------------------- choosing the cuts (training sets only)

GRID = np.round(np.arange(0.005, 0.0801, 0.0005), 4)
SAME_BUDGET = 0.002  # distinct pairs under the same-photo cut, per original face of the training sets
SHOT_BUDGET = 0.003  # ... under the near-identical-shot cut (the issue's "distinct photos lost <= 0.3%")
# the neighbour-ratio rule (samephoto.Cuts): its grids; 0 in each turns it off
RATIO_SCORE_GRID = (0.0, 0.01, 0.015, 0.02, 0.03, 0.04, 0.06)
RATIO_GRID = (0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.3)
LONE_GRID = (0.0, 0.01, 0.015, 0.02, 0.03, 0.04, 0.06)
# the whole-image hash rule (samephoto.Cuts): bits, crop-score cut; -1 bits turns it off
HASH_BITS_GRID = (0, 2, 4, 6)
HASH_SCORE_GRID = (0.01, 0.0125, 0.015, 0.0175, 0.02, 0.025, 0.03, 0.04, 0.05)
# the small-face cut (samephoto.Cuts.coarse, pairs compared on a grid of COARSE_SIDE or fewer)
COARSE_GRID = np.round(np.arange(0.0075, 0.0301, 0.0005), 4)
SLACK = 0.01  # share of the training copies a tighter rule may give up (choose_cuts)
# ... for rare hashes, a share of the copies the rule itself adds: it adds a handful (5 with the pins
# sets left out), fewer than SLACK of all training copies, so under SLACK alone any rule finding one
# copy was "near" the most and the tightest of them left the rule all but off
RARE_SLACK = 0.25
# the face in its background (samephoto.Cuts.anchor_*): crop-score ceiling, motion cut, matches a region
ANCHOR_SCORE_GRID = (0.03, 0.05, 0.08, 0.15)
ANCHOR_MOTION_GRID = (0.002, 0.003, 0.005, 0.0075, 0.01)
ANCHOR_MATCHES_GRID = (4, 6, 8, 12, 16)
# the face's own keypoint fit (samephoto.Cuts.face_*): crop-score ceiling, fit error cut, matches
FACE_SCORE_GRID = (0.02, 0.03)  # up to the anchor grid's lowest ceiling: pairs it asks anyway (cost)
FACE_FIT_GRID = (0.02, 0.025, 0.03, 0.035, 0.04, 0.05)
FACE_MATCHES_GRID = (8, 12, 16, 24)
# rare hashes (samephoto.Cuts.rare_*): crop-score ceiling, bits, the faces' hash floor
RARE_SCORE_GRID = (0.02, 0.03, 0.05, 0.08, 0.15, 1.0)
RARE_BITS_GRID = (0, 2, 4, 6)
RARE_FLOOR_GRID = (10, 12, 14, 16, 18, 20, 24)
FACE_OFF = (0.0, 0.0, FACE_MATCHES_GRID[0])  # the face fit's cuts when it is off
WEB_MOTION_GRID = (0.004, 0.005, 0.0075, 0.01, 0.015, 0.02)  # the background test among web photos (Cuts.web_*)
WEB_FLOOR_GRID = RARE_FLOOR_GRID
WEB_MATCHES_GRID = ANCHOR_MATCHES_GRID
WEB_OFF = (0.0, 64.0, ANCHOR_MATCHES_GRID[0])
WEB_SCORE_GRID = (0.0075, 0.01, 0.0125, 0.015, 0.02, 0.025, 0.03)  # the crop score among web photos (Cuts.web_score)
WEB_SCORE_OFF = (0.0, 64.0)
# the whole image among web photos (Cuts.web_hash_*): bits, floor (WEB_FLOOR_GRID), keypoint matches
WEB_HASH_BITS_GRID = RARE_BITS_GRID
WEB_HASH_MATCHES_GRID = ANCHOR_MATCHES_GRID
WEB_HASH_OFF = (-1, 64.0, ANCHOR_MATCHES_GRID[0])
MOTION = ("motion", "n_face", "n_back", "face_fit")  # the keypoint test's answer, as anchor.face_motion gives it


def _within_own_gain(found: list, n0: int):
    """Of the rules `found` ((training copies grouped, preference key) each), the first by key among
    those within RARE_SLACK of the most copies any of them adds to the n0 grouped without them."""
    most = max(n for n, _ in found)
    return min(k for n, k in found if n >= most - RARE_SLACK * (most - n0))


def _by_own_gain(grouped_by, before, candidates, same: np.ndarray, distinct: np.ndarray):
    """The preference key of the rule chosen within a share of its own gain (_within_own_gain) among
    `candidates` ((key, cuts) each: `before` with one rule more) that add no training distinct pair
    to those `before` groups and group more training copies; None when none does. `grouped_by(cuts)`:
    which training pairs the cuts group."""
    base = grouped_by(before)
    n0, bad0 = int((base & same).sum()), int((base & distinct).sum())
    found = []
    for key, cuts in candidates:
        g = grouped_by(cuts)
        if (g & distinct).sum() <= bad0 and (g & same).sum() > n0:
            found.append((int((g & same).sum()), key))
    return _within_own_gain(found, n0) if found else None


def choose_cuts(tables: list[pd.DataFrame], ratio_rule: bool = True, hash_rule: bool = True, coarse_rule: bool = True,
                anchor_rule: bool = True, face_rule: bool = True, rare_rule: bool = True, web_rule: bool = True,
                web_score_rule: bool = True, web_hash_rule: bool = True) -> tuple:
    """The cuts that group the most training copies with the distinct pairs grouped within the
    budgets, pooled: (same photo, shot, ratio score, ratio, lone, hash score, hash bits). Without
    `ratio_rule`, the largest plain cuts (the neighbour-ratio rule off); without `hash_rule`, the
    whole-image hash rule off; without `coarse_rule`, the small-face cut off (0). The hash rule,
    then the small-face cut, are chosen after the others, within the same budget. Then the
    face-in-its-background rule (without `anchor_rule`: off): of the rules that add no training
    distinct pair to those already grouped, those within SLACK of the most training copies, and of
    them the lowest score ceiling (the fewest pairs asked: its cost is a keypoint search an image),
    then the tightest (smallest motion cut, most matches); off when none adds any. Then rare hashes
    (without `rare_rule`: off), the same way but within RARE_SLACK of the copies the rule adds
    (lowest ceiling, then the fewest bits, then the highest floor). Last the face's own fit (without `face_rule`: off): of the rules adding no
    training distinct pair, those with the most training copies (no SLACK), then the lowest
    ceiling, the smallest fit error, the most matches. Then the background test among web photos
    (without `web_rule` or the background test: off): a looser motion cut where both faces' hash
    floors are high, at the background test's ceiling; of the rules adding no training distinct
    pair, those within RARE_SLACK of the copies the rule adds at most (as rare hashes: a rule keyed
    on the hash floor), then the highest floor, the smallest motion, the most matches. Then the crop
    score among web photos (without `web_score_rule`: off), the same way: the highest floor, then
    the smallest cut. Then the whole-image hash among web photos, whatever the crop score (without
    `web_hash_rule` or the keypoint test: off), the same way but ordered as rare hashes are: the
    fewest bits, then the highest floor, then the most matches.
    Returns (same photo, shot, ratio score, ratio, lone, hash score, hash bits, small-face, anchor
    score, anchor motion, anchor matches, face score, face fit, face matches, rare score, rare bits,
    rare floor, web motion, web floor, web matches, web score, web score floor, web hash bits, web
    hash floor, web hash matches)."""
    from facesieve.select.samephoto import Cuts, grouped

    score = np.concatenate([t["score"].to_numpy() for t in tables])
    ratio = np.concatenate([t["ratio"].to_numpy() for t in tables])
    bits = np.concatenate([t["hash_bits"].to_numpy() for t in tables])
    sides = np.concatenate([t["side"].to_numpy() for t in tables])
    motion = tuple(np.concatenate([t[c].to_numpy(np.float64) for t in tables]) for c in MOTION)
    floors = np.concatenate([t["floor"].to_numpy(np.float64) if "floor" in t else np.full(len(t), np.nan) for t in tables])
    rel = np.concatenate([t["relation"].to_numpy() for t in tables])
    originals = sum(t.attrs["originals"] for t in tables)
    distinct, same = rel == "distinct", rel == "same"
    below = np.searchsorted(np.sort(score[distinct]), GRID, side="right") / originals
    if not ratio_rule and not hash_rule:
        same_cut = GRID[below <= SAME_BUDGET].max(initial=GRID[0])
        shot = GRID[below <= SHOT_BUDGET].max(initial=same_cut)
        return (float(same_cut), float(max(shot, same_cut)), 0.0, 0.0, 0.0, 0.0, -1, 0.0, 0.0, 0.0, ANCHOR_MATCHES_GRID[0], 0.0, 0.0,
                FACE_MATCHES_GRID[0], 0.0, -1, 64.0, *WEB_OFF, *WEB_SCORE_OFF, *WEB_HASH_OFF)
    found = []  # the same-photo rules within the tighter budget, with the training copies each finds
    for c0 in GRID[below <= SAME_BUDGET]:
        for c1 in (RATIO_SCORE_GRID if ratio_rule else (0.0,)):
            for rho in (RATIO_GRID if c1 > c0 else (0.0,)):
                for lone in (LONE_GRID if ratio_rule else (0.0,)):
                    g = grouped(score, ratio, c0, Cuts(c0, c0, c1, rho, lone))
                    if (g & distinct).sum() > SAME_BUDGET * originals:
                        continue
                    found.append(((g & same).sum(), (float(c0), float(c1), float(rho), float(lone))))
    # the tightest rule within SLACK of the most training copies found: a looser rule that finds
    # only a handful more training copies is not worth its risk on a set unlike the training sets
    most = max((n for n, _ in found), default=0)
    near = [cuts for n, cuts in found if n >= most - SLACK * same.sum()]
    c0, c1, rho, lone = min(near) if near else (float(GRID[0]), 0.0, 0.0, 0.0)
    # then the hash rule, the same way: within the budget, the tightest (score cut, then bits)
    # within SLACK of the most training copies; "off" when it adds none
    hs, hb = 0.0, -1
    if hash_rule:
        base = grouped(score, ratio, c0, Cuts(c0, c0, c1, rho, lone))
        found = [(int((base & same).sum()), (0.0, -1))]
        for h in HASH_SCORE_GRID:
            for b in HASH_BITS_GRID:
                g = grouped(score, ratio, c0, Cuts(c0, c0, c1, rho, lone, h, b), bits)
                if (g & distinct).sum() <= SAME_BUDGET * originals:
                    found.append((int((g & same).sum()), (h, b)))
        most = max(n for n, _ in found)
        near = [cuts for n, cuts in found if n >= most - SLACK * same.sum() and n > found[0][0]]
        hs, hb = min(near) if near else (0.0, -1)
    # then the small-face cut, the same way (off when it groups no more training copies)
    coarse = 0.0
    if coarse_rule:
        base = grouped(score, ratio, c0, Cuts(c0, c0, c1, rho, lone, hs, hb), bits)
        found = [(int((base & same).sum()), 0.0)]
        for c in COARSE_GRID[COARSE_GRID > c0]:
            g = grouped(score, ratio, c0, Cuts(c0, c0, c1, rho, lone, hs, hb, float(c)), bits, sides)
            if (g & distinct).sum() <= SAME_BUDGET * originals:
                found.append((int((g & same).sum()), float(c)))
        most = max(n for n, _ in found)
        near = [c for n, c in found if n >= most - SLACK * same.sum() and n > found[0][0]]
        coarse = min(near) if near else 0.0
    # then the face in its background: no training distinct pair added, the most copies
    anchor = (0.0, 0.0, ANCHOR_MATCHES_GRID[0])
    if anchor_rule:
        base = grouped(score, ratio, c0, Cuts(c0, c0, c1, rho, lone, hs, hb, coarse), bits, sides)
        n0, bad0 = int((base & same).sum()), int((base & distinct).sum())
        found = []
        for a_s in ANCHOR_SCORE_GRID:
            for a_m in ANCHOR_MOTION_GRID:
                for a_k in ANCHOR_MATCHES_GRID:
                    c = Cuts(c0, c0, c1, rho, lone, hs, hb, coarse, a_s, a_m, a_k)
                    g = grouped(score, ratio, c0, c, bits, sides, motion)
                    if (g & distinct).sum() <= bad0 and (g & same).sum() > n0:
                        found.append((int((g & same).sum()), (a_s, a_m, -a_k)))
        if found:  # within SLACK of the most: the lowest score ceiling (fewest pairs asked: the cost), then the tightest
            most = max(n for n, _ in found)
            a_s, a_m, neg_k = min(k for n, k in found if n >= most - SLACK * same.sum())
            anchor = (a_s, a_m, -neg_k)
    def grouped_by(cuts):
        return grouped(score, ratio, c0, cuts, bits, sides, motion, floors)

    # then rare hashes, the same way (before the face fit: what the face fit takes must not move which
    # rare-hash rule is the tightest within SLACK; the rare-hash rule is the one that can merge a
    # studio series' distinct photos)
    rare = (0.0, -1, 64.0)
    if rare_rule:
        before = Cuts(c0, c0, c1, rho, lone, hs, hb, coarse, *anchor, *FACE_OFF)
        candidates = (((r_s, r_b, -r_f), replace(before, rare_score=r_s, rare_bits=r_b, rare_floor=float(r_f)))
                      for r_s in RARE_SCORE_GRID for r_b in RARE_BITS_GRID for r_f in RARE_FLOOR_GRID)
        key = _by_own_gain(grouped_by, before, candidates, same, distinct)
        if key is not None:
            rare = (key[0], key[1], float(-key[2]))
    # last the face's own fit: of the rules that add no training distinct pair, the one with the most
    # training copies (no SLACK: on every shared set no distinct pair fits as one face at any of the
    # grid's ceilings), then the lowest ceiling, the smallest fit error, the most matches
    face = FACE_OFF
    if face_rule:
        base = grouped(score, ratio, c0, Cuts(c0, c0, c1, rho, lone, hs, hb, coarse, *anchor, *FACE_OFF, *rare), bits, sides, motion, floors)
        n0, bad0 = int((base & same).sum()), int((base & distinct).sum())
        found = []
        for f_s in FACE_SCORE_GRID:
            for f_e in FACE_FIT_GRID:
                for f_k in FACE_MATCHES_GRID:
                    g = grouped(score, ratio, c0, Cuts(c0, c0, c1, rho, lone, hs, hb, coarse, *anchor, f_s, f_e, f_k, *rare),
                                bits, sides, motion, floors)
                    if (g & distinct).sum() <= bad0 and (g & same).sum() > n0:
                        found.append((int((g & same).sum()), (f_s, f_e, -f_k)))
        if found:
            most = max(n for n, _ in found)
            f_s, f_e, neg_k = min(k for n, k in found if n == most)
            face = (f_s, f_e, -neg_k)
    # then the background test among web photos: a looser motion where both faces' floors are high
    web = WEB_OFF
    if web_rule and anchor[1] > 0:
        before = Cuts(c0, c0, c1, rho, lone, hs, hb, coarse, *anchor, *face, *rare)
        candidates = (((-w_f, w_m, -w_k), replace(before, web_motion=w_m, web_floor=float(w_f), web_matches=w_k))
                      for w_m in WEB_MOTION_GRID if w_m > anchor[1] for w_f in WEB_FLOOR_GRID for w_k in WEB_MATCHES_GRID)
        key = _by_own_gain(grouped_by, before, candidates, same, distinct)
        if key is not None:
            web = (key[1], float(-key[0]), -key[2])
    # then the crop score among web photos, the same way (the highest floor, then the smallest cut)
    web_score = WEB_SCORE_OFF
    if web_score_rule:
        before = Cuts(c0, c0, c1, rho, lone, hs, hb, coarse, *anchor, *face, *rare, *web)
        candidates = (((-w_f, w_s), replace(before, web_score=w_s, web_score_floor=float(w_f)))
                      for w_s in WEB_SCORE_GRID if w_s > c0 for w_f in WEB_FLOOR_GRID)
        key = _by_own_gain(grouped_by, before, candidates, same, distinct)
        if key is not None:
            web_score = (key[1], float(-key[0]))
    # then the whole image among web photos, the same way but ordered as rare hashes are (the fewest
    # bits, then the highest floor, then the most matches)
    web_hash = WEB_HASH_OFF
    if web_hash_rule and anchor_rule:
        before = Cuts(c0, c0, c1, rho, lone, hs, hb, coarse, *anchor, *face, *rare, *web, *web_score)
        candidates = (((w_b, -w_f, -w_k), replace(before, web_hash_bits=w_b, web_hash_floor=float(w_f), web_hash_matches=w_k))
                      for w_b in WEB_HASH_BITS_GRID for w_f in WEB_FLOOR_GRID for w_k in WEB_HASH_MATCHES_GRID)
        key = _by_own_gain(grouped_by, before, candidates, same, distinct)
        if key is not None:
            web_hash = (key[0], float(-key[1]), -key[2])
    # then the shot cut: the same choice (within the shot budget, the tightest within SLACK of the most)
    shots = [(int((g & same).sum()), float(c)) for c in GRID[GRID >= c0]
             for g in [grouped(score, ratio, c, Cuts(c0, c, c1, rho, lone, hs, hb, coarse, *anchor, *face, *rare, *web, *web_score, *web_hash), bits,
                               sides, motion, floors)]
             if (g & distinct).sum() <= SHOT_BUDGET * originals]
    most = max((n for n, _ in shots), default=0)
    shot = min((c for n, c in shots if n >= most - SLACK * same.sum()), default=c0)
    return (c0, shot, c1, rho, lone, hs, hb, coarse, *anchor, *face, *rare, *web, *web_score, *web_hash)


# ---------------------------------------------------------------- scoring a run


def run_set(root: Path, name: str, cuts: tuple, mode: str) -> pd.DataFrame:
    from facesieve import pipeline as pl
    from facesieve.decide import DECISION_COLUMNS  # noqa: F401

    config = set_config(root, name, duplicates=mode, extra={"same_photo_cut": cuts[0], "shot_cut": cuts[1], "ratio_score_cut": cuts[2], "ratio_cut": cuts[3],
                                                            "lone_cut": cuts[4], "hash_score_cut": cuts[5], "hash_bits": cuts[6],
                                                            "coarse_cut": cuts[7], "anchor_score_cut": cuts[8],
                                                            "anchor_motion_cut": cuts[9], "anchor_matches": cuts[10],
                                                            "face_score_cut": cuts[11], "face_fit_cut": cuts[12], "face_matches": cuts[13],
                                                            "rare_score_cut": cuts[14], "rare_bits": cuts[15], "rare_floor": cuts[16],
                                                            "web_motion_cut": cuts[17], "web_floor": cuts[18], "web_matches": cuts[19],
                                                            "web_score_cut": cuts[20], "web_score_floor": cuts[21],
                                                            "web_hash_bits": cuts[22], "web_hash_floor": cuts[23],
                                                            "web_hash_matches": cuts[24]})
    frame, fvec, _ = faces_pass(config)
    d = pl.decide_all(frame, fvec, config, None)
    return pl.build_manifest(frame, d.decisions)


def score_run(manifest: pd.DataFrame, root: Path, name: str) -> dict:
    copies, photos = labels(root, name)
    m = manifest.set_index("path")
    # each removal judged by the face it names; grouping by where its chain of removals ends
    kept_of = {p: (d if isinstance(d, str) and d and r in DUP_REASONS else p)
               for p, d, r in zip(m.index, m["duplicate_of"].fillna(""), m["reason"])}
    group = kept_face(manifest)
    face = set(m.index[m["status"] == "ok"])
    found = [c in face and s in face and group[c] == group[s] for c, s in zip(copies["path"], copies["source"])]
    copies = copies.assign(found=found, face=[c in face for c in copies["path"]])
    missed = copies[~copies["found"]]
    removed = m.index[m["reason"].isin(DUP_REASONS)]
    rel = [photos.relation(p, kept_of[p]) for p in removed]
    wrong = [p for p, r in zip(removed, rel) if r == "distinct"]
    if name in UNKNOWN_SHOTS:
        wrong = []
    originals = [p for p in face if p not in photos.copy_paths]
    lost = [p for p in wrong if p not in photos.copy_paths]
    out = {
        "copies": len(copies), "no_face": int((~copies["face"]).sum()),
        "recall": float(np.mean(found)), "by_kind": copies.groupby("kind")["found"].mean().to_dict(),
        "distinct_merged": len(wrong), "originals": len(originals), "lost": len(lost),
        "lost_share": len(lost) / max(len(originals), 1), "lost_paths": lost,
        "bursts_removed": sum(r == "burst" for r in rel),
        "missed": list(zip(missed["path"], missed["source"], missed["kind"])),
    }
    base = SMALL.get(name, name)
    same, bursts = natural_pairs(DATA, base)
    if name in SMALL:
        same = [tuple(str(Path(p).with_suffix(".png")) for p in pr) for pr in same]
        bursts = [[str(Path(p).with_suffix(".png")) for p in g] for g in bursts]
    if same:
        ok = [a in face and b in face and group[a] == group[b] for a, b in same]
        out["natural_same"] = (int(sum(ok)), len(same))
    if bursts:
        collapsed = [len({group[p] for p in g if p in face}) == 1 for g in bursts]
        out["bursts_collapsed"] = (int(sum(collapsed)), len(bursts))
    if name in UNKNOWN_SHOTS:
        out["frames_grouped"] = int(sum(r != "same" for r in rel))
    if name == "yaleB_cropped10":
        n_pairs = sum(k * (k - 1) // 2 for k in m[m["status"] == "ok"].loc[lambda x: ~x.index.isin(photos.copy_paths)]
                      .groupby("identity").size())
        out["yale_pairs_merged_share"] = len(lost) / max(n_pairs, 1)
    return out


def miss_causes(table: pd.DataFrame, missed: list, cuts: tuple) -> pd.DataFrame:
    """Why each missed copy was missed: never a candidate pair (not among its source's nearest
    faces by cosine, nor within the candidate hash bits), scored above every cut, or its pair
    grouped but the copy put in another group (leader clustering: no chaining)."""
    from facesieve.select.samephoto import Cuts, grouped

    look = {}
    for a, b, sc, r, h, d, f, *m in zip(table["a"], table["b"], table["score"], table["ratio"], table["hash_bits"], table["side"],
                                        table["floor"], *(table[c] for c in MOTION)):
        look[(a, b)] = look[(b, a)] = (sc, r, h, d, f, tuple(m))
    rows = []
    for c, s, kind in missed:
        if (c, s) not in look:
            cause = "never a candidate"
        else:
            sc, r, h, d, f, m = look[(c, s)]
            cause = "grouped elsewhere" if grouped([sc], [r], cuts[1], Cuts(*cuts), [h], [d], tuple([v] for v in m), [f])[0] \
                else "scored above the cuts"
        rows.append((kind, cause))
    return pd.DataFrame(rows, columns=["kind", "cause"])


def fmt_kinds(by_kind: dict) -> str:
    return " ".join(f"{k} {v:.2f}" for k, v in sorted(by_kind.items()))


def cost(root: Path, name: str, repeat: int = 2) -> dict:
    """Duplicate stage from a cold pair cache, beside the faces pass of the same set; the shipped
    rule against the same without the keypoint tests (`anchor_motion_cut`, `web_motion_cut` and `face_fit_cut` 0,
    `web_hash_bits` -1), alternating,
    `repeat` times each, best of each."""
    from facesieve import pipeline as pl

    runs: dict[str, list] = {"on": [], "off": []}
    for _ in range(repeat):
        for label, extra in (("off", {"anchor_motion_cut": 0.0, "face_fit_cut": 0.0, "web_motion_cut": 0.0, "web_hash_bits": -1}), ("on", {})):
            config = set_config(root, name, extra=extra)
            frame, fvec, _ = faces_pass(config)
            # every version's pair file is set aside: a run takes an older version's keypoint answers
            saved = {p: p.read_bytes() for p in config.workspace.glob("pair-scores-*.parquet")}
            for p in saved:
                p.unlink()
            rep = Reporter(quiet=True)
            t0 = time.perf_counter()
            c0 = time.process_time()
            try:
                d = pl.decide_all(frame, fvec, config, rep)
            finally:
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                for p, data in saved.items():
                    p.write_bytes(data)
            runs[label].append((rep.timings.get("duplicates", wall), cpu, d))
    faces = faces_seconds(root, name, fresh=True)  # in this run, beside the stage it divides
    dup, cpu, d = min(runs["on"], key=lambda r: r[0])
    off = min(r[0] for r in runs["off"])
    return {"pairs": d.pixel_pairs, "asked": d.background_checks, "dup_s": dup, "off_s": off, "faces_s": faces,
            "ratio": dup / faces, "ms_per_pair": 1000 * dup / max(d.pixel_pairs, 1), "cpu_ms_per_pair": 1000 * cpu / max(d.pixel_pairs, 1)}


# --rule: which rules choose_cuts may use (ratio, hash, small-face, background, face fit, rare hash)
RULES = {"all": (True, True, True, True, True, True), "no-rare": (True, True, True, True, True, False),
         "no-face": (True, True, True, True, False, False), "no-anchor": (True, True, True, False, False, False),
         "hash": (True, True, False, False, False, False), "ratio": (True, False, False, False, False, False),
         "plain": (False, False, False, False, False, False), "plain+hash": (False, True, False, False, False, False),
         "no-web": (True, True, True, True, True, True, False, False, False),
         "no-web-score": (True, True, True, True, True, True, True, False, False),
         "no-web-hash": (True, True, True, True, True, True, True, True, False)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=Path("/tmp/bench15"))
    ap.add_argument("--sets", default=",".join(SETS + tuple(SMALL)))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--share", type=float, default=0.25, help="copies injected per original (at least 40 a set)")
    ap.add_argument("--prepare-only", action="store_true")
    ap.add_argument("--no-cost", action="store_true", help="skip the cold timing of the duplicate stage")
    ap.add_argument("--rule", choices=tuple(RULES), default="all",
                    help="all: plain cuts, the neighbour-ratio rule, the whole-image hash rule, the small-face cut, "
                         "the face in its background (looser among web photos), rare hashes and the face's own keypoint fit "
                         "(the shipped rule); no-rare: "
                         "without rare hashes; no-face: without the face fit either; no-anchor: without the face in its "
                         "background either; hash: without the "
                         "small-face cut either; ratio: without the hash rule too; plain: the plain cuts only; "
                         "plain+hash: the plain cuts and the hash rule; no-web: the shipped rule without the background "
                         "test's looser motion among web photos (nor the two rules after it); no-web-score: without the crop "
                         "score among web photos (nor the hash among them); no-web-hash: without the whole-image hash among "
                         "web photos")
    ap.add_argument("--seeds", default=None,
                    help="several injection seeds, e.g. 0,1,2: the whole leave-one-set-out run for each, seed N under "
                         "ROOT/seed-N, then each left-out figure per seed and their mean (a rule is judged on all of them)")
    args = ap.parse_args()
    if args.seeds is None:
        loso(args.root, args.seed, args)
        return 0
    summary = {}
    for seed in (int(x) for x in args.seeds.split(",")):
        print(f"\n======== seed {seed} (ROOT {args.root / f'seed-{seed}'})", flush=True)
        summary[seed] = loso(args.root / f"seed-{seed}", seed, args)
    if not args.prepare_only:
        print_seeds(summary)
    return 0


def overall_recall(rows, mode: str) -> float:
    """Recall over every left-out copy of the rows (each set's figures in `mode`: "shots" is the default run)."""
    rows = list(rows)
    return sum(r[mode]["recall"] * r[mode]["copies"] for r in rows) / sum(r[mode]["copies"] for r in rows)


def print_seeds(summary: dict) -> None:
    """Each seed's left-out figures side by side, with their mean: recall (default mode) per set and
    overall, photos lost, README pairs grouped."""
    sets = list(next(iter(summary.values())))
    print("\nLEFT-OUT FIGURES BY SEED (default mode; cuts chosen without the set, per seed)")
    print("| set | " + " | ".join(f"seed {k}: recall / photos lost / README same" for k in summary) + " | mean recall |")
    for n in sets:
        cells = []
        for rows in summary.values():
            s = rows[n]["shots"]
            nat = s.get("natural_same")
            cells.append(f"{s['recall']:.3f} / {s['lost']} of {s['originals']} / {'%d of %d' % nat if nat else '-'}")
        mean = np.mean([rows[n]["shots"]["recall"] for rows in summary.values()])
        print(f"| {n} | " + " | ".join(cells) + f" | {mean:.3f} |")
    overall = [overall_recall(rows.values(), "shots") for rows in summary.values()]
    print("| all copies | " + " | ".join(f"{o:.3f}" for o in overall) + f" | {np.mean(overall):.3f} |")


def loso(root: Path, seed: int, args) -> dict:
    """The leave-one-set-out run on the sets injected with `seed` under `root`, printed; returns
    each left-out set's cuts and figures (empty with --prepare-only)."""
    names = args.sets.split(",")
    for name in names:
        t = time.perf_counter()
        copies = prepare(root, name, seed, args.share)
        print(f"{name}: {len(copies)} copies, prepared in {time.perf_counter() - t:.0f} s", flush=True)
    if args.prepare_only:
        return {}
    tables = {n: pair_table(root, n) for n in names}
    for n, t in tables.items():
        g = t.groupby("relation")["score"]
        print(f"{n}: {len(t)} candidate pairs; score by relation: " + "; ".join(
            f"{r} n={len(v)} p1 {v.quantile(.01):.4f} median {v.median():.4f} p99 {v.quantile(.99):.4f}" for r, v in g), flush=True)
    # the 64-pixel versions are held out together with their source set (same photos at another size)
    family = {n: SMALL.get(n, n) for n in names}
    print("\nLEAVE-ONE-SET-OUT (cuts chosen on the other sets; figures on the left-out set only)")
    print("| left out | cuts same/shot/ratio score/ratio/lone/hash score/hash bits/small-face/anchor score/motion/matches/face score/fit/matches/rare score/bits/floor/web motion/floor/matches/web score/floor/web hash bits/floor/matches | copies | no face | recall (copies mode) | recall (default) | per kind (default) | "
          "distinct merged / photos lost (copies) | distinct merged / photos lost (default) | README same | bursts (default / copies) |")
    rows = []
    for n in names:
        train = [tables[m] for m in names if family[m] != family[n]]
        cuts = choose_cuts(train, *RULES[args.rule])
        res = {mode: score_run(run_set(root, n, cuts, mode), root, n) for mode in ("copies", "shots")}
        c, s = res["copies"], res["shots"]
        nat = s.get("natural_same")
        bur = (s.get("bursts_collapsed"), c.get("bursts_collapsed"))
        extra = ""
        if "yale_pairs_merged_share" in s:
            extra = f" (yaleB pairs merged {s['yale_pairs_merged_share']:.2%})"
        if "frames_grouped" in s:
            extra = f" (frames grouped: {s['frames_grouped']})"
        print(f"| {n} | {'/'.join(f'{x:.4g}' for x in cuts)} | {s['copies']} | {s['no_face']} | {c['recall']:.3f} | {s['recall']:.3f} | "
              f"{fmt_kinds(s['by_kind'])} | {c['distinct_merged']} / {c['lost']} of {c['originals']} ({c['lost_share']:.2%}) | "
              f"{s['distinct_merged']} / {s['lost']} of {s['originals']} ({s['lost_share']:.2%}){extra} | "
              f"{'%d of %d' % nat if nat else '-'} | {'%d of %d' % bur[0] if bur[0] else '-'} / "
              f"{'%d of %d' % bur[1] if bur[1] else '-'} |", flush=True)
        rows.append({"set": n, "cuts": cuts, "copies": c, "shots": s})
    kinds = pd.DataFrame([{**{"set": r["set"]}, **r["shots"]["by_kind"]} for r in rows]).set_index("set")
    print("\nrecall per kind, default mode, left-out sets:\n" + kinds.round(3).to_string())
    causes = pd.concat([miss_causes(tables[r["set"]], r["shots"]["missed"], r["cuts"]).assign(set=r["set"]) for r in rows])
    if len(causes):
        print("\nmissed copies (default mode, left-out sets) by cause:\n" + pd.crosstab(causes["set"], causes["cause"], margins=True).to_string())
        print("\nby kind:\n" + pd.crosstab(causes["kind"], causes["cause"], margins=True).to_string())
    print(f"\noverall left-out recall (default): {overall_recall(rows, 'shots'):.3f}; (copies mode): {overall_recall(rows, 'copies'):.3f}")
    final = choose_cuts(list(tables.values()), *RULES[args.rule])
    print("\nshipped cuts, chosen on all sets (no left-out figure exists for them): same photo {:.4g}, shot {:.4g}, "
          "ratio score {:.4g}, ratio {:.4g}, lone {:.4g}, hash score {:.4g}, hash bits {}, small-face {:.4g}, "
          "anchor score {:.4g}, anchor motion {:.4g}, anchor matches {}, face score {:.4g}, face fit {:.4g}, face matches {}, "
          "rare score {:.4g}, rare bits {}, rare floor {:.4g}, web motion {:.4g}, web floor {:.4g}, web matches {}, "
          "web score {:.4g}, web score floor {:.4g}, web hash bits {}, web hash floor {:.4g}, web hash matches {}".format(*final))
    (root / "loso.json").write_text(json.dumps(rows, default=str, indent=1))
    if not args.no_cost:
        print("\ncost (cold pair cache; the faces pass timed again in this run, on a scratch workspace):")
        print("| set | pairs scored | pairs asked about their background | duplicate stage s (without that test) | faces pass s | ratio | "
              "wall ms per pair | CPU ms per pair (whole decide) |")
        for n in names:
            c = cost(root, n)
            print(f"| {n} | {c['pairs']} | {c['asked']} | {c['dup_s']:.2f} ({c['off_s']:.2f}) | {c['faces_s']:.1f} | {c['ratio']:.1%} | "
                  f"{c['ms_per_pair']:.2f} | {c['cpu_ms_per_pair']:.2f} |", flush=True)
    return {r["set"]: r for r in rows}


if __name__ == "__main__":
    sys.exit(main())
