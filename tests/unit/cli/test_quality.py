"""`facesieve quality` and `facesieve labels sdd-fiqa` end to end on real faces, and the
dataset-level `--quality` methods (sdd-fiqa, rank averages) inside the pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facesieve.cli import main
from facesieve.config import RunConfig
from facesieve.quality.scoring import score_dataset


def run_cli(*args) -> int:
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def dataset(shared_data, tmp_path_factory) -> Path:
    """ORL: 4 subjects x 4 photos, one subject with a single photo, an image with no face (random
    pixels, too large to be taken for a tight crop) and a README."""
    ds = tmp_path_factory.mktemp("qcli") / "dataset"
    subjects = sorted(p for p in (shared_data / "orl_att40").iterdir() if p.is_dir())
    for subject in subjects[:4]:
        (ds / subject.name).mkdir(parents=True)
        for p in sorted(subject.glob("*.pgm"))[:4]:
            (ds / subject.name / p.name).symlink_to(p)
    (ds / "lonely").mkdir()
    (ds / "lonely" / "only.pgm").symlink_to(sorted(subjects[4].glob("*.pgm"))[0])
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (400, 400, 3), dtype=np.uint8)).save(ds / subjects[0].name / "noface.png")
    (ds / "README.txt").write_text("not an image\n")
    return ds


def test_labels_sdd_fiqa(dataset, tmp_path, capsys):
    out = tmp_path / "labels" / "labels.txt"
    out.parent.mkdir()
    assert run_cli("labels", "sdd-fiqa", dataset, "--out", out, "--quiet", "--runs", "4") == 0
    printed = capsys.readouterr().out
    assert "lonely" in printed and "one-image identities" in printed
    lines = out.read_text().splitlines()
    assert len(lines) == 16  # 4 x 4 faces; the lonely face has no label, the random image no face
    paths, scores = zip(*(line.split("\t") for line in lines))
    assert all((dataset / p).is_file() and not Path(p).is_absolute() for p in paths)
    assert not any(p.startswith("lonely/") or p.endswith("noface.png") for p in paths)
    s = np.array(scores, float)
    assert (s >= 0).all() and (s <= 100).all() and s.std() > 0
    assert (out.parent / ".facesieve").is_dir()  # the default workspace sits next to the output


def test_labels_sdd_fiqa_json_and_refusals(dataset, tmp_path, capsys):
    out = tmp_path / "l.txt"
    assert run_cli("labels", "sdd-fiqa", dataset, "--out", out, "--json", "--runs", "2") == 0
    import json

    summary = json.loads(capsys.readouterr().out)
    assert summary["single_image_identities"] == ["lonely"] and summary["unlabelled_faces"] == 1
    assert summary["labelled"] == summary["lines"] == 16
    assert run_cli("labels", "sdd-fiqa", dataset, "--out", dataset / "labels.txt", "--quiet") == 2
    assert "inside the input" in capsys.readouterr().err
    assert not (dataset / "labels.txt").exists()


def test_quality_csv(dataset, tmp_path, monkeypatch):
    out = tmp_path / "scores.csv"
    assert run_cli("quality", dataset, "--out", out, "--method", "image", "--quiet") == 0
    t = pd.read_csv(out, keep_default_na=False)
    assert list(t.columns[:3]) == ["path", "identity", "quality"]
    assert list(t.columns[-2:]) == ["status", "reason"]
    assert {"sharpness", "brightness", "face_size", "yaw"} <= set(t.columns)
    assert len(t) == 19  # every file, the README too
    noface = t[t["path"].str.endswith("noface.png")].iloc[0]
    assert noface["status"] == "no_face" and noface["quality"] == ""
    ok = t[t["status"] == "ok"]
    assert len(ok) == 17 and (ok["quality"].astype(float) > 0).all()
    assert set(ok["identity"]) == {p.name for p in dataset.iterdir() if p.is_dir()}

    # a re-run on the same workspace computes no face and no embedding again
    import facesieve.stages as stages

    def boom(*a, **k):
        raise AssertionError("a model was called on a re-run")

    monkeypatch.setattr(stages, "faces_worker", boom)
    monkeypatch.setattr(stages, "embedder", boom)
    before = out.read_bytes()
    assert run_cli("quality", dataset, "--out", out, "--method", "image", "--quiet", "--jobs", "1") == 0
    assert out.read_bytes() == before


def test_quality_offline_default_and_errors(dataset, tmp_path, capsys):
    out = tmp_path / "offline.csv"
    assert run_cli("quality", dataset, "--out", out, "--quiet") == 0
    t = pd.read_csv(out)
    assert {"emb_norm", "s_norm", "noise_sigma", "s_noise", "blockiness", "s_blockiness", "image_quality"} <= set(t.columns)
    ok = t[t["status"] == "ok"]
    # SFace's raw norms of clean ORL faces: 8.2-14.5 over all 400 (docs/quality.md)
    assert ok["quality"].between(0, 1).all() and ok["emb_norm"].between(8, 15).all()
    np.testing.assert_allclose(ok["s_norm"], 1 / (1 + np.exp(-(ok["emb_norm"] - 11.0))), rtol=1e-9)
    # the costlier formula stays available under its own name, with its robustness terms
    assert run_cli("quality", dataset, "--out", tmp_path / "full.csv", "--method", "offline-full", "--quiet") == 0
    full = pd.read_csv(tmp_path / "full.csv")
    assert {"robustness", "rob_flip", "s_robustness", "s_noise", "image_quality"} <= set(full.columns)
    assert full.loc[full["status"] == "ok", "robustness"].between(0.5, 1).all()
    capsys.readouterr()
    assert run_cli("quality", dataset, "--out", tmp_path / "x.csv", "--method", "nope") == 2
    assert "unknown quality method" in capsys.readouterr().err
    assert run_cli("quality", dataset, "--out", tmp_path / "y.csv", "--ers-examples", tmp_path) == 2
    assert "--method ers" in capsys.readouterr().err


def test_dataset_level_methods_in_the_pipeline(dataset, tmp_path):
    """--quality sdd-fiqa and a rank average run as dataset-level methods inside the run's stages."""
    cfg = dict(dataset=dataset, out=tmp_path / "out", jobs=2)
    sdd = score_dataset(RunConfig(quality="sdd-fiqa", **cfg)).table.set_index("path")
    both = score_dataset(RunConfig(quality="image+sdd-fiqa", **cfg)).table.set_index("path")
    ok = sdd["status"] == "ok"
    lonely = [p for p in sdd.index if p.startswith("lonely/")]
    assert sdd.loc[lonely, "quality"].isna().all()
    labelled = ok & ~sdd.index.isin(lonely)
    assert sdd.loc[labelled, "quality"].between(0, 100).all()
    assert both.loc[labelled, "quality"].between(0, 1).all()
    np.testing.assert_allclose(both.loc[labelled, "sdd-fiqa_quality"], sdd.loc[labelled, "quality"])
    assert {"image_quality", "sdd-fiqa_quality"} <= set(both.columns)
