"""The face-crop same-photo test (select/samephoto.py) on real photos, and the duplicate stage
around it (modes, cache, removed flags).

Copies are made as the web makes them (facesieve.augment.web_copy, saved by web_bytes: JPEG mostly)
and run through the real detect -> align path, so the crops compared are the ones a run compares.
The cuts are the shipped ones (select/thresholds.py), chosen on the shared sets by
bench/bench_duplicates.py; the figures these tests hold them to are in docs/thresholds.md.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from facesieve.augment import WEB_COPY_KINDS, web_bytes, web_copy
from facesieve.imaging import load_rgb
from facesieve.select.samephoto import FaceViews, face_scale, pair_scores, pair_side
from facesieve.select.thresholds import SAME_PHOTO_CUT, SHOT_CUT
from facesieve.stages import LANDMARK_COLUMNS, FaceTask, faces_worker


def faces_of(images: list[tuple[str, bytes | str]]):
    """Crops and landmarks of (name, file bytes or path) through the real faces stage."""
    import tempfile
    from pathlib import Path

    crops, lms, sizes, hashes = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for n, (name, data) in enumerate(images):
            path = data
            if isinstance(data, bytes):
                path = str(Path(tmp) / f"{n}_{name}")
                Path(path).write_bytes(data)
            row, crop = faces_worker(FaceTask(str(n), "k", str(path), "yunet", "central", False, True))
            assert row["status"] == "ok", (name, row["reason"])
            crops.append(crop)
            lms.append([row[c] for c in LANDMARK_COLUMNS])
            sizes.append((row["width"], row["height"]))
            hashes.append((row["phash"], row["phash_mirror"]))
    lm, wh = np.array(lms), np.array(sizes, np.float64)
    views = FaceViews(np.stack(crops), face_scale(lm), (lm, wh[:, 0], wh[:, 1]))
    views.hashes = np.array(hashes, np.int64).view(np.uint64)  # whole-image pHash and its mirror's, as a run stores them
    return views


def hash_bits(views, i, j) -> np.ndarray:
    from facesieve.select.neardup import hash_distance

    return hash_distance(views.hashes, np.asarray(i), np.asarray(j))


def shipped_cuts():
    from facesieve.select.samephoto import Cuts
    from facesieve.select.thresholds import (COARSE_CUT, HASH_BITS, HASH_SCORE_CUT, LONE_CUT, RARE_BITS, RARE_FLOOR, RARE_SCORE_CUT, RATIO_CUT,
                                             RATIO_SCORE_CUT)

    return Cuts(SAME_PHOTO_CUT, SHOT_CUT, RATIO_SCORE_CUT, RATIO_CUT, LONE_CUT, HASH_SCORE_CUT, HASH_BITS, COARSE_CUT,
                rare_score=RARE_SCORE_CUT, rare_bits=RARE_BITS, rare_floor=RARE_FLOOR)


@pytest.fixture(scope="module")
def web_people(shared_data):
    """Three pins_web identities, six photos each: the first photo of each gets a copy of every kind."""
    rng = np.random.default_rng(7)
    out = []
    for ident in ("Anne_Hathaway", "Bill_Gates", "Emma_Stone"):
        photos = sorted((shared_data / "pins_web" / ident).glob("*.jpg"))[:6]
        items = [(p.name, str(p)) for p in photos]
        src = load_rgb(photos[0])
        for kind in WEB_COPY_KINDS:
            data, suffix = web_bytes(web_copy(src, kind, rng)[0], kind, rng)
            items.append((kind + suffix, data))
        out.append((ident, faces_of(items)))
    return out


def test_every_kind_is_closer_to_its_source_than_any_other_photo(web_people):
    """The score ranks each copy (every kind, composites included) below every other photo of
    the same person, and most copies fall under the shipped cut."""
    under = []
    for ident, views in web_people:
        others = pair_scores(views, np.zeros(5, int), np.arange(1, 6))
        copies = pair_scores(views, np.zeros(len(WEB_COPY_KINDS), int), np.arange(6, 6 + len(WEB_COPY_KINDS)))
        print(ident, "other photos", others.round(4), "copies", dict(zip(WEB_COPY_KINDS, copies.round(4))))
        assert copies.max() < others.min(), ident
        assert others.min() > SHOT_CUT  # distinct web photos are never grouped
        under.extend(copies <= SHOT_CUT)
    print("copies under the shot cut", int(np.sum(under)), "of", len(under))
    assert abs(int(np.sum(under)) - 32) <= 1  # measured: 32 of 33 (Anne_Hathaway's caption over the face is not)


def test_jpeg_resaved_flip_is_the_same_photo(shared_data):
    src = load_rgb(shared_data / "deepface13" / "person01" / "img1.jpg")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(src[:, ::-1])).save(buf, "JPEG", quality=75)
    views = faces_of([("src.jpg", str(shared_data / "deepface13" / "person01" / "img1.jpg")),
                      ("flip.jpg", buf.getvalue()),
                      ("other.jpg", str(shared_data / "deepface13" / "person01" / "img2.jpg"))])
    flip, other = pair_scores(views, np.array([0, 0]), np.array([1, 2]))
    print("flipped JPEG re-save", flip, "another photo", other)
    assert flip <= SAME_PHOTO_CUT and other > SHOT_CUT and flip < other / 10


def test_64_pixel_faces(shared_data):
    """A 64-pixel face crop and its JPEG re-save (q70) are one photo; other 64-pixel photos of the
    person are not."""
    import cv2

    items = []
    for p in sorted((shared_data / "pins_web" / "Chris_Pratt").glob("*.jpg"))[:5]:
        rgb = load_rgb(p)
        f = 64 / max(rgb.shape[:2])
        small = cv2.resize(rgb, (round(rgb.shape[1] * f), round(rgb.shape[0] * f)), interpolation=cv2.INTER_AREA)
        buf = io.BytesIO()
        Image.fromarray(small).save(buf, "PNG")
        items.append((p.stem + ".png", buf.getvalue()))
        if len(items) == 1:
            buf = io.BytesIO()
            Image.fromarray(small).save(buf, "JPEG", quality=70)
            items.append(("copy.jpg", buf.getvalue()))
    views = faces_of(items)
    s = pair_scores(views, np.zeros(5, int), np.arange(1, 6))
    print("64 px: copy", s[0], "others", s[1:])
    assert s[0] <= SAME_PHOTO_CUT and s[1:].min() > SHOT_CUT
    # most 64-pixel faces are compared on a coarse grid, where the small-face cut applies; it
    # groups none of the other photos either
    from facesieve.select.samephoto import COARSE_SIDE, grouped, pair_side

    sides = pair_side(views.scales, np.zeros(5, int), np.arange(1, 6))
    assert (sides <= COARSE_SIDE).sum() >= 3, sides
    g = grouped(s, np.ones(5), SHOT_CUT, shipped_cuts(), hash_bits(views, np.zeros(5, int), np.arange(1, 6)), sides)
    assert g.tolist() == [True, False, False, False, False]


def test_framed_and_captioned_tight_crops_are_the_same_photo(shared_data):
    """yaleB's images are tight face crops: the aligned crop repeats the image edge beyond it, where
    a framed or captioned copy has its frame or caption. Only the pixels inside both images count,
    so these copies score far below other lighting conditions, and lower than without the mask."""
    rng = np.random.default_rng(3)
    paths = sorted((shared_data / "yaleB_cropped10" / "yaleB01").glob("*.pgm"))[:6]
    src = load_rgb(paths[0])
    items = [(p.name, str(p)) for p in paths]
    kinds = ("border", "overlay", "border")
    for kind in kinds:
        data, suffix = web_bytes(web_copy(src, kind, rng)[0], kind, rng)
        items.append((kind + suffix, data))
    views = faces_of(items)
    copies = pair_scores(views, np.zeros(len(kinds), int), np.arange(6, 6 + len(kinds)))
    others = pair_scores(views, np.zeros(5, int), np.arange(1, 6))
    print("yaleB01 framed/captioned copies", dict(zip(kinds, copies.round(4))), "other lighting", others.round(4))
    # (not all under the shot cut: yaleB's border recall on left-out sets is in docs/thresholds.md)
    assert np.median(copies) <= 0.01 and copies.max() < others.min() / 5
    no_mask = FaceViews(views.crops, views.scales)  # without the image geometry: the old behaviour
    assert pair_scores(no_mask, np.zeros(len(kinds), int), np.arange(6, 6 + len(kinds))).max() > copies.max()


def test_a_pair_score_does_not_depend_on_its_batch(shared_data):
    """A pair's score is a function of its two faces only: scored alone, or in one batch with faces
    that reach past their image's edge (yaleB's tight crops, a framed copy), it is the same."""
    rng = np.random.default_rng(5)
    web = shared_data / "deepface13" / "person01" / "img1.jpg"
    data, suffix = web_bytes(web_copy(load_rgb(web), "reencode", rng)[0], "reencode", rng)
    yale = sorted((shared_data / "yaleB_cropped10" / "yaleB01").glob("*.pgm"))[:2]
    framed, fsuffix = web_bytes(web_copy(load_rgb(yale[0]), "border", rng)[0], "border", rng)
    views = faces_of([("img1.jpg", str(web)), ("copy" + suffix, data), (yale[0].name, str(yale[0])),
                      (yale[1].name, str(yale[1])), ("framed" + fsuffix, framed)])
    side = int(pair_side(views.scales, [0], [1])[0])
    assert views.mask(0, side).all() and views.mask(1, side).all()  # the web face lies inside its image
    assert not views.mask(2, side).all()  # the tight crop does not
    i, j = np.array([0, 2, 2, 0]), np.array([1, 3, 4, 2])
    together = pair_scores(views, i, j)
    alone = np.array([pair_scores(views, i[t : t + 1], j[t : t + 1])[0] for t in range(i.size)])
    np.testing.assert_array_equal(together, alone)


def test_neighbour_ratio_rule():
    """A pair far closer than its faces' other neighbours is one photo above the plain cut; a pair
    as close as the rest of its sitting is not; a pair with no other neighbour has its own cut."""
    from facesieve.select.samephoto import Cuts, grouped, neighbour_ratio

    a = ["x", "x", "y", "p", "p", "q", "l"]
    b = ["y", "z", "z", "q", "r", "r", "m"]
    s = np.array([0.009, 0.2, 0.2, 0.009, 0.012, 0.011, 0.012])
    r = neighbour_ratio(a, b, s)
    assert r[0] == pytest.approx(0.009 / 0.2) and r[3] == pytest.approx(0.009 / np.median([0.012, 0.011]))
    assert np.isnan(r[6])
    cuts = Cuts(0.0065, 0.007, 0.01, 0.075, 0.015)
    g = grouped(s, r, cuts.shot, cuts)
    assert g.tolist() == [True, False, False, False, False, False, True]
    assert not grouped(s, r, cuts.shot, Cuts(0.0065, 0.007)).any()  # the rule off


def test_whole_image_hash_pairs_and_rule(web_people):
    """The second signal: a copy that keeps the whole image's framing (re-encode, tone, grey,
    resize, flip) keeps its pHash within the shipped bits, other photos of the person do not; such
    a pair is a candidate whatever its cosine (neardup.hash_pairs) and one photo up to the hash
    rule's crop-score cut, which is above the plain cut."""
    from facesieve.select.neardup import hash_pairs
    from facesieve.select.samephoto import grouped
    from facesieve.select.thresholds import HASH_BITS, HASH_SCORE_CUT, PAIR_HASH_BITS

    kept = [WEB_COPY_KINDS.index(k) + 6 for k in ("reencode", "tone", "grayscale", "resize", "flip")]
    assert HASH_SCORE_CUT > SAME_PHOTO_CUT and 0 <= HASH_BITS <= PAIR_HASH_BITS
    within = 0
    for ident, views in web_people:
        copies, others = hash_bits(views, np.zeros(len(kept), int), kept), hash_bits(views, np.zeros(5, int), np.arange(1, 6))
        print(ident, "hash bits: copies", copies, "other photos", others)
        within += int((copies <= HASH_BITS).sum())
        assert others.min() > PAIR_HASH_BITS
        pairs = hash_pairs(views.hashes, PAIR_HASH_BITS, 6)
        assert {(0, k) for k, b in zip(kept, copies) if b <= PAIR_HASH_BITS} <= pairs
        assert not any(a < 6 and b < 6 for a, b in pairs)  # no two distinct photos
    assert abs(within - 14) <= 1, within  # measured: 14 of 15 (Bill_Gates's tone copy is 4 bits off)
    # the rule itself: a pair above the plain cut is grouped only with close hashes
    s, r = np.array([0.009, 0.009]), np.ones(2)  # as close as their other neighbours: the ratio rule does not take them
    g = grouped(s, r, SAME_PHOTO_CUT, shipped_cuts(), np.array([HASH_BITS, HASH_BITS + 3]))
    assert g.tolist() == [s[0] <= HASH_SCORE_CUT, False]


def test_rare_hash_rule_speaks_only_where_the_identity_spreads_its_hashes(shared_data):
    """Rare hashes (Cuts.rare_*): a face's hash floor (neardup.hash_floors) is what its identity's
    other photos come down to in hash bits. Web photos of a person sit far apart, a studio series
    (ORL's sittings, yaleB's lighting, a video's frames) close together: the rule, which needs both
    faces' floors at RARE_FLOOR, cannot group two photos of a series, however close their hashes."""
    from facesieve.imaging import image_hashes
    from facesieve.select.neardup import hash_distance, hash_floors
    from facesieve.select.samephoto import grouped
    from facesieve.select.thresholds import HASH_SCORE_CUT, RARE_BITS, RARE_FLOOR, RARE_SCORE_CUT

    d = shared_data
    essex = sorted(p for p in (d / "essex_faces94_19").iterdir() if p.is_dir())[0]
    series = {"orl_s01": sorted((d / "orl_att40" / "s01").glob("*.pgm")), "orl_s02": sorted((d / "orl_att40" / "s02").glob("*.pgm")),
              "yaleB01": sorted((d / "yaleB_cropped10" / "yaleB01").glob("*"))[:40], "essex": sorted(essex.glob("*.jpg"))}
    web = {k: sorted((d / "pins_web" / k).glob("*.jpg")) for k in ("Anne_Hathaway", "Bill_Gates")}
    paths = [(k, p) for k, ps in {**series, **web}.items() for p in ps]
    ph = np.array([image_hashes(load_rgb(p))[::2] for _, p in paths], np.uint64)
    labels = np.array([k for k, _ in paths])
    floors = hash_floors(ph, labels)
    for k in {**series, **web}:
        print(k, "faces", int((labels == k).sum()), "floor median", np.nanmedian(floors[labels == k]).round(1))
    for k in web:  # measured: medians 21.6 and 23.8
        assert np.nanmedian(floors[labels == k]) >= RARE_FLOOR
    for k in ("yaleB01", "essex"):  # measured: medians 11.6 and 2.0 (ORL's sittings move more: 15.6, 21.6)
        assert np.nanmedian(floors[labels == k]) < RARE_FLOOR
    close = 0
    for k in series:
        idx = np.flatnonzero(labels == k)
        i, j = (idx[x] for x in np.triu_indices(len(idx), 1))
        bits = hash_distance(ph, i, j)
        close += int((bits <= RARE_BITS).sum())
        assert not ((bits <= RARE_BITS) & (np.fmin(floors[i], floors[j]) >= RARE_FLOOR)).any()
    assert close > 0  # the series do hold pairs within the bits: the floor is what keeps them apart
    # the rule itself: above the hash rule's score cut, grouped only with a spread identity's floor
    assert HASH_SCORE_CUT < RARE_SCORE_CUT
    s, r, bits = np.full(3, RARE_SCORE_CUT), np.ones(3), np.array([RARE_BITS, RARE_BITS, RARE_BITS + 1])
    g = grouped(s, r, SAME_PHOTO_CUT, shipped_cuts(), bits, floors=np.array([RARE_FLOOR, RARE_FLOOR - 1, RARE_FLOOR]))
    assert g.tolist() == [True, False, False]
    assert not grouped(s, r, SAME_PHOTO_CUT, shipped_cuts(), bits, floors=np.full(3, np.nan)).any()
    assert not grouped(s, r, SAME_PHOTO_CUT, shipped_cuts(), bits).any()


def test_threads_score_every_pair_as_one_thread_does(web_people):
    """The duplicate stage scores batches on threads; the scores and the progress count are those
    of one thread."""
    from facesieve.select.samephoto import SamePhotoCheck

    _, views = web_people[0]
    n = views.crops.shape[0]
    pairs = list(zip(*np.triu_indices(n, 1)))
    keys = np.array([f"face{k:03d}" for k in range(n)], dtype=object)
    counted = []
    one = SamePhotoCheck(views, np.arange(n), keys, SHOT_CUT, threads=1)
    two = SamePhotoCheck(views, np.arange(n), keys, SHOT_CUT, threads=2, progress=counted.append)
    two.batch = 16  # several batches in flight
    one.prefetch(pairs)
    two.prefetch(pairs)
    assert one.scored == two.scored == len(pairs) == sum(counted) and len(counted) > 2
    assert one.cache == two.cache


def _all_pairs(views_n: int):
    i, j = np.triu_indices(views_n, 1)
    return i, j


def test_yaleb_lighting_and_orl_sittings_are_not_one_photo(shared_data):
    """yaleB: one face under its lighting conditions; ORL: ten shots of one sitting. The target
    allows 0.5% of yaleB's pairs grouped and ORL's near-identical shots grouped as shots; these
    identities measure none of either, which the test holds."""
    yale = sorted((shared_data / "yaleB_cropped10" / "yaleB01").glob("*"))[:40]
    views = faces_of([(p.name, str(p)) for p in yale])
    i, j = _all_pairs(len(yale))
    s = pair_scores(views, i, j)
    print("yaleB01: pairs", len(s), "min score", s.min(), "grouped", int((s <= SHOT_CUT).sum()))
    assert (s <= SHOT_CUT).sum() == 0  # measured: none of 780, the lowest 0.036 (target: at most 0.5%)
    # nor by the whole-image hash rule (one pose under other lights: pHashes can be close)
    from facesieve.select.samephoto import grouped, neighbour_ratio

    assert grouped(s, neighbour_ratio(i, j, s), SHOT_CUT, shipped_cuts(), hash_bits(views, i, j)).sum() == 0
    orl = [p for ident in ("s01", "s02", "s03") for p in sorted((shared_data / "orl_att40" / ident).glob("*.pgm"))]
    views = faces_of([(p.name, str(p)) for p in orl])
    i, j = _all_pairs(len(orl))
    same = np.array([orl[a].parent == orl[b].parent for a, b in zip(i, j)])
    s = pair_scores(views, i[same], j[same])
    print("ORL s01-s03: pairs", len(s), "lowest", np.sort(s)[:5].round(4))
    assert (s <= SAME_PHOTO_CUT).sum() == 0
    assert (s <= SHOT_CUT).sum() == 0  # measured: none of 135, the lowest 0.017 (ORL left out loses more: docs)
    bits = hash_bits(views, i[same], j[same])
    print("ORL s01-s03: hash bits of the five closest", bits[np.argsort(s)[:5]])
    assert grouped(s, neighbour_ratio(i[same], j[same], s), SAME_PHOTO_CUT, shipped_cuts(), bits).sum() == 0


# ---------------------------------------------------------------- the duplicate stage in a run


@pytest.fixture(scope="module")
def small_set(shared_data, tmp_path_factory):
    """Four ORL identities (40 photos) and two deepface13 ones, with a JPEG re-save, a flipped
    JPEG re-save and a 10% crop of one photo each."""
    import shutil

    root = tmp_path_factory.mktemp("samephoto") / "data"
    for ident in ("s01", "s02", "s03", "s04"):
        shutil.copytree(shared_data / "orl_att40" / ident, root / ident)
    for ident in ("person01", "person02"):
        shutil.copytree(shared_data / "deepface13" / ident, root / ident)
    rgb = load_rgb(root / "person01" / "img1.jpg")
    Image.fromarray(rgb).save(root / "person01" / "copy_jpeg.jpg", quality=70)
    Image.fromarray(np.ascontiguousarray(rgb[:, ::-1])).save(root / "person01" / "copy_flip.jpg", quality=85)
    h, w = rgb.shape[:2]
    Image.fromarray(rgb[h // 20 : h - h // 20, w // 10 :]).save(root / "person01" / "copy_crop.jpg", quality=90)
    return root


def test_copies_found_and_a_rerun_scores_no_pair(small_set, tmp_path):
    from facesieve.config import RunConfig
    from facesieve.pipeline import run

    cfg = dict(dataset=small_set, out=tmp_path / "out", jobs=2, report=False)
    first = run(RunConfig(**cfg))
    m = first.manifest.set_index("path")
    print(m.loc[m["reason"].isin(["near_duplicate", "near_identical_shot"]), ["reason", "duplicate_of", "detail"]])
    # the re-saves are grouped with their source; the 10% crop scores higher and, at the tight
    # shipped cut, may stay (docs/thresholds.md: crop recall on left-out sets is below target)
    # (groups do not chain: a copy may be grouped under another copy of its photo, the best face)
    photo = {"person01/img1.jpg", "person01/copy_jpeg.jpg", "person01/copy_flip.jpg", "person01/copy_crop.jpg"}
    # the source and its two re-saves are one group: all but its best face (whichever the quality
    # picks) removed as copies of a member of the group
    dups = {c for c in photo if m.loc[c, "reason"] == "near_duplicate"}
    assert all(m.loc[c, "duplicate_of"] in photo for c in dups)
    assert len({"person01/img1.jpg", "person01/copy_jpeg.jpg", "person01/copy_flip.jpg"} - dups) == 1, dups
    assert first.summary["duplicate_check"]["pairs"] > 0
    # no ORL photo removed as a copy of another
    orl = m[m.index.str.startswith("s0")]
    assert not orl["reason"].isin(["near_duplicate", "near_identical_shot"]).any()
    second = run(RunConfig(**cfg))
    assert second.summary["duplicate_check"]["pairs"] == 0  # every pair score came from the workspace
    # and so did every face-in-its-background answer (deepface13's uncropped photos have backgrounds)
    assert first.summary["duplicate_check"]["background_checks"] > 0
    assert second.summary["duplicate_check"]["background_checks"] == 0
    assert (second.manifest["reason"].to_numpy() == first.manifest["reason"].to_numpy()).all()
    # a workspace kept before the keypoint answers held the face's own fit: those are asked again
    import pandas as pd

    from facesieve.pipeline import _pair_cache_name

    kept = tmp_path / "out" / ".facesieve" / _pair_cache_name()
    pd.read_parquet(kept).drop(columns="face_fit").to_parquet(kept)
    third = run(RunConfig(**cfg))
    assert third.summary["duplicate_check"]["pairs"] == 0
    assert third.summary["duplicate_check"]["background_checks"] == first.summary["duplicate_check"]["background_checks"]
    assert (third.manifest["reason"].to_numpy() == first.manifest["reason"].to_numpy()).all()
    # a workspace of the previous score version: every pair is scored again, no keypoint test asked again
    from facesieve.select.samephoto import KEYPOINTS_FROM

    kept.rename(kept.with_name(_pair_cache_name(KEYPOINTS_FROM)))
    fourth = run(RunConfig(**cfg))
    assert fourth.summary["duplicate_check"]["pairs"] == first.summary["duplicate_check"]["pairs"]
    assert fourth.summary["duplicate_check"]["background_checks"] == 0
    assert (fourth.manifest["reason"].to_numpy() == first.manifest["reason"].to_numpy()).all()
    exact = run(RunConfig(**{**cfg, "out": tmp_path / "exact"}, workspace=tmp_path / "out" / ".facesieve", duplicates="exact"))
    assert not exact.manifest["reason"].isin(["near_duplicate", "near_identical_shot"]).any()


def test_a_run_gives_the_check_each_identity_s_hash_floors(small_set, tmp_path, monkeypatch):
    """The rare-hash rule's floors are taken per identity over the faces the grouping sees."""
    from facesieve.config import RunConfig
    from facesieve.pipeline import run
    from facesieve.select.samephoto import SamePhotoCheck

    seen = []
    original = SamePhotoCheck.set_floors

    def record(self, rows, labels):
        original(self, rows, labels)
        seen.append((np.asarray(rows), np.asarray(labels), self.floors.copy()))

    monkeypatch.setattr(SamePhotoCheck, "set_floors", record)
    res = run(RunConfig(dataset=small_set, out=tmp_path / "out", jobs=2, report=False))
    assert len(seen) == 1
    rows, labels, floors = seen[0]
    assert len(rows) == len(res.manifest[res.manifest["status"] == "ok"])  # every face (no exact duplicate here)
    assert set(labels) == {"s01", "s02", "s03", "s04", "person01", "person02"}
    assert np.isfinite(floors[rows]).all()  # every identity holds more than FLOOR_LEAST other faces
    assert np.isnan(np.delete(floors, rows)).all()  # rows the grouping does not see have none


def test_removed_pixel_flags_exit_2_with_what_replaced_them(small_set, tmp_path, capsys):
    from facesieve.cli import main

    assert main(["run", str(small_set), "--out", str(tmp_path / "o"), "--no-pixel-check"]) == 2
    assert "--duplicates" in capsys.readouterr().err
    assert main(["run", str(small_set), "--out", str(tmp_path / "o"), "--pixel-residual", "2"]) == 2


def test_companion_pairs_are_scored_but_not_references():
    """A pair given to prefetch as a companion (a face's nearest face below the cosine floor) is
    scored like any other, but is no neighbour of its faces: the neighbour-ratio rule's
    references are the run's candidate pairs only, as neighbour_ratio's `reference` says."""
    from facesieve.select.samephoto import SamePhotoCheck, neighbour_ratio

    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (4, 112, 112, 3), dtype=np.uint8)
    check = SamePhotoCheck(FaceViews(crops, np.ones(4)), np.arange(4), np.array(list("abcd"), dtype=object), 0.0065)
    check.prefetch([(0, 1), (0, 2), (0, 3)], companions={(0, 3)})
    assert len(check.cache) == 3 and check.scored == 3
    assert check.neighbours["a"] == {"b", "c"} and "d" not in check.neighbours
    s = np.array([0.01, 0.1, 1.0])
    a, b = ["a", "a", "a"], ["b", "c", "d"]
    assert neighbour_ratio(a, b, s, [True, True, False])[0] == pytest.approx(0.01 / 0.1)
    assert neighbour_ratio(a, b, s)[0] == pytest.approx(0.01 / 0.55)
    assert neighbour_ratio(a, b, s, [True, True, False])[2] == pytest.approx(1.0 / 0.055)  # a companion has its own ratio


def test_hash_close_pairs_are_asked_the_keypoint_test_at_any_score():
    """The face fit needs no crop-score ceiling within the hash bits (samephoto.anchored), so the
    prefetch asks the keypoint test about a pair above every ceiling when its images' hashes are
    that close, and only then; with the face fit off it asks neither."""
    from facesieve.select.samephoto import Cuts, SamePhotoCheck

    class Asked:
        def __init__(self):
            self.pairs = []

        def motions(self, pairs, threads):
            self.pairs += [tuple(p) for p in pairs]
            return [(float("nan"), 0, 0, float("nan"))] * len(pairs)

    rng = np.random.default_rng(1)
    crops = rng.integers(0, 255, (3, 112, 112, 3), dtype=np.uint8)  # unrelated noise: every score is high
    hashes = np.array([[0, 0], [0b11, 0b11], [0xFFFF, 0xFFFF]], np.uint64)  # a-b 2 bits apart, a-c 16
    for face_fit, expected in ((0.04, [(0, 1)]), (0.0, [])):
        cuts = Cuts(0.0065, 0.0065, hash_score=0.01, hash_bits=2, anchor_score=0.03, anchor_motion=0.003,
                    face_score=0.02, face_fit=face_fit, face_matches=12)
        asked = Asked()
        check = SamePhotoCheck(FaceViews(crops, np.ones(3)), np.arange(3), np.array(list("abc"), dtype=object), 0.0065,
                               cuts=cuts, hashes=hashes, anchor=asked)
        check.prefetch([(0, 1), (0, 2)])
        assert min(check.cache.values()) > cuts.anchor_score
        assert asked.pairs == expected


def test_the_quick_answer_above_every_ceiling_is_the_rules_answer(monkeypatch):
    """peek answers a pair above every rule's crop-score ceiling, outside the hash bits, without
    the rules; over scores spanning every ceiling and hashes 0-16 bits apart, with keypoint
    answers that group whatever may ask them, its answers are the rules' own."""
    from facesieve.select.samephoto import Cuts, SamePhotoCheck

    class Groups:
        def motions(self, pairs, threads):
            return [(0.0, 50, 50, 0.0)] * len(pairs)

        def motion(self, i, j):
            return (0.0, 50, 50, 0.0)

    n = 40
    rng = np.random.default_rng(2)
    crops = rng.integers(0, 255, (n, 112, 112, 3), dtype=np.uint8)
    hashes = np.zeros((n, 2), np.uint64)
    for r in range(n):  # face r is (r % 9) bits from face 0
        hashes[r] = (1 << (r % 9)) - 1
    keys = np.array([f"k{r:02d}" for r in range(n)], dtype=object)
    scores = np.linspace(0.0, 0.2, n - 1)
    for face_fit, anchor in ((0.04, Groups()), (0.0, Groups()), (0.04, None)):
        cuts = Cuts(0.0065, 0.0065, 0.01, 0.075, 0.02, 0.01, 2, 0.011, 0.03, 0.003, 6, 0.03, face_fit, 8, 0.05, 4, 0.0)
        check = SamePhotoCheck(FaceViews(crops, np.ones(n)), np.arange(n), keys, 0.0065, cuts=cuts, hashes=hashes, anchor=anchor)
        check.floors = np.full(n, 20.0)
        for r, sc in zip(range(1, n), scores):
            check.cache[("k00", keys[r])] = float(sc)
        quick = [check.peek(0, r) for r in range(1, n)]
        monkeypatch.setattr(SamePhotoCheck, "_ceiling", lambda self: float("inf"))
        full = [check.peek(0, r) for r in range(1, n)]
        monkeypatch.undo()
        assert quick == full
        assert any(ok for ok, s in full if s > 0.05) == (face_fit > 0 and anchor is not None)  # the hash bits' face fit: no ceiling


def test_same_photo_outright_leaves_out_the_rules_relative_to_other_photos():
    """A pair the neighbour ratio groups (far closer than its faces' other neighbours), one the
    lone cut groups and one rare hashes group are one photo, but not outright: those rules judge a
    pair against the identity's other photos. The plain cut and the whole-image hash rule judge it
    outright."""
    from facesieve.select.samephoto import Cuts, SamePhotoCheck

    n = 9
    rng = np.random.default_rng(3)
    crops = rng.integers(0, 255, (n, 112, 112, 3), dtype=np.uint8)
    hashes = np.full((n, 2), 0xFFFF_FFFF, np.uint64)
    hashes[6] = hashes[7] = 0  # 6-7: the same whole image; the rest 32 bits from them
    hashes[4] = 0b111  # 4-5: 3 bits apart
    hashes[5] = 0
    keys = np.array([f"k{r}" for r in range(n)], dtype=object)
    cuts = Cuts(0.0065, 0.0065, ratio_score=0.02, ratio=0.3, lone=0.03, hash_score=0.01, hash_bits=0,
                rare_score=0.03, rare_bits=4, rare_floor=18.0)
    check = SamePhotoCheck(FaceViews(crops, np.ones(n)), np.arange(n), keys, 0.0065, cuts=cuts, hashes=hashes)
    check.floors = np.full(n, 20.0)
    check.floors[6:8] = 4.0  # 6 and 7's identity keeps its hashes close: rare hashes stay off there
    check.cache.update({("k0", "k1"): 0.012, ("k0", "k2"): 0.08, ("k1", "k2"): 0.08,  # 0-1: by the ratio
                        ("k2", "k3"): 0.025,  # more neighbours of 2 and 3
                        ("k4", "k5"): 0.025,  # rare hashes
                        ("k6", "k7"): 0.009,  # the hash rule
                        ("k0", "k3"): 0.005})  # the plain cut
    for key in [("k0", "k1"), ("k0", "k2"), ("k1", "k2"), ("k0", "k3"), ("k2", "k3")]:
        a, b = key
        check.neighbours.setdefault(a, set()).add(b)
        check.neighbours.setdefault(b, set()).add(a)
    check.cache[("k4", "k8")] = 0.5  # 4 and 5 each have a far neighbour, so neither is lone
    check.cache[("k5", "k8")] = 0.5
    for a, b in (("k4", "k8"), ("k5", "k8"), ("k4", "k5")):
        check.neighbours.setdefault(a, set()).add(b)
        check.neighbours.setdefault(b, set()).add(a)
    assert check.same_photo(0, 1) and not check.same_photo(0, 1, outright=True)  # the neighbour ratio
    assert check.same_photo(4, 5) and not check.same_photo(4, 5, outright=True)  # rare hashes
    assert check.same_photo(6, 7, outright=True) and check.same_photo(0, 3, outright=True)
    assert "k6" not in check.neighbours  # 6-7 has no other neighbour: a lone pair
    check.cache[("k6", "k7")] = 0.02  # above the hash rule's score cut: the lone cut alone groups it
    assert check.same_photo(6, 7) and not check.same_photo(6, 7, outright=True)


def test_rare_hashes_and_the_face_fit_on_a_small_face_grid_take_the_small_face_allowance():
    """A rare-hash pair compared on a coarse grid (a small face) is one photo up to the rare
    ceiling times coarse / same_photo; on a fine grid up to the rare ceiling only; without the
    small-face cut, or outside the bits or under the floor, not at all. The face fit's ceiling
    takes the same allowance."""
    from facesieve.select.samephoto import COARSE_SIDE, Cuts, anchored, grouped

    cuts = Cuts(0.006, 0.006, coarse=0.012, rare_score=0.02, rare_bits=4, rare_floor=18.0)
    s = np.array([0.03, 0.03, 0.039, 0.041, 0.03, 0.03])
    sides = np.array([COARSE_SIDE, 80, 28, 28, COARSE_SIDE, COARSE_SIDE])
    bits = np.array([2, 2, 0, 0, 6, 2])
    floors = np.array([20.0, 20.0, 20.0, 20.0, 20.0, 10.0])
    got = grouped(s, np.full(6, np.nan), 0.006, cuts, bits, sides, floors=floors)
    assert got.tolist() == [True, False, True, False, False, False]  # the coarse ceiling is 0.04
    assert not grouped(s, np.full(6, np.nan), 0.006, Cuts(0.006, 0.006, rare_score=0.02, rare_bits=4, rare_floor=18.0),
                       bits, sides, floors=floors).any()
    face = Cuts(0.006, 0.006, coarse=0.012, face_score=0.03, face_fit=0.04, face_matches=8)
    fit = (np.full(4, np.nan), np.full(4, 20.0), np.zeros(4), np.full(4, 0.03))  # no background; the face fits
    got = anchored([0.05, 0.05, 0.061, 0.02], fit, face, None, [COARSE_SIDE, 80, 28, 80])
    assert got.tolist() == [True, False, False, True]  # 0.06 on a coarse grid, 0.03 on a fine one
    assert anchored([0.05], tuple(m[:1] for m in fit), face, None, None).tolist() == [False]  # grid unknown: no allowance


def test_the_background_test_is_looser_among_web_photos_only():
    """A face that moves a little against its background (a re-published photo, re-cropped and
    recoloured) is one photo under the web motion cut where both faces' hash floors are high (web
    photos of a person share no background), not where a floor is low (a fixed camera's series:
    another shot moves the head that little), nor above the background test's ceiling, nor with
    fewer matches, nor with the rule off or the floors unknown."""
    from facesieve.select.samephoto import Cuts, anchored, grouped

    cuts = Cuts(0.0065, 0.0065, anchor_score=0.03, anchor_motion=0.003, anchor_matches=6,
                web_motion=0.015, web_floor=18.0, web_matches=4)
    s = np.array([0.02, 0.02, 0.02, 0.04, 0.02, 0.02, 0.02])
    move = np.array([0.01, 0.01, 0.002, 0.01, 0.01, 0.02, 0.01])
    n_face = np.array([20, 20, 20, 20, 3, 20, 20], float)
    n_back = np.array([5, 5, 8, 5, 5, 5, 5], float)
    motion = (move, n_face, n_back, np.full(7, np.nan))
    floors = np.array([20.0, 12.0, 4.0, 20.0, 20.0, 20.0, np.nan])
    got = grouped(s, np.full(7, np.nan), 0.0065, cuts, None, None, motion, floors)
    # web floor: yes; low floor: no; the tight cut groups whatever the floor; above the ceiling,
    # too few face matches, too far, floor unknown: no
    assert got.tolist() == [True, False, True, False, False, False, False]
    assert anchored(s, motion, cuts, floors=None).tolist() == [False, False, True, False, False, False, False]
    off = Cuts(0.0065, 0.0065, anchor_score=0.03, anchor_motion=0.003, anchor_matches=6)
    assert anchored(s, motion, off, floors=floors).tolist() == [False, False, True, False, False, False, False]
    # the looser cut alone (the tight one off) still works
    alone = Cuts(0.0065, 0.0065, anchor_score=0.03, web_motion=0.015, web_floor=18.0, web_matches=4)
    assert anchored(s, motion, alone, floors=floors).tolist() == [True, False, False, False, False, False, False]


def test_the_crop_score_is_looser_among_web_photos_only():
    """Up to the web score cut a pair is one photo where both faces' hash floors reach the web
    floor (web photos of a person from different sources are far apart on the crop test); under
    a low floor (a studio series, whose shots score as close as re-saves) the plain cut stays, and
    so it does where the floors are unknown or the rule is off."""
    from facesieve.select.samephoto import Cuts, grouped

    cuts = Cuts(0.0065, 0.0065, web_score=0.02, web_score_floor=20.0)
    s = np.array([0.015, 0.015, 0.025, 0.005, 0.015])
    floors = np.array([22.0, 12.0, 22.0, 4.0, np.nan])
    assert grouped(s, np.full(5, np.nan), 0.0065, cuts, floors=floors).tolist() == [True, False, False, True, False]
    assert grouped(s, np.full(5, np.nan), 0.0065, cuts).tolist() == [False, False, False, True, False]
    assert grouped(s, np.full(5, np.nan), 0.0065, Cuts(0.0065, 0.0065), floors=floors).tolist() == [False, False, False, True, False]


def test_the_whole_image_among_web_photos_groups_at_any_crop_score():
    """Within the web hash bits, both floors at the web hash floor and enough keypoint matches on
    the face and on its background, a pair is one photo whatever its crop score; not outside the
    bits, under a low floor, without a background (a tight studio crop), with too few face
    matches, with the floors or bits unknown, or with the rule off."""
    from facesieve.select.samephoto import Cuts, anchored, grouped

    cuts = Cuts(0.0065, 0.0065, web_hash_bits=2, web_hash_floor=18.0, web_hash_matches=12)
    n = 7
    s = np.full(n, 0.2)
    bits = np.array([0, 4, 2, 0, 0, 0, 2])
    floors = np.array([20.0, 20.0, 20.0, 12.0, 20.0, 20.0, np.nan])
    n_face = np.array([30, 30, 30, 30, 30, 5, 30], float)
    n_back = np.array([30, 30, 12, 30, 0, 30, 30], float)
    motion = (np.full(n, 0.05), n_face, n_back, np.full(n, 0.2))  # the face moves and fits badly: landmarks found another way
    want = [True, False, True, False, False, False, False]
    assert anchored(s, motion, cuts, bits, None, floors).tolist() == want
    assert grouped(s, np.full(n, np.nan), 0.0065, cuts, bits, None, motion, floors).tolist() == want
    assert not grouped(s, np.full(n, np.nan), 0.0065, cuts, None, None, motion, floors).any()
    assert not anchored(s, motion, cuts, bits, None, None).any()
    assert not anchored(s, motion, Cuts(0.0065, 0.0065), bits, None, floors).any()


def test_the_check_asks_the_keypoints_of_a_web_hash_pair_above_every_ceiling_and_not_outright():
    """A pair far above every crop-score ceiling is asked the keypoint test, and grouped by it,
    where its images' hashes are within the web hash bits and both floors are high; not where a
    floor is low (nothing asked); `outright` does not use the rule (it judges the pair by its
    identity's other photos, through the floors)."""
    from facesieve.select.samephoto import Cuts, SamePhotoCheck

    class Asked:
        def __init__(self):
            self.pairs = []

        def motions(self, pairs, threads):
            self.pairs += [tuple(p) for p in pairs]
            return [(0.05, 40, 40, 0.2)] * len(pairs)

    n = 4
    crops = np.random.default_rng(6).integers(0, 255, (n, 112, 112, 3), dtype=np.uint8)
    hashes = np.zeros((n, 2), np.uint64)  # every whole image the same
    cuts = Cuts(0.0065, 0.0065, anchor_score=0.03, anchor_motion=0.003, web_hash_bits=2, web_hash_floor=18.0, web_hash_matches=16)
    asked = Asked()
    check = SamePhotoCheck(FaceViews(crops, np.ones(n)), np.arange(n), np.array([f"k{r}" for r in range(n)], dtype=object), 0.0065,
                           cuts=cuts, hashes=hashes, anchor=asked)
    check.floors = np.array([20.0, 22.0, 20.0, 10.0])
    check.prefetch([(0, 1), (2, 3)])
    assert min(check.cache.values()) > 0.1  # unrelated noise: far above every ceiling
    assert asked.pairs == [(0, 1)]
    assert check(0, 1)[0] and not check(2, 3)[0]
    assert check.same_photo(0, 1) and not check.same_photo(0, 1, outright=True)


def test_on_real_photos_the_web_score_takes_a_republication_and_no_studio_shot(shared_data):
    """Real photos, the rule's own inputs (crop scores and hash floors through the real faces
    stage). A pins_web person at 64 pixels: a README same-photo pair (one photo re-published,
    re-cropped) scores above the plain cut but within the web score cut, its faces' floors are
    web-like, and the web score groups it; no other pair of the person's 40 photos scores that low
    (the other README pairs aside). ORL's close shots of one sitting score as low, but their floors
    are a studio's, and the shipped rule groups none of them by the web score."""
    import cv2

    from facesieve.select.neardup import hash_floors
    from facesieve.select.samephoto import Cuts, grouped
    from facesieve.select.thresholds import WEB_SCORE_CUT, WEB_SCORE_FLOOR

    def small(path):
        rgb = load_rgb(path)
        f = 64 / max(rgb.shape[:2])
        out = io.BytesIO()
        Image.fromarray(cv2.resize(rgb, (round(rgb.shape[1] * f), round(rgb.shape[0] * f)), interpolation=cv2.INTER_AREA)).save(out, "PNG")
        return out.getvalue()

    files = sorted((shared_data / "pins_web" / "Chris_Evans").glob("*.jpg"))
    names = [f.stem.split("Evans")[1] for f in files]
    views = faces_of([(f.name + ".png", small(f)) for f in files])
    floors = hash_floors(views.hashes, np.zeros(len(files), int))
    i, j = np.triu_indices(len(files), 1)
    scores = pair_scores(views, i, j)
    low = np.minimum(floors[i], floors[j])
    readme = {frozenset(p) for p in (("10_1110", "135_1134"), ("122_1129", "140_1136"), ("160_1142", "162_1144"))}
    listed = np.array([frozenset((names[a], names[b])) in readme for a, b in zip(i, j)])
    pair = np.flatnonzero([frozenset((names[a], names[b])) == frozenset(("122_1129", "140_1136")) for a, b in zip(i, j)])[0]
    assert SAME_PHOTO_CUT < scores[pair] <= WEB_SCORE_CUT
    assert low[pair] >= 18.0  # web-like: this person's photos sit 18 bits apart and more
    web = Cuts(SAME_PHOTO_CUT, SAME_PHOTO_CUT, web_score=WEB_SCORE_CUT, web_score_floor=18.0)
    assert grouped(scores[[pair]], [np.nan], SAME_PHOTO_CUT, web, floors=low[[pair]])[0]
    assert not grouped(scores[[pair]], [np.nan], SAME_PHOTO_CUT, Cuts(SAME_PHOTO_CUT, SAME_PHOTO_CUT), floors=low[[pair]])[0]
    assert (scores[~listed] > WEB_SCORE_CUT).all()

    orl = sorted((shared_data / "orl_att40").glob("s0*/*.pgm"))
    views = faces_of([(f.parent.name + f.name, str(f)) for f in orl])
    ids = np.array([f.parent.name for f in orl])
    floors = hash_floors(views.hashes, ids)
    i, j = np.triu_indices(len(orl), 1)
    i, j = i[ids[i] == ids[j]], j[ids[i] == ids[j]]
    scores = pair_scores(views, i, j)
    low = np.minimum(floors[i], floors[j])
    close = scores <= WEB_SCORE_CUT
    assert close.sum() >= 5  # a sitting's shots come as close as the web score cut
    assert (low[close] < min(18.0, WEB_SCORE_FLOOR)).all()  # ... and their floors are a studio's
    shipped = Cuts(SAME_PHOTO_CUT, SAME_PHOTO_CUT, web_score=WEB_SCORE_CUT, web_score_floor=WEB_SCORE_FLOOR)
    plain = Cuts(SAME_PHOTO_CUT, SAME_PHOTO_CUT)
    nan = np.full(len(scores), np.nan)
    assert (grouped(scores, nan, SAME_PHOTO_CUT, shipped, floors=low) == grouped(scores, nan, SAME_PHOTO_CUT, plain, floors=low)).all()


def test_the_check_names_the_rule_that_grouped_a_pair():
    """`evidence` names the first rule (RULE_WORDS' order) that groups a pair above the plain cut:
    under the plain cut nothing (the score speaks), the whole-image hash, the crop score among web
    photos, the face's keypoints, the whole image among web photos; a pair no rule groups gets
    nothing; a keypoint rule is named only from an answer the check already has (none is asked)."""
    from facesieve.select.samephoto import RULE_WORDS, Cuts, SamePhotoCheck

    class NoAsking:
        def motions(self, pairs, threads):
            raise AssertionError("evidence asked the keypoint test")

        motion = motions

    n = 12
    crops = np.random.default_rng(8).integers(0, 255, (n, 112, 112, 3), dtype=np.uint8)
    hashes = np.full((n, 2), 0xFFFF_FFFF_FFFF, np.uint64)
    hashes[2] = hashes[3] = 0  # 2-3: the same whole image
    hashes[8] = hashes[9] = 7  # 8-9: the same whole image
    cuts = Cuts(0.0065, 0.0065, hash_score=0.01, hash_bits=2, anchor_score=0.03, anchor_motion=0.003, face_score=0.03, face_fit=0.04,
                face_matches=8, web_score=0.02, web_score_floor=20.0, web_hash_bits=2, web_hash_floor=18.0, web_hash_matches=16)
    keys = np.array([f"k{r:02d}" for r in range(n)], dtype=object)
    check = SamePhotoCheck(FaceViews(crops, np.ones(n)), np.arange(n), keys, 0.0065, cuts=cuts, hashes=hashes, anchor=NoAsking())
    check.floors = np.full(n, 22.0)
    check.cache.update({("k00", "k01"): 0.004,  # the plain cut
                        ("k02", "k03"): 0.009,  # the hash rule
                        ("k04", "k05"): 0.015,  # the crop score among web photos
                        ("k06", "k07"): 0.025,  # the face's keypoints
                        ("k08", "k09"): 0.12,  # the whole image among web photos
                        ("k10", "k11"): 0.12})  # nothing
    check.motions.update({("k06", "k07"): (float("nan"), 30, 0, 0.02), ("k08", "k09"): (0.05, 40, 40, 0.2)})
    pairs = [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11)]
    assert RULE_WORDS[1][0] == "same whole-image hash"
    assert check.evidence(pairs) == ["", "same whole-image hash", "close among web photos", "the face's keypoints match",
                                     "same whole image among web photos", ""]
    assert check.evidence([(9, 8)]) == ["same whole image among web photos"]  # either order
    del check.motions[("k08", "k09")]  # the answer unknown: the keypoint rules are not named (nor asked)
    assert check.evidence([(8, 9)]) == [""] and check.evidence([]) == []


def test_on_real_photos_the_whole_image_takes_a_stretched_copy_and_no_yaleb_lighting(shared_data, tmp_path):
    """A real web photo stretched 5% (aspect) and re-saved as JPEG: the face fills the frame, a
    hand covers the mouth, and the copy's crop score lands above every ceiling (measured 0.116)
    while its whole image keeps its hash; the shipped run groups it by the whole image among web
    photos, and with that rule off it stays. yaleB's photos are the face alone: some lighting
    pairs are as close in hash and floor, but share no background, and the run groups none."""
    import shutil

    from facesieve.config import RunConfig
    from facesieve.pipeline import run
    from facesieve.select.neardup import hash_floors
    from facesieve.select.thresholds import WEB_HASH_BITS, WEB_HASH_FLOOR

    data = tmp_path / "data"
    shutil.copytree(shared_data / "pins_web" / "Adriana_Lima", data / "Adriana_Lima")
    im = Image.open(data / "Adriana_Lima" / "Adriana Lima116_19.jpg").convert("RGB")
    im.resize((im.width, round(im.height * 1.05)), Image.BICUBIC).save(data / "Adriana_Lima" / "copy_aspect.jpg", quality=85)
    yale = [sorted((shared_data / "yaleB_cropped10" / i).glob("*.pgm")) for i in ("yaleB01", "yaleB06")]
    close = 0
    for paths in yale:
        shutil.copytree(paths[0].parent, data / paths[0].parent.name)
        views = faces_of([(p.name, str(p)) for p in paths])
        floors = hash_floors(views.hashes, np.zeros(len(paths), int))
        i, j = _all_pairs(len(paths))
        close += int(((hash_bits(views, i, j) <= WEB_HASH_BITS) & (np.minimum(floors[i], floors[j]) >= WEB_HASH_FLOOR)).sum())
    assert close >= 2  # measured: 2 + 3 lighting pairs within the rule's bits and floor
    cfg = dict(dataset=data, out=tmp_path / "out", jobs=2, report=False)
    m = run(RunConfig(**cfg)).manifest.set_index("path")
    grouped = m[m["reason"].isin(["near_duplicate", "near_identical_shot"])]
    print(grouped[["reason", "duplicate_of", "detail"]])
    pair = ["Adriana_Lima/copy_aspect.jpg", "Adriana_Lima/Adriana Lima116_19.jpg"]
    assert set(grouped.index) & set(pair)  # one of the two removed (the better face kept) ...
    removed = grouped.loc[grouped.index.isin(pair)].iloc[0]
    assert removed["duplicate_of"] in pair  # ... as a copy of the other
    assert float(removed["detail"].split("crop score ")[1][:5]) > 0.05  # no crop-score rule reaches it
    assert "same whole image among web photos" in removed["detail"]  # the detail names the rule that did
    assert not grouped.index.str.startswith("yaleB").any()
    off = run(RunConfig(**cfg, extra={"web_hash_bits": -1})).manifest.set_index("path")
    assert off.loc[pair, "reason"].eq("kept").all()


def test_the_check_takes_the_web_motion_from_each_pairs_floors_and_not_outright():
    """SamePhotoCheck asks the keypoint test about a pair up to the background ceiling and groups
    it by the web motion where the lower of its faces' hash floors is high; `outright` (a lone
    face following its source, no rule that judges a pair by its identity's other photos) does not
    use it."""
    from facesieve.select.samephoto import Cuts, SamePhotoCheck

    n = 4
    crops = np.random.default_rng(5).integers(0, 255, (n, 112, 112, 3), dtype=np.uint8)
    keys = np.array([f"k{r}" for r in range(n)], dtype=object)
    cuts = Cuts(0.0065, 0.0065, anchor_score=0.03, anchor_motion=0.003, anchor_matches=6,
                web_motion=0.015, web_floor=18.0, web_matches=4)
    check = SamePhotoCheck(FaceViews(crops, np.ones(n)), np.arange(n), keys, 0.0065, cuts=cuts, anchor=object())
    check.floors = np.array([20.0, 22.0, 20.0, 10.0])
    check.cache.update({("k0", "k1"): 0.02, ("k2", "k3"): 0.02})
    moved = (0.01, 20, 6, 0.08)  # the face moves 1% of its width against its background; it does not fit as one face
    check.motions.update({("k0", "k1"): moved, ("k2", "k3"): moved})
    assert check(0, 1) == (True, 0.02)
    assert check(2, 3) == (False, 0.02)  # face 3's identity keeps its photos close: a fixed camera's series
    assert check.same_photo(0, 1) and not check.same_photo(0, 1, outright=True)
    assert check.anchored == 0  # both answers came from `motions`
    # the crop score among web photos: the same floors decide, and not outright either
    web = Cuts(0.0065, 0.0065, web_score=0.02, web_score_floor=20.0)
    plain = SamePhotoCheck(FaceViews(crops, np.ones(n)), np.arange(n), keys, 0.0065, cuts=web)
    plain.floors = check.floors
    plain.cache.update({("k0", "k1"): 0.015, ("k2", "k3"): 0.015})
    assert plain(0, 1) == (True, 0.015) and plain(2, 3) == (False, 0.015)
    assert plain.same_photo(0, 1) and not plain.same_photo(0, 1, outright=True)


# ---------------------------------------------------------------- tight crops: the spectrum net


TIGHT_COPY_KINDS = ("border", "crop", "border", "composite", "border", "crop", "overlay", "border", "crop", "border")


def tight_copies(shared_data, ident: str, seed: int):
    """A yaleB identity's photos (paths) and a web copy of every sixth one, of TIGHT_COPY_KINDS in
    turn: (paths, [(source index, name, file bytes)])."""
    rng = np.random.default_rng(seed)
    paths = sorted((shared_data / "yaleB_cropped10" / ident).glob("*.pgm"))
    out = []
    for k, (s, kind) in enumerate(zip(range(0, 6 * len(TIGHT_COPY_KINDS), 6), TIGHT_COPY_KINDS)):
        data, suffix = web_bytes(web_copy(load_rgb(paths[s]), kind, rng)[0], kind, rng)
        out.append((s, f"copy{k}_{kind}{suffix}", data))
    return paths, out


def test_tight_crops_meet_their_copies_by_spectrum(shared_data):
    """yaleB's images are the face alone: most of each aligned crop lies outside the image
    (outside_share), and a framed copy's embedding moves away from its source (what lies there
    changes: the image's repeated edge, the frame) while its crop test still finds it. The crop's
    spectrum does not move with the few pixels the detector shifts, so each tight face's nearest
    face by spectrum (neardup.nearest_of, PAIR_VIEW_NEAREST) catches most of the copies the
    cosine net misses (measured: the cosine net, as a run forms it, pairs 25 of 30 copies with
    their source; with the spectrum net 29; the five missed are framed copies at cosine 0.43-0.68)."""
    from facesieve.models import zoo
    from facesieve.select.neardup import nearest_of
    from facesieve.select.thresholds import PAIR_NEAREST, PAIR_VIEW_NEAREST

    embedder = zoo.build_embedder("sface")
    counts = {"copies": 0, "cosine": 0, "with spectrum": 0}
    for ident, seed in (("yaleB02", 4), ("yaleB05", 5), ("yaleB08", 6)):
        paths, copies = tight_copies(shared_data, ident, seed)
        sources = [s for s, _, _ in copies]
        items = [(p.name, str(p)) for p in paths] + [(name, data) for _, name, data in copies]
        views = faces_of(items)
        n = len(paths)
        assert views.tight(np.arange(n)).mean() >= 0.9  # the originals: the face alone
        E = embedder.embed_batch(list(views.crops))
        E = E / np.linalg.norm(E, axis=1, keepdims=True)
        S = E @ E.T
        np.fill_diagonal(S, -np.inf)
        net = nearest_of(np.stack([views.spectrum(i) for i in range(len(items))]), np.flatnonzero(views.tight(np.arange(len(items)))),
                         PAIR_VIEW_NEAREST)
        assert len(net) <= len(items) * PAIR_VIEW_NEAREST
        for k, s in enumerate(sources):
            c = n + k
            rank = min(int((S[c] > S[c, s]).sum()), int((S[s] > S[s, c]).sum())) + 1
            by_cosine = (rank <= 6 and S[c, s] >= 0.70) or rank <= PAIR_NEAREST  # the run's cosine net (crop_neighbours, its floor, PAIR_NEAREST)
            counts["copies"] += 1
            counts["cosine"] += by_cosine
            counts["with spectrum"] += by_cosine or (min(s, c), max(s, c)) in net
    print("yaleB framed / cropped copies paired with their source:", counts)
    assert counts["copies"] == 30
    assert counts["with spectrum"] >= 28 and counts["with spectrum"] - counts["cosine"] >= 3


def test_the_spectrum_leaves_a_shift_of_a_few_pixels(shared_data):
    """A crop moved by up to 3 pixels keeps its spectrum (dot product near 1); another photo of
    the person, another light, does not come as close."""
    from facesieve.select.samephoto import crop_spectrum

    paths = sorted((shared_data / "yaleB_cropped10" / "yaleB03").glob("*.pgm"))[:8]
    views = faces_of([(p.name, str(p)) for p in paths])
    d = np.stack([crop_spectrum(np.asarray(c)) for c in views.crops])
    assert np.allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-5)
    moved = [crop_spectrum(np.roll(np.asarray(views.crops[0]), (dy, dx), axis=(0, 1))) for dy, dx in ((2, 0), (0, -3), (2, 2))]
    others = d[1:] @ d[0]
    print("spectrum dot, shifted:", [round(float(m @ d[0]), 4) for m in moved], "other lights:", others.round(4))
    assert min(float(m @ d[0]) for m in moved) > max(others.max(), 0.95)


def test_outside_share_follows_the_masks(shared_data, web_people):
    """outside_share (all faces at once, upright crops) against the share of each face's 80-pixel
    view mask that lies outside its image (per face, its roll included): yaleB's tight crops are
    mostly outside, web photos mostly inside."""
    from facesieve.select.samephoto import TIGHT_SHARE, outside_share

    paths = sorted((shared_data / "yaleB_cropped10" / "yaleB04").glob("*.pgm"))[:8]
    for views, tight in [(faces_of([(p.name, str(p)) for p in paths]), True)] + [(v, False) for _, v in web_people]:
        share = outside_share(*views.geometry)
        masked = np.array([1.0 - views.mask(i, 80).mean() for i in range(len(share))])
        print("outside share", share.round(3), "mask", masked.round(3))
        assert np.median(np.abs(share - masked)) < 0.1
        assert (np.median(share) >= TIGHT_SHARE) == tight
        assert (views.tight(np.arange(len(share))) == (share >= TIGHT_SHARE)).all()


def test_nearest_of_is_each_query_s_nearest_rows(monkeypatch):
    from facesieve.select import neardup
    from facesieve.select.neardup import nearest_of

    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 6)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    queries = np.array([0, 5, 17, 39])
    S = X @ X.T
    np.fill_diagonal(S, -np.inf)
    for k in (1, 3):
        expected = {(min(q, int(j)), max(q, int(j))) for q in queries for j in np.argsort(-S[q])[:k]}
        assert nearest_of(X, queries, k) == expected
        monkeypatch.setattr(neardup, "_MAX_BLOCK_ELEMENTS", 100)  # two queries a block: the same pairs
        assert nearest_of(X, queries, k) == expected
        monkeypatch.undo()
    assert nearest_of(X, np.array([], np.int64), 2) == set() and nearest_of(X[:1], np.array([0]), 1) == set()


def test_a_run_adds_the_spectrum_net_for_tight_faces_only(shared_data, tmp_path, monkeypatch):
    """The pairs a run asks with the spectrum net on are those without it plus, as companions (no
    neighbour-ratio references), pairs of a tight face with its nearest face by spectrum; the web
    identity beside it, none of whose crops lie mostly outside their images, gains none."""
    import shutil

    from facesieve.config import RunConfig
    from facesieve.pipeline import run
    from facesieve.select.samephoto import SamePhotoCheck

    data = tmp_path / "data"
    paths, copies = tight_copies(shared_data, "yaleB02", 4)  # 3 of its framed copies are paired by spectrum only
    for ident, src in (("yaleB02", paths), ("Bill_Gates", sorted((shared_data / "pins_web" / "Bill_Gates").glob("*.jpg"))[:20])):
        (data / ident).mkdir(parents=True)
        for p in src:
            shutil.copy(p, data / ident / p.name)
    for _, name, blob in copies:
        (data / "yaleB02" / name).write_bytes(blob)
    asked: dict[str, dict] = {}
    original = SamePhotoCheck.prefetch

    def record(self, pairs, companions=()):
        pairs = list(pairs)
        seen = asked.setdefault(self.label, {"check": self, "pairs": set(), "companions": set()})
        seen["pairs"].update(frozenset(self.keys[[i, j]]) for i, j in pairs)
        seen["companions"].update(frozenset(self.keys[[i, j]]) for i, j in companions)
        return original(self, pairs, companions)

    monkeypatch.setattr(SamePhotoCheck, "prefetch", record)
    for label, extra in (("on", {}), ("off", {"pair_view_nearest": 0})):
        monkeypatch.setattr(SamePhotoCheck, "label", label, raising=False)
        run(RunConfig(dataset=data, out=tmp_path / label, jobs=2, report=False, extra=extra))
    on, off = asked["on"], asked["off"]
    added = on["pairs"] - off["pairs"]
    check = on["check"]
    rows = np.flatnonzero(check.crop_row >= 0)
    tight_keys = set(check.keys[rows[check.tight(rows)]])
    print("pairs asked without the spectrum net", len(off["pairs"]), "added by it", len(added), "tight faces", len(tight_keys))
    assert 0.9 * 64 <= len(tight_keys) <= 74  # yaleB02's faces (its copies in part), not Bill Gates's
    assert off["pairs"] <= on["pairs"] and 0 < len(added) <= len(tight_keys)  # at most one a tight face
    assert added <= on["companions"] and all(pair & tight_keys for pair in added)
