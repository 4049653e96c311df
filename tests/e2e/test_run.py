"""End-to-end `facesieve run`: the golden FaceDuplicationFilter reproduction, bad inputs, resumability."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facesieve.cli import main

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> int:
    return main([str(a) for a in args])


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def golden_run(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("golden") / "out"
    args = [
        "run", shared_data / "seed_vggface" / "dataset", "--out", out, "--detector", "dlib-hog", "--embedder", "dlib",
        "--metric", "euclidean", "--quality", "uniform", "--keep", "3", "--face-policy", "first", "--no-dedup", "--quiet",
    ]
    assert run_cli(*args) == 0
    return out, args


def test_golden_selection_matches_face_duplication_filter(golden_run, shared_data):
    out, _ = golden_run
    manifest = pd.read_csv(out / "manifest.csv")
    kept = manifest[manifest["action"] == "keep"]
    by_id = {i: sorted(Path(p).name for p in g["path"]) for i, g in kept.groupby("identity")}
    assert by_id == {
        "person1": ["0018_03.jpg", "0027_01.jpg", "0061_01.jpg"],
        "person2": ["28.jpg", "3.jpg", "5.jpg"],
    }
    for ident in ("person1", "person2"):
        assert (out / ident).is_dir()
        copied = sorted(p.name for p in (out / ident).iterdir() if p.suffix == ".jpg")
        assert copied == by_id[ident]
        ours = np.load(out / ident / "best_encoding.npy")
        theirs = np.load(shared_data / "seed_vggface" / "seed_selected_k3" / ident / "best_encoding.npy")
        assert ours.shape == theirs.shape == (128,)
        np.testing.assert_allclose(ours, theirs, atol=1e-6, rtol=0)
    selection = pd.read_csv(out / "selection.csv").set_index("identity")
    assert round(selection.loc["person1", "score"], 4) == 0.3702
    assert round(selection.loc["person2", "score"], 4) == 0.1753
    assert set(selection["method"]) == {"exhaustive"}


def test_rerun_recomputes_nothing(golden_run, monkeypatch):
    out, args = golden_run
    import facesieve.stages as stages

    def boom(*a, **k):
        raise AssertionError("a model was called on a re-run with nothing changed")

    monkeypatch.setattr(stages, "faces_worker", boom)
    monkeypatch.setattr(stages, "chip_worker", boom)
    monkeypatch.setattr(stages, "embedder", boom)
    before = pd.read_csv(out / "manifest.csv")
    assert run_cli(*args, "--jobs", "1") == 0
    after = pd.read_csv(out / "manifest.csv")
    pd.testing.assert_frame_equal(before, after)


def test_refuses_output_inside_input(shared_data, tmp_path, capsys):
    data = tmp_path / "data"
    (data / "a").mkdir(parents=True)
    (data / "a" / "x.jpg").write_bytes((shared_data / "deepface13" / "person01" / "img1.jpg").read_bytes())
    assert run_cli("run", data, "--out", data / "cleaned", "--quiet") == 2
    err = capsys.readouterr().err
    assert "inside the input" in err and "Traceback" not in err
    assert not (data / "cleaned").exists()


def test_refuses_foreign_nonempty_output(shared_data, tmp_path, capsys):
    out = tmp_path / "someone_elses"
    out.mkdir()
    (out / "thesis.tex").write_text("precious")
    assert run_cli("run", shared_data / "seed_vggface" / "dataset", "--out", out, "--quiet") == 2
    assert "not a facesieve output" in capsys.readouterr().err
    assert (out / "thesis.tex").read_text() == "precious"
    assert sorted(p.name for p in out.iterdir()) == ["thesis.tex"]


def test_missing_dataset_is_one_line_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "facesieve", "run", str(tmp_path / "nope"), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, cwd=REPO,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "not found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_workspace_cached_before_the_picture_hashes_says_so_and_runs(tmp_path, capsys):
    """Faces cached by a version that kept no hash of the picture inside a frame: the re-run does not
    find the faces again, judges every pair by the whole image's hash as that version did, and says
    how to get the frame back."""
    data, out = REPO / "sample" / "faces", tmp_path / "out"
    assert run_cli("run", data, "--out", out, "--quiet") == 0
    before = pd.read_csv(out / "manifest.csv")
    parts = sorted((out / ".facesieve").glob("faces-*/*.parquet"))
    assert parts
    for p in parts:
        pd.read_parquet(p).drop(columns=["phash_inner", "phash_inner_mirror"]).to_parquet(p)
    capsys.readouterr()
    assert run_cli("run", data, "--out", out, "--quiet") == 0
    err = capsys.readouterr().err
    assert "kept no hash of the picture inside a frame" in " ".join(err.split())
    pd.testing.assert_frame_equal(before, pd.read_csv(out / "manifest.csv"))  # the sample has no framed photo
