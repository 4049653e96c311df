"""eDifFIQA: architecture facts, strict loading of stand-in weights, ONNX round trip, preprocessing.

No official weights are used (tests never download): the stand-ins are the real architectures with
random weights, which is enough to check key layout, parameter counts and numerics end to end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.requires import require

from facesieve.errors import FacesieveError
from facesieve.quality.ediffiqa import EDifFIQA, preprocess

needs_torch = pytest.mark.requires("torch")  # a skip without torch; a failure under FACESIEVE_REQUIRE_TORCH=1

# From DESIGN.md ("Facts to test against"): state-dict keys incl. num_batches_tracked, parameters.
EXPECTED = {
    "L": (929, 65_682_497),
    "M": (479, 44_117_185),
    "S": (191, 24_551_937),
    "T": (337, 1_726_849),
}


@pytest.fixture(scope="module")
def orl_crops(shared_data) -> np.ndarray:
    """12 real faces (two per ORL identity), resized to 112x112 RGB; alignment is not needed for numerics."""
    files = sorted((shared_data / "orl_att40").glob("s*/0[12].pgm"))[:12]
    assert len(files) == 12
    return np.stack([np.asarray(Image.open(f).convert("RGB").resize((112, 112), Image.BILINEAR)) for f in files])


def _stand_in(variant: str, seed: int = 0):
    """Random eDifFIQA with a head scaled so real faces get clearly different scores."""
    import torch

    from facesieve.models.archs import build_ediffiqa

    torch.manual_seed(seed)
    model = build_ediffiqa(variant).eval()
    with torch.no_grad():
        model.mlp.l1.weight.normal_(0.0, 1.0)
        model.mlp.l2.weight.normal_(0.0, 0.1)
    return model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, orl_crops):
    """Stand-in eDifFIQA(T): the torch model, its .pth, its ONNX export and its scores on the crops."""
    torch = require("torch")

    from facesieve.quality.ediffiqa import export_onnx

    d = tmp_path_factory.mktemp("ediffiqa")
    model = _stand_in("T")
    pth = d / "ediffiqa_t_standin.pth"
    torch.save(model.state_dict(), pth)
    onnx_path = export_onnx(model, d / "ediffiqa_t_standin.onnx")
    return model, pth, onnx_path, _torch_scores(model, orl_crops)


def _torch_scores(model, crops: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(preprocess(crops))).numpy().reshape(-1)


@needs_torch
@pytest.mark.parametrize("variant", ["L", "M", "S", "T"])
def test_key_and_parameter_counts(variant):
    from facesieve.models.archs import build_ediffiqa

    model = build_ediffiqa(variant)
    sd = model.state_dict()
    n_keys, n_params = EXPECTED[variant]
    assert len(sd) == n_keys
    assert sum(p.numel() for p in model.parameters()) == n_params
    assert all(k.startswith(("base_model.", "mlp.")) for k in sd)
    assert {k for k in sd if k.startswith("mlp.")} == {"mlp.l1.weight", "mlp.l1.bias", "mlp.l2.weight", "mlp.l2.bias"}
    assert tuple(sd["mlp.l1.weight"].shape) == (1024, 512)
    assert tuple(sd["mlp.l2.weight"].shape) == (1, 1024)
    if variant == "T":
        assert tuple(sd["base_model.conv_6_dw.conv.weight"].shape) == (512, 1, 7, 7)
        assert tuple(sd["base_model.linear.weight"].shape) == (512, 512)
        assert "base_model.conv_3.model.3.project.bn.num_batches_tracked" in sd
    else:
        assert tuple(sd["base_model.fc.weight"].shape) == (512, 512 * 7 * 7)
        assert tuple(sd["base_model.layer4.0.downsample.0.weight"].shape) == (512, 256, 1, 1)
        assert "base_model.features.running_var" in sd
        assert "base_model.layer1.0.prelu.weight" in sd


@needs_torch
def test_backbone_names_and_errors():
    from facesieve.models.archs import build_backbone, build_ediffiqa

    assert sum(p.numel() for p in build_backbone("iresnet18").parameters()) == EXPECTED["S"][1] - 526_337
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("resnet9000")
    with pytest.raises(ValueError, match="variant"):
        build_ediffiqa("XL")


@needs_torch
def test_raw_output_and_normalised_feature(tiny, orl_crops):
    import torch

    model, _, _, scores = tiny
    with torch.no_grad():
        x = torch.from_numpy(preprocess(orl_crops[:3]))
        feat = model.base_model(x)
        out = model.mlp(feat)
    assert tuple(out.shape) == (3, 1)
    np.testing.assert_allclose(out.numpy().ravel(), scores[:3], atol=1e-5)
    np.testing.assert_allclose(torch.linalg.vector_norm(feat, dim=1).numpy(), 1.0, atol=1e-5)
    # Raw regression output: a sigmoid would keep every value inside (0, 1).
    assert (scores < 0).any() or (scores > 1).any()
    assert scores.std() > 0.1  # the stand-in separates real faces, so the numeric checks below mean something


@needs_torch
def test_pth_loads_strictly_and_scores_like_torch(tiny, orl_crops, tmp_path):
    import torch

    model, pth, _, want = tiny
    scorer = EDifFIQA("T", pth, device="cpu", batch_size=5)
    got = scorer.score_batch(orl_crops)
    assert got.dtype == np.float32 and got.shape == (len(orl_crops),)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert scorer.backend == "torch" and scorer.key.startswith("ediffiqa:T:")

    # The same weights wrapped as a training checkpoint from DataParallel load identically.
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, wrapped)
    np.testing.assert_allclose(EDifFIQA("T", wrapped, device="cpu").score_batch(orl_crops[:4]), want[:4], atol=1e-5)


@needs_torch
def test_mismatched_weights_are_refused(tiny, tmp_path):
    import torch

    model, pth, _, _ = tiny
    with pytest.raises(FacesieveError, match=r"missing keys.*wrong variant"):
        EDifFIQA("S", pth, device="cpu")
    sd = model.state_dict()
    sd.pop("mlp.l2.bias")
    partial = tmp_path / "partial.pth"
    torch.save(sd, partial)
    with pytest.raises(FacesieveError, match="1 missing keys"):
        EDifFIQA("T", partial, device="cpu")


@needs_torch
def test_onnx_export_round_trips(tiny, orl_crops):
    import onnxruntime as ort

    model, _, onnx_path, want = tiny
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert (inp.name, out.name) == ("input", "output")
    assert isinstance(inp.shape[0], str) and inp.shape[1:] == [3, 112, 112]  # dynamic batch
    assert out.shape[1:] == [1]

    scorer = EDifFIQA("T", onnx_path, device="cpu", batch_size=5)  # 12 = 5+5+2: uneven last batch
    assert scorer.backend == "onnx" and scorer.device == "cpu"
    got = scorer.score_batch(orl_crops)
    np.testing.assert_allclose(got, want, atol=1e-4)
    # Scores do not depend on how the crops are batched.
    one = np.concatenate([scorer.score_batch(c[None]) for c in orl_crops[:5]])
    np.testing.assert_allclose(one, got[:5], atol=1e-5)


@needs_torch
def test_fixed_batch_onnx_is_chunked(tiny, orl_crops, tmp_path):
    """Some published ONNX files fix the batch at 1; scoring 5 crops must still work."""
    from facesieve.models.onnx import export_onnx

    model, _, _, want = tiny
    fixed = export_onnx(model, tmp_path / "fixed.onnx", dynamic_batch=False)
    scorer = EDifFIQA("T", fixed, device="cpu", batch_size=4)
    assert scorer._onnx.fixed_batch == 1
    np.testing.assert_allclose(scorer.score_batch(orl_crops[:5]), want[:5], atol=1e-4)


def test_preprocessing_by_hand(shared_data):
    path = sorted((shared_data / "essex_faces94_19").glob("*/*.jpg"))[0]
    crop = np.asarray(Image.open(path).convert("RGB").resize((112, 112), Image.BILINEAR))
    x = preprocess(crop[None])
    assert x.shape == (1, 3, 112, 112) and x.dtype == np.float32 and x.flags["C_CONTIGUOUS"]
    # Pixels where red and blue differ, so a BGR swap would be caught.
    ys, xs = np.nonzero(np.abs(crop[..., 0].astype(int) - crop[..., 2].astype(int)) > 20)
    assert len(ys) > 0
    for i, j in [(ys[0], xs[0]), (ys[len(ys) // 2], xs[len(xs) // 2]), (ys[-1], xs[-1])]:
        for c in range(3):
            expected = (int(crop[i, j, c]) / 255.0 - 0.5) / 0.5
            assert x[0, c, i, j] == pytest.approx(expected, abs=1e-6)
    assert x.min() >= -1.0 and x.max() <= 1.0
    assert np.array_equal(preprocess(crop), x)  # a single (112,112,3) crop is accepted too


def test_preprocessing_refuses_wrong_input():
    with pytest.raises(ValueError, match="112"):
        preprocess(np.zeros((2, 100, 100, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        preprocess(np.zeros((2, 112, 112, 3), np.float32))


def test_missing_weights_never_download(tmp_path, monkeypatch):
    import urllib.request

    def no_network(*a, **k):
        raise AssertionError("EDifFIQA tried to download")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setenv("FACESIEVE_HOME", str(tmp_path))
    with pytest.raises(FacesieveError, match="facesieve models fetch ediffiqa-t"):
        EDifFIQA("T")
    with pytest.raises(ValueError, match="variant"):
        EDifFIQA("Q", tmp_path / "x.onnx")


@needs_torch
def test_onnx_path_works_without_torch(tiny, orl_crops, tmp_path):
    """Users without the torch extra can import facesieve and score with the ONNX model."""
    _, _, onnx_path, want = tiny
    np.save(tmp_path / "crops.npy", orl_crops[:3])
    np.save(tmp_path / "want.npy", want[:3])
    script = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # any `import torch` now raises ImportError
        import numpy as np
        import facesieve.models.registry, facesieve.models.fetch, facesieve.models.onnx
        from facesieve.quality.ediffiqa import EDifFIQA
        got = EDifFIQA("T", {str(onnx_path)!r}, device="cpu").score_batch(np.load({str(tmp_path / 'crops.npy')!r}))
        np.testing.assert_allclose(got, np.load({str(tmp_path / 'want.npy')!r}), atol=1e-4)
        print("ok")
    """)
    repo = Path(__file__).resolve().parents[3]
    res = subprocess.run([sys.executable, "-c", script], cwd=repo, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(repo)})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"
