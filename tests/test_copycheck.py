"""The pixel copy check (facesieve/select/copycheck.py) on real photos, and its place in the
near-duplicate grouping: copies re-made by one edit are found, ORL's closest distinct shots of one
sitting are not, and the check is asked only about pairs the embeddings leave undecided."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from facesieve.augment import COPY_KINDS, jpeg_bytes, near_copy
from facesieve.imaging import load_rgb
from facesieve.select.copycheck import DEFAULT_RESIDUAL, CopyCheck, copy_residual, load_view
from facesieve.select.neardup import near_duplicate_groups, nearest_pairs
from test_decide import unit


def save_copy(rgb: np.ndarray, kind: str, rng: np.random.Generator, out: Path) -> Path:
    """As the injection test saves copies: JPEG bytes for re-encodes, PNG otherwise."""
    if kind == "jpeg":
        path = out / "copy.jpg"
        path.write_bytes(jpeg_bytes(rgb, int(rng.integers(30, 91))))
    else:
        path = out / f"copy_{kind}.png"
        Image.fromarray(near_copy(rgb, kind, rng)).save(path)
    return path


@pytest.mark.parametrize("photo", ["orl_att40/s05/07.pgm", "deepface13/person03/img48.jpg"])
@pytest.mark.parametrize("kind", list(COPY_KINDS))
def test_every_copy_kind_is_re_made(shared_data, tmp_path, photo, kind):
    src = shared_data / photo
    copy = save_copy(load_rgb(src), kind, np.random.default_rng(7), tmp_path)
    check = CopyCheck([src, copy])
    is_copy, residual, edit = check(0, 1)
    assert is_copy, (kind, residual, edit)
    assert check(1, 0)[0]  # either way round
    if photo.startswith("orl"):  # native size: the best re-make is (almost) exact
        best, how = copy_residual(load_view(src), load_view(copy))
        assert best <= 0.3, (kind, best, how)


def test_copies_made_with_other_libraries_are_found(shared_data, tmp_path):
    src = shared_data / "orl_att40/s12/04.pgm"
    rgb = load_rgb(src)
    ok, enc = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 40])
    (tmp_path / "cv.jpg").write_bytes(enc.tobytes())
    Image.fromarray(cv2.resize(rgb, (150, 183), interpolation=cv2.INTER_LINEAR)).save(tmp_path / "big.png")
    Image.fromarray(cv2.resize(rgb, (60, 73), interpolation=cv2.INTER_AREA)).save(tmp_path / "small.png")
    check = CopyCheck([src, tmp_path / "cv.jpg", tmp_path / "big.png", tmp_path / "small.png"])
    for j in (1, 2, 3):
        assert check(0, j)[0], (j, check(0, j))


def test_rotated_frontal_face_is_found_either_orientation(shared_data, tmp_path):
    """A nearly symmetric face rotated by Pillow (bicubic, black corners): its thumbnail agrees
    better mirrored, so the check must try both orientations of the alignment."""
    src = shared_data / "yaleB_cropped10/yaleB08/yaleB08_P00A+000E+00.pgm"
    Image.fromarray(np.asarray(Image.open(src).convert("RGB").rotate(-5.5, resample=Image.BICUBIC))).save(tmp_path / "rot.png")
    is_copy, residual, edit = CopyCheck([src, tmp_path / "rot.png"])(0, 1)
    assert is_copy and edit == "ecc", (residual, edit)


@pytest.mark.parametrize("pair", [("s19/03.pgm", "s19/10.pgm"), ("s19/08.pgm", "s19/09.pgm"), ("s16/03.pgm", "s16/10.pgm")])
def test_closest_distinct_shots_of_one_sitting_are_not_copies(shared_data, pair):
    """ORL's closest pairs: the same pose a second apart, cosine up to 0.979 (docs/thresholds.md)."""
    a, b = (load_view(shared_data / "orl_att40" / p) for p in pair)
    residual, edit = copy_residual(a, b)
    assert residual > 1.5 * DEFAULT_RESIDUAL, (residual, edit)


def test_distinct_web_photos_are_far_apart(shared_data):
    files = sorted((shared_data / "deepface13" / "person01").iterdir())[:3]
    check = CopyCheck(files)
    for i, j in ((0, 1), (0, 2), (1, 2)):
        is_copy, residual, _ = check(i, j)
        assert not is_copy and residual > 10, residual


def test_unreadable_file_is_never_a_copy(shared_data, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    check = CopyCheck([shared_data / "orl_att40/s01/01.pgm", bad, tmp_path / "missing.png"])
    assert check(0, 1) == (False, float("inf"), "")
    assert check(0, 2)[0] is False
    assert check.pairs == 2 and check.copies == 0


def test_grouping_asks_the_pixel_check_only_in_its_band():
    """Cosines to face 0: 0.995 (sure), 0.9 and 0.8 (pixel band), 0.5 (below the floor)."""
    rng = np.random.default_rng(0)
    base = unit(rng.standard_normal(32))
    rows = [base]
    for c in (0.995, 0.9, 0.8, 0.5):
        g = rng.standard_normal(32)
        o = unit(g - (g @ base) * base)
        rows.append(unit(c * base + np.sqrt(1 - c * c) * o))
    E = np.stack(rows)
    asked = []

    def pixels(i, j):
        asked.append((i, j))
        return (j == 2, 0.1 if j == 2 else 5.0, "identity")

    r = near_duplicate_groups(E, None, [5, 4, 3, 2, 1], list("abcde"), 0.99, pixels=pixels, pixel_min_sim=0.75)
    assert (0, 1) not in asked and all(j != 4 for _, j in asked)  # sure pair and far pair never asked
    assert (0, 2) in asked and (0, 3) in asked
    assert r.kept_index.tolist()[:3] == [0, 0, 0]
    assert r.signal.tolist()[:3] == ["", "embedding", "pixels"]
    assert r.pixel_residual[2] == pytest.approx(0.1) and np.isnan(r.pixel_residual[1])
    assert "crop score 0.100" in r.reason[2]
    assert not (r.kept_index.to_numpy()[3:] == 0).any()


def test_nearest_pairs_bound_the_checks():
    rng = np.random.default_rng(1)
    E = unit(rng.standard_normal((50, 16)) + 3 * unit(rng.standard_normal(16)))
    pairs = nearest_pairs(E, 2, -1.0, block_size=7)
    assert pairs == nearest_pairs(E, 2, -1.0, block_size=1024)
    assert 50 <= len(pairs) <= 100  # each face brings at most its 2 nearest
    S = E @ E.T
    np.fill_diagonal(S, -np.inf)
    for i in range(50):
        j = int(np.argmax(S[i]))
        assert (min(i, j), max(i, j)) in pairs
    assert nearest_pairs(E, 2, 1.01) == set()
