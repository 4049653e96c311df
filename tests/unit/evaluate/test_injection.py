"""`score_injection`, which turns a run's manifest into every published duplicate figure (recall per
kind, precision of removals, originals lost), on a table small enough to count by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from facesieve.evaluate.injection import kept_face, score_injection

#   path          status   reason             duplicate_of   what it is
MANIFEST = [
    ("a/1.jpg",   "ok",      "selected",        ""),         # original, kept
    ("a/c1.png",  "ok",      "exact_duplicate", "a/1.jpg"),  # copy of a/1 removed for it: found, right
    ("a/2.jpg",   "ok",      "near_duplicate",  "a/c2.png"), # original removed for its own copy: right, not lost
    ("a/c2.png",  "ok",      "selected",        ""),         # copy of a/2 kept: found (one decision with a/2)
    ("a/3.jpg",   "ok",      "near_duplicate",  "a/1.jpg"),  # another photo removed for a/1: wrong, lost
    ("b/4.jpg",   "ok",      "selected",        ""),
    ("b/c4.png",  "ok",      "not_selected",    ""),         # copy of b/4 not tied to it: missed
    ("b/5.jpg",   "ok",      "outlier",         ""),         # not a duplicate removal
    ("b/c5.png",  "ok",      "near_duplicate",  "b/4.jpg"),  # copy of b/5 removed for b/4: wrong, missed
    ("b/bad.jpg", "no_face", "no_face",         ""),         # not a face: not an original
    ("c/7.jpg",   "ok",      "near_duplicate",  "c/8.jpg"),  # original removed for another photo: wrong, lost
    ("c/c7.png",  "ok",      "near_duplicate",  "c/8.jpg"),  # its copy removed for the same face: found, wrong
    ("c/8.jpg",   "ok",      "selected",        ""),
]  # fmt: skip
INJECTED = [("a/c1.png", "a/1.jpg", "jpeg"), ("a/c2.png", "a/2.jpg", "flip"), ("b/c4.png", "b/4.jpg", "flip"),
            ("b/c5.png", "b/5.jpg", "jpeg"), ("c/c7.png", "c/7.jpg", "resize")]


def frames():
    m = pd.DataFrame(MANIFEST, columns=["path", "status", "reason", "duplicate_of"]).replace({"duplicate_of": {"": np.nan}})
    return m, pd.DataFrame(INJECTED, columns=["path", "source", "kind"])


def test_score_injection_by_hand():
    got = score_injection(*frames())
    # found: c1, c2, c7 of 5 copies; by kind jpeg 1/2, flip 1/2, resize 1/1
    assert got["copies"] == 5 and got["found"] == 3 and got["recall"] == pytest.approx(0.6)
    assert got["recall_by_kind"] == {"flip": 0.5, "jpeg": 0.5, "resize": 1.0}
    # removed as duplicates: c1, 2, 3, c5, 7, c7; right only where both sides are one photo: c1, 2
    assert got["removed_as_duplicate"] == 6 and got["precision"] == pytest.approx(2 / 6)
    # originals: the 7 found faces that are not copies (b/bad.jpg has no face); lost: 3 and 7
    assert got["originals"] == 7 and got["originals_lost"] == 2 and sorted(got["lost"]) == ["a/3.jpg", "c/7.jpg"]
    assert got["originals_lost_share"] == pytest.approx(2 / 7)


def test_nothing_removed_and_a_missing_copy():
    m, inj = frames()
    m = m[m["path"] != "a/c2.png"].assign(reason="selected", duplicate_of=np.nan)  # a copy the run never saw
    got = score_injection(m, inj)
    assert got["found"] == 0 and got["recall"] == 0.0  # a copy missing from the manifest is not found
    assert got["removed_as_duplicate"] == 0 and got["precision"] == 1.0 and got["originals_lost"] == 0


def test_a_copy_found_through_a_chain_of_removals():
    # the exact-duplicate pass runs first: c2 names s, which the near-duplicate pass then removed
    # for c1; c2 and s end in c1's group, so c2 is found, though the face it names was removed too
    m = pd.DataFrame([("s", "ok", "near_duplicate", "c1"), ("c1", "ok", "selected", np.nan),
                      ("c2", "ok", "exact_duplicate", "s"), ("t", "ok", "selected", np.nan)],
                     columns=["path", "status", "reason", "duplicate_of"])
    inj = pd.DataFrame([("c1", "s", "jpeg"), ("c2", "s", "png")], columns=["path", "source", "kind"])
    got = score_injection(m, inj)
    assert got["found"] == 2 and got["precision"] == 1.0 and got["originals_lost"] == 0
    # one step would have compared s's kept face (c1) with c2's (s) and called the copy missed
    assert kept_face(m) == {"s": "c1", "c1": "c1", "c2": "c1", "t": "t"}
