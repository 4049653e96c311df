"""`facesieve extract-video`: videos written here with OpenCV from essex_faces94 frames (some
repeated), faces extracted, repeated frames dropped, an unreadable video reported, the result
ready for `facesieve run`."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from facesieve.cli import main
from facesieve.video import (
    ExtractSettings,
    crop_with_margin,
    folder_names,
    frame_indices,
    frame_name,
    list_videos,
)

FPS = 5.0  # one frame every 200 ms
PERSON, OTHER = "anpage", "asamma"
# how many times each chosen photo is written in a row: the repeats are what must go
REPEATS = [1, 3, 1, 2, 1, 1, 3]


def essex(shared_data: Path, person: str) -> list[Path]:
    """The person's photos in capture order (name.1.jpg ... name.20.jpg, then name.testN.jpg)."""
    def order(p: Path):
        tail = p.stem.split(".")[-1]
        return (0, int(tail), "") if tail.isdigit() else (1, 0, tail)

    return sorted((shared_data / "essex_faces94_19" / person).glob("*.jpg"), key=order)


@pytest.fixture(scope="module")
def videos(shared_data, tmp_path_factory):
    """clips/anpage.avi (MJPG: 7 distinct photos, 12 frames), clips/sub/asamma.mp4 (mp4v: 3 photos,
    no repeats), clips/broken.mp4 (garbage bytes). Photos are every third of the person's 20 (the
    others are held out for the identity check)."""
    root = tmp_path_factory.mktemp("clips")
    photos = essex(shared_data, PERSON)[::3][: len(REPEATS)]
    w = cv2.VideoWriter(str(root / f"{PERSON}.avi"), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (180, 200))
    frames = []  # source photo of each frame
    for p, n in zip(photos, REPEATS):
        for _ in range(n):
            w.write(cv2.imread(str(p)))
            frames.append(p)
    w.release()
    (root / "sub").mkdir()
    w = cv2.VideoWriter(str(root / "sub" / f"{OTHER}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (180, 200))
    for p in essex(shared_data, OTHER)[::6][:3]:
        w.write(cv2.imread(str(p)))
    w.release()
    (root / "broken.mp4").write_bytes(b"\x00\x01garbage, not a video" * 500)
    (root / "notes.txt").write_text("not a video")
    return root, frames, photos


@pytest.fixture(scope="module")
def extracted(videos, tmp_path_factory):
    root, _, _ = videos
    out = tmp_path_factory.mktemp("ds") / "faces"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["extract-video", str(root), "--out", str(out), "--every", "0.2", "--jobs", "1", "--json"])
    return rc, json.loads(buf.getvalue()), out


def test_summary_and_unreadable_video(extracted, videos):
    rc, s, out = extracted
    root, frames, photos = videos
    assert rc == 0
    assert s["videos"] == 3 and s["ok"] == 2 and s["errors"] == 1
    (failed,) = s["failed"]
    assert failed["video"].endswith("broken.mp4") and "cannot open" in failed["reason"]
    assert not (out / "broken").exists()
    per = {Path(v["video"]).name: v for v in s["per_video"]}
    assert per[f"{PERSON}.avi"]["frame_count"] == len(frames) == sum(REPEATS)
    assert per[f"{PERSON}.avi"]["sampled"] == len(frames)
    assert sorted(p.name for p in out.iterdir()) == sorted([".extract-video.csv", OTHER, PERSON])


def test_repeated_frames_dropped_distinct_kept(extracted, videos):
    _, s, out = extracted
    _, frames, photos = videos
    per = {Path(v["video"]).name: v for v in s["per_video"]}[f"{PERSON}.avi"]
    assert per["faces"] == len(frames) and per["no_face"] == 0
    assert per["duplicates"] == sum(REPEATS) - len(REPEATS)
    assert per["kept"] == len(REPEATS)
    kept = sorted((out / PERSON).glob("frame_*.jpg"))
    # names are the frames' times in ms: map each back to its source photo
    sources = [frames[int(round(int(p.stem.split("_")[1]) / 1000 * FPS))] for p in kept]
    assert sources == photos  # each distinct photo once, in order
    first = np.cumsum([0] + REPEATS[:-1])  # the first frame of every run is the one kept
    assert [p.name for p in kept] == [frame_name(round(i * 1000 / FPS)) for i in first]
    log = (out / ".extract-video.csv").read_text().splitlines()
    assert log[0] == "video,frame,t_ms,status,file,det_score,difference"
    assert sum(",duplicate," in line for line in log) == s["duplicates"]


def test_faces_are_the_person(extracted, shared_data):
    """The default embedder (SFace) matches every extracted face to the video's person, against the
    person's held-out photos and five other essex identities."""
    from facesieve.faces.align import align
    from facesieve.faces.detect import pick_face
    from facesieve.imaging import load_rgb
    from facesieve.models import zoo

    _, _, out = extracted
    det, emb = zoo.build_detector("yunet"), zoo.build_embedder("sface")

    def vecs(paths):
        crops = []
        for p in paths:
            rgb = load_rgb(p)
            d = det.detect(rgb)
            crops.append(align(rgb, d[pick_face(d, rgb.shape)].landmarks))
        v = emb.embed_batch(np.stack(crops + crops[:1]))[: len(crops)]  # never a batch of one
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    people = [PERSON, OTHER, "asewil", "astefa", "drbost", "ekavaz"]
    held_out = {p: [x for i, x in enumerate(essex(shared_data, p)) if i % 3 != 0][:6] for p in people}
    centres = np.stack([vecs(held_out[p]).mean(0) for p in people])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    for person in (PERSON, OTHER):
        got = vecs(sorted((out / person).glob("*.jpg")))
        sims = got @ centres.T
        assert len(got) >= 3
        assert (np.argmax(sims, axis=1) == people.index(person)).all(), sims
        others = np.delete(sims, people.index(person), axis=1).max(1)
        assert (sims[:, people.index(person)] - others > 0.05).all()


def test_crops_have_margin(extracted):
    _, _, out = extracted
    img = cv2.imread(str(next((out / PERSON).glob("*.jpg"))))
    h, w = img.shape[:2]
    assert 100 < min(h, w) <= 200 and abs(h - w) <= 60  # a square around the face, cut at the 180x200 frame


def test_aligned_frames_count_and_rerun(videos, tmp_path):
    root, _, _ = videos
    out = tmp_path / "aligned"
    video = root / f"{PERSON}.avi"
    assert main(["extract-video", str(video), "--out", str(out), "--frames", "4", "--save", "aligned", "--size", "96",
                 "--dedup", "none", "--jobs", "1", "--quiet"]) == 0
    files = sorted((out / PERSON).glob("*.jpg"))
    assert len(files) == 4
    assert all(cv2.imread(str(f)).shape == (96, 96, 3) for f in files)
    # the same folder again: skipped unless --overwrite
    assert main(["extract-video", str(video), "--out", str(out), "--frames", "4", "--jobs", "1", "--quiet"]) == 0
    assert len(list((out / PERSON).glob("*.jpg"))) == 4
    assert main(["extract-video", str(video), "--out", str(out), "--frames", "2", "--overwrite", "--jobs", "1", "--quiet"]) == 0
    assert len(list((out / PERSON).glob("*.jpg"))) == 2


def test_only_unreadable_videos_exit_1(videos, tmp_path, capsys):
    root, _, _ = videos
    assert main(["extract-video", str(root / "broken.mp4"), "--out", str(tmp_path / "o"), "--jobs", "1"]) == 1
    assert "cannot open" in capsys.readouterr().out
    assert main(["extract-video", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    with pytest.raises(SystemExit) as e:  # argparse refuses both at once
        main(["extract-video", str(root), "--out", str(tmp_path / "o"), "--frames", "3", "--every", "1"])
    assert e.value.code == 2


@pytest.mark.heavy
def test_extracted_dataset_runs(extracted, tmp_path):
    """The extracted folder is a dataset `facesieve run` takes as it is (the log file is hidden)."""
    from facesieve.config import RunConfig
    from facesieve.pipeline import run

    _, s, out = extracted
    res = run(RunConfig(dataset=out, out=tmp_path / "cleaned", jobs=1, report=False))
    m = res.manifest
    assert len(m) == s["kept"] and set(m["identity"]) == {PERSON, OTHER}
    assert (m["status"] == "ok").all()


def test_frame_indices():
    assert frame_indices(10, 5.0, frames=20) == list(range(10))
    assert frame_indices(100, 25.0, frames=4) == [12, 37, 62, 87]  # centres of 4 equal stretches
    assert frame_indices(100, 25.0, every=1.0) == [0, 25, 50, 75]
    assert frame_indices(10, 30.0, every=0.01) == list(range(10))  # finer than a frame: every frame once
    assert frame_indices(7, 0.0, every=1.0) == [0]  # unknown fps: 25 assumed
    assert frame_indices(0, 25.0, frames=3) == []


def test_listing_and_names(videos, tmp_path):
    root, _, _ = videos
    found = [p.relative_to(root).as_posix() for p in list_videos(root)]
    assert found == [f"{PERSON}.avi", "broken.mp4", f"sub/{OTHER}.mp4"]
    assert folder_names([Path("a.mp4"), Path("x/a.avi"), Path("y/a.avi"), Path("b.MKV")]) == ["a", "a_avi", "a_2", "b"]
    rgb = np.zeros((100, 80, 3), np.uint8)
    assert crop_with_margin(rgb, (30, 40, 20, 20), 0.5).shape == (40, 40, 3)
    assert crop_with_margin(rgb, (0, 0, 20, 30), 0.5).shape == (45, 40, 3)  # a 60 px square cut at the edges
    with pytest.raises(Exception, match="--frames or --every"):
        ExtractSettings(frames=2, every=1.0).check()
