"""SDD-FIQA pseudo-labels: the vectorised code against a per-image loop written like the official
gen_pseudo_labels.py (scipy.stats.wasserstein_distance on the same sampled partners)."""

from __future__ import annotations


import numpy as np
import pytest
from PIL import Image
from scipy.stats import wasserstein_distance

from facesieve.quality.sddfiqa import (
    _distinct,
    sample_comparisons,
    sdd_fiqa_labels,
    wasserstein_rows,
)


def reference_labels(
    emb: np.ndarray, ids: np.ndarray, *, runs: int, n_pos: int = 24, n_neg: int = 24, seed: int = 0
) -> np.ndarray:
    """Per image, per run: cosine to the sampled partners, scipy's Wasserstein distance; min-max
    to [0, 100] per run over labelled images; mean over runs. One-image identities stay NaN."""

    def cos(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))

    total = np.zeros(len(ids))
    for run in range(runs):
        pos, neg = sample_comparisons(ids, run=run, n_pos=n_pos, n_neg=n_neg, seed=seed)
        raw = np.full(len(ids), np.nan)
        for i in range(len(ids)):
            p = [j for j in pos[i] if j >= 0]
            q = [j for j in neg[i] if j >= 0]
            if not p or not q:
                continue
            raw[i] = wasserstein_distance([cos(emb[i], emb[j]) for j in p],
                                          [cos(emb[i], emb[j]) for j in q])  # fmt: skip
        lo, hi = np.nanmin(raw), np.nanmax(raw)
        total += (raw - lo) / (hi - lo) * 100
    return total / runs


def synthetic(seed: int = 0, n_ids: int = 25, d: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Identities of 2..150 images (every sampling branch runs), one one-image identity."""
    rng = np.random.default_rng(seed)
    sizes = np.concatenate([[1, 2, 3, 24, 25, 26, 97, 150], rng.integers(2, 40, n_ids - 8)])
    ids = np.repeat(np.arange(n_ids), sizes)
    rng.shuffle(ids)
    centres = rng.normal(size=(n_ids, d))
    spread = rng.uniform(0.5, 1.5, size=(len(ids), 1))  # varied per-image quality
    emb = centres[ids] + spread * rng.normal(size=(len(ids), d))
    return emb, ids.astype(str)


def test_matches_official_style_reference():
    emb, ids = synthetic()
    scores, rep = sdd_fiqa_labels(emb, ids, runs=4, chunk=1000)
    ref = reference_labels(emb, ids, runs=4)
    assert np.array_equal(np.isnan(scores), np.isnan(ref))
    np.testing.assert_allclose(scores, ref, rtol=0, atol=1e-9)
    assert rep["n_labelled"] == len(ids) - 1


def test_matches_reference_on_real_faces(shared_data):
    root = shared_data / "orl_att40"
    files = sorted(root.glob("s*/*.pgm"))[:150]
    emb = np.array(
        [np.asarray(Image.open(f).resize((23, 28)), dtype=np.float64).ravel() for f in files]
    )
    emb -= emb.mean(axis=1, keepdims=True)
    ids = np.array([f.parent.name for f in files])
    scores, rep = sdd_fiqa_labels(emb, ids)  # the paper's 24 / 24 / 12 runs
    ref = reference_labels(emb, ids, runs=12)
    np.testing.assert_allclose(scores, ref, rtol=0, atol=1e-9)
    assert rep["n_pos_short"] == 150  # identities of 10: every image uses its 9 others
    assert 0 <= np.min(scores) and np.max(scores) <= 100


def test_labels_do_not_depend_on_chunk_or_workers():
    emb, ids = synthetic(seed=1)
    a, _ = sdd_fiqa_labels(emb.astype(np.float32), ids, runs=2, chunk=1)
    b, _ = sdd_fiqa_labels(emb.astype(np.float32), ids, runs=2, chunk=10**6)
    np.testing.assert_array_equal(a, b)
    steps = []
    w, _ = sdd_fiqa_labels(
        emb.astype(np.float32), ids, runs=2, chunk=1, workers=3, progress=lambda *x: steps.append(x)
    )
    np.testing.assert_array_equal(a, w)
    assert steps[-1][0] == steps[-1][1] == len(steps)
    c, _ = sdd_fiqa_labels(emb.astype(np.float32), ids, runs=2, seed=1)
    assert not np.allclose(a, c, equal_nan=True)


def test_single_image_identity_is_nan_and_reported():
    emb, ids = synthetic()
    scores, rep = sdd_fiqa_labels(emb, ids, runs=2)
    lonely = [v for v in np.unique(ids) if np.sum(ids == v) == 1]
    assert rep["single_image_identities"] == lonely and len(lonely) == 1
    assert np.all(np.isnan(scores[ids == lonely[0]]))
    assert rep["n_unlabelled"] == 1 and np.isfinite(scores[ids != lonely[0]]).all()


def test_outlier_scores_low():
    rng = np.random.default_rng(2)
    d, n_ids, per = 64, 40, 30
    centres = rng.normal(size=(n_ids, d))
    ids = np.repeat(np.arange(n_ids), per)
    emb = centres[ids] + 0.7 * rng.normal(size=(len(ids), d))
    bad = 5  # filed under identity 0 but it is a photo of identity 7
    emb[bad] = centres[7] + 0.7 * rng.normal(size=d)
    scores, _ = sdd_fiqa_labels(emb, ids, runs=3)
    assert scores[bad] < np.min(np.delete(scores, bad))
    assert scores[bad] < 10


def test_small_pools_use_everything_available():
    # two identities (5 and 3 images): fewer than 24 partners on both sides
    ids = np.array([0] * 5 + [1] * 3)
    pos, neg = sample_comparisons(ids, run=0)
    assert np.all((pos >= 0).sum(1) == np.where(ids == 0, 4, 2))
    assert np.all((neg >= 0).sum(1) == np.where(ids == 0, 3, 5))
    emb = np.random.default_rng(0).normal(size=(8, 6))
    scores, rep = sdd_fiqa_labels(emb, ids, runs=3)
    np.testing.assert_allclose(scores, reference_labels(emb, ids, runs=3), atol=1e-9)
    assert rep["n_neg_short"] == 8 and rep["n_pos_short"] == 8


def test_sampled_partners_are_valid():
    _, ids = synthetic(seed=3)
    pos, neg = sample_comparisons(ids, run=5, seed=9)
    for i in range(len(ids)):
        p, q = pos[i][pos[i] >= 0], neg[i][neg[i] >= 0]
        n_same = np.sum(ids == ids[i])
        assert len(p) == min(24, n_same - 1) and len(set(p)) == len(p)
        assert i not in p and np.all(ids[p] == ids[i])
        assert len(q) == 24 and len(set(q)) == 24 and np.all(ids[q] != ids[i])


@pytest.mark.parametrize("pool", [30, 96, 400])  # random-key branch, its edge, rejection branch
def test_sampler_is_uniform(pool):
    rng = np.random.default_rng(0)
    rows = 6000
    out, valid = _distinct(rng, np.full(rows, pool), 24)
    assert valid.all()
    s = np.sort(out, axis=1)
    assert np.all(s[:, 1:] != s[:, :-1]) and s.min() >= 0 and s.max() < pool
    counts = np.bincount(out.ravel(), minlength=pool)
    expected = rows * 24 / pool
    chi2 = np.sum((counts - expected) ** 2 / expected)
    assert chi2 < pool + 5 * np.sqrt(2 * pool)  # mean pool - 1, sd sqrt(2 (pool - 1))


def test_wasserstein_rows_matches_scipy():
    rng = np.random.default_rng(4)
    u = np.round(rng.normal(size=(300, 24)), 1)  # rounding makes ties
    v = np.round(rng.normal(0.3, 1, size=(300, 24)), 1)
    uv = np.arange(24)[None, :] < rng.integers(1, 25, size=(300, 1))
    vv = np.arange(24)[None, :] < rng.integers(1, 25, size=(300, 1))
    w = wasserstein_rows(u, uv, v, vv)
    ref = [wasserstein_distance(u[r][uv[r]], v[r][vv[r]]) for r in range(300)]
    np.testing.assert_allclose(w, ref, rtol=0, atol=1e-12)
    uv[0] = False
    assert np.isnan(wasserstein_rows(u, uv, v, vv)[0])


def test_rejects_bad_input():
    emb, ids = synthetic()
    emb[3] = 0
    with pytest.raises(ValueError, match="row 3"):
        sdd_fiqa_labels(emb, ids)
    with pytest.raises(ValueError, match="identities"):
        sdd_fiqa_labels(emb[:10], ids)
    with pytest.raises(ValueError, match="n_pos"):
        sdd_fiqa_labels(emb, ids, n_pos=0)


def test_memmap_input(tmp_path):
    emb, ids = synthetic(seed=5)
    path = tmp_path / "emb.npy"
    np.save(path, emb.astype(np.float32))
    mm = np.load(path, mmap_mode="r")
    a, _ = sdd_fiqa_labels(mm, ids, runs=2)
    b, _ = sdd_fiqa_labels(emb.astype(np.float32), ids, runs=2)
    np.testing.assert_array_equal(a, b)


def test_huge_identity_path_gives_same_labels(monkeypatch):
    # identities too big to copy per chunk take their partners from the full array instead
    import facesieve.quality.sddfiqa as sdd

    emb, ids = synthetic(seed=6)
    a, _ = sdd_fiqa_labels(emb, ids, runs=2)
    monkeypatch.setattr(sdd, "_SPAN_ROWS", 0)
    b, _ = sdd_fiqa_labels(emb, ids, runs=2)
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-9)
    np.testing.assert_allclose(b, reference_labels(emb, ids, runs=2), rtol=0, atol=1e-9)
