"""Quality on real faces: the offline default against graded degradations and Yale B lighting,
the artefact measures, perturbation robustness (SFace and dlib) and ERS's direction.

Every degraded image goes through the real path: saved to a temporary dataset, then scanned,
detected, aligned, embedded and scored by the pipeline's own stages (quality.scoring).
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.stats import spearmanr

from facesieve.config import RunConfig
from facesieve.imaging import load_rgb
from facesieve.quality.artefacts import blockiness, face_region_measures, noise_sigma
from facesieve.quality.base import QualityInput
from facesieve.quality.registry import make_quality
from facesieve.quality.scoring import score_dataset

# 10 real photos of 10 people: loose crops (seed_vggface 224/150 px, essex 180x200) and
# uncropped web photos (deepface13, 400-512 px)
IMAGES = [
    "seed_vggface/dataset/person1/0002_01.jpg",
    "seed_vggface/dataset/person2/1.jpg",
    "essex_faces94_19/9336923/9336923.1.jpg",
    "essex_faces94_19/anpage/anpage.1.jpg",
    "essex_faces94_19/asamma/asamma.1.jpg",
    "essex_faces94_19/astefa/astefa.1.jpg",
    "essex_faces94_19/asewil/asewil.1.jpg",
    "deepface13/person03/img50.jpg",
    "deepface13/person09/img25.jpg",
    "deepface13/person10/img46.jpg",
]
# Five increasing levels of each degradation, applied to the ORIGINAL image. Blur and down-sampling
# are set relative to the face (in pixels of the 112x112 aligned crop, where the eyes are 35.2 px
# apart), so a level means the same for a small and a large photo; noise and JPEG are absolute.
LEVELS = {
    "blur": [0.8, 1.4, 2.0, 2.8, 4.0],  # Gaussian sigma, crop pixels
    "down": [22, 16, 11, 8, 6],  # inter-eye distance (px) after down-sampling; then back up
    "noise": [4, 8, 14, 22, 32],  # Gaussian noise sigma, grey levels
    "jpeg": [50, 30, 20, 12, 6],  # JPEG quality
}
EYES_IN_CROP = 35.24
# docs/quality.md's table (measured by this test, printed with -s): mean and lowest per-image
# Spearman per degradation, for the default (`offline`, embedding norm) and `offline-full`
# (perturbation robustness). With 5 levels a per-image Spearman moves in steps of 0.1, so one more
# misordered level in one of the 10 images lowers a mean by 0.01: the assertion allows exactly
# that, no more, and no image may fall below its documented lowest.
DOCUMENTED_SPEARMAN = {
    "offline": {"blur": (0.98, 0.9), "down": (0.93, 0.6), "noise": (1.00, 1.0), "jpeg": (1.00, 1.0)},
    "offline-full": {"blur": (0.99, 0.9), "down": (0.98, 0.9), "noise": (1.00, 1.0), "jpeg": (0.99, 0.9)},
}


def inter_eye_distance(path: Path) -> float:
    from facesieve.stages import FaceTask, faces_worker

    row, _ = faces_worker(FaceTask("x", "x", str(path), "yunet", "central", False, True))
    assert row["status"] == "ok" and not row["fallback"], path
    return float(np.hypot(row["lm2"] - row["lm0"], row["lm3"] - row["lm1"]))


def degrade(rgb: np.ndarray, kind: str, value: float, eye: float, seed: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    if kind == "blur":
        return cv2.GaussianBlur(rgb, (0, 0), value * eye / EYES_IN_CROP)
    if kind == "down":
        f = min(1.0, value / eye)
        small = cv2.resize(rgb, (max(2, round(w * f)), max(2, round(h * f))), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    if kind == "noise":
        rng = np.random.default_rng(seed)
        return np.clip(rgb + rng.normal(0.0, value, rgb.shape), 0, 255).astype(np.uint8)
    raise ValueError(kind)


@pytest.fixture(scope="module")
def degraded(shared_data, tmp_path_factory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("degraded")
    ds = root / "dataset"
    for n, rel in enumerate(IMAGES):
        src = shared_data / rel
        rgb = load_rgb(src)
        eye = inter_eye_distance(src)
        folder = ds / f"img{n:02d}"
        folder.mkdir(parents=True)
        for kind, values in LEVELS.items():
            for level, value in enumerate(values, 1):
                if kind == "jpeg":
                    Image.fromarray(rgb).save(folder / f"{kind}{level}.jpg", quality=int(value))
                else:
                    Image.fromarray(degrade(rgb, kind, value, eye, seed=100 * n + level)).save(folder / f"{kind}{level}.png")
    t = score_dataset(RunConfig(dataset=ds, out=root / "out", quality="offline", jobs=2)).table.copy()
    # offline-full on the same workspace (faces and embeddings reused): its score and robustness
    full = score_dataset(RunConfig(dataset=ds, out=root / "out", quality="offline-full", jobs=2)).table
    t = t.merge(full[["path", "quality", "robustness"]].rename(columns={"quality": "full_quality"}), on="path")
    parts = t["path"].str.extract(r"^(img\d+)/([a-z]+)(\d)\.")
    t["image"], t["kind"], t["level"] = parts[0], parts[1], parts[2].astype(int)
    return t


def spearman_with_level(t: pd.DataFrame, column: str) -> dict[str, list[float]]:
    """Per degradation, per image: Spearman correlation of the level with the LOSS of `column`
    (1 = strictly decreasing quality). A face that was not found counts as the worst."""
    out = {}
    for kind in LEVELS:
        rhos = []
        for _, g in t[t["kind"] == kind].groupby("image"):
            q = g[column].to_numpy(float)
            q = np.where(np.isnan(q), -np.inf, q)
            rhos.append(float(spearmanr(g["level"], -q)[0]))
        out[kind] = rhos
    return out


@pytest.mark.heavy
@pytest.mark.parametrize("method", ["offline", "offline-full"])
def test_offline_quality_falls_with_every_degradation(degraded, method):
    rhos = spearman_with_level(degraded, "quality" if method == "offline" else "full_quality")
    alone = "emb_norm" if method == "offline" else "robustness"
    single = spearman_with_level(degraded, alone)
    missed = int((degraded["status"] != "ok").sum())
    print(f"\n{method} quality vs degradation level, {len(IMAGES)} real faces x 5 levels ({missed} faces not found):")
    for kind in LEVELS:
        print(f"  {kind:5s}  Spearman mean {np.mean(rhos[kind]):.3f}  min {np.min(rhos[kind]):.2f}"
              f"   ({alone} alone: {np.nanmean(single[kind]):+.3f})")
    for kind in LEVELS:
        mean, lowest = DOCUMENTED_SPEARMAN[method][kind]
        assert np.mean(rhos[kind]) >= mean - 0.0101, (kind, rhos[kind])
        assert np.min(rhos[kind]) >= lowest - 1e-9, (kind, rhos[kind])  # docs: no image below its lowest


@pytest.mark.heavy
def test_offline_components_see_what_they_are_for(degraded):
    """Noise raises the noise estimate, JPEG the blockiness, on the original grid."""
    t = degraded
    for kind, column in (("noise", "noise_sigma"), ("jpeg", "blockiness")):
        med = t[t["kind"] == kind].groupby("level")[column].median()
        assert med.is_monotonic_increasing, (kind, med.to_dict())
    assert t.loc[t["kind"] == "noise", "noise_sigma"].max() > 10
    assert t.loc[(t["kind"] == "jpeg") & (t["level"] == 5), "blockiness"].min() > 2.0


@pytest.fixture(scope="module")
def yale(shared_data, tmp_path_factory) -> pd.DataFrame:
    """4 subjects: the darkest lighting (|azimuth| >= 110 or elevation 90) and frontal well-lit
    (|azimuth| <= 10 and |elevation| <= 10), linked into a temporary dataset."""
    root = tmp_path_factory.mktemp("yale")
    ds = root / "dataset"
    rows = []
    for subject in ("yaleB01", "yaleB03", "yaleB05", "yaleB07"):
        (ds / subject).mkdir(parents=True)
        for p in sorted((shared_data / "yaleB_cropped10" / subject).glob("*.pgm")):
            m = re.search(r"A([+-]\d+)E([+-]\d+)", p.name)
            az, el = int(m[1]), int(m[2])
            group = "dark" if (abs(az) >= 110 or el >= 90) else "lit" if (abs(az) <= 10 and abs(el) <= 10) else None
            if group:
                (ds / subject / p.name).symlink_to(p)
                rows.append({"path": f"{subject}/{p.name}", "group": group, "azimuth": az, "elevation": el})
    scored = score_dataset(RunConfig(dataset=ds, out=root / "out", quality="offline", jobs=2))
    return scored.table.merge(pd.DataFrame(rows), on="path")


@pytest.mark.heavy
def test_dark_yale_faces_score_below_well_lit_ones(yale):
    assert (yale["status"] == "ok").all()
    aucs = []
    print("\nYale B, offline quality: darkest lighting vs frontal well-lit")
    for subject, g in yale.groupby("identity"):
        dark = g.loc[g["group"] == "dark", "quality"].to_numpy()
        lit = g.loc[g["group"] == "lit", "quality"].to_numpy()
        auc = float((dark[:, None] < lit[None, :]).mean())
        aucs.append(auc)
        print(f"  {subject}: dark {len(dark)} mean {dark.mean():.3f} (max {dark.max():.3f}) | "
              f"lit {len(lit)} mean {lit.mean():.3f} (min {lit.min():.3f}) | P(dark < lit) {auc:.3f}")
        # docs/quality.md: every dark image below every well-lit one of the same subject, by a gap
        # (measured: darkest well-lit minus brightest dark 0.119-0.159 per subject)
        assert dark.max() + 0.11 < lit.min(), subject
    assert aucs == [1.0] * 4


# ---------------------------------------------------------------- artefact measures


def test_noise_estimate_tracks_added_noise(shared_data):
    grey = cv2.cvtColor(load_rgb(shared_data / IMAGES[2]), cv2.COLOR_RGB2GRAY).astype(np.float64)
    rng = np.random.default_rng(0)
    clean = noise_sigma(grey)
    est = [noise_sigma(grey + rng.normal(0, s, grey.shape)) for s in (5, 10, 20)]
    assert clean < 2.0
    assert est[0] < est[1] < est[2]
    for s, e in zip((5, 10, 20), est):
        assert 0.85 * s < e < 1.15 * s, (s, e)
    assert np.isnan(noise_sigma(np.zeros((8, 8))))


def test_blockiness_sees_the_jpeg_grid(shared_data, tmp_path):
    rgb = load_rgb(shared_data / IMAGES[3])
    Image.fromarray(rgb).save(tmp_path / "q8.jpg", quality=8)
    jpeg = cv2.cvtColor(load_rgb(tmp_path / "q8.jpg"), cv2.COLOR_RGB2GRAY)
    smooth = cv2.cvtColor(cv2.GaussianBlur(rgb, (0, 0), 1.0), cv2.COLOR_RGB2GRAY)
    on_grid = blockiness(jpeg[16:, 24:], x0=24, y0=16)
    assert on_grid > 2.0
    assert blockiness(jpeg[16:, 24:], x0=27, y0=19) < 1.3  # told the wrong origin, it sees no grid
    assert 0.8 < blockiness(smooth) < 1.2
    m = face_region_measures(load_rgb(tmp_path / "q8.jpg"), (30.5, 40.2, 100.0, 120.0))
    assert m["blockiness"] > 2.0 and m["noise_sigma"] >= 0


@pytest.mark.heavy
def test_faces_stage_stores_artefacts(degraded):
    ok = degraded[degraded["status"] == "ok"]
    assert ok["noise_sigma"].notna().all() and ok["blockiness"].notna().all()


# ---------------------------------------------------------------- robustness


@pytest.fixture(scope="module")
def crops(shared_data) -> tuple[np.ndarray, pd.DataFrame]:
    from facesieve.stages import FaceTask, faces_worker

    rows, out = [], []
    for rel in IMAGES[:4]:
        row, crop = faces_worker(FaceTask("x", "x", str(shared_data / rel), "yunet", "central", False, True))
        rows.append(row)
        out.append(crop)
    return np.stack(out), pd.DataFrame(rows)


def test_robustness_is_deterministic_and_order_free(crops):
    from facesieve.stages import embedder

    c, faces = crops
    scorer = make_quality("robustness")
    emb = embedder("sface")
    a = scorer.score(QualityInput(c, faces, emb))
    b = scorer.score(QualityInput(c[::-1].copy(), faces.iloc[::-1].reset_index(drop=True), emb))
    np.testing.assert_array_equal(a["quality"].to_numpy(), b["quality"].to_numpy()[::-1])
    assert ((a["quality"] > 0.8) & (a["quality"] <= 1.0)).all()
    # the stored clean embeddings, when given, change nothing
    e = emb.embed_batch(c)
    with_e = scorer.score(QualityInput(c, faces, emb, embeddings=e / np.linalg.norm(e, axis=1, keepdims=True)))
    np.testing.assert_allclose(with_e["quality"], a["quality"], atol=1e-6)


def test_offline_reads_the_norm_given_or_embeds_once_more(crops):
    """The default's norm term: the embed stage's raw norms when given, the same numbers when the
    crops are embedded again; a blurred face reads a lower norm and scores lower."""
    from facesieve.stages import embedder

    c, faces = crops
    emb = embedder("sface")
    raw = np.asarray(emb.embed_batch(c), np.float64)
    norms = np.linalg.norm(raw, axis=1)
    unit = raw / norms[:, None]
    scorer = make_quality("offline")
    given = scorer.score(QualityInput(c, faces, emb, embeddings=unit, norms=norms))
    again = scorer.score(QualityInput(c, faces, emb, embeddings=unit))
    np.testing.assert_allclose(given["emb_norm"], norms, rtol=1e-12)
    np.testing.assert_allclose(again["quality"], given["quality"], rtol=1e-5)
    assert {"s_norm", "s_noise", "s_blockiness", "image_quality"} <= set(given.columns)
    assert "robustness" not in given  # no perturbation runs in the default
    blurred = np.stack([cv2.GaussianBlur(x, (0, 0), 3.0) for x in c])
    worse = scorer.score(QualityInput(blurred, faces, emb))
    assert (worse["emb_norm"] < given["emb_norm"]).all() and (worse["quality"] < given["quality"]).all()


def test_alpha_bar_cosine_schedule():
    from facesieve.quality.robustness import alpha_bar

    assert alpha_bar(0) == 1.0
    assert 0.9997 < alpha_bar(5) < 0.99975  # DifFIQA's t=5: noise of about 2 grey levels
    assert alpha_bar(1000) < 1e-8
    assert alpha_bar(10) > alpha_bar(20) > alpha_bar(40)
    with pytest.raises(ValueError):
        alpha_bar(1001)


@pytest.mark.heavy
def test_robustness_with_dlib_chip_from_aligned_crop(crops):
    from facesieve.quality.robustness import chip_from_aligned, robustness
    from facesieve.stages import embedder

    c, _ = crops
    emb = embedder("dlib")
    chip = chip_from_aligned(emb, c[0])
    assert chip.shape == (150, 150, 3) and chip.dtype == np.uint8
    blurred = np.stack([cv2.GaussianBlur(x, (0, 0), 3.0) for x in c[:2]])
    clean = robustness(emb, c[:2])["robustness"].to_numpy()
    bad = robustness(emb, blurred)["robustness"].to_numpy()
    assert (clean > bad).all(), (clean, bad)


# ---------------------------------------------------------------- ERS


def ruin_image(rgb: np.ndarray, seed: int) -> np.ndarray:
    """Heavy blur, a few pixels between the eyes, heavy noise: nothing recognizable left."""
    h, w = rgb.shape[:2]
    b = cv2.GaussianBlur(rgb, (0, 0), 0.05 * w)
    small = cv2.resize(b, (max(4, w // 12), max(4, h // 12)), interpolation=cv2.INTER_AREA)
    up = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
    return np.clip(up + np.random.default_rng(seed).normal(0, 25, up.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def ers_dataset(shared_data, tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """ORL: 8 subjects x 5 photos, plus 6 ruined photos filed under 6 of them; and a separate
    examples folder of ruined photos of 5 other ORL subjects (other people, same camera)."""
    root = tmp_path_factory.mktemp("ers")
    ds, examples = root / "dataset", root / "examples"
    ruined = []
    subjects = sorted(p for p in (shared_data / "orl_att40").iterdir() if p.is_dir())[:8]
    for k, subject in enumerate(subjects):
        (ds / subject.name).mkdir(parents=True)
        photos = sorted(subject.glob("*.pgm"))
        for p in photos[:5]:
            (ds / subject.name / p.name).symlink_to(p)
        if k < 6:
            name = f"{subject.name}/ruined.png"
            Image.fromarray(ruin_image(load_rgb(photos[5]), k)).save(ds / name)
            ruined.append(name)
    examples.mkdir()
    others = sorted(p for p in (shared_data / "orl_att40").iterdir() if p.is_dir())[10:15]
    for k, subject in enumerate(others):
        photo = sorted(subject.glob("*.pgm"))[0]
        Image.fromarray(ruin_image(load_rgb(photo), 50 + k)).save(examples / f"ex{k}.png")
    return ds, examples, ruined


@pytest.mark.parametrize("source", ["tail", "examples"])
def test_ers_ruined_faces_score_lowest(ers_dataset, tmp_path, source):
    ds, examples, ruined = ers_dataset
    method = "ers" if source == "tail" else f"ers:{examples}"
    t = score_dataset(RunConfig(dataset=ds, out=tmp_path / "out", quality=method, jobs=2)).table
    assert (t["status"] == "ok").all()
    assert set(t["ers_source"]) == {source}
    bad = t["path"].isin(ruined)
    e_bad, e_good = t.loc[bad, "quality"].to_numpy(), t.loc[~bad, "quality"].to_numpy()
    print(f"\nERS ({source}): ruined {e_bad.min():.3f}-{e_bad.max():.3f}, clean {e_good.min():.3f}-{e_good.max():.3f} "
          f"(mean {e_good.mean():.3f})")
    # direction: the unrecognizable faces sit at the UI centre, so their e = 1 - cos is the lowest
    assert e_bad.max() < e_good.min()
    # the paper's keep threshold keeps every clean face here (where ruined faces fall depends on
    # the recogniser and the images: with SFace int8 and these grey ORL crops, about 0.1-0.65)
    assert (e_good >= 0.60).all() and np.median(e_bad) < np.median(e_good) - 0.2
    assert (t["ers_keep"] == (t["quality"] >= 0.60)).all()


def test_ers_synthetic_centre_when_no_tail(shared_data, tmp_path):
    """A clean dataset has no unrecognizable tail: f_UI then comes from ruined copies of its faces."""
    ds = tmp_path / "dataset"
    for subject in sorted(p for p in (shared_data / "orl_att40").iterdir() if p.is_dir())[:3]:
        (ds / subject.name).mkdir(parents=True)
        for p in sorted(subject.glob("*.pgm"))[:4]:
            (ds / subject.name / p.name).symlink_to(p)
    t = score_dataset(RunConfig(dataset=ds, out=tmp_path / "out", quality="ers", jobs=2)).table
    assert set(t["ers_source"]) == {"synthetic"}
    assert (t["quality"] >= 0.60).all()


def test_ers_direction_unit():
    from facesieve.quality.ers import ers_scores, ui_centre

    rng = np.random.default_rng(0)
    f_ui = rng.normal(size=128)
    near = f_ui + 0.1 * rng.normal(size=(5, 128))
    far = rng.normal(size=(5, 128))
    centre = ui_centre(near)
    e_near, e_far = ers_scores(near, centre), ers_scores(far, centre)
    assert (e_near < 0.1).all() and (e_far > 0.6).all()


# ---------------------------------------------------------------- the registry


def test_registry_table_builds_every_method_and_help_lists_it():
    from facesieve.quality import registry

    assert registry.available() == sorted(m.name for m in registry.METHODS)
    text, table = registry.help_text(), registry.describe()
    for m in registry.METHODS:
        assert callable(m.factory())  # its module imports and holds the builder the row names
        assert m.usage in text and m.usage in table
    assert "ers[:DIR]" in text and "onnx:PATH" in text and "offline (default)" in text
    with pytest.raises(ValueError, match="unknown quality method 'nope'"):
        make_quality("nope")


def test_method_modules_do_not_import_the_registry():
    """The split the registry exists for: methods know the interface (base.py), not the table."""
    import ast

    import facesieve.quality as q

    folder = Path(q.__file__).parent
    for path in folder.glob("*.py"):
        if path.name in ("registry.py", "scoring.py", "__init__.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                assert not any(n.startswith("facesieve.quality.registry") for n in names), path.name
