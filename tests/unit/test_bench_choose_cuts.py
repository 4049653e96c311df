"""How bench/bench_duplicates.py chooses the duplicate cuts from training pair tables (the
leave-one-set-out procedure of docs/thresholds.md), on small pair tables built here: each rule's
choice is what its docstring says."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import bench_duplicates as bench  # noqa: E402


def pair_table(rows: list[dict], originals: int) -> pd.DataFrame:
    """A candidate-pair table as bench_duplicates.pair_table gives it; unset answers say nothing
    (no motion, no hash closeness, full-size grid, no hash floor)."""
    base = {"ratio": 1.0, "hash_bits": 30, "side": 80, "motion": np.nan, "n_face": 0.0, "n_back": 0.0,
            "face_fit": np.nan, "floor": np.nan}
    t = pd.DataFrame([{**base, **r} for r in rows])
    t.attrs["originals"] = originals
    return t


def copies(n: int, **kw) -> list[dict]:
    return [{"relation": "same", **kw} for _ in range(n)]


def training_table(fit_at_015: int, fit_at_025: int) -> pd.DataFrame:
    """200 copies under the plain cut, 100 distinct pairs above it (three of them at 0.008: the
    plain cut stays under that), and copies that only the face's own fit finds: `fit_at_015` at a
    crop score of 0.015 (under the face fit's lower ceiling, 0.02), `fit_at_025` at 0.025 (under
    its higher one only)."""
    rng = np.random.default_rng(0)
    rows = copies(200, score=0.003)
    rows += [{"relation": "distinct", "score": 0.008, "n_face": 20.0, "face_fit": 0.1} for _ in range(3)]
    rows += [{"relation": "distinct", "score": float(s), "n_face": 20.0, "face_fit": 0.1} for s in rng.uniform(0.05, 0.2, 100)]
    rows += copies(fit_at_015, score=0.015, n_face=30.0, face_fit=0.02)
    rows += copies(fit_at_025, score=0.025, n_face=30.0, face_fit=0.02)
    return pair_table(rows, originals=300)


def test_the_face_fit_takes_the_most_training_copies_not_the_lowest_ceiling_within_slack():
    """Two copies more at the higher ceiling are within SLACK of the most (1% of 204 copies), so a
    SLACK choice would keep the lower ceiling; the face fit is chosen on the most copies."""
    cuts = bench.choose_cuts([training_table(fit_at_015=2, fit_at_025=2)])
    face_score, face_fit, face_matches = cuts[11:14]
    assert face_score == max(bench.FACE_SCORE_GRID) == 0.03
    assert face_fit == min(f for f in bench.FACE_FIT_GRID if f >= 0.02)  # the smallest fit cut that finds them
    assert face_matches == max(k for k in bench.FACE_MATCHES_GRID if k <= 30)  # the most matches that still do


def test_the_face_fit_keeps_the_lowest_ceiling_when_the_higher_one_finds_nothing_more():
    cuts = bench.choose_cuts([training_table(fit_at_015=2, fit_at_025=0)])
    assert cuts[11] == min(bench.FACE_SCORE_GRID) == 0.02


def test_the_face_fit_adds_no_training_distinct_pair():
    """A distinct pair that fits as one face at 0.025 keeps the ceiling at 0.02, whatever the copies
    above it."""
    t = training_table(fit_at_015=2, fit_at_025=5)
    t = pd.concat([t, pair_table([{"relation": "distinct", "score": 0.025, "n_face": 30.0, "face_fit": 0.02}], 0)], ignore_index=True)
    t.attrs["originals"] = 300
    assert bench.choose_cuts([t])[11] == 0.02


def test_without_the_face_rule_the_face_fit_is_off():
    cuts = bench.choose_cuts([training_table(fit_at_015=2, fit_at_025=2)], face_rule=False)
    assert cuts[11:14] == bench.FACE_OFF and cuts[12] == 0.0


def web_table(distinct_floor: float) -> pd.DataFrame:
    """The training table above, with copies the background test takes at its tight motion cut
    (0.002), copies that move 0.01 against their background in identities that spread their photos
    20 bits apart (web photos), and as many distinct pairs moving 0.01 in identities at
    `distinct_floor` (a fixed camera's series)."""
    t = training_table(fit_at_015=0, fit_at_025=0)
    near = dict(score=0.015, n_face=20.0, n_back=20.0)
    rows = copies(4, motion=0.002, floor=20.0, **near) + copies(4, motion=0.01, floor=20.0, **near)
    rows += [{"relation": "distinct", "motion": 0.01, "floor": distinct_floor, **near} for _ in range(4)]
    t = pd.concat([t, pair_table(rows, 0)], ignore_index=True)
    t.attrs["originals"] = 300
    return t


def test_the_web_motion_takes_the_highest_floor_that_keeps_the_copies_and_no_distinct_pair():
    cuts = bench.choose_cuts([web_table(distinct_floor=12.0)])
    assert cuts[9] == 0.002  # the tight background cut
    web_motion, web_floor, web_matches = cuts[17:20]
    assert web_motion == 0.01  # the smallest that takes the moved copies
    assert web_floor == 20.0  # the highest floor that keeps them; the series' 12 stays out
    assert web_matches == max(bench.WEB_MATCHES_GRID)  # 20 matches each side: the most the grid asks
    # a series as spread as the web photos: no floor keeps its distinct pairs out, the rule stays off
    assert bench.choose_cuts([web_table(distinct_floor=20.0)])[17:20] == bench.WEB_OFF
    assert bench.choose_cuts([web_table(distinct_floor=12.0)], web_rule=False)[17:20] == bench.WEB_OFF


def test_the_web_score_takes_the_highest_floor_that_keeps_its_copies():
    """Copies at a crop score of 0.012 in identities whose floors are 22, distinct pairs at 0.012
    in a series at floor 14: the web score cut takes the copies at the highest floor that keeps
    them (the grid's highest at or under 22) and the smallest cut that reaches them (0.0125);
    without the rule, off."""
    t = training_table(fit_at_015=0, fit_at_025=0)
    rows = copies(6, score=0.012, floor=22.0) + [{"relation": "distinct", "score": 0.012, "floor": 14.0} for _ in range(6)]
    t = pd.concat([t, pair_table(rows, 0)], ignore_index=True)
    t.attrs["originals"] = 300
    assert bench.choose_cuts([t])[20:22] == (0.0125, float(max(f for f in bench.WEB_FLOOR_GRID if f <= 22)))
    assert bench.choose_cuts([t], web_score_rule=False)[20:22] == bench.WEB_SCORE_OFF


def test_the_web_hash_takes_the_fewest_bits_then_the_highest_floor_and_needs_a_background():
    """Copies far above every crop-score ceiling (0.12: landmarks found another way) whose whole
    images are 0 bits apart, in identities at floor 22, with 30 keypoint matches on face and
    background; distinct pairs of a tight series as spread (no background) 0 bits apart at the
    same floor: rare hashes cannot take the copies without them, the web hash can, at the fewest
    bits, the highest floor and the most matches that keep the copies; without the rule, or
    without the keypoint test, off."""
    t = training_table(fit_at_015=0, fit_at_025=0)
    rows = copies(6, score=0.12, hash_bits=0, floor=22.0, n_face=30.0, n_back=30.0, motion=0.05)
    rows += [{"relation": "distinct", "score": 0.12, "hash_bits": 0, "floor": 22.0, "n_face": 30.0, "n_back": 0.0} for _ in range(6)]
    t = pd.concat([t, pair_table(rows, 0)], ignore_index=True)
    t.attrs["originals"] = 300
    cuts = bench.choose_cuts([t])
    assert len(cuts) == 25
    assert cuts[15] == -1 or cuts[14] < 0.12  # rare hashes leave the copies
    assert cuts[22:25] == (0, float(max(f for f in bench.WEB_FLOOR_GRID if f <= 22)), max(k for k in bench.WEB_HASH_MATCHES_GRID if k <= 30))
    assert bench.choose_cuts([t], web_hash_rule=False)[22:25] == bench.WEB_HASH_OFF
    assert bench.choose_cuts([t], anchor_rule=False, face_rule=False, rare_rule=False)[22:25] == bench.WEB_HASH_OFF
    # the series' pairs with a background too: no rule of the grid keeps them out, off
    t.loc[t["relation"].eq("distinct") & t["score"].eq(0.12), "n_back"] = 30.0
    assert bench.choose_cuts([t])[22:25] == bench.WEB_HASH_OFF


def test_a_root_built_with_another_seed_is_refused(tmp_path, monkeypatch):
    """Figures for seed 1 read from a root injected with seed 0 would be seed 0's: refused, with
    the seed the root holds; the same seed and share go on (its faces pass is not run here)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "orl_att40.copies.csv").write_text("path,source,kind,edits\n")
    (data / "orl_att40.build.json").write_text('{"seed": 0, "share": 0.25}')
    monkeypatch.setattr(bench, "faces_seconds", lambda root, name: 0.0)
    with pytest.raises(SystemExit, match="built with"):
        bench.prepare(tmp_path, "orl_att40", 1, 0.25)
    with pytest.raises(SystemExit, match="built with"):
        bench.prepare(tmp_path, "orl_att40", 0, 0.5)
    assert bench.prepare(tmp_path, "orl_att40", 0, 0.25).empty
