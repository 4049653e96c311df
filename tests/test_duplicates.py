"""Injected near-copies of real photos (orl_att40, deepface13) through a whole default run.

The duplicates issue asks for >= 95% of copies found at >= 99% precision with <= 1% of the
original photos lost. What the default SFace thresholds reach is printed; the assertions guard the
figures measured in docs/thresholds.md so a regression fails.
"""

from __future__ import annotations

import json

import pytest

from facesieve.config import RunConfig
from facesieve.evaluate.injection import build_injected, score_injection
from facesieve.pipeline import run


@pytest.fixture(scope="module")
def injected_run(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("inject")
    sources = []
    orl_ids = sorted(p.name for p in (shared_data / "orl_att40").iterdir() if p.is_dir())[:8]
    for ident in orl_ids:
        sources += [(p, f"orl_{ident}") for p in sorted((shared_data / "orl_att40" / ident).iterdir())]
    for d in sorted(p for p in (shared_data / "deepface13").iterdir() if p.is_dir()):
        sources += [(p, f"df_{d.name}") for p in sorted(d.iterdir())]
    injected = build_injected(sources, root / "data", n_copies=48, seed=3)
    res = run(RunConfig(dataset=root / "data", out=root / "out", jobs=2, report=False))
    return res.manifest, injected


@pytest.mark.heavy
def test_injected_copies_are_found(injected_run):
    manifest, injected = injected_run
    score = score_injection(manifest, injected)
    print("\nduplicates:", json.dumps({k: v for k, v in score.items() if k != "lost"}))
    assert score["copies"] == 48
    # every removal of a copy names a real file of the same identity
    dup = manifest[manifest["reason"].isin(["near_duplicate", "exact_duplicate"])]
    assert set(dup["duplicate_of"]) <= set(manifest["path"])
    assert (dup["identity"].to_numpy() == manifest.set_index("path").loc[dup["duplicate_of"], "identity"].to_numpy()).all()
    assert score["recall"] >= 0.80
    assert score["precision"] >= 0.85
    assert score["originals_lost_share"] <= 0.05
    # re-encoded, resized, recoloured and mirrored copies are caught by the pHash signal
    for kind in ("jpeg", "resize", "flip", "brightness"):
        assert score["recall_by_kind"][kind] >= 0.75, kind


@pytest.mark.heavy
def test_uncropped_web_photos_lose_nothing(injected_run):
    manifest, injected = injected_run
    df = manifest[manifest["identity"].str.startswith("df_")]
    score = score_injection(df, injected[injected["path"].str.startswith("df_")])
    assert score["originals_lost"] == 0
    assert score["precision"] == 1.0


@pytest.mark.heavy
def test_consecutive_video_frames_collapse_without_emptying_an_identity(shared_data, tmp_path):
    """essex_faces94_19 (still video frames): docs/thresholds.md reports the frames kept per identity."""
    res = run(RunConfig(dataset=shared_data / "essex_faces94_19", out=tmp_path / "out", jobs=2, report=False))
    faces = res.manifest[res.manifest["status"] == "ok"]
    kept = faces[faces["action"] == "keep"].groupby("identity").size().reindex(faces["identity"].unique(), fill_value=0)
    print("\nessex frames kept per identity:", kept.sort_index().to_dict())
    assert len(kept) == 19 and (kept >= 2).all()
    # still frames collapse: fewer than half survive, but the moving subjects keep several
    assert kept.sum() < 0.5 * len(faces) and kept.max() >= 8
    dup = faces[faces["reason"] == "near_duplicate"]
    kept_paths = set(faces.loc[faces["action"] == "keep", "path"])
    # no chaining: every removed frame names a kept frame of its own identity, at cosine >= 0.85
    assert set(dup["duplicate_of"]) <= kept_paths
    assert (dup["similarity"] >= 0.85).all()
