"""Injected near-copies of real photos (orl_att40, deepface13) through a whole default run.

The duplicates issue asks for >= 95% of copies found at >= 99% precision with <= 1% of the
original photos lost, on the whole of orl_att40 and deepface13. The default run (SFace, pixel copy
check) is held to exactly that; the figures are printed. The run without the pixel check (hash
rule instead) is held to what docs/thresholds.md reports for it.
"""

from __future__ import annotations

import json

import pytest

from facesieve.config import RunConfig
from facesieve.evaluate.injection import build_injected, score_injection, set_sources
from facesieve.pipeline import run


@pytest.fixture(scope="module")
def injected_run(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("inject")
    sources = set_sources(shared_data, ["orl_att40", "deepface13"])
    injected = build_injected(sources, root / "data", n_copies=150, seed=3)
    res = run(RunConfig(dataset=root / "data", out=root / "out", jobs=2, report=False))
    return res.manifest, injected, root


def print_score(label: str, score: dict) -> None:
    print(f"\n{label}:", json.dumps({k: v for k, v in score.items() if k != "lost"}))


@pytest.mark.heavy
def test_injected_copies_are_found(injected_run):
    manifest, injected, _ = injected_run
    score = score_injection(manifest, injected)
    print_score("duplicates (orl_att40 + deepface13, default run)", score)
    assert score["copies"] == 150
    # every removal of a copy names a real file of the same identity
    dup = manifest[manifest["reason"].isin(["near_duplicate", "exact_duplicate"])]
    assert set(dup["duplicate_of"]) <= set(manifest["path"])
    assert (dup["identity"].to_numpy() == manifest.set_index("path").loc[dup["duplicate_of"], "identity"].to_numpy()).all()
    # the duplicates issue's target
    assert score["recall"] >= 0.95
    assert score["precision"] >= 0.99
    assert score["originals_lost_share"] <= 0.01
    for kind in ("jpeg", "resize", "crop", "flip", "brightness", "rotate"):
        assert score["recall_by_kind"][kind] >= 0.9, kind
    assert (dup["detail"].str.contains("pixels")).any()


@pytest.mark.heavy
def test_without_the_pixel_check_the_hash_rule_decides(injected_run):
    """--no-pixel-check: embedding at 0.97 or pHash; faster, and merges ORL shots of one sitting."""
    _, injected, root = injected_run
    res = run(RunConfig(dataset=root / "data", out=root / "out_hash", workspace=root / "out" / ".facesieve", jobs=2,
                        report=False, pixel_check=False))
    score = score_injection(res.manifest, injected)
    print_score("duplicates without the pixel check", score)
    assert res.summary["pixel_check"] == {"pairs": 0, "copies": 0}
    dup = res.manifest[res.manifest["reason"] == "near_duplicate"]
    assert (dup["detail"] == "matched by phash").any() and not dup["detail"].str.contains("pixels").any()
    assert score["recall"] >= 0.75 and score["precision"] >= 0.8
    for kind in ("jpeg", "resize", "flip", "brightness"):
        assert score["recall_by_kind"][kind] >= 0.75, kind


@pytest.mark.heavy
def test_uncropped_web_photos_lose_nothing(injected_run):
    manifest, injected, _ = injected_run
    df = manifest[manifest["identity"].str.startswith("deepface13__")]
    score = score_injection(df, injected[injected["path"].str.startswith("deepface13__")])
    assert score["originals_lost"] == 0
    assert score["precision"] == 1.0


@pytest.mark.heavy
def test_consecutive_video_frames(shared_data, tmp_path):
    """essex_faces94_19 (still video frames), docs/thresholds.md. By default frames are distinct
    shots (as ORL's shots of one sitting must be): the pixel check re-makes none of them from
    another. Without it, the hash rule collapses still frames into groups that never chain."""
    res = run(RunConfig(dataset=shared_data / "essex_faces94_19", out=tmp_path / "out", jobs=2, report=False))
    faces = res.manifest[res.manifest["status"] == "ok"]
    assert len(faces) == 364
    assert res.summary["pixel_check"]["pairs"] > 0 and res.summary["pixel_check"]["copies"] == 0
    assert not (faces["reason"] == "near_duplicate").any()

    res = run(RunConfig(dataset=shared_data / "essex_faces94_19", out=tmp_path / "out_hash", jobs=2, report=False,
                        workspace=tmp_path / "out" / ".facesieve", pixel_check=False))
    faces = res.manifest[res.manifest["status"] == "ok"]
    kept = faces[faces["action"] == "keep"].groupby("identity").size().reindex(faces["identity"].unique(), fill_value=0)
    print("\nessex frames kept per identity (--no-pixel-check):", kept.sort_index().to_dict())
    assert len(kept) == 19 and (kept >= 2).all()
    # still frames collapse: fewer than half survive, but the moving subjects keep several
    assert kept.sum() < 0.5 * len(faces) and kept.max() >= 8
    dup = faces[faces["reason"] == "near_duplicate"]
    kept_paths = set(faces.loc[faces["action"] == "keep", "path"])
    # no chaining: every removed frame names a kept frame of its own identity, at cosine >= 0.85
    assert set(dup["duplicate_of"]) <= kept_paths
    assert (dup["similarity"] >= 0.85).all()
