"""bench/bench_republished.py's reading of a run: a photo keeps as many faces as its versions'
groups (each face's group: evaluate.injection.kept_face, the end of its duplicate_of chain)."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from facesieve.evaluate.injection import kept_face

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import bench_republished as bench  # noqa: E402


def test_groups_follow_the_duplicate_chain_and_count_the_faces_a_photo_keeps():
    manifest = pd.DataFrame({
        "path": ["s", "c1", "c2", "c3", "c4", "t", "u"],
        "reason": ["near_duplicate", "kept", "exact_duplicate", "kept", "near_duplicate", "kept", "ambiguous_identity"],
        # c2 is an exact duplicate of s, which the near-duplicate pass removed under c1: c2 is in c1's group;
        # c3 stays apart (the photo keeps two faces); u names s for another reason than a duplicate
        "duplicate_of": ["c1", None, "s", None, "c3", None, "s"],
    })
    group = kept_face(manifest)
    assert group == {"s": "c1", "c1": "c1", "c2": "c1", "c3": "c3", "c4": "c3", "t": "t", "u": "u"}
    copies = pd.DataFrame({"path": ["c1", "c2", "c3", "c4", "u"], "source": ["s", "s", "s", "s", "t"]})
    assert bench.kept_per_photo(group, copies).to_dict() == {"s": 2, "t": 2}
    loop = pd.DataFrame({"path": ["x", "y"], "reason": ["near_duplicate"] * 2, "duplicate_of": ["y", "x"]})
    assert set(kept_face(loop).values()) <= {"x", "y"}  # a loop (never written by a run) ends
